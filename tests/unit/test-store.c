/* test-store.c: the SQLite store on real database files in a temporary folder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>
#include "error.h"
#include "fault.h"
#include "log.h"
#include "store.h"
#include "store_vfs.h"
#include "util.h"

static char dir[64];
static char path[128];          /* this test's database file */
static int test_no;

/* A 26-character id: prefix then i, zero-padded (a few results live at once). */
static const char *ID(const char *prefix, int i)
{
	static char bufs[4][32];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s%0*d", prefix, (int)(26 - strlen(prefix)), i);
	return b;
}

static const char *const finals[] = { "completed", "compensated", NULL };

static int group_setup(void **state)
{
	/* TEST_STORE_BASE: the folder for the databases (/tmp by default) */
	snprintf(dir, sizeof(dir), "%s/test-store.XXXXXX",
		 getenv("TEST_STORE_BASE") ? getenv("TEST_STORE_BASE") : "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	log_min_level = LOG_ERROR;
	return 0;
}

static int group_teardown(void **state)
{
	return rmdir(dir);
}

static int setup(void **state)
{
	snprintf(path, sizeof(path), "%s/t%d.db", dir, ++test_no);
	return 0;
}

static int teardown(void **state)
{
	char p[160];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	return 0;
}

static struct store *open_store(void)
{
	struct store_options opt = { .path = path };
	struct store *st = NULL;
	char err[512];
	int rc = store_open(&opt, &st, err, sizeof(err));

	if (rc != 0)
		print_error("store_open: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(st);
	return st;
}

/* Runs one statement on a separate connection to the test's database file. */
static void raw_exec(const char *text)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int64_t raw_int(const char *text)
{
	sqlite3 *db;
	sqlite3_stmt *stmt;
	int64_t v;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, text, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return v;
}

static struct store_saga saga(const char *id, const char *flow, const char *status)
{
	struct store_saga s = {
		.id = (char *)id, .flow = (char *)flow, .flow_version = 1, .status = (char *)status,
		.input = "{}", .parent_step = -1, .created_at = 1000, .updated_at = 1000,
	};
	return s;
}

static void insert(struct store *st, const char *id, const char *flow, const char *status)
{
	struct store_saga s = saga(id, flow, status);

	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
}

/* --- open, migrations, settings ---------------------------------------------------------- */

static void test_open_reopen(void **state)
{
	struct store *st = open_store();
	int64_t e1;

	e1 = store_epoch(st);
	assert_true(e1 >= 1);
	assert_int_equal(store_shard(st), 0);
	assert_true(store_schema_version(st) >= 1);
	assert_false(store_pending(st));
	store_close(st);

	st = open_store();
	assert_int_equal(store_epoch(st), e1 + 1);
	store_close(st);
	st = open_store();
	assert_int_equal(raw_int("SELECT count(*) FROM schema_migrations"),
			 store_schema_version(st));
	assert_int_equal(store_epoch(st), e1 + 2);
	store_close(st);
	assert_int_equal(raw_int("SELECT count(*) FROM nodes"), 3);
	assert_int_equal(raw_int("SELECT max(epoch) FROM nodes"), e1 + 2);
	store_close(NULL);
}

static void test_refuse_newer_schema(void **state)
{
	struct store_options opt = { .path = path };
	struct store *st = open_store();
	char err[512], sqltext[128], want[128];
	int v = store_schema_version(st);

	store_close(st);
	snprintf(sqltext, sizeof(sqltext), "INSERT INTO schema_migrations VALUES (%d, 0)", v + 3);
	raw_exec(sqltext);
	st = (struct store *)&opt; /* must be reset to NULL on failure */
	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), SAGAD_ESTORE);
	assert_null(st);
	snprintf(want, sizeof(want), "database schema version %d is newer than this sagad "
		 "supports (%d); upgrade sagad", v + 3, v);
	assert_non_null(strstr(err, want));
}

static void test_pragmas(void **state)
{
	struct store_options opt = { .path = path, .synchronous = "normal", .shard = 7 };
	struct store *st = open_store();
	char buf[64], err[512];

	assert_int_equal(store_pragma(st, "journal_mode", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "wal");
	assert_int_equal(store_pragma(st, "synchronous", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2");
	/* off: the purge deletes a saga's children itself (store.c, configure()) */
	assert_int_equal(store_pragma(st, "foreign_keys", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0");
	assert_int_equal(store_pragma(st, "busy_timeout", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "5000");
	assert_int_equal(store_pragma(st, "wal_checkpoint", buf, sizeof(buf)), SAGAD_EINVAL);
	assert_int_equal(store_pragma(st, "synchronous=OFF", buf, sizeof(buf)), SAGAD_EINVAL);
	/* A new database has 2 KiB pages ... */
	assert_int_equal(store_pragma(st, "page_size", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2048");
	store_close(st);
	/* ... and an existing one keeps its own. */
	teardown(state);
	raw_exec("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x)");
	st = open_store();
	assert_int_equal(store_pragma(st, "page_size", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "4096");
	store_close(st);

	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), 0);
	assert_int_equal(store_pragma(st, "synchronous", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1");
	assert_int_equal(store_shard(st), 7);
	store_close(st);

	opt.synchronous = "sometimes";
	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), SAGAD_EINVAL);
	assert_non_null(strstr(err, "\"sometimes\""));
	opt.synchronous = NULL;
	opt.busy_timeout_ms = -1;
	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), SAGAD_EINVAL);

	/* No WAL without a file: the store says so instead of running without it. */
	opt.busy_timeout_ms = 0;
	opt.path = ":memory:";
	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), SAGAD_ESTORE);
	assert_non_null(strstr(err, "not \"wal\""));

	opt.path = "/nonexistent-dir/x.db";
	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), SAGAD_EIO);
}

static void test_not_a_database(void **state)
{
	struct store_options opt = { .path = path };
	struct store *st;
	char err[512];
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("this is not an SQLite database, it is a text file with enough bytes in it..\n"
	      "................................................................................\n",
	      f);
	fclose(f);
	assert_int_equal(store_open(&opt, &st, err, sizeof(err)), SAGAD_ESTORE);
	assert_non_null(strstr(err, path));
}

/* --- sagas ------------------------------------------------------------------------------- */

static void test_saga_roundtrip(void **state)
{
	struct store *st = open_store();
	struct store_saga s = {
		.id = "01J9ZZZZZZZZZZZZZZZZZZZZZA", .shard = 99, .owner_epoch = 12345,
		.flow = "apply", .flow_version = 3, .status = "running", .cursor = 2,
		.input = "{\"studentName\":\"Kim\"}", .output = "{\"ok\":true}", .error = "boom",
		.idempotency_key = "k-1", .parent_id = "01J9PARENT0000000000000000", .parent_step = 4,
		.cancel_requested = true, .created_at = 1700000000123, .updated_at = 1700000000456,
		.deadline_at = 1700000060000,
	};
	struct store_saga got, p = saga("01J9PARENT0000000000000000", "parent", "running");

	assert_int_equal(store_saga_insert(st, &p, NULL), 0);
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	assert_int_equal(store_saga_get(st, s.id, &got), 0);
	assert_string_equal(got.id, s.id);
	assert_int_equal(got.shard, 0);                 /* the store's shard */
	assert_int_equal(got.owner_epoch, store_epoch(st));
	assert_string_equal(got.flow, "apply");
	assert_int_equal(got.flow_version, 3);
	assert_string_equal(got.status, "running");
	assert_int_equal(got.cursor, 2);
	assert_string_equal(got.input, s.input);
	assert_string_equal(got.output, s.output);
	assert_string_equal(got.error, "boom");
	assert_string_equal(got.idempotency_key, "k-1");
	assert_string_equal(got.parent_id, s.parent_id);
	assert_int_equal(got.parent_step, 4);
	assert_true(got.cancel_requested);
	assert_int_equal(got.created_at, s.created_at);
	assert_int_equal(got.updated_at, s.updated_at);
	assert_int_equal(got.deadline_at, s.deadline_at);
	store_saga_clear(&got);
	assert_null(got.id);
	store_saga_clear(&got);                          /* cleared twice: harmless */

	/* Optional fields absent. */
	assert_int_equal(store_saga_get(st, p.id, &got), 0);
	assert_null(got.output);
	assert_null(got.error);
	assert_null(got.idempotency_key);
	assert_null(got.parent_id);
	assert_int_equal(got.parent_step, -1);
	assert_false(got.cancel_requested);
	assert_int_equal(got.deadline_at, 0);
	store_saga_clear(&got);

	assert_int_equal(store_saga_get(st, "nope", &got), SAGAD_ENOENT);
	assert_int_equal(store_commit(st), 0);
	store_close(st);

	/* Committed data survives a reopen. */
	st = open_store();
	assert_int_equal(store_saga_get(st, s.id, &got), 0);
	assert_string_equal(got.input, s.input);
	store_saga_clear(&got);
	store_close(st);
}

/* store_scan_saga(): the row store_saga_get() reads, borrowed; the callback may run the
 * other reads (answer.c writes the whole saga from inside it) and the row's strings stay
 * valid through them. */
struct scan_saga {
	struct store *st;
	int calls;
	int ret;
	int steps, history, keys;
	char seen[512];
};

static int count_step(const struct store_step *s, void *arg) { (*(int *)arg)++; return 0; }
static int count_history(const struct store_history *h, void *arg) { (*(int *)arg)++; return 0; }
static int count_key(const char *n, const char *v, void *arg) { (*(int *)arg)++; return 0; }

static void saga_text(const struct store_saga *s, char *buf, size_t len)
{
	snprintf(buf, len, "%s|%d|%lld|%s|%d|%s|%d|%s|%s|%s|%s|%s|%d|%d|%lld|%lld|%lld", s->id,
		 s->shard, (long long)s->owner_epoch, s->flow, s->flow_version, s->status,
		 s->cursor, s->input ? s->input : "-", s->output ? s->output : "-",
		 s->error ? s->error : "-", s->idempotency_key ? s->idempotency_key : "-",
		 s->parent_id ? s->parent_id : "-", s->parent_step, s->cancel_requested,
		 (long long)s->created_at, (long long)s->updated_at, (long long)s->deadline_at);
}

static int on_scan_saga(const struct store_saga *s, void *arg)
{
	struct scan_saga *o = arg;
	char again[512];

	o->calls++;
	saga_text(s, o->seen, sizeof(o->seen));
	assert_int_equal(store_scan_steps(o->st, s->id, count_step, &o->steps), 0);
	assert_int_equal(store_scan_history(o->st, s->id, count_history, &o->history), 0);
	assert_int_equal(store_each_key(o->st, s->id, count_key, &o->keys), 0);
	saga_text(s, again, sizeof(again));
	assert_string_equal(again, o->seen);
	return o->ret;
}

static void test_scan_saga(void **state)
{
	struct store *st = open_store();
	struct store_saga s = {
		.id = "01J9ZZZZZZZZZZZZZZZZZZZZZB", .flow = "apply", .flow_version = 3,
		.status = "running", .cursor = 2, .input = "{\"studentName\":\"Kim\"}",
		.output = "{\"ok\":true}", .error = "boom", .idempotency_key = "k-1",
		.parent_id = "01J9PARENT0000000000000001", .parent_step = 4,
		.cancel_requested = true, .created_at = 1700000000123, .updated_at = 1700000000456,
		.deadline_at = 1700000060000,
	};
	struct store_saga p = saga("01J9PARENT0000000000000001", "parent", "running"), got;
	struct store_step step = { .saga_id = s.id, .idx = 0, .name = "pay", .state = "running",
				   .attempt = 1, .updated_at = 10 };
	struct store_history h = { .saga_id = s.id, .step = -1, .phase = "saga",
				   .event = "started", .started_at = 5 };
	const char *ids[] = { s.id, p.id };
	char want[512];

	assert_int_equal(store_saga_insert(st, &p, NULL), 0);
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	assert_int_equal(store_step_put(st, &step), 0);
	assert_int_equal(store_history_append(st, &h), 0);
	assert_int_equal(store_key_put(st, s.id, "studentName", "Kim"), 0);
	for (int pass = 0; pass < 2; pass++) {          /* in the open transaction, then committed */
		for (size_t i = 0; i < 2; i++) {
			struct scan_saga o = { .st = st };

			assert_int_equal(store_saga_get(st, ids[i], &got), 0);
			saga_text(&got, want, sizeof(want));
			store_saga_clear(&got);
			assert_int_equal(store_scan_saga(st, ids[i], on_scan_saga, &o), 0);
			assert_int_equal(o.calls, 1);
			assert_string_equal(o.seen, want);
			assert_int_equal(o.steps, i == 0 ? 1 : 0);
			assert_int_equal(o.history, i == 0 ? 1 : 0);
			assert_int_equal(o.keys, i == 0 ? 1 : 0);
		}
		assert_int_equal(store_commit(st), 0);
	}
	/* the optional fields absent read as NULL, -1 and 0, as store_saga_get() has them */
	{
		struct scan_saga o = { .st = st };

		assert_int_equal(store_scan_saga(st, p.id, on_scan_saga, &o), 0);
		assert_non_null(strstr(o.seen, "|{}|-|-|-|-|-1|0|1000|1000|0"));
	}
	/* the callback's value comes back; a missing saga is SAGAD_ENOENT, no call */
	{
		struct scan_saga o = { .st = st, .ret = 7 };

		assert_int_equal(store_scan_saga(st, s.id, on_scan_saga, &o), 7);
		o.calls = 0;
		assert_int_equal(store_scan_saga(st, "01J9MISSING000000000000000", on_scan_saga, &o),
				 SAGAD_ENOENT);
		assert_int_equal(o.calls, 0);
	}
	/* the statement was reset: a write and a commit go on */
	s.status = "completed";
	assert_int_equal(store_saga_update(st, &s), 0);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_saga_get(st, s.id, &got), 0);
	assert_string_equal(got.status, "completed");
	store_saga_clear(&got);
	store_close(st);
}

static void test_saga_update(void **state)
{
	struct store *st = open_store();
	struct store_saga s = saga("01J9A00000000000000000001", "apply", "running"), got;

	s.deadline_at = 5000;
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	s.status = "compensating";
	s.cursor = 3;
	s.output = "{\"x\":1}";
	s.error = "step pay: http 503";
	s.cancel_requested = true;
	s.updated_at = 2000;
	s.deadline_at = 0;
	s.flow = "ignored";                              /* not an updated column */
	assert_int_equal(store_saga_update(st, &s), 0);
	assert_int_equal(store_saga_get(st, s.id, &got), 0);
	assert_string_equal(got.status, "compensating");
	assert_string_equal(got.flow, "apply");
	assert_int_equal(got.cursor, 3);
	assert_string_equal(got.output, "{\"x\":1}");
	assert_string_equal(got.error, "step pay: http 503");
	assert_true(got.cancel_requested);
	assert_int_equal(got.updated_at, 2000);
	assert_int_equal(got.created_at, 1000);
	assert_int_equal(got.deadline_at, 0);
	store_saga_clear(&got);

	s.id = "01J9MISSING000000000000000";
	assert_int_equal(store_saga_update(st, &s), SAGAD_ENOENT);
	store_close(st);
}

static void test_idempotency_conflict(void **state)
{
	struct store *st = open_store();
	struct store_saga a = saga("01J9A00000000000000000001", "apply", "running");
	struct store_saga b = saga("01J9A00000000000000000002", "apply", "running");
	struct store_saga c = saga("01J9A00000000000000000003", "cancel", "running");
	char *existing = NULL, *id = NULL;

	a.idempotency_key = b.idempotency_key = c.idempotency_key = "order-42";
	assert_int_equal(store_saga_insert(st, &a, &existing), 0);
	assert_null(existing);
	assert_int_equal(store_saga_insert(st, &b, &existing), SAGAD_EEXIST);
	assert_non_null(existing);
	assert_string_equal(existing, a.id);
	free(existing);
	assert_int_equal(store_saga_insert(st, &b, NULL), SAGAD_EEXIST);
	/* The same key in another flow is another saga. */
	assert_int_equal(store_saga_insert(st, &c, NULL), 0);
	/* No key: no uniqueness. */
	insert(st, "01J9A00000000000000000004", "apply", "running");
	insert(st, "01J9A00000000000000000005", "apply", "running");
	/* The same id again. */
	existing = NULL;
	assert_int_equal(store_saga_insert(st, &c, &existing), SAGAD_EEXIST);
	assert_string_equal(existing, c.id);
	free(existing);

	assert_int_equal(store_saga_find_key(st, "apply", "order-42", &id), 0);
	assert_string_equal(id, a.id);
	free(id);
	assert_int_equal(store_saga_find_key(st, "apply", "order-43", &id), SAGAD_ENOENT);

	/* The conflicts did not break the transaction. */
	assert_true(store_pending(st));
	assert_int_equal(store_commit(st), 0);
	store_close(st);
	st = open_store();
	assert_int_equal(store_saga_find_key(st, "cancel", "order-42", &id), 0);
	assert_string_equal(id, c.id);
	free(id);
	store_close(st);
}

struct ids {
	int n;
	char id[64][32];
	struct store *st;           /* when set, the callback writes (re-entrancy) */
};

static int on_saga(const struct store_saga *s, void *arg)
{
	struct ids *ids = arg;

	assert_true(ids->n < 64);
	snprintf(ids->id[ids->n++], sizeof(ids->id[0]), "%s", s->id);
	if (ids->st != NULL) {
		struct store_saga u = *s;

		u.status = "completed";
		assert_int_equal(store_saga_update(ids->st, &u), 0);
	}
	return 0;
}

static void test_parent_unique(void **state)
{
	struct store *st = open_store();
	struct store_saga p = saga("01J9P00000000000000000000", "parent", "running");
	struct store_saga c1 = saga("01J9C00000000000000000001", "child", "running");
	struct store_saga c2 = saga("01J9C00000000000000000002", "child", "running");
	char *existing = NULL;

	assert_int_equal(store_saga_insert(st, &p, NULL), 0);
	c1.parent_id = c2.parent_id = p.id;
	c1.parent_step = c2.parent_step = 1;
	assert_int_equal(store_saga_insert(st, &c1, NULL), 0);
	assert_int_equal(store_saga_insert(st, &c2, &existing), SAGAD_EEXIST);
	assert_string_equal(existing, c1.id);
	free(existing);
	c2.parent_step = 0;
	assert_int_equal(store_saga_insert(st, &c2, NULL), 0);

	struct ids ids = { 0 };
	assert_int_equal(store_each_child(st, p.id, on_saga, &ids), 0);
	assert_int_equal(ids.n, 2);
	assert_string_equal(ids.id[0], c2.id);          /* parent_step 0 */
	assert_string_equal(ids.id[1], c1.id);          /* parent_step 1 */
	memset(&ids, 0, sizeof(ids));
	assert_int_equal(store_each_child(st, c1.id, on_saga, &ids), 0);
	assert_int_equal(ids.n, 0);
	store_close(st);
}

static void test_fencing(void **state)
{
	struct store *old = open_store(), *new;
	struct store_saga s = saga("01J9F00000000000000000000", "apply", "running"), got;

	assert_int_equal(store_saga_insert(old, &s, NULL), 0);
	assert_int_equal(store_commit(old), 0);
	s.status = "running";
	s.cursor = 1;
	assert_int_equal(store_saga_update(old, &s), 0);
	assert_int_equal(store_commit(old), 0);

	new = open_store();
	assert_true(store_epoch(new) > store_epoch(old));
	s.cursor = 2;
	assert_int_equal(store_saga_update(new, &s), 0);
	assert_int_equal(store_commit(new), 0);
	assert_int_equal(store_saga_get(new, s.id, &got), 0);
	assert_int_equal(got.owner_epoch, store_epoch(new));
	store_saga_clear(&got);

	/* The node with the older epoch lost the saga. */
	s.cursor = 3;
	assert_int_equal(store_saga_update(old, &s), SAGAD_ESTATE);
	assert_int_equal(store_commit(old), 0);
	assert_int_equal(store_saga_get(new, s.id, &got), 0);
	assert_int_equal(got.cursor, 2);
	store_saga_clear(&got);
	store_close(old);
	store_close(new);
}

static void test_busy(void **state)
{
	struct store_options opt = { .path = path, .busy_timeout_ms = 50 };
	struct store *a = open_store(), *b;
	char err[512];

	assert_int_equal(store_open(&opt, &b, err, sizeof(err)), 0);
	insert(a, "01J9B00000000000000000001", "apply", "running");
	assert_true(store_pending(a));
	/* a holds the write lock until it commits. */
	struct store_saga s = saga("01J9B00000000000000000002", "apply", "running");
	assert_int_equal(store_saga_insert(b, &s, NULL), SAGAD_EBUSY);
	assert_false(store_pending(b));
	assert_int_equal(store_commit(a), 0);
	assert_int_equal(store_saga_insert(b, &s, NULL), 0);
	assert_int_equal(store_commit(b), 0);
	store_close(a);
	store_close(b);
}

/* A BEGIN that waited its whole busy_timeout makes the next writes fail at once (the engine
 * pauses after that turn); store_probe() never waits for the lock, and once it succeeds the
 * timeout is back. */
static void test_busy_fast_and_probe(void **state)
{
	struct store_options opt = { .path = path, .busy_timeout_ms = 300 };
	struct store *a = open_store(), *b;
	struct store_saga s1 = saga("01J9P00000000000000000001", "apply", "running");
	struct store_saga s2 = saga("01J9P00000000000000000002", "apply", "running");
	char err[512];
	int64_t t;

	assert_int_equal(store_open(&opt, &b, err, sizeof(err)), 0);
	assert_int_equal(store_probe(b), 0);
	insert(a, "01J9P00000000000000000003", "apply", "running"); /* a holds the write lock */
	t = util_mono_ms();
	assert_int_equal(store_saga_insert(b, &s1, NULL), SAGAD_EBUSY);
	assert_true(util_mono_ms() - t >= 250);          /* waited its busy_timeout */
	t = util_mono_ms();
	assert_int_equal(store_saga_insert(b, &s2, NULL), SAGAD_EBUSY);
	assert_true(util_mono_ms() - t < 200);           /* then fails at once */
	t = util_mono_ms();
	assert_int_equal(store_probe(b), SAGAD_EBUSY);
	assert_true(util_mono_ms() - t < 200);           /* the probe never waits */
	assert_int_equal(store_commit(a), 0);
	assert_int_equal(store_probe(b), 0);             /* free again: written and committed */
	assert_false(store_pending(b));
	insert(a, "01J9P00000000000000000004", "apply", "running");
	t = util_mono_ms();
	assert_int_equal(store_saga_insert(b, &s1, NULL), SAGAD_EBUSY);
	assert_true(util_mono_ms() - t >= 250);          /* the timeout is back */
	store_rollback(a);
	store_close(a);
	store_close(b);
}

/* --- transactions ------------------------------------------------------------------------ */

static void test_commit_rollback(void **state)
{
	struct store *st = open_store();
	struct store_saga got;
	uint64_t commits, writes;

	assert_false(store_pending(st));
	assert_int_equal(store_commit(st), 0);          /* nothing to commit */
	store_stats(st, &commits, &writes);
	assert_int_equal(commits, 0);
	assert_int_equal(writes, 0);

	insert(st, "01J9T00000000000000000001", "apply", "running");
	assert_true(store_pending(st));
	/* Reads see this connection's uncommitted writes and open no transaction. */
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000001", &got), 0);
	store_saga_clear(&got);
	store_rollback(st);
	assert_false(store_pending(st));
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000001", &got), SAGAD_ENOENT);
	store_rollback(st);                             /* nothing to roll back */

	assert_int_equal(store_saga_get(st, "01J9T00000000000000000002", &got), SAGAD_ENOENT);
	assert_false(store_pending(st));
	insert(st, "01J9T00000000000000000002", "apply", "running");
	insert(st, "01J9T00000000000000000003", "apply", "running");
	assert_int_equal(store_commit(st), 0);
	assert_false(store_pending(st));
	store_stats(st, &commits, &writes);
	assert_int_equal(commits, 1);
	assert_int_equal(writes, 3);

	/* Uncommitted at close: gone. */
	insert(st, "01J9T00000000000000000004", "apply", "running");
	store_close(st);

	st = open_store();
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000002", &got), 0);
	store_saga_clear(&got);
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000003", &got), 0);
	store_saga_clear(&got);
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000004", &got), SAGAD_ENOENT);
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000001", &got), SAGAD_ENOENT);

	/* A failed write (a step without a name: NOT NULL) leaves the transaction usable. */
	struct store_step step = { .saga_id = "01J9T00000000000000000005", .idx = 0, .name = NULL,
				   .state = "s" };
	insert(st, "01J9T00000000000000000005", "apply", "running");
	assert_int_equal(store_step_put(st, &step), SAGAD_ESTORE);
	assert_true(store_pending(st));
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_saga_get(st, "01J9T00000000000000000005", &got), 0);
	store_saga_clear(&got);
	store_close(st);
}

/* --- steps, history, timers, flows ------------------------------------------------------- */

struct collect {
	int n;
	char seen[8][128];
	int64_t nums[8];
	int stop_at;                /* stop (return 7) at this row, when > 0 */
};

static int on_step(const struct store_step *s, void *arg)
{
	struct collect *c = arg;

	snprintf(c->seen[c->n], sizeof(c->seen[0]), "%d:%s:%s:%d:%d:%s:%s:%lld", s->idx, s->name,
		 s->state, s->attempt, s->comp_attempt, s->response ? s->response : "-",
		 s->error ? s->error : "-", (long long)s->updated_at);
	c->n++;
	return c->stop_at == c->n ? 7 : 0;
}

static void test_steps(void **state)
{
	struct store *st = open_store();
	struct store_step s = { .saga_id = "01J9S00000000000000000000", .idx = 0, .name = "apply",
				.state = "dispatched", .attempt = 1, .updated_at = 10 };
	struct collect c = { 0 };

	insert(st, s.saga_id, "apply", "running");
	assert_int_equal(store_step_put(st, &s), 0);
	s.idx = 1;
	s.name = "pay";
	assert_int_equal(store_step_put(st, &s), 0);
	/* Upsert step 0. */
	s.idx = 0;
	s.name = "apply";
	s.state = "compensated";
	s.attempt = 2;
	s.comp_attempt = 1;
	s.response = "{\"id\":7}";
	s.error = "gone";
	s.updated_at = 20;
	assert_int_equal(store_step_put(st, &s), 0);

	assert_int_equal(store_each_step(st, s.saga_id, on_step, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.seen[0], "0:apply:compensated:2:1:{\"id\":7}:gone:20");
	assert_string_equal(c.seen[1], "1:pay:dispatched:1:0:-:-:10");

	memset(&c, 0, sizeof(c));
	c.stop_at = 1;
	assert_int_equal(store_each_step(st, s.saga_id, on_step, &c), 7);
	assert_int_equal(c.n, 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_each_step(st, "other", on_step, &c), 0);
	assert_int_equal(c.n, 0);

	/* the borrowed scan: the same rows, and the same stop (uncommitted rows included) */
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_scan_steps(st, s.saga_id, on_step, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.seen[0], "0:apply:compensated:2:1:{\"id\":7}:gone:20");
	assert_string_equal(c.seen[1], "1:pay:dispatched:1:0:-:-:10");
	memset(&c, 0, sizeof(c));
	c.stop_at = 1;
	assert_int_equal(store_scan_steps(st, s.saga_id, on_step, &c), 7);
	assert_int_equal(c.n, 1);
	/* ... and the statement was reset: the store goes on */
	assert_int_equal(store_commit(st), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_each_step(st, s.saga_id, on_step, &c), 0);
	assert_int_equal(c.n, 2);
	store_close(st);
}

static int on_history(const struct store_history *h, void *arg)
{
	struct collect *c = arg;

	c->nums[c->n] = h->seq;
	snprintf(c->seen[c->n], sizeof(c->seen[0]), "%d:%s:%s:%d:%s:%s:%d:%s:%s:%lld:%lld", h->step,
		 h->step_name ? h->step_name : "-", h->phase, h->attempt, h->event,
		 h->request ? h->request : "-", h->status, h->response ? h->response : "-",
		 h->error ? h->error : "-", (long long)h->started_at, (long long)h->ended_at);
	c->n++;
	return 0;
}

static void test_history(void **state)
{
	struct store *st = open_store();
	const char *id = "01J9H00000000000000000000";
	struct store_history h[] = {
		{ .saga_id = (char *)id, .step = -1, .phase = "saga", .event = "started",
		  .started_at = 5 },
		{ .saga_id = (char *)id, .step = 0, .step_name = "pay", .phase = "action",
		  .attempt = 1, .event = "dispatched", .request = "POST http://p/payments",
		  .started_at = 6 },
		{ .saga_id = (char *)id, .step = 0, .step_name = "pay", .phase = "action",
		  .attempt = 1, .event = "failed", .request = "POST http://p/payments",
		  .status = 503, .response = "busy", .error = "http 503", .started_at = 6,
		  .ended_at = 9 },
	};
	struct collect c = { 0 };

	insert(st, id, "apply", "running");
	insert(st, "01J9H00000000000000000001", "apply", "running");
	for (size_t i = 0; i < 3; i++) {
		struct store_history other = h[i];

		assert_int_equal(store_history_append(st, &h[i]), 0);
		other.saga_id = "01J9H00000000000000000001";
		assert_int_equal(store_history_append(st, &other), 0);
	}
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_each_history(st, id, on_history, &c), 0);
	assert_int_equal(c.n, 3);
	assert_true(c.nums[0] < c.nums[1] && c.nums[1] < c.nums[2]);
	assert_string_equal(c.seen[0], "-1:-:saga:0:started:-:0:-:-:5:0");
	assert_string_equal(c.seen[1], "0:pay:action:1:dispatched:POST http://p/payments:0:-:-:6:0");
	assert_string_equal(c.seen[2],
			    "0:pay:action:1:failed:POST http://p/payments:503:busy:http 503:6:9");

	/* the borrowed scan gives the same rows */
	for (int i = 0; i < 3; i++) {
		struct collect d = { 0 };

		assert_int_equal(store_scan_history(st, id, on_history, &d), 0);
		assert_int_equal(d.n, 3);
		for (int j = 0; j < 3; j++) {
			assert_string_equal(d.seen[j], c.seen[j]);
			assert_int_equal(d.nums[j], c.nums[j]);
		}
	}
	store_close(st);
}

static int on_timer(const struct store_timer *t, void *arg)
{
	struct collect *c = arg;

	if (c->n < 8)
		snprintf(c->seen[c->n], sizeof(c->seen[0]), "%s:%s:%d:%lld", t->saga_id, t->kind,
			 t->step, (long long)t->due_at);
	c->n++;
	return 0;
}

static void test_timers(void **state)
{
	struct store *st = open_store();
	struct store_timer t = { .saga_id = "01J9T00000000000000000001", .kind = "retry",
				 .step = 2, .due_at = 100 };
	struct collect c = { 0 };
	char id[32];

	insert(st, "01J9T00000000000000000001", "apply", "running");
	insert(st, "01J9T00000000000000000002", "apply", "running");
	assert_int_equal(store_timer_put(st, &t), 0);
	t.kind = "deadline";
	t.step = -1;
	t.due_at = 500;
	assert_int_equal(store_timer_put(st, &t), 0);
	t.saga_id = "01J9T00000000000000000002";
	t.kind = "timeout";
	t.step = 0;
	t.due_at = 50;
	assert_int_equal(store_timer_put(st, &t), 0);
	/* Replace: at most one timer per (saga, kind, step); another step has its own. */
	t.due_at = 60;
	assert_int_equal(store_timer_put(st, &t), 0);
	t.step = 1;
	t.due_at = 70;
	assert_int_equal(store_timer_put(st, &t), 0);

	assert_int_equal(store_each_timer(st, on_timer, &c), 0);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.seen[0], "01J9T00000000000000000001:deadline:-1:500");
	assert_string_equal(c.seen[1], "01J9T00000000000000000001:retry:2:100");
	assert_string_equal(c.seen[2], "01J9T00000000000000000002:timeout:0:60");
	assert_string_equal(c.seen[3], "01J9T00000000000000000002:timeout:1:70");

	assert_int_equal(store_timer_delete(st, "01J9T00000000000000000001", "retry", 2), 0);
	assert_int_equal(store_timer_delete(st, "01J9T00000000000000000001", "retry", 2), 0);
	assert_int_equal(store_timer_delete(st, "01J9T00000000000000000002", "timeout", 0), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_each_timer(st, on_timer, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.seen[0], "01J9T00000000000000000001:deadline:-1:500");

	/* More than one read batch. */
	for (int i = 0; i < 600; i++) {
		snprintf(id, sizeof(id), "%s", ID("01J9U", i));
		insert(st, id, "apply", "running");
		t.saga_id = id;
		t.kind = "retry";
		assert_int_equal(store_timer_put(st, &t), 0);
	}
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_each_timer(st, on_timer, &c), 0);
	assert_int_equal(c.n, 602);
	store_close(st);
}

static void test_flows(void **state)
{
	struct store *st = open_store();
	char *src = NULL;

	assert_int_equal(store_flow_get(st, "apply", 1, &src), SAGAD_ENOENT);
	assert_int_equal(store_flow_put(st, "apply", 1, "name: apply\nversion: 1\n"), 0);
	assert_int_equal(store_flow_put(st, "apply", 1, "name: apply\nversion: 1\n"), 0);
	assert_int_equal(store_flow_put(st, "apply", 1, "name: apply\nversion: 1\n# edited\n"),
			 SAGAD_EEXIST);
	assert_int_equal(store_flow_put(st, "apply", 2, "name: apply\nversion: 2\n"), 0);
	assert_int_equal(store_commit(st), 0);
	store_close(st);

	st = open_store();
	assert_int_equal(store_flow_get(st, "apply", 1, &src), 0);
	assert_string_equal(src, "name: apply\nversion: 1\n");
	free(src);
	assert_int_equal(store_flow_get(st, "apply", 2, &src), 0);
	assert_string_equal(src, "name: apply\nversion: 2\n");
	free(src);
	assert_int_equal(store_flow_get(st, "other", 1, &src), SAGAD_ENOENT);
	store_close(st);
}

/* --- listing and recovery ---------------------------------------------------------------- */

static void test_list(void **state)
{
	struct store *st = open_store();
	static const char *const flows[] = { "apply", "cancel" };
	static const char *const statuses[] = { "running", "completed", "compensated" };
	struct store_list_query q = { .limit = 100 };
	struct ids ids = { 0 };
	char id[32];
	int i;

	/* ids 00..29: flow alternates, status cycles through three */
	for (i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "%s", ID("01J9L", i));
		insert(st, id, flows[i % 2], statuses[i % 3]);
	}
	assert_int_equal(store_commit(st), 0);

	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 30);
	assert_string_equal(ids.id[0], ID("01J9L", 29));
	assert_string_equal(ids.id[29], ID("01J9L", 0));

	memset(&ids, 0, sizeof(ids));
	q.flow = "apply";
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 15);
	assert_string_equal(ids.id[0], ID("01J9L", 28));

	memset(&ids, 0, sizeof(ids));
	q.status = "running";          /* i % 2 == 0 and i % 3 == 0: 0, 6, 12, 18, 24 */
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 5);
	assert_string_equal(ids.id[0], ID("01J9L", 24));
	assert_string_equal(ids.id[4], ID("01J9L", 0));

	memset(&ids, 0, sizeof(ids));
	q.flow = NULL;                 /* running: 0, 3, ..., 27 */
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 10);

	/* Paging: 4 at a time with the last id as the cursor. */
	q.status = NULL;
	q.limit = 4;
	q.before_id = NULL;
	int total = 0, pages = 0;
	char cursor[32];
	for (;;) {
		memset(&ids, 0, sizeof(ids));
		assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
		if (ids.n == 0)
			break;
		if (total > 0)
			assert_true(strcmp(ids.id[0], cursor) < 0);
		total += ids.n;
		pages++;
		snprintf(cursor, sizeof(cursor), "%s", ids.id[ids.n - 1]);
		q.before_id = cursor;
	}
	assert_int_equal(total, 30);
	assert_int_equal(pages, 8);

	/* Cursor with filters. */
	memset(&ids, 0, sizeof(ids));
	q.flow = "cancel";
	q.status = "completed";        /* odd and i % 3 == 1: 1, 7, 13, 19, 25 */
	q.before_id = ID("01J9L", 19);
	q.limit = 100;
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 3);
	assert_string_equal(ids.id[0], ID("01J9L", 13));
	/* Each kind of status through its own index: final (sagas_finished_status), or not
	 * (sagas_unfinished), with and without a flow and a cursor. */
	memset(&ids, 0, sizeof(ids));
	q.flow = NULL;
	q.status = "compensated";      /* i % 3 == 2 below 19: 2, 5, 8, 11, 14, 17 */
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 6);
	assert_string_equal(ids.id[0], ID("01J9L", 17));
	memset(&ids, 0, sizeof(ids));
	q.status = "running";          /* 0, 3, ..., 18 */
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 7);
	assert_string_equal(ids.id[6], ID("01J9L", 0));
	memset(&ids, 0, sizeof(ids));
	q.before_id = NULL;
	q.status = "failed";
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 0);

	/* Limit clamps. */
	memset(&ids, 0, sizeof(ids));
	q = (struct store_list_query){ .limit = 0 };
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 1);
	memset(&ids, 0, sizeof(ids));
	q.limit = 1000000;
	q.flow = "cancel";
	q.status = "running";
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 5);
	store_close(st);
}

static int on_key(const char *name, const char *value, void *arg)
{
	char *buf = arg;
	size_t n = strlen(buf);
	snprintf(buf + n, 256 - n, "%s=%s;", name, value);
	return 0;
}

static void test_keys(void **state)
{
	struct store *st = open_store();
	struct store_list_query q = { .limit = 100, .key_name = "orderId", .key_value = "7" };
	struct ids ids = { 0 };
	char buf[256] = "", *id = NULL;

	insert(st, "01J9K00000000000000000001", "order", "completed");
	insert(st, "01J9K00000000000000000002", "order", "compensated");
	insert(st, "01J9K00000000000000000003", "refund", "running");
	insert(st, "01J9K00000000000000000004", "order", "running");
	assert_int_equal(store_key_put(st, "01J9K00000000000000000001", "orderId", "7"), 0);
	assert_int_equal(store_key_put(st, "01J9K00000000000000000002", "orderId", "7"), 0);
	assert_int_equal(store_key_put(st, "01J9K00000000000000000003", "orderId", "7"), 0);
	assert_int_equal(store_key_put(st, "01J9K00000000000000000004", "orderId", "8"), 0);
	/* replace, and a second key */
	assert_int_equal(store_key_put(st, "01J9K00000000000000000001", "userId", "u"), 0);
	assert_int_equal(store_key_put(st, "01J9K00000000000000000001", "userId", "goodman"), 0);
	assert_int_equal(store_commit(st), 0);

	assert_int_equal(store_each_key(st, "01J9K00000000000000000001", on_key, buf), 0);
	assert_string_equal(buf, "orderId=7;userId=goodman;");

	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 3);
	assert_string_equal(ids.id[0], "01J9K00000000000000000003");
	memset(&ids, 0, sizeof(ids));
	q.flow = "order";
	q.status = "compensated";
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 1);
	assert_string_equal(ids.id[0], "01J9K00000000000000000002");
	memset(&ids, 0, sizeof(ids));
	q.status = NULL;
	q.before_id = "01J9K00000000000000000002";
	assert_int_equal(store_saga_list(st, &q, on_saga, &ids), 0);
	assert_int_equal(ids.n, 1);
	assert_string_equal(ids.id[0], "01J9K00000000000000000001");

	assert_int_equal(store_key_find(st, "order", "orderId", "7", &id), 0);
	assert_string_equal(id, "01J9K00000000000000000002");
	free(id);
	assert_int_equal(store_key_find(st, "order", "orderId", "9", &id), SAGAD_ENOENT);
	assert_null(id);
	store_close(st);
}

static void test_each_unfinished(void **state)
{
	struct store *st = open_store();
	static const char *const statuses[] = { "running", "completed", "compensated", "failed",
						"compensating" };
	static const char *const with_failed[] = { "completed", "compensated", "failed", NULL };
	static const char *const only_completed[] = { "completed", NULL };
	struct ids ids = { 0 };
	char id[32];
	int i;

	for (i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "%s", ID("01J9U", 9 - i));
		insert(st, id, "apply", statuses[i % 5]);
	}
	/* Ascending ids; unfinished: running (i 0, 5 -> ids 9, 4), failed (i 3, 8 -> 6, 1),
	 * compensating (i 4, 9 -> 5, 0). */
	assert_int_equal(store_each_unfinished(st, finals, on_saga, &ids), 0);
	assert_int_equal(ids.n, 6);
	assert_string_equal(ids.id[0], ID("01J9U", 0));
	assert_string_equal(ids.id[1], ID("01J9U", 1));
	assert_string_equal(ids.id[5], ID("01J9U", 9));

	memset(&ids, 0, sizeof(ids));
	assert_int_equal(store_each_unfinished(st, with_failed, on_saga, &ids), 0);
	assert_int_equal(ids.n, 4);

	/* Not using the partial index: compensated counts as unfinished. */
	memset(&ids, 0, sizeof(ids));
	assert_int_equal(store_each_unfinished(st, only_completed, on_saga, &ids), 0);
	assert_int_equal(ids.n, 8);

	/* Callbacks may write: complete every unfinished saga while iterating. */
	memset(&ids, 0, sizeof(ids));
	ids.st = st;
	assert_int_equal(store_each_unfinished(st, finals, on_saga, &ids), 0);
	assert_int_equal(ids.n, 6);
	memset(&ids, 0, sizeof(ids));
	assert_int_equal(store_each_unfinished(st, finals, on_saga, &ids), 0);
	assert_int_equal(ids.n, 0);
	store_close(st);
}

static int count_saga(const struct store_saga *s, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int stop_saga(const struct store_saga *s, void *arg)
{
	return ++*(int *)arg == 300 ? SAGAD_ESHUTDOWN : 0;
}

static void test_each_unfinished_batches(void **state)
{
	struct store *st = open_store();
	char id[32];
	int i, n = 0;

	for (i = 0; i < 700; i++) {
		snprintf(id, sizeof(id), "%s", ID("01J9V", i));
		insert(st, id, "apply", i % 7 == 0 ? "completed" : "running");
	}
	assert_int_equal(store_each_unfinished(st, finals, count_saga, &n), 0);
	assert_int_equal(n, 600);
	n = 0;
	assert_int_equal(store_each_unfinished(st, finals, stop_saga, &n), SAGAD_ESHUTDOWN);
	assert_int_equal(n, 300);
	store_close(st);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)


static int on_outbox(const struct store_outbox *m, void *arg)
{
	struct collect *c = arg;

	if (c->n < (int)(sizeof(c->seen) / sizeof(c->seen[0])))
		snprintf(c->seen[c->n++], sizeof(c->seen[0]), "%lld:%s:%s:%s:%d",
			 (long long)m->seq, m->topic, m->key ? m->key : "-", m->value ? m->value : "-",
			 m->attempts);
	return 0;
}

/* The outbox: appended in a transaction, read back in order, marked sent or failed; only
 * committed rows survive a reopen. */
static void test_outbox(void **state)
{
	struct store *st = open_store();
	struct store_outbox m = { .topic = "delivery-commands", .key = "k1", .headers = "[\"a\",\"b\"]",
				  .value = "{\"x\":1}", .saga_id = "01J9T00000000000000000001",
				  .created_at = 5 };
	struct collect c = { 0 };
	int64_t seq1, seq2, n;

	assert_int_equal(store_outbox_put(st, &m, &seq1), 0);
	m.key = NULL;
	m.value = NULL;
	assert_int_equal(store_outbox_put(st, &m, &seq2), 0);
	assert_true(seq2 > seq1);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_outbox_each_unsent(st, 0, 10, on_outbox, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(strchr(c.seen[0], ':') + 1, "delivery-commands:k1:{\"x\":1}:0");
	assert_string_equal(strchr(c.seen[1], ':') + 1, "delivery-commands:-:-:0");
	/* after_seq skips what was already handed to the producer */
	c.n = 0;
	assert_int_equal(store_outbox_each_unsent(st, seq1, 10, on_outbox, &c), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(store_outbox_failed(st, seq1, "broker down"), 0);
	assert_int_equal(store_outbox_sent(st, seq2, 9), 0);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_outbox_unsent(st, &n), 0);
	assert_int_equal(n, 1);
	c.n = 0;
	assert_int_equal(store_outbox_each_unsent(st, 0, 10, on_outbox, &c), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(strchr(c.seen[0], ':') + 1, "delivery-commands:k1:{\"x\":1}:1");
	/* an uncommitted message is gone after a crash */
	assert_int_equal(store_outbox_put(st, &m, NULL), 0);
	store_close(st);
	st = open_store();
	assert_int_equal(store_outbox_unsent(st, &n), 0);
	assert_int_equal(n, 1);
	store_close(st);
}


/* One purge pass: its result must be sagas deleted, scanned read (-1: any) and more. */
static struct store_purge_result purge_pass(struct store *st, int64_t before_ms, int limit,
					    int sagas, int scanned, bool more)
{
	struct store_purge_result r;

	assert_int_equal(store_purge(st, before_ms, limit, &r), 0);
	assert_int_equal(r.sagas, sagas);
	if (scanned >= 0)
		assert_int_equal(r.scanned, scanned);
	assert_int_equal(r.more, more);
	return r;
}

/* The plans of the startup and purge queries do not depend on the planner's statistics, and
 * a purge pass over finished sagas that were created long ago but ended recently (the shape
 * that made the first purge read every finished saga) reads none of them. The statistics are
 * those of a tiny store (ANALYZE, then the table grows), as after a PRAGMA optimize at an early
 * close: with them SQLite walked the primary key at startup, reading every finished saga. */
static void test_purge_plans(void **state)
{
	struct store *st = open_store();
	struct store_saga s;
	char id[27], plan[1024];
	int i;

	util_ulid_at(1000, id);
	s = saga(id, "f", "failed");        /* never purged */
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	assert_int_equal(store_commit(st), 0);
	store_close(st);
	raw_exec("ANALYZE");
	st = open_store();
	for (i = 0; i < 3000; i++) {
		util_ulid_at(1000 + i, id);
		snprintf(id + 16, 11, "%010d", i + 1);
		s = saga(id, "f", i % 2 ? "completed" : "compensated");
		s.created_at = 1000 + i;
		s.updated_at = 900000 + i;     /* ended after the cutoff below */
		assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	}
	assert_int_equal(store_commit(st), 0);
	store_close(st);
	/* The statistics of the first close (one saga), as a store keeps them until the next. */
	raw_exec("DELETE FROM sqlite_stat1; INSERT INTO sqlite_stat1 VALUES "
		 "('sagas', 'sqlite_autoindex_sagas_1', '1 1'), ('sagas', 'sagas_status', '1 1 1'), "
		 "('sagas', 'sagas_flow', '1 1 1'), ('sagas', 'sagas_finished', '1 1 1')");

	st = open_store();
	assert_int_equal(store_query_plan(st, "recover", plan, sizeof(plan)), 0);
	assert_non_null(strstr(plan, "USING INDEX sagas_unfinished"));
	assert_int_equal(store_query_plan(st, "purge", plan, sizeof(plan)), 0);
	assert_non_null(strstr(plan, "SEARCH s USING INDEX sagas_finished"));
	assert_null(strstr(plan, "SCAN s"));
	assert_int_equal(store_query_plan(st, "nope", plan, sizeof(plan)), SAGAD_EINVAL);
	/* Cutoff 500000: every saga was created before it, none ended before it. */
	purge_pass(st, 500000, 200, 0, 0, false);
	/* A cutoff past them all: a pass reads and deletes its limit, and says there is more. */
	purge_pass(st, 950000, 200, 200, 200, true);
	assert_int_equal(store_commit(st), 0);
	store_close(st);
	assert_int_equal(raw_int("SELECT count(*) FROM sagas"), 3001 - 200);
}

/* Pipelined commits: the store commits as NORMAL and its thread syncs the WAL; a commit's
 * ticket becomes durable once the loop has seen the thread's wake-up, and only outbox rows
 * of durable commits are handed out. Stopping syncs the rest and restores FULL. */
static void test_pipeline(void **state)
{
	struct store *st = open_store();
	struct store_outbox m = { .topic = "t", .value = "{}", .created_at = 1 };
	struct collect c = { 0 };
	uv_loop_t loop;
	uint64_t ticket, durable = 0;
	char err[256], buf[32];
	int i;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(store_pipeline_start(st, &loop, err, sizeof(err)), 0);
	assert_int_equal(store_pragma(st, "synchronous", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1"); /* NORMAL: the thread syncs */
	assert_int_equal(store_durable(st, &durable), 0);
	assert_int_equal(durable, store_committed(st)); /* the start synced what was there */

	assert_int_equal(store_outbox_put(st, &m, NULL), 0);
	assert_int_equal(store_commit(st), 0);
	ticket = store_committed(st);
	assert_int_equal(store_outbox_each_unsent(st, 0, 10, on_outbox, &c), 0);
	assert_int_equal(store_durable(st, &durable), 0);
	if (c.n > 0) /* handed out: then its commit was durable before the scan */
		assert_true(durable >= ticket);
	for (i = 0; i < 500 && durable < ticket; i++) {
		uv_run(&loop, UV_RUN_ONCE);
		assert_int_equal(store_durable(st, &durable), 0);
	}
	assert_true(durable >= ticket);
	c.n = 0;
	assert_int_equal(store_outbox_each_unsent(st, 0, 10, on_outbox, &c), 0);
	assert_int_equal(c.n, 1);
	assert_true(store_syncs(st) >= 2);

	/* a commit not yet seen durable when the pipeline stops is synced by the stop */
	assert_int_equal(store_outbox_put(st, &m, NULL), 0);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_pipeline_stop(st), 0);
	assert_int_equal(store_durable(st, &durable), 0);
	assert_int_equal(durable, store_committed(st));
	assert_int_equal(store_pragma(st, "synchronous", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2"); /* FULL again */
	c.n = 0;
	assert_int_equal(store_outbox_each_unsent(st, 0, 10, on_outbox, &c), 0);
	assert_int_equal(c.n, 2);
	uv_run(&loop, UV_RUN_DEFAULT); /* closes the thread's async handle */
	assert_int_equal(uv_loop_close(&loop), 0);
	store_close(st);
}

static int count_steps(const struct store_step *s, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

/* store_read_begin(): the reads until store_read_end() see one snapshot (a commit by another
 * connection in between stays unseen), it is not a pending write, a write ends it first, and
 * with writes pending it opens nothing (the reads see them). */
static void test_read_transaction(void **state)
{
	struct store *st = open_store();
	struct store_saga got;
	struct store_step step = { .saga_id = (char *)ID("R", 1), .idx = 0, .name = "a",
				   .state = "running", .updated_at = 1 };
	int n = 0;

	insert(st, ID("R", 1), "f", "running");
	assert_int_equal(store_commit(st), 0);

	assert_true(store_read_begin(st));
	assert_false(store_pending(st));
	assert_false(store_read_begin(st));   /* one at a time */
	assert_int_equal(store_saga_get(st, ID("R", 1), &got), 0);
	store_saga_clear(&got);
	raw_exec("INSERT INTO saga_steps (saga_id, idx, name, state, updated_at) VALUES "
		 "('R0000000000000000000000001', 0, 'a', 'running', 1)");
	assert_int_equal(store_each_step(st, ID("R", 1), count_steps, &n), 0);
	assert_int_equal(n, 0);                  /* the snapshot of the first read */
	store_read_end(st);
	assert_int_equal(store_each_step(st, ID("R", 1), count_steps, &n), 0);
	assert_int_equal(n, 1);
	store_read_end(st);                      /* none open: nothing */

	/* a write inside ends the snapshot and becomes a pending write on the newest state */
	assert_true(store_read_begin(st));
	assert_int_equal(store_saga_get(st, ID("R", 1), &got), 0);
	store_saga_clear(&got);
	step.idx = 1;
	assert_int_equal(store_step_put(st, &step), 0);
	assert_true(store_pending(st));
	assert_false(store_read_begin(st));   /* writes pending: reads see them */
	n = 0;
	assert_int_equal(store_each_step(st, ID("R", 1), count_steps, &n), 0);
	assert_int_equal(n, 2);
	store_read_end(st);                      /* not its transaction: the write stays */
	assert_true(store_pending(st));
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(raw_int("SELECT count(*) FROM saga_steps"), 2);

	/* a commit or a rollback ends a read transaction too */
	assert_true(store_read_begin(st));
	assert_int_equal(store_commit(st), 0);
	assert_true(store_read_begin(st));
	store_rollback(st);
	assert_true(store_read_begin(st));
	store_read_end(st);
	store_close(st);
}

static int64_t wal_size(void)
{
	char p[160];
	struct stat sb;

	snprintf(p, sizeof(p), "%s-wal", path);
	assert_int_equal(stat(p, &sb), 0);
	return (int64_t)sb.st_size;
}

/* The VFS shim (store_vfs.h): a commit's WAL frames reach the file in one write, by the time
 * the commit returns (another connection reads them at once), recognised at the commit frame
 * and not by the safety net; a transaction bigger than the shim's buffer is written in
 * several parts; the file is whole WAL frames, and the database checks out. */
static void test_wal_one_write_per_commit(void **state)
{
	struct store *st = open_store();
	struct store_vfs_stats s0, s1;
	struct store_history h = { .step = 0, .step_name = "a", .phase = "action",
				   .event = "dispatched", .request = "POST /x", .started_at = 1 };
	struct store_saga s;
	char *input = xmalloc(3001);
	int64_t size0, size1;
	int i;

	store_vfs_stats(&s0);
	size0 = wal_size();
	for (i = 0; i < 5; i++) {
		insert(st, ID("W", i), "f", "running");
		h.saga_id = (char *)ID("W", i);
		assert_int_equal(store_history_append(st, &h), 0);
	}
	assert_int_equal(store_commit(st), 0);
	store_vfs_stats(&s1);
	assert_int_equal(raw_int("SELECT count(*) FROM saga_history"), 5);
	size1 = wal_size();
	assert_true(size1 > size0);
	assert_int_equal((size1 - 32) % (24 + 2048), 0);
	/* several frames (two writes each), one write to the file, at the commit frame */
	assert_true(s1.wal_writes - s0.wal_writes >= 2 * 3);
	assert_int_equal(s1.wal_flushes - s0.wal_flushes, 1);
	assert_int_equal(s1.late_flushes, s0.late_flushes);

	/* about 2 MB of pages in one commit: the 1 MB buffer goes out in parts */
	memset(input, 'x', 3000);
	input[3000] = '\0';
	for (i = 0; i < 700; i++) {
		s = saga(ID("B", i), "f", "running");
		s.input = input;
		assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	}
	assert_int_equal(store_commit(st), 0);
	store_vfs_stats(&s0);
	assert_true(s0.wal_flushes - s1.wal_flushes >= 2);
	assert_int_equal(s0.late_flushes, s1.late_flushes);
	assert_int_equal(raw_int("SELECT count(*) FROM sagas"), 705);
	assert_int_equal((wal_size() - 32) % (24 + 2048), 0);
	assert_int_equal(raw_int("SELECT sum(length(input)) FROM sagas WHERE id LIKE 'B%'"), 700 * 3000);
	assert_int_equal(raw_int("SELECT count(*) FROM pragma_integrity_check WHERE "
				 "integrity_check <> 'ok'"), 0);
	free(input);
	store_close(st);
	st = open_store();
	assert_int_equal(raw_int("SELECT count(*) FROM sagas"), 705);
	store_close(st);
}

/* Retention: only completed/compensated sagas created and updated before the cutoff go, with
 * their steps and history; failed and recent ones stay; sent outbox rows before it go. */
static void test_purge(void **state)
{
	struct store *st = open_store();
	char old1[27], old2[27], oldf[27], late[27], now1[27], q[512];
	struct store_step step = { .idx = 0, .name = "a", .state = "succeeded", .updated_at = 1 };
	struct store_history h = { .step = -1, .phase = "saga", .event = "completed" };
	struct store_outbox m = { .topic = "t", .value = "{}", .created_at = 1 };
	struct store_saga s;
	int64_t seq;

	util_ulid_at(1000, old1);
	old1[25] = '1';
	util_ulid_at(2000, old2);
	old2[25] = '2';
	util_ulid_at(2500, oldf);
	oldf[25] = '3';
	util_ulid_at(2600, late);
	late[25] = '4';
	util_ulid_at(9000, now1);
	now1[25] = '5';
	s = saga(old1, "f", "completed");
	s.updated_at = 1500;
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	s = saga(old2, "f", "compensated");
	s.updated_at = 2500;
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	s = saga(oldf, "f", "failed");
	s.updated_at = 2600;
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	s = saga(late, "f", "completed");
	s.updated_at = 9500;                /* created long ago, ended recently: kept */
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	s = saga(now1, "f", "completed");
	s.updated_at = 9100;
	assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	/* An old completed child of the failed saga: its parent may still compensate it. */
	{
		char kid[27];
		util_ulid_at(1200, kid);
		kid[25] = '6';
		s = saga(kid, "g", "completed");
		s.updated_at = 1300;
		s.parent_id = oldf;
		s.parent_step = 0;
		assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	}
	/* Children of a purged saga (old1) and of a kept one (now1): foreign keys are off, the
	 * purge deletes the first ones itself and must leave the others. */
	for (int k = 0; k < 2; k++) {
		struct store_timer t = { .saga_id = k ? now1 : old1, .kind = "retry", .step = 0,
					 .due_at = 99999 };

		step.saga_id = h.saga_id = k ? now1 : old1;
		assert_int_equal(store_step_put(st, &step), 0);
		assert_int_equal(store_history_append(st, &h), 0);
		assert_int_equal(store_key_put(st, step.saga_id, "orderId", "o-1"), 0);
		assert_int_equal(store_timer_put(st, &t), 0);
	}
	assert_int_equal(store_outbox_put(st, &m, &seq), 0);
	assert_int_equal(store_outbox_sent(st, seq, 1500), 0);
	assert_int_equal(store_outbox_put(st, &m, NULL), 0); /* unsent: never purged */
	assert_int_equal(store_commit(st), 0);

	/* In batches: one at a time. The child (ended at 1300) is read first and kept. */
	assert_int_equal(purge_pass(st, 5000, 1, 0, 1, true).messages, 1);
	assert_int_equal(purge_pass(st, 5000, 1, 1, -1, true).messages, 0);
	purge_pass(st, 5000, 1, 1, -1, true);
	/* The end of the sweep: nothing else ended before the cutoff. */
	purge_pass(st, 5000, 1, 0, 0, false);
	/* The next sweep starts from the oldest again: the child is read (and kept) again. */
	purge_pass(st, 5000, 100, 0, 1, false);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_saga_get(st, old1, &s), SAGAD_ENOENT);
	assert_int_equal(store_saga_get(st, old2, &s), SAGAD_ENOENT);
	assert_int_equal(store_saga_get(st, oldf, &s), 0);
	store_saga_clear(&s);
	assert_int_equal(store_saga_get(st, late, &s), 0);
	store_saga_clear(&s);
	assert_int_equal(store_saga_get(st, now1, &s), 0);
	store_saga_clear(&s);
	assert_int_equal(raw_int("SELECT count(*) FROM sagas WHERE parent_id IS NOT NULL"), 1);
	snprintf(q, sizeof(q), "SELECT (SELECT count(*) FROM saga_steps WHERE saga_id = '%s') + "
		 "(SELECT count(*) FROM saga_history WHERE saga_id = '%s') + (SELECT count(*) FROM "
		 "saga_keys WHERE saga_id = '%s') + (SELECT count(*) FROM timers WHERE saga_id = "
		 "'%s')", now1, now1, now1, now1);
	assert_int_equal(raw_int(q), 4);
	assert_int_equal(raw_int("SELECT count(*) FROM saga_steps"), 1);
	assert_int_equal(raw_int("SELECT count(*) FROM saga_history"), 1);
	assert_int_equal(raw_int("SELECT count(*) FROM saga_keys"), 1);
	assert_int_equal(raw_int("SELECT count(*) FROM timers"), 1);
	assert_int_equal(raw_int("SELECT count(*) FROM outbox"), 1);
	store_close(st);
}

/* The purge keeps the newest outbox row even when it is sent and old: otherwise SQLite would
 * number the next row from 1 again, below the relay's cursor and the pipeline's durable mark,
 * and that message would never be produced. */
static void test_purge_keeps_newest_outbox_row(void **state)
{
	struct store *st = open_store();
	struct store_outbox m = { .topic = "t", .value = "{}", .created_at = 1 };
	struct store_purge_result r;
	int64_t seq[3], next;

	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_outbox_put(st, &m, &seq[i]), 0);
		assert_int_equal(store_outbox_sent(st, seq[i], 10), 0);
	}
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_purge(st, 5000, 100, &r), 0);
	assert_int_equal(r.messages, 2);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(raw_int("SELECT count(*) FROM outbox"), 1);
	assert_int_equal(raw_int("SELECT max(seq) FROM outbox"), seq[2]);
	assert_int_equal(store_outbox_put(st, &m, &next), 0);
	assert_true(next > seq[2]);
	assert_int_equal(store_commit(st), 0);
	store_close(st);
}

/* A JSON string of n bytes, quotes included ("xxx...x"): big enough to spill SQLite's page
 * cache. The caller frees it. */
static char *big_json_string(size_t n)
{
	char *big = malloc(n + 1);

	assert_non_null(big);
	memset(big, 'x', n);
	big[0] = big[n - 1] = '"';
	big[n] = '\0';
	return big;
}

/* The grouped transaction has more than one writer. A write that fails while SQLite spills
 * its page cache (a full disk) makes SQLite roll back the whole transaction, whoever's
 * statement it was: here the purge's (deleting 64 sagas of 128 KiB frees 4,096 overflow
 * pages, each zeroed with Debian's SQLITE_SECURE_DELETE: far more than the 2 MB cache holds),
 * after the engine's insert of a new saga. That insert is gone: the store must say so
 * (pending, and the commit fails) instead of finding nothing to commit and succeeding, which
 * let the engine answer and dispatch for a saga that was never stored. */
static void test_lost_transaction(void **state)
{
	enum { N = 64, BIG = 128 * 1024 };
	struct store *st;
	struct store_purge_result r;
	struct store_saga s, got;
	char *big = big_json_string(BIG), id[27];

	assert_true(faultvfs);
	st = open_store();
	for (int i = 0; i < N; i++) {
		util_ulid_at(1000 + i, id);
		s = saga(id, "f", "completed");
		s.input = big;
		s.updated_at = 2000 + i;
		assert_int_equal(store_saga_insert(st, &s, NULL), 0);
	}
	assert_int_equal(store_commit(st), 0);

	insert(st, ID("01J9L", 1), "apply", "running");   /* the engine's write of the turn */
	/* (A batch larger than the backlog: the scan reaches the cutoff, so the next call reads
	 * from the oldest again.) */
	fault_set("full");
	assert_int_equal(store_purge(st, 5000, N + 1, &r), SAGAD_EFULL);
	fault_set(NULL);
	assert_true(store_pending(st));
	/* No write starts a new transaction that the commit would then report as done. */
	s = saga(ID("01J9L", 2), "apply", "running");
	assert_int_equal(store_saga_insert(st, &s, NULL), SAGAD_EFULL);
	assert_int_equal(store_commit(st), SAGAD_EFULL);
	assert_false(store_pending(st));
	assert_int_equal(store_saga_get(st, ID("01J9L", 1), &got), SAGAD_ENOENT);
	assert_int_equal(store_saga_get(st, ID("01J9L", 2), &got), SAGAD_ENOENT);
	assert_int_equal(raw_int("SELECT count(*) FROM sagas"), N);   /* nothing purged either */

	/* The commit's error cleared the state: the store works again. */
	insert(st, ID("01J9L", 3), "apply", "running");
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_saga_get(st, ID("01J9L", 3), &got), 0);
	store_saga_clear(&got);
	/* So does a rollback (what the paused engine does). */
	insert(st, ID("01J9L", 4), "apply", "running");
	fault_set("full");
	assert_int_equal(store_purge(st, 5000, N + 1, &r), SAGAD_EFULL);
	fault_set(NULL);
	assert_true(store_pending(st));
	store_rollback(st);
	assert_false(store_pending(st));
	insert(st, ID("01J9L", 5), "apply", "running");
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_saga_get(st, ID("01J9L", 4), &got), SAGAD_ENOENT);
	assert_int_equal(store_saga_get(st, ID("01J9L", 5), &got), 0);
	store_saga_clear(&got);
	assert_int_equal(raw_int("SELECT count(*) FROM sagas"), N + 2);
	store_close(st);
	free(big);
}

/* n finished sagas that ended long ago, oldest first (ids[i] ended at 2000 + i), each with a
 * step, a history row, a key and a timer, committed. input: their input (NULL: "{}"). */
static void purge_backlog(struct store *st, int n, char (*ids)[27], const char *input)
{
	for (int i = 0; i < n; i++) {
		struct store_saga s;
		struct store_step step = { .saga_id = ids[i], .idx = 0, .name = "a",
					   .state = "succeeded", .updated_at = 1 };
		struct store_history h = { .saga_id = ids[i], .step = -1, .phase = "saga",
					   .event = "completed" };
		struct store_timer t = { .saga_id = ids[i], .kind = "retry", .step = 0,
					 .due_at = 99999 };

		util_ulid_at(1000 + i, ids[i]);
		s = saga(ids[i], "f", i % 2 ? "compensated" : "completed");
		s.updated_at = 2000 + i;
		if (input != NULL)
			s.input = (char *)input;
		assert_int_equal(store_saga_insert(st, &s, NULL), 0);
		assert_int_equal(store_step_put(st, &step), 0);
		assert_int_equal(store_history_append(st, &h), 0);
		assert_int_equal(store_key_put(st, ids[i], "orderId", "o-1"), 0);
		assert_int_equal(store_timer_put(st, &t), 0);
	}
	assert_int_equal(store_commit(st), 0);
}

/* Saga id's rows in the store, on a separate connection: its own (0 or 1) plus its steps,
 * history, keys and timers (0 or 1 each here), as 10000 * saga + the others' sum. Whole: 10004;
 * purged: 0. */
static int64_t saga_rows(const char *id)
{
	char q[512];

	snprintf(q, sizeof(q), "SELECT 10000 * (SELECT count(*) FROM sagas WHERE id = '%.26s') + "
		 "(SELECT count(*) FROM saga_steps WHERE saga_id = '%.26s') + (SELECT count(*) FROM "
		 "saga_history WHERE saga_id = '%.26s') + (SELECT count(*) FROM saga_keys WHERE "
		 "saga_id = '%.26s') + (SELECT count(*) FROM timers WHERE saga_id = '%.26s')",
		 id, id, id, id, id);
	return raw_int(q);
}

/* A purge batch is all or nothing. A statement-level error in one of its deletes (here a
 * trigger's RAISE(ABORT) on the third saga's own row, after its steps, history, keys and
 * timers and the two sagas before it went) leaves the grouped transaction open, and used to
 * leave the first two sagas deleted and the third half-deleted, to be committed with the
 * engine's writes of the turn. Now the batch is rolled back to its savepoint: every saga of it
 * is whole, the engine's write of the turn commits, and the cursor stays, so the next pass
 * purges the same sagas (it used to go on after them). */
static void test_purge_batch_atomic(void **state)
{
	enum { N = 6, B = 3 };
	struct store *st = open_store();
	struct store_purge_result r;
	struct store_saga got;
	char ids[N][27], q[256];

	purge_backlog(st, N, ids, NULL);
	snprintf(q, sizeof(q), "CREATE TRIGGER purge_fault BEFORE DELETE ON sagas WHEN old.id = "
		 "'%.26s' BEGIN SELECT RAISE(ABORT, 'injected'); END", ids[2]);
	raw_exec(q);

	insert(st, ID("01J9L", 1), "apply", "running");   /* the engine's write of the turn */
	r.sagas = -1;
	assert_int_equal(store_purge(st, 5000, B, &r), SAGAD_ESTORE);
	assert_int_equal(r.sagas, 0);
	assert_int_equal(r.more, false);
	assert_true(store_pending(st));
	assert_int_equal(store_commit(st), 0);             /* the transaction survived */
	assert_int_equal(store_saga_get(st, ID("01J9L", 1), &got), 0);
	store_saga_clear(&got);
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), 10004);

	raw_exec("DROP TRIGGER purge_fault");
	/* The same batch again: the cursor did not move past it. */
	purge_pass(st, 5000, B, B, B, true);
	assert_int_equal(store_commit(st), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), i < B ? 0 : 10004);
	purge_pass(st, 5000, B, B, B, true);
	purge_pass(st, 5000, B, 0, 0, false);
	assert_int_equal(store_commit(st), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), 0);
	assert_int_equal(raw_int("SELECT count(*) FROM sagas"), 1);
	store_close(st);
}

/* A batch whose deletes fail on a full disk (faultvfs "full"): SQLite rolls back the whole
 * transaction (test_lost_transaction), so nothing of the batch is gone; the cursor stays, so
 * after the engine's rollback the next pass purges the same batch, the oldest sagas (the cursor
 * used to move past them: a sweep went on from the batch after, leaving these for the next). */
static void test_purge_batch_lost(void **state)
{
	enum { N = 32, B = 16, BIG = 128 * 1024 };
	struct store *st;
	struct store_purge_result r;
	char ids[N][27], *big = big_json_string(BIG);

	assert_true(faultvfs);
	st = open_store();
	purge_backlog(st, N, ids, big);

	fault_set("full");
	assert_int_equal(store_purge(st, 5000, B, &r), SAGAD_EFULL);
	fault_set(NULL);
	assert_int_equal(r.sagas, 0);
	assert_true(store_pending(st));
	store_rollback(st);                          /* what the paused engine does */
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), 10004);

	purge_pass(st, 5000, B, B, B, true);
	assert_int_equal(store_commit(st), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), i < B ? 0 : 10004);
	store_close(st);
	free(big);
}


/* A purge batch of sagas of a realistic size (4 steps, 10 history rows with a request and a
 * response) in its savepoint: the savepoint's sub-journal holds every page the batch changes,
 * which passes SQLite's 64 KiB in-memory limit (SQLITE_STMTJRNL_SPILL) and spills to a file
 * in the temporary directory, unless temp_store is MEMORY. Without a writable temporary
 * directory (a read-only root file system, no TMPDIR) every such batch fails with
 * SQLITE_IOERR_GETTEMPPATH, which rolls back the engine's whole transaction. The test watches
 * sqlite3_temp_directory (checked first) for a file created there (it is unlinked at once). */
static void test_purge_no_temp_file(void **state)
{
	enum { N = 64 };
	struct store *st = open_store();
	struct store_purge_result r;
	char ids[N][27], tmp[128], body[301], buf[4096];
	int fd, wd, created = 0;
	ssize_t len;

	memset(body, 'x', 300);
	body[0] = body[299] = '"';
	body[300] = '\0';
	for (int i = 0; i < N; i++) {
		struct store_saga s;

		util_ulid_at(1000 + i, ids[i]);
		s = saga(ids[i], "f", "completed");
		s.updated_at = 2000 + i;
		assert_int_equal(store_saga_insert(st, &s, NULL), 0);
		for (int k = 0; k < 4; k++) {
			struct store_step step = { .saga_id = ids[i], .idx = k, .name = "a",
						   .state = "succeeded", .response = body,
						   .updated_at = 1 };
			assert_int_equal(store_step_put(st, &step), 0);
		}
		for (int k = 0; k < 10; k++) {
			struct store_history h = { .saga_id = ids[i], .step = k % 4, .phase = "action",
						   .event = "succeeded", .request = body,
						   .response = body };
			assert_int_equal(store_history_append(st, &h), 0);
		}
	}
	assert_int_equal(store_commit(st), 0);

	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	assert_int_equal(mkdir(tmp, 0700), 0);
	sqlite3_temp_directory = sqlite3_mprintf("%s", tmp);
	fd = inotify_init1(IN_NONBLOCK);
	assert_true(fd >= 0);
	wd = inotify_add_watch(fd, tmp, IN_CREATE);
	assert_true(wd >= 0);

	if (getenv("TEST_STORE_NO_TEMPDIR") != NULL) {
		/* Run where no temporary directory is writable (unshare -m, read-only mounts):
		 * shows what a user sees. */
		sqlite3_free(sqlite3_temp_directory);
		sqlite3_temp_directory = NULL;
	}
	insert(st, ID("01J9L", 1), "apply", "running");   /* the engine's write of the turn */
	assert_int_equal(store_purge(st, 5000, N, &r), 0);
	assert_int_equal(r.sagas, N);
	assert_int_equal(store_commit(st), 0);
	while ((len = read(fd, buf, sizeof(buf))) > 0)
		for (char *p = buf; p < buf + len;
		     p += sizeof(struct inotify_event) + ((struct inotify_event *)p)->len)
			created++;
	close(fd);
	sqlite3_free(sqlite3_temp_directory);
	sqlite3_temp_directory = NULL;
	rmdir(tmp);
	store_close(st);
	assert_int_equal(created, 0);
}

/* Two batches of one pass in one grouped transaction: the first is released (the cursor moves
 * past it), the second fails on a full disk and SQLite rolls back the whole transaction, the
 * first batch's deletes with it. The rollback puts the cursor back where the last commit left
 * it, so the next pass purges the first batch again, the oldest sagas (without that it went on
 * from the batch after, and the first batch waited for the sweep to start again). */
static void test_purge_pass_lost(void **state)
{
	enum { N = 48, B = 16, BIG = 128 * 1024 };
	struct store *st;
	struct store_purge_result r;
	char ids[N][27], *big = big_json_string(BIG);

	assert_true(faultvfs);
	st = open_store();
	purge_backlog(st, N, ids, big);

	purge_pass(st, 5000, B, B, B, true);          /* batch 1, released */
	fault_set("full");
	assert_int_equal(store_purge(st, 5000, B, &r), SAGAD_EFULL);   /* batch 2: all lost */
	fault_set(NULL);
	assert_true(store_pending(st));
	store_rollback(st);                          /* what the paused engine does */
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), 10004);

	purge_pass(st, 5000, B, B, B, true);
	assert_int_equal(store_commit(st), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(saga_rows(ids[i]), i < B ? 0 : 10004);   /* the oldest first */
	store_close(st);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_reopen),
		T(test_refuse_newer_schema),
		T(test_pragmas),
		T(test_not_a_database),
		T(test_saga_roundtrip),
		T(test_saga_update),
		T(test_scan_saga),
		T(test_idempotency_conflict),
		T(test_parent_unique),
		T(test_fencing),
		T(test_busy),
		T(test_busy_fast_and_probe),
		T(test_commit_rollback),
		T(test_steps),
		T(test_history),
		T(test_timers),
		T(test_outbox),
		T(test_pipeline),
		T(test_wal_one_write_per_commit),
		T(test_read_transaction),
		T(test_purge),
		T(test_purge_keeps_newest_outbox_row),
		T(test_lost_transaction),
		T(test_purge_batch_atomic),
		T(test_purge_batch_lost),
		T(test_purge_no_temp_file),
		T(test_purge_pass_lost),
		T(test_purge_plans),
		T(test_flows),
		T(test_list),
		T(test_keys),
		T(test_each_unfinished),
		T(test_each_unfinished_batches),
	};

	int rc;

	fault_load("test-store");   /* before the first store_open() */
	cmocka_set_message_output(CM_OUTPUT_TAP);
	rc = cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
	unlink(fault_ctl);
	return rc;
}
