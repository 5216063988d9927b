/* fuzz-api.c: the admin API's request handling (api_handle) on arbitrary requests, with the
 * real engine and a real SQLite store, and without a socket.
 *
 * The input is a request as text: a first line "METHOD TARGET" (TARGET is the path with an
 * optional ?query), then "Name: value" header lines, an empty line, and the body (the rest).
 * This file implements httpd.h's request half in memory (struct httpd_req and its accessors),
 * so httpd.c is not linked: api.c talks to exactly the interface it has in sagad. A new
 * httpd_req_* function used by api.c must be added here too (the link fails until it is).
 *
 * The engine runs the flows of tests/fuzz/flows/, whose participant refuses connections, so a
 * started saga ends within a few loop turns. After the handler the harness runs the loop
 * (flushing like the daemon's per-turn hook) until the request is answered, then gives up and
 * plays the client going away.
 *
 * Checks: every request is answered exactly once, or has an abort callback; the status is
 * 200..599; an answer with a JSON content type is JSON, and an error (>= 400) has a string
 * error.code and a non-empty error.message; the request is not touched after it was answered
 * (freed at once: ASan reports a late access); commits succeed. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>
#include "api.h"
#include "dsl.h"
#include "engine.h"
#include "error.h"
#include "flow.h"
#include "fuzz.h"
#include "http.h"
#include "httpd.h"
#include "log.h"
#include "store.h"
#include "util.h"

#ifndef TEST_SRCDIR
#error "build with -DTEST_SRCDIR='\"/abs/path/to/source\"'"
#endif

/* ---- httpd.h's request half, in memory -------------------------------------------------- */

struct httpd_req {
	char *method, *path;
	char **q;                    /* name, value, ... (decoded) */
	size_t nq;
	char **h;                    /* name, value, ... */
	size_t nh;
	char *body;
	size_t body_len;
	httpd_abort_cb abort_cb;
	void *abort_arg;
};

static struct {
	struct httpd_req *req;       /* the request of this input, until answered or aborted */
	bool answered;
	int status;
} cur;

static void req_free(struct httpd_req *r)
{
	for (size_t i = 0; i < 2 * r->nq; i++)
		free(r->q[i]);
	for (size_t i = 0; i < 2 * r->nh; i++)
		free(r->h[i]);
	free(r->q);
	free(r->h);
	free(r->method);
	free(r->path);
	free(r->body);
	free(r);
}

const char *httpd_req_method(const struct httpd_req *r)
{
	return r->method;
}

const char *httpd_req_path(const struct httpd_req *r)
{
	return r->path;
}

const char *httpd_req_query(const struct httpd_req *r, const char *name)
{
	for (size_t i = 0; i < r->nq; i++)
		if (strcmp(r->q[2 * i], name) == 0)
			return r->q[2 * i + 1];
	return NULL;
}

int httpd_req_query_prefix(const struct httpd_req *r, const char *prefix, const char **name,
			   const char **value)
{
	int n = 0;

	*name = *value = NULL;
	for (size_t i = 0; i < r->nq; i++)
		if (strncmp(r->q[2 * i], prefix, strlen(prefix)) == 0 && n++ == 0) {
			*name = r->q[2 * i];
			*value = r->q[2 * i + 1];
		}
	return n;
}

const char *httpd_req_header(const struct httpd_req *r, const char *name)
{
	for (size_t i = 0; i < r->nh; i++)
		if (strcasecmp(r->h[2 * i], name) == 0)
			return r->h[2 * i + 1];
	return NULL;
}

const char *httpd_req_body(const struct httpd_req *r, size_t *len)
{
	if (len != NULL)
		*len = r->body_len;
	return r->body != NULL ? r->body : "";
}

const char *httpd_req_peer(const struct httpd_req *r)
{
	(void)r;
	return "127.0.0.1";
}

void httpd_req_on_abort(struct httpd_req *r, httpd_abort_cb cb, void *arg)
{
	r->abort_cb = cb;
	r->abort_arg = arg;
}

void httpd_respond(struct httpd_req *r, int status, const char *content_type, const char *body,
		   size_t len, const char *const *headers)
{
	FUZZ_CHECK(r == cur.req && !cur.answered, "an answer to a request that is not awaiting one");
	FUZZ_CHECK(status >= 200 && status <= 599, "status %d", status);
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2)
		FUZZ_CHECK(headers[i + 1] != NULL, "header %s without a value", headers[i]);
	if (content_type != NULL && strncmp(content_type, "application/json", 16) == 0) {
		json_error_t je;
		json_t *v = json_loadb(body, len, 0, &je);

		FUZZ_CHECK(v != NULL, "%s %s: answer %d is not JSON (%s): %.*s", r->method, r->path,
			   status, je.text, (int)len, body);
		if (status >= 400) {
			json_t *e = json_object_get(v, "error");
			const char *msg = json_string_value(json_object_get(e, "message"));

			FUZZ_CHECK(json_is_string(json_object_get(e, "code")) && msg != NULL &&
				   msg[0] != '\0', "error %d without code and message: %.*s", status,
				   (int)len, body);
		}
		json_decref(v);
	}
	cur.answered = true;
	cur.status = status;
	cur.req = NULL;
	req_free(r);            /* invalid from now on, as in httpd.c */
}

/* ---- parsing the input into a request ---------------------------------------------------- */

/* Percent-decodes s[0..n) into a new string (libmicrohttpd does this for paths and query
 * arguments, '+' meaning a space in arguments); a decoded NUL ends the string. */
static char *decode(const char *s, size_t n, bool plus)
{
	char *o = xmalloc(n + 1);
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && util_hex_digit(s[i + 1]) >= 0 && util_hex_digit(s[i + 2]) >= 0) {
			o[k++] = (char)(util_hex_digit(s[i + 1]) * 16 + util_hex_digit(s[i + 2]));
			i += 2;
		} else {
			o[k++] = plus && s[i] == '+' ? ' ' : s[i];
		}
	}
	o[k] = '\0';
	return o;
}

static void add_pair(char ***v, size_t *n, char *name, char *value)
{
	*v = xrealloc(*v, (*n + 1) * 2 * sizeof(**v));
	(*v)[2 * *n] = name;
	(*v)[2 * *n + 1] = value;
	(*n)++;
}

static void parse_query(struct httpd_req *r, const char *q, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t end = i, eq;

		while (end < n && q[end] != '&')
			end++;
		for (eq = i; eq < end && q[eq] != '='; eq++)
			;
		if (end > i)
			add_pair(&r->q, &r->nq, decode(q + i, eq - i, true),
				 eq < end ? decode(q + eq + 1, end - eq - 1, true) : xstrdup(""));
		i = end + 1;
	}
}

/* The line starting at *pos (without its \r\n); advances *pos past it. */
static const char *next_line(const char *s, size_t size, size_t *pos, size_t *len)
{
	const char *start = s + *pos;
	size_t i = *pos;

	if (i >= size)
		return NULL;
	while (i < size && s[i] != '\n')
		i++;
	*len = i - *pos;
	if (*len > 0 && start[*len - 1] == '\r')
		(*len)--;
	*pos = i < size ? i + 1 : size;
	return start;
}

static struct httpd_req *parse_request(const uint8_t *data, size_t size)
{
	struct httpd_req *r = xcalloc(1, sizeof(*r));
	const char *s = (const char *)data, *line, *sp, *qm;
	size_t pos = 0, len;

	line = next_line(s, size, &pos, &len);
	if (line == NULL) {
		r->method = xstrdup("GET");
		r->path = xstrdup("/");
		return r;
	}
	sp = memchr(line, ' ', len);
	r->method = sp != NULL ? decode(line, (size_t)(sp - line), false) : decode(line, len, false);
	if (sp == NULL) {
		r->path = xstrdup("/");
	} else {
		const char *target = sp + 1;
		size_t tlen = len - (size_t)(target - line);

		qm = memchr(target, '?', tlen);
		r->path = decode(target, qm ? (size_t)(qm - target) : tlen, false);
		if (qm != NULL)
			parse_query(r, qm + 1, tlen - (size_t)(qm + 1 - target));
	}
	while ((line = next_line(s, size, &pos, &len)) != NULL && len > 0) {
		const char *colon = memchr(line, ':', len);
		size_t vstart;

		if (colon == NULL)
			continue;
		vstart = (size_t)(colon - line) + 1;
		while (vstart < len && (line[vstart] == ' ' || line[vstart] == '\t'))
			vstart++;
		add_pair(&r->h, &r->nh, decode(line, (size_t)(colon - line), false),
			 decode(line + vstart, len - vstart, false));
	}
	if (pos < size) {
		r->body_len = size - pos;
		r->body = xmalloc(r->body_len + 1);
		memcpy(r->body, s + pos, r->body_len);
		r->body[r->body_len] = '\0';   /* httpd.c's buffer is NUL-terminated too */
	}
	return r;
}

/* ---- the daemon around the API ------------------------------------------------------------- */

static struct {
	char dir[64];
	struct store *store;
	struct http_client *http;
	struct engine *engine;
	struct api *api;
	struct flow_set *flows;
	bool ready;
	const char *not_ready_reason;
} D;

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", D.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz-api: cannot remove %s\n", D.dir);
}

static void remember(struct flow *f)
{
	FILE *fp = fopen(f->file, "r");
	struct strbuf b;
	char chunk[4096];
	size_t n;

	FUZZ_CHECK(fp != NULL, "cannot read %s", f->file);
	strbuf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		strbuf_add(&b, chunk, n);
	fclose(fp);
	FUZZ_CHECK(store_flow_put(D.store, f->name, f->version, b.data ? b.data : "") == 0,
		   "store_flow_put %s", f->name);
	strbuf_close(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct store_options so = { 0 };
	struct http_client_options ho = { 0 };
	struct engine_options eo = { 0 };
	struct api_options ao = { 0 };
	struct dsl_errors errs = { 0 };
	char err[512], db[128];
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	log_min_level = LOG_ERROR;
	snprintf(D.dir, sizeof(D.dir), "%s/fuzz-api.XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	FUZZ_CHECK(mkdtemp(D.dir) != NULL, "mkdtemp %s", D.dir);
	atexit(cleanup);
	snprintf(db, sizeof(db), "%s/sagad.db", D.dir);
	so.path = db;
	so.synchronous = "OFF";     /* speed: durability is not what this target tests */
	FUZZ_CHECK(store_open(&so, &D.store, err, sizeof(err)) == 0, "store_open: %s", err);
	FUZZ_CHECK(http_client_new(uv_default_loop(), &ho, &D.http) == 0, "http_client_new");
	D.flows = xcalloc(1, sizeof(*D.flows));
	flow_set_init(D.flows);
	if (dsl_load_dir(TEST_SRCDIR "/tests/fuzz/flows", NULL, D.flows, &errs) != 0) {
		char *all = dsl_errors_format(&errs);
		FUZZ_CHECK(0, "tests/fuzz/flows: %s", all);
	}
	dsl_errors_close(&errs);
	for (size_t i = 0; i < D.flows->n; i++)
		remember(D.flows->flows[i]);
	eo.loop = uv_default_loop();
	eo.store = D.store;
	eo.http = D.http;
	eo.flows = D.flows;
	FUZZ_CHECK(engine_new(&eo, &D.engine) == 0, "engine_new");
	FUZZ_CHECK(engine_recover(D.engine) == 0, "engine_recover");
	FUZZ_CHECK(engine_flush(D.engine) == 0, "engine_flush");
	D.ready = true;
	D.not_ready_reason = "recovering unfinished sagas";
	ao.engine = D.engine;
	ao.store = D.store;
	ao.flows = &D.flows;
	ao.ready = &D.ready;
	ao.not_ready_reason = &D.not_ready_reason;
	ao.default_wait_ms = 2000;
	D.api = api_new(&ao);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpd_req *r = parse_request(data, size);

	cur.req = r;
	cur.answered = false;
	cur.status = 0;
	api_handle(r, D.api);
	FUZZ_CHECK(engine_flush(D.engine) == 0, "commit failed");
	/* The daemon's loop: a start that waits for completion is answered once the call to the
	 * refusing participant failed and the saga ended, a few turns later. */
	for (int turn = 0; turn < 400 && (!cur.answered || engine_inflight(D.engine) > 0); turn++) {
		uv_run(uv_default_loop(), UV_RUN_NOWAIT);
		FUZZ_CHECK(engine_flush(D.engine) == 0, "commit failed");
		if (turn > 20)
			usleep(1000);
	}
	if (!cur.answered) {
		/* Still waiting (a long ?timeout=, a saga waiting on a retry): the client leaves. */
		FUZZ_CHECK(r->abort_cb != NULL, "%s %s: neither answered nor waiting with an abort "
			   "callback", r->method, r->path);
		cur.req = NULL;
		r->abort_cb(r, r->abort_arg);
		req_free(r);
		FUZZ_CHECK(engine_flush(D.engine) == 0, "commit failed");
	}
	if (getenv("FUZZ_API_TRACE") != NULL)
		fprintf(stderr, "fuzz-api: answered %d\n", cur.answered ? cur.status : 0);
	return 0;
}
