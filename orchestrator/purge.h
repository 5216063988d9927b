/* purge.h: retention on the loop: deletes the finished sagas (and sent outbox messages) older
 * than the retention, in passes short enough to share the loop thread with everything else.
 *
 * Each pass deletes in small batches (store_purge()) until its time budget is spent or the
 * backlog is gone; the deletes join the loop turn's transaction. While a backlog remains the
 * next pass comes after a pause three times as long as the pass (the purge takes about a
 * quarter of the loop's time), so its rate follows what the machine can delete instead of a
 * fixed number per second; otherwise every few seconds. */
#ifndef SAGAD_PURGE_H
#define SAGAD_PURGE_H

#include <stdint.h>
#include <uv.h>

struct store;
struct purge;

/* Starts passes on loop (the first after a pause), deleting finished sagas that ended more
 * than retention_ms ago (> 0). Returns a purge owned by the caller: purge_close() it. */
struct purge *purge_new(uv_loop_t *loop, struct store *store, int64_t retention_ms);
/* Stops the passes and frees p once its timer is closed (on a later loop iteration). NULL is
 * a no-op. */
void purge_close(struct purge *p);

#endif
