/* answer.c: a saga as JSON text, straight from the store's rows (see answer.h). The keys and
 * their order are those of the jansson version it replaces (api.c's saga_summary for the
 * first ones). */
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

static int on_step_row(const struct store_step *st, void *arg)
{
	struct steps_out *o = arg;
	struct strbuf *b = o->b;

	/* steps that never started (no row) before this one */
	while (o->f != NULL && o->next < (size_t)st->idx && o->next < o->f->n_steps)
		pending_step(o, o->next);
	if (o->f != NULL && (size_t)st->idx >= o->f->n_steps)
		return 0;
	if (o->next > 0)
		LIT(b, ",");
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
	o->next = (size_t)st->idx + 1;
	return 0;
}

struct history_out {
	struct strbuf *b;
	bool first;
};

static int on_history_row(const struct store_history *h, void *arg)
{
	struct history_out *o = arg;
	struct strbuf *b = o->b;

	if (!o->first)
		LIT(b, ",");
	o->first = false;
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
