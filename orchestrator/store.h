/* store.h: durable state behind one narrow interface (SQLite today; PostgreSQL and sharded
 * backends later implement the same calls).
 *
 * Writes never commit on their own: the first write opens a transaction and store_commit()
 * ends it. The daemon commits once per loop turn (grouped commit), then performs the side
 * effects the committed writes allow (dispatches, API answers): persist, then act.
 *
 * Every saga row carries a shard id and the owner epoch of the node that wrote it last;
 * updates are fenced on the epoch (a node with an older epoch cannot overwrite).
 *
 * Record structs: on writes their strings are borrowed from the caller; on reads the store
 * fills them with malloc()ed copies owned by the caller, released by store_*_clear(). */
#ifndef SAGAD_STORE_H
#define SAGAD_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct store;

struct store_options {
	const char *path;        /* database file; created if missing */
	const char *synchronous; /* "FULL" (default, shipped) or "NORMAL"/"OFF" for experiments */
	int busy_timeout_ms;     /* default 5000 */
	int shard;               /* shard id given to new sagas (0 on one node) */
};

/* Opens (creating and migrating the schema to the newest version) and takes a new owner
 * epoch. Returns 0 and a store owned by the caller (store_close()), or an error with err. */
int store_open(const struct store_options *opt, struct store **out, char *err, size_t errlen);
/* Commits nothing: an open transaction is rolled back. NULL is a no-op. */
void store_close(struct store *st);

int64_t store_epoch(const struct store *st);
int store_shard(const struct store *st);
int store_schema_version(const struct store *st);

/* True while writes are waiting for store_commit(), and also once SQLite has rolled the
 * open transaction back by itself after an error (some errors end the whole transaction, not
 * only their statement, whichever writer's it was): then every write fails with that error
 * and the next store_commit() returns it. */
bool store_pending(const struct store *st);
/* Reads in one snapshot: when no transaction is open, opens a read transaction and returns
 * true; the reads until store_read_end() see the store as it was at the first of them, and
 * take SQLite's WAL read locks once (each read on its own takes and drops them: fcntl calls
 * on the -shm file). Returns false when a transaction is open already (then reads see it,
 * writes included) or on an error (then each read runs on its own). A write, a commit or a
 * rollback ends the read transaction first; store_pending() does not count it. */
bool store_read_begin(struct store *st);
/* Ends store_read_begin()'s transaction, if it is still open. */
void store_read_end(struct store *st);
/* Commits the open transaction (if any): 0, or an error (SAGAD_EBUSY, SAGAD_EFULL,
 * SAGAD_EIO) after which the transaction has been rolled back. Also the error after which
 * SQLite rolled the transaction back by itself (store_pending()): its writes never reach the
 * disk, and nothing they allow may be done. */
int store_commit(struct store *st);
/* Rolls the open transaction back (if any) and forgets a transaction SQLite rolled back. */
void store_rollback(struct store *st);

/* Durability tickets. Every commit gets the next ticket (store_committed() is the last one);
 * store_durable() says up to which ticket the commits are on disk. With synchronous=FULL
 * and no pipeline a commit is durable when store_commit() returns; a pipelined store
 * (store_pipeline_start()) commits to the WAL and syncs it on a thread, so the caller holds
 * what a commit allows until its ticket is durable. store_durable() returns 0, or an error
 * (SAGAD_EIO, ...) once a sync failed: commits after the last durable ticket may be lost,
 * and nothing they allow may be done (store_probe() clears it). */
uint64_t store_committed(const struct store *st);
int store_durable(const struct store *st, uint64_t *ticket);
/* Starts pipelined commits when the store runs with synchronous=FULL (else nothing
 * changes): commits run as NORMAL and a thread fsyncs the WAL, waking loop when a sync is
 * done. Everything committed before is made durable here. 0, or an error with err. */
struct uv_loop_s;
int store_pipeline_start(struct store *st, struct uv_loop_s *loop, char *err, size_t errlen);
/* Makes every commit durable on the calling thread and stops the thread (FULL commits
 * again). 0 or the error of that last sync. store_close() calls it too. */
int store_pipeline_stop(struct store *st);
/* fsyncs done by the pipeline's thread (and its inline syncs) since it started. */
uint64_t store_syncs(const struct store *st);
/* Rolls back whatever is pending, then writes and commits one small row (meta
 * write_probe_at) without waiting for a held lock: 0 when the store can be written again,
 * else SAGAD_EBUSY, SAGAD_EFULL, SAGAD_EIO or SAGAD_ESTORE. For the engine's pause. */
int store_probe(struct store *st);
/* Counters for metrics: commits done and rows written since open. */
void store_stats(const struct store *st, uint64_t *commits, uint64_t *writes);
/* Appends the per-statement counters to a Prometheus text (sagad_store_statements_total,
 * one line per statement: how often each ran since open; bench/profile.sh reads them). */
struct strbuf;
void store_metrics(struct store *st, struct strbuf *b);
/* Diagnostics (sagactl status, tests): the current value of one SQLite setting as text, into
 * buf. name is one of journal_mode, synchronous, foreign_keys, busy_timeout,
 * wal_autocheckpoint, page_size, page_count, freelist_count, cache_size (else SAGAD_EINVAL). */
int store_pragma(struct store *st, const char *name, char *buf, size_t len);

/* A saga instance. */
struct store_saga {
	char *id;                 /* 26-char ULID */
	int shard;
	int64_t owner_epoch;      /* filled by the store on write */
	char *flow;
	int flow_version;
	char *status;             /* saga state name: "running", "compensating", ... */
	int cursor;               /* step index the engine is at */
	char *input;              /* JSON text */
	char *output;             /* JSON text or NULL */
	char *error;              /* human text or NULL */
	char *idempotency_key;    /* or NULL */
	char *parent_id;          /* parent saga for a sub-flow run, or NULL */
	int parent_step;          /* the parent's step index, -1 when no parent */
	bool cancel_requested;
	int64_t created_at, updated_at, deadline_at; /* ms since epoch; deadline 0 = none */
};
void store_saga_clear(struct store_saga *s);

/* The current state of one step of a saga (upserted on every step transition). */
struct store_step {
	char *saga_id;
	int idx;
	char *name;
	char *state;              /* step state name */
	int attempt;              /* action attempts made */
	int comp_attempt;         /* compensation attempts made */
	char *response;           /* kept response JSON, or NULL */
	char *error;              /* last error, or NULL */
	int64_t updated_at;
	bool maybe_applied;       /* an attempt's outcome was unknown: the participant may have
				   * applied it (timeout, connection lost after sending) */
};
void store_step_clear(struct store_step *s);

/* One row of the append-only history: an attempt's dispatch or outcome, or a saga event. */
struct store_history {
	int64_t seq;              /* filled on read */
	char *saga_id;
	int step;                 /* step index or -1 for saga-level events */
	char *step_name;          /* or NULL */
	char *phase;              /* "action", "compensation" or "saga" */
	int attempt;
	char *event;              /* "dispatched", "succeeded", "failed", "timed_out", "started", ... */
	char *request;            /* summary ("POST http://.../payments") or NULL */
	int status;               /* HTTP status or 0 */
	char *response;           /* response summary (truncated body) or NULL */
	char *error;              /* or NULL */
	int64_t started_at, ended_at;
};
void store_history_clear(struct store_history *h);

/* A durable timer: at most one per (saga, kind, step); step -1 for the saga's own (deadline). */
struct store_timer {
	char *saga_id;
	char *kind;               /* "retry", "deadline", "timeout" */
	int step;
	int64_t due_at;           /* ms since epoch */
};
void store_timer_clear(struct store_timer *t);

/* Write errors: SAGAD_EBUSY, SAGAD_EFULL, SAGAD_EIO or SAGAD_ESTORE. After EFULL, EIO or
 * ENOMEM SQLite may have rolled back the whole open transaction, every writer's writes since
 * the last commit: then store_commit() fails with that error. */

/* Inserts a new saga; its shard and owner_epoch are the store's, not s->shard/owner_epoch.
 * SAGAD_EEXIST when (flow, idempotency_key) or (parent_id, parent_step) or the id
 * already exists: then *existing_id (if not NULL) gets a malloc()ed copy of that saga's id. */
int store_saga_insert(struct store *st, const struct store_saga *s, char **existing_id);
/* Updates status, cursor, output, error, cancel_requested, updated_at, deadline_at, and takes
 * the saga for this store's epoch. SAGAD_ENOENT for an unknown id; SAGAD_ESTATE when a node
 * with a newer epoch wrote the saga last (fenced: this node must stop driving it). */
int store_saga_update(struct store *st, const struct store_saga *s);
int store_step_put(struct store *st, const struct store_step *s);
int store_history_append(struct store *st, const struct store_history *h);
/* The same, and *seq gets the new row's seq (what store_each_history() reads back). */
int store_history_append_seq(struct store *st, const struct store_history *h, int64_t *seq);
/* Creates or replaces the (saga, kind, step) timer. Deleting a missing timer is not an error. */
int store_timer_put(struct store *st, const struct store_timer *t);
int store_timer_delete(struct store *st, const char *saga_id, const char *kind, int step);

/* Business keys: (name, value) pairs that index a saga (a flow's `keys:`). Put replaces the
 * saga's value of that name. */
int store_key_put(struct store *st, const char *saga_id, const char *name, const char *value);
typedef int (*store_key_cb)(const char *name, const char *value, void *arg);
int store_each_key(struct store *st, const char *saga_id, store_key_cb cb, void *arg);
/* The newest saga of flow whose key name has value; *id is malloc()ed; SAGAD_ENOENT. */
int store_key_find(struct store *st, const char *flow, const char *name, const char *value,
		   char **id);

/* Remembers a flow definition (its YAML source) so sagas started on it can resume after
 * the file changed. Idempotent; SAGAD_EEXIST when a different source is already stored
 * under that name and version. */
int store_flow_put(struct store *st, const char *name, int version, const char *source);
/* *source gets a malloc()ed copy, or SAGAD_ENOENT. */
int store_flow_get(struct store *st, const char *name, int version, char **source);

/* A message of the transactional outbox: written in the same transaction as the state
 * change that sends it, produced after the commit, marked sent on the broker's ack. */
struct store_outbox {
	int64_t seq;              /* filled by the store */
	char *topic;
	char *key;                /* or NULL */
	char *headers;            /* JSON array ["name", "value", ...], or NULL */
	char *value;              /* or NULL */
	char *saga_id;            /* the saga that sent it, or NULL */
	int64_t created_at;
	int attempts;             /* filled on read */
	char *last_error;         /* filled on read */
};
void store_outbox_clear(struct store_outbox *m);
/* Appends a message; *seq (if not NULL) gets its sequence number. */
int store_outbox_put(struct store *st, const struct store_outbox *m, int64_t *seq);
/* The broker acknowledged message seq. */
int store_outbox_sent(struct store *st, int64_t seq, int64_t sent_at);
/* An attempt to produce seq failed (it stays unsent). */
int store_outbox_failed(struct store *st, int64_t seq, const char *error);
/* Unsent messages with seq > after_seq, oldest first, at most limit. */
typedef int (*store_outbox_cb)(const struct store_outbox *m, void *arg);
int store_outbox_each_unsent(struct store *st, int64_t after_seq, int limit, store_outbox_cb cb,
			     void *arg);
/* How many messages wait to be sent. */
int store_outbox_unsent(struct store *st, int64_t *count);
/* The highest outbox sequence number of a durable commit (INT64_MAX without a pipeline):
 * store_outbox_each_unsent() hands out no row above it. */
int64_t store_outbox_durable(const struct store *st);

/* Retention: one pass. Reads up to limit completed or compensated sagas that ended before
 * before_ms, oldest first, from where the previous pass stopped (a cursor kept in the store),
 * and deletes them with their steps, history, keys and timers, except those created after
 * before_ms and children of a saga that is not finished (they are looked at again in the
 * next sweep); then up to limit outbox rows sent before before_ms. failed sagas are never
 * purged. A pass reads at most limit sagas whatever the store holds (index sagas_finished),
 * and runs in the open transaction like every write, as one savepoint: on an error it deletes
 * nothing (the transaction's earlier writes stay, unless SQLite rolled it all back, see
 * store_pending()) and the cursor stays, so the next pass reads the same sagas again. */
struct store_purge_result {
	int sagas;                /* deleted */
	int messages;             /* outbox rows deleted */
	int scanned;              /* finished sagas read */
	bool more;                /* the pass stopped at limit: call again soon */
};
int store_purge(struct store *st, int64_t before_ms, int limit, struct store_purge_result *res);
/* Diagnostics (tests): the EXPLAIN QUERY PLAN of one of the store's statements, "recover"
 * (the unfinished sagas) or "purge" (the scan of a pass), one plan line per text line. */
int store_query_plan(struct store *st, const char *name, char *buf, size_t len);

/* Reads. Callbacks get borrowed records valid during the call; return non-zero to stop, and
 * the each/list function then returns that value (else 0 or a store error). No statement is
 * running during a callback, so callbacks may call any store function, writes included. */
typedef int (*store_saga_cb)(const struct store_saga *s, void *arg);
typedef int (*store_step_cb)(const struct store_step *s, void *arg);
typedef int (*store_history_cb)(const struct store_history *h, void *arg);
typedef int (*store_timer_cb)(const struct store_timer *t, void *arg);

/* Every saga whose status is not final (not in final_states, a NULL-terminated list), in id
 * order. Fast (a partial index) when the list includes "completed" and "compensated". */
int store_each_unfinished(struct store *st, const char *const *final_states, store_saga_cb cb,
			  void *arg);
/* Every saga a step of parent_id started (sub-flow runs), in parent_step order. */
int store_each_child(struct store *st, const char *parent_id, store_saga_cb cb, void *arg);
int store_each_step(struct store *st, const char *saga_id, store_step_cb cb, void *arg);
int store_each_history(struct store *st, const char *saga_id, store_history_cb cb, void *arg);
/* The same rows for callers that only look at them (answer.c): the callback runs while the
 * statement does, the record's strings are SQLite's (valid during the call, not copied), and
 * it must not call the store. */
int store_scan_steps(struct store *st, const char *saga_id, store_step_cb cb, void *arg);
int store_scan_history(struct store *st, const char *saga_id, store_history_cb cb, void *arg);
/* The saga's row the same way, with one difference: the callback may run the store's other
 * reads (store_each_key(), store_scan_steps(), store_scan_history(); no write, no
 * store_saga_get() or store_scan_saga()), as answer.c does to write the whole saga while its
 * row's strings are still SQLite's. Returns the callback's value, SAGAD_ENOENT, or a store
 * error. */
int store_scan_saga(struct store *st, const char *id, store_saga_cb cb, void *arg);
int store_each_timer(struct store *st, store_timer_cb cb, void *arg);

/* Fills *out (overwritten, not cleared first); SAGAD_ENOENT when missing. */
int store_saga_get(struct store *st, const char *id, struct store_saga *out);
/* The id of the saga with that key; SAGAD_ENOENT when none. *id is malloc()ed. */
int store_saga_find_key(struct store *st, const char *flow, const char *idempotency_key, char **id);

struct store_list_query {
	const char *flow;         /* or NULL */
	const char *status;       /* or NULL */
	const char *before_id;    /* cursor: ids strictly older than this, or NULL */
	const char *key_name;     /* business key filter (with key_value), or NULL */
	const char *key_value;
	int limit;                /* clamped to 1..1000 */
};
/* Newest first. */
int store_saga_list(struct store *st, const struct store_list_query *q, store_saga_cb cb, void *arg);

#endif
