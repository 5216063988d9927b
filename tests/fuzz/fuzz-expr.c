/* fuzz-expr.c: templates and expressions (expr.h): compile, inspect and evaluate arbitrary
 * text against a fixed saga context.
 *
 * The input is a template string; when it starts with '{' or '[' and parses as JSON, that JSON
 * value is the template (strings inside it are templates). The same bytes are also tried as a
 * path (expr_path_split, expr_lookup). Checks: compile fails only with a message and an offset
 * inside the string; every reference names at least one segment at an offset inside its
 * string; evaluation gives a value or a message, never both missing; the string form agrees.
 * Seeds: tests/fuzz/corpus/expr/ (every template of flows/ and of tests/unit/test-expr.c). */
#include <string.h>
#include <jansson.h>
#include "expr.h"
#include "fuzz.h"
#include "log.h"

static json_t *ctx;

static const char ctx_text[] =
	"{\"input\": {\"classId\": 7, \"name\": \"Ann\", \"price\": 1.5, \"flag\": true,"
	"  \"nothing\": null, \"tags\": [\"a\", \"b\"], \"obj\": {\"k\": \"v\", \"a.b\": 1},"
	"  \"num\": \"42\", \"real\": \"2.5\", \"big\": 9223372036854775807,"
	"  \"small\": -9223372036854775808, \"huge\": 1e308, \"empty\": \"\", \"list\": []},"
	" \"saga\": {\"id\": \"01J9ZZZZZZZZZZZZZZZZZZZZZZ\", \"flow\": \"apply\"},"
	" \"steps\": {\"pay\": {\"response\": {\"status\": 201,"
	"   \"body\": {\"items\": [{\"id\": 9}, [1, 2]], \"ok\": true, \"id\": \"p-1\"}}},"
	"   \"ship\": {\"response\": {\"type\": \"Shipped\", \"body\": \"plain text\","
	"   \"headers\": {\"correlation-id\": \"x\"}}}},"
	" \"event\": {\"a\": {\"b\": [null]}}, \"env\": {\"HOME\": \"/root\"}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_min_level = LOG_ERROR;
	ctx = json_loads(ctx_text, 0, NULL);
	if (ctx == NULL)
		abort();
	return 0;
}

static void on_ref(const struct tmpl_ref *ref, void *arg)
{
	size_t len;

	(void)arg;
	FUZZ_CHECK(ref->string != NULL, "a reference without its string");
	len = strlen(ref->string);
	FUZZ_CHECK(ref->offset <= len && ref->path_offset <= len,
		   "offsets %zu/%zu outside a string of %zu bytes", ref->offset, ref->path_offset, len);
	FUZZ_CHECK(ref->n_segs > 0, "a reference without segments in \"%s\"", ref->string);
	for (size_t i = 0; i < ref->n_segs; i++)
		FUZZ_CHECK(ref->segs[i] != NULL, "segment %zu is NULL", i);
}

static void exercise(struct tmpl *t, size_t len)
{
	char err[512];
	json_t *v;
	char *s;

	(void)tmpl_is_constant(t);
	tmpl_visit_refs(t, on_ref, NULL);
	err[0] = '\0';
	v = tmpl_eval(t, ctx, err, sizeof(err));
	FUZZ_CHECK(v != NULL || err[0] != '\0', "evaluation failed without a message");
	if (v != NULL) {
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		FUZZ_CHECK(s != NULL, "a result that does not serialize");
		free(s);
	}
	err[0] = '\0';
	s = tmpl_eval_string(t, ctx, err, sizeof(err));
	FUZZ_CHECK((s != NULL) == (v != NULL), "tmpl_eval %s but tmpl_eval_string %s (%s)",
		   v ? "succeeded" : "failed", s ? "succeeded" : "failed", err);
	free(s);
	json_decref(v);
	(void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	char err[512];
	size_t off = 0, n = 0, len = strlen(text);   /* a NUL ends the string, as in C callers */
	struct tmpl *t;
	json_t *value = NULL;
	const json_t *bad = NULL;
	char **segs;

	if (size > 0 && (data[0] == '{' || data[0] == '['))
		value = json_loadb((const char *)data, size, 0, NULL);
	err[0] = '\0';
	if (value != NULL) {
		t = tmpl_compile_ex(value, err, sizeof(err), &off, &bad);
		if (t == NULL) {
			FUZZ_CHECK(err[0] != '\0', "a JSON template refused without a message");
			FUZZ_CHECK(bad == NULL || json_is_string(bad), "the offending value is not a string");
			if (bad != NULL)
				FUZZ_CHECK(off <= json_string_length(bad), "offset %zu outside \"%s\"",
					   off, json_string_value(bad));
		}
		json_decref(value);  /* the template must not borrow from it */
	} else {
		t = tmpl_compile_string(text, err, sizeof(err), &off);
		if (t == NULL) {
			FUZZ_CHECK(err[0] != '\0', "a template refused without a message");
			FUZZ_CHECK(off <= len, "error offset %zu outside a string of %zu bytes", off, len);
		}
	}
	if (t != NULL) {
		exercise(t, len);
		tmpl_free(t);
	}
	segs = expr_path_split(text, &n);
	if (segs != NULL) {
		FUZZ_CHECK(n > 0, "a path that splits into nothing");
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(segs[i] != NULL, "segment %zu of %zu missing", i, n);
		FUZZ_CHECK(segs[n] == NULL, "the segment list is not NULL-terminated");
		expr_path_free(segs);
		(void)expr_lookup(ctx, text);
	}
	free(text);
	return 0;
}
