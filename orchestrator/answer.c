/* answer.c: a saga as JSON text, straight from the store's rows, or from the pieces the engine
 * kept of the rows it wrote, each written by the same code (see answer.h). The keys and their
 * order are those of the jansson version it replaces (api.c's saga_summary for the first
 * ones). */
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "answer.h"
#include "error.h"
#include "jsonw.h"
#include "secret.h"

#define LIT(b, s) strbuf_add((b), (s), sizeof(s) - 1)

struct steps_out {
	struct strbuf *b;
	const struct flow *f;     /* or NULL: no pending rows */
	size_t next;              /* the index the next row should have */
};

static void pending_step(struct steps_out *o, size_t i)
{
	if (o->next > 0)
		LIT(o->b, ",");
	LIT(o->b, "{\"name\":");
	jsonw_str(o->b, o->f->steps[i].name);
	LIT(o->b, ",\"index\":");
	jsonw_int(o->b, (long long)i);
	LIT(o->b, ",\"state\":\"pending\",\"attempt\":0,\"comp_attempt\":0,\"response\":null,"
	    "\"error\":null,\"updated_at\":null}");
	o->next = i + 1;
}

/* A step row as its JSON object. */
static void step_object(struct strbuf *b, const struct store_step *st)
{
	LIT(b, "{\"name\":");
	jsonw_str(b, st->name);
	LIT(b, ",\"index\":");
	jsonw_int(b, st->idx);
	LIT(b, ",\"state\":");
	jsonw_str(b, st->state);
	LIT(b, ",\"attempt\":");
	jsonw_int(b, st->attempt);
	LIT(b, ",\"comp_attempt\":");
	jsonw_int(b, st->comp_attempt);
	LIT(b, ",\"response\":");
	jsonw_json(b, st->response);
	LIT(b, ",\"error\":");
	jsonw_str_or_null(b, st->error);
	LIT(b, ",\"updated_at\":");
	jsonw_time(b, st->updated_at);
	LIT(b, "}");
}

static int on_step_row(const struct store_step *st, void *arg)
{
	struct steps_out *o = arg;

	/* steps that never started (no row) before this one */
	while (o->f != NULL && o->next < (size_t)st->idx && o->next < o->f->n_steps)
		pending_step(o, o->next);
	if (o->f != NULL && (size_t)st->idx >= o->f->n_steps)
		return 0;
	if (o->next > 0)
		LIT(o->b, ",");
	step_object(o->b, st);
	o->next = (size_t)st->idx + 1;
	return 0;
}

struct history_out {
	struct strbuf *b;
	bool first;
};

/* A history row as its JSON object. */
static void history_object(struct strbuf *b, const struct store_history *h)
{
	LIT(b, "{\"seq\":");
	jsonw_int(b, h->seq);
	LIT(b, ",\"step\":");
	jsonw_str_or_null(b, h->step_name);
	LIT(b, ",\"phase\":");
	jsonw_str(b, h->phase);
	LIT(b, ",\"attempt\":");
	jsonw_int(b, h->attempt);
	LIT(b, ",\"event\":");
	jsonw_str(b, h->event);
	LIT(b, ",\"request\":");
	jsonw_str_or_null(b, h->request);
	LIT(b, ",\"status\":");
	if (h->status)
		jsonw_int(b, h->status);
	else
		LIT(b, "null");
	LIT(b, ",\"response\":");
	jsonw_str_or_null(b, h->response);
	LIT(b, ",\"error\":");
	jsonw_str_or_null(b, h->error);
	LIT(b, ",\"started_at\":");
	jsonw_time(b, h->started_at);
	LIT(b, ",\"ended_at\":");
	jsonw_time(b, h->ended_at);
	LIT(b, ",\"ms\":");
	jsonw_int(b, (long long)(h->ended_at - h->started_at));
	LIT(b, "}");
}

static int on_history_row(const struct store_history *h, void *arg)
{
	struct history_out *o = arg;

	if (!o->first)
		LIT(o->b, ",");
	o->first = false;
	history_object(o->b, h);
	return 0;
}

struct keys_out {
	struct strbuf *b;
	bool first;
};

static int on_key_row(const char *name, const char *value, void *arg)
{
	struct keys_out *o = arg;

	if (!o->first)
		LIT(o->b, ",");
	o->first = false;
	jsonw_str(o->b, name);
	LIT(o->b, ":");
	jsonw_str(o->b, value);
	return 0;
}

/* The input as the API shows it: copied, unless the flow declares sensitive fields or the
 * store holds sealed ones; then parsed and masked (secret_mask_input()). */
static void write_input(struct strbuf *b, const struct flow *f, const char *input)
{
	bool sensitive = false;
	json_t *v;
	char *text;

	for (size_t i = 0; f != NULL && i < f->n_inputs; i++)
		sensitive = sensitive || f->inputs[i].sensitive;
	if (input == NULL || (!sensitive && strstr(input, "$sealed") == NULL) ||
	    (v = json_loads(input, JSON_DECODE_ANY, NULL)) == NULL) {
		jsonw_json(b, input);
		return;
	}
	secret_mask_input(f, v);
	text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	jsonw_json(b, text);
	free(text);
	json_decref(v);
}

/* The saga row's fields, from "{" to deadline_at. */
static void saga_head(struct strbuf *b, const struct store_saga *s)
{
	LIT(b, "{\"id\":");
	jsonw_str(b, s->id);
	LIT(b, ",\"flow\":");
	jsonw_str(b, s->flow);
	LIT(b, ",\"flow_version\":");
	jsonw_int(b, s->flow_version);
	LIT(b, ",\"status\":");
	jsonw_str(b, s->status);
	LIT(b, ",\"error\":");
	jsonw_str_or_null(b, s->error);
	if (s->cancel_requested)
		LIT(b, ",\"cancel_requested\":true");
	else
		LIT(b, ",\"cancel_requested\":false");
	LIT(b, ",\"parent_id\":");
	jsonw_str_or_null(b, s->parent_id);
	LIT(b, ",\"idempotency_key\":");
	jsonw_str_or_null(b, s->idempotency_key);
	LIT(b, ",\"created_at\":");
	jsonw_time(b, s->created_at);
	LIT(b, ",\"updated_at\":");
	jsonw_time(b, s->updated_at);
	LIT(b, ",\"deadline_at\":");
	jsonw_time(b, s->deadline_at);
}

struct saga_out {
	struct store *st;
	const char *id;            /* the caller's: the reads below bind it, not the borrowed row's */
	const struct flow_set *fs;
	bool history;
	struct strbuf *b;
	const struct flow **flow;
	char *status;
	size_t status_len;
};

/* Writes the saga from its row, borrowed from the store (store_scan_saga()): no copy of its
 * strings, the input and output JSON included. */
static int on_saga_row(const struct store_saga *s, void *arg)
{
	struct saga_out *o = arg;
	struct strbuf *b = o->b;
	struct steps_out so;
	struct keys_out ko = { b, true };

	so.f = o->fs != NULL ? flow_set_find_version(o->fs, s->flow, s->flow_version) : NULL;
	if (o->flow != NULL)
		*o->flow = so.f;
	if (o->status != NULL)
		util_strlcpy(o->status, s->status, o->status_len);
	saga_head(b, s);
	LIT(b, ",\"keys\":{");
	/* Only a flow's keys: write key rows, and a flow version never changes: none to read
	 * for a version without keys. */
	if (so.f == NULL || so.f->n_keys > 0)
		store_each_key(o->st, o->id, on_key_row, &ko);
	LIT(b, "},\"input\":");
	write_input(b, so.f, s->input);
	LIT(b, ",\"output\":");
	jsonw_json(b, s->output);
	LIT(b, ",\"steps\":[");
	so.b = b;
	so.next = 0;
	store_scan_steps(o->st, o->id, on_step_row, &so);
	while (so.f != NULL && so.next < so.f->n_steps)
		pending_step(&so, so.next);
	LIT(b, "]");
	if (o->history) {
		struct history_out ho = { b, true };

		LIT(b, ",\"history\":[");
		store_scan_history(o->st, o->id, on_history_row, &ho);
		LIT(b, "]");
	}
	LIT(b, "}");
	return 0;
}

int answer_saga_text(struct store *st, const struct flow_set *fs, const char *id, bool history,
		     struct strbuf *b, const struct flow **flow, char *status, size_t status_len)
{
	struct saga_out o = { st, id, fs, history, b, flow, status, status_len };
	/* The rows of one snapshot, and SQLite's read locks taken once, not per read (unless
	 * the caller holds a transaction open: engine.c's release() for a batch of answers). */
	bool reading = store_read_begin(st);
	int rc = store_scan_saga(st, id, on_saga_row, &o);

	if (reading)
		store_read_end(st);
	return rc != 0 ? SAGAD_ENOENT : 0;   /* as before: a read error answers "no such saga" */
}

/* ---- the answer from memory ------------------------------------------------------------ */

struct answer_pieces {
	int refs;
	char *flow;
	int flow_version;
	size_t n_steps;
	char status[24];
	struct strbuf head;         /* saga_head() of the last row written */
	struct strbuf input;        /* written once: the input never changes */
	struct strbuf output;       /* the output of the last row written */
	struct strbuf *steps;       /* [n_steps] step_object(); len 0: no row (pending) */
	struct strbuf history;      /* history_object() of each row, comma separated */
	char **key_names, **key_values; /* n_keys, sorted by name as store_each_key() reads them */
	size_t n_keys;
};

struct answer_pieces *answer_pieces_new(const struct flow *f, const struct store_saga *row)
{
	struct answer_pieces *p = xcalloc(1, sizeof(*p));

	p->refs = 1;
	p->flow = xstrdup(row->flow);
	p->flow_version = row->flow_version;
	p->n_steps = f->n_steps;
	p->steps = xcalloc(f->n_steps ? f->n_steps : 1, sizeof(*p->steps));
	strbuf_reserve(&p->history, 1023);
	write_input(&p->input, f, row->input);
	answer_pieces_saga(p, row);
	return p;
}

struct answer_pieces *answer_pieces_ref(struct answer_pieces *p)
{
	p->refs++;
	return p;
}

int answer_pieces_refs(const struct answer_pieces *p)
{
	return p->refs;
}

void answer_pieces_unref(struct answer_pieces *p)
{
	if (p == NULL || --p->refs > 0)
		return;
	for (size_t i = 0; i < p->n_steps; i++)
		strbuf_close(&p->steps[i]);
	for (size_t k = 0; k < p->n_keys; k++) {
		free(p->key_names[k]);
		free(p->key_values[k]);
	}
	free(p->key_names);
	free(p->key_values);
	free(p->steps);
	strbuf_close(&p->head);
	strbuf_close(&p->input);
	strbuf_close(&p->output);
	strbuf_close(&p->history);
	free(p->flow);
	free(p);
}

void answer_pieces_saga(struct answer_pieces *p, const struct store_saga *row)
{
	p->head.len = 0;
	saga_head(&p->head, row);
	p->output.len = 0;
	jsonw_json(&p->output, row->output);
	util_strlcpy(p->status, row->status, sizeof(p->status));
}

void answer_pieces_step(struct answer_pieces *p, const struct store_step *row)
{
	struct strbuf *b;

	if (row->idx < 0 || (size_t)row->idx >= p->n_steps)
		return;
	b = &p->steps[row->idx];
	b->len = 0;
	step_object(b, row);
}

void answer_pieces_history(struct answer_pieces *p, const struct store_history *row)
{
	if (p->history.len > 0)
		LIT(&p->history, ",");
	history_object(&p->history, row);
}

void answer_pieces_key(struct answer_pieces *p, const char *name, const char *value)
{
	size_t at = 0;

	/* ORDER BY name: SQLite's BINARY collation compares bytes, as strcmp() does. */
	while (at < p->n_keys && strcmp(p->key_names[at], name) < 0)
		at++;
	if (at < p->n_keys && strcmp(p->key_names[at], name) == 0) {
		free(p->key_values[at]);   /* a put replaces the value (store_key_put()) */
		p->key_values[at] = xstrdup(value);
		return;
	}
	p->key_names = xrealloc(p->key_names, (p->n_keys + 1) * sizeof(*p->key_names));
	p->key_values = xrealloc(p->key_values, (p->n_keys + 1) * sizeof(*p->key_values));
	memmove(p->key_names + at + 1, p->key_names + at, (p->n_keys - at) * sizeof(char *));
	memmove(p->key_values + at + 1, p->key_values + at, (p->n_keys - at) * sizeof(char *));
	p->key_names[at] = xstrdup(name);
	p->key_values[at] = xstrdup(value);
	p->n_keys++;
}

int answer_pieces_text(const struct answer_pieces *p, const struct flow_set *fs, bool history,
		       struct strbuf *b, const struct flow **flow, char *status, size_t status_len)
{
	const struct flow *f = fs != NULL ? flow_set_find_version(fs, p->flow, p->flow_version) :
				NULL;
	struct steps_out so = { b, f, 0 };
	struct keys_out ko = { b, true };

	/* The store's answer without that flow version shows no pending steps: leave it to it. */
	if (f == NULL || f->n_steps != p->n_steps)
		return SAGAD_ENOENT;
	if (flow != NULL)
		*flow = f;
	if (status != NULL)
		util_strlcpy(status, p->status, status_len);
	strbuf_reserve(b, p->head.len + p->input.len + p->output.len + p->history.len + 256);
	strbuf_add(b, p->head.data, p->head.len);
	LIT(b, ",\"keys\":{");
	for (size_t k = 0; k < p->n_keys; k++)
		on_key_row(p->key_names[k], p->key_values[k], &ko);
	LIT(b, "},\"input\":");
	strbuf_add(b, p->input.data, p->input.len);
	LIT(b, ",\"output\":");
	strbuf_add(b, p->output.data, p->output.len);
	LIT(b, ",\"steps\":[");
	for (size_t i = 0; i < p->n_steps; i++) {
		if (p->steps[i].len == 0) {
			pending_step(&so, i);
			continue;
		}
		if (i > 0)
			LIT(b, ",");
		strbuf_add(b, p->steps[i].data, p->steps[i].len);
		so.next = i + 1;
	}
	LIT(b, "]");
	if (history) {
		LIT(b, ",\"history\":[");
		if (p->history.len > 0)
			strbuf_add(b, p->history.data, p->history.len);
		LIT(b, "]");
	}
	LIT(b, "}");
	return 0;
}
