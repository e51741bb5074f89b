/* coralctl gcs stats|block, cache, redo: cache fusion as lmsd sees it (over its socket), and
 * the node's buffer cache and redo straight from the SGA (no daemon needs to answer). */
#include "coralctl.h"
#include "bufcache.h"
#include "errors.h"
#include "grd.h"
#include "redo.h"
#include "sga.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gcs_stats(void)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_LMSD, CORAL__CTL_REQUEST__BODY_GCS_STATS, CORAL__CTL_RESPONSE__BODY_GCS_STATS);
	if (resp == NULL)
		return 1;
	const Coral__GcsStatsReply *r = resp->gcs_stats;
	if (ctx.json) {
		json_t *kinds = json_array();
		for (size_t i = 0; i < r->n_kinds; i++)
			json_array_append_new(kinds, json_pack("{s:s, s:I, s:I, s:I}", "kind", r->kinds[i]->kind,
							       "count", (json_int_t)r->kinds[i]->count, "avg_us",
							       (json_int_t)r->kinds[i]->avg_us, "p99_us",
							       (json_int_t)r->kinds[i]->p99_us));
		json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				      "node", (json_int_t)ctx.node->id, "requests", (json_int_t)r->requests,
				      "local_hits", (json_int_t)r->local_hits, "two_way", (json_int_t)r->two_way,
				      "three_way", (json_int_t)r->three_way, "disk_reads", (json_int_t)r->disk_reads,
				      "busy", (json_int_t)r->busy, "retries", (json_int_t)r->retries, "lost",
				      (json_int_t)r->lost, "stale", (json_int_t)r->stale, "invalidations",
				      (json_int_t)r->invalidations, "pi_kept", (json_int_t)r->pi_kept, "pi_dropped",
				      (json_int_t)r->pi_dropped, "writes", (json_int_t)r->writes, "scn",
				      (json_int_t)r->scn);
		json_object_set_new(j, "log_forces", json_integer((json_int_t)r->log_forces));
		json_object_set_new(j, "cr_served", json_integer((json_int_t)r->cr_served));
		json_object_set_new(j, "shipped", json_integer((json_int_t)r->shipped));
		json_object_set_new(j, "deferred", json_integer((json_int_t)r->deferred));
		json_object_set_new(j, "mastered", json_integer((json_int_t)r->mastered));
		json_object_set_new(j, "not_master", json_integer((json_int_t)r->not_master));
		json_object_set_new(j, "cr_direct", json_integer((json_int_t)r->cr_direct));
		json_object_set_new(j, "cr_direct_refused", json_integer((json_int_t)r->cr_direct_refused));
		json_object_set_new(j, "cr_port_refused", json_integer((json_int_t)r->cr_port_refused));
		json_object_set_new(j, "write_errors", json_integer((json_int_t)r->write_errors));
		json_object_set_new(j, "inv_held", json_integer((json_int_t)r->inv_held));
		json_object_set_new(j, "log_waits", json_integer((json_int_t)r->log_waits));
		json_object_set_new(j, "write_waits", json_integer((json_int_t)r->write_waits));
		json_object_set_new(j, "log_wait_us", json_integer((json_int_t)r->log_wait_us));
		json_object_set_new(j, "dropped_out", json_integer((json_int_t)r->dropped_out));
		json_object_set_new(j, "kinds", kinds);
		print_json(j);
	} else {
		printf("node %lld: %llu block requests, %llu local hits (%.1f%%), SCN %llu\n", (long long)ctx.node->id,
		       (unsigned long long)r->requests, (unsigned long long)r->local_hits,
		       r->requests ? 100.0 * (double)r->local_hits / (double)r->requests : 0.0,
		       (unsigned long long)r->scn);
		printf("  served: 2-way %llu, 3-way %llu, from disk %llu, CR copies %llu\n",
		       (unsigned long long)r->two_way, (unsigned long long)r->three_way,
		       (unsigned long long)r->disk_reads, (unsigned long long)r->cr_served);
		printf("  as master: %llu requests, %llu invalidations; not master %llu, busy %llu\n",
		       (unsigned long long)r->mastered, (unsigned long long)r->invalidations,
		       (unsigned long long)r->not_master, (unsigned long long)r->busy);
		printf("  as holder: %llu shipped (%llu waited for a pin), past images kept %llu, dropped %llu, "
		       "%llu write-backs, %llu log forces\n",
		       (unsigned long long)r->shipped, (unsigned long long)r->deferred, (unsigned long long)r->pi_kept,
		       (unsigned long long)r->pi_dropped, (unsigned long long)r->writes,
		       (unsigned long long)r->log_forces);
		printf("  CR copies straight to other nodes' sessions %llu (%llu asked when not held here); "
		       "CR port connections refused %llu (no hello, or a wrong one)\n",
		       (unsigned long long)r->cr_direct, (unsigned long long)r->cr_direct_refused,
		       (unsigned long long)r->cr_port_refused);
		printf("  retries %llu, resent after a timeout %llu, late or duplicate messages %llu\n",
		       (unsigned long long)r->retries, (unsigned long long)r->lost, (unsigned long long)r->stale);
		printf("  data-file writes failed %llu; invalidations held until a dirty image is on disk %llu\n",
		       (unsigned long long)r->write_errors, (unsigned long long)r->inv_held);
		printf("  peers' messages dropped while this node was out of the cluster (evicted, joining, leaving) %llu\n",
		       (unsigned long long)r->dropped_out);
		printf("  ships and invalidations that waited for their redo %llu (lmsd serving on meanwhile; "
		       "the log waiter waited %.1f ms in all)\n",
		       (unsigned long long)r->log_waits, (double)r->log_wait_us / 1000.0);
		printf("  blocks the checkpoint found pinned or shipping, written at their unpin %llu\n",
		       (unsigned long long)r->write_waits);
		printf("  %-8s %10s %10s %10s\n", "KIND", "COUNT", "AVG_US", "P99_US");
		for (size_t i = 0; i < r->n_kinds; i++)
			printf("  %-8s %10llu %10llu %10llu\n", r->kinds[i]->kind, (unsigned long long)r->kinds[i]->count,
			       (unsigned long long)r->kinds[i]->avg_us, (unsigned long long)r->kinds[i]->p99_us);
	}
	coral_ctl_response_free(resp);
	return 0;
}

static int gcs_block(const char *file, const char *block)
{
	char *e1, *e2;
	unsigned long f = strtoul(file, &e1, 10);
	unsigned long long b = strtoull(block, &e2, 10);
	if (*e1 || *e2 || f == 0) {
		fprintf(stderr, "coralctl: FILE and BLOCK are numbers (file ids from coralctl datafile list)\n");
		return 2;
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GcsBlockRequest g = CORAL__GCS_BLOCK_REQUEST__INIT;
	g.file = (uint32_t)f;
	g.block = b;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_BLOCK;
	req.gcs_block = &g;
	Coral__CtlResponse *resp = daemon_call(CORAL_D_LMSD, &req, CORAL__CTL_RESPONSE__BODY_GCS_BLOCK);
	if (resp == NULL)
		return 1;
	const Coral__GcsBlockReply *r = resp->gcs_block;
	if (ctx.json) {
		json_t *h = json_array();
		for (size_t i = 0; i < r->n_holders; i++)
			json_array_append_new(h, json_pack("{s:i, s:s, s:b, s:b}", "node", (int)r->holders[i]->node, "mode",
							   r->holders[i]->mode, "pi", r->holders[i]->pi, "current",
							   r->holders[i]->current));
		json_t *j = json_pack("{s:i, s:I, s:i, s:I, s:b, s:o, s:I, s:I, s:i, s:s}", "file", (int)f, "block",
				      (json_int_t)b, "master", (int)r->master, "map_version", (json_int_t)r->map_version,
				      "known", r->found, "holders", h, "gen", (json_int_t)r->gen, "disk_scn",
				      (json_int_t)r->disk_scn, "queued", (int)r->queued, "operation", r->op);
		json_object_set_new(j, "local", json_pack("{s:s, s:I, s:b, s:b, s:i}", "mode", r->local_mode, "scn",
							 (json_int_t)r->local_scn, "dirty", r->local_dirty, "pi",
							 r->local_pi, "pins", (int)r->local_pins));
		print_json(j);
	} else {
		printf("block %lu:%llu: master node %u (map version %llu)\n", f, b, r->master,
		       (unsigned long long)r->map_version);
		if (r->master != (uint32_t)ctx.node->id)
			printf("  (the master's view: coralctl -n %u gcs block %lu %llu)\n", r->master, f, b);
		else if (!r->found)
			printf("  not in the master's directory: nobody holds it\n");
		else {
			printf("  operations %llu, disk SCN %llu, %u queued%s%s\n", (unsigned long long)r->gen,
			       (unsigned long long)r->disk_scn, r->queued, r->op[0] ? "; now: " : "", r->op);
			for (size_t i = 0; i < r->n_holders; i++)
				printf("  node %-3u %s%s%s\n", r->holders[i]->node, r->holders[i]->mode,
				       r->holders[i]->current ? "  current image" : "",
				       r->holders[i]->pi ? "  past image" : "");
		}
		printf("  here: mode %s, SCN %llu%s%s, %u pins\n", r->local_mode, (unsigned long long)r->local_scn,
		       r->local_dirty ? ", dirty" : "", r->local_pi ? ", past image" : "", r->local_pins);
	}
	coral_ctl_response_free(resp);
	return 0;
}

int run_gcs_stats(int argc, char **argv)
{
	(void)argc, (void)argv;
	return gcs_stats();
}

int run_gcs_block(int argc, char **argv)
{
	(void)argc;
	return gcs_block(argv[0], argv[1]);
}

static int attach(struct coral_sga *sga)
{
	int rc = coral_sga_attach(sga, &ctx.conf, ctx.node, true);
	if (rc != 0) {
		if (ctx.json)
			print_json(json_pack("{s:s}", "error", sga->errmsg));
		else
			fprintf(stderr, "coralctl: %s\n", sga->errmsg);
	}
	return rc;
}

int run_cache(int argc, char **argv)
{
	(void)argc, (void)argv;
	struct coral_sga sga;
	if (attach(&sga) != 0)
		return 1;
	struct coral_cache *c = coral_cache_sga(&sga);
	if (c == NULL) {
		fprintf(stderr, "coralctl: the SGA has no cache section\n");
		coral_sga_detach(&sga);
		return 1;
	}
	uint32_t modes[3] = {0}, pinned = 0, cr = 0;
	for (uint32_t i = 0; i < c->nbuf; i++) {
		struct coral_buf *b = coral_cache_buf(c, i);
		if (!(b->flags & CORAL_BUFF_VALID))
			continue;
		if (b->flags & CORAL_BUFF_CR)
			cr++;
		else if (!(b->flags & CORAL_BUFF_PI) && b->mode < 3)
			modes[b->mode]++;
		pinned += atomic_load(&b->pins) != 0;
	}
	uint64_t gets = atomic_load(&c->st.gets), hits = atomic_load(&c->st.local_hits);
	uint32_t sessions = 0, session_pins = 0;
	for (uint32_t i = 0; i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *ss = coral_cache_sess(c, i);
		if (atomic_load(&ss->pid) <= 0)
			continue;
		sessions++;
		for (int k = 0; k < CORAL_CACHE_SLOT_PINS; k++)
			session_pins += atomic_load(&ss->pins[k]) != 0;
	}
	if (ctx.json) {
		json_t *j = json_pack("{s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:f, s:I, s:I, s:I, s:I}",
				     "node", (json_int_t)ctx.node->id, "buffers", (int)c->nbuf, "block_size",
				     (int)c->block_size, "valid", (int)atomic_load(&c->valid), "dirty",
				     (int)atomic_load(&c->dirty), "past_images", (int)atomic_load(&c->pis), "shared",
				     (int)modes[1], "exclusive", (int)modes[2], "cr_copies", (int)cr, "pinned",
				     (int)pinned, "gets", (json_int_t)gets, "local_hits", (json_int_t)hits, "hit_ratio",
				     gets ? (double)hits / (double)gets : 0.0, "fills",
				     (json_int_t)atomic_load(&c->st.fills), "evictions",
				     (json_int_t)atomic_load(&c->st.evictions), "writes",
				     (json_int_t)atomic_load(&c->st.writes), "full", (json_int_t)atomic_load(&c->st.full));
		json_object_set_new(j, "sessions", json_integer(sessions));
		json_object_set_new(j, "session_pins", json_integer(session_pins));
		json_object_set_new(j, "dead_sessions", json_integer((json_int_t)atomic_load(&c->st.dead_sessions)));
		json_object_set_new(j, "dead_session_pins", json_integer((json_int_t)atomic_load(&c->st.dead_pins)));
		json_object_set_new(j, "dead_transactions", json_integer((json_int_t)atomic_load(&c->st.dead_txns)));
		json_object_set_new(j, "dead_transaction_changes",
				    json_integer((json_int_t)atomic_load(&c->st.dead_txn_changes)));
		json_object_set_new(j, "revoked_sessions", json_integer((json_int_t)atomic_load(&c->st.revoked)));
		json_object_set_new(j, "cr_clones", json_integer((json_int_t)c->nclone));
		json_object_set_new(j, "cr_clones_in_use", json_integer((json_int_t)atomic_load(&c->clones_used)));
		json_object_set_new(j, "cr_clones_made", json_integer((json_int_t)atomic_load(&c->st.clones)));
		json_object_set_new(j, "cr_clone_reads", json_integer((json_int_t)atomic_load(&c->st.clone_reads)));
		json_object_set_new(j, "cr_clones_full", json_integer((json_int_t)atomic_load(&c->st.clone_full)));
		json_object_set_new(j, "cr_clones_lost", json_integer((json_int_t)atomic_load(&c->st.clone_leaks)));
		print_json(j);
	} else {
		printf("node %lld cache: %u buffers of %u bytes: %u in use (S %u, X %u, past images %u, CR %u), "
		       "%u dirty, %u pinned\n",
		       (long long)ctx.node->id, c->nbuf, c->block_size, atomic_load(&c->valid), modes[1], modes[2],
		       atomic_load(&c->pis), cr, atomic_load(&c->dirty), pinned);
		printf("  gets %llu, local hits %llu (hit ratio %.1f%%), filled from disk %llu, evicted %llu, "
		       "written back %llu, no free buffer %llu, waits for a pin %llu\n",
		       (unsigned long long)gets, (unsigned long long)hits, gets ? 100.0 * (double)hits / (double)gets : 0.0,
		       (unsigned long long)atomic_load(&c->st.fills), (unsigned long long)atomic_load(&c->st.evictions),
		       (unsigned long long)atomic_load(&c->st.writes), (unsigned long long)atomic_load(&c->st.full),
		       (unsigned long long)atomic_load(&c->st.pin_waits));
		printf("  sessions %u of %d (holding %u pins); sessions of dead processes cleaned up %llu, their pins "
		       "released %llu, their open transactions taken back by smond %llu (%llu changes); sessions ended by "
		       "the resource manager, what they held reclaimed, %llu\n",
		       sessions, CORAL_CACHE_SESSIONS, session_pins, (unsigned long long)atomic_load(&c->st.dead_sessions),
		       (unsigned long long)atomic_load(&c->st.dead_pins), (unsigned long long)atomic_load(&c->st.dead_txns),
		       (unsigned long long)atomic_load(&c->st.dead_txn_changes),
		       (unsigned long long)atomic_load(&c->st.revoked));
		printf("  consistent images of blocks under change: %u of %u in use, %llu made, %llu reads answered "
		       "from one, %llu changes without one (all in use: their readers waited), %llu lost and given back\n",
		       atomic_load(&c->clones_used), c->nclone, (unsigned long long)atomic_load(&c->st.clones),
		       (unsigned long long)atomic_load(&c->st.clone_reads), (unsigned long long)atomic_load(&c->st.clone_full),
		       (unsigned long long)atomic_load(&c->st.clone_leaks));
	}
	coral_sga_detach(&sga);
	return 0;
}

int run_redo(int argc, char **argv)
{
	(void)argc, (void)argv;
	struct coral_sga sga;
	if (attach(&sga) != 0)
		return 1;
	struct coral_redo *r = coral_redo_sga(&sga);
	if (r == NULL) {
		fprintf(stderr, "coralctl: the SGA has no redo section\n");
		coral_sga_detach(&sga);
		return 1;
	}
	uint64_t tail = atomic_load(&r->tail), durable = atomic_load(&r->durable);
	/* the checkpoint: lmsd's (live), and the one kept in the thread's directory */
	uint64_t ckpt = atomic_load(&r->ckpt_lsn), ckpt_ns = atomic_load(&r->ckpt_ns), now = coral_now_real_ns();
	double behind_s = ckpt_ns && now > ckpt_ns ? (double)(now - ckpt_ns) / 1e9 : 0.0;
	struct coral_redo_ckpt kept;
	char kerr[256] = "";
	const char *shared = ctx.conf.storage.shared_dir;
	int krc = coral_redo_ckpt_read(shared, r->thread, &kept, kerr, sizeof(kerr));
	uint64_t nseg, seg_first, seg_last;
	coral_redo_segments(shared, r->thread, &nseg, &seg_first, &seg_last);
	uint64_t syncs = atomic_load(&r->syncs), synced = atomic_load(&r->commits_synced);
	static const char *const bname[CORAL_REDO_BATCH_BUCKETS] = {"1", "2-3", "4-7", "8-15", "16-31", "32-63",
								     "64-127", "128+"};
	if (ctx.json) {
		json_t *batches = json_object();
		for (int i = 0; i < CORAL_REDO_BATCH_BUCKETS; i++)
			json_object_set_new(batches, bname[i], json_integer((json_int_t)atomic_load(&r->batch[i])));
		json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "thread",
				      (json_int_t)r->thread, "lsn", (json_int_t)tail, "durable_lsn", (json_int_t)durable,
				      "durable_scn", (json_int_t)atomic_load(&r->durable_scn), "buffer",
				      (json_int_t)r->size, "records", (json_int_t)atomic_load(&r->records), "commits",
				      (json_int_t)atomic_load(&r->commits), "syncs", (json_int_t)syncs, "max_batch",
				      (json_int_t)atomic_load(&r->max_batch), "full_waits",
				      (json_int_t)atomic_load(&r->full_waits), "errors", (json_int_t)atomic_load(&r->errors));
		json_object_set_new(j, "writer_pid", json_integer(atomic_load(&r->writer_pid)));
		json_object_set_new(j, "avg_sync_us", json_integer(syncs ? (json_int_t)(atomic_load(&r->sync_us) / syncs) : 0));
		json_object_set_new(j, "batches", batches);
		json_object_set_new(j, "checkpoint_lsn", json_integer((json_int_t)ckpt));
		json_object_set_new(j, "checkpoint_behind_bytes", json_integer((json_int_t)(durable > ckpt ? durable - ckpt : 0)));
		json_object_set_new(j, "checkpoint_behind_s", json_real(behind_s));
		json_object_set_new(j, "checkpoint_kept_lsn", json_integer(krc == 0 ? (json_int_t)kept.lsn : -1));
		json_object_set_new(j, "segments", json_integer((json_int_t)nseg));
		json_object_set_new(j, "first_segment", json_integer((json_int_t)seg_first));
		print_json(j);
	} else {
		printf("node %lld redo thread %u: LSN %llu, durable to %llu (SCN %llu), %llu bytes buffered of %llu\n",
		       (long long)ctx.node->id, r->thread, (unsigned long long)tail, (unsigned long long)durable,
		       (unsigned long long)atomic_load(&r->durable_scn), (unsigned long long)(tail - durable),
		       (unsigned long long)r->size);
		char kept_s[300];
		if (krc != 0)
			snprintf(kept_s, sizeof(kept_s), "%s", kerr);
		else if (kept.lsn == 0)
			snprintf(kept_s, sizeof(kept_s), "none yet");
		else
			snprintf(kept_s, sizeof(kept_s), "LSN %llu", (unsigned long long)kept.lsn);
		printf("  checkpoint: LSN %llu, %llu bytes and %.1f s behind the durable end (in the thread's directory: "
		       "%s); %llu segments, %llu to %llu\n",
		       (unsigned long long)ckpt, (unsigned long long)(durable > ckpt ? durable - ckpt : 0), behind_s, kept_s,
		       (unsigned long long)nseg, (unsigned long long)seg_first, (unsigned long long)seg_last);
		printf("  log writer: %s (pid %d), %llu syncs (avg %llu us), %llu errors\n",
		       atomic_load(&r->writer_pid) ? "replicad" : "NOT RUNNING", atomic_load(&r->writer_pid),
		       (unsigned long long)syncs, syncs ? (unsigned long long)(atomic_load(&r->sync_us) / syncs) : 0ull,
		       (unsigned long long)atomic_load(&r->errors));
		uint64_t with = 0;
		for (int i = 0; i < CORAL_REDO_BATCH_BUCKETS; i++)
			with += atomic_load(&r->batch[i]);
		printf("  %llu records, %llu commits; group commit: %.2f commits per sync that carried any, largest %llu; "
		       "ring-full waits %llu\n",
		       (unsigned long long)atomic_load(&r->records), (unsigned long long)atomic_load(&r->commits),
		       with ? (double)synced / (double)with : 0.0, (unsigned long long)atomic_load(&r->max_batch),
		       (unsigned long long)atomic_load(&r->full_waits));
		printf("  syncs by batch size:");
		for (int i = 0; i < CORAL_REDO_BATCH_BUCKETS; i++)
			printf(" %s:%llu", bname[i], (unsigned long long)atomic_load(&r->batch[i]));
		printf("\n");
	}
	coral_sga_detach(&sga);
	return 0;
}
