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

static void strings_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

static void fields_free(char **paths, json_t **equals, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (paths != NULL)
			free(paths[i]);
		if (equals != NULL)
			json_decref(equals[i]);
	}
	free(paths);
	free(equals);
}

static void reply_free(struct flow_reply *r)
{
	if (r == NULL)
		return;
	free(r->topic);
	free(r->correlate_path);
	tmpl_free(r->correlate_value);
	free(r->type_path);
	strings_free(r->success_types, r->n_success_types);
	strings_free(r->failure_types, r->n_failure_types);
	fields_free(r->field_paths, r->field_equals, r->n_fields);
	free(r);
}

static void request_close(struct flow_request *r)
{

	free(r->method);
	tmpl_free(r->path);
	headers_free(r->query, r->n_query);
	headers_free(r->headers, r->n_headers);
	tmpl_free(r->body);
	free(r->ok_status);
	json_decref(r->body_equals);
	fields_free(r->field_paths, r->field_equals, r->n_fields);
	free(r->topic);
	tmpl_free(r->key);
	reply_free(r->reply);
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
		free(f->participants[i].topic);
		free(f->participants[i].reply_topic);
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
		tmpl_free(st->when);
		json_decref(st->fallback_value);
		if (st->saga_ref != NULL) {
			free(st->saga_ref->flow);
			free(st->saga_ref->key_name);
			tmpl_free(st->saga_ref->key_value);
			strings_free(st->saga_ref->states, st->saga_ref->n_states);
			free(st->saga_ref);
		}
	}
	free(f->steps);
	headers_free(f->keys, f->n_keys);
	for (i = 0; i < f->n_triggers; i++) {
		struct flow_trigger *t = &f->triggers[i];

		free(t->topic);
		free(t->type_path);
		strings_free(t->types, t->n_types);
		fields_free(t->field_paths, t->field_equals, t->n_fields);
		tmpl_free(t->input);
	}
	free(f->triggers);
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
	const unsigned char *p = (const unsigned char *)s, *run = p;
	char esc[3] = { '%' };

	/* runs of plain bytes in one strbuf_add() each: a per-byte add and strchr() cost about
	 * 400 instructions per request */
	for (;; p++) {
		unsigned c = *p;

		if (c > 0x20 && c < 0x7f && c != '"' && c != '<' && c != '>' && c != '\\' &&
		    c != '^' && c != '`' && c != '{' && c != '|' && c != '}')
			continue;
		if (p > run)
			strbuf_add(b, run, (size_t)(p - run));
		if (c == '\0')
			return;
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 15];
		strbuf_add(b, esc, 3);
		run = p + 1;
	}
}

static void push_line(char ***lines, size_t *n, char *line)
{
	*lines = xrealloc(*lines, (*n + 1) * sizeof(**lines));
	(*lines)[(*n)++] = line;
}

static void push_header(struct flow_rendered *out, char *line)
{
	push_line(&out->headers, &out->n_headers, line);
}

/* Renders h[0..n) as "name: value" lines appended to lines. */
static int render_headers(const struct flow_header *h, size_t n, json_t *ctx, char ***lines,
			  size_t *n_lines, char *err, size_t errlen)
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
		push_line(lines, n_lines, xasprintf("%s: %s", h[i].name, v));
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

/* The participant's default headers, then the request's, as "Name: value" lines appended to
 * *lines. Returns 0 or SAGAD_ETEMPLATE with err. */
static int render_all_headers(const struct participant *p, const struct flow_request *req,
			      json_t *ctx, char ***lines, size_t *n, char *err, size_t errlen)
{
	int r;

	if (p != NULL && (r = render_headers(p->headers, p->n_headers, ctx, lines, n, err,
					     errlen)) < 0)
		return r;
	return render_headers(req->headers, req->n_headers, ctx, lines, n, err, errlen);
}

/* req's body as compact JSON in *text (malloc()ed; NULL and 0 when it has none). */
static int render_body(const struct flow_request *req, json_t *ctx, char **text, size_t *len,
		       char *err, size_t errlen)
{
	char msg[512];
	struct strbuf b;

	*text = NULL;
	*len = 0;
	if (req->body == NULL)
		return 0;
	/* Straight to text: a third of the instructions of tmpl_eval() and json_dumps(). */
	strbuf_init(&b);
	if (tmpl_eval_json(req->body, ctx, &b, msg, sizeof(msg)) != 0) {
		strbuf_close(&b);
		snprintf(err, errlen, "body: %s", msg);
		return SAGAD_ETEMPLATE;
	}
	*len = b.len;
	*text = strbuf_detach(&b);
	return 0;
}

int flow_render_request(const struct participant *p, const struct flow_request *req,
			json_t *ctx, struct flow_rendered *out, char *err, size_t errlen)
{
	char msg[512], *path = NULL, *v;
	struct strbuf url;
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

	if ((r = render_all_headers(p, req, ctx, &out->headers, &out->n_headers, err, errlen)) < 0 ||
	    (r = render_body(req, ctx, &out->body, &out->body_len, err, errlen)) < 0)
		goto fail;
	if (out->body != NULL && !has_header(out, "content-type"))
		push_header(out, xstrdup("Content-Type: application/json"));
	free(path);
	return 0;
fail:
	free(path);
	strbuf_close(&url);
	flow_rendered_close(out);
	return r;
}

/* --- Kafka messages ------------------------------------------------------------------------ */

void flow_message_close(struct flow_message *m)
{
	size_t i;

	free(m->topic);
	free(m->key);
	for (i = 0; i < m->n_headers; i++)
		free(m->headers[i]);
	free(m->headers);
	free(m->value);
	memset(m, 0, sizeof(*m));
}

int flow_render_message(const struct participant *p, const struct flow_request *req,
			json_t *ctx, struct flow_message *out, char *err, size_t errlen)
{
	const char *topic = req->topic != NULL ? req->topic : p != NULL ? p->topic : NULL;
	char msg[512];
	int r = SAGAD_ETEMPLATE;

	memset(out, 0, sizeof(*out));
	if (topic == NULL) {
		snprintf(err, errlen, "no topic: set topic on the request or on participant \"%s\"",
			 p != NULL ? p->name : "?");
		return SAGAD_ETEMPLATE;
	}
	out->topic = xstrdup(topic);
	if (req->key != NULL && (out->key = tmpl_eval_string(req->key, ctx, msg, sizeof(msg))) == NULL) {
		snprintf(err, errlen, "key: %s", msg);
		goto fail;
	}
	if ((r = render_all_headers(p, req, ctx, &out->headers, &out->n_headers, err, errlen)) < 0 ||
	    (r = render_body(req, ctx, &out->value, &out->value_len, err, errlen)) < 0)
		goto fail;
	return 0;
fail:
	flow_message_close(out);
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

/* --- Kafka replies and triggers ------------------------------------------------------------ */

/* The value at a message path: "header:NAME" reads msg.headers (an exact name first, then any
 * case), anything else is a path into msg.body. Borrowed, or NULL. */
static json_t *msg_lookup(json_t *msg, const char *path)
{
	json_t *h, *v, *body;
	const char *k;

	if (strncmp(path, "header:", 7) == 0) {
		if (!json_is_object(h = json_object_get(msg, "headers")))
			return NULL;
		if ((v = json_object_get(h, path + 7)) != NULL)
			return v;
		json_object_foreach(h, k, v)
			if (strcasecmp(k, path + 7) == 0)
				return v;
		return NULL;
	}
	if ((body = json_object_get(msg, "body")) == NULL)
		return NULL;
	return expr_lookup(body, path);
}

/* The value at a message path as text: a string as is; a number or boolean as its JSON text
 * (so a Long id 42 matches "42"); NULL for anything else. A converted text is cached in msg
 * under "_text" (path -> text) so the result is borrowed from msg like a string would be. */
static const char *msg_text(json_t *msg, const char *path)
{
	json_t *v = msg_lookup(msg, path), *cache;
	char *s;

	if (v == NULL)
		return NULL;
	if (json_is_string(v))
		return json_string_value(v);
	if (!json_is_number(v) && !json_is_boolean(v))
		return NULL;
	if (!json_is_object(cache = json_object_get(msg, "_text"))) {
		cache = json_object();
		json_object_set_new(msg, "_text", cache);
	}
	if (json_is_string(json_object_get(cache, path)))   /* an earlier result stays valid */
		return json_string_value(json_object_get(cache, path));
	if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		fatalx("flow: json_dumps failed");
	json_object_set_new(cache, path, json_string(s));
	free(s);
	return json_string_value(json_object_get(cache, path));
}

/* How a path reads in messages: "body.status" or "header type". */
static char *path_name(const char *path)
{
	if (strncmp(path, "header:", 7) == 0)
		return xasprintf("header %s", path + 7);
	return xasprintf("body.%s", path);
}

/* True when every paths[i] of msg equals equals[i]. A header (always text) equals a string
 * value, or the JSON text of any other value. On false, writes why in err. */
static bool fields_hold(char **paths, json_t **equals, size_t n, json_t *msg, char *err,
			size_t errlen)
{
	char *got, *want, *name, *text;
	json_t *v;
	bool ok;
	size_t i;

	for (i = 0; i < n; i++) {
		v = msg_lookup(msg, paths[i]);
		if (v != NULL && strncmp(paths[i], "header:", 7) == 0 && json_is_string(v)) {
			if (json_is_string(equals[i])) {
				ok = strcmp(json_string_value(v), json_string_value(equals[i])) == 0;
			} else {
				text = json_dumps(equals[i], JSON_COMPACT | JSON_ENCODE_ANY);
				ok = text != NULL && strcmp(json_string_value(v), text) == 0;
				free(text);
			}
		} else {
			ok = v != NULL && json_equal(v, equals[i]);
		}
		if (ok)
			continue;
		name = path_name(paths[i]);
		want = show(equals[i]);
		if (v == NULL) {
			snprintf(err, errlen, "%s is missing, expected %s", name, want);
		} else {
			got = show(v);
			snprintf(err, errlen, "%s is %s, expected %s", name, got, want);
			free(got);
		}
		free(want);
		free(name);
		return false;
	}
	return true;
}

static bool in_names(const char *s, char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(s, v[i]) == 0)
			return true;
	return false;
}

char *flow_render_correlation(const struct flow_reply *r, json_t *ctx, const char *default_value,
			      char *err, size_t errlen)
{
	char msg[512], *s;

	if (r->correlate_value == NULL) {
		if (default_value == NULL) {
			snprintf(err, errlen, "correlate: no value to wait for");
			return NULL;
		}
		return xstrdup(default_value);
	}
	if ((s = tmpl_eval_string(r->correlate_value, ctx, msg, sizeof(msg))) == NULL)
		snprintf(err, errlen, "correlate.value: %s", msg);
	return s;
}

const char *flow_reply_correlation(const struct flow_reply *r, json_t *msg)
{
	return msg_text(msg, r->correlate_path != NULL ? r->correlate_path : "header:correlation-id");
}

enum reply_verdict flow_judge_reply(const struct flow_reply *r, json_t *msg, char *err,
				    size_t errlen)
{
	const char *type = r->type_path != NULL ? msg_text(msg, r->type_path) : NULL;

	if (r->n_success_types > 0 || r->n_failure_types > 0) {
		if (type == NULL)
			return REPLY_NOT_MINE;
		if (in_names(type, r->failure_types, r->n_failure_types)) {
			snprintf(err, errlen, "type %s", type);
			return REPLY_FAILURE;
		}
		if (!in_names(type, r->success_types, r->n_success_types))
			return REPLY_NOT_MINE;
	}
	if (!fields_hold(r->field_paths, r->field_equals, r->n_fields, msg, err, errlen))
		return REPLY_FAILURE;
	return REPLY_SUCCESS;
}

bool flow_trigger_matches(const struct flow_trigger *t, json_t *msg)
{
	const char *topic = json_string_value(json_object_get(msg, "topic")), *type;
	char err[MSG_JSON_MAX * 2 + 128];

	if (t->topic != NULL && topic != NULL && strcmp(t->topic, topic) != 0)
		return false;
	if (t->n_types > 0) {
		type = t->type_path != NULL ? msg_text(msg, t->type_path) : NULL;
		if (type == NULL || !in_names(type, t->types, t->n_types))
			return false;
	}
	return fields_hold(t->field_paths, t->field_equals, t->n_fields, msg, err, sizeof(err));
}

/* v, or JSON null when v is NULL; a new reference. */
static json_t *or_null(json_t *v)
{
	return v != NULL ? json_incref(v) : json_null();
}

json_t *flow_trigger_input(const struct flow_trigger *t, json_t *msg, char *err, size_t errlen)
{
	json_t *body = json_object_get(msg, "body"), *headers, *ctx, *kafka, *v, *out;

	if (t->input == NULL) {
		if (!json_is_object(body)) {
			snprintf(err, errlen, "the event body is not a JSON object");
			return NULL;
		}
		return json_incref(body);
	}
	headers = json_object_get(msg, "headers");
	kafka = json_object();
	json_object_set_new(kafka, "topic", or_null(json_object_get(msg, "topic")));
	json_object_set_new(kafka, "partition", or_null(json_object_get(msg, "partition")));
	json_object_set_new(kafka, "offset", or_null(json_object_get(msg, "offset")));
	json_object_set_new(kafka, "key", or_null(json_object_get(msg, "key")));
	ctx = json_object();
	json_object_set_new(ctx, "event", or_null(body));
	json_object_set_new(ctx, "headers", json_is_object(headers) ? json_incref(headers) :
			    json_object());
	json_object_set_new(ctx, "kafka", kafka);
	v = tmpl_eval(t->input, ctx, err, errlen);
	json_decref(ctx);
	if (v == NULL)
		return NULL;
	if (!json_is_object(v)) {
		snprintf(err, errlen, "the trigger's input is not a JSON object (got %s)",
			 json_type_word(v));
		json_decref(v);
		return NULL;
	}
	/* The result may share parts with the template's constants; the saga owns its input. */
	out = json_deep_copy(v);
	json_decref(v);
	return out;
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
	/* The outcome is always kept: an HTTP status, or a Kafka reply's type. */
	if ((status = json_object_get(response, "status")) != NULL)
		json_object_set(out, "status", status);
	if ((status = json_object_get(response, "type")) != NULL)
		json_object_set(out, "type", status);
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
