/* test-kafka.c: the Kafka transport (adapters/kafka.c) against librdkafka's in-process mock
 * cluster, everything on one libuv loop: produce with delivery reports, consume with headers
 * and keys, at-least-once resumption after kafka_done(), brokers going down and coming back,
 * message timeouts, shutdown with undelivered messages, a full queue and bad properties. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>
#include <uv.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "error.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

#define N_BROKERS 3
#define N_PARTITIONS 3
#define N_MSGS 1000
#define N_BENCH 20000
#define N_KEYS 37

static uv_loop_t loop;
static uv_timer_t tick;
static pthread_t loop_thread;
static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mcluster;
static const char *bootstraps;
static int off_thread;          /* callbacks that ran on another thread than the loop's */

/* Settings that keep group joins and reconnects fast against the mock. */
static const char *const fast_config[] = {
	/* The mock answers a first JoinGroup after min(3 s, max.poll.interval.ms) and drops a
	 * member whose session times out meanwhile: the session must outlast that delay. */
	"consumer.session.timeout.ms=6000",
	"consumer.heartbeat.interval.ms=100",
	"consumer.max.poll.interval.ms=6000",
	/* Not a low topic.metadata.refresh.interval.ms: with librdkafka 2.0.2 a periodic
	 * refresh landing while the group leader waits for its assignor metadata makes it
	 * rejoin ("Metadata for subscribed topic(s) has changed"), again and again (seen
	 * with 500 ms in 1 run of ~8; never with the default in 30). */
	"reconnect.backoff.ms=10",
	"reconnect.backoff.max.ms=100",
	"producer.retry.backoff.ms=10",
};

/* Clients a test has not freed yet (it failed half-way): the test's teardown frees them. */
static struct kafka_client *live[4];

static void check_thread(void)
{
	if (!pthread_equal(pthread_self(), loop_thread))
		off_thread++;
}

/* --- running the loop until something happened ------------------------------------------ */

static bool (*until)(void);
static uint64_t until_deadline;

static void on_tick(uv_timer_t *t)
{
	if ((until != NULL && until()) || uv_now(&loop) >= until_deadline)
		uv_stop(&loop);
}

/* Runs the loop until pred() holds (checked every millisecond) or timeout_ms passed; NULL
 * pred just runs for timeout_ms. Returns pred()'s final value (true without pred). */
static bool run_until(bool (*pred)(void), int timeout_ms)
{
	uv_update_time(&loop);
	until = pred;
	until_deadline = uv_now(&loop) + (uint64_t)timeout_ms;
	uv_timer_start(&tick, on_tick, 1, 1);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_timer_stop(&tick);
	until = NULL;
	return pred == NULL || pred();
}

/* Lets the loop finish closing a freed client's handles. */
static void settle(void)
{
	run_until(NULL, 1);
}

static void set_brokers(bool up)
{
	for (int32_t b = 1; b <= N_BROKERS; b++) {
		rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(mcluster, b)
					     : rd_kafka_mock_broker_set_down(mcluster, b);

		assert_int_equal(err, 0);
	}
}

static struct kafka_client *client(const char *group, const char *const *extra, size_t n_extra)
{
	const char *config[32];
	size_t n = 0;
	struct kafka_options opt = { .brokers = bootstraps, .group_id = group };
	struct kafka_client *k = NULL;
	char err[256];

	for (size_t i = 0; i < sizeof(fast_config) / sizeof(*fast_config); i++)
		config[n++] = fast_config[i];
	for (size_t i = 0; i < n_extra; i++)
		config[n++] = extra[i];
	opt.config = config;
	opt.n_config = n;
	assert_int_equal(kafka_client_new(&loop, &opt, &k, err, sizeof(err)), 0);
	assert_non_null(k);
	for (size_t i = 0; i < sizeof(live) / sizeof(*live); i++) {
		if (live[i] == NULL) {
			live[i] = k;
			return k;
		}
	}
	fail_msg("too many clients");
	return NULL;
}

/* kafka_client_free() for a client made by client(). */
static size_t release(struct kafka_client *k, int flush_ms)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(*live); i++)
		if (live[i] == k)
			live[i] = NULL;
	return kafka_client_free(k, flush_ms);
}

/* Per-test teardown: frees what a failed test left behind, brings the brokers back. */
static int cleanup(void **state)
{
	for (int32_t b = 1; b <= N_BROKERS; b++)
		rd_kafka_mock_broker_set_up(mcluster, b);
	for (size_t i = 0; i < sizeof(live) / sizeof(*live); i++)
		if (live[i] != NULL)
			release(live[i], 0);
	settle();
	return 0;
}

/* --- producing -------------------------------------------------------------------------- */

static struct {
	int ok, failed, last_err;
	char last_errstr[256];
} dr;

static void on_delivered(int err, const char *errstr, void *arg)
{
	check_thread();
	(*(int *)arg)++;
	if (err == 0) {
		dr.ok++;
	} else {
		dr.failed++;
		dr.last_err = err;
		snprintf(dr.last_errstr, sizeof(dr.last_errstr), "%s", errstr ? errstr : "(null)");
	}
}

static int dr_expected;
static bool all_reported(void)
{
	return dr.ok + dr.failed >= dr_expected;
}

static int produce_one(struct kafka_client *k, const char *topic, int id, int *calls)
{
	char key[16], value[32], idbuf[16];
	const char *headers[] = { "id", idbuf, "kind", "test", "empty", "" };
	struct kafka_message m = { .topic = topic, .key = key, .value = value,
				   .headers = headers, .n_headers = 3 };

	snprintf(key, sizeof(key), "k%d", id % N_KEYS);
	snprintf(value, sizeof(value), "value-%d", id);
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	m.key_len = strlen(key);
	m.value_len = strlen(value);
	return kafka_produce(k, &m, on_delivered, calls);
}

/* 1,000 messages with keys and headers: every delivery report is ok, once, on the loop. */
static void test_produce(void **state)
{
	struct kafka_client *k = client("g-produce", NULL, 0);
	static int calls[N_MSGS];
	int64_t t0;

	memset(&dr, 0, sizeof(dr));
	dr_expected = N_MSGS;
	t0 = util_mono_ms();
	for (int i = 0; i < N_MSGS; i++)
		assert_int_equal(produce_one(k, "orders", i, &calls[i]), 0);
	assert_int_equal(kafka_inflight(k), N_MSGS);
	assert_true(run_until(all_reported, 10000));
	print_message("# produce+deliver %d messages (first, incl. connect): %" PRId64 " ms\n",
		      N_MSGS, util_mono_ms() - t0);
	assert_int_equal(dr.ok, N_MSGS);
	assert_int_equal(dr.failed, 0);
	for (int i = 0; i < N_MSGS; i++)
		assert_int_equal(calls[i], 1);
	assert_int_equal(kafka_inflight(k), 0);
	assert_int_equal(off_thread, 0);
	assert_int_equal(release(k, 1000), 0);
	settle();
}

/* --- consuming -------------------------------------------------------------------------- */

struct seen {
	int32_t partition;
	int64_t offset;
	int times;
};

static struct {
	struct kafka_client *k;
	struct seen by_id[N_MSGS];
	int64_t last_offset[N_PARTITIONS];
	int last_id[N_PARTITIONS];
	int records, bad, order_errors;
	bool mark_done;
} rx;

static bool is_done(int id)
{
	return id < N_MSGS / 2 || id % 3 == 0;   /* half, plus some finishing out of order */
}

static void on_record(const struct kafka_record *rec, void *arg)
{
	char want[32];
	int id;

	check_thread();
	rx.records++;
	if (strcmp(rec->topic, "orders") != 0 || rec->partition < 0 ||
	    rec->partition >= N_PARTITIONS || rec->n_headers != 3 ||
	    strcmp(rec->headers[0], "id") != 0 || strcmp(rec->headers[2], "kind") != 0 ||
	    strcmp(rec->headers[3], "test") != 0 || strcmp(rec->headers[4], "empty") != 0 ||
	    strcmp(rec->headers[5], "") != 0 || rec->timestamp_ms <= 0) {
		rx.bad++;
		return;
	}
	id = atoi(rec->headers[1]);
	if (id < 0 || id >= N_MSGS) {
		rx.bad++;
		return;
	}
	snprintf(want, sizeof(want), "k%d", id % N_KEYS);
	if (rec->key_len != strlen(want) || memcmp(rec->key, want, rec->key_len) != 0)
		rx.bad++;
	snprintf(want, sizeof(want), "value-%d", id);
	if (rec->value_len != strlen(want) || memcmp(rec->value, want, rec->value_len) != 0)
		rx.bad++;
	/* In order per partition: offsets and the producer's sequence both increase. */
	if (rec->offset <= rx.last_offset[rec->partition] || id <= rx.last_id[rec->partition])
		rx.order_errors++;
	rx.last_offset[rec->partition] = rec->offset;
	rx.last_id[rec->partition] = id;
	rx.by_id[id].partition = rec->partition;
	rx.by_id[id].offset = rec->offset;
	rx.by_id[id].times++;
	if (rx.mark_done && is_done(id))
		kafka_done(rx.k, rec->topic, rec->partition, rec->offset);
}

static int rx_expected;
static bool all_received(void)
{
	return rx.records >= rx_expected;
}

static void rx_reset(struct kafka_client *k)
{
	memset(&rx, 0, sizeof(rx));
	rx.k = k;
	for (int p = 0; p < N_PARTITIONS; p++) {
		rx.last_offset[p] = -1;
		rx.last_id[p] = -1;
	}
}

/* Consumes the 1,000 (headers and keys intact, in partition order), marks some done, closes,
 * and a new member of the same group resumes after the contiguous done prefix of each
 * partition: every record not done comes again, nothing done before the first undone does. */
static void test_consume_resume(void **state)
{
	const char *topics[] = { "orders" };
	struct seen first[N_MSGS];
	int64_t resume_at[N_PARTITIONS];
	struct kafka_client *k = client("g-orders", NULL, 0);
	int64_t t0 = util_mono_ms();
	int expect_again = 0;

	rx_reset(k);
	rx.mark_done = true;
	rx_expected = N_MSGS;
	assert_int_equal(kafka_subscribe(k, topics, 1, on_record, NULL), 0);
	assert_true(run_until(all_received, 15000));
	print_message("# consumed %d records (incl. group join): %" PRId64 " ms\n", N_MSGS,
		      util_mono_ms() - t0);
	run_until(NULL, 100);           /* nothing more arrives */
	assert_int_equal(rx.records, N_MSGS);
	assert_int_equal(rx.bad, 0);
	assert_int_equal(rx.order_errors, 0);
	for (int i = 0; i < N_MSGS; i++)
		assert_int_equal(rx.by_id[i].times, 1);
	memcpy(first, rx.by_id, sizeof(first));

	/* Where each partition must resume: its first record (by offset) not done. */
	for (int p = 0; p < N_PARTITIONS; p++)
		resume_at[p] = INT64_MAX;
	for (int i = 0; i < N_MSGS; i++)
		if (!is_done(i) && first[i].offset < resume_at[first[i].partition])
			resume_at[first[i].partition] = first[i].offset;
	for (int i = 0; i < N_MSGS; i++)
		if (first[i].offset >= resume_at[first[i].partition])
			expect_again++;
	assert_true(expect_again >= N_MSGS / 2 - N_MSGS / 6);
	t0 = util_mono_ms();
	assert_int_equal(release(k, 1000), 0);
	print_message("# free (commit, leave the group): %" PRId64 " ms\n", util_mono_ms() - t0);
	settle();

	k = client("g-orders", NULL, 0);
	rx_reset(k);
	rx_expected = expect_again;
	assert_int_equal(kafka_subscribe(k, topics, 1, on_record, NULL), 0);
	assert_true(run_until(all_received, 15000));
	run_until(NULL, 200);
	assert_int_equal(rx.records, expect_again);
	assert_int_equal(rx.bad, 0);
	assert_int_equal(rx.order_errors, 0);
	for (int i = 0; i < N_MSGS; i++) {
		bool again = first[i].offset >= resume_at[first[i].partition];

		assert_int_equal(rx.by_id[i].times, again ? 1 : 0);
		if (!is_done(i))
			assert_int_equal(rx.by_id[i].times, 1);     /* at-least-once */
	}
	assert_int_equal(off_thread, 0);
	assert_int_equal(release(k, 1000), 0);
	settle();
}

/* --- failures --------------------------------------------------------------------------- */

/* Brokers down: messages wait (no report, no error); brokers up: they are delivered. */
static void test_broker_down(void **state)
{
	struct kafka_client *k = client("g-down", NULL, 0);
	int calls[11] = { 0 };

	memset(&dr, 0, sizeof(dr));
	dr_expected = 1;
	assert_int_equal(produce_one(k, "orders", 0, &calls[0]), 0);   /* connected, has a PID */
	assert_true(run_until(all_reported, 10000));
	assert_int_equal(dr.ok, 1);

	set_brokers(false);
	dr_expected = 11;
	for (int i = 1; i <= 10; i++)
		assert_int_equal(produce_one(k, "orders", i, &calls[i]), 0);
	assert_false(run_until(all_reported, 1500));
	assert_int_equal(dr.ok + dr.failed, 1);
	assert_int_equal(kafka_inflight(k), 10);
	set_brokers(true);
	assert_true(run_until(all_reported, 15000));
	assert_int_equal(dr.ok, 11);
	assert_int_equal(dr.failed, 0);
	for (int i = 0; i <= 10; i++)
		assert_int_equal(calls[i], 1);
	assert_int_equal(off_thread, 0);
	assert_int_equal(release(k, 1000), 0);
	settle();
}

/* message.timeout.ms expires while the brokers are down: SAGAD_ETIMEOUT with librdkafka's text. */
static void test_message_timeout(void **state)
{
	const char *extra[] = { "producer.message.timeout.ms=300" };
	struct kafka_client *k = client("g-timeout", extra, 1);
	int calls = 0;

	memset(&dr, 0, sizeof(dr));
	set_brokers(false);
	dr_expected = 1;
	assert_int_equal(produce_one(k, "orders", 1, &calls), 0);
	assert_true(run_until(all_reported, 5000));
	set_brokers(true);
	assert_int_equal(calls, 1);
	assert_int_equal(dr.failed, 1);
	assert_int_equal(dr.last_err, SAGAD_ETIMEOUT);
	assert_non_null(strstr(dr.last_errstr, "timed out"));
	assert_int_equal(release(k, 0), 0);
	settle();
}

/* Freeing with messages stuck: returns how many, and each callback runs once, ESHUTDOWN. */
static void test_free_undelivered(void **state)
{
	struct kafka_client *k = client("g-free", NULL, 0);
	int calls[5] = { 0 };

	memset(&dr, 0, sizeof(dr));
	set_brokers(false);
	for (int i = 0; i < 5; i++)
		assert_int_equal(produce_one(k, "orders", i, &calls[i]), 0);
	run_until(NULL, 50);
	{
		int64_t t0 = util_mono_ms();

		assert_int_equal(release(k, 200), 5);
		print_message("# free with 5 stuck: %" PRId64 " ms, \"%s\"\n", util_mono_ms() - t0,
			      dr.last_errstr);
	}
	set_brokers(true);
	for (int i = 0; i < 5; i++)
		assert_int_equal(calls[i], 1);
	assert_int_equal(dr.failed, 5);
	assert_int_equal(dr.last_err, SAGAD_ESHUTDOWN);
	assert_int_equal(off_thread, 0);
	settle();
}

/* A small queue fills: SAGAD_EFULL, and a refused message's callback never runs. */
static void test_queue_full(void **state)
{
	const char *extra[] = { "producer.queue.buffering.max.messages=10" };
	struct kafka_client *k = client("g-full", extra, 1);
	static int calls[100];
	int accepted = 0, full = 0;

	memset(&dr, 0, sizeof(dr));
	for (int i = 0; i < 100; i++) {
		int rc = produce_one(k, "orders", i, &calls[i]);

		if (rc == 0)
			accepted++;
		else if (rc == SAGAD_EFULL)
			full++;
	}
	print_message("# queue full: %d accepted, %d refused\n", accepted, full);
	assert_int_equal(accepted + full, 100);
	assert_true(accepted >= 1 && accepted <= 10);
	dr_expected = accepted;
	assert_true(run_until(all_reported, 10000));
	run_until(NULL, 50);
	assert_int_equal(dr.ok, accepted);
	for (int i = 0; i < 100; i++)
		assert_true(calls[i] <= 1);
	assert_int_equal(produce_one(k, "orders", 0, &calls[0]), 0);  /* room again */
	assert_int_equal(release(k, 1000), 0);
	settle();
}

/* A bad property fails the creation with a message naming it. */
static void test_bad_config(void **state)
{
	static const struct {
		const char *entry, *needle;
	} cases[] = {
		{ "no.such.property=1", "no.such.property" },
		{ "producer.linger.ms=soon", "linger.ms" },
		{ "consumer.session.timeout.ms=-5", "session.timeout.ms" },
		{ "linger.ms", "expected name=value" },
		{ "=1", "expected name=value" },
	};
	struct kafka_client *k;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		const char *config[] = { cases[i].entry };
		struct kafka_options opt = { .brokers = bootstraps, .config = config, .n_config = 1 };

		k = (struct kafka_client *)&k;
		err[0] = '\0';
		assert_int_equal(kafka_client_new(&loop, &opt, &k, err, sizeof(err)), SAGAD_EINVAL);
		assert_null(k);
		if (strstr(err, cases[i].needle) == NULL)
			fail_msg("%s: \"%s\" does not name %s", cases[i].entry, err, cases[i].needle);
	}
	{
		struct kafka_options opt = { .brokers = NULL };

		assert_int_equal(kafka_client_new(&loop, &opt, &k, err, sizeof(err)), SAGAD_EINVAL);
	}
	kafka_client_free(NULL, 0);
	settle();
}

/* --- throughput ------------------------------------------------------------------------- */

static int bench_done;
static void on_bench_delivered(int err, const char *errstr, void *arg)
{
	if (err == 0)
		dr.ok++;
	else
		dr.failed++;
}

/* Sequential round trips: each delivery report produces the next message. */
static struct kafka_message *chain_msg;
static int chain_left;
static void on_chain_delivered(int err, const char *errstr, void *arg)
{
	if (err != 0 || --chain_left == 0)
		return;
	if (kafka_produce(arg, chain_msg, on_chain_delivered, arg) != 0)
		chain_left = -1;
}

static bool chain_finished(void)
{
	return chain_left <= 0;
}

static bool bench_reported(void)
{
	return dr.ok + dr.failed >= N_BENCH;
}

static int bench_records;
static int64_t bench_first_ms, bench_last_ms;
static void on_bench_record(const struct kafka_record *rec, void *arg)
{
	if (bench_records++ == 0)
		bench_first_ms = util_mono_ms();
	bench_last_ms = util_mono_ms();
	kafka_done(arg, rec->topic, rec->partition, rec->offset);
	bench_done++;
}

static bool bench_received(void)
{
	return bench_records >= N_BENCH;
}

/* Not a pass/fail test: prints rates on the mock (one loop, the mock in the same process). */
static void test_throughput(void **state)
{
	const char *topics[] = { "bench" };
	char value[128];
	const char *headers[] = { "saga", "01J9ZZZZZZZZZZZZZZZZZZZZZZ", "step", "pay" };
	struct kafka_message m = { .topic = "bench", .key = "01J9ZZZZZZZZZZZZZZZZZZZZZZ",
				   .key_len = 26, .value = value, .headers = headers,
				   .n_headers = 2 };
	struct kafka_client *k = client("g-bench", NULL, 0);
	int64_t t0;

	memset(value, 'x', sizeof(value));
	m.value_len = sizeof(value);
	memset(&dr, 0, sizeof(dr));
	assert_int_equal(kafka_produce(k, &m, on_bench_delivered, NULL), 0);  /* connect */
	dr_expected = 1;
	assert_true(run_until(all_reported, 10000));
	memset(&dr, 0, sizeof(dr));
	t0 = util_mono_ms();
	for (int i = 0; i < N_BENCH; i++)
		assert_int_equal(kafka_produce(k, &m, on_bench_delivered, NULL), 0);
	assert_true(run_until(bench_reported, 20000));
	print_message("# produce+deliver: %d messages in %" PRId64 " ms\n", N_BENCH,
		      util_mono_ms() - t0);
	assert_int_equal(dr.failed, 0);

	chain_msg = &m;
	chain_left = 200;
	t0 = util_mono_ms();
	assert_int_equal(kafka_produce(k, &m, on_chain_delivered, k), 0);
	assert_true(run_until(chain_finished, 10000));
	assert_int_equal(chain_left, 0);
	print_message("# sequential produce->report round trip: %.2f ms\n",
		      (double)(util_mono_ms() - t0) / 200);

	assert_int_equal(kafka_subscribe(k, topics, 1, on_bench_record, k), 0);
	assert_true(run_until(bench_received, 20000));
	print_message("# consume (after the group join): %d records in %" PRId64 " ms\n",
		      bench_records, bench_last_ms - bench_first_ms);
	assert_int_equal(bench_done, bench_records);
	assert_int_equal(release(k, 1000), 0);
	settle();
}

/* --- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];
	const char *lvl = getenv("SAGAD_TEST_LOG");

	log_min_level = LOG_WARN;
	if (lvl != NULL)
		log_level_parse(lvl, &log_min_level);
	loop_thread = pthread_self();
	if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0)
		return -1;
	/* The throwaway client that hosts the mock cluster's threads. */
	rd_kafka_conf_set(conf, "client.id", "mock-host", err, sizeof(err));
	mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (mock_rk == NULL)
		return -1;
	mcluster = rd_kafka_mock_cluster_new(mock_rk, N_BROKERS);
	if (mcluster == NULL)
		return -1;
	bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
	if (rd_kafka_mock_topic_create(mcluster, "orders", N_PARTITIONS, 1) ||
	    rd_kafka_mock_topic_create(mcluster, "bench", N_PARTITIONS, 1))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		return -1;
	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(mock_rk);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_config, cleanup),
		cmocka_unit_test_teardown(test_produce, cleanup),
		cmocka_unit_test_teardown(test_consume_resume, cleanup),
		cmocka_unit_test_teardown(test_broker_down, cleanup),
		cmocka_unit_test_teardown(test_message_timeout, cleanup),
		cmocka_unit_test_teardown(test_free_undelivered, cleanup),
		cmocka_unit_test_teardown(test_queue_full, cleanup),
		cmocka_unit_test_teardown(test_throughput, cleanup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
