/* replicad: the node's redo. How it is wired: a worker thread runs the log writer
 * (log_writer.c), which group-commits the redo buffer in the SGA to the node's redo thread
 * in shared storage and wakes every committer waiting for it, and stops writing while the
 * node is fenced; the event loop answers control requests (redo status). Shipping redo to
 * standbys is a later part of this daemon. */
#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "log_writer.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct replicad {
	struct coral_daemon *d;
	struct coral_redo *redo;
	struct coral_cluster_sga *cl;
	struct log_writer *w;
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	_Atomic uint64_t last_error_ms;
};

/* Follows raftd's fence: a fenced node writes nothing to its redo thread in shared storage
 * (once evicted, another node's instance recovery reads that thread), and its committers
 * are told at once instead of timing out. True while fenced. */
static bool writer_fenced(struct replicad *r)
{
	bool fenced = coral_cluster_fenced(r->cl);
	if (fenced != (atomic_load(&r->redo->fenced) != 0)) {
		char why[192];
		bool joining = coral_cluster_fence_reason(r->cl, why, sizeof(why));
		if (fenced && joining)
			log_info("the node is fenced until it has joined: no redo written yet");
		else if (fenced)
			log_warn("the node is fenced (%s): redo writes stop (%llu bytes appended, not durable)", why,
				 (unsigned long long)(atomic_load(&r->redo->tail) - atomic_load(&r->redo->durable)));
		else
			log_notice("the node is unfenced: redo is written");
		coral_redo_set_fenced(r->redo, fenced);
	}
	return fenced;
}

/* While fenced: once raftd has evicted the incarnation the writer wrote under, the redo
 * appended under it and not durable is not the thread's any more. The others recovered
 * the thread without it and its sessions' commits failed (libcoral: evicted since the
 * transaction began); written after the node joins again it would lie past the thread's
 * checkpoint as changes nobody applied, for the next recovery of this thread to apply over
 * newer images. So it is dropped here, while fenced, before any session of the next
 * incarnation can append (replicad(8), RESTART). */
static void drop_evicted_tail(struct replicad *r)
{
	struct coral_cluster_view v;
	coral_cluster_read(r->cl, &v);
	uint64_t wi = atomic_load(&r->redo->writer_inc);
	if (wi == 0 || v.evicted_inc < wi)
		return;
	uint64_t n = coral_redo_drop_tail(r->redo);
	atomic_store(&r->redo->writer_inc, 0);
	if (n > 0)
		log_warn("incarnation %llu of this node was evicted: the %llu bytes of redo appended under it and not "
			 "written are dropped (the other nodes recovered the thread without them; their commits failed)",
			 (unsigned long long)wi, (unsigned long long)n);
}

/* Unfenced: the incarnation written under from now on. */
static void note_incarnation(struct replicad *r)
{
	struct coral_cluster_view v;
	coral_cluster_read(r->cl, &v);
	uint64_t wi = atomic_load(&r->redo->writer_inc);
	if (v.incarnation == 0 || wi == v.incarnation)
		return;
	if (wi != 0 && v.evicted_inc >= wi && atomic_load(&r->redo->tail) > atomic_load(&r->redo->durable))
		log_error("this node's incarnation %llu was evicted while no log writer ran: the redo appended under it "
			  "and not written cannot be told from the next incarnation's, and is written (the next recovery "
			  "of this thread may apply changes whose commits failed)", (unsigned long long)wi);
	atomic_store(&r->redo->writer_inc, v.incarnation);
}

/* The writer: nothing else runs in this thread, so a slow disk never stalls the loop. */
static void *writer_main(void *arg)
{
	struct replicad *r = arg;
	uint64_t errors = 0, ckpt_errors = 0, recycled = 0;
	bool was_fenced = true;
	while (!atomic_load(&r->stop)) {
		if (writer_fenced(r)) {
			drop_evicted_tail(r);
			was_fenced = true;
			struct timespec ts = {0, 10 * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		if (was_fenced) {
			note_incarnation(r);
			was_fenced = false;
		}
		int64_t n = log_writer_step(r->w, 50);
		if (n >= 0 && log_writer_keep_ckpt(r->w, false) != 0 && ckpt_errors++ % 100 == 0)
			log_error("the redo thread's checkpoint cannot be kept: %s", log_writer_error(r->w));
		if (log_writer_recycled(r->w) != recycled) {
			log_info("%llu redo segment(s) recycled, wholly below the checkpoint",
				 (unsigned long long)(log_writer_recycled(r->w) - recycled));
			recycled = log_writer_recycled(r->w);
		}
		if (n < 0) {
			/* nothing is acknowledged that is not durable: committers give up with the cause
			 * after [cache] log_error_ms and the writer tries again, so that the node goes
			 * on when space returns; the error is logged, not hidden */
			if (errors++ % 100 == 0)
				log_error("the redo thread cannot be written (%s): %s; trying again", coral_strerror((int)n),
					  log_writer_error(r->w));
			struct timespec ts = {0, 10 * 1000000L};
			nanosleep(&ts, NULL);
		} else if (n > 0 && errors > 0) {
			log_notice("the redo thread is written again after %llu failed attempts", (unsigned long long)errors);
			errors = 0;
		}
	}
	/* what is appended before a clean stop still goes out, unless fenced */
	while (!writer_fenced(r) && log_writer_step(r->w, 0) > 0)
		;
	if (!writer_fenced(r))
		log_writer_keep_ckpt(r->w, true);
	return NULL;
}

static int replicad_init(struct coral_daemon *d)
{
	struct replicad *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return CORAL_ENOMEM;
	d->svc = r;
	r->d = d;
	r->redo = coral_redo_sga(&d->sga);
	r->cl = coral_cluster_sga(&d->sga);
	if (r->redo == NULL) {
		log_error("the SGA has no redo section: restart the node");
		return CORAL_EVERSION;
	}
	char err[CORAL_ERRMSG_MAX];
	int rc = log_writer_open(r->redo, d->conf.storage.shared_dir, (uint32_t)d->node->id,
					(uint64_t)d->conf.cache.redo_segment, &r->w, err, sizeof(err));
	if (rc != 0) {
		log_error("redo thread %lld: %s", (long long)d->node->id, err);
		return rc;
	}
	atomic_store(&r->redo->fail_after_ms, (uint32_t)d->conf.cache.log_error_ms);
	log_info("redo thread %lld opened at LSN %llu under %s/redo", (long long)d->node->id,
		 (unsigned long long)atomic_load(&r->redo->durable), d->conf.storage.shared_dir);
	if (pthread_create(&r->thread, NULL, writer_main, r) != 0)
		return CORAL_ESYS;
	r->started = true;
	return 0;
}

static void replicad_fini(struct coral_daemon *d)
{
	struct replicad *r = d->svc;
	if (r == NULL)
		return;
	if (r->started) {
		atomic_store(&r->stop, true);
		coral_redo_kick(r->redo);
		pthread_join(r->thread, NULL);
	}
	if (r->redo)
		atomic_store(&r->redo->writer_pid, 0);
	log_writer_close(r->w);
	free(r);
	d->svc = NULL;
}

static const struct coral_daemon_def replicad_def = {
	.id = CORAL_D_REPLICAD,
	.service = "log writer: group commit of the node's redo thread (shipping to standbys: not yet)",
	.service_ready = true,
	.init = replicad_init,
	.fini = replicad_fini,
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &replicad_def);
}
