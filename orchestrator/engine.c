/* engine.c: the saga state machines.
 *
 * One loop thread owns every saga. A saga advances in engine__drive(), which loops over
 * "what is the next thing to do" until the saga must wait (for a reply, a timer or a child
 * saga). Every transition goes through saga_set_state() or engine__step_set_state(), which persist
 * it (the store's open transaction) and log it. Side effects (HTTP dispatches, answers to
 * waiting clients) are queued and run by engine_flush() only after the commit.
 *
 * Memory: every unfinished saga is in memory (sagas map); finished ones are evicted after the
 * commit that finished them and reloaded from the store when needed (operator retry, a
 * parent compensating a completed child). A saga whose client waits for its full answer
 * (engine_start_answered()) also keeps that answer's pieces (answer.h) while the client waits:
 * the saga and each decided waiter hold a reference, the last one frees them. */
#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "answer.h"
#include "engine.h"
#include "error.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "dsl.h"
#include "expr.h"

#include "engine_internal.h"
#include "jsonw.h"
#include "outbox.h"
#include "secret.h"

static json_t *ctx_response(const struct saga *s, int i);

static const char *const saga_state_names[SAGA_STATE_MAX] = {
	"running", "compensating", "completed", "compensated", "failed",
};

static const char *const step_state_names[STEP_STATE_MAX] = {
	"pending", "running", "retry_wait", "succeeded", "failed", "timed_out",
	"compensating", "compensation_wait", "compensated", "not_compensated",
	"compensation_failed", "skipped",
};

const char *saga_state_name(enum saga_state s)
{
	return s < SAGA_STATE_MAX ? saga_state_names[s] : "?";
}

/* The index of name in names[0..n), or -1. */
static int name_index(const char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

int saga_state_parse(const char *name, enum saga_state *out)
{
	int i = name_index(saga_state_names, SAGA_STATE_MAX, name);

	if (i < 0)
		return SAGAD_EINVAL;
	*out = (enum saga_state)i;
	return 0;
}

bool saga_state_final(enum saga_state s)
{
	return s == SAGA_COMPLETED || s == SAGA_COMPENSATED;
}

static bool saga_ended(enum saga_state s)
{
	return saga_state_final(s) || s == SAGA_FAILED;
}

const char *step_state_name(enum step_state s)
{
	return s < STEP_STATE_MAX ? step_state_names[s] : "?";
}

int step_state_parse(const char *name, enum step_state *out)
{
	int i = name_index(step_state_names, STEP_STATE_MAX, name);

	if (i < 0)
		return SAGAD_EINVAL;
	*out = (enum step_state)i;
	return 0;
}

/* ---- crash points (tests) ---------------------------------------------------------- */

static int crash_remaining;
static char crash_want[64];

/* Reads SAGAD_CRASHPOINT once. True when a crash point is armed. */
bool engine__crashpoints_armed(void)
{
	static bool init;
	const char *env;

	if (!init) {
		init = true;
		env = getenv("SAGAD_CRASHPOINT");
		if (env != NULL && *env != '\0') {
			const char *colon = strchr(env, ':');
			size_t n = colon ? (size_t)(colon - env) : strlen(env);
			if (n >= sizeof(crash_want))
				n = sizeof(crash_want) - 1;
			memcpy(crash_want, env, n);
			crash_want[n] = '\0';
			crash_remaining = colon ? atoi(colon + 1) : 1;
			if (crash_remaining < 1)
				crash_remaining = 1;
		}
	}
	return crash_want[0] != '\0';
}

void engine_crashpoint(const char *name)
{
	if (!engine__crashpoints_armed() || strcmp(crash_want, name) != 0)
		return;
	if (--crash_remaining > 0)
		return;
	log_warn("event=crashpoint point=%s msg=\"killing myself (SAGAD_CRASHPOINT)\"", name);
	fflush(stderr);
	raise(SIGKILL);
}

/* ---- the sagas map ----------------------------------------------------------------- */

#define TOMBSTONE ((struct saga *)1)

static uint64_t hash_id(const char *id)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 1099511628211ULL;
	return h;
}

struct saga *engine__saga_find(struct engine *e, const char *id)
{
	size_t mask = e->n_slots - 1, i = hash_id(id) & mask;

	for (;;) {
		struct saga *s = e->slots[i];
		if (s == NULL)
			return NULL;
		if (s != TOMBSTONE && strcmp(s->id, id) == 0)
			return s;
		i = (i + 1) & mask;
	}
}

static void map_put(struct engine *e, struct saga *s);

/* Rebuilds the table with room for twice the live sagas (at least 1024 slots), dropping
 * tombstones: it grows with the sagas in memory, not with every saga ever started. */
static void map_rehash(struct engine *e)
{
	struct saga **old = e->slots;
	size_t n = e->n_slots, live = e->n_sagas;

	e->n_slots = 1024;
	while (e->n_slots < (live + 1) * 4)
		e->n_slots *= 2;
	e->slots = xcalloc(e->n_slots, sizeof(*e->slots));
	e->n_sagas = e->n_used = 0;
	for (size_t i = 0; i < n; i++)
		if (old[i] != NULL && old[i] != TOMBSTONE)
			map_put(e, old[i]);
	free(old);
}

static void map_put(struct engine *e, struct saga *s)
{
	size_t mask, i;

	if ((e->n_used + 1) * 4 >= e->n_slots * 3)
		map_rehash(e);
	mask = e->n_slots - 1;
	i = hash_id(s->id) & mask;
	while (e->slots[i] != NULL && e->slots[i] != TOMBSTONE)
		i = (i + 1) & mask;
	if (e->slots[i] == NULL)
		e->n_used++;
	e->slots[i] = s;
	e->n_sagas++;
}

static void map_del(struct engine *e, struct saga *s)
{
	size_t mask = e->n_slots - 1, i = hash_id(s->id) & mask;

	while (e->slots[i] != NULL) {
		if (e->slots[i] == s) {
			e->slots[i] = TOMBSTONE;
			e->n_sagas--;
			return;
		}
		i = (i + 1) & mask;
	}
}

/* ---- timers: a min-heap behind one uv timer ---------------------------------------- */

static void heap_swap(struct engine *e, size_t a, size_t b)
{
	struct timer_entry t = e->heap[a];

	e->heap[a] = e->heap[b];
	e->heap[b] = t;
}

static void heap_push(struct engine *e, const struct timer_entry *t)
{
	size_t i;

	if (e->n_heap == e->cap_heap) {
		e->cap_heap = e->cap_heap ? e->cap_heap * 2 : 256;
		e->heap = xrealloc(e->heap, e->cap_heap * sizeof(*e->heap));
	}
	i = e->n_heap++;
	e->heap[i] = *t;
	while (i > 0 && e->heap[(i - 1) / 2].due > e->heap[i].due) {
		heap_swap(e, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_pop(struct engine *e)
{
	size_t i = 0;

	e->heap[0] = e->heap[--e->n_heap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < e->n_heap && e->heap[l].due < e->heap[m].due)
			m = l;
		if (r < e->n_heap && e->heap[r].due < e->heap[m].due)
			m = r;
		if (m == i)
			break;
		heap_swap(e, i, m);
		i = m;
	}
}

static void on_wake(uv_timer_t *t);

/* A failed write may have rolled the whole transaction back (SQLite does on I/O errors and
 * a full disk), or a newer owner fenced us out: nothing of this turn may act. The first
 * error is latched and engine_flush() returns it instead of committing (crash-only). */
void engine__store_failed(struct engine *e, int rc, const char *what, const char *saga_id)
{
	if (rc == 0)
		return;
	log_error("saga=%s event=store_write_failed op=%s err=\"%s\"", saga_id, what,
		  rc == SAGAD_ESTATE ? "another sagad owns this saga now (newer owner epoch)" :
		  sagad_strerror(rc));
	if (e->write_error == 0)
		e->write_error = rc;
}

static void wake_rearm(struct engine *e)
{
	int64_t delay;

	if (e->n_heap == 0) {
		uv_timer_stop(&e->wake);
		e->wake_due = -1;
		return;
	}
	if (e->wake_due == e->heap[0].due && uv_is_active((uv_handle_t *)&e->wake))
		return;
	delay = e->heap[0].due - util_mono_ms();
	if (delay < 0)
		delay = 0;
	e->wake_due = e->heap[0].due;
	uv_timer_start(&e->wake, on_wake, (uint64_t)delay, 0);
}

/* The generation slot of a timer: the deadline is the saga's, retry and timeout timers are
 * per step (parallel steps wait on their own). */
static uint32_t *timer_slot(struct saga *s, enum timer_kind kind, int step)
{
	if (kind == TIMER_DEADLINE || step < 0 || (size_t)step >= s->flow->n_steps)
		return &s->timer_gen[kind];
	return &s->steps[step].timer_gen[kind];
}

/* Arms a durable timer of kind for step of s (replacing the same one): persisted now, in the
 * heap at once (it cannot fire before this turn's commit: timers run on a later turn).
 * due is wall-clock ms (what the store keeps, so a restart re-arms it); the heap holds the
 * monotonic time it stands for, so a wall-clock jump while sagad runs neither fires a
 * timer early nor delays it (G5). */
void engine__timer_arm(struct saga *s, enum timer_kind kind, int step, int64_t due, bool persist)
{
	struct engine *e = s->e;
	struct timer_entry t;
	uint32_t *gen = timer_slot(s, kind, step);

	if (kind == TIMER_DEADLINE)
		step = -1;
	*gen = ++e->timer_seq;
	if (persist) {
		struct store_timer row = {
			.saga_id = s->id, .kind = (char *)timer_kind_names[kind],
			.step = step, .due_at = due,
		};
		engine__store_failed(e, store_timer_put(e->store, &row), "timer_put", s->id);
	}
	memset(&t, 0, sizeof(t));
	/* +1: both clocks are read truncated to the millisecond, so without it the timer could
	 * fire up to 1 ms before its wall-clock due time (a deadline_exceeded stamped before
	 * deadline_at). */
	t.due = util_mono_ms() + (due - util_now_ms()) + 1;
	memcpy(t.saga_id, s->id, ID_LEN);
	t.kind = (uint8_t)kind;
	t.step = step;
	t.gen = *gen;
	heap_push(e, &t);
	wake_rearm(e);
}

void engine__timer_cancel(struct saga *s, enum timer_kind kind, int step)
{
	if (kind == TIMER_DEADLINE)
		step = -1;
	*timer_slot(s, kind, step) = ++s->e->timer_seq;
	/* A saga without a deadline never had a deadline row: deadline_at is fixed when the
	 * saga starts, and only a deadline_at > 0 arms (and stores) the timer. */
	if (kind == TIMER_DEADLINE && s->deadline_at <= 0)
		return;
	engine__store_failed(s->e, store_timer_delete(s->e->store, s->id, timer_kind_names[kind],
						      step), "timer_delete", s->id);
}

/* ---- persistence ------------------------------------------------------------------- */

/* Puts s on this turn's list: its waiters are checked after the commit, and it is evicted
 * then if it has ended. */
static void mark_changed(struct saga *s)
{
	struct engine *e = s->e;

	if (s->changed)
		return;
	s->changed = true;
	if (e->n_touched == e->cap_touched) {
		e->cap_touched = e->cap_touched ? e->cap_touched * 2 : 64;
		e->touched = xrealloc(e->touched, e->cap_touched * sizeof(*e->touched));
	}
	e->touched[e->n_touched++] = s;
}

void engine__touch(struct saga *s)
{
	s->updated_at = util_now_ms();
	mark_changed(s);
}

/* The stored text of v: json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), byte for byte, by
 * jsonw (a quarter of jansson's instructions). */
static char *json_text(json_t *v)
{
	return jsonw_dumps(v);
}

/* The input as the store keeps it: sensitive values sealed (secret.h). */
static char *input_text(const struct saga *s)
{
	json_t *sealed;
	char *text;

	if (s->secrets == NULL && !secret_flow_has_sensitive(s->flow))
		return json_text(s->input);
	sealed = secret_seal_input(s->e->secrets_key, s->id, s->flow, s->input, s->secrets);
	text = json_text(sealed);
	json_decref(sealed);
	return text;
}

/* Text about s for the store, the log or an event, without its secrets: text itself, or a
 * redacted copy kept in *owned (free() it). */
static const char *scrub(const struct saga *s, const char *text, char **owned)
{
	return secret_scrub(s->secrets, text, owned);
}

/* JSON for the store without the saga's secrets (redacted value by value: it stays JSON). */
static char *json_text_scrubbed(const struct saga *s, json_t *v)
{
	char *text;

	if (s->secrets == NULL || v == NULL)
		return json_text(v);
	v = secret_scrub_json(s->secrets, json_deep_copy(v));
	text = json_text(v);
	json_decref(v);
	return text;
}

static void fill_saga_row(const struct saga *s, struct store_saga *row, char **input, char **output)
{
	memset(row, 0, sizeof(*row));
	row->id = (char *)s->id;
	row->shard = store_shard(s->e->store);
	row->flow = s->flow->name;
	row->flow_version = s->flow->version;
	row->status = (char *)saga_state_name(s->state);
	row->cursor = s->cursor;
	*input = s->inserted ? NULL : input_text(s);   /* the store writes it only once */
	*output = json_text_scrubbed(s, s->output);
	row->input = *input;
	row->output = *output;
	row->error = s->error;
	row->idempotency_key = s->idempotency_key;
	row->parent_id = s->parent_id[0] ? (char *)s->parent_id : NULL;
	row->parent_step = s->parent_id[0] ? s->parent_step : -1;
	row->cancel_requested = s->cancel_requested;
	row->created_at = s->created_at;
	row->updated_at = s->updated_at;
	row->deadline_at = s->deadline_at;
}

struct answer_pieces *engine__answer_kept(struct saga *s)
{
	if (s->answer != NULL && !s->answer_reserved && s->waiters == NULL &&
	    answer_pieces_refs(s->answer) == 1) {
		answer_pieces_unref(s->answer);
		s->answer = NULL;
	}
	return s->answer;
}

static void persist_saga(struct saga *s)
{
	struct store_saga row;
	char *input, *output, *error;
	int rc;

	fill_saga_row(s, &row, &input, &output);
	row.error = (char *)scrub(s, row.error, &error);
	rc = store_saga_update(s->e->store, &row);
	engine__store_failed(s->e, rc, "saga_update", s->id);
	if (rc == 0 && engine__answer_kept(s) != NULL)
		answer_pieces_saga(s->answer, &row);
	free(input);
	free(output);
	free(error);
}

static void persist_step(struct saga *s, int i)
{
	struct step_run *r = &s->steps[i];
	char *text = json_text_scrubbed(s, ctx_response(s, i)), *f2;
	int rc;
	struct store_step row = {
		.saga_id = s->id, .idx = i, .name = s->flow->steps[i].name,
		.state = (char *)step_state_name(r->state), .attempt = r->attempt,
		.comp_attempt = r->comp_attempt, .response = text, .error = r->error,
		.updated_at = s->updated_at, .maybe_applied = r->maybe_applied,
	};

	row.error = (char *)scrub(s, row.error, &f2);
	rc = store_step_put(s->e->store, &row);
	engine__store_failed(s->e, rc, "step_put", s->id);
	if (rc == 0 && engine__answer_kept(s) != NULL)
		answer_pieces_step(s->answer, &row);
	free(text);
	free(f2);
}

void engine__history(struct saga *s, int step, const char *phase, int attempt, const char *event,
		    const char *request, int status, const char *response, const char *error,
		    int64_t started_at)
{
	int64_t now = util_now_ms();
	struct store_history h = {
		.saga_id = s->id, .step = step,
		.step_name = step >= 0 ? s->flow->steps[step].name : NULL,
		.phase = (char *)phase, .attempt = attempt, .event = (char *)event,
		.request = (char *)request, .status = status, .response = (char *)response,
		.error = (char *)error, .started_at = started_at ? started_at : now,
		.ended_at = now,
	};
	char *f1, *f2, *f3;
	int rc;

	h.request = (char *)scrub(s, request, &f1);
	h.response = (char *)scrub(s, response, &f2);
	h.error = (char *)scrub(s, error, &f3);
	rc = store_history_append_seq(s->e->store, &h, &h.seq);
	engine__store_failed(s->e, rc, "history_append", s->id);
	if (rc == 0 && engine__answer_kept(s) != NULL)
		answer_pieces_history(s->answer, &h);
	free(f1);
	free(f2);
	free(f3);
}

/* ---- transitions ------------------------------------------------------------------- */

void engine__drive(struct saga *s);
static void child_done(struct saga *child);

static void saga_set_state(struct saga *s, enum saga_state next, const char *reason)
{
	enum saga_state prev = s->state;
	char q[256];

	s->state = next;
	engine__touch(s);
	log_info("saga=%s flow=%s event=saga_state from=%s to=%s%s%s", s->id, s->flow->name,
		 saga_state_name(prev), saga_state_name(next), reason ? " reason=" : "",
		 reason ? log_quote(reason, q, sizeof(q)) : "");
	persist_saga(s);
	engine__history(s, -1, "saga", 0, saga_state_name(next), NULL, 0, NULL, reason, 0);
	engine__lifecycle_saga(s);
	switch (next) {
	case SAGA_COMPLETED:
		s->e->stats.completed++;
		break;
	case SAGA_COMPENSATED:
		s->e->stats.compensated++;
		break;
	case SAGA_FAILED:
		s->e->stats.failed++;
		break;
	default:
		break;
	}
	if (saga_ended(next)) {
		engine__timer_cancel(s, TIMER_DEADLINE, -1);
		if (s->parent_id[0])
			child_done(s);
	}
	if (s->e->n_watches > 0)
		engine__watch_notify(s);
}

void engine__step_set_state(struct saga *s, int i, enum step_state next)
{
	struct step_run *r = &s->steps[i];

	log_debug("saga=%s step=%s event=step_state from=%s to=%s", s->id, s->flow->steps[i].name,
		  step_state_name(r->state), step_state_name(next));
	r->state = next;
	engine__touch(s);
	persist_step(s, i);
	engine__lifecycle_step(s, i);
	if (next == STEP_SUCCEEDED && s->flow->n_keys > 0)
		engine__keys_update(s);
}

void engine__set_step_error(struct saga *s, int i, const char *msg)
{
	free(s->steps[i].error);
	s->steps[i].error = msg ? util_utf8_sanitize(xstrdup(msg)) : NULL;
}

static void set_saga_error(struct saga *s, const char *msg)
{
	if (s->error == NULL && msg != NULL)
		s->error = util_utf8_sanitize(xstrdup(msg));
}

/* A step's kept response lives at ctx.steps.<name>.response (what templates address). */
void engine__set_response(struct saga *s, int i, json_t *kept)
{
	json_t *v = NULL;

	/* json_pack("{s:o}", "response", kept) without its format parsing */
	if (kept != NULL) {
		v = json_object();
		json_object_set_new_nocheck(v, "response", kept);
	}
	json_object_set_new(json_object_get(s->ctx, "steps"), s->flow->steps[i].name, v);
}

static json_t *ctx_response(const struct saga *s, int i)
{
	return json_object_get(json_object_get(json_object_get(s->ctx, "steps"),
					       s->flow->steps[i].name), "response");
}

/* Turns s backwards. The walk starts at the last step of the cursor's parallel group, so
 * every step of a group that was under way is looked at. */
static void start_compensation(struct saga *s, const char *reason)
{
	set_saga_error(s, reason);
	engine__timer_cancel(s, TIMER_DEADLINE, -1);
	if (s->cursor >= 0 && (size_t)s->cursor < s->flow->n_steps) {
		const struct flow_step *st = &s->flow->steps[s->cursor];
		s->cursor = st->group_first + st->group_n - 1;
	}
	saga_set_state(s, SAGA_COMPENSATING, reason);
}

void engine__start_compensation(struct saga *s, const char *reason)
{
	start_compensation(s, reason);
}

/* Cancels s on behalf of `by` (an operator, or another saga's step): a running saga stops
 * going forward; a completed one (reopen = true) has its steps undone. Returns 0 when s is
 * now compensating (or already was, or is compensated), SAGAD_ESTATE with err otherwise. */
int engine__saga_cancel(struct saga *s, const char *by, bool reopen, char *err, size_t errlen)
{
	switch (s->state) {
	case SAGA_COMPENSATING:
	case SAGA_COMPENSATED:
		return 0;
	case SAGA_COMPLETED:
		if (!reopen)
			break;
		s->cursor = (int)s->flow->n_steps - 1;
		/* fall through */
	case SAGA_RUNNING:
		s->cancel_requested = true;
		engine__history(s, -1, "saga", 0, "cancel_requested", NULL, 0, NULL, by, 0);
		start_compensation(s, by);
		engine__drive(s);
		return 0;
	default:
		break;
	}
	if (err)
		snprintf(err, errlen, "saga %s is already %s; nothing to cancel", s->id,
			 saga_state_name(s->state));
	return SAGAD_ESTATE;
}

/* ---- dispatch ---------------------------------------------------------------------- */

static void queue_effect(struct engine *e, struct effect *fx)
{
	fx->next = NULL;
	*e->effects_tail = fx;
	e->effects_tail = &fx->next;
}

/* "00-<trace id from the saga's trace root>-<random span>-01": one trace per top-level
 * saga and its sub-flows. */
void engine__traceparent(const struct saga *s, char *buf, size_t len)
{
	const char *saga_id = s->trace_root[0] ? s->trace_root : s->id;
	static signed char value[256];   /* Crockford base32 digit -> value, 0 for others */
	static const char hexd[] = "0123456789abcdef";
	unsigned char trace[16] = { 0 }, span[8];
	unsigned __int128 v = 0;
	uint64_t r;
	char out[56];

	if (value['1'] == 0)
		for (int i = 0; i < 32; i++)
			value[(unsigned char)"0123456789ABCDEFGHJKMNPQRSTVWXYZ"[i]] = (signed char)i;
	for (int i = 0; i < 26; i++)
		v = (v << 5) | (unsigned)value[(unsigned char)saga_id[i]];
	for (int i = 15; i >= 0; i--) {
		trace[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
	r = util_rand64();
	memcpy(span, &r, sizeof(span));
	/* "00-" 32 hex "-" 16 hex "-01" */
	memcpy(out, "00-", 3);
	for (int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hexd[trace[i] >> 4];
		out[4 + 2 * i] = hexd[trace[i] & 15];
	}
	out[35] = '-';
	for (int i = 0; i < 8; i++) {
		out[36 + 2 * i] = hexd[span[i] >> 4];
		out[37 + 2 * i] = hexd[span[i] & 15];
	}
	memcpy(out + 52, "-01", 4);
	if (len > 0) {   /* snprintf(buf, len, "%s", out) */
		size_t n = len - 1 < 55 ? len - 1 : 55;

		memcpy(buf, out, n);
		buf[n] = '\0';
	}
}

static char *summarize(const char *method, const char *url, const char *body)
{
	if (body == NULL)
		return util_concat(method, " ", url, NULL);
	if (strlen(body) > SUMMARY_MAX) /* the cut may split a UTF-8 sequence */
		return util_utf8_sanitize(xasprintf("%s %s %.*s...", method, url, SUMMARY_MAX, body));
	return util_concat(method, " ", url, " ", body, NULL);
}

/* "name: value" in a new string; name (n bytes) includes the ": ". */
static char *header_line(const char *name, size_t n, const char *value, size_t len)
{
	char *line = xmalloc(n + len + 1);

	memcpy(line, name, n);
	memcpy(line + n, value, len);
	line[n + len] = '\0';
	return line;
}

#define HEADER(r, name, value, len) \
	((r)->headers[(r)->n_headers++] = header_line(name, sizeof(name) - 1, value, len))

/* Every call lives on the engine's list from its creation to call_free(), so the engine can
 * free the ones whose step stopped waiting for them (abandoned, or dropped by a pause) when it
 * is freed itself. */
static void call_link(struct engine *e, struct call *c)
{
	c->prev = NULL;
	c->next = e->calls;
	if (e->calls != NULL)
		e->calls->prev = c;
	e->calls = c;
}

/* Renders and queues attempt `attempt` of step i's action or compensation. The step's new
 * state (running/compensating) is persisted by the caller's transition in this same turn,
 * so the dispatch leaves only after that commit. Returns 0, or SAGAD_ETEMPLATE when the
 * request cannot be rendered (message in err). */
static int dispatch_call(struct saga *s, int i, enum phase phase, int attempt, char *err,
			 size_t errlen)
{
	const struct flow_step *st = &s->flow->steps[i];
	const struct flow_request *req = phase == PHASE_ACTION ? &st->action : st->compensation;
	struct effect *fx = xcalloc(1, sizeof(*fx));
	struct call *c;
	char tp[64];
	int rc;

	rc = flow_render_request(st->participant, req, s->ctx, &fx->req, err, errlen);
	if (rc != 0) {
		free(fx);
		return rc;
	}
	/* the engine's five headers: one array growth, one allocation each */
	fx->req.headers = xrealloc(fx->req.headers, (fx->req.n_headers + 5) *
				   sizeof(*fx->req.headers));
	fx->req.headers[fx->req.n_headers++] = util_concat("Idempotency-Key: ", s->id, ":",
							   st->name, ":", phase_names[phase], NULL);
	engine__traceparent(s, tp, sizeof(tp));
	HEADER(&fx->req, "traceparent: ", tp, strlen(tp));
	HEADER(&fx->req, "X-Saga-Id: ", s->id, strlen(s->id));
	HEADER(&fx->req, "X-Saga-Step: ", st->name, strlen(st->name));
	{
		struct strbuf line;   /* "X-Saga-Attempt: N", the number by jsonw_int() */

		strbuf_init(&line);
		strbuf_add(&line, "X-Saga-Attempt: ", 16);
		jsonw_int(&line, attempt);
		fx->req.headers[fx->req.n_headers++] = line.data;
	}
	c = xcalloc(1, sizeof(*c));
	c->e = s->e;
	call_link(s->e, c);
	memcpy(c->saga_id, s->id, ID_LEN);
	c->step = i;
	c->phase = phase;
	c->attempt = attempt;
	c->request_summary = summarize(fx->req.method, fx->req.url, fx->req.body);
	fx->kind = EFFECT_DISPATCH;
	fx->call = c;
	fx->timeout_ms = st->timeout_ms > 0 ? st->timeout_ms : 10000;
	s->steps[i].call = c;
	s->e->inflight++;
	queue_effect(s->e, fx);
	return 0;
}

static void call_free(struct call *c)
{
	if (c == NULL)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (c->e->calls == c)
		c->e->calls = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->request_summary);
	free(c);
}

static void on_http_done(const struct http_result *res, void *arg);

static void on_send_failed(void *arg)
{
	struct call *c = arg;
	struct http_result r = { .error = SAGAD_ECONNECT, .error_text = sagad_strerror(c->send_error),
				 .body = "", .retry_after_ms = -1 };

	on_http_done(&r, c);
}

static void run_dispatch(struct engine *e, struct effect *fx)
{
	struct call *c = fx->call;
	struct http_request hr = {
		.method = fx->req.method, .url = fx->req.url,
		.headers = (const char *const *)fx->req.headers, .n_headers = fx->req.n_headers,
		.body = fx->req.body, .body_len = fx->req.body_len, .timeout_ms = fx->timeout_ms,
	};
	struct saga *s;
	int rc;

	if (e->quiescing) {
		/* Shutting down: the step stays "running" in the store and is sent after the
		 * restart, with the same idempotency key. */
		s = engine__saga_find(e, c->saga_id);
		if (s != NULL && s->steps[c->step].call == c)
			s->steps[c->step].call = NULL;
		e->inflight--;
		log_info("saga=%s step=%d event=dispatch_parked msg=\"shutting down; sent after "
			 "restart\"", c->saga_id, c->step);
		call_free(c);
		return;
	}
	engine_crashpoint("before_dispatch");
	c->started_at = util_now_ms();
	e->stats.dispatches++;
	rc = http_client_send(e->http, &hr, on_http_done, c, &c->hc);
	if (rc != 0) {
		/* Reported through the normal reply path on the next round, after this round's
		 * other effects, like any reply. */
		c->hc = NULL;
		c->send_error = rc;
		engine_defer(e, on_send_failed, c);
	}
}

/* Dispatches step i's action (attempt k) and records the transition. */
static void step_dispatch(struct saga *s, int i, enum phase phase)
{
	struct step_run *r = &s->steps[i];
	char err[512];
	int attempt;

	if (phase == PHASE_ACTION && engine__breaker_refuses(s, i))
		return;
	if (phase == PHASE_ACTION)
		attempt = ++r->attempt;
	else
		attempt = ++r->comp_attempt;
	if (s->flow->steps[i].participant != NULL &&
	    s->flow->steps[i].participant->kind == PARTICIPANT_KAFKA) {
		bool done = false;

		if (engine__kafka_dispatch(s, i, phase, attempt, &done, err, sizeof(err)) != 0)
			goto render_failed;
		if (done) /* one-way: sent once committed, nothing to wait for */
			engine__step_set_state(s, i, phase == PHASE_ACTION ? STEP_SUCCEEDED :
					       STEP_COMPENSATED);
		else
			engine__step_set_state(s, i, phase == PHASE_ACTION ? STEP_RUNNING :
					       STEP_COMPENSATING);
		return;
	}
	if (dispatch_call(s, i, phase, attempt, err, sizeof(err)) != 0) {
render_failed:;
		/* A request that cannot be rendered will never succeed: no retry. */
		char *msg = xasprintf("%s of step \"%s\" cannot be rendered: %s",
				      phase_names[phase], s->flow->steps[i].name, err), *owned = NULL;
		log_warn("saga=%s step=%s event=render_failed phase=%s error=\"%s\"", s->id,
			 s->flow->steps[i].name, phase_names[phase], scrub(s, err, &owned));
		free(owned);
		engine__set_step_error(s, i, msg);
		engine__touch(s);
		engine__history(s, i, phase_names[phase], attempt, "failed", NULL, 0, NULL, msg, 0);
		if (phase == PHASE_ACTION) {
			engine__step_set_state(s, i, STEP_FAILED);
		} else {
			engine__step_set_state(s, i, STEP_COMP_FAILED);
		}
		free(msg);
		return;
	}
	engine__step_set_state(s, i, phase == PHASE_ACTION ? STEP_RUNNING : STEP_COMPENSATING);
}

/* ---- sub-flows --------------------------------------------------------------------- */

static struct saga *saga_create(struct engine *e, struct flow *f, json_t *input,
				const char *key, const struct saga *parent, int parent_step,
				bool answered, char **existing_id, int *rc);
static struct saga *saga_load(struct engine *e, const char *id);

static void child_result(struct saga *parent, int i, struct saga *child);

/* Starts (or re-attaches to) the child saga of sub-flow step i. */
static void subflow_dispatch(struct saga *s, int i)
{
	struct engine *e = s->e;
	const struct flow_step *st = &s->flow->steps[i];
	struct step_run *r = &s->steps[i];
	struct flow *child_flow = flow_set_find(e->flows, st->subflow_name);
	struct saga *child;
	char err[512], *existing = NULL;
	json_t *input;
	int rc = 0;

	r->attempt++;
	if (child_flow == NULL) {
		engine__set_step_error(s, i, "sub-flow is not loaded");
		engine__step_set_state(s, i, STEP_FAILED);
		return;
	}
	if (e->secrets_key == NULL && secret_flow_needs_key(child_flow, err, sizeof(err))) {
		char *msg = xasprintf("%s, and sagad has no secrets key (--secrets-key)", err);
		engine__set_step_error(s, i, msg);
		engine__history(s, i, "action", r->attempt, "failed", NULL, 0, NULL, msg, 0);
		free(msg);
		engine__step_set_state(s, i, STEP_FAILED);
		return;
	}
	input = flow_render_subflow_input(st, s->ctx, err, sizeof(err));
	if (input == NULL) {
		char *msg = xasprintf("input of sub-flow \"%s\" cannot be rendered: %s",
				      st->subflow_name, err);
		engine__set_step_error(s, i, msg);
		engine__history(s, i, "action", r->attempt, "failed", NULL, 0, NULL, msg, 0);
		free(msg);
		engine__step_set_state(s, i, STEP_FAILED);
		return;
	}
	if (flow_check_input(child_flow, &input, err, sizeof(err)) != 0) {
		char *msg = xasprintf("input of sub-flow \"%s\" rejected: %s", st->subflow_name, err);
		engine__set_step_error(s, i, msg);
		engine__history(s, i, "action", r->attempt, "failed", NULL, 0, NULL, msg, 0);
		free(msg);
		json_decref(input);
		engine__step_set_state(s, i, STEP_FAILED);
		return;
	}
	child = saga_create(e, child_flow, input, NULL, s, i, false, &existing, &rc);
	json_decref(input);
	if (child == NULL && rc == SAGAD_EEXIST && existing != NULL)
		child = saga_load(e, existing);
	free(existing);
	if (child == NULL) {
		engine__set_step_error(s, i, "cannot create the child saga");
		engine__step_set_state(s, i, STEP_FAILED);
		return;
	}
	memcpy(r->child_id, child->id, ID_LEN);
	r->started_at = util_now_ms();
	engine__history(s, i, "action", r->attempt, "dispatched", child->id, 0, NULL, NULL, 0);
	engine__step_set_state(s, i, STEP_RUNNING);
	if (st->timeout_ms > 0)
		engine__timer_arm(s, TIMER_TIMEOUT, i, util_now_ms() + st->timeout_ms, true);
	if (saga_ended(child->state))
		child_result(s, i, child);
	else
		engine__drive(child);
}

/* Compensating a sub-flow step: the child compensates its own completed steps. */
static void subflow_compensate(struct saga *s, int i)
{
	struct step_run *r = &s->steps[i];
	struct saga *child = r->child_id[0] ? engine__saga_find(s->e, r->child_id) : NULL;

	if (child == NULL && r->child_id[0])
		child = saga_load(s->e, r->child_id);
	r->comp_attempt++;
	if (child == NULL) {
		engine__history(s, i, "compensation", r->comp_attempt, "compensated", NULL, 0, NULL,
			"no child saga: nothing to undo", 0);
		engine__step_set_state(s, i, STEP_COMPENSATED);
		return;
	}
	engine__step_set_state(s, i, STEP_COMPENSATING);
	r->started_at = util_now_ms();
	engine__history(s, i, "compensation", r->comp_attempt, "dispatched", child->id, 0, NULL, NULL, 0);
	switch (child->state) {
	case SAGA_COMPENSATED:
		child_result(s, i, child);
		return;
	case SAGA_RUNNING:
	case SAGA_COMPLETED:
		child->cancel_requested = true;
		start_compensation(child, "compensated by its parent saga");
		engine__drive(child);
		return;
	case SAGA_FAILED:
		/* The parent's retry resumes the child's compensation too. */
		engine_retry(s->e, child->id, NULL, 0);
		return;
	case SAGA_COMPENSATING:
		engine__drive(child);
		return;
	default:
		return;
	}
}

/* A child saga ended (or, while the parent compensates, reached a state it needs). */
static void child_result(struct saga *s, int i, struct saga *child)
{
	struct step_run *r = &s->steps[i];
	json_t *resp, *kept;

	if (r->state == STEP_RUNNING) {
		engine__timer_cancel(s, TIMER_TIMEOUT, i);
		if (child->state == SAGA_COMPLETED) {
			resp = json_pack("{s:i, s:O, s:s}", "status", 200, "body",
					 child->output ? child->output : json_null(), "saga", child->id);
			kept = flow_keep(&s->flow->steps[i], resp);
			engine__set_response(s, i, kept);
			json_decref(resp);
			engine__set_step_error(s, i, NULL);
			engine__history(s, i, "action", r->attempt, "succeeded", child->id, 200, NULL, NULL, r->started_at);
			engine__step_set_state(s, i, STEP_SUCCEEDED);
		} else if (child->state == SAGA_COMPENSATED) {
			char *msg = xasprintf("sub-flow %s compensated: %s", child->flow->name,
					      child->error ? child->error : "");
			engine__set_step_error(s, i, msg);
			engine__history(s, i, "action", r->attempt, "failed", child->id, 0, NULL, msg, r->started_at);
			free(msg);
			engine__step_set_state(s, i, STEP_FAILED);
		} else if (child->state == SAGA_FAILED) {
			char *msg = xasprintf("sub-flow %s failed to compensate: %s", child->flow->name,
					      child->error ? child->error : "");
			engine__set_step_error(s, i, msg);
			engine__history(s, i, "action", r->attempt, "failed", child->id, 0, NULL, msg, r->started_at);
			free(msg);
			engine__step_set_state(s, i, STEP_COMP_FAILED);
		} else {
			return;
		}
	} else if (r->state == STEP_COMPENSATING) {
		if (child->state == SAGA_COMPENSATED) {
			engine__history(s, i, "compensation", r->comp_attempt, "compensated", child->id, 0,
				NULL, NULL, r->started_at);
			engine__set_step_error(s, i, NULL);
			engine__step_set_state(s, i, STEP_COMPENSATED);
		} else if (child->state == SAGA_FAILED) {
			char *msg = xasprintf("sub-flow %s failed to compensate: %s", child->flow->name,
					      child->error ? child->error : "");
			engine__set_step_error(s, i, msg);
			engine__history(s, i, "compensation", r->comp_attempt, "failed", child->id, 0, NULL,
				msg, r->started_at);
			free(msg);
			engine__step_set_state(s, i, STEP_COMP_FAILED);
		} else {
			return;
		}
	} else {
		return;
	}
	engine__drive(s);
}

static void child_done(struct saga *child)
{
	struct saga *parent = engine__saga_find(child->e, child->parent_id);

	if (parent == NULL || child->parent_step < 0 ||
	    (size_t)child->parent_step >= parent->flow->n_steps)
		return;
	child_result(parent, child->parent_step, child);
}

/* ---- replies ----------------------------------------------------------------------- */


/* The response body as JSON when the participant says it is JSON (and it parses), else
 * NULL; *stored gets what the saga keeps: that JSON, or the body as a string. */
static json_t *parse_body(const struct http_result *res, json_t **stored)
{
	json_t *v = NULL;

	if (res->body_len > 0 && res->content_type != NULL &&
	    strstr(res->content_type, "json") != NULL)
		v = json_loadb(res->body, res->body_len, JSON_DECODE_ANY, NULL);
	if (v != NULL)
		*stored = json_incref(v);
	else if (res->body_len == 0)
		*stored = json_null();
	else if ((*stored = json_stringn(res->body, res->body_len)) == NULL) {
		/* Not UTF-8: keep the text with '?' for the other bytes (found by fuzz-reply). */
		char *text = util_utf8_sanitize(xstrndup(res->body, res->body_len));

		*stored = json_string(text);
		free(text);
	}
	return v;
}

static enum outcome classify(const struct http_result *res, const struct flow_request *req,
			     const struct retry_policy *rp, json_t *body, char *err, size_t errlen)
{
	if (res->error == 0) {
		if (flow_judge(req, res->status, body, err, errlen))
			return OUT_SUCCESS;
		if (res->status >= 500 && res->status <= 599)
			return (rp->on & RETRY_ON_5XX) ? OUT_RETRY : OUT_FAILED;
		if (res->status == 429)
			return (rp->on & RETRY_ON_429) ? OUT_RETRY : OUT_FAILED;
		return OUT_FAILED;
	}
	snprintf(err, errlen, "%s%s%s", sagad_strerror(res->error),
		 res->error_text ? ": " : "", res->error_text ? res->error_text : "");
	switch (res->error) {
	case SAGAD_ETIMEOUT:
		return (rp->on & RETRY_ON_TIMEOUT) ? OUT_RETRY : OUT_UNKNOWN;
	case SAGAD_ECONNECT:
		if (rp->on & RETRY_ON_CONNECT)
			return OUT_RETRY;
		return res->request_sent ? OUT_UNKNOWN : OUT_FAILED;
	case SAGAD_ETOOBIG:
		return OUT_UNKNOWN;
	default:
		return (rp->on & RETRY_ON_CONNECT) ? OUT_RETRY : OUT_UNKNOWN;
	}
}

enum outcome engine__http_outcome(const struct http_result *res, const struct flow_request *req,
				  const struct retry_policy *rp, json_t **stored, char *err,
				  size_t errlen)
{
	json_t *body = NULL;
	enum outcome o;

	*stored = NULL;
	if (res->error == 0)
		body = parse_body(res, stored);
	o = classify(res, req, rp, body, err, errlen);
	json_decref(body);
	return o;
}

/* The step state an attempt's outcome leads to, by phase. */
static const enum step_state after_outcome[2][4] = {
	[PHASE_ACTION] = {
		[OUT_SUCCESS] = STEP_SUCCEEDED, [OUT_RETRY] = STEP_RETRY_WAIT,
		[OUT_FAILED] = STEP_FAILED, [OUT_UNKNOWN] = STEP_TIMED_OUT,
	},
	[PHASE_COMPENSATION] = {
		[OUT_SUCCESS] = STEP_COMPENSATED, [OUT_RETRY] = STEP_COMP_RETRY_WAIT,
		[OUT_FAILED] = STEP_COMP_FAILED, [OUT_UNKNOWN] = STEP_COMP_FAILED,
	},
};

static const char *outcome_event(const struct http_result *res, enum outcome o)
{
	if (o == OUT_SUCCESS)
		return "succeeded";
	if (res->error == SAGAD_ETIMEOUT)
		return "timed_out";
	return "failed";
}

enum outcome engine__exhaust(const struct retry_policy *rp, int attempt, enum outcome o,
			     bool definite)
{
	int max = rp->max_attempts > 0 ? rp->max_attempts : 1;

	/* Out of attempts: a definite answer (or a request that never left) is a failure; a
	 * timeout or a connection lost after sending leaves the outcome unknown. */
	if (o == OUT_RETRY && attempt >= max)
		return definite ? OUT_FAILED : OUT_UNKNOWN;
	return o;
}

void engine__apply_outcome(struct saga *s, int i, enum phase phase, int attempt, enum outcome o,
			   const char *err, json_t *resp, int64_t retry_after_ms)
{
	const struct flow_step *st = &s->flow->steps[i];
	const struct retry_policy *rp = phase == PHASE_ACTION ? &st->retry : &st->comp_retry;

	/* An earlier attempt that may have been applied keeps a failed action's outcome
	 * unknown: it is then compensated like a success. */
	if (phase == PHASE_ACTION && o == OUT_FAILED && s->steps[i].maybe_applied)
		o = OUT_UNKNOWN;
	if (phase == PHASE_ACTION && (o == OUT_FAILED || o == OUT_UNKNOWN) &&
	    st->fallback == FALLBACK_VALUE) {
		engine__fallback(s, i, attempt, err);
		return;
	}
	if (phase == PHASE_ACTION && o == OUT_SUCCESS && resp != NULL)
		engine__set_response(s, i, flow_keep(st, resp));
	engine__set_step_error(s, i, o == OUT_SUCCESS ? NULL : err);
	engine__step_set_state(s, i, after_outcome[phase][o]);
	if (o == OUT_RETRY)
		engine__timer_arm(s, TIMER_RETRY, i, util_now_ms() +
				  flow_backoff_ms(rp, attempt + 1, retry_after_ms), true);
}

static void on_http_done(const struct http_result *res, void *arg)
{
	struct call *c = arg;
	struct engine *e = c->e;
	struct saga *s = engine__saga_find(e, c->saga_id);
	const struct flow_step *st;
	const struct flow_request *req;
	const struct retry_policy *rp;
	struct step_run *r;
	char err[512], *summary = NULL, *scrubbed = NULL;
	enum outcome o;
	json_t *body = NULL, *stored = NULL, *resp;

	e->inflight--;
	if (s == NULL || s->steps[c->step].call != c) {
		e->stats.late_replies++;
		log_info("saga=%s step=%d event=late_reply phase=%s attempt=%d status=%d "
			 "msg=\"reply for an attempt that is no longer awaited; ignored\"",
			 c->saga_id, c->step, phase_names[c->phase], c->attempt, res->status);
		call_free(c);
		return;
	}
	engine_crashpoint("after_dispatch");
	r = &s->steps[c->step];
	r->call = NULL;
	st = &s->flow->steps[c->step];
	req = c->phase == PHASE_ACTION ? &st->action : st->compensation;
	rp = c->phase == PHASE_ACTION ? &st->retry : &st->comp_retry;
	if (res->error == 0)
		body = parse_body(res, &stored);
	err[0] = '\0';
	o = classify(res, req, rp, body, err, sizeof(err));
	if (c->phase == PHASE_ACTION)
		engine__breaker_record(s, c->step, res->error == 0 && res->status < 500 &&
				       res->status != 429);
	if (c->phase == PHASE_ACTION && o != OUT_SUCCESS && res->error != 0 &&
	    (res->error != SAGAD_ECONNECT || res->request_sent))
		r->maybe_applied = true;
	o = engine__exhaust(rp, c->attempt, o, res->error == 0 ||
			    (res->error == SAGAD_ECONNECT && !res->request_sent));
	if (res->error == 0)
		summary = util_utf8_sanitize(res->body_len > SUMMARY_MAX ?
			xasprintf("%.*s...", SUMMARY_MAX, res->body) : xstrdup(res->body));
	engine__touch(s);
	engine__history(s, c->step, phase_names[c->phase], c->attempt, outcome_event(res, o),
		c->request_summary, res->error == 0 ? res->status : 0, summary,
		o == OUT_SUCCESS ? NULL : err, c->started_at);
	free(summary);
	log_info("saga=%s flow=%s step=%s event=%s phase=%s attempt=%d status=%d ms=%lld%s%s%s",
		 s->id, s->flow->name, st->name, outcome_event(res, o), phase_names[c->phase],
		 c->attempt, res->status, (long long)res->elapsed_ms, o == OUT_SUCCESS ? "" : " error=\"",
		 o == OUT_SUCCESS ? "" : scrub(s, err, &scrubbed), o == OUT_SUCCESS ? "" : "\"");
	free(scrubbed);

	resp = NULL;
	if (o == OUT_SUCCESS && stored != NULL) {   /* json_pack("{s:i, s:O}", ...), quicker */
		resp = json_object();
		json_object_set_new_nocheck(resp, "status", json_integer(res->status));
		json_object_set_nocheck(resp, "body", stored);
	}
	engine__apply_outcome(s, c->step, c->phase, c->attempt, o, err, resp, res->retry_after_ms);
	json_decref(resp);
	json_decref(body);
	json_decref(stored);
	call_free(c);
	e->crash_before_commit = engine__crashpoints_armed();
	engine__drive(s);
}

/* ---- the driver -------------------------------------------------------------------- */

static void step_failure_reason(struct saga *s, int i, char *buf, size_t len)
{
	snprintf(buf, len, "step \"%s\" %s: %s", s->flow->steps[i].name,
		 s->steps[i].state == STEP_TIMED_OUT ? "failed with an unknown outcome" : "failed",
		 s->steps[i].error ? s->steps[i].error : "unknown error");
}

static void complete(struct saga *s)
{
	char err[512];

	json_decref(s->output);
	s->output = flow_render_output(s->flow, s->ctx, err, sizeof(err));
	if (s->output == NULL)
		s->output = json_pack("{s:s}", "error", err);
	saga_set_state(s, SAGA_COMPLETED, NULL);
}

/* Stops waiting for step i's attempt in flight: a late answer is then ignored like any
 * late reply. For a step with nothing to undo, when the saga compensates. */
static void abandon_call(struct saga *s, int i)
{
	struct step_run *r = &s->steps[i];
	const char *msg = "abandoned: the saga is compensating and the step has nothing to undo";

	engine__timer_cancel(s, TIMER_TIMEOUT, i);
	engine__kafka_forget(s, i);
	r->call = NULL;                  /* its reply, if any, is a late reply */
	r->breaker_permit = 0;
	engine__set_step_error(s, i, msg);
	engine__history(s, i, "action", r->attempt, "abandoned", NULL, 0, NULL, msg, 0);
	engine__step_set_state(s, i, STEP_FAILED);
}

/* True while a background step of s is still trying. */
static bool background_pending(const struct saga *s)
{
	for (size_t i = 0; i < s->flow->n_steps; i++)
		if (s->flow->steps[i].background && (s->steps[i].state == STEP_RUNNING ||
						     s->steps[i].state == STEP_RETRY_WAIT))
			return true;
	return false;
}

/* Evaluates step i's `when`: 1 run it, 0 skip it, -1 the condition cannot be evaluated
 * (message in err). */
static int when_holds(struct saga *s, int i, char *err, size_t errlen)
{
	json_t *v;
	int rc;

	if (s->flow->steps[i].when == NULL)
		return 1;
	v = tmpl_eval(s->flow->steps[i].when, s->ctx, err, errlen);
	if (v == NULL)
		return -1;
	if (json_is_boolean(v)) {
		rc = json_is_true(v) ? 1 : 0;
	} else {
		char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(err, errlen, "when must be true or false, got %.200s", text ? text : "?");
		free(text);
		rc = -1;
	}
	json_decref(v);
	return rc;
}

/* Starts step i: checks its condition, then runs it by kind. */
static void step_start(struct saga *s, int i)
{
	const struct flow_step *st = &s->flow->steps[i];
	char err[512];
	int w = when_holds(s, i, err, sizeof(err));

	if (w < 0) {
		char *msg = xasprintf("the condition of step \"%s\" cannot be evaluated: %s",
				      st->name, err);
		engine__set_step_error(s, i, msg);
		engine__history(s, i, "action", 0, "failed", NULL, 0, NULL, msg, 0);
		engine__step_set_state(s, i, STEP_FAILED);
		free(msg);
		return;
	}
	if (w == 0) {
		engine__history(s, i, "action", 0, "skipped", NULL, 0, NULL, "its condition is false", 0);
		engine__step_set_state(s, i, STEP_SKIPPED);
		return;
	}
	switch (st->kind) {
	case STEP_KIND_SUBFLOW:
		subflow_dispatch(s, i);
		break;
	case STEP_KIND_SAGA:
		engine__saga_step_run(s, i);
		break;
	default:
		step_dispatch(s, i, PHASE_ACTION);
		break;
	}
}

/* Advances s until it must wait. */
void engine__drive(struct saga *s)
{
	char reason[640];

	for (;;) {
		if (s->state == SAGA_RUNNING) {
			int g = s->cursor, gn, failed = -1, m;
			bool waiting = false, moved = false;

			if (g >= (int)s->flow->n_steps) {
				if (background_pending(s))
					return;
				complete(s);
				return;
			}
			gn = s->flow->steps[g].group_n;
			/* Start every step of the group (one, or a parallel group) not yet started. */
			for (m = g; m < g + gn && !moved; m++) {
				if (s->steps[m].state != STEP_PENDING)
					continue;
				step_start(s, m);
				/* A child that ended at once has driven this saga already (it may
				 * have moved on, or ended): look again from the top. */
				moved = s->state != SAGA_RUNNING || s->cursor != g;
			}
			if (moved)
				continue;
			/* The join: all must succeed (or be skipped); background steps never hold
			 * it up and never fail it. */
			for (m = g; m < g + gn; m++) {
				bool bg = s->flow->steps[m].background;

				switch (s->steps[m].state) {
				case STEP_SUCCEEDED:
				case STEP_SKIPPED:
					break;
				case STEP_PENDING:
				case STEP_RUNNING:
				case STEP_RETRY_WAIT:
					waiting |= !bg;
					break;
				case STEP_FAILED:
				case STEP_TIMED_OUT:
				case STEP_COMP_FAILED: /* a sub-flow that could not undo itself */
					if (!bg && failed < 0)
						failed = m;
					break;
				default:
					fatalx("saga %s: step %d in state %s while running", s->id, m,
					       step_state_name(s->steps[m].state));
				}
			}
			if (failed >= 0) {
				step_failure_reason(s, failed, reason, sizeof(reason));
				start_compensation(s, reason);
				continue;
			}
			if (waiting)
				return;
			s->cursor = g + gn; /* not persisted: recovery walks from the stored one */
			continue;
		} else if (s->state == SAGA_COMPENSATING) {
			struct step_run *r;
			const struct flow_step *st;

			if (s->cursor >= (int)s->flow->n_steps)
				s->cursor = (int)s->flow->n_steps - 1;
			if (s->cursor < 0) {
				saga_set_state(s, SAGA_COMPENSATED, NULL);
				return;
			}
			r = &s->steps[s->cursor];
			st = &s->flow->steps[s->cursor];
			switch (r->state) {
			case STEP_RUNNING:
				if (st->kind == STEP_KIND_CALL && st->compensation == NULL) {
					/* Nothing to undo whatever its outcome (a notification, a
					 * background view update): do not wait for it. */
					abandon_call(s, s->cursor);
					continue;
				}
				if (st->kind == STEP_KIND_SUBFLOW && r->child_id[0]) {
					/* Stop the child's forward progress; its outcome comes back
					 * through child_result(). */
					struct saga *child = engine__saga_find(s->e, r->child_id);
					if (child != NULL && child->state == SAGA_RUNNING) {
						child->cancel_requested = true;
						start_compensation(child, "its parent saga is compensating");
						engine__drive(child);
						if (r->state != STEP_RUNNING)
							continue;
					}
				}
				return; /* the action's outcome decides whether it needs undoing */
			case STEP_RETRY_WAIT:
				/* Not retried. If an earlier attempt may have been applied, it is
				 * undone like a success; otherwise there is nothing to undo. */
				engine__timer_cancel(s, TIMER_RETRY, s->cursor);
				engine__set_step_error(s, s->cursor, "not retried: the saga is compensating");
				engine__step_set_state(s, s->cursor, r->maybe_applied ? STEP_TIMED_OUT : STEP_FAILED);
				continue;
			case STEP_PENDING:
			case STEP_FAILED:
			case STEP_COMPENSATED:
			case STEP_NOT_COMPENSATED:
			case STEP_SKIPPED:
				s->cursor--;
				continue;
			case STEP_SUCCEEDED:
			case STEP_TIMED_OUT:
				if (st->kind == STEP_KIND_SAGA) {
					engine__history(s, s->cursor, "compensation", 0, "not_compensated",
						NULL, 0, NULL, "a saga step is not undone", 0);
					engine__step_set_state(s, s->cursor, STEP_NOT_COMPENSATED);
					continue;
				}
				if (st->kind == STEP_KIND_SUBFLOW) {
					subflow_compensate(s, s->cursor);
					if (s->state != SAGA_COMPENSATING)
						return;
					if (r->state == STEP_COMPENSATING)
						return;
					continue;
				}
				if (st->compensation == NULL) {
					engine__history(s, s->cursor, "compensation", 0, "not_compensated", NULL, 0,
						NULL, "the step declares no compensation", 0);
					engine__step_set_state(s, s->cursor, STEP_NOT_COMPENSATED);
					continue;
				}
				step_dispatch(s, s->cursor, PHASE_COMPENSATION);
				if (r->state == STEP_COMPENSATING)
					return;
				continue;
			case STEP_COMPENSATING:
			case STEP_COMP_RETRY_WAIT:
				return;
			case STEP_COMP_FAILED:
				snprintf(reason, sizeof(reason),
					 "compensation of step \"%s\" failed: %s; fix the cause, then "
					 "retry with: sagactl saga retry %s", st->name,
					 r->error ? r->error : "unknown error", s->id);
				free(s->error);
				s->error = util_utf8_sanitize(xstrdup(reason));
				saga_set_state(s, SAGA_FAILED, s->error);
				return;
			default:
				fatalx("saga %s: step %d in state %s while compensating", s->id,
				       s->cursor, step_state_name(r->state));
			}
		} else {
			return;
		}
	}
}

/* ---- timers firing ----------------------------------------------------------------- */

static void timer_fired(struct engine *e, const struct timer_entry *t)
{
	struct saga *s = engine__saga_find(e, t->saga_id);
	struct step_run *r;

	if (s == NULL || *timer_slot(s, (enum timer_kind)t->kind, t->step) != t->gen)
		return;
	store_timer_delete(e->store, s->id, timer_kind_names[t->kind], t->step);
	switch (t->kind) {
	case TIMER_DEADLINE:
		if (s->state == SAGA_RUNNING) {
			char reason[128];
			snprintf(reason, sizeof(reason), "deadline of %lldms exceeded",
				 (long long)s->flow->deadline_ms);
			engine__history(s, -1, "saga", 0, "deadline_exceeded", NULL, 0, NULL, reason, 0);
			start_compensation(s, reason);
			engine__drive(s);
		}
		return;
	case TIMER_RETRY:
		if (t->step < 0 || (size_t)t->step >= s->flow->n_steps)
			return;
		r = &s->steps[t->step];
		if (r->state == STEP_RETRY_WAIT && s->state == SAGA_RUNNING)
			step_dispatch(s, t->step, PHASE_ACTION);
		else if (r->state == STEP_COMP_RETRY_WAIT && s->state == SAGA_COMPENSATING)
			step_dispatch(s, t->step, PHASE_COMPENSATION);
		engine__drive(s);
		return;
	case TIMER_TIMEOUT:
		if (t->step < 0 || (size_t)t->step >= s->flow->n_steps)
			return;
		r = &s->steps[t->step];
		if (s->flow->steps[t->step].kind == STEP_KIND_CALL) {
			engine__kafka_timeout(s, t->step);
			engine__drive(s);
			return;
		}
		if (r->state == STEP_RUNNING && s->flow->steps[t->step].kind == STEP_KIND_SUBFLOW) {
			char msg[128];
			struct saga *child = engine__saga_find(e, r->child_id);
			snprintf(msg, sizeof(msg), "sub-flow did not finish within %lldms",
				 (long long)s->flow->steps[t->step].timeout_ms);
			engine__history(s, t->step, "action", r->attempt, "timed_out", r->child_id, 0, NULL,
				msg, 0);
			engine__set_step_error(s, t->step, msg);
			start_compensation(s, msg);
			/* The child is told to compensate by the driver; its outcome returns
			 * through child_result(). */
			if (child == NULL) {
				engine__step_set_state(s, t->step, STEP_TIMED_OUT);
			}
			engine__drive(s);
		}
		return;
	}
}

static void on_wake(uv_timer_t *t)
{
	struct engine *e = t->data;
	int64_t now = util_mono_ms();
	int n = 0;

	e->wake_due = -1;
	while (e->n_heap > 0 && e->heap[0].due <= now && n < TIMER_BATCH) {
		struct timer_entry te = e->heap[0];
		heap_pop(e);
		timer_fired(e, &te);
		n++;
	}
	if (n == TIMER_BATCH && e->n_heap > 0 && e->heap[0].due <= now) {
		/* More are due. Not at 0 ms: libuv would run a timer re-armed at 0 again in this
		 * same timer phase, so the batch would bound nothing. At 1 ms this turn's commit
		 * and the API's I/O run first. */
		e->wake_due = e->heap[0].due;
		uv_timer_start(&e->wake, on_wake, 1, 0);
		return;
	}
	wake_rearm(e);
}

/* ---- saga objects ------------------------------------------------------------------ */

static json_t *make_ctx(const struct saga *s)
{
	char created[40];
	json_t *ctx, *saga;

	util_format_time(s->created_at, created, sizeof(created));
	/* json_pack("{s:O, s:{s:s, s:s, s:i, s:s}, s:{}}", ...) without its format parsing; the
	 * id and the time are ASCII by construction */
	if (s->input == NULL)
		return NULL;
	saga = json_object();
	json_object_set_new_nocheck(saga, "id", json_stringn_nocheck(s->id, strlen(s->id)));
	json_object_set_new_nocheck(saga, "flow", json_string(s->flow->name));
	json_object_set_new_nocheck(saga, "flow_version", json_integer(s->flow->version));
	json_object_set_new_nocheck(saga, "created_at", json_stringn_nocheck(created,
									 strlen(created)));
	ctx = json_object();
	json_object_set_nocheck(ctx, "input", s->input);
	json_object_set_new_nocheck(ctx, "saga", saga);
	json_object_set_new_nocheck(ctx, "steps", json_object());
	return ctx;
}

/* A saga's secrets (secret.h): its sensitive input values, its flow's participant headers
 * from the environment, and those of its parent (found and extra, when given). NULL when
 * there are none. Takes found. */
static struct secret_set *saga_secrets(const struct flow *f, const json_t *input,
				       const struct secret_set *inherited, struct secret_set *found)
{
	struct secret_set *set = found ? found : secret_set_new();

	secret_set_add_saga(set, f, input);
	secret_set_merge(set, inherited);
	if (secret_set_empty(set)) {
		secret_set_free(set);
		return NULL;
	}
	return set;
}

static struct saga *saga_alloc(struct engine *e, struct flow *f)
{
	struct saga *s = xcalloc(1, sizeof(*s));

	s->e = e;
	s->flow = flow_ref(f);
	s->steps = xcalloc(f->n_steps ? f->n_steps : 1, sizeof(*s->steps));
	s->parent_step = -1;
	return s;
}

static void saga_free(struct saga *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->flow->n_steps; i++)
		engine__kafka_forget(s, (int)i);
	for (size_t i = 0; i < s->flow->n_steps; i++)
		free(s->steps[i].error);
	free(s->steps);
	json_decref(s->input);
	json_decref(s->ctx);
	json_decref(s->keys);
	json_decref(s->output);
	secret_set_free(s->secrets);
	free(s->error);
	free(s->idempotency_key);
	answer_pieces_unref(s->answer);
	flow_unref(s->flow);
	free(s);
}

/* Creates a new running saga and records it; answered: keep its answer's pieces for the
 * waiter its starter attaches next. On a key clash returns NULL with *rc = SAGAD_EEXIST and
 * *existing_id set. */
static struct saga *saga_create(struct engine *e, struct flow *f, json_t *input,
				const char *key, const struct saga *parent, int parent_step,
				bool answered, char **existing_id, int *rc)
{
	struct saga *s = saga_alloc(e, f);
	struct store_saga row;
	char *in_text, *out_text;

	util_new_id(s->id);
	s->state = SAGA_RUNNING;
	s->input = json_incref(input);
	s->idempotency_key = key ? xstrdup(key) : NULL;
	s->created_at = s->updated_at = util_now_ms();
	if (f->deadline_ms > 0)
		s->deadline_at = s->created_at + f->deadline_ms;
	memcpy(s->trace_root, s->id, ID_LEN);
	if (parent != NULL) {
		memcpy(s->parent_id, parent->id, ID_LEN);
		memcpy(s->trace_root, parent->trace_root[0] ? parent->trace_root : parent->id, ID_LEN);
		s->parent_step = parent_step;
	}
	s->secrets = saga_secrets(f, input, parent ? parent->secrets : NULL, NULL);
	s->ctx = make_ctx(s);
	fill_saga_row(s, &row, &in_text, &out_text);
	*rc = store_saga_insert(e->store, &row, existing_id);
	if (*rc == 0 && answered) {
		s->answer = answer_pieces_new(f, &row);
		s->answer_reserved = true;
	}
	free(in_text);
	free(out_text);
	if (*rc != 0) {
		saga_free(s);
		return NULL;
	}
	s->inserted = true;
	map_put(e, s);
	s->keys = json_object();
	if (f->n_keys > 0)
		engine__keys_update(s);
	/* Steps get a row when they first move; a step without one is pending. */
	engine__history(s, -1, "saga", 0, "started", NULL, 0, NULL, NULL, 0);
	engine__lifecycle_saga(s);
	if (s->deadline_at > 0)
		engine__timer_arm(s, TIMER_DEADLINE, -1, s->deadline_at, true);
	e->stats.started++;
	engine__touch(s);
	log_info("saga=%s flow=%s version=%d event=saga_started%s%s", s->id, f->name, f->version,
		 parent ? " parent=" : "", parent ? parent->id : "");
	return s;
}

static struct flow *flow_for(struct engine *e, const char *name, int version)
{
	struct flow *f = flow_set_find_version(e->flows, name, version);
	struct dsl_errors errs = { 0 };
	char *source = NULL;

	if (f == NULL)
		f = flow_set_find_version(&e->retired, name, version);
	if (f != NULL)
		return f;
	/* The file changed since the saga started: rebuild the version it started on. */
	if (store_flow_get(e->store, name, version, &source) != 0)
		return NULL;
	if (dsl_load_buffer(name, source, strlen(source), NULL, &f, &errs) != 0) {
		char *text = dsl_errors_format(&errs);
		log_error("flow=%s version=%d event=stored_flow_invalid errors=\"%s\"", name, version, text);
		free(text);
		dsl_errors_close(&errs);
		free(source);
		return NULL;
	}
	free(source);
	flow_set_add(&e->retired, f);
	flow_unref(f);
	log_info("flow=%s version=%d event=flow_version_restored msg=\"resuming sagas on the "
		 "version they started with\"", name, version);
	return f;
}

struct load_ctx {
	struct saga *s;
};

static int on_load_step(const struct store_step *row, void *arg)
{
	struct saga *s = arg;
	enum step_state st;

	if (row->idx < 0 || (size_t)row->idx >= s->flow->n_steps)
		return 0;
	if (step_state_parse(row->state, &st) != 0)
		return 0;
	s->steps[row->idx].state = st;
	s->steps[row->idx].attempt = row->attempt;
	s->steps[row->idx].comp_attempt = row->comp_attempt;
	s->steps[row->idx].error = row->error ? xstrdup(row->error) : NULL;
	s->steps[row->idx].maybe_applied = row->maybe_applied;
	if (row->response != NULL) {
		json_t *v = json_loads(row->response, JSON_DECODE_ANY, NULL);
		if (v != NULL)
			engine__set_response(s, row->idx, v);
	}
	return 0;
}

static struct saga *saga_from_row(struct engine *e, const struct store_saga *row)
{
	struct flow *f = flow_for(e, row->flow, row->flow_version);
	struct secret_set *found;
	struct saga *s;
	enum saga_state st;
	char err[256];

	if (f == NULL) {
		log_error("saga=%s flow=%s version=%d event=resume_failed msg=\"flow version not "
			  "found in flows folder or store\"", row->id, row->flow, row->flow_version);
		return NULL;
	}
	if (saga_state_parse(row->status, &st) != 0)
		return NULL;
	s = saga_alloc(e, f);
	e->loads++;   /* an answer's pieces of an evicted saga may be stale now */
	snprintf(s->id, ID_LEN, "%s", row->id);
	s->state = st;
	s->cursor = row->cursor;
	s->input = json_loads(row->input ? row->input : "{}", 0, NULL);
	if (s->input == NULL)
		s->input = json_object();
	found = secret_set_new();
	if (secret_open_input(e->secrets_key, s->id, s->input, found, err, sizeof(err)) != 0) {
		log_error("saga=%s flow=%s event=resume_failed msg=\"%s\"", row->id, row->flow, err);
		secret_set_free(found);
		saga_free(s);
		return NULL;
	}
	s->secrets = saga_secrets(f, s->input, NULL, found);
	s->output = row->output ? json_loads(row->output, JSON_DECODE_ANY, NULL) : NULL;
	s->error = row->error ? xstrdup(row->error) : NULL;
	s->idempotency_key = row->idempotency_key ? xstrdup(row->idempotency_key) : NULL;
	if (row->parent_id)
		snprintf(s->parent_id, ID_LEN, "%s", row->parent_id);
	/* A resumed child's trace: its parent's (exact for one level of sub-flows). */
	snprintf(s->trace_root, ID_LEN, "%s", row->parent_id ? row->parent_id : row->id);
	s->parent_step = row->parent_step;
	s->cancel_requested = row->cancel_requested;
	s->created_at = row->created_at;
	s->updated_at = row->updated_at;
	s->deadline_at = row->deadline_at;
	s->inserted = true;
	s->ctx = make_ctx(s);
	store_each_step(e->store, s->id, on_load_step, s);
	engine__keys_load(s);
	/* Children's ids: the child rows point at their parent. */
	map_put(e, s);
	return s;
}

static int on_child_row(const struct store_saga *row, void *arg)
{
	struct saga *parent = arg;

	if (row->parent_id && strcmp(row->parent_id, parent->id) == 0 && row->parent_step >= 0 &&
	    (size_t)row->parent_step < parent->flow->n_steps)
		snprintf(parent->steps[row->parent_step].child_id, ID_LEN, "%s", row->id);
	return 0;
}

struct saga *engine__saga_load(struct engine *e, const char *id)
{
	return saga_load(e, id);
}

static struct saga *saga_load(struct engine *e, const char *id)
{
	struct store_saga row;
	struct saga *s = engine__saga_find(e, id);

	if (s != NULL)
		return s;
	if (store_saga_get(e->store, id, &row) != 0)
		return NULL;
	s = saga_from_row(e, &row);
	store_saga_clear(&row);
	if (s != NULL) {
		store_each_child(e->store, s->id, on_child_row, s);
		mark_changed(s); /* evicted again after the next commit if nothing keeps it */
	}
	return s;
}

/* ---- public API -------------------------------------------------------------------- */

static int paused_error(const struct engine *e, char *err, size_t errlen);

static void pause_init(struct engine *e);
static void pause_free(struct engine *e);

int engine_new(const struct engine_options *opt, struct engine **out)
{
	struct engine *e = xcalloc(1, sizeof(*e));

	e->loop = opt->loop;
	e->store = opt->store;
	e->http = opt->http;
	e->flows = opt->flows;
	e->max_wait_ms = opt->max_wait_ms > 0 ? opt->max_wait_ms : 5 * 60 * 1000;
	e->kafka = opt->kafka;
	e->outbox = opt->outbox;
	e->lifecycle_topic = opt->lifecycle_topic ? xstrdup(opt->lifecycle_topic) : NULL;
	e->secrets_key = opt->secrets_key;
	flow_set_init(&e->retired);
	e->effects_tail = &e->effects;
	e->held_tail = &e->held;
	e->wake_due = -1;
	map_rehash(e);
	uv_timer_init(e->loop, &e->wake);
	e->wake.data = e;
	pause_init(e);
	*out = e;
	return 0;
}

static void on_engine_closed(uv_handle_t *h)
{
	free(h->data);
}

static void held_take_back(struct engine *e, bool answer);

void engine_free(struct engine *e)
{
	struct effect *fx, *next;

	if (e == NULL)
		return;
	held_take_back(e, false); /* only after a failed shutdown: nothing more is answered */
	for (fx = e->effects; fx != NULL; fx = next) {
		next = fx->next;
		if (fx->kind == EFFECT_DISPATCH)
			flow_rendered_close(&fx->req); /* the call is on e->calls */
		free(fx);
	}
	while (e->calls != NULL) {
		if (e->calls->hc != NULL)
			http_call_cancel(e->calls->hc);
		call_free(e->calls);
	}
	e->effects = NULL;
	e->effects_tail = &e->effects;
	e->n_touched = 0;
	for (size_t i = 0; i < e->n_slots; i++) {
		struct saga *s = e->slots[i];
		if (s == NULL || s == TOMBSTONE)
			continue;
		while (s->waiters) {
			struct engine_waiter *w = s->waiters;
			s->waiters = w->next;
			w->done = true;
			uv_timer_stop(&w->timer);
			uv_close((uv_handle_t *)&w->timer, on_engine_closed);
		}
		saga_free(s);
	}
	engine__kafka_free(e);
	engine__watches_free(e);
	engine__breakers_free(e);
	pause_free(e);
	free(e->slots);
	free(e->heap);
	free(e->touched);
	flow_set_close(&e->retired);
	uv_timer_stop(&e->wake);
	e->wake.data = e;
	uv_close((uv_handle_t *)&e->wake, on_engine_closed);
}

void engine_set_flows(struct engine *e, struct flow_set *fs)
{
	e->flows = fs;
}

static const char *const final_states[] = { "completed", "compensated", "failed", NULL };

static int on_recover_row(const struct store_saga *row, void *arg)
{
	struct engine *e = arg;

	if (saga_from_row(e, row) == NULL)
		log_error("saga=%s event=not_resumed", row->id);
	return 0;
}

static int on_recover_timer(const struct store_timer *t, void *arg)
{
	struct engine *e = arg;
	struct saga *s = engine__saga_find(e, t->saga_id);

	for (int k = 0; k < TIMER_KIND_MAX; k++)
		if (s != NULL && strcmp(t->kind, timer_kind_names[k]) == 0)
			engine__timer_arm(s, (enum timer_kind)k, t->step, t->due_at, false);
	return 0;
}

int engine_recover(struct engine *e)
{
	size_t resumed = 0, redispatched = 0, saga_steps_waiting = 0;
	int rc;

	rc = store_each_unfinished(e->store, final_states, on_recover_row, e);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < e->n_slots; i++) {
		struct saga *s = e->slots[i];
		if (s != NULL && s != TOMBSTONE)
			store_each_child(e->store, s->id, on_child_row, s);
	}
	rc = store_each_timer(e->store, on_recover_timer, e);
	if (rc != 0)
		return rc;
	/* Re-send every dispatch whose outcome is unknown, with the same idempotency key. */
	for (size_t i = 0; i < e->n_slots; i++) {
		struct saga *s = e->slots[i];
		if (s == NULL || s == TOMBSTONE)
			continue;
		resumed++;
		engine__kafka_recover(s);
		for (size_t j = 0; j < s->flow->n_steps; j++) {
			struct step_run *r = &s->steps[j];
			char err[512];
			enum phase ph;
			int attempt;

			if (r->state == STEP_RUNNING && s->flow->steps[j].kind == STEP_KIND_SUBFLOW)
				continue; /* the child saga resumes on its own */
			if (s->flow->steps[j].kind == STEP_KIND_SAGA) {
				if (r->state == STEP_RUNNING)
					saga_steps_waiting++;
				continue; /* looked at again below, once every saga is loaded */
			}
			if (s->flow->steps[j].participant != NULL &&
			    s->flow->steps[j].participant->kind == PARTICIPANT_KAFKA)
				continue; /* its command is in the outbox; the wait resumes below */
			if (r->state == STEP_RUNNING)
				ph = PHASE_ACTION;
			else if (r->state == STEP_COMPENSATING &&
				 s->flow->steps[j].kind == STEP_KIND_CALL)
				ph = PHASE_COMPENSATION;
			else
				continue;
			attempt = ph == PHASE_ACTION ? r->attempt : r->comp_attempt;
			if (dispatch_call(s, (int)j, ph, attempt, err, sizeof(err)) == 0) {
				engine__history(s, (int)j, phase_names[ph], attempt, "redispatched", NULL, 0,
					NULL, "outcome unknown after restart", 0);
				redispatched++;
			}
		}
		if (s->deadline_at > 0 && s->state == SAGA_RUNNING &&
		    s->timer_gen[TIMER_DEADLINE] == 0)
			engine__timer_arm(s, TIMER_DEADLINE, -1, s->deadline_at, true);
		/* A retry wait whose timer row is missing retries now rather than never. */
		for (size_t j = 0; j < s->flow->n_steps; j++)
			if ((s->steps[j].state == STEP_RETRY_WAIT ||
			     s->steps[j].state == STEP_COMP_RETRY_WAIT) &&
			    s->steps[j].timer_gen[TIMER_RETRY] == 0)
				engine__timer_arm(s, TIMER_RETRY, (int)j, util_now_ms(), true);
	}
	/* Saga steps that were waiting for their target: act (idempotently) and wait again. */
	for (size_t i = 0; saga_steps_waiting > 0 && i < e->n_slots; i++) {
		struct saga *s = e->slots[i];
		if (s == NULL || s == TOMBSTONE)
			continue;
		for (size_t j = 0; j < s->flow->n_steps; j++)
			if (s->flow->steps[j].kind == STEP_KIND_SAGA &&
			    s->steps[j].state == STEP_RUNNING && s->state == SAGA_RUNNING)
				engine__saga_step_run(s, (int)j);
	}
	/* Drive sagas that were between steps when the process stopped. */
	for (size_t i = 0; i < e->n_slots; i++) {
		struct saga *s = e->slots[i];
		if (s != NULL && s != TOMBSTONE)
			engine__drive(s);
	}
	log_info("event=recovered sagas=%zu redispatched=%zu", resumed, redispatched);
	return 0;
}

/* The first Kafka participant f uses, directly or through its sub-flows, or NULL. */
static const char *kafka_needed(struct engine *e, const struct flow *f, int depth)
{
	if (depth > 16)
		return NULL;
	for (size_t k = 0; k < f->n_participants; k++)
		if (f->participants[k].kind == PARTICIPANT_KAFKA)
			return f->participants[k].name;
	for (size_t i = 0; i < f->n_steps; i++) {
		const struct flow *child;
		const char *p;

		if (f->steps[i].kind != STEP_KIND_SUBFLOW)
			continue;
		child = flow_set_find(e->flows, f->steps[i].subflow_name);
		if (child != NULL && (p = kafka_needed(e, child, depth + 1)) != NULL)
			return p;
	}
	return NULL;
}

static int start(struct engine *e, const char *flow_name, json_t *input,
		 const char *idempotency_key, bool answered, char id[27], bool *existed, char *err,
		 size_t errlen)
{
	struct flow *f;
	struct saga *s;
	char *existing = NULL, why[256];
	json_t *checked;
	int rc;

	*existed = false;
	if ((rc = paused_error(e, err, errlen)) != 0)
		return rc;
	if (e->quiescing) {
		snprintf(err, errlen, "sagad is shutting down; retry on another node or after restart");
		return SAGAD_ESHUTDOWN;
	}
	f = flow_set_find(e->flows, flow_name);
	if (f == NULL) {
		snprintf(err, errlen, "no flow named \"%s\"", flow_name);
		return SAGAD_ENOFLOW;
	}
	if (e->outbox == NULL) {
		const char *p = kafka_needed(e, f, 0);
		if (p != NULL) {
			snprintf(err, errlen, "flow %s needs Kafka (participant %s) but sagad runs "
				 "without it; restart sagad with --kafka-brokers", f->name, p);
			return SAGAD_ENOKAFKA;
		}
	}
	if (e->secrets_key == NULL && secret_flow_needs_key(f, why, sizeof(why))) {
		snprintf(err, errlen, "%s, and sagad has no secrets key to store it encrypted: "
			 "restart sagad with --secrets-key FILE (docs/security.md)", why);
		return SAGAD_ENOKEY;
	}
	if (idempotency_key != NULL &&
	    store_saga_find_key(e->store, f->name, idempotency_key, &existing) == 0) {
		snprintf(id, ID_LEN, "%s", existing);
		free(existing);
		*existed = true;
		return 0;
	}
	{
		int64_t retry_after;
		if ((rc = engine_admit(e, flow_name, &retry_after, err, errlen)) != 0)
			return rc;
	}
	checked = json_incref(input);
	rc = flow_check_input(f, &checked, err, errlen);
	if (rc != 0) {
		json_decref(checked);
		return rc;
	}
	s = saga_create(e, f, checked, idempotency_key, NULL, -1, answered, &existing, &rc);
	json_decref(checked);
	if (s == NULL) {
		if (rc == SAGAD_EEXIST && existing != NULL) {
			snprintf(id, ID_LEN, "%s", existing);
			free(existing);
			*existed = true;
			return 0;
		}
		free(existing);
		snprintf(err, errlen, "cannot record the saga: %s", sagad_strerror(rc));
		return rc;
	}
	memcpy(id, s->id, ID_LEN);
	engine__drive(s);
	return 0;
}

int engine_start(struct engine *e, const char *flow_name, json_t *input,
		 const char *idempotency_key, char id[27], bool *existed, char *err, size_t errlen)
{
	return start(e, flow_name, input, idempotency_key, false, id, existed, err, errlen);
}

int engine_start_answered(struct engine *e, const char *flow_name, json_t *input,
			  const char *idempotency_key, char id[27], bool *existed, char *err,
			  size_t errlen)
{
	return start(e, flow_name, input, idempotency_key, true, id, existed, err, errlen);
}

int engine_cancel(struct engine *e, const char *id, char *err, size_t errlen)
{
	struct saga *s = engine__saga_find(e, id);
	int rc;

	if ((rc = paused_error(e, err, errlen)) != 0)
		return rc;
	if (e->quiescing) {
		if (err)
			snprintf(err, errlen, "sagad is shutting down; cancel again after the restart");
		return SAGAD_ESHUTDOWN;
	}
	if (s == NULL) {
		struct store_saga row;
		if (store_saga_get(e->store, id, &row) != 0) {
			if (err)
				snprintf(err, errlen, "no saga with id \"%s\"", id);
			return SAGAD_ENOSAGA;
		}
		if (err)
			snprintf(err, errlen, "saga %s is already %s; nothing to cancel", id, row.status);
		store_saga_clear(&row);
		return SAGAD_ESTATE;
	}
	if (s->state == SAGA_COMPENSATED) {
		if (err)
			snprintf(err, errlen, "saga %s is already compensated; nothing to cancel", id);
		return SAGAD_ESTATE;
	}
	return engine__saga_cancel(s, "cancelled by request", false, err, errlen);
}

int engine_retry(struct engine *e, const char *id, char *err, size_t errlen)
{
	struct saga *s;
	int rc;

	if ((rc = paused_error(e, err, errlen)) != 0)
		return rc;
	if (e->quiescing) {
		if (err)
			snprintf(err, errlen, "sagad is shutting down; retry again after the restart");
		return SAGAD_ESHUTDOWN;
	}
	s = saga_load(e, id);
	if (s == NULL) {
		if (err)
			snprintf(err, errlen, "no saga with id \"%s\"", id);
		return SAGAD_ENOSAGA;
	}
	if (s->state != SAGA_FAILED) {
		if (err)
			snprintf(err, errlen, "saga %s is %s; only failed sagas can be retried", id,
				 saga_state_name(s->state));
		return SAGAD_ESTATE;
	}
	/* Give every failed compensation a new round of attempts, from the top. */
	for (size_t i = 0; i < s->flow->n_steps; i++) {
		struct step_run *r = &s->steps[i];
		if (r->state == STEP_COMP_FAILED) {
			/* Back to "needs undoing": the driver compensates it again. */
			r->comp_attempt = 0;
			engine__step_set_state(s, (int)i, STEP_SUCCEEDED);
		}
	}
	engine__history(s, -1, "saga", 0, "retry_requested", NULL, 0, NULL, NULL, 0);
	free(s->error);
	s->error = xstrdup("compensating again after an operator retry (an earlier compensation "
			   "had failed; see the history)");
	s->cursor = (int)s->flow->n_steps - 1;
	saga_set_state(s, SAGA_COMPENSATING, "retried by an operator");
	engine__drive(s);
	return 0;
}

/* ---- waiters ----------------------------------------------------------------------- */

static void on_waiter_closed(uv_handle_t *h)
{
	struct engine_waiter *w = h->data;

	answer_pieces_unref(w->answer);
	free(w);
}

static void waiter_finish(struct engine_waiter *w, enum engine_wait_result res)
{
	engine_wait_cb cb = w->cb;
	void *arg = w->arg;
	char id[ID_LEN];

	if (w->done)
		return;
	w->done = true;
	memcpy(id, w->saga_id, ID_LEN);
	uv_timer_stop(&w->timer);
	w->timer.data = w;
	uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
	cb(id, res, arg);
}

static void waiter_unlink(struct engine_waiter *w)
{
	struct saga *s = engine__saga_find(w->e, w->saga_id);
	struct engine_waiter **p;

	if (s == NULL)
		return;
	for (p = &s->waiters; *p != NULL; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			engine__answer_kept(s);   /* the last waiter gone: drop the pieces now */
			return;
		}
}

static void on_wait_timeout_committed(void *arg)
{
	struct engine_waiter *w = arg;

	w->timeout_pending = false;
	if (w->cb == NULL) {
		/* Cancelled while waiting for the commit. */
		uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
		return;
	}
	waiter_finish(w, ENGINE_WAIT_TIMEOUT);
}

/* Timers run before this turn's commit: the answer (the saga as it is) waits for it. */
static void on_wait_timeout(uv_timer_t *t)
{
	struct engine_waiter *w = t->data;

	waiter_unlink(w);
	w->timeout_pending = true;
	engine_defer(w->e, on_wait_timeout_committed, w);
}

/* Where a waiter stands against the saga's committed state. -1: not yet. */
static int waiter_check(const struct saga *s, const struct engine_waiter *w)
{
	switch (w->target) {
	case ENGINE_WAIT_COMMITTED:
		return ENGINE_WAIT_REACHED;
	case ENGINE_WAIT_COMPLETION:
		return saga_ended(s->state) ? ENGINE_WAIT_REACHED : -1;
	case ENGINE_WAIT_STEP:
		if (s->steps[w->step].state == STEP_SUCCEEDED)
			return ENGINE_WAIT_REACHED;
		if (s->state != SAGA_RUNNING)
			return ENGINE_WAIT_UNREACHABLE;
		return -1;
	}
	return -1;
}

struct engine_waiter *engine_wait(struct engine *e, const char *id, enum engine_wait_target t,
				  const char *step, int64_t timeout_ms, engine_wait_cb cb,
				  void *arg, int *rc)
{
	struct saga *s = engine__saga_find(e, id);
	struct engine_waiter *w;
	int idx = -1;

	*rc = 0;
	if (s == NULL) {
		*rc = e->quiescing ? SAGAD_ESHUTDOWN : SAGAD_ENOSAGA;
		return NULL;
	}
	if (t == ENGINE_WAIT_STEP) {
		const struct flow_step *st = step ? flow_find_step(s->flow, step) : NULL;
		if (st == NULL)
			*rc = SAGAD_EINVAL;
		else
			idx = st->index;
	}
	if (e->quiescing)
		*rc = SAGAD_ESHUTDOWN;
	if (*rc != 0) {
		/* A starter's waiter that will not come (engine_start_answered()): the pieces
		 * were kept for it. */
		s->answer_reserved = false;
		engine__answer_kept(s);
		return NULL;
	}
	if (timeout_ms <= 0 || timeout_ms > e->max_wait_ms)
		timeout_ms = e->max_wait_ms;
	w = xcalloc(1, sizeof(*w));
	w->e = e;
	memcpy(w->saga_id, s->id, ID_LEN);
	w->target = t;
	w->step = idx;
	w->cb = cb;
	w->arg = arg;
	uv_timer_init(e->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)timeout_ms, 0);
	w->next = s->waiters;
	s->waiters = w;
	s->answer_reserved = false;   /* the starter's waiter is here (engine_start_answered()) */
	/* Checked after the next commit. */
	engine__touch(s);
	return w;
}

void engine_wait_cancel(struct engine_waiter *w)
{
	if (w == NULL || w->done)
		return;
	if (w->timeout_pending || w->held) {
		w->cb = NULL; /* the deferred call, or the release, closes it */
		return;
	}
	waiter_unlink(w);
	w->done = true;
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
}

void engine_defer(struct engine *e, engine_defer_cb cb, void *arg)
{
	struct effect *fx = xcalloc(1, sizeof(*fx));

	fx->kind = EFFECT_DEFER;
	fx->cb = cb;
	fx->arg = arg;
	queue_effect(e, fx);
}

/* ---- the commit cycle -------------------------------------------------------------- */

static int pause_or_fail(struct engine *e, int rc);

/* Takes the waiters of s that its committed state decides off its list, onto *tail: they are
 * answered when the commit is durable. Their timeouts stop now. */
static void decide_waiters(struct saga *s, struct engine_waiter ***tail)
{
	struct engine_waiter **p = &s->waiters;

	while (*p != NULL) {
		struct engine_waiter *w = *p;
		int res = waiter_check(s, w);
		if (res < 0) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		uv_timer_stop(&w->timer);
		w->held = true;
		w->result = (enum engine_wait_result)res;
		if (s->answer != NULL) {
			/* kept up to date by s while held: the answer is written at release */
			w->answer = answer_pieces_ref(s->answer);
			w->loads = s->e->loads;
		}
		w->next = NULL;
		**tail = w;
		*tail = &w->next;
	}
}

static void hold(struct engine *e, uint64_t ticket, struct engine_waiter *waiters,
		 struct effect *effects)
{
	struct held *h;

	if (waiters == NULL && effects == NULL)
		return;
	h = xcalloc(1, sizeof(*h));
	h->ticket = ticket;
	h->waiters = waiters;
	h->effects = effects;
	*e->held_tail = h;
	e->held_tail = &h->next;
}

/* Answers a held waiter (or closes it: its client went away meanwhile). */
static void held_waiter_finish(struct engine_waiter *w, enum engine_wait_result res)
{
	w->held = false;
	if (w->cb != NULL) {
		w->e->answering = w;   /* engine_answer_text() during the callback */
		waiter_finish(w, res);
		w->e->answering = NULL;
		return;
	}
	w->done = true;
	uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
}

/* Takes every held batch back (a pause, or the engine freed): its effects go before the
 * turn's, oldest first; its waiters are answered ENGINE_WAIT_ABORTED (answer) or closed. */
static void held_take_back(struct engine *e, bool answer)
{
	struct effect *back = NULL, **tail = &back;

	while (e->held != NULL) {
		struct held *h = e->held;
		struct engine_waiter *w, *wnext;

		e->held = h->next;
		for (w = h->waiters; w != NULL; w = wnext) {
			wnext = w->next;
			if (answer) {
				held_waiter_finish(w, ENGINE_WAIT_ABORTED);
			} else {
				w->done = true;
				uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
			}
		}
		*tail = h->effects;
		while (*tail != NULL)
			tail = &(*tail)->next;
		free(h);
	}
	e->held_tail = &e->held;
	if (back != NULL) {
		*tail = e->effects;
		if (e->effects == NULL)
			e->effects_tail = tail;
		e->effects = back;
	}
}

/* Runs what the commits up to ticket durable allow, oldest first: answers first (they see
 * the committed state), then dispatches and deferred calls. */
static void release(struct engine *e, uint64_t durable)
{
	while (e->held != NULL && e->held->ticket <= durable) {
		struct held *h = e->held;
		struct engine_waiter *w, *wnext;
		struct effect *fx, *next;
		/* The answers read one snapshot of the store (no write is pending here: it is
		 * the committed state), taking SQLite's read locks once for the batch, unless each
		 * of them is written from memory (engine_answer_text()). */
		bool read = false, reading;

		for (w = h->waiters; w != NULL && !read; w = w->next)
			read = w->answer == NULL;
		reading = read && store_read_begin(e->store);

		e->held = h->next;
		if (e->held == NULL)
			e->held_tail = &e->held;
		for (w = h->waiters; w != NULL; w = wnext) {
			wnext = w->next;
			held_waiter_finish(w, w->result);
		}
		if (reading)
			store_read_end(e->store);
		for (fx = h->effects; fx != NULL; fx = next) {
			next = fx->next;
			if (fx->kind == EFFECT_DISPATCH)
				run_dispatch(e, fx);
			else
				fx->cb(fx->arg);
			if (fx->kind == EFFECT_DISPATCH)
				flow_rendered_close(&fx->req);
			free(fx);
		}
		free(h);
	}
}

int engine_answer_text(struct engine *e, const char *id, const struct flow_set *fs,
		       bool history, struct strbuf *b, const struct flow **flow, char *status,
		       size_t status_len)
{
	const struct engine_waiter *w = e->answering;
	struct saga *s;

	/* Only at a release (no write pending: the pieces are the committed rows), for the
	 * saga whose waiter is being answered. */
	if (w == NULL || w->answer == NULL || strcmp(w->saga_id, id) != 0 ||
	    store_pending(e->store))
		return SAGAD_ENOENT;
	/* Still kept by the saga, so up to date; or the saga left memory since (its pieces are
	 * then its last rows) and was not loaded from the store again (and written) since. */
	s = engine__saga_find(e, id);
	if (s != NULL ? s->answer != w->answer : e->loads != w->loads)
		return SAGAD_ENOENT;
	return answer_pieces_text(w->answer, fs, history, b, flow, status, status_len);
}

static void evict(struct saga *s)
{
	map_del(s->e, s);
	saga_free(s);
}

/* One commit cycle (the loop's prepare phase): commits the turn's writes, decides the waiters
 * of the sagas they touched, holds those answers and the turn's effects under the commit's
 * ticket, and releases everything whose commit is durable. A store without a pipeline is
 * durable at once: then all of it happens here, in this order. With the WAL sync thread, a
 * turn whose previous commit is still being synced does not commit: its writes stay in the
 * open transaction and go with the next commit, once that sync is done (one commit per sync,
 * as many sagas in it as the disk's latency gathers; the loop never waits). */
int engine_flush(struct engine *e)
{
	bool syncing;
	int rounds = 0;

	do {
		struct engine_waiter *decided = NULL, **dtail = &decided;
		struct effect *fx;
		uint64_t durable = 0;
		size_t n_touched;
		int rc;

		if (e->write_error != 0) {
			store_rollback(e->store);
			return pause_or_fail(e, e->write_error);
		}
		if (engine_paused(e) != NULL) {
			store_rollback(e->store); /* others' writes (purge, outbox marks): not now */
			durable = UINT64_MAX; /* only deferred reads are held, nothing was written */
		} else {
			rc = store_durable(e->store, &durable);
			if (rc != 0) /* a sync failed: what it should have made durable may be lost */
				return pause_or_fail(e, rc);
		}
		syncing = durable < store_committed(e->store);
		if (store_pending(e->store) && !syncing) {
			if (e->crash_before_commit)
				engine_crashpoint("before_reply_commit");
			rc = store_commit(e->store);
			if (rc != 0) {
				log_error("event=commit_failed err=\"%s\"", sagad_strerror(rc));
				return pause_or_fail(e, rc);
			}
			if (e->crash_before_commit) {
				e->crash_before_commit = false;
				engine_crashpoint("after_reply_commit");
			}
			if (e->effects != NULL)
				engine_crashpoint("after_commit");
			/* Durable already when the store syncs inside the commit (no pipeline). */
			rc = store_durable(e->store, &durable);
			if (rc != 0)
				return pause_or_fail(e, rc);
		}
		fx = e->effects;
		e->effects = NULL;
		e->effects_tail = &e->effects;
		n_touched = e->n_touched;
		for (size_t i = 0; i < n_touched; i++) {
			struct saga *s = e->touched[i];
			s->changed = false;
			decide_waiters(s, &dtail);
		}
		/* Writes still pending are committed with the next commit: that is their ticket. */
		hold(e, store_committed(e->store) + (store_pending(e->store) ? 1 : 0), decided, fx);
		/* Answers read the store: never with uncommitted writes on the connection. */
		if (!store_pending(e->store))
			release(e, durable);
		/* Every turn, not only after a commit: rows an earlier run left unsent must leave
		 * even when nothing else is written (it does nothing when there is nothing new);
		 * the store hands out only rows of durable commits. */
		if (engine_paused(e) == NULL)
			outbox_after_commit(e->outbox);
		/* Evict ended sagas nobody waits for. Sagas touched during the effects above
		 * were appended after n_touched and stay for the next round. */
		for (size_t i = 0; i < n_touched; i++) {
			struct saga *s = e->touched[i];
			if (saga_ended(s->state) && s->waiters == NULL && !s->changed)
				evict(s);
		}
		if (e->n_touched > n_touched)
			memmove(e->touched, e->touched + n_touched,
				(e->n_touched - n_touched) * sizeof(*e->touched));
		e->n_touched -= n_touched;
	} while (((store_pending(e->store) && !syncing) || e->effects != NULL) && ++rounds < 8);
	return 0;
}

int engine_drain(struct engine *e)
{
	int rc = engine_flush(e);

	if (rc != 0)
		return rc;
	rc = store_pipeline_stop(e->store);
	if (rc != 0)
		return pause_or_fail(e, rc);
	return engine_flush(e);
}

static json_t *time_or_null(int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_null();
	util_format_time(ms, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *str_or_null(const char *v)
{
	return v ? json_string(v) : json_null();
}

json_t *engine_saga_json(struct engine *e, const char *id)
{
	struct saga *s = engine__saga_find(e, id);
	json_t *o, *steps;

	if (s == NULL)
		return NULL;
	steps = json_array();
	for (size_t i = 0; i < s->flow->n_steps; i++) {
		const struct step_run *r = &s->steps[i];
		json_t *resp = ctx_response(s, (int)i);

		json_array_append_new(steps, json_pack("{s:s, s:i, s:s, s:i, s:i, s:O, s:o}", "name",
						       s->flow->steps[i].name, "index", (int)i,
						       "state", step_state_name(r->state), "attempt",
						       r->attempt, "comp_attempt", r->comp_attempt,
						       "response", resp ? resp : json_null(), "error",
						       str_or_null(r->error)));
	}
	o = json_pack("{s:s, s:s, s:i, s:s, s:o, s:b, s:o, s:o}", "id", s->id, "flow", s->flow->name,
		      "flow_version", s->flow->version, "status", saga_state_name(s->state), "error",
		      str_or_null(s->error), "cancel_requested", s->cancel_requested, "parent_id",
		      s->parent_id[0] ? json_string(s->parent_id) : json_null(), "idempotency_key",
		      str_or_null(s->idempotency_key));
	json_object_set_new(o, "created_at", time_or_null(s->created_at));
	json_object_set_new(o, "updated_at", time_or_null(s->updated_at));
	json_object_set_new(o, "deadline_at", time_or_null(s->deadline_at));
	json_object_set(o, "input", s->input);
	json_object_set(o, "output", s->output ? s->output : json_null());
	json_object_set(o, "keys", s->keys ? s->keys : json_object());
	json_object_set_new(o, "steps", steps);
	if (s->secrets != NULL || secret_flow_has_sensitive(s->flow)) {
		json_t *in = json_copy(s->input);
		secret_mask_input(s->flow, in);
		json_object_set_new(o, "input", in);
		json_object_set_new(o, "output", secret_scrub_json(s->secrets, json_deep_copy(
					    json_object_get(o, "output"))));
		json_object_set_new(o, "steps", secret_scrub_json(s->secrets, json_deep_copy(steps)));
		json_object_set_new(o, "error", secret_scrub_json(s->secrets, json_deep_copy(
					    json_object_get(o, "error"))));
	}
	return o;
}

void engine_quiesce(struct engine *e)
{
	e->quiescing = true;
	for (size_t i = 0; i < e->n_slots; i++) {
		struct saga *s = e->slots[i];
		if (s == NULL || s == TOMBSTONE)
			continue;
		while (s->waiters != NULL) {
			struct engine_waiter *w = s->waiters;
			s->waiters = w->next;
			waiter_finish(w, ENGINE_WAIT_ABORTED);
		}
	}
}

size_t engine_inflight(const struct engine *e)
{
	return e->inflight;
}

void engine_stats(const struct engine *e, struct engine_stats *out)
{
	*out = e->stats;
	out->active = e->n_sagas;
	out->kafka_refused = e->kafka != NULL ? kafka_records_refused(e->kafka) : 0;
}

/* ---- store failures: pause, probe, resume ------------------------------------------ */

#define PAUSE_PROBE_MIN_MS 200
#define PAUSE_PROBE_MAX_MS 5000
#define PAUSE_FLAP_MS 2000       /* paused again this soon after resuming: keep backing off */

struct engine_pause {
	struct engine *e;
	uv_timer_t probe;
	bool on;
	int rc;                  /* the error that paused the engine */
	uint64_t backoff_ms;
	int64_t since, resumed_at; /* util_mono_ms() */
	unsigned probes;
	char reason[256];
};

static void on_pause_closed(uv_handle_t *h)
{
	free(h->data);
}

static void pause_init(struct engine *e)
{
	struct engine_pause *p = xcalloc(1, sizeof(*p));

	p->e = e;
	p->backoff_ms = PAUSE_PROBE_MIN_MS;
	p->resumed_at = -PAUSE_FLAP_MS;
	uv_timer_init(e->loop, &p->probe);
	p->probe.data = p;
	e->pause = p;
}

static void pause_free(struct engine *e)
{
	if (e->pause == NULL)
		return;
	uv_timer_stop(&e->pause->probe);
	uv_close((uv_handle_t *)&e->pause->probe, on_pause_closed);
	e->pause = NULL;
}

const char *engine_paused(const struct engine *e)
{
	return e->pause != NULL && e->pause->on ? e->pause->reason : NULL;
}

static int paused_error(const struct engine *e, char *err, size_t errlen)
{
	if (engine_paused(e) == NULL)
		return 0;
	if (err != NULL)
		snprintf(err, errlen, "%s; retry later", e->pause->reason);
	return e->pause->rc;
}

/* Forgets every in-memory saga: after a failed commit, memory is ahead of the store. The
 * turn's dispatches are dropped (their transitions were rolled back); calls already sent
 * stay with the HTTP client, and their replies, awaited by no step any more, are ignored
 * as late. Deferred calls run: they answer reads from the store, and release Kafka records
 * (a reply whose effect was rolled back is then lost; its step's reply deadline sends the
 * command again with the same idempotency key and the participant answers again). */
static void pause_forget_all(struct engine *e)
{
	struct effect *fx, *next, *defers = NULL, **tail = &defers;

	/* What earlier commits allowed but their sync did not confirm goes too, first: their
	 * waiters are told (503), their deferred calls run with the others below. */
	held_take_back(e, true);
	fx = e->effects;
	e->effects = NULL;
	e->effects_tail = &e->effects;
	for (; fx != NULL; fx = next) {
		struct saga *s;

		next = fx->next;
		if (fx->kind == EFFECT_DEFER) {
			*tail = fx;
			tail = &fx->next;
			continue;
		}
		s = engine__saga_find(e, fx->call->saga_id);
		if (s != NULL && s->steps[fx->call->step].call == fx->call)
			s->steps[fx->call->step].call = NULL;
		e->inflight--;
		call_free(fx->call);
		flow_rendered_close(&fx->req);
		free(fx);
	}
	*tail = NULL;
	e->n_touched = 0;
	for (size_t i = 0; i < e->n_slots; i++) {
		struct saga *s = e->slots[i];

		if (s == NULL || s == TOMBSTONE)
			continue;
		e->slots[i] = NULL;
		for (size_t j = 0; j < s->flow->n_steps; j++)
			s->steps[j].call = NULL; /* freed by its reply (ignored) */
		while (s->waiters != NULL) {
			struct engine_waiter *w = s->waiters;
			s->waiters = w->next;
			waiter_finish(w, ENGINE_WAIT_ABORTED);
		}
		saga_free(s);
	}
	e->n_sagas = e->n_used = 0;
	engine__watches_free(e); /* recovery runs the watching saga steps again */
	e->n_heap = 0;
	uv_timer_stop(&e->wake);
	e->wake_due = -1;
	e->crash_before_commit = false;
	e->write_error = 0;
	for (fx = defers; fx != NULL; fx = next) {
		next = fx->next;
		fx->cb(fx->arg);
		free(fx);
	}
}

static void on_pause_probe(uv_timer_t *t);

static void pause_set_reason(struct engine_pause *p, int rc)
{
	p->rc = rc;
	snprintf(p->reason, sizeof(p->reason), "store unavailable (%s): sagas are paused until "
		 "a write succeeds", sagad_strerror(rc));
}

static int pause_or_fail(struct engine *e, int rc)
{
	struct engine_pause *p = e->pause;
	int64_t now = util_mono_ms();

	e->write_error = 0;
	if (rc != SAGAD_EBUSY && rc != SAGAD_EFULL && rc != SAGAD_EIO)
		return rc; /* fenced by a newer owner, or worse: crash-only */
	p->on = true;
	p->since = now;
	p->probes = 0;
	if (now - p->resumed_at < PAUSE_FLAP_MS)
		p->backoff_ms = p->backoff_ms * 2 > PAUSE_PROBE_MAX_MS ? PAUSE_PROBE_MAX_MS :
				p->backoff_ms * 2;
	else
		p->backoff_ms = PAUSE_PROBE_MIN_MS;
	pause_set_reason(p, rc);
	log_error("event=store_paused err=\"%s\" sagas=%zu calls_in_flight=%zu msg=\"writes are "
		  "rolled back and nothing is sent; starts get 503; probing every %llu ms, then "
		  "the sagas resume from the store\"", sagad_strerror(rc), e->n_sagas, e->inflight,
		  (unsigned long long)p->backoff_ms);
	pause_forget_all(e);
	uv_timer_start(&p->probe, on_pause_probe, p->backoff_ms, 0);
	return 0;
}

static void on_pause_probe(uv_timer_t *t)
{
	struct engine_pause *p = t->data;
	struct engine *e = p->e;
	int rc;

	p->probes++;
	rc = store_probe(e->store);
	if (rc != 0) {
		if (p->probes == 1 || p->probes % 10 == 0)
			log_warn("event=store_probe_failed err=\"%s\" probes=%u paused_ms=%lld",
				 sagad_strerror(rc), p->probes, (long long)(util_mono_ms() - p->since));
		pause_set_reason(p, rc); /* the condition may have changed (full, then busy) */
		p->backoff_ms = p->backoff_ms * 2 > PAUSE_PROBE_MAX_MS ? PAUSE_PROBE_MAX_MS :
				p->backoff_ms * 2;
		uv_timer_start(&p->probe, on_pause_probe, p->backoff_ms, 0);
		return;
	}
	p->on = false;
	p->resumed_at = util_mono_ms();
	log_info("event=store_resumed paused_ms=%lld probes=%u msg=\"rebuilding the sagas from "
		 "the store\"", (long long)(p->resumed_at - p->since), p->probes);
	rc = engine_recover(e);
	if (rc != 0) {
		store_rollback(e->store);
		if (pause_or_fail(e, rc) != 0)
			fatalx("resuming after a store failure: %s", sagad_strerror(rc));
	}
	/* The next flush commits what recovery wrote (re-dispatch rows) and sends. */
}
