/* flow.h: the compiled, immutable form of a flow file, and the operations the engine needs on
 * it (input check, request rendering, success judgement, what to keep of a response).
 *
 * A struct flow is built by dsl_load_*() and never changed afterwards. It is refcounted:
 * every saga running it holds a reference (flow_ref/flow_unref); a reload makes new flows and
 * the old ones are freed when their last saga lets go. */
#ifndef SAGAD_FLOW_H
#define SAGAD_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct tmpl; /* expr.h: a compiled template */

enum input_type { INPUT_ANY, INPUT_STRING, INPUT_INTEGER, INPUT_NUMBER, INPUT_BOOLEAN,
		  INPUT_OBJECT, INPUT_ARRAY, INPUT_TYPE_MAX };
const char *input_type_name(enum input_type t);
/* True when v has type t (INPUT_NUMBER accepts integers; INPUT_ANY anything). */
bool flow_input_type_ok(enum input_type t, const json_t *v);

struct flow_input_field {
	char *name;
	enum input_type type;
	bool required;
	json_t *default_value; /* owned; NULL when none */
	bool sensitive;        /* never shown or stored in clear (secret.h) */
};

struct flow_header {
	char *name;
	struct tmpl *value; /* owned */
	bool secret;        /* a participant header whose value came from the environment */
};

enum participant_kind { PARTICIPANT_HTTP, PARTICIPANT_KAFKA, PARTICIPANT_KIND_MAX };

/* A circuit breaker's settings (participant `circuit_breaker:`). The breaker itself is the
 * engine's, one per participant identity (kind, name, url or topic), shared by every saga. */
struct flow_breaker {
	bool enabled;
	int failure_rate;            /* percent of failed calls in the window that opens it; 0 = off */
	int min_calls;               /* calls the window needs before the rate counts */
	int64_t window_ms;           /* rolling window of the rate */
	int consecutive_failures;    /* this many failures in a row open it; 0 = off */
	int64_t open_ms;             /* how long it stays open before a half-open probe */
	int half_open_probes;        /* trial calls in half-open; all must succeed to close */
};

/* A participant's settings are resolved at load time (environment values included). */
struct participant {
	char *name;
	enum participant_kind kind;
	char *base_url;              /* HTTP: "http://127.0.0.1:8081", no trailing slash */
	struct flow_header *headers; /* default headers; values may be templates */
	size_t n_headers;
	int64_t timeout_ms;          /* default per-attempt timeout (HTTP) or reply deadline (Kafka) */
	char *topic;                 /* Kafka: default topic commands are produced to, or NULL */
	char *reply_topic;           /* Kafka: default topic replies arrive on, or NULL */
	struct flow_breaker breaker; /* enabled = false: no breaker */
};

/* How a Kafka reply finds its step and what it means.
 *
 * A received message is handled as a JSON object ("msg"):
 *   {"topic": "...", "partition": 0, "offset": 42, "key": "..." | null,
 *    "headers": {"name": "value", ...}, "body": <parsed JSON value, or the raw string>,
 *    "timestamp_ms": 1795286022123}
 * Paths below are relative to msg.body unless they start with "header:" (a header name). */
enum reply_verdict { REPLY_NOT_MINE, REPLY_SUCCESS, REPLY_FAILURE };

struct flow_reply {
	char *topic;                  /* where replies arrive (participant's reply_topic by default) */
	char *correlate_path;         /* "header:correlation-id" (default) or a body path ("paidId") */
	struct tmpl *correlate_value; /* the value this step waits for; NULL = the step's
				       * idempotency key (which every command carries in the
				       * correlation-id header) */
	char *type_path;              /* where the event type is ("eventType", "header:type"), or NULL */
	char **success_types;         /* types meaning success ... */
	size_t n_success_types;
	char **failure_types;         /* ... and failure; with either list set, other types are
				       * "not mine" (ignored); with neither, every reply is judged
				       * by the field rules alone */
	size_t n_failure_types;
	char **field_paths;           /* success also needs these paths to equal ... */
	json_t **field_equals;        /* ... these values (else failure) */
	size_t n_fields;
	int line;
};

/* A request template: action or compensation of a step. */
struct flow_request {
	char *method;                /* "POST", upper case */
	struct tmpl *path;           /* renders to a string starting with '/' */
	struct flow_header *query;   /* name -> template; rendered values are URL-encoded */
	size_t n_query;
	struct flow_header *headers;
	size_t n_headers;
	struct tmpl *body;           /* renders to JSON; NULL = no body */
	/* Success rule, judged on the response. */
	int *ok_status;              /* accepted status codes; NULL/0 = any 2xx */
	size_t n_ok_status;
	bool has_body_equals;
	json_t *body_equals;         /* body must equal this value (e.g. true) */
	char **field_paths;          /* body field path ("payStaus", "a.b") ... */
	json_t **field_equals;       /* ... must equal this value */
	size_t n_fields;
	int line;                    /* where it was declared, for messages */
	/* Kafka participants: a message instead of an HTTP request (headers and body above). */
	char *topic;                 /* NULL = the participant's topic */
	struct tmpl *key;            /* message key (rendered to a string), or NULL */
	struct flow_reply *reply;    /* owned; NULL = fire-and-forget: done once it is committed
				      * to the outbox (a publish step or a one-way compensation) */
};

/* Which failures a retry policy retries. */
enum retry_on {
	RETRY_ON_CONNECT = 1 << 0, /* could not connect, connection reset, DNS */
	RETRY_ON_TIMEOUT = 1 << 1, /* no answer within the attempt's timeout */
	RETRY_ON_5XX = 1 << 2,     /* status 500-599 */
	RETRY_ON_429 = 1 << 3,     /* status 429, honouring Retry-After */
	RETRY_ON_DEFAULT = 0xf,
};

struct retry_policy {
	int max_attempts;        /* total attempts, >= 1 */
	int64_t initial_backoff_ms;
	double multiplier;       /* >= 1 */
	int64_t max_backoff_ms;
	double jitter;           /* 0..1: the delay is scaled by a random factor in [1-j, 1+j] */
	unsigned on;             /* enum retry_on bits */
};

enum step_kind { STEP_KIND_CALL, STEP_KIND_SUBFLOW, STEP_KIND_SAGA, STEP_KIND_MAX };

/* A saga step (STEP_KIND_SAGA) acts on another saga, found by a business key. */
enum saga_op { SAGA_OP_FIND, SAGA_OP_CANCEL };

struct flow_saga_ref {
	enum saga_op op;
	char *flow;                   /* the target's flow name */
	char *key_name;               /* its business key ... */
	struct tmpl *key_value;       /* ... and the value, rendered when the step runs */
	bool missing_ok;              /* if_missing: skip (succeed with found=false) vs fail */
	char **states;                /* find: the target must be in one of these, or NULL */
	size_t n_states;
};

/* What a step that fails for good (or whose participant's breaker is open) becomes. */
enum fallback_kind { FALLBACK_FAIL, FALLBACK_VALUE };

struct flow;

struct flow_step {
	char *name;
	int index;                    /* position in flow->steps */
	enum step_kind kind;
	/* STEP_KIND_CALL */
	struct participant *participant; /* borrowed from flow->participants */
	struct flow_request action;
	struct flow_request *compensation; /* owned; NULL when the step has none */
	/* STEP_KIND_SUBFLOW: runs another flow as a child saga; the child's compensation is
	 * this step's compensation. */
	char *subflow_name;
	int subflow_line, subflow_col; /* where `flow:` names it, for link errors */
	struct tmpl *subflow_input;   /* renders the child's input object */
	/* STEP_KIND_SAGA */
	struct flow_saga_ref *saga_ref; /* owned */
	/* All kinds */
	int group_first;              /* parallel steps: index of the group's first step ... */
	int group_n;                  /* ... and how many run together (1 = on its own) */
	struct tmpl *when;            /* run only when this renders true; NULL = always */
	bool background;              /* fire-and-forget: later steps do not wait for it, and
				       * its failure never compensates the saga */
	enum fallback_kind fallback;
	json_t *fallback_value;       /* FALLBACK_VALUE: the response body it is treated as */
	char **keep;                  /* response paths to keep ("body.id"); NULL = keep all */
	size_t n_keep;
	int64_t timeout_ms;           /* per attempt (call), or for the whole child (subflow; 0 = none) */
	struct retry_policy retry;        /* of the action */
	struct retry_policy comp_retry;   /* of the compensation */
	bool pivot;                   /* informational: the step after which the saga commits */
	bool publish;                 /* a Kafka publish step: fire-and-forget, never waits */
	int line;
};

/* A Kafka trigger: messages on `topic` that match start a saga of the flow. */
struct flow_trigger {
	char *topic;
	char *type_path;              /* where the event type is ("eventType", "header:type"), or NULL */
	char **types;                 /* accepted types (NULL/0 = any) */
	size_t n_types;
	char **field_paths;           /* filters: body paths that must equal ... */
	json_t **field_equals;        /* ... these values */
	size_t n_fields;
	struct tmpl *input;           /* renders the saga input from {"event": msg.body,
				       * "headers": msg.headers, "kafka": {topic, partition,
				       * offset, key}}; NULL = the event body itself */
	int line;
};

struct flow {
	int refs;
	char *name;
	int version;
	char *description;
	char *file;                    /* path it was loaded from */
	struct flow_input_field *inputs;
	size_t n_inputs;
	bool input_closed;             /* reject input fields that are not declared */
	struct participant *participants;
	size_t n_participants;
	struct flow_step *steps;
	size_t n_steps;
	int64_t deadline_ms;           /* whole saga; 0 = none */
	struct tmpl *output;           /* the saga's result; NULL = every step's kept response */
	char **wait_steps;             /* not used by the engine; reserved; NULL-terminated (or NULL) */
	struct flow_header *keys;      /* business keys: name -> template (rendered when its data
				        * exists), indexing the flow's sagas */
	size_t n_keys;
	int pivot;                     /* index of the first pivot step, or -1 */
	/* `http_status`: the answer's status to a start that waited for the saga's end, by
	 * final state; 0 = the API's default (200) */
	int status_completed, status_compensated, status_failed;
	struct flow_trigger *triggers; /* Kafka triggers that start sagas of this flow */
	size_t n_triggers;
	json_t *source;                /* the flow as JSON (for GET /v1/flows/{flow}); owned */
};

/* References. flow_unref() frees the flow when the count reaches zero; NULL is a no-op. */
struct flow *flow_ref(struct flow *f);
void flow_unref(struct flow *f);

/* Returns the step named name, or NULL. */
const struct flow_step *flow_find_step(const struct flow *f, const char *name);

/* Checks (and completes with defaults) a saga input against the flow's declaration.
 * *input is replaced by a new reference with defaults filled in. Returns 0, or SAGAD_EINPUT
 * with a message such as `input.classId: required field missing` in err. */
int flow_check_input(const struct flow *f, json_t **input, char *err, size_t errlen);

/* A rendered HTTP request; free with flow_rendered_close(). */
struct flow_rendered {
	char *method;
	char *url;          /* base URL + path + encoded query */
	char **headers;     /* "Name: value" lines, participant defaults first */
	size_t n_headers;
	char *body;         /* serialized JSON, or NULL */
	size_t body_len;
};
void flow_rendered_close(struct flow_rendered *r);

/* Renders req for participant p against ctx, the saga's template context:
 *   {"input": {...}, "saga": {"id": "...", "flow": "..."},
 *    "steps": {"<name>": {"response": {"status": 200, "body": ...}}}}
 * Returns 0, or SAGAD_ETEMPLATE with a message naming the missing data in err. */
int flow_render_request(const struct participant *p, const struct flow_request *req,
			json_t *ctx, struct flow_rendered *out, char *err, size_t errlen);

/* A rendered Kafka message; free with flow_message_close(). */
struct flow_message {
	char *topic;
	char *key;          /* or NULL */
	char **headers;     /* "name: value" lines (participant defaults first) */
	size_t n_headers;
	char *value;        /* serialized JSON body, or NULL */
	size_t value_len;
};
void flow_message_close(struct flow_message *m);

/* Renders a Kafka request (action, compensation or publish) for participant p against ctx.
 * Returns 0, or SAGAD_ETEMPLATE with a message in err. */
int flow_render_message(const struct participant *p, const struct flow_request *req,
			json_t *ctx, struct flow_message *out, char *err, size_t errlen);

/* The correlation value a waiting step expects: the rendered reply->correlate_value, or a
 * copy of default_value (the idempotency key) when the flow names none. malloc()ed, or NULL
 * with err. */
char *flow_render_correlation(const struct flow_reply *r, json_t *ctx, const char *default_value,
			      char *err, size_t errlen);
/* The correlation value a received message carries (borrowed from msg), or NULL. */
const char *flow_reply_correlation(const struct flow_reply *r, json_t *msg);
/* Judges a correlated reply: not mine (a type this step ignores), success or failure (err
 * says why: "type PaymentFailed", "body.status is \"X\", expected \"Y\""). */
enum reply_verdict flow_judge_reply(const struct flow_reply *r, json_t *msg, char *err,
				    size_t errlen);

/* True when msg matches the trigger's type and filters. */
bool flow_trigger_matches(const struct flow_trigger *t, json_t *msg);
/* The saga input a matching message gives (new reference), or NULL with err. */
json_t *flow_trigger_input(const struct flow_trigger *t, json_t *msg, char *err, size_t errlen);

/* Judges a response: true when req's success rule holds for status and body (body may be
 * NULL when the response was not JSON). On false, writes why in err
 * ("status 500 not in [200, 201]", "body.payStaus is \"X\", expected \"Y\""). */
bool flow_judge(const struct flow_request *req, int status, json_t *body, char *err, size_t errlen);

/* Returns the part of a response to keep in the saga's context, a new reference:
 * response is {"status": N, "body": ...}; keep paths prune it. */
json_t *flow_keep(const struct flow_step *st, json_t *response);

/* Renders the saga's output from ctx (flow->output, or the steps' kept responses); new ref. */
json_t *flow_render_output(const struct flow *f, json_t *ctx, char *err, size_t errlen);

/* Renders a sub-flow step's child input; new reference or NULL with err. */
json_t *flow_render_subflow_input(const struct flow_step *st, json_t *ctx, char *err, size_t errlen);

/* The delay before attempt number `attempt` (2 = the first retry), with jitter; retry_after_ms
 * (from a 429's Retry-After, or -1) takes precedence when larger. */
int64_t flow_backoff_ms(const struct retry_policy *rp, int attempt, int64_t retry_after_ms);

/* A set of loaded flows, looked up by name (the newest version wins). */
struct flow_set {
	struct flow **flows;
	size_t n;
};
void flow_set_init(struct flow_set *fs);
/* Drops the set's references. */
void flow_set_close(struct flow_set *fs);
/* Adds a reference to f. Returns SAGAD_EEXIST if a flow with that name and version exists. */
int flow_set_add(struct flow_set *fs, struct flow *f);
struct flow *flow_set_find(const struct flow_set *fs, const char *name);
struct flow *flow_set_find_version(const struct flow_set *fs, const char *name, int version);

#endif
