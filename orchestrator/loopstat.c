/* loopstat.c: per-turn busy time of the loop thread (see loopstat.h). */
#include <stdbool.h>
#include "loopstat.h"
#include "util.h"

/* Upper bounds of the histogram buckets, in microseconds (the last one is +Inf). */
static const uint64_t bounds_us[] = { 1000, 5000, 10000, 50000, 100000, 500000, 1000000 };
#define N_BOUNDS (sizeof(bounds_us) / sizeof(bounds_us[0]))

static struct {
	bool on;
	uv_check_t check;
	uint64_t last_ns, last_idle_ns;
	uint64_t count[N_BOUNDS + 1];  /* per bucket, not cumulative */
	uint64_t turns, sum_us, max_us;
} ls;

static void on_check(uv_check_t *h)
{
	uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop), busy_us;
	size_t i;

	busy_us = (now - ls.last_ns - (idle - ls.last_idle_ns)) / 1000;
	ls.last_ns = now;
	ls.last_idle_ns = idle;
	for (i = 0; i < N_BOUNDS && busy_us > bounds_us[i]; i++)
		;
	ls.count[i]++;
	ls.turns++;
	ls.sum_us += busy_us;
	if (busy_us > ls.max_us)
		ls.max_us = busy_us;
}

int loopstat_start(uv_loop_t *loop)
{
	int rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);

	if (rc != 0)
		return rc;
	uv_check_init(loop, &ls.check);
	uv_unref((uv_handle_t *)&ls.check);
	ls.last_ns = uv_hrtime();
	ls.last_idle_ns = uv_metrics_idle_time(loop);
	uv_check_start(&ls.check, on_check);
	ls.on = true;
	return 0;
}

void loopstat_stop(void)
{
	if (!ls.on)
		return;
	uv_check_stop(&ls.check);
	uv_close((uv_handle_t *)&ls.check, NULL);
	ls.on = false;
}

void loopstat_render(struct strbuf *b)
{
	uint64_t cum = 0;
	size_t i;

	if (!ls.on)
		return;
	strbuf_adds(b, "# HELP sagad_loop_turn_seconds Busy time of one loop turn (callbacks and the "
		    "per-turn commit; not the wait for events).\n# TYPE sagad_loop_turn_seconds "
		    "histogram\n");
	for (i = 0; i < N_BOUNDS; i++) {
		cum += ls.count[i];
		strbuf_addf(b, "sagad_loop_turn_seconds_bucket{le=\"%g\"} %llu\n",
			    (double)bounds_us[i] / 1e6, (unsigned long long)cum);
	}
	cum += ls.count[N_BOUNDS];
	strbuf_addf(b, "sagad_loop_turn_seconds_bucket{le=\"+Inf\"} %llu\n"
		    "sagad_loop_turn_seconds_sum %.6f\nsagad_loop_turn_seconds_count %llu\n",
		    (unsigned long long)cum, (double)ls.sum_us / 1e6, (unsigned long long)ls.turns);
	strbuf_addf(b, "# HELP sagad_loop_turn_seconds_max The longest loop turn since start.\n"
		    "# TYPE sagad_loop_turn_seconds_max gauge\nsagad_loop_turn_seconds_max %.6f\n",
		    (double)ls.max_us / 1e6);
}
