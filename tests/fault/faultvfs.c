/* faultvfs.c: a SQLite VFS shim for fault-injection tests, loaded into sagad with LD_PRELOAD.
 *
 * Built twice from this file (Makefile.am):
 *   tests/fault/faultvfs.so      the shim: a constructor registers the VFS "faultvfs" as the
 *                                default, wrapping the default (unix) VFS of the process;
 *   tests/fault/faultvfs-revert  the tool that plays a power cut after the process died.
 *
 * Two independent features, each switched on by an environment variable:
 *
 * FAULTVFS_UNDO_DIR=DIR  power loss. For every main database, WAL and rollback journal file,
 *   the shim appends to DIR/<file name>.undo, before each write or truncation, what the
 *   affected bytes and the file size were; each xSync of the file empties its undo log (what
 *   was written is now durable). After `kill -9` of the process, `faultvfs-revert DIR` puts
 *   every file back as it was at its last sync: what a power cut does to writes still in the
 *   page cache (the "lose unsynced writes" model of LazyFS; SQLite's own crash tests go
 *   further and also reorder and tear them). kill -9 alone loses nothing the kernel has.
 *
 * FAULTVFS_CONTROL=FILE  injected errors. The file is read at every write, sync, truncation
 *   and WAL write-lock attempt; its first word selects the fault (a missing or empty file:
 *   none), so a test switches faults on and off while the process runs:
 *     full   every write and truncation fails with SQLITE_FULL (disk full)
 *     full N every write of N bytes or more fails with SQLITE_FULL (a disk with a little room
 *            left: small commits still fit, SQLite spilling its page cache to the WAL does
 *            not; sagad's VFS writes the WAL in pieces of at most 131071 bytes); truncations
 *            succeed
 *     ioerr  writes fail with SQLITE_IOERR_WRITE, syncs with SQLITE_IOERR_FSYNC
 *     busy   taking the WAL write lock fails with SQLITE_BUSY (another writer holds it; the
 *            connection's busy handler retries until its busy_timeout, then gives up)
 *     syncerr  only syncs fail, with SQLITE_IOERR_FSYNC: writes reach the page cache but
 *            cannot be made durable (sagad's WAL sync thread sees it, not its commits)
 *   Each injected error is counted on stderr ("faultvfs: injected full ...") at most once a
 *   second, so a test can see that the fault was hit.
 *
 * FAULTVFS_SYNC_DELAY_US=N  a slow disk: every xSync takes N microseconds longer (a cloud
 *   volume's or a consumer SSD's fsync is 0.5-10 ms); for benchmarks of the commit pipeline.
 *
 * sagad syncs the WAL from its sync thread while the loop thread writes the next commits:
 * the undo bookkeeping is under one mutex, and a sync forgets only the records written
 * before it started (a write that raced with it stays undoable).
 *
 * Undo log format: "FVUNDO1\n", u32 path length, the path (absolute), then records:
 *   u64 offset, u32 n, u64 old_size, n saved bytes
 * Undoing a record writes the saved bytes back at offset and truncates the file to old_size;
 * records are undone newest first. Integers are in host byte order (the log never leaves the
 * machine). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <sqlite3.h>

#define UNDO_MAGIC "FVUNDO1\n"

#ifndef FAULTVFS_REVERT

struct fv_file {
	sqlite3_file base;
	sqlite3_file *real;     /* the wrapped file, allocated right after this struct */
	int undo_fd;            /* -1 when this file is not tracked */
	off_t undo_header;      /* length of the undo log's header */
};

static sqlite3_vfs fv_vfs;
static sqlite3_vfs *real_vfs;
static const char *undo_dir;
static const char *control_path;
static long sync_delay_us;
static pthread_mutex_t undo_mu = PTHREAD_MUTEX_INITIALIZER;

enum fault { FAULT_NONE, FAULT_FULL, FAULT_IOERR, FAULT_BUSY, FAULT_SYNCERR };
static const char *const fault_names[] = { "none", "full", "ioerr", "busy", "syncerr" };

/* The fault in the control file; *min (if not NULL) gets the "full N" size (0: every write). */
static enum fault current_fault_min(long *min)
{
	char buf[32];
	ssize_t n;
	int fd;

	if (min != NULL)
		*min = 0;
	if (control_path == NULL)
		return FAULT_NONE;
	fd = open(control_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return FAULT_NONE;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return FAULT_NONE;
	buf[n] = '\0';
	if (strncmp(buf, "full", 4) == 0) {
		if (min != NULL && buf[4] == ' ')
			*min = atol(buf + 5);
		return FAULT_FULL;
	}
	if (strncmp(buf, "ioerr", 5) == 0)
		return FAULT_IOERR;
	if (strncmp(buf, "busy", 4) == 0)
		return FAULT_BUSY;
	if (strncmp(buf, "syncerr", 7) == 0)
		return FAULT_SYNCERR;
	return FAULT_NONE;
}

static enum fault current_fault(void)
{
	return current_fault_min(NULL);
}

/* Returns rc after counting the injection (reported at most once a second). */
static int injected(enum fault f, const char *op, int rc)
{
	static unsigned long count[5];
	static time_t last;
	time_t now = time(NULL);

	count[f]++;
	if (now != last) {
		last = now;
		fprintf(stderr, "faultvfs: injected %s op=%s total=%lu\n", fault_names[f], op,
			count[f]);
	}
	return rc;
}

/* ---- undo log ------------------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void undo_open(struct fv_file *f, const char *path)
{
	char undo[PATH_MAX], abs[PATH_MAX];
	const char *base = strrchr(path, '/');
	uint32_t len;

	base = base ? base + 1 : path;
	if (realpath(path, abs) == NULL)
		snprintf(abs, sizeof(abs), "%s", path);
	snprintf(undo, sizeof(undo), "%s/%s.undo", undo_dir, base);
	f->undo_fd = open(undo, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f->undo_fd < 0) {
		fprintf(stderr, "faultvfs: cannot open %s: %s\n", undo, strerror(errno));
		abort(); /* a test that believes it tracks writes must not run untracked */
	}
	len = (uint32_t)strlen(abs);
	if (write_all(f->undo_fd, UNDO_MAGIC, 8) != 0 || write_all(f->undo_fd, &len, 4) != 0 ||
	    write_all(f->undo_fd, abs, len) != 0)
		abort();
	f->undo_header = 8 + 4 + (off_t)len;
}

/* Records what [off, off + n) and the file size are before a write (or, for a truncation to
 * off, the bytes it cuts off). */
static int undo_record(struct fv_file *f, sqlite3_int64 off, sqlite3_int64 n)
{
	sqlite3_int64 size = 0;
	uint64_t o = (uint64_t)off, s;
	uint32_t keep = 0;
	char *old = NULL;
	int rc;

	rc = f->real->pMethods->xFileSize(f->real, &size);
	if (rc != SQLITE_OK)
		return rc;
	if (off < size) {
		sqlite3_int64 end = off + n < size ? off + n : size;
		keep = (uint32_t)(end - off);
		old = malloc(keep ? keep : 1);
		if (old == NULL)
			return SQLITE_NOMEM;
		rc = f->real->pMethods->xRead(f->real, old, (int)keep, off);
		if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
			free(old);
			return rc;
		}
	}
	s = (uint64_t)size;
	if (write_all(f->undo_fd, &o, 8) != 0 || write_all(f->undo_fd, &keep, 4) != 0 ||
	    write_all(f->undo_fd, &s, 8) != 0 || (keep && write_all(f->undo_fd, old, keep) != 0)) {
		free(old);
		return SQLITE_IOERR_WRITE;
	}
	free(old);
	return SQLITE_OK;
}

/* ---- io methods ---------------------------------------------------------------------- */

static int fv_close(sqlite3_file *p)
{
	struct fv_file *f = (struct fv_file *)p;
	int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;

	if (f->undo_fd >= 0)
		close(f->undo_fd); /* unsynced writes stay recorded */
	f->undo_fd = -1;
	return rc;
}

static int fv_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int fv_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off)
{
	struct fv_file *f = (struct fv_file *)p;
	long min;
	enum fault fault = current_fault_min(&min);
	int rc;

	if (fault == FAULT_FULL && n >= min)
		return injected(fault, "write", SQLITE_FULL);
	if (fault == FAULT_IOERR)
		return injected(fault, "write", SQLITE_IOERR_WRITE);
	if (f->undo_fd < 0)
		return f->real->pMethods->xWrite(f->real, buf, n, off);
	pthread_mutex_lock(&undo_mu);
	rc = undo_record(f, off, n);
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xWrite(f->real, buf, n, off);
	pthread_mutex_unlock(&undo_mu);
	return rc;
}

static int fv_truncate(sqlite3_file *p, sqlite3_int64 size)
{
	struct fv_file *f = (struct fv_file *)p;
	long min;
	enum fault fault = current_fault_min(&min);
	sqlite3_int64 cur = 0;
	int rc;

	if (fault == FAULT_FULL && min == 0)
		return injected(fault, "truncate", SQLITE_FULL);
	if (fault == FAULT_IOERR)
		return injected(fault, "truncate", SQLITE_IOERR_TRUNCATE);
	if (f->undo_fd < 0)
		return f->real->pMethods->xTruncate(f->real, size);
	pthread_mutex_lock(&undo_mu);
	rc = f->real->pMethods->xFileSize(f->real, &cur);
	if (rc == SQLITE_OK && size < cur)
		rc = undo_record(f, size, cur - size);
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xTruncate(f->real, size);
	pthread_mutex_unlock(&undo_mu);
	return rc;
}

/* Forgets the undo records in [header, upto): their writes are durable. Records written
 * after upto (during the sync) move to the front. Called under undo_mu. */
static int undo_forget(struct fv_file *f, off_t upto)
{
	off_t end = lseek(f->undo_fd, 0, SEEK_END), at = f->undo_header;
	char buf[65536];

	if (end < 0)
		return -1;
	for (off_t from = upto; from < end;) {
		ssize_t n = pread(f->undo_fd, buf, sizeof(buf), from);
		if (n <= 0 || pwrite(f->undo_fd, buf, (size_t)n, at) != n)
			return -1;
		from += n;
		at += n;
	}
	if (ftruncate(f->undo_fd, at) != 0 || lseek(f->undo_fd, at, SEEK_SET) < 0)
		return -1;
	return 0;
}

static int fv_sync(sqlite3_file *p, int flags)
{
	struct fv_file *f = (struct fv_file *)p;
	int rc;

	enum fault fault = current_fault();
	off_t upto = 0;

	if (fault == FAULT_IOERR || fault == FAULT_SYNCERR)
		return injected(fault, "sync", SQLITE_IOERR_FSYNC);
	if (f->undo_fd >= 0) {
		pthread_mutex_lock(&undo_mu);
		upto = lseek(f->undo_fd, 0, SEEK_CUR);
		pthread_mutex_unlock(&undo_mu);
	}
	if (sync_delay_us > 0)
		usleep((useconds_t)sync_delay_us);
	rc = f->real->pMethods->xSync(f->real, flags);
	if (rc == SQLITE_OK && f->undo_fd >= 0 && upto >= f->undo_header) {
		/* Durable now: what was written before the sync began cannot be lost any more. */
		pthread_mutex_lock(&undo_mu);
		if (undo_forget(f, upto) != 0)
			rc = SQLITE_IOERR_FSYNC;
		pthread_mutex_unlock(&undo_mu);
	}
	return rc;
}

static int fv_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xFileSize(f->real, size);
}

static int fv_lock(sqlite3_file *p, int lock)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xLock(f->real, lock);
}

static int fv_unlock(sqlite3_file *p, int lock)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xUnlock(f->real, lock);
}

static int fv_check_reserved(sqlite3_file *p, int *out)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int fv_file_control(sqlite3_file *p, int op, void *arg)
{
	struct fv_file *f = (struct fv_file *)p;

	if (op == SQLITE_FCNTL_MMAP_SIZE) {
		/* No memory-mapped reads: every byte goes through xRead/xWrite. */
		*(sqlite3_int64 *)arg = 0;
		return SQLITE_OK;
	}
	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int fv_sector_size(sqlite3_file *p)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xSectorSize(f->real);
}

static int fv_device_chars(sqlite3_file *p)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int fv_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int fv_shm_lock(sqlite3_file *p, int offset, int n, int flags)
{
	struct fv_file *f = (struct fv_file *)p;

	/* Slot 0 is WAL_WRITE_LOCK: taking it exclusively starts a write transaction. */
	if (offset == 0 && (flags & SQLITE_SHM_LOCK) && (flags & SQLITE_SHM_EXCLUSIVE) &&
	    current_fault() == FAULT_BUSY)
		return injected(FAULT_BUSY, "wal_write_lock", SQLITE_BUSY);
	return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void fv_shm_barrier(sqlite3_file *p)
{
	struct fv_file *f = (struct fv_file *)p;

	f->real->pMethods->xShmBarrier(f->real);
}

static int fv_shm_unmap(sqlite3_file *p, int del)
{
	struct fv_file *f = (struct fv_file *)p;

	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int fv_fetch(sqlite3_file *p, sqlite3_int64 off, int n, void **pp)
{
	*pp = NULL; /* never hand out mapped pages (see fv_file_control) */
	return SQLITE_OK;
}

static int fv_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr)
{
	return SQLITE_OK;
}

static const sqlite3_io_methods fv_io = {
	3, fv_close, fv_read, fv_write, fv_truncate, fv_sync, fv_file_size, fv_lock, fv_unlock,
	fv_check_reserved, fv_file_control, fv_sector_size, fv_device_chars, fv_shm_map,
	fv_shm_lock, fv_shm_barrier, fv_shm_unmap, fv_fetch, fv_unfetch,
};

/* ---- vfs methods --------------------------------------------------------------------- */

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out_flags)
{
	struct fv_file *f = (struct fv_file *)p;
	int rc;

	memset(f, 0, sizeof(*f));
	f->undo_fd = -1;
	f->real = (sqlite3_file *)(f + 1);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		f->real->pMethods = NULL;
		p->pMethods = NULL;
		return rc;
	}
	p->pMethods = &fv_io;
	if (undo_dir != NULL && name != NULL &&
	    (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL)))
		undo_open(f, name);
	return SQLITE_OK;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *fv_dlopen(sqlite3_vfs *vfs, const char *name)
{
	return real_vfs->xDlOpen(real_vfs, name);
}

static void fv_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	real_vfs->xDlError(real_vfs, n, msg);
}

static void (*fv_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	return real_vfs->xDlSym(real_vfs, h, sym);
}

static void fv_dlclose(sqlite3_vfs *vfs, void *h)
{
	real_vfs->xDlClose(real_vfs, h);
}

static int fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int fv_sleep(sqlite3_vfs *vfs, int us)
{
	return real_vfs->xSleep(real_vfs, us);
}

static int fv_current_time(sqlite3_vfs *vfs, double *out)
{
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int fv_last_error(sqlite3_vfs *vfs, int n, char *buf)
{
	return real_vfs->xGetLastError(real_vfs, n, buf);
}

static int fv_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

__attribute__((constructor)) static void faultvfs_init(void)
{
	const char *d = getenv("FAULTVFS_UNDO_DIR"), *c = getenv("FAULTVFS_CONTROL");
	const char *delay = getenv("FAULTVFS_SYNC_DELAY_US");

	undo_dir = d && *d ? d : NULL;
	control_path = c && *c ? c : NULL;
	sync_delay_us = delay && *delay ? atol(delay) : 0;
	real_vfs = sqlite3_vfs_find(NULL);
	if (real_vfs == NULL) {
		fprintf(stderr, "faultvfs: no default SQLite VFS to wrap\n");
		abort();
	}
	fv_vfs = (sqlite3_vfs){
		.iVersion = 2, .szOsFile = (int)sizeof(struct fv_file) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname, .zName = "faultvfs", .xOpen = fv_open,
		.xDelete = fv_delete, .xAccess = fv_access, .xFullPathname = fv_full_pathname,
		.xDlOpen = fv_dlopen, .xDlError = fv_dlerror, .xDlSym = fv_dlsym,
		.xDlClose = fv_dlclose, .xRandomness = fv_randomness, .xSleep = fv_sleep,
		.xCurrentTime = fv_current_time, .xGetLastError = fv_last_error,
		.xCurrentTimeInt64 = fv_current_time64,
	};
	if (sqlite3_vfs_register(&fv_vfs, 1) != SQLITE_OK) {
		fprintf(stderr, "faultvfs: cannot register the VFS\n");
		abort();
	}
	fprintf(stderr, "faultvfs: default VFS wraps \"%s\"%s%s%s%s; sync delay %ld us\n",
		real_vfs->zName, undo_dir ? "; undo logs in " : "", undo_dir ? undo_dir : "",
		control_path ? "; faults from " : "", control_path ? control_path : "",
		sync_delay_us);
}

#else /* FAULTVFS_REVERT: the power cut */

struct rec {
	uint64_t off, old_size;
	uint32_t n;
	char *bytes;
};

static int read_all(FILE *fp, void *buf, size_t n)
{
	return fread(buf, 1, n, fp) == n ? 0 : -1;
}

/* Undoes one log; returns 0 and prints what it did, or -1 with a message. */
static int revert(const char *log_path)
{
	FILE *fp = fopen(log_path, "rb");
	char magic[8], path[PATH_MAX];
	struct rec *recs = NULL;
	size_t n = 0, cap = 0;
	uint64_t bytes = 0;
	uint32_t len;
	struct stat stb;
	off_t before;
	int fd, rc = -1;

	if (fp == NULL) {
		fprintf(stderr, "faultvfs-revert: %s: %s\n", log_path, strerror(errno));
		return -1;
	}
	if (read_all(fp, magic, 8) != 0 || memcmp(magic, UNDO_MAGIC, 8) != 0 ||
	    read_all(fp, &len, 4) != 0 || len >= sizeof(path) || read_all(fp, path, len) != 0) {
		fprintf(stderr, "faultvfs-revert: %s: not an undo log\n", log_path);
		goto out;
	}
	path[len] = '\0';
	for (;;) {
		struct rec r;
		if (read_all(fp, &r.off, 8) != 0)
			break; /* end of log (a record torn by the kill is dropped: never applied) */
		if (read_all(fp, &r.n, 4) != 0 || read_all(fp, &r.old_size, 8) != 0)
			break;
		r.bytes = malloc(r.n ? r.n : 1);
		if (r.bytes == NULL || read_all(fp, r.bytes, r.n) != 0) {
			free(r.bytes);
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			recs = realloc(recs, cap * sizeof(*recs));
			if (recs == NULL)
				abort();
		}
		recs[n++] = r;
	}
	fd = open(path, O_RDWR);
	if (fd < 0) {
		if (errno == ENOENT && n == 0) {
			rc = 0;
			goto out;
		}
		fprintf(stderr, "faultvfs-revert: %s: %s\n", path, strerror(errno));
		goto out;
	}
	before = fstat(fd, &stb) == 0 ? stb.st_size : -1;
	for (size_t i = n; i-- > 0;) {
		if (recs[i].n > 0 &&
		    pwrite(fd, recs[i].bytes, recs[i].n, (off_t)recs[i].off) != (ssize_t)recs[i].n) {
			fprintf(stderr, "faultvfs-revert: %s: write: %s\n", path, strerror(errno));
			close(fd);
			goto out;
		}
		if (ftruncate(fd, (off_t)recs[i].old_size) != 0) {
			fprintf(stderr, "faultvfs-revert: %s: truncate: %s\n", path, strerror(errno));
			close(fd);
			goto out;
		}
		bytes += recs[i].n;
	}
	fsync(fd);
	fstat(fd, &stb);
	close(fd);
	printf("reverted %s: %zu unsynced writes undone, %llu bytes restored, size %lld -> %lld\n",
	       path, n, (unsigned long long)bytes, (long long)before, (long long)stb.st_size);
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(recs[i].bytes);
	free(recs);
	fclose(fp);
	if (rc == 0)
		unlink(log_path);
	return rc;
}

int main(int argc, char **argv)
{
	DIR *dir;
	struct dirent *de;
	int rc = 0, logs = 0;

	if (argc != 2 || strcmp(argv[1], "--help") == 0) {
		fprintf(argc == 2 ? stdout : stderr,
			"usage: faultvfs-revert UNDO_DIR\n"
			"Plays a power cut after a process that ran with faultvfs.so and\n"
			"FAULTVFS_UNDO_DIR=UNDO_DIR was killed: every tracked file goes back to its\n"
			"content at its last sync, and the undo logs are removed.\n");
		return argc == 2 ? 0 : 2;
	}
	dir = opendir(argv[1]);
	if (dir == NULL) {
		fprintf(stderr, "faultvfs-revert: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	while ((de = readdir(dir)) != NULL) {
		size_t l = strlen(de->d_name);
		char p[PATH_MAX];

		if (l < 6 || strcmp(de->d_name + l - 5, ".undo") != 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", argv[1], de->d_name);
		logs++;
		if (revert(p) != 0)
			rc = 1;
	}
	closedir(dir);
	if (logs == 0) {
		fprintf(stderr, "faultvfs-revert: no undo logs in %s (did the process run with "
			"faultvfs.so and FAULTVFS_UNDO_DIR?)\n", argv[1]);
		return 1;
	}
	return rc;
}

#endif
