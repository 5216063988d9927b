/* engine_kafka.c: Kafka steps, replies, triggers and lifecycle events.
 *
 * A Kafka step's command is not sent here: it is appended to the outbox in the same
 * transaction as the step's transition, and the relay produces it after the commit (persist,
 * then act). The step then waits for a reply: a wait is registered under
 * (reply topic, correlation path, expected value) and the reply deadline is a durable timer.
 *
 * Every consumed record is matched against the waits of its topic. A match is judged by the
 * step's reply rule (success, failure, or "not mine": another event type on a shared topic)
 * and drives the saga. A record that matches nothing is late, duplicated or foreign: it is
 * counted and changes nothing. Trigger topics start sagas, with the record's coordinates as
 * the idempotency key, so a redelivered event never starts a second saga. In every case the
 * record's offset is released to the consumer only after the commit that recorded its effect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "error.h"
#include "expr.h"
#include "kafka.h"
#include "log.h"
#include "outbox.h"
#include "secret.h"
#include "store.h"
#include "util.h"

#define DEFAULT_CORRELATE "header:correlation-id"
#define DEFAULT_REPLY_TIMEOUT_MS 30000

/* A Kafka attempt waiting for its reply. */
struct kafka_wait {
	struct kafka_wait *next;      /* hash chain */
	char *key;                    /* topic \x1f path \x1f value */
	char *topic, *path;           /* for the path index */
	char saga_id[ID_LEN];
	int step;
	enum phase phase;
	int attempt;
	int64_t started_at;
	char *request;                /* summary for the history */
};

/* Which correlation paths are waited on, per topic: a record is looked up once per path. */
struct kafka_path {
	char *topic, *path;
	size_t refs;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static char *wait_key(const char *topic, const char *path, const char *value)
{
	return xasprintf("%s\x1f%s\x1f%s", topic, path, value);
}

static void paths_ref(struct engine *e, const char *topic, const char *path, int delta)
{
	struct kafka_path *paths = e->wait_paths;
	size_t n_paths = e->n_wait_paths;

	for (size_t i = 0; i < n_paths; i++) {
		if (strcmp(paths[i].topic, topic) != 0 || strcmp(paths[i].path, path) != 0)
			continue;
		paths[i].refs += (size_t)delta;
		if (paths[i].refs == 0) {
			free(paths[i].topic);
			free(paths[i].path);
			paths[i] = paths[--e->n_wait_paths];
		}
		return;
	}
	if (delta > 0) {
		e->wait_paths = xrealloc(e->wait_paths, (n_paths + 1) * sizeof(*paths));
		e->wait_paths[e->n_wait_paths++] = (struct kafka_path){ xstrdup(topic), xstrdup(path), 1 };
	}
}

static void waits_grow(struct engine *e)
{
	struct kafka_wait **old = e->waits;
	size_t n = e->n_wait_slots;

	e->n_wait_slots = n ? n * 2 : 256;
	e->waits = xcalloc(e->n_wait_slots, sizeof(*e->waits));
	for (size_t i = 0; i < n; i++) {
		struct kafka_wait *w = old[i], *next;
		for (; w != NULL; w = next) {
			size_t b = hash_str(w->key) & (e->n_wait_slots - 1);
			next = w->next;
			w->next = e->waits[b];
			e->waits[b] = w;
		}
	}
	free(old);
}

static void wait_add(struct engine *e, struct kafka_wait *w)
{
	size_t b;

	if (e->n_waits + 1 > e->n_wait_slots)
		waits_grow(e);
	b = hash_str(w->key) & (e->n_wait_slots - 1);
	w->next = e->waits[b];
	e->waits[b] = w;
	e->n_waits++;
	paths_ref(e, w->topic, w->path, +1);
}

static void wait_free(struct kafka_wait *w)
{
	free(w->key);
	free(w->topic);
	free(w->path);
	free(w->request);
	free(w);
}

static void wait_remove(struct engine *e, struct kafka_wait *w)
{
	struct kafka_wait **p = &e->waits[hash_str(w->key) & (e->n_wait_slots - 1)];

	for (; *p != NULL; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			e->n_waits--;
			paths_ref(e, w->topic, w->path, -1);
			wait_free(w);
			return;
		}
}

void engine__kafka_forget(struct saga *s, int i)
{
	struct step_run *r = &s->steps[i];

	if (r->wait == NULL)
		return;
	wait_remove(s->e, r->wait);
	r->wait = NULL;
}

void engine_kafka_detach(struct engine *e)
{
	e->kafka = NULL;
}

void engine__kafka_free(struct engine *e)
{
	for (size_t i = 0; i < e->n_wait_slots; i++) {
		struct kafka_wait *w = e->waits[i], *next;
		for (; w != NULL; w = next) {
			next = w->next;
			paths_ref(e, w->topic, w->path, -1);
			wait_free(w);
		}
	}
	free(e->waits);
	free(e->wait_paths);
	e->wait_paths = NULL;
	e->n_wait_paths = 0;
	e->waits = NULL;
	e->n_wait_slots = e->n_waits = 0;
	free(e->lifecycle_topic);
	e->lifecycle_topic = NULL;
}

/* ---- dispatch ---------------------------------------------------------------------- */

static const struct flow_request *request_of(const struct flow_step *st, enum phase phase)
{
	return phase == PHASE_ACTION ? &st->action : st->compensation;
}

static const char *reply_topic(const struct flow_step *st, const struct flow_reply *rp)
{
	return rp->topic ? rp->topic : st->participant->reply_topic;
}

/* The correlation value step i's reply must carry (malloc()ed), or NULL with err. */
static char *correlation_of(struct saga *s, int i, enum phase phase, char *err, size_t errlen)
{
	const struct flow_step *st = &s->flow->steps[i];
	char idem[ID_LEN + 128];

	snprintf(idem, sizeof(idem), "%s:%s:%s", s->id, st->name, phase_names[phase]);
	return flow_render_correlation(request_of(st, phase)->reply, s->ctx, idem, err, errlen);
}

/* Registers the wait for step i's reply under value (replacing an earlier wait). */
static void wait_register(struct saga *s, int i, enum phase phase, int attempt, const char *request,
			  const char *value)
{
	const struct flow_step *st = &s->flow->steps[i];
	const struct flow_reply *rp = request_of(st, phase)->reply;
	const char *path = rp->correlate_path ? rp->correlate_path : DEFAULT_CORRELATE;
	struct kafka_wait *w;

	engine__kafka_forget(s, i);
	w = xcalloc(1, sizeof(*w));
	w->topic = xstrdup(reply_topic(st, rp));
	w->path = xstrdup(path);
	w->key = wait_key(w->topic, w->path, value);
	if (s->e->n_wait_slots > 0)
		for (struct kafka_wait *o = s->e->waits[hash_str(w->key) & (s->e->n_wait_slots - 1)];
		     o != NULL; o = o->next)
			if (strcmp(o->key, w->key) == 0 && strcmp(o->saga_id, s->id) != 0)
				log_warn("saga=%s step=%s event=correlation_shared other_saga=%s value=%s "
					 "msg=\"two sagas wait for the same correlation value on %s; a "
					 "reply completes only one of them: correlate on a value unique "
					 "per saga\"", s->id, st->name, o->saga_id, value, w->topic);
	memcpy(w->saga_id, s->id, ID_LEN);
	w->step = i;
	w->phase = phase;
	w->attempt = attempt;
	w->started_at = util_now_ms();
	w->request = request ? xstrdup(request) : NULL;
	wait_add(s->e, w);
	s->steps[i].wait = w;
}

/* "name: value" lines -> the flat name, value array of the outbox. */
static size_t split_headers(char **lines, size_t n, const char **out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		char *colon = strchr(lines[i], ':');
		if (colon == NULL)
			continue;
		*colon = '\0';
		out[k++] = lines[i];
		out[k++] = colon[1] == ' ' ? colon + 2 : colon + 1;
	}
	return k / 2;
}

/* Whether a rendered message holds one of the saga's secrets: then its outbox row is sealed. */
static bool carries_secret(const struct saga *s, const struct flow_message *m)
{
	if (secret_set_empty(s->secrets))
		return false;
	if (secret_find(s->secrets, m->key) || secret_find(s->secrets, m->value))
		return true;
	for (size_t i = 0; i < m->n_headers; i++)
		if (secret_find(s->secrets, m->headers[i]))
			return true;
	return false;
}

int engine__kafka_dispatch(struct saga *s, int i, enum phase phase, int attempt, bool *done,
			   char *err, size_t errlen)
{
	struct engine *e = s->e;
	const struct flow_step *st = &s->flow->steps[i];
	const struct flow_request *req = request_of(st, phase);
	struct flow_message m;
	const char **hv;
	char idem[ID_LEN + 128], tp[64], att[16], *summary, *corr = NULL;
	size_t n;
	int rc;

	*done = false;
	if (e->outbox == NULL) {
		snprintf(err, errlen, "participant \"%s\" is a Kafka participant but sagad has no "
			 "Kafka configured (--kafka-brokers)", st->participant->name);
		return SAGAD_EINVAL;
	}
	rc = flow_render_message(st->participant, req, s->ctx, &m, err, errlen);
	if (rc != 0)
		return rc;
	/* Everything that can fail is rendered before the command enters the outbox: a step
	 * that fails here has sent nothing. */
	if (req->reply != NULL) {
		corr = correlation_of(s, i, phase, err, errlen);
		if (corr == NULL) {
			flow_message_close(&m);
			return SAGAD_ETEMPLATE;
		}
	}
	snprintf(idem, sizeof(idem), "%s:%s:%s", s->id, st->name, phase_names[phase]);
	engine__traceparent(s, tp, sizeof(tp));
	snprintf(att, sizeof(att), "%d", attempt);
	hv = xcalloc(2 * (m.n_headers + 8), sizeof(*hv));
	n = split_headers(m.headers, m.n_headers, hv);
	hv[2 * n] = "correlation-id"; hv[2 * n + 1] = idem; n++;
	hv[2 * n] = "idempotency-key"; hv[2 * n + 1] = idem; n++;
	hv[2 * n] = "saga-id"; hv[2 * n + 1] = s->id; n++;
	hv[2 * n] = "saga-step"; hv[2 * n + 1] = st->name; n++;
	hv[2 * n] = "saga-attempt"; hv[2 * n + 1] = att; n++;
	hv[2 * n] = "traceparent"; hv[2 * n + 1] = tp; n++;
	if (req->reply != NULL) {
		hv[2 * n] = "reply-to";
		hv[2 * n + 1] = reply_topic(st, req->reply);
		n++;
	}
	if (carries_secret(s, &m))
		rc = outbox_put_sealed(e->outbox, e->secrets_key, m.topic, m.key, hv, n, m.value, s->id);
	else
		rc = outbox_put(e->outbox, m.topic, m.key, hv, n, m.value, s->id);
	engine__store_failed(e, rc, "outbox_put", s->id);
	summary = m.value && strlen(m.value) > 512 ?
		xasprintf("kafka %s key=%s %.512s...", m.topic, m.key ? m.key : "-", m.value) :
		xasprintf("kafka %s key=%s %s", m.topic, m.key ? m.key : "-", m.value ? m.value : "");
	free(hv);
	flow_message_close(&m);
	e->stats.dispatches++;
	if (req->reply == NULL) {
		/* One-way (publish step, or a compensation that expects no reply). */
		engine__history(s, i, st->publish ? "action" : phase_names[phase], attempt, "published",
				summary, 0, NULL, NULL, 0);
		free(summary);
		*done = true;
		return 0;
	}
	wait_register(s, i, phase, attempt, summary, corr);
	free(corr);
	engine__history(s, i, phase_names[phase], attempt, "dispatched", summary, 0, NULL, NULL, 0);
	free(summary);
	engine__timer_arm(s, TIMER_TIMEOUT, i, util_now_ms() +
			  (st->timeout_ms > 0 ? st->timeout_ms : DEFAULT_REPLY_TIMEOUT_MS), true);
	return 0;
}

void engine__kafka_timeout(struct saga *s, int i)
{
	struct step_run *r = &s->steps[i];
	const struct flow_step *st = &s->flow->steps[i];
	struct kafka_wait *w = r->wait;
	enum phase phase;
	enum outcome o;
	const struct retry_policy *rp;
	char err[160];

	if (r->state != STEP_RUNNING && r->state != STEP_COMPENSATING)
		return;
	if (w == NULL) {
		/* Its wait could not be restored after a restart: the deadline still decides. */
		phase = r->state == STEP_RUNNING ? PHASE_ACTION : PHASE_COMPENSATION;
		rp = phase == PHASE_ACTION ? &st->retry : &st->comp_retry;
		o = engine__exhaust(rp, phase == PHASE_ACTION ? r->attempt : r->comp_attempt,
				    (rp->on & RETRY_ON_TIMEOUT) ? OUT_RETRY : OUT_UNKNOWN, false);
		if (phase == PHASE_ACTION)
			r->maybe_applied = true;
		engine__touch(s);
		engine__apply_outcome(s, i, phase, phase == PHASE_ACTION ? r->attempt : r->comp_attempt,
				      o, "no reply (the wait could not be restored)", NULL, -1);
		return;
	}
	phase = w->phase;
	rp = phase == PHASE_ACTION ? &st->retry : &st->comp_retry;
	snprintf(err, sizeof(err), "no reply on %s within %lldms", w->topic,
		 (long long)(st->timeout_ms > 0 ? st->timeout_ms : DEFAULT_REPLY_TIMEOUT_MS));
	if (phase == PHASE_ACTION)
		engine__breaker_record(s, i, false);
	/* The command may have been applied: undo it if the step is abandoned. */
	if (phase == PHASE_ACTION)
		r->maybe_applied = true;
	o = engine__exhaust(rp, w->attempt, (rp->on & RETRY_ON_TIMEOUT) ? OUT_RETRY : OUT_UNKNOWN,
			    false);
	engine__history(s, i, phase_names[phase], w->attempt, "timed_out", w->request, 0, NULL, err,
			w->started_at);
	log_info("saga=%s flow=%s step=%s event=timed_out phase=%s attempt=%d error=\"%s\"", s->id,
		 s->flow->name, st->name, phase_names[phase], w->attempt, err);
	engine__touch(s);
	engine__apply_outcome(s, i, phase, w->attempt, o, err, NULL, -1);
	engine__kafka_forget(s, i);
}

void engine__kafka_recover(struct saga *s)
{
	for (size_t i = 0; i < s->flow->n_steps; i++) {
		const struct flow_step *st = &s->flow->steps[i];
		struct step_run *r = &s->steps[i];
		enum phase phase;
		char err[256];

		if (st->participant == NULL || st->participant->kind != PARTICIPANT_KAFKA)
			continue;
		if (r->state == STEP_RUNNING)
			phase = PHASE_ACTION;
		else if (r->state == STEP_COMPENSATING)
			phase = PHASE_COMPENSATION;
		else
			continue;
		if (request_of(st, phase) == NULL || request_of(st, phase)->reply == NULL)
			continue;
		{
			char *corr = correlation_of(s, (int)i, phase, err, sizeof(err));

			if (corr == NULL) {
				/* The reply deadline then decides (engine__kafka_timeout). */
				log_error("saga=%s step=%s event=wait_not_restored error=\"%s\"", s->id,
					  st->name, err);
				continue;
			}
			wait_register(s, (int)i, phase, phase == PHASE_ACTION ? r->attempt :
				      r->comp_attempt, NULL, corr);
			free(corr);
		}
	}
}

/* ---- consumed records -------------------------------------------------------------- */

json_t *engine__kafka_record_json(const struct kafka_record *rec)
{
	json_t *headers = json_object(), *body = NULL, *key;

	/* Values that are not UTF-8 cannot be JSON strings: such headers are left out, such a key
	 * is null, such a body is null (correlate on headers or JSON fields). */
	for (size_t i = 0; i < rec->n_headers; i++) {
		json_t *v = json_string(rec->headers[2 * i + 1] ? rec->headers[2 * i + 1] : "");
		if (v != NULL)
			json_object_set_new(headers, rec->headers[2 * i], v);
	}
	if (rec->value != NULL && rec->value_len > 0) {
		body = json_loadb(rec->value, rec->value_len, JSON_DECODE_ANY, NULL);
		if (body == NULL)
			body = json_stringn(rec->value, rec->value_len);
	}
	key = rec->key ? json_stringn(rec->key, rec->key_len) : NULL;
	return json_pack("{s:s, s:i, s:I, s:o, s:o, s:o, s:I}", "topic", rec->topic, "partition",
			 (int)rec->partition, "offset", (json_int_t)rec->offset, "key",
			 key ? key : json_null(), "headers", headers, "body", body ? body : json_null(),
			 "timestamp_ms", (json_int_t)rec->timestamp_ms);
}

/* The offset is released once the effect of the record is committed. */
struct record_done {
	struct engine *e;
	char *topic;
	int32_t partition;
	int64_t offset;
};

static void on_record_committed(void *arg)
{
	struct record_done *d = arg;

	if (d->e->kafka != NULL) /* NULL once shutdown freed the client: redelivered later */
		kafka_done(d->e->kafka, d->topic, d->partition, d->offset);
	free(d->topic);
	free(d);
}

static const char *msg_string(const struct flow_reply *shape, json_t *msg)
{
	return flow_reply_correlation(shape, msg);
}

/* Tries the waits keyed (topic, path, value of msg at path). Returns true when one took it;
 * *ignored is set when a wait matched but the event was "not mine". */
static bool try_path(struct engine *e, const char *topic, const char *path, json_t *msg,
		     bool *ignored)
{
	struct flow_reply shape = { .correlate_path = (char *)path };
	const char *value = msg_string(&shape, msg);
	struct kafka_wait *w, *next;
	char *key;
	bool taken = false;

	if (value == NULL || e->n_wait_slots == 0)
		return false;
	key = wait_key(topic, path, value);
	for (w = e->waits[hash_str(key) & (e->n_wait_slots - 1)]; w != NULL && !taken; w = next) {
		struct saga *s;
		const struct flow_step *st;
		const struct flow_reply *rp;
		enum reply_verdict v;
		struct flow_reply type_shape = { 0 };
		const char *type;
		char err[512], *summary;
		json_t *resp, *body;
		int i, attempt;
		enum phase phase;

		next = w->next;
		if (strcmp(w->key, key) != 0)
			continue;
		s = engine__saga_find(e, w->saga_id);
		if (s == NULL)
			continue;
		i = w->step;
		phase = w->phase;
		attempt = w->attempt;
		st = &s->flow->steps[i];
		rp = request_of(st, phase)->reply;
		err[0] = '\0';
		v = flow_judge_reply(rp, msg, err, sizeof(err));
		if (v == REPLY_NOT_MINE) {
			e->stats.kafka_ignored++;
			*ignored = true;
			continue;
		}
		type_shape.correlate_path = rp->type_path;
		type = rp->type_path ? msg_string(&type_shape, msg) : NULL;
		body = json_object_get(msg, "body");
		resp = json_pack("{s:o, s:O, s:O, s:O, s:O, s:O}", "type",
				 type ? json_string(type) : json_null(), "body", body, "headers",
				 json_object_get(msg, "headers"), "topic", json_object_get(msg, "topic"),
				 "partition", json_object_get(msg, "partition"), "offset",
				 json_object_get(msg, "offset"));
		engine_crashpoint("after_dispatch"); /* a reply arrived, nothing recorded yet */
		summary = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (summary != NULL && strlen(summary) > 512) {
			summary[512] = '\0';
			util_utf8_sanitize(summary);   /* the cut may split a UTF-8 sequence */
		}
		engine__touch(s);
		engine__history(s, i, phase_names[phase], attempt,
				v == REPLY_SUCCESS ? "succeeded" : "failed", w->request, 0, summary,
				v == REPLY_SUCCESS ? NULL : err, w->started_at);
		log_info("saga=%s flow=%s step=%s event=%s phase=%s attempt=%d reply_type=%s "
			 "topic=%s offset=%lld", s->id, s->flow->name, st->name,
			 v == REPLY_SUCCESS ? "succeeded" : "failed", phase_names[phase], attempt,
			 type ? type : "-", topic, (long long)json_integer_value(json_object_get(msg, "offset")));
		free(summary);
		engine__kafka_forget(s, i);
		engine__timer_cancel(s, TIMER_TIMEOUT, i);
		if (phase == PHASE_ACTION)
			engine__breaker_record(s, i, true); /* it answered */
		/* A failure event is the participant's definite answer: not retried. */
		engine__apply_outcome(s, i, phase, attempt, v == REPLY_SUCCESS ? OUT_SUCCESS : OUT_FAILED,
				      err, resp, -1);
		json_decref(resp);
		e->stats.kafka_replies++;
		e->crash_before_commit = engine__crashpoints_armed();
		engine__drive(s);
		taken = true;
	}
	free(key);
	return taken;
}

/* Starts the sagas rec triggers; *on_trigger_topic tells whether rec's topic is a trigger
 * topic at all. Returns false when a start was refused for a transient reason (shutting down,
 * store busy): the record's offset must not be released, so it is delivered again (after the
 * restart). */
static bool handle_triggers(struct engine *e, const struct kafka_record *rec, json_t *msg,
			    bool *on_trigger_topic)
{
	bool release = true;

	*on_trigger_topic = false;
	for (size_t k = 0; k < e->flows->n; k++) {
		struct flow *f = e->flows->flows[k];

		if (flow_set_find(e->flows, f->name) != f)
			continue; /* triggers of the newest version only */
		for (size_t t = 0; t < f->n_triggers; t++) {
			const struct flow_trigger *tr = &f->triggers[t];
			char err[512], id[ID_LEN], key[300];
			bool existed;
			json_t *input;
			int rc;

			if (strcmp(tr->topic, rec->topic) != 0)
				continue;
			*on_trigger_topic = true;
			if (!flow_trigger_matches(tr, msg))
				continue;
			input = flow_trigger_input(tr, msg, err, sizeof(err));
			if (input == NULL) {
				log_warn("flow=%s topic=%s partition=%d offset=%lld event=trigger_rejected "
					 "error=\"%s\"", f->name, rec->topic, (int)rec->partition,
					 (long long)rec->offset, err);
				continue;
			}
			/* The record's coordinates: a redelivery finds the saga it started. */
			snprintf(key, sizeof(key), "kafka:%s:%d:%lld", rec->topic, (int)rec->partition,
				 (long long)rec->offset);
			rc = engine_start(e, f->name, input, key, id, &existed, err, sizeof(err));
			json_decref(input);
			if (rc == SAGAD_ESHUTDOWN || rc == SAGAD_EBUSY || rc == SAGAD_ESTORE ||
			    rc == SAGAD_EIO || rc == SAGAD_EFULL) {
				release = false;
				log_warn("flow=%s topic=%s offset=%lld event=trigger_deferred error=\"%s\" "
					 "msg=\"offset kept: delivered again later\"", f->name, rec->topic,
					 (long long)rec->offset, err);
				continue;
			}
			if (rc != 0) {
				log_warn("flow=%s topic=%s offset=%lld event=trigger_rejected error=\"%s\"",
					 f->name, rec->topic, (long long)rec->offset, err);
				continue;
			}
			if (existed) {
				e->stats.trigger_duplicates++;
				log_info("saga=%s flow=%s event=trigger_duplicate topic=%s offset=%lld "
					 "msg=\"redelivered event: the saga it started exists\"", id,
					 f->name, rec->topic, (long long)rec->offset);
			} else {
				e->stats.triggered++;
				log_info("saga=%s flow=%s event=triggered topic=%s partition=%d offset=%lld",
					 id, f->name, rec->topic, (int)rec->partition, (long long)rec->offset);
			}
		}
	}
	return release;
}

static void on_record(const struct kafka_record *rec, void *arg)
{
	struct engine *e = arg;
	json_t *msg = engine__kafka_record_json(rec);
	struct record_done *d;
	bool taken = false, ignored = false, release, trigger_topic;

	if (msg == NULL) {
		log_warn("topic=%s partition=%d offset=%lld event=record_unreadable", rec->topic,
			 (int)rec->partition, (long long)rec->offset);
		kafka_done(e->kafka, rec->topic, rec->partition, rec->offset);
		return;
	}
	release = handle_triggers(e, rec, msg, &trigger_topic);
	for (size_t i = 0; i < e->n_wait_paths && !taken; i++)
		if (strcmp(e->wait_paths[i].topic, rec->topic) == 0) {
			char *path = xstrdup(e->wait_paths[i].path); /* the index may change */
			taken = try_path(e, rec->topic, path, msg, &ignored);
			free(path);
		}
	if (!taken && !ignored && !trigger_topic) {
		e->stats.kafka_unmatched++;
		log_debug("topic=%s partition=%d offset=%lld event=reply_unmatched msg=\"no step "
			  "waits for it (late, duplicate or someone else's)\"", rec->topic,
			  (int)rec->partition, (long long)rec->offset);
	}
	json_decref(msg);
	if (!release)
		return;
	d = xcalloc(1, sizeof(*d));
	d->e = e;
	d->topic = xstrdup(rec->topic);
	d->partition = rec->partition;
	d->offset = rec->offset;
	engine_defer(e, on_record_committed, d);
}

static void add_topic(char ***topics, size_t *n, const char *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*topics)[i], t) == 0)
			return;
	*topics = xrealloc(*topics, (*n + 1) * sizeof(**topics));
	(*topics)[(*n)++] = (char *)t;
}

static void flow_topics(const struct flow *f, char ***topics, size_t *n)
{
	for (size_t t = 0; t < f->n_triggers; t++)
		add_topic(topics, n, f->triggers[t].topic);
	for (size_t i = 0; i < f->n_steps; i++) {
		const struct flow_step *st = &f->steps[i];

		if (st->participant == NULL || st->participant->kind != PARTICIPANT_KAFKA)
			continue;
		if (st->action.reply != NULL)
			add_topic(topics, n, reply_topic(st, st->action.reply));
		if (st->compensation != NULL && st->compensation->reply != NULL)
			add_topic(topics, n, reply_topic(st, st->compensation->reply));
	}
}

int engine_kafka_subscribe(struct engine *e)
{
	char **topics = NULL;
	size_t n = 0;
	int rc = 0;

	if (e->kafka == NULL)
		return 0;
	for (size_t k = 0; k < e->flows->n; k++)
		flow_topics(e->flows->flows[k], &topics, &n);
	for (size_t k = 0; k < e->retired.n; k++)
		flow_topics(e->retired.flows[k], &topics, &n);
	/* Sagas still running on a flow version replaced by a reload wait on its topics. */
	for (size_t k = 0; k < e->n_wait_paths; k++)
		add_topic(&topics, &n, e->wait_paths[k].topic);
	if (n > 0) {
		rc = kafka_subscribe(e->kafka, (const char *const *)topics, n, on_record, e);
		for (size_t i = 0; i < n; i++)
			log_info("topic=%s event=subscribed", topics[i]);
	}
	free(topics);
	return rc;
}

/* ---- lifecycle events -------------------------------------------------------------- */

static void publish_lifecycle(struct saga *s, json_t *ev, const char *type)
{
	struct engine *e = s->e;
	char id[ID_LEN], ts[40], *value;
	const char *headers[] = { "event-type", type, "saga-id", s->id };
	int rc;

	if (ev == NULL) {
		log_error("saga=%s event=lifecycle_event_not_built", s->id);
		return;
	}
	util_new_id(id);
	util_format_time(util_now_ms(), ts, sizeof(ts));
	json_object_set_new(ev, "event_id", json_string(id));
	json_object_set_new(ev, "type", json_string(type));
	json_object_set_new(ev, "saga_id", json_string(s->id));
	json_object_set_new(ev, "flow", json_string(s->flow->name));
	json_object_set_new(ev, "flow_version", json_integer(s->flow->version));
	json_object_set_new(ev, "status", json_string(saga_state_name(s->state)));
	json_object_set_new(ev, "parent_id", s->parent_id[0] ? json_string(s->parent_id) : json_null());
	json_object_set_new(ev, "time", json_string(ts));
	value = ev ? json_dumps(secret_scrub_json(s->secrets, ev), JSON_COMPACT) : NULL;
	json_decref(ev);
	if (value == NULL) {
		log_error("saga=%s event=lifecycle_event_not_built", s->id);
		return;
	}
	rc = outbox_put(e->outbox, e->lifecycle_topic, s->id, headers, 2, value, s->id);
	engine__store_failed(e, rc, "outbox_put", s->id);
	free(value);
}

void engine__lifecycle_saga(struct saga *s)
{
	if (s->e->lifecycle_topic == NULL || s->e->outbox == NULL)
		return;
	publish_lifecycle(s, json_pack("{s:o}", "error", s->error ? json_string(s->error) :
				       json_null()), "saga");
}

void engine__lifecycle_step(struct saga *s, int i)
{
	struct step_run *r = &s->steps[i];

	if (s->e->lifecycle_topic == NULL || s->e->outbox == NULL)
		return;
	publish_lifecycle(s, json_pack("{s:s, s:i, s:s, s:i, s:i, s:o}", "step",
				       s->flow->steps[i].name, "step_index", i, "state",
				       step_state_name(r->state), "attempt", r->attempt,
				       "comp_attempt", r->comp_attempt, "error",
				       r->error ? json_string(r->error) : json_null()), "step");
}
