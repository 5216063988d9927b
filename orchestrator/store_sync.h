/* store_sync.h: the WAL sync thread of the SQLite store (pipelined commits).
 *
 * With synchronous=FULL SQLite fsyncs the WAL inside every COMMIT, on the loop thread: the
 * loop waits for the disk at every turn. In pipelined mode the store commits with
 * synchronous=NORMAL (the commit only writes the WAL) and asks this thread to sync the WAL up
 * to that commit; the loop goes on, and the engine holds everything the commit allows
 * (answers, dispatches, outbox messages, Kafka offsets) until the thread reports the commit
 * durable. Nothing leaves the process before it is on disk, exactly as with FULL; several
 * commits share one fsync when the disk is slower than the loop.
 *
 * Ownership: the store owns its store_sync; the thread only calls xSync on the WAL file and
 * touches the fields under the mutex; everything else runs on the loop thread. */
#ifndef SAGAD_STORE_SYNC_H
#define SAGAD_STORE_SYNC_H

#include <stdint.h>
#include <sqlite3.h>
#include <uv.h>

struct store_sync;

/* Starts the thread for wal (the connection's WAL file, SQLITE_FCNTL_JOURNAL_POINTER); ticket
 * and mark are those of what is committed so far (durable once this returns). The first sync runs here, on the calling thread
 * (it also syncs the directory entry of a new WAL file, the one flag xSync changes, so the
 * thread's syncs only read the file's state). Each finished sync wakes loop (a uv_async: the
 * loop's next turn sees the new state). Returns 0 or an SQLite error code. */
int store_sync_new(uv_loop_t *loop, sqlite3_file *wal, uint64_t ticket, int64_t mark,
		   struct store_sync **out);
/* Asks for the WAL to be synced up to commit ticket (tickets only grow), carrying mark (the
 * store's outbox sequence at that commit) along. Coalesces with a sync already asked. */
void store_sync_request(struct store_sync *ss, uint64_t ticket, int64_t mark);
/* The highest ticket synced and its mark; the first failure (SQLite code, sticky) or 0. */
void store_sync_state(struct store_sync *ss, uint64_t *ticket, int64_t *mark, int *error);
/* Waits for the thread's sync in progress, then syncs on the calling thread: ticket (the
 * last commit) and mark become durable and a failure is cleared when that sync succeeds (the
 * engine's probe after a pause, shutdown). Returns 0 or the SQLite error of that sync. */
int store_sync_now(struct store_sync *ss, uint64_t ticket, int64_t mark);
/* The number of fsyncs done (metrics). */
uint64_t store_sync_count(struct store_sync *ss);
/* Stops and joins the thread; closes the async handle (freed on the loop's next run). */
void store_sync_free(struct store_sync *ss);

#endif
