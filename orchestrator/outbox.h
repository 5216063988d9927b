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
struct secret_key;

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

/* Like outbox_put(), for a message that carries a secret (secret.h): the row keeps the key,
 * headers and value sealed with k (bound to saga_id), and the relay opens them just before
 * producing. k must be the key outbox_set_key() gave the relay. */
int outbox_put_sealed(struct outbox *ob, const struct secret_key *k, const char *topic,
		      const char *key, const char *const *headers, size_t n_headers,
		      const char *value, const char *saga_id);
/* The key that opens sealed rows (borrowed), or NULL: such rows then stay unsent. */
void outbox_set_key(struct outbox *ob, const struct secret_key *k);

/* Call after every commit: produces the committed rows not yet handed to the producer. */
void outbox_after_commit(struct outbox *ob);

struct outbox_stats {
	uint64_t produced, delivered, failed;
	size_t inflight;
};
void outbox_stats(const struct outbox *ob, struct outbox_stats *out);

#endif
