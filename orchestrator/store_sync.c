/* store_sync.c: the WAL sync thread of the SQLite store (see store_sync.h).
 *
 * The thread waits until a ticket above the last synced one is asked, syncs the WAL file
 * (one fdatasync through SQLite's VFS, so every write SQLite made before the request is on
 * disk), publishes the ticket and wakes the loop with a uv_async. Requests that arrive during
 * a sync are served by the next one: a slow disk makes fewer, larger syncs, never a queue. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "store_sync.h"
#include "util.h"

struct store_sync {
	sqlite3_file *wal;
	uv_async_t wake;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t asked, idle;
	/* under mu */
	uint64_t want, done;         /* tickets asked for / synced */
	int64_t want_mark, done_mark;
	int error;                   /* first failure, sticky until store_sync_now() succeeds */
	bool busy, stop;
	uint64_t syncs;
};

static void *sync_main(void *arg)
{
	struct store_sync *ss = arg;

	pthread_mutex_lock(&ss->mu);
	for (;;) {
		uint64_t ticket;
		int64_t mark;
		int rc;

		while (!ss->stop && (ss->want <= ss->done || ss->error != 0))
			pthread_cond_wait(&ss->asked, &ss->mu);
		if (ss->stop)
			break;
		ticket = ss->want;
		mark = ss->want_mark;
		ss->busy = true;
		pthread_mutex_unlock(&ss->mu);
		/* Every write of the commits up to ticket returned before the request: this sync
		 * covers them. */
		rc = ss->wal->pMethods->xSync(ss->wal, SQLITE_SYNC_NORMAL);
		pthread_mutex_lock(&ss->mu);
		ss->busy = false;
		ss->syncs++;
		if (rc == SQLITE_OK) {
			ss->done = ticket;
			ss->done_mark = mark;
		} else if (ss->error == 0) {
			ss->error = rc;
		}
		pthread_cond_broadcast(&ss->idle);
		uv_async_send(&ss->wake);
	}
	pthread_mutex_unlock(&ss->mu);
	return NULL;
}

/* The wake-up is all: the engine reads the state at its next flush. */
static void on_wake(uv_async_t *h)
{
	(void)h;
}

int store_sync_new(uv_loop_t *loop, sqlite3_file *wal, uint64_t ticket, int64_t mark,
		   struct store_sync **out)
{
	struct store_sync *ss;
	int rc;

	*out = NULL;
	if (wal == NULL || wal->pMethods == NULL)
		return SQLITE_MISUSE;
	rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
	if (rc != SQLITE_OK)
		return rc;
	ss = xcalloc(1, sizeof(*ss));
	ss->wal = wal;
	ss->want = ss->done = ticket;
	ss->want_mark = ss->done_mark = mark;
	ss->syncs = 1;
	pthread_mutex_init(&ss->mu, NULL);
	pthread_cond_init(&ss->asked, NULL);
	pthread_cond_init(&ss->idle, NULL);
	uv_async_init(loop, &ss->wake, on_wake);
	ss->wake.data = ss;
	if (pthread_create(&ss->thread, NULL, sync_main, ss) != 0)
		fatalx("store: cannot start the WAL sync thread");
	*out = ss;
	return 0;
}

void store_sync_request(struct store_sync *ss, uint64_t ticket, int64_t mark)
{
	pthread_mutex_lock(&ss->mu);
	if (ticket > ss->want) {
		ss->want = ticket;
		ss->want_mark = mark;
		pthread_cond_signal(&ss->asked);
	}
	pthread_mutex_unlock(&ss->mu);
}

void store_sync_state(struct store_sync *ss, uint64_t *ticket, int64_t *mark, int *error)
{
	pthread_mutex_lock(&ss->mu);
	*ticket = ss->done;
	*mark = ss->done_mark;
	*error = ss->error;
	pthread_mutex_unlock(&ss->mu);
}

int store_sync_now(struct store_sync *ss, uint64_t ticket, int64_t mark)
{
	int rc;

	pthread_mutex_lock(&ss->mu);
	while (ss->busy)
		pthread_cond_wait(&ss->idle, &ss->mu);
	if (ticket > ss->want) {
		ss->want = ticket;
		ss->want_mark = mark;
	}
	ticket = ss->want;
	mark = ss->want_mark;
	pthread_mutex_unlock(&ss->mu);
	/* The thread sleeps until the next request, which only this (loop) thread makes. */
	rc = ss->wal->pMethods->xSync(ss->wal, SQLITE_SYNC_NORMAL);
	pthread_mutex_lock(&ss->mu);
	ss->syncs++;
	if (rc == SQLITE_OK) {
		ss->done = ticket;
		ss->done_mark = mark;
		ss->error = 0;
	}
	pthread_mutex_unlock(&ss->mu);
	return rc;
}

uint64_t store_sync_count(struct store_sync *ss)
{
	uint64_t n;

	pthread_mutex_lock(&ss->mu);
	n = ss->syncs;
	pthread_mutex_unlock(&ss->mu);
	return n;
}

static void on_closed(uv_handle_t *h)
{
	free(h->data);
}

void store_sync_free(struct store_sync *ss)
{
	if (ss == NULL)
		return;
	pthread_mutex_lock(&ss->mu);
	ss->stop = true;
	pthread_cond_signal(&ss->asked);
	pthread_mutex_unlock(&ss->mu);
	pthread_join(ss->thread, NULL);
	pthread_mutex_destroy(&ss->mu);
	pthread_cond_destroy(&ss->asked);
	pthread_cond_destroy(&ss->idle);
	uv_close((uv_handle_t *)&ss->wake, on_closed);
}
