/* engine.h: the saga engine. Runs every saga's state machine on the loop thread, persists each
 * transition through the store before its side effect, and drives participants through the
 * adapters. It owns the commit cycle: writes of one loop turn are committed together by
 * engine_flush(), and only then are requests dispatched and clients answered.
 *
 * Saga states:  running -> completed
 *               running -> compensating -> compensated
 *                                       -> failed (a compensation exhausted its retries;
 *                                          waits for an operator: engine_retry())
 * Step states are listed in enum step_state; see docs/architecture.md for both diagrams. */
#ifndef SAGAD_ENGINE_H
#define SAGAD_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "flow.h"

struct engine;
struct engine_waiter;
struct store;
struct http_client;
struct kafka_client;
struct outbox;
struct secret_key;

enum saga_state {
	SAGA_RUNNING,
	SAGA_COMPENSATING,
	SAGA_COMPLETED,
	SAGA_COMPENSATED,
	SAGA_FAILED,
	SAGA_STATE_MAX
};
const char *saga_state_name(enum saga_state s);
int saga_state_parse(const char *name, enum saga_state *out);
/* completed and compensated: nothing more will ever happen. failed waits for an operator. */
bool saga_state_final(enum saga_state s);

enum step_state {
	STEP_PENDING,            /* not started */
	STEP_RUNNING,            /* action attempt dispatched, outcome awaited */
	STEP_RETRY_WAIT,         /* action attempt failed; next attempt on a durable timer */
	STEP_SUCCEEDED,          /* action done; its response is kept in the saga's context */
	STEP_FAILED,             /* action failed for good: nothing to undo */
	STEP_TIMED_OUT,          /* last attempt's outcome unknown: compensated like a success */
	STEP_COMPENSATING,       /* compensation attempt dispatched */
	STEP_COMP_RETRY_WAIT,    /* compensation attempt failed; next one on a durable timer */
	STEP_COMPENSATED,        /* undone */
	STEP_NOT_COMPENSATED,    /* succeeded but declares no compensation: left as is */
	STEP_COMP_FAILED,        /* compensation exhausted its retries: needs an operator */
	STEP_SKIPPED,            /* its `when` condition was false: not run, nothing to undo */
	STEP_STATE_MAX
};
const char *step_state_name(enum step_state s);
int step_state_parse(const char *name, enum step_state *out);

struct engine_options {
	uv_loop_t *loop;
	struct store *store;          /* borrowed */
	struct http_client *http;     /* borrowed */
	struct flow_set *flows;       /* borrowed; replaced by engine_set_flows() on reload */
	int64_t max_wait_ms;          /* longest wait a client may ask for; default 5 min */
	struct kafka_client *kafka;   /* borrowed; NULL without Kafka */
	struct outbox *outbox;        /* borrowed; NULL without Kafka */
	const char *lifecycle_topic;  /* every saga and step state change is published here
				       * (through the outbox), or NULL */
	const struct secret_key *secrets_key; /* borrowed; seals sensitive values in the store
					       * (secret.h), or NULL: such sagas cannot start */
};

/* Returns 0 and a new engine owned by the caller (engine_free()). */
int engine_new(const struct engine_options *opt, struct engine **out);
/* Frees in-memory state (nothing is written); timers close on the loop. NULL is a no-op. */
void engine_free(struct engine *e);

/* Loads every unfinished saga from the store, re-arms its timers and re-sends each dispatch
 * whose outcome is unknown (same idempotency key). Call once after engine_new(). */
int engine_recover(struct engine *e);

/* Uses a new set of flows for new sagas (running sagas keep theirs). fs is borrowed. */
void engine_set_flows(struct engine *e, struct flow_set *fs);

/* Starts a saga of the newest version of flow_name. On success *id gets the saga's id (27
 * bytes) and *existed tells whether the idempotency key matched an earlier start (then
 * nothing new happens). The start is durable only after the next engine_flush(): wait for
 * ENGINE_WAIT_COMMITTED before acknowledging. Errors: SAGAD_ENOFLOW, SAGAD_EINPUT (message
 * in err), SAGAD_ESHUTDOWN, store errors. input is borrowed. */
int engine_start(struct engine *e, const char *flow_name, json_t *input,
		 const char *idempotency_key, char id[27], bool *existed, char *err, size_t errlen);

/* engine_start() for a client that waits for the saga's full answer (the saga with its
 * history) and attaches its waiter (engine_wait()) right after: the engine keeps the answer's
 * pieces as it writes the rows, so that the answer is written from memory
 * (engine_answer_text()) instead of read back from the store. */
int engine_start_answered(struct engine *e, const char *flow_name, json_t *input,
			  const char *idempotency_key, char id[27], bool *existed, char *err,
			  size_t errlen);

/* Admission of a new saga of flow_name: SAGAD_EOPEN (message in err, *retry_after_ms set)
 * while the circuit breaker of the flow's pivot participant is open, else 0. Starts check it
 * themselves; the API calls it to compute the Retry-After of its 503. */
int engine_admit(struct engine *e, const char *flow_name, int64_t *retry_after_ms, char *err,
		 size_t errlen);
/* Every circuit breaker: [{key, participant, state, opened, rejected, failures,
 * open_remaining_ms}] (new reference). */
json_t *engine_breakers_json(struct engine *e);

/* Stops a running saga's forward progress and compensates its completed steps. Idempotent
 * for a saga already compensating. SAGAD_ENOSAGA, or SAGAD_ESTATE (message in err) when the
 * saga is already completed, compensated or failed. */
int engine_cancel(struct engine *e, const char *id, char *err, size_t errlen);

/* Resumes the compensation of a failed saga (the failed compensation gets a new round of
 * attempts). SAGAD_ENOSAGA or SAGAD_ESTATE. */
int engine_retry(struct engine *e, const char *id, char *err, size_t errlen);

/* Waiting for a saga: the callback runs once, after the commit that makes the target true,
 * when the target can no longer be reached, or after timeout_ms. */
enum engine_wait_target {
	ENGINE_WAIT_COMMITTED,   /* the saga's current state is durable */
	ENGINE_WAIT_COMPLETION,  /* the saga is final (completed, compensated) or failed */
	ENGINE_WAIT_STEP,        /* the named step succeeded (or the saga ended without it) */
};
enum engine_wait_result {
	ENGINE_WAIT_REACHED,     /* the target is true */
	ENGINE_WAIT_UNREACHABLE, /* the saga ended (or compensates) without reaching it */
	ENGINE_WAIT_TIMEOUT,
	ENGINE_WAIT_ABORTED,     /* the engine is shutting down */
};
typedef void (*engine_wait_cb)(const char *saga_id, enum engine_wait_result res, void *arg);
/* Returns a waiter handle (valid until its callback runs or engine_wait_cancel()), or NULL
 * when the saga is unknown (SAGAD_ENOSAGA in *rc) or the step name is not in its flow. */
struct engine_waiter *engine_wait(struct engine *e, const char *id, enum engine_wait_target t,
				  const char *step, int64_t timeout_ms, engine_wait_cb cb,
				  void *arg, int *rc);
/* Abandons a waiter; its callback will not run. */
void engine_wait_cancel(struct engine_waiter *w);

/* Runs cb after the next commit (immediately during the next flush if nothing is pending):
 * for answers that must not show uncommitted state. */
typedef void (*engine_defer_cb)(void *arg);
void engine_defer(struct engine *e, engine_defer_cb cb, void *arg);

/* Commits the writes of this loop turn, then runs the side effects they allow (dispatches,
 * waiter callbacks, deferred calls) once the commit is durable: at once, or at a later turn
 * when the store syncs on its own thread (store_pipeline_start()). Called by the daemon once
 * per loop turn. A busy, full
 * or failing store pauses the engine (engine_paused()) and returns 0; any other commit
 * error is returned (the daemon then stops: the store is the truth, recovery resumes). */
int engine_flush(struct engine *e);
/* Commits and flushes, makes every commit durable on the calling thread (stopping a
 * pipelined store's sync thread) and flushes again so that everything held is released:
 * the last step of a shutdown. 0 or the error that stops the daemon. */
int engine_drain(struct engine *e);

/* The saga as the API shows it, without its history, built from memory (no store reads):
 * id, flow, flow_version, status, error, cancel_requested, parent_id, idempotency_key,
 * created_at, updated_at, deadline_at, input, output, steps [{name, index, state, attempt,
 * comp_attempt, response, error}]. A new reference, or NULL when the saga is not in memory
 * (it ended and was evicted: read it from the store). Reflects what the last commit made
 * durable only when called after engine_flush()'s commit (waiter callbacks are). */
json_t *engine_saga_json(struct engine *e, const char *id);

/* Inside a waiter's callback that a commit decided (ENGINE_WAIT_REACHED or _UNREACHABLE):
 * appends saga id as answer_saga_text() (answer.h) would read it from the store now, written
 * from the pieces the engine kept (engine_start_answered()). SAGAD_ENOENT, nothing appended,
 * when it has none to use (not kept, not in that callback, writes pending, the saga loaded
 * from the store again since, fs without its flow version): read the store. */
struct strbuf;
int engine_answer_text(struct engine *e, const char *id, const struct flow_set *fs,
		       bool history, struct strbuf *b, const struct flow **flow, char *status,
		       size_t status_len);

/* Store failures. A commit (or a write) that fails with SAGAD_EBUSY, SAGAD_EFULL or SAGAD_EIO
 * pauses the engine instead of stopping the daemon: the turn's writes are rolled back, its
 * dispatches dropped, every in-memory saga forgotten (waiting clients get
 * ENGINE_WAIT_ABORTED; replies of calls already sent are ignored as late), and starts,
 * cancels and retries are refused with that error. A write probe (store_probe()) runs with
 * a growing interval (0.2 s to 5 s); once it succeeds the engine rebuilds its sagas from
 * the store as engine_recover() does (calls whose outcome is unknown are sent again with
 * the same idempotency key) and goes on. Returns why the engine is paused, or NULL. */
const char *engine_paused(const struct engine *e);

/* Stops accepting starts (SAGAD_ESHUTDOWN) and reports how many calls are in flight. */
void engine_quiesce(struct engine *e);
size_t engine_inflight(const struct engine *e);

struct engine_stats {
	uint64_t started, completed, compensated, failed;
	uint64_t dispatches, late_replies, active;
	uint64_t kafka_replies;       /* replies matched to a waiting step */
	uint64_t kafka_ignored;       /* correlated but "not mine" (another event type) */
	uint64_t kafka_unmatched;     /* no step waits for it: late, duplicate or foreign */
	uint64_t triggered;           /* sagas started by trigger events */
	uint64_t trigger_duplicates;  /* redelivered trigger events that started nothing */
	uint64_t kafka_refused;       /* records over the size limit, refused unread (kafka.h) */
};

/* Subscribes the Kafka consumer to every reply and trigger topic of the loaded flows (call
 * after engine_recover() and after a reload). Records are then handled on the loop: replies
 * complete waiting steps, trigger events start sagas; each record's offset is committed only
 * after the commit that recorded its effect. 0 without Kafka, or an error. */
int engine_kafka_subscribe(struct engine *e);
/* Forgets the Kafka client (before the daemon frees it at shutdown): offsets of records
 * handled afterwards are not released, so those records are delivered again after restart. */
void engine_kafka_detach(struct engine *e);
void engine_stats(const struct engine *e, struct engine_stats *out);

/* Test hook: SAGAD_CRASHPOINT=name[:n] kills the process with SIGKILL the n-th time the
 * named point is passed: after_commit (a commit with side effects pending, before any of
 * them), before_dispatch (a committed dispatch about to be sent), after_dispatch (a reply
 * arrived, nothing recorded yet), before_reply_commit (the reply recorded, not committed),
 * after_reply_commit. */
void engine_crashpoint(const char *name);

#endif
