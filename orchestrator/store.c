/* store.c: the SQLite store. One connection, used only from the loop thread; every statement
 * is prepared once at open. Writes join one transaction (BEGIN IMMEDIATE on the first write
 * after a commit) that store_commit() ends: the grouped commit. The schema and the reasons
 * behind it are in docs/architecture.md ("SQLite schema"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sqlite3.h>
#include "error.h"
#include "log.h"
#include "store.h"
#include "store_sync.h"
#include "store_vfs.h"
#include "util.h"

/* The VFS shim needs sqlite3_database_file_object() (3.32); upsert (3.24) is the newest SQL
 * feature used; prepare_v3 needs 3.20. */
#define MIN_SQLITE_VERSION 3032000
#define BATCH 256             /* rows read per query by the each functions */
#define LIST_MAX 1000

/* Statuses the partial index sagas_unfinished leaves out. The statement that uses the index
 * must repeat the index's predicate exactly, so both take it from here. Changing the list
 * needs a new migration that re-creates the index. */
#define UNFINISHED_WHERE "status NOT IN ('completed', 'compensated')"
/* The statuses retention deletes, and the predicate of the partial index sagas_finished
 * (migration 5), repeated exactly by the purge's scan for the same reason. */
#define FINISHED_WHERE "status IN ('completed', 'compensated')"

/* The schema, one migration per entry, each applied in its own transaction. Never edit an
 * applied migration: append a new one. The array length is the schema version. */
static const char *const migrations[] = {
	/* 1: the initial schema */
	"CREATE TABLE schema_migrations ("
	"  version INTEGER PRIMARY KEY,"
	"  applied_at INTEGER NOT NULL);"
	"CREATE TABLE meta ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value) WITHOUT ROWID;"
	"INSERT INTO meta (key, value) VALUES ('owner_epoch', 0);"
	"CREATE TABLE nodes ("
	"  epoch INTEGER PRIMARY KEY,"
	"  shard INTEGER NOT NULL,"
	"  hostname TEXT NOT NULL,"
	"  pid INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL);"
	"CREATE TABLE sagas ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  shard INTEGER NOT NULL,"
	"  owner_epoch INTEGER NOT NULL,"
	"  flow TEXT NOT NULL,"
	"  flow_version INTEGER NOT NULL,"
	"  status TEXT NOT NULL,"
	"  cursor INTEGER NOT NULL,"
	"  input TEXT,"
	"  output TEXT,"
	"  error TEXT,"
	"  idempotency_key TEXT,"
	"  parent_id TEXT,"
	"  parent_step INTEGER,"
	"  cancel_requested INTEGER NOT NULL DEFAULT 0,"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  deadline_at INTEGER,"
	"  CHECK ((parent_id IS NULL) = (parent_step IS NULL)));"
	"CREATE INDEX sagas_flow ON sagas (flow, id);"
	"CREATE INDEX sagas_status ON sagas (status, id);"
	"CREATE INDEX sagas_unfinished ON sagas (id) WHERE " UNFINISHED_WHERE ";"
	"CREATE UNIQUE INDEX sagas_idempotency ON sagas (flow, idempotency_key)"
	"  WHERE idempotency_key IS NOT NULL;"
	"CREATE UNIQUE INDEX sagas_parent ON sagas (parent_id, parent_step)"
	"  WHERE parent_id IS NOT NULL;"
	"CREATE TABLE saga_steps ("
	"  saga_id TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL,"
	"  name TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  attempt INTEGER NOT NULL DEFAULT 0,"
	"  comp_attempt INTEGER NOT NULL DEFAULT 0,"
	"  response TEXT,"
	"  error TEXT,"
	"  updated_at INTEGER NOT NULL,"
	"  PRIMARY KEY (saga_id, idx)) WITHOUT ROWID;"
	"CREATE TABLE saga_history ("
	"  seq INTEGER PRIMARY KEY,"
	"  saga_id TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,"
	"  step INTEGER,"
	"  step_name TEXT,"
	"  phase TEXT NOT NULL,"
	"  attempt INTEGER NOT NULL DEFAULT 0,"
	"  event TEXT NOT NULL,"
	"  request TEXT,"
	"  status INTEGER,"
	"  response TEXT,"
	"  error TEXT,"
	"  started_at INTEGER,"
	"  ended_at INTEGER);"
	"CREATE INDEX saga_history_saga ON saga_history (saga_id);"
	"CREATE TABLE timers ("
	"  saga_id TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,"
	"  kind TEXT NOT NULL,"
	"  step INTEGER,"
	"  due_at INTEGER NOT NULL,"
	"  PRIMARY KEY (saga_id, kind)) WITHOUT ROWID;"
	"CREATE TABLE flow_versions ("
	"  name TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  source TEXT NOT NULL,"
	"  loaded_at INTEGER NOT NULL,"
	"  PRIMARY KEY (name, version));",
	/* 2: a step some attempt of which may have been applied (timeout, connection lost after
	 * sending): if the step is abandoned it is compensated, not treated as "did nothing". */
	"ALTER TABLE saga_steps ADD COLUMN maybe_applied INTEGER NOT NULL DEFAULT 0;",
	/* 3: the transactional outbox: messages written in the same commit as the state change
	 * that sends them, produced after it, marked sent on the broker's acknowledgement. */
	"CREATE TABLE outbox ("
	"  seq INTEGER PRIMARY KEY,"
	"  topic TEXT NOT NULL,"
	"  key TEXT,"
	"  headers TEXT,"
	"  value TEXT,"
	"  saga_id TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  sent_at INTEGER,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT);"
	"CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;",
	/* 4: timers per (saga, kind, step), so the parallel steps of one saga each have their
	 * own retry and timeout timer (-1 = the saga's own, the deadline); business keys: the
	 * fields a flow names (orderId, applyId) index its sagas. */
	"CREATE TABLE timers_v4 ("
	"  saga_id TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,"
	"  kind TEXT NOT NULL,"
	"  step INTEGER NOT NULL,"
	"  due_at INTEGER NOT NULL,"
	"  PRIMARY KEY (saga_id, kind, step)) WITHOUT ROWID;"
	"INSERT INTO timers_v4 SELECT saga_id, kind, CASE WHEN kind = 'deadline' THEN -1 "
	"  ELSE coalesce(step, -1) END, due_at FROM timers;"
	"DROP TABLE timers;"
	"ALTER TABLE timers_v4 RENAME TO timers;"
	"CREATE TABLE saga_keys ("
	"  saga_id TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (saga_id, name)) WITHOUT ROWID;"
	"CREATE INDEX saga_keys_value ON saga_keys (name, value, saga_id);",
	/* 5: the purge walks finished sagas in the order they ended, from the oldest, and reads
	 * only the ones it may delete (before: every finished saga created before the cutoff,
	 * by id, checking updated_at row by row). Partial: a running saga is not in it, so the
	 * UPDATEs of a saga's life leave it alone until the one that finishes it. */
	"CREATE INDEX sagas_finished ON sagas (updated_at, id) WHERE " FINISHED_WHERE ";"
	/* ... and the list's status filter takes a partial index too: finished sagas here, the
	 * others in sagas_unfinished. The (status, id) index of every saga cost two index
	 * writes per saga (its entry at the start, moved at the end) for that filter alone. */
	"DROP INDEX sagas_status;"
	"CREATE INDEX sagas_finished_status ON sagas (status, id) WHERE " FINISHED_WHERE ";",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum stmt_id {
	ST_BEGIN, ST_BEGIN_READ, ST_COMMIT, ST_ROLLBACK,
	ST_SAGA_INSERT, ST_SAGA_UPDATE, ST_SAGA_EPOCH, ST_SAGA_GET,
	ST_SAGA_FIND_KEY, ST_SAGA_FIND_PARENT, ST_SAGA_CHILDREN,
	ST_UNFINISHED_INDEXED, ST_UNFINISHED_SCAN,
	ST_STEP_PUT, ST_STEP_EACH,
	ST_HISTORY_APPEND, ST_HISTORY_EACH,
	ST_TIMER_PUT, ST_TIMER_DELETE, ST_TIMER_EACH,
	ST_KEY_PUT, ST_KEY_EACH, ST_KEY_FIND, ST_LIST_KEY,
	ST_FLOW_PUT, ST_FLOW_GET,
	ST_OUTBOX_PUT, ST_OUTBOX_SENT, ST_OUTBOX_FAILED, ST_OUTBOX_UNSENT, ST_OUTBOX_COUNT,
	ST_PURGE_SCAN, ST_PURGE_STEPS, ST_PURGE_HISTORY, ST_PURGE_KEYS, ST_PURGE_TIMERS,
	ST_PURGE_SAGA, ST_PURGE_OUTBOX, ST_PURGE_SAVEPOINT, ST_PURGE_RELEASE, ST_PURGE_UNDO,
	/* store_saga_list: one statement per filter combination, so each can use its index */
	ST_LIST, ST_LIST_LAST = ST_LIST + 15,
	ST_MAX
};
enum { LIST_FLOW = 1, LIST_STATUS = 2, LIST_BEFORE = 4, LIST_FINAL = 8 };

/* The statements' names in the metrics (sagad_store_statements_total). */
static const char *const stmt_name[ST_MAX] = {
	[ST_BEGIN] = "begin", [ST_BEGIN_READ] = "begin_read", [ST_COMMIT] = "commit",
	[ST_ROLLBACK] = "rollback", [ST_SAGA_INSERT] = "saga_insert",
	[ST_SAGA_UPDATE] = "saga_update", [ST_SAGA_EPOCH] = "saga_epoch", [ST_SAGA_GET] = "saga_get",
	[ST_SAGA_FIND_KEY] = "saga_find_key", [ST_SAGA_FIND_PARENT] = "saga_find_parent",
	[ST_SAGA_CHILDREN] = "saga_children", [ST_UNFINISHED_INDEXED] = "unfinished",
	[ST_UNFINISHED_SCAN] = "unfinished_scan", [ST_STEP_PUT] = "step_put",
	[ST_STEP_EACH] = "step_each", [ST_HISTORY_APPEND] = "history_append",
	[ST_HISTORY_EACH] = "history_each", [ST_TIMER_PUT] = "timer_put",
	[ST_TIMER_DELETE] = "timer_delete", [ST_TIMER_EACH] = "timer_each",
	[ST_KEY_PUT] = "key_put", [ST_KEY_EACH] = "key_each", [ST_KEY_FIND] = "key_find",
	[ST_LIST_KEY] = "list_key", [ST_FLOW_PUT] = "flow_put", [ST_FLOW_GET] = "flow_get",
	[ST_OUTBOX_PUT] = "outbox_put", [ST_OUTBOX_SENT] = "outbox_sent",
	[ST_OUTBOX_FAILED] = "outbox_failed", [ST_OUTBOX_UNSENT] = "outbox_unsent",
	[ST_OUTBOX_COUNT] = "outbox_count", [ST_PURGE_SCAN] = "purge_scan",
	[ST_PURGE_STEPS] = "purge_steps", [ST_PURGE_HISTORY] = "purge_history",
	[ST_PURGE_KEYS] = "purge_keys", [ST_PURGE_TIMERS] = "purge_timers",
	[ST_PURGE_SAGA] = "purge_saga", [ST_PURGE_OUTBOX] = "purge_outbox",
	/* (the purge's savepoint statements have none: the metrics stay as they were) */
	/* ST_LIST + n: one "list" line, their sum (store_metrics()) */
};

#define SAGA_COLS "id, shard, owner_epoch, flow, flow_version, status, cursor, input, output, " \
	"error, idempotency_key, parent_id, parent_step, cancel_requested, created_at, "         \
	"updated_at, deadline_at"
#define STEP_COLS "saga_id, idx, name, state, attempt, comp_attempt, response, error, " \
	"updated_at, maybe_applied"
#define HISTORY_COLS "saga_id, step, step_name, phase, attempt, event, request, status, " \
	"response, error, started_at, ended_at"
#define LIST_SQL(where) "SELECT " SAGA_COLS " FROM sagas " where " ORDER BY id DESC LIMIT ?4"
/* The unfinished sagas are few (those running, and failed ones waiting for an operator):
 * walking them all beats a flow's whole history, whatever the statistics say. */
#define LIST_UNFINISHED_SQL(where) "SELECT " SAGA_COLS " FROM sagas INDEXED BY sagas_unfinished " \
	where " AND " UNFINISHED_WHERE " ORDER BY id DESC LIMIT ?4"

static const char *const sql[ST_MAX] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAGA_INSERT] = "INSERT INTO sagas (" SAGA_COLS ") VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
	[ST_SAGA_UPDATE] = "UPDATE sagas SET status = ?1, cursor = ?2, output = ?3, error = ?4, "
		"cancel_requested = ?5, updated_at = ?6, deadline_at = ?7, owner_epoch = ?8 "
		"WHERE id = ?9 AND owner_epoch <= ?8",
	[ST_SAGA_EPOCH] = "SELECT owner_epoch FROM sagas WHERE id = ?1",
	[ST_SAGA_GET] = "SELECT " SAGA_COLS " FROM sagas WHERE id = ?1",
	[ST_SAGA_FIND_KEY] = "SELECT id FROM sagas WHERE flow = ?1 AND idempotency_key = ?2",
	[ST_SAGA_FIND_PARENT] = "SELECT id FROM sagas WHERE parent_id = ?1 AND parent_step = ?2",
	[ST_SAGA_CHILDREN] = "SELECT " SAGA_COLS " FROM sagas WHERE parent_id = ?1 "
		"ORDER BY parent_step",
	/* INDEXED BY: the plan must not depend on the planner's statistics. With statistics
	 * taken when the table was small (PRAGMA optimize at a close), SQLite chose the primary
	 * key's range instead and read every finished saga at startup (530 ms for 1,000,000). */
	[ST_UNFINISHED_INDEXED] = "SELECT " SAGA_COLS " FROM sagas INDEXED BY sagas_unfinished "
		"WHERE " UNFINISHED_WHERE " AND id > ?1 ORDER BY id LIMIT ?2",
	[ST_UNFINISHED_SCAN] = "SELECT " SAGA_COLS " FROM sagas WHERE id > ?1 ORDER BY id LIMIT ?2",
	/* REPLACE, not an upsert: the statement gives every column of the row, and the table has
	 * no other index, no trigger, and no foreign key checked (configure()), so replacing the
	 * row is the same as updating all of it. */
	[ST_STEP_PUT] = "INSERT OR REPLACE INTO saga_steps (" STEP_COLS ") VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[ST_STEP_EACH] = "SELECT " STEP_COLS " FROM saga_steps WHERE saga_id = ?1 ORDER BY idx",
	[ST_HISTORY_APPEND] = "INSERT INTO saga_history (" HISTORY_COLS ") VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_HISTORY_EACH] = "SELECT seq, " HISTORY_COLS " FROM saga_history WHERE saga_id = ?1 "
		"ORDER BY seq",
	[ST_TIMER_PUT] = "INSERT INTO timers (saga_id, kind, step, due_at) VALUES (?1, ?2, ?3, ?4) "
		"ON CONFLICT (saga_id, kind, step) DO UPDATE SET due_at = excluded.due_at",
	[ST_TIMER_DELETE] = "DELETE FROM timers WHERE saga_id = ?1 AND kind = ?2 AND step = ?3",
	[ST_TIMER_EACH] = "SELECT saga_id, kind, step, due_at FROM timers "
		"WHERE (saga_id, kind, step) > (?1, ?2, ?3) ORDER BY saga_id, kind, step LIMIT ?4",
	[ST_KEY_PUT] = "INSERT INTO saga_keys (saga_id, name, value) VALUES (?1, ?2, ?3) "
		"ON CONFLICT (saga_id, name) DO UPDATE SET value = excluded.value",
	[ST_KEY_EACH] = "SELECT name, value FROM saga_keys WHERE saga_id = ?1 ORDER BY name",
	[ST_KEY_FIND] = "SELECT k.saga_id FROM saga_keys k JOIN sagas s ON s.id = k.saga_id "
		"WHERE k.name = ?1 AND k.value = ?2 AND s.flow = ?3 ORDER BY k.saga_id DESC LIMIT 1",
	[ST_LIST_KEY] = "SELECT " SAGA_COLS " FROM sagas WHERE id IN (SELECT saga_id FROM "
		"saga_keys WHERE name = ?5 AND value = ?6) AND (?1 IS NULL OR flow = ?1) AND "
		"(?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4",
	[ST_FLOW_PUT] = "INSERT INTO flow_versions (name, version, source, loaded_at) "
		"VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name, version) DO NOTHING",
	[ST_FLOW_GET] = "SELECT source FROM flow_versions WHERE name = ?1 AND version = ?2",
	[ST_OUTBOX_PUT] = "INSERT INTO outbox (topic, key, headers, value, saga_id, created_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_OUTBOX_SENT] = "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1 WHERE seq = ?1",
	[ST_OUTBOX_FAILED] = "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1",
	[ST_OUTBOX_UNSENT] = "SELECT seq, topic, key, headers, value, saga_id, created_at, attempts, "
		"last_error FROM outbox WHERE sent_at IS NULL AND seq > ?1 AND seq <= ?3 "
		"ORDER BY seq LIMIT ?2",
	[ST_OUTBOX_COUNT] = "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
	/* Retention: the finished sagas that ended before the cutoff, oldest first, from the
	 * purge's cursor on (sagas_finished, migration 5): every row read is one the pass may
	 * delete, except children whose parent is not finished (it may still compensate them)
	 * and, with a clock that went back, sagas created after the cutoff. The third column
	 * says which rows go. Steps, history, keys and timers go with their saga (the
	 * ST_PURGE_* deletes before its own: foreign keys are off, configure()). failed sagas
	 * are kept: they wait for an operator. */
	[ST_PURGE_SCAN] = "SELECT id, updated_at, id < ?1 AND NOT EXISTS (SELECT 1 FROM sagas p "
		"WHERE p.id = s.parent_id AND p." UNFINISHED_WHERE ") FROM sagas s INDEXED BY "
		"sagas_finished WHERE s." FINISHED_WHERE " AND s.updated_at < ?2 AND "
		"(s.updated_at, s.id) > (?3, ?4) ORDER BY s.updated_at, s.id LIMIT ?5",
	[ST_PURGE_STEPS] = "DELETE FROM saga_steps WHERE saga_id = ?1",
	[ST_PURGE_HISTORY] = "DELETE FROM saga_history WHERE saga_id = ?1",
	[ST_PURGE_KEYS] = "DELETE FROM saga_keys WHERE saga_id = ?1",
	[ST_PURGE_TIMERS] = "DELETE FROM timers WHERE saga_id = ?1",
	[ST_PURGE_SAGA] = "DELETE FROM sagas WHERE id = ?1",
	/* The newest row always stays: a new row's seq is max(seq) + 1, and the relay (its
	 * cursor) and the durable mark of pipelined commits need every new row's seq above
	 * every row's before it. */
	[ST_PURGE_OUTBOX] = "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
		"WHERE sent_at IS NOT NULL AND sent_at < ?1 "
		"AND seq < (SELECT max(seq) FROM outbox) ORDER BY seq LIMIT ?2)",
	/* A pass's batch is all or nothing inside the grouped transaction (store_purge()). */
	[ST_PURGE_SAVEPOINT] = "SAVEPOINT purge",
	[ST_PURGE_RELEASE] = "RELEASE purge",
	[ST_PURGE_UNDO] = "ROLLBACK TO purge",
	[ST_LIST] = LIST_SQL(""),
	[ST_LIST + LIST_FLOW] = LIST_SQL("WHERE flow = ?1"),
	[ST_LIST + LIST_BEFORE] = LIST_SQL("WHERE id < ?3"),
	[ST_LIST + LIST_BEFORE + LIST_FLOW] = LIST_SQL("WHERE flow = ?1 AND id < ?3"),
	/* A status filter repeats the predicate of the partial index that holds that status:
	 * sagas_finished_status for a final one, sagas_unfinished for the others. */
	[ST_LIST + LIST_STATUS] = LIST_UNFINISHED_SQL("WHERE status = ?2"),
	[ST_LIST + LIST_FLOW + LIST_STATUS] =
		LIST_UNFINISHED_SQL("WHERE flow = ?1 AND status = ?2"),
	[ST_LIST + LIST_BEFORE + LIST_STATUS] = LIST_UNFINISHED_SQL("WHERE status = ?2 AND id < ?3"),
	[ST_LIST + LIST_BEFORE + LIST_FLOW + LIST_STATUS] =
		LIST_UNFINISHED_SQL("WHERE flow = ?1 AND status = ?2 AND id < ?3"),
	[ST_LIST + LIST_FINAL + LIST_STATUS] = LIST_SQL("WHERE status = ?2 AND " FINISHED_WHERE),
	[ST_LIST + LIST_FINAL + LIST_FLOW + LIST_STATUS] =
		LIST_SQL("WHERE flow = ?1 AND status = ?2 AND " FINISHED_WHERE),
	[ST_LIST + LIST_FINAL + LIST_BEFORE + LIST_STATUS] =
		LIST_SQL("WHERE status = ?2 AND id < ?3 AND " FINISHED_WHERE),
	[ST_LIST + LIST_FINAL + LIST_BEFORE + LIST_FLOW + LIST_STATUS] =
		LIST_SQL("WHERE flow = ?1 AND status = ?2 AND id < ?3 AND " FINISHED_WHERE),
	/* (LIST_FINAL without LIST_STATUS: no statement) */
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_MAX];
	int64_t epoch;
	int shard;
	int schema_version;
	uint64_t commits, writes;        /* commits: also the last commit's durability ticket */
	/* The purge's cursor: the (updated_at, id) of the last finished saga it read; a sweep
	 * goes on from there until a pass reaches the cutoff, then starts again (id ""). */
	int64_t purge_updated_at;
	char *purge_id;          /* NULL: from the start */
	/* The cursor as of the last commit: a rollback of the grouped transaction (a failed
	 * commit, a transaction SQLite rolled back) undoes the deletes of every batch released in
	 * it, so the cursor goes back there too (purge_cursor_back()). */
	int64_t purge_kept_updated_at;
	char *purge_kept_id;
	bool purge_moved;        /* the cursor moved since the last commit */
	int busy_timeout_ms;     /* configured; 0 is in force after a busy BEGIN (busy_fast) */
	bool busy_fast;
	bool full;               /* synchronous=FULL configured (the shipped setting) */
	bool reading;            /* the open transaction is store_read_begin()'s (no writes) */
	bool writing;            /* begin() opened the grouped write transaction */
	/* SQLite rolled the grouped transaction back by itself after an error in some writer's
	 * statement (lost()): the sagad code that store_commit() returns, until it or
	 * store_rollback() ends the transaction; 0 otherwise. */
	int lost;
	/* Pipelined commits (store_pipeline_start): the tickets are the commit count; the
	 * outbox's highest sequence number at each commit travels with its sync, so that only
	 * rows of durable commits are produced. */
	struct store_sync *sync;
	int64_t outbox_tx_max, outbox_committed;
	/* Runs of each statement, folded in from SQLite's 32-bit counters (stmt_runs_fold()). */
	uint64_t runs[ST_MAX];
};

/* --- errors ------------------------------------------------------------------------------ */

static int map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return SAGAD_EBUSY;
	case SQLITE_FULL:
		return SAGAD_EFULL;
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
		return SAGAD_EIO;
	case SQLITE_NOMEM:
		return SAGAD_ENOMEM;
	default:
		return SAGAD_ESTORE;
	}
}

/* Records that the grouped write transaction is gone with its writes: every write fails and
 * the next store_commit() returns the error (rc 0: found at the next begin or commit, the
 * error unseen: the engine pauses, EIO). */
static void mark_lost(struct store *st, const char *op, int rc)
{
	st->writing = false;
	if (st->lost == 0)
		st->lost = rc != SQLITE_OK ? map_rc(rc) : SAGAD_EIO;
	log_error("event=store_error op=%s code=%d msg=\"the grouped transaction was rolled back: "
		  "every write since the last commit is lost; the commit fails\"", op, rc);
}

/* Notices that the grouped transaction is gone though nobody ended it. After some errors
 * (a full disk or an I/O error while SQLite spills its page cache, no memory) SQLite rolls
 * back the whole transaction, not only the failed statement; the statement may be any
 * writer's (the purge, the outbox's marks), and the engine's earlier writes of the turn went
 * with it. The error stays until store_commit() returns it (so the engine pauses instead of
 * acting on writes that never reach the disk) or store_rollback() drops it. */
static void lost(struct store *st, const char *op, int rc)
{
	if (st->writing && sqlite3_get_autocommit(st->db))
		mark_lost(st, op, rc);
}

/* Logs the connection's error message for op and returns rc as a sagad code. Call it before
 * resetting the statement that failed. */
static int fail(struct store *st, const char *op, int rc)
{
	char q[512];

	log_error("event=store_error op=%s code=%d msg=%s", op, rc,
		  log_quote(sqlite3_errmsg(st->db), q, sizeof(q)));
	lost(st, op, rc);
	return map_rc(rc);
}

/* --- binding and reading ----------------------------------------------------------------- */

/* Writes step before returning, so the caller's strings outlive the statement's use of them:
 * SQLITE_STATIC saves a copy per column. */
static void bind_text(sqlite3_stmt *stmt, int i, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(stmt, i);
	else
		sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC);
}

/* Binds v, or NULL when v is the "none" value (0 for times, -1 for indexes). */
static void bind_opt(sqlite3_stmt *stmt, int i, int64_t v, int64_t none)
{
	if (v == none)
		sqlite3_bind_null(stmt, i);
	else
		sqlite3_bind_int64(stmt, i, v);
}

static char *col_text(sqlite3_stmt *stmt, int i)
{
	const unsigned char *p = sqlite3_column_text(stmt, i);

	if (p == NULL)
		return NULL;
	return xstrndup((const char *)p, (size_t)sqlite3_column_bytes(stmt, i));
}

static int64_t col_opt(sqlite3_stmt *stmt, int i, int64_t none)
{
	if (sqlite3_column_type(stmt, i) == SQLITE_NULL)
		return none;
	return sqlite3_column_int64(stmt, i);
}

/* Resets a statement after use. Its bindings stay (sqlite3_clear_bindings() cost about 3,500
 * instructions per happy saga): every use binds each parameter its statement has before
 * stepping it (the list's key statement binds NULL to the filters it is not given), so a
 * stale value, or a SQLITE_STATIC pointer to freed text, is never read. */
static void finish(sqlite3_stmt *stmt)
{
	sqlite3_reset(stmt);
}

static void read_saga(sqlite3_stmt *stmt, struct store_saga *s)
{
	s->id = col_text(stmt, 0);
	s->shard = sqlite3_column_int(stmt, 1);
	s->owner_epoch = sqlite3_column_int64(stmt, 2);
	s->flow = col_text(stmt, 3);
	s->flow_version = sqlite3_column_int(stmt, 4);
	s->status = col_text(stmt, 5);
	s->cursor = sqlite3_column_int(stmt, 6);
	s->input = col_text(stmt, 7);
	s->output = col_text(stmt, 8);
	s->error = col_text(stmt, 9);
	s->idempotency_key = col_text(stmt, 10);
	s->parent_id = col_text(stmt, 11);
	s->parent_step = (int)col_opt(stmt, 12, -1);
	s->cancel_requested = sqlite3_column_int(stmt, 13) != 0;
	s->created_at = sqlite3_column_int64(stmt, 14);
	s->updated_at = sqlite3_column_int64(stmt, 15);
	s->deadline_at = col_opt(stmt, 16, 0);
}

/* The borrowed form of read_saga(): the strings point into the statement's current row. */
static void borrow_saga(sqlite3_stmt *stmt, struct store_saga *s)
{
	s->id = (char *)sqlite3_column_text(stmt, 0);
	s->shard = sqlite3_column_int(stmt, 1);
	s->owner_epoch = sqlite3_column_int64(stmt, 2);
	s->flow = (char *)sqlite3_column_text(stmt, 3);
	s->flow_version = sqlite3_column_int(stmt, 4);
	s->status = (char *)sqlite3_column_text(stmt, 5);
	s->cursor = sqlite3_column_int(stmt, 6);
	s->input = (char *)sqlite3_column_text(stmt, 7);
	s->output = (char *)sqlite3_column_text(stmt, 8);
	s->error = (char *)sqlite3_column_text(stmt, 9);
	s->idempotency_key = (char *)sqlite3_column_text(stmt, 10);
	s->parent_id = (char *)sqlite3_column_text(stmt, 11);
	s->parent_step = (int)col_opt(stmt, 12, -1);
	s->cancel_requested = sqlite3_column_int(stmt, 13) != 0;
	s->created_at = sqlite3_column_int64(stmt, 14);
	s->updated_at = sqlite3_column_int64(stmt, 15);
	s->deadline_at = col_opt(stmt, 16, 0);
}

static void read_step(sqlite3_stmt *stmt, struct store_step *s)
{
	s->saga_id = col_text(stmt, 0);
	s->idx = sqlite3_column_int(stmt, 1);
	s->name = col_text(stmt, 2);
	s->state = col_text(stmt, 3);
	s->attempt = sqlite3_column_int(stmt, 4);
	s->comp_attempt = sqlite3_column_int(stmt, 5);
	s->response = col_text(stmt, 6);
	s->error = col_text(stmt, 7);
	s->updated_at = sqlite3_column_int64(stmt, 8);
	s->maybe_applied = sqlite3_column_int(stmt, 9) != 0;
}

static void read_history(sqlite3_stmt *stmt, struct store_history *h)
{
	h->seq = sqlite3_column_int64(stmt, 0);
	h->saga_id = col_text(stmt, 1);
	h->step = (int)col_opt(stmt, 2, -1);
	h->step_name = col_text(stmt, 3);
	h->phase = col_text(stmt, 4);
	h->attempt = sqlite3_column_int(stmt, 5);
	h->event = col_text(stmt, 6);
	h->request = col_text(stmt, 7);
	h->status = (int)col_opt(stmt, 8, 0);
	h->response = col_text(stmt, 9);
	h->error = col_text(stmt, 10);
	h->started_at = col_opt(stmt, 11, 0);
	h->ended_at = col_opt(stmt, 12, 0);
}

/* The borrowed forms: the strings point into the statement's current row. */
static const char *col_borrow(sqlite3_stmt *stmt, int i)
{
	return (const char *)sqlite3_column_text(stmt, i);
}

static void borrow_step(sqlite3_stmt *stmt, struct store_step *s)
{
	s->saga_id = (char *)col_borrow(stmt, 0);
	s->idx = sqlite3_column_int(stmt, 1);
	s->name = (char *)col_borrow(stmt, 2);
	s->state = (char *)col_borrow(stmt, 3);
	s->attempt = sqlite3_column_int(stmt, 4);
	s->comp_attempt = sqlite3_column_int(stmt, 5);
	s->response = (char *)col_borrow(stmt, 6);
	s->error = (char *)col_borrow(stmt, 7);
	s->updated_at = sqlite3_column_int64(stmt, 8);
	s->maybe_applied = sqlite3_column_int(stmt, 9) != 0;
}

static void borrow_history(sqlite3_stmt *stmt, struct store_history *h)
{
	h->seq = sqlite3_column_int64(stmt, 0);
	h->saga_id = (char *)col_borrow(stmt, 1);
	h->step = (int)col_opt(stmt, 2, -1);
	h->step_name = (char *)col_borrow(stmt, 3);
	h->phase = (char *)col_borrow(stmt, 4);
	h->attempt = sqlite3_column_int(stmt, 5);
	h->event = (char *)col_borrow(stmt, 6);
	h->request = (char *)col_borrow(stmt, 7);
	h->status = (int)col_opt(stmt, 8, 0);
	h->response = (char *)col_borrow(stmt, 9);
	h->error = (char *)col_borrow(stmt, 10);
	h->started_at = col_opt(stmt, 11, 0);
	h->ended_at = col_opt(stmt, 12, 0);
}

static void read_timer(sqlite3_stmt *stmt, struct store_timer *t)
{
	t->saga_id = col_text(stmt, 0);
	t->kind = col_text(stmt, 1);
	t->step = (int)col_opt(stmt, 2, -1);
	t->due_at = sqlite3_column_int64(stmt, 3);
}

/* --- transactions ------------------------------------------------------------------------ */

/* Joins the grouped transaction, opening it on the first write after a commit. */
static int begin(struct store *st)
{
	sqlite3_stmt *stmt = st->stmt[ST_BEGIN];
	int rc;

	if (st->reading)
		store_read_end(st);   /* a write ends the reads' snapshot: it starts from the newest */
	lost(st, "begin", SQLITE_OK);   /* after an error fail() did not see */
	if (st->lost != 0)
		return st->lost;      /* no write joins a new transaction before the commit fails */
	if (!sqlite3_get_autocommit(st->db))
		return 0;
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE) {
		rc = fail(st, "begin", rc);
	} else {
		rc = 0;
		st->writing = true;
	}
	sqlite3_reset(stmt);
	if (rc == SAGAD_EBUSY && !st->busy_fast) {
		/* The lock stayed taken for a whole busy_timeout: the next writes (of this loop
		 * turn) fail at once instead of each waiting that long again. The next commit or
		 * store_probe() restores the timeout. */
		st->busy_fast = true;
		sqlite3_busy_timeout(st->db, 0);
	}
	return rc;
}

static void busy_restore(struct store *st)
{
	if (!st->busy_fast)
		return;
	st->busy_fast = false;
	sqlite3_busy_timeout(st->db, st->busy_timeout_ms);
}

/* Steps a bound write statement inside the grouped transaction; the caller resets it (after
 * reading the error message, if it wants it). Returns the SQLite result code (SQLITE_DONE on
 * success). Constraint failures are not logged, for callers that treat them as answers;
 * *err gets the sagad code (0 on success). */
static int run_write(struct store *st, sqlite3_stmt *stmt, const char *op, int *err)
{
	int rc;

	*err = begin(st);
	if (*err != 0) {
		finish(stmt);
		return SQLITE_ERROR;
	}
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		st->writes += (uint64_t)sqlite3_changes(st->db);
	else if ((rc & 0xff) != SQLITE_CONSTRAINT)
		*err = fail(st, op, rc);
	else
		*err = SAGAD_ESTORE;
	return rc;
}

/* A write whose every failure is an error. */
static int exec_write(struct store *st, sqlite3_stmt *stmt, const char *op)
{
	int err, rc;

	rc = run_write(st, stmt, op, &err);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		err = fail(st, op, rc);
	finish(stmt);
	return err;
}

bool store_pending(const struct store *st)
{
	return st->writing || st->lost != 0 || (!sqlite3_get_autocommit(st->db) && !st->reading);
}

bool store_read_begin(struct store *st)
{
	sqlite3_stmt *stmt = st->stmt[ST_BEGIN_READ];
	int rc;

	if (!sqlite3_get_autocommit(st->db) || st->writing || st->lost != 0)
		return false;
	rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE) {
		fail(st, "read_begin", rc);
		return false;
	}
	st->reading = true;
	return true;
}

void store_read_end(struct store *st)
{
	sqlite3_stmt *stmt = st->stmt[ST_COMMIT];
	int rc;

	if (!st->reading)
		return;
	st->reading = false;
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE) {
		fail(st, "read_end", rc);
		sqlite3_reset(stmt);
		store_rollback(st);
		return;
	}
	sqlite3_reset(stmt);
}

/* Adds SQLite's run counters of the statements to st->runs and resets them: they are ints,
 * which a busy store would wrap within hours; folded every 65,536 commits and per render. */
static void stmt_runs_fold(struct store *st)
{
	for (int i = 0; i < ST_MAX; i++)
		if (st->stmt[i] != NULL)
			st->runs[i] += (uint64_t)sqlite3_stmt_status(st->stmt[i], SQLITE_STMTSTATUS_RUN, 1);
}

void store_metrics(struct store *st, struct strbuf *b)
{
	uint64_t list = 0;
	int i;

	stmt_runs_fold(st);
	strbuf_addf(b, "# HELP sagad_store_statements_total SQLite statements run, by statement.\n"
		    "# TYPE sagad_store_statements_total counter\n");
	for (i = 0; i < ST_MAX; i++) {
		if (i >= ST_LIST && i <= ST_LIST_LAST)
			list += st->runs[i];
		else if (stmt_name[i] != NULL)
			strbuf_addf(b, "sagad_store_statements_total{statement=\"%s\"} %llu\n",
				    stmt_name[i], (unsigned long long)st->runs[i]);
	}
	strbuf_addf(b, "sagad_store_statements_total{statement=\"list\"} %llu\n",
		    (unsigned long long)list);
}

/* Copies a purge cursor (updated_at, id) over another. */
static void purge_cursor_copy(int64_t *to_at, char **to_id, int64_t at, const char *id)
{
	*to_at = at;
	free(*to_id);
	*to_id = id != NULL ? xstrdup(id) : NULL;
}

/* The purge's cursor after a commit: what it read is gone for good. */
static void purge_cursor_keep(struct store *st)
{
	if (st->purge_moved)
		purge_cursor_copy(&st->purge_kept_updated_at, &st->purge_kept_id,
				  st->purge_updated_at, st->purge_id);
	st->purge_moved = false;
}

/* The purge's cursor after a rollback: back to where the last commit left it. */
static void purge_cursor_back(struct store *st)
{
	if (st->purge_moved)
		purge_cursor_copy(&st->purge_updated_at, &st->purge_id,
				  st->purge_kept_updated_at, st->purge_kept_id);
	st->purge_moved = false;
}

int store_commit(struct store *st)
{
	sqlite3_stmt *stmt = st->stmt[ST_COMMIT];
	int rc, err;

	store_read_end(st);
	lost(st, "commit", SQLITE_OK);  /* after an error fail() did not see */
	if (st->lost != 0) {
		err = st->lost;
		store_rollback(st); /* what was written since (nothing should have been) */
		return err;
	}
	if (sqlite3_get_autocommit(st->db))
		return 0;
	st->writing = false;  /* ended by COMMIT, or by the rollback below (not "lost") */
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(stmt);
		st->commits++;
		purge_cursor_keep(st);
		if ((st->commits & 0xffff) == 0)
			stmt_runs_fold(st);
		if (st->outbox_tx_max > st->outbox_committed)
			st->outbox_committed = st->outbox_tx_max;
		st->outbox_tx_max = 0;
		busy_restore(st);
		if (st->sync != NULL)
			store_sync_request(st->sync, st->commits, st->outbox_committed);
		return 0;
	}
	err = fail(st, "commit", rc);
	sqlite3_reset(stmt);
	store_rollback(st);
	return err;
}

uint64_t store_committed(const struct store *st)
{
	return st->commits;
}

int store_durable(const struct store *st, uint64_t *ticket)
{
	int64_t mark;
	int error;

	if (st->sync == NULL) {
		*ticket = st->commits;
		return 0;
	}
	store_sync_state(st->sync, ticket, &mark, &error);
	if (error != 0) {
		log_error("event=store_error op=wal_sync code=%d msg=\"%s\"", error,
			  sqlite3_errstr(error));
		return map_rc(error);
	}
	return 0;
}

int64_t store_outbox_durable(const struct store *st)
{
	uint64_t ticket;
	int64_t mark;
	int error;

	if (st->sync == NULL)
		return INT64_MAX;
	store_sync_state(st->sync, &ticket, &mark, &error);
	return mark;
}

uint64_t store_syncs(const struct store *st)
{
	return st->sync != NULL ? store_sync_count(st->sync) : 0;
}

static int max_outbox_seq(struct store *st, int64_t *seq)
{
	sqlite3_stmt *stmt;
	int rc = sqlite3_prepare_v2(st->db, "SELECT coalesce(max(seq), 0) FROM outbox", -1, &stmt,
				    NULL);

	if (rc != SQLITE_OK)
		return fail(st, "outbox_max", rc);
	rc = sqlite3_step(stmt);
	*seq = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	rc = rc == SQLITE_ROW ? 0 : fail(st, "outbox_max", rc);
	sqlite3_finalize(stmt);
	return rc;
}

int store_pipeline_start(struct store *st, uv_loop_t *loop, char *err, size_t errlen)
{
	sqlite3_file *wal = NULL;
	int rc;

	if (!st->full || st->sync != NULL)
		return 0; /* NORMAL/OFF/EXTRA as configured: commits stay as SQLite does them */
	store_rollback(st);
	rc = max_outbox_seq(st, &st->outbox_committed);
	if (rc != 0) {
		snprintf(err, errlen, "store: reading the outbox: %s", sagad_strerror(rc));
		return rc;
	}
	rc = sqlite3_file_control(st->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
	/* The thread syncs the file under the VFS shim: the shim's pending writes are the loop
	 * thread's, and a commit leaves none (store_vfs.h). */
	wal = store_vfs_inner(wal);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
	/* Its first sync (on this thread) makes everything committed so far durable. */
	if (rc == SQLITE_OK)
		rc = store_sync_new(loop, wal, st->commits, st->outbox_committed, &st->sync);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "store: starting the WAL sync thread: %s", sqlite3_errstr(rc));
		sqlite3_exec(st->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
		return map_rc(rc);
	}
	return 0;
}

int store_pipeline_stop(struct store *st)
{
	int rc;

	if (st->sync == NULL)
		return 0;
	rc = store_sync_now(st->sync, st->commits, st->outbox_committed);
	store_sync_free(st->sync);
	st->sync = NULL;
	sqlite3_exec(st->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		log_error("event=store_error op=wal_sync code=%d msg=\"%s\"", rc, sqlite3_errstr(rc));
		return map_rc(rc);
	}
	return 0;
}

void store_rollback(struct store *st)
{
	sqlite3_stmt *stmt = st->stmt[ST_ROLLBACK];
	int rc;

	st->outbox_tx_max = 0;
	st->reading = false;
	st->writing = false;
	st->lost = 0;
	purge_cursor_back(st);
	if (sqlite3_get_autocommit(st->db))
		return;
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE)
		fail(st, "rollback", rc);
	sqlite3_reset(stmt);
}

void store_stats(const struct store *st, uint64_t *commits, uint64_t *writes)
{
	*commits = st->commits;
	*writes = st->writes;
}

int64_t store_epoch(const struct store *st)
{
	return st->epoch;
}

int store_shard(const struct store *st)
{
	return st->shard;
}

int store_schema_version(const struct store *st)
{
	return st->schema_version;
}

/* --- open and close ---------------------------------------------------------------------- */

/* Runs one SQL text (possibly several statements) with no result rows wanted. */
static int exec(sqlite3 *db, const char *text, char *err, size_t errlen, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, text, NULL, NULL, &msg);

	if (rc == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return map_rc(rc);
}

/* Runs a one-row query and copies its first column as text into buf ("" when no row). */
static int query_text(sqlite3 *db, const char *text, char *buf, size_t len)
{
	sqlite3_stmt *stmt;
	const unsigned char *p;
	int rc;

	buf[0] = '\0';
	rc = sqlite3_prepare_v2(db, text, -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		p = sqlite3_column_text(stmt, 0);
		snprintf(buf, len, "%s", p ? (const char *)p : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(stmt);
	return rc;
}

static int configure(sqlite3 *db, const struct store_options *opt, char *err, size_t errlen)
{
	static const char *const sync_modes[] = { "OFF", "NORMAL", "FULL", "EXTRA" };
	const char *sync = "FULL";
	char buf[64], pragma[64];
	int rc, timeout = opt->busy_timeout_ms ? opt->busy_timeout_ms : 5000;
	size_t i;

	if (opt->synchronous != NULL) {
		for (i = 0; i < sizeof(sync_modes) / sizeof(sync_modes[0]); i++)
			if (strcasecmp(opt->synchronous, sync_modes[i]) == 0)
				break;
		if (i == sizeof(sync_modes) / sizeof(sync_modes[0])) {
			snprintf(err, errlen, "store synchronous \"%s\" is not one of FULL, NORMAL, "
				 "OFF, EXTRA", opt->synchronous);
			return SAGAD_EINVAL;
		}
		sync = sync_modes[i];
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, timeout);

	/* A new database gets 2 KiB pages (before WAL mode fixes the size; no effect on an
	 * existing file): a grouped commit appends one WAL frame per page it dirtied, about ten,
	 * each checksummed and written whole, while the rows are small. Measured per happy saga:
	 * 1 KiB 889,000 instructions, 2 KiB 880,000, 4 KiB 891,000, 8 KiB 924,000. */
	if (exec(db, "PRAGMA page_size = 2048", err, errlen, opt->path) != 0)
		return SAGAD_ESTORE;
	rc = query_text(db, "PRAGMA journal_mode = WAL", buf, sizeof(buf));
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: setting journal_mode: %s", opt->path, sqlite3_errmsg(db));
		return map_rc(rc);
	}
	if (strcasecmp(buf, "wal") != 0) {
		snprintf(err, errlen, "%s: journal_mode is \"%s\", not \"wal\" (sagad needs a database "
			 "file on a local filesystem that supports shared memory)", opt->path, buf);
		return SAGAD_ESTORE;
	}
	/* sync is one of the constants above, never the caller's text. */
	snprintf(pragma, sizeof(pragma), "PRAGMA synchronous = %s", sync);
	rc = exec(db, pragma, err, errlen, opt->path);
	/* Foreign keys off (SQLite's default; said here for builds that change it): with them on,
	 * every insert into a child table (steps, history, timers, keys) looked its saga up, about
	 * 1,100 instructions per step row and 2,000 per history row, 17,000 per happy saga. The
	 * engine writes a saga's row before its children, in the same transaction, and deletes
	 * them together (store_purge(): what ON DELETE CASCADE did). The schema keeps the
	 * REFERENCES clauses, for a tool that opens the file with foreign keys on. */
	if (rc == 0)
		rc = exec(db, "PRAGMA foreign_keys = OFF", err, errlen, opt->path);
	/* The purge's savepoint journals every page its batch changes (store_purge()): past
	 * 64 KiB SQLite spills that sub-journal to a file in its temporary directory, and where
	 * none is writable every such batch fails with an I/O error that rolls back the engine's
	 * whole transaction. In memory it is bounded by the batch. */
	if (rc == 0)
		rc = exec(db, "PRAGMA temp_store = MEMORY", err, errlen, opt->path);
	return rc;
}

static int read_version(sqlite3 *db, int *version, char *err, size_t errlen, const char *path)
{
	char buf[32];
	int rc;

	rc = query_text(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
			"name = 'schema_migrations'", buf, sizeof(buf));
	if (rc == SQLITE_OK && strcmp(buf, "0") == 0) {
		*version = 0;
		return 0;
	}
	if (rc == SQLITE_OK)
		rc = query_text(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", buf,
				sizeof(buf));
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: reading the schema version: %s", path, sqlite3_errmsg(db));
		return map_rc(rc);
	}
	*version = atoi(buf);
	return 0;
}

static int too_new(int v, const char *path, char *err, size_t errlen)
{
	if (v <= SCHEMA_VERSION)
		return 0;
	snprintf(err, errlen, "%s: database schema version %d is newer than this sagad supports "
		 "(%d); upgrade sagad", path, v, SCHEMA_VERSION);
	return SAGAD_ESTORE;
}

/* Applies the migrations the database lacks, each in its own transaction. */
static int migrate(sqlite3 *db, const char *path, int *version, char *err, size_t errlen)
{
	sqlite3_stmt *stmt = NULL;
	char what[512];
	int rc, v = 0;

	rc = read_version(db, &v, err, errlen, path);
	if (rc == 0)
		rc = too_new(v, path, err, errlen);
	while (rc == 0 && v < SCHEMA_VERSION) {
		rc = exec(db, "BEGIN IMMEDIATE", err, errlen, path);
		if (rc != 0)
			break;
		/* Another process may have migrated while we waited for the write lock. */
		rc = read_version(db, &v, err, errlen, path);
		if (rc == 0)
			rc = too_new(v, path, err, errlen);
		if (rc != 0 || v == SCHEMA_VERSION)
			break;
		snprintf(what, sizeof(what), "%s: migration %d", path, v + 1);
		rc = exec(db, migrations[v], err, errlen, what);
		if (rc != 0)
			break;
		if (sqlite3_prepare_v2(db, "INSERT INTO schema_migrations (version, applied_at) "
				       "VALUES (?1, ?2)", -1, &stmt, NULL) != SQLITE_OK)
			goto sqlfail;
		sqlite3_bind_int(stmt, 1, v + 1);
		sqlite3_bind_int64(stmt, 2, util_now_ms());
		if (sqlite3_step(stmt) != SQLITE_DONE)
			goto sqlfail;
		sqlite3_finalize(stmt);
		stmt = NULL;
		rc = exec(db, "COMMIT", err, errlen, what);
		if (rc != 0)
			break;
		log_info("event=store_migrated path=%s version=%d", path, v + 1);
		v++;
	}
	goto out;
sqlfail:
	snprintf(err, errlen, "%s: migration %d: %s", path, v + 1, sqlite3_errmsg(db));
	rc = map_rc(sqlite3_errcode(db));
out:
	sqlite3_finalize(stmt);
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	*version = v;
	return rc;
}

/* Takes the next owner epoch and records this node under it, in one transaction. */
static int take_epoch(struct store *st, const char *path, char *err, size_t errlen)
{
	sqlite3_stmt *stmt = NULL;
	char host[256] = "unknown", buf[32];
	int rc;

	rc = exec(st->db, "BEGIN IMMEDIATE;"
		  "UPDATE meta SET value = value + 1 WHERE key = 'owner_epoch'",
		  err, errlen, path);
	if (rc != 0)
		goto out;
	if (query_text(st->db, "SELECT value FROM meta WHERE key = 'owner_epoch'", buf,
		       sizeof(buf)) != SQLITE_OK || buf[0] == '\0')
		goto sqlfail;
	st->epoch = strtoll(buf, NULL, 10);
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	if (sqlite3_prepare_v2(st->db, "INSERT INTO nodes (epoch, shard, hostname, pid, "
			       "started_at) VALUES (?1, ?2, ?3, ?4, ?5)", -1, &stmt,
			       NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(stmt, 1, st->epoch);
	sqlite3_bind_int(stmt, 2, st->shard);
	sqlite3_bind_text(stmt, 3, host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, (int64_t)getpid());
	sqlite3_bind_int64(stmt, 5, util_now_ms());
	if (sqlite3_step(stmt) != SQLITE_DONE)
		goto sqlfail;
	rc = exec(st->db, "COMMIT", err, errlen, path);
	goto out;
sqlfail:
	snprintf(err, errlen, "%s: taking an owner epoch: %s", path, sqlite3_errmsg(st->db));
	rc = map_rc(sqlite3_errcode(st->db));
out:
	sqlite3_finalize(stmt);
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Process-wide SQLite settings, before SQLite initializes (else they are refused and the
 * defaults stay: a shim loaded first, tests/fault/faultvfs.so, initializes it). Memory
 * statistics off: with them every sqlite3_malloc() and sqlite3_free() takes a global mutex
 * (SQLITE_MUTEX_STATIC_MEM) to count, about 15,000 instructions per happy saga, for counters
 * nothing reads (sqlite3_memory_used(), the soft heap limit). The threading mode stays
 * SQLite's: SQLITE_CONFIG_SINGLETHREAD measured the same (the connection is NOMUTEX already)
 * and would forbid read connections on other threads. */
static void configure_library(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_open(const struct store_options *opt, struct store **out, char *err, size_t errlen)
{
	struct store *st;
	int rc, i;

	*out = NULL;
	if (opt->path == NULL || opt->path[0] == '\0' || opt->busy_timeout_ms < 0) {
		snprintf(err, errlen, "store: %s", opt->path == NULL || opt->path[0] == '\0' ?
			 "no database path given" : "busy_timeout_ms must not be negative");
		return SAGAD_EINVAL;
	}
	if (sqlite3_libversion_number() < MIN_SQLITE_VERSION) {
		snprintf(err, errlen, "SQLite %s is too old: sagad needs 3.32.0 or newer",
			 sqlite3_libversion());
		return SAGAD_ESTORE;
	}
	configure_library();
	rc = store_vfs_register();
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "store: registering the SQLite VFS: %s", sqlite3_errstr(rc));
		return SAGAD_ESTORE;
	}
	st = xcalloc(1, sizeof(*st));
	st->shard = opt->shard;
	st->busy_timeout_ms = opt->busy_timeout_ms ? opt->busy_timeout_ms : 5000;
	st->full = opt->synchronous == NULL || strcasecmp(opt->synchronous, "FULL") == 0;
	rc = sqlite3_open_v2(opt->path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOMUTEX, STORE_VFS_NAME);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", opt->path,
			 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		rc = map_rc(rc);
		goto fail;
	}
	rc = configure(st->db, opt, err, errlen);
	if (rc == 0)
		rc = migrate(st->db, opt->path, &st->schema_version, err, errlen);
	if (rc == 0)
		rc = take_epoch(st, opt->path, err, errlen);
	if (rc != 0)
		goto fail;
	for (i = 0; i < ST_MAX; i++) {
		if (sql[i] == NULL)
			continue;   /* an unused combination of list filters */
		rc = sqlite3_prepare_v3(st->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
					NULL);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "%s: preparing statement %d: %s", opt->path, i,
				 sqlite3_errmsg(st->db));
			rc = map_rc(rc);
			goto fail;
		}
	}
	log_info("event=store_opened path=%s schema=%d epoch=%lld shard=%d synchronous=%s",
		 opt->path, st->schema_version, (long long)st->epoch, st->shard,
		 opt->synchronous ? opt->synchronous : "FULL");
	*out = st;
	return 0;
fail:
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	bool opened;
	int i, rc;

	if (st == NULL)
		return;
	opened = st->stmt[ST_MAX - 1] != NULL;   /* else store_open() failed half-way */
	if (st->stmt[ST_ROLLBACK] != NULL)
		store_rollback(st);
	store_pipeline_stop(st);
	for (i = 0; i < ST_MAX; i++)
		sqlite3_finalize(st->stmt[i]);
	/* Refreshes the planner's statistics where they changed (SQLite's advice), reading a
	 * bounded sample of each index: a full ANALYZE of a store of 1,000,000 sagas held the
	 * exit for 260 ms. */
	if (opened)
		sqlite3_exec(st->db, "PRAGMA analysis_limit = 1000; PRAGMA optimize", NULL, NULL,
			     NULL);
	rc = sqlite3_close(st->db);
	if (rc != SQLITE_OK)
		log_error("event=store_error op=close code=%d msg=%s", rc, sqlite3_errstr(rc));
	free(st->purge_id);
	free(st->purge_kept_id);
	free(st);
}

int store_pragma(struct store *st, const char *name, char *buf, size_t len)
{
	static const char *const allowed[] = {
		"journal_mode", "synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint",
		"page_size", "page_count", "freelist_count", "cache_size",
	};
	char text[64];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(name, allowed[i]) == 0)
			break;
	if (i == sizeof(allowed) / sizeof(allowed[0]))
		return SAGAD_EINVAL;
	snprintf(text, sizeof(text), "PRAGMA %s", allowed[i]);
	rc = query_text(st->db, text, buf, len);
	return rc == SQLITE_OK ? 0 : fail(st, "pragma", rc);
}

/* --- sagas ------------------------------------------------------------------------------- */

/* Copies the first column of the one-row query stmt (bound by the caller) into *out. */
static int one_text(struct store *st, sqlite3_stmt *stmt, const char *op, char **out)
{
	int rc = sqlite3_step(stmt);

	if (rc == SQLITE_ROW) {
		*out = col_text(stmt, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = SAGAD_ENOENT;
	} else {
		rc = fail(st, op, rc);
	}
	finish(stmt);
	return rc;
}

int store_saga_find_key(struct store *st, const char *flow, const char *idempotency_key, char **id)
{
	sqlite3_stmt *stmt = st->stmt[ST_SAGA_FIND_KEY];

	bind_text(stmt, 1, flow);
	bind_text(stmt, 2, idempotency_key);
	return one_text(st, stmt, "saga_find_key", id);
}

/* After a constraint failure on insert: the saga that holds the key, parent slot or id. */
static int find_conflict(struct store *st, const struct store_saga *s, char **id)
{
	sqlite3_stmt *stmt;
	int rc = SAGAD_ENOENT;

	if (s->idempotency_key != NULL)
		rc = store_saga_find_key(st, s->flow, s->idempotency_key, id);
	if (rc == SAGAD_ENOENT && s->parent_id != NULL) {
		stmt = st->stmt[ST_SAGA_FIND_PARENT];
		bind_text(stmt, 1, s->parent_id);
		sqlite3_bind_int(stmt, 2, s->parent_step);
		rc = one_text(st, stmt, "saga_find_parent", id);
	}
	if (rc == SAGAD_ENOENT) {
		stmt = st->stmt[ST_SAGA_EPOCH];
		bind_text(stmt, 1, s->id);
		rc = sqlite3_step(stmt);
		if (rc == SQLITE_ROW) {
			*id = xstrdup(s->id);
			rc = 0;
		} else {
			rc = rc == SQLITE_DONE ? SAGAD_ENOENT : fail(st, "saga_insert", rc);
		}
		finish(stmt);
	}
	return rc;
}

int store_saga_insert(struct store *st, const struct store_saga *s, char **existing_id)
{
	sqlite3_stmt *stmt = st->stmt[ST_SAGA_INSERT];
	char errmsg[256], *id = NULL;
	int rc, err;

	bind_text(stmt, 1, s->id);
	sqlite3_bind_int(stmt, 2, st->shard);
	sqlite3_bind_int64(stmt, 3, st->epoch);
	bind_text(stmt, 4, s->flow);
	sqlite3_bind_int(stmt, 5, s->flow_version);
	bind_text(stmt, 6, s->status);
	sqlite3_bind_int(stmt, 7, s->cursor);
	bind_text(stmt, 8, s->input);
	bind_text(stmt, 9, s->output);
	bind_text(stmt, 10, s->error);
	bind_text(stmt, 11, s->idempotency_key);
	bind_text(stmt, 12, s->parent_id);
	if (s->parent_id != NULL)
		sqlite3_bind_int(stmt, 13, s->parent_step);
	else
		sqlite3_bind_null(stmt, 13);
	sqlite3_bind_int(stmt, 14, s->cancel_requested);
	sqlite3_bind_int64(stmt, 15, s->created_at);
	sqlite3_bind_int64(stmt, 16, s->updated_at);
	bind_opt(stmt, 17, s->deadline_at, 0);
	rc = run_write(st, stmt, "saga_insert", &err);
	if ((rc & 0xff) != SQLITE_CONSTRAINT) {
		finish(stmt);
		return err;
	}
	/* Keep the message: the look-ups below replace the connection's error. */
	snprintf(errmsg, sizeof(errmsg), "%s", sqlite3_errmsg(st->db));
	finish(stmt);
	err = find_conflict(st, s, &id);
	if (err == SAGAD_ENOENT) {
		/* NOT NULL or CHECK: a caller bug, not a duplicate. */
		char q[512];

		log_error("event=store_error op=saga_insert code=%d saga=%s msg=%s", rc, s->id,
			  log_quote(errmsg, q, sizeof(q)));
		return SAGAD_ESTORE;
	}
	if (err != 0)
		return err;
	log_debug("event=saga_duplicate saga=%s existing=%s", s->id, id);
	if (existing_id != NULL)
		*existing_id = id;
	else
		free(id);
	return SAGAD_EEXIST;
}

int store_saga_update(struct store *st, const struct store_saga *s)
{
	sqlite3_stmt *stmt = st->stmt[ST_SAGA_UPDATE];
	int64_t owner;
	int rc;

	bind_text(stmt, 1, s->status);
	sqlite3_bind_int(stmt, 2, s->cursor);
	bind_text(stmt, 3, s->output);
	bind_text(stmt, 4, s->error);
	sqlite3_bind_int(stmt, 5, s->cancel_requested);
	sqlite3_bind_int64(stmt, 6, s->updated_at);
	bind_opt(stmt, 7, s->deadline_at, 0);
	sqlite3_bind_int64(stmt, 8, st->epoch);
	bind_text(stmt, 9, s->id);
	rc = exec_write(st, stmt, "saga_update");
	if (rc != 0 || sqlite3_changes(st->db) > 0)
		return rc;

	/* No row changed: the saga is missing, or a node with a newer epoch owns it. */
	stmt = st->stmt[ST_SAGA_EPOCH];
	bind_text(stmt, 1, s->id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		owner = sqlite3_column_int64(stmt, 0);
		log_warn("event=saga_fenced saga=%s epoch=%lld owner_epoch=%lld", s->id,
			 (long long)st->epoch, (long long)owner);
		rc = SAGAD_ESTATE;
	} else {
		rc = rc == SQLITE_DONE ? SAGAD_ENOENT : fail(st, "saga_update", rc);
	}
	finish(stmt);
	return rc;
}

int store_saga_get(struct store *st, const char *id, struct store_saga *out)
{
	sqlite3_stmt *stmt = st->stmt[ST_SAGA_GET];
	int rc;

	memset(out, 0, sizeof(*out));
	bind_text(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		read_saga(stmt, out);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? SAGAD_ENOENT : fail(st, "saga_get", rc);
	}
	finish(stmt);
	return rc;
}

static bool is_final(const char *status, const char *const *final_states)
{
	for (; final_states != NULL && *final_states != NULL; final_states++)
		if (strcmp(status, *final_states) == 0)
			return true;
	return false;
}

int store_each_unfinished(struct store *st, const char *const *final_states, store_saga_cb cb,
			  void *arg)
{
	struct store_saga *batch = xcalloc(BATCH, sizeof(*batch));
	sqlite3_stmt *stmt;
	char *after = xstrdup("");
	size_t n, i;
	int rc = 0;

	/* The partial index holds only sagas outside its list; usable when the caller's final
	 * states include that list. Other final states are skipped here, row by row. */
	stmt = st->stmt[is_final("completed", final_states) && is_final("compensated", final_states) ?
			ST_UNFINISHED_INDEXED : ST_UNFINISHED_SCAN];
	for (;;) {
		/* Read a batch, then call back with no statement running: callbacks may write. */
		sqlite3_bind_text(stmt, 1, after, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(stmt, 2, BATCH);
		n = 0;
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
			read_saga(stmt, &batch[n++]);
		rc = rc == SQLITE_DONE ? 0 : fail(st, "each_unfinished", rc);
		finish(stmt);
		if (n > 0) {
			free(after);
			after = xstrdup(batch[n - 1].id);
		}
		for (i = 0; i < n; i++) {
			if (rc == 0 && !is_final(batch[i].status, final_states))
				rc = cb(&batch[i], arg);
			store_saga_clear(&batch[i]);
		}
		if (rc != 0 || n < BATCH)
			break;
	}
	free(after);
	free(batch);
	return rc;
}

/* Steps a bound statement to its end, reading each row with rd into a new array (*rows, *n,
 * elements of size bytes) owned by the caller, then resets it: callbacks run afterwards, with
 * no statement open, so they may call the store (writes included). Returns 0 or an error. */
static int read_all(struct store *st, sqlite3_stmt *stmt, const char *op, size_t size,
		    void (*rd)(sqlite3_stmt *, void *), void **rows, size_t *n)
{
	size_t cap = 0;
	int rc;

	*rows = NULL;
	*n = 0;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*rows = xrealloc(*rows, cap * size);
		}
		rd(stmt, (char *)*rows + *n * size);
		(*n)++;
	}
	rc = rc == SQLITE_DONE ? 0 : fail(st, op, rc);
	finish(stmt);
	return rc;
}

static void rd_saga(sqlite3_stmt *stmt, void *row) { read_saga(stmt, row); }
static void rd_step(sqlite3_stmt *stmt, void *row) { read_step(stmt, row); }
static void rd_history(sqlite3_stmt *stmt, void *row) { read_history(stmt, row); }

/* Calls cb for each saga row (until it returns non-zero) and frees them all. */
static int each_saga_row(struct store_saga *rows, size_t n, int rc, store_saga_cb cb, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		store_saga_clear(&rows[i]);
	}
	free(rows);
	return rc;
}

int store_each_child(struct store *st, const char *parent_id, store_saga_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_SAGA_CHILDREN];
	void *rows;
	size_t n;
	int rc;

	bind_text(stmt, 1, parent_id);
	rc = read_all(st, stmt, "each_child", sizeof(struct store_saga), rd_saga, &rows, &n);
	return each_saga_row(rows, n, rc, cb, arg);
}

int store_saga_list(struct store *st, const struct store_list_query *q, store_saga_cb cb, void *arg)
{
	sqlite3_stmt *stmt;
	int rc, limit = q->limit < 1 ? 1 : q->limit > LIST_MAX ? LIST_MAX : q->limit;
	int which = 0;
	void *rows;
	size_t n;

	which |= q->flow != NULL ? LIST_FLOW : 0;
	which |= q->status != NULL ? LIST_STATUS : 0;
	which |= q->before_id != NULL ? LIST_BEFORE : 0;
	if (q->status != NULL && (strcmp(q->status, "completed") == 0 ||
				  strcmp(q->status, "compensated") == 0))
		which |= LIST_FINAL;    /* the statuses of FINISHED_WHERE */
	stmt = st->stmt[ST_LIST + which];
	if (q->key_name != NULL) {
		/* few sagas share a business key value: filter those rows instead */
		stmt = st->stmt[ST_LIST_KEY];
		bind_text(stmt, 5, q->key_name);
		bind_text(stmt, 6, q->key_value);
		if (q->flow == NULL)
			sqlite3_bind_null(stmt, 1);
		if (q->status == NULL)
			sqlite3_bind_null(stmt, 2);
		if (q->before_id == NULL)
			sqlite3_bind_null(stmt, 3);
	}
	if (q->flow != NULL)
		bind_text(stmt, 1, q->flow);
	if (q->status != NULL)
		bind_text(stmt, 2, q->status);
	if (q->before_id != NULL)
		bind_text(stmt, 3, q->before_id);
	sqlite3_bind_int(stmt, 4, limit);
	rc = read_all(st, stmt, "saga_list", sizeof(struct store_saga), rd_saga, &rows, &n);
	return each_saga_row(rows, n, rc, cb, arg);
}

/* --- steps, history, timers -------------------------------------------------------------- */

int store_step_put(struct store *st, const struct store_step *s)
{
	sqlite3_stmt *stmt = st->stmt[ST_STEP_PUT];

	bind_text(stmt, 1, s->saga_id);
	sqlite3_bind_int(stmt, 2, s->idx);
	bind_text(stmt, 3, s->name);
	bind_text(stmt, 4, s->state);
	sqlite3_bind_int(stmt, 5, s->attempt);
	sqlite3_bind_int(stmt, 6, s->comp_attempt);
	bind_text(stmt, 7, s->response);
	bind_text(stmt, 8, s->error);
	sqlite3_bind_int64(stmt, 9, s->updated_at);
	sqlite3_bind_int(stmt, 10, s->maybe_applied ? 1 : 0);
	return exec_write(st, stmt, "step_put");
}

int store_each_step(struct store *st, const char *saga_id, store_step_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_STEP_EACH];
	struct store_step *rows;
	void *v;
	size_t n, i;
	int rc;

	bind_text(stmt, 1, saga_id);
	rc = read_all(st, stmt, "each_step", sizeof(*rows), rd_step, &v, &n);
	rows = v;
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		store_step_clear(&rows[i]);
	}
	free(rows);
	return rc;
}

int store_scan_saga(struct store *st, const char *id, store_saga_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_SAGA_GET];
	struct store_saga row;
	int rc;

	bind_text(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		borrow_saga(stmt, &row);
		rc = cb(&row, arg);
	} else {
		rc = rc == SQLITE_DONE ? SAGAD_ENOENT : fail(st, "scan_saga", rc);
	}
	finish(stmt);
	return rc;
}

int store_scan_steps(struct store *st, const char *saga_id, store_step_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_STEP_EACH];
	struct store_step row;
	int rc, ret = 0;

	bind_text(stmt, 1, saga_id);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		borrow_step(stmt, &row);
		if ((ret = cb(&row, arg)) != 0)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = fail(st, "scan_steps", rc);
	finish(stmt);
	return ret;
}

int store_history_append(struct store *st, const struct store_history *h)
{
	return store_history_append_seq(st, h, NULL);
}

int store_history_append_seq(struct store *st, const struct store_history *h, int64_t *seq)
{
	sqlite3_stmt *stmt = st->stmt[ST_HISTORY_APPEND];
	int rc;

	bind_text(stmt, 1, h->saga_id);
	bind_opt(stmt, 2, h->step, -1);
	bind_text(stmt, 3, h->step_name);
	bind_text(stmt, 4, h->phase);
	sqlite3_bind_int(stmt, 5, h->attempt);
	bind_text(stmt, 6, h->event);
	bind_text(stmt, 7, h->request);
	bind_opt(stmt, 8, h->status, 0);
	bind_text(stmt, 9, h->response);
	bind_text(stmt, 10, h->error);
	bind_opt(stmt, 11, h->started_at, 0);
	bind_opt(stmt, 12, h->ended_at, 0);
	rc = exec_write(st, stmt, "history_append");
	/* seq is the rowid (INTEGER PRIMARY KEY): the connection's last insert, no statement */
	if (rc == 0 && seq != NULL)
		*seq = sqlite3_last_insert_rowid(st->db);
	return rc;
}

int store_each_history(struct store *st, const char *saga_id, store_history_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_HISTORY_EACH];
	struct store_history *rows;
	void *v;
	size_t n, i;
	int rc;

	bind_text(stmt, 1, saga_id);
	rc = read_all(st, stmt, "each_history", sizeof(*rows), rd_history, &v, &n);
	rows = v;
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		store_history_clear(&rows[i]);
	}
	free(rows);
	return rc;
}

int store_scan_history(struct store *st, const char *saga_id, store_history_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_HISTORY_EACH];
	struct store_history row;
	int rc, ret = 0;

	bind_text(stmt, 1, saga_id);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		borrow_history(stmt, &row);
		if ((ret = cb(&row, arg)) != 0)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = fail(st, "scan_history", rc);
	finish(stmt);
	return ret;
}

int store_timer_put(struct store *st, const struct store_timer *t)
{
	sqlite3_stmt *stmt = st->stmt[ST_TIMER_PUT];

	bind_text(stmt, 1, t->saga_id);
	bind_text(stmt, 2, t->kind);
	sqlite3_bind_int(stmt, 3, t->step < 0 ? -1 : t->step);
	sqlite3_bind_int64(stmt, 4, t->due_at);
	return exec_write(st, stmt, "timer_put");
}

int store_timer_delete(struct store *st, const char *saga_id, const char *kind, int step)
{
	sqlite3_stmt *stmt = st->stmt[ST_TIMER_DELETE];

	bind_text(stmt, 1, saga_id);
	bind_text(stmt, 2, kind);
	sqlite3_bind_int(stmt, 3, step);
	return exec_write(st, stmt, "timer_delete");
}

int store_each_timer(struct store *st, store_timer_cb cb, void *arg)
{
	struct store_timer *batch = xcalloc(BATCH, sizeof(*batch));
	sqlite3_stmt *stmt = st->stmt[ST_TIMER_EACH];
	char *after_id = xstrdup(""), *after_kind = xstrdup("");
	int after_step = INT32_MIN;
	size_t n, i;
	int rc = 0;

	for (;;) {
		sqlite3_bind_text(stmt, 1, after_id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 2, after_kind, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(stmt, 3, after_step);
		sqlite3_bind_int(stmt, 4, BATCH);
		n = 0;
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
			read_timer(stmt, &batch[n++]);
		rc = rc == SQLITE_DONE ? 0 : fail(st, "each_timer", rc);
		finish(stmt);
		if (n > 0) {
			free(after_id);
			free(after_kind);
			after_id = xstrdup(batch[n - 1].saga_id);
			after_kind = xstrdup(batch[n - 1].kind);
			after_step = batch[n - 1].step;
		}
		for (i = 0; i < n; i++) {
			if (rc == 0)
				rc = cb(&batch[i], arg);
			store_timer_clear(&batch[i]);
		}
		if (rc != 0 || n < BATCH)
			break;
	}
	free(after_id);
	free(after_kind);
	free(batch);
	return rc;
}

/* --- business keys ----------------------------------------------------------------------- */

int store_key_put(struct store *st, const char *saga_id, const char *name, const char *value)
{
	sqlite3_stmt *stmt = st->stmt[ST_KEY_PUT];

	bind_text(stmt, 1, saga_id);
	bind_text(stmt, 2, name);
	bind_text(stmt, 3, value);
	return exec_write(st, stmt, "key_put");
}

int store_each_key(struct store *st, const char *saga_id, store_key_cb cb, void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_KEY_EACH];
	char **pairs = NULL;
	size_t n = 0, cap = 0, i;
	int rc;

	bind_text(stmt, 1, saga_id);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (n + 2 > cap) {
			cap = cap ? cap * 2 : 8;
			pairs = xrealloc(pairs, cap * sizeof(*pairs));
		}
		pairs[n++] = col_text(stmt, 0);
		pairs[n++] = col_text(stmt, 1);
	}
	rc = rc == SQLITE_DONE ? 0 : fail(st, "each_key", rc);
	finish(stmt);
	for (i = 0; i < n; i += 2) {
		if (rc == 0)
			rc = cb(pairs[i], pairs[i + 1], arg);
		free(pairs[i]);
		free(pairs[i + 1]);
	}
	free(pairs);
	return rc;
}

int store_key_find(struct store *st, const char *flow, const char *name, const char *value,
		   char **id)
{
	sqlite3_stmt *stmt = st->stmt[ST_KEY_FIND];
	int rc;

	*id = NULL;
	bind_text(stmt, 1, name);
	bind_text(stmt, 2, value);
	bind_text(stmt, 3, flow);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*id = col_text(stmt, 0);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? SAGAD_ENOENT : fail(st, "key_find", rc);
	}
	finish(stmt);
	return rc;
}

/* --- flow versions ----------------------------------------------------------------------- */

int store_flow_put(struct store *st, const char *name, int version, const char *source)
{
	sqlite3_stmt *stmt = st->stmt[ST_FLOW_PUT];
	char *old = NULL;
	int rc;

	bind_text(stmt, 1, name);
	sqlite3_bind_int(stmt, 2, version);
	bind_text(stmt, 3, source);
	sqlite3_bind_int64(stmt, 4, util_now_ms());
	rc = exec_write(st, stmt, "flow_put");
	if (rc != 0 || sqlite3_changes(st->db) > 0)
		return rc;
	/* Already stored: fine when it is the same text, a versioning bug otherwise. */
	rc = store_flow_get(st, name, version, &old);
	if (rc == 0 && strcmp(old, source) != 0) {
		log_error("event=flow_version_conflict flow=%s version=%d msg=\"a different source "
			  "is already stored under this version\"", name, version);
		rc = SAGAD_EEXIST;
	}
	free(old);
	return rc;
}

int store_flow_get(struct store *st, const char *name, int version, char **source)
{
	sqlite3_stmt *stmt = st->stmt[ST_FLOW_GET];

	bind_text(stmt, 1, name);
	sqlite3_bind_int(stmt, 2, version);
	return one_text(st, stmt, "flow_get", source);
}

/* --- records ----------------------------------------------------------------------------- */

void store_saga_clear(struct store_saga *s)
{
	free(s->id);
	free(s->flow);
	free(s->status);
	free(s->input);
	free(s->output);
	free(s->error);
	free(s->idempotency_key);
	free(s->parent_id);
	memset(s, 0, sizeof(*s));
}

void store_step_clear(struct store_step *s)
{
	free(s->saga_id);
	free(s->name);
	free(s->state);
	free(s->response);
	free(s->error);
	memset(s, 0, sizeof(*s));
}

void store_history_clear(struct store_history *h)
{
	free(h->saga_id);
	free(h->step_name);
	free(h->phase);
	free(h->event);
	free(h->request);
	free(h->response);
	free(h->error);
	memset(h, 0, sizeof(*h));
}

void store_timer_clear(struct store_timer *t)
{
	free(t->saga_id);
	free(t->kind);
	memset(t, 0, sizeof(*t));
}

/* --- the outbox ------------------------------------------------------------------------ */

void store_outbox_clear(struct store_outbox *m)
{
	free(m->topic);
	free(m->key);
	free(m->headers);
	free(m->value);
	free(m->saga_id);
	free(m->last_error);
	memset(m, 0, sizeof(*m));
}

int store_outbox_put(struct store *st, const struct store_outbox *m, int64_t *seq)
{
	sqlite3_stmt *stmt = st->stmt[ST_OUTBOX_PUT];
	int rc;

	bind_text(stmt, 1, m->topic);
	bind_text(stmt, 2, m->key);
	bind_text(stmt, 3, m->headers);
	bind_text(stmt, 4, m->value);
	bind_text(stmt, 5, m->saga_id);
	sqlite3_bind_int64(stmt, 6, m->created_at);
	rc = exec_write(st, stmt, "outbox_put");
	if (rc == 0) {
		int64_t n = sqlite3_last_insert_rowid(st->db);

		if (n > st->outbox_tx_max)
			st->outbox_tx_max = n;
		if (seq != NULL)
			*seq = n;
	}
	return rc;
}

int store_outbox_sent(struct store *st, int64_t seq, int64_t sent_at)
{
	sqlite3_stmt *stmt = st->stmt[ST_OUTBOX_SENT];

	sqlite3_bind_int64(stmt, 1, seq);
	sqlite3_bind_int64(stmt, 2, sent_at);
	return exec_write(st, stmt, "outbox_sent");
}

int store_outbox_failed(struct store *st, int64_t seq, const char *error)
{
	sqlite3_stmt *stmt = st->stmt[ST_OUTBOX_FAILED];

	sqlite3_bind_int64(stmt, 1, seq);
	bind_text(stmt, 2, error);
	return exec_write(st, stmt, "outbox_failed");
}

static void read_outbox(sqlite3_stmt *stmt, void *row)
{
	struct store_outbox *m = row;

	m->seq = sqlite3_column_int64(stmt, 0);
	m->topic = col_text(stmt, 1);
	m->key = col_text(stmt, 2);
	m->headers = col_text(stmt, 3);
	m->value = col_text(stmt, 4);
	m->saga_id = col_text(stmt, 5);
	m->created_at = sqlite3_column_int64(stmt, 6);
	m->attempts = sqlite3_column_int(stmt, 7);
	m->last_error = col_text(stmt, 8);
}

int store_outbox_each_unsent(struct store *st, int64_t after_seq, int limit, store_outbox_cb cb,
			     void *arg)
{
	sqlite3_stmt *stmt = st->stmt[ST_OUTBOX_UNSENT];
	struct store_outbox *rows;
	void *v;
	size_t n, i;
	/* Only rows of durable commits leave (a commit's sync carries its outbox mark). */
	int64_t upto = store_outbox_durable(st);
	int rc;

	sqlite3_bind_int64(stmt, 1, after_seq);
	sqlite3_bind_int(stmt, 2, limit < 1 ? 1 : limit);
	sqlite3_bind_int64(stmt, 3, upto);
	rc = read_all(st, stmt, "outbox_unsent", sizeof(*rows), read_outbox, &v, &n);
	rows = v;
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&rows[i], arg);
		store_outbox_clear(&rows[i]);
	}
	free(rows);
	return rc;
}

int store_outbox_unsent(struct store *st, int64_t *count)
{
	sqlite3_stmt *stmt = st->stmt[ST_OUTBOX_COUNT];
	int rc = sqlite3_step(stmt);

	*count = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	rc = rc == SQLITE_ROW ? 0 : fail(st, "outbox_count", rc);
	finish(stmt);
	return rc;
}

/* --- retention ----------------------------------------------------------------------- */

/* Steps one of the purge's savepoint statements. */
static int savepoint_step(struct store *st, enum stmt_id id, const char *op)
{
	sqlite3_stmt *stmt = st->stmt[id];
	int rc = sqlite3_step(stmt);

	rc = rc == SQLITE_DONE ? 0 : fail(st, op, rc);
	finish(stmt);
	return rc;
}

/* Undoes a failed batch: back to its savepoint, which then goes; the writes made before it
 * (the engine's, this loop turn) stay. When SQLite rolled the whole transaction back itself
 * (lost()), the savepoint went with it and there is nothing to undo. When the undo fails, the
 * whole transaction goes, as lost (the next commit fails and the engine recovers from the
 * store): committing half a batch is not an option. */
static void purge_undo(struct store *st)
{
	sqlite3_stmt *stmt;

	lost(st, "purge", SQLITE_OK);   /* after an error fail() did not see */
	if (!st->writing)
		return;
	if (savepoint_step(st, ST_PURGE_UNDO, "purge_undo") == 0 &&
	    savepoint_step(st, ST_PURGE_RELEASE, "purge_release") == 0)
		return;
	if (!st->writing)
		return;               /* lost() saw SQLite end it */
	stmt = st->stmt[ST_ROLLBACK];
	if (sqlite3_step(stmt) != SQLITE_DONE)
		fail(st, "rollback", sqlite3_errcode(st->db));
	sqlite3_reset(stmt);
	mark_lost(st, "purge_undo", SQLITE_OK);
}

int store_purge(struct store *st, int64_t before_ms, int limit, struct store_purge_result *res)
{
	sqlite3_stmt *stmt;
	struct { char *id; bool del; } *rows;
	char cutoff[27];
	int64_t updated_at = st->purge_updated_at;   /* the cursor once this batch is done */
	uint64_t writes = st->writes;
	int rc, n = 0, i, sagas = 0, messages = 0;

	memset(res, 0, sizeof(*res));
	if (limit < 1)
		limit = 1;
	/* The batch is all or nothing: its scan and deletes run in a savepoint inside the grouped
	 * transaction, rolled back to on any error (purge_undo()), and the cursor moves only
	 * when the savepoint is released. */
	rc = begin(st);
	if (rc == 0)
		rc = savepoint_step(st, ST_PURGE_SAVEPOINT, "purge_savepoint");
	if (rc != 0)
		return rc;
	rows = xcalloc((size_t)limit, sizeof(*rows));
	/* The smallest ULID of the cutoff's millisecond: its time part, then zeros. */
	util_ulid_at(before_ms, cutoff);
	stmt = st->stmt[ST_PURGE_SCAN];
	sqlite3_bind_text(stmt, 1, cutoff, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, before_ms);
	sqlite3_bind_int64(stmt, 3, st->purge_updated_at);
	sqlite3_bind_text(stmt, 4, st->purge_id ? st->purge_id : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(stmt, 5, limit);
	/* Read the batch first: the deletes run with no statement open on the table. */
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		rows[n].id = col_text(stmt, 0);
		rows[n].del = sqlite3_column_int(stmt, 2) != 0;
		updated_at = sqlite3_column_int64(stmt, 1);
		n++;
	}
	rc = rc == SQLITE_DONE ? 0 : fail(st, "purge_scan", rc);
	finish(stmt);
	for (i = 0; rc == 0 && i < n; i++) {
		/* The saga's children, then the saga (what ON DELETE CASCADE did). The rows
		 * written (store_stats()) count the saga's only, as the cascade's did. */
		for (int k = ST_PURGE_STEPS; rc == 0 && rows[i].del && k <= ST_PURGE_SAGA; k++) {
			uint64_t before = st->writes;

			stmt = st->stmt[k];
			bind_text(stmt, 1, rows[i].id);
			rc = exec_write(st, stmt, stmt_name[k]);
			if (k != ST_PURGE_SAGA)
				st->writes = before;
			else if (rc == 0)
				sagas += sqlite3_changes(st->db);
		}
	}
	if (rc == 0) {
		stmt = st->stmt[ST_PURGE_OUTBOX];
		sqlite3_bind_int64(stmt, 1, before_ms);
		sqlite3_bind_int(stmt, 2, limit);
		rc = exec_write(st, stmt, "purge_outbox");
		if (rc == 0)
			messages = sqlite3_changes(st->db);
	}
	if (rc == 0)
		rc = savepoint_step(st, ST_PURGE_RELEASE, "purge_release");
	if (rc != 0) {
		purge_undo(st);
		st->writes = writes;
		goto out;
	}
	res->sagas = sagas;
	res->messages = messages;
	res->scanned = n;
	res->more = messages == limit;
	st->purge_moved = true;
	if (n < limit) {
		/* The sweep reached the cutoff: the next one starts from the oldest again, for the
		 * children whose parent has finished since. */
		st->purge_updated_at = 0;
		free(st->purge_id);
		st->purge_id = NULL;
	} else {
		st->purge_updated_at = updated_at;
		free(st->purge_id);
		st->purge_id = rows[n - 1].id;
		rows[n - 1].id = NULL;
		res->more = true;
	}
out:
	for (i = 0; i < n; i++)
		free(rows[i].id);
	free(rows);
	return rc;
}

int store_query_plan(struct store *st, const char *name, char *buf, size_t len)
{
	static const struct { const char *name; enum stmt_id id; } which[] = {
		{ "recover", ST_UNFINISHED_INDEXED }, { "purge", ST_PURGE_SCAN },
	};
	struct strbuf b;
	sqlite3_stmt *stmt = NULL;
	char *text;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(which) / sizeof(which[0]); i++)
		if (strcmp(name, which[i].name) == 0)
			break;
	if (i == sizeof(which) / sizeof(which[0]))
		return SAGAD_EINVAL;
	strbuf_init(&b);
	text = xasprintf("EXPLAIN QUERY PLAN %s", sqlite3_sql(st->stmt[which[i].id]));
	rc = sqlite3_prepare_v2(st->db, text, -1, &stmt, NULL);
	free(text);
	if (rc != SQLITE_OK) {
		strbuf_close(&b);
		return fail(st, "query_plan", rc);
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		strbuf_addf(&b, "%s%s", b.len > 0 ? "\n" : "",
			    (const char *)sqlite3_column_text(stmt, 3));
	rc = rc == SQLITE_DONE ? 0 : fail(st, "query_plan", rc);
	sqlite3_finalize(stmt);
	snprintf(buf, len, "%s", b.len > 0 ? b.data : "");
	strbuf_close(&b);
	return rc;
}

/* --- write probe (engine pause) ------------------------------------------------------ */

int store_probe(struct store *st)
{
	char text[160];
	int rc;

	store_rollback(st);
	/* Fail at once on a held lock: the loop thread must not sleep in the busy handler. */
	sqlite3_busy_timeout(st->db, 0);
	/* A real page write and commit (an UPDATE to the same value writes nothing). */
	snprintf(text, sizeof(text), "BEGIN IMMEDIATE; INSERT INTO meta (key, value) VALUES "
		 "('write_probe_at', %lld) ON CONFLICT (key) DO UPDATE SET value = excluded.value; "
		 "COMMIT", (long long)util_now_ms());
	rc = sqlite3_exec(st->db, text, NULL, NULL, NULL);
	st->busy_fast = true;
	busy_restore(st);
	if (rc != SQLITE_OK) {
		store_rollback(st);
		return map_rc(rc);
	}
	st->commits++;
	if (st->sync != NULL) {
		/* Everything committed so far must be on disk before the engine resumes; this
		 * also clears the sync thread's failure. */
		rc = store_sync_now(st->sync, st->commits, st->outbox_committed);
		if (rc != SQLITE_OK)
			return map_rc(rc);
	}
	return 0;
}
