/* kafka-mock.c: sagad-kafka-mock, librdkafka's mock cluster (rdkafka_mock.h) as its own process.
 *
 * The demo and the end-to-end tests need a Kafka endpoint everywhere, without a JVM. This
 * program creates an rd_kafka_t only for bookkeeping (it never connects anywhere), starts an
 * in-memory cluster of N brokers on 127.0.0.1 with rd_kafka_mock_cluster_new(), creates the
 * topics given with --topic, prints the bootstrap servers as the first line of stdout and
 * writes them to --bootstrap-file, then serves a small JSON control API (libmicrohttpd, one
 * internal thread) for fault injection until SIGTERM or SIGINT:
 *
 *     GET    /                                  {"bootstrap":..., "brokers":[1,2,3], ...}
 *     POST   /topics                            {"name":"t","partitions":3,"replication_factor":1}
 *     POST   /topics/{name}/error               {"error":"TOPIC_AUTHORIZATION_FAILED"}
 *     POST   /brokers/{id|all}/down             rd_kafka_mock_broker_set_down
 *     POST   /brokers/{id|all}/up               rd_kafka_mock_broker_set_up
 *     GET    /brokers/{id}/errors/{api}         {"pending":n} (per-broker error stack)
 *     POST   /partitions/leader                 {"topic":"t","partition":0,"broker":2}
 *     POST   /errors                            {"api":"Produce","errors":["NOT_LEADER_FOR_PARTITION"],
 *                                                "broker":2, "rtt_ms":100}  (broker, rtt_ms optional)
 *     DELETE /errors/{api}                      rd_kafka_mock_clear_request_errors
 *     POST   /coordinator                       {"type":"group","key":"sagad","broker":2}
 *     POST   /rtt                               {"broker":1,"rtt_ms":500}
 *
 * Errors are 4xx with {"error":{"code":...,"message":...}}; code is EINVAL (400), ENOENT (404),
 * or the librdkafka error name when the mock cluster refused (409 for TOPIC_ALREADY_EXISTS,
 * else 400). Every control action is logged as one logfmt line on stderr.
 *
 * Threads: the mock cluster runs its own thread; its public functions post an operation to
 * that thread and wait for the answer, so they may be called from the control thread. All
 * control requests run on libmicrohttpd's single internal thread, which alone touches
 * struct mock after startup; main() only waits for a signal, then stops that thread first. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <jansson.h>
#include <microhttpd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "error.h"
#include "log.h"
#include "util.h"

#define MAX_BROKERS 32
#define MAX_BODY (64 * 1024)

/* Kafka ApiKeys the 2.0.2 mock answers (src/rdkafka_mock_handlers.c). Debian does not ship
 * rdkafka_protocol.h, so the numbers are written here (values from its RD_KAFKAP_* list). */
static const struct kafka_api {
	const char *name;
	int16_t key;
} kafka_apis[] = {
	{ "Produce", 0 },          { "Fetch", 1 },            { "ListOffsets", 2 },
	{ "Metadata", 3 },         { "OffsetCommit", 8 },     { "OffsetFetch", 9 },
	{ "FindCoordinator", 10 }, { "JoinGroup", 11 },       { "Heartbeat", 12 },
	{ "LeaveGroup", 13 },      { "SyncGroup", 14 },       { "ApiVersion", 18 },
	{ "InitProducerId", 22 },  { "AddPartitionsToTxn", 24 }, { "AddOffsetsToTxn", 25 },
	{ "EndTxn", 26 },          { "TxnOffsetCommit", 28 },
};
#define N_APIS (sizeof(kafka_apis) / sizeof(kafka_apis[0]))

struct topic_spec {
	char *name;
	int partitions, replication_factor;
};

struct options {
	int brokers;
	struct topic_spec *topics;
	int n_topics;
	const char *bootstrap_file;
	const char *control_addr;
	const char *control_file;
	bool debug;
};

/* The running cluster; owned by main(). */
struct mock {
	rd_kafka_t *rk;                 /* bookkeeping handle; connects nowhere */
	rd_kafka_mock_cluster_t *mc;
	int brokers;                    /* ids are 1..brokers */
	char *bootstrap;                /* copy of rd_kafka_mock_cluster_bootstraps() */
	bool down[MAX_BROKERS + 1];     /* as set through the control API */
	int rtt_ms[MAX_BROKERS + 1];
	struct MHD_Daemon *httpd;
	char *control_url;
};

/* A control request being received; freed by on_request_done(). */
struct req {
	struct strbuf body;
	bool too_big;
};

/* An answer: HTTP status and a JSON body (owned). */
struct answer {
	unsigned status;
	json_t *body;
};

/* ------------------------------------------------------------------------------------------ */
/* Command line */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sagad-kafka-mock [--brokers N] [--topic NAME[:PARTITIONS[:RF]]]...\n"
		"                        [--bootstrap-file FILE] [--control ADDR:PORT] [--control-file FILE]\n"
		"                        [--debug]\n"
		"\n"
		"Starts librdkafka's in-memory mock Kafka cluster (real protocol, no SSL/SASL, no admin\n"
		"API) on 127.0.0.1, prints its bootstrap servers as the first line of stdout and serves a\n"
		"JSON control API for fault injection until SIGTERM/SIGINT.\n"
		"\n"
		"  --brokers N            number of brokers, ids 1..N (default 3, at most %d)\n"
		"  --topic SPEC           create a topic; PARTITIONS default 1, RF default 1 (repeatable).\n"
		"                         Topics a producer names are auto-created with 4 partitions.\n"
		"  --bootstrap-file FILE  also write the bootstrap servers there (atomically)\n"
		"  --control ADDR:PORT    control API address (default 127.0.0.1:0, port 0 = any)\n"
		"  --control-file FILE    write the control API URL there (atomically)\n"
		"  --debug                log the mock cluster's own debug lines (librdkafka debug=mock)\n"
		"\n"
		"Control API: see docs/kafka.md.\n",
		MAX_BROKERS);
}

/* Parses a decimal int in [min, max]; returns 0 or SAGAD_EINVAL. */
static int parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return SAGAD_EINVAL;
	*out = (int)v;
	return 0;
}

/* NAME[:PARTITIONS[:RF]] */
static int parse_topic(const char *arg, struct topic_spec *t)
{
	char *copy = xstrdup(arg), *p, *r;
	int rc = SAGAD_EINVAL;

	t->partitions = 1;
	t->replication_factor = 1;
	if ((p = strchr(copy, ':')))
		*p++ = '\0';
	if (!*copy)
		goto out;
	if (p) {
		if ((r = strchr(p, ':')))
			*r++ = '\0';
		if (parse_int(p, 1, 100000, &t->partitions) < 0)
			goto out;
		if (r && parse_int(r, 1, MAX_BROKERS, &t->replication_factor) < 0)
			goto out;
	}
	t->name = xstrdup(copy);
	rc = 0;
out:
	free(copy);
	return rc;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	o->brokers = 3;
	o->control_addr = "127.0.0.1:0";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		}
		if (!strcmp(a, "--debug")) {
			o->debug = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "sagad-kafka-mock: unknown option or missing value: %s\n", a);
			return SAGAD_EINVAL;
		}
		i++;
		if (!strcmp(a, "--brokers")) {
			if (parse_int(v, 1, MAX_BROKERS, &o->brokers) < 0) {
				fprintf(stderr, "sagad-kafka-mock: --brokers %s: want 1..%d\n", v, MAX_BROKERS);
				return SAGAD_EINVAL;
			}
		} else if (!strcmp(a, "--topic")) {
			o->topics = xrealloc(o->topics, sizeof(*o->topics) * (size_t)(o->n_topics + 1));
			if (parse_topic(v, &o->topics[o->n_topics]) < 0) {
				fprintf(stderr, "sagad-kafka-mock: --topic %s: want NAME[:PARTITIONS[:RF]]\n", v);
				return SAGAD_EINVAL;
			}
			o->n_topics++;
		} else if (!strcmp(a, "--bootstrap-file")) {
			o->bootstrap_file = v;
		} else if (!strcmp(a, "--control")) {
			o->control_addr = v;
		} else if (!strcmp(a, "--control-file")) {
			o->control_file = v;
		} else {
			fprintf(stderr, "sagad-kafka-mock: unknown option %s (see --help)\n", a);
			return SAGAD_EINVAL;
		}
	}
	for (int i = 0; i < o->n_topics; i++) {
		if (o->topics[i].replication_factor > o->brokers) {
			fprintf(stderr, "sagad-kafka-mock: --topic %s: replication factor %d > %d brokers\n",
				o->topics[i].name, o->topics[i].replication_factor, o->brokers);
			return SAGAD_EINVAL;
		}
	}
	return 0;
}

static void options_close(struct options *o)
{
	for (int i = 0; i < o->n_topics; i++)
		free(o->topics[i].name);
	free(o->topics);
}

/* Writes "text\n" to path through path.tmp.PID + rename(), so a reader never sees half a file. */
static int write_file_atomic(const char *path, const char *text)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	int rc = 0;

	if (!f) {
		rc = -errno;
	} else {
		int w = fprintf(f, "%s\n", text);
		if (fclose(f) != 0 || w < 0)
			rc = SAGAD_EIO;
		else if (rename(tmp, path) != 0)
			rc = -errno;
	}
	if (rc < 0) {
		log_error("event=write_failed file=%s error=\"%s\"", path, sagad_strerror(rc));
		unlink(tmp);
	}
	free(tmp);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Names: Kafka APIs and error codes */

static const struct kafka_api *api_find(const char *name)
{
	int n;

	for (size_t i = 0; i < N_APIS; i++)
		if (!strcasecmp(name, kafka_apis[i].name))
			return &kafka_apis[i];
	if (!strcasecmp(name, "ApiVersions"))
		return api_find("ApiVersion");
	if (parse_int(name, 0, 100, &n) == 0)
		for (size_t i = 0; i < N_APIS; i++)
			if (kafka_apis[i].key == n)
				return &kafka_apis[i];
	return NULL;
}

static json_t *api_names(void)
{
	json_t *a = json_array();

	for (size_t i = 0; i < N_APIS; i++)
		json_array_append_new(a, json_string(kafka_apis[i].name));
	return a;
}

/* Broker-side error codes make sense in a response; of librdkafka's internal (negative) ones,
 * only _TRANSPORT, which makes the mock broker close the connection. */
static bool err_injectable(rd_kafka_resp_err_t code)
{
	return code >= 0 || code == RD_KAFKA_RESP_ERR__TRANSPORT;
}

/* Finds an error by name ("NOT_LEADER_FOR_PARTITION", "RD_KAFKA_RESP_ERR_...", "_TRANSPORT",
 * any case) or number. Returns 0 or SAGAD_EINVAL. */
static int err_find(const char *name, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *descs;
	size_t cnt;
	int n;

	if (!strncasecmp(name, "RD_KAFKA_RESP_ERR_", 18))
		name += 18;
	rd_kafka_get_err_descs(&descs, &cnt);
	for (size_t i = 0; i < cnt; i++) {
		if (descs[i].name && err_injectable(descs[i].code) && !strcasecmp(name, descs[i].name)) {
			*out = descs[i].code;
			return 0;
		}
	}
	if (parse_int(name, -200, 1000, &n) == 0 && err_injectable(n)) {
		for (size_t i = 0; i < cnt; i++) {
			if (descs[i].name && (int)descs[i].code == n) {
				*out = descs[i].code;
				return 0;
			}
		}
	}
	return SAGAD_EINVAL;
}

static json_t *err_names(void)
{
	const struct rd_kafka_err_desc *descs;
	json_t *a = json_array();
	size_t cnt;

	rd_kafka_get_err_descs(&descs, &cnt);
	for (size_t i = 0; i < cnt; i++)
		if (descs[i].name && err_injectable(descs[i].code))
			json_array_append_new(a, json_string(descs[i].name));
	return a;
}

/* ------------------------------------------------------------------------------------------ */
/* Answers */

static struct answer ok_answer(json_t *body)
{
	return (struct answer){ 200, body ? body : json_object() };
}

static struct answer err_answer(unsigned status, const char *code, json_t *extra, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* extra (owned, may be NULL) is merged into the error object, e.g. {"valid":[...]}. */
static struct answer err_answer(unsigned status, const char *code, json_t *extra, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	json_t *e;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if (extra) {
		json_object_update(e, extra);
		json_decref(extra);
	}
	return (struct answer){ status, json_pack("{s:o}", "error", e) };
}

/* The mock cluster refused: TOPIC_ALREADY_EXISTS is a conflict, the rest bad requests. */
static struct answer kafka_err_answer(rd_kafka_resp_err_t err, const char *what)
{
	return err_answer(err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS ? 409 : 400,
			  rd_kafka_err2name(err), NULL, "%s: %s", what, rd_kafka_err2str(err));
}

/* ------------------------------------------------------------------------------------------ */
/* Request bodies */

/* Reads a string member; errbuf gets the message when it is missing (and required) or not a
 * string. Returns 0 or SAGAD_EINVAL; *out is borrowed from obj (NULL when absent). */
static int get_str(json_t *obj, const char *key, bool required, const char **out, char *err, size_t len)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v && !required)
		return 0;
	if (!json_is_string(v) || !*json_string_value(v)) {
		snprintf(err, len, "\"%s\": a non-empty string is required", key);
		return SAGAD_EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

/* Reads an integer member in [min, max]; *out keeps its value when the member is absent and
 * not required. */
static int get_int(json_t *obj, const char *key, bool required, int min, int max, int *out,
		   char *err, size_t len)
{
	json_t *v = json_object_get(obj, key);

	if (!v && !required)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(err, len, "\"%s\": an integer from %d to %d is required", key, min, max);
		return SAGAD_EINVAL;
	}
	*out = (int)json_integer_value(v);
	return 0;
}

/* Parses the request body as a JSON object (owned by the caller), or fills *bad. */
static json_t *parse_body(const struct req *r, struct answer *bad)
{
	json_error_t jerr;
	json_t *j;

	if (r->too_big) {
		*bad = err_answer(413, "ELIMIT", NULL, "request body larger than %d bytes", MAX_BODY);
		return NULL;
	}
	if (r->body.len == 0) {
		*bad = err_answer(400, "EINVAL", NULL, "a JSON object body is required");
		return NULL;
	}
	j = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		*bad = err_answer(400, "EINVAL", NULL, "body: line %d column %d: %s", jerr.line,
				  jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		*bad = err_answer(400, "EINVAL", NULL, "body: a JSON object is required");
		return NULL;
	}
	return j;
}

/* ------------------------------------------------------------------------------------------ */
/* Control actions */

static json_t *cluster_info(const struct mock *m)
{
	json_t *brokers = json_array(), *down = json_array(), *rtt = json_object();

	for (int id = 1; id <= m->brokers; id++) {
		json_array_append_new(brokers, json_integer(id));
		if (m->down[id])
			json_array_append_new(down, json_integer(id));
		if (m->rtt_ms[id]) {
			char k[16];
			snprintf(k, sizeof(k), "%d", id);
			json_object_set_new(rtt, k, json_integer(m->rtt_ms[id]));
		}
	}
	return json_pack("{s:s, s:o, s:o, s:o, s:s}", "bootstrap", m->bootstrap, "brokers", brokers,
			 "down", down, "rtt_ms", rtt, "control", m->control_url ? m->control_url : "");
}

static int create_topic(struct mock *m, const char *name, int partitions, int rf)
{
	rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(m->mc, name, partitions, rf);
	char q[512];

	if (err) {
		log_warn("event=topic_create_failed topic=%s error=%s", log_quote(name, q, sizeof(q)),
			 rd_kafka_err2name(err));
		return err;
	}
	log_info("event=topic_created topic=%s partitions=%d replication_factor=%d",
		 log_quote(name, q, sizeof(q)), partitions, rf);
	return 0;
}

static struct answer do_create_topic(struct mock *m, json_t *b)
{
	const char *name;
	int parts = 1, rf = 1, err;
	char e[256];

	if (get_str(b, "name", true, &name, e, sizeof(e)) < 0 ||
	    get_int(b, "partitions", false, 1, 100000, &parts, e, sizeof(e)) < 0 ||
	    get_int(b, "replication_factor", false, 1, m->brokers, &rf, e, sizeof(e)) < 0)
		return err_answer(400, "EINVAL", NULL, "POST /topics: %s", e);
	if ((err = create_topic(m, name, parts, rf)) != 0)
		return kafka_err_answer(err, name);
	return ok_answer(json_pack("{s:s, s:i, s:i}", "name", name, "partitions", parts,
				   "replication_factor", rf));
}

static struct answer do_topic_error(struct mock *m, const char *topic, json_t *b)
{
	const char *name;
	rd_kafka_resp_err_t code;
	char e[256], q[512];

	if (get_str(b, "error", true, &name, e, sizeof(e)) < 0)
		return err_answer(400, "EINVAL", NULL, "POST /topics/%s/error: %s", topic, e);
	if (err_find(name, &code) < 0)
		return err_answer(400, "EINVAL", json_pack("{s:o}", "valid", err_names()),
				  "unknown Kafka error \"%s\" (see \"valid\")", name);
	rd_kafka_mock_topic_set_error(m->mc, topic, code);
	log_info("event=topic_error topic=%s error=%s", log_quote(topic, q, sizeof(q)),
		 rd_kafka_err2name(code));
	return ok_answer(json_pack("{s:s, s:s}", "topic", topic, "error", rd_kafka_err2name(code)));
}

/* Parses a broker id ("1".."N", or "all" when allow_all: returns -1). */
static int parse_broker(const struct mock *m, const char *s, bool allow_all, int *id)
{
	if (allow_all && !strcmp(s, "all")) {
		*id = -1;
		return 0;
	}
	return parse_int(s, 1, m->brokers, id);
}

static struct answer do_broker_updown(struct mock *m, const char *sid, bool up)
{
	int id, first, last;

	if (parse_broker(m, sid, true, &id) < 0)
		return err_answer(404, "ENOENT", NULL, "no broker \"%s\" (brokers are 1..%d, or all)",
				  sid, m->brokers);
	first = id < 0 ? 1 : id;
	last = id < 0 ? m->brokers : id;
	for (int b = first; b <= last; b++) {
		rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(m->mc, b)
					     : rd_kafka_mock_broker_set_down(m->mc, b);
		if (err)
			return kafka_err_answer(err, up ? "broker up" : "broker down");
		m->down[b] = !up;
		log_info("event=%s broker=%d", up ? "broker_up" : "broker_down", b);
	}
	return ok_answer(cluster_info(m));
}

static struct answer do_set_leader(struct mock *m, json_t *b)
{
	const char *topic;
	int part = 0, broker = 0;
	rd_kafka_resp_err_t err;
	char e[256], q[512];

	if (get_str(b, "topic", true, &topic, e, sizeof(e)) < 0 ||
	    get_int(b, "partition", true, 0, INT32_MAX, &part, e, sizeof(e)) < 0 ||
	    get_int(b, "broker", true, -1, m->brokers, &broker, e, sizeof(e)) < 0)
		return err_answer(400, "EINVAL", NULL, "POST /partitions/leader: %s (broker -1: no leader)", e);
	if (broker == 0)
		return err_answer(400, "EINVAL", NULL, "POST /partitions/leader: broker 0 does not exist "
				  "(brokers are 1..%d; -1 means no leader)", m->brokers);
	if ((err = rd_kafka_mock_partition_set_leader(m->mc, topic, part, broker)) != 0)
		return kafka_err_answer(err, topic);
	log_info("event=leader_set topic=%s partition=%d broker=%d", log_quote(topic, q, sizeof(q)),
		 part, broker);
	return ok_answer(json_pack("{s:s, s:i, s:i}", "topic", topic, "partition", part, "leader", broker));
}

static struct answer do_push_errors(struct mock *m, json_t *b)
{
	const char *api_name;
	const struct kafka_api *api;
	json_t *list = json_object_get(b, "errors"), *v, *names;
	rd_kafka_resp_err_t *codes;
	int broker = 0, rtt = 0;
	size_t i, n;
	char e[256];
	struct answer a;

	if (get_str(b, "api", true, &api_name, e, sizeof(e)) < 0 ||
	    get_int(b, "broker", false, 1, m->brokers, &broker, e, sizeof(e)) < 0 ||
	    get_int(b, "rtt_ms", false, 0, 600000, &rtt, e, sizeof(e)) < 0)
		return err_answer(400, "EINVAL", NULL, "POST /errors: %s", e);
	if (!(api = api_find(api_name)))
		return err_answer(400, "EINVAL", json_pack("{s:o}", "valid", api_names()),
				  "unknown Kafka API \"%s\" (see \"valid\")", api_name);
	if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 10000)
		return err_answer(400, "EINVAL", NULL, "POST /errors: \"errors\": a non-empty array of "
				  "error names is required");
	if (rtt && !broker)
		return err_answer(400, "EINVAL", NULL, "POST /errors: \"rtt_ms\" needs \"broker\"");
	n = json_array_size(list);
	codes = xmalloc(n * sizeof(*codes));
	names = json_array();
	json_array_foreach(list, i, v) {
		if (!json_is_string(v) || err_find(json_string_value(v), &codes[i]) < 0) {
			a = err_answer(400, "EINVAL", json_pack("{s:o}", "valid", err_names()),
				       "errors[%zu]: unknown Kafka error %s (see \"valid\")", i,
				       json_is_string(v) ? json_string_value(v) : "(not a string)");
			goto out;
		}
		json_array_append_new(names, json_string(rd_kafka_err2name(codes[i])));
	}
	if (broker) {
		/* No array variant in 2.0.2: push one at a time, they stack in order. */
		for (i = 0; i < n; i++) {
			rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
				m->mc, broker, api->key, 1, codes[i], rtt);
			if (err) {
				a = kafka_err_answer(err, "push broker errors");
				goto out;
			}
		}
	} else {
		rd_kafka_mock_push_request_errors_array(m->mc, api->key, n, codes);
	}
	{
		char *s = json_dumps(names, JSON_COMPACT);
		log_info("event=errors_pushed api=%s api_key=%d broker=%d rtt_ms=%d errors=%s",
			 api->name, api->key, broker, rtt, s);
		free(s);
	}
	a = ok_answer(json_pack("{s:s, s:i, s:O}", "api", api->name, "api_key", api->key, "errors", names));
	if (broker)
		json_object_set_new(a.body, "broker", json_integer(broker));
out:
	json_decref(names);
	free(codes);
	return a;
}

static struct answer do_clear_errors(struct mock *m, const char *api_name)
{
	const struct kafka_api *api = api_find(api_name);

	if (!api)
		return err_answer(404, "ENOENT", json_pack("{s:o}", "valid", api_names()),
				  "unknown Kafka API \"%s\" (see \"valid\")", api_name);
	rd_kafka_mock_clear_request_errors(m->mc, api->key);
	log_info("event=errors_cleared api=%s api_key=%d", api->name, api->key);
	return ok_answer(json_pack("{s:s}", "api", api->name));
}

static struct answer do_broker_errors(struct mock *m, const char *sid, const char *api_name)
{
	const struct kafka_api *api = api_find(api_name);
	rd_kafka_resp_err_t err;
	size_t cnt = 0;
	int id;

	if (parse_broker(m, sid, false, &id) < 0)
		return err_answer(404, "ENOENT", NULL, "no broker \"%s\" (brokers are 1..%d)", sid, m->brokers);
	if (!api)
		return err_answer(404, "ENOENT", json_pack("{s:o}", "valid", api_names()),
				  "unknown Kafka API \"%s\" (see \"valid\")", api_name);
	if ((err = rd_kafka_mock_broker_error_stack_cnt(m->mc, id, api->key, &cnt)) != 0)
		return kafka_err_answer(err, "broker error stack");
	return ok_answer(json_pack("{s:i, s:s, s:I}", "broker", id, "api", api->name, "pending",
				   (json_int_t)cnt));
}

static struct answer do_coordinator(struct mock *m, json_t *b)
{
	const char *type, *key;
	int broker = 0;
	rd_kafka_resp_err_t err;
	char e[256], q[512];

	if (get_str(b, "type", true, &type, e, sizeof(e)) < 0 ||
	    get_str(b, "key", true, &key, e, sizeof(e)) < 0 ||
	    get_int(b, "broker", true, 1, m->brokers, &broker, e, sizeof(e)) < 0)
		return err_answer(400, "EINVAL", NULL, "POST /coordinator: %s", e);
	if (strcmp(type, "group") && strcmp(type, "transaction"))
		return err_answer(400, "EINVAL", NULL, "POST /coordinator: \"type\" is \"group\" or "
				  "\"transaction\", not \"%s\"", type);
	if ((err = rd_kafka_mock_coordinator_set(m->mc, type, key, broker)) != 0)
		return kafka_err_answer(err, "coordinator");
	log_info("event=coordinator_set type=%s key=%s broker=%d", type, log_quote(key, q, sizeof(q)), broker);
	return ok_answer(json_pack("{s:s, s:s, s:i}", "type", type, "key", key, "broker", broker));
}

static struct answer do_rtt(struct mock *m, json_t *b)
{
	int broker = 0, rtt = 0;
	rd_kafka_resp_err_t err;
	char e[256];

	if (get_int(b, "broker", true, 1, m->brokers, &broker, e, sizeof(e)) < 0 ||
	    get_int(b, "rtt_ms", true, 0, 600000, &rtt, e, sizeof(e)) < 0)
		return err_answer(400, "EINVAL", NULL, "POST /rtt: %s", e);
	if ((err = rd_kafka_mock_broker_set_rtt(m->mc, broker, rtt)) != 0)
		return kafka_err_answer(err, "rtt");
	m->rtt_ms[broker] = rtt;
	log_info("event=rtt_set broker=%d rtt_ms=%d", broker, rtt);
	return ok_answer(json_pack("{s:i, s:i}", "broker", broker, "rtt_ms", rtt));
}

/* ------------------------------------------------------------------------------------------ */
/* Routing */

/* Splits "/a/b/c" into at most max segments (in buf); returns the count, or -1 if more. */
static int split_path(const char *url, char *buf, size_t len, char **seg, int max)
{
	int n = 0;
	char *save, *tok;

	snprintf(buf, len, "%s", url);
	for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (n == max)
			return -1;
		seg[n++] = tok;
	}
	return n;
}

static struct answer route(struct mock *m, const char *method, const char *url, const struct req *r)
{
	char buf[1024], *s[4];
	int n = split_path(url, buf, sizeof(buf), s, 4);
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	bool del = !strcmp(method, "DELETE");
	struct answer a = { 0, NULL };
	json_t *body = NULL;

	if (n == 0 && get)
		return ok_answer(cluster_info(m));
	if (n == 4 && get && !strcmp(s[0], "brokers") && !strcmp(s[2], "errors"))
		return do_broker_errors(m, s[1], s[3]);
	if (n == 2 && del && !strcmp(s[0], "errors"))
		return do_clear_errors(m, s[1]);
	if (n == 3 && post && !strcmp(s[0], "brokers") && (!strcmp(s[2], "down") || !strcmp(s[2], "up")))
		return do_broker_updown(m, s[1], !strcmp(s[2], "up"));
	if (!post || n < 1)
		goto not_found;

	if (n == 1 && !strcmp(s[0], "topics")) {
		if ((body = parse_body(r, &a)))
			a = do_create_topic(m, body);
	} else if (n == 3 && !strcmp(s[0], "topics") && !strcmp(s[2], "error")) {
		if ((body = parse_body(r, &a)))
			a = do_topic_error(m, s[1], body);
	} else if (n == 2 && !strcmp(s[0], "partitions") && !strcmp(s[1], "leader")) {
		if ((body = parse_body(r, &a)))
			a = do_set_leader(m, body);
	} else if (n == 1 && !strcmp(s[0], "errors")) {
		if ((body = parse_body(r, &a)))
			a = do_push_errors(m, body);
	} else if (n == 1 && !strcmp(s[0], "coordinator")) {
		if ((body = parse_body(r, &a)))
			a = do_coordinator(m, body);
	} else if (n == 1 && !strcmp(s[0], "rtt")) {
		if ((body = parse_body(r, &a)))
			a = do_rtt(m, body);
	} else {
		goto not_found;
	}
	json_decref(body);
	return a;
not_found:
	return err_answer(404, "ENOENT", NULL, "no route %s %s (GET /, POST /topics, POST "
			  "/topics/{name}/error, POST /brokers/{id}/down|up, GET /brokers/{id}/errors/{api}, "
			  "POST /partitions/leader, POST /errors, DELETE /errors/{api}, POST /coordinator, "
			  "POST /rtt)", method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	struct mock *m = cls;
	struct req *r = *req_cls;
	struct MHD_Response *resp;
	struct answer a;
	enum MHD_Result ret;
	char *text;

	if (!r) {
		r = xcalloc(1, sizeof(*r));
		strbuf_init(&r->body);
		*req_cls = r;
		return MHD_YES;
	}
	if (*upload_size) {
		if (r->body.len + *upload_size > MAX_BODY)
			r->too_big = true;
		else
			strbuf_add(&r->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	a = route(m, method, url, r);
	text = json_dumps(a.body, JSON_COMPACT);
	json_decref(a.body);
	if (!text)
		fatalx("json_dumps failed");
	{
		size_t len = strlen(text);
		text = xrealloc(text, len + 2);
		memcpy(text + len, "\n", 2);
		resp = MHD_create_response_from_buffer(len + 1, text, MHD_RESPMEM_MUST_FREE);
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	ret = MHD_queue_response(conn, a.status, resp);
	MHD_destroy_response(resp);
	if (a.status >= 400)
		log_info("event=control_error method=%s path=%s status=%u", method, url, a.status);
	return ret;
}

static void on_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
			    enum MHD_RequestTerminationCode toe)
{
	struct req *r = *req_cls;

	if (r) {
		strbuf_close(&r->body);
		free(r);
		*req_cls = NULL;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Startup and shutdown */

/* Starts the control API on "ADDR:PORT" (IPv4); sets m->control_url, then m->httpd.
 *
 * The socket is bound here, not by libmicrohttpd, so that the URL (with the port the kernel
 * chose for port 0) is written before the control thread exists: that thread reads it in
 * GET /, and writing it after MHD_start_daemon() was a data race (ThreadSanitizer: main's
 * xasprintf() against the control thread's strlen() in cluster_info()). */
static int control_start(struct mock *m, const char *addr_port)
{
	const char *colon = strrchr(addr_port, ':');
	struct sockaddr_in sa = { .sin_family = AF_INET }, bound;
	socklen_t len = sizeof(bound);
	char host[64];
	int port, fd, one = 1;

	if (!colon || (size_t)(colon - addr_port) >= sizeof(host) || parse_int(colon + 1, 0, 65535, &port) < 0)
		goto bad;
	memcpy(host, addr_port, (size_t)(colon - addr_port));
	host[colon - addr_port] = '\0';
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		goto bad;
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &len) != 0) {
		log_error("event=control_failed addr=%s msg=\"cannot listen: %s\"", addr_port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return SAGAD_EIO;
	}
	m->control_url = xasprintf("http://%s:%u", host, (unsigned)ntohs(bound.sin_port));
	/* libmicrohttpd owns fd from here: MHD_stop_daemon() closes it (seen with strace). On a
	 * failed start the process exits. */
	m->httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
				    NULL, NULL, on_request, m,
				    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				    MHD_OPTION_NOTIFY_COMPLETED, on_request_done, m,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
				    MHD_OPTION_END);
	if (!m->httpd) {
		log_error("event=control_failed addr=%s msg=\"libmicrohttpd did not start\"", addr_port);
		return SAGAD_EIO;
	}
	return 0;
bad:
	log_error("event=control_failed addr=%s msg=\"want IPV4:PORT, e.g. 127.0.0.1:0\"", addr_port);
	return SAGAD_EINVAL;
}

static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	char q[1024];

	if (level <= 4)
		log_warn("event=rdkafka_log fac=%s msg=%s", fac, log_quote(buf, q, sizeof(q)));
	else if (level <= 6)
		log_info("event=rdkafka_log fac=%s msg=%s", fac, log_quote(buf, q, sizeof(q)));
	else
		log_debug("event=rdkafka_log fac=%s msg=%s", fac, log_quote(buf, q, sizeof(q)));
}

static int mock_start(struct mock *m, const struct options *o)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];

	rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
	/* The handle never connects: no bootstrap.servers (and no "no bootstrap" warning). */
	if (rd_kafka_conf_set(conf, "log_level", o->debug ? "7" : "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
	    (o->debug && rd_kafka_conf_set(conf, "debug", "mock", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK))
		fatalx("rd_kafka_conf_set: %s", errstr);
	if (o->debug)
		log_min_level = LOG_DEBUG;
	m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!m->rk) {
		rd_kafka_conf_destroy(conf);
		log_error("event=start_failed msg=%s", errstr);
		return SAGAD_EIO;
	}
	m->brokers = o->brokers;
	m->mc = rd_kafka_mock_cluster_new(m->rk, o->brokers);
	if (!m->mc) {
		log_error("event=start_failed msg=\"rd_kafka_mock_cluster_new failed\"");
		return SAGAD_EIO;
	}
	m->bootstrap = xstrdup(rd_kafka_mock_cluster_bootstraps(m->mc));
	for (int i = 0; i < o->n_topics; i++) {
		const struct topic_spec *t = &o->topics[i];
		if (create_topic(m, t->name, t->partitions, t->replication_factor) != 0)
			return SAGAD_EINVAL;
	}
	return 0;
}

/* Stops the control thread first, so nothing uses the cluster while it is destroyed. */
static void mock_close(struct mock *m)
{
	if (m->httpd)
		MHD_stop_daemon(m->httpd);
	if (m->mc)
		rd_kafka_mock_cluster_destroy(m->mc);
	if (m->rk)
		rd_kafka_destroy(m->rk);
	free(m->bootstrap);
	free(m->control_url);
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct mock m = { 0 };
	sigset_t set;
	int sig = 0, rc = 1;

	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		options_close(&o);
		return 2;
	}
	/* Block the stop signals before any thread exists, so that all threads inherit the mask
	 * and sigwait() below receives them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (mock_start(&m, &o) < 0 || control_start(&m, o.control_addr) < 0)
		goto out;
	printf("%s\n%s\n", m.bootstrap, m.control_url);
	fflush(stdout);
	if (o.control_file && write_file_atomic(o.control_file, m.control_url) < 0)
		goto out;
	/* Last: scripts wait for this file, and then the control API already answers. */
	if (o.bootstrap_file && write_file_atomic(o.bootstrap_file, m.bootstrap) < 0)
		goto out;
	log_info("event=started brokers=%d bootstrap=%s control=%s pid=%ld", m.brokers, m.bootstrap,
		 m.control_url, (long)getpid());

	while (sigwait(&set, &sig) != 0)
		;
	log_info("event=stopping signal=%s", sig == SIGINT ? "INT" : "TERM");
	rc = 0;
out:
	mock_close(&m);
	options_close(&o);
	if (rc == 0)
		log_info("event=stopped");
	return rc;
}
