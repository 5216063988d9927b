/* kafka.h: the Kafka transport: one librdkafka producer (idempotent) and one consumer (a
 * consumer group) bridged onto the libuv loop. librdkafka's own threads do the network I/O;
 * they only wake the loop (rd_kafka_queue_io_event_enable on a pipe watched by a uv_poll),
 * and every callback below runs on the loop thread. No other thread touches saga state. */
#ifndef SAGAD_ADAPTER_KAFKA_H
#define SAGAD_ADAPTER_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kafka_client;

struct kafka_options {
	const char *brokers;            /* bootstrap.servers, "host:port,host:port" */
	const char *group_id;           /* consumer group; default "sagad" */
	const char *const *config;      /* extra client properties as "name=value" strings
					 * (security.protocol, sasl.*, ssl.*, ...), or NULL;
					 * applied to producer and consumer alike; count in n_config */
	size_t n_config;
	const char *client_id;          /* default "sagad" */
	size_t max_record_bytes;        /* consumed records larger than this (key + value +
					 * headers) are refused: logged, counted, their offset
					 * released, never handed to kafka_subscribe()'s callback;
					 * default 1 MiB */
};

/* Creates the producer (enable.idempotence=true, acks=all) and the consumer (manual offset
 * store: an offset is committed only after kafka_done()). "producer.NAME=VALUE" and
 * "consumer.NAME=VALUE" apply a property to one client only. Returns 0 and a client owned by
 * the caller (kafka_client_free()), or an error with a message in err (a bad property names
 * the property, never its value). The producer fetches its producer id and the consumer
 * finds its coordinator at once; the group is joined on kafka_subscribe(). */
int kafka_client_new(uv_loop_t *loop, const struct kafka_options *opt, struct kafka_client **out,
		     char *err, size_t errlen);
/* Waits up to flush_ms for messages in flight (their delivery callbacks run), commits the
 * offsets marked done, leaves the group, closes the libuv handles; NULL is a no-op. Returns
 * the number of messages that were still undelivered: their callbacks run with
 * SAGAD_ESHUTDOWN (they stay unsent in the caller's outbox). */
size_t kafka_client_free(struct kafka_client *k, int flush_ms);

struct kafka_message {
	const char *topic;
	const char *key;                /* or NULL */
	size_t key_len;
	const char *const *headers;     /* name0, value0, name1, value1, ... */
	size_t n_headers;               /* pairs */
	const char *value;              /* or NULL */
	size_t value_len;
};

/* Delivery report: err 0 when the broker acknowledged the message (acks=all), else a
 * negative SAGAD_* code with errstr (librdkafka's text). Runs once on the loop thread. */
typedef void (*kafka_delivery_cb)(int err, const char *errstr, void *arg);

/* Queues a message (everything is copied). Returns 0 (cb runs later, never inside this
 * call) or an error (SAGAD_EFULL when librdkafka's queue is full: try again later), in which
 * case cb never runs. */
int kafka_produce(struct kafka_client *k, const struct kafka_message *m, kafka_delivery_cb cb,
		  void *arg);

/* A consumed record; everything is borrowed for the duration of the callback. */
struct kafka_record {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const char *key;                /* or NULL */
	size_t key_len;
	const char *value;              /* or NULL */
	size_t value_len;
	const char *const *headers;     /* name0, value0, ... (values NUL-terminated) */
	size_t n_headers;               /* pairs */
	int64_t timestamp_ms;
};
typedef void (*kafka_record_cb)(const struct kafka_record *rec, void *arg);

/* Subscribes the consumer to topics (replacing any earlier subscription); records arrive
 * through cb on the loop thread, in partition order. Returns 0 or an error. */
int kafka_subscribe(struct kafka_client *k, const char *const *topics, size_t n_topics,
		    kafka_record_cb cb, void *arg);

/* Marks a record processed: its offset + 1 becomes committable (auto-commit every second,
 * and on rebalance and close). Call only once the record's effect is durable. */
void kafka_done(struct kafka_client *k, const char *topic, int32_t partition, int64_t offset);

/* Delivery reports pending and messages queued. */
size_t kafka_inflight(const struct kafka_client *k);
/* Consumed records refused for being larger than max_record_bytes, since the client started. */
uint64_t kafka_records_refused(const struct kafka_client *k);

#endif
