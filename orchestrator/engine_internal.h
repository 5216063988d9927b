/* engine_internal.h: what engine.c (the state machines) shares with engine_kafka.c (Kafka
 * steps, replies, triggers and lifecycle events). Not for other modules: they use engine.h. */
#ifndef SAGAD_ENGINE_INTERNAL_H
#define SAGAD_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "engine.h"
#include "flow.h"

struct kafka_client;
struct outbox;
struct kafka_wait;
struct kafka_path;
struct breaker_set;
struct secret_set;
struct secret_key;
struct engine_pause;
struct answer_pieces;

#define TIMER_BATCH 1000       /* timers handled per wake-up; the rest on the next turn */
#define SUMMARY_MAX 512        /* bytes of a body kept in the history */
#define ID_LEN 27

enum phase { PHASE_ACTION, PHASE_COMPENSATION };
enum outcome { OUT_SUCCESS, OUT_RETRY, OUT_FAILED, OUT_UNKNOWN };
static const char *const phase_names[] = { "action", "compensation" }; /* by enum phase */

enum timer_kind { TIMER_RETRY, TIMER_DEADLINE, TIMER_TIMEOUT, TIMER_KIND_MAX };
static const char *const timer_kind_names[] = { "retry", "deadline", "timeout" };

struct call;

struct step_run {
	enum step_state state;
	int attempt;             /* action attempts made */
	int comp_attempt;        /* compensation attempts made */
	char *error;             /* last error, owned */
	struct call *call;       /* the attempt in flight, or NULL */
	char child_id[ID_LEN];   /* sub-flow child saga, "" when none */
	bool maybe_applied;      /* some attempt's outcome was unknown (sticky, persisted) */
	int64_t started_at;      /* when the sub-flow child (or a Kafka attempt) started */
	struct kafka_wait *wait; /* a Kafka attempt waiting for its reply, or NULL */
	uint32_t timer_gen[TIMER_KIND_MAX]; /* of its retry and timeout timers */
	uint64_t breaker_permit; /* the attempt in flight's circuit breaker permit, or 0 */
};

struct engine_waiter {
	struct engine *e;
	struct engine_waiter *next;      /* in the saga's list */
	char saga_id[ID_LEN];
	enum engine_wait_target target;
	int step;
	engine_wait_cb cb;
	void *arg;
	uv_timer_t timer;
	bool done;
	bool timeout_pending;            /* timed out; answered after the next commit */
	bool held;                       /* decided at a commit, answered once it is durable */
	enum engine_wait_result result;  /* when held */
	struct answer_pieces *answer;    /* the saga's answer pieces when decided (a reference,
					  * dropped when the waiter is freed), or NULL */
	uint64_t loads;                  /* e->loads when decided */
};

/* What one commit allows, held until the store says the commit is durable (a pipelined
 * store syncs after the commit, on its own thread): the waiters it decided and its effects. */
struct held {
	uint64_t ticket;                 /* store_committed() after the commit */
	struct engine_waiter *waiters;   /* decided, chained by next */
	struct effect *effects;
	struct held *next;
};

struct saga {
	char id[ID_LEN];
	struct engine *e;
	struct flow *flow;               /* counted reference */
	enum saga_state state;
	int cursor;                      /* the step being run (forward) or undone (backward) */
	json_t *input;
	json_t *ctx;                     /* {"input", "saga", "steps"}: template context */
	json_t *output;                  /* or NULL */
	json_t *keys;                    /* business keys rendered so far: {"orderId": "7"} */
	char *error;                     /* why it compensates, or NULL */
	char *idempotency_key;
	char parent_id[ID_LEN];          /* "" when none */
	char trace_root[ID_LEN];         /* the top-level saga: one trace for it and its children */
	int parent_step;
	bool cancel_requested;
	int64_t created_at, updated_at, deadline_at;
	uint32_t timer_gen[TIMER_KIND_MAX]; /* deadline's, from e->timer_seq: stale heap entries
					     * are skipped (steps have their own) */
	struct step_run *steps;
	struct engine_waiter *waiters;
	bool changed;                    /* waiters must be checked after the commit */
	bool inserted;                   /* row exists in the store */
	struct secret_set *secrets;      /* values never written in clear (secret.h), or NULL */
	/* The answer's pieces (answer.h), kept as the rows are written for a client that waits
	 * for the full answer (engine_start_answered()), or NULL. Held while that client is to
	 * attach its waiter (answer_reserved), while the saga has waiters, and while a decided
	 * waiter holds a reference; dropped when the last waiter leaves or at the next write
	 * after that, or when the saga leaves memory: bounded by the sagas with a pending
	 * full-answer waiter. */
	struct answer_pieces *answer;
	bool answer_reserved;
};

/* An attempt in flight. Replies find their saga by id, so a late reply for a saga that
 * moved on (or was evicted) is recognised and ignored. */
struct call {
	struct engine *e;
	char saga_id[ID_LEN];
	int step;
	enum phase phase;
	int attempt;
	int64_t started_at;
	char *request_summary;
	struct http_call *hc;
	int send_error;          /* http_client_send() refused the call */
	struct call *prev, *next; /* on e->calls until freed */
};

struct timer_entry {
	int64_t due;             /* util_mono_ms() time */
	char saga_id[ID_LEN];
	uint8_t kind;
	int step;
	uint32_t gen;
};

enum effect_kind { EFFECT_DISPATCH, EFFECT_DEFER };
struct effect {
	enum effect_kind kind;
	struct effect *next;
	/* dispatch */
	struct call *call;
	struct flow_rendered req;
	int64_t timeout_ms;
	/* defer */
	engine_defer_cb cb;
	void *arg;
};

struct engine {
	uv_loop_t *loop;
	struct store *store;
	struct http_client *http;
	struct flow_set *flows;
	struct flow_set retired;         /* old versions reloaded from the store for resumed sagas */
	int64_t max_wait_ms;
	const struct secret_key *secrets_key; /* or NULL (secret.h) */
	/* sagas by id: open addressing, linear probing, tombstones */
	struct saga **slots;
	size_t n_slots, n_sagas, n_used;
	/* timers: binary min-heap on due */
	struct timer_entry *heap;
	size_t n_heap, cap_heap;
	uv_timer_t wake;
	int64_t wake_due;                /* due time the uv timer is set for, or -1 */
	/* side effects waiting for the commit */
	struct effect *effects, **effects_tail;
	struct held *held, **held_tail;  /* oldest first */
	/* sagas touched this turn (changed flag set) */
	struct saga **touched;
	size_t n_touched, cap_touched;
	bool quiescing;
	bool crash_before_commit;
	int write_error;                 /* first failed store write of this turn (crash-only) */
	uint32_t timer_seq;              /* timer generations, engine-wide so a reloaded saga
					  * never matches a stale heap entry */
	size_t inflight;
	struct call *calls;              /* every call not yet freed (struct call) */
	struct engine_stats stats;
	struct engine_pause *pause;      /* store failures: see engine_paused() (engine.c) */
	/* Kafka (engine_kafka.c); all NULL/empty without Kafka */
	struct kafka_client *kafka;
	struct outbox *outbox;
	char *lifecycle_topic;
	struct kafka_wait **waits;       /* correlation -> waiting attempt (chained hash) */
	size_t n_wait_slots, n_waits;
	struct kafka_path *wait_paths;   /* (topic, correlation path) pairs waited on */
	size_t n_wait_paths;
	/* saga steps waiting for another saga to end (engine_saga_step.c) */
	struct saga_watch *watches;
	size_t n_watches, cap_watches;
	/* circuit breakers, one per participant identity (engine_breaker.c); NULL until used */
	struct breaker_set *breakers;
	/* the answer from memory (engine_answer_text()) */
	uint64_t loads;                  /* sagas made from a store row so far */
	const struct engine_waiter *answering; /* the held waiter whose callback runs, or NULL */
};


/* engine.c, shared with engine_kafka.c */
struct saga *engine__saga_find(struct engine *e, const char *id);
void engine__drive(struct saga *s);
void engine__touch(struct saga *s);
void engine__step_set_state(struct saga *s, int i, enum step_state next);
void engine__set_step_error(struct saga *s, int i, const char *msg);
void engine__set_response(struct saga *s, int i, json_t *kept);
void engine__history(struct saga *s, int step, const char *phase, int attempt, const char *event,
		     const char *request, int status, const char *response, const char *error,
		     int64_t started_at);
void engine__timer_arm(struct saga *s, enum timer_kind kind, int step, int64_t due, bool persist);
void engine__timer_cancel(struct saga *s, enum timer_kind kind, int step);
void engine__store_failed(struct engine *e, int rc, const char *what, const char *saga_id);
/* Records an attempt's outcome: keeps resp on an action's success, moves the step, arms the
 * retry timer. o is final (exhausted retries already mapped). */
void engine__apply_outcome(struct saga *s, int i, enum phase phase, int attempt, enum outcome o,
			   const char *err, json_t *resp, int64_t retry_after_ms);
/* Maps a retryable outcome to its final form once attempts are used up. */
enum outcome engine__exhaust(const struct retry_policy *rp, int attempt, enum outcome o,
			     bool definite);
/* "00-<trace>-<span>-01" for the saga (its trace root). */
void engine__traceparent(const struct saga *s, char *buf, size_t len);
/* True when SAGAD_CRASHPOINT arms a test crash point (read once). */
bool engine__crashpoints_armed(void);

struct saga *engine__saga_load(struct engine *e, const char *id);
void engine__start_compensation(struct saga *s, const char *reason);
/* Cancels s on behalf of `by`: running sagas stop and compensate; with reopen, a completed
 * saga's steps are undone too. 0 when s is (now) compensating or compensated, else
 * SAGAD_ESTATE with err. */
int engine__saga_cancel(struct saga *s, const char *by, bool reopen, char *err, size_t errlen);

/* The saga's answer pieces while they are needed (see struct saga), else NULL (dropped). */
struct answer_pieces *engine__answer_kept(struct saga *s);

/* engine_keys.c: business keys */
/* Renders the flow's keys whose data now exists and records the new ones. */
void engine__keys_update(struct saga *s);
/* Reads s's keys from the store (a saga loaded from its row). */
void engine__keys_load(struct saga *s);

/* engine_saga_step.c: steps that act on another saga */
/* Runs (or, after a restart or a wake-up, looks again at) saga step i of s. */
void engine__saga_step_run(struct saga *s, int i);
/* s changed state: wakes the saga steps waiting for it to end. */
void engine__watch_notify(struct saga *s);
void engine__watches_free(struct engine *e);

/* engine_breaker.c: circuit breakers and fallbacks */
/* True when the breaker of step i's participant refuses the call now; the step has then
 * failed (or taken its fallback value). */
bool engine__breaker_refuses(struct saga *s, int i);
/* Records the outcome of an action attempt of step i with its participant's breaker. */
void engine__breaker_record(struct saga *s, int i, bool success);
/* Step i failed for good but declares a fallback value: it succeeds with that body. */
void engine__fallback(struct saga *s, int i, int attempt, const char *why);
void engine__breakers_free(struct engine *e);

/* engine_kafka.c */
/* Renders step i's Kafka request (action, compensation or publish), appends it to the outbox
 * and, when it expects a reply, registers the wait and arms the reply deadline. *done is set
 * when nothing is awaited (publish, one-way). Returns 0 or SAGAD_ETEMPLATE with err. */
int engine__kafka_dispatch(struct saga *s, int i, enum phase phase, int attempt, bool *done,
			   char *err, size_t errlen);
/* The reply deadline of step i passed. */
void engine__kafka_timeout(struct saga *s, int i);
/* After a restart: registers the waits of s's Kafka steps that are waiting for a reply. */
void engine__kafka_recover(struct saga *s);
/* Drops step i's wait (the saga moved on); no-op when none. */
void engine__kafka_forget(struct saga *s, int i);
/* Lifecycle events (no-op without a lifecycle topic). */
void engine__lifecycle_saga(struct saga *s);
void engine__lifecycle_step(struct saga *s, int i);
void engine__kafka_free(struct engine *e);

/* The pure parts of reply handling, for tests and tests/fuzz (what on_http_done and the Kafka
 * consumer make of what a participant sent). */
struct http_result;
struct kafka_record;
/* How an HTTP answer (or transport error) is judged for req under retry policy rp (before
 * retries are counted: see engine__exhaust); *stored gets the response body the saga would
 * keep (new reference: parsed JSON, the text, or null; NULL after a transport error). err says
 * why it is not a success. */
enum outcome engine__http_outcome(const struct http_result *res, const struct flow_request *req,
				  const struct retry_policy *rp, json_t **stored, char *err,
				  size_t errlen);
/* A consumed record as the JSON message reply rules and triggers read (flow.h): new
 * reference, or NULL when it cannot be represented. */
json_t *engine__kafka_record_json(const struct kafka_record *rec);

#endif
