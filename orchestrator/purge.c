/* purge.c: retention passes on the loop (see purge.h). */
#include <stdbool.h>
#include <stdlib.h>
#include "error.h"
#include "log.h"
#include "purge.h"
#include "store.h"
#include "util.h"

#define BATCH 64                  /* sagas read per store_purge() call */
#define PASS_BUDGET_US 8000       /* a pass stops starting batches after this long */
#define BUSY_SHARE 4              /* with a backlog, a pass of d is followed by a pause of
				   * (BUSY_SHARE - 1) * d: the purge takes a quarter of the loop */
#define IDLE_MAX_MS 10000         /* between passes when the last one found nothing more */
#define LOG_EVERY_MS 10000        /* while a backlog lasts, one log line this often */

struct purge {
	uv_timer_t timer;
	struct store *store;
	int64_t retention_ms;
	/* Totals since the last log line. */
	int64_t sagas, messages, passes, last_log_ms;
	uint64_t busy_us;
};

/* Half the retention, within [100 ms, 10 s]: a short retention (tests) is honoured promptly. */
static uint64_t idle_ms(const struct purge *p)
{
	int64_t half = p->retention_ms / 2;

	return (uint64_t)(half < 100 ? 100 : half > IDLE_MAX_MS ? IDLE_MAX_MS : half);
}

static void on_purge(uv_timer_t *t)
{
	struct purge *p = t->data;
	struct store_purge_result r;
	uint64_t start = uv_hrtime(), spent_us = 0, pause_ms;
	int64_t now = util_now_ms(), before = now - p->retention_ms;
	int rc;

	do {
		rc = store_purge(p->store, before, BATCH, &r);
		if (rc != 0) {
			/* Nothing of that batch was deleted, and the store's cursor did not move:
			 * the next pass tries the same sagas again. */
			log_warn("event=purge_failed err=\"%s\"", sagad_strerror(rc));
			uv_timer_start(t, on_purge, idle_ms(p), 0);
			return;
		}
		p->sagas += r.sagas;
		p->messages += r.messages;
		spent_us = (uv_hrtime() - start) / 1000;
	} while (r.more && spent_us < PASS_BUDGET_US);
	p->passes++;
	p->busy_us += spent_us;
	if ((p->sagas > 0 || p->messages > 0) &&
	    (!r.more || now - p->last_log_ms >= LOG_EVERY_MS)) {
		log_info("event=purged sagas=%lld outbox_messages=%lld passes=%lld busy_ms=%llu "
			 "backlog=%s retention_ms=%lld", (long long)p->sagas, (long long)p->messages,
			 (long long)p->passes, (unsigned long long)(p->busy_us / 1000),
			 r.more ? "yes" : "no", (long long)p->retention_ms);
		p->sagas = p->messages = p->passes = 0;
		p->busy_us = 0;
		p->last_log_ms = now;
	}
	/* With a backlog the next pass comes soon (the commit of this one's deletes, at the end
	 * of this turn, comes on top of spent_us); otherwise after the idle interval. */
	pause_ms = (BUSY_SHARE - 1) * spent_us / 1000;
	uv_timer_start(t, on_purge, r.more ? (pause_ms > 0 ? pause_ms : 1) : idle_ms(p), 0);
}

struct purge *purge_new(uv_loop_t *loop, struct store *store, int64_t retention_ms)
{
	struct purge *p = xcalloc(1, sizeof(*p));

	p->store = store;
	p->retention_ms = retention_ms;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, on_purge, idle_ms(p), 0);
	return p;
}

static void on_closed(uv_handle_t *h)
{
	free(h->data);
}

void purge_close(struct purge *p)
{
	if (p == NULL)
		return;
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, on_closed);
}
