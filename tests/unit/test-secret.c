/* test-secret.c: secrets (secret.c): keys, AES-256-GCM sealing bound to its place, redaction
 * of values in their text forms (clear, JSON-escaped, URL-encoded, cut off), and a flow's
 * sensitive input fields and environment headers (dsl.c: `sensitive: true`). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dsl.h"
#include "error.h"
#include "flow.h"
#include "log.h"
#include "secret.h"
#include "util.h"

static char tmpdir[64];

static int setup(void **state)
{
	log_min_level = LOG_ERROR;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sagad-test-secret.XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct secret_key *test_key(unsigned char fill)
{
	unsigned char raw[SECRET_KEY_LEN];

	memset(raw, fill, sizeof(raw));
	return secret_key_from_bytes(raw);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(p, 1, n, fp), n);
	fclose(fp);
}

static void test_key_files(void **state)
{
	static const struct { const char *text; size_t len; int rc; } cases[] = {
		{ "0123456789abcdef0123456789abcdef0123456789ABCDEF0123456789abcdef\n", 65, 0 },
		{ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64, 0 },
		{ "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n", 45, 0 },
		{ "abcdefghijklmnopqrstuvwxyz012345", 32, 0 },                 /* raw bytes */
		{ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", 64, SAGAD_EINVAL },
		{ "too short\n", 10, SAGAD_EINVAL },
		{ "", 0, SAGAD_EINVAL },
	};
	char path[128], err[256];

	snprintf(path, sizeof(path), "%s/key", tmpdir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct secret_key *k = NULL;
		write_bytes(path, cases[i].text, cases[i].len);
		if (secret_key_load(path, &k, err, sizeof(err)) != cases[i].rc)
			fail_msg("case %zu: rc differs (%s)", i, err);
		if (cases[i].rc != 0)
			assert_non_null(strstr(err, "openssl rand -hex 32"));
		secret_key_free(k);
	}
	{
		struct secret_key *k = NULL;
		assert_int_equal(secret_key_load("/nonexistent/key", &k, err, sizeof(err)), SAGAD_EIO);
	}
}

static void test_seal_and_open(void **state)
{
	struct secret_key *k = test_key(7), *other = test_key(8);
	char *sealed, *again, *plain = NULL;
	size_t len = 0;

	sealed = secret_seal(k, "saga A field x", "4111-1111-1111-1111", 19);
	assert_true(strncmp(sealed, "v1:", 3) == 0);
	assert_null(strstr(sealed, "4111"));
	assert_int_equal(secret_open(k, "saga A field x", sealed, &plain, &len), 0);
	assert_string_equal(plain, "4111-1111-1111-1111");
	assert_int_equal(len, 19);
	free(plain);
	/* A fresh nonce each time. */
	again = secret_seal(k, "saga A field x", "4111-1111-1111-1111", 19);
	assert_string_not_equal(sealed, again);
	free(again);
	/* Another key, another place, tampering, garbage: refused. */
	assert_int_equal(secret_open(other, "saga A field x", sealed, &plain, &len), SAGAD_EINVAL);
	assert_int_equal(secret_open(k, "saga B field x", sealed, &plain, &len), SAGAD_EINVAL);
	sealed[10] = sealed[10] == 'A' ? 'B' : 'A';
	assert_int_equal(secret_open(k, "saga A field x", sealed, &plain, &len), SAGAD_EINVAL);
	assert_int_equal(secret_open(k, "x", "v1:", &plain, &len), SAGAD_EINVAL);
	assert_int_equal(secret_open(k, "x", "v1:AAAA", &plain, &len), SAGAD_EINVAL);
	assert_int_equal(secret_open(k, "x", "plain text", &plain, &len), SAGAD_EINVAL);
	assert_int_equal(secret_open(NULL, "x", sealed, &plain, &len), SAGAD_EINVAL);
	free(sealed);
	/* Empty values seal too. */
	sealed = secret_seal(k, "a", "", 0);
	assert_int_equal(secret_open(k, "a", sealed, &plain, &len), 0);
	assert_string_equal(plain, "");
	free(plain);
	free(sealed);
	secret_key_free(k);
	secret_key_free(other);
}

static void test_scrub_text(void **state)
{
	struct secret_set *s = secret_set_new();
	char *owned;
	const char *r, *text;

	assert_true(secret_set_empty(s));
	assert_true(secret_set_empty(NULL));
	secret_set_add(s, "abc");                 /* too short: not searched for */
	assert_true(secret_set_empty(s));
	secret_set_add(s, "p@ss \"word\"/1");
	secret_set_add(s, "Bearer tok-123456");
	assert_false(secret_set_empty(s));

	text = "no secret here";
	assert_ptr_equal(secret_scrub(s, text, &owned), text);
	assert_null(owned);
	assert_ptr_equal(secret_scrub(NULL, text, &owned), text);
	assert_null(secret_scrub(s, NULL, &owned));

	r = secret_scrub(s, "Authorization: Bearer tok-123456; again Bearer tok-123456", &owned);
	assert_string_equal(r, "Authorization: ***; again ***");
	free(owned);
	/* JSON-escaped, as in a request body. */
	r = secret_scrub(s, "POST http://h/x {\"pw\":\"p@ss \\\"word\\\"/1\"}", &owned);
	assert_string_equal(r, "POST http://h/x {\"pw\":\"***\"}");
	free(owned);
	/* URL-encoded, as in a query. */
	r = secret_scrub(s, "GET http://h/x?pw=p%40ss%20%22word%22%2F1&a=1", &owned);
	assert_string_equal(r, "GET http://h/x?pw=***&a=1");
	free(owned);
	/* Cut off by a summary's truncation, with or without "...". */
	r = secret_scrub(s, "{\"echo\":\"Bearer tok-12...", &owned);
	assert_string_equal(r, "{\"echo\":\"***...");
	free(owned);
	r = secret_scrub(s, "{\"echo\":\"Bearer tok", &owned);
	assert_string_equal(r, "{\"echo\":\"***");
	free(owned);
	assert_true(secret_find(s, "x Bearer tok-123456 y"));
	assert_false(secret_find(s, "Bearer tok-12345"));
	secret_set_free(s);
}

static void test_scrub_json(void **state)
{
	struct secret_set *s = secret_set_new();
	json_t *v = json_pack("{s:s, s:i, s:[s, i, {s:s}], s:b, s:s}", "card", "4111-1111",
			      "pin", 987654, "list", "x 4111-1111 y", 987654, "k", "4111-1111",
			      "ok", 1, "other", "fine");
	json_t *want = json_pack("{s:s, s:s, s:[s, s, {s:s}], s:b, s:s}", "card", "***", "pin",
				 "***", "list", "x *** y", "***", "k", "***", "ok", 1,
				 "other", "fine");
	json_t *input = json_pack("{s:s, s:i}", "card", "4111-1111", "pin", 987654);

	secret_set_add_json(s, input);
	v = secret_scrub_json(s, v);
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	json_decref(input);
	/* A bare string is replaced by a new value. */
	v = secret_scrub_json(s, json_string("4111-1111"));
	assert_string_equal(json_string_value(v), "***");
	json_decref(v);
	secret_set_free(s);
}

static const char flow_yaml[] =
	"name: card\n"
	"version: 1\n"
	"input:\n"
	"  name: { type: string, required: true }\n"
	"  card: { type: string, required: true, sensitive: true }\n"
	"  pin: { type: integer, sensitive: true }\n"
	"participants:\n"
	"  bank:\n"
	"    url: http://127.0.0.1:9\n"
	"    headers:\n"
	"      X-Api-Credential: \"${env.SAGAD_TEST_BANK_CRED}\"\n"
	"      X-Tenant: acme\n"
	"      Authorization: Basic abcdef\n"
	"steps:\n"
	"  - name: charge\n"
	"    participant: bank\n"
	"    action: { method: POST, path: /charges, body: { card: \"${input.card}\" } }\n";

static struct flow *load_flow(void)
{
	struct dsl_errors errs = { NULL, 0 };
	struct flow *f = NULL;

	setenv("SAGAD_TEST_BANK_CRED", "cred-from-env-42", 1);
	if (dsl_load_buffer("card.yaml", flow_yaml, strlen(flow_yaml), NULL, &f, &errs) != 0) {
		char *text = dsl_errors_format(&errs);
		fail_msg("%s", text);
	}
	dsl_errors_close(&errs);
	return f;
}

static void test_flow_sensitive_fields(void **state)
{
	struct flow *f = load_flow();
	json_t *src_in, *hdrs;
	char why[256];

	assert_true(f->inputs[1].sensitive);
	assert_false(f->inputs[0].sensitive);
	assert_true(f->participants[0].headers[0].secret);
	assert_false(f->participants[0].headers[1].secret);
	assert_true(secret_flow_has_sensitive(f));
	assert_true(secret_flow_needs_key(f, why, sizeof(why)));
	assert_string_equal(why, "flow card marks input field card sensitive");
	/* GET /v1/flows/{flow}: the spec says sensitive; env and secret-named headers masked. */
	src_in = json_object_get(f->source, "input");
	assert_true(json_is_true(json_object_get(json_object_get(src_in, "card"), "sensitive")));
	assert_null(json_object_get(json_object_get(src_in, "name"), "sensitive"));
	hdrs = json_object_get(json_object_get(json_object_get(f->source, "participants"), "bank"),
			       "headers");
	assert_string_equal(json_string_value(json_object_get(hdrs, "X-Api-Credential")), "***");
	assert_string_equal(json_string_value(json_object_get(hdrs, "Authorization")), "***");
	assert_string_equal(json_string_value(json_object_get(hdrs, "X-Tenant")), "acme");
	{
		char *text = json_dumps(f->source, 0);
		assert_null(strstr(text, "cred-from-env-42"));
		free(text);
	}
	flow_unref(f);
	/* A DSL error names the place. */
	{
		static const char bad[] = "name: b\nversion: 1\ninput:\n  x: { type: string, "
			"sensitive: maybe }\nsteps: []\n";
		struct dsl_errors errs = { NULL, 0 };
		char *text;
		assert_int_equal(dsl_load_buffer("b.yaml", bad, strlen(bad), NULL, &f, &errs),
				 SAGAD_ESYNTAX);
		text = dsl_errors_format(&errs);
		assert_non_null(strstr(text, "b.yaml:4:"));
		assert_non_null(strstr(text, "input field \"x\""));
		free(text);
		dsl_errors_close(&errs);
	}
}

static void test_input_seal_open_mask(void **state)
{
	struct flow *f = load_flow();
	struct secret_key *k = test_key(1), *other = test_key(2);
	struct secret_set *secrets = secret_set_new(), *found = secret_set_new(), *parent;
	json_t *input = json_pack("{s:s, s:s, s:i}", "name", "kim", "card", "4111-2222-3333",
				  "pin", 246810);
	json_t *stored, *back, *shown;
	char *text, err[256];

	secret_set_add_saga(secrets, f, input);
	assert_true(secret_find(secrets, "x 4111-2222-3333"));
	assert_true(secret_find(secrets, "246810"));
	assert_true(secret_find(secrets, "cred-from-env-42"));   /* the env header */
	assert_false(secret_find(secrets, "kim"));

	stored = secret_seal_input(k, "01SAGA", f, input, NULL);
	text = json_dumps(stored, JSON_COMPACT);
	assert_null(strstr(text, "4111"));
	assert_null(strstr(text, "246810"));
	assert_non_null(strstr(text, "\"name\":\"kim\""));
	assert_non_null(strstr(text, "\"$sealed\":\"v1:"));
	/* Read back: opens with the key and the saga id it was sealed for. */
	back = json_loads(text, 0, NULL);
	assert_int_equal(secret_open_input(k, "01SAGA", back, found, err, sizeof(err)), 0);
	assert_true(json_equal(back, input));
	assert_true(secret_find(found, "4111-2222-3333"));
	json_decref(back);
	back = json_loads(text, 0, NULL);
	assert_int_equal(secret_open_input(other, "01SAGA", back, NULL, err, sizeof(err)),
			 SAGAD_EINVAL);
	assert_non_null(strstr(err, "does not open with this secrets key"));
	json_decref(back);
	back = json_loads(text, 0, NULL);
	assert_int_equal(secret_open_input(k, "01OTHER", back, NULL, err, sizeof(err)), SAGAD_EINVAL);
	json_decref(back);
	back = json_loads(text, 0, NULL);
	assert_int_equal(secret_open_input(NULL, "01SAGA", back, NULL, err, sizeof(err)), SAGAD_ENOKEY);
	assert_non_null(strstr(err, "--secrets-key"));
	/* The API's view: sealed and sensitive fields are "***". */
	secret_mask_input(NULL, back);
	shown = json_pack("{s:s, s:s, s:s}", "name", "kim", "card", "***", "pin", "***");
	assert_true(json_equal(back, shown));
	json_decref(back);
	back = json_deep_copy(input);
	secret_mask_input(f, back);
	assert_true(json_equal(back, shown));
	json_decref(back);
	json_decref(shown);
	free(text);
	json_decref(stored);

	/* Without a key the value is not kept at all. */
	stored = secret_seal_input(NULL, "01SAGA", f, input, NULL);
	assert_string_equal(json_string_value(json_object_get(stored, "card")), "***");
	json_decref(stored);

	/* A sub-flow's input that carries a parent's secret in a field it does not mark
	 * sensitive is sealed too. */
	parent = secret_set_new();
	secret_set_add(parent, "4111-2222-3333");
	json_decref(input);
	input = json_pack("{s:s, s:s}", "name", "kim", "note", "card 4111-2222-3333 ok");
	stored = secret_seal_input(k, "01CHILD", f, input, parent);
	assert_true(json_is_object(json_object_get(stored, "note")));
	assert_string_equal(json_string_value(json_object_get(stored, "name")), "kim");
	json_decref(stored);

	secret_set_free(parent);
	secret_set_free(secrets);
	secret_set_free(found);
	secret_key_free(k);
	secret_key_free(other);
	json_decref(input);
	flow_unref(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_seal_and_open),
		cmocka_unit_test(test_scrub_text),
		cmocka_unit_test(test_scrub_json),
		cmocka_unit_test(test_flow_sensitive_fields),
		cmocka_unit_test(test_input_seal_open_mask),
	};

	return cmocka_run_group_tests_name("secret", tests, setup, teardown);
}
