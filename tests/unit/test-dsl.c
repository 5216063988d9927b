/* test-dsl.c: the flow DSL loader. Every bad fixture is a table row with the exact line:col and
 * a piece of the message a user sees; good fixtures check the values the engine will use. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "dsl.h"
#include "error.h"
#include "expr.h"
#include "flow.h"
#include "util.h"

#ifndef TEST_SRCDIR
#error "build with -DTEST_SRCDIR='\"/abs/path/to/source\"'"
#endif
#define FIXTURES TEST_SRCDIR "/tests/fixtures/dsl"

enum limit_override { LIM_NONE, LIM_FILE_64, LIM_STEPS_2, LIM_NODES_50, LIM_DEPTH_3 };

struct bad_case {
	const char *file;            /* under tests/fixtures/dsl/ */
	enum limit_override lim;
	int rc;
	int line, col;
	const char *message;         /* a substring of the error at line:col */
};

static const struct bad_case bad_cases[] = {
	{ "bad/syntax.yaml", LIM_NONE, SAGAD_ESYNTAX, 6, 4, "YAML syntax error: did not find expected '-' indicator" },
	{ "bad/tabs.yaml", LIM_NONE, SAGAD_ESYNTAX, 4, 1, "YAML does not allow tabs" },
	{ "bad/two-docs.yaml", LIM_NONE, SAGAD_ESYNTAX, 3, 1, "a flow file holds one YAML document" },
	{ "bad/unknown-key.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 5,
	  "unknown key \"retires\" in step \"pay\"; did you mean \"retry\"?" },
	{ "bad/duplicate-step.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 11,
	  "duplicate step name \"apply\" (first at line 6)" },
	{ "bad/duplicate-key.yaml", LIM_NONE, SAGAD_ESYNTAX, 10, 5,
	  "duplicate key \"timeout\" (first at line 9, column 5)" },
	{ "bad/unknown-participant.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 18,
	  "step \"pay\": unknown participant \"paymnet\" (known: class, payment, delivery)" },
	{ "bad/later-step.yaml", LIM_NONE, SAGAD_ESYNTAX, 12, 28,
	  "steps.ship is not available in step \"pay\": it runs later" },
	{ "bad/unknown-input.yaml", LIM_NONE, SAGAD_ESYNTAX, 15, 19,
	  "input.clasId is not declared in input (declared: studentName, classId); did you mean \"classId\"?" },
	{ "bad/bad-duration.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 14,
	  "step \"apply\": timeout: expected a duration like \"2s\" or \"250ms\"" },
	{ "bad/missing-env.yaml", LIM_NONE, SAGAD_ESYNTAX, 5, 11,
	  "participant \"class\": url: environment variable SAGAD_TEST_UNSET_CLASS_URL is not set; "
	  "set it or use default(env.SAGAD_TEST_UNSET_CLASS_URL, 'http://...')" },
	{ "bad/alias-bomb.yaml", LIM_NONE, SAGAD_ELIMIT, 6, 8, "too many alias expansions (more than 100" },
	{ "bad/too-deep.yaml", LIM_NONE, SAGAD_ELIMIT, 3, 77, "nesting deeper than 64 levels" },
	{ "good/apply.yaml", LIM_FILE_64, SAGAD_ELIMIT, 0, 0, "(limit max_file_bytes 64)" },
	{ "good/apply.yaml", LIM_NODES_50, SAGAD_ELIMIT, 22, 14, "more than 50 YAML nodes" },
	{ "good/apply.yaml", LIM_DEPTH_3, SAGAD_ELIMIT, 14, 7, "nesting deeper than 3 levels" },
	{ "bad/many-steps.yaml", LIM_STEPS_2, SAGAD_ELIMIT, 6, 3, "the flow has 3 steps (limit max_steps 2)" },
	{ "bad/non-utf8.yaml", LIM_NONE, SAGAD_ESYNTAX, 3, 17, "the file is not valid UTF-8" },
	{ "bad/template-syntax.yaml", LIM_NONE, SAGAD_ESYNTAX, 11, 46,
	  "action of step \"apply\": body: template error: " },
	{ "bad/keep-not-covered.yaml", LIM_NONE, SAGAD_ESYNTAX, 15, 29,
	  "steps.apply.response.body.applyStatus is not kept: step \"apply\" keeps only body.id; "
	  "add body.applyStatus to its keep list" },
	{ "bad/env-in-step.yaml", LIM_NONE, SAGAD_ESYNTAX, 11, 26, "env is only available in participant settings" },
	{ "bad/both-kinds.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 5, "has both participant/action and flow/input" },
	{ "bad/missing-keys.yaml", LIM_NONE, SAGAD_ESYNTAX, 1, 1, "flow: missing key \"name\"" },
	{ "bad/missing-keys.yaml", LIM_NONE, SAGAD_ESYNTAX, 6, 13, "action of step #1: missing key \"method\"" },
	{ "bad/wrong-types.yaml", LIM_NONE, SAGAD_ESYNTAX, 2, 10, "version: expected an integer like 1, found \"one\"" },
	{ "bad/wrong-types.yaml", LIM_NONE, SAGAD_ESYNTAX, 4, 17, "must start with http:// or https://" },
	{ "bad/wrong-types.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 45, "unknown failure \"4xx\"; did you mean \"5xx\"?" },
	{ "bad/wrong-types.yaml", LIM_NONE, SAGAD_ESYNTAX, 10, 12, "step \"apply\": pivot: expected true or false" },
	{ "bad/unknown-root.yaml", LIM_NONE, SAGAD_ESYNTAX, 5, 16, "unknown name \"step\"; did you mean \"steps\"?" },
	{ "bad/unknown-root.yaml", LIM_NONE, SAGAD_ESYNTAX, 5, 53, "saga.name: a saga offers only saga.id, saga.flow, saga.flow_version and saga.created_at" },
	{ "bad/unknown-root.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 60, "steps.apply is not available in step \"apply\": that is its own response" },
	/* Kafka */
	{ "bad/kafka-url.yaml", LIM_NONE, SAGAD_ESYNTAX, 6, 5,
	  "participant \"delivery\": url is only for http participants; a kafka participant has "
	  "topic, reply_topic, headers and timeout" },
	{ "bad/kafka-method.yaml", LIM_NONE, SAGAD_ESYNTAX, 9, 7,
	  "action of step \"ship\": method is only for http participants (participant \"delivery\" "
	  "is kafka)" },
	{ "bad/kafka-method.yaml", LIM_NONE, SAGAD_ESYNTAX, 11, 7,
	  "success is only for http participants (participant \"delivery\" is kafka); the event "
	  "types of a successful reply go under reply: success" },
	{ "bad/kafka-reply-topic.yaml", LIM_NONE, SAGAD_ESYNTAX, 11, 9,
	  "action of step \"ship\": reply: missing key \"topic\" (the topic replies arrive on; or "
	  "set reply_topic on participant \"delivery\")" },
	{ "bad/kafka-publish-http.yaml", LIM_NONE, SAGAD_ESYNTAX, 8, 5,
	  "step \"notify\": publish is only for kafka participants (participant \"events\" is http)" },
	{ "bad/kafka-trigger-input.yaml", LIM_NONE, SAGAD_ESYNTAX, 13, 24,
	  "trigger #1: input: input.x: a trigger's input reads only event, headers and kafka" },
	{ "bad/kafka-trigger-input.yaml", LIM_NONE, SAGAD_ESYNTAX, 13, 46,
	  "kafka.offest: kafka offers only topic, partition, offset and key; did you mean "
	  "\"kafka.offset\"?" },
	{ "bad/kafka-reply-key.yaml", LIM_NONE, SAGAD_ESYNTAX, 11, 9,
	  "unknown key \"corelate\" in the reply of action of step \"ship\"; did you mean "
	  "\"correlate\"?" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 4, 38,
	  "participant \"pay\": topic is only for kafka participants; add \"type: kafka\"" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 6, 35,
	  "participant \"delivery\": topic: \"bad topic!\" is not a valid Kafka topic name" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 10, 46,
	  "action of step \"pay\": topic is only for kafka participants (participant \"pay\" is http)" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 10, 63, "reply is only for kafka participants" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 13, 14,
	  "publish of step \"notify\": missing key \"topic\" (the topic to produce to; or set topic "
	  "on participant \"events\")" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 13, 26, "a publish step never waits for a reply" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 14, 5, "step \"notify\": a publish step has no timeout" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 15, 5, "a publish step has no compensation" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 19, 7, "action of step \"ship\": missing key \"topic\"" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 19, 54,
	  "steps.notify.response.status: step \"notify\" talks to a Kafka participant; its response "
	  "has type, body, headers, topic, partition and offset (no status)" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 20, 16, "reply: success lists event types; add \"type:\"" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 20, 55,
	  "reply: correlate: \"a..b\" is neither a body path (like eventType or data.id) nor header:NAME" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 21, 12,
	  "keep: \"status\" is not a path of a Kafka reply" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 24, 77, "reply: failure is set but success is not" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 26, 5, "trigger #1: missing key \"topic\"" },
	{ "bad/kafka-misc.yaml", LIM_NONE, SAGAD_ESYNTAX, 28, 13,
	  "trigger #1: input: steps.pay.response.body: a trigger's input reads only event, headers "
	  "and kafka: it makes the saga's input, so no step has run yet" },
};

static void limits_for(enum limit_override o, struct dsl_limits *l)
{
	dsl_limits_default(l);
	switch (o) {
	case LIM_FILE_64: l->max_file_bytes = 64; break;
	case LIM_STEPS_2: l->max_steps = 2; break;
	case LIM_NODES_50: l->max_nodes = 50; break;
	case LIM_DEPTH_3: l->max_depth = 3; break;
	default: break;
	}
}

/* Fails unless errs holds an error at line:col whose message contains msg. */
static void expect_error(const struct dsl_errors *errs, const char *file, int line, int col,
			 const char *msg)
{
	char *all;
	size_t i;

	for (i = 0; i < errs->n; i++)
		if (strstr(errs->v[i].message, msg) != NULL && strstr(errs->v[i].file, file) != NULL &&
		    errs->v[i].line == line && errs->v[i].col == col)
			return;
	all = dsl_errors_format(errs);
	print_error("expected %s:%d:%d: ...%s...\ngot:\n%s", file, line, col, msg, all);
	free(all);
	fail();
}

static void test_bad_fixture(void **state)
{
	const struct bad_case *c = *state;
	struct dsl_limits lim;
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f = (struct flow *)1;
	char path[512];
	int rc;

	unsetenv("SAGAD_TEST_UNSET_CLASS_URL");
	limits_for(c->lim, &lim);
	snprintf(path, sizeof(path), "%s/%s", FIXTURES, c->file);
	rc = dsl_load_file(path, &lim, &f, &errs);
	assert_int_equal(rc, c->rc);
	assert_null(f);
	assert_true(errs.n > 0);
	expect_error(&errs, c->file, c->line, c->col, c->message);
	dsl_errors_close(&errs);
}

/* The loader goes on after the first error. */
static void test_collects_all_errors(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f;
	size_t i;

	assert_int_equal(dsl_load_file(FIXTURES "/bad/wrong-types.yaml", NULL, &f, &errs), SAGAD_ESYNTAX);
	assert_int_equal(errs.n, 8);
	for (i = 1; i < errs.n; i++) /* sorted by position */
		assert_true(errs.v[i - 1].line < errs.v[i].line ||
			    (errs.v[i - 1].line == errs.v[i].line && errs.v[i - 1].col <= errs.v[i].col));
	dsl_errors_close(&errs);
}

static void test_errors_format(void **state)
{
	static const char yaml[] = "name: x\nversion: 1\nsteps: [\n";
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f;
	char *s;

	assert_int_equal(dsl_load_buffer("flows/x.yaml", yaml, strlen(yaml), NULL, &f, &errs),
			 SAGAD_ESYNTAX);
	assert_int_equal(errs.n, 1);
	s = dsl_errors_format(&errs);
	assert_true(strncmp(s, "flows/x.yaml:4:1: YAML syntax error: ", 37) == 0);
	assert_non_null(strstr(s, "unclosed [ ], { } or quote"));
	assert_true(s[strlen(s) - 1] == '\n');
	free(s);
	dsl_errors_close(&errs);
	s = dsl_errors_format(&errs);
	assert_string_equal(s, "");
	free(s);
	/* An empty file says what a flow needs. */
	assert_int_equal(dsl_load_buffer("e.yaml", "# nothing\n", 10, NULL, &f, &errs), SAGAD_ESYNTAX);
	expect_error(&errs, "e.yaml", 1, 1, "a flow needs at least name, version and steps");
	dsl_errors_close(&errs);
}

static const struct flow_step *step(const struct flow *f, const char *name)
{
	const struct flow_step *st = flow_find_step(f, name);

	assert_non_null(st);
	return st;
}

static void assert_retry(const struct retry_policy *rp, int attempts, int64_t initial, double mult,
			 int64_t max, double jitter, unsigned on)
{
	assert_int_equal(rp->max_attempts, attempts);
	assert_int_equal(rp->initial_backoff_ms, initial);
	assert_true(rp->multiplier == mult);
	assert_int_equal(rp->max_backoff_ms, max);
	assert_true(rp->jitter == jitter);
	assert_int_equal(rp->on, on);
}

static struct flow *load_good(void)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f = NULL;
	char *s;
	int rc;

	rc = dsl_load_file(FIXTURES "/good/apply.yaml", NULL, &f, &errs);
	if (rc != 0) {
		s = dsl_errors_format(&errs);
		print_error("%s", s);
		free(s);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(errs.n, 0);
	assert_non_null(f);
	return f;
}

static void test_good_values(void **state)
{
	const struct flow_step *apply, *pay, *ship;
	struct flow *f;

	unsetenv("SAGAD_TEST_CLASS_URL");
	unsetenv("SAGAD_TEST_DELIVERY_TIMEOUT");
	setenv("SAGAD_TEST_TOKEN", "s3cret", 1);
	setenv("SAGAD_TEST_DELIVERY_URL", "http://delivery.test:8084", 1);
	f = load_good();
	assert_int_equal(f->refs, 1);
	assert_string_equal(f->name, "apply");
	assert_int_equal(f->version, 2);
	assert_string_equal(f->description, "Apply for a class, pay, ship the textbook.");
	assert_true(strstr(f->file, "good/apply.yaml") != NULL);
	assert_int_equal(f->deadline_ms, 60000);
	assert_non_null(f->output);
	/* input */
	assert_true(f->input_closed);
	assert_int_equal(f->n_inputs, 3);
	assert_string_equal(f->inputs[0].name, "studentName");
	assert_int_equal(f->inputs[0].type, INPUT_STRING);
	assert_true(f->inputs[0].required);
	assert_int_equal(f->inputs[1].type, INPUT_INTEGER);
	assert_false(f->inputs[1].required);
	assert_int_equal(json_integer_value(f->inputs[1].default_value), 1);
	assert_int_equal(f->inputs[2].type, INPUT_STRING);
	assert_null(f->inputs[2].default_value);
	/* participants: env resolved, trailing slash dropped, timeouts */
	assert_int_equal(f->n_participants, 3);
	assert_string_equal(f->participants[0].base_url, "http://127.0.0.1:8081");
	assert_int_equal(f->participants[0].timeout_ms, 2000);
	assert_int_equal(f->participants[0].n_headers, 2);
	assert_int_equal(f->participants[1].timeout_ms, 5000);      /* defaults.timeout */
	assert_string_equal(f->participants[2].base_url, "http://delivery.test:8084");
	assert_int_equal(f->participants[2].timeout_ms, 3000);      /* default(env..., '3s') */
	/* steps */
	assert_int_equal(f->n_steps, 3);
	apply = step(f, "apply");
	pay = step(f, "pay");
	ship = step(f, "ship");
	assert_int_equal(apply->index, 0);
	assert_int_equal(ship->index, 2);
	assert_int_equal(apply->kind, STEP_KIND_CALL);
	assert_ptr_equal(apply->participant, &f->participants[0]);
	assert_string_equal(apply->action.method, "POST");
	assert_int_equal(apply->line, 31);
	assert_int_equal(apply->action.line, 33);
	assert_int_equal(apply->action.n_query, 1);
	assert_int_equal(apply->action.n_headers, 1);
	/* timeouts: participant's, the step's own, from env default */
	assert_int_equal(apply->timeout_ms, 2000);
	assert_int_equal(pay->timeout_ms, 1500);
	assert_int_equal(ship->timeout_ms, 3000);
	/* retry: built-in defaults overlaid with defaults: and the step's own */
	assert_retry(&apply->retry, 4, 100, 2.0, 5000, 0.2, RETRY_ON_DEFAULT);
	assert_retry(&apply->comp_retry, 10, 200, 2.0, 60000, 0.2, RETRY_ON_DEFAULT);
	assert_retry(&pay->retry, 3, 250, 1.5, 2000, 0.0, RETRY_ON_CONNECT | RETRY_ON_5XX);
	assert_retry(&pay->comp_retry, 20, 200, 2.0, 60000, 0.2, RETRY_ON_DEFAULT);
	assert_retry(&ship->retry, 4, 100, 2.0, 5000, 0.2, RETRY_ON_DEFAULT);
	assert_true(pay->pivot);
	assert_false(apply->pivot);
	/* keep */
	assert_int_equal(apply->n_keep, 2);
	assert_string_equal(apply->keep[0], "body.id");
	assert_string_equal(apply->keep[1], "body.applyStatus");
	assert_null(ship->keep);
	/* success rules */
	assert_int_equal(apply->action.n_ok_status, 2);
	assert_int_equal(apply->action.ok_status[0], 200);
	assert_int_equal(apply->action.ok_status[1], 201);
	assert_false(apply->action.has_body_equals);
	assert_int_equal(apply->action.n_fields, 1);
	assert_string_equal(apply->action.field_paths[0], "applyStatus");
	assert_string_equal(json_string_value(apply->action.field_equals[0]), "ApplyRequest");
	assert_int_equal(pay->action.n_ok_status, 1);
	assert_true(pay->action.has_body_equals);
	assert_true(json_is_true(pay->action.body_equals));
	assert_null(ship->action.ok_status);
	/* compensation */
	assert_non_null(apply->compensation);
	assert_string_equal(apply->compensation->method, "PATCH");
	assert_int_equal(apply->compensation->n_ok_status, 2);
	assert_null(ship->compensation);
	flow_unref(f);
}

/* Plain scalars get YAML 1.2 core types, quoted ones stay strings, one ${} keeps its type. */
static void test_good_body_types(void **state)
{
	struct flow *f;
	json_t *ctx, *body;
	char err[256];

	setenv("SAGAD_TEST_DELIVERY_URL", "http://delivery.test:8084", 1);
	f = load_good();
	ctx = json_pack("{s:{s:s, s:i}, s:{s:s, s:s}}", "input", "studentName", "Ann", "courseId", 7,
			"saga", "id", "01SAGA", "flow", "apply");
	body = tmpl_eval(step(f, "apply")->action.body, ctx, err, sizeof(err));
	assert_non_null(body);
	assert_int_equal(json_integer_value(json_object_get(body, "courseId")), 7);
	assert_string_equal(json_string_value(json_object_get(body, "studentName")), "Ann");
	assert_string_equal(json_string_value(json_object_get(body, "applyId")), "01SAGA");
	assert_true(strncmp(json_string_value(json_object_get(body, "note")), "applied at 20", 13) == 0);
	assert_int_equal(json_integer_value(json_object_get(body, "count")), 3);
	assert_true(json_real_value(json_object_get(body, "ratio")) == 1.5);
	assert_string_equal(json_string_value(json_object_get(body, "flag")), "yes");
	assert_string_equal(json_string_value(json_object_get(body, "quoted")), "true");
	assert_true(json_is_null(json_object_get(body, "nothing")));
	json_decref(body);
	json_decref(ctx);
	flow_unref(f);
}

static void test_good_env_and_source(void **state)
{
	struct flow *f;
	json_t *cls, *steps, *comp;
	char err[256], *h;

	setenv("SAGAD_TEST_CLASS_URL", "https://class.test:9443//", 1);
	setenv("SAGAD_TEST_DELIVERY_TIMEOUT", "750ms", 1);
	setenv("SAGAD_TEST_TOKEN", "s3cret", 1);
	setenv("SAGAD_TEST_DELIVERY_URL", "http://delivery.test:8084", 1);
	f = load_good();
	assert_string_equal(f->participants[0].base_url, "https://class.test:9443");
	assert_int_equal(f->participants[2].timeout_ms, 750);
	assert_int_equal(step(f, "ship")->timeout_ms, 750);
	/* Header values are resolved now and rendered as is. */
	assert_string_equal(f->participants[0].headers[1].name, "Authorization");
	h = tmpl_eval_string(f->participants[0].headers[1].value, NULL, err, sizeof(err));
	assert_string_equal(h, "Bearer s3cret");
	free(h);
	/* The source shows the resolved url and hides secrets. */
	cls = json_object_get(json_object_get(f->source, "participants"), "class");
	assert_string_equal(json_string_value(json_object_get(cls, "url")), "https://class.test:9443");
	assert_string_equal(json_string_value(json_object_get(json_object_get(cls, "headers"),
							      "Authorization")), "***");
	assert_string_equal(json_string_value(json_object_get(json_object_get(cls, "headers"),
							      "X-Caller")), "sagad");
	assert_string_equal(json_string_value(json_object_get(f->source, "name")), "apply");
	assert_int_equal(json_integer_value(json_object_get(f->source, "deadline_ms")), 60000);
	steps = json_object_get(f->source, "steps");
	assert_int_equal(json_array_size(steps), 3);
	comp = json_object_get(json_array_get(steps, 0), "compensation");
	assert_string_equal(json_string_value(json_object_get(comp, "path")),
			    "/classes/${steps.apply.response.body.id}");
	flow_unref(f);
}

static void test_missing_env_with_default(void **state)
{
	static const char yaml[] =
		"name: x\nversion: 1\n"
		"participants:\n"
		"  a: { url: \"${env.SAGAD_TEST_NOPE_URL}\", headers: { X-Token: \"${env.SAGAD_TEST_NOPE}\" } }\n"
		"steps:\n"
		"  - { name: s, participant: a, action: { method: GET, path: / } }\n";
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f;

	unsetenv("SAGAD_TEST_NOPE_URL");
	unsetenv("SAGAD_TEST_NOPE");
	assert_int_equal(dsl_load_buffer("m.yaml", yaml, strlen(yaml), NULL, &f, &errs), SAGAD_ESYNTAX);
	assert_int_equal(errs.n, 2);
	expect_error(&errs, "m.yaml", 4, 14, "url: environment variable SAGAD_TEST_NOPE_URL is not set");
	expect_error(&errs, "m.yaml", 4, 64, "header \"X-Token\": environment variable SAGAD_TEST_NOPE "
		     "is not set; set it or use default(env.SAGAD_TEST_NOPE, '...')");
	dsl_errors_close(&errs);
}

/* Aliases within the limit are expanded like the values they name. */
static void test_aliases(void **state)
{
	static const char yaml[] =
		"name: x\nversion: 1\n"
		"participants:\n  a: { url: \"http://h\" }\n"
		"defaults: { retry: &r { max_attempts: 5, on: [5xx] } }\n"
		"steps:\n"
		"  - { name: s, participant: a, action: &act { method: GET, path: /x }, retry: *r }\n"
		"  - { name: t, participant: a, action: *act }\n";
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f;

	assert_int_equal(dsl_load_buffer("a.yaml", yaml, strlen(yaml), NULL, &f, &errs), 0);
	assert_int_equal(f->steps[0].retry.max_attempts, 5);
	assert_int_equal(f->steps[0].retry.on, RETRY_ON_5XX);
	assert_string_equal(f->steps[1].action.method, "GET");
	flow_unref(f);
	dsl_errors_close(&errs);
}

static struct flow *load_kafka(void)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f = NULL;
	char *s;
	int rc;

	rc = dsl_load_file(FIXTURES "/good/kafka.yaml", NULL, &f, &errs);
	if (rc != 0) {
		s = dsl_errors_format(&errs);
		print_error("%s", s);
		free(s);
	}
	assert_int_equal(rc, 0);
	assert_non_null(f);
	dsl_errors_close(&errs);
	return f;
}

static void test_kafka_values(void **state)
{
	const struct participant *payment, *delivery, *events;
	const struct flow_step *pay, *ship, *notify;
	const struct flow_reply *r;
	const struct flow_trigger *t;
	struct flow *f;

	unsetenv("SAGAD_TEST_DELIVERY_TOPIC");
	setenv("SAGAD_TEST_TRIGGER_TOPIC", "class-applied-v2", 1);
	f = load_kafka();
	/* participants: kafka defaults (30s), topics, headers; http alongside */
	assert_int_equal(f->n_participants, 4);
	payment = &f->participants[0];
	delivery = &f->participants[1];
	events = &f->participants[2];
	assert_int_equal(payment->kind, PARTICIPANT_KAFKA);
	assert_null(payment->base_url);
	assert_string_equal(payment->topic, "payment-commands");
	assert_string_equal(payment->reply_topic, "payment-events");
	assert_int_equal(payment->timeout_ms, 30000);
	assert_int_equal(payment->n_headers, 1);
	assert_string_equal(delivery->topic, "delivery-commands");     /* env default */
	assert_int_equal(delivery->timeout_ms, 10000);
	assert_null(events->topic);
	assert_null(events->reply_topic);
	assert_int_equal(f->participants[3].kind, PARTICIPANT_HTTP);
	assert_int_equal(f->participants[3].timeout_ms, 10000);
	/* a request/reply step with the participant's topics and the default correlation */
	pay = step(f, "pay");
	assert_int_equal(pay->kind, STEP_KIND_CALL);
	assert_false(pay->publish);
	assert_int_equal(pay->timeout_ms, 30000);
	assert_null(pay->action.method);
	assert_null(pay->action.path);
	assert_null(pay->action.topic);                               /* = participant's */
	assert_non_null(pay->action.key);
	assert_int_equal(pay->action.n_headers, 1);
	assert_non_null(pay->action.body);
	r = pay->action.reply;
	assert_non_null(r);
	assert_string_equal(r->topic, "payment-events");
	assert_string_equal(r->correlate_path, "header:correlation-id");
	assert_null(r->correlate_value);
	assert_string_equal(r->type_path, "eventType");
	assert_int_equal(r->n_success_types, 1);
	assert_string_equal(r->success_types[0], "PaymentApproved");
	assert_int_equal(r->n_failure_types, 1);
	assert_string_equal(r->failure_types[0], "PaymentFailed");
	assert_int_equal(r->n_fields, 0);
	assert_int_equal(pay->n_keep, 2);
	/* a one-way compensation: no reply */
	assert_non_null(pay->compensation);
	assert_null(pay->compensation->reply);
	assert_null(pay->compensation->topic);
	/* everything set on the request */
	ship = step(f, "ship");
	assert_int_equal(ship->timeout_ms, 5000);
	assert_int_equal(ship->retry.on, RETRY_ON_TIMEOUT);
	assert_string_equal(ship->action.topic, "delivery-commands-v2");
	r = ship->action.reply;
	assert_string_equal(r->topic, "delivery-replies");
	assert_string_equal(r->correlate_path, "paidId");
	assert_non_null(r->correlate_value);
	assert_string_equal(r->type_path, "header:eventType");
	assert_int_equal(r->n_success_types, 1);
	assert_string_equal(r->success_types[0], "DeliveryStarted");
	assert_int_equal(r->n_fields, 1);
	assert_string_equal(r->field_paths[0], "deliveryStatus");
	assert_string_equal(json_string_value(r->field_equals[0]), "DeliveryStart");
	assert_string_equal(ship->compensation->reply->topic, "delivery-events");
	assert_string_equal(ship->compensation->reply->success_types[0], "DeliveryCanceled");
	/* a publish step */
	notify = step(f, "notify");
	assert_true(notify->publish);
	assert_ptr_equal(notify->participant, events);
	assert_string_equal(notify->action.topic, "class-events");
	assert_null(notify->action.reply);
	assert_null(notify->compensation);
	assert_null(notify->keep);
	/* triggers */
	assert_int_equal(f->n_triggers, 2);
	t = &f->triggers[0];
	assert_string_equal(t->topic, "class-events");
	assert_string_equal(t->type_path, "eventType");
	assert_int_equal(t->n_types, 1);
	assert_string_equal(t->types[0], "ClassApplied");
	assert_int_equal(t->n_fields, 1);
	assert_string_equal(t->field_paths[0], "source");
	assert_non_null(t->input);
	assert_int_equal(t->line, 70);
	t = &f->triggers[1];
	assert_string_equal(t->topic, "class-applied-v2");
	assert_null(t->type_path);
	assert_int_equal(t->n_types, 0);
	assert_null(t->input);
	flow_unref(f);
}

static void test_kafka_source(void **state)
{
	json_t *src, *p, *st, *tr;
	struct flow *f;

	unsetenv("SAGAD_TEST_TRIGGER_TOPIC");
	f = load_kafka();
	src = f->source;
	p = json_object_get(json_object_get(src, "participants"), "payment");
	assert_string_equal(json_string_value(json_object_get(p, "type")), "kafka");
	assert_string_equal(json_string_value(json_object_get(p, "topic")), "payment-commands");
	assert_string_equal(json_string_value(json_object_get(p, "reply_topic")), "payment-events");
	assert_int_equal(json_integer_value(json_object_get(p, "timeout_ms")), 30000);
	assert_null(json_object_get(p, "url"));
	st = json_array_get(json_object_get(src, "steps"), 2);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
		json_object_get(st, "action"), "reply"), "correlate"), "path")), "paidId");
	st = json_array_get(json_object_get(src, "steps"), 3);
	assert_string_equal(json_string_value(json_object_get(json_object_get(st, "publish"),
							      "topic")), "class-events");
	assert_null(json_object_get(st, "action"));
	assert_null(json_object_get(st, "retry"));
	tr = json_object_get(src, "triggers");
	assert_int_equal(json_array_size(tr), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(tr, 0), "type")),
			    "eventType");
	assert_string_equal(json_string_value(json_object_get(json_array_get(tr, 1), "topic")),
			    "class-applied");   /* resolved */
	flow_unref(f);
}

/* A flow may be started only by triggers; its input then comes from events. */
static void test_kafka_triggers_only(void **state)
{
	static const char yaml[] =
		"name: x\nversion: 1\n"
		"participants:\n  ev: { type: kafka, topic: out }\n"
		"steps:\n  - { name: s, participant: ev, publish: { body: \"${input.id}\" } }\n"
		"triggers:\n  - { topic: in }\n";
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f;

	assert_int_equal(dsl_load_buffer("t.yaml", yaml, strlen(yaml), NULL, &f, &errs), 0);
	assert_int_equal(f->n_triggers, 1);
	assert_int_equal(f->n_inputs, 0);
	assert_true(f->steps[0].publish);
	flow_unref(f);
	dsl_errors_close(&errs);
}

static void test_seed_flows(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow_set fs;
	char *s;
	int rc;

	flow_set_init(&fs);
	rc = dsl_load_dir(TEST_SRCDIR "/flows", NULL, &fs, &errs);
	if (rc != 0) {
		s = dsl_errors_format(&errs);
		print_error("%s", s);
		free(s);
	}
	assert_int_equal(rc, 0);
	assert_non_null(flow_set_find(&fs, "apply"));
	flow_set_close(&fs);
	dsl_errors_close(&errs);
}

static void test_dir_good(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	const struct flow_step *st;
	struct flow_set fs;
	struct flow *apply;
	json_t *ctx, *in;
	char err[256];

	flow_set_init(&fs);
	assert_int_equal(dsl_load_dir(FIXTURES "/dir-good", NULL, &fs, &errs), 0);
	assert_int_equal(fs.n, 2);  /* apply.yaml and pay.yml; README.txt is skipped */
	assert_string_equal(fs.flows[0]->name, "apply");
	assert_string_equal(fs.flows[1]->name, "pay");
	apply = flow_set_find(&fs, "apply");
	st = step(apply, "pay");
	assert_int_equal(st->kind, STEP_KIND_SUBFLOW);
	assert_string_equal(st->subflow_name, "pay");
	assert_int_equal(st->timeout_ms, 30000);
	assert_null(st->participant);
	ctx = json_pack("{s:{s:s}, s:{s:{s:{s:i, s:{s:i}}}}}", "input", "studentName", "Ann", "steps",
			"apply", "response", "status", 201, "body", "id", 42);
	in = flow_render_subflow_input(st, ctx, err, sizeof(err));
	assert_non_null(in);
	assert_string_equal(json_string_value(json_object_get(in, "applyId")), "42");
	assert_string_equal(json_string_value(json_object_get(in, "who")), "Ann");
	json_decref(in);
	json_decref(ctx);
	flow_set_close(&fs);
	dsl_errors_close(&errs);
}

static void test_dir_unknown_subflow(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow_set fs;

	flow_set_init(&fs);
	assert_int_equal(dsl_load_dir(FIXTURES "/dir-unknown", NULL, &fs, &errs), SAGAD_ESYNTAX);
	assert_int_equal(fs.n, 2);
	assert_int_equal(errs.n, 1);
	expect_error(&errs, "dir-unknown/apply.yaml", 5, 11, "step \"pay\": unknown flow \"paymnt\" "
		     "(known: apply, payment); did you mean \"payment\"?");
	flow_set_close(&fs);
	dsl_errors_close(&errs);
}

static void test_dir_cycle(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow_set fs;

	flow_set_init(&fs);
	assert_int_equal(dsl_load_dir(FIXTURES "/dir-cycle", NULL, &fs, &errs), SAGAD_ESYNTAX);
	assert_int_equal(errs.n, 1);
	expect_error(&errs, "dir-cycle/pay.yaml", 5, 11, "sub-flow cycle apply -> pay -> apply");
	dsl_errors_close(&errs);
	/* dsl_link() alone points at the `flow:` value too (the step keeps its location). */
	assert_int_equal(dsl_link(&fs, &errs), SAGAD_ESYNTAX);
	expect_error(&errs, "dir-cycle/pay.yaml", 5, 11, "sub-flow cycle apply -> pay -> apply");
	flow_set_close(&fs);
	dsl_errors_close(&errs);
}

static void test_dir_duplicate(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow_set fs;

	flow_set_init(&fs);
	assert_int_equal(dsl_load_dir(FIXTURES "/dir-dup", NULL, &fs, &errs), SAGAD_ESYNTAX);
	assert_int_equal(fs.n, 1);
	assert_int_equal(errs.n, 1);
	expect_error(&errs, "dir-dup/b.yaml", 1, 7, "flow \"payment\" version 1 is already defined at ");
	assert_non_null(strstr(errs.v[0].message, "dir-dup/a.yaml:1:7"));
	flow_set_close(&fs);
	dsl_errors_close(&errs);
}

static void test_io_errors(void **state)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow_set fs;
	struct flow *f;

	flow_set_init(&fs);
	assert_true(dsl_load_file(FIXTURES "/nope.yaml", NULL, &f, &errs) < 0);
	assert_int_equal(errs.n, 1);
	assert_true(dsl_load_dir(FIXTURES "/nope", NULL, &fs, &errs) < 0);
	assert_int_equal(errs.n, 2);
	dsl_errors_close(&errs);
	dsl_errors_close(NULL);
}

/* Every prefix of a good flow file (a file cut anywhere: a partial write, a truncated copy)
 * loads or fails with located errors, never crashes or leaks (the ASan build checks both). */
static void test_truncated_everywhere(void **state)
{
	FILE *fp = fopen(FIXTURES "/good/kafka.yaml", "rb");
	char buf[8192];
	size_t len, failed = 0;

	assert_non_null(fp);
	len = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	assert_true(len > 1000 && len < sizeof(buf));
	for (size_t cut = 0; cut < len; cut++) {
		struct dsl_errors errs = { NULL, 0 };
		struct flow *f = NULL;
		int rc = dsl_load_buffer("cut.yaml", buf, cut, NULL, &f, &errs);

		if (rc == 0) {
			assert_int_equal(errs.n, 0);
			flow_unref(f);
			continue;
		}
		failed++;
		assert_true(rc == SAGAD_ESYNTAX || rc == SAGAD_ELIMIT);
		assert_null(f);
		assert_true(errs.n > 0);
		for (size_t i = 0; i < errs.n; i++)
			assert_true(errs.v[i].message[0] != '\0' && errs.v[i].line >= 0);
		dsl_errors_close(&errs);
	}
	assert_true(failed > len / 2); /* most cuts break the flow: the test exercises errors */
}

static void test_limit_set(void **state)
{
	static const struct { const char *arg; int rc; const char *msg; } cases[] = {
		{ "max_file_bytes=2MiB", 0, NULL }, { "max_depth=80", 0, NULL },
		{ "max_aliases=7", 0, NULL }, { "max_nodes=5000", 0, NULL }, { "max_steps=512", 0, NULL },
		{ "max_steps", SAGAD_EINVAL, "expected NAME=VALUE with NAME one of max_file_bytes" },
		{ "max_stepz=3", SAGAD_EINVAL, "unknown flow limit \"max_stepz\" (known: max_file_bytes" },
		{ "max_depth=0", SAGAD_EINVAL, "max_depth=0: expected a whole number from 1" },
		{ "max_depth=ten", SAGAD_EINVAL, "expected a whole number" },
		{ "max_file_bytes=1.5M", SAGAD_EINVAL, "expected a size from 1 byte to 256MiB" },
		{ "max_file_bytes=1GiB", SAGAD_EINVAL, "expected a size from 1 byte to 256MiB" },
	};
	struct dsl_limits l;
	char err[256];

	dsl_limits_default(&l);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(dsl_limit_set(&l, cases[i].arg, err, sizeof(err)), cases[i].rc);
		if (cases[i].msg != NULL && strstr(err, cases[i].msg) == NULL)
			fail_msg("%s: got \"%s\", want ...%s...", cases[i].arg, err, cases[i].msg);
	}
	assert_int_equal(l.max_file_bytes, 2 << 20);
	assert_int_equal(l.max_depth, 80);
	assert_int_equal(l.max_aliases, 7);
	assert_int_equal(l.max_nodes, 5000);
	assert_int_equal(l.max_steps, 512);
}

int main(void)
{
	size_t nb = sizeof(bad_cases) / sizeof(bad_cases[0]), n = 0, i;
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_collects_all_errors),
		cmocka_unit_test(test_errors_format),
		cmocka_unit_test(test_good_values),
		cmocka_unit_test(test_good_body_types),
		cmocka_unit_test(test_good_env_and_source),
		cmocka_unit_test(test_missing_env_with_default),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_kafka_values),
		cmocka_unit_test(test_kafka_source),
		cmocka_unit_test(test_kafka_triggers_only),
		cmocka_unit_test(test_seed_flows),
		cmocka_unit_test(test_dir_good),
		cmocka_unit_test(test_dir_unknown_subflow),
		cmocka_unit_test(test_dir_cycle),
		cmocka_unit_test(test_dir_duplicate),
		cmocka_unit_test(test_io_errors),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_limit_set),
	};
	size_t nf = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = xcalloc(nb + nf, sizeof(*tests));
	char **names = xcalloc(nb, sizeof(*names));
	int rc;

	for (i = 0; i < nb; i++) {
		names[i] = xasprintf("bad %s %d:%d", bad_cases[i].file, bad_cases[i].line, bad_cases[i].col);
		tests[n].name = names[i];
		tests[n].test_func = test_bad_fixture;
		tests[n++].initial_state = (void *)&bad_cases[i];
	}
	for (i = 0; i < nf; i++)
		tests[n++] = fixed[i];
	rc = _cmocka_run_group_tests("dsl", tests, n, NULL, NULL);
	for (i = 0; i < nb; i++)
		free(names[i]);
	free(names);
	free(tests);
	return rc;
}
