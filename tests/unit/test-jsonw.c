/* test-jsonw.c: the JSON writer against jansson, the reference it replaces on the API's hot
 * path: the same bytes as json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(15)) for strings,
 * times and stored JSON (random values included), and the same verdict as json_loads() on
 * what is valid JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "jsonw.h"
#include "util.h"

#define API_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)

/* What the API showed before: the stored text parsed and dumped again, or the text as a string. */
static char *reference(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
	char *out;

	if (v == NULL)
		v = json_string(text);
	out = json_dumps(v, API_FLAGS);
	json_decref(v);
	return out;
}

static char *written(const char *text)
{
	struct strbuf b;

	strbuf_init(&b);
	jsonw_json(&b, text);
	return strbuf_detach(&b);
}

static void test_strings_as_jansson(void **state)
{
	static const char *const cases[] = {
		"", "plain", "quote \" backslash \\ slash /", "tab\tnewline\ncr\rbell\a\x01\x1f",
		"\b\f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\x7f del", "{\"json\":[1,2]}",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *v = json_string(cases[i]);
		char *want = json_dumps(v, API_FLAGS);
		struct strbuf b;

		strbuf_init(&b);
		jsonw_str(&b, cases[i]);
		assert_string_equal(b.data, want);
		strbuf_close(&b);
		free(want);
		json_decref(v);
	}
}

/* Escapes that make the text up to 6 times longer, after text already in the buffer: the
 * writer reserves room as it goes (put_str()). */
static void test_long_escaped_strings_as_jansson(void **state)
{
	static const char pattern[] = "\x01\"a\\\n\x1f";
	char s[4001];
	struct strbuf b;

	for (size_t n = 0; n < sizeof(s); n += 97) {
		json_t *v;
		char *want;

		for (size_t i = 0; i < n; i++)
			s[i] = pattern[i % (sizeof(pattern) - 1)];
		s[n] = '\0';
		v = json_string(s);
		want = json_dumps(v, API_FLAGS);
		assert_non_null(want);
		strbuf_init(&b);
		strbuf_adds(&b, "[");
		jsonw_str(&b, s);
		assert_int_equal(b.len, 1 + strlen(want));
		assert_string_equal(b.data + 1, want);
		assert_int_equal(b.data[b.len], '\0');
		strbuf_close(&b);
		free(want);
		json_decref(v);
	}
}

static void test_invalid_utf8_becomes_question_marks(void **state)
{
	struct strbuf b;

	strbuf_init(&b);
	jsonw_str(&b, "a\xff" "b\xc3(\xed\xa0\x80z");   /* a bad byte, a cut sequence, a surrogate */
	assert_string_equal(b.data, "\"a?b?(???z\"");
	assert_int_equal(jsonw_check(b.data, b.len), 0);
	strbuf_close(&b);
	/* byte for byte what util_utf8_sanitize() + jansson make of random bytes */
	for (unsigned seed = 1; seed <= 2000; seed++) {
		unsigned r = seed;
		char raw[24], *copy;
		json_t *v;
		char *want;

		for (size_t i = 0; i < sizeof(raw) - 1; i++)
			raw[i] = (char)(rand_r(&r) % 255 + 1);
		raw[sizeof(raw) - 1] = '\0';
		copy = util_utf8_sanitize(strdup(raw));
		v = json_string(copy);
		want = json_dumps(v, API_FLAGS);
		strbuf_init(&b);
		jsonw_str(&b, raw);
		assert_string_equal(b.data, want);
		strbuf_close(&b);
		free(want);
		json_decref(v);
		free(copy);
	}
	strbuf_init(&b);
	jsonw_str_or_null(&b, NULL);
	assert_string_equal(b.data, "null");
	strbuf_close(&b);
}

/* What util_utf8_sanitize() and jansson make of s, beside what jsonw_str() writes. */
static void assert_str_as_jansson(const char *s)
{
	char *copy = util_utf8_sanitize(strdup(s)), *want;
	json_t *v = json_string(copy);
	struct strbuf b;

	want = json_dumps(v, API_FLAGS);
	strbuf_init(&b);
	jsonw_str(&b, s);
	if (strcmp(b.data, want) != 0)
		fail_msg("jsonw %s, jansson %s", b.data, want);
	strbuf_close(&b);
	free(want);
	json_decref(v);
	free(copy);
}

/* Every kind of byte at every place of a longer string, and long plain runs with a rare
 * special byte. */
static void test_strings_by_words(void **state)
{
	static const char *const specials[] = {
		"\x01", "\x1f", "\n", "\"", "\\", "\x7f", " ", "!", "#", "[", "]", "~", "\x20",
		"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80",
	};
	char s[80];   /* 40 + 4 + 20 + 1 */

	for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++)
		for (size_t at = 0; at <= 40; at++) {
			memset(s, 'a', at);
			strcpy(s + at, specials[k]);
			strcat(s, "bcdefghijklmnopqrstu");
			assert_str_as_jansson(s);
		}
	for (unsigned seed = 1; seed <= 3000; seed++) {
		unsigned r = seed;
		char raw[200];
		size_t n = (size_t)(rand_r(&r) % (sizeof(raw) - 1));

		for (size_t i = 0; i < n; i++)
			raw[i] = rand_r(&r) % 16 == 0 ? (char)(rand_r(&r) % 255 + 1) :
							(char)(' ' + rand_r(&r) % 95);
		raw[n] = '\0';
		assert_str_as_jansson(raw);
	}
}

static void test_stored_json_as_jansson(void **state)
{
	static const char *const cases[] = {
		/* valid */
		"{}", "[]", "{\"a\":1}", "[1,2,3]", "\"s\"", "true", "false", "null", "0", "-0", "12",
		"-7", "1.5", "0.1", "0.10000000000000001", "100.09999999999999", "1e2", "1E+2",
		"-2.5e-3", "123456789012345678", "9223372036854775807", "-9223372036854775808",
		"1e-400", "{\"status\":200,\"body\":{\"id\":1,\"status\":\"ok\"}}",
		" { \"a\" : [ 1 , { \"b\" : null } ] , \"c\" : \"x\" } ", "[[[[[]]]]]",
		"{\"k\":\"caf\xc3\xa9\",\"e\":\"\\u00e9\",\"q\":\"\\\"\",\"p\":\"\\ud83d\\ude00\"}",
		"[1.0,2.50,3e0]",
		/* not JSON: shown as a string */
		"", " ", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "+1", ".5",
		"1.", "1e", "-", "NaN", "Infinity", "tru", "nul", "\"open", "\"ctl\x01\"",
		"\"bad \\x escape\"", "\"\\u12\"", "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\"",
		"\"bad \xff utf8\"", "1 2", "{}x", "9223372036854775808", "1e400", "[1]]", "plain text",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *want = reference(cases[i]), *got = written(cases[i]);
		json_t *a, *b, *parsed;
		int valid;

		if (want == NULL) {
			/* not UTF-8: jansson could not even make it a string (the old answer lost
			 * the field); jsonw writes it with '?', still valid JSON */
			assert_int_equal(jsonw_check(got, strlen(got)), 0);
			free(got);
			continue;
		}
		a = json_loads(want, JSON_DECODE_ANY, NULL);
		b = json_loads(got, JSON_DECODE_ANY, NULL);
		parsed = json_loads(cases[i], JSON_DECODE_ANY, NULL);
		valid = parsed != NULL;

		/* same value always; same bytes unless the text had escapes jansson writes otherwise */
		if (a == NULL || b == NULL || !json_equal(a, b))
			fail_msg("case %zu \"%s\": jansson %s, jsonw %s", i, cases[i], want, got);
		if (strstr(cases[i], "\\u") == NULL && strcmp(got, want) != 0)
			fail_msg("case %zu \"%s\": jansson %s, jsonw %s", i, cases[i], want, got);
		assert_int_equal(jsonw_check(cases[i], strlen(cases[i])) == 0, valid);
		json_decref(parsed);
		json_decref(a);
		json_decref(b);
		free(want);
		free(got);
	}
	{
		/* the one difference: duplicate keys are copied (jansson keeps the last); both
		 * parse to the same value, and the engine never stores such text */
		char *dup = written("{\"a\":1,\"a\":2}"), *want = reference("{\"a\":1,\"a\":2}");
		json_t *a = json_loads(dup, 0, NULL), *b = json_loads(want, 0, NULL);
		assert_true(a != NULL && b != NULL && json_equal(a, b));
		json_decref(a);
		json_decref(b);
		free(dup);
		free(want);
	}
	{
		char *null = written(NULL);
		assert_string_equal(null, "null");
		free(null);
	}
}

/* Random values as the engine stores them (json_dumps compact, reals with 17 digits) come out
 * exactly as the API dumped them (15 digits). */
static json_t *random_value(unsigned *seed, int depth)
{
	int kind = rand_r(seed) % (depth > 3 ? 6 : 8);
	char s[16];
	json_t *v;

	switch (kind) {
	case 0: return json_null();
	case 1: return json_boolean(rand_r(seed) & 1);
	case 2: return json_integer((json_int_t)rand_r(seed) * (rand_r(seed) & 1 ? -1 : 1) * 977);
	case 3: return json_real(((double)rand_r(seed) / RAND_MAX - 0.5) * (rand_r(seed) % 4 ? 1e3 : 1e-7));
	case 4:
	case 5:
		for (size_t i = 0, n = (size_t)(rand_r(seed) % 12); i <= n; i++)
			s[i] = i == n ? '\0' : (char)(" \"\\/\n\tab\x01\x7f"[rand_r(seed) % 11]);
		return json_string(s);
	case 6:
		v = json_array();
		for (int i = rand_r(seed) % 5; i > 0; i--)
			json_array_append_new(v, random_value(seed, depth + 1));
		return v;
	default:
		v = json_object();
		for (int i = rand_r(seed) % 5; i > 0; i--) {
			snprintf(s, sizeof(s), "k%d", rand_r(seed) % 7);
			json_object_set_new(v, s, random_value(seed, depth + 1));
		}
		return v;
	}
}

static void test_random_stored_values(void **state)
{
	unsigned seed = 42;

	for (int i = 0; i < 3000; i++) {
		json_t *v = random_value(&seed, 0);
		char *stored = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		char *want = json_dumps(v, API_FLAGS), *got = written(stored);

		if (strcmp(got, want) != 0)
			fail_msg("stored %s: jansson %s, jsonw %s", stored, want, got);
		free(stored);
		free(want);
		free(got);
		json_decref(v);
	}
}

/* Object keys are written whole: jansson keeps a key's length, so a NUL in it (a YAML "\0")
 * is "\u0000", not the key's end. */
static void test_dumps_key_with_nul(void **state)
{
	json_t *v = json_object(), *o = json_object();
	char *want, *got;

	(void)state;
	json_object_setn_new(o, "a\0b", 3, json_integer(1));
	json_object_setn_new(v, "k\0\n", 3, o);
	json_object_set_new(v, "x", json_true());
	want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	got = jsonw_dumps(v);
	assert_string_equal(want, "{\"k\\u0000\\n\":{\"a\\u0000b\":1},\"x\":true}");
	assert_string_equal(got, want);
	free(want);
	free(got);
	json_decref(v);
}

/* jsonw_dumps() writes what the engine stored with json_dumps(JSON_COMPACT | JSON_ENCODE_ANY):
 * the same bytes for random trees, reals of every size (17 digits, exponents, integral reals),
 * UTF-8, escapes and an object whose keys were deleted and set again (insertion order). */
static void test_dumps_as_jansson(void **state)
{
	static const double reals[] = { 0.0, -0.0, 1.0, -3.0, 0.1, 1.0 / 3, 2.5e-300, 1e300, 123456789012345678.0,
					1e16, 1e17, 5e-324, 1.7976931348623157e308, -1e-7, 100.0, 0.5 };
	static const char *const strings[] = { "", "caf\xc3\xa9", "\xe2\x82\xac \xf0\x9f\x98\x80",
					       "a\"b\\c/d", "\x01\x1f\x7f", "line\nnext\ttab\r\b\f" };
	unsigned seed = 4242;
	json_t *v, *o;
	char *want, *got;

	for (int i = 0; i < 5000; i++) {
		v = json_array();
		json_array_append_new(v, random_value(&seed, 0));
		json_array_append_new(v, json_real(reals[i % (sizeof(reals) / sizeof(reals[0]))] *
						   (i < 100 ? 1 : (double)rand_r(&seed) / 7)));
		json_array_append_new(v, json_string(strings[i % (sizeof(strings) / sizeof(strings[0]))]));
		json_array_append_new(v, json_integer(i % 2 ? INT64_MIN + i : INT64_MAX - i));
		o = json_object();
		json_object_set_new(o, "z", json_true());
		json_object_set_new(o, "a", json_false());
		json_object_set_new(o, "m", json_null());
		if (i % 3 == 0) {
			json_object_del(o, "a");
			json_object_set_new(o, "a", json_integer(i));
		}
		json_array_append_new(v, o);
		want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		got = jsonw_dumps(v);
		if (strcmp(got, want) != 0)
			fail_msg("jansson %s, jsonw %s", want, got);
		free(want);
		free(got);
		json_decref(v);
	}
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		v = json_real(reals[i]);
		want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		got = jsonw_dumps(v);
		assert_string_equal(got, want);
		free(want);
		free(got);
		json_decref(v);
	}
	assert_null(jsonw_dumps(NULL));
}

static void test_times_as_util_format_time(void **state)
{
	int64_t cases[] = { 1, 999, 1000, 86399999, 86400000, 951782400000LL /* 2000-02-29 */,
			    1795286022123LL, 4102444800000LL /* 2100-01-01 */, 253402300799999LL };
	unsigned seed = 7;
	char want[40];
	struct strbuf b;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) + 2000; i++) {
		int64_t ms = i < sizeof(cases) / sizeof(cases[0]) ? cases[i] :
			     (int64_t)rand_r(&seed) * 1000003LL % 7258118400000LL + 1;
		char quoted[44];

		util_format_time(ms, want, sizeof(want));
		snprintf(quoted, sizeof(quoted), "\"%s\"", want);
		strbuf_init(&b);
		jsonw_time(&b, ms);
		assert_string_equal(b.data, quoted);
		strbuf_close(&b);
	}
	strbuf_init(&b);
	jsonw_time(&b, 0);
	jsonw_time(&b, -5);
	assert_string_equal(b.data, "nullnull");
	strbuf_close(&b);
}

/* Integers: the same digits as jansson's (which prints them with "%lld"), at the edges too. */
static void assert_int_as_jansson(long long v)
{
	json_t *j = json_integer(v);
	char *ref = json_dumps(j, API_FLAGS);
	struct strbuf b;

	strbuf_init(&b);
	jsonw_int(&b, v);
	assert_string_equal(b.data, ref);
	strbuf_close(&b);
	free(ref);
	json_decref(j);
}

static void test_ints_as_jansson(void **state)
{
	static const long long v[] = { 0, 1, -1, 9, 10, -10, 99, 100, 1234567890123LL,
				       -9007199254740993LL, INT64_MAX, INT64_MIN };

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_as_jansson(v[i]);
	for (int i = 0; i < 10000; i++)
		assert_int_as_jansson(((long long)random() << 32 | random()) * (i % 2 ? 1 : -1));
}

static void test_deep_nesting(void **state)
{
	struct strbuf b;

	strbuf_init(&b);
	for (int i = 0; i < 3000; i++)
		strbuf_add(&b, "[", 1);
	for (int i = 0; i < 3000; i++)
		strbuf_add(&b, "]", 1);
	assert_int_equal(jsonw_check(b.data, b.len), -1);   /* deeper than jansson's 2048 */
	assert_int_equal(jsonw_check(b.data + 1000, b.len - 2000), 0);
	strbuf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings_as_jansson),
		cmocka_unit_test(test_long_escaped_strings_as_jansson),
		cmocka_unit_test(test_invalid_utf8_becomes_question_marks),
		cmocka_unit_test(test_strings_by_words),
		cmocka_unit_test(test_stored_json_as_jansson),
		cmocka_unit_test(test_random_stored_values),
		cmocka_unit_test(test_dumps_as_jansson),
		cmocka_unit_test(test_dumps_key_with_nul),
		cmocka_unit_test(test_times_as_util_format_time),
		cmocka_unit_test(test_ints_as_jansson),
		cmocka_unit_test(test_deep_nesting),
	};

	return cmocka_run_group_tests_name("jsonw", tests, NULL, NULL);
}
