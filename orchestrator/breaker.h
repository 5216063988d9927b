/* breaker.h: a circuit breaker per participant. Pure logic: no I/O, no clock of its own (the
 * caller passes a monotonic time in milliseconds, util_mono_ms()), so the engine decides what a
 * refusal means and the tests drive time by hand.
 *
 * States:
 *   closed     calls go out; each outcome is counted. The breaker opens when the last
 *              consecutive_failures outcomes all failed, or when at least min_calls outcomes
 *              fell in the rolling window of window_ms and failure_rate percent of them failed.
 *   open       calls are refused for open_ms; breaker_allow() says how long is left.
 *   half_open  entered by time when open_ms has passed. Up to half_open_probes trial calls go
 *              out (the rest are refused); all must succeed to close, the first failure opens
 *              again for open_ms. Probes whose outcome has not come back within
 *              probe_timeout_ms of the last probe sent count as failed (a lost call must not
 *              wedge the breaker half-open).
 *
 * Permits: breaker_allow() returns a permit (> 0) for each call it lets through; hand it back
 * with the outcome. An outcome is counted only under the permit of the current phase, so a slow
 * answer to a call sent before the breaker opened is not taken for a probe's. Permit 0 (an
 * outcome of a call whose permit was lost, e.g. across a restart) counts while closed only.
 *
 * The rolling window is BREAKER_BUCKETS buckets of w = window_ms / BREAKER_BUCKETS each (rounded
 * down): memory is fixed, and an outcome stays counted for between (BREAKER_BUCKETS - 1) * w and
 * BREAKER_BUCKETS * w after it was recorded. */
#ifndef SAGAD_BREAKER_H
#define SAGAD_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BREAKER_BUCKETS 10

struct breaker_config {
	int failure_rate;          /* percent 1-100 of failed calls in the window; 0: not used */
	int64_t window_ms;         /* the rolling window (>= BREAKER_BUCKETS) when failure_rate */
	int min_calls;             /* outcomes in the window before the rate counts (>= 1) */
	int consecutive_failures;  /* this many failures in a row open it; 0: not used */
	int64_t open_ms;           /* how long it stays open (>= 1) */
	int half_open_probes;      /* trial calls in half-open (>= 1) */
	int64_t probe_timeout_ms;  /* a probe not answered by then failed; 0: open_ms */
};

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };
const char *breaker_state_name(enum breaker_state s);

/* Counters since breaker_new(), for metrics. */
struct breaker_stats {
	enum breaker_state state;
	uint64_t opened;           /* closed or half-open -> open */
	uint64_t closed;           /* half-open -> closed */
	uint64_t rejected;         /* calls refused by breaker_allow() */
	uint64_t successes, failures;   /* outcomes counted */
	uint64_t ignored;          /* outcomes not counted (open, or a stale permit) */
	int window_calls, window_failures;  /* in the rolling window now (closed only) */
	int consecutive;           /* current run of failures (closed only) */
	int64_t open_remaining_ms; /* open: until half-open; else 0 */
};

struct breaker;

/* Fills cfg with the defaults: failure_rate 50 over window_ms 10000 with min_calls 10,
 * consecutive_failures 5, open_ms 30000, half_open_probes 1, probe_timeout_ms 0 (= open_ms). */
void breaker_config_default(struct breaker_config *cfg);
/* Checks cfg; returns 0, or SAGAD_EINVAL with a message naming the field in err (may be NULL). */
int breaker_config_check(const struct breaker_config *cfg, char *err, size_t errlen);

/* Returns a new closed breaker owned by the caller (free with breaker_free()); cfg is copied and
 * must pass breaker_config_check(). */
struct breaker *breaker_new(const struct breaker_config *cfg);
void breaker_free(struct breaker *b);
/* Replaces the configuration (a flow reload), keeping the state; the window restarts when
 * window_ms changes. */
void breaker_configure(struct breaker *b, const struct breaker_config *cfg);

/* May a call go out at now_ms? Returns a permit (> 0) when it may, to be passed to
 * breaker_record() with its outcome. Returns 0 when it is refused and sets *retry_after_ms (may
 * be NULL) to the time after which asking again can succeed: what is left of the open period,
 * or in half-open with every probe out, the time until the probes are decided at the latest. */
uint64_t breaker_allow(struct breaker *b, int64_t now_ms, int64_t *retry_after_ms);
/* Records the outcome of a call let through under permit (or 0, see above). Returns the state
 * afterwards, so the caller can log a transition. */
enum breaker_state breaker_record(struct breaker *b, int64_t now_ms, uint64_t permit,
				  bool success);
/* The state at now_ms (open turns half-open here when open_ms has passed). */
enum breaker_state breaker_state(struct breaker *b, int64_t now_ms);
void breaker_stats(struct breaker *b, int64_t now_ms, struct breaker_stats *out);

/* A set of breakers by key (the participant's identity: its name or base URL), for the engine.
 * Keys are copied. */
struct breaker_set;
struct breaker_set *breaker_set_new(void);
void breaker_set_free(struct breaker_set *set);
/* The breaker of key, made with cfg when there is none yet; when cfg differs from the one it
 * has, it is reconfigured (breaker_configure()). Borrowed: valid until breaker_set_free(). */
struct breaker *breaker_set_get(struct breaker_set *set, const char *key,
				const struct breaker_config *cfg);
/* The breaker of key, or NULL. */
struct breaker *breaker_set_find(const struct breaker_set *set, const char *key);
size_t breaker_set_count(const struct breaker_set *set);
/* Calls cb for every breaker, in key order (stable output for metrics). */
typedef void (*breaker_each_cb)(const char *key, struct breaker *b, void *arg);
void breaker_set_foreach(struct breaker_set *set, breaker_each_cb cb, void *arg);

#endif
