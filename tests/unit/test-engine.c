/* test-engine.c: the saga engine's transitions, run for real: the engine, a SQLite file, the
 * libcurl client and an in-process participant (httpd) on one loop. Each test scripts the
 * participant's answers per path and checks the saga's states, attempts, the order of the
 * calls the participant saw, and what recovery does with the store a "crashed" engine left. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "answer.h"
#include "dsl.h"
#include "engine.h"
#include "error.h"
#include "fault.h"
#include "flow.h"
#include "http.h"
#include "httpd.h"
#include "log.h"
#include "secret.h"
#include "store.h"
#include "util.h"
#include "engine_internal.h"

/* ---- a scripted participant ---------------------------------------------------------- */

struct rule {
	const char *method, *path;    /* exact match */
	int statuses[8];              /* answers in order; the last one repeats; 0 = end */
	int delay_ms;
	const char *body;             /* default {"id":7} */
	int seen;
};

struct fake_participant {
	struct rule rules[16];
	int n_rules;
	char calls[64][128];          /* "POST /a key" in arrival order */
	char saga_headers[64][160];   /* "X-Saga-Id X-Saga-Step X-Saga-Attempt traceparent" */
	int n_calls;
};

static struct fake_participant P;

struct delayed {
	uv_timer_t timer;
	struct httpd_req *req;
	int status;
	const char *body;
};

static void on_delayed_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_delay(uv_timer_t *t)
{
	struct delayed *d = t->data;

	if (d->req != NULL)
		httpd_respond(d->req, d->status, "application/json", d->body, strlen(d->body), NULL);
	uv_close((uv_handle_t *)t, on_delayed_closed);
}

static void on_req_abort(struct httpd_req *req, void *arg)
{
	struct delayed *d = arg;

	d->req = NULL;
}

static void participant_handle(struct httpd_req *req, void *arg)
{
	const char *m = httpd_req_method(req), *p = httpd_req_path(req);
	const char *key = httpd_req_header(req, "Idempotency-Key");

	if (P.n_calls < 64) {
		const char *sid = httpd_req_header(req, "X-Saga-Id");
		const char *step = httpd_req_header(req, "X-Saga-Step");
		const char *attempt = httpd_req_header(req, "X-Saga-Attempt");
		const char *tp = httpd_req_header(req, "traceparent");

		snprintf(P.saga_headers[P.n_calls], 160, "%s %s %s %s", sid ? sid : "-",
			 step ? step : "-", attempt ? attempt : "-", tp ? tp : "-");
		snprintf(P.calls[P.n_calls++], 128, "%s %s %s", m, p, key ? key : "-");
	}
	for (int i = 0; i < P.n_rules; i++) {
		struct rule *r = &P.rules[i];
		int k, status;
		const char *body;

		if (strcmp(r->method, m) != 0 || strcmp(r->path, p) != 0)
			continue;
		k = r->seen++;
		while (k > 0 && (k >= 8 || r->statuses[k] == 0))
			k--;
		status = r->statuses[k] ? r->statuses[k] : 200;
		body = r->body ? r->body : "{\"id\":7}";
		if (r->delay_ms > 0) {
			struct delayed *d = xcalloc(1, sizeof(*d));
			d->req = req;
			d->status = status;
			d->body = body;
			uv_timer_init(uv_default_loop(), &d->timer);
			d->timer.data = d;
			httpd_req_on_abort(req, on_req_abort, d);
			uv_timer_start(&d->timer, on_delay, (uint64_t)r->delay_ms, 0);
			return;
		}
		httpd_respond(req, status, "application/json", body, strlen(body), NULL);
		return;
	}
	httpd_respond(req, 200, "application/json", "{\"id\":7}", 8, NULL);
}

static void rule(const char *method, const char *path, int delay_ms, const char *body, ...)
{
	struct rule *r = &P.rules[P.n_rules++];
	va_list ap;
	int s, n = 0;

	memset(r, 0, sizeof(*r));
	r->method = method;
	r->path = path;
	r->delay_ms = delay_ms;
	r->body = body;
	va_start(ap, body);
	while ((s = va_arg(ap, int)) != 0 && n < 8)
		r->statuses[n++] = s;
	va_end(ap);
}

/* ---- fixture ------------------------------------------------------------------------ */

struct fixture {
	char dir[64], db[96];
	struct httpd *httpd;
	struct http_client *http;
	struct store *store;
	struct engine *engine;
	struct flow_set flows;
	uv_prepare_t flush;
	int port;
	bool done;
	enum engine_wait_result result;
};

static struct fixture F;

static void on_flush(uv_prepare_t *h)
{
	assert_int_equal(engine_flush(F.engine), 0);
}

static const char *flow_text(const char *tmpl)
{
	static char buf[8192];
	char url[64];
	const char *p;
	size_t o = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", F.port);
	for (p = tmpl; *p && o + 64 < sizeof(buf); p++) {
		if (strncmp(p, "URL", 3) == 0) {
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", url);
			p += 2;
		} else {
			buf[o++] = *p;
		}
	}
	buf[o] = '\0';
	return buf;
}

static void add_flow(const char *yaml)
{
	struct dsl_errors errs = { 0 };
	struct flow *f = NULL;
	const char *text = flow_text(yaml);
	int rc = dsl_load_buffer("test.yaml", text, strlen(text), NULL, &f, &errs);

	if (rc != 0) {
		char *e = dsl_errors_format(&errs);
		print_error("%s", e);
		free(e);
	}
	assert_int_equal(rc, 0);
	dsl_errors_close(&errs);
	assert_int_equal(flow_set_add(&F.flows, f), 0);
	store_flow_put(F.store, f->name, f->version, text);
	flow_unref(f);
}

static void engine_up(void)
{
	struct engine_options eo = { .loop = uv_default_loop(), .store = F.store, .http = F.http,
				     .flows = &F.flows };
	assert_int_equal(engine_new(&eo, &F.engine), 0);
}

static int setup(void **state)
{
	struct httpd_options ho = { .address = "127.0.0.1", .port = 0, .handler = participant_handle };
	struct http_client_options co = { 0 };
	struct store_options so = { 0 };
	char err[256];

	memset(&P, 0, sizeof(P));
	memset(&F, 0, sizeof(F));
	log_min_level = LOG_WARN;
	snprintf(F.dir, sizeof(F.dir), "/tmp/test-engine.XXXXXX");
	assert_non_null(mkdtemp(F.dir));
	snprintf(F.db, sizeof(F.db), "%s/sagad.db", F.dir);
	assert_int_equal(httpd_start(uv_default_loop(), &ho, &F.httpd, err, sizeof(err)), 0);
	F.port = httpd_port(F.httpd);
	assert_int_equal(http_client_new(uv_default_loop(), &co, &F.http), 0);
	so.path = F.db;
	assert_int_equal(store_open(&so, &F.store, err, sizeof(err)), 0);
	flow_set_init(&F.flows);
	engine_up();
	uv_prepare_init(uv_default_loop(), &F.flush);
	uv_prepare_start(&F.flush, on_flush);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	uv_prepare_stop(&F.flush);
	uv_close((uv_handle_t *)&F.flush, NULL);
	engine_free(F.engine);
	http_client_free(F.http);
	httpd_free(F.httpd);
	store_close(F.store);
	flow_set_close(&F.flows);
	uv_run(uv_default_loop(), UV_RUN_DEFAULT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", F.dir);
	(void)system(cmd);
	return 0;
}

static void on_done(const char *id, enum engine_wait_result res, void *arg)
{
	F.done = true;
	F.result = res;
	uv_stop(uv_default_loop());
}

static void run_until(const char *id, enum engine_wait_target t, const char *step)
{
	int rc;

	F.done = false;
	assert_non_null(engine_wait(F.engine, id, t, step, 20000, on_done, NULL, &rc));
	while (!F.done)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
}

static void start(const char *flow, const char *input, char id[27])
{
	json_t *in = json_loads(input, 0, NULL);
	char err[256];
	bool existed;

	assert_non_null(in);
	assert_int_equal(engine_start(F.engine, flow, in, NULL, id, &existed, err, sizeof(err)), 0);
	json_decref(in);
}

static void assert_status(const char *id, const char *status)
{
	struct store_saga s;

	assert_int_equal(store_saga_get(F.store, id, &s), 0);
	assert_string_equal(s.status, status);
	store_saga_clear(&s);
}

struct steps_seen {
	char states[8][32];
	int attempts[8];
};

static int on_step(const struct store_step *st, void *arg)
{
	struct steps_seen *ss = arg;

	if (st->idx < 8) {
		snprintf(ss->states[st->idx], 32, "%s", st->state);
		ss->attempts[st->idx] = st->attempt;
	}
	return 0;
}

static struct steps_seen steps_of(const char *id)
{
	struct steps_seen ss;

	memset(&ss, 0, sizeof(ss));
	store_each_step(F.store, id, on_step, &ss);
	return ss;
}

/* The participant's calls, as "METHOD PATH" joined by ", " (keys left out). */
static const char *calls(void)
{
	static char buf[2048];
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < P.n_calls; i++) {
		char m[16], p[96];
		sscanf(P.calls[i], "%15s %95s", m, p);
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s %s", i ? ", " : "", m, p);
	}
	return buf;
}

static const char *THREE =
	"name: three\nversion: 1\n"
	"participants:\n  p: { url: URL, timeout: 2s }\n"
	"steps:\n"
	"  - name: a\n    participant: p\n"
	"    action: { method: POST, path: /a }\n"
	"    compensation: { method: POST, path: /a/undo }\n"
	"    retry: { max_attempts: 3, initial_backoff: 10ms, jitter: 0 }\n"
	"  - name: b\n    participant: p\n"
	"    action: { method: POST, path: /b }\n"
	"    compensation: { method: POST, path: \"/b/undo/${steps.b.response.body.id}\",\n"
	"                    retry: { max_attempts: 3, initial_backoff: 10ms, jitter: 0 } }\n"
	"    retry: { max_attempts: 3, initial_backoff: 10ms, jitter: 0 }\n"
	"  - name: c\n    participant: p\n"
	"    action: { method: POST, path: /c }\n"
	"    compensation: { method: POST, path: /c/undo }\n"
	"    timeout: 200ms\n"
	"    retry: { max_attempts: 3, initial_backoff: 10ms, jitter: 0, on: [connect, 5xx] }\n";

/* ---- tests -------------------------------------------------------------------------- */

static void test_happy_path(void **state)
{
	char id[27];
	struct steps_seen ss;

	add_flow(THREE);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_int_equal(F.result, ENGINE_WAIT_REACHED);
	assert_status(id, "completed");
	ss = steps_of(id);
	assert_string_equal(ss.states[0], "succeeded");
	assert_string_equal(ss.states[2], "succeeded");
	assert_string_equal(calls(), "POST /a, POST /b, POST /c");
	/* The idempotency key names the saga, the step and the phase. */
	assert_non_null(strstr(P.calls[1], ":b:action"));
	assert_non_null(strstr(P.calls[1], id));
}

static void test_failure_compensates_in_reverse(void **state)
{
	char id[27];
	struct steps_seen ss;

	add_flow(THREE);
	rule("POST", "/c", 0, NULL, 400, 0);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	ss = steps_of(id);
	assert_string_equal(ss.states[2], "failed");
	assert_int_equal(ss.attempts[2], 1); /* a 400 is not retried */
	assert_string_equal(ss.states[1], "compensated");
	assert_string_equal(ss.states[0], "compensated");
	/* b's compensation path uses b's response: the id 7 it returned. */
	assert_string_equal(calls(), "POST /a, POST /b, POST /c, POST /b/undo/7, POST /a/undo");
}

static void test_retry_then_success(void **state)
{
	char id[27];
	struct steps_seen ss;

	add_flow(THREE);
	rule("POST", "/b", 0, NULL, 503, 503, 200, 0);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "completed");
	ss = steps_of(id);
	assert_int_equal(ss.attempts[1], 3);
	assert_string_equal(calls(), "POST /a, POST /b, POST /b, POST /b, POST /c");
	/* Every attempt of one step carries the same idempotency key. */
	assert_string_equal(strchr(P.calls[1], ' ') + 3, strchr(P.calls[3], ' ') + 3);
	/* The saga's headers: its id, the step, the attempt, and a W3C traceparent whose trace
	 * id is the saga's (the same on every call) and whose span id is new on each. */
	for (int i = 0; i < 5; i++) {
		char sid[32], step[16], tp[64], want[64];
		int attempt = 0, n = 0;
		const char *x = "0123456789abcdef";

		assert_int_equal(sscanf(P.saga_headers[i], "%31s %15s %d %63s%n", sid, step, &attempt,
					tp, &n), 4);
		assert_string_equal(sid, id);
		assert_string_equal(step, i == 0 ? "a" : i == 4 ? "c" : "b");
		assert_int_equal(attempt, i == 0 || i == 4 ? 1 : i);
		assert_int_equal(strlen(tp), 55);
		assert_true(strncmp(tp, "00-", 3) == 0 && tp[35] == '-' && strcmp(tp + 52, "-01") == 0);
		assert_int_equal(strspn(tp + 3, x), 32);
		assert_int_equal(strspn(tp + 36, x), 16);
		{   /* the trace id: the low 128 bits of the saga id's 130 */
			unsigned __int128 v = 0;
			const char *a = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

			for (int k = 0; k < 26; k++)
				v = (v << 5) | (unsigned)(strchr(a, id[k]) - a);
			snprintf(want, sizeof(want), "00-%016llx%016llx-",
				 (unsigned long long)(uint64_t)(v >> 64),
				 (unsigned long long)(uint64_t)v);
		}
		assert_int_equal(strncmp(tp, want, 36), 0);
		if (i > 0)
			assert_string_not_equal(tp + 36, strrchr(P.saga_headers[i - 1], ' ') + 37);
	}
}

static void test_retries_exhausted_compensate(void **state)
{
	char id[27];

	add_flow(THREE);
	rule("POST", "/b", 0, NULL, 500, 0);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	assert_string_equal(calls(), "POST /a, POST /b, POST /b, POST /b, POST /a/undo");
}

static void test_timeout_compensates_the_unknown_step(void **state)
{
	char id[27];
	struct steps_seen ss;

	add_flow(THREE);
	rule("POST", "/c", 600, NULL, 200, 0); /* slower than its 200ms timeout, not retried */
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	ss = steps_of(id);
	assert_string_equal(ss.states[2], "compensated"); /* outcome unknown: undone too */
	assert_string_equal(calls(), "POST /a, POST /b, POST /c, POST /c/undo, POST /b/undo/7, POST /a/undo");
}

static void test_compensation_exhausted_fails_then_retry(void **state)
{
	char id[27], err[256];
	struct steps_seen ss;

	add_flow(THREE);
	rule("POST", "/c", 0, NULL, 409, 0);
	rule("POST", "/b/undo/7", 0, NULL, 500, 500, 500, 200, 0);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "failed");
	ss = steps_of(id);
	assert_string_equal(ss.states[1], "compensation_failed");
	assert_string_equal(ss.states[0], "succeeded"); /* not undone before b is */
	/* An operator retries: b's compensation gets new attempts, then a is undone. */
	assert_int_equal(engine_retry(F.engine, id, err, sizeof(err)), 0);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	assert_string_equal(calls(), "POST /a, POST /b, POST /c, POST /b/undo/7, POST /b/undo/7, "
			    "POST /b/undo/7, POST /b/undo/7, POST /a/undo");
}

static void test_cancel_running_saga(void **state)
{
	char id[27], err[256];

	add_flow(THREE);
	rule("POST", "/b", 300, NULL, 200, 0);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_STEP, "a");
	assert_int_equal(engine_cancel(F.engine, id, err, sizeof(err)), 0);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	/* b was in flight when cancelled: it succeeded, so it is undone; c never ran. */
	assert_string_equal(calls(), "POST /a, POST /b, POST /b/undo/7, POST /a/undo");
	assert_int_equal(engine_cancel(F.engine, id, err, sizeof(err)), SAGAD_ESTATE);
}

static void test_idempotent_start(void **state)
{
	char id1[27], id2[27], err[256];
	json_t *in = json_object();
	bool existed;

	add_flow(THREE);
	assert_int_equal(engine_start(F.engine, "three", in, "k-1", id1, &existed, err, sizeof(err)), 0);
	assert_false(existed);
	assert_int_equal(engine_start(F.engine, "three", in, "k-1", id2, &existed, err, sizeof(err)), 0);
	assert_true(existed);
	assert_string_equal(id1, id2);
	json_decref(in);
	run_until(id1, ENGINE_WAIT_COMPLETION, NULL);
	assert_string_equal(calls(), "POST /a, POST /b, POST /c");
}

static void test_input_checked(void **state)
{
	char id[27], err[256];
	json_t *in = json_pack("{s:i}", "classId", 5);
	bool existed;

	add_flow("name: typed\nversion: 1\ninput:\n  classId: { type: string, required: true }\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n    action: { method: POST, path: /a }\n");
	assert_int_equal(engine_start(F.engine, "typed", in, NULL, id, &existed, err, sizeof(err)),
			 SAGAD_EINPUT);
	assert_non_null(strstr(err, "classId"));
	assert_int_equal(engine_start(F.engine, "nope", in, NULL, id, &existed, err, sizeof(err)),
			 SAGAD_ENOFLOW);
	json_decref(in);
}

/* A crash after the dispatch was committed: a new engine on the same store re-sends the
 * call with the same idempotency key and finishes the saga. */
static void test_recovery_redispatches(void **state)
{
	char id[27];
	struct steps_seen ss;
	int rc;

	add_flow(THREE);
	rule("POST", "/b", 400, NULL, 200, 0);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_STEP, "a");
	/* b is dispatched and in flight; commit and "crash" (drop the engine). */
	while (P.n_calls < 2)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
	assert_int_equal(engine_flush(F.engine), 0);
	engine_free(F.engine);
	engine_up();
	assert_int_equal(engine_recover(F.engine), 0);
	F.done = false;
	assert_non_null(engine_wait(F.engine, id, ENGINE_WAIT_COMPLETION, NULL, 20000, on_done, NULL, &rc));
	while (!F.done)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
	assert_status(id, "completed");
	ss = steps_of(id);
	assert_string_equal(ss.states[1], "succeeded");
	/* b was sent twice, under one key. */
	assert_int_equal(P.rules[0].seen, 2);
	assert_string_equal(strchr(P.calls[1], ' ') + 3, strchr(P.calls[2], ' ') + 3);
}

static void test_subflow_compensated_by_parent(void **state)
{
	char id[27];

	add_flow("name: child\nversion: 1\ninput:\n  n: string\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: x\n    participant: p\n"
		 "    action: { method: POST, path: \"/x/${input.n}\" }\n"
		 "    compensation: { method: POST, path: /x/undo }\n");
	add_flow("name: parent\nversion: 1\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n"
		 "  - name: kid\n    flow: child\n    input: { n: \"${saga.flow}\" }\n"
		 "  - name: last\n    participant: p\n    action: { method: POST, path: /last }\n");
	rule("POST", "/last", 0, NULL, 422, 0);
	start("parent", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	assert_string_equal(calls(), "POST /x/parent, POST /last, POST /x/undo");
}

static void test_deadline_compensates(void **state)
{
	char id[27];

	add_flow("name: slow\nversion: 1\ndeadline: 150ms\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n    action: { method: POST, path: /a }\n"
		 "    compensation: { method: POST, path: /a/undo }\n"
		 "  - name: b\n    participant: p\n    action: { method: POST, path: /b }\n");
	rule("POST", "/b", 400, NULL, 200, 0);
	start("slow", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	/* b was in flight at the deadline; it answered success later, so it has no undo here
	 * (no compensation declared) and a is undone. */
	assert_string_equal(calls(), "POST /a, POST /b, POST /a/undo");
}

static int count_timer(const struct store_timer *t, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

/* A saga with a deadline stores its timer while it runs and deletes it when it ends; a saga
 * without one writes no timer row (and skips the delete: engine__timer_cancel()). */
static void test_deadline_row_deleted_at_end(void **state)
{
	char id[27];
	int n = 0;

	add_flow("name: dl\nversion: 1\ndeadline: 30s\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n    action: { method: POST, path: /a }\n");
	start("dl", "{}", id);
	assert_int_equal(engine_flush(F.engine), 0);
	assert_int_equal(store_each_timer(F.store, count_timer, &n), 0);
	assert_int_equal(n, 1);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "completed");
	n = 0;
	assert_int_equal(store_each_timer(F.store, count_timer, &n), 0);
	assert_int_equal(n, 0);

	add_flow(THREE);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "completed");
	assert_int_equal(store_each_timer(F.store, count_timer, &n), 0);
	assert_int_equal(n, 0);
}

/* Review regression: a child that ends in the same turn it starts (its first request cannot
 * render) under a parent whose first step is that sub-flow. */
static void test_child_ending_at_once(void **state)
{
	char id[27];

	add_flow("name: kid\nversion: 1\ninput:\n  n: any\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: x\n    participant: p\n"
		 "    action: { method: POST, path: \"/x/${input.n.missing}\" }\n");
	add_flow("name: top\nversion: 1\n"
		 "steps:\n  - name: k\n    flow: kid\n    input: { n: {} }\n");
	start("top", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	assert_int_equal(P.n_calls, 0);
}

/* Review regression: an attempt timed out (maybe applied), the step waits to retry, and the
 * saga is cancelled: the step is compensated, not treated as "did nothing". */
static void test_cancel_during_retry_after_timeout(void **state)
{
	char id[27], err[256];
	struct steps_seen ss;

	add_flow("name: t\nversion: 1\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n    timeout: 100ms\n"
		 "    action: { method: POST, path: /a }\n"
		 "    compensation: { method: POST, path: /a/undo }\n"
		 "    retry: { max_attempts: 3, initial_backoff: 5s, jitter: 0 }\n");
	rule("POST", "/a", 300, NULL, 200, 0);
	start("t", "{}", id);
	while (P.n_calls < 1)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
	/* Let the attempt time out and the step settle into its retry wait. */
	for (int i = 0; i < 100 && strcmp(steps_of(id).states[0], "retry_wait") != 0; i++)
		uv_run(uv_default_loop(), UV_RUN_NOWAIT), usleep(10000);
	assert_string_equal(steps_of(id).states[0], "retry_wait");
	assert_int_equal(engine_cancel(F.engine, id, err, sizeof(err)), 0);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_status(id, "compensated");
	ss = steps_of(id);
	assert_string_equal(ss.states[0], "compensated");
	assert_string_equal(calls(), "POST /a, POST /a/undo");
}

/* Review regression: loading an ended saga (operator retry of a completed one) does not keep
 * it in memory. */
static void test_loaded_sagas_are_evicted(void **state)
{
	char id[27], err[256];
	struct engine_stats st;

	add_flow(THREE);
	start("three", "{}", id);
	run_until(id, ENGINE_WAIT_COMPLETION, NULL);
	assert_int_equal(engine_retry(F.engine, id, err, sizeof(err)), SAGAD_ESTATE);
	assert_int_equal(engine_flush(F.engine), 0);
	engine_stats(F.engine, &st);
	assert_int_equal(st.active, 0);
}

/* ---- the answer from memory (engine_start_answered(), engine_answer_text()) ------------- */

struct answer_check {
	bool done;
	enum engine_wait_result result;
	int from_memory;           /* answers the engine wrote from its pieces */
	int from_store;            /* answers it left to the store */
	char status[24];
};

/* A waiter's callback, as api.c's answer_saga(): the engine's answer from memory, when it has
 * one, is compared byte for byte with the store's at the same point (this release), with and
 * without the history. */
static void on_answer(const char *id, enum engine_wait_result res, void *arg)
{
	struct answer_check *c = arg;

	c->done = true;
	c->result = res;
	for (int history = 0; res != ENGINE_WAIT_ABORTED && history < 2; history++) {
		const struct flow *fm = NULL, *fs = NULL;
		char sm[24] = "", ss[24] = "";
		struct strbuf mem, db;

		strbuf_init(&mem);
		strbuf_init(&db);
		assert_int_equal(answer_saga_text(F.store, &F.flows, id, history, &db, &fs, ss,
						  sizeof(ss)), 0);
		if (engine_answer_text(F.engine, id, &F.flows, history, &mem, &fm, sm,
				       sizeof(sm)) == 0) {
			c->from_memory++;
			assert_string_equal(mem.data, db.data);
			assert_ptr_equal(fm, fs);
			assert_string_equal(sm, ss);
		} else {
			c->from_store++;
			assert_int_equal(mem.len, 0);
		}
		snprintf(c->status, sizeof(c->status), "%s", ss);
		strbuf_close(&mem);
		strbuf_close(&db);
	}
	uv_stop(uv_default_loop());
}

/* Starts a saga as api.c does for a client waiting with the full answer: answered, then its
 * waiter attached at once. */
static void start_answered(const char *flow, const char *input, char id[27],
			   enum engine_wait_target t, const char *step, struct answer_check *c)
{
	json_t *in = json_loads(input, 0, NULL);
	char err[256];
	bool existed;
	int rc;

	assert_non_null(in);
	assert_int_equal(engine_start_answered(F.engine, flow, in, NULL, id, &existed, err,
					       sizeof(err)), 0);
	json_decref(in);
	memset(c, 0, sizeof(*c));
	assert_non_null(engine_wait(F.engine, id, t, step, 20000, on_answer, c, &rc));
}

static void wait_answer(struct answer_check *c)
{
	while (!c->done)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
}

/* Another waiter on saga id (not the starter's), answered into c. */
static void wait_answer_of(const char *id, enum engine_wait_target t, struct answer_check *c)
{
	int rc;

	memset(c, 0, sizeof(*c));
	assert_non_null(engine_wait(F.engine, id, t, NULL, 20000, on_answer, c, &rc));
	wait_answer(c);
}

/* Starts flow with input (answered, waiting for its end) and checks the answer came from
 * memory and equals the store's; returns the saga's status. */
static const char *answered_run(const char *flow, const char *input, char id[27])
{
	static struct answer_check c;

	start_answered(flow, input, id, ENGINE_WAIT_COMPLETION, NULL, &c);
	wait_answer(&c);
	assert_int_equal(c.result, ENGINE_WAIT_REACHED);
	assert_int_equal(c.from_memory, 2);
	return c.status;
}

static void test_answer_happy_failed_retried(void **state)
{
	char id[27];

	add_flow(THREE);
	assert_string_equal(answered_run("three", "{\"n\":1.5}", id), "completed");
	rule("POST", "/b", 0, NULL, 503, 503, 200, 0);        /* retried, then succeeds */
	assert_string_equal(answered_run("three", "{}", id), "completed");
	assert_int_equal(steps_of(id).attempts[1], 3);
	rule("POST", "/c", 0, NULL, 400, 0);                  /* fails: b and a compensated */
	assert_string_equal(answered_run("three", "{}", id), "compensated");
	rule("POST", "/b/undo/7", 0, NULL, 500, 0);           /* compensation exhausted */
	assert_string_equal(answered_run("three", "{}", id), "failed");
}

/* Steps whose `when` is false (skipped), steps that never start (pending), and business keys
 * (written as they become known, answered in name order as the store reads them). */
static void test_answer_skipped_pending_keys(void **state)
{
	char id[27];

	add_flow("name: k\nversion: 1\n"
		 "keys:\n  zeta: \"${input.z}\"\n  alpha: \"${string(steps.a.response.body.id)}\"\n"
		 "  mid: \"${input.m}\"\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n    action: { method: POST, path: /a }\n"
		 "    compensation: { method: POST, path: /a/undo }\n"
		 "  - name: s\n    participant: p\n    when: \"${input.z == 'never'}\"\n"
		 "    action: { method: POST, path: /s }\n"
		 "  - name: b\n    participant: p\n    action: { method: POST, path: /b }\n"
		 "  - name: c\n    participant: p\n    action: { method: POST, path: /c }\n");
	assert_string_equal(answered_run("k", "{\"z\":\"z1\",\"m\":\"m\\u00e9\"}", id), "completed");
	assert_string_equal(calls(), "POST /a, POST /b, POST /c");
	assert_string_equal(steps_of(id).states[1], "skipped");
	rule("POST", "/b", 0, NULL, 422, 0);                  /* c never starts: pending */
	assert_string_equal(answered_run("k", "{\"z\":\"z2\",\"m\":\"m\"}", id), "compensated");
	assert_string_equal(steps_of(id).states[3], "");
}

/* Sensitive input: sealed in the store, masked in the answer, scrubbed from the responses
 * and the history the participant's echo would put it in. */
static void test_answer_sensitive_input(void **state)
{
	static const unsigned char raw[SECRET_KEY_LEN] = { 7 };
	struct engine_options eo = { .loop = uv_default_loop(), .store = F.store, .http = F.http,
				     .flows = &F.flows };
	struct secret_key *key = secret_key_from_bytes(raw);
	struct answer_check c;
	char id[27];
	struct strbuf db;

	engine_free(F.engine);
	eo.secrets_key = key;
	assert_int_equal(engine_new(&eo, &F.engine), 0);
	add_flow("name: card\nversion: 1\n"
		 "input:\n  holder: { type: string }\n"
		 "  number: { type: string, required: true, sensitive: true }\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: pay\n    participant: p\n"
		 "    action: { method: POST, path: /pay, body: { n: \"${input.number}\" } }\n"
		 "    compensation: { method: POST, path: /pay/undo }\n"
		 "  - name: ship\n    participant: p\n    action: { method: POST, path: /ship }\n");
	rule("POST", "/pay", 0, "{\"id\":7,\"echo\":\"4111-2222\"}", 200, 0);
	rule("POST", "/ship", 0, "{\"error\":\"bad card 4111-2222\"}", 409, 0);
	start_answered("card", "{\"holder\":\"kim\",\"number\":\"4111-2222\"}", id,
		       ENGINE_WAIT_COMPLETION, NULL, &c);
	wait_answer(&c);
	assert_int_equal(c.from_memory, 2);
	assert_string_equal(c.status, "compensated");
	strbuf_init(&db);
	assert_int_equal(answer_saga_text(F.store, &F.flows, id, true, &db, NULL, NULL, 0), 0);
	assert_null(strstr(db.data, "4111"));
	assert_non_null(strstr(db.data, "\"holder\":\"kim\""));
	strbuf_close(&db);
	engine_free(F.engine);
	F.engine = NULL;
	engine_up();
	secret_key_free(key);
}

/* Answers at other points than the end: a step waited for (the saga goes on and keeps its
 * pieces for the held waiter), a cancel's commit, and the deadline. */
static void test_answer_step_cancel_deadline(void **state)
{
	struct answer_check c, cc, cend;
	char id[27], err[256];

	add_flow(THREE);
	rule("POST", "/b", 300, NULL, 200, 0);
	start_answered("three", "{}", id, ENGINE_WAIT_STEP, "a", &c);
	wait_answer(&c);
	assert_int_equal(c.result, ENGINE_WAIT_REACHED);
	assert_int_equal(c.from_memory, 2);
	assert_string_equal(c.status, "running");
	/* Another waiter, attached before the saga wrote again: the saga keeps its pieces (it has
	 * a waiter) and answers it from them too. */
	wait_answer_of(id, ENGINE_WAIT_COMPLETION, &cend);
	assert_int_equal(cend.from_memory, 2);
	assert_string_equal(cend.status, "completed");
	/* Nobody waits any more: the next write drops the pieces; a new waiter reads the store. */
	start_answered("three", "{}", id, ENGINE_WAIT_STEP, "a", &c);
	wait_answer(&c);
	assert_int_equal(c.from_memory, 2);
	while (strcmp(steps_of(id).states[1], "succeeded") != 0)   /* b's reply, 300 ms */
		uv_run(uv_default_loop(), UV_RUN_ONCE);
	wait_answer_of(id, ENGINE_WAIT_COMPLETION, &cend);
	assert_int_equal(cend.from_memory, 0);
	assert_int_equal(cend.from_store, 2);
	assert_string_equal(cend.status, "completed");

	/* cancelled while b is in flight: the cancel's commit (cancel_requested) and the end */
	start_answered("three", "{}", id, ENGINE_WAIT_COMPLETION, NULL, &cend);
	run_until(id, ENGINE_WAIT_STEP, "a");
	assert_int_equal(engine_cancel(F.engine, id, err, sizeof(err)), 0);
	wait_answer_of(id, ENGINE_WAIT_COMMITTED, &cc);
	assert_int_equal(cc.from_memory, 2);
	assert_string_equal(cc.status, "compensating");
	wait_answer(&cend);
	assert_int_equal(cend.from_memory, 2);
	assert_string_equal(cend.status, "compensated");

	add_flow("name: slow\nversion: 1\ndeadline: 150ms\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n    action: { method: POST, path: /a }\n"
		 "    compensation: { method: POST, path: /a/undo }\n"
		 "  - name: b\n    participant: p\n    action: { method: POST, path: /b }\n");
	assert_string_equal(answered_run("slow", "{}", id), "compensated");
}

/* A plain start keeps nothing: its answers read the store. */
static void test_answer_not_kept_without_asking(void **state)
{
	struct answer_check c;
	char id[27];

	add_flow(THREE);
	start("three", "{}", id);
	wait_answer_of(id, ENGINE_WAIT_COMPLETION, &c);
	assert_int_equal(c.from_memory, 0);
	assert_int_equal(c.from_store, 2);
}

/* With the WAL sync thread the answer is released at a later turn, after the ended saga left
 * memory: the pieces the waiter holds are still the committed rows. */
static void test_answer_pipelined(void **state)
{
	char id[27], err[256];

	assert_int_equal(store_pipeline_start(F.store, uv_default_loop(), err, sizeof(err)), 0);
	add_flow(THREE);
	for (int i = 0; i < 3; i++)
		assert_string_equal(answered_run("three", "{}", id), "completed");
	rule("POST", "/c", 0, NULL, 400, 0);
	assert_string_equal(answered_run("three", "{}", id), "compensated");
}

/* The transaction holding rows whose pieces the engine kept is lost (the commit fails on an
 * I/O error, SQLite rolls it back): the waiter is not answered from them (503 in api.c), and
 * after the pause the saga, rebuilt from the store, is answered from the store. */
static void test_answer_lost_transaction(void **state)
{
	struct answer_check c, c2;
	char id[27];

	assert_true(faultvfs);
	add_flow(THREE);
	rule("POST", "/b", 300, NULL, 200, 0);
	start_answered("three", "{}", id, ENGINE_WAIT_COMPLETION, NULL, &c);
	run_until(id, ENGINE_WAIT_STEP, "a");          /* a committed, b in flight */
	fault_set("ioerr");                           /* b's outcome: its commit fails */
	wait_answer(&c);
	fault_set(NULL);
	assert_int_equal(c.result, ENGINE_WAIT_ABORTED);
	assert_int_equal(c.from_memory + c.from_store, 0);
	assert_non_null(engine_paused(F.engine));
	/* The probe (every 0.2 s) resumes the engine: recovery sends b again. */
	while (engine_paused(F.engine) != NULL)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
	wait_answer_of(id, ENGINE_WAIT_COMPLETION, &c2);
	assert_int_equal(c2.result, ENGINE_WAIT_REACHED);
	assert_int_equal(c2.from_memory, 0);
	assert_int_equal(c2.from_store, 2);
	assert_string_equal(c2.status, "completed");
	assert_int_equal(P.rules[0].seen, 2);
}

/* review7: a waiter that timed out leaves the saga; the pieces stay until the saga writes
 * again (here a 30 s retry backoff), not only while a full-answer waiter is pending. */
/* The pieces kept for a full answer go as soon as nobody waits for it: the waiter timed out
 * (the saga then waits 30 s for its retry and writes nothing meanwhile), or the starter's
 * waiter never came (engine_wait() refused it). */
static void test_answer_pieces_dropped_without_waiter(void **state)
{
	struct answer_check c;
	json_t *in = json_loads("{}", 0, NULL);
	char id[27], id2[27], err[256];
	bool existed;
	int rc;
	struct saga *s;

	(void)state;
	add_flow("name: r\nversion: 1\n"
		 "participants:\n  p: { url: URL }\n"
		 "steps:\n  - name: a\n    participant: p\n"
		 "    action: { method: POST, path: /a }\n"
		 "    retry: { max_attempts: 3, initial_backoff: 30s, max_backoff: 60s, jitter: 0 }\n");
	rule("POST", "/a", 0, NULL, 503, 0);
	assert_int_equal(engine_start_answered(F.engine, "r", in, NULL, id, &existed, err,
					       sizeof(err)), 0);
	memset(&c, 0, sizeof(c));
	assert_non_null(engine_wait(F.engine, id, ENGINE_WAIT_COMPLETION, NULL, 300, on_answer,
				    &c, &rc));
	wait_answer(&c);
	assert_int_equal(c.result, ENGINE_WAIT_TIMEOUT);
	for (int i = 0; i < 20; i++)   /* the waiter's handle closes */
		uv_run(uv_default_loop(), UV_RUN_NOWAIT), usleep(10000);
	s = engine__saga_find(F.engine, id);
	assert_non_null(s);
	assert_null(s->waiters);
	assert_null(s->answer);

	assert_int_equal(engine_start_answered(F.engine, "r", in, NULL, id2, &existed, err,
					       sizeof(err)), 0);
	json_decref(in);
	s = engine__saga_find(F.engine, id2);
	assert_non_null(s);
	assert_non_null(s->answer);
	assert_null(engine_wait(F.engine, id2, ENGINE_WAIT_STEP, "nope", 300, on_answer, &c, &rc));
	assert_int_equal(rc, SAGAD_EINVAL);
	assert_null(s->answer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_happy_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_compensates_in_reverse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_then_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retries_exhausted_compensate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_compensates_the_unknown_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compensation_exhausted_fails_then_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_running_saga, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_input_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovery_redispatches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subflow_compensated_by_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_compensates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_row_deleted_at_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_ending_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_during_retry_after_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loaded_sagas_are_evicted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_happy_failed_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_skipped_pending_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_sensitive_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_step_cancel_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_not_kept_without_asking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_lost_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_pieces_dropped_without_waiter, setup, teardown),
	};
	int rc;

	fault_load("test-engine");   /* before the first store_open() */
	rc = cmocka_run_group_tests_name("engine", tests, NULL, NULL);
	unlink(fault_ctl);
	return rc;
}
