/* main.c: sagad, the saga orchestrator daemon: flags, flows, store, recovery, the loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "dsl.h"
#include "engine.h"
#include "error.h"
#include "flow.h"
#include "http.h"
#include "httpd.h"
#include "kafka.h"
#include "outbox.h"
#include "purge.h"
#include "log.h"
#include "loopstat.h"
#include "secret.h"
#include "store.h"
#include "util.h"

#define SHUTDOWN_POLL_MS 50

struct daemon {
	uv_loop_t *loop;
	const char *flows_dir;
	const char *db_path;
	char listen_addr[128];
	int listen_port;
	const char *port_file;
	const char *synchronous;
	bool sync_inline;            /* --sync-inline: no WAL sync thread */
	size_t max_body, max_response;
	size_t kafka_max_message;       /* consumed records larger than this are refused */
	struct dsl_limits flow_limits;  /* --flow-limit */
	int64_t shutdown_grace_ms, max_wait_ms;
	int64_t retention_ms;           /* 0 = keep finished sagas forever */
	struct purge *purge;            /* NULL without retention */
	const char *kafka_brokers;
	const char *kafka_group;
	const char *lifecycle_topic;
	char **kafka_config;            /* "name=value" */
	size_t n_kafka_config;
	struct kafka_client *kafka;
	struct outbox *outbox;
	struct flow_set *flows;
	struct store *store;
	struct http_client *http;
	struct engine *engine;
	struct httpd *httpd;
	struct api *api;
	struct auth_options auth_opt;
	const char *jwt_secret_file;
	char *jwt_secret;               /* read from the file, or $SAGAD_JWT_SECRET */
	struct auth *auth;
	bool insecure_allow_remote;
	const char *secrets_key_file;
	struct secret_key *secrets_key;
	bool ready;
	const char *not_ready_reason;
	uv_prepare_t flush;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t shutdown_timer;
	int64_t shutdown_deadline;
	bool stopping;
	int exit_code;
};

static void usage(FILE *out)
{
	fputs("usage: sagad [options]\n"
	      "\n"
	      "The saga orchestrator daemon: loads the flows of a folder, serves the admin API,\n"
	      "and drives every saga to its end, resuming all of them after a restart.\n"
	      "\n"
	      "  --flows DIR         flow files (*.yaml) to load       [$SAGAD_FLOWS or ./flows]\n"
	      "  --db FILE           SQLite database (created)          [$SAGAD_DB or ./sagad.db]\n"
	      "  --listen ADDR:PORT  admin API address (loopback by default)\n"
	      "                                                         [$SAGAD_LISTEN or 127.0.0.1:7700]\n"
	      "  --port-file FILE    write the port listened on (useful with port 0)\n"
	      "  --log-level LEVEL   debug, info, warn or error         [info]\n"
	      "  --max-body SIZE     largest API request body (413 above) [1MiB]\n"
	      "  --max-response SIZE largest participant response body: a larger one fails\n"
	      "                      the attempt (outcome unknown: compensated)   [1MiB]\n"
	      "  --flow-limit NAME=N limit of the flow loader (repeatable): max_file_bytes [1MiB],\n"
	      "                      max_depth [64], max_aliases [100], max_nodes [100000],\n"
	      "                      max_steps [256]; see docs/flow-dsl.md, \"Limits\"\n"
	      "  --max-wait DURATION longest a client may wait for a saga [5m]\n"
	      "  --shutdown-grace DURATION  wait for calls in flight on SIGTERM [10s]\n"
	      "  --retention DURATION  delete completed and compensated sagas (and sent Kafka\n"
	      "                      messages) older than this, in small batches; failed sagas\n"
	      "                      are kept for an operator; 0 keeps everything   [7d]\n"
	      "  --synchronous MODE  SQLite synchronous: FULL (shipped, durable) or NORMAL\n"
	      "  --sync-inline       with FULL, fsync inside each commit on the loop thread\n"
	      "                      instead of on the WAL sync thread (the shipped way lets the\n"
	      "                      loop go on while the disk syncs; either way no answer,\n"
	      "                      call or message leaves before its commit is on disk)\n"
	      "\n"
	      "Security (docs/security.md). Without --auth-tokens or a JWT key the API has no\n"
	      "authentication and sagad refuses a non-loopback --listen address:\n"
	      "  --auth-tokens FILE  bearer tokens, one \"ROLE TOKEN NAME\" per line; ROLE is read\n"
	      "                      (GET routes, /metrics) or operator (also start, cancel,\n"
	      "                      retry); TOKEN is sha256:HEX or the token   [$SAGAD_AUTH_TOKENS_FILE]\n"
	      "  --jwt-secret-file FILE  HMAC secret for HS256 JWTs (at least 32 bytes; a\n"
	      "                      trailing newline is ignored)             [$SAGAD_JWT_SECRET: the secret]\n"
	      "  --jwt-public-key FILE   RSA public key (PEM) for RS256 JWTs [$SAGAD_JWT_PUBLIC_KEY_FILE]\n"
	      "  --jwt-algorithms LIST   allowed JWT algorithms       [HS256 and/or RS256, per key]\n"
	      "  --jwt-issuer ISS    required iss claim              --jwt-audience AUD  required aud\n"
	      "  --jwt-role-claim NAME   claim naming the role (read, operator; a string, a\n"
	      "                      space-separated scope or an array)             [role]\n"
	      "  --jwt-leeway DURATION   clock skew allowed on exp and nbf           [30s]\n"
	      "  --insecure-allow-remote  listen on a non-loopback address without authentication\n"
	      "                      (only behind a proxy that authenticates every request)\n"
	      "  --secrets-key FILE  256-bit key sealing sensitive input fields in the database\n"
	      "                      (AES-256-GCM); flows with sensitive fields need it\n"
	      "                                                         [$SAGAD_SECRETS_KEY_FILE]\n"
	      "\n"
	      "Kafka (needed when a flow uses a kafka participant or trigger; see docs/kafka.md):\n"
	      "  --kafka-brokers LIST  bootstrap.servers, host:port,...  [$SAGAD_KAFKA_BROKERS]\n"
	      "  --kafka-config FILE   client properties, one name=value per line (security.protocol,\n"
	      "                        sasl.*, ssl.*, ...); # starts a comment\n"
	      "  -X, --kafka-property NAME=VALUE   one client property (repeatable)\n"
	      "  --kafka-group ID      consumer group for replies and triggers   [sagad]\n"
	      "  --kafka-max-message SIZE  larger replies and trigger events are refused unread\n"
	      "                        (logged, counted, offset released)          [1MiB]\n"
	      "  --lifecycle-topic TOPIC  publish every saga and step state change here\n"
	      "                        [$SAGAD_LIFECYCLE_TOPIC]\n"
	      "  --check             load and check the flows, then exit (0 ok, 1 errors)\n"
	      "  --version, --help\n"
	      "\n"
	      "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the flows (a broken\n"
	      "flow file is reported and the loaded flows stay).\n"
	      "Docs: README.md, docs/api.md, docs/flow-dsl.md, docs/architecture.md\n", out);
}

static int parse_listen(struct daemon *d, const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;
	size_t n;

	if (colon == NULL)
		return SAGAD_EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535)
		return SAGAD_EINVAL;
	n = (size_t)(colon - s);
	if (n >= sizeof(d->listen_addr))
		return SAGAD_EINVAL;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	memcpy(d->listen_addr, s, n);
	d->listen_addr[n] = '\0';
	d->listen_port = (int)port;
	return 0;
}

static bool loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	       strcmp(addr, "localhost") == 0;
}

/* Loads the flows folder; prints every error. */
static int load_flows(const char *dir, const struct dsl_limits *lim, struct flow_set **out)
{
	struct flow_set *fs = xcalloc(1, sizeof(*fs));
	struct dsl_errors errs = { 0 };
	int rc;

	flow_set_init(fs);
	rc = dsl_load_dir(dir, lim, fs, &errs);
	if (rc != 0) {
		char *text = dsl_errors_format(&errs);
		fprintf(stderr, "%s", text);
		log_error("event=flows_invalid dir=%s errors=%zu msg=\"fix the files above; "
			  "sagactl flow validate FILE checks one\"", dir, errs.n);
		free(text);
		dsl_errors_close(&errs);
		flow_set_close(fs);
		free(fs);
		return rc;
	}
	dsl_errors_close(&errs);
	*out = fs;
	return 0;
}

static void free_flows(struct flow_set *fs)
{
	if (fs == NULL)
		return;
	flow_set_close(fs);
	free(fs);
}

/* Records every loaded flow's source, so sagas resume on the version they started with. */
static void remember_flows(struct daemon *d)
{
	for (size_t i = 0; i < d->flows->n; i++) {
		struct flow *f = d->flows->flows[i];
		FILE *fp = f->file ? fopen(f->file, "r") : NULL;
		struct strbuf b;
		char chunk[4096];
		size_t n;

		if (fp == NULL)
			continue;
		strbuf_init(&b);
		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
			strbuf_add(&b, chunk, n);
		fclose(fp);
		if (store_flow_put(d->store, f->name, f->version, b.data ? b.data : "") != 0)
			log_warn("flow=%s version=%d file=%s event=flow_changed_same_version "
				 "msg=\"the file changed but kept its version: running sagas continue on "
				 "the changed definition; bump version: when you change a flow\"",
				 f->name, f->version, f->file);
		strbuf_close(&b);
		log_info("flow=%s version=%d steps=%zu file=%s event=flow_loaded", f->name, f->version,
			 f->n_steps, f->file);
	}
}

static void add_kafka_property(struct daemon *d, const char *nv)
{
	d->kafka_config = xrealloc(d->kafka_config, (d->n_kafka_config + 1) * sizeof(char *));
	d->kafka_config[d->n_kafka_config++] = xstrdup(nv);
}

/* Reads "name=value" lines (blank lines and # comments skipped). */
static int read_kafka_config(struct daemon *d, const char *path)
{
	FILE *fp = fopen(path, "r");
	char line[4096];
	int lineno = 0;

	if (fp == NULL) {
		fprintf(stderr, "sagad: --kafka-config %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *p = line, *end;

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strlen(p);
		while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
			*--end = '\0';
		if (*p == '\0' || *p == '#')
			continue;
		if (strchr(p, '=') == NULL) {
			fprintf(stderr, "sagad: %s:%d: expected name=value\n", path, lineno);
			fclose(fp);
			return -1;
		}
		add_kafka_property(d, p);
	}
	fclose(fp);
	return 0;
}

/* The first Kafka participant or trigger of the loaded flows, for the start-up check. */
static const char *kafka_user(const struct flow_set *fs)
{
	static char what[256];

	for (size_t i = 0; i < fs->n; i++) {
		const struct flow *f = fs->flows[i];
		if (f->n_triggers > 0) {
			snprintf(what, sizeof(what), "flow %s has a Kafka trigger", f->name);
			return what;
		}
		for (size_t k = 0; k < f->n_participants; k++)
			if (f->participants[k].kind == PARTICIPANT_KAFKA) {
				snprintf(what, sizeof(what), "flow %s uses the Kafka participant %s",
					 f->name, f->participants[k].name);
				return what;
			}
	}
	return NULL;
}

/* Flows that would write a secret into the store need --secrets-key; without it their starts
 * are refused (503): say so at start-up and after a reload. */
static void warn_secrets(const struct daemon *d)
{
	char why[256];

	if (d->secrets_key != NULL)
		return;
	for (size_t i = 0; i < d->flows->n; i++)
		if (secret_flow_needs_key(d->flows->flows[i], why, sizeof(why)))
			log_warn("event=secrets_key_missing flow=%s msg=\"%s; its sagas cannot start "
				 "(503) until sagad runs with --secrets-key FILE\"",
				 d->flows->flows[i]->name, why);
}

/* Reads the JWT HMAC secret (file, else $SAGAD_JWT_SECRET); a trailing newline is not part of
 * it. Returns 0 or 2 (usage error, printed). */
static int read_jwt_secret(struct daemon *d)
{
	const char *env = getenv("SAGAD_JWT_SECRET");
	size_t n;

	if (d->jwt_secret_file != NULL) {
		FILE *fp = fopen(d->jwt_secret_file, "rb");
		struct strbuf b;
		char chunk[1024];

		if (fp == NULL) {
			fprintf(stderr, "sagad: --jwt-secret-file %s: %s\n", d->jwt_secret_file,
				strerror(errno));
			return 2;
		}
		strbuf_init(&b);
		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0 && b.len < 65536)
			strbuf_add(&b, chunk, n);
		fclose(fp);
		n = b.len;
		d->jwt_secret = b.data ? strbuf_detach(&b) : xstrdup("");
	} else if (env != NULL && *env != '\0') {
		d->jwt_secret = xstrdup(env);
		n = strlen(env);
	} else {
		return 0;
	}
	while (n > 0 && (d->jwt_secret[n - 1] == '\n' || d->jwt_secret[n - 1] == '\r'))
		n--;
	d->auth_opt.jwt_secret = d->jwt_secret;
	d->auth_opt.jwt_secret_len = n;
	return 0;
}

/* Authentication and the secrets key; the listen policy. Returns 0 or an exit status. */
static int setup_security(struct daemon *d)
{
	char err[512], desc[256];
	int rc;

	if ((rc = read_jwt_secret(d)) != 0)
		return rc;
	if (auth_new(&d->auth_opt, &d->auth, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagad: %s\n", err);
		return 2;
	}
	if (d->secrets_key_file != NULL &&
	    secret_key_load(d->secrets_key_file, &d->secrets_key, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagad: %s\n", err);
		return 2;
	}
	if (!loopback(d->listen_addr) && !auth_enabled(d->auth) && !d->insecure_allow_remote) {
		fprintf(stderr, "sagad: refusing to listen on %s without authentication: anyone who "
			"can connect could start and cancel sagas and read their data.\n"
			"  Configure --auth-tokens FILE or a JWT key (--jwt-secret-file, "
			"--jwt-public-key; docs/security.md),\n"
			"  or listen on 127.0.0.1, or pass --insecure-allow-remote if a proxy in front "
			"authenticates every request.\n", d->listen_addr);
		return 2;
	}
	auth_describe(d->auth, desc, sizeof(desc));
	log_info("event=auth %s %s secrets_key=%s", auth_enabled(d->auth) ? "enabled" : "disabled",
		 desc, d->secrets_key ? "yes" : "no");
	if (auth_enabled(d->auth) && d->auth_opt.jwt_issuer == NULL && d->auth_opt.jwt_audience ==
	    NULL && (d->auth_opt.jwt_secret != NULL || d->auth_opt.jwt_public_key_file != NULL))
		log_warn("event=jwt_unscoped msg=\"JWTs are accepted from any issuer for any "
			 "audience the key signs for; set --jwt-issuer and --jwt-audience\"");
	warn_secrets(d);
	return 0;
}

static void on_flush(uv_prepare_t *h)
{
	struct daemon *d = h->data;
	int rc = engine_flush(d->engine);

	if (rc != 0) {
		/* Not a busy, full or failing disk (those pause the engine: engine_paused()), but
		 * a newer owner's fence or worse. Crash-only: this turn's writes were rolled back
		 * and its side effects must not run; the file holds the last committed truth and a
		 * restart resumes from it. */
		log_error("event=fatal_store_error err=\"%s\" msg=\"stopping; restart sagad to resume "
			  "from the last commit\"", sagad_strerror(rc));
		fflush(stderr);
		_exit(1);
	}
}

static void close_all(struct daemon *d)
{
	httpd_free(d->httpd);
	d->httpd = NULL;
	uv_prepare_stop(&d->flush);
	uv_signal_stop(&d->sigterm);
	uv_signal_stop(&d->sigint);
	uv_signal_stop(&d->sighup);
	uv_close((uv_handle_t *)&d->flush, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->shutdown_timer, NULL);
	purge_close(d->purge);
	d->purge = NULL;
	loopstat_stop();
}

static void on_shutdown_tick(uv_timer_t *t)
{
	struct daemon *d = t->data;
	size_t inflight = engine_inflight(d->engine);

	if (inflight > 0 && util_mono_ms() < d->shutdown_deadline)
		return;
	if (inflight > 0)
		log_warn("event=shutdown calls_in_flight=%zu msg=\"not waiting longer; they are "
			 "re-sent with the same idempotency key after restart\"", inflight);
	uv_timer_stop(t);
	/* Every commit made durable (the WAL sync thread stops here) and what they allow
	 * released: answers, and the outbox rows handed to the producer below. */
	if (engine_drain(d->engine) != 0) {
		fflush(stderr);
		_exit(1);
	}
	if (d->kafka != NULL) {
		/* Deliver what the outbox handed to the producer; acknowledged rows are marked sent
		 * and committed below, the rest is produced again after the restart. */
		size_t left;

		outbox_stop(d->outbox);
		engine_kafka_detach(d->engine);
		left = kafka_client_free(d->kafka, 2000);
		d->kafka = NULL;
		if (left > 0)
			log_warn("event=shutdown kafka_undelivered=%zu msg=\"kept in the outbox; sent "
				 "after restart\"", left);
		if (engine_flush(d->engine) != 0) {
			fflush(stderr);
			_exit(1);
		}
	}
	close_all(d);
	uv_stop(d->loop);
}

static void begin_shutdown(struct daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	d->ready = false;
	d->not_ready_reason = "shutting down";
	log_info("event=shutdown signal=%s calls_in_flight=%zu", why, engine_inflight(d->engine));
	httpd_quiesce(d->httpd);
	engine_quiesce(d->engine);
	d->shutdown_deadline = util_mono_ms() + d->shutdown_grace_ms;
	uv_timer_start(&d->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_POLL_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;

	if (signum == SIGHUP) {
		struct flow_set *fs = NULL;
		if (load_flows(d->flows_dir, &d->flow_limits, &fs) != 0) {
			log_error("event=reload_failed msg=\"keeping the flows loaded before\"");
			return;
		}
		/* Running sagas hold references to their flows; the old set can go. */
		free_flows(d->flows);
		d->flows = fs;
		engine_set_flows(d->engine, fs);
		remember_flows(d);
		warn_secrets(d);
		if (engine_kafka_subscribe(d->engine) != 0)
			log_error("event=resubscribe_failed");
		log_info("event=reloaded flows=%zu", fs->n);
		return;
	}
	begin_shutdown(d, signum == SIGTERM ? "TERM" : "INT");
}

static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "w");
	if (fp == NULL)
		return -errno;
	fprintf(fp, "%d\n", port);
	if (fclose(fp) != 0 || rename(tmp, path) != 0)
		return -errno;
	return 0;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "flows", required_argument, NULL, 'f' },
		{ "db", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "max-body", required_argument, NULL, 'B' },
		{ "max-response", required_argument, NULL, 'R' },
		{ "flow-limit", required_argument, NULL, 'F' },
		{ "kafka-max-message", required_argument, NULL, 'M' },
		{ "max-wait", required_argument, NULL, 'W' },
		{ "shutdown-grace", required_argument, NULL, 'G' },
		{ "retention", required_argument, NULL, 'r' },
		{ "synchronous", required_argument, NULL, 'S' },
		{ "check", no_argument, NULL, 'c' },
		{ "kafka-brokers", required_argument, NULL, 'K' },
		{ "kafka-config", required_argument, NULL, 'C' },
		{ "kafka-property", required_argument, NULL, 'X' },
		{ "kafka-group", required_argument, NULL, 'g' },
		{ "lifecycle-topic", required_argument, NULL, 'T' },
		{ "auth-tokens", required_argument, NULL, 1001 },
		{ "jwt-secret-file", required_argument, NULL, 1002 },
		{ "jwt-public-key", required_argument, NULL, 1003 },
		{ "jwt-algorithms", required_argument, NULL, 1004 },
		{ "jwt-issuer", required_argument, NULL, 1005 },
		{ "jwt-audience", required_argument, NULL, 1006 },
		{ "jwt-role-claim", required_argument, NULL, 1007 },
		{ "jwt-leeway", required_argument, NULL, 1008 },
		{ "insecure-allow-remote", no_argument, NULL, 1009 },
		{ "secrets-key", required_argument, NULL, 1010 },
		{ "sync-inline", no_argument, NULL, 1011 },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon d;
	struct store_options so = { 0 };
	struct http_client_options ho = { 0 };
	struct engine_options eo = { 0 };
	struct httpd_options hd = { 0 };
	struct api_options ao = { 0 };
	bool check_only = false;
	char err[512];
	int c, rc;

	memset(&d, 0, sizeof(d));
	d.flows_dir = env_or("SAGAD_FLOWS", "flows");
	d.db_path = env_or("SAGAD_DB", "sagad.db");
	d.max_body = 1 << 20;
	d.max_response = 1 << 20;
	d.kafka_max_message = 1 << 20;
	dsl_limits_default(&d.flow_limits);
	d.shutdown_grace_ms = 10000;
	d.max_wait_ms = 5 * 60 * 1000;
	d.retention_ms = 7LL * 24 * 3600 * 1000;
	if (parse_listen(&d, env_or("SAGAD_LISTEN", "127.0.0.1:7700")) != 0) {
		fprintf(stderr, "sagad: SAGAD_LISTEN: expected ADDR:PORT\n");
		return 2;
	}
	d.kafka_brokers = getenv("SAGAD_KAFKA_BROKERS");
	d.auth_opt.tokens_file = env_or("SAGAD_AUTH_TOKENS_FILE", NULL);
	d.auth_opt.jwt_public_key_file = env_or("SAGAD_JWT_PUBLIC_KEY_FILE", NULL);
	d.auth_opt.jwt_leeway_s = -1;
	d.secrets_key_file = env_or("SAGAD_SECRETS_KEY_FILE", NULL);
	d.kafka_group = "sagad";
	d.lifecycle_topic = getenv("SAGAD_LIFECYCLE_TOPIC");
	if (d.lifecycle_topic != NULL && *d.lifecycle_topic == '\0')
		d.lifecycle_topic = NULL;
	while ((c = getopt_long(argc, argv, "X:", opts, NULL)) != -1) {
		switch (c) {
		case 'f': d.flows_dir = optarg; break;
		case 'd': d.db_path = optarg; break;
		case 'l':
			if (parse_listen(&d, optarg) != 0) {
				fprintf(stderr, "sagad: --listen %s: expected ADDR:PORT, e.g. "
					"127.0.0.1:7700\n", optarg);
				return 2;
			}
			break;
		case 'p': d.port_file = optarg; break;
		case 'L':
			if (log_level_parse(optarg, &log_min_level) != 0) {
				fprintf(stderr, "sagad: --log-level %s: expected debug, info, warn or "
					"error\n", optarg);
				return 2;
			}
			break;
		case 'B':
		case 'R':
		case 'M': {
			size_t n;
			if (util_parse_size(optarg, &n) != 0 || n == 0) {
				fprintf(stderr, "sagad: --%s %s: expected a size in bytes such as "
					"1048576, 512KiB or 4MiB\n", c == 'B' ? "max-body" : c == 'R' ?
					"max-response" : "kafka-max-message", optarg);
				return 2;
			}
			if (c == 'B')
				d.max_body = n;
			else if (c == 'R')
				d.max_response = n;
			else
				d.kafka_max_message = n;
			break;
		}
		case 'F':
			if (dsl_limit_set(&d.flow_limits, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "sagad: --flow-limit %s\n", err);
				return 2;
			}
			break;
		case 'W':
		case 'G':
		case 'r': {
			int64_t ms;
			if (util_parse_duration(optarg, &ms) != 0) {
				fprintf(stderr, "sagad: %s: expected a duration such as 10s\n", optarg);
				return 2;
			}
			if (c == 'W')
				d.max_wait_ms = ms;
			else if (c == 'G')
				d.shutdown_grace_ms = ms;
			else
				d.retention_ms = ms;
			break;
		}
		case 'S': d.synchronous = optarg; break;
		case 1011: d.sync_inline = true; break;
		case 'c': check_only = true; break;
		case 'K': d.kafka_brokers = optarg; break;
		case 'C':
			if (read_kafka_config(&d, optarg) != 0)
				return 2;
			break;
		case 'X':
			if (strchr(optarg, '=') == NULL) {
				fprintf(stderr, "sagad: -X %s: expected NAME=VALUE\n", optarg);
				return 2;
			}
			add_kafka_property(&d, optarg);
			break;
		case 'g': d.kafka_group = optarg; break;
		case 'T': d.lifecycle_topic = optarg; break;
		case 1001: d.auth_opt.tokens_file = optarg; break;
		case 1002: d.jwt_secret_file = optarg; break;
		case 1003: d.auth_opt.jwt_public_key_file = optarg; break;
		case 1004: d.auth_opt.jwt_algorithms = optarg; break;
		case 1005: d.auth_opt.jwt_issuer = optarg; break;
		case 1006: d.auth_opt.jwt_audience = optarg; break;
		case 1007: d.auth_opt.jwt_role_claim = optarg; break;
		case 1008:
			if (util_parse_duration(optarg, &d.auth_opt.jwt_leeway_s) != 0) {
				fprintf(stderr, "sagad: --jwt-leeway %s: expected a duration such as 30s\n",
					optarg);
				return 2;
			}
			d.auth_opt.jwt_leeway_s /= 1000;
			break;
		case 1009: d.insecure_allow_remote = true; break;
		case 1010: d.secrets_key_file = optarg; break;
		case 'V': printf("sagad %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sagad: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	if (load_flows(d.flows_dir, &d.flow_limits, &d.flows) != 0)
		return 1;
	if (check_only) {
		printf("%zu flows ok in %s\n", d.flows->n, d.flows_dir);
		free_flows(d.flows);
		return 0;
	}
	if ((rc = setup_security(&d)) != 0) {
		auth_free(d.auth);
		secret_key_free(d.secrets_key);
		free(d.jwt_secret);
		free_flows(d.flows);
		return rc;
	}
	so.path = d.db_path;
	so.synchronous = d.synchronous;
	rc = store_open(&so, &d.store, err, sizeof(err));
	if (rc != 0) {
		log_error("event=store_open_failed db=%s err=\"%s\"", d.db_path, err);
		return 1;
	}
	d.loop = uv_default_loop();
	rc = loopstat_start(d.loop);
	if (rc != 0)
		log_warn("event=loopstat_unavailable err=\"%s\"", uv_strerror(rc));
	ho.max_response_bytes = d.max_response;
	rc = http_client_new(d.loop, &ho, &d.http);
	if (rc != 0) {
		log_error("event=http_client_failed err=\"%s\"", sagad_strerror(rc));
		return 1;
	}
	if (d.kafka_brokers != NULL && *d.kafka_brokers != '\0') {
		struct kafka_options ko = { .brokers = d.kafka_brokers, .group_id = d.kafka_group,
					    .config = (const char *const *)d.kafka_config,
					    .n_config = d.n_kafka_config,
					    .max_record_bytes = d.kafka_max_message };
		rc = kafka_client_new(d.loop, &ko, &d.kafka, err, sizeof(err));
		if (rc != 0) {
			log_error("event=kafka_failed err=\"%s\"", err);
			return 1;
		}
		d.outbox = outbox_new(d.loop, d.store, d.kafka);
		outbox_set_key(d.outbox, d.secrets_key);
		log_info("event=kafka brokers=%s group=%s lifecycle_topic=%s", d.kafka_brokers,
			 d.kafka_group, d.lifecycle_topic ? d.lifecycle_topic : "-");
	} else if (d.lifecycle_topic != NULL) {
		log_error("event=kafka_not_configured msg=\"--lifecycle-topic is set; set "
			  "--kafka-brokers (or SAGAD_KAFKA_BROKERS) to your cluster's bootstrap "
			  "servers\"");
		return 1;
	} else if (kafka_user(d.flows) != NULL) {
		log_warn("event=kafka_not_configured msg=\"%s; flows that need Kafka are loaded but "
			 "cannot start (503) until sagad runs with --kafka-brokers\"",
			 kafka_user(d.flows));
	}
	eo.loop = d.loop;
	eo.store = d.store;
	eo.http = d.http;
	eo.kafka = d.kafka;
	eo.outbox = d.outbox;
	eo.lifecycle_topic = d.lifecycle_topic;
	eo.flows = d.flows;
	eo.max_wait_ms = d.max_wait_ms;
	eo.secrets_key = d.secrets_key;
	engine_new(&eo, &d.engine);
	remember_flows(&d);

	ao.engine = d.engine;
	ao.store = d.store;
	ao.flows = &d.flows;
	ao.ready = &d.ready;
	d.not_ready_reason = "recovering unfinished sagas";
	ao.not_ready_reason = &d.not_ready_reason;
	ao.auth = d.auth;
	d.api = api_new(&ao);
	hd.address = d.listen_addr;
	hd.port = d.listen_port;
	hd.max_body_bytes = d.max_body;
	hd.handler = api_handle;
	hd.arg = d.api;
	rc = httpd_start(d.loop, &hd, &d.httpd, err, sizeof(err));
	if (rc != 0) {
		log_error("event=listen_failed err=\"%s\"", err);
		return 1;
	}
	if (!loopback(d.listen_addr) && !auth_enabled(d.auth))
		log_warn("event=exposed listen=%s msg=\"--insecure-allow-remote: the admin API is "
			 "reachable from other hosts WITHOUT authentication; anyone who can connect "
			 "can start and cancel sagas and read their data\"", d.listen_addr);
	else if (!loopback(d.listen_addr))
		log_warn("event=exposed listen=%s msg=\"the admin API is reachable from other "
			 "hosts over plain HTTP: bearer tokens cross the network in clear; put a TLS "
			 "proxy in front (docs/security.md)\"", d.listen_addr);
	uv_prepare_init(d.loop, &d.flush);
	d.flush.data = &d;
	uv_prepare_start(&d.flush, on_flush);
	uv_signal_init(d.loop, &d.sigterm);
	uv_signal_init(d.loop, &d.sigint);
	uv_signal_init(d.loop, &d.sighup);
	d.sigterm.data = d.sigint.data = d.sighup.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sighup, on_signal, SIGHUP);
	uv_timer_init(d.loop, &d.shutdown_timer);
	d.shutdown_timer.data = &d;
	if (d.retention_ms > 0)
		d.purge = purge_new(d.loop, d.store, d.retention_ms);

	rc = engine_recover(d.engine);
	if (rc != 0) {
		log_error("event=recovery_failed err=\"%s\"", sagad_strerror(rc));
		return 1;
	}
	rc = engine_flush(d.engine);
	if (rc != 0)
		return 1;
	/* Replies and triggers are consumed only once every wait is registered again. */
	rc = engine_kafka_subscribe(d.engine);
	if (rc != 0) {
		log_error("event=kafka_subscribe_failed err=\"%s\"", sagad_strerror(rc));
		return 1;
	}
	/* From here on commits are synced on the WAL sync thread (with FULL, unless
	 * --sync-inline); everything before was synced in its commit. */
	if (!d.sync_inline && store_pipeline_start(d.store, d.loop, err, sizeof(err)) != 0) {
		log_error("event=store_failed err=\"%s\"", err);
		return 1;
	}
	d.ready = true;
	if (d.port_file != NULL && write_port_file(d.port_file, httpd_port(d.httpd)) != 0)
		log_warn("event=port_file_failed file=%s", d.port_file);
	log_info("event=ready listen=%s:%d db=%s flows=%zu version=%s", d.listen_addr,
		 httpd_port(d.httpd), d.db_path, d.flows->n, PACKAGE_VERSION);

	uv_run(d.loop, UV_RUN_DEFAULT);

	engine_free(d.engine);
	outbox_free(d.outbox);
	if (d.kafka != NULL)
		kafka_client_free(d.kafka, 0);
	http_client_free(d.http);
	uv_run(d.loop, UV_RUN_NOWAIT);
	api_free(d.api);
	auth_free(d.auth);
	secret_key_free(d.secrets_key);
	free(d.jwt_secret);
	store_close(d.store);
	free_flows(d.flows);
	for (size_t i = 0; i < d.n_kafka_config; i++)
		free(d.kafka_config[i]);
	free(d.kafka_config);
	log_info("event=stopped exit=%d", d.exit_code);
	return d.exit_code;
}
