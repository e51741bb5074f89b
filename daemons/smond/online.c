/* smond: the recovery of a node lost while others run. Every survivor's smond takes part,
 * each for the blocks its node masters; one of them claims the lost thread and ends the
 * recovery for the cluster. A thread of its own does the work, off smond's loop:
 *
 *   fence    the lost incarnation is out of raftd's membership. raftd evicts a node only
 *            once lease_ms + lease_drift_ms have passed since it last heard from it, and a
 *            node that has not reached a quorum for lease_ms fences itself (coral.conf(5)):
 *            an evicted node writes nothing more to the shared files.
 *   first    every thread from its checkpoint: the lost ones to their last valid record,
 *   pass     those of running nodes (their changes in past images that the disk lacks: a
 *            past image holds its node's checkpoint back) with their open transactions left
 *            alone. The blocks changed since are the recovery set. It needs only the lost
 *            threads to have ended, and runs while the directory is rebuilt.
 *   rebuild  grdd has rebuilt the buckets the lost node mastered, and lmsd has rebuilt its
 *            blocks' state there from every survivor's report and settled every transfer
 *            that was under way with the lost node (gcs.h): then each block this node
 *            masters whose current image the lost node had, or may have had, is marked
 *            CORAL_GRDE_RECOVERY.
 *   release  a block of a bucket the lost node mastered that no survivor reported is marked
 *            if it is in the recovery set; every other one is then served from the disk
 *            (the directory's loss is released). A marked block whose current image is
 *            with a survivor is released too, and so is one outside the recovery set (no
 *            thread changed it since its checkpoint: the disk is current).
 *   claim    a compare-and-swap of recovery/<node> in raftd's store naming the lost
 *            incarnation and this node's; a claim whose node is no longer a member is taken
 *            over (every step is safe to repeat).
 *   apply    each marked block: its disk image, every change of every thread newer than it,
 *            in SCN order, and the lost nodes' uncommitted changes taken back (recovery.c),
 *            by several threads; each written and released at once (its master takes the
 *            disk as current), then the data files synced.
 *   written  lmsd has written every image here that may hold a lost node's changes (one
 *            that came dirty from another node, a past image): the thread's close below
 *            ends every later recovery's reading of them (gcs.h).
 *   close    the claimer waits for every survivor's part (recovery/<node>/done/<id>), moves
 *            the lost thread's checkpoint to its end and asks grdd to drop the node from the
 *            map's lost list, which ends "needs recovery" everywhere.
 *
 * One recovery takes every node lost and not recovered yet, their threads merged by SCN.
 * A loss of one more node, or a newer loss of one of them (its count in the directory
 * moved), abandons the one under way; the next does everything again, with all of them. */
#include "online.h"

#include "ctl.h"
#include "errors.h"
#include "kv.h"
#include "log.h"
#include "recovery.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ONLINE_MAX_THREADS (CORAL_MAX_NODES * 4)

static const char *const phase_names[] = {"", "fence", "rebuild", "claim", "first pass", "release", "apply",
					  "waiting for the other survivors", "close", "waiting for the claimer",
					  "writing back the lost node's changes held here"};

static uint64_t ms_since(uint64_t t0) { return (coral_now_mono_ns() - t0) / 1000000ull; }

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* One lost node of a recovery. */
struct part {
	uint32_t lost;
	uint64_t seq, inc;             /* the directory's count of its loss, its incarnation */
	struct coral_grd_loss *L;
	uint64_t lost_end;             /* its thread's end, as read */
	bool claimer;                  /* this node closes its thread */
	bool finished;                 /* its thread closed (here or by its claimer) */
};

/* A recovery: every node lost and not yet recovered when it began, together (their
 * threads merged by SCN in one pass: a block changed by two of them needs both). */
struct run {
	struct smond_online *o;
	uint32_t self;
	uint64_t self_inc;
	struct part p[CORAL_MAX_NODES];
	uint32_t np;
	uint64_t mask;                 /* bit id-1: the nodes lost */
	bool closing;                  /* this node's part is done: the threads close now */
	struct recovery *r;
	struct coral_ctlfile *cf;
	int fds[CORAL_MAX_DATAFILES];
	/* apply: the marked blocks, taken by the workers in turn */
	struct coral_resid *todo;
	uint64_t ntodo;
	_Atomic uint64_t next;
	_Atomic int failed;
	char err[512];
	pthread_mutex_t err_mu;
};

static bool lost_here(const struct run *x, uint32_t node)
{
	return node >= 1 && node <= CORAL_MAX_NODES && (x->mask & (1ull << (node - 1)));
}

/* Whether the losses being recovered are still the latest ones, with no other since (then
 * all starts again, with it), or smond stops. */
static bool stale(const struct run *x)
{
	if (atomic_load(&x->o->stop))
		return true;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		const struct coral_grd_loss *L = &x->o->dir->loss[n - 1];
		uint64_t seq = atomic_load(&L->seq);
		if (lost_here(x, n)) {
			/* a newer loss, or this one ended elsewhere (recovered by another, or by
			 * hand): lmsd no longer settles it, and nothing here waits for it */
			for (uint32_t k = 0; k < x->np; k++)
				if (x->p[k].lost == n &&
				    (x->p[k].seq != seq ||
				     (!x->closing && !x->p[k].finished && atomic_load(&L->done) == seq)))
					return true;
		} else if (n != x->self && seq != 0 && seq != atomic_load(&L->done)) {
			return true;
		}
	}
	return false;
}

/* "node 3" or "nodes 2 and 3" */
static const char *nodes_str(const struct run *x, char *buf, size_t n)
{
	size_t off = (size_t)snprintf(buf, n, "node%s", x->np > 1 ? "s" : "");
	for (uint32_t k = 0; k < x->np && off < n; k++)
		off += (size_t)snprintf(buf + off, n - off, "%s%u", k == 0 ? " " : k + 1 == x->np ? " and " : ", ",
				       x->p[k].lost);
	return buf;
}

static void set_phase(struct run *x, int phase) { atomic_store(&x->o->phase, phase); }

static void ev_set(struct run *x, uint64_t *field)
{
	pthread_mutex_lock(&x->o->mu);
	*field = ms_since(x->o->started_ns);
	pthread_mutex_unlock(&x->o->mu);
}

/* ---- raftd's store ------------------------------------------------------------------ */

static int kv_call(struct run *x, struct coral_kv_req *r, Coral__CtlResponse **resp, char *err, size_t errsz)
{
	char sock[CORAL_STR_MAX + 64];
	coral_conf_sock_path(x->o->node, "raftd", sock, sizeof(sock));
	coral_kv_from(r, "smond", x->self);
	int rc = coral_ctl_call(sock, &r->req, (size_t)x->o->conf->cluster.max_frame, 3000, resp, err, errsz);
	if (rc != 0)
		return rc;
	if ((*resp)->code != 0) {
		rc = (*resp)->code;
		snprintf(err, errsz, "%s", (*resp)->error ? (*resp)->error : coral_strerror(rc));
		if (rc != CORAL_ENOENT && rc != CORAL_ECONFLICT) {
			coral_ctl_response_free(*resp);
			*resp = NULL;
		}
		return rc;
	}
	if ((*resp)->body_case != CORAL__CTL_RESPONSE__BODY_KV || (*resp)->kv == NULL) {
		coral_ctl_response_free(*resp);
		*resp = NULL;
		snprintf(err, errsz, "raftd answered with something else");
		return CORAL_EDECODE;
	}
	return 0;
}

struct claim_val {
	uint64_t inc, claimer_inc;
	uint32_t claimer;
	char state[16];
};

static bool parse_claim(const uint8_t *v, size_t n, struct claim_val *c)
{
	char buf[256];
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, v, n);
	buf[n] = '\0';
	return sscanf(buf, "inc=%" SCNu64 " claimer=%" SCNu32 " claimer_inc=%" SCNu64 " state=%15s", &c->inc, &c->claimer,
		      &c->claimer_inc, c->state) == 4;
}

static bool member_active(const struct smond_online *o, uint32_t id, uint64_t inc)
{
	struct coral_cluster_view v;
	coral_cluster_read(o->cl, &v);
	for (uint32_t i = 0; i < v.nmembers; i++)
		if (v.members[i].id == id)
			return v.members[i].state == CORAL_MEMBER_ACTIVE && (inc == 0 || v.members[i].incarnation == inc);
	return false;
}

static int kv_write(struct run *x, const struct part *p, const char *key, const char *state, uint64_t expect,
		    bool cas, char *err, size_t errsz)
{
	char val[160];
	snprintf(val, sizeof(val), "inc=%" PRIu64 " claimer=%" PRIu32 " claimer_inc=%" PRIu64 " state=%s", p->inc, x->self,
		 x->self_inc, state);
	struct coral_kv_req r;
	if (cas)
		coral_kv_cas(&r, key, val, strlen(val), expect);
	else
		coral_kv_put(&r, key, val, strlen(val));
	Coral__CtlResponse *resp = NULL;
	int rc = kv_call(x, &r, &resp, err, errsz);
	if (resp)
		coral_ctl_response_free(resp);
	return rc;
}

/* 1: this node claims the lost thread, 0: another live node has, or a CORAL_E* code. */
static int claim(struct run *x, struct part *p, char *err, size_t errsz)
{
	char key[64];
	snprintf(key, sizeof(key), "recovery/%u", p->lost);
	for (int tries = 0; tries < 20 && !stale(x); tries++) {
		struct coral_kv_req r;
		coral_kv_get(&r, key, false);
		Coral__CtlResponse *resp = NULL;
		int rc = kv_call(x, &r, &resp, err, errsz);
		uint64_t expect = 0;
		if (rc == 0 && resp->kv->n_kv == 1) {
			const Coral__RegKV *kv = resp->kv->kv[0];
			struct claim_val c;
			bool ok = parse_claim(kv->value.data, kv->value.len, &c);
			expect = kv->mod_index;
			coral_ctl_response_free(resp);
			if (ok && c.inc == p->inc) {
				if (c.claimer == x->self && c.claimer_inc == x->self_inc)
					return 1;
				if (strcmp(c.state, "done") == 0 || member_active(x->o, c.claimer, c.claimer_inc))
					return 0;
				log_notice("recovery of node %u: its claimer, node %u, is gone: claiming it again", p->lost,
					   c.claimer);
			}
		} else if (rc == CORAL_ENOENT) {
			if (resp)
				coral_ctl_response_free(resp);
		} else {
			if (resp)
				coral_ctl_response_free(resp);
			if (rc != CORAL_ECONFLICT) {
				sleep_ms(200); /* raftd restarting, or no leader for a moment */
				continue;
			}
		}
		rc = kv_write(x, p, key, "claimed", expect, true, err, errsz);
		if (rc == 0)
			return 1;
		if (rc != CORAL_ECONFLICT)
			sleep_ms(200);
	}
	return stale(x) ? CORAL_ECANCELED : CORAL_ETIMEDOUT;
}

/* ---- the phases ----------------------------------------------------------------------- */

static int wait_fence(struct run *x, char *err, size_t errsz)
{
	uint64_t t0 = coral_now_mono_ns();
	while (!stale(x)) {
		uint32_t k = 0;
		while (k < x->np && !member_active(x->o, x->p[k].lost, x->p[k].inc))
			k++;
		if (k == x->np)
			return 0;
		if (coral_cluster_fenced(x->o->cl)) {
			snprintf(err, errsz, "this node is fenced");
			return CORAL_EFENCED;
		}
		if (ms_since(t0) > 60000) {
			snprintf(err, errsz, "node %u incarnation %" PRIu64 " is still a member after 60 s", x->p[k].lost,
				 x->p[k].inc);
			return CORAL_ETIMEDOUT;
		}
		sleep_ms(10);
	}
	return CORAL_ECANCELED;
}

static bool rebuilding(const struct coral_grd_dir *d)
{
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if (atomic_load(&d->bstate[b]) == CORAL_GRDB_REBUILDING)
			return true;
	return false;
}

static int wait_rebuild(struct run *x)
{
	uint64_t t0 = coral_now_mono_ns(), said = 0;
	while (!stale(x)) {
		uint32_t k = 0;
		while (k < x->np && atomic_load(&x->p[k].L->gcs) == x->p[k].seq)
			k++;
		if (k == x->np && !rebuilding(x->o->dir))
			return 0;
		if (ms_since(t0) / 5000 > said) {
			said = ms_since(t0) / 5000;
			log_notice("recovery of node %u: waiting for %s's rebuild of what it mastered (%llu s)",
				   x->p[k < x->np ? k : 0].lost, k == x->np ? "grdd" : "lmsd", (unsigned long long)(said * 5));
		}
		sleep_ms(5);
	}
	return CORAL_ECANCELED;
}

/* Every thread from its checkpoint. A running node recycles its segments below its
 * checkpoint, possibly while they are read: then all is read again. */
static int first_pass(struct run *x, char *err, size_t errsz)
{
	const struct coral_conf *conf = x->o->conf;
	const char *shared = conf->storage.shared_dir;
	uint32_t ids[ONLINE_MAX_THREADS];
	int rc = 0;
	for (int attempt = 0; attempt < 5; attempt++) {
		recovery_free(x->r);
		x->r = recovery_new((uint64_t)conf->recovery.max_memory);
		if (x->r == NULL)
			return CORAL_ENOMEM;
		int n = coral_redo_threads(shared, ids, ONLINE_MAX_THREADS);
		rc = 0;
		for (int i = 0; i < n && rc == 0; i++)
			if (!lost_here(x, ids[i]) && member_active(x->o, ids[i], 0))
				rc = recovery_set_live(x->r, ids[i]);
		for (int i = 0; i < n && rc == 0; i++) {
			struct coral_redo_ckpt k;
			char why[256] = "";
			if (coral_redo_ckpt_read(shared, ids[i], &k, why, sizeof(why)) != 0)
				k.lsn = 0;
			uint64_t end = 0;
			int64_t got = recovery_read_thread(x->r, shared, ids[i], (uint64_t)conf->cache.redo_segment, k.lsn, &end,
							   why, sizeof(why));
			if (got < 0) {
				rc = (int)got;
				snprintf(err, errsz, "reading redo thread %u from LSN %llu: %s%s%s", ids[i],
					 (unsigned long long)k.lsn, coral_strerror(rc), why[0] ? ": " : "", why);
			} else {
				for (uint32_t k = 0; k < x->np; k++) {
					if (x->p[k].lost != ids[i])
						continue;
					x->p[k].lost_end = end;
					if (why[0])
						log_info("recovery of node %u: its thread ends at LSN %llu with %s", ids[i],
							 (unsigned long long)end, why);
				}
			}
		}
		if (rc == 0 || stale(x) || rc == CORAL_EFULL || rc == CORAL_ENOMEM || rc == CORAL_ECORRUPT)
			break;
		log_notice("recovery: %s; reading again", err);
	}
	if (rc != 0)
		return rc;
	recovery_plan(x->r);
	return 0;
}

static void mark(struct coral_grd_entry *e, uint32_t lost)
{
	e->flags |= CORAL_GRDE_RECOVERY;
	e->recovery_node = (uint8_t)lost;
}

static bool master_here(const struct run *x, const struct coral_resid *id, uint32_t *lost_owner)
{
	struct coral_grd_where w;
	coral_grd_lookup(x->o->map, id, &w);
	*lost_owner = w.lost_owner;
	return w.master == x->self;
}

/* Blocks of the recovery set in the lost node's buckets with no entry here are marked (an
 * entry made for them); then the loss is released: every other block of those buckets is
 * served from the disk. A marked block whose current image is with a survivor needs
 * nothing. */
static int release(struct run *x, char *err, size_t errsz)
{
	struct coral_grd_dir *d = x->o->dir;
	uint64_t nb = recovery_stats(x->r)->blocks, full = 0;
	for (uint64_t i = 0; i < nb; i++) {
		struct coral_resid id = {.type = CORAL_RES_BLOCK};
		uint32_t file, lo;
		uint64_t block;
		recovery_block(x->r, i, &file, &block);
		id.id1 = file;
		id.id2 = block;
		if (!master_here(x, &id, &lo) || !lost_here(x, lo))
			continue;
		uint32_t b = coral_resid_bucket(&id);
		coral_grd_dir_lock(d, b);
		struct coral_grd_entry *e = coral_grd_dir_find(d, &id);
		if (e == NULL && (e = coral_grd_dir_insert(d, &id)) == NULL) {
			full++;
		} else if (!(e->flags & CORAL_GRDE_RECOVERY) && e->holders == 0 && e->pi == 0 &&
			   (e->cur == 0 || lost_here(x, e->cur)) && e->op_phase == 0) {
			mark(e, lo);
			coral_grd_dir_touch(d, e);
		}
		coral_grd_dir_unlock(d, b);
	}
	if (full) {
		snprintf(err, errsz,
			 "the directory is full: %llu blocks to recover have no entry; the lost node's buckets stay "
			 "unavailable (raise [grd] directory_entries)",
			 (unsigned long long)full);
		return CORAL_EFULL;
	}
	for (uint32_t k = 0; k < x->np; k++)
		atomic_store(&x->p[k].L->released, x->p[k].seq);
	/* marked blocks of the lost buckets whose current image a survivor has, and those no
	 * thread changed since its checkpoint (a lost node may have written them, or held them:
	 * every change of theirs is on disk then, and the disk is current). Only the lost
	 * buckets this node masters now, along their chains: a block marked elsewhere (the lost
	 * node held it in X) is looked at by the apply, which leaves one with no change as it is */
	uint64_t n = 0, ondisk = 0;
	const struct coral_grd_map_sga *map = x->o->map;
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		if (!lost_here(x, map->lost_owner[b]) || map->owner[b] != x->self)
			continue;
		coral_grd_dir_lock(d, b);
		for (struct coral_grd_entry *e = coral_grd_dir_first(d, b); e != NULL; e = coral_grd_dir_next(d, e)) {
			bool ours = (e->flags & CORAL_GRDE_USED) && (e->flags & CORAL_GRDE_RECOVERY) &&
				    lost_here(x, e->recovery_node) && coral_resid_is_block(&e->id) &&
				    !(e->op_phase != 0 && (lost_here(x, e->op_node) || lost_here(x, e->cur)));
			bool survivor = ours && e->cur != 0 && !lost_here(x, e->cur);
			bool clean = ours && !survivor && recovery_find(x->r, (uint32_t)e->id.id1, e->id.id2) < 0;
			if (survivor || clean) {
				e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
				e->recovery_node = 0;
				if (clean)
					e->cur = 0;
				coral_grd_dir_touch(d, e);
				n += survivor;
				ondisk += clean;
			}
		}
		coral_grd_dir_unlock(d, b);
	}
	char who[96];
	if (n || ondisk)
		log_info("recovery of %s: released %llu blocks whose current image a survivor has and %llu with no change "
			 "since the checkpoints (the disk is current)", nodes_str(x, who, sizeof(who)), (unsigned long long)n,
			 (unsigned long long)ondisk);
	return 0;
}

static int file_fd(struct run *x, uint32_t file, char *err, size_t errsz)
{
	for (uint32_t k = 0; k < x->cf->nfiles; k++) {
		if (x->cf->files[k].id != file)
			continue;
		if (x->fds[k] < 0) {
			char path[CORAL_STR_MAX + 64];
			coral_datafile_path(x->o->conf, x->cf->files[k].name, path, sizeof(path));
			x->fds[k] = open(path, O_RDWR | O_CLOEXEC);
			if (x->fds[k] < 0) {
				snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
				return CORAL_EIO;
			}
		}
		return x->fds[k];
	}
	snprintf(err, errsz, "no data file %u in the control file", file);
	return CORAL_ENOENT;
}

/* The marked blocks this node masters. */
static int collect(struct run *x, char *err, size_t errsz)
{
	struct coral_grd_dir *d = x->o->dir;
	uint64_t cap = 256;
	x->todo = malloc(cap * sizeof(*x->todo));
	if (x->todo == NULL)
		return CORAL_ENOMEM;
	for (uint32_t i = 0; i < d->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(d, i);
		if (!(e->flags & CORAL_GRDE_RECOVERY) || !lost_here(x, e->recovery_node) || !coral_resid_is_block(&e->id))
			continue;
		uint32_t b = e->bucket;
		coral_grd_dir_lock(d, b);
		struct coral_resid id = e->id;
		bool ok = (e->flags & CORAL_GRDE_USED) && (e->flags & CORAL_GRDE_RECOVERY) && lost_here(x, e->recovery_node);
		coral_grd_dir_unlock(d, b);
		uint32_t lo;
		if (!ok || !master_here(x, &id, &lo))
			continue;
		if (x->ntodo == cap) {
			struct coral_resid *p = realloc(x->todo, 2 * cap * sizeof(*p));
			if (p == NULL) {
				snprintf(err, errsz, "out of memory");
				return CORAL_ENOMEM;
			}
			x->todo = p;
			cap *= 2;
		}
		x->todo[x->ntodo++] = id;
	}
	/* the data files, opened here once (the workers only read and write through them) */
	for (uint64_t i = 0; i < x->ntodo; i++) {
		int fd = file_fd(x, (uint32_t)x->todo[i].id1, err, errsz);
		if (fd < 0)
			return fd;
	}
	return 0;
}

static void fail(struct run *x, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct run *x, int rc, const char *fmt, ...)
{
	pthread_mutex_lock(&x->err_mu);
	if (atomic_load(&x->failed) == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(x->err, sizeof(x->err), fmt, ap);
		va_end(ap);
		atomic_store(&x->failed, rc);
	}
	pthread_mutex_unlock(&x->err_mu);
}

/* One block: its disk image brought up to date, written if that changed it, and its
 * master's entry released with the disk as the current image. */
static void apply_one(struct run *x, const struct coral_resid *id, uint8_t *img)
{
	uint32_t file = (uint32_t)id->id1;
	uint64_t block = id->id2;
	uint32_t bs = x->cf->block_size;
	char err[256];
	struct coral_grd_dir *d = x->o->dir;
	uint32_t b = coral_resid_bucket(id);
	/* one whose current image a survivor has (marked outside the lost buckets, which the
	 * release does not walk) needs nothing: released as it is */
	coral_grd_dir_lock(d, b);
	struct coral_grd_entry *e = coral_grd_dir_find(d, id);
	bool survivor = e && (e->flags & CORAL_GRDE_RECOVERY) && lost_here(x, e->recovery_node) && e->cur != 0 &&
			!lost_here(x, e->cur) && !(e->op_phase != 0 && lost_here(x, e->op_node));
	if (survivor) {
		e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
		e->recovery_node = 0;
		coral_grd_dir_touch(d, e);
	}
	coral_grd_dir_unlock(d, b);
	if (survivor) {
		atomic_fetch_add(&x->o->blocks_done, 1);
		return;
	}
	int fd = file_fd(x, file, err, sizeof(err));
	int rc = fd < 0 ? fd : coral_block_read(fd, bs, file, block, img, err, sizeof(err));
	if (rc != 0) {
		fail(x, rc, "block %u:%llu: %s", file, (unsigned long long)block, err);
		return;
	}
	struct coral_block_hdr *h = (struct coral_block_hdr *)img;
	uint64_t before = h->scn;
	int64_t i = recovery_find(x->r, file, block);
	if (i >= 0 && (rc = recovery_apply(x->r, (uint64_t)i, img, bs)) != 0) {
		fail(x, rc, "block %u:%llu: its redo does not fit it: %s", file, (unsigned long long)block, coral_strerror(rc));
		return;
	}
	if (h->scn != before && (rc = coral_block_write(fd, bs, img, err, sizeof(err))) != 0) {
		fail(x, rc, "block %u:%llu: %s", file, (unsigned long long)block, err);
		return;
	}
	coral_grd_dir_lock(d, b);
	e = coral_grd_dir_find(d, id);
	if (e && (e->flags & CORAL_GRDE_RECOVERY) && lost_here(x, e->recovery_node)) {
		e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
		e->recovery_node = 0;
		/* a transfer for or from a lost node is over: its requester (a survivor) asks
		 * again and is granted the disk's image */
		if (e->op_phase != 0 && (lost_here(x, e->op_node) || lost_here(x, e->cur))) {
			e->op_phase = 0;
			e->op_node = 0;
		}
		if (lost_here(x, e->cur))
			e->cur = 0;
		if (h->scn > e->disk_scn)
			e->disk_scn = h->scn;
		coral_grd_dir_touch(d, e);
	}
	coral_grd_dir_unlock(d, b);
	atomic_fetch_add(&x->o->blocks_done, 1);
}

static void *worker(void *arg)
{
	struct run *x = arg;
	uint8_t *img = malloc(x->cf->block_size);
	if (img == NULL) {
		fail(x, CORAL_ENOMEM, "out of memory");
		return NULL;
	}
	for (;;) {
		uint64_t i = atomic_fetch_add(&x->next, 1);
		if (i >= x->ntodo || atomic_load(&x->failed) != 0 || stale(x))
			break;
		apply_one(x, &x->todo[i], img);
	}
	free(img);
	return NULL;
}

static int apply(struct run *x, char *err, size_t errsz)
{
	int rc = collect(x, err, errsz);
	if (rc != 0)
		return rc;
	atomic_store(&x->o->blocks, x->ntodo);
	pthread_mutex_lock(&x->o->mu);
	x->o->apply_ns = coral_now_mono_ns();
	pthread_mutex_unlock(&x->o->mu);
	uint32_t nw = (uint32_t)x->o->conf->recovery.workers;
	if (nw > x->ntodo)
		nw = x->ntodo ? (uint32_t)x->ntodo : 1;
	pthread_t th[64];
	uint32_t started = 0;
	for (uint32_t k = 1; k < nw && k < 64; k++)
		if (pthread_create(&th[started], NULL, worker, x) == 0)
			started++;
	worker(x);
	for (uint32_t k = 0; k < started; k++)
		pthread_join(th[k], NULL);
	if ((rc = atomic_load(&x->failed)) != 0) {
		snprintf(err, errsz, "%s", x->err);
		return rc;
	}
	if (stale(x))
		return CORAL_ECANCELED;
	for (uint32_t k = 0; k < x->cf->nfiles; k++)
		if (x->fds[k] >= 0 && fdatasync(x->fds[k]) != 0) {
			snprintf(err, errsz, "syncing data file %s: %s", x->cf->files[k].name, strerror(errno));
			return coral_err_from_errno(errno);
		}
	return 0;
}

/* lmsd has written every image here that may hold a lost node's changes (a dirty image
 * that came from another node, a past image): once its thread closes, no recovery reads
 * them from it again, and this node may be lost next (gcs.h, gcs_core_loss_flushed). */
static int wait_flushed(struct run *x, char *err, size_t errsz)
{
	uint64_t t0 = coral_now_mono_ns(), said = 0;
	while (!stale(x)) {
		uint32_t k = 0;
		while (k < x->np && atomic_load(&x->p[k].L->flushed) == x->p[k].seq)
			k++;
		if (k == x->np)
			return 0;
		uint64_t left = atomic_load(&x->p[k].L->flush_left);
		if ((int64_t)ms_since(t0) > x->o->conf->recovery.peers_wait_ms) {
			snprintf(err, errsz, "lmsd has not written back the %llu blocks here that may hold node %u's "
				 "changes after %lld ms", (unsigned long long)left, x->p[k].lost,
				 (long long)x->o->conf->recovery.peers_wait_ms);
			return CORAL_ETIMEDOUT;
		}
		if (ms_since(t0) / 5000 > said) {
			said = ms_since(t0) / 5000;
			log_notice("recovery of node %u: lmsd still has %llu blocks to write that may hold its changes (%llu s)",
				   x->p[k].lost, (unsigned long long)left, (unsigned long long)(said * 5));
		}
		sleep_ms(10);
	}
	return CORAL_ECANCELED;
}

/* The claimer: every other survivor's part done. */
static int wait_peers(struct run *x, const struct part *p, char *err, size_t errsz)
{
	uint64_t t0 = coral_now_mono_ns();
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "recovery/%u/done/", p->lost);
	while (!stale(x)) {
		struct coral_kv_req r;
		coral_kv_list(&r, prefix, false);
		Coral__CtlResponse *resp = NULL;
		int rc = kv_call(x, &r, &resp, err, errsz);
		uint64_t done = 0;
		if (rc == 0) {
			for (size_t i = 0; i < resp->kv->n_kv; i++) {
				const Coral__RegKV *kv = resp->kv->kv[i];
				unsigned id;
				struct claim_val c;
				if (sscanf(kv->key + strlen(prefix), "%u", &id) == 1 && id >= 1 && id <= CORAL_MAX_NODES &&
				    parse_claim(kv->value.data, kv->value.len, &c) && c.inc == p->inc)
					done |= 1ull << (id - 1);
			}
		}
		if (resp)
			coral_ctl_response_free(resp);
		struct coral_cluster_view v;
		coral_cluster_read(x->o->cl, &v);
		uint64_t missing = 0;
		for (uint32_t i = 0; i < v.nmembers; i++)
			if (v.members[i].state == CORAL_MEMBER_ACTIVE && !lost_here(x, v.members[i].id) &&
			    !(done & (1ull << (v.members[i].id - 1))))
				missing |= 1ull << (v.members[i].id - 1);
		if (rc == 0 && missing == 0)
			return 0;
		if ((int64_t)ms_since(t0) > x->o->conf->recovery.peers_wait_ms) {
			snprintf(err, errsz, "the other survivors have not all done their part after %lld ms (missing: %#llx)",
				 (long long)x->o->conf->recovery.peers_wait_ms, (unsigned long long)missing);
			return CORAL_ETIMEDOUT;
		}
		sleep_ms(20);
	}
	return CORAL_ECANCELED;
}

/* Not the claimer: waits until the claimer says the recovery is done (0), or takes the claim
 * over if its node is no longer a member (1), bounded by [recovery] peers_wait_ms. */
static int watch_claimer(struct run *x, struct part *p, char *err, size_t errsz)
{
	char key[64];
	snprintf(key, sizeof(key), "recovery/%u", p->lost);
	uint64_t t0 = coral_now_mono_ns();
	while (!stale(x)) {
		struct coral_kv_req r;
		coral_kv_get(&r, key, false);
		Coral__CtlResponse *resp = NULL;
		int rc = kv_call(x, &r, &resp, err, errsz);
		struct claim_val c = {0};
		bool ok = rc == 0 && resp->kv->n_kv == 1 &&
			  parse_claim(resp->kv->kv[0]->value.data, resp->kv->kv[0]->value.len, &c);
		if (resp)
			coral_ctl_response_free(resp);
		if ((ok && c.inc == p->inc && strcmp(c.state, "done") == 0) || atomic_load(&p->L->done) == p->seq)
			return 0;
		if (ok && c.inc == p->inc && !member_active(x->o, c.claimer, c.claimer_inc)) {
			log_notice("recovery of node %u: its claimer, node %u, is gone before it closed the thread: "
				   "taking over", p->lost, c.claimer);
			int got = claim(x, p, err, errsz);
			if (got != 0)
				return got;
		}
		if ((int64_t)ms_since(t0) > x->o->conf->recovery.peers_wait_ms) {
			snprintf(err, errsz, "the claimer of node %u's thread, node %u, has not closed it after %lld ms",
				 p->lost, c.claimer, (long long)x->o->conf->recovery.peers_wait_ms);
			return CORAL_ETIMEDOUT;
		}
		sleep_ms(50);
	}
	return CORAL_ECANCELED;
}

/* The claimer: the lost thread closed at its end, and grdd's lost state ended. */
static int close_thread(struct run *x, const struct part *p, char *err, size_t errsz)
{
	const char *shared = x->o->conf->storage.shared_dir;
	char dir[CORAL_STR_MAX + 64];
	coral_redo_thread_dir(shared, p->lost, dir, sizeof(dir));
	int rc = coral_redo_ckpt_write(dir, p->lost, p->lost_end, coral_now_real_ns(), recovery_stats(x->r)->max_scn, err,
				       errsz);
	if (rc != 0)
		return rc;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GrdRemasterRequest body = CORAL__GRD_REMASTER_REQUEST__INIT;
	body.target = (char *)"";
	body.node = p->lost;
	body.recovered = true;
	req.body_case = CORAL__CTL_REQUEST__BODY_GRD_REMASTER;
	req.grd_remaster = &body;
	char sock[CORAL_STR_MAX + 64];
	coral_conf_sock_path(x->o->node, "grdd", sock, sizeof(sock));
	for (int tries = 0; tries < 50 && !stale(x); tries++) {
		Coral__CtlResponse *resp = NULL;
		rc = coral_ctl_call(sock, &req, (size_t)x->o->conf->cluster.max_frame, 10000, &resp, err, errsz);
		if (rc == 0) {
			rc = resp->code;
			if (rc != 0)
				snprintf(err, errsz, "grdd: %s", resp->error ? resp->error : coral_strerror(rc));
			coral_ctl_response_free(resp);
		}
		if (rc == 0 || rc == CORAL_ENOENT) /* ENOENT: no longer listed as lost */
			return 0;
		sleep_ms(200);
	}
	return rc;
}

/* The claimer's end of one lost node: every survivor's part, the thread closed, the claim
 * recorded done (raftd's history names the recovery). */
static int finish(struct run *x, struct part *p, char *err, size_t errsz)
{
	set_phase(x, ONL_PEERS);
	int rc = wait_peers(x, p, err, errsz);
	if (rc != 0)
		return rc;
	set_phase(x, ONL_CLOSE);
	if ((rc = close_thread(x, p, err, errsz)) != 0)
		return rc;
	char key[64];
	snprintf(key, sizeof(key), "recovery/%u", p->lost);
	if (kv_write(x, p, key, "done", 0, false, err, errsz) != 0)
		log_warn("recovery of node %u: recording it done in raftd: %s", p->lost, err);
	p->finished = true;
	atomic_store(&p->L->done, p->seq);
	return 0;
}

static int recover(struct run *x, char *err, size_t errsz)
{
	struct smond_online *o = x->o;
	set_phase(x, ONL_FENCE);
	int rc = wait_fence(x, err, errsz);
	if (rc != 0)
		return rc;
	ev_set(x, &o->ev.fence_ms);
	/* the first pass needs only the lost threads to have ended: it runs while lmsd and
	 * grdd rebuild, and the release follows the later of the two */
	set_phase(x, ONL_READ);
	uint64_t t_read = coral_now_mono_ns();
	if ((rc = first_pass(x, err, errsz)) != 0)
		return rc;
	const struct recovery_stats *st = recovery_stats(x->r);
	pthread_mutex_lock(&o->mu);
	o->ev.first_pass_ms = ms_since(o->started_ns);
	o->ev.read_ms = ms_since(t_read);
	o->ev.records = st->records;
	o->ev.bytes = st->bytes;
	pthread_mutex_unlock(&o->mu);
	set_phase(x, ONL_REBUILD);
	if ((rc = wait_rebuild(x)) != 0)
		return rc;
	ev_set(x, &o->ev.rebuild_ms);
	set_phase(x, ONL_RELEASE);
	if ((rc = release(x, err, errsz)) != 0)
		return rc;
	ev_set(x, &o->ev.release_ms);
	set_phase(x, ONL_CLAIM);
	bool any = false;
	for (uint32_t k = 0; k < x->np; k++) {
		int claimed = claim(x, &x->p[k], err, errsz);
		if (claimed < 0)
			return claimed;
		x->p[k].claimer = claimed == 1;
		any |= claimed == 1;
	}
	pthread_mutex_lock(&o->mu);
	o->ev.claimer = any;
	pthread_mutex_unlock(&o->mu);
	set_phase(x, ONL_APPLY);
	uint64_t t_apply = coral_now_mono_ns();
	if ((rc = apply(x, err, errsz)) != 0)
		return rc;
	pthread_mutex_lock(&o->mu);
	o->ev.done_ms = ms_since(o->started_ns);
	o->ev.apply_ms = ms_since(t_apply);
	o->ev.blocks = x->ntodo;
	o->ev.applied = st->applied;
	o->ev.skipped = st->skipped;
	o->ev.txns = st->txns;
	o->ev.txns_open = st->txns_open;
	o->ev.undone = st->undone;
	o->ev.kept = st->kept;
	pthread_mutex_unlock(&o->mu);
	set_phase(x, ONL_FLUSH);
	if ((rc = wait_flushed(x, err, errsz)) != 0)
		return rc;
	for (uint32_t k = 0; k < x->np; k++) {
		char key[64];
		snprintf(key, sizeof(key), "recovery/%u/done/%u", x->p[k].lost, x->self);
		for (int tries = 0; tries < 50 && (rc = kv_write(x, &x->p[k], key, "done", 0, false, err, errsz)) != 0 &&
				    !stale(x);
		     tries++)
			sleep_ms(100);
		if (rc != 0)
			return rc;
	}
	x->closing = true;
	/* the threads this node claimed first (another claimer may be waiting for this node's
	 * part of its own, never the other way round), then the others' */
	for (uint32_t k = 0; k < x->np; k++)
		if (x->p[k].claimer && (rc = finish(x, &x->p[k], err, errsz)) != 0)
			return rc;
	for (uint32_t k = 0; k < x->np; k++) {
		struct part *p = &x->p[k];
		if (p->claimer)
			continue;
		/* the claimer closes the thread; if it is lost before, this node takes over */
		set_phase(x, ONL_CLAIMER);
		int claimed = watch_claimer(x, p, err, errsz);
		if (claimed < 0)
			return claimed;
		if (claimed == 0) {
			p->finished = true;
			atomic_store(&p->L->done, p->seq);
			continue;
		}
		p->claimer = true;
		pthread_mutex_lock(&o->mu);
		o->ev.claimer = true;
		pthread_mutex_unlock(&o->mu);
		if ((rc = finish(x, p, err, errsz)) != 0)
			return rc;
	}
	return 0;
}

static void *run_thread(void *arg)
{
	struct run *x = arg;
	struct smond_online *o = x->o;
	char err[512] = "";
	int rc = recover(x, err, sizeof(err));
	pthread_mutex_lock(&o->mu);
	o->ev.total_ms = ms_since(o->started_ns);
	if (rc == 0)
		snprintf(o->ev.result, sizeof(o->ev.result), "done");
	else if (rc == CORAL_ECANCELED)
		snprintf(o->ev.result, sizeof(o->ev.result), "abandoned: %s",
			 atomic_load(&o->stop) ? "smond stopped" : "a newer loss (recovered with it), or the loss ended elsewhere");
	else
		snprintf(o->ev.result, sizeof(o->ev.result), "%s: %s", coral_strerror(rc), err);
	pthread_mutex_unlock(&o->mu);
	for (uint32_t k = 0; x->cf && k < x->cf->nfiles; k++)
		if (x->fds[k] >= 0)
			close(x->fds[k]);
	recovery_free(x->r);
	free(x->cf);
	free(x->todo);
	pthread_mutex_destroy(&x->err_mu);
	free(x);
	atomic_store(&o->finished, true);
	return NULL;
}

/* ---- the loop's side ------------------------------------------------------------------ */

int smond_online_init(struct smond_online *o)
{
	return pthread_mutex_init(&o->mu, NULL) == 0 ? 0 : CORAL_ESYS;
}

/* A recovery of every loss not yet recovered (mask: their nodes). */
static void start(struct smond_online *o, uint64_t mask)
{
	struct run *x = calloc(1, sizeof(*x));
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	char err[512];
	if (x == NULL || cf == NULL || coral_ctlfile_load(o->conf, cf, err, sizeof(err)) != 0) {
		if (x && cf)
			log_error("recovery: the control file: %s", err);
		free(x);
		free(cf);
		return;
	}
	struct coral_cluster_view v;
	coral_cluster_read(o->cl, &v);
	*x = (struct run){.o = o, .self = (uint32_t)o->node->id, .self_inc = v.incarnation, .mask = mask, .cf = cf};
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (!(mask & (1ull << (n - 1))))
			continue;
		struct coral_grd_loss *L = &o->dir->loss[n - 1];
		x->p[x->np++] = (struct part){.lost = n, .seq = atomic_load(&L->seq), .inc = atomic_load(&L->incarnation),
					      .L = L};
	}
	for (uint32_t k = 0; k < CORAL_MAX_DATAFILES; k++)
		x->fds[k] = -1;
	pthread_mutex_init(&x->err_mu, NULL);
	o->mask = mask;
	for (uint32_t k = 0; k < x->np; k++)
		o->seqs[x->p[k].lost - 1] = x->p[k].seq;
	o->started_ns = coral_now_mono_ns();
	o->apply_ns = 0;
	atomic_store(&o->blocks, 0);
	atomic_store(&o->blocks_done, 0);
	atomic_store(&o->finished, false);
	o->ev = (struct rcv_event){.kind = "lost node", .at_ms = coral_now_real_ns() / 1000000ull, .threads = x->np,
				   .lost_node = x->p[0].lost, .lost_inc = x->p[0].inc};
	char who[96];
	nodes_str(x, who, sizeof(who));
	snprintf(o->who, sizeof(o->who), "%s", who);
	log_notice("recovery of %s begins", who);
	if (pthread_create(&o->th, NULL, run_thread, x) != 0) {
		log_error("recovery of %s: no thread: %s", who, strerror(errno));
		pthread_mutex_destroy(&x->err_mu);
		free(cf);
		free(x);
		return;
	}
	o->running = true;
}

void smond_online_step(struct smond_online *o)
{
	if (o->running) {
		if (!atomic_load(&o->finished))
			return;
		pthread_join(o->th, NULL);
		o->running = false;
		atomic_store(&o->phase, 0);
		struct rcv_event ev = o->ev;
		bool ok = strcmp(ev.result, "done") == 0;
		/* one entry per lost node, each naming the others recovered with it */
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
			if (!(o->mask & (1ull << (n - 1))))
				continue;
			struct rcv_event e = ev;
			e.lost_node = n;
			e.lost_inc = atomic_load(&o->dir->loss[n - 1].incarnation);
			if (ok && ev.threads > 1)
				snprintf(e.result, sizeof(e.result), "done (%s together)", o->who);
			rcv_history_add(o->history, &e);
		}
		if (ok)
			log_notice("recovery of %s: done in %llu ms (fenced at %llu ms, rebuilt at %llu, first pass "
				   "at %llu: %llu records; unaffected released at %llu; %llu blocks recovered here at "
				   "%llu: %llu changes applied, %llu taken back)%s",
				   o->who, (unsigned long long)ev.total_ms, (unsigned long long)ev.fence_ms,
				   (unsigned long long)ev.rebuild_ms, (unsigned long long)ev.first_pass_ms,
				   (unsigned long long)ev.records, (unsigned long long)ev.release_ms,
				   (unsigned long long)ev.blocks, (unsigned long long)ev.done_ms,
				   (unsigned long long)ev.applied, (unsigned long long)ev.undone,
				   ev.claimer ? "; its thread closed by this node" : "");
		else
			log_error("recovery of %s: %s", o->who, ev.result);
		return;
	}
	if (coral_cluster_fenced(o->cl))
		return;
	uint64_t mask = 0;
	bool fresh = false;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		struct coral_grd_loss *L = &o->dir->loss[n - 1];
		uint64_t seq = atomic_load(&L->seq);
		if (n == (uint32_t)o->node->id || seq == 0 || seq == atomic_load(&L->done))
			continue;
		mask |= 1ull << (n - 1);
		fresh |= !(o->mask & (1ull << (n - 1))) || o->seqs[n - 1] != seq;
	}
	/* one that failed is tried again, no sooner than a second after */
	if (mask == 0 || (!fresh && ms_since(o->started_ns) < 1000))
		return;
	start(o, mask);
}

void smond_online_fini(struct smond_online *o)
{
	atomic_store(&o->stop, true);
	if (o->running) {
		pthread_join(o->th, NULL);
		o->running = false;
	}
	pthread_mutex_destroy(&o->mu);
}

bool smond_online_current(struct smond_online *o, struct rcv_event *ev, const char **phase, uint64_t *done,
			  uint64_t *eta_ms)
{
	if (!o->running)
		return false;
	pthread_mutex_lock(&o->mu);
	*ev = o->ev;
	uint64_t apply_ns = o->apply_ns;
	pthread_mutex_unlock(&o->mu);
	int p = atomic_load(&o->phase);
	*phase = p > 0 && p < (int)CORAL_ARRAY_LEN(phase_names) ? phase_names[p] : "starting";
	*done = atomic_load(&o->blocks_done);
	ev->blocks = atomic_load(&o->blocks);
	ev->total_ms = ms_since(o->started_ns);
	*eta_ms = 0;
	if (p == ONL_APPLY && apply_ns && *done > 0 && ev->blocks > *done) {
		uint64_t spent = (coral_now_mono_ns() - apply_ns) / 1000000ull;
		*eta_ms = spent * (ev->blocks - *done) / *done;
	}
	return true;
}

int smond_online_wait_own(const struct coral_conf *conf, uint32_t thread, uint64_t end, int64_t wait_ms)
{
	uint64_t t0 = coral_now_mono_ns();
	for (;;) {
		struct coral_redo_ckpt k;
		char err[256];
		if (coral_redo_ckpt_read(conf->storage.shared_dir, thread, &k, err, sizeof(err)) == 0 && k.lsn >= end)
			return 0;
		if ((int64_t)ms_since(t0) >= wait_ms)
			return CORAL_ETIMEDOUT;
		sleep_ms(100);
	}
}
