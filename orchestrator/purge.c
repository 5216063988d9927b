/* purge.c: retention passes on the loop (see purge.h). */
#include <stdlib.h>
#include "error.h"
#include "log.h"
#include "purge.h"
#include "store.h"
#include "util.h"

#define BATCH 64                  /* sagas read per store_purge() call */
#define PASS_BUDGET_US 8000       /* a pass stops starting batches after this long */
#define BUSY_MIN_MS 1             /* the shortest pause between passes while a backlog remains */
#define IDLE_MAX_MS 10000         /* between passes when the last one found nothing more */

struct purge {
	uv_timer_t timer;
	struct store *store;
	int64_t retention_ms;
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
	uint64_t start = uv_hrtime(), spent_us = 0;
	int64_t before = util_now_ms() - p->retention_ms;
	int sagas = 0, messages = 0, scanned = 0, batches = 0, rc;
	bool more;

	do {
		rc = store_purge(p->store, before, BATCH, &r);
		if (rc != 0) {
			log_warn("event=purge_failed err=\"%s\"", sagad_strerror(rc));
			uv_timer_start(t, on_purge, idle_ms(p), 0);
			return;
		}
		sagas += r.sagas;
		messages += r.messages;
		scanned += r.scanned;
		batches++;
		more = r.more;
		spent_us = (uv_hrtime() - start) / 1000;
	} while (more && spent_us < PASS_BUDGET_US);
	if (sagas > 0 || messages > 0)
		log_info("event=purged sagas=%d outbox_messages=%d scanned=%d batches=%d pass_us=%llu "
			 "more=%d retention_ms=%lld", sagas, messages, scanned, batches,
			 (unsigned long long)spent_us, more, (long long)p->retention_ms);
	/* With a backlog: pause as long as the pass took (the commit of its deletes, at the end
	 * of this turn, comes on top), so the purge gets about half of a busy loop and all of an
	 * idle one. */
	uv_timer_start(t, on_purge, more ? (spent_us / 1000 > BUSY_MIN_MS ? spent_us / 1000 :
					    BUSY_MIN_MS) : idle_ms(p), 0);
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
