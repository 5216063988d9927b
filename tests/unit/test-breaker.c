/* test-breaker.c: circuit breakers (breaker.c), time driven by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "breaker.h"
#include "error.h"
#include "util.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Only consecutive failures (rate off). */
static struct breaker_config consecutive_cfg(int n, int64_t open_ms, int probes)
{
	struct breaker_config c = {
		.consecutive_failures = n, .open_ms = open_ms, .half_open_probes = probes,
	};
	return c;
}

/* Only the failure rate (consecutive off). */
static struct breaker_config rate_cfg(int rate, int64_t window_ms, int min_calls)
{
	struct breaker_config c = {
		.failure_rate = rate, .window_ms = window_ms, .min_calls = min_calls,
		.open_ms = 1000, .half_open_probes = 1,
	};
	return c;
}

/* One call at now: asks, must be let through, records the outcome; returns the state after. */
static enum breaker_state call(struct breaker *b, int64_t now, bool success)
{
	uint64_t permit = breaker_allow(b, now, NULL);

	assert_true(permit > 0);
	return breaker_record(b, now, permit, success);
}

static void calls(struct breaker *b, int64_t now, int n, bool success)
{
	for (int i = 0; i < n; i++)
		call(b, now, success);
}

/* Drives a breaker into open at now (consecutive_cfg). */
static void trip(struct breaker *b, int64_t now, int n)
{
	calls(b, now, n, false);
	assert_int_equal(breaker_state(b, now), BREAKER_OPEN);
}

static void test_names(void **state)
{
	assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
	assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
	assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
}

static void test_config_check(void **state)
{
	static const struct {
		struct breaker_config cfg;
		const char *err;
	} bad[] = {
		{ { .failure_rate = 101, .window_ms = 1000, .min_calls = 1, .open_ms = 1,
		    .half_open_probes = 1 }, "failure_rate must be a percentage 1-100 (0: not used), got 101" },
		{ { .failure_rate = -1, .window_ms = 1000, .min_calls = 1, .open_ms = 1,
		    .half_open_probes = 1 }, "failure_rate must be a percentage 1-100 (0: not used), got -1" },
		{ { .consecutive_failures = -2, .open_ms = 1, .half_open_probes = 1 },
		  "consecutive_failures must be >= 1 (0: not used), got -2" },
		{ { .open_ms = 1, .half_open_probes = 1 },
		  "set failure_rate or consecutive_failures (or both): nothing would open the breaker" },
		{ { .failure_rate = 50, .window_ms = 9, .min_calls = 1, .open_ms = 1,
		    .half_open_probes = 1 }, "window_ms must be at least 10 ms, got 9" },
		{ { .failure_rate = 50, .window_ms = 10, .min_calls = 0, .open_ms = 1,
		    .half_open_probes = 1 }, "min_calls must be >= 1, got 0" },
		{ { .consecutive_failures = 1, .open_ms = 0, .half_open_probes = 1 },
		  "open_ms must be >= 1, got 0" },
		{ { .consecutive_failures = 1, .open_ms = 1, .half_open_probes = 0 },
		  "half_open_probes must be 1-1000, got 0" },
		{ { .consecutive_failures = 1, .open_ms = 1, .half_open_probes = 1001 },
		  "half_open_probes must be 1-1000, got 1001" },
		{ { .consecutive_failures = 1, .open_ms = 1, .half_open_probes = 1,
		    .probe_timeout_ms = -1 }, "probe_timeout_ms must be >= 0 (0: open_ms), got -1" },
	};
	struct breaker_config def, c;
	char err[200];

	for (size_t i = 0; i < N(bad); i++) {
		err[0] = '\0';
		assert_int_equal(breaker_config_check(&bad[i].cfg, err, sizeof(err)), SAGAD_EINVAL);
		assert_string_equal(err, bad[i].err);
		assert_int_equal(breaker_config_check(&bad[i].cfg, NULL, 0), SAGAD_EINVAL);
	}
	breaker_config_default(&def);
	assert_int_equal(breaker_config_check(&def, err, sizeof(err)), 0);
	assert_int_equal(def.failure_rate, 50);
	assert_int_equal(def.window_ms, 10000);
	assert_int_equal(def.min_calls, 10);
	assert_int_equal(def.consecutive_failures, 5);
	assert_int_equal(def.open_ms, 30000);
	assert_int_equal(def.half_open_probes, 1);
	/* window and min_calls do not matter when the rate is off */
	c = consecutive_cfg(1, 1, 1);
	assert_int_equal(breaker_config_check(&c, err, sizeof(err)), 0);
}

static void test_opens_on_consecutive_failures(void **state)
{
	struct breaker_config c = consecutive_cfg(3, 1000, 1);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;

	assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
	assert_int_equal(call(b, 10, false), BREAKER_CLOSED);
	assert_int_equal(call(b, 20, false), BREAKER_CLOSED);
	breaker_stats(b, 20, &st);
	assert_int_equal(st.consecutive, 2);
	assert_int_equal(call(b, 30, true), BREAKER_CLOSED);     /* a success breaks the run */
	breaker_stats(b, 30, &st);
	assert_int_equal(st.consecutive, 0);
	assert_int_equal(call(b, 40, false), BREAKER_CLOSED);
	assert_int_equal(call(b, 50, false), BREAKER_CLOSED);
	assert_int_equal(call(b, 60, false), BREAKER_OPEN);
	breaker_stats(b, 60, &st);
	assert_int_equal(st.state, BREAKER_OPEN);
	assert_int_equal(st.opened, 1);
	assert_int_equal(st.successes, 1);
	assert_int_equal(st.failures, 5);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.open_remaining_ms, 1000);
	breaker_free(b);
	breaker_free(NULL);
}

static void test_opens_on_failure_rate(void **state)
{
	struct breaker_config c = rate_cfg(50, 10000, 4);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;

	assert_int_equal(call(b, 0, true), BREAKER_CLOSED);
	assert_int_equal(call(b, 1, false), BREAKER_CLOSED);
	assert_int_equal(call(b, 2, false), BREAKER_CLOSED);     /* 2 of 3: under min_calls */
	breaker_stats(b, 2, &st);
	assert_int_equal(st.window_calls, 3);
	assert_int_equal(st.window_failures, 2);
	assert_int_equal(call(b, 3, true), BREAKER_OPEN);        /* 2 of 4 = 50% */
	breaker_free(b);

	/* below the threshold stays closed, however many calls */
	b = breaker_new(&c);
	for (int i = 0; i < 100; i++)
		assert_int_equal(call(b, i, i % 5 < 3), BREAKER_CLOSED);    /* 2 of 5 fail */
	breaker_stats(b, 99, &st);
	assert_int_equal(st.window_calls, 100);
	assert_int_equal(st.window_failures, 40);
	breaker_free(b);

	/* 100%: only when every call failed */
	c = rate_cfg(100, 10000, 3);
	b = breaker_new(&c);
	calls(b, 0, 1, true);
	calls(b, 0, 10, false);
	assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
	breaker_free(b);
}

static void test_min_calls(void **state)
{
	struct breaker_config c = rate_cfg(50, 10000, 10);
	struct breaker *b = breaker_new(&c);

	for (int i = 0; i < 9; i++)
		assert_int_equal(call(b, i, false), BREAKER_CLOSED);
	assert_int_equal(call(b, 9, false), BREAKER_OPEN);
	breaker_free(b);

	/* a success can be the call that reaches min_calls */
	b = breaker_new(&c);
	calls(b, 0, 9, false);
	assert_int_equal(call(b, 1, true), BREAKER_OPEN);       /* 9 of 10 */
	breaker_free(b);
}

static void test_window_rolls(void **state)
{
	struct breaker_config c = rate_cfg(50, 1000, 4);    /* 10 buckets of 100 ms */
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;

	calls(b, 0, 3, false);                              /* bucket [0, 100) */
	breaker_stats(b, 999, &st);
	assert_int_equal(st.window_calls, 3);
	breaker_stats(b, 1000, &st);                        /* ten buckets later: gone */
	assert_int_equal(st.window_calls, 0);
	assert_int_equal(call(b, 999, true), BREAKER_OPEN); /* still in: 3 of 4 */
	breaker_free(b);

	b = breaker_new(&c);
	calls(b, 0, 3, false);
	assert_int_equal(call(b, 1000, true), BREAKER_CLOSED);   /* the old ones left */
	breaker_stats(b, 1000, &st);
	assert_int_equal(st.window_calls, 1);
	assert_int_equal(st.window_failures, 0);
	breaker_free(b);

	/* buckets leave one by one */
	b = breaker_new(&c);
	calls(b, 50, 1, false);     /* bucket 0 */
	calls(b, 450, 1, false);    /* bucket 4 */
	calls(b, 950, 1, true);     /* bucket 9 */
	breaker_stats(b, 999, &st);
	assert_int_equal(st.window_calls, 3);
	breaker_stats(b, 1050, &st);
	assert_int_equal(st.window_calls, 2);
	assert_int_equal(st.window_failures, 1);
	breaker_stats(b, 1450, &st);
	assert_int_equal(st.window_calls, 1);
	assert_int_equal(st.window_failures, 0);
	breaker_stats(b, 5000, &st);
	assert_int_equal(st.window_calls, 0);
	/* a bucket slot reused after a full turn starts from zero */
	assert_int_equal(call(b, 5010, false), BREAKER_CLOSED);
	breaker_stats(b, 5010, &st);
	assert_int_equal(st.window_calls, 1);
	assert_int_equal(st.window_failures, 1);
	breaker_free(b);
}

static void test_both_modes(void **state)
{
	struct breaker_config c = rate_cfg(50, 10000, 100);
	struct breaker *b;

	c.consecutive_failures = 3;
	b = breaker_new(&c);
	calls(b, 0, 3, false);                     /* the run opens it long before min_calls */
	assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
	breaker_free(b);

	c = rate_cfg(50, 10000, 4);
	c.consecutive_failures = 3;
	b = breaker_new(&c);
	call(b, 0, false);
	call(b, 0, true);
	call(b, 0, false);
	assert_int_equal(call(b, 0, true), BREAKER_OPEN);   /* the rate, with no run of 3 */
	breaker_free(b);
}

static void test_open_then_half_open(void **state)
{
	struct breaker_config c = consecutive_cfg(2, 1000, 1);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;
	int64_t retry = -1;

	trip(b, 100, 2);
	assert_int_equal(breaker_allow(b, 100, &retry), 0);
	assert_int_equal(retry, 1000);
	assert_int_equal(breaker_allow(b, 600, &retry), 0);
	assert_int_equal(retry, 500);
	assert_int_equal(breaker_allow(b, 1099, &retry), 0);
	assert_int_equal(retry, 1);
	assert_int_equal(breaker_allow(b, 1099, NULL), 0);         /* retry may be NULL */
	assert_int_equal(breaker_state(b, 1099), BREAKER_OPEN);
	breaker_stats(b, 1099, &st);
	assert_int_equal(st.rejected, 4);
	assert_int_equal(st.open_remaining_ms, 1);
	assert_int_equal(breaker_state(b, 1100), BREAKER_HALF_OPEN);  /* by time alone */
	breaker_stats(b, 1100, &st);
	assert_int_equal(st.state, BREAKER_HALF_OPEN);
	assert_int_equal(st.open_remaining_ms, 0);
	assert_true(breaker_allow(b, 1100, &retry) > 0);
	breaker_free(b);

	/* allow() itself moves it to half-open, however late */
	b = breaker_new(&c);
	trip(b, 0, 2);
	assert_true(breaker_allow(b, 1000000, NULL) > 0);
	assert_int_equal(breaker_state(b, 1000000), BREAKER_HALF_OPEN);
	breaker_free(b);
}

static void test_probe_success_closes(void **state)
{
	struct breaker_config c = consecutive_cfg(2, 1000, 2);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;
	uint64_t p1, p2;
	int64_t retry;

	trip(b, 0, 2);
	p1 = breaker_allow(b, 1000, NULL);
	p2 = breaker_allow(b, 1010, NULL);
	assert_true(p1 > 0 && p2 > 0);
	assert_int_equal(breaker_record(b, 1020, p1, true), BREAKER_HALF_OPEN);   /* 1 of 2 */
	assert_int_equal(breaker_allow(b, 1030, &retry), 0);    /* both probes were sent */
	assert_int_equal(breaker_record(b, 1040, p2, true), BREAKER_CLOSED);
	breaker_stats(b, 1040, &st);
	assert_int_equal(st.closed, 1);
	assert_int_equal(st.opened, 1);
	assert_int_equal(st.successes, 2);
	assert_int_equal(st.failures, 2);
	assert_int_equal(st.window_calls, 0);
	assert_int_equal(st.consecutive, 0);
	/* closed again: calls flow, and it takes a full new run to open */
	assert_int_equal(call(b, 1050, false), BREAKER_CLOSED);
	assert_int_equal(call(b, 1060, false), BREAKER_OPEN);
	breaker_free(b);
}

static void test_probe_failure_reopens(void **state)
{
	struct breaker_config c = consecutive_cfg(2, 1000, 2);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;
	uint64_t p1, p2;
	int64_t retry;

	trip(b, 0, 2);
	p1 = breaker_allow(b, 1000, NULL);
	p2 = breaker_allow(b, 1000, NULL);
	assert_int_equal(breaker_record(b, 1100, p1, true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_record(b, 1200, p2, false), BREAKER_OPEN);    /* any failure */
	assert_int_equal(breaker_allow(b, 1200, &retry), 0);
	assert_int_equal(retry, 1000);                          /* a full new open period */
	breaker_stats(b, 1200, &st);
	assert_int_equal(st.opened, 2);
	assert_int_equal(st.closed, 0);
	breaker_free(b);

	/* the first failing probe decides: a later success of the other is ignored */
	b = breaker_new(&c);
	trip(b, 0, 2);
	p1 = breaker_allow(b, 1000, NULL);
	p2 = breaker_allow(b, 1000, NULL);
	assert_int_equal(breaker_record(b, 1100, p1, false), BREAKER_OPEN);
	assert_int_equal(breaker_record(b, 1150, p2, true), BREAKER_OPEN);
	breaker_stats(b, 1150, &st);
	assert_int_equal(st.ignored, 1);
	/* ...also once the next half-open phase has begun: it is not one of its probes */
	assert_true(breaker_allow(b, 2100, NULL) > 0);
	assert_int_equal(breaker_record(b, 2110, p2, true), BREAKER_HALF_OPEN);
	breaker_stats(b, 2110, &st);
	assert_int_equal(st.ignored, 2);
	breaker_free(b);
}

static void test_probes_limited(void **state)
{
	struct breaker_config c = consecutive_cfg(1, 1000, 3);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;
	uint64_t p[3];
	int64_t retry = -1;

	trip(b, 0, 1);
	for (int i = 0; i < 3; i++)
		assert_true((p[i] = breaker_allow(b, 1000 + i, NULL)) > 0);
	assert_int_equal(breaker_allow(b, 1003, &retry), 0);
	assert_int_equal(retry, 1000 - 1);      /* the last probe went at 1002; timeout open_ms */
	assert_int_equal(breaker_allow(b, 1500, &retry), 0);
	assert_int_equal(retry, 502);
	/* an answer frees no slot: the three decide */
	assert_int_equal(breaker_record(b, 1600, p[0], true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_allow(b, 1600, NULL), 0);
	assert_int_equal(breaker_record(b, 1600, p[1], true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_allow(b, 1600, NULL), 0);
	assert_int_equal(breaker_record(b, 1600, p[2], true), BREAKER_CLOSED);
	breaker_stats(b, 1600, &st);
	assert_int_equal(st.rejected, 4);
	breaker_free(b);

	/* more answers than probes sent are ignored: they cannot close it */
	b = breaker_new(&c);
	trip(b, 0, 1);
	p[0] = breaker_allow(b, 1000, NULL);
	p[1] = breaker_allow(b, 1000, NULL);
	assert_int_equal(breaker_record(b, 1001, p[0], true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_record(b, 1001, p[0], true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_record(b, 1001, p[0], true), BREAKER_HALF_OPEN);
	breaker_stats(b, 1001, &st);
	assert_int_equal(st.ignored, 1);
	p[2] = breaker_allow(b, 1002, NULL);     /* the third probe still has to go and succeed */
	assert_true(p[2] > 0);
	assert_int_equal(breaker_record(b, 1003, p[2], true), BREAKER_CLOSED);
	breaker_free(b);
}

static void test_lost_probe(void **state)
{
	struct breaker_config c = consecutive_cfg(1, 1000, 1);
	struct breaker *b;
	struct breaker_stats st;
	uint64_t p;
	int64_t retry;

	c.probe_timeout_ms = 500;
	b = breaker_new(&c);
	trip(b, 0, 1);
	p = breaker_allow(b, 1000, NULL);
	assert_true(p > 0);
	assert_int_equal(breaker_allow(b, 1200, &retry), 0);
	assert_int_equal(retry, 300);
	assert_int_equal(breaker_state(b, 1499), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_state(b, 1500), BREAKER_OPEN);   /* never answered: failed */
	breaker_stats(b, 1500, &st);
	assert_int_equal(st.opened, 2);
	assert_int_equal(st.failures, 2);
	assert_int_equal(st.open_remaining_ms, 1000);
	/* its answer, if it comes, is stale */
	assert_int_equal(breaker_record(b, 2600, p, true), BREAKER_HALF_OPEN);
	breaker_stats(b, 2600, &st);
	assert_int_equal(st.closed, 0);
	breaker_free(b);

	/* probe_timeout_ms 0 means open_ms */
	c.probe_timeout_ms = 0;
	b = breaker_new(&c);
	trip(b, 0, 1);
	assert_true(breaker_allow(b, 1000, NULL) > 0);
	assert_int_equal(breaker_state(b, 1999), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_state(b, 2000), BREAKER_OPEN);
	breaker_free(b);

	/* an unused half-open (no probe sent) waits for traffic, however long */
	b = breaker_new(&c);
	trip(b, 0, 1);
	assert_int_equal(breaker_state(b, 100000), BREAKER_HALF_OPEN);
	breaker_free(b);
}

static void test_permits(void **state)
{
	struct breaker_config c = consecutive_cfg(2, 1000, 1);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;
	uint64_t old, probe;

	old = breaker_allow(b, 0, NULL);          /* a slow call sent while closed */
	trip(b, 10, 2);
	/* open: outcomes are not counted */
	assert_int_equal(breaker_record(b, 20, old, false), BREAKER_OPEN);
	assert_int_equal(breaker_record(b, 20, 0, true), BREAKER_OPEN);
	probe = breaker_allow(b, 1010, NULL);
	assert_true(probe > 0 && probe != old);
	/* half-open: the slow call's success is not the probe's, nor is a permit-less one */
	assert_int_equal(breaker_record(b, 1020, old, true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_record(b, 1020, 0, true), BREAKER_HALF_OPEN);
	assert_int_equal(breaker_record(b, 1030, probe, true), BREAKER_CLOSED);
	/* closed: an outcome from an older closed phase is stale, a permit-less one counts */
	assert_int_equal(breaker_record(b, 1040, old, false), BREAKER_CLOSED);
	assert_int_equal(breaker_record(b, 1040, old, false), BREAKER_CLOSED);
	breaker_stats(b, 1040, &st);
	assert_int_equal(st.consecutive, 0);
	assert_int_equal(st.ignored, 6);
	assert_int_equal(breaker_record(b, 1050, 0, false), BREAKER_CLOSED);
	assert_int_equal(breaker_record(b, 1050, 0, false), BREAKER_OPEN);
	breaker_free(b);
}

static void test_configure(void **state)
{
	struct breaker_config c = rate_cfg(50, 1000, 4);
	struct breaker *b = breaker_new(&c);
	struct breaker_stats st;

	calls(b, 0, 3, false);
	c.min_calls = 3;                          /* same window: the counts stay */
	breaker_configure(b, &c);
	breaker_stats(b, 0, &st);
	assert_int_equal(st.window_calls, 3);
	c.window_ms = 2000;                       /* new window: starts empty */
	breaker_configure(b, &c);
	breaker_stats(b, 0, &st);
	assert_int_equal(st.window_calls, 0);
	calls(b, 0, 2, false);
	assert_int_equal(call(b, 0, false), BREAKER_OPEN);
	/* open_ms of the next opening follows the new config; the running period is kept */
	c.open_ms = 50;
	breaker_configure(b, &c);
	assert_int_equal(breaker_state(b, 999), BREAKER_OPEN);
	assert_int_equal(breaker_state(b, 1000), BREAKER_HALF_OPEN);
	breaker_free(b);
}

struct seen {
	char keys[256];
	size_t n;
};

static void on_each(const char *key, struct breaker *b, void *arg)
{
	struct seen *s = arg;

	assert_non_null(b);
	s->n += (size_t)snprintf(s->keys + s->n, sizeof(s->keys) - s->n, "%s;", key);
}

static void test_set(void **state)
{
	struct breaker_config c1 = consecutive_cfg(1, 1000, 1), c2 = consecutive_cfg(3, 1000, 1);
	struct breaker_set *set = breaker_set_new();
	struct breaker *pay, *again, *cls;
	struct seen seen = { .n = 0 };
	char key[32];

	assert_int_equal(breaker_set_count(set), 0);
	assert_null(breaker_set_find(set, "payment"));
	pay = breaker_set_get(set, "payment", &c1);
	cls = breaker_set_get(set, "class", &c1);
	breaker_set_get(set, "delivery", &c1);
	breaker_set_get(set, "http://127.0.0.1:8084", &c1);
	assert_int_equal(breaker_set_count(set), 4);
	assert_ptr_not_equal(pay, cls);
	assert_ptr_equal(breaker_set_find(set, "payment"), pay);
	assert_null(breaker_set_find(set, "pay"));
	/* the same key gives the same breaker, state included */
	trip(pay, 0, 1);
	again = breaker_set_get(set, "payment", &c1);
	assert_ptr_equal(again, pay);
	assert_int_equal(breaker_state(again, 0), BREAKER_OPEN);
	assert_int_equal(breaker_state(cls, 0), BREAKER_CLOSED);
	/* a different config reconfigures it in place */
	assert_ptr_equal(breaker_set_get(set, "class", &c2), cls);
	calls(cls, 0, 2, false);
	assert_int_equal(breaker_state(cls, 0), BREAKER_CLOSED);
	assert_int_equal(call(cls, 0, false), BREAKER_OPEN);
	breaker_set_foreach(set, on_each, &seen);
	assert_string_equal(seen.keys, "class;delivery;http://127.0.0.1:8084;payment;");
	/* many keys, inserted out of order, stay findable */
	for (int i = 99; i >= 0; i--) {
		snprintf(key, sizeof(key), "p%03d", (i * 37) % 100);
		breaker_set_get(set, key, &c1);
	}
	assert_int_equal(breaker_set_count(set), 104);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "p%03d", i);
		assert_non_null(breaker_set_find(set, key));
	}
	assert_ptr_equal(breaker_set_find(set, "payment"), pay);
	breaker_set_free(set);
	breaker_set_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_config_check),
		cmocka_unit_test(test_opens_on_consecutive_failures),
		cmocka_unit_test(test_opens_on_failure_rate),
		cmocka_unit_test(test_min_calls),
		cmocka_unit_test(test_window_rolls),
		cmocka_unit_test(test_both_modes),
		cmocka_unit_test(test_open_then_half_open),
		cmocka_unit_test(test_probe_success_closes),
		cmocka_unit_test(test_probe_failure_reopens),
		cmocka_unit_test(test_probes_limited),
		cmocka_unit_test(test_lost_probe),
		cmocka_unit_test(test_permits),
		cmocka_unit_test(test_configure),
		cmocka_unit_test(test_set),
	};

	return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
