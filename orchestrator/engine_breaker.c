/* engine_breaker.c: circuit breakers and step fallbacks.
 *
 * One breaker (breaker.c) per participant identity, "kind name url-or-topic", shared by every
 * saga of every flow naming that participant, made on first use with the participant's
 * `circuit_breaker` settings (a reload reconfigures it, keeping its state). Only actions pass
 * through it: each attempt asks for a permit before it is dispatched and hands the permit back
 * with its outcome (a connection error, a timeout, a 5xx or a 429 is a failure; any other
 * answer is a working participant). A refused attempt fails the step at once, or gives it its
 * fallback value. Compensations are never refused: undoing must eventually happen. Breakers
 * live in memory only: after a restart every breaker starts closed. */
#include <string.h>

#include "breaker.h"
#include "engine_internal.h"
#include "error.h"
#include "log.h"
#include "util.h"

static const struct participant *breaker_participant(const struct saga *s, int i)
{
	const struct flow_step *st = &s->flow->steps[i];

	if (st->kind != STEP_KIND_CALL || st->participant == NULL || !st->participant->breaker.enabled)
		return NULL;
	return st->participant;
}

static void breaker_key(const struct participant *p, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s %s", p->kind == PARTICIPANT_KAFKA ? "kafka" : "http", p->name,
		 p->kind == PARTICIPANT_KAFKA ? (p->topic ? p->topic : "-") : p->base_url);
}

static struct breaker *breaker_of(struct engine *e, const struct participant *p)
{
	const struct flow_breaker *fb = &p->breaker;
	struct breaker_config cfg = {
		.failure_rate = fb->failure_rate, .window_ms = fb->window_ms,
		.min_calls = fb->min_calls, .consecutive_failures = fb->consecutive_failures,
		.open_ms = fb->open_ms, .half_open_probes = fb->half_open_probes,
	};
	char key[640], err[200];

	if (breaker_config_check(&cfg, err, sizeof(err)) != 0) {
		log_warn("participant=%s event=breaker_config_invalid msg=\"%s\"", p->name, err);
		return NULL;
	}
	if (e->breakers == NULL)
		e->breakers = breaker_set_new();
	breaker_key(p, key, sizeof(key));
	return breaker_set_get(e->breakers, key, &cfg);
}

bool engine__breaker_refuses(struct saga *s, int i)
{
	const struct participant *p = breaker_participant(s, i);
	struct step_run *r = &s->steps[i];
	struct breaker *b;
	int64_t retry_after = 0;
	uint64_t permit;
	char *msg;

	if (p == NULL || (b = breaker_of(s->e, p)) == NULL)
		return false;
	permit = breaker_allow(b, util_mono_ms(), &retry_after);
	if (permit != 0) {
		r->breaker_permit = permit;
		return false;
	}
	r->attempt++;
	msg = xasprintf("circuit breaker of participant %s is open; not called (it probes again "
			"in %lldms)", p->name, (long long)retry_after);
	log_info("saga=%s step=%s event=breaker_refused participant=%s retry_after_ms=%lld",
		 s->id, s->flow->steps[i].name, p->name, (long long)retry_after);
	engine__touch(s);
	engine__history(s, i, "action", r->attempt, "refused", NULL, 0, NULL, msg, 0);
	/* Definite: nothing was sent. Fails the step (or takes its fallback). */
	engine__apply_outcome(s, i, PHASE_ACTION, r->attempt, OUT_FAILED, msg, NULL, -1);
	free(msg);
	return true;
}

void engine__breaker_record(struct saga *s, int i, bool success)
{
	const struct participant *p = breaker_participant(s, i);
	struct step_run *r = &s->steps[i];
	enum breaker_state before, after;
	struct breaker *b;
	int64_t now = util_mono_ms();

	if (p == NULL || (b = breaker_of(s->e, p)) == NULL)
		return;
	before = breaker_state(b, now);
	after = breaker_record(b, now, r->breaker_permit, success);
	r->breaker_permit = 0;
	if (after != before)
		log_warn("participant=%s event=breaker_%s from=%s", p->name, breaker_state_name(after),
			 breaker_state_name(before));
}

int engine_admit(struct engine *e, const char *flow_name, int64_t *retry_after_ms, char *err,
		 size_t errlen)
{
	struct flow *f = flow_set_find(e->flows, flow_name);
	const struct participant *p;
	struct breaker *b;
	struct breaker_stats st;
	char key[640];

	*retry_after_ms = 0;
	if (f == NULL || f->pivot < 0 || e->breakers == NULL)
		return 0;
	p = f->steps[f->pivot].participant;
	if (f->steps[f->pivot].kind != STEP_KIND_CALL || p == NULL || !p->breaker.enabled)
		return 0;
	breaker_key(p, key, sizeof(key));
	if ((b = breaker_set_find(e->breakers, key)) == NULL)
		return 0;
	breaker_stats(b, util_mono_ms(), &st);
	if (st.state != BREAKER_OPEN)
		return 0;
	*retry_after_ms = st.open_remaining_ms;
	snprintf(err, errlen, "participant %s (the pivot of flow %s) is failing and its circuit "
		 "breaker is open; no new sagas for now: try again in %llds", p->name, f->name,
		 (long long)((st.open_remaining_ms + 999) / 1000));
	return SAGAD_EOPEN;
}

struct metrics_ctx {
	json_t *arr;
	int64_t now;
};

static void on_breaker(const char *key, struct breaker *b, void *arg)
{
	struct metrics_ctx *mc = arg;
	struct breaker_stats st;
	const char *sp = strchr(key, ' ');
	char name[256];

	breaker_stats(b, mc->now, &st);
	snprintf(name, sizeof(name), "%.*s", sp ? (int)(strcspn(sp + 1, " ")) : 0, sp ? sp + 1 : "");
	json_array_append_new(mc->arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "key", key,
		"participant", name, "state", breaker_state_name(st.state), "opened",
		(json_int_t)st.opened, "rejected", (json_int_t)st.rejected, "failures",
		(json_int_t)st.failures, "open_remaining_ms", (json_int_t)st.open_remaining_ms));
}

json_t *engine_breakers_json(struct engine *e)
{
	struct metrics_ctx mc = { json_array(), util_mono_ms() };

	if (e->breakers != NULL)
		breaker_set_foreach(e->breakers, on_breaker, &mc);
	return mc.arr;
}

void engine__fallback(struct saga *s, int i, int attempt, const char *why)
{
	const struct flow_step *st = &s->flow->steps[i];
	char *msg = xasprintf("fallback value used: %s", why ? why : "the step failed");

	engine__set_response(s, i, json_pack("{s:O, s:b}", "body", st->fallback_value,
					     "fallback", 1));
	engine__set_step_error(s, i, msg);
	engine__history(s, i, "action", attempt, "fallback", NULL, 0, NULL, msg, 0);
	log_info("saga=%s step=%s event=fallback msg=\"%s\"", s->id, st->name, msg);
	engine__step_set_state(s, i, STEP_SUCCEEDED);
	free(msg);
}

void engine__breakers_free(struct engine *e)
{
	breaker_set_free(e->breakers);
	e->breakers = NULL;
}
