/* api.c: the admin API routes.
 *
 * Every answer goes out after the commit that makes it true: starts, cancels and retries
 * through engine_wait(), reads through engine_defer(). A request that waits holds a struct
 * pending, freed when it is answered or when the client goes away. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "answer.h"
#include "api.h"
#include "auth.h"
#include "engine.h"
#include "error.h"
#include "flow.h"
#include "httpd.h"
#include "log.h"
#include "loopstat.h"
#include "secret.h"
#include "store.h"
#include "util.h"

#define ID_LEN 27
#define MAX_KEY_LEN 200
#define LIST_DEFAULT 50

struct api {
	struct engine *engine;
	struct store *store;
	struct flow_set *const *flows;
	const bool *ready;
	const char *const *not_ready_reason;
	int64_t default_wait_ms;
	const struct auth *auth;
	uint64_t answers_memory;       /* full saga answers written from the engine's memory */
	uint64_t answers_store;        /* ... and read from the store */
};

enum pending_kind { PENDING_SAGA, PENDING_GET_SAGA, PENDING_LIST, PENDING_FLOWS, PENDING_FLOW };

/* A request whose answer waits for a commit or a saga's progress. */
struct pending {
	struct api *api;
	struct httpd_req *req;
	struct engine_waiter *waiter;
	enum pending_kind kind;
	char id[ID_LEN];
	int ok_status;                 /* status when the wait target is reached */
	bool replayed;                 /* idempotent repeat of an earlier start */
	bool aborted;                  /* client went away before the deferred answer */
	bool deferred;                 /* an engine_defer() call is outstanding */
	bool summary_only;             /* Prefer: return=minimal or ?view=summary: no history */
	bool final_status;             /* a start that waited for the end: the flow's http_status */
	struct store_list_query q;     /* PENDING_LIST */
	char *q_flow, *q_status, *q_cursor, *name;
	char *q_key_name, *q_key_value;
};

/* ---- answers ----------------------------------------------------------------------- */

static void respond_json(struct httpd_req *req, int status, json_t *body, const char *const *headers)
{
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;

	if (text == NULL) {
		/* json_pack() refused a value (never expected: messages are sanitized below). */
		log_error("event=api_encode_failed method=%s status=%d", httpd_req_method(req), status);
		status = 500;
		text = xstrdup("{\"error\":{\"code\":\"EIO\",\"message\":\"sagad could not encode "
			       "this answer; see its log\"}}");
	}

	httpd_respond(req, status, "application/json", text, strlen(text), headers);
	free(text);
	json_decref(body);
}

/* Messages quote what the client sent (a path, a flow name, a query value), which need not be
 * UTF-8; a JSON string must be, so other bytes become '?'. A 503 (shutting down, not ready,
 * store paused) tells the client when to try again. */
static void respond_error(struct httpd_req *req, int status, int code, const char *message)
{
	static const char *const retry_after[] = { "Retry-After", "1", NULL };
	char *text = util_utf8_sanitize(xstrdup(message));

	respond_json(req, status, json_pack("{s:{s:s, s:s}}", "error", "code", sagad_errname(code),
					    "message", text), status == 503 ? retry_after : NULL);
	free(text);
}

static void pending_free(struct pending *p)
{
	free(p->q_flow);
	free(p->q_status);
	free(p->q_cursor);
	free(p->q_key_name);
	free(p->q_key_value);
	free(p->name);
	free(p);
}

static void time_field(json_t *o, const char *key, int64_t ms)
{
	char buf[40];

	if (ms <= 0) {
		json_object_set_new(o, key, json_null());
		return;
	}
	util_format_time(ms, buf, sizeof(buf));
	json_object_set_new(o, key, json_string(buf));
}

static json_t *parsed_or_null(const char *text)
{
	json_t *v;

	if (text == NULL)
		return json_null();
	v = json_loads(text, JSON_DECODE_ANY, NULL);
	return v ? v : json_string(text);
}

/* Stored text as a JSON string; bytes that are not UTF-8 (a history summary cut inside a
 * character by an older sagad) become '?', so the row is shown rather than dropped. */
static json_t *str_or_null(const char *s)
{
	json_t *v;
	char *copy;

	if (s == NULL)
		return json_null();
	if ((v = json_string(s)) != NULL)
		return v;
	copy = util_utf8_sanitize(xstrdup(s));
	v = json_string(copy);
	free(copy);
	return v;
}

static json_t *saga_summary(const struct store_saga *s)
{
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:o, s:b}", "id", s->id, "flow", s->flow,
			      "flow_version", s->flow_version, "status", s->status,
			      "error", str_or_null(s->error), "cancel_requested", s->cancel_requested);

	json_object_set_new(o, "parent_id", str_or_null(s->parent_id));
	json_object_set_new(o, "idempotency_key", str_or_null(s->idempotency_key));
	time_field(o, "created_at", s->created_at);
	time_field(o, "updated_at", s->updated_at);
	time_field(o, "deadline_at", s->deadline_at);
	return o;
}

static int on_step_row(const struct store_step *st, void *arg)
{
	json_t *o = json_pack("{s:s, s:i, s:s, s:i, s:i, s:o, s:o}", "name", st->name, "index",
			      st->idx, "state", st->state, "attempt", st->attempt, "comp_attempt",
			      st->comp_attempt, "response", parsed_or_null(st->response), "error",
			      str_or_null(st->error));

	time_field(o, "updated_at", st->updated_at);
	json_array_append_new(arg, o);
	return 0;
}

/* Steps get a row when they first move: the steps that never started are shown as pending,
 * from the flow version the saga runs. Takes rows; returns the full list (new reference). */
static json_t *with_pending_steps(struct api *a, const struct store_saga *s, json_t *rows)
{
	struct flow *f = flow_set_find_version(*a->flows, s->flow, s->flow_version);
	json_t *all;

	if (f == NULL || json_array_size(rows) >= f->n_steps)
		return rows;
	all = json_array();
	for (size_t i = 0, r = 0; i < f->n_steps; i++) {
		json_t *row = json_array_get(rows, r);

		if (row != NULL && json_integer_value(json_object_get(row, "index")) == (json_int_t)i) {
			json_array_append(all, row);
			r++;
			continue;
		}
		json_array_append_new(all, json_pack("{s:s, s:i, s:s, s:i, s:i, s:n, s:n, s:n}", "name",
						     f->steps[i].name, "index", (int)i, "state",
						     "pending", "attempt", 0, "comp_attempt", 0,
						     "response", "error", "updated_at"));
	}
	json_decref(rows);
	return all;
}

static int on_key_row(const char *name, const char *value, void *arg)
{
	json_object_set_new(arg, name, json_string(value));
	return 0;
}

static json_t *saga_keys(struct api *a, const char *id)
{
	json_t *keys = json_object();

	store_each_key(a->store, id, on_key_row, keys);
	return keys;
}

/* The saga for an answer: everything, from the store, written as JSON text (answer.c); or,
 * when the client asked for the minimal answer, the saga without its history, from memory
 * when it is still there (no store reads on the hot path). */
static void answer_saga(struct pending *p, int status)
{
	json_t *body = p->summary_only ? engine_saga_json(p->api->engine, p->id) : NULL;
	char location[64], st[24] = "";
	const char *headers[5];
	const struct flow *f = NULL;
	struct strbuf text;
	int n = 0;

	strbuf_init(&text);
	if (body != NULL) {
		snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(body, "status")) ?: "");
		f = flow_set_find_version(*p->api->flows,
			json_string_value(json_object_get(body, "flow")) ?: "",
			(int)json_integer_value(json_object_get(body, "flow_version")));
	} else {
		strbuf_reserve(&text, 4095);   /* a saga with its history: one allocation */
		/* from the engine's memory when it kept the rows it wrote, else from the store */
		if (engine_answer_text(p->api->engine, p->id, *p->api->flows, !p->summary_only,
				       &text, &f, st, sizeof(st)) == 0)
			p->api->answers_memory++;
		else if (answer_saga_text(p->api->store, *p->api->flows, p->id, !p->summary_only,
					  &text, &f, st, sizeof(st)) == 0)
			p->api->answers_store++;
		else {
			char err[128];

			strbuf_close(&text);
			snprintf(err, sizeof(err), "no saga with id \"%.40s\"", p->id);
			respond_error(p->req, 404, SAGAD_ENOSAGA, err);
			return;
		}
	}
	if (p->final_status && f != NULL) {
		/* The flow may answer a saga's end with its own status (the seeds' 201 / 500). */
		int code = !strcmp(st, "completed") ? f->status_completed :
			   !strcmp(st, "compensated") ? f->status_compensated :
			   !strcmp(st, "failed") ? f->status_failed : 0;

		if (code > 0)
			status = code;
	}
	memcpy(location, "/v1/sagas/", 10);   /* snprintf("/v1/sagas/%s"), quicker */
	util_strlcpy(location + 10, p->id, sizeof(location) - 10);
	headers[n++] = "Location";
	headers[n++] = location;
	if (p->replayed) {
		headers[n++] = "Idempotent-Replayed";
		headers[n++] = "true";
	}
	headers[n] = NULL;
	if (body != NULL) {
		respond_json(p->req, status, body, headers);
		return;
	}
	httpd_respond(p->req, status, "application/json", text.data, text.len, headers);
	strbuf_close(&text);
}

/* ---- waiting for a saga ------------------------------------------------------------ */

static void on_saga_wait(const char *saga_id, enum engine_wait_result res, void *arg)
{
	struct pending *p = arg;

	p->waiter = NULL;
	switch (res) {
	case ENGINE_WAIT_REACHED:
	case ENGINE_WAIT_UNREACHABLE:
		answer_saga(p, p->ok_status);
		break;
	case ENGINE_WAIT_TIMEOUT:
		answer_saga(p, 202);
		break;
	case ENGINE_WAIT_ABORTED:
		if (engine_paused(p->api->engine) != NULL) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s; a saga this request started may not have been "
				 "recorded: repeat it with the same Idempotency-Key, or poll "
				 "GET /v1/sagas/{id}", engine_paused(p->api->engine));
			respond_error(p->req, 503, SAGAD_ESTORE, msg);
			break;
		}
		respond_error(p->req, 503, SAGAD_ESHUTDOWN, "sagad is shutting down; the saga "
			      "continues after restart: poll GET /v1/sagas/{id}");
		break;
	}
	pending_free(p);
}

static void on_pending_abort(struct httpd_req *req, void *arg)
{
	struct pending *p = arg;

	if (p->waiter != NULL) {
		engine_wait_cancel(p->waiter);
		pending_free(p);
	} else if (p->deferred) {
		p->aborted = true; /* freed by the deferred call */
	} else {
		pending_free(p);
	}
}

static void on_deferred(void *arg);

static void defer(struct pending *p)
{
	p->deferred = true;
	httpd_req_on_abort(p->req, on_pending_abort, p);
	engine_defer(p->api->engine, on_deferred, p);
}

/* Waits for target on saga p->id; a saga no longer in memory is ended: answer from the store. */
static void wait_saga(struct pending *p, enum engine_wait_target target, const char *step,
		      int64_t timeout_ms)
{
	int rc;

	p->kind = PENDING_SAGA;
	p->waiter = engine_wait(p->api->engine, p->id, target, step, timeout_ms, on_saga_wait, p, &rc);
	if (p->waiter == NULL && rc == SAGAD_ESHUTDOWN) {
		respond_error(p->req, 503, rc, "sagad is shutting down; the saga continues after "
			      "the restart: poll GET /v1/sagas/{id}");
		pending_free(p);
		return;
	}
	if (p->waiter == NULL && rc == SAGAD_EINVAL) {
		respond_error(p->req, 400, rc, "wait=step:NAME names a step this saga's flow version "
			      "does not have");
		pending_free(p);
		return;
	}
	if (p->waiter == NULL) {
		/* Not in memory: the saga has ended; answer from the store after the commit. */
		p->kind = PENDING_GET_SAGA;
		defer(p);
		return;
	}
	httpd_req_on_abort(p->req, on_pending_abort, p);
}

/* ---- routes ------------------------------------------------------------------------ */

static bool content_type_json(struct httpd_req *req)
{
	const char *ct = httpd_req_header(req, "Content-Type");
	size_t n = strlen("application/json");

	return ct != NULL && strncasecmp(ct, "application/json", n) == 0 &&
	       (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Prefer: return=minimal (RFC 7240) or ?view=summary: answer without the history. */
static bool wants_minimal(struct httpd_req *req)
{
	const char *prefer = httpd_req_header(req, "Prefer");
	const char *view = httpd_req_query(req, "view");

	return (prefer != NULL && strstr(prefer, "return=minimal") != NULL) ||
	       (view != NULL && strcmp(view, "summary") == 0);
}

static bool valid_key(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > MAX_KEY_LEN)
		return false;
	for (; *k; k++)
		if (!isprint((unsigned char)*k))
			return false;
	return true;
}

static void route_start(struct api *a, struct httpd_req *req, const char *flow_name)
{
	const char *wait = httpd_req_query(req, "wait");
	const char *timeout = httpd_req_query(req, "timeout");
	const char *key = httpd_req_header(req, "Idempotency-Key");
	const char *prefer = httpd_req_header(req, "Prefer");
	struct flow *f = flow_set_find(*a->flows, flow_name);
	enum engine_wait_target target = ENGINE_WAIT_COMPLETION;
	const char *step = NULL;
	int64_t timeout_ms = a->default_wait_ms;
	char err[1024], id[ID_LEN];
	json_error_t jerr;
	json_t *input;
	size_t len;
	const char *body;
	bool existed;
	struct pending *p;
	int rc;

	if (f == NULL) {
		snprintf(err, sizeof(err), "no flow named \"%s\"; GET /v1/flows lists the loaded flows",
			 flow_name);
		respond_error(req, 404, SAGAD_ENOFLOW, err);
		return;
	}
	if (!*a->ready) {
		respond_error(req, 503, SAGAD_ESHUTDOWN, *a->not_ready_reason);
		return;
	}
	body = httpd_req_body(req, &len);
	if (len > 0 && !content_type_json(req)) {
		respond_error(req, 415, SAGAD_EINVAL, "the saga input must be sent as "
			      "Content-Type: application/json");
		return;
	}
	if (prefer != NULL && strstr(prefer, "respond-async") != NULL && wait == NULL)
		target = ENGINE_WAIT_COMMITTED;
	if (wait != NULL) {
		if (strcmp(wait, "none") == 0) {
			target = ENGINE_WAIT_COMMITTED;
		} else if (strcmp(wait, "completion") == 0) {
			target = ENGINE_WAIT_COMPLETION;
		} else if (strncmp(wait, "step:", 5) == 0 && flow_find_step(f, wait + 5) != NULL) {
			target = ENGINE_WAIT_STEP;
			step = wait + 5;
		} else {
			struct strbuf b;
			strbuf_init(&b);
			for (size_t i = 0; i < f->n_steps; i++)
				strbuf_addf(&b, "%s%s", i ? ", " : "", f->steps[i].name);
			snprintf(err, sizeof(err), "wait=%s: expected none, completion or step:NAME "
				 "with a step of flow %s (%s)", wait, f->name, b.data ? b.data : "");
			strbuf_close(&b);
			respond_error(req, 400, SAGAD_EINVAL, err);
			return;
		}
	}
	if (timeout != NULL && (util_parse_duration(timeout, &timeout_ms) != 0 || timeout_ms <= 0)) {
		snprintf(err, sizeof(err), "timeout=%s: expected a duration such as 30s or 500ms",
			 timeout);
		respond_error(req, 400, SAGAD_EINVAL, err);
		return;
	}
	if (key != NULL && !valid_key(key)) {
		respond_error(req, 400, SAGAD_EINVAL, "Idempotency-Key must be 1 to 200 printable "
			      "characters");
		return;
	}
	if (len == 0) {
		input = json_object();
	} else {
		input = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
		if (input == NULL) {
			snprintf(err, sizeof(err), "request body is not valid JSON: line %d, column "
				 "%d: %s", jerr.line, jerr.column, jerr.text);
			respond_error(req, 400, SAGAD_EINVAL, err);
			return;
		}
	}
	if (!json_is_object(input)) {
		json_decref(input);
		respond_error(req, 400, SAGAD_EINVAL, "the saga input must be a JSON object, "
			      "e.g. {\"studentName\": \"kim\"}");
		return;
	}
	/* A client waiting for the end (or a step) with the full answer: the engine keeps it. */
	if (target != ENGINE_WAIT_COMMITTED && !wants_minimal(req))
		rc = engine_start_answered(a->engine, flow_name, input, key, id, &existed, err,
					   sizeof(err));
	else
		rc = engine_start(a->engine, flow_name, input, key, id, &existed, err, sizeof(err));
	json_decref(input);
	switch (rc) {
	case 0:
		break;
	case SAGAD_ENOFLOW:
		respond_error(req, 404, rc, err);
		return;
	case SAGAD_EINPUT:
		respond_error(req, 422, rc, err);
		return;
	case SAGAD_ESHUTDOWN:
	case SAGAD_ENOKAFKA:
		respond_error(req, 503, rc, err);
		return;
	case SAGAD_EOPEN: {
		/* the pivot's breaker is open: fail fast, say when to come back */
		int64_t ms;
		char secs[24], e2[512];
		const char *headers[] = { "Retry-After", secs, NULL };

		engine_admit(a->engine, flow_name, &ms, e2, sizeof(e2));
		snprintf(secs, sizeof(secs), "%lld", (long long)(ms > 0 ? (ms + 999) / 1000 : 1));
		respond_json(req, 503, json_pack("{s:{s:s, s:s}}", "error", "code", "EOPEN", "message",
						 err), headers);
		return;
	}
	default:
		respond_error(req, 503, rc, err);
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->api = a;
	p->req = req;
	memcpy(p->id, id, ID_LEN);
	p->replayed = existed;
	p->summary_only = wants_minimal(req);
	p->ok_status = target == ENGINE_WAIT_COMMITTED ? 202 : 200;
	p->final_status = target == ENGINE_WAIT_COMPLETION;
	wait_saga(p, target, step, timeout_ms);
}

static void route_cancel_retry(struct api *a, struct httpd_req *req, const char *id, bool retry)
{
	char err[512];
	struct pending *p;
	int rc;

	rc = retry ? engine_retry(a->engine, id, err, sizeof(err)) :
		     engine_cancel(a->engine, id, err, sizeof(err));
	if (rc == SAGAD_ENOSAGA) {
		respond_error(req, 404, rc, err);
		return;
	}
	if (rc == SAGAD_ESTATE) {
		respond_error(req, 409, rc, err);
		return;
	}
	if (rc != 0) {
		respond_error(req, 503, rc, rc == SAGAD_ESHUTDOWN || engine_paused(a->engine) ?
			      err : sagad_strerror(rc));
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->api = a;
	p->req = req;
	util_strlcpy(p->id, id, ID_LEN);
	p->summary_only = wants_minimal(req);
	p->ok_status = 202;
	wait_saga(p, ENGINE_WAIT_COMMITTED, NULL, 0);
}

struct list_ctx {
	struct api *api;
	json_t *arr;
	bool status_view;        /* a business-key query: each saga with its keys and steps */
};

static int on_list_row(const struct store_saga *s, void *arg)
{
	struct list_ctx *lc = arg;
	json_t *o = saga_summary(s), *steps;

	json_object_set_new(o, "keys", saga_keys(lc->api, s->id));
	if (lc->status_view) {
		steps = json_array();
		store_each_step(lc->api->store, s->id, on_step_row, steps);
		json_object_set_new(o, "steps", with_pending_steps(lc->api, s, steps));
	}
	json_array_append_new(lc->arr, o);
	return 0;
}

static void answer_list(struct pending *p)
{
	json_t *arr = json_array(), *body;
	struct list_ctx lc = { p->api, arr, p->q.key_name != NULL };
	size_t n;

	store_saga_list(p->api->store, &p->q, on_list_row, &lc);
	n = json_array_size(arr);
	body = json_pack("{s:o}", "sagas", arr);
	if (n > 0 && (int)n == p->q.limit)
		json_object_set(body, "next_cursor",
				json_object_get(json_array_get(arr, n - 1), "id"));
	else
		json_object_set_new(body, "next_cursor", json_null());
	respond_json(p->req, 200, body, NULL);
}

static json_t *flow_summary(const struct flow *f)
{
	json_t *steps = json_array();

	for (size_t i = 0; i < f->n_steps; i++)
		json_array_append_new(steps, json_string(f->steps[i].name));
	return json_pack("{s:s, s:i, s:o, s:o, s:o}", "name", f->name, "version", f->version,
			 "description", str_or_null(f->description), "file", str_or_null(f->file),
			 "steps", steps);
}

static void answer_flows(struct pending *p)
{
	struct flow_set *fs = *p->api->flows;
	json_t *arr = json_array();

	for (size_t i = 0; i < fs->n; i++) {
		/* The newest version of each name only. */
		if (flow_set_find(fs, fs->flows[i]->name) == fs->flows[i])
			json_array_append_new(arr, flow_summary(fs->flows[i]));
	}
	respond_json(p->req, 200, json_pack("{s:o}", "flows", arr), NULL);
}

static void answer_flow(struct pending *p)
{
	struct flow *f = flow_set_find(*p->api->flows, p->name);
	json_t *body;
	char err[256];

	if (f == NULL) {
		snprintf(err, sizeof(err), "no flow named \"%s\"", p->name);
		respond_error(p->req, 404, SAGAD_ENOFLOW, err);
		return;
	}
	body = f->source ? json_deep_copy(f->source) : flow_summary(f);
	json_object_set_new(body, "file", str_or_null(f->file));
	respond_json(p->req, 200, body, NULL);
}

static void on_deferred(void *arg)
{
	struct pending *p = arg;

	p->deferred = false;
	if (p->aborted) {
		pending_free(p);
		return;
	}
	httpd_req_on_abort(p->req, NULL, NULL);
	switch (p->kind) {
	case PENDING_SAGA:
	case PENDING_GET_SAGA:
		answer_saga(p, p->ok_status ? p->ok_status : 200);
		break;
	case PENDING_LIST:
		answer_list(p);
		break;
	case PENDING_FLOWS:
		answer_flows(p);
		break;
	case PENDING_FLOW:
		answer_flow(p);
		break;
	}
	pending_free(p);
}

static struct pending *pending_new(struct api *a, struct httpd_req *req, enum pending_kind kind)
{
	struct pending *p = xcalloc(1, sizeof(*p));

	p->api = a;
	p->req = req;
	p->kind = kind;
	p->ok_status = 200;
	return p;
}

static void route_list(struct api *a, struct httpd_req *req)
{
	const char *flow = httpd_req_query(req, "flow");
	const char *status = httpd_req_query(req, "status");
	const char *limit = httpd_req_query(req, "limit");
	const char *cursor = httpd_req_query(req, "cursor");
	const char *key_name = NULL, *key_value = NULL;
	int n_keys = httpd_req_query_prefix(req, "key.", &key_name, &key_value);
	enum saga_state st;
	struct pending *p;
	long n = LIST_DEFAULT;
	char *end;

	if (status != NULL && saga_state_parse(status, &st) != 0) {
		respond_error(req, 400, SAGAD_EINVAL, "status: expected running, compensating, "
			      "completed, compensated or failed");
		return;
	}
	if (limit != NULL) {
		n = strtol(limit, &end, 10);
		if (*limit == '\0' || *end != '\0' || n < 1 || n > 1000) {
			respond_error(req, 400, SAGAD_EINVAL, "limit: expected an integer from 1 to 1000");
			return;
		}
	}
	if (n_keys > 1 || (n_keys == 1 && (key_name[4] == '\0' || key_value[0] == '\0'))) {
		respond_error(req, 400, SAGAD_EINVAL, n_keys > 1 ?
			      "give one business key per query (key.NAME=VALUE); narrow further "
			      "with flow= and status=" : "key.NAME=VALUE: both the key name and a value "
			      "are needed, e.g. key.orderId=42");
		return;
	}
	p = pending_new(a, req, PENDING_LIST);
	if (n_keys == 1) {
		p->q_key_name = xstrdup(key_name + 4);
		p->q_key_value = xstrdup(key_value);
		p->q.key_name = p->q_key_name;
		p->q.key_value = p->q_key_value;
	}
	p->q_flow = flow ? xstrdup(flow) : NULL;
	p->q_status = status ? xstrdup(status) : NULL;
	p->q_cursor = cursor ? xstrdup(cursor) : NULL;
	p->q.flow = p->q_flow;
	p->q.status = p->q_status;
	p->q.before_id = p->q_cursor;
	p->q.limit = (int)n;
	defer(p);
}

static void route_get_saga(struct api *a, struct httpd_req *req, const char *id)
{
	struct pending *p;

	if (strlen(id) != ID_LEN - 1) {
		char err[128];
		snprintf(err, sizeof(err), "no saga with id \"%.40s\"", id);
		respond_error(req, 404, SAGAD_ENOSAGA, err);
		return;
	}
	/* Read once, after the commit: answer_saga() says 404 when it is not there. */
	p = pending_new(a, req, PENDING_GET_SAGA);
	snprintf(p->id, ID_LEN, "%s", id);
	p->summary_only = wants_minimal(req);
	defer(p);
}

/* The circuit breakers' lines of GET /metrics, one series per participant. */
static void breaker_series(struct strbuf *b, json_t *brs, const char *name, const char *type,
			   const char *help, const char *field)
{
	json_t *br;
	size_t k;

	strbuf_addf(b, "# HELP sagad_%s %s\n# TYPE sagad_%s %s\n", name, help, name, type);
	json_array_foreach(brs, k, br)
		strbuf_addf(b, "sagad_%s{participant=\"%s\"} %lld\n", name,
			    json_string_value(json_object_get(br, "participant")),
			    (long long)json_integer_value(json_object_get(br, field)));
}

static void breaker_metrics(struct api *a, struct strbuf *b)
{
	static const char *const states[] = { "closed", "open", "half_open" };
	json_t *brs = engine_breakers_json(a->engine), *br;
	size_t k;

	if (json_array_size(brs) > 0) {
		strbuf_adds(b, "# HELP sagad_breaker_state Circuit breaker state by participant (1 for "
			    "the current state).\n# TYPE sagad_breaker_state gauge\n");
		json_array_foreach(brs, k, br)
			for (int j = 0; j < 3; j++)
				strbuf_addf(b, "sagad_breaker_state{participant=\"%s\",state=\"%s\"} %d\n",
					    json_string_value(json_object_get(br, "participant")), states[j],
					    !strcmp(states[j], json_string_value(json_object_get(br, "state"))));
		breaker_series(b, brs, "breaker_rejected_total", "counter",
			       "Calls refused by an open circuit breaker.", "rejected");
		breaker_series(b, brs, "breaker_opened_total", "counter",
			       "Times a circuit breaker opened.", "opened");
	}
	json_decref(brs);
}

/* GET /metrics: Prometheus text format. */
static void answer_metrics(struct api *a, struct httpd_req *req)
{
	struct engine_stats st;
	struct strbuf b;
	uint64_t commits = 0, writes = 0;
	int64_t unsent = 0;

	engine_stats(a->engine, &st);
	store_stats(a->store, &commits, &writes);
	store_outbox_unsent(a->store, &unsent);
	strbuf_init(&b);
#define COUNTER(name, help, v) \
	strbuf_addf(&b, "# HELP sagad_" name " " help "\n# TYPE sagad_" name " counter\nsagad_" name \
		    " %llu\n", (unsigned long long)(v))
#define GAUGE(name, help, v) \
	strbuf_addf(&b, "# HELP sagad_" name " " help "\n# TYPE sagad_" name " gauge\nsagad_" name \
		    " %lld\n", (long long)(v))
	COUNTER("sagas_started_total", "Sagas started.", st.started);
	COUNTER("sagas_completed_total", "Sagas completed.", st.completed);
	COUNTER("sagas_compensated_total", "Sagas compensated.", st.compensated);
	COUNTER("sagas_failed_total", "Sagas parked as failed (a compensation exhausted its retries).",
		st.failed);
	GAUGE("sagas_active", "Unfinished sagas in memory.", st.active);
	COUNTER("dispatches_total", "Requests and commands dispatched to participants.", st.dispatches);
	COUNTER("late_replies_total", "HTTP replies for attempts no longer awaited (ignored).",
		st.late_replies);
	COUNTER("kafka_replies_total", "Kafka replies matched to a waiting step.", st.kafka_replies);
	COUNTER("kafka_replies_ignored_total", "Correlated Kafka events of another type (not mine).",
		st.kafka_ignored);
	COUNTER("kafka_replies_unmatched_total", "Kafka records no step waits for: late, duplicate "
		"or foreign (ignored).", st.kafka_unmatched);
	COUNTER("kafka_records_refused_total", "Kafka replies and trigger events refused unread for "
		"being larger than --kafka-max-message.", st.kafka_refused);
	COUNTER("triggered_total", "Sagas started by Kafka trigger events.", st.triggered);
	COUNTER("trigger_duplicates_total", "Redelivered trigger events that started nothing.",
		st.trigger_duplicates);
	GAUGE("outbox_unsent", "Outbox messages not yet acknowledged by Kafka.", unsent);
	strbuf_addf(&b, "# HELP sagad_saga_answers_total Saga objects answered in full, by where "
		    "they were read: the engine's memory (a start that waited) or the store.\n"
		    "# TYPE sagad_saga_answers_total counter\n"
		    "sagad_saga_answers_total{source=\"memory\"} %llu\n"
		    "sagad_saga_answers_total{source=\"store\"} %llu\n",
		    (unsigned long long)a->answers_memory, (unsigned long long)a->answers_store);
	breaker_metrics(a, &b);
	COUNTER("store_commits_total", "SQLite commits (grouped per loop turn).", commits);
	COUNTER("store_writes_total", "SQLite rows written.", writes);
	COUNTER("store_wal_syncs_total", "fsyncs of the WAL by the sync thread (pipelined commits; "
		"several commits share one when the disk is slower than the loop).",
		store_syncs(a->store));
	store_metrics(a->store, &b);
#undef COUNTER
#undef GAUGE
	loopstat_render(&b);
	httpd_respond(req, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len, NULL);
	strbuf_close(&b);
}

static void method_not_allowed(struct httpd_req *req, const char *allow)
{
	const char *headers[] = { "Allow", allow, NULL };
	char msg[160];

	snprintf(msg, sizeof(msg), "method %s not allowed here; use %s", httpd_req_method(req), allow);
	util_utf8_sanitize(msg);
	respond_json(req, 405, json_pack("{s:{s:s, s:s}}", "error", "code", "EINVAL", "message", msg),
		     headers);
}

/* Splits "/v1/sagas/ID/cancel" into at most n segments (copied into buf). */
static int split_path(const char *path, char *buf, size_t len, char **seg, int n)
{
	int k = 0;
	char *p;

	util_strlcpy(buf, path, len);
	p = buf;
	while (*p == '/')
		p++;
	while (*p && k < n) {
		seg[k++] = p;
		p = strchr(p, '/');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	if (p != NULL && *p != '\0')
		return -1; /* too many segments */
	return k;
}

void api_handle(struct httpd_req *req, void *arg)
{
	struct api *a = arg;
	const char *method = httpd_req_method(req), *path = httpd_req_path(req);
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	char buf[512], msg[600], *seg[5];
	int n = split_path(path, buf, sizeof(buf), seg, 5);

	if (!auth_admit(a->auth, req))
		return;   /* answered 401 or 403 */

	if (n == 1 && strcmp(seg[0], "livez") == 0) {
		if (!get) {
			method_not_allowed(req, "GET");
			return;
		}
		respond_json(req, 200, json_pack("{s:s}", "status", "ok"), NULL);
		return;
	}
	if (n == 1 && strcmp(seg[0], "readyz") == 0) {
		if (!get) {
			method_not_allowed(req, "GET");
			return;
		}
		const char *paused = engine_paused(a->engine);
		if (*a->ready && paused == NULL)
			respond_json(req, 200, json_pack("{s:s}", "status", "ready"), NULL);
		else
			respond_json(req, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason",
							  *a->ready ? paused : *a->not_ready_reason), NULL);
		return;
	}
	if (n == 1 && strcmp(seg[0], "metrics") == 0) {
		if (!get) {
			method_not_allowed(req, "GET");
			return;
		}
		answer_metrics(a, req);
		return;
	}
	if (n >= 2 && strcmp(seg[0], "v1") == 0) {
		if (strcmp(seg[1], "flows") == 0) {
			if (n == 2) {
				if (!get) {
					method_not_allowed(req, "GET");
					return;
				}
				defer(pending_new(a, req, PENDING_FLOWS));
				return;
			}
			if (n == 3) {
				struct pending *p;
				if (!get) {
					method_not_allowed(req, "GET");
					return;
				}
				p = pending_new(a, req, PENDING_FLOW);
				p->name = xstrdup(seg[2]);
				defer(p);
				return;
			}
			if (n == 4 && strcmp(seg[3], "sagas") == 0) {
				if (!post) {
					method_not_allowed(req, "POST");
					return;
				}
				route_start(a, req, seg[2]);
				return;
			}
		} else if (strcmp(seg[1], "sagas") == 0) {
			if (n == 2) {
				if (!get) {
					method_not_allowed(req, "GET");
					return;
				}
				route_list(a, req);
				return;
			}
			if (n == 3) {
				if (!get) {
					method_not_allowed(req, "GET");
					return;
				}
				route_get_saga(a, req, seg[2]);
				return;
			}
			if (n == 4 && (strcmp(seg[3], "cancel") == 0 || strcmp(seg[3], "retry") == 0)) {
				if (!post) {
					method_not_allowed(req, "POST");
					return;
				}
				route_cancel_retry(a, req, seg[2], seg[3][0] == 'r');
				return;
			}
		}
	}
	snprintf(msg, sizeof(msg), "no route for %s %.200s; see docs/api.md for the routes", method,
		 path);
	respond_error(req, 404, SAGAD_ENOENT, msg);
}

struct api *api_new(const struct api_options *opt)
{
	struct api *a = xcalloc(1, sizeof(*a));

	a->engine = opt->engine;
	a->store = opt->store;
	a->flows = opt->flows;
	a->ready = opt->ready;
	a->not_ready_reason = opt->not_ready_reason;
	a->default_wait_ms = opt->default_wait_ms > 0 ? opt->default_wait_ms : 30000;
	a->auth = opt->auth;
	return a;
}

void api_free(struct api *a)
{
	free(a);
}
