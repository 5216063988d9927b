/* flow.c: operations on compiled flows: references, input checks, request rendering, success
 * judgement, response pruning, backoff, and the set of loaded flows. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "error.h"
#include "expr.h"
#include "flow.h"
#include "util.h"

#define MSG_JSON_MAX 200    /* JSON values quoted in messages are cut to this many bytes */

/* --- references ---------------------------------------------------------------------------- */

static void headers_free(struct flow_header *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(h[i].name);
		tmpl_free(h[i].value);
	}
	free(h);
}

static void request_close(struct flow_request *r)
{
	size_t i;

	free(r->method);
	tmpl_free(r->path);
	headers_free(r->query, r->n_query);
	headers_free(r->headers, r->n_headers);
	tmpl_free(r->body);
	free(r->ok_status);
	json_decref(r->body_equals);
	for (i = 0; i < r->n_fields; i++) {
		if (r->field_paths != NULL)
			free(r->field_paths[i]);
		if (r->field_equals != NULL)
			json_decref(r->field_equals[i]);
	}
	free(r->field_paths);
	free(r->field_equals);
}

static void flow_free(struct flow *f)
{
	size_t i, j;

	free(f->name);
	free(f->description);
	free(f->file);
	for (i = 0; i < f->n_inputs; i++) {
		free(f->inputs[i].name);
		json_decref(f->inputs[i].default_value);
	}
	free(f->inputs);
	for (i = 0; i < f->n_participants; i++) {
		free(f->participants[i].name);
		free(f->participants[i].base_url);
		headers_free(f->participants[i].headers, f->participants[i].n_headers);
	}
	free(f->participants);
	for (i = 0; i < f->n_steps; i++) {
		struct flow_step *st = &f->steps[i];
		free(st->name);
		request_close(&st->action);
		if (st->compensation != NULL) {
			request_close(st->compensation);
			free(st->compensation);
		}
		free(st->subflow_name);
		tmpl_free(st->subflow_input);
		for (j = 0; j < st->n_keep; j++)
			free(st->keep[j]);
		free(st->keep);
	}
	free(f->steps);
	tmpl_free(f->output);
	if (f->wait_steps != NULL) {
		for (i = 0; f->wait_steps[i] != NULL; i++)
			free(f->wait_steps[i]);
		free(f->wait_steps);
	}
	json_decref(f->source);
	free(f);
}

struct flow *flow_ref(struct flow *f)
{
	assert(f->refs > 0);
	f->refs++;
	return f;
}

void flow_unref(struct flow *f)
{
	if (f == NULL)
		return;
	assert(f->refs > 0);
	if (--f->refs == 0)
		flow_free(f);
}

const char *input_type_name(enum input_type t)
{
	static const char *const names[INPUT_TYPE_MAX] = {
		"any", "string", "integer", "number", "boolean", "object", "array",
	};

	return t < INPUT_TYPE_MAX ? names[t] : "?";
}

const struct flow_step *flow_find_step(const struct flow *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n_steps; i++)
		if (strcmp(f->steps[i].name, name) == 0)
			return &f->steps[i];
	return NULL;
}

/* --- input --------------------------------------------------------------------------------- */

static const char *json_type_word(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

bool flow_input_type_ok(enum input_type t, const json_t *v)
{
	switch (t) {
	case INPUT_ANY: return true;
	case INPUT_STRING: return json_is_string(v);
	case INPUT_INTEGER: return json_is_integer(v);
	case INPUT_NUMBER: return json_is_number(v);
	case INPUT_BOOLEAN: return json_is_boolean(v);
	case INPUT_OBJECT: return json_is_object(v);
	case INPUT_ARRAY: return json_is_array(v);
	case INPUT_TYPE_MAX: break;
	}
	return false;
}

static void problem(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct strbuf *b, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (b->len > 0)
		strbuf_add(b, "; ", 2);
	strbuf_adds(b, msg);
}

static const struct flow_input_field *find_input(const struct flow *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n_inputs; i++)
		if (strcmp(f->inputs[i].name, name) == 0)
			return &f->inputs[i];
	return NULL;
}

/* A field that is absent or null takes its default; absent and required is an error; a
 * present non-null value must have the declared type. */
int flow_check_input(const struct flow *f, json_t **input, char *err, size_t errlen)
{
	json_t *in = *input, *out = NULL, *v;
	struct strbuf probs, declared;
	const char *key;
	size_t i;
	int r = 0;

	if (!json_is_object(in)) {
		snprintf(err, errlen, "input must be a JSON object");
		return SAGAD_EINPUT;
	}
	strbuf_init(&probs);
	for (i = 0; i < f->n_inputs; i++) {
		const struct flow_input_field *fd = &f->inputs[i];
		v = json_object_get(in, fd->name);
		if (v == NULL || json_is_null(v)) {
			if (fd->default_value != NULL) {
				if (out == NULL)
					out = json_copy(in);
				json_object_set_new(out, fd->name, json_deep_copy(fd->default_value));
			} else if (fd->required) {
				problem(&probs, "input.%s: required field %s", fd->name,
					v == NULL ? "missing" : "is null");
			}
			continue;
		}
		if (!flow_input_type_ok(fd->type, v))
			problem(&probs, "input.%s: expected %s, got %s", fd->name,
				input_type_name(fd->type), json_type_word(v));
	}
	if (f->input_closed) {
		strbuf_init(&declared);
		for (i = 0; i < f->n_inputs; i++)
			strbuf_addf(&declared, "%s%s", i ? ", " : "", f->inputs[i].name);
		json_object_foreach(in, key, v)
			if (find_input(f, key) == NULL)
				problem(&probs, "input.%s: unknown field (declared: %s)", key,
					declared.len ? declared.data : "none");
		strbuf_close(&declared);
	}
	if (probs.len > 0) {
		snprintf(err, errlen, "%s", probs.data);
		json_decref(out);
		r = SAGAD_EINPUT;
		goto out;
	}
	if (out != NULL) {
		json_decref(in);
		*input = out;
	}
out:
	strbuf_close(&probs);
	return r;
}

/* --- requests ------------------------------------------------------------------------------ */

void flow_rendered_close(struct flow_rendered *r)
{
	size_t i;

	free(r->method);
	free(r->url);
	for (i = 0; i < r->n_headers; i++)
		free(r->headers[i]);
	free(r->headers);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* RFC 3986: unreserved characters stay, every other byte is %XX. */
static void add_urlencoded(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char esc[3] = { '%' };

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			strbuf_add(b, p, 1);
		} else {
			esc[1] = hex[*p >> 4];
			esc[2] = hex[*p & 15];
			strbuf_add(b, esc, 3);
		}
	}
}

/* A path keeps its structure ('/', '?', '%', ...), but bytes never valid in a URL (controls,
 * space, non-ASCII, "<>\^`{|}) are percent-encoded. */
static void add_path(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char esc[3] = { '%' };

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || strchr("\"<>\\^`{|}", *p) != NULL) {
			esc[1] = hex[*p >> 4];
			esc[2] = hex[*p & 15];
			strbuf_add(b, esc, 3);
		} else {
			strbuf_add(b, p, 1);
		}
	}
}

static void push_header(struct flow_rendered *out, char *line)
{
	out->headers = xrealloc(out->headers, (out->n_headers + 1) * sizeof(*out->headers));
	out->headers[out->n_headers++] = line;
}

static int render_headers(const struct flow_header *h, size_t n, json_t *ctx,
			  struct flow_rendered *out, char *err, size_t errlen)
{
	char msg[512], *v;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((v = tmpl_eval_string(h[i].value, ctx, msg, sizeof(msg))) == NULL) {
			snprintf(err, errlen, "header %s: %s", h[i].name, msg);
			return SAGAD_ETEMPLATE;
		}
		if (strpbrk(v, "\r\n") != NULL) {
			snprintf(err, errlen, "header %s: value contains CR or LF", h[i].name);
			free(v);
			return SAGAD_ETEMPLATE;
		}
		push_header(out, xasprintf("%s: %s", h[i].name, v));
		free(v);
	}
	return 0;
}

static bool has_header(const struct flow_rendered *r, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < r->n_headers; i++)
		if (strncasecmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':')
			return true;
	return false;
}

int flow_render_request(const struct participant *p, const struct flow_request *req,
			json_t *ctx, struct flow_rendered *out, char *err, size_t errlen)
{
	char msg[512], *path = NULL, *v;
	struct strbuf url;
	json_t *body;
	size_t i;
	int r = SAGAD_ETEMPLATE;

	memset(out, 0, sizeof(*out));
	strbuf_init(&url);
	out->method = xstrdup(req->method);

	if ((path = tmpl_eval_string(req->path, ctx, msg, sizeof(msg))) == NULL) {
		snprintf(err, errlen, "path: %s", msg);
		goto fail;
	}
	if (path[0] != '/') {
		snprintf(err, errlen, "path: \"%.200s\" does not start with \"/\"", path);
		goto fail;
	}
	strbuf_adds(&url, p->base_url);
	add_path(&url, path);
	for (i = 0; i < req->n_query; i++) {
		if ((v = tmpl_eval_string(req->query[i].value, ctx, msg, sizeof(msg))) == NULL) {
			snprintf(err, errlen, "query %s: %s", req->query[i].name, msg);
			goto fail;
		}
		strbuf_add(&url, i == 0 && strchr(path, '?') == NULL ? "?" : "&", 1);
		add_urlencoded(&url, req->query[i].name);
		strbuf_add(&url, "=", 1);
		add_urlencoded(&url, v);
		free(v);
	}
	out->url = strbuf_detach(&url);

	if ((r = render_headers(p->headers, p->n_headers, ctx, out, err, errlen)) < 0)
		goto fail;
	if ((r = render_headers(req->headers, req->n_headers, ctx, out, err, errlen)) < 0)
		goto fail;
	r = SAGAD_ETEMPLATE;
	if (req->body != NULL) {
		if ((body = tmpl_eval(req->body, ctx, msg, sizeof(msg))) == NULL) {
			snprintf(err, errlen, "body: %s", msg);
			goto fail;
		}
		out->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(body);
		if (out->body == NULL)
			fatalx("flow: json_dumps failed");
		out->body_len = strlen(out->body);
		if (!has_header(out, "content-type"))
			push_header(out, xstrdup("Content-Type: application/json"));
	}
	free(path);
	return 0;
fail:
	free(path);
	strbuf_close(&url);
	flow_rendered_close(out);
	return r;
}

/* --- judging and keeping ------------------------------------------------------------------- */

/* Compact JSON of v for a message, cut to MSG_JSON_MAX bytes. */
static char *show(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s == NULL)
		return xstrdup("?");
	if (strlen(s) > MSG_JSON_MAX)
		strcpy(s + MSG_JSON_MAX - 3, "...");
	return s;
}

bool flow_judge(const struct flow_request *req, int status, json_t *body, char *err, size_t errlen)
{
	struct strbuf b;
	char *got, *want;
	json_t *v;
	size_t i;

	if (req->n_ok_status == 0) {
		if (status < 200 || status > 299) {
			snprintf(err, errlen, "status %d not in 200-299", status);
			return false;
		}
	} else {
		for (i = 0; i < req->n_ok_status && req->ok_status[i] != status; i++)
			;
		if (i == req->n_ok_status) {
			strbuf_init(&b);
			for (i = 0; i < req->n_ok_status; i++)
				strbuf_addf(&b, "%s%d", i ? ", " : "", req->ok_status[i]);
			snprintf(err, errlen, "status %d not in [%s]", status, b.data);
			strbuf_close(&b);
			return false;
		}
	}
	if ((req->has_body_equals || req->n_fields > 0) && body == NULL) {
		snprintf(err, errlen, "response body is not JSON");
		return false;
	}
	if (req->has_body_equals && !json_equal(body, req->body_equals)) {
		got = show(body);
		want = show(req->body_equals);
		snprintf(err, errlen, "body is %s, expected %s", got, want);
		free(got);
		free(want);
		return false;
	}
	for (i = 0; i < req->n_fields; i++) {
		v = expr_lookup(body, req->field_paths[i]);
		if (v != NULL && json_equal(v, req->field_equals[i]))
			continue;
		want = show(req->field_equals[i]);
		if (v == NULL) {
			snprintf(err, errlen, "body.%s is missing, expected %s", req->field_paths[i], want);
		} else {
			got = show(v);
			snprintf(err, errlen, "body.%s is %s, expected %s", req->field_paths[i], got, want);
			free(got);
		}
		free(want);
		return false;
	}
	return true;
}

/* Copies the value at segs into dst (an object mirroring src), creating objects on the way.
 * At an index segment the whole array is kept. A path that is not in src is skipped. */
static void keep_path(json_t *dst, json_t *src, char **segs, size_t n)
{
	json_t *s, *d;
	size_t i, end;

	/* How far the path goes: up to the first index (the array is kept whole). */
	for (end = 0, s = src; end < n && segs[end][0] != '['; end++)
		if ((s = json_object_get(s, segs[end])) == NULL)
			return;               /* missing, or not an object on the way */
	if (end == 0 || (end < n && !json_is_array(s)))
		return;
	for (i = 0; i < end; i++) {
		s = json_object_get(src, segs[i]);
		d = json_object_get(dst, segs[i]);
		if (d == s)                     /* already kept whole */
			return;
		if (i + 1 == end) {
			json_object_set(dst, segs[i], s);
			return;
		}
		if (d == NULL) {
			d = json_object();
			json_object_set_new(dst, segs[i], d);
		}
		dst = d;
		src = s;
	}
}

json_t *flow_keep(const struct flow_step *st, json_t *response)
{
	json_t *out, *status;
	char **segs;
	size_t i, n;

	if (st->keep == NULL || !json_is_object(response))
		return json_incref(response);
	out = json_object();
	if ((status = json_object_get(response, "status")) != NULL)
		json_object_set(out, "status", status);
	for (i = 0; i < st->n_keep; i++) {
		if ((segs = expr_path_split(st->keep[i], &n)) == NULL)
			continue;
		keep_path(out, response, segs, n);
		expr_path_free(segs);
	}
	return out;
}

json_t *flow_render_output(const struct flow *f, json_t *ctx, char *err, size_t errlen)
{
	json_t *out, *steps, *resp;
	size_t i;

	if (f->output != NULL)
		return tmpl_eval(f->output, ctx, err, errlen);
	out = json_object();
	steps = json_object_get(ctx, "steps");
	for (i = 0; i < f->n_steps && json_is_object(steps); i++) {
		resp = json_object_get(json_object_get(steps, f->steps[i].name), "response");
		if (resp != NULL)
			json_object_set(out, f->steps[i].name, resp);
	}
	return out;
}

json_t *flow_render_subflow_input(const struct flow_step *st, json_t *ctx, char *err, size_t errlen)
{
	json_t *v;

	if (st->subflow_input == NULL)
		return json_object();
	if ((v = tmpl_eval(st->subflow_input, ctx, err, errlen)) == NULL)
		return NULL;
	if (!json_is_object(v)) {
		snprintf(err, errlen, "step \"%s\": sub-flow input must be an object, got %s",
			 st->name, json_type_word(v));
		json_decref(v);
		return NULL;
	}
	return v;
}

/* --- retries ------------------------------------------------------------------------------- */

int64_t flow_backoff_ms(const struct retry_policy *rp, int attempt, int64_t retry_after_ms)
{
	double d, cap;
	uint64_t rnd;
	int64_t ms;

	if (attempt < 2)
		return 0;
	d = (double)rp->initial_backoff_ms * pow(rp->multiplier > 0 ? rp->multiplier : 1,
						 attempt - 2);
	if (!(d <= (double)rp->max_backoff_ms))     /* also catches inf and nan */
		d = (double)rp->max_backoff_ms;
	if (rp->jitter > 0) {
		util_random(&rnd, sizeof(rnd));
		d *= 1 - rp->jitter + 2 * rp->jitter * ((double)(rnd >> 11) * 0x1.0p-53);
	}
	ms = d > 0 ? (int64_t)llround(d) : 0;
	if (retry_after_ms >= 0 && retry_after_ms > ms) {
		cap = fmax(10.0 * (double)rp->max_backoff_ms, 300000.0);
		ms = (double)retry_after_ms < cap ? retry_after_ms : (int64_t)cap;
		if (ms < 0)
			ms = 0;
	}
	return ms;
}

/* --- the set of loaded flows --------------------------------------------------------------- */

void flow_set_init(struct flow_set *fs)
{
	fs->flows = NULL;
	fs->n = 0;
}

void flow_set_close(struct flow_set *fs)
{
	size_t i;

	for (i = 0; i < fs->n; i++)
		flow_unref(fs->flows[i]);
	free(fs->flows);
	flow_set_init(fs);
}

int flow_set_add(struct flow_set *fs, struct flow *f)
{
	if (flow_set_find_version(fs, f->name, f->version) != NULL)
		return SAGAD_EEXIST;
	fs->flows = xrealloc(fs->flows, (fs->n + 1) * sizeof(*fs->flows));
	fs->flows[fs->n++] = flow_ref(f);
	return 0;
}

struct flow *flow_set_find(const struct flow_set *fs, const char *name)
{
	struct flow *best = NULL;
	size_t i;

	for (i = 0; i < fs->n; i++)
		if (strcmp(fs->flows[i]->name, name) == 0 &&
		    (best == NULL || fs->flows[i]->version > best->version))
			best = fs->flows[i];
	return best;
}

struct flow *flow_set_find_version(const struct flow_set *fs, const char *name, int version)
{
	size_t i;

	for (i = 0; i < fs->n; i++)
		if (fs->flows[i]->version == version && strcmp(fs->flows[i]->name, name) == 0)
			return fs->flows[i];
	return NULL;
}
