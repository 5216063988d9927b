/* store_vfs.c: the store's VFS shim, one write per commit to the WAL (see store_vfs.h). */
#include <stdbool.h>
#include <string.h>
#include "store_vfs.h"

#define FRAME_HEADER 24           /* a WAL frame's header, written on its own by SQLite */
#define BUF_MAX (1024 * 1024)     /* pending bytes written out before more are taken */
/* The most one xWrite of the unix VFS takes: it writes nBuf & 0x1ffff bytes per pwrite
 * (os_unix.c, seekAndWriteFd), and fails with SQLITE_FULL when that is 0. */
#define WRITE_MAX 0x1ffff

struct vfile {
	sqlite3_file base;
	sqlite3_file *real;       /* the wrapped file, allocated right after this struct */
	struct vfile *db;         /* a WAL file: its database's file (NULL once either closed) */
	struct vfile *wal;        /* a database file: its open WAL file, or NULL */
	bool is_wal;
	bool commit_header;       /* the last write was a commit frame's header */
	int late_error;           /* a failed late write, reported by the next write or sync */
	/* a WAL file's pending bytes: len of them, to be written at off */
	unsigned char *buf;
	size_t len, cap;
	sqlite3_int64 off;
};

static sqlite3_vfs vfs;
static sqlite3_vfs *real_vfs;
static struct store_vfs_stats stats;
static const sqlite3_io_methods io;

static int flush(struct vfile *f)
{
	int rc = SQLITE_OK;

	for (size_t at = 0; at < f->len && rc == SQLITE_OK; at += WRITE_MAX) {
		size_t n = f->len - at < WRITE_MAX ? f->len - at : WRITE_MAX;

		rc = f->real->pMethods->xWrite(f->real, f->buf + at, (int)n,
					       f->off + (sqlite3_int64)at);
		stats.wal_flushes++;
	}
	/* Failed or not, the bytes are gone: SQLite fails the write transaction they belong
	 * to (they are past the WAL's last commit, invisible) and writes again if it retries. */
	f->len = 0;
	return rc;
}

/* The database file's WAL, written out before the WAL-index shows its frames. A failure is
 * also kept for the WAL's next write or sync: the barrier cannot report it, and the commit
 * after it must fail (the engine pauses, sagad's reaction to a failed write). */
static int flush_late(struct vfile *db)
{
	int rc;

	if (db->wal == NULL || db->wal->len == 0)
		return SQLITE_OK;
	stats.late_flushes++;
	rc = flush(db->wal);
	if (rc != SQLITE_OK)
		db->wal->late_error = rc;
	return rc;
}

/* The failure flush_late() kept, once. */
static int late_error(struct vfile *f)
{
	int rc = f->late_error;

	f->late_error = SQLITE_OK;
	return rc;
}

static uint32_t get4(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- file methods ------------------------------------------------------------------ */

static int v_close(sqlite3_file *p)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush(f), rc2;

	if (f->db != NULL)
		f->db->wal = NULL;
	if (f->wal != NULL)
		f->wal->db = NULL;
	sqlite3_free(f->buf);
	f->buf = NULL;
	rc2 = f->real->pMethods->xClose(f->real);
	return rc != SQLITE_OK ? rc : rc2;
}

static int v_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, buf, n, off);
}

static int v_write(sqlite3_file *p, const void *data, int n, sqlite3_int64 off)
{
	struct vfile *f = (struct vfile *)p;
	bool after_commit_header = f->commit_header;
	int rc;

	if (!f->is_wal)
		return f->real->pMethods->xWrite(f->real, data, n, off);
	stats.wal_writes++;
	f->commit_header = false;
	if ((rc = late_error(f)) != SQLITE_OK)
		return rc;
	if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)n > BUF_MAX ||
			   (size_t)n > WRITE_MAX)) {
		rc = flush(f);
		if (rc != SQLITE_OK)
			return rc;
	}
	if ((size_t)n > WRITE_MAX) {   /* (no page is that big: 64 KiB at most) */
		stats.wal_flushes++;
		return f->real->pMethods->xWrite(f->real, data, n, off);
	}
	if (f->len == 0)
		f->off = off;
	if (f->len + (size_t)n > f->cap) {
		size_t cap = f->cap ? f->cap : 64 * 1024;
		unsigned char *b;

		while (cap < f->len + (size_t)n)
			cap *= 2;
		b = sqlite3_realloc64(f->buf, cap);
		if (b == NULL) {
			rc = flush(f);
			return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, data, n, off);
		}
		f->buf = b;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, data, (size_t)n);
	f->len += (size_t)n;
	/* A frame header's second word is the database size after a commit, 0 otherwise: the
	 * page that follows a non-zero one ends the transaction's frames. */
	if (n == FRAME_HEADER && get4(data + 4) != 0) {
		f->commit_header = true;
		return SQLITE_OK;
	}
	return after_commit_header ? flush(f) : SQLITE_OK;
}

static int v_truncate(sqlite3_file *p, sqlite3_int64 size)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int v_sync(sqlite3_file *p, int flags)
{
	struct vfile *f = (struct vfile *)p;
	int rc = late_error(f);

	if (rc == SQLITE_OK)
		rc = flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int v_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int v_lock(sqlite3_file *p, int lock)
{
	struct vfile *f = (struct vfile *)p;

	return f->real->pMethods->xLock(f->real, lock);
}

static int v_unlock(sqlite3_file *p, int lock)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush_late(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xUnlock(f->real, lock);
}

static int v_check_reserved(sqlite3_file *p, int *out)
{
	struct vfile *f = (struct vfile *)p;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int v_file_control(sqlite3_file *p, int op, void *arg)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int v_sector_size(sqlite3_file *p)
{
	struct vfile *f = (struct vfile *)p;

	return f->real->pMethods->xSectorSize(f->real);
}

static int v_device_chars(sqlite3_file *p)
{
	struct vfile *f = (struct vfile *)p;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int v_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp)
{
	struct vfile *f = (struct vfile *)p;

	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int v_shm_lock(sqlite3_file *p, int offset, int n, int flags)
{
	struct vfile *f = (struct vfile *)p;
	int rc = flush_late(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void v_shm_barrier(sqlite3_file *p)
{
	struct vfile *f = (struct vfile *)p;

	flush_late(f);   /* a failure is reported by the WAL's next write or sync */
	f->real->pMethods->xShmBarrier(f->real);
}

static int v_shm_unmap(sqlite3_file *p, int del)
{
	struct vfile *f = (struct vfile *)p;

	flush_late(f);
	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int v_fetch(sqlite3_file *p, sqlite3_int64 off, int n, void **pp)
{
	struct vfile *f = (struct vfile *)p;

	if (f->real->pMethods->iVersion < 3 || f->is_wal) {
		*pp = NULL;
		return SQLITE_OK;
	}
	return f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int v_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr)
{
	struct vfile *f = (struct vfile *)p;

	if (f->real->pMethods->iVersion < 3 || f->is_wal)
		return SQLITE_OK;
	return f->real->pMethods->xUnfetch(f->real, off, ptr);
}

static const sqlite3_io_methods io = {
	3, v_close, v_read, v_write, v_truncate, v_sync, v_file_size, v_lock, v_unlock,
	v_check_reserved, v_file_control, v_sector_size, v_device_chars, v_shm_map,
	v_shm_lock, v_shm_barrier, v_shm_unmap, v_fetch, v_unfetch,
};

/* ---- vfs methods ------------------------------------------------------------------- */

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *p, int flags, int *out_flags)
{
	struct vfile *f = (struct vfile *)p;
	int rc;

	(void)v;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK || f->real->pMethods == NULL) {
		f->real->pMethods = NULL;
		p->pMethods = NULL;
		return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
	}
	/* A WAL needs the WAL-index calls (version 2); without them SQLite uses none. */
	if ((flags & SQLITE_OPEN_WAL) && name != NULL && f->real->pMethods->iVersion >= 2) {
		sqlite3_file *db = sqlite3_database_file_object(name);

		if (db != NULL && db->pMethods == &io) {
			f->is_wal = true;
			f->db = (struct vfile *)db;
			f->db->wal = f;
		}
	}
	p->pMethods = &io;
	return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	(void)v;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *v, const char *name)
{
	(void)v;
	return real_vfs->xDlOpen(real_vfs, name);
}

static void v_dlerror(sqlite3_vfs *v, int n, char *msg)
{
	(void)v;
	real_vfs->xDlError(real_vfs, n, msg);
}

static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
	(void)v;
	return real_vfs->xDlSym(real_vfs, h, sym);
}

static void v_dlclose(sqlite3_vfs *v, void *h)
{
	(void)v;
	real_vfs->xDlClose(real_vfs, h);
}

static int v_randomness(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int v_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return real_vfs->xSleep(real_vfs, us);
}

static int v_current_time(sqlite3_vfs *v, double *out)
{
	(void)v;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int v_last_error(sqlite3_vfs *v, int n, char *buf)
{
	(void)v;
	return real_vfs->xGetLastError(real_vfs, n, buf);
}

static int v_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	if (real_vfs->iVersion < 2 || real_vfs->xCurrentTimeInt64 == NULL) {
		double d;
		int rc = real_vfs->xCurrentTime(real_vfs, &d);

		*out = (sqlite3_int64)(d * 86400000.0);
		return rc;
	}
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int store_vfs_register(void)
{
	if (real_vfs != NULL)
		return SQLITE_OK;
	real_vfs = sqlite3_vfs_find(NULL);
	if (real_vfs == NULL)
		return SQLITE_ERROR;
	vfs = (sqlite3_vfs){
		.iVersion = 2, .szOsFile = (int)sizeof(struct vfile) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname, .zName = STORE_VFS_NAME, .xOpen = v_open,
		.xDelete = v_delete, .xAccess = v_access, .xFullPathname = v_full_pathname,
		.xDlOpen = v_dlopen, .xDlError = v_dlerror, .xDlSym = v_dlsym,
		.xDlClose = v_dlclose, .xRandomness = v_randomness, .xSleep = v_sleep,
		.xCurrentTime = v_current_time, .xGetLastError = v_last_error,
		.xCurrentTimeInt64 = v_current_time64,
	};
	return sqlite3_vfs_register(&vfs, 0);
}

sqlite3_file *store_vfs_inner(sqlite3_file *f)
{
	if (f != NULL && f->pMethods == &io)
		return ((struct vfile *)f)->real;
	return f;
}

void store_vfs_stats(struct store_vfs_stats *out)
{
	*out = stats;
}
