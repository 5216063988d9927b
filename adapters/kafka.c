/* kafka.c: the Kafka transport: one idempotent librdkafka producer and one group consumer,
 * bridged onto the libuv loop.
 *
 * Wake-up bridging. librdkafka's threads never call into us. Each client has two bridged
 * queues (struct kqueue): the producer's main queue (delivery reports, errors, logs) and the
 * consumer's queue (records, rebalances, and, forwarded there by rd_kafka_poll_set_consumer(),
 * the consumer's main queue with its errors and logs). rd_kafka_queue_io_event_enable() makes
 * librdkafka write an 8-byte 1 to an eventfd when a queue goes from empty to non-empty; a
 * uv_poll on the eventfd wakes the loop, which resets the eventfd and then serves the queue
 * until it is empty (a queue left non-empty never wakes us again). A drain stops after a
 * budget to keep the loop fair; a uv_idle then resumes it on the next loop turn. Logs use
 * log.queue=true + rd_kafka_set_log_queue(rk, NULL), so log_cb runs from those drains too.
 *
 * Offsets. enable.auto.offset.store=false: kafka_done() records completion per partition in
 * a ring of delivered offsets, and only the contiguous done prefix is stored
 * (rd_kafka_offsets_store(), offset of the last contiguous done record + 1), so records that
 * finish out of order never let a commit skip an unfinished one (at-least-once).
 * enable.auto.commit=true commits what is stored every auto.commit.interval.ms (1 s), and on
 * revoke and close. Rebalancing follows the configured protocol: the default assignors are
 * eager (assign / unassign everything); cooperative-sticky uses the incremental calls.
 * Revocation asynchronously commits the stored offsets and forgets the revoked partitions'
 * rings: a record delivered before revocation and finished after it is redelivered to the
 * partition's next owner.
 *
 * max.poll.interval.ms counts from the last rd_kafka_consumer_poll() call, even an idle one,
 * and we only poll when woken: a repeating timer polls the consumer at a quarter of that
 * interval so an idle topic does not make the consumer leave its group.
 *
 * Configuration: opt->config entries "name=value" apply to both clients; "producer.name=value"
 * and "consumer.name=value" to one of them only (librdkafka warns about a producer property
 * set on a consumer and vice versa). enable.auto.offset.store=false and log.queue=true are
 * forced: the adapter's guarantees depend on them.
 *
 * Delivery contexts (callback + argument, the per-message opaque) come from slabs kept on a
 * free list, so a steady load allocates nothing of ours per message. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <librdkafka/rdkafka.h>
#include "error.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

#define KAFKA_DEFAULT_ID "sagad"
#define KAFKA_DEFAULT_MAX_RECORD (1024 * 1024)
/* Maximum rd_kafka_poll() calls (each serves a snapshot of the queue) per producer drain. */
#define PRODUCER_DRAIN_BUDGET 64
/* Maximum records handed out per consumer drain. */
#define CONSUMER_DRAIN_BUDGET 1024
#define CTX_SLAB 256
/* How long a shutdown waits for the consumer to commit its offsets and leave the group. */
#define KAFKA_CLOSE_MS 5000

/* One per produced message, from a slab; cb == NULL while on the free list. */
struct dr_ctx {
	kafka_delivery_cb cb;
	void *arg;
	struct dr_ctx *next;            /* free list */
};

struct ctx_slab {
	struct ctx_slab *next;
	struct dr_ctx ctx[CTX_SLAB];
};

/* A librdkafka queue bridged onto the loop. */
struct kqueue {
	struct kafka_client *k;
	rd_kafka_queue_t *q;
	int fd;                         /* eventfd librdkafka writes to */
	uv_poll_t poll;
	uv_idle_t idle;                 /* resumes a drain that stopped at its budget */
	bool (*drain)(struct kafka_client *k);  /* true when the queue was emptied */
};

/* A delivered record of an assigned partition, in offset order. */
struct pend {
	int64_t offset;
	bool done;
};

/* Completion tracking for one assigned partition. */
struct part {
	rd_kafka_topic_partition_list_t *tpl;   /* one element: topic, partition, offset */
	struct pend *ring;              /* cap is a power of two */
	size_t head, len, cap;
	int64_t stored;                 /* last offset stored, or -1 */
};

struct kafka_client {
	uv_loop_t *loop;
	rd_kafka_t *producer;
	rd_kafka_t *consumer;
	int consumer_closed;            /* the close at shutdown finished (else destroy skips it) */
	struct kqueue pq, cq;
	uv_timer_t keepalive;           /* polls the consumer for max.poll.interval.ms */
	uint64_t keepalive_ms;
	int handles_open;               /* libuv handles not yet closed */

	kafka_record_cb record_cb;
	void *record_arg;
	size_t max_record;              /* larger consumed records are refused */
	uint64_t refused;               /* ... and counted here */

	struct ctx_slab *slabs;
	struct dr_ctx *free_ctx;
	size_t inflight;                /* produced, delivery callback not yet run */

	struct part **parts;
	size_t n_parts, cap_parts, last_part;

	rd_kafka_vu_t *vus;             /* produceva() arguments, reused */
	size_t cap_vus;
	char *hbuf;                     /* consumed header values, NUL-terminated, reused */
	size_t cap_hbuf;
	const char **hvec;              /* consumed header name/value pointers, reused */
	size_t cap_hvec;

	int dispatching;                /* inside a drain: kafka_client_free() is not allowed */
	int closing;
};

/* --- logging ---------------------------------------------------------------------------- */

static enum log_level syslog_level(int level)
{
	if (level <= 3)
		return LOG_ERROR;
	if (level == 4)
		return LOG_WARN;
	if (level <= 6)
		return LOG_INFO;
	return LOG_DEBUG;
}

/* log_cb: runs on the loop thread (log.queue=true, served from our drains). */
static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	enum log_level l = syslog_level(level);
	char q[1024];

	/* Connection failures come twice: as a FAIL log at LOG_ERR and through error_cb,
	 * which logs them at warn; keep one. */
	if (strcmp(fac, "FAIL") == 0 && l > LOG_DEBUG)
		l = LOG_DEBUG;
	if (l < log_min_level)
		return;
	log_write(l, "component=kafka client=%s event=rdkafka_log fac=%s msg=%s",
		  rd_kafka_name(rk), fac, log_quote(buf, q, sizeof(q)));
}

/* error_cb: served from the main queue, so on the loop thread as well. */
static void on_rdkafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char q[1024], fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));

		log_error("component=kafka client=%s event=fatal_error err=%s msg=%s "
			  "action=\"client unusable until sagad restarts\"",
			  rd_kafka_name(rk), rd_kafka_err2name(orig),
			  log_quote(fatal, q, sizeof(q)));
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
	    err == RD_KAFKA_RESP_ERR__RESOLVE || err == RD_KAFKA_RESP_ERR__TIMED_OUT)
		log_warn("component=kafka client=%s event=error err=%s msg=%s", rd_kafka_name(rk),
			 rd_kafka_err2name(err), log_quote(reason, q, sizeof(q)));
	else
		log_error("component=kafka client=%s event=error err=%s msg=%s", rd_kafka_name(rk),
			  rd_kafka_err2name(err), log_quote(reason, q, sizeof(q)));
}

/* --- delivery contexts ------------------------------------------------------------------ */

static struct dr_ctx *ctx_get(struct kafka_client *k)
{
	struct dr_ctx *c = k->free_ctx;

	if (c == NULL) {
		struct ctx_slab *s = xcalloc(1, sizeof(*s));

		s->next = k->slabs;
		k->slabs = s;
		for (size_t i = CTX_SLAB; i-- > 1;) {
			s->ctx[i].next = k->free_ctx;
			k->free_ctx = &s->ctx[i];
		}
		c = &s->ctx[0];
	} else {
		k->free_ctx = c->next;
	}
	return c;
}

static void ctx_put(struct kafka_client *k, struct dr_ctx *c)
{
	c->cb = NULL;
	c->arg = NULL;
	c->next = k->free_ctx;
	k->free_ctx = c;
}

static int delivery_error(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_NO_ERROR:
		return 0;
	case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
		return SAGAD_ETIMEOUT;
	case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
	case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
		return SAGAD_ESHUTDOWN;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		return SAGAD_ETOOBIG;
	default:
		return SAGAD_EIO;
	}
}

/* dr_msg_cb: runs inside rd_kafka_poll()/rd_kafka_flush() on the loop thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	struct kafka_client *k = opaque;
	struct dr_ctx *c = msg->_private;
	kafka_delivery_cb cb = c->cb;
	void *arg = c->arg;
	int err = delivery_error(msg->err);

	ctx_put(k, c);
	k->inflight--;
	/* Not rd_kafka_message_errstr(): on a delivery report it returns the payload (the
	 * message value, not NUL-terminated) whenever there is one. */
	cb(err, err == 0 ? NULL : rd_kafka_err2str(msg->err), arg);
}

/* --- bridged queues --------------------------------------------------------------------- */

static void on_kq_idle(uv_idle_t *h);

static void kq_drain(struct kqueue *kq)
{
	struct kafka_client *k = kq->k;
	bool empty;

	k->dispatching++;
	empty = kq->drain(k);
	k->dispatching--;
	if (empty)
		uv_idle_stop(&kq->idle);
	else
		uv_idle_start(&kq->idle, on_kq_idle);
}

static void on_kq_idle(uv_idle_t *h)
{
	kq_drain(h->data);
}

static void on_kq_wake(uv_poll_t *h, int status, int events)
{
	struct kqueue *kq = h->data;
	uint64_t v;

	if (status < 0)
		log_error("component=kafka event=poll_error err=%s", uv_strerror(status));
	/* Reset the eventfd before draining: an enqueue after this point wakes us again. */
	while (read(kq->fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	kq_drain(kq);
}

static bool drain_producer(struct kafka_client *k)
{
	for (int i = 0; i < PRODUCER_DRAIN_BUDGET; i++)
		if (rd_kafka_poll(k->producer, 0) == 0)
			return true;
	return false;
}

static int kq_init(struct kafka_client *k, struct kqueue *kq, rd_kafka_queue_t *q,
		   bool (*drain)(struct kafka_client *), char *err, size_t errlen)
{
	static const uint64_t one = 1;
	int rc;

	kq->k = k;
	kq->q = q;
	kq->drain = drain;
	kq->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (kq->fd < 0) {
		snprintf(err, errlen, "kafka: eventfd: %s", strerror(errno));
		return SAGAD_EIO;
	}
	rc = uv_poll_init(k->loop, &kq->poll, kq->fd);
	if (rc < 0) {
		snprintf(err, errlen, "kafka: uv_poll_init: %s", uv_strerror(rc));
		close(kq->fd);
		kq->fd = -1;
		return SAGAD_EIO;
	}
	kq->poll.data = kq;
	uv_idle_init(k->loop, &kq->idle);
	kq->idle.data = kq;
	k->handles_open += 2;
	/* An eventfd takes 8-byte writes only: the payload is a uint64_t 1, not "1". */
	rd_kafka_queue_io_event_enable(q, kq->fd, &one, sizeof(one));
	uv_poll_start(&kq->poll, UV_READABLE, on_kq_wake);
	/* librdkafka writes the fd only when the queue goes from empty to non-empty: events queued
	 * before it was enabled (rd_kafka_new()'s configuration warnings, say) would keep the
	 * queue non-empty and the fd silent forever. Drain once on the next loop turn. */
	uv_idle_start(&kq->idle, on_kq_idle);
	return 0;
}

/* --- consumer --------------------------------------------------------------------------- */

static struct part *part_find(struct kafka_client *k, const char *topic, int32_t partition)
{
	struct part *p;

	if (k->last_part < k->n_parts) {
		p = k->parts[k->last_part];
		if (p->tpl->elems[0].partition == partition && strcmp(p->tpl->elems[0].topic, topic) == 0)
			return p;
	}
	for (size_t i = 0; i < k->n_parts; i++) {
		p = k->parts[i];
		if (p->tpl->elems[0].partition == partition &&
		    strcmp(p->tpl->elems[0].topic, topic) == 0) {
			k->last_part = i;
			return p;
		}
	}
	return NULL;
}

static struct part *part_add(struct kafka_client *k, const char *topic, int32_t partition)
{
	struct part *p = xcalloc(1, sizeof(*p));

	p->tpl = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(p->tpl, topic, partition);
	p->cap = 64;
	p->ring = xmalloc(p->cap * sizeof(*p->ring));
	p->stored = -1;
	if (k->n_parts == k->cap_parts) {
		k->cap_parts = k->cap_parts ? 2 * k->cap_parts : 8;
		k->parts = xrealloc(k->parts, k->cap_parts * sizeof(*k->parts));
	}
	k->last_part = k->n_parts;
	k->parts[k->n_parts++] = p;
	return p;
}

static void part_free(struct part *p)
{
	rd_kafka_topic_partition_list_destroy(p->tpl);
	free(p->ring);
	free(p);
}

/* Forgets the listed partitions, or all of them when list is NULL. */
static void parts_drop(struct kafka_client *k, const rd_kafka_topic_partition_list_t *list)
{
	size_t o = 0;

	for (size_t i = 0; i < k->n_parts; i++) {
		struct part *p = k->parts[i];
		bool drop = list == NULL;

		for (int j = 0; !drop && j < list->cnt; j++)
			drop = list->elems[j].partition == p->tpl->elems[0].partition &&
			       strcmp(list->elems[j].topic, p->tpl->elems[0].topic) == 0;
		if (drop)
			part_free(p);
		else
			k->parts[o++] = p;
	}
	k->n_parts = o;
	k->last_part = 0;
}

static struct pend *ring_at(struct part *p, size_t i)
{
	return &p->ring[(p->head + i) & (p->cap - 1)];
}

/* Remembers a delivered record so kafka_done() can find it. */
static void part_track(struct kafka_client *k, const char *topic, int32_t partition,
		       int64_t offset)
{
	struct part *p = part_find(k, topic, partition);

	if (p == NULL)
		p = part_add(k, topic, partition);
	if (p->len > 0 && offset <= ring_at(p, p->len - 1)->offset) {
		/* The fetch position moved back (seek, offset reset): start over. */
		log_debug("component=kafka event=rewind topic=%s partition=%" PRId32
			  " offset=%" PRId64, topic, partition, offset);
		p->len = 0;
	}
	if (p->len == p->cap) {
		struct pend *ring = xmalloc(2 * p->cap * sizeof(*ring));

		for (size_t i = 0; i < p->len; i++)
			ring[i] = *ring_at(p, i);
		free(p->ring);
		p->ring = ring;
		p->head = 0;
		p->cap *= 2;
	}
	*ring_at(p, p->len) = (struct pend){ .offset = offset, .done = false };
	p->len++;
}

/* Hands the consumed header list to the subscriber as a flat name/value array. */
static size_t flatten_headers(struct kafka_client *k, rd_kafka_message_t *msg)
{
	rd_kafka_headers_t *hdrs;
	const char *name;
	const void *val;
	size_t size, n, total = 0, o = 0;

	if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	n = rd_kafka_header_cnt(hdrs);
	for (size_t i = 0; i < n; i++) {
		rd_kafka_header_get_all(hdrs, i, &name, &val, &size);
		total += size + 1;
	}
	if (total > k->cap_hbuf) {
		free(k->hbuf);
		k->cap_hbuf = total < 4096 ? 4096 : total;
		k->hbuf = xmalloc(k->cap_hbuf);
	}
	if (2 * n > k->cap_hvec) {
		k->cap_hvec = 2 * n < 32 ? 32 : 2 * n;
		k->hvec = xrealloc(k->hvec, k->cap_hvec * sizeof(*k->hvec));
	}
	for (size_t i = 0; i < n; i++) {
		rd_kafka_header_get_all(hdrs, i, &name, &val, &size);
		if (size > 0)
			memcpy(k->hbuf + o, val, size);  /* a NULL value reads as "" */
		k->hbuf[o + size] = '\0';
		k->hvec[2 * i] = name;
		k->hvec[2 * i + 1] = k->hbuf + o;
		o += size + 1;
	}
	return n;
}

/* A record over the limit is never parsed: it is logged, counted and its offset released
 * (records before it on the partition still hold the committed offset back until they are
 * done), so one oversized message cannot stall its partition or exhaust memory downstream. */
static bool record_too_big(struct kafka_client *k, const struct kafka_record *rec)
{
	size_t bytes = rec->key_len + rec->value_len;

	for (size_t i = 0; i < rec->n_headers; i++)
		bytes += strlen(rec->headers[2 * i]) + strlen(rec->headers[2 * i + 1]);
	if (bytes <= k->max_record)
		return false;
	k->refused++;
	log_warn("component=kafka event=record_refused topic=%s partition=%" PRId32 " offset=%" PRId64
		 " bytes=%zu limit=%zu msg=\"record larger than --kafka-max-message: skipped, offset "
		 "released; a step waiting for a reply keeps waiting, a trigger starts nothing\"",
		 rec->topic, rec->partition, rec->offset, bytes, k->max_record);
	kafka_done(k, rec->topic, rec->partition, rec->offset);
	return true;
}

static void deliver_record(struct kafka_client *k, rd_kafka_message_t *msg)
{
	struct kafka_record rec;
	rd_kafka_timestamp_type_t tstype;

	rec.topic = rd_kafka_topic_name(msg->rkt);
	rec.partition = msg->partition;
	rec.offset = msg->offset;
	rec.key = msg->key;
	rec.key_len = msg->key_len;
	rec.value = msg->payload;
	rec.value_len = msg->len;
	rec.n_headers = flatten_headers(k, msg);
	rec.headers = rec.n_headers > 0 ? k->hvec : NULL;
	rec.timestamp_ms = rd_kafka_message_timestamp(msg, &tstype);
	part_track(k, rec.topic, rec.partition, rec.offset);
	if (record_too_big(k, &rec))
		return;
	if (k->record_cb != NULL)
		k->record_cb(&rec, k->record_arg);
}

static void consumer_error(rd_kafka_message_t *msg)
{
	char q[512];

	if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		log_debug("component=kafka event=partition_eof topic=%s partition=%" PRId32,
			  msg->rkt ? rd_kafka_topic_name(msg->rkt) : "-", msg->partition);
		return;
	}
	log_warn("component=kafka event=consumer_error topic=%s partition=%" PRId32 " err=%s msg=%s",
		 msg->rkt ? rd_kafka_topic_name(msg->rkt) : "-", msg->partition,
		 rd_kafka_err2name(msg->err),
		 log_quote(rd_kafka_message_errstr(msg), q, sizeof(q)));
}

static bool drain_consumer(struct kafka_client *k)
{
	for (int i = 0; i < CONSUMER_DRAIN_BUDGET; i++) {
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(k->consumer, 0);

		if (msg == NULL)
			return true;
		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			consumer_error(msg);
		else
			deliver_record(k, msg);
		rd_kafka_message_destroy(msg);
	}
	return false;
}

static void on_keepalive(uv_timer_t *t)
{
	struct kafka_client *k = t->data;

	kq_drain(&k->cq);
}

static void log_partitions(const char *event, const rd_kafka_topic_partition_list_t *parts)
{
	char list[512];
	size_t o = 0;

	if (log_min_level > LOG_INFO)
		return;
	list[0] = '\0';
	for (int i = 0; i < parts->cnt && o < sizeof(list); i++)
		o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s[%" PRId32 "]", i ? "," : "",
				      parts->elems[i].topic, parts->elems[i].partition);
	log_info("component=kafka event=%s partitions=\"%s\"", event, list);
}

/* rebalance_cb: runs inside rd_kafka_consumer_poll() (or consumer_close) on the loop thread. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct kafka_client *k = opaque;
	bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_partitions("assigned", parts);
		if (coop)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			rerr = rd_kafka_assign(rk, parts);
	} else {
		if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			log_partitions(rd_kafka_assignment_lost(rk) ? "lost" : "revoked", parts);
		else
			log_error("component=kafka event=rebalance_error err=%s",
				  rd_kafka_err2name(err));
		/* Commit what kafka_done() stored before the partitions go; not when they were
		 * lost (the commit would be rejected). Asynchronous: the loop must not block. */
		if (!rd_kafka_assignment_lost(rk))
			rd_kafka_commit(rk, NULL, 1);
		parts_drop(k, coop ? parts : NULL);
		if (coop)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			rerr = rd_kafka_assign(rk, NULL);
	}
	if (error != NULL) {
		log_error("component=kafka event=assign_failed msg=\"%s\"", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("component=kafka event=assign_failed err=%s", rd_kafka_err2name(rerr));
	}
}

/* --- creation and teardown -------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
		    size_t errlen)
{
	char buf[512];

	if (rd_kafka_conf_set(conf, name, value, buf, sizeof(buf)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka: property \"%s\": %s", name, buf);
		return SAGAD_EINVAL;
	}
	return 0;
}

/* Applies opt->config: "name=value" to both, "producer.name=value" / "consumer.name=value"
 * to one. Values are never echoed (they may be passwords). */
static int apply_config(const struct kafka_options *opt, rd_kafka_conf_t *pconf,
			rd_kafka_conf_t *cconf, char *err, size_t errlen)
{
	for (size_t i = 0; i < opt->n_config; i++) {
		const char *s = opt->config[i], *eq = strchr(s, '=');
		char name[256];
		size_t len;
		bool to_p = true, to_c = true;
		int rc;

		if (eq == NULL || eq == s || (size_t)(eq - s) >= sizeof(name)) {
			snprintf(err, errlen, "kafka: config entry %zu: expected name=value", i + 1);
			return SAGAD_EINVAL;
		}
		len = (size_t)(eq - s);
		memcpy(name, s, len);
		name[len] = '\0';
		if (strncmp(name, "producer.", 9) == 0) {
			memmove(name, name + 9, len - 9 + 1);
			to_c = false;
		} else if (strncmp(name, "consumer.", 9) == 0) {
			memmove(name, name + 9, len - 9 + 1);
			to_p = false;
		}
		if (to_p && (rc = conf_set(pconf, name, eq + 1, err, errlen)) < 0)
			return rc;
		if (to_c && (rc = conf_set(cconf, name, eq + 1, err, errlen)) < 0)
			return rc;
	}
	return 0;
}

static int set_all(rd_kafka_conf_t *conf, const char *const *nv, char *err, size_t errlen)
{
	int rc;

	for (size_t i = 0; nv[i] != NULL; i += 2)
		if ((rc = conf_set(conf, nv[i], nv[i + 1], err, errlen)) < 0)
			return rc;
	return 0;
}

static void client_finish(struct kafka_client *k)
{
	if (k->pq.fd >= 0)
		close(k->pq.fd);
	if (k->cq.fd >= 0)
		close(k->cq.fd);
	free(k);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct kafka_client *k = h->data;

	/* kqueue handles carry the kqueue; the timer carries the client. */
	if (h->type != UV_TIMER)
		k = ((struct kqueue *)h->data)->k;
	if (--k->handles_open == 0)
		client_finish(k);
}

/* Releases everything but the libuv handles and k itself. */
static void client_release(struct kafka_client *k)
{
	if (k->pq.q != NULL) {
		rd_kafka_queue_io_event_enable(k->pq.q, -1, NULL, 0);
		rd_kafka_queue_destroy(k->pq.q);
	}
	if (k->cq.q != NULL) {
		rd_kafka_queue_io_event_enable(k->cq.q, -1, NULL, 0);
		rd_kafka_queue_destroy(k->cq.q);
	}
	if (k->consumer != NULL)
		rd_kafka_destroy_flags(k->consumer, k->consumer_closed ? 0 :
				       RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	if (k->producer != NULL)
		rd_kafka_destroy(k->producer);
	k->pq.q = k->cq.q = NULL;
	k->consumer = k->producer = NULL;
	parts_drop(k, NULL);
	free(k->parts);
	while (k->slabs != NULL) {
		struct ctx_slab *s = k->slabs;

		k->slabs = s->next;
		free(s);
	}
	free(k->vus);
	free(k->hbuf);
	free(k->hvec);
}

static void close_handles(struct kafka_client *k)
{
	struct kqueue *kqs[2] = { &k->pq, &k->cq };

	if (k->handles_open == 0) {
		client_finish(k);
		return;
	}
	for (int i = 0; i < 2; i++) {
		if (kqs[i]->poll.data == NULL)
			continue;
		uv_close((uv_handle_t *)&kqs[i]->poll, on_handle_closed);
		uv_close((uv_handle_t *)&kqs[i]->idle, on_handle_closed);
	}
	if (k->keepalive.data != NULL)
		uv_close((uv_handle_t *)&k->keepalive, on_handle_closed);
}

int kafka_client_new(uv_loop_t *loop, const struct kafka_options *opt, struct kafka_client **out,
		     char *err, size_t errlen)
{
	const char *client_id = opt->client_id ? opt->client_id : KAFKA_DEFAULT_ID;
	const char *group_id = opt->group_id ? opt->group_id : KAFKA_DEFAULT_ID;
	const char *const pdefaults[] = {
		"enable.idempotence", "true",
		"acks", "all",
		"linger.ms", "2",
		NULL,
	};
	const char *const cdefaults[] = {
		"group.id", group_id,
		"enable.auto.commit", "true",
		"auto.commit.interval.ms", "1000",
		"auto.offset.reset", "earliest",
		"enable.partition.eof", "false",
		NULL,
	};
	const char *const forced[] = { "log.queue", "true", NULL };
	rd_kafka_conf_t *pconf = NULL, *cconf = NULL;
	struct kafka_client *k;
	char buf[512];
	size_t size = sizeof(buf);
	int rc;

	*out = NULL;
	if (opt->brokers == NULL || opt->brokers[0] == '\0') {
		snprintf(err, errlen, "kafka: no brokers configured");
		return SAGAD_EINVAL;
	}
	k = xcalloc(1, sizeof(*k));
	k->loop = loop;
	k->max_record = opt->max_record_bytes ? opt->max_record_bytes : KAFKA_DEFAULT_MAX_RECORD;
	k->pq.fd = k->cq.fd = -1;
	pconf = rd_kafka_conf_new();
	cconf = rd_kafka_conf_new();
	if ((rc = conf_set(pconf, "bootstrap.servers", opt->brokers, err, errlen)) < 0 ||
	    (rc = conf_set(cconf, "bootstrap.servers", opt->brokers, err, errlen)) < 0 ||
	    (rc = conf_set(pconf, "client.id", client_id, err, errlen)) < 0 ||
	    (rc = conf_set(cconf, "client.id", client_id, err, errlen)) < 0 ||
	    (rc = set_all(pconf, pdefaults, err, errlen)) < 0 ||
	    (rc = set_all(cconf, cdefaults, err, errlen)) < 0 ||
	    (rc = apply_config(opt, pconf, cconf, err, errlen)) < 0 ||
	    (rc = set_all(pconf, forced, err, errlen)) < 0 ||
	    (rc = set_all(cconf, forced, err, errlen)) < 0 ||
	    (rc = conf_set(cconf, "enable.auto.offset.store", "false", err, errlen)) < 0)
		goto fail;
	if (rd_kafka_conf_get(cconf, "max.poll.interval.ms", buf, &size) == RD_KAFKA_CONF_OK)
		k->keepalive_ms = strtoull(buf, NULL, 10) / 4;
	if (k->keepalive_ms == 0 || k->keepalive_ms > 1000)
		k->keepalive_ms = 1000;

	rd_kafka_conf_set_opaque(pconf, k);
	rd_kafka_conf_set_opaque(cconf, k);
	rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
	rd_kafka_conf_set_rebalance_cb(cconf, on_rebalance);
	rd_kafka_conf_set_log_cb(pconf, on_rdkafka_log);
	rd_kafka_conf_set_log_cb(cconf, on_rdkafka_log);
	rd_kafka_conf_set_error_cb(pconf, on_rdkafka_error);
	rd_kafka_conf_set_error_cb(cconf, on_rdkafka_error);

	k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, buf, sizeof(buf));
	if (k->producer == NULL) {
		snprintf(err, errlen, "kafka: producer: %s", buf);
		rc = SAGAD_EINVAL;
		goto fail;
	}
	pconf = NULL;   /* owned by the producer now */
	k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, buf, sizeof(buf));
	if (k->consumer == NULL) {
		snprintf(err, errlen, "kafka: consumer: %s", buf);
		rc = SAGAD_EINVAL;
		goto fail;
	}
	cconf = NULL;
	rd_kafka_set_log_queue(k->producer, NULL);
	rd_kafka_poll_set_consumer(k->consumer);
	rd_kafka_set_log_queue(k->consumer, NULL);   /* main queue, forwarded to the consumer's */
	if ((rc = kq_init(k, &k->pq, rd_kafka_queue_get_main(k->producer), drain_producer, err,
			  errlen)) < 0 ||
	    (rc = kq_init(k, &k->cq, rd_kafka_queue_get_consumer(k->consumer), drain_consumer, err,
			  errlen)) < 0)
		goto fail;
	uv_timer_init(loop, &k->keepalive);
	k->keepalive.data = k;
	k->handles_open++;
	*out = k;
	return 0;

fail:
	if (pconf != NULL)
		rd_kafka_conf_destroy(pconf);
	if (cconf != NULL)
		rd_kafka_conf_destroy(cconf);
	client_release(k);
	close_handles(k);
	return rc;
}

/* Closes the consumer (commit stored offsets, leave the group) within ms. When the brokers
 * cannot be reached in time it gives up: offsets not committed mean those records are
 * delivered again after the restart (at least once), and rd_kafka_destroy() is then told not to
 * try the close again (it would block). */
static void consumer_close_bounded(struct kafka_client *k, int64_t ms)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(k->consumer);
	rd_kafka_error_t *err = rd_kafka_consumer_close_queue(k->consumer, q);
	int64_t deadline = util_mono_ms() + ms;

	if (err != NULL) {
		log_warn("component=kafka event=consumer_close_failed err=\"%s\"",
			 rd_kafka_error_string(err));
		rd_kafka_error_destroy(err);
	} else {
		while (!rd_kafka_consumer_closed(k->consumer) && util_mono_ms() < deadline) {
			rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 50);

			if (ev == NULL)
				continue;
			/* The revoke of the group leave: handled as the rebalance callback would. */
			if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
				on_rebalance(k->consumer, rd_kafka_event_error(ev),
					     rd_kafka_event_topic_partition_list(ev), k);
			rd_kafka_event_destroy(ev);
		}
	}
	k->consumer_closed = rd_kafka_consumer_closed(k->consumer);
	if (!k->consumer_closed)
		log_warn("component=kafka event=consumer_close_timeout ms=%lld msg=\"the brokers did "
			 "not answer; records whose offsets were not committed are delivered again "
			 "after the restart\"", (long long)ms);
	rd_kafka_queue_destroy(q);
}

size_t kafka_client_free(struct kafka_client *k, int flush_ms)
{
	size_t left;

	if (k == NULL)
		return 0;
	assert(!k->dispatching && "kafka_client_free() called from a kafka callback");
	k->closing = 1;
	uv_timer_stop(&k->keepalive);

	/* Delivery callbacks run inside flush() and poll(), on this thread. */
	k->dispatching++;
	rd_kafka_flush(k->producer, flush_ms < 0 ? 0 : flush_ms);
	left = k->inflight;
	if (left > 0) {
		log_warn("component=kafka event=undelivered count=%zu flush_ms=%d", left, flush_ms);
		rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		while (rd_kafka_poll(k->producer, 0) > 0)
			;
	}
	/* Commits the stored offsets and leaves the group; the revoke runs on_rebalance(). In
	 * the background, bounded: with the brokers gone a blocking close never returns. */
	consumer_close_bounded(k, KAFKA_CLOSE_MS);
	k->dispatching--;

	/* Whatever librdkafka did not report (it never does from rd_kafka_destroy()) fails
	 * here, so every accepted message's callback runs exactly once. */
	if (k->inflight > 0) {
		rd_kafka_queue_io_event_enable(k->pq.q, -1, NULL, 0);
		rd_kafka_queue_destroy(k->pq.q);
		k->pq.q = NULL;
		rd_kafka_destroy(k->producer);
		k->producer = NULL;
		for (struct ctx_slab *s = k->slabs; s != NULL; s = s->next) {
			for (size_t i = 0; i < CTX_SLAB; i++) {
				kafka_delivery_cb cb = s->ctx[i].cb;
				void *arg = s->ctx[i].arg;

				if (cb == NULL)
					continue;
				ctx_put(k, &s->ctx[i]);
				k->inflight--;
				cb(SAGAD_ESHUTDOWN, "not delivered before shutdown", arg);
			}
		}
	}
	client_release(k);
	close_handles(k);
	return left;
}

/* --- producing and consuming ------------------------------------------------------------ */

static int produce_error(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
		return SAGAD_EFULL;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		return SAGAD_ETOOBIG;
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
		return SAGAD_EINVAL;
	default:
		return SAGAD_EIO;
	}
}

int kafka_produce(struct kafka_client *k, const struct kafka_message *m, kafka_delivery_cb cb,
		  void *arg)
{
	size_t need = 6, n = 0;
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_error_t *error;
	struct dr_ctx *c;
	rd_kafka_vu_t *vu;

	if (k->closing)
		return SAGAD_ESHUTDOWN;
	if (m->topic == NULL || cb == NULL)
		return SAGAD_EINVAL;
	if (need > k->cap_vus) {
		k->cap_vus = need < 16 ? 16 : need;
		k->vus = xrealloc(k->vus, k->cap_vus * sizeof(*k->vus));
	}
	vu = k->vus;
	c = ctx_get(k);
	c->cb = cb;
	c->arg = arg;
	vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
	vu[n++].u.cstr = m->topic;
	vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
	vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
	vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
	vu[n++].u.ptr = c;
	if (m->value != NULL) {
		vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
		vu[n].u.mem.ptr = (void *)m->value;
		vu[n++].u.mem.size = m->value_len;
	}
	if (m->key != NULL) {
		vu[n].vtype = RD_KAFKA_VTYPE_KEY;
		vu[n].u.mem.ptr = (void *)m->key;
		vu[n++].u.mem.size = m->key_len;
	}
	/* One headers object we own until the produce succeeds: librdkafka 2.0.2 frees
	 * per-header RD_KAFKA_VTYPE_HEADER entries twice when the partitioner fails
	 * (librdkafka#4627); with RD_KAFKA_VTYPE_HEADERS a failed produce leaves them to us. */
	if (m->n_headers > 0) {
		hdrs = rd_kafka_headers_new(m->n_headers);
		for (size_t i = 0; i < m->n_headers; i++)
			rd_kafka_header_add(hdrs, m->headers[2 * i], -1, m->headers[2 * i + 1], -1);
		vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
		vu[n++].u.headers = hdrs;
	}
	error = rd_kafka_produceva(k->producer, vu, n);
	if (error != NULL) {
		rd_kafka_resp_err_t code = rd_kafka_error_code(error);
		char q[512];

		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);

		if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			log_warn("component=kafka event=produce_failed topic=%s err=%s msg=%s",
				 m->topic, rd_kafka_err2name(code),
				 log_quote(rd_kafka_error_string(error), q, sizeof(q)));
		rd_kafka_error_destroy(error);
		ctx_put(k, c);
		return produce_error(code);
	}
	k->inflight++;
	return 0;
}

int kafka_subscribe(struct kafka_client *k, const char *const *topics, size_t n_topics,
		    kafka_record_cb cb, void *arg)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;

	if (k->closing)
		return SAGAD_ESHUTDOWN;
	if (n_topics == 0 || cb == NULL)
		return SAGAD_EINVAL;
	list = rd_kafka_topic_partition_list_new((int)n_topics);
	for (size_t i = 0; i < n_topics; i++)
		rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(k->consumer, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("component=kafka event=subscribe_failed err=%s", rd_kafka_err2name(err));
		return err == RD_KAFKA_RESP_ERR__INVALID_ARG ? SAGAD_EINVAL : SAGAD_EIO;
	}
	k->record_cb = cb;
	k->record_arg = arg;
	uv_timer_start(&k->keepalive, on_keepalive, k->keepalive_ms, k->keepalive_ms);
	return 0;
}

void kafka_done(struct kafka_client *k, const char *topic, int32_t partition, int64_t offset)
{
	struct part *p = part_find(k, topic, partition);
	size_t lo = 0, hi;
	int64_t commit = -1;
	rd_kafka_resp_err_t err;

	if (p == NULL)
		return;         /* revoked since: its next owner gets the record again */
	hi = p->len;
	while (lo < hi) {       /* the ring holds increasing offsets */
		size_t mid = lo + (hi - lo) / 2;

		if (ring_at(p, mid)->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->len || ring_at(p, lo)->offset != offset)
		return;
	ring_at(p, lo)->done = true;
	while (p->len > 0 && ring_at(p, 0)->done) {
		commit = ring_at(p, 0)->offset + 1;
		p->head = (p->head + 1) & (p->cap - 1);
		p->len--;
	}
	if (commit <= p->stored)
		return;
	p->stored = commit;
	p->tpl->elems[0].offset = commit;
	p->tpl->elems[0].err = RD_KAFKA_RESP_ERR_NO_ERROR;
	err = rd_kafka_offsets_store(k->consumer, p->tpl);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = p->tpl->elems[0].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_debug("component=kafka event=offset_store_failed topic=%s partition=%" PRId32
			  " offset=%" PRId64 " err=%s", topic, partition, commit,
			  rd_kafka_err2name(err));
}

uint64_t kafka_records_refused(const struct kafka_client *k)
{
	return k->refused;
}

size_t kafka_inflight(const struct kafka_client *k)
{
	return k->inflight;
}
