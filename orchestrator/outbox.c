/* outbox.c: the transactional outbox relay (see outbox.h).
 *
 * cursor is the highest sequence number handed to the producer. After a commit, the rows
 * above it are produced in order. A failed delivery is recorded on its row and the relay
 * rescans from the start once nothing is in flight (then every unsent row is one that
 * failed), with backoff. On start-up cursor is 0: every row left unsent is produced again. */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "error.h"
#include "kafka.h"
#include "log.h"
#include "outbox.h"
#include "secret.h"
#include "store.h"
#include "util.h"

#define SCAN_LIMIT 1000             /* rows per scan; the rest on the next loop turn */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 30000

struct outbox {
	uv_loop_t *loop;
	struct store *store;
	struct kafka_client *kafka;
	int64_t cursor;
	bool dirty;                 /* rows were put since the last scan */
	int64_t durable_seen;       /* store_outbox_durable() at the last scan */
	bool rescan;                /* a delivery failed: produce the unsent rows again */
	bool more;                  /* the last scan stopped at SCAN_LIMIT or a full queue */
	int64_t backoff_ms;
	uv_timer_t timer;
	struct outbox_stats stats;
	const struct secret_key *key;  /* opens sealed rows */
};

/* A sealed row: headers ["sagad-sealed", "v1:..."], no key, no value; the sealed text is
 * {"k": key|null, "h": [name, value, ...], "v": value|null}. */
#define SEALED_HEADER "sagad-sealed"

/* One message in flight: found again by its sequence number. */
struct flight {
	struct outbox *ob;
	int64_t seq;
};

static void on_timer(uv_timer_t *t);

struct outbox *outbox_new(uv_loop_t *loop, struct store *store, struct kafka_client *kafka)
{
	struct outbox *ob = xcalloc(1, sizeof(*ob));

	ob->loop = loop;
	ob->store = store;
	ob->kafka = kafka;
	ob->dirty = true; /* produce what an earlier run left unsent */
	ob->backoff_ms = BACKOFF_MIN_MS;
	uv_timer_init(loop, &ob->timer);
	ob->timer.data = ob;
	return ob;
}

static void on_closed(uv_handle_t *h)
{
	free(h->data);
}

void outbox_stop(struct outbox *ob)
{
	if (ob == NULL)
		return;
	uv_timer_stop(&ob->timer);
	ob->kafka = NULL;
}

void outbox_free(struct outbox *ob)
{
	if (ob == NULL)
		return;
	uv_timer_stop(&ob->timer);
	uv_close((uv_handle_t *)&ob->timer, on_closed);
}

int outbox_put(struct outbox *ob, const char *topic, const char *key,
	       const char *const *headers, size_t n_headers, const char *value,
	       const char *saga_id)
{
	json_t *h = json_array();
	struct store_outbox m = { .topic = (char *)topic, .key = (char *)key,
				  .value = (char *)value, .saga_id = (char *)saga_id,
				  .created_at = util_now_ms() };
	int rc;

	for (size_t i = 0; i < n_headers * 2; i++)
		json_array_append_new(h, json_string(headers[i] ? headers[i] : ""));
	m.headers = json_dumps(h, JSON_COMPACT);
	json_decref(h);
	rc = store_outbox_put(ob->store, &m, NULL);
	free(m.headers);
	if (rc == 0)
		ob->dirty = true;
	return rc;
}

void outbox_set_key(struct outbox *ob, const struct secret_key *k)
{
	ob->key = k;
}

static char *sealed_aad(const char *saga_id)
{
	return xasprintf("sagad outbox %s", saga_id ? saga_id : "-");
}

int outbox_put_sealed(struct outbox *ob, const struct secret_key *k, const char *topic,
		      const char *key, const char *const *headers, size_t n_headers,
		      const char *value, const char *saga_id)
{
	json_t *h = json_array(), *all;
	char *text, *aad, *sealed;
	const char *row_headers[2];
	int rc;

	if (k == NULL)
		return SAGAD_ENOKEY;
	for (size_t i = 0; i < n_headers * 2; i++)
		json_array_append_new(h, json_string(headers[i] ? headers[i] : ""));
	all = json_pack("{s:o, s:o, s:o}", "k", key ? json_string(key) : json_null(), "h", h, "v",
			value ? json_string(value) : json_null());
	text = json_dumps(all, JSON_COMPACT);
	json_decref(all);
	aad = sealed_aad(saga_id);
	sealed = secret_seal(k, aad, text, strlen(text));
	free(aad);
	free(text);
	row_headers[0] = SEALED_HEADER;
	row_headers[1] = sealed;
	rc = outbox_put(ob, topic, NULL, row_headers, 1, NULL, saga_id);
	free(sealed);
	return rc;
}

/* Opens a sealed row into *km's key, headers (hv) and value; the strings live in *opened.
 * Returns 0, or SAGAD_ENOKEY / SAGAD_EINVAL. */
static int open_row(struct outbox *ob, const struct store_outbox *m, json_t *h, json_t **opened,
		    struct kafka_message *km, const char ***hv)
{
	char *aad = sealed_aad(m->saga_id), *plain = NULL;
	json_t *all, *hh;
	size_t n_pairs;
	int rc;

	if (ob->key == NULL) {
		free(aad);
		return SAGAD_ENOKEY;
	}
	rc = secret_open(ob->key, aad, json_string_value(json_array_get(h, 1)), &plain, NULL);
	free(aad);
	if (rc != 0)
		return rc;
	all = json_loads(plain, 0, NULL);
	free(plain);
	hh = json_object_get(all, "h");
	if (!json_is_array(hh)) {
		json_decref(all);
		return SAGAD_EINVAL;
	}
	n_pairs = json_array_size(hh) / 2;
	free(*hv);
	*hv = xcalloc(n_pairs * 2 + 1, sizeof(**hv));
	for (size_t i = 0; i < n_pairs * 2; i++)
		(*hv)[i] = json_string_value(json_array_get(hh, i));
	km->headers = *hv;
	km->n_headers = n_pairs;
	km->key = json_string_value(json_object_get(all, "k"));
	km->key_len = km->key ? strlen(km->key) : 0;
	km->value = json_string_value(json_object_get(all, "v"));
	km->value_len = km->value ? strlen(km->value) : 0;
	*opened = all;
	return 0;
}

static void on_delivery(int err, const char *errstr, void *arg)
{
	struct flight *f = arg;
	struct outbox *ob = f->ob;

	ob->stats.inflight--;
	if (err == 0) {
		ob->stats.delivered++;
		ob->backoff_ms = BACKOFF_MIN_MS;
		/* Committed with the next loop turn's writes. */
		if (store_outbox_sent(ob->store, f->seq, util_now_ms()) != 0)
			log_error("outbox=%lld event=mark_sent_failed", (long long)f->seq);
	} else {
		ob->stats.failed++;
		ob->rescan = true;
		log_warn("outbox=%lld event=delivery_failed err=\"%s\" msg=\"kept; produced again "
			 "later\"", (long long)f->seq, errstr ? errstr : sagad_strerror(err));
		store_outbox_failed(ob->store, f->seq, errstr ? errstr : sagad_strerror(err));
	}
	free(f);
	if (ob->stats.inflight == 0 && ob->rescan && !uv_is_active((uv_handle_t *)&ob->timer)) {
		uv_timer_start(&ob->timer, on_timer, (uint64_t)ob->backoff_ms, 0);
		ob->backoff_ms = ob->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ob->backoff_ms * 2;
	}
}

struct scan {
	struct outbox *ob;
	int n;
	bool full;
};

static int on_row(const struct store_outbox *m, void *arg)
{
	struct scan *sc = arg;
	struct outbox *ob = sc->ob;
	json_t *h = m->headers ? json_loads(m->headers, 0, NULL) : NULL;
	size_t n_pairs = json_array_size(h) / 2;
	const char **hv = xcalloc(n_pairs * 2 + 1, sizeof(*hv));
	struct kafka_message km = { .topic = m->topic, .key = m->key,
				    .key_len = m->key ? strlen(m->key) : 0, .headers = hv,
				    .n_headers = n_pairs, .value = m->value,
				    .value_len = m->value ? strlen(m->value) : 0 };
	struct flight *f = xcalloc(1, sizeof(*f));
	json_t *opened = NULL;
	int rc = 0;

	for (size_t i = 0; i < n_pairs * 2; i++)
		hv[i] = json_string_value(json_array_get(h, i));
	f->ob = ob;
	f->seq = m->seq;
	if (n_pairs == 1 && hv[0] != NULL && strcmp(hv[0], SEALED_HEADER) == 0)
		rc = open_row(ob, m, h, &opened, &km, &hv);
	if (rc == 0)
		rc = kafka_produce(ob->kafka, &km, on_delivery, f);
	free(hv);
	json_decref(h);
	json_decref(opened);
	if (rc == SAGAD_EFULL) {
		free(f);
		sc->full = true;
		return 1; /* stop here; this row is produced on the next scan */
	}
	if (rc != 0) {
		/* Refused for this message only (too large, bad topic...): record it, go on with
		 * the others, and try it again with the next rescan (backoff). */
		free(f);
		log_error("outbox=%lld topic=%s event=produce_failed err=\"%s\" msg=\"kept unsent; "
			  "retried later\"", (long long)m->seq, m->topic, sagad_strerror(rc));
		store_outbox_failed(ob->store, m->seq, sagad_strerror(rc));
		ob->stats.failed++;
		ob->cursor = m->seq;
		ob->rescan = true;
		if (!uv_is_active((uv_handle_t *)&ob->timer)) {
			uv_timer_start(&ob->timer, on_timer, (uint64_t)ob->backoff_ms, 0);
			ob->backoff_ms = ob->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
					 ob->backoff_ms * 2;
		}
		return 0;
	}
	ob->cursor = m->seq;
	ob->stats.produced++;
	ob->stats.inflight++;
	sc->n++;
	return 0;
}

static void scan(struct outbox *ob)
{
	struct scan sc = { .ob = ob };

	ob->dirty = false;
	store_outbox_each_unsent(ob->store, ob->cursor, SCAN_LIMIT, on_row, &sc);
	ob->more = sc.full || sc.n == SCAN_LIMIT;
	if (ob->more && !uv_is_active((uv_handle_t *)&ob->timer))
		uv_timer_start(&ob->timer, on_timer, sc.full ? 50 : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct outbox *ob = t->data;

	if (ob->kafka == NULL)
		return;
	if (ob->rescan && ob->stats.inflight == 0) {
		ob->rescan = false;
		ob->cursor = 0;
	}
	/* Rows of this turn's open transaction are visible on our connection but not
	 * committed: never produce them; the scan runs right after the commit instead. */
	if (store_pending(ob->store)) {
		ob->more = true;
		return;
	}
	scan(ob);
}

void outbox_after_commit(struct outbox *ob)
{
	int64_t durable;

	if (ob == NULL || ob->kafka == NULL)
		return;
	/* A scan hands out only rows of durable commits: rows put before their commit was
	 * durable are produced once it is. */
	durable = store_outbox_durable(ob->store);
	if (durable != ob->durable_seen) {
		ob->durable_seen = durable;
		ob->dirty = true;
	}
	if (!(ob->dirty || ob->more))
		return;
	if (uv_is_active((uv_handle_t *)&ob->timer))
		return; /* a scheduled scan (backoff, or a full queue) comes first */
	scan(ob);
}

void outbox_stats(const struct outbox *ob, struct outbox_stats *out)
{
	*out = ob->stats;
}
