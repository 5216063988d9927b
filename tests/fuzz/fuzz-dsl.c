/* fuzz-dsl.c: the flow loader (dsl_load_buffer) on arbitrary bytes as a flow file.
 *
 * Checks: a load either gives a flow and no error, or an error code with at least one
 * diagnostic, each with a message and a line/column inside the file (0 when unknown); a loaded
 * flow links on its own, shows as JSON, accepts the empty input or says why not, and renders
 * every step's request, sub-flow input and the output without crashing (template errors are
 * fine: later steps' responses are missing). Seeds: flows/, tests/fixtures/dsl/. */
#include <string.h>
#include <jansson.h>
#include "dsl.h"
#include "error.h"
#include "expr.h"
#include "flow.h"
#include "fuzz.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_min_level = LOG_ERROR;
	return 0;
}

/* Lines as YAML counts them: \n, \r\n, a lone \r, and (UTF-8) NEL, LS, PS end a line. */
static size_t count_lines(const uint8_t *data, size_t size)
{
	size_t n = 1;

	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' || (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n')))
			n++;
		else if (i + 1 < size && data[i] == 0xc2 && data[i + 1] == 0x85)
			n++;
		else if (i + 2 < size && data[i] == 0xe2 && data[i + 1] == 0x80 &&
			 (data[i + 2] == 0xa8 || data[i + 2] == 0xa9))
			n++;
	}
	return n;
}

static void exercise(struct flow *f)
{
	struct flow_set fs;
	struct dsl_errors errs = { 0 };
	char err[512];
	json_t *input = json_object(), *ctx, *out;
	char *text;

	flow_set_init(&fs);
	FUZZ_CHECK(flow_set_add(&fs, f) == 0, "a new set refused the flow");
	/* Alone in its set, a sub-flow step names an unknown flow: an error, never a crash. */
	dsl_link(&fs, &errs);
	dsl_errors_close(&errs);
	flow_set_close(&fs);

	FUZZ_CHECK(f->name != NULL && f->name[0] != '\0', "a loaded flow has a name");
	if (f->source != NULL) {
		text = json_dumps(f->source, JSON_COMPACT);
		FUZZ_CHECK(text != NULL, "the flow's source does not serialize");
		free(text);
	}
	err[0] = '\0';
	if (flow_check_input(f, &input, err, sizeof(err)) != 0)
		FUZZ_CHECK(err[0] != '\0', "an input refusal without a message");
	ctx = json_pack("{s:O, s:{s:s, s:s}, s:{}}", "input", input, "saga", "id",
			"01J9ZZZZZZZZZZZZZZZZZZZZZZ", "flow", f->name, "steps");
	for (size_t i = 0; i < f->n_steps; i++) {
		const struct flow_step *st = &f->steps[i];
		struct flow_rendered r;
		struct flow_message m;
		json_t *child;

		if (st->kind == STEP_KIND_SUBFLOW) {
			err[0] = '\0';
			child = flow_render_subflow_input(st, ctx, err, sizeof(err));
			FUZZ_CHECK(child != NULL || err[0] != '\0', "a sub-flow input error without a message");
			json_decref(child);
			continue;
		}
		if (st->kind == STEP_KIND_SAGA) {
			char *v;

			FUZZ_CHECK(st->saga_ref != NULL && st->saga_ref->key_value != NULL,
				   "saga step %s without its target's key", st->name);
			err[0] = '\0';
			v = tmpl_eval_string(st->saga_ref->key_value, ctx, err, sizeof(err));
			FUZZ_CHECK(v != NULL || err[0] != '\0', "a saga key error without a message");
			free(v);
			continue;
		}
		FUZZ_CHECK(st->participant != NULL, "step %s has no participant", st->name);
		for (int phase = 0; phase < 2; phase++) {
			const struct flow_request *rq = phase == 0 ? &st->action : st->compensation;
			int rc;

			if (rq == NULL)
				continue;
			err[0] = '\0';
			if (st->participant->kind == PARTICIPANT_KAFKA) {
				memset(&m, 0, sizeof(m));
				rc = flow_render_message(st->participant, rq, ctx, &m, err, sizeof(err));
				if (rc == 0)
					flow_message_close(&m);
			} else {
				memset(&r, 0, sizeof(r));
				rc = flow_render_request(st->participant, rq, ctx, &r, err, sizeof(err));
				if (rc == 0) {
					FUZZ_CHECK(r.url != NULL && r.method != NULL, "a rendered request "
						   "without method or URL");
					flow_rendered_close(&r);
				}
			}
			FUZZ_CHECK(rc == 0 || (rc == SAGAD_ETEMPLATE && err[0] != '\0'),
				   "rendering step %s gave %d with message \"%s\"", st->name, rc, err);
		}
	}
	err[0] = '\0';
	out = flow_render_output(f, ctx, err, sizeof(err));
	FUZZ_CHECK(out != NULL || err[0] != '\0', "an output error without a message");
	json_decref(out);
	json_decref(ctx);
	json_decref(input);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dsl_errors errs = { 0 };
	struct flow *f = NULL;
	size_t lines = count_lines(data, size);
	int rc;
	char *all;

	rc = dsl_load_buffer("fuzz.yaml", (const char *)data, size, NULL, &f, &errs);
	if (rc == 0) {
		FUZZ_CHECK(f != NULL, "success without a flow");
		FUZZ_CHECK(errs.n == 0, "success with %zu errors", errs.n);
		exercise(f);
		flow_unref(f);
	} else {
		FUZZ_CHECK(f == NULL, "failure with a flow");
		FUZZ_CHECK(rc == SAGAD_ESYNTAX || rc == SAGAD_ELIMIT, "unexpected code %d", rc);
		FUZZ_CHECK(errs.n > 0, "failure %d without a diagnostic", rc);
		for (size_t i = 0; i < errs.n; i++) {
			const struct dsl_error *e = &errs.v[i];

			FUZZ_CHECK(e->message != NULL && e->message[0] != '\0', "an empty message");
			FUZZ_CHECK(e->line >= 0 && e->col >= 0 && (size_t)e->line <= lines + 1,
				   "error at %d:%d in a file of %zu lines: %s", e->line, e->col, lines,
				   e->message);
		}
		all = dsl_errors_format(&errs);
		FUZZ_CHECK(all != NULL && strstr(all, "fuzz.yaml:") == all, "format: %s", all);
		free(all);
	}
	dsl_errors_close(&errs);
	return 0;
}
