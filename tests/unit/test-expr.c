/* test-expr.c: templates and expressions (expr.c) and the runtime operations on flows (flow.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "error.h"
#include "expr.h"
#include "flow.h"
#include "util.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char ctx_text[] =
	"{\"input\": {\"classId\": 7, \"name\": \"Ann\", \"price\": 1.5, \"flag\": true,"
	"  \"nothing\": null, \"tags\": [\"a\", \"b\"], \"obj\": {\"k\": \"v\"}, \"num\": \"42\","
	"  \"real\": \"2.5\", \"bigId\": 1234567890123456789, \"when\": \"2026-11-21T18:33:42.123Z\","
	"  \"ms\": 1795286022123, \"status\": \"Finished\"},"
	" \"saga\": {\"id\": \"01ABC\", \"flow\": \"apply\", \"created_at\": \"2026-11-21T18:33:42.123Z\"},"
	" \"steps\": {\"pay\": {\"response\": {\"status\": 201,"
	"   \"body\": {\"items\": [{\"id\": 9}], \"ok\": true}}}},"
	" \"env\": {\"weird key\": \"w\"}}";

/* Parses JSON text (any value); dies on a typo in a test. */
static json_t *J(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

	if (v == NULL)
		fail_msg("bad test JSON %s: %s", text, e.text);
	return v;
}

static void assert_json_eq(json_t *got, const char *want_text)
{
	json_t *want = J(want_text);

	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("got %s, want %s", g ? g : "NULL", want_text);
	}
	json_decref(want);
}

static int setup_ctx(void **state)
{
	*state = J(ctx_text);
	return 0;
}

static int teardown_ctx(void **state)
{
	json_decref(*state);
	return 0;
}

/* --- evaluation ---------------------------------------------------------------------------- */

static const struct {
	const char *tmpl;     /* JSON text of the template */
	const char *want;     /* JSON text of the result */
} eval_cases[] = {
	/* typed single expression */
	{ "\"${input.classId}\"", "7" },
	{ "\"${  input.classId\\t}\"", "7" },
	{ "\"${input.price}\"", "1.5" },
	{ "\"${input.flag}\"", "true" },
	{ "\"${input.nothing}\"", "null" },
	{ "\"${input.obj}\"", "{\"k\": \"v\"}" },
	{ "\"${steps.pay.response.body.items[0].id}\"", "9" },
	{ "\"${steps.pay.response.body.items[ 0 ]}\"", "{\"id\": 9}" },
	{ "\"${env['weird key']}\"", "\"w\"" },
	{ "\"${env[\\\"weird key\\\"]}\"", "\"w\"" },
	/* interpolation */
	{ "\"id-${input.classId}\"", "\"id-7\"" },
	{ "\" ${input.classId}\"", "\" 7\"" },
	{ "\"p=${input.price}\"", "\"p=1.5\"" },
	{ "\"${input.flag}/${input.nothing}/${input.tags}/${input.obj}\"",
	  "\"true//[\\\"a\\\",\\\"b\\\"]/{\\\"k\\\":\\\"v\\\"}\"" },
	{ "\"${saga.flow}:${saga.id}\"", "\"apply:01ABC\"" },
	/* escapes and constants */
	{ "\"$${input.classId}\"", "\"${input.classId}\"" },
	{ "\"cost $5 $${x} ${input.classId} $\"", "\"cost $5 ${x} 7 $\"" },
	{ "\"plain\"", "\"plain\"" },
	{ "\"\"", "\"\"" },
	{ "12", "12" },
	{ "null", "null" },
	/* nested */
	{ "{\"a\": [\"${input.classId}\", {\"b\": \"x${saga.id}\"}, 3], \"c\": {\"d\": false}}",
	  "{\"a\": [7, {\"b\": \"x01ABC\"}, 3], \"c\": {\"d\": false}}" },
	/* literals */
	{ "\"${'it\\\\'s'}\"", "\"it's\"" },
	{ "\"${\\\"dq\\\"}\"", "\"dq\"" },
	{ "\"${'tab\\\\there \\\\u00e9 \\\\ud83d\\\\ude00'}\"", "\"tab\\there \\u00e9 \\ud83d\\ude00\"" },
	{ "\"${-3}\"", "-3" },
	{ "\"${1.25}\"", "1.25" },
	{ "\"${2e3}\"", "2000.0" },
	{ "\"${true}\"", "true" },
	{ "\"${null}\"", "null" },
	/* functions */
	{ "\"${string(input.classId)}\"", "\"7\"" },
	{ "\"${string(input.nothing)}\"", "\"\"" },
	{ "\"${string(input.tags)}\"", "\"[\\\"a\\\",\\\"b\\\"]\"" },
	{ "\"${number(input.num)}\"", "42" },
	{ "\"${number(input.real)}\"", "2.5" },
	{ "\"${number(' -1e2 ')}\"", "-100.0" },
	{ "\"${number(input.price)}\"", "1.5" },
	{ "\"${integer(input.price)}\"", "1" },
	{ "\"${integer('-12.9')}\"", "-12" },
	{ "\"${integer(input.num)}\"", "42" },
	{ "\"${integer(true)}\"", "1" },
	{ "\"${boolean('true')}\"", "true" },
	{ "\"${boolean('FALSE')}\"", "false" },
	{ "\"${boolean(0)}\"", "false" },
	{ "\"${boolean(input.classId)}\"", "true" },
	{ "\"${json(input.obj)}\"", "\"{\\\"k\\\":\\\"v\\\"}\"" },
	{ "\"${json('a')}\"", "\"\\\"a\\\"\"" },
	{ "\"${json(input.classId)}\"", "\"7\"" },
	{ "\"${default(input.missing, 'x')}\"", "\"x\"" },
	{ "\"${default(input.nothing, 3)}\"", "3" },
	{ "\"${default(input.classId, 3)}\"", "7" },
	{ "\"${default(steps.nope.response.body.id, null)}\"", "null" },
	{ "\"${default(input.name.deep, 'd')}\"", "\"d\"" },
	{ "\"${default(nowhere.x, default(input.y, 'z'))}\"", "\"z\"" },
	{ "\"${default(input.tags[5], input.tags[1])}\"", "\"b\"" },
	{ "\"${upper(input.name)}\"", "\"ANN\"" },
	{ "\"${lower('AbC-\\\\u00c9')}\"", "\"abc-\\u00c9\"" },
	{ "\"${upper(concat('a', input.classId))}\"", "\"A7\"" },
	{ "\"${concat('a', input.classId, true, null, input.price)}\"", "\"a7true1.5\"" },
	{ "\"${concat('x',input.name,'y','z','1','2','3','4','5','6')}\"", "\"xAnnyz123456\"" },
	{ "\"n=${ concat ( 'a' , 'b' ) }!\"", "\"n=ab!\"" },
	/* conversions keep integers exact */
	{ "\"${string(12)}\"", "\"12\"" },
	{ "\"${string(12) == '12'}\"", "true" },
	{ "\"${integer('12')}\"", "12" },
	{ "\"${integer('12') == 12}\"", "true" },
	{ "\"${string(input.bigId)}\"", "\"1234567890123456789\"" },
	{ "\"id=${input.bigId}\"", "\"id=1234567890123456789\"" },
	{ "\"${integer('1234567890123456789')}\"", "1234567890123456789" },
	{ "\"${number('1234567890123456789')}\"", "1234567890123456789" },
	{ "\"${string(integer(string(input.bigId)))}\"", "\"1234567890123456789\"" },
	{ "\"${string(1.2e15)}\"", "\"1200000000000000.0\"" },
	{ "\"${string(-3e18)}\"", "\"-3000000000000000000.0\"" },
	{ "\"${string(0.1)}\"", "\"0.1\"" },
	{ "\"${string(1e300)}\"", "\"1e+300\"" },
	/* equality: deep, numbers by value */
	{ "\"${input.classId == 7}\"", "true" },
	{ "\"${input.classId == 7.0}\"", "true" },
	{ "\"${input.classId != 7}\"", "false" },
	{ "\"${input.price != 1.5}\"", "false" },
	{ "\"${input.name == 'Ann'}\"", "true" },
	{ "\"${input.name == 'ann'}\"", "false" },
	{ "\"${input.num == 42}\"", "false" },
	{ "\"${number(input.num) == 42}\"", "true" },
	{ "\"${input.nothing == null}\"", "true" },
	{ "\"${input.flag == true}\"", "true" },
	{ "\"${input.flag == 1}\"", "false" },
	{ "\"${input.tags == ['a', 'b']}\"", "true" },
	{ "\"${input.tags == ['b', 'a']}\"", "false" },
	{ "\"${input.tags == ['a']}\"", "false" },
	{ "\"${[1, [2.0, null]] == [1.0, [2, null]]}\"", "true" },
	{ "\"${input.obj == input.obj}\"", "true" },
	{ "\"${input.obj == steps.pay.response.body}\"", "false" },
	{ "\"${steps.pay.response.body.items[0] == steps.pay.response.body.items[0]}\"", "true" },
	{ "\"${input.bigId == 1234567890123456789}\"", "true" },
	{ "\"${input.bigId == 1234567890123456788}\"", "false" },
	{ "\"${9007199254740993 == 9007199254740992.0}\"", "false" },
	{ "\"${9007199254740992 == 9007199254740992.0}\"", "true" },
	/* ordering: numbers, or strings byte by byte */
	{ "\"${input.classId < 8}\"", "true" },
	{ "\"${input.classId <= 7}\"", "true" },
	{ "\"${input.classId > 6.5}\"", "true" },
	{ "\"${input.classId >= 7.5}\"", "false" },
	{ "\"${-1 < -0.5}\"", "true" },
	{ "\"${9007199254740993 > 9007199254740992.0}\"", "true" },
	{ "\"${9223372036854775807 < 9223372036854775807.0}\"", "true" },
	{ "\"${1.5 < input.classId}\"", "true" },
	{ "\"${'abc' < 'abd'}\"", "true" },
	{ "\"${'ab' < 'abc'}\"", "true" },
	{ "\"${'b' > 'abc'}\"", "true" },
	{ "\"${'Z' < 'a'}\"", "true" },
	{ "\"${'x' >= 'x'}\"", "true" },
	/* boolean operators, precedence, short-circuit */
	{ "\"${input.flag && input.classId == 7}\"", "true" },
	{ "\"${input.classId>6&&input.classId<=7}\"", "true" },
	{ "\"${false && input.missing}\"", "false" },
	{ "\"${true || input.missing}\"", "true" },
	{ "\"${false || input.flag}\"", "true" },
	{ "\"${!input.flag}\"", "false" },
	{ "\"${!!true}\"", "true" },
	{ "\"${! (1 == 2)}\"", "true" },
	{ "\"${true || false && false}\"", "true" },
	{ "\"${(true || false) && false}\"", "false" },
	{ "\"${1 < 2 == true}\"", "true" },
	{ "\"${!false == true}\"", "true" },
	{ "\"${1 == 1 && 2 == 2 || false}\"", "true" },
	/* in */
	{ "\"${'b' in input.tags}\"", "true" },
	{ "\"${'c' in input.tags}\"", "false" },
	{ "\"${7.0 in [1, input.classId]}\"", "true" },
	{ "\"${input.status in ['Finished', 'Done']}\"", "true" },
	{ "\"${'nn' in input.name}\"", "true" },
	{ "\"${'' in input.name}\"", "true" },
	{ "\"${'A' in input.name}\"", "true" },
	{ "\"${'k' in input.obj}\"", "true" },
	{ "\"${'v' in input.obj}\"", "false" },
	{ "\"${!('x' in input.tags)}\"", "true" },
	/* missing data inside default() */
	{ "\"${default(input.missing == 1, false)}\"", "false" },
	{ "\"${default(input.missing, 0) > 5}\"", "false" },
	{ "\"${default(steps.nope.response.body.deliveryStatus, '') == 'Finished'}\"", "false" },
	/* results: a boolean alone, text inside a string; lists */
	{ "\"x=${input.classId > 5}\"", "\"x=true\"" },
	{ "\"${concat('a', 1 == 1)}\"", "\"atrue\"" },
	{ "\"${[input.classId, 'a', [true]]}\"", "[7, \"a\", [true]]" },
	{ "\"${[ ]}\"", "[]" },
	/* dates */
	{ "\"${date_add(saga.created_at, '21d')}\"", "\"2026-12-12T18:33:42.123Z\"" },
	{ "\"${date_add(input.when, '-1h')}\"", "\"2026-11-21T17:33:42.123Z\"" },
	{ "\"${date_add(input.when, '+90m')}\"", "\"2026-11-21T20:03:42.123Z\"" },
	{ "\"${date_add(input.when, '500ms')}\"", "\"2026-11-21T18:33:42.623Z\"" },
	{ "\"${date_add(input.when, '1.5s')}\"", "\"2026-11-21T18:33:43.623Z\"" },
	{ "\"${date_add(input.when, '250')}\"", "\"2026-11-21T18:33:42.373Z\"" },
	{ "\"${date_add(input.when, -123)}\"", "\"2026-11-21T18:33:42.000Z\"" },
	{ "\"${date_add(input.ms, '1s')}\"", "\"2026-11-21T18:33:43.123Z\"" },
	{ "\"${date_add('2024-02-28', '1d')}\"", "\"2024-02-29T00:00:00.000Z\"" },
	{ "\"${date_add('2023-12-31T23:59:59.999Z', 1)}\"", "\"2024-01-01T00:00:00.000Z\"" },
	{ "\"${date_add('2026-11-21T20:33:42.123+02:00', 0)}\"", "\"2026-11-21T18:33:42.123Z\"" },
	{ "\"${date_diff_ms(date_add(input.when, '21d'), input.when)}\"", "1814400000" },
	{ "\"${date_diff_ms('2026-11-21T18:33:42Z', '2026-11-21T20:33:42.5+02:00')}\"", "-500" },
	{ "\"${date_diff_ms(input.ms, input.when)}\"", "0" },
	{ "\"${date_format(input.when, 'YYYY-MM-DD')}\"", "\"2026-11-21\"" },
	{ "\"${date_format(input.when, 'DD/MM/YYYY HH:mm:ss.SSS')}\"", "\"21/11/2026 18:33:42.123\"" },
	{ "\"${date_format(input.when, 'YYYYMMDDTHHmmss')}\"", "\"20261121T183342\"" },
	{ "\"${date_format(0, 'Day D: DD, Y')}\"", "\"Day D: 01, Y\"" },
	{ "\"${date_format(input.when, '')}\"", "\"\"" },
	{ "\"${date(input.when)}\"", "\"2026-11-21\"" },
	{ "\"${date('2026-11-21T23:30:00-02:00')}\"", "\"2026-11-22\"" },
	{ "\"${date(-1)}\"", "\"1969-12-31\"" },
	{ "\"${parse_date(input.ms)}\"", "\"2026-11-21T18:33:42.123Z\"" },
	{ "\"${parse_date(1795286022123.9)}\"", "\"2026-11-21T18:33:42.123Z\"" },
	{ "\"${parse_date('2026-11-21 20:33:42.123456+02:00')}\"", "\"2026-11-21T18:33:42.123Z\"" },
	{ "\"${parse_date('2026-11-21')}\"", "\"2026-11-21T00:00:00.000Z\"" },
	{ "\"${parse_date(0)}\"", "\"1970-01-01T00:00:00.000Z\"" },
	{ "\"${parse_date(-1)}\"", "\"1969-12-31T23:59:59.999Z\"" },
	{ "\"${date_add(input.when, '21d') > input.when}\"", "true" },
	{ "\"${date_diff_ms(now(), input.when) > 0}\"", "true" },
};

static void assert_eval_json_same(const struct tmpl *t, json_t *ctx, const json_t *value)
{
	char *want = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY), err[256];
	struct strbuf b;

	assert_non_null(want);
	strbuf_init(&b);
	if (tmpl_eval_json(t, ctx, &b, err, sizeof(err)) != 0)
		fail_msg("tmpl_eval_json: %s (want %s)", err, want);
	assert_non_null(b.data);
	assert_int_equal(b.len, strlen(want));
	assert_string_equal(b.data, want);
	strbuf_close(&b);
	free(want);
}

static void test_eval_table(void **state)
{
	json_t *ctx = *state;
	char err[256];
	size_t i, off;

	for (i = 0; i < N(eval_cases); i++) {
		json_t *tv = J(eval_cases[i].tmpl), *got;
		struct tmpl *t = tmpl_compile(tv, err, sizeof(err), &off);
		if (t == NULL)
			fail_msg("case %zu %s: compile: %s", i, eval_cases[i].tmpl, err);
		got = tmpl_eval(t, ctx, err, sizeof(err));
		if (got == NULL)
			fail_msg("case %zu %s: eval: %s", i, eval_cases[i].tmpl, err);
		assert_json_eq(got, eval_cases[i].want);
		assert_eval_json_same(t, ctx, got);
		json_decref(got);
		tmpl_free(t);
		json_decref(tv);
	}
}

/* tmpl_eval_json() writes what json_dumps() makes of tmpl_eval()'s value, byte for byte
 * (request bodies go out as that text). */
static void test_eval_json_bodies(void **state)
{
	static const char *const bodies[] = {
		"{\"studentId\": \"${input.name}\", \"classId\": \"${input.classId}\", \"item\": \"textbook\"}",
		"{\"a\": [1, 2.5, \"x\", null, true, {\"b\": \"${input.obj}\"}], \"c\": {}, \"d\": []}",
		"{\"q\": \"say \\\"${input.name}\\\" \\\\ \\n\\t\\u0001 \\u00e9 \\u20ac\", \"p\": \"${input.price}\"}",
		"{\"s\": \"${steps.pay.response.body}\", \"t\": \"id ${steps.pay.response.body.items[0].id}!\"}",
		"{\"big\": \"${input.bigId}\", \"r\": 0.1, \"e\": 1e300, \"n\": -0.0, \"k \\\"q\\\"\": 1}",
		"\"${input.tags}\"", "\"plain\"", "42", "[\"${input.nothing}\", \"x${input.nothing}y\"]",
		"{\"weird\": \"${env['weird key']}\", \"d\": \"${default(input.missing, 'dflt')}\"}",
	};
	json_t *ctx = *state;
	char err[256];
	size_t i, off;

	for (i = 0; i < N(bodies); i++) {
		json_t *tv = J(bodies[i]), *got;
		struct tmpl *t = tmpl_compile(tv, err, sizeof(err), &off);
		if (t == NULL)
			fail_msg("body %zu %s: compile: %s", i, bodies[i], err);
		got = tmpl_eval(t, ctx, err, sizeof(err));
		if (got == NULL)
			fail_msg("body %zu %s: eval: %s", i, bodies[i], err);
		assert_eval_json_same(t, ctx, got);
		json_decref(got);
		tmpl_free(t);
		json_decref(tv);
	}
}

/* A key may hold a NUL (YAML's "\0" in a flow's body, a fallback value): the body keeps the
 * whole key, as json_dumps() wrote it ("a\u0000b"), whether the object is a constant of the
 * template, written beside an expression, or a value of the context. */
static void test_eval_json_nul_in_keys(void **state)
{
	json_t *ctx = json_deep_copy(*state), *inner = json_object(), *tv, *got;
	struct tmpl *t;
	char err[256];
	size_t off;

	json_object_setn_new(inner, "a\0b", 3, json_integer(1));
	json_object_set(json_object_get(ctx, "input"), "nul", inner);
	tv = json_pack("{s:O, s:s, s:s}", "c", inner, "v", "${input.classId}", "x", "${input.nul}");
	json_object_setn_new(tv, "k\0z", 3, json_string("${input.name}"));
	t = tmpl_compile(tv, err, sizeof(err), &off);
	if (t == NULL)
		fail_msg("compile: %s", err);
	got = tmpl_eval(t, ctx, err, sizeof(err));
	assert_non_null(got);
	assert_eval_json_same(t, ctx, got);
	json_decref(got);
	tmpl_free(t);
	json_decref(tv);
	/* the whole body a constant */
	t = tmpl_compile(inner, err, sizeof(err), &off);
	got = tmpl_eval(t, ctx, err, sizeof(err));
	assert_eval_json_same(t, ctx, got);
	json_decref(got);
	tmpl_free(t);
	json_decref(inner);
	json_decref(ctx);
}

static void test_eval_string(void **state)
{
	static const struct { const char *tmpl, *want; } cases[] = {
		{ "${input.obj}", "{\"k\":\"v\"}" },
		{ "${input.nothing}", "" },
		{ "${input.classId}", "7" },
		{ "n=${input.classId}", "n=7" },
		{ "${input.flag}", "true" },
		{ "const", "const" },
	};
	char err[256], *s;
	size_t i;

	for (i = 0; i < N(cases); i++) {
		struct tmpl *t = tmpl_compile_string(cases[i].tmpl, err, sizeof(err), NULL);
		assert_non_null(t);
		s = tmpl_eval_string(t, *state, err, sizeof(err));
		assert_non_null(s);
		assert_string_equal(s, cases[i].want);
		free(s);
		tmpl_free(t);
	}
}

static void test_functions_time(void **state)
{
	struct tmpl *t = tmpl_compile_string("${now()}", NULL, 0, NULL);
	int64_t before = util_now_ms();
	json_t *v;
	const char *s;

	v = tmpl_eval(t, *state, NULL, 0);
	assert_true(json_is_string(v));
	s = json_string_value(v);
	assert_int_equal(strlen(s), 24);       /* 2026-11-21T18:33:42.123Z */
	assert_int_equal(s[10], 'T');
	assert_int_equal(s[19], '.');
	assert_int_equal(s[23], 'Z');
	json_decref(v);
	tmpl_free(t);

	t = tmpl_compile_string("${now_ms()}", NULL, 0, NULL);
	v = tmpl_eval(t, *state, NULL, 0);
	assert_true(json_is_integer(v));
	assert_true(json_integer_value(v) >= before);
	assert_true(json_integer_value(v) <= util_now_ms());
	json_decref(v);
	tmpl_free(t);
}

static void test_constant(void **state)
{
	json_t *tv = J("{\"a\": [1, \"$${x}\", \"plain\"], \"b\": null}"), *v1, *v2;
	struct tmpl *t = tmpl_compile(tv, NULL, 0, NULL);

	assert_non_null(t);
	assert_true(tmpl_is_constant(t));
	v1 = tmpl_eval(t, *state, NULL, 0);
	v2 = tmpl_eval(t, NULL, NULL, 0);
	assert_ptr_equal(v1, v2);          /* the cached value */
	assert_json_eq(v1, "{\"a\": [1, \"${x}\", \"plain\"], \"b\": null}");
	json_decref(v1);
	json_decref(v2);
	tmpl_free(t);
	json_decref(tv);

	t = tmpl_compile_string("a ${input.name}", NULL, 0, NULL);
	assert_false(tmpl_is_constant(t));
	tmpl_free(t);
}

static const struct {
	const char *tmpl;
	const char *err;
} eval_err_cases[] = {
	{ "${input.classId2}", "input.classId2: no field \"classId2\" in input" },
	{ "${steps.pay.response.body.id}",
	  "steps.pay.response.body.id: no field \"id\" in steps.pay.response.body" },
	{ "x ${steps.pay.response.body.items[3].id} y",
	  "steps.pay.response.body.items[3].id: index 3 out of range in "
	  "steps.pay.response.body.items (length 1)" },
	{ "${input.name.x}", "input.name.x: input.name is a string, not an object" },
	{ "${input.classId[0]}", "input.classId[0]: input.classId is an integer, not an array" },
	{ "${input.nothing.x}", "input.nothing.x: input.nothing is null, not an object" },
	{ "${nope.x}", "nope.x: no \"nope\" in the template context (known: input, saga, steps, env)" },
	{ "${number(input.name)}", "number(): \"Ann\" is not a number" },
	{ "${number(input.obj)}", "number(): cannot convert an object to a number" },
	{ "${integer('abc')}", "integer(): \"abc\" is not a number" },
	{ "${boolean('maybe')}", "boolean(): \"maybe\" is not a boolean (true, false, 1, 0)" },
	{ "${default(number('x'), 1)}", "number(): \"x\" is not a number" },
	{ "${default(input.nothing, input.zz)}", "input.zz: no field \"zz\" in input" },
	{ "${upper(input.zz)}", "input.zz: no field \"zz\" in input" },
	/* operators */
	{ "${input.name < 3}", "input.name < 3: cannot compare a string with an integer (\"<\" takes "
	  "two numbers or two strings; convert with number() or string())" },
	{ "${input.flag >= null}", "input.flag >= null: cannot compare a boolean with null (\">=\" "
	  "takes two numbers or two strings; convert with number() or string())" },
	{ "${input.tags > input.tags}", "input.tags > input.tags: cannot compare an array with an "
	  "array (\">\" takes two numbers or two strings; convert with number() or string())" },
	{ "${input.missing == 1}", "input.missing: no field \"missing\" in input" },
	{ "${1 == input.missing}", "input.missing: no field \"missing\" in input" },
	{ "${1 == 1 && input.missing}", "input.missing: no field \"missing\" in input" },
	{ "${input.name && true}", "input.name && true: the left side of \"&&\" is a string, not "
	  "a boolean (compare it, as in x == 'y', or convert it with boolean())" },
	{ "${false || 1}", "false || 1: the right side of \"||\" is an integer, not a boolean "
	  "(compare it, as in x == 'y', or convert it with boolean())" },
	{ "${!input.name}", "!input.name: the operand of \"!\" is a string, not a boolean "
	  "(compare it, as in x == 'y', or convert it with boolean())" },
	{ "${!input.nothing}", "!input.nothing: the operand of \"!\" is null, not a boolean "
	  "(compare it, as in x == 'y', or convert it with boolean())" },
	{ "${1 in input.name}", "1 in input.name: \"in\" a string needs a string on the left, not "
	  "an integer" },
	{ "${1 in input.obj}", "1 in input.obj: \"in\" an object needs a string on the left, not "
	  "an integer" },
	{ "${'a' in input.classId}", "'a' in input.classId: the right side of \"in\" is an "
	  "integer, not an array, a string or an object" },
	{ "${default(input.name < 1, false)}", "input.name < 1: cannot compare a string with an "
	  "integer (\"<\" takes two numbers or two strings; convert with number() or string())" },
	{ "${[1, input.zz]}", "input.zz: no field \"zz\" in input" },
	/* dates */
	{ "${date_add('nope', '1d')}", "date_add(): \"nope\" is not an RFC 3339 time "
	  "(2026-11-21T18:33:42.123Z) or a date (2026-11-21)" },
	{ "${date_add(input.when, '3 weeks')}", "date_add(): \"3 weeks\" is not a duration (21d, "
	  "-1h, 90m, 1.5s, 500ms)" },
	{ "${date_add(input.when, '--1h')}", "date_add(): \"--1h\" is not a duration (21d, -1h, "
	  "90m, 1.5s, 500ms)" },
	{ "${date_add(input.when, '')}", "date_add(): \"\" is not a duration (21d, -1h, 90m, 1.5s, "
	  "500ms)" },
	{ "${date_add(input.when, true)}", "date_add(): cannot read a duration from a boolean (give "
	  "a string like '21d' or a number of milliseconds)" },
	{ "${date_add(input.when, 1e17)}", "date_add(): duration out of range" },
	{ "${date_add('9999-12-31', '1d')}", "date_add(): the result is outside the years "
	  "0001-9999" },
	{ "${parse_date(input.tags)}", "parse_date(): cannot read a time from an array (give an "
	  "RFC 3339 string or milliseconds since the epoch)" },
	{ "${parse_date(253402300800000)}", "parse_date(): 253402300800000 ms is outside the years "
	  "0001-9999" },
	{ "${parse_date('2026-02-30')}", "parse_date(): \"2026-02-30\" is not an RFC 3339 time "
	  "(2026-11-21T18:33:42.123Z) or a date (2026-11-21)" },
	{ "${date_diff_ms(input.when, null)}", "date_diff_ms(): cannot read a time from null (give "
	  "an RFC 3339 string or milliseconds since the epoch)" },
	{ "${date_format(input.when, 1)}", "date_format(): the pattern is an integer, not a string "
	  "such as 'YYYY-MM-DD'" },
	{ "${date(input.name)}", "date(): \"Ann\" is not an RFC 3339 time (2026-11-21T18:33:42.123Z) "
	  "or a date (2026-11-21)" },
};

static void test_eval_errors(void **state)
{
	char err[256];
	size_t i;

	for (i = 0; i < N(eval_err_cases); i++) {
		struct tmpl *t = tmpl_compile_string(eval_err_cases[i].tmpl, err, sizeof(err), NULL);
		json_t *v;
		char *s;
		if (t == NULL)
			fail_msg("case %zu: compile: %s", i, err);
		err[0] = '\0';
		v = tmpl_eval(t, *state, err, sizeof(err));
		assert_null(v);
		assert_string_equal(err, eval_err_cases[i].err);
		err[0] = '\0';
		s = tmpl_eval_string(t, *state, err, sizeof(err));
		assert_null(s);
		assert_string_equal(err, eval_err_cases[i].err);
		{
			struct strbuf b;

			err[0] = '\0';
			strbuf_init(&b);
			assert_int_equal(tmpl_eval_json(t, *state, &b, err, sizeof(err)), -1);
			assert_string_equal(err, eval_err_cases[i].err);
			strbuf_close(&b);
		}
		tmpl_free(t);
	}
}

static const struct {
	const char *tmpl;
	size_t offset;
	const char *err;      /* prefix of the message */
} compile_err_cases[] = {
	{ "${foo(1)}", 2, "offset 2: unknown function \"foo\" (known: string, number," },
	{ "ab ${ nope() }", 6, "offset 6: unknown function \"nope\"" },
	{ "abc ${input.x", 4, "offset 4: unterminated \"${\" (missing \"}\")" },
	{ "${input.x", 0, "offset 0: unterminated \"${\"" },
	{ "${", 0, "offset 0: unterminated \"${\"" },
	{ "x${concat('a', 'b'", 1, "offset 1: unterminated \"${\"" },
	{ "${}", 2, "offset 2: empty expression" },
	{ "${ 'abc }", 3, "offset 3: unterminated string literal" },
	{ "${default(input.x)}", 2, "offset 2: default() takes 2 arguments, got 1" },
	{ "${now(1)}", 2, "offset 2: now() takes 0 arguments, got 1" },
	{ "${concat()}", 2, "offset 2: concat() takes at least 1 argument, got 0" },
	{ "${input.x y}", 10, "offset 10: expected \"}\" after the expression, found \"y\"" },
	{ "${concat(a, b}", 13, "offset 13: expected \",\" or \")\" in the arguments of concat()" },
	{ "${input.}", 8, "offset 8: expected a field name after \".\"" },
	{ "${input[x]}", 8, "offset 8: expected an index or a quoted key" },
	{ "${input[0}", 7, "offset 7: missing \"]\"" },
	{ "${upper(input.a, )}", 17, "offset 17: unexpected \")\"" },
	{ "${'\\q'}", 3, "offset 3: unknown escape" },
	{ "${'\\ud800x'}", 3, "offset 3: bad \\u escape" },
	{ "${'\\u0000'}", 3, "offset 3: bad \\u escape" },
	{ "${12abc}", 2, "offset 2: bad number literal" },
	{ "${99999999999999999999}", 2, "offset 2: number literal out of range" },
	{ "${((((((((((((((((((((((((((((((((((((upper(1)}", 34,
	  "offset 34: expression nested too deeply" },
	/* operators */
	{ "${input.x == }", 13, "offset 13: expected an operand before \"}\"" },
	{ "${ }", 3, "offset 3: empty expression" },
	{ "${!}", 3, "offset 3: expected an operand before \"}\"" },
	{ "${a in}", 6, "offset 6: expected an operand before \"}\"" },
	{ "${input.x = 1}", 10, "offset 10: \"=\" is not an operator; compare with \"==\"" },
	{ "${a & b}", 4, "offset 4: \"&\" is not an operator; write \"&&\"" },
	{ "${a | b}", 4, "offset 4: \"|\" is not an operator; write \"||\"" },
	{ "${upper(a = b)}", 10, "offset 10: \"=\" is not an operator" },
	{ "${1 < 2 < 3}", 8, "offset 8: comparisons do not chain: write a < b && b < c, or add "
	  "parentheses" },
	{ "${1 == 2 != 3}", 9, "offset 9: comparisons do not chain" },
	{ "${'a' in x in y}", 11, "offset 11: comparisons do not chain" },
	{ "${(1 == 2}", 9, "offset 9: expected \")\" to close the \"(\" at offset 2, found \"}\"" },
	{ "${(1 == 2", 0, "offset 0: unterminated \"${\"" },
	{ "${[1, 2}", 7, "offset 7: expected \",\" or \"]\" in the list" },
	{ "${[1, 2", 0, "offset 0: unterminated \"${\"" },
	{ "${input.x == foo(1)}", 13, "offset 13: unknown function \"foo\"" },
	{ "${input.x ! 1}", 10, "offset 10: expected \"}\" after the expression, found \"!\"" },
	{ "${1 == 1 2}", 9, "offset 9: expected \"}\" after the expression, found \"2\"" },
	{ "${date_add(input.x)}", 2, "offset 2: date_add() takes 2 arguments, got 1" },
	{ "${parse_date()}", 2, "offset 2: parse_date() takes 1 argument, got 0" },
};

static void test_compile_errors(void **state)
{
	char err[256];
	size_t i, off;

	for (i = 0; i < N(compile_err_cases); i++) {
		off = 999;
		struct tmpl *t = tmpl_compile_string(compile_err_cases[i].tmpl, err, sizeof(err), &off);
		if (t != NULL)
			fail_msg("case %zu %s: compiled", i, compile_err_cases[i].tmpl);
		if (strncmp(err, compile_err_cases[i].err, strlen(compile_err_cases[i].err)) != 0)
			fail_msg("case %zu %s: got \"%s\", want prefix \"%s\"", i,
				 compile_err_cases[i].tmpl, err, compile_err_cases[i].err);
		assert_int_equal(off, compile_err_cases[i].offset);
	}
}

static void test_compile_deep_nesting(void **state)
{
	char tmpl[512], err[256];
	int i, n = 0;
	size_t off;

	n += sprintf(tmpl + n, "${");
	for (i = 0; i < 40; i++)
		n += sprintf(tmpl + n, "upper(");
	n += sprintf(tmpl + n, "'x'");
	for (i = 0; i < 40; i++)
		n += sprintf(tmpl + n, ")");
	sprintf(tmpl + n, "}");
	assert_null(tmpl_compile_string(tmpl, err, sizeof(err), &off));
	assert_non_null(strstr(err, "nested too deeply"));

	/* "!" and lists count too; 32 levels still compile */
	n = sprintf(tmpl, "${");
	for (i = 0; i < 40; i++)
		n += sprintf(tmpl + n, "!");
	sprintf(tmpl + n, "true}");
	assert_null(tmpl_compile_string(tmpl, err, sizeof(err), &off));
	assert_string_equal(err, "offset 34: expression nested too deeply");
	n = sprintf(tmpl, "${");
	for (i = 0; i < 40; i++)
		n += sprintf(tmpl + n, "[");
	assert_null(tmpl_compile_string(tmpl, err, sizeof(err), &off));
	assert_string_equal(err, "offset 34: expression nested too deeply");
	n = sprintf(tmpl, "${");
	for (i = 0; i < 32; i++)
		n += sprintf(tmpl + n, "(");
	n += sprintf(tmpl + n, "1 == 1");
	for (i = 0; i < 32; i++)
		n += sprintf(tmpl + n, ")");
	sprintf(tmpl + n, "}");
	struct tmpl *t = tmpl_compile_string(tmpl, err, sizeof(err), &off);
	assert_non_null(t);
	json_t *v = tmpl_eval(t, NULL, err, sizeof(err));
	assert_true(json_is_true(v));
	json_decref(v);
	tmpl_free(t);
}

static void test_compile_error_value(void **state)
{
	json_t *tv = J("{\"a\": \"ok ${input.x}\", \"b\": [1, \"bad ${zap(1)}\"]}");
	const json_t *where = NULL;
	char err[256];
	size_t off;

	assert_null(tmpl_compile_ex(tv, err, sizeof(err), &off, &where));
	assert_ptr_equal(where, json_array_get(json_object_get(tv, "b"), 1));
	assert_int_equal(off, 6);
	json_decref(tv);
}

/* --- refs and paths ------------------------------------------------------------------------ */

static void collect_ref(const struct tmpl_ref *ref, void *arg)
{
	struct strbuf *b = arg;
	size_t i;

	for (i = 0; i < ref->n_segs; i++)
		strbuf_addf(b, "%s%s", i ? "." : "", ref->segs[i]);
	strbuf_addf(b, "@%zu/%zu;", ref->offset, ref->path_offset);
	assert_non_null(ref->string);
}

static void test_visit_refs(void **state)
{
	json_t *tv = J("{\"a\": \"${input.classId}\","
		       " \"b\": \"x ${default(steps.pay.response.body.id, input.name)} ${env['weird key']}\","
		       " \"c\": [\"${steps.pay.response.body.items[0].id}\", 5, \"$${input.no}\"]}");
	struct tmpl *t = tmpl_compile(tv, NULL, 0, NULL);
	struct strbuf b;

	assert_non_null(t);
	strbuf_init(&b);
	tmpl_visit_refs(t, collect_ref, &b);
	assert_string_equal(b.data,
			    "input.classId@0/2;"
			    "steps.pay.response.body.id@2/12;"
			    "input.name@2/40;"
			    "env.weird key@53/55;"
			    "steps.pay.response.body.items.[0].id@0/2;");
	strbuf_close(&b);
	tmpl_free(t);
	json_decref(tv);

	/* operands of operators and list items are visited, in source order */
	t = tmpl_compile_string("${input.a == steps.pay.response.body.id && !(input.b in "
				"[input.c, 'x'])}", NULL, 0, NULL);
	assert_non_null(t);
	strbuf_init(&b);
	tmpl_visit_refs(t, collect_ref, &b);
	assert_string_equal(b.data,
			    "input.a@0/2;"
			    "steps.pay.response.body.id@0/13;"
			    "input.b@0/45;"
			    "input.c@0/57;");
	strbuf_close(&b);
	tmpl_free(t);
}

static void test_lookup(void **state)
{
	json_t *v = J("{\"body\": {\"items\": [{\"id\": 1}, {\"id\": 2}], \"a\": {\"b\": null},"
		      " \"x.y\": 3}}");
	char **segs;
	size_t n;

	assert_int_equal(json_integer_value(expr_lookup(v, "body.items[1].id")), 2);
	assert_int_equal(json_integer_value(expr_lookup(v, "body['x.y']")), 3);
	assert_true(json_is_null(expr_lookup(v, "body.a.b")));
	assert_true(json_is_array(expr_lookup(v, "body.items")));
	assert_null(expr_lookup(v, "body.items[2]"));
	assert_null(expr_lookup(v, "body.a.c"));
	assert_null(expr_lookup(v, "body.items.id"));
	assert_null(expr_lookup(v, "body..a"));
	assert_null(expr_lookup(v, "body.a b"));
	assert_null(expr_lookup(v, ""));
	assert_null(expr_lookup(v, "[0]"));

	segs = expr_path_split("body.items[0]['x.y']", &n);
	assert_non_null(segs);
	assert_int_equal(n, 4);
	assert_string_equal(segs[0], "body");
	assert_string_equal(segs[1], "items");
	assert_string_equal(segs[2], "[0]");
	assert_string_equal(segs[3], "x.y");
	assert_null(segs[4]);
	expr_path_free(segs);
	assert_null(expr_path_split("a.", NULL));
	json_decref(v);
}

/* --- flow_judge ---------------------------------------------------------------------------- */

static void test_judge(void **state)
{
	int ok2[] = { 200, 201 };
	char *paths[] = { "payStaus", "a.b" };
	json_t *eq[2];
	struct flow_request any = { 0 }, st = { .ok_status = ok2, .n_ok_status = 2 };
	struct flow_request beq = { .has_body_equals = true };
	struct flow_request fields = { .field_paths = paths, .field_equals = eq, .n_fields = 2 };
	json_t *b;
	char err[256];
	static const struct {
		int which;                /* 0 any, 1 status, 2 body_equals, 3 fields */
		int status;
		const char *body;         /* NULL = not JSON */
		bool ok;
		const char *err;
	} cases[] = {
		{ 0, 200, NULL, true, NULL },
		{ 0, 299, "{}", true, NULL },
		{ 0, 500, "{}", false, "status 500 not in 200-299" },
		{ 0, 199, NULL, false, "status 199 not in 200-299" },
		{ 1, 201, NULL, true, NULL },
		{ 1, 404, NULL, false, "status 404 not in [200, 201]" },
		{ 1, 204, NULL, false, "status 204 not in [200, 201]" },
		{ 2, 200, "true", true, NULL },
		{ 2, 200, "false", false, "body is false, expected true" },
		{ 2, 200, NULL, false, "response body is not JSON" },
		{ 2, 500, "true", false, "status 500 not in 200-299" },
		{ 3, 200, "{\"payStaus\": \"PaymentApproved\", \"a\": {\"b\": 1}}", true, NULL },
		{ 3, 200, "{\"payStaus\": \"X\", \"a\": {\"b\": 1}}", false,
		  "body.payStaus is \"X\", expected \"PaymentApproved\"" },
		{ 3, 200, "{\"a\": {\"b\": 1}}", false,
		  "body.payStaus is missing, expected \"PaymentApproved\"" },
		{ 3, 200, "{\"payStaus\": \"PaymentApproved\", \"a\": {\"b\": 2.0}}", false,
		  "body.a.b is 2.0, expected 1" },
		{ 3, 200, NULL, false, "response body is not JSON" },
	};
	const struct flow_request *reqs[] = { &any, &st, &beq, &fields };
	size_t i;

	beq.body_equals = json_true();
	eq[0] = json_string("PaymentApproved");
	eq[1] = json_integer(1);
	for (i = 0; i < N(cases); i++) {
		b = cases[i].body ? J(cases[i].body) : NULL;
		err[0] = '\0';
		if (flow_judge(reqs[cases[i].which], cases[i].status, b, err, sizeof(err)) != cases[i].ok)
			fail_msg("case %zu: judged %s (%s)", i, cases[i].ok ? "false" : "true", err);
		if (!cases[i].ok)
			assert_string_equal(err, cases[i].err);
		json_decref(b);
	}
	json_decref(eq[0]);
	json_decref(eq[1]);
}

/* --- flow_keep ----------------------------------------------------------------------------- */

static void test_keep(void **state)
{
	static const struct {
		const char *keep[4];
		const char *want;
	} cases[] = {
		{ { "body.id" }, "{\"status\": 201, \"body\": {\"id\": 5}}" },
		{ { "body.id", "body.meta.x", "body.missing", "body.items[0].id" },
		  "{\"status\": 201, \"body\": {\"id\": 5, \"meta\": {\"x\": 1},"
		  " \"items\": [{\"id\": 1, \"z\": 2}]}}" },
		{ { "body.meta.x", "body.meta" },
		  "{\"status\": 201, \"body\": {\"meta\": {\"x\": 1, \"y\": 2}}}" },
		{ { "body", "body.id" },
		  "{\"status\": 201, \"body\": {\"id\": 5, \"name\": \"n\", \"meta\": {\"x\": 1, \"y\": 2},"
		  " \"items\": [{\"id\": 1, \"z\": 2}]}}" },
		{ { "body.name.x" }, "{\"status\": 201}" },
		{ { "body.meta.zz", "body.id[0]" }, "{\"status\": 201}" },
		{ { "body.items[7].id" }, "{\"status\": 201, \"body\": {\"items\": [{\"id\": 1, \"z\": 2}]}}" },
		{ { "nothing" }, "{\"status\": 201}" },
	};
	json_t *resp = J("{\"status\": 201, \"body\": {\"id\": 5, \"name\": \"n\","
			 " \"meta\": {\"x\": 1, \"y\": 2}, \"items\": [{\"id\": 1, \"z\": 2}]}}");
	json_t *copy = json_deep_copy(resp), *got;
	struct flow_step st = { 0 };
	size_t i, n;

	got = flow_keep(&st, resp);          /* keep NULL: everything */
	assert_ptr_equal(got, resp);
	json_decref(got);
	for (i = 0; i < N(cases); i++) {
		for (n = 0; n < 4 && cases[i].keep[n] != NULL; n++)
			;
		st.keep = (char **)cases[i].keep;
		st.n_keep = n;
		got = flow_keep(&st, resp);
		assert_json_eq(got, cases[i].want);
		json_decref(got);
	}
	assert_true(json_equal(resp, copy));  /* the response was not changed */
	json_decref(copy);
	json_decref(resp);
}

/* --- flow_check_input ---------------------------------------------------------------------- */

static void test_check_input(void **state)
{
	struct flow_input_field in[] = {
		{ "studentName", INPUT_STRING, true, NULL, false },
		{ "courseId", INPUT_INTEGER, false, NULL, false },
		{ "price", INPUT_NUMBER, false, NULL, false },
		{ "extra", INPUT_ANY, false, NULL, false },
		{ "opts", INPUT_OBJECT, false, NULL, false },
	};
	struct flow f = { .inputs = in, .n_inputs = N(in) };
	static const struct {
		bool strict;
		const char *input;
		int rc;
		const char *want;     /* the completed input, or the error */
	} cases[] = {
		{ false, "{\"studentName\": \"a\"}", 0,
		  "{\"studentName\": \"a\", \"courseId\": 1, \"opts\": {\"x\": [1]}}" },
		{ false, "{\"studentName\": \"a\", \"courseId\": 3, \"price\": 2, \"extra\": [null]}", 0,
		  "{\"studentName\": \"a\", \"courseId\": 3, \"price\": 2, \"extra\": [null],"
		  " \"opts\": {\"x\": [1]}}" },
		{ false, "{\"studentName\": \"a\", \"courseId\": null, \"price\": 2.5, \"zz\": 1}", 0,
		  "{\"studentName\": \"a\", \"courseId\": 1, \"price\": 2.5, \"zz\": 1,"
		  " \"opts\": {\"x\": [1]}}" },
		{ false, "{}", SAGAD_EINPUT, "input.studentName: required field missing" },
		{ false, "{\"studentName\": null}", SAGAD_EINPUT, "input.studentName: required field is null" },
		{ false, "{\"studentName\": 5, \"courseId\": \"x\", \"price\": true}", SAGAD_EINPUT,
		  "input.studentName: expected string, got integer; "
		  "input.courseId: expected integer, got string; "
		  "input.price: expected number, got boolean" },
		{ false, "{\"studentName\": \"a\", \"courseId\": 1.5}", SAGAD_EINPUT,
		  "input.courseId: expected integer, got number" },
		{ true, "{\"studentName\": \"a\", \"foo\": 1}", SAGAD_EINPUT,
		  "input.foo: unknown field (declared: studentName, courseId, price, extra, opts)" },
		{ true, "{\"foo\": 1}", SAGAD_EINPUT,
		  "input.studentName: required field missing; "
		  "input.foo: unknown field (declared: studentName, courseId, price, extra, opts)" },
		{ false, "[1]", SAGAD_EINPUT, "input must be a JSON object" },
		{ false, "\"x\"", SAGAD_EINPUT, "input must be a JSON object" },
	};
	char err[512];
	size_t i;

	in[1].default_value = json_integer(1);
	in[4].default_value = J("{\"x\": [1]}");
	for (i = 0; i < N(cases); i++) {
		json_t *input = J(cases[i].input), *orig = input;
		int rc;
		f.input_closed = cases[i].strict;
		err[0] = '\0';
		rc = flow_check_input(&f, &input, err, sizeof(err));
		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d (%s)", i, rc, err);
		if (rc == 0) {
			assert_json_eq(input, cases[i].want);
			if (json_object_get(input, "opts") != NULL && i == 0)
				assert_ptr_not_equal(json_object_get(input, "opts"), in[4].default_value);
		} else {
			assert_ptr_equal(input, orig);
			assert_string_equal(err, cases[i].want);
		}
		json_decref(input);
	}
	json_decref(in[1].default_value);
	json_decref(in[4].default_value);
}

/* --- flow_render_request ------------------------------------------------------------------- */

static struct tmpl *T(const char *s)
{
	char err[256];
	struct tmpl *t = tmpl_compile_string(s, err, sizeof(err), NULL);

	if (t == NULL)
		fail_msg("template %s: %s", s, err);
	return t;
}

static struct tmpl *TJ(const char *json)
{
	json_t *v = J(json);
	struct tmpl *t = tmpl_compile(v, NULL, 0, NULL);

	json_decref(v);
	assert_non_null(t);
	return t;
}

static void test_render_request(void **state)
{
	struct flow_header ph[] = { { "X-Caller", NULL, false } };
	struct participant p = { .name = "class", .base_url = "http://h:1", .headers = ph,
				 .n_headers = 1 };
	struct flow_header q[] = { { "q", NULL, false }, { "page no", NULL, false } };
	struct flow_header h[] = { { "X-Student", NULL, false } };
	struct flow_request req = { .method = "POST", .query = q, .n_query = 2, .headers = h,
				    .n_headers = 1 };
	json_t *ctx = J("{\"input\": {\"name\": \"Ann Lee\", \"q\": \"a&b=c/d \\u00e9~\","
			" \"classId\": 7, \"evil\": \"x\\r\\nEvil: 1\", \"rel\": \"classes\"}}");
	struct flow_rendered r;
	char err[256];
	int rc;

	ph[0].value = T("sagad");
	q[0].value = T("${input.q}");
	q[1].value = T("${input.classId}");
	h[0].value = T("${input.name}");
	req.path = T("/classes/${input.name}");
	req.body = TJ("{\"n\": \"${input.classId}\", \"s\": \"${input.name}\"}");

	rc = flow_render_request(&p, &req, ctx, &r, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(r.method, "POST");
	assert_string_equal(r.url, "http://h:1/classes/Ann%20Lee?q=a%26b%3Dc%2Fd%20%C3%A9~&page%20no=7");
	assert_int_equal(r.n_headers, 3);
	assert_string_equal(r.headers[0], "X-Caller: sagad");
	assert_string_equal(r.headers[1], "X-Student: Ann Lee");
	assert_string_equal(r.headers[2], "Content-Type: application/json");
	assert_string_equal(r.body, "{\"n\":7,\"s\":\"Ann Lee\"}");
	assert_int_equal(r.body_len, strlen(r.body));
	flow_rendered_close(&r);

	/* CR/LF in a rendered header value */
	tmpl_free(h[0].value);
	h[0].value = T("${input.evil}");
	rc = flow_render_request(&p, &req, ctx, &r, err, sizeof(err));
	assert_int_equal(rc, SAGAD_ETEMPLATE);
	assert_string_equal(err, "header X-Student: value contains CR or LF");
	assert_null(r.url);

	/* a header that sets the content type itself; no query; path with '?' */
	tmpl_free(h[0].value);
	h[0].value = T("text/plain");
	h[0].name = "content-TYPE";
	req.n_query = 1;
	tmpl_free(req.path);
	req.path = T("/x?a=1");
	rc = flow_render_request(&p, &req, ctx, &r, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(r.url, "http://h:1/x?a=1&q=a%26b%3Dc%2Fd%20%C3%A9~");
	assert_int_equal(r.n_headers, 2);
	assert_string_equal(r.headers[1], "content-TYPE: text/plain");
	flow_rendered_close(&r);

	/* every byte a path escapes, at the start, in the middle and at the end */
	tmpl_free(req.path);
	req.path = T("/e/\"a<b>c\\\\d^e`f{g|h}i\x7fj\x01 \u00e9/%41?x=1#");
	req.n_query = 0;
	rc = flow_render_request(&p, &req, ctx, &r, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(r.url, "http://h:1/e/%22a%3Cb%3Ec%5C%5Cd%5Ee%60f%7Bg%7Ch%7Di%7Fj%01%20%C3%A9"
			    "/%41?x=1#");
	flow_rendered_close(&r);
	tmpl_free(req.path);
	req.path = T("/z ");
	rc = flow_render_request(&p, &req, ctx, &r, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(r.url, "http://h:1/z%20");
	flow_rendered_close(&r);
	req.n_query = 1;
	tmpl_free(req.path);
	req.path = T("/x?a=1");

	/* no body: no content type */
	tmpl_free(req.body);
	req.body = NULL;
	req.n_query = 0;
	req.n_headers = 0;
	rc = flow_render_request(&p, &req, ctx, &r, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_null(r.body);
	assert_int_equal(r.body_len, 0);
	assert_int_equal(r.n_headers, 1);
	assert_string_equal(r.url, "http://h:1/x?a=1");
	flow_rendered_close(&r);

	/* the path must start with '/' */
	tmpl_free(req.path);
	req.path = T("${input.rel}");
	assert_int_equal(flow_render_request(&p, &req, ctx, &r, err, sizeof(err)), SAGAD_ETEMPLATE);
	assert_string_equal(err, "path: \"classes\" does not start with \"/\"");

	/* missing data names the path */
	tmpl_free(req.path);
	req.path = T("/c/${input.zz}");
	assert_int_equal(flow_render_request(&p, &req, ctx, &r, err, sizeof(err)), SAGAD_ETEMPLATE);
	assert_string_equal(err, "path: input.zz: no field \"zz\" in input");
	req.n_query = 2;
	tmpl_free(req.path);
	req.path = T("/c");
	tmpl_free(q[1].value);
	q[1].value = T("${input.page}");
	assert_int_equal(flow_render_request(&p, &req, ctx, &r, err, sizeof(err)), SAGAD_ETEMPLATE);
	assert_string_equal(err, "query page no: input.page: no field \"page\" in input");

	tmpl_free(req.path);
	tmpl_free(ph[0].value);
	tmpl_free(q[0].value);
	tmpl_free(q[1].value);
	tmpl_free(h[0].value);
	json_decref(ctx);
}

/* --- Kafka ---------------------------------------------------------------------------------- */

static void test_render_message(void **state)
{
	struct flow_header ph[] = { { "source", NULL, false } };
	struct participant p = { .name = "delivery", .kind = PARTICIPANT_KAFKA,
				 .topic = "delivery-commands", .headers = ph, .n_headers = 1 };
	struct flow_header h[] = { { "eventType", NULL, false } };
	struct flow_request req = { .headers = h, .n_headers = 1 };
	json_t *ctx = J("{\"input\": {\"applyId\": 42, \"evil\": \"a\\nb\"}}");
	struct flow_message m;
	char err[256];

	ph[0].value = T("sagad");
	h[0].value = T("DeliveryRequested");
	req.key = T("${input.applyId}");
	req.body = TJ("{\"eventType\": \"DeliveryRequested\", \"applyId\": \"${input.applyId}\"}");
	assert_int_equal(flow_render_message(&p, &req, ctx, &m, err, sizeof(err)), 0);
	assert_string_equal(m.topic, "delivery-commands");       /* the participant's */
	assert_string_equal(m.key, "42");                         /* rendered to a string */
	assert_int_equal(m.n_headers, 2);
	assert_string_equal(m.headers[0], "source: sagad");       /* participant defaults first */
	assert_string_equal(m.headers[1], "eventType: DeliveryRequested");
	assert_string_equal(m.value, "{\"eventType\":\"DeliveryRequested\",\"applyId\":42}");
	assert_int_equal(m.value_len, strlen(m.value));
	flow_message_close(&m);
	assert_null(m.topic);

	/* the request's topic wins; no key, no body */
	req.topic = "other";
	tmpl_free(req.key);
	req.key = NULL;
	tmpl_free(req.body);
	req.body = NULL;
	assert_int_equal(flow_render_message(&p, &req, ctx, &m, err, sizeof(err)), 0);
	assert_string_equal(m.topic, "other");
	assert_null(m.key);
	assert_null(m.value);
	assert_int_equal(m.value_len, 0);
	flow_message_close(&m);

	/* CR/LF in a header, missing data, no topic at all */
	tmpl_free(h[0].value);
	h[0].value = T("${input.evil}");
	assert_int_equal(flow_render_message(&p, &req, ctx, &m, err, sizeof(err)), SAGAD_ETEMPLATE);
	assert_string_equal(err, "header eventType: value contains CR or LF");
	assert_null(m.topic);
	assert_null(m.headers);
	req.n_headers = 0;
	req.key = T("${input.nope}");
	assert_int_equal(flow_render_message(&p, &req, ctx, &m, err, sizeof(err)), SAGAD_ETEMPLATE);
	assert_string_equal(err, "key: input.nope: no field \"nope\" in input");
	req.topic = NULL;
	p.topic = NULL;
	assert_int_equal(flow_render_message(&p, &req, ctx, &m, err, sizeof(err)), SAGAD_ETEMPLATE);
	assert_string_equal(err, "no topic: set topic on the request or on participant \"delivery\"");

	tmpl_free(req.key);
	tmpl_free(ph[0].value);
	tmpl_free(h[0].value);
	json_decref(ctx);
}

static void test_correlation(void **state)
{
	struct flow_reply by_header = { .correlate_path = "header:correlation-id" };
	struct flow_reply by_body = { .correlate_path = "paidId" };
	struct flow_reply nested = { .correlate_path = "data.ids[1]" };
	json_t *ctx = J("{\"steps\": {\"pay\": {\"response\": {\"body\": {\"id\": 9007199254740993}}}}}");
	json_t *msg = J("{\"topic\": \"t\", \"headers\": {\"Correlation-Id\": \"01S:ship:action\"},"
			" \"body\": {\"paidId\": 9007199254740993, \"data\": {\"ids\": [1, true]},"
			" \"obj\": {}}}");
	json_t *raw = J("{\"headers\": {}, \"body\": \"not json\"}");
	const char *got, *again;
	char err[256], *want;

	/* the default: the idempotency key the command carried */
	want = flow_render_correlation(&by_header, ctx, "01S:ship:action", err, sizeof(err));
	assert_string_equal(want, "01S:ship:action");
	got = flow_reply_correlation(&by_header, msg);         /* header names match in any case */
	assert_non_null(got);
	assert_string_equal(got, want);
	free(want);
	assert_null(flow_render_correlation(&by_header, ctx, NULL, err, sizeof(err)));

	/* a business field: a Long id matches its string form */
	by_body.correlate_value = T("${steps.pay.response.body.id}");
	want = flow_render_correlation(&by_body, ctx, "ignored", err, sizeof(err));
	assert_string_equal(want, "9007199254740993");
	got = flow_reply_correlation(&by_body, msg);
	assert_string_equal(got, want);
	again = flow_reply_correlation(&by_body, msg);         /* the first result stays valid */
	assert_ptr_equal(again, got);
	assert_string_equal(got, "9007199254740993");
	free(want);
	assert_string_equal(flow_reply_correlation(&nested, msg), "true");
	nested.correlate_path = "obj";
	assert_null(flow_reply_correlation(&nested, msg));     /* not a scalar */
	assert_null(flow_reply_correlation(&by_body, raw));    /* body not JSON */
	assert_null(flow_reply_correlation(&by_header, raw));
	tmpl_free(by_body.correlate_value);
	by_body.correlate_value = T("${steps.ship.response.body.id}");
	assert_null(flow_render_correlation(&by_body, ctx, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "correlate.value: steps.ship"));
	tmpl_free(by_body.correlate_value);
	json_decref(raw);
	json_decref(msg);
	json_decref(ctx);
}

static void test_judge_reply(void **state)
{
	char *ok[] = { "DeliveryStarted" }, *bad[] = { "DeliveryFailed" };
	char *paths[] = { "deliveryStatus", "header:version" };
	json_t *eq[2];
	struct flow_reply typed = { .type_path = "eventType", .success_types = ok,
				    .n_success_types = 1, .failure_types = bad, .n_failure_types = 1,
				    .field_paths = paths, .field_equals = eq, .n_fields = 1 };
	struct flow_reply by_header = { .type_path = "header:type", .success_types = ok,
					.n_success_types = 1 };
	struct flow_reply fields_only = { .field_paths = paths, .field_equals = eq, .n_fields = 2 };
	struct flow_reply any = { 0 };
	static const struct {
		int which;              /* 0 typed, 1 by_header, 2 fields_only, 3 any */
		const char *msg;
		enum reply_verdict v;
		const char *err;
	} cases[] = {
		{ 0, "{\"body\": {\"eventType\": \"DeliveryStarted\", \"deliveryStatus\": \"DeliveryStart\"}}",
		  REPLY_SUCCESS, NULL },
		{ 0, "{\"body\": {\"eventType\": \"DeliveryStarted\", \"deliveryStatus\": \"Hold\"}}",
		  REPLY_FAILURE, "body.deliveryStatus is \"Hold\", expected \"DeliveryStart\"" },
		{ 0, "{\"body\": {\"eventType\": \"DeliveryStarted\"}}",
		  REPLY_FAILURE, "body.deliveryStatus is missing, expected \"DeliveryStart\"" },
		{ 0, "{\"body\": {\"eventType\": \"DeliveryFailed\"}}", REPLY_FAILURE, "type DeliveryFailed" },
		{ 0, "{\"body\": {\"eventType\": \"DeliveryQueued\"}}", REPLY_NOT_MINE, NULL },
		{ 0, "{\"body\": {\"other\": 1}}", REPLY_NOT_MINE, NULL },
		{ 0, "{\"body\": \"raw text\"}", REPLY_NOT_MINE, NULL },
		{ 1, "{\"headers\": {\"type\": \"DeliveryStarted\"}, \"body\": null}", REPLY_SUCCESS, NULL },
		{ 1, "{\"headers\": {}, \"body\": {\"type\": \"DeliveryStarted\"}}", REPLY_NOT_MINE, NULL },
		{ 2, "{\"headers\": {\"version\": \"2\"}, \"body\": {\"deliveryStatus\": \"DeliveryStart\"}}",
		  REPLY_SUCCESS, NULL },
		{ 2, "{\"headers\": {\"version\": \"3\"}, \"body\": {\"deliveryStatus\": \"DeliveryStart\"}}",
		  REPLY_FAILURE, "header version is \"3\", expected 2" },
		{ 3, "{\"body\": 1}", REPLY_SUCCESS, NULL },
	};
	const struct flow_reply *rs[] = { &typed, &by_header, &fields_only, &any };
	enum reply_verdict v;
	char err[256];
	json_t *msg;
	size_t i;

	eq[0] = json_string("DeliveryStart");
	eq[1] = json_integer(2);
	for (i = 0; i < N(cases); i++) {
		msg = J(cases[i].msg);
		err[0] = '\0';
		v = flow_judge_reply(rs[cases[i].which], msg, err, sizeof(err));
		if (v != cases[i].v)
			fail_msg("case %zu: verdict %d, want %d (%s)", i, v, cases[i].v, err);
		if (cases[i].err != NULL)
			assert_string_equal(err, cases[i].err);
		json_decref(msg);
	}
	json_decref(eq[0]);
	json_decref(eq[1]);
}

static void test_trigger(void **state)
{
	char *types[] = { "ClassApplied" }, *paths[] = { "source" };
	json_t *eq[] = { json_string("web") };
	struct flow_trigger t = { .topic = "class-events", .type_path = "eventType", .types = types,
				  .n_types = 1, .field_paths = paths, .field_equals = eq, .n_fields = 1 };
	struct flow_trigger plain = { .topic = "class-events" };
	json_t *msg = J("{\"topic\": \"class-events\", \"partition\": 2, \"offset\": 42, \"key\": \"k1\","
			" \"headers\": {\"h\": \"v\"}, \"body\": {\"eventType\": \"ClassApplied\","
			" \"source\": \"web\", \"id\": 7, \"studentName\": \"Ann\"}}");
	json_t *in, *other;
	char err[256];

	assert_true(flow_trigger_matches(&t, msg));
	assert_true(flow_trigger_matches(&plain, msg));
	other = J("{\"topic\": \"class-events\", \"body\": {\"eventType\": \"ClassCanceled\", \"source\": \"web\"}}");
	assert_false(flow_trigger_matches(&t, other));        /* another type */
	assert_true(flow_trigger_matches(&plain, other));
	json_decref(other);
	other = J("{\"topic\": \"class-events\", \"body\": {\"eventType\": \"ClassApplied\", \"source\": \"app\"}}");
	assert_false(flow_trigger_matches(&t, other));        /* a filter does not hold */
	json_decref(other);
	other = J("{\"topic\": \"elsewhere\", \"body\": {}}");
	assert_false(flow_trigger_matches(&plain, other));    /* another topic */
	json_decref(other);

	/* the default input is the event body itself */
	in = flow_trigger_input(&plain, msg, err, sizeof(err));
	assert_ptr_equal(in, json_object_get(msg, "body"));
	json_decref(in);
	other = J("{\"topic\": \"class-events\", \"body\": \"text\"}");
	assert_null(flow_trigger_input(&plain, other, err, sizeof(err)));
	assert_string_equal(err, "the event body is not a JSON object");

	/* a template over event, headers and kafka */
	t.input = TJ("{\"studentName\": \"${event.studentName}\", \"applyId\": \"${string(event.id)}\","
		     " \"h\": \"${headers.h}\", \"at\": \"${kafka.topic}/${kafka.partition}@${kafka.offset}\","
		     " \"key\": \"${kafka.key}\"}");
	in = flow_trigger_input(&t, msg, err, sizeof(err));
	assert_json_eq(in, "{\"studentName\": \"Ann\", \"applyId\": \"7\", \"h\": \"v\","
		       " \"at\": \"class-events/2@42\", \"key\": \"k1\"}");
	json_decref(in);
	in = flow_trigger_input(&t, other, err, sizeof(err));  /* no such field: an error */
	assert_null(in);
	assert_non_null(strstr(err, "event.studentName"));
	tmpl_free(t.input);
	t.input = T("${event.id}");
	assert_null(flow_trigger_input(&t, msg, err, sizeof(err)));
	assert_string_equal(err, "the trigger's input is not a JSON object (got integer)");
	tmpl_free(t.input);
	json_decref(other);
	json_decref(msg);
	json_decref(eq[0]);
}

/* A Kafka step's response has no status; keep works on its parts, and the type stays. */
static void test_keep_kafka(void **state)
{
	char *keep[] = { "body.id", "headers" };
	struct flow_step st = { .keep = keep, .n_keep = 2 };
	json_t *resp = J("{\"type\": \"PaymentApproved\", \"body\": {\"id\": 5, \"big\": [1, 2]},"
			 " \"headers\": {\"correlation-id\": \"c\"}, \"topic\": \"t\", \"partition\": 0,"
			 " \"offset\": 3}");
	json_t *got = flow_keep(&st, resp);

	assert_json_eq(got, "{\"type\": \"PaymentApproved\", \"body\": {\"id\": 5},"
		       " \"headers\": {\"correlation-id\": \"c\"}}");
	json_decref(got);
	json_decref(resp);
}

/* --- output and sub-flow input ------------------------------------------------------------- */

static void test_output(void **state)
{
	struct flow_step steps[] = { { .name = "apply" }, { .name = "pay" }, { .name = "later" } };
	struct flow f = { .steps = steps, .n_steps = 3 };
	json_t *ctx = J("{\"input\": {}, \"steps\": {\"pay\": {\"response\": {\"status\": 200}},"
			" \"apply\": {\"response\": {\"status\": 201, \"body\": {\"id\": 4}}}}}");
	json_t *empty = J("{\"input\": {}}"), *v;
	char err[256];

	v = flow_render_output(&f, ctx, err, sizeof(err));
	assert_json_eq(v, "{\"apply\": {\"status\": 201, \"body\": {\"id\": 4}},"
		       " \"pay\": {\"status\": 200}}");
	assert_string_equal(json_object_iter_key(json_object_iter(v)), "apply");
	json_decref(v);
	v = flow_render_output(&f, empty, err, sizeof(err));
	assert_json_eq(v, "{}");
	json_decref(v);

	f.output = TJ("{\"applyId\": \"${steps.apply.response.body.id}\"}");
	v = flow_render_output(&f, ctx, err, sizeof(err));
	assert_json_eq(v, "{\"applyId\": 4}");
	json_decref(v);
	assert_null(flow_render_output(&f, empty, err, sizeof(err)));
	tmpl_free(f.output);

	v = flow_render_subflow_input(&steps[0], ctx, err, sizeof(err));
	assert_json_eq(v, "{}");
	json_decref(v);
	steps[1].subflow_input = TJ("{\"applyId\": \"${string(steps.apply.response.body.id)}\"}");
	v = flow_render_subflow_input(&steps[1], ctx, err, sizeof(err));
	assert_json_eq(v, "{\"applyId\": \"4\"}");
	json_decref(v);
	tmpl_free(steps[1].subflow_input);
	steps[1].subflow_input = T("${steps.apply.response.body.id}");
	assert_null(flow_render_subflow_input(&steps[1], ctx, err, sizeof(err)));
	assert_string_equal(err, "step \"pay\": sub-flow input must be an object, got integer");
	tmpl_free(steps[1].subflow_input);
	json_decref(ctx);
	json_decref(empty);
}

/* --- backoff ------------------------------------------------------------------------------- */

static void test_backoff(void **state)
{
	struct retry_policy rp = { .max_attempts = 10, .initial_backoff_ms = 100, .multiplier = 2,
				   .max_backoff_ms = 1000, .jitter = 0, .on = RETRY_ON_DEFAULT };
	static const struct { int attempt; int64_t retry_after, want; } cases[] = {
		{ 1, -1, 0 }, { 2, -1, 100 }, { 3, -1, 200 }, { 4, -1, 400 }, { 5, -1, 800 },
		{ 6, -1, 1000 }, { 50, -1, 1000 }, { 5000, -1, 1000 },
		{ 2, 5000, 5000 },            /* Retry-After wins when larger */
		{ 5, 50, 800 },               /* ... and not when smaller */
		{ 2, 0, 100 },
		{ 2, 1000000000, 300000 },    /* capped at max(10 * max_backoff, 5 min) */
	};
	bool below = false, above = false;
	int64_t d;
	size_t i;
	int k;

	for (i = 0; i < N(cases); i++)
		if (flow_backoff_ms(&rp, cases[i].attempt, cases[i].retry_after) != cases[i].want)
			fail_msg("case %zu: got %lld", i,
				 (long long)flow_backoff_ms(&rp, cases[i].attempt, cases[i].retry_after));
	rp.max_backoff_ms = 60000;
	assert_int_equal(flow_backoff_ms(&rp, 2, 1000000000), 600000);
	rp.multiplier = 1;
	assert_int_equal(flow_backoff_ms(&rp, 9, -1), 100);

	rp.multiplier = 2;
	rp.max_backoff_ms = 1000;
	rp.jitter = 0.5;
	for (k = 0; k < 2000; k++) {
		d = flow_backoff_ms(&rp, 3, -1);        /* 200 * [0.5, 1.5] */
		assert_in_range(d, 100, 300);
		below = below || d < 190;
		above = above || d > 210;
	}
	assert_true(below && above);
	rp.jitter = 1;
	for (k = 0; k < 500; k++)
		assert_in_range(flow_backoff_ms(&rp, 7, -1), 0, 2000);
	for (k = 0; k < 100; k++)
		assert_int_equal(flow_backoff_ms(&rp, 2, 250000), 250000);
}

/* --- refcounting and flow sets (run under ASan/valgrind for the frees) --------------------- */

static struct flow *make_flow(const char *name, int version)
{
	struct flow *f = xcalloc(1, sizeof(*f));
	struct flow_step *st;

	f->refs = 1;
	f->name = xstrdup(name);
	f->version = version;
	f->description = xstrdup("d");
	f->file = xstrdup("flows/x.yaml");
	f->n_inputs = 1;
	f->inputs = xcalloc(1, sizeof(*f->inputs));
	f->inputs[0].name = xstrdup("a");
	f->inputs[0].default_value = json_integer(1);
	f->n_participants = 1;
	f->participants = xcalloc(1, sizeof(*f->participants));
	f->participants[0].name = xstrdup("class");
	f->participants[0].base_url = xstrdup("http://h");
	f->participants[0].n_headers = 1;
	f->participants[0].headers = xcalloc(1, sizeof(struct flow_header));
	f->participants[0].headers[0].name = xstrdup("X");
	f->participants[0].headers[0].value = T("y");
	f->n_steps = 1;
	f->steps = st = xcalloc(1, sizeof(*f->steps));
	st->name = xstrdup("apply");
	st->participant = &f->participants[0];
	st->action.method = xstrdup("POST");
	st->action.path = T("/a");
	st->action.body = TJ("{\"x\": \"${input.a}\"}");
	st->action.n_ok_status = 1;
	st->action.ok_status = xcalloc(1, sizeof(int));
	st->action.ok_status[0] = 201;
	st->action.has_body_equals = true;
	st->action.body_equals = json_true();
	st->action.n_fields = 1;
	st->action.field_paths = xcalloc(1, sizeof(char *));
	st->action.field_paths[0] = xstrdup("id");
	st->action.field_equals = xcalloc(1, sizeof(json_t *));
	st->action.field_equals[0] = json_integer(3);
	st->compensation = xcalloc(1, sizeof(*st->compensation));
	st->compensation->method = xstrdup("DELETE");
	st->compensation->path = T("/a/${steps.apply.response.body.id}");
	st->compensation->n_query = 1;
	st->compensation->query = xcalloc(1, sizeof(struct flow_header));
	st->compensation->query[0].name = xstrdup("q");
	st->compensation->query[0].value = T("1");
	st->n_keep = 1;
	st->keep = xcalloc(1, sizeof(char *));
	st->keep[0] = xstrdup("body.id");
	f->output = T("${steps}");
	f->wait_steps = xcalloc(2, sizeof(char *));
	f->wait_steps[0] = xstrdup("apply");
	f->source = json_object();
	return f;
}

static void test_flow_set(void **state)
{
	struct flow *a1 = make_flow("apply", 1), *a2 = make_flow("apply", 2);
	struct flow *dup = make_flow("apply", 2), *p = make_flow("pay", 1);
	struct flow_set fs;

	assert_ptr_equal(flow_find_step(a1, "apply"), &a1->steps[0]);
	assert_null(flow_find_step(a1, "pay"));
	assert_string_equal(input_type_name(INPUT_INTEGER), "integer");
	assert_string_equal(input_type_name(INPUT_ANY), "any");

	flow_set_init(&fs);
	assert_null(flow_set_find(&fs, "apply"));
	assert_int_equal(flow_set_add(&fs, a2), 0);
	assert_int_equal(flow_set_add(&fs, a1), 0);
	assert_int_equal(flow_set_add(&fs, p), 0);
	assert_int_equal(flow_set_add(&fs, dup), SAGAD_EEXIST);
	assert_ptr_equal(flow_set_find(&fs, "apply"), a2);
	assert_ptr_equal(flow_set_find_version(&fs, "apply", 1), a1);
	assert_null(flow_set_find_version(&fs, "apply", 3));
	assert_ptr_equal(flow_set_find(&fs, "pay"), p);
	assert_int_equal(a1->refs, 2);
	flow_unref(a1);
	flow_unref(a2);
	flow_unref(p);
	flow_unref(dup);
	flow_unref(NULL);
	assert_int_equal(fs.flows[0]->refs, 1);
	flow_set_close(&fs);
	assert_int_equal(fs.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_eval_table, setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_eval_json_bodies, setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_eval_json_nul_in_keys, setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_eval_string, setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_functions_time, setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_constant, setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_eval_errors, setup_ctx, teardown_ctx),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_compile_deep_nesting),
		cmocka_unit_test(test_compile_error_value),
		cmocka_unit_test(test_visit_refs),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_judge),
		cmocka_unit_test(test_keep),
		cmocka_unit_test(test_check_input),
		cmocka_unit_test(test_render_request),
		cmocka_unit_test(test_render_message),
		cmocka_unit_test(test_correlation),
		cmocka_unit_test(test_judge_reply),
		cmocka_unit_test(test_trigger),
		cmocka_unit_test(test_keep_kafka),
		cmocka_unit_test(test_output),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_flow_set),
	};

	return cmocka_run_group_tests_name("expr", tests, NULL, NULL);
}
