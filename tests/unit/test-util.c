/* test-util.c: durations, ids, string buffers, logfmt quoting and error names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <jansson.h>

#include "error.h"
#include "log.h"
#include "util.h"

static void test_durations(void **state)
{
	static const struct { const char *text; int rc; int64_t ms; } cases[] = {
		{ "250ms", 0, 250 }, { "2s", 0, 2000 }, { "1.5s", 0, 1500 }, { "5m", 0, 300000 },
		{ "2h", 0, 7200000 }, { "21d", 0, 1814400000LL }, { "42", 0, 42 },
		{ "", SAGAD_EINVAL, 0 }, { "s", SAGAD_EINVAL, 0 }, { "5 s", SAGAD_EINVAL, 0 },
		{ "-1s", SAGAD_EINVAL, 0 }, { "3w", SAGAD_EINVAL, 0 }, { "1e30d", SAGAD_EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = -1;
		int rc = util_parse_duration(cases[i].text, &ms);
		assert_int_equal(rc, cases[i].rc);
		if (rc == 0)
			assert_int_equal(ms, cases[i].ms);
	}
}

static void test_sizes(void **state)
{
	static const struct { const char *text; int rc; size_t bytes; } cases[] = {
		{ "1048576", 0, 1048576 }, { "64k", 0, 65536 }, { "64KiB", 0, 65536 },
		{ "2M", 0, 2097152 }, { "2mib", 0, 2097152 }, { "1G", 0, 1073741824 }, { "7b", 0, 7 },
		{ "", SAGAD_EINVAL, 0 }, { "k", SAGAD_EINVAL, 0 }, { "-1", SAGAD_EINVAL, 0 },
		{ "1.5M", SAGAD_EINVAL, 0 }, { "12x", SAGAD_EINVAL, 0 }, { " 5", SAGAD_EINVAL, 0 },
		{ "99999999999999999999", SAGAD_EINVAL, 0 }, { "17179869184G", SAGAD_EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = 0;
		int rc = util_parse_size(cases[i].text, &n);
		assert_int_equal(rc, cases[i].rc);
		if (rc == 0)
			assert_int_equal(n, cases[i].bytes);
	}
}

/* Whatever bytes go in, what comes out is UTF-8 that a JSON parser accepts (found by the
 * fuzzer: a request path with such bytes made an error answer unencodable). */
static void test_utf8_sanitize(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "plain", "plain" }, { "caf\xc3\xa9", "caf\xc3\xa9" }, { "\xe2\x82\xac", "\xe2\x82\xac" },
		{ "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
		{ "a\xae" "b", "a?b" },                      /* a lone continuation byte */
		{ "\xc3", "?" },                          /* truncated */
		{ "\xc0\xaf", "??" },                      /* overlong '/' */
		{ "\xe0\x80\xaf", "???" },                  /* overlong, 3 bytes */
		{ "\xed\xa0\x80", "???" },                  /* a UTF-16 surrogate */
		{ "\xf4\x90\x80\x80", "????" },              /* above U+10FFFF */
		{ "\xff\xfe", "??" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = strdup(cases[i].in);
		json_t *v;

		util_utf8_sanitize(s);
		assert_string_equal(s, cases[i].out);
		v = json_string(s);
		assert_non_null(v);
		json_decref(v);
		free(s);
	}
}

static void test_ids_sort_by_time_and_are_unique(void **state)
{
	char prev[27], id[27];

	util_new_id(prev);
	assert_int_equal(strlen(prev), 26);
	for (int i = 0; i < 10000; i++) {
		util_new_id(id);
		assert_true(strcmp(prev, id) < 0);
		memcpy(prev, id, sizeof(id));
	}
}

static void test_strbuf(void **state)
{
	struct strbuf b;
	char *s;

	strbuf_init(&b);
	strbuf_adds(&b, "saga ");
	strbuf_addf(&b, "%d/%s", 42, "pay");
	for (int i = 0; i < 1000; i++)
		strbuf_add(&b, "x", 1);
	assert_int_equal(b.len, strlen("saga 42/pay") + 1000);
	s = strbuf_detach(&b);
	assert_memory_equal(s, "saga 42/pay", 11);
	assert_null(b.data);
	free(s);
}

/* strbuf_addf formats into the free space, then again after growing when it did not fit. */
static void test_strbuf_addf_grows(void **state)
{
	struct strbuf b;
	char big[300];

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	strbuf_init(&b);
	strbuf_addf(&b, "<%s>", "a");
	strbuf_addf(&b, "[%s]", big);
	strbuf_addf(&b, "%s", "");
	assert_int_equal(b.len, 3 + 2 + 299);
	assert_int_equal(strlen(b.data), b.len);
	assert_memory_equal(b.data, "<a>[yyy", 7);
	assert_int_equal(b.data[b.len - 1], ']');
	strbuf_close(&b);
}

static void test_log_quote(void **state)
{
	char buf[64];

	assert_string_equal(log_quote("plain", buf, sizeof(buf)), "plain");
	assert_string_equal(log_quote("two words", buf, sizeof(buf)), "\"two words\"");
	assert_string_equal(log_quote("a\"b", buf, sizeof(buf)), "\"a\\\"b\"");
	assert_string_equal(log_quote("", buf, sizeof(buf)), "\"\"");
}

static void test_errors_have_names_and_text(void **state)
{
	assert_string_equal(sagad_errname(SAGAD_EINPUT), "EINPUT");
	assert_string_equal(sagad_strerror(SAGAD_ENOFLOW), "no such flow");
	assert_string_equal(sagad_strerror(0), "ok");
	assert_non_null(sagad_strerror(-2)); /* errno text */
}

static void test_hex_decode(void **state)
{
	unsigned char out[4];

	assert_int_equal(util_hex_decode("00fFa09B", out, 4), 0);
	assert_memory_equal(out, "\x00\xff\xa0\x9b", 4);
	assert_int_equal(util_hex_decode("00ffa09", out, 4), SAGAD_EINVAL);
	assert_int_equal(util_hex_decode("00ffa09b0", out, 4), SAGAD_EINVAL);
	assert_int_equal(util_hex_decode("00ffa0g9", out, 4), SAGAD_EINVAL);
}

static void test_time_format(void **state)
{
	char buf[40];

	util_format_time(1795286022123LL, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-21T18:33:42.123Z");
	util_format_time(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	util_format_time(-1, buf, sizeof(buf));          /* before 1970: floored */
	assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
	util_format_time(-62135596800000LL, buf, sizeof(buf));
	assert_string_equal(buf, "0001-01-01T00:00:00.000Z");
	util_format_time(253402300799999LL, buf, sizeof(buf));
	assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
}

/* What util_format_time() wrote with gmtime_r() and snprintf() for every time. */
static void reference_time(int64_t ms, char *buf, size_t len)
{
	int64_t rem = ms % 1000;
	time_t secs;
	struct tm tm;

	if (rem < 0)
		rem += 1000;
	secs = (time_t)((ms - rem) / 1000);
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

static void test_time_format_as_gmtime(void **state)
{
	static const int64_t fixed[] = {
		0, 1, 999, 1000, 59999, 60000, 3599999, 3600000, 86399999, 86400000,
		951782400000LL, 951868799999LL, 951868800000LL,  /* 2000-02-29, 2000-03-01 */
		4107456000000LL, 4107542400000LL,                /* 2100-02-28, 2100-03-01 */
		1795286022123LL, 253402300799999LL, 253402300800000LL, 300000000000000LL,
		-1, -1000, -86400001, -62135596800000LL,
	};
	char want[64], got[64];
	uint64_t x = 88172645463325252ULL;

	(void)state;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		reference_time(fixed[i], want, sizeof(want));
		util_format_time(fixed[i], got, sizeof(got));
		assert_string_equal(got, want);
	}
	for (int i = 0; i < 200000; i++) {   /* xorshift64 over 1970..9999 */
		int64_t ms;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ms = (int64_t)(x % 253402300800000ULL);
		reference_time(ms, want, sizeof(want));
		util_format_time(ms, got, sizeof(got));
		if (strcmp(got, want) != 0)
			fail_msg("ms %lld: got %s, want %s", (long long)ms, got, want);
	}
	/* a buffer too small for the fast path: snprintf() cuts it as before */
	util_format_time(1795286022123LL, got, 10);
	assert_string_equal(got, "2026-11-2");
}

static void test_concat(void **state)
{
	char *s;

	(void)state;
	s = util_concat("", NULL);
	assert_string_equal(s, "");
	free(s);
	s = util_concat("Idempotency-Key: ", "01ARZ3NDEKTSV4RRFFQ69G5FAV", ":", "pay", ":",
			"action", NULL);
	assert_string_equal(s, "Idempotency-Key: 01ARZ3NDEKTSV4RRFFQ69G5FAV:pay:action");
	free(s);
	/* more pieces than it measures once */
	s = util_concat("a", "", "bc", "d", "", "efg", "h", "i", "jk", "", "l", "mnop", NULL);
	assert_string_equal(s, "abcdefghijklmnop");
	free(s);
}

/* util_strlcpy() writes what snprintf(dst, size, "%s", src) writes, and returns its count. */
static void test_strlcpy_as_snprintf(void **state)
{
	static const char *const srcs[] = { "", "a", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "completed",
					    "caf\xc3\xa9" };
	char got[32], want[32];

	(void)state;
	for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++)
		for (size_t size = 0; size <= 30; size++) {
			int n;

			memset(got, 'x', sizeof(got));
			memset(want, 'x', sizeof(want));
			n = snprintf(want, size, "%s", srcs[i]);
			assert_int_equal(util_strlcpy(got, srcs[i], size), (size_t)n);
			assert_memory_equal(got, want, sizeof(got));
		}
}

static void test_time_parse(void **state)
{
	static const struct { const char *text; int64_t ms; } good[] = {
		{ "2026-11-21T18:33:42.123Z", 1795286022123LL },
		{ "2026-11-21t18:33:42.123z", 1795286022123LL },
		{ "2026-11-21 18:33:42.123Z", 1795286022123LL },
		{ "2026-11-21T20:33:42.123+02:00", 1795286022123LL },
		{ "2026-11-21T13:03:42.123-05:30", 1795286022123LL },
		{ "2026-11-21T18:33:42.1239999Z", 1795286022123LL },   /* extra digits cut */
		{ "2026-11-21T18:33:42.1Z", 1795286022100LL },
		{ "2026-11-21T18:33:42Z", 1795286022000LL },
		{ "2026-11-21", 1795219200000LL },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "1969-12-31T23:59:59.999Z", -1 },
		{ "2024-02-29T00:00:00Z", 1709164800000LL },
		{ "2000-02-29", 951782400000LL },
		{ "0001-01-01T00:00:00Z", -62135596800000LL },
		{ "9999-12-31T23:59:59.999Z", 253402300799999LL },
	};
	static const char *const bad[] = {
		"", "2026", "2026-11", "2026-11-21T", "2026-11-21T18:33Z", "2026-11-21T18:33:42",
		"2026-11-21T18:33:42.Z", "2026-13-01", "2026-00-01", "2026-11-31", "2025-02-29",
		"1900-02-29", "0000-01-01", "2026-11-21T24:00:00Z", "2026-11-21T18:60:00Z",
		"2026-11-21T18:33:60Z", "2026-11-21T18:33:42Zx", "2026-11-21T18:33:42+0200",
		"2026-11-21T18:33:42+24:00", "26-11-21", "2026/11/21", "2026-11-21x", "1795286022123",
		" 2026-11-21",
	};
	int64_t ms;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = 42;
		if (util_parse_time(good[i].text, strlen(good[i].text), &ms) != 0)
			fail_msg("%s: refused", good[i].text);
		if (ms != good[i].ms)
			fail_msg("%s: got %lld, want %lld", good[i].text, (long long)ms,
				 (long long)good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (util_parse_time(bad[i], strlen(bad[i]), &ms) != SAGAD_EINVAL)
			fail_msg("%s: accepted", bad[i]);
	/* the length bounds the text: no NUL needed */
	assert_int_equal(util_parse_time("2026-11-21Tjunk", 10, &ms), 0);
	assert_int_equal(ms, 1795219200000LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_utf8_sanitize),
		cmocka_unit_test(test_ids_sort_by_time_and_are_unique),
		cmocka_unit_test(test_strbuf),
		cmocka_unit_test(test_strbuf_addf_grows),
		cmocka_unit_test(test_log_quote),
		cmocka_unit_test(test_errors_have_names_and_text),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_time_format_as_gmtime),
		cmocka_unit_test(test_strlcpy_as_snprintf),
		cmocka_unit_test(test_concat),
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_hex_decode),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
