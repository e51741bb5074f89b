/* A standby's apply, wired (repl.h): a thread of replicad's own, so that a slow disk never
 * stalls the receiver. Every 20 ms it reads each copy of the primary's threads from where it
 * stopped up to what the receiver made durable, gives the records and the marks to the core
 * (apply.c), and writes the batch it releases to the copy of the data files, block by block,
 * then syncs them. Its state (apply.state, written whole: a temporary file, fsync, rename) is
 * the applied SCN, where each thread is read again from after a restart, and the SCN a batch
 * written in part may have brought some blocks to (written before the batch: until the
 * applied SCN passes it again, the copy is not a state the primary was in, and says so).
 *
 * Seeding: the copy of the data files is made from the primary's shared storage as this node
 * sees it (a mount), while the primary runs: the threads' checkpoints are read first, then
 * every block is copied (read again until its checksum holds: a block the primary was
 * writing), then the control file; the apply reads each thread from its checkpoint, and the
 * copy is a state of the primary's once the applied SCN passes the highest block SCN copied.
 *
 * Readers of the copy (libcoral's sessions on a standby, coral-bank --check-copy through them)
 * take SHARED/standby/PRIMARY/apply.lock shared; a batch and the state around it are written
 * under it exclusive. */
#include "repl.h"

#include "apply.h"
#include "copy.h"

#include "bufcache.h"
#include "history.h"
#include "site.h"

#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "redo.h"
#include "repl.pb-c.h"
#include "storage.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct applier {
	struct coral_daemon *d;
	struct coral_redo *redo;      /* the node's: its standby flag (sessions' changes refused) */
	struct receiver *r;
	struct standby_feed *feed;
	struct coral_conf pconf;      /* the copy as a configuration: the primary's name, our dir */
	char dir[CORAL_STR_MAX + 300];
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	pthread_mutex_t mu;           /* the fields below, and the status */
	char seed_source[256];        /* a seed asked for */
	bool seed_asked, seeding;
	bool finish_asked;
	char state_text[256];
	struct coral_copy_state st;   /* as last written */
	bool seeded;
	struct apply *core;
	uint64_t fed[CORAL_MAX_NODES + 1];
	bool in_core[CORAL_MAX_NODES + 1];
	/* figures for the status */
	uint64_t blocks_written, batches, last_batch_us, moved_ns, horizon;
	uint64_t state_ns;            /* apply.state last written */
	uint32_t waiting_for;
	struct apply_stats cs;
	/* the copy's data files */
	struct coral_ctlfile *cf;
	int fds[CORAL_MAX_DATAFILES];
	int lock_fd;
	uint8_t *img;
	/* one node of a standby applies its copy (the shared one): the one holding applier.lock,
	 * taken by the node that seeds it, or that finds it seeded at its start */
	int own_fd;
	bool owns;
	struct event *ev_seed_from;   /* on the loop: the seed coralctl standby rejoin asked for */
	uint64_t reseed_ns;           /* the last seed [replication] reseed_from made */
};

/* Whether this node applies the copy (it holds applier.lock, or has just taken it). */
static bool own_copy(struct applier *a)
{
	if (a->owns)
		return true;
	if (a->own_fd < 0) {
		char p[sizeof(a->dir) + 16];
		snprintf(p, sizeof(p), "%s/applier.lock", a->dir);
		a->own_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (a->own_fd < 0)
			return false;
	}
	a->owns = flock(a->own_fd, LOCK_EX | LOCK_NB) == 0;
	return a->owns;
}

static int state_write(struct applier *a, struct coral_copy_state *s, char *err, size_t errsz)
{
	return coral_copy_state_write(a->dir, s, err, errsz);
}

static int state_read(struct applier *a, struct coral_copy_state *s) { return coral_copy_state_read(a->dir, s); }

static void set_state(struct applier *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_state(struct applier *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&a->mu);
	vsnprintf(a->state_text, sizeof(a->state_text), fmt, ap);
	pthread_mutex_unlock(&a->mu);
	va_end(ap);
}

static void close_files(struct applier *a)
{
	for (int i = 0; i < CORAL_MAX_DATAFILES; i++)
		if (a->fds[i] >= 0) {
			close(a->fds[i]);
			a->fds[i] = -1;
		}
}

/* The copy's control file and data files, opened for the batches. */
static int open_copy(struct applier *a, char *err, size_t errsz)
{
	close_files(a);
	int rc = coral_ctlfile_load(&a->pconf, a->cf, err, errsz);
	if (rc != 0)
		return rc;
	if (a->cf->nfiles == 0) {
		snprintf(err, errsz, "the copy's control file lists no data file");
		return CORAL_ENOENT;
	}
	return 0;
}

static int fd_known(struct applier *a, uint32_t file, char *err, size_t errsz);

/* A data file the primary created after the seed, made in the copy as the primary made it
 * (blocks formatted, nothing in them: every change since is in the redo), when
 * [replication] reseed_from shows the primary's control file; 0, or why not. */
static int copy_new_file(struct applier *a, uint32_t file, char *err, size_t errsz)
{
	const char *src = a->d->conf.replication.reseed_from;
	if (src[0] == '\0') {
		snprintf(err, errsz, "data file %u is not in the copy's control file (created on the primary after the seed: "
			 "seed again, or set [replication] reseed_from for the apply to make it)", file);
		return CORAL_ENOENT;
	}
	static struct coral_conf pc;
	static struct coral_ctlfile pcf;
	pc = a->pconf;
	coral_strlcpy(pc.storage.shared_dir, src, sizeof(pc.storage.shared_dir));
	int rc = coral_ctlfile_load(&pc, &pcf, err, errsz);
	if (rc != 0)
		return rc;
	uint32_t k = 0;
	while (k < pcf.nfiles && pcf.files[k].id != file)
		k++;
	if (k == pcf.nfiles) {
		snprintf(err, errsz, "data file %u is neither in the copy's control file nor in the primary's (%s)", file, src);
		return CORAL_ENOENT;
	}
	uint32_t id = 0;
	rc = coral_datafile_create(&a->pconf, pcf.files[k].name, pcf.files[k].blocks, &id, err, errsz);
	if (rc == 0 && id != file) {
		snprintf(err, errsz, "data file %s got id %u in the copy, %u on the primary: seed again", pcf.files[k].name, id,
			 file);
		rc = CORAL_EINVAL;
	}
	if (rc == 0)
		rc = coral_ctlfile_load(&a->pconf, a->cf, err, errsz);
	if (rc == 0) {
		log_notice("data file %s (id %u, %llu blocks), created on the primary after the seed, is made in the copy",
			   pcf.files[k].name, file, (unsigned long long)pcf.files[k].blocks);
		repl_history_add("file made", "%s (id %u), created on the primary after the seed", pcf.files[k].name, file);
	}
	return rc;
}

static int fd_of(struct applier *a, uint32_t file, char *err, size_t errsz)
{
	for (int pass = 0; pass < 2; pass++) {
		int fd = fd_known(a, file, err, errsz);
		if (fd != CORAL_ENOENT || pass == 1)
			return fd;
		int rc = copy_new_file(a, file, err, errsz);
		if (rc != 0)
			return rc;
	}
	return CORAL_ENOENT;
}

static int fd_known(struct applier *a, uint32_t file, char *err, size_t errsz)
{
	for (uint32_t k = 0; k < a->cf->nfiles; k++) {
		if (a->cf->files[k].id != file)
			continue;
		if (a->fds[k] < 0) {
			char path[CORAL_STR_MAX + 64];
			coral_datafile_path(&a->pconf, a->cf->files[k].name, path, sizeof(path));
			a->fds[k] = open(path, O_RDWR | O_CLOEXEC);
			if (a->fds[k] < 0) {
				snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
				return CORAL_EIO;
			}
		}
		return a->fds[k];
	}
	snprintf(err, errsz, "data file %u is not in the copy's control file (created on the primary after the seed: "
		 "seed again)", file);
	return CORAL_ENOENT;
}

/* The core from the state: each thread read again from its resume LSN. */
static void core_start(struct applier *a)
{
	apply_free(a->core);
	a->core = apply_new(a->d->conf.recovery.max_memory > 0 ? (uint64_t)a->d->conf.recovery.max_memory : 1u << 30);
	memset(a->in_core, 0, sizeof(a->in_core));
	for (uint32_t t = 1; t <= CORAL_MAX_NODES; t++)
		if (a->st.known[t]) {
			apply_start(a->core, t, a->st.resume[t], a->st.applied_scn);
			a->fed[t] = a->st.resume[t];
			a->in_core[t] = true;
		}
}

struct feed_arg {
	struct apply *core;
	uint32_t thread;
	uint64_t limit;
	int rc;
	uint64_t max_scn;
};

static int feed_fn(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	struct feed_arg *f = arg;
	if (rec->lsn > f->limit)
		return 1; /* not durable in the copy yet */
	if ((f->rc = apply_add(f->core, f->thread, rec, bytes)) != 0)
		return 1;
	if (rec->scn > f->max_scn)
		f->max_scn = rec->scn;
	return 0;
}

/* Reads what each copy has durable past where the last read stopped, and the marks. */
static int read_copies(struct applier *a, char *err, size_t errsz)
{
	struct standby_feed *fd = a->feed;
	uint64_t durable[CORAL_MAX_NODES + 1], mlsn[CORAL_MAX_NODES + 1], mscn[CORAL_MAX_NODES + 1];
	bool known[CORAL_MAX_NODES + 1];
	pthread_mutex_lock(&fd->mu);
	memcpy(durable, fd->durable, sizeof(durable));
	memcpy(mlsn, fd->mark_lsn, sizeof(mlsn));
	memcpy(mscn, fd->mark_scn, sizeof(mscn));
	memcpy(known, fd->known, sizeof(known));
	pthread_mutex_unlock(&fd->mu);
	uint64_t top = 0;
	for (uint32_t t = 1; t <= CORAL_MAX_NODES; t++) {
		if (known[t] && !a->in_core[t]) {
			/* a thread of the primary's not in the state: read from its copy's start */
			a->st.known[t] = 1;
			apply_start(a->core, t, a->st.resume[t], 0);
			a->fed[t] = a->st.resume[t];
			a->in_core[t] = true;
		}
		if (!a->in_core[t])
			continue;
		if (durable[t] > a->fed[t]) {
			struct feed_arg f = {a->core, t, durable[t], 0, 0};
			uint64_t end = a->fed[t];
			char why[256];
			int64_t n = coral_redo_scan(a->dir, t, (uint64_t)a->d->conf.cache.redo_segment, a->fed[t], feed_fn, &f,
						    &end, why, sizeof(why));
			if (f.rc != 0) {
				snprintf(err, errsz, "thread %u at LSN %llu: %s", t, (unsigned long long)end,
					 f.rc == CORAL_EFULL ? "open transactions hold more than [recovery] max_memory"
							     : coral_strerror(f.rc));
				return f.rc;
			}
			if (n == CORAL_ECORRUPT) {
				snprintf(err, errsz, "the copy of thread %u: %s", t, why);
				return CORAL_ECORRUPT;
			}
			a->fed[t] = end;
			if (f.max_scn > top)
				top = f.max_scn;
		}
		if (mscn[t] && mlsn[t] <= a->fed[t])
			apply_mark(a->core, t, mscn[t]);
	}
	if (top > atomic_load(&fd->max_scn))
		atomic_store(&fd->max_scn, top);
	return 0;
}

/* Writes a released batch: block by block, then syncs (the copy's lock held). */
static int write_batch(struct applier *a, const struct apply_change *c, size_t n, char *err, size_t errsz)
{
	uint32_t bs = a->cf->block_size;
	bool touched[CORAL_MAX_DATAFILES] = {false};
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0;) {
		size_t j = i;
		while (j < n && c[j].file == c[i].file && c[j].block == c[i].block)
			j++;
		int fd = fd_of(a, c[i].file, err, errsz);
		if (fd < 0) {
			rc = fd;
			break;
		}
		if ((rc = coral_block_read(fd, bs, c[i].file, c[i].block, a->img, err, errsz)) != 0)
			break;
		int k = apply_block(c + i, j - i, a->img, bs);
		if (k < 0) {
			snprintf(err, errsz, "block %u:%llu: a change does not fit it", c[i].file, (unsigned long long)c[i].block);
			rc = k;
			break;
		}
		if (k > 0) {
			if ((rc = coral_block_write(fd, bs, a->img, err, errsz)) != 0)
				break;
			a->blocks_written++;
			for (uint32_t f = 0; f < a->cf->nfiles; f++)
				if (a->fds[f] == fd)
					touched[f] = true;
		}
		i = j;
	}
	for (uint32_t f = 0; f < a->cf->nfiles && rc == 0; f++)
		if (touched[f] && fdatasync(a->fds[f]) != 0) {
			snprintf(err, errsz, "syncing the copy of %s: %s", a->cf->files[f].name, strerror(errno));
			rc = coral_err_from_errno(errno);
		}
	return rc;
}

static int step_locked(struct applier *a, char *err, size_t errsz);

/* Reads what came, applies what it releases. The state and the blocks change under the
 * copy's lock, exclusive: a reader holding it shared (libcoral on a standby) finds the blocks
 * at the applied SCN the state says, or the state saying the copy is between two. */
static int step(struct applier *a, char *err, size_t errsz)
{
	int rc = read_copies(a, err, errsz);
	if (rc != 0)
		return rc;
	flock(a->lock_fd, LOCK_EX);
	rc = step_locked(a, err, errsz);
	flock(a->lock_fd, LOCK_UN);
	return rc;
}

static int step_locked(struct applier *a, char *err, size_t errsz)
{
	int rc;
	const struct apply_change *c;
	uint64_t t0 = coral_now_mono_ns();
	size_t n = apply_release(a->core, &c);
	uint64_t bscn = apply_batch_scn(a->core);
	if (n > 0 && bscn > a->st.torn_scn) {
		/* written before the blocks: a crash in the middle leaves them past the applied SCN */
		a->st.torn_scn = bscn;
		if ((rc = state_write(a, &a->st, err, errsz)) != 0)
			return rc;
	}
	if (n > 0 && (rc = write_batch(a, c, n, err, errsz)) != 0)
		return rc;
	uint64_t before = apply_stats(a->core)->applied_scn;
	apply_done(a->core);
	const struct apply_stats *cs = apply_stats(a->core);
	bool moved = cs->applied_scn > before;
	uint64_t now = coral_now_mono_ns();
	/* the state with every batch; an applied SCN that moved by marks alone (no block written)
	 * at most once a second, and at once when it makes the copy consistent again (readers of
	 * the copy go by the file) */
	bool behind = cs->applied_scn != a->st.applied_scn;
	bool write = n > 0 || (behind && (now - a->state_ns > 1000000000ull ||
					  (a->st.torn_scn && cs->applied_scn >= a->st.torn_scn)));
	pthread_mutex_lock(&a->mu);
	a->cs = *cs;
	a->horizon = apply_horizon(a->core, &a->waiting_for);
	if (n > 0) {
		a->batches++;
		a->last_batch_us = (now - t0) / 1000;
	}
	if (moved || (cs->open_txns == 0 && cs->pending_bytes == 0))
		a->moved_ns = now;
	pthread_mutex_unlock(&a->mu);
	if (write) {
		a->st.applied_scn = cs->applied_scn;
		if (a->st.applied_scn >= a->st.torn_scn)
			a->st.torn_scn = 0;
		for (uint32_t t = 1; t <= CORAL_MAX_NODES; t++)
			if (a->in_core[t])
				a->st.resume[t] = apply_resume_lsn(a->core, t);
		if ((rc = state_write(a, &a->st, err, errsz)) != 0)
			return rc;
		a->state_ns = now;
	}
	return 0;
}

/* The failover's apply: every copy read to its durable end, every horizon lifted (no more
 * redo comes), every committed transaction applied; the state says so for good. */
static int finish_apply(struct applier *a, char *err, size_t errsz)
{
	atomic_store(&a->feed->finished, true);
	int rc = read_copies(a, err, errsz);
	if (rc != 0)
		return rc;
	for (uint32_t t = 1; t <= CORAL_MAX_NODES; t++)
		if (a->in_core[t])
			apply_mark(a->core, t, UINT64_MAX);
	if ((rc = step(a, err, errsz)) != 0)
		return rc;
	const struct apply_stats *cs = apply_stats(a->core);
	char ends[512] = "";
	for (uint32_t t = 1; t <= CORAL_MAX_NODES; t++)
		if (a->in_core[t]) {
			a->st.end[t] = a->fed[t];
			snprintf(ends + strlen(ends), sizeof(ends) - strlen(ends), "%sthread %u to LSN %llu", ends[0] ? ", " : "",
				 t, (unsigned long long)a->fed[t]);
		}
	/* written first, then shown: finished_ns and the state's text change together under mu,
	 * so that coralctl standby finish, which waits for finished_ns, never answers with the
	 * text from before ("applying": integration-standby saw it once in six runs), and a
	 * failed write leaves the apply unfinished, to be tried again, rather than finished in
	 * memory only */
	struct coral_copy_state st = a->st;
	st.finished_ns = coral_now_real_ns();
	st.applied_scn = cs->applied_scn;
	if ((rc = state_write(a, &st, err, errsz)) != 0)
		return rc;
	pthread_mutex_lock(&a->mu);
	a->st = st;
	snprintf(a->state_text, sizeof(a->state_text),
		 "finished (failover): applied SCN %llu; %s; %llu transactions open at the end were never applied; "
		 "redo the primary made durable past these ends is missing here",
		 (unsigned long long)cs->applied_scn, ends, (unsigned long long)cs->open_txns);
	pthread_mutex_unlock(&a->mu);
	log_notice("the apply finished: every transaction the copies hold is applied (SCN %llu; %s); no more redo is taken",
		   (unsigned long long)cs->applied_scn, ends);
	repl_history_add("finished", "applied SCN %llu; %s; %llu open transactions never applied",
			 (unsigned long long)cs->applied_scn, ends, (unsigned long long)cs->open_txns);
	return 0;
}

/* Copies one data file block by block (a block whose checksum fails is one the primary was
 * writing: read again, up to a second). The highest block SCN into *top. */
static int copy_file(struct applier *a, const struct coral_conf *src, const struct coral_datafile *df, uint32_t bs,
		     uint64_t *top, char *err, size_t errsz)
{
	char from[CORAL_STR_MAX + 64], to[CORAL_STR_MAX + 64];
	coral_datafile_path(src, df->name, from, sizeof(from));
	coral_datafile_path(&a->pconf, df->name, to, sizeof(to));
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errsz, "cannot open %s: %s", from, strerror(errno));
		return CORAL_EIO;
	}
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (out < 0) {
		snprintf(err, errsz, "cannot create %s: %s", to, strerror(errno));
		close(in);
		return CORAL_EIO;
	}
	int rc = 0;
	for (uint64_t b = 0; b < df->blocks && rc == 0 && !atomic_load(&a->stop); b++) {
		for (int tries = 0;; tries++) {
			rc = coral_block_read(in, bs, df->id, b, a->img, err, errsz);
			if (rc == 0 || tries >= 1000)
				break;
			struct timespec ts = {0, 1000000L};
			nanosleep(&ts, NULL);
		}
		if (rc != 0)
			break;
		uint64_t scn = ((struct coral_block_hdr *)a->img)->scn;
		if (scn > *top)
			*top = scn;
		if (pwrite(out, a->img, bs, (off_t)(b * bs)) != (ssize_t)bs) {
			snprintf(err, errsz, "writing %s: %s", to, strerror(errno));
			rc = coral_err_from_errno(errno);
		}
	}
	if (rc == 0 && fdatasync(out) != 0) {
		snprintf(err, errsz, "syncing %s: %s", to, strerror(errno));
		rc = coral_err_from_errno(errno);
	}
	close(in);
	close(out);
	return rc;
}

static int seed(struct applier *a, const char *source, char *err, size_t errsz)
{
	static struct coral_conf src;
	src = a->pconf;
	coral_strlcpy(src.storage.shared_dir, source, sizeof(src.storage.shared_dir));
	static struct coral_ctlfile scf;
	int rc = coral_ctlfile_load(&src, &scf, err, errsz);
	if (rc != 0)
		return rc;
	uint32_t ids[CORAL_MAX_NODES];
	int nt = coral_redo_threads(source, ids, CORAL_MAX_NODES);
	struct coral_copy_state st;
	memset(&st, 0, sizeof(st));
	for (int i = 0; i < nt; i++) {
		struct coral_redo_ckpt k;
		if (ids[i] < 1 || ids[i] > CORAL_MAX_NODES)
			continue;
		if ((rc = coral_redo_ckpt_read(source, ids[i], &k, err, errsz)) != 0)
			return rc;
		st.known[ids[i]] = 1;
		st.resume[ids[i]] = k.lsn;
	}
	/* no state while the copy is made: a crash in the middle leaves a standby not seeded */
	char p[sizeof(a->dir) + 16];
	snprintf(p, sizeof(p), "%s/apply.state", a->dir);
	if (unlink(p) != 0 && errno != ENOENT) {
		snprintf(err, errsz, "cannot remove %s: %s", p, strerror(errno));
		return CORAL_EIO;
	}
	close_files(a);
	uint64_t top = 0;
	for (uint32_t k = 0; k < scf.nfiles && rc == 0; k++) {
		set_state(a, "seeding: copying %s (%u of %u data files)", scf.files[k].name, k + 1, scf.nfiles);
		rc = copy_file(a, &src, &scf.files[k], scf.block_size, &top, err, errsz);
	}
	if (rc == 0 && atomic_load(&a->stop)) {
		snprintf(err, errsz, "stopped");
		rc = CORAL_ECANCELED;
	}
	if (rc == 0) {
		/* the control file last, as the primary has it */
		char cpath[CORAL_STR_MAX + 16];
		snprintf(cpath, sizeof(cpath), "%s/control", source);
		int fd = open(cpath, O_RDONLY | O_CLOEXEC);
		struct stat sb;
		uint8_t *buf = NULL;
		if (fd < 0 || fstat(fd, &sb) != 0 || (buf = malloc((size_t)sb.st_size + 1)) == NULL ||
		    read(fd, buf, (size_t)sb.st_size) != sb.st_size) {
			snprintf(err, errsz, "reading %s: %s", cpath, strerror(errno));
			rc = CORAL_EIO;
		} else {
			rc = coral_write_file_atomic(a->dir, "control", buf, (size_t)sb.st_size, 0640, err, errsz);
		}
		free(buf);
		if (fd >= 0)
			close(fd);
	}
	if (rc != 0)
		return rc;
	st.torn_scn = top;
	st.seeded_ns = coral_now_real_ns();
	coral_strlcpy(st.source, source, sizeof(st.source));
	if ((rc = state_write(a, &st, err, errsz)) != 0)
		return rc;
	a->st = st;
	atomic_store(&a->feed->finished, false);
	log_notice("seeded from %s: %u data files; the apply reads each thread from its checkpoint; the copy is a state of "
		   "the primary's once the applied SCN passes %llu", source, scf.nfiles, (unsigned long long)top);
	return 0;
}

static void *applier_main(void *arg)
{
	struct applier *a = arg;
	char err[CORAL_ERRMSG_MAX];
	uint64_t errors = 0, checked_ns = 0, role_checked_ns = 0, role_seen_ns = 0;
	while (!atomic_load(&a->stop)) {
		pthread_mutex_lock(&a->mu);
		bool asked = a->seed_asked;
		char source[256];
		coral_strlcpy(source, a->seed_source, sizeof(source));
		a->seed_asked = false;
		a->seeding = asked;
		pthread_mutex_unlock(&a->mu);
		if (asked) {
			a->seeded = false;
			set_state(a, "seeding from %s", source);
			int rc = seed(a, source, err, sizeof(err));
			if (rc == 0)
				rc = open_copy(a, err, sizeof(err));
			pthread_mutex_lock(&a->mu);
			a->seeding = false;
			pthread_mutex_unlock(&a->mu);
			if (rc != 0) {
				log_error("seeding from %s failed: %s", source, err);
				repl_history_add("seed failed", "from %s: %s", source, err);
				set_state(a, "not seeded: the seed from %s failed: %s", source, err);
				continue;
			}
			a->seeded = true;
			core_start(a);
			set_state(a, "applying");
			repl_history_add("seeded", "from %s: %u data files; consistent once the applied SCN passes %llu", source,
					 a->cf->nfiles, (unsigned long long)a->st.torn_scn);
		}
		pthread_mutex_lock(&a->mu);
		bool finish = a->finish_asked && a->seeded && !a->st.finished_ns;
		pthread_mutex_unlock(&a->mu);
		if (finish) {
			int rc = finish_apply(a, err, sizeof(err));
			if (rc != 0) {
				log_error("finishing the apply: %s; trying again", err);
				set_state(a, "finishing: %s", err);
				core_start(a);
				struct timespec ts = {1, 0};
				nanosleep(&ts, NULL);
				continue;
			}
		}
		if (a->seeded && !a->st.finished_ns) {
			int rc = step(a, err, sizeof(err));
			if (rc != 0) {
				if (errors++ % 50 == 0)
					log_error("the apply stops here, trying again: %s", err);
				if (errors == 1)
					repl_history_add("apply stopped", "%s", err);
				set_state(a, "stopped: %s", err);
				/* what was read is read again: the core starts over from the state */
				core_start(a);
				struct timespec ts = {1, 0};
				nanosleep(&ts, NULL);
				continue;
			}
			if (errors) {
				log_notice("the apply goes on after %llu failed attempts", (unsigned long long)errors);
				repl_history_add("apply again", "after %llu failed attempts", (unsigned long long)errors);
				errors = 0;
				set_state(a, "applying");
			}
		}
		/* taken over (here or on another node of this standby: the role is shared): the
		 * cluster is the primary now, and replicad starts again as one, a second later (what
		 * the takeover answered and told the old primary has gone out by then) */
		char role[16];
		if (coral_now_mono_ns() - role_checked_ns > 500000000ull) {
			role_checked_ns = coral_now_mono_ns();
			bool other = coral_role_read(a->d->conf.storage.shared_dir, role, sizeof(role)) == 0 &&
				     strcmp(role, a->d->conf.replication.role) != 0;
			if (!other)
				role_seen_ns = 0;
			else if (role_seen_ns == 0)
				role_seen_ns = role_checked_ns;
			else if (role_checked_ns - role_seen_ns >= 1000000000ull) {
				log_notice("this cluster is the %s now (%s/role, written by a takeover): replicad starts again "
					   "in that role", role, a->d->conf.storage.shared_dir);
				kill(getpid(), SIGTERM);
				break;
			}
		}
		/* another node of this standby may have taken over (the state is shared): its
		 * sessions may change blocks from then on here too */
		if (a->redo && atomic_load(&a->redo->standby) && coral_now_mono_ns() - checked_ns > 1000000000ull) {
			struct coral_copy_state st;
			checked_ns = coral_now_mono_ns();
			if (state_read(a, &st) == 0 && st.took_over) {
				atomic_store(&a->redo->standby, 0u);
				log_notice("this standby took over at site epoch %llu (another node did it): its sessions may "
					   "change blocks", (unsigned long long)st.took_over);
			}
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* On the loop, every half second: a seed this node is to make by itself, as coralctl standby
 * seed makes one, by the node the primary ships to. The one coralctl standby rejoin asked for
 * (SHARED/standby/PRIMARY/seed_from, once a thread of the primary has said hello), and the one
 * [replication] reseed_from makes when the primary says the copy needs seeding again. */
static void on_seed_from(evutil_socket_t fd, short what, void *arg)
{
	struct applier *a = arg;
	(void)fd, (void)what;
	struct timeval tv = {0, 500000};
	evtimer_add(a->ev_seed_from, &tv);
	pthread_mutex_lock(&a->mu);
	bool busy = a->seed_asked || a->seeding, seeded = a->seeded;
	pthread_mutex_unlock(&a->mu);
	if (busy)
		return;
	char sf[sizeof(a->dir) + 16], src[CORAL_STR_MAX] = "";
	snprintf(sf, sizeof(sf), "%s/seed_from", a->dir);
	const char *why = NULL;
	uint32_t nt = atomic_load(&a->feed->need_seed_thread);
	if (!seeded && access(sf, F_OK) == 0) {
		bool hello = false;
		pthread_mutex_lock(&a->feed->mu);
		for (int t = 1; t <= CORAL_MAX_NODES; t++)
			hello |= a->feed->known[t];
		pthread_mutex_unlock(&a->feed->mu);
		FILE *f = hello ? fopen(sf, "r") : NULL;
		if (f == NULL)
			return;
		if (fgets(src, sizeof(src), f) == NULL)
			src[0] = '\0';
		fclose(f);
		src[strcspn(src, "\r\n")] = '\0';
		why = "as coralctl standby rejoin asked";
	} else if (nt != 0 && a->d->conf.replication.reseed_from[0] && !atomic_load(&a->feed->finished) &&
		   coral_now_mono_ns() - a->reseed_ns > 30000000000ull) {
		a->reseed_ns = coral_now_mono_ns(); /* a failed one is tried again 30 s later */
		coral_strlcpy(src, a->d->conf.replication.reseed_from, sizeof(src));
		why = "again: the primary recycled redo the copy lacked ([replication] reseed_from)";
	} else {
		return;
	}
	char msg[CORAL_ERRMSG_MAX];
	int r = applier_seed(a, src, msg, sizeof(msg));
	if (r == 0) {
		log_notice("seeding from %s, %s", src, why);
		atomic_store(&a->feed->need_seed_thread, 0u);
		unlink(sf);
	} else if (r != CORAL_EBUSY) {
		log_error("the seed from %s (%s): %s", src, why, msg);
		if (nt == 0)
			unlink(sf); /* coralctl standby seed from here */
	}
}

struct applier *applier_new(struct coral_daemon *d, struct receiver *r, int *rc)
{
	*rc = 0;
	if (r == NULL || strcmp(d->conf.replication.role, "standby") != 0)
		return NULL; /* a primary's receiver only refuses its old primary */
	struct applier *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		*rc = CORAL_ENOMEM;
		return NULL;
	}
	a->d = d;
	a->r = r;
	a->feed = receiver_feed(r);
	a->lock_fd = a->own_fd = -1;
	for (int i = 0; i < CORAL_MAX_DATAFILES; i++)
		a->fds[i] = -1;
	pthread_mutex_init(&a->mu, NULL);
	coral_copy_conf(&d->conf, &a->pconf);
	coral_strlcpy(a->dir, a->pconf.storage.shared_dir, sizeof(a->dir));
	a->cf = calloc(1, sizeof(*a->cf));
	a->img = malloc((size_t)d->conf.storage.block_size);
	char p[sizeof(a->dir) + 16];
	snprintf(p, sizeof(p), "%s/apply.lock", a->dir);
	a->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (a->cf == NULL || a->img == NULL || a->lock_fd < 0) {
		log_error("the standby's apply cannot start: %s", a->lock_fd < 0 ? strerror(errno) : "out of memory");
		*rc = a->lock_fd < 0 ? CORAL_EIO : CORAL_ENOMEM;
		applier_free(a);
		return NULL;
	}
	char err[CORAL_ERRMSG_MAX];
	a->redo = coral_redo_sga(&d->sga);
	int s = state_read(a, &a->st);
	bool passive = s == 0 && !own_copy(a);
	if (passive) {
		snprintf(a->state_text, sizeof(a->state_text),
			 "passive: another node of this standby applies its copy (the node its primary ships to)");
		log_info("the standby's apply: %s", a->state_text);
	} else if (s == 0 && open_copy(a, err, sizeof(err)) == 0) {
		a->seeded = true;
		core_start(a);
		snprintf(a->state_text, sizeof(a->state_text), "applying");
		if (a->st.finished_ns) {
			atomic_store(&a->feed->finished, true);
			atomic_store(&a->feed->took_over, a->st.took_over);
			char role[16];
			const char *own = a->d->conf.storage.shared_dir;
			if (a->st.took_over && (coral_role_read(own, role, sizeof(role)) != 0 || strcmp(role, "primary") != 0)) {
				/* a takeover cut short between its state and the role (applier_failover):
				 * finished here; applier_main restarts replicad in the primary's role */
				if (coral_role_write(own, "primary", err, sizeof(err)) != 0)
					log_error("the copy took over at site epoch %llu but %s/role cannot say so: %s",
						  (unsigned long long)a->st.took_over, own, err);
				else
					log_notice("the copy took over at site epoch %llu: %s/role says primary now (the "
						   "takeover had stopped before it)", (unsigned long long)a->st.took_over, own);
			}
			if (a->st.took_over)
				snprintf(a->state_text, sizeof(a->state_text),
					 "took over at site epoch %llu (the copy is this cluster's): applied SCN %llu",
					 (unsigned long long)a->st.took_over, (unsigned long long)a->st.applied_scn);
			else
				snprintf(a->state_text, sizeof(a->state_text),
					 "finished (failover): applied SCN %llu; no more redo is taken",
					 (unsigned long long)a->st.applied_scn);
		}
		log_info("the standby's apply goes on from SCN %llu (seeded from %s)", (unsigned long long)a->st.applied_scn,
			 a->st.source);
	} else {
		snprintf(a->state_text, sizeof(a->state_text), "not seeded%s%s", s == CORAL_ECORRUPT ? ": apply.state is damaged" : "",
			 s == 0 ? ": the copy's control file does not load" : "");
		if (s == CORAL_ECORRUPT || s == 0)
			log_error("the standby's apply: %s (seed again)", a->state_text);
	}
	/* a standby takes no change of its sessions until it has taken over */
	if (a->redo)
		atomic_store(&a->redo->standby, a->st.took_over ? 0u : 1u);
	if (pthread_create(&a->thread, NULL, applier_main, a) != 0) {
		*rc = CORAL_ESYS;
		applier_free(a);
		return NULL;
	}
	a->started = true;
	a->ev_seed_from = evtimer_new(d->base, on_seed_from, a);
	if (a->ev_seed_from)
		on_seed_from(-1, 0, a);
	return a;
}

void applier_free(struct applier *a)
{
	if (a == NULL)
		return;
	if (a->ev_seed_from)
		event_free(a->ev_seed_from);
	if (a->started) {
		atomic_store(&a->stop, true);
		pthread_join(a->thread, NULL);
	}
	apply_free(a->core);
	close_files(a);
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	if (a->own_fd >= 0)
		close(a->own_fd); /* the lock goes with it */
	free(a->cf);
	free(a->img);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

int applier_seed(struct applier *a, const char *source, char *msg, size_t msgsz)
{
	if (a == NULL) {
		snprintf(msg, msgsz, "this node is not a standby ([replication] role)");
		return CORAL_EINVAL;
	}
	if (source[0] != '/') {
		snprintf(msg, msgsz, "'%s' is not an absolute path", source);
		return CORAL_EINVAL;
	}
	if (!own_copy(a)) {
		snprintf(msg, msgsz, "another node of this standby applies its copy (%s/applier.lock): seed it there, the "
			 "node its primary ships to", a->dir);
		return CORAL_EBUSY;
	}
	static struct coral_conf src;
	static struct coral_ctlfile scf;
	src = a->pconf;
	coral_strlcpy(src.storage.shared_dir, source, sizeof(src.storage.shared_dir));
	char err[CORAL_ERRMSG_MAX];
	char cpath[CORAL_STR_MAX + 16];
	snprintf(cpath, sizeof(cpath), "%s/control", source);
	if (access(cpath, R_OK) != 0) {
		snprintf(msg, msgsz, "%s: no control file there (%s): not the primary's shared storage", source, strerror(errno));
		return CORAL_ENOENT;
	}
	if (coral_ctlfile_load(&src, &scf, err, sizeof(err)) != 0) {
		snprintf(msg, msgsz, "%s", err);
		return CORAL_EINVAL;
	}
	/* each copy of a thread must hold the redo from the primary's checkpoint on: an empty
	 * one starts there */
	uint32_t ids[CORAL_MAX_NODES];
	int nt = coral_redo_threads(source, ids, CORAL_MAX_NODES);
	for (int i = 0; i < nt; i++) {
		struct coral_redo_ckpt k;
		if (coral_redo_ckpt_read(source, ids[i], &k, err, sizeof(err)) != 0) {
			snprintf(msg, msgsz, "%s", err);
			return CORAL_EIO;
		}
		if (!receiver_seed_thread(a->r, ids[i], k.lsn)) {
			snprintf(msg, msgsz, "the copy of thread %u cannot start at the primary's checkpoint (LSN %llu)", ids[i],
				 (unsigned long long)k.lsn);
			return CORAL_EINVAL;
		}
	}
	pthread_mutex_lock(&a->mu);
	bool busy = a->seeding || a->seed_asked;
	if (!busy) {
		coral_strlcpy(a->seed_source, source, sizeof(a->seed_source));
		a->seed_asked = true;
	}
	pthread_mutex_unlock(&a->mu);
	if (busy) {
		snprintf(msg, msgsz, "a seed is under way");
		return CORAL_EBUSY;
	}
	atomic_store(&a->feed->need_seed_thread, 0u); /* what the primary said is answered */
	snprintf(msg, msgsz, "seeding from %s: %u data files, %d threads (coralctl standby status shows its end)", source,
		 scf.nfiles, nt);
	return 0;
}

int applier_finish(struct applier *a, char *msg, size_t msgsz)
{
	if (a == NULL) {
		snprintf(msg, msgsz, "this node is not a standby ([replication] role)");
		return CORAL_EINVAL;
	}
	pthread_mutex_lock(&a->mu);
	bool seeded = a->seeded, done = a->st.finished_ns != 0;
	if (seeded && !done)
		a->finish_asked = true;
	pthread_mutex_unlock(&a->mu);
	if (!seeded) {
		snprintf(msg, msgsz, "the standby is not seeded: there is nothing to apply");
		return CORAL_ENOTRUNNING;
	}
	if (done) {
		snprintf(msg, msgsz, "the apply has finished already");
		return CORAL_EEXIST;
	}
	/* from now on no hello is taken: what the copies hold is what there is */
	atomic_store(&a->feed->finished, true);
	for (int i = 0; i < 300; i++) {
		pthread_mutex_lock(&a->mu);
		done = a->st.finished_ns != 0;
		pthread_mutex_unlock(&a->mu);
		if (done)
			break;
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&a->mu);
	snprintf(msg, msgsz, "%s", done ? a->state_text : "finishing (coralctl standby status shows its end)");
	pthread_mutex_unlock(&a->mu);
	return 0;
}

int applier_failover(struct applier *a, char *msg, size_t msgsz)
{
	if (a == NULL) {
		snprintf(msg, msgsz, "this node is not a standby ([replication] role)");
		return CORAL_EINVAL;
	}
	pthread_mutex_lock(&a->mu);
	uint64_t took = a->st.took_over;
	bool finished = a->st.finished_ns != 0;
	pthread_mutex_unlock(&a->mu);
	if (took) {
		snprintf(msg, msgsz, "this standby took over already, at site epoch %llu", (unsigned long long)took);
		return CORAL_EEXIST;
	}
	if (!finished) {
		int rc = applier_finish(a, msg, msgsz);
		if (rc != 0)
			return rc;
		pthread_mutex_lock(&a->mu);
		finished = a->st.finished_ns != 0;
		pthread_mutex_unlock(&a->mu);
		if (!finished) {
			snprintf(msg, msgsz, "the apply is still finishing: ask again");
			return CORAL_EBUSY;
		}
	}
	/* the apply does nothing more once finished: its files are this thread's to move */
	char err[CORAL_ERRMSG_MAX];
	const char *own = a->d->conf.storage.shared_dir;
	uint64_t e = coral_site_epoch_read(own), pe = atomic_load(&a->feed->primary_epoch);
	uint64_t epoch = (e > pe ? e : pe) + 1;
	pthread_mutex_lock(&a->mu);
	close_files(a);
	int rc = coral_datafile_adopt(&a->d->conf, a->cf, a->dir, err, sizeof(err));
	if (rc == 0)
		rc = coral_site_epoch_write(own, epoch, err, sizeof(err));
	if (rc == 0) {
		a->st.took_over = epoch;
		rc = state_write(a, &a->st, err, sizeof(err));
	}
	/* the cluster is the primary now, whatever its configuration says (replicad starts again
	 * in that role: applier_main); a fence of its own from an earlier life as a primary is
	 * older than this epoch */
	if (rc == 0)
		rc = coral_role_write(own, "primary", err, sizeof(err));
	/* the witness, for an old primary that cannot reach this standby: a failure is said, the
	 * takeover stands */
	const char *w = a->d->conf.replication.witness_file;
	char werr[CORAL_ERRMSG_MAX];
	if (rc == 0 && w[0] && coral_site_witness_write(w, epoch, a->d->conf.cluster.name, werr, sizeof(werr)) != 0)
		log_error("the witness %s cannot say this takeover (site epoch %llu): %s; an old primary that cannot "
			  "reach this cluster opens after open_wait_ms", w, (unsigned long long)epoch, werr);
	char fwhy[64];
	uint64_t fe = rc == 0 ? coral_site_fence_read(own, fwhy, sizeof(fwhy)) : 0;
	if (fe != 0 && fe < epoch) {
		char p[CORAL_STR_MAX + 16];
		snprintf(p, sizeof(p), "%s/fenced", own);
		if (unlink(p) != 0 && errno != ENOENT)
			log_warn("%s: %s (an older fence: remove it)", p, strerror(errno));
	}
	if (rc == 0) {
		/* this node's clock above every SCN of the copy (replicad_init does it for the others
		 * as they start in the primary's role) */
		struct coral_cache *cache = coral_cache_sga(&a->d->sga);
		uint64_t top = atomic_load(&a->feed->max_scn);
		if (cache)
			coral_scn_observe(cache, a->st.applied_scn > top ? a->st.applied_scn : top);
		snprintf(a->state_text, sizeof(a->state_text),
			 "took over at site epoch %llu (the copy is this cluster's): applied SCN %llu",
			 (unsigned long long)epoch, (unsigned long long)a->st.applied_scn);
		atomic_store(&a->feed->took_over, epoch);
		if (a->redo)
			atomic_store(&a->redo->standby, 0u);
	}
	uint32_t nfiles = a->cf->nfiles;
	uint64_t applied = a->st.applied_scn;
	pthread_mutex_unlock(&a->mu);
	if (rc != 0) {
		snprintf(msg, msgsz, "the failover stopped: %s", err);
		repl_history_add("failover failed", "%s", err);
		return rc;
	}
	snprintf(msg, msgsz,
		 "took over at site epoch %llu: the %u data files of the copy are this cluster's now (applied SCN %llu); "
		 "sessions may change them; the old primary is fenced when it reaches this standby",
		 (unsigned long long)epoch, nfiles, (unsigned long long)applied);
	repl_history_add("failover", "took over at site epoch %llu: %u data files, applied SCN %llu",
			 (unsigned long long)epoch, nfiles, (unsigned long long)applied);
	return 0;
}

uint64_t applier_took_over(struct applier *a)
{
	if (a == NULL)
		return 0;
	pthread_mutex_lock(&a->mu);
	uint64_t e = a->st.took_over;
	pthread_mutex_unlock(&a->mu);
	return e;
}

bool applier_applying(struct applier *a)
{
	if (a == NULL)
		return false;
	pthread_mutex_lock(&a->mu);
	bool ok = a->seeded && a->st.finished_ns == 0 && !a->seeding && !a->seed_asked;
	pthread_mutex_unlock(&a->mu);
	return ok;
}

void applier_status(struct applier *a, Coral__StandbyApply *o, char *state, char *source)
{
	coral__standby_apply__init(o);
	pthread_mutex_lock(&a->mu);
	coral_strlcpy(state, a->state_text, 256);
	coral_strlcpy(source, a->st.source, 256);
	uint32_t nt = atomic_load(&a->feed->need_seed_thread);
	if (nt != 0 && !a->seeding && !a->seed_asked)
		snprintf(state, 256, "needs seeding: the primary recycled thread %u's redo from LSN %llu, which the copy "
			 "lacks (coralctl standby seed, or [replication] reseed_from)", nt,
			 (unsigned long long)atomic_load(&a->feed->need_seed_lsn));
	o->state = state;
	o->seeded_from = source;
	o->seeded_ms = a->st.seeded_ns / 1000000ull;
	o->applied_scn = a->cs.applied_scn ? a->cs.applied_scn : a->st.applied_scn;
	o->consistent_at = a->st.torn_scn;
	o->consistent = a->seeded && o->applied_scn >= a->st.torn_scn;
	o->horizon = a->horizon;
	o->waiting_for = a->waiting_for;
	o->txns_applied = a->cs.txns_applied;
	o->changes_applied = a->cs.changes_applied;
	o->blocks_written = a->blocks_written;
	o->open_txns = a->cs.open_txns;
	o->pending_bytes = a->cs.pending_bytes;
	o->abandoned = a->cs.txns_abandoned;
	o->batches = a->batches;
	o->last_batch_us = a->last_batch_us;
	o->failed_over_epoch = a->st.took_over;
	uint64_t now = coral_now_mono_ns();
	o->lag_ms = a->moved_ns && a->cs.pending_bytes ? (now - a->moved_ns) / 1000000ull : 0;
	pthread_mutex_unlock(&a->mu);
}
