/* fuzz-reply.c: what sagad makes of participants' answers: HTTP responses (classification by
 * the step's success rule, what the saga keeps) and Kafka records (the message JSON, reply
 * correlation and judgement, trigger filters and the input they make), followed by rendering
 * the later steps' requests from the kept data, as the engine does next.
 *
 * Input: byte 0 bit 0 chooses HTTP (0) or Kafka (1).
 *   HTTP:  bytes 1-2 the status (100..599), byte 3 the content type (bits 0-1: JSON,
 *          problem+json, text, none), the transport error (bits 2-3: none, timeout,
 *          connection, too big) and request_sent (bit 4); the rest is the body.
 *   Kafka: byte 1 picks the topic among those the flows use; then "name: value" header lines
 *          (":key: K" sets the record key) up to an empty line; the rest is the value.
 * Every call and Kafka step of flows/ and tests/fuzz/flows/ judges the same answer.
 *
 * Checks: every refusal says why; an outcome or verdict is one of its enum's values; a
 * success's kept response renders later requests or fails with a template message; a trigger's
 * input is an object or an error with a message. */
#include <string.h>
#include <jansson.h>
#include "dsl.h"
#include "engine_internal.h"
#include "error.h"
#include "flow.h"
#include "fuzz.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

#ifndef TEST_SRCDIR
#error "build with -DTEST_SRCDIR='\"/abs/path/to/source\"'"
#endif

static struct flow_set flows;
static const char **topics;
static size_t n_topics;

static void add_topic(const char *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < n_topics; i++)
		if (strcmp(topics[i], t) == 0)
			return;
	topics = xrealloc(topics, (n_topics + 1) * sizeof(*topics));
	topics[n_topics++] = t;
}

static void load(const char *dir)
{
	struct dsl_errors errs = { 0 };

	if (dsl_load_dir(dir, NULL, &flows, &errs) != 0) {
		char *all = dsl_errors_format(&errs);
		FUZZ_CHECK(0, "%s: %s", dir, all);
	}
	dsl_errors_close(&errs);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_min_level = LOG_ERROR;
	flow_set_init(&flows);
	load(TEST_SRCDIR "/flows");
	load(TEST_SRCDIR "/tests/fuzz/flows");
	for (size_t k = 0; k < flows.n; k++) {
		const struct flow *f = flows.flows[k];

		for (size_t t = 0; t < f->n_triggers; t++)
			add_topic(f->triggers[t].topic);
		for (size_t i = 0; i < f->n_steps; i++) {
			const struct flow_step *st = &f->steps[i];

			if (st->participant == NULL || st->participant->kind != PARTICIPANT_KAFKA)
				continue;
			if (st->action.reply != NULL)
				add_topic(st->action.reply->topic);
			if (st->compensation != NULL && st->compensation->reply != NULL)
				add_topic(st->compensation->reply->topic);
		}
	}
	FUZZ_CHECK(n_topics > 0, "the flows use no Kafka topic");
	return 0;
}

/* The saga context a flow's steps read: input from the flow's defaults (or a stand-in). */
static json_t *context(const struct flow *f)
{
	json_t *input = json_object();
	char err[256];

	for (size_t i = 0; i < f->n_inputs; i++)
		json_object_set_new(input, f->inputs[i].name, json_string("1"));
	if (flow_check_input(f, &input, err, sizeof(err)) != 0) {
		json_decref(input);
		input = json_object();
	}
	return json_pack("{s:o, s:{s:s, s:s}, s:{}}", "input", input, "saga", "id",
			 "01J9ZZZZZZZZZZZZZZZZZZZZZZ", "flow", f->name, "steps");
}

/* Step i succeeded with resp: keep what the flow keeps, then render what follows. */
static void after_success(const struct flow *f, size_t i, json_t *resp)
{
	json_t *ctx = context(f), *kept = flow_keep(&f->steps[i], resp), *out;
	char err[512];

	FUZZ_CHECK(kept != NULL, "flow_keep gave nothing");
	json_object_set_new(json_object_get(ctx, "steps"), f->steps[i].name,
			    json_pack("{s:o}", "response", kept));
	for (size_t j = 0; j < f->n_steps; j++) {
		const struct flow_step *st = &f->steps[j];
		int rc;

		err[0] = '\0';
		if (st->kind == STEP_KIND_SAGA)
			continue; /* acts on another saga: no request to render */
		if (st->kind == STEP_KIND_SUBFLOW) {
			json_t *child = flow_render_subflow_input(st, ctx, err, sizeof(err));
			FUZZ_CHECK(child != NULL || err[0] != '\0', "sub-flow input error without a message");
			json_decref(child);
			continue;
		}
		/* Step i's own compensation reads its response; later steps read it too. */
		if (j < i)
			continue;
		for (int phase = j == i; phase < 2; phase++) {
			const struct flow_request *rq = phase == 0 ? &st->action : st->compensation;

			if (rq == NULL)
				continue;
			if (st->participant->kind == PARTICIPANT_KAFKA) {
				struct flow_message m;
				char *corr;

				memset(&m, 0, sizeof(m));
				rc = flow_render_message(st->participant, rq, ctx, &m, err, sizeof(err));
				if (rc == 0)
					flow_message_close(&m);
				if (rq->reply != NULL) {
					corr = flow_render_correlation(rq->reply, ctx, "key", err,
								       sizeof(err));
					free(corr);
				}
			} else {
				struct flow_rendered r;

				memset(&r, 0, sizeof(r));
				rc = flow_render_request(st->participant, rq, ctx, &r, err, sizeof(err));
				if (rc == 0)
					flow_rendered_close(&r);
			}
			FUZZ_CHECK(rc == 0 || (rc == SAGAD_ETEMPLATE && err[0] != '\0'),
				   "rendering step %s: %d \"%s\"", st->name, rc, err);
		}
	}
	err[0] = '\0';
	out = flow_render_output(f, ctx, err, sizeof(err));
	FUZZ_CHECK(out != NULL || err[0] != '\0', "output error without a message");
	json_decref(out);
	json_decref(ctx);
}

static const char *const content_types[] = { "application/json",
	"application/problem+json; charset=utf-8", "text/plain", NULL };
static const int transport_errors[] = { 0, SAGAD_ETIMEOUT, SAGAD_ECONNECT, SAGAD_ETOOBIG };

static void http_answer(const uint8_t *data, size_t size)
{
	struct http_result res;
	unsigned sel;
	char *body;

	if (size < 4)
		return;
	memset(&res, 0, sizeof(res));
	res.status = 100 + (int)(((unsigned)data[1] << 8 | data[2]) % 500);
	sel = data[3];
	res.content_type = content_types[sel & 3];
	res.error = transport_errors[(sel >> 2) & 3];
	res.error_text = res.error ? "injected by the fuzzer" : NULL;
	res.request_sent = (sel >> 4) & 1;
	res.retry_after_ms = -1;
	body = fuzz_strndup(data + 4, size - 4);    /* NUL-terminated, as http.c gives it */
	res.body = res.error ? "" : body;
	res.body_len = res.error ? 0 : size - 4;
	for (size_t k = 0; k < flows.n; k++) {
		const struct flow *f = flows.flows[k];

		for (size_t i = 0; i < f->n_steps; i++) {
			const struct flow_step *st = &f->steps[i];

			if (st->kind != STEP_KIND_CALL || st->participant->kind != PARTICIPANT_HTTP)
				continue;
			for (int phase = 0; phase < 2; phase++) {
				const struct flow_request *rq = phase == 0 ? &st->action : st->compensation;
				const struct retry_policy *rp = phase == 0 ? &st->retry : &st->comp_retry;
				char err[512];
				json_t *stored, *resp;
				enum outcome o;

				if (rq == NULL)
					continue;
				err[0] = '\0';
				o = engine__http_outcome(&res, rq, rp, &stored, err, sizeof(err));
				FUZZ_CHECK(o >= OUT_SUCCESS && o <= OUT_UNKNOWN, "outcome %d", (int)o);
				/* What the saga keeps of an answer: always a value (on_http_done
				 * builds the step's response from it). */
				FUZZ_CHECK(stored != NULL || res.error != 0, "an answer with "
					   "status %d left nothing to keep", res.status);
				FUZZ_CHECK(o == OUT_SUCCESS || err[0] != '\0', "step %s: outcome %d "
					   "without a reason", st->name, (int)o);
				FUZZ_CHECK(o != OUT_SUCCESS || res.error == 0, "a transport error "
					   "judged a success");
				if (o == OUT_SUCCESS && phase == 0 && stored != NULL) {
					resp = json_pack("{s:i, s:O}", "status", res.status, "body", stored);
					after_success(f, i, resp);
					json_decref(resp);
				}
				json_decref(stored);
			}
		}
	}
	free(body);
}

static void judge_reply(const struct flow *f, size_t i, const struct flow_reply *rp, json_t *msg,
			int phase)
{
	enum reply_verdict v;
	const char *corr;
	char err[512];

	if (rp == NULL)
		return;
	corr = flow_reply_correlation(rp, msg);
	(void)corr;
	err[0] = '\0';
	v = flow_judge_reply(rp, msg, err, sizeof(err));
	FUZZ_CHECK(v == REPLY_NOT_MINE || v == REPLY_SUCCESS || v == REPLY_FAILURE, "verdict %d", (int)v);
	FUZZ_CHECK(v != REPLY_FAILURE || err[0] != '\0', "a failure without a reason");
	if (v == REPLY_SUCCESS && phase == 0) {
		struct flow_reply type_shape = { .correlate_path = rp->type_path };
		const char *type = rp->type_path ? flow_reply_correlation(&type_shape, msg) : NULL;
		json_t *resp = json_pack("{s:o, s:O, s:O, s:O, s:O, s:O}", "type",
					 type ? json_string(type) : json_null(), "body",
					 json_object_get(msg, "body"), "headers",
					 json_object_get(msg, "headers"), "topic",
					 json_object_get(msg, "topic"), "partition",
					 json_object_get(msg, "partition"), "offset",
					 json_object_get(msg, "offset"));

		FUZZ_CHECK(resp != NULL, "the reply does not make a response");
		after_success(f, i, resp);
		json_decref(resp);
	}
}

static void kafka_record(const uint8_t *data, size_t size)
{
	struct kafka_record rec;
	const char **hv = NULL;
	char *text, *p, *end;
	size_t nh = 0;
	json_t *msg;

	if (size < 2)
		return;
	text = fuzz_strndup(data + 2, size - 2);
	memset(&rec, 0, sizeof(rec));
	rec.topic = topics[data[1] % n_topics];
	rec.partition = 3;
	rec.offset = 42;
	rec.timestamp_ms = 1795286022123;
	p = text;
	end = text + (size - 2);
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p)), *colon;

		if (nl == NULL || nl == p)
			break;
		*nl = '\0';
		colon = strchr(p, ':');
		if (strncmp(p, ":key:", 5) == 0) {
			rec.key = p + 5;
			rec.key_len = strlen(rec.key);
		} else if (colon != NULL) {
			*colon = '\0';
			hv = xrealloc(hv, (nh + 1) * 2 * sizeof(*hv));
			hv[2 * nh] = p;
			hv[2 * nh + 1] = colon[1] == ' ' ? colon + 2 : colon + 1;
			nh++;
		}
		p = nl + 1;
	}
	if (p < end && *p == '\n')
		p++;
	rec.headers = hv;
	rec.n_headers = nh;
	rec.value = p < end ? p : NULL;
	rec.value_len = p < end ? (size_t)(end - p) : 0;
	msg = engine__kafka_record_json(&rec);
	FUZZ_CHECK(msg != NULL, "a record on topic %s is unreadable", rec.topic);
	for (size_t k = 0; k < flows.n; k++) {
		const struct flow *f = flows.flows[k];

		for (size_t t = 0; t < f->n_triggers; t++) {
			const struct flow_trigger *tr = &f->triggers[t];
			char err[512];
			json_t *input;

			if (strcmp(tr->topic, rec.topic) != 0 || !flow_trigger_matches(tr, msg))
				continue;
			err[0] = '\0';
			input = flow_trigger_input(tr, msg, err, sizeof(err));
			FUZZ_CHECK(input != NULL || err[0] != '\0', "trigger input refused without a reason");
			FUZZ_CHECK(input == NULL || json_is_object(input), "a trigger input that is not "
				   "an object");
			if (input != NULL) {
				err[0] = '\0';
				if (flow_check_input(f, &input, err, sizeof(err)) != 0)
					FUZZ_CHECK(err[0] != '\0', "input refused without a reason");
				json_decref(input);
			}
		}
		for (size_t i = 0; i < f->n_steps; i++) {
			const struct flow_step *st = &f->steps[i];

			if (st->participant == NULL || st->participant->kind != PARTICIPANT_KAFKA)
				continue;
			judge_reply(f, i, st->action.reply, msg, 0);
			if (st->compensation != NULL)
				judge_reply(f, i, st->compensation->reply, msg, 1);
		}
	}
	json_decref(msg);
	free(hv);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		kafka_record(data, size);
	else
		http_answer(data, size);
	return 0;
}
