/* raftd's durable storage (see raft_store.h). */
#include "raft_store.h"
#include "crc32c.h"
#include "errors.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_HDR 8                    /* length, CRC */
#define REC_MAX (64u << 20)          /* a longer length field is damage, not a record */
#define KIND_ENTRY 1
#define KIND_HS 2
#define ENTRY_FIXED (1 + 8 + 8 + 1)  /* kind, term, index, type */
#define HS_LEN (1 + 8 + 4 + 8)
#define SNAP_MAGIC 0x504e5343u       /* "CSNP" */
#define SNAP_HDR (4 + 4 + 8 * 6)

struct seg {
	uint64_t seq;
	uint64_t first, last;  /* entries held; first 0 when none */
	uint64_t *off;         /* offset of each entry record, by index - first */
	size_t cap;
	uint64_t size;
};

struct raft_store {
	char dir[PATH_MAX];
	int dirfd;
	size_t seg_bytes;
	struct seg *segs;
	size_t nsegs, capsegs;
	int fd;                /* the last segment, open for writing */
	bool dirty, dir_dirty;
	struct raft_hard_state hs;
	bool have_hs;
	struct raft_snapshot snap;
	struct raft_entry *ents;   /* what open() recovered, for raft_store_boot */
	size_t nents, capents;
	struct raft_store_stats st;
	char errmsg[512];
};

static int fail(struct raft_store *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct raft_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint64_t last_index(const struct raft_store *s)
{
	for (size_t i = s->nsegs; i-- > 0;)
		if (s->segs[i].first)
			return s->segs[i].last;
	return s->snap.index;
}

static void seg_path(const struct raft_store *s, uint64_t seq, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s/%020llu.seg", s->dir, (unsigned long long)seq);
}

static int write_all(int fd, const uint8_t *buf, size_t len, off_t at)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, at);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return CORAL_EIO;
		}
		buf += n;
		len -= (size_t)n;
		at += n;
	}
	return 0;
}

static int seg_note_entry(struct seg *g, uint64_t index, uint64_t off)
{
	size_t pos = g->first ? (size_t)(index - g->first) : 0;
	if (pos >= g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 256;
		uint64_t *p = realloc(g->off, cap * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		g->off = p;
		g->cap = cap;
	}
	if (!g->first)
		g->first = index;
	g->off[pos] = off;
	g->last = index;
	return 0;
}

static struct seg *seg_add(struct raft_store *s, uint64_t seq)
{
	if (s->nsegs == s->capsegs) {
		size_t cap = s->capsegs ? s->capsegs * 2 : 16;
		struct seg *p = realloc(s->segs, cap * sizeof(*p));
		if (p == NULL)
			return NULL;
		s->segs = p;
		s->capsegs = cap;
	}
	struct seg *g = &s->segs[s->nsegs++];
	memset(g, 0, sizeof(*g));
	g->seq = seq;
	return g;
}

/* ---- snapshot file ------------------------------------------------------------------ */

static int load_snapshot(struct raft_store *s)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/snapshot", s->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : fail(s, CORAL_EIO, "%s: %s", path, strerror(errno));
	struct stat st;
	uint8_t *buf = NULL;
	int rc = 0;
	if (fstat(fd, &st) != 0 || st.st_size < SNAP_HDR) {
		rc = fail(s, CORAL_EIO, "%s is truncated: restore this node (see raftd(8), RECOVERY)", path);
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (buf == NULL || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		rc = fail(s, CORAL_EIO, "%s: cannot read it", path);
		goto out;
	}
	uint64_t len = get64(buf + 8 + 8 * 5);
	if (get32(buf) != SNAP_MAGIC || len != (uint64_t)st.st_size - SNAP_HDR ||
	    coral_crc32c(0, buf + 8, (size_t)st.st_size - 8) != get32(buf + 4)) {
		rc = fail(s, CORAL_EIO, "%s fails its checksum: restore this node (see raftd(8), RECOVERY)",
			  path);
		goto out;
	}
	s->snap.index = get64(buf + 8);
	s->snap.term = get64(buf + 16);
	s->snap.conf.voters = get64(buf + 24);
	s->snap.conf.learners = get64(buf + 32);
	s->snap.conf.removed = get64(buf + 40);
	s->snap.len = (size_t)len;
	s->snap.data = malloc(len ? len : 1);
	if (s->snap.data == NULL) {
		rc = CORAL_ENOMEM;
		goto out;
	}
	memcpy(s->snap.data, buf + SNAP_HDR, (size_t)len);
out:
	free(buf);
	close(fd);
	return rc;
}

static int sync_dir(struct raft_store *s)
{
	if (fsync(s->dirfd) != 0)
		return fail(s, CORAL_EIO, "%s: fsync of the directory failed: %s", s->dir, strerror(errno));
	s->dir_dirty = false;
	return 0;
}

/* ---- reading segments --------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int keep_entry(struct raft_store *s, const struct raft_entry *e)
{
	if (e->index <= s->snap.index)
		return 0;
	if (s->nents == s->capents) {
		/* doubling: a long log is read in one pass at start-up */
		size_t cap = s->capents ? s->capents * 2 : 256;
		struct raft_entry *p = realloc(s->ents, cap * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		s->ents = p;
		s->capents = cap;
	}
	struct raft_entry *d = &s->ents[s->nents++];
	*d = *e;
	d->data = NULL;
	if (e->len) {
		d->data = malloc(e->len);
		if (d->data == NULL)
			return CORAL_ENOMEM;
		memcpy(d->data, e->data, e->len);
	}
	return 0;
}

/* Reads one segment; a damaged record is a torn tail (truncated) only in the last segment
 * and only when nothing follows it. */
static int read_segment(struct raft_store *s, struct seg *g, bool is_last, uint64_t *expect)
{
	char path[PATH_MAX + 32];
	seg_path(s, g->seq, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail(s, CORAL_EIO, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return fail(s, CORAL_EIO, "%s: %s", path, strerror(errno));
	}
	uint64_t size = (uint64_t)st.st_size;
	uint8_t *buf = malloc(size ? size : 1);
	if (buf == NULL || (size && pread(fd, buf, size, 0) != (ssize_t)size)) {
		free(buf);
		close(fd);
		return fail(s, CORAL_EIO, "%s: cannot read it", path);
	}
	uint64_t off = 0;
	int rc = 0;
	while (off < size && rc == 0) {
		const char *why = NULL;
		uint32_t len = 0;
		if (size - off < REC_HDR) {
			why = "a record header cut short";
		} else {
			len = get32(buf + off);
			if (len == 0 || len > REC_MAX)
				why = "an impossible record length";
			else if (size - off - REC_HDR < len)
				why = "a record cut short";
			else if (coral_crc32c(0, buf + off + REC_HDR, len) != get32(buf + off + 4))
				why = "a record that fails its checksum";
		}
		/* Torn: a header or record running past the end, a checksum failure in a record
		 * that ends exactly at the end, or a tail of zeros. Anything else is damage. */
		bool at_tail = false;
		if (why && is_last) {
			if (size - off < REC_HDR || (len && len <= REC_MAX && size - off - REC_HDR <= len)) {
				at_tail = true;
			} else if (len == 0 || len > REC_MAX) {
				at_tail = true;
				for (uint64_t k = off; k < size && at_tail; k++)
					at_tail = buf[k] == 0;
			}
		}
		if (why && at_tail) {
			/* a torn write: the crash came in the middle of the last append */
			if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
				rc = fail(s, CORAL_EIO, "%s: cannot truncate the torn tail: %s", path, strerror(errno));
				break;
			}
			s->st.torn_bytes_truncated += size - off;
			size = off;
			break;
		}
		if (why) {
			rc = fail(s, CORAL_EIO,
				  "%s: %s at offset %llu, before the end of the log: the log is damaged, "
				  "not torn; refusing to start. Restore this node (see raftd(8), RECOVERY)",
				  path, why, (unsigned long long)off);
			break;
		}
		const uint8_t *p = buf + off + REC_HDR;
		if (p[0] == KIND_ENTRY && len >= ENTRY_FIXED) {
			struct raft_entry e = {.term = get64(p + 1), .index = get64(p + 9), .type = p[17],
					       .len = len - ENTRY_FIXED, .data = (uint8_t *)p + ENTRY_FIXED};
			if (*expect && e.index != *expect) {
				rc = fail(s, CORAL_EIO, "%s: entry %llu where %llu was expected: refusing to start",
					  path, (unsigned long long)e.index, (unsigned long long)*expect);
				break;
			}
			*expect = e.index + 1;
			rc = seg_note_entry(g, e.index, off);
			if (rc == 0)
				rc = keep_entry(s, &e);
		} else if (p[0] == KIND_HS && len == HS_LEN) {
			s->hs.term = get64(p + 1);
			s->hs.vote = get32(p + 9);
			s->hs.commit = get64(p + 13);
			s->have_hs = true;
		} else {
			rc = fail(s, CORAL_EIO, "%s: unknown record kind %u at offset %llu: written by a newer "
				  "raftd? refusing to start", path, p[0], (unsigned long long)off);
			break;
		}
		off += REC_HDR + len;
	}
	g->size = size;
	free(buf);
	close(fd);
	return rc;
}

static int open_last_for_append(struct raft_store *s)
{
	if (s->fd >= 0)
		close(s->fd);
	char path[PATH_MAX + 32];
	seg_path(s, s->segs[s->nsegs - 1].seq, path, sizeof(path));
	s->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (s->fd < 0)
		return fail(s, CORAL_EIO, "%s: %s", path, strerror(errno));
	return 0;
}

static int new_segment(struct raft_store *s)
{
	uint64_t seq = s->nsegs ? s->segs[s->nsegs - 1].seq + 1 : 1;
	if (seg_add(s, seq) == NULL)
		return CORAL_ENOMEM;
	s->dir_dirty = true;
	return open_last_for_append(s);
}

int raft_store_open(struct raft_store **out, const char *dir, size_t segment_bytes, char *err,
		    size_t errsz)
{
	*out = NULL;
	struct raft_store *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errsz, "out of memory");
		return CORAL_ENOMEM;
	}
	s->fd = -1;
	s->dirfd = -1;
	s->seg_bytes = segment_bytes < 4096 ? 4096 : segment_bytes;
	coral_strlcpy(s->dir, dir, sizeof(s->dir));
	int rc = 0;
	if (coral_mkdir_p(dir, 0700) != 0)
		rc = fail(s, CORAL_EIO, "cannot create %s: %s", dir, strerror(errno));
	if (rc == 0 && (s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		rc = fail(s, CORAL_EIO, "cannot open %s: %s", dir, strerror(errno));
	if (rc == 0)
		rc = load_snapshot(s);
	/* the segments, by sequence number */
	uint64_t *seqs = NULL;
	size_t nseq = 0;
	DIR *d = rc == 0 ? opendir(dir) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		unsigned long long q;
		char tail[8];
		if (sscanf(de->d_name, "%20llu.%3s", &q, tail) == 2 && strcmp(tail, "seg") == 0) {
			uint64_t *p = realloc(seqs, (nseq + 1) * sizeof(*p));
			if (p == NULL) {
				rc = CORAL_ENOMEM;
				break;
			}
			seqs = p;
			seqs[nseq++] = q;
		}
	}
	if (d)
		closedir(d);
	if (nseq > 1)
		qsort(seqs, nseq, sizeof(*seqs), cmp_u64);
	uint64_t expect = 0;
	for (size_t i = 0; i < nseq && rc == 0; i++) {
		struct seg *g = seg_add(s, seqs[i]);
		rc = g ? read_segment(s, g, i == nseq - 1, &expect) : CORAL_ENOMEM;
	}
	free(seqs);
	if (rc == 0 && s->nents > 0 && s->ents[0].index != s->snap.index + 1)
		rc = fail(s, CORAL_EIO, "%s: the log starts at %llu but the snapshot ends at %llu: "
			  "entries are missing; refusing to start", dir,
			  (unsigned long long)s->ents[0].index, (unsigned long long)s->snap.index);
	if (rc == 0 && s->have_hs && s->hs.commit > last_index(s))
		rc = fail(s, CORAL_EIO, "%s: entry %llu was committed but the log ends at %llu: committed "
			  "entries are missing; refusing to start. Restore this node (see raftd(8), RECOVERY)",
			  dir, (unsigned long long)s->hs.commit, (unsigned long long)last_index(s));
	if (rc == 0)
		rc = s->nsegs ? open_last_for_append(s) : new_segment(s);
	if (rc == 0 && s->dir_dirty)
		rc = sync_dir(s);
	if (rc != 0) {
		snprintf(err, errsz, "%s", s->errmsg[0] ? s->errmsg : coral_strerror(rc));
		raft_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void free_loaded(struct raft_store *s)
{
	for (size_t i = 0; i < s->nents; i++)
		free(s->ents[i].data);
	free(s->ents);
	s->ents = NULL;
	s->nents = s->capents = 0;
}

void raft_store_close(struct raft_store *s)
{
	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	for (size_t i = 0; i < s->nsegs; i++)
		free(s->segs[i].off);
	free(s->segs);
	free(s->snap.data);
	free_loaded(s);
	free(s);
}

void raft_store_boot(const struct raft_store *s, struct raft_boot *b)
{
	memset(b, 0, sizeof(*b));
	if (s->have_hs)
		b->hs = s->hs;
	b->snap = s->snap;
	b->entries = s->ents;
	b->n_entries = s->nents;
}

bool raft_store_empty(const struct raft_store *s)
{
	return !s->have_hs && s->nents == 0 && s->snap.index == 0;
}

/* ---- writing ------------------------------------------------------------------------ */

/* Cuts the log so that index is the next entry: the record of index and all after go. */
static int cut_at(struct raft_store *s, uint64_t index)
{
	while (s->nsegs > 0) {
		struct seg *g = &s->segs[s->nsegs - 1];
		if (g->first && g->first <= index) {
			uint64_t off = g->off[index - g->first];
			char path[PATH_MAX + 32];
			seg_path(s, g->seq, path, sizeof(path));
			if (truncate(path, (off_t)off) != 0)
				return fail(s, CORAL_EIO, "%s: cannot truncate: %s", path, strerror(errno));
			g->size = off;
			g->last = index - 1;
			if (g->last < g->first)
				g->first = g->last = 0;
			break;
		}
		if (s->nsegs == 1) {
			/* no entry in any segment reaches index: nothing to cut */
			break;
		}
		char path[PATH_MAX + 32];
		seg_path(s, g->seq, path, sizeof(path));
		unlink(path);
		free(g->off);
		s->nsegs--;
		s->dir_dirty = true;
	}
	s->dirty = true;
	return open_last_for_append(s);
}

static size_t entry_record(uint8_t *p, const struct raft_entry *e)
{
	uint32_t len = ENTRY_FIXED + e->len;
	uint8_t *q = p + REC_HDR;
	q[0] = KIND_ENTRY;
	put64(q + 1, e->term);
	put64(q + 9, e->index);
	q[17] = e->type;
	if (e->len)
		memcpy(q + ENTRY_FIXED, e->data, e->len);
	put32(p, len);
	put32(p + 4, coral_crc32c(0, q, len));
	return REC_HDR + len;
}

static size_t hs_record(uint8_t *p, const struct raft_hard_state *hs)
{
	uint8_t *q = p + REC_HDR;
	q[0] = KIND_HS;
	put64(q + 1, hs->term);
	put32(q + 9, hs->vote);
	put64(q + 13, hs->commit);
	put32(p, HS_LEN);
	put32(p + 4, coral_crc32c(0, q, HS_LEN));
	return REC_HDR + HS_LEN;
}

/* Appends one encoded record to the last segment, rolling over to a new one when full. */
static int put_record(struct raft_store *s, const uint8_t *rec, size_t len, uint64_t entry_index)
{
	struct seg *g = &s->segs[s->nsegs - 1];
	if (g->size > 0 && g->size + len > s->seg_bytes) {
		/* the full segment must be durable before we stop tracking it */
		if (s->dirty && fdatasync(s->fd) != 0)
			return fail(s, CORAL_EIO, "fdatasync failed: %s", strerror(errno));
		s->st.syncs++;
		int rc = new_segment(s);
		if (rc != 0)
			return rc;
		g = &s->segs[s->nsegs - 1];
		if (s->have_hs) {
			/* every segment after a roll-over starts with the hard state, so deleting
			 * older segments never loses it */
			uint8_t hsr[REC_HDR + HS_LEN];
			size_t n = hs_record(hsr, &s->hs);
			if (write_all(s->fd, hsr, n, (off_t)g->size) != 0)
				return fail(s, CORAL_EIO, "write failed: %s", strerror(errno));
			g->size += n;
		}
	}
	if (write_all(s->fd, rec, len, (off_t)g->size) != 0)
		return fail(s, CORAL_EIO, "write failed: %s", strerror(errno));
	if (entry_index) {
		int rc = seg_note_entry(g, entry_index, g->size);
		if (rc != 0)
			return rc;
	}
	g->size += len;
	s->dirty = true;
	s->st.bytes_written += len;
	return 0;
}

int raft_store_append(struct raft_store *s, const struct raft_entry *entries, size_t n,
		      const struct raft_hard_state *hs)
{
	free_loaded(s); /* boot data is stale from the first write on */
	int rc = 0;
	bool cut = false;
	if (n > 0) {
		uint64_t last = last_index(s);
		if (entries[0].index <= last) {
			rc = cut_at(s, entries[0].index);
			cut = true;
		} else if (entries[0].index != last + 1) {
			return fail(s, CORAL_EINVAL, "append of %llu leaves a hole after %llu",
				    (unsigned long long)entries[0].index, (unsigned long long)last);
		}
	}
	uint8_t small[256];
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t need = REC_HDR + ENTRY_FIXED + entries[i].len;
		uint8_t *buf = need <= sizeof(small) ? small : malloc(need);
		if (buf == NULL)
			return CORAL_ENOMEM;
		size_t len = entry_record(buf, &entries[i]);
		rc = put_record(s, buf, len, entries[i].index);
		if (buf != small)
			free(buf);
	}
	/* after a cut the latest hard state may have been cut away with the entries: write it */
	if (rc == 0 && (hs || (cut && s->have_hs))) {
		if (hs) {
			s->hs = *hs;
			s->have_hs = true;
		}
		uint8_t rec[REC_HDR + HS_LEN];
		size_t len = hs_record(rec, &s->hs);
		rc = put_record(s, rec, len, 0);
	}
	return rc;
}

int raft_store_sync(struct raft_store *s)
{
	if (s->dirty) {
		if (fdatasync(s->fd) != 0)
			return fail(s, CORAL_EIO, "fdatasync failed: %s", strerror(errno));
		s->dirty = false;
		s->st.syncs++;
	}
	return s->dir_dirty ? sync_dir(s) : 0;
}

int raft_store_save_snapshot(struct raft_store *s, const struct raft_snapshot *snap, bool log_reset)
{
	char tmp[PATH_MAX + 16], path[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s/snapshot.tmp", s->dir);
	snprintf(path, sizeof(path), "%s/snapshot", s->dir);
	size_t total = SNAP_HDR + snap->len;
	uint8_t *buf = malloc(total);
	if (buf == NULL)
		return CORAL_ENOMEM;
	put32(buf, SNAP_MAGIC);
	put64(buf + 8, snap->index);
	put64(buf + 16, snap->term);
	put64(buf + 24, snap->conf.voters);
	put64(buf + 32, snap->conf.learners);
	put64(buf + 40, snap->conf.removed);
	put64(buf + 48, snap->len);
	if (snap->len)
		memcpy(buf + SNAP_HDR, snap->data, snap->len);
	put32(buf + 4, coral_crc32c(0, buf + 8, total - 8));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = 0;
	if (fd < 0 || write_all(fd, buf, total, 0) != 0 || fsync(fd) != 0)
		rc = fail(s, CORAL_EIO, "%s: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(buf);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = fail(s, CORAL_EIO, "rename %s: %s", tmp, strerror(errno));
	if (rc == 0)
		rc = sync_dir(s);
	if (rc != 0)
		return rc;
	uint8_t *copy = malloc(snap->len ? snap->len : 1);
	if (copy == NULL)
		return CORAL_ENOMEM;
	if (snap->len)
		memcpy(copy, snap->data, snap->len);
	free(s->snap.data);
	s->snap = *snap;
	s->snap.data = copy;
	free_loaded(s);
	/* Drop whole segments the snapshot covers. The last one stays (it is being written);
	 * its entries up to the snapshot are skipped when read. */
	size_t keep_from = 0;
	if (log_reset) {
		keep_from = s->nsegs;
	} else {
		while (keep_from + 1 < s->nsegs && s->segs[keep_from].last <= snap->index &&
		       s->segs[keep_from + 1].first && s->segs[keep_from + 1].first <= snap->index + 1)
			keep_from++;
	}
	if (keep_from == 0)
		return 0;
	/* the hard state must live on in a segment we keep */
	if (log_reset) {
		rc = new_segment(s);
		if (rc != 0)
			return rc;
	}
	if (s->have_hs) {
		uint8_t rec[REC_HDR + HS_LEN];
		size_t len = hs_record(rec, &s->hs);
		rc = put_record(s, rec, len, 0);
		if (rc == 0)
			rc = raft_store_sync(s);
		if (rc != 0)
			return rc;
	}
	size_t drop = log_reset ? s->nsegs - 1 : keep_from;
	for (size_t i = 0; i < drop; i++) {
		char p[PATH_MAX + 32];
		seg_path(s, s->segs[i].seq, p, sizeof(p));
		unlink(p);
		free(s->segs[i].off);
	}
	if (s->nsegs > drop)
		memmove(s->segs, s->segs + drop, (s->nsegs - drop) * sizeof(*s->segs));
	s->nsegs -= drop;
	return sync_dir(s);
}

void raft_store_stats(const struct raft_store *s, struct raft_store_stats *st)
{
	*st = s->st;
	st->segments = s->nsegs;
	st->log_bytes = 0;
	st->entries = 0;
	st->first_index = 0;
	for (size_t i = 0; i < s->nsegs; i++) {
		st->log_bytes += s->segs[i].size;
		if (s->segs[i].first) {
			if (!st->first_index)
				st->first_index = s->segs[i].first;
			st->entries += s->segs[i].last - s->segs[i].first + 1;
		}
	}
	st->last_index = last_index(s);
}

const char *raft_store_error(const struct raft_store *s)
{
	return s->errmsg;
}
