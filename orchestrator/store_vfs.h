/* store_vfs.h: the store's SQLite VFS, a thin shim over the process's default VFS that
 * writes each commit's WAL frames with one system call.
 *
 * SQLite appends a WAL frame as two writes, its 24-byte header then the page: a grouped
 * commit of 30 pages made 60 pwrite calls on the loop thread. The shim gathers the
 * contiguous writes to a WAL file in memory and writes them at once when the commit's last
 * frame (the commit frame's page) arrives, and before anything that could look at the file:
 * a read, a sync, a truncation, its size, its close, or a write elsewhere in it. The bytes,
 * their offsets and their order in the file are SQLite's; only the number of writes changes.
 * A commit is in the file (page cache) when COMMIT returns, as without the shim, so
 * synchronous=FULL, the WAL sync thread and other processes' readers see what they saw.
 * As a safety net (a SQLite whose frame writes the shim would not recognise) the WAL-index
 * barrier and lock calls on the database file also write out what is pending; the
 * late_flushes counter says when that happened (never, with the SQLite versions tested).
 *
 * Every other file (the database, a rollback journal) and every other call pass through.
 * Single-threaded like the store's connection: the WAL sync thread syncs the file under the
 * shim (store_vfs_inner()), never the shim's buffer. */
#ifndef SAGAD_STORE_VFS_H
#define SAGAD_STORE_VFS_H

#include <stdint.h>
#include <sqlite3.h>

#define STORE_VFS_NAME "sagad"

/* Registers the VFS STORE_VFS_NAME over the current default VFS (not as the default), once;
 * later calls do nothing. Returns an SQLite result code. */
int store_vfs_register(void);

/* The file under f when f was opened through this VFS; else f itself. */
sqlite3_file *store_vfs_inner(sqlite3_file *f);

struct store_vfs_stats {
	uint64_t wal_writes;      /* xWrite calls SQLite made on WAL files */
	uint64_t wal_flushes;     /* writes the shim made of them */
	uint64_t late_flushes;    /* of which at a WAL-index barrier or lock (see above) */
};
/* Counters since the process started (all stores). */
void store_vfs_stats(struct store_vfs_stats *out);

#endif
