/* outbox.h: the relay of the transactional outbox. Every outgoing Kafka message (commands,
 * publish steps, lifecycle events) is first a row of the `outbox` table, written in the same
 * transaction as the state change that sends it. After each commit the relay hands the
 * committed unsent rows to the producer, and marks a row sent only on the broker's
 * acknowledgement. Rows that fail (brokers down, message timeout) are produced again with
 * backoff, across restarts: delivery is at least once, consumers deduplicate by the
 * idempotency-key header. */
#ifndef SAGAD_OUTBOX_H
#define SAGAD_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct outbox;
struct store;
struct kafka_client;

/* Returns a new relay owned by the caller (outbox_free()). store and kafka are borrowed. */
struct outbox *outbox_new(uv_loop_t *loop, struct store *store, struct kafka_client *kafka);
/* Stops producing (before the Kafka client is freed): outbox_after_commit() does nothing
 * afterwards; delivery reports still mark rows sent. NULL is a no-op. */
void outbox_stop(struct outbox *ob);
/* Closes its timer; messages in flight stay unsent in the store. NULL is a no-op. */
void outbox_free(struct outbox *ob);

/* Appends a message to the outbox in the store's open transaction (it leaves only after the
 * commit). headers are name, value pairs (n_headers pairs), copied. Returns 0 or a store error. */
int outbox_put(struct outbox *ob, const char *topic, const char *key,
	       const char *const *headers, size_t n_headers, const char *value,
	       const char *saga_id);

/* Call after every commit: produces the committed rows not yet handed to the producer. */
void outbox_after_commit(struct outbox *ob);

struct outbox_stats {
	uint64_t produced, delivered, failed;
	size_t inflight;
};
void outbox_stats(const struct outbox *ob, struct outbox_stats *out);

#endif
