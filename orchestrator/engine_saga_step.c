/* engine_saga_step.c: saga steps, which act on another saga found by a business key (a
 * cancel, refund or change flow acting on the saga it is about).
 *
 *   find:   the target's status, output and keys become the step's response body; with
 *           `states`, a target in another state fails the step.
 *   cancel: a running target stops going forward and compensates (an action in flight is
 *           awaited first: its outcome decides whether it is undone); a completed target
 *           has its steps undone; a compensating one is awaited. The step succeeds when the
 *           target is compensated and fails when the target's compensation fails (failed).
 *   No target: the step fails, or with `if_missing: skip` succeeds with found = false
 *           (a cancel that arrives before, or without, the saga it undoes).
 *
 * A waiting step is a watch (target id -> saga, step) in memory; after a restart the step
 * is run again, which is idempotent, and waits again. */
#include <string.h>

#include "engine_internal.h"
#include "error.h"
#include "expr.h"
#include "log.h"
#include "store.h"
#include "util.h"

struct saga_watch {
	char target[ID_LEN];
	char saga[ID_LEN];
	int step;
};

static json_t *target_body(const struct saga *t)
{
	return json_pack("{s:b, s:s, s:s, s:s, s:O, s:O, s:o}", "found", 1, "id", t->id, "flow",
			 t->flow->name, "status", saga_state_name(t->state), "output",
			 t->output ? t->output : json_null(), "keys", t->keys ? t->keys : json_object(),
			 "error", t->error ? json_string(t->error) : json_null());
}

static void succeed(struct saga *s, int i, int status, json_t *body, const char *summary)
{
	char *text = json_dumps(body, JSON_COMPACT);

	engine__set_response(s, i, json_pack("{s:i, s:o}", "status", status, "body", body));
	engine__set_step_error(s, i, NULL);
	engine__history(s, i, "action", s->steps[i].attempt, "succeeded", summary, status, text,
			NULL, 0);
	free(text);
	engine__step_set_state(s, i, STEP_SUCCEEDED);
}

static void fail(struct saga *s, int i, const char *summary, const char *msg)
{
	engine__set_step_error(s, i, msg);
	engine__history(s, i, "action", s->steps[i].attempt, "failed", summary, 0, NULL, msg, 0);
	log_info("saga=%s step=%s event=failed msg=\"%s\"", s->id, s->flow->steps[i].name, msg);
	engine__step_set_state(s, i, STEP_FAILED);
}

static void watch_add(struct engine *e, const char *target, const char *saga, int step)
{
	for (size_t k = 0; k < e->n_watches; k++)
		if (!strcmp(e->watches[k].target, target) && !strcmp(e->watches[k].saga, saga) &&
		    e->watches[k].step == step)
			return;
	if (e->n_watches == e->cap_watches) {
		e->cap_watches = e->cap_watches ? e->cap_watches * 2 : 8;
		e->watches = xrealloc(e->watches, e->cap_watches * sizeof(*e->watches));
	}
	memcpy(e->watches[e->n_watches].target, target, ID_LEN);
	memcpy(e->watches[e->n_watches].saga, saga, ID_LEN);
	e->watches[e->n_watches++].step = step;
}

static bool state_listed(const struct flow_saga_ref *ref, enum saga_state st)
{
	if (ref->n_states == 0)
		return true;
	for (size_t k = 0; k < ref->n_states; k++)
		if (!strcmp(ref->states[k], saga_state_name(st)))
			return true;
	return false;
}

void engine__saga_step_run(struct saga *s, int i)
{
	struct engine *e = s->e;
	const struct flow_saga_ref *ref = s->flow->steps[i].saga_ref;
	struct step_run *r = &s->steps[i];
	char err[512], *value, *summary, *id = NULL, *msg;
	struct saga *t;
	int rc;

	if (r->state == STEP_PENDING)
		r->attempt++;
	if ((value = tmpl_eval_string(ref->key_value, s->ctx, err, sizeof(err))) == NULL) {
		msg = xasprintf("key %s of the target saga cannot be rendered: %s", ref->key_name, err);
		fail(s, i, NULL, msg);
		free(msg);
		return;
	}
	summary = xasprintf("%s the %s saga with %s=%s", ref->op == SAGA_OP_CANCEL ? "cancel" : "find",
			    ref->flow, ref->key_name, value);
	rc = store_key_find(e->store, ref->flow, ref->key_name, value, &id);
	if (rc == SAGAD_ENOENT) {
		if (ref->missing_ok) {
			succeed(s, i, 404, json_pack("{s:b}", "found", 0), summary);
		} else {
			msg = xasprintf("no saga of flow \"%s\" has %s=%s", ref->flow, ref->key_name,
					value);
			fail(s, i, summary, msg);
			free(msg);
		}
		goto out;
	}
	t = rc == 0 ? engine__saga_load(e, id) : NULL;
	if (t == NULL) {
		msg = xasprintf("saga %s cannot be read: %s", id ? id : "?", sagad_strerror(rc ? rc :
				SAGAD_ENOSAGA));
		fail(s, i, summary, msg);
		free(msg);
		goto out;
	}
	if (t == s) {
		fail(s, i, summary, "a saga step cannot act on its own saga");
		goto out;
	}
	if (ref->op == SAGA_OP_FIND) {
		if (state_listed(ref, t->state)) {
			succeed(s, i, 200, target_body(t), summary);
		} else {
			msg = xasprintf("saga %s (flow %s) is %s, which this step does not accept",
					t->id, t->flow->name, saga_state_name(t->state));
			fail(s, i, summary, msg);
			free(msg);
		}
		goto out;
	}
	if (t->state != SAGA_FAILED) {
		char by[160];

		snprintf(by, sizeof(by), "cancelled by saga %s (flow %s, step %s)", s->id,
			 s->flow->name, s->flow->steps[i].name);
		engine__saga_cancel(t, by, true, err, sizeof(err));
	}
	if (t->state == SAGA_COMPENSATED) {
		succeed(s, i, 200, target_body(t), summary);
	} else if (t->state == SAGA_FAILED) {
		msg = xasprintf("saga %s (flow %s) could not be compensated: %s; an operator must "
				"retry it (sagactl saga retry %s)", t->id, t->flow->name,
				t->error ? t->error : "failed", t->id);
		fail(s, i, summary, msg);
		free(msg);
	} else {
		watch_add(e, t->id, s->id, i);
		if (r->state != STEP_RUNNING) {
			engine__history(s, i, "action", r->attempt, "waiting", summary, 0, NULL,
					"waiting for the target saga to be compensated", 0);
			engine__step_set_state(s, i, STEP_RUNNING);
		}
	}
out:
	free(summary);
	free(value);
	free(id);
}

void engine__watch_notify(struct saga *t)
{
	struct engine *e = t->e;
	struct saga_watch *woken = NULL;
	size_t n = 0, k = 0;

	if (t->state != SAGA_COMPENSATED && t->state != SAGA_FAILED)
		return;
	/* Take this target's watches off the list first: waking a step may add watches. */
	while (k < e->n_watches) {
		if (strcmp(e->watches[k].target, t->id) != 0) {
			k++;
			continue;
		}
		woken = xrealloc(woken, (n + 1) * sizeof(*woken));
		woken[n++] = e->watches[k];
		e->watches[k] = e->watches[--e->n_watches];
	}
	for (k = 0; k < n; k++) {
		struct saga *s = engine__saga_find(e, woken[k].saga);
		int i = woken[k].step;

		if (s == NULL || s->state != SAGA_RUNNING || s->steps[i].state != STEP_RUNNING)
			continue;
		engine__saga_step_run(s, i);
		engine__drive(s);
	}
	free(woken);
}

void engine__watches_free(struct engine *e)
{
	free(e->watches);
	e->watches = NULL;
	e->n_watches = e->cap_watches = 0;
}
