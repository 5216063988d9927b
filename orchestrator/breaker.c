/* breaker.c: circuit breakers (see breaker.h). Every entry point first lets time do its part
 * (refresh(): open -> half_open when the open period is over, half_open -> open when probes are
 * lost), then acts; every state change goes through transition(). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "breaker.h"
#include "error.h"
#include "util.h"

struct bucket {
	int64_t epoch;            /* now / width when it was filled */
	int calls, failures;
};

struct breaker {
	struct breaker_config cfg;
	enum breaker_state state;
	uint64_t phase;           /* the permit of the current phase; counts up from 1 */
	int64_t open_until;       /* open */
	int64_t probe_deadline;   /* half_open, with probes out */
	int probes_out, probes_ok;
	int consecutive;          /* closed: failures in a row */
	struct bucket buckets[BREAKER_BUCKETS];
	struct breaker_stats st;  /* counters; the other fields are filled by breaker_stats() */
};

const char *breaker_state_name(enum breaker_state s)
{
	switch (s) {
	case BREAKER_CLOSED: return "closed";
	case BREAKER_OPEN: return "open";
	case BREAKER_HALF_OPEN: return "half_open";
	}
	return "?";
}

void breaker_config_default(struct breaker_config *cfg)
{
	cfg->failure_rate = 50;
	cfg->window_ms = 10000;
	cfg->min_calls = 10;
	cfg->consecutive_failures = 5;
	cfg->open_ms = 30000;
	cfg->half_open_probes = 1;
	cfg->probe_timeout_ms = 0;
}

static int check_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int check_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return SAGAD_EINVAL;
}

int breaker_config_check(const struct breaker_config *cfg, char *err, size_t errlen)
{
	if (cfg->failure_rate < 0 || cfg->failure_rate > 100)
		return check_fail(err, errlen, "failure_rate must be a percentage 1-100 (0: not "
				  "used), got %d", cfg->failure_rate);
	if (cfg->consecutive_failures < 0)
		return check_fail(err, errlen, "consecutive_failures must be >= 1 (0: not used), "
				  "got %d", cfg->consecutive_failures);
	if (cfg->failure_rate == 0 && cfg->consecutive_failures == 0)
		return check_fail(err, errlen, "set failure_rate or consecutive_failures (or both): "
				  "nothing would open the breaker");
	if (cfg->failure_rate > 0 && cfg->window_ms < BREAKER_BUCKETS)
		return check_fail(err, errlen, "window_ms must be at least %d ms, got %lld",
				  BREAKER_BUCKETS, (long long)cfg->window_ms);
	if (cfg->failure_rate > 0 && cfg->min_calls < 1)
		return check_fail(err, errlen, "min_calls must be >= 1, got %d", cfg->min_calls);
	if (cfg->open_ms < 1)
		return check_fail(err, errlen, "open_ms must be >= 1, got %lld",
				  (long long)cfg->open_ms);
	if (cfg->half_open_probes < 1 || cfg->half_open_probes > 1000)
		return check_fail(err, errlen, "half_open_probes must be 1-1000, got %d",
				  cfg->half_open_probes);
	if (cfg->probe_timeout_ms < 0)
		return check_fail(err, errlen, "probe_timeout_ms must be >= 0 (0: open_ms), got %lld",
				  (long long)cfg->probe_timeout_ms);
	return 0;
}

/* --- the rolling window -------------------------------------------------------------------- */

static int64_t bucket_width(const struct breaker *b)
{
	return b->cfg.window_ms / BREAKER_BUCKETS;
}

static int64_t floor_div(int64_t a, int64_t d)
{
	return a / d - (a % d != 0 && a < 0);
}

static void window_reset(struct breaker *b)
{
	for (int i = 0; i < BREAKER_BUCKETS; i++) {
		b->buckets[i].epoch = INT64_MIN;
		b->buckets[i].calls = b->buckets[i].failures = 0;
	}
}

static void window_add(struct breaker *b, int64_t now, bool failed)
{
	int64_t epoch = floor_div(now, bucket_width(b));
	struct bucket *k = &b->buckets[(epoch % BREAKER_BUCKETS + BREAKER_BUCKETS) % BREAKER_BUCKETS];

	if (k->epoch != epoch) {
		k->epoch = epoch;
		k->calls = k->failures = 0;
	}
	k->calls++;
	k->failures += failed;
}

static void window_sum(const struct breaker *b, int64_t now, int *calls, int *failures)
{
	int64_t epoch = floor_div(now, bucket_width(b));

	*calls = *failures = 0;
	for (int i = 0; i < BREAKER_BUCKETS; i++) {
		const struct bucket *k = &b->buckets[i];
		if (k->epoch > epoch - BREAKER_BUCKETS && k->epoch <= epoch) {
			*calls += k->calls;
			*failures += k->failures;
		}
	}
}

/* --- the state machine --------------------------------------------------------------------- */

static int64_t probe_timeout(const struct breaker *b)
{
	return b->cfg.probe_timeout_ms > 0 ? b->cfg.probe_timeout_ms : b->cfg.open_ms;
}

static void transition(struct breaker *b, enum breaker_state to, int64_t now)
{
	b->phase++;
	b->probes_out = b->probes_ok = 0;
	b->consecutive = 0;
	switch (to) {
	case BREAKER_OPEN:
		b->open_until = now + b->cfg.open_ms;
		b->st.opened++;
		break;
	case BREAKER_HALF_OPEN:
		break;
	case BREAKER_CLOSED:
		window_reset(b);
		b->st.closed++;
		break;
	}
	b->state = to;
}

static void refresh(struct breaker *b, int64_t now)
{
	if (b->state == BREAKER_OPEN && now >= b->open_until)
		transition(b, BREAKER_HALF_OPEN, now);
	if (b->state == BREAKER_HALF_OPEN && b->probes_out > b->probes_ok &&
	    now >= b->probe_deadline) {
		b->st.failures++;                 /* a lost probe */
		transition(b, BREAKER_OPEN, now);
	}
}

struct breaker *breaker_new(const struct breaker_config *cfg)
{
	struct breaker *b = xcalloc(1, sizeof(*b));

	assert(breaker_config_check(cfg, NULL, 0) == 0);
	b->cfg = *cfg;
	b->state = BREAKER_CLOSED;
	b->phase = 1;
	window_reset(b);
	return b;
}

void breaker_free(struct breaker *b)
{
	free(b);
}

void breaker_configure(struct breaker *b, const struct breaker_config *cfg)
{
	assert(breaker_config_check(cfg, NULL, 0) == 0);
	if (cfg->window_ms != b->cfg.window_ms)
		window_reset(b);
	b->cfg = *cfg;
}

uint64_t breaker_allow(struct breaker *b, int64_t now_ms, int64_t *retry_after_ms)
{
	int64_t wait;

	refresh(b, now_ms);
	switch (b->state) {
	case BREAKER_CLOSED:
		return b->phase;
	case BREAKER_HALF_OPEN:
		if (b->probes_out < b->cfg.half_open_probes) {
			b->probes_out++;
			b->probe_deadline = now_ms + probe_timeout(b);
			return b->phase;
		}
		wait = b->probe_deadline - now_ms;
		break;
	case BREAKER_OPEN:
	default:
		wait = b->open_until - now_ms;
		break;
	}
	b->st.rejected++;
	if (retry_after_ms != NULL)
		*retry_after_ms = wait > 0 ? wait : 1;
	return 0;
}

static bool should_open(struct breaker *b, int64_t now)
{
	int calls, failures;

	if (b->cfg.consecutive_failures > 0 && b->consecutive >= b->cfg.consecutive_failures)
		return true;
	if (b->cfg.failure_rate == 0)
		return false;
	window_sum(b, now, &calls, &failures);
	return calls >= b->cfg.min_calls &&
	       (int64_t)failures * 100 >= (int64_t)b->cfg.failure_rate * calls;
}

enum breaker_state breaker_record(struct breaker *b, int64_t now_ms, uint64_t permit,
				  bool success)
{
	refresh(b, now_ms);
	switch (b->state) {
	case BREAKER_CLOSED:
		if (permit != 0 && permit != b->phase)
			goto ignored;
		if (success) {
			b->st.successes++;
			b->consecutive = 0;
		} else {
			b->st.failures++;
			b->consecutive++;
		}
		if (b->cfg.failure_rate > 0)
			window_add(b, now_ms, !success);
		if (should_open(b, now_ms))
			transition(b, BREAKER_OPEN, now_ms);
		break;
	case BREAKER_HALF_OPEN:
		if (permit != b->phase || b->probes_ok >= b->probes_out)
			goto ignored;
		if (!success) {
			b->st.failures++;
			transition(b, BREAKER_OPEN, now_ms);
			break;
		}
		b->st.successes++;
		if (++b->probes_ok >= b->cfg.half_open_probes)
			transition(b, BREAKER_CLOSED, now_ms);
		break;
	case BREAKER_OPEN:
		goto ignored;
	}
	return b->state;
ignored:
	b->st.ignored++;
	return b->state;
}

enum breaker_state breaker_state(struct breaker *b, int64_t now_ms)
{
	refresh(b, now_ms);
	return b->state;
}

void breaker_stats(struct breaker *b, int64_t now_ms, struct breaker_stats *out)
{
	refresh(b, now_ms);
	*out = b->st;
	out->state = b->state;
	out->window_calls = out->window_failures = 0;
	out->consecutive = 0;
	out->open_remaining_ms = 0;
	if (b->state == BREAKER_CLOSED) {
		if (b->cfg.failure_rate > 0)
			window_sum(b, now_ms, &out->window_calls, &out->window_failures);
		out->consecutive = b->consecutive;
	} else if (b->state == BREAKER_OPEN) {
		out->open_remaining_ms = b->open_until - now_ms;
	}
}

/* --- a set by key: a sorted array (a handful of participants; key order for metrics) ------ */

struct entry {
	char *key;
	struct breaker *b;
};

struct breaker_set {
	struct entry *v;
	size_t n, cap;
};

struct breaker_set *breaker_set_new(void)
{
	return xcalloc(1, sizeof(struct breaker_set));
}

void breaker_set_free(struct breaker_set *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->n; i++) {
		free(set->v[i].key);
		breaker_free(set->v[i].b);
	}
	free(set->v);
	free(set);
}

/* The index of key, or where it would go (*found false). */
static size_t locate(const struct breaker_set *set, const char *key, bool *found)
{
	size_t lo = 0, hi = set->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(set->v[mid].key, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static bool config_equal(const struct breaker_config *a, const struct breaker_config *b)
{
	return a->failure_rate == b->failure_rate && a->window_ms == b->window_ms &&
	       a->min_calls == b->min_calls && a->consecutive_failures == b->consecutive_failures &&
	       a->open_ms == b->open_ms && a->half_open_probes == b->half_open_probes &&
	       a->probe_timeout_ms == b->probe_timeout_ms;
}

struct breaker *breaker_set_get(struct breaker_set *set, const char *key,
				const struct breaker_config *cfg)
{
	bool found;
	size_t i = locate(set, key, &found);

	if (found) {
		if (!config_equal(&set->v[i].b->cfg, cfg))
			breaker_configure(set->v[i].b, cfg);
		return set->v[i].b;
	}
	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 8;
		set->v = xrealloc(set->v, set->cap * sizeof(*set->v));
	}
	memmove(&set->v[i + 1], &set->v[i], (set->n - i) * sizeof(*set->v));
	set->v[i].key = xstrdup(key);
	set->v[i].b = breaker_new(cfg);
	set->n++;
	return set->v[i].b;
}

struct breaker *breaker_set_find(const struct breaker_set *set, const char *key)
{
	bool found;
	size_t i = locate(set, key, &found);

	return found ? set->v[i].b : NULL;
}

size_t breaker_set_count(const struct breaker_set *set)
{
	return set->n;
}

void breaker_set_foreach(struct breaker_set *set, breaker_each_cb cb, void *arg)
{
	for (size_t i = 0; i < set->n; i++)
		cb(set->v[i].key, set->v[i].b, arg);
}
