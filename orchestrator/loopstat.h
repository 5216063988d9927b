/* loopstat.h: how long the loop thread works per turn, for GET /metrics. A stalled turn delays
 * every saga and every API answer, so the distribution of turn times is what tells whether a
 * long operation (a purge pass, a big commit, a burst of timers) blocks the loop.
 *
 * A turn's busy time is the wall time between two consecutive passes through the loop's check
 * phase minus the time the loop spent waiting in poll (libuv's idle-time metric), i.e. every
 * callback and the per-turn flush (commit included). One instance per process, loop thread
 * only. */
#ifndef SAGAD_LOOPSTAT_H
#define SAGAD_LOOPSTAT_H

#include <stdint.h>
#include <uv.h>

struct strbuf;

/* Starts measuring loop's turns. Must be called before uv_run() (it enables libuv's idle-time
 * metric on loop). Returns 0 or a libuv error. */
int loopstat_start(uv_loop_t *loop);
/* Stops measuring and closes the handle (the loop must run once more to release it). */
void loopstat_stop(void);
/* Appends the Prometheus histogram sagad_loop_turn_seconds and the gauge
 * sagad_loop_turn_seconds_max (longest turn since start). Nothing when not started. */
void loopstat_render(struct strbuf *b);

#endif
