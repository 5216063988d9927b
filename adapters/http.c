/* http.c: the HTTP participant transport: libcurl's multi interface on its own thread (the
 * HTTP client thread) with its own libuv loop, after curl's docs/examples/multi-uv.c. Each
 * socket curl opens gets a uv_poll on that loop (struct sock, freed in the poll's close
 * callback); one uv_timer carries curl's timeout; both feed curl_multi_socket_action() and
 * then drain curl_multi_info_read().
 *
 * Two threads, one call at a time in one thread's hands:
 *   - the caller's loop thread (the engine's) takes a recycled call, copies the request into
 *     it and sets the easy handle's options (the handle is in no multi then), and queues it on
 *     the submit list (wakes the client thread with uv_async_send);
 *   - the client thread adds submitted calls to its multi and runs the transfers; when one
 *     ends it reads everything the result needs from curl (status, content type, Retry-After,
 *     request_sent, timings, error text) into the call, removes the handle from the multi and
 *     queues the call on the done list (wakes the caller's loop);
 *   - the caller's loop drains the done list, runs each callback with a result that borrows
 *     the call's buffers and recycles the call afterwards.
 * A wake-up is sent only when the list was empty (one is pending otherwise, and the other
 * side takes the whole list after it), and uv_async_send() coalesces: under load one wake-up
 * carries a batch each way. The lists, each call's place (where) and its cancel mark are under
 * the client's mutex, held for list splices only; the rest of a call belongs to the thread
 * whose list it was taken from. Only the client thread touches the CURLM, and an easy handle
 * while it is in the multi. The caller's loop thread sets a handle's options while it holds
 * the call (the handle is in no multi then).
 *
 * Cancel (caller's thread): marks the call cancelled. A call the client thread has not taken
 * yet is given back unsent; one it has gets a cancel message (its own list), on which the
 * client thread removes the handle if it is still in the multi and gives the call back. A call
 * that already finished comes back anyway. Either way it comes back exactly once, on the done
 * list, and the caller recycles it without running its callback. Cancel messages are read
 * before submissions, so a message for a call that has since come back, been recycled and been
 * sent again finds it not in the multi and does nothing.
 *
 * Calls are recycled: struct http_call owns an easy handle, a request body buffer, the header
 * list's nodes and text, and a response buffer, and returns to a free list after its callback
 * (or its cancel), so a steady load allocates nothing per call. The options that are the same
 * for every call are set once when the easy handle is made (easy_init_fixed()); a call sets
 * only its URL, timeout, headers and method, each of them every time, and its proxy when its
 * URL's scheme differs from the handle's last one, so nothing of a previous call carries over
 * (no curl_easy_reset(), which re-creates every default per call). The URL goes parsed, from a
 * table of parsed URLs (http_url.c), and the proxy settings come from the environment as read
 * once at creation (http_proxy.c): both spare libcurl work it would redo per transfer
 * (docs/performance.md, "libcurl per call"). Connections stay in the multi's cache and are
 * reused (keep-alive, CURLMOPT_MAX_HOST_CONNECTIONS per host).
 *
 * request_sent: 0 only when the transfer provably never wrote to a connection: name
 * resolution or connect failed (or the URL was refused before any I/O), or curl counted no
 * request bytes and neither a new connection got established (TCP, plus TLS for https) nor a
 * reused one was ever attached (no primary IP). In every other case a part of the request may
 * have reached the server and the result says 1. */
#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>
#include "error.h"
#include "http.h"
#include "http_proxy.h"
#include "http_url.h"
#include "log.h"
#include "util.h"

#ifdef PACKAGE_VERSION
#define HTTP_USER_AGENT "sagad/" PACKAGE_VERSION
#else
#define HTTP_USER_AGENT "sagad"
#endif

#define HTTP_DEFAULT_MAX_RESPONSE (1024 * 1024)
#define HTTP_DEFAULT_MAX_HOST_CONNECTIONS 64
/* A recycled call keeps buffers up to this size; larger ones are released. */
#define HTTP_KEEP_BUFFER (64 * 1024)

/* Where a call is; under the client's mutex. */
enum call_where {
	CALL_FREE,          /* on the caller's free list */
	CALL_SUBMITTED,     /* on the submit list: the client thread has not taken it yet */
	CALL_WORKER,        /* the client thread's (in the multi, normally) */
	CALL_DONE,          /* given back: on the done list, or in the batch being dispatched */
};

struct http_call {
	struct http_client *c;
	struct http_call *all_next;     /* every call of the client (caller's thread) */
	struct http_call *free_next;    /* the free list (caller's thread) */
	/* under c->mu */
	struct http_call *qnext;        /* the submit or the done list */
	struct http_call *cnext;        /* the cancel list */
	enum call_where where;
	int cancelled;
	int in_cancel_list;
	/* the caller's while it holds the call */
	http_done_cb cb;
	void *arg;
	char *body;                     /* request body, owned, reused (CURLOPT_POSTFIELDS) */
	size_t body_cap;
	/* the header list: nodes and the lines they point at, owned, reused (CURLOPT_HTTPHEADER) */
	struct curl_slist *hdr_nodes;
	size_t hdr_nodes_cap;
	char *hdr_text;
	size_t hdr_text_cap;
	struct http_url *url;           /* the handle's CURLOPT_CURLU while the caller holds it */
	/* the client thread's while it holds the call; read by the caller after it came back */
	CURL *easy;                     /* options set by the caller before the submit */
	struct http_call *wprev, *wnext; /* the client thread's transfers in the multi */
	struct http_call *wcancel_next; /* the cancel messages taken in one wake-up */
	int in_multi;
	int to_add;                     /* taken from the submit list, not cancelled */
	int too_big;
	enum http_proxy_scheme proxy;   /* the handle's CURLOPT_PROXY (caller's thread) */
	struct strbuf resp;             /* response body, reused */
	int error;                      /* the result (see finish()) */
	int status;
	int request_sent;
	int has_content_type;
	int64_t retry_after_ms;
	int64_t elapsed_ms;
	struct strbuf content_type;
	char errbuf[CURL_ERROR_SIZE];
};

/* One per socket curl watches; freed in the poll's close callback (client thread). */
struct sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct http_client *c;
	struct sock *prev, *next;
};

struct http_client {
	/* fixed at creation */
	size_t max_response;
	char *user_agent;
	struct http_proxy proxy;        /* from the environment at creation */

	/* the caller's loop thread */
	uv_loop_t *loop;
	uv_async_t done_wake;           /* ref'd while calls are active */
	struct http_call *all_calls;
	struct http_call *free_calls;
	size_t n_active;
	struct http_url_table *urls;
	int dispatching;                /* inside on_done_wake(): defer the teardown */
	int closing;

	/* the client thread */
	pthread_t thread;
	uv_loop_t wloop;
	uv_async_t work_wake;
	uv_timer_t timer;
	CURLM *multi;
	struct http_call *transfers;    /* in the multi; doubly linked through wprev/wnext */
	struct sock *socks;             /* doubly linked */

	/* shared, under mu */
	pthread_mutex_t mu;
	struct http_call *submit_head, **submit_tail;
	struct http_call *cancels;      /* through cnext, newest first */
	struct http_call *done_head, **done_tail;
	int stop;
};

/* --- calls (caller's thread) ------------------------------------------------------------ */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata);

/* The options every call has, set once per easy handle. */
static void easy_init_fixed(struct http_client *c, struct http_call *call)
{
	CURL *e = call->easy;

	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	curl_easy_setopt(e, CURLOPT_NOPROXY, c->proxy.no_proxy);
}

/* --- parsed URLs (caller's thread) ------------------------------------------------------ */

/* Points the handle at url, parsed (CURLOPT_CURLU) when it parses. The text is set too
 * (CURLOPT_URL): CURLOPT_CURLU overrides it for the transfer (as documented), and with the
 * text set libcurl does not rebuild it from the parsed URL per transfer (Curl_pretransfer());
 * it keeps the text for what needs one. The text is the parsed URL as libcurl writes it, not
 * the caller's: with CURLOPT_URL alone libcurl replaced the text with that normalized form
 * (parseurlandfillconn()), and a retry on a dead reused connection parses the text again
 * without guessing a scheme (Curl_follow(), FOLLOW_RETRY), so "127.0.0.1:8081/x" as given
 * would read as the scheme "127.0.0.1" there. The call holds the entry until it is recycled
 * (call_put()). Returns the CURLOPT_URL result. */
static CURLcode set_url(struct http_client *c, struct http_call *call, const char *url)
{
	assert(call->url == NULL);
	call->url = http_url_get(c->urls, url);
	if (call->url == NULL)
		return curl_easy_setopt(call->easy, CURLOPT_URL, url);
	curl_easy_setopt(call->easy, CURLOPT_CURLU, http_url_curlu(call->url));
	return curl_easy_setopt(call->easy, CURLOPT_URL, http_url_text(call->url));
}

/* The handle lets go of its parsed URL: the entry may be evicted and freed from now on. */
static void call_url_release(struct http_client *c, struct http_call *call)
{
	if (call->url == NULL)
		return;
	curl_easy_setopt(call->easy, CURLOPT_CURLU, NULL);
	http_url_put(c->urls, call->url);
	call->url = NULL;
}

static struct http_call *call_get(struct http_client *c)
{
	struct http_call *call = c->free_calls;

	if (call != NULL) {
		c->free_calls = call->free_next;
	} else {
		call = xcalloc(1, sizeof(*call));
		call->c = c;
		call->easy = curl_easy_init();
		if (call->easy == NULL)
			fatalx("http: curl_easy_init failed");
		strbuf_init(&call->resp);
		strbuf_init(&call->content_type);
		easy_init_fixed(c, call);
		call->all_next = c->all_calls;
		c->all_calls = call;
	}
	call->free_next = NULL;
	call->resp.len = 0;
	if (call->resp.data != NULL)
		call->resp.data[0] = '\0';
	call->too_big = 0;
	call->errbuf[0] = '\0';
	return call;
}

static void call_destroy(struct http_call *call)
{
	call_url_release(call->c, call);
	curl_easy_cleanup(call->easy);
	free(call->hdr_nodes);
	free(call->hdr_text);
	free(call->body);
	strbuf_close(&call->resp);
	strbuf_close(&call->content_type);
	free(call);
}

/* Takes a call the caller holds (never submitted, or given back) to the free list. */
static void call_put(struct http_client *c, struct http_call *call)
{
	call_url_release(c, call);
	call->cb = NULL;
	call->arg = NULL;
	if (call->resp.cap > HTTP_KEEP_BUFFER)
		strbuf_close(&call->resp);
	if (call->body_cap > HTTP_KEEP_BUFFER) {
		free(call->body);
		call->body = NULL;
		call->body_cap = 0;
	}
	if (call->hdr_text_cap > HTTP_KEEP_BUFFER) {
		free(call->hdr_text);
		call->hdr_text = NULL;
		call->hdr_text_cap = 0;
	}
	/* No lock: no list holds the call, and the client thread looks at it again only after
	 * the next submit (under the lock). */
	call->where = CALL_FREE;
	call->cancelled = 0;
	call->free_next = c->free_calls;
	c->free_calls = call;
}

/* The caller's loop stays alive while calls are active, as it did with the sockets on it. */
static void active_add(struct http_client *c)
{
	if (c->n_active++ == 0)
		uv_ref((uv_handle_t *)&c->done_wake);
}

static void active_remove(struct http_client *c)
{
	if (--c->n_active == 0)
		uv_unref((uv_handle_t *)&c->done_wake);
}

/* --- results (client thread) ------------------------------------------------------------ */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct http_call *call = userdata;
	size_t n = size * nmemb;

	if (call->resp.len + n > call->c->max_response) {
		call->too_big = 1;
		return CURL_WRITEFUNC_ERROR;
	}
	strbuf_add(&call->resp, ptr, n);
	return n;
}

static int map_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return SAGAD_ETIMEOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return SAGAD_ECONNECT;
	case CURLE_FILESIZE_EXCEEDED:
		return SAGAD_ETOOBIG;
	default:
		return SAGAD_EIO;
	}
}

/* See the rule at the top of the file. */
static int request_sent(CURL *e, CURLcode rc)
{
	long req_size = 0;
	curl_off_t connect_us = 0, appconnect_us = 0;
	long n_connects = 0;
	const char *scheme = NULL, *ip = NULL;
	int connected;

	switch (rc) {
	case CURLE_OK:
		return 1;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_FAILED_INIT:
		return 0;
	default:
		break;
	}
	if (curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &req_size) == CURLE_OK && req_size > 0)
		return 1;
	curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connect_us);
	curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &appconnect_us);
	curl_easy_getinfo(e, CURLINFO_SCHEME, &scheme);
	connected = connect_us > 0;
	if (connected && scheme != NULL && strcasecmp(scheme, "https") == 0)
		connected = appconnect_us > 0;
	if (connected)
		return 1;
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &n_connects);
	if (n_connects > 0)
		return 0;       /* a new connection that never completed */
	curl_easy_getinfo(e, CURLINFO_PRIMARY_IP, &ip);
	return ip != NULL && ip[0] != '\0';  /* attached to a reused connection: maybe sent */
}

static int64_t retry_after_ms(CURL *e)
{
	struct curl_header *h;
	const char *v;
	char *end;
	long long secs;
	time_t t;

	if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return -1;
	v = h->value;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v >= '0' && *v <= '9') {
		secs = strtoll(v, &end, 10);
		while (*end == ' ' || *end == '\t')
			end++;
		if (*end != '\0' || secs < 0 || secs > INT64_MAX / 1000)
			return -1;
		return (int64_t)secs * 1000;
	}
	t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	t -= time(NULL);
	return t > 0 ? (int64_t)t * 1000 : 0;
}

/* Reads the outcome of a finished transfer (still in the multi) into the call. */
static void finish(struct http_client *c, struct http_call *call, CURLcode rc)
{
	curl_off_t total_us = 0;
	long status = 0;
	char *ct = NULL;

	call->status = 0;
	call->has_content_type = 0;
	call->retry_after_ms = -1;
	curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	call->elapsed_ms = total_us / 1000;
	call->request_sent = request_sent(call->easy, rc);
	if (rc == CURLE_OK) {
		call->error = 0;
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		call->status = (int)status;
		curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
		if (ct != NULL) {
			call->content_type.len = 0;
			strbuf_add(&call->content_type, ct, strlen(ct));
			call->has_content_type = 1;
		}
		call->retry_after_ms = retry_after_ms(call->easy);
	} else {
		call->error = call->too_big ? SAGAD_ETOOBIG : map_error(rc);
		if (call->error == SAGAD_ETOOBIG) {
			snprintf(call->errbuf, sizeof(call->errbuf),
				 "response body exceeds %zu bytes", c->max_response);
		} else if (call->errbuf[0] == '\0') {
			snprintf(call->errbuf, sizeof(call->errbuf), "%s", curl_easy_strerror(rc));
		}
	}
}

/* A result for a call that never became a transfer (curl_multi_add_handle() refused it). */
static void finish_refused(struct http_call *call, CURLMcode mrc)
{
	call->error = SAGAD_EIO;
	call->status = 0;
	call->has_content_type = 0;
	call->retry_after_ms = -1;
	call->elapsed_ms = 0;
	call->request_sent = 0;
	snprintf(call->errbuf, sizeof(call->errbuf), "%s", curl_multi_strerror(mrc));
}

/* --- the client thread ------------------------------------------------------------------ */

/* The calls given back in one go: spliced onto the done list under one lock. */
struct batch {
	struct http_call *head, **tail;
};

static void batch_add(struct batch *b, struct http_call *call)
{
	call->qnext = NULL;
	*b->tail = call;
	b->tail = &call->qnext;
}

static void batch_give_back(struct http_client *c, struct batch *b)
{
	int wake;

	if (b->head == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	for (struct http_call *call = b->head; call != NULL; call = call->qnext)
		call->where = CALL_DONE;
	/* A non-empty list has a wake-up pending: the caller takes the list after it. */
	wake = c->done_head == NULL;
	*c->done_tail = b->head;
	c->done_tail = b->tail;
	pthread_mutex_unlock(&c->mu);
	if (wake)
		uv_async_send(&c->done_wake);
	b->head = NULL;
	b->tail = &b->head;
}

static void transfer_unlink(struct http_client *c, struct http_call *call)
{
	curl_multi_remove_handle(c->multi, call->easy);
	if (call->wprev != NULL)
		call->wprev->wnext = call->wnext;
	else
		c->transfers = call->wnext;
	if (call->wnext != NULL)
		call->wnext->wprev = call->wprev;
	call->wprev = call->wnext = NULL;
	call->in_multi = 0;
}

static void check_done(struct http_client *c)
{
	struct batch b = { NULL, &b.head };
	struct http_call *call;
	CURLMsg *msg;
	int pending;

	while ((msg = curl_multi_info_read(c->multi, &pending)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURLcode rc = msg->data.result;
		CURL *e = msg->easy_handle;

		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&call);
		finish(c, call, rc);
		transfer_unlink(c, call);
		batch_add(&b, call);
	}
	batch_give_back(c, &b);
}

static void on_sock_closed(uv_handle_t *h)
{
	free(h->data);
}

static void sock_close(struct sock *s)
{
	struct http_client *c = s->c;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_sock_event(uv_poll_t *p, int status, int events)
{
	struct sock *s = p->data;
	struct http_client *c = s->c;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	check_done(c);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_client *c = userp;
	struct sock *s = socketp;
	int events = 0;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			sock_close(s);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = xmalloc(sizeof(*s));
		s->fd = fd;
		s->c = c;
		s->poll.data = s;
		if (uv_poll_init_socket(&c->wloop, &s->poll, fd) != 0) {
			/* log_write() is safe on this thread (one fprintf per line). */
			log_error("event=http_poll_failed fd=%d", (int)fd);
			free(s);
			return -1;
		}
		s->prev = NULL;
		s->next = c->socks;
		if (c->socks != NULL)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&s->poll, events, on_sock_event);
	return 0;
}

static void on_timer(uv_timer_t *t)
{
	struct http_client *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct http_client *c = userp;

	(void)multi;
	/* Never call socket_action from here (curl forbids the recursion): 0 runs it on the
	 * next loop iteration. */
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

/* Stops everything on the client thread; the caller's thread frees the calls after the join. */
static void worker_teardown(struct http_client *c)
{
	while (c->transfers != NULL)
		transfer_unlink(c, c->transfers);
	/* Stop watching the sockets before curl closes them; curl_multi_cleanup() may still
	 * report CURL_POLL_REMOVE for them, with a NULL socketp by then. */
	while (c->socks != NULL) {
		curl_multi_assign(c->multi, c->socks->fd, NULL);
		sock_close(c->socks);
	}
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	uv_close((uv_handle_t *)&c->timer, NULL);
	uv_close((uv_handle_t *)&c->work_wake, NULL);
}

/* Takes the cancel messages, then the submissions (in that order: see the top of the file). */
static void on_work_wake(uv_async_t *h)
{
	struct http_client *c = h->data;
	struct http_call *subs, *cancels, *call, *next;
	struct batch b = { NULL, &b.head };
	CURLMcode mrc;

	pthread_mutex_lock(&c->mu);
	if (c->stop) {
		pthread_mutex_unlock(&c->mu);
		worker_teardown(c);
		return;
	}
	/* The messages are re-linked through a field of this thread's: once in_cancel_list is
	 * 0 the caller may queue the same call again (sent anew and cancelled anew). */
	cancels = NULL;
	for (call = c->cancels; call != NULL; call = call->cnext) {
		call->in_cancel_list = 0;
		call->wcancel_next = cancels;
		cancels = call;
	}
	c->cancels = NULL;
	subs = c->submit_head;
	c->submit_head = NULL;
	c->submit_tail = &c->submit_head;
	/* Taken: a cancel from now on sends a message. One cancelled before is given back
	 * unsent. */
	for (call = subs; call != NULL; call = call->qnext) {
		call->where = CALL_WORKER;
		call->to_add = !call->cancelled;
	}
	pthread_mutex_unlock(&c->mu);

	/* A message for a call no longer in the multi is stale: it finished (and was given back,
	 * maybe recycled and submitted again since, then it is in subs with to_add). */
	for (call = cancels; call != NULL; call = call->wcancel_next) {
		if (call->in_multi) {
			transfer_unlink(c, call);
			batch_add(&b, call);
		}
	}
	for (call = subs; call != NULL; call = next) {
		next = call->qnext;
		if (!call->to_add) {
			batch_add(&b, call);            /* cancelled before it was taken */
			continue;
		}
		mrc = curl_multi_add_handle(c->multi, call->easy);
		if (mrc != CURLM_OK) {
			finish_refused(call, mrc);
			batch_add(&b, call);
			continue;
		}
		call->in_multi = 1;
		call->wprev = NULL;
		call->wnext = c->transfers;
		if (c->transfers != NULL)
			c->transfers->wprev = call;
		c->transfers = call;
	}
	batch_give_back(c, &b);
}

static void *worker_main(void *arg)
{
	struct http_client *c = arg;

	pthread_setname_np(pthread_self(), "sagad-http");       /* top -H, perf, gdb */
	uv_run(&c->wloop, UV_RUN_DEFAULT);
	return NULL;
}

/* --- the caller's side ------------------------------------------------------------------ */

static void client_teardown(struct http_client *c);

/* Runs the callbacks of the calls given back, then recycles them. */
static void on_done_wake(uv_async_t *h)
{
	struct http_client *c = h->data;
	struct http_call *call, *next;
	struct http_result res;

	pthread_mutex_lock(&c->mu);
	call = c->done_head;
	c->done_head = NULL;
	c->done_tail = &c->done_head;
	pthread_mutex_unlock(&c->mu);

	c->dispatching++;
	for (; call != NULL; call = next) {
		http_done_cb cb = call->cb;
		void *arg = call->arg;

		next = call->qnext;
		if (c->closing)
			break;                          /* the teardown frees them all */
		if (call->cancelled) {                  /* only this thread writes it */
			call_put(c, call);
			continue;
		}
		memset(&res, 0, sizeof(res));
		res.error = call->error;
		res.status = call->status;
		res.retry_after_ms = call->retry_after_ms;
		res.elapsed_ms = call->elapsed_ms;
		res.request_sent = call->request_sent;
		if (call->error == 0) {
			res.content_type = call->has_content_type ? call->content_type.data : NULL;
			res.body = call->resp.data != NULL ? call->resp.data : "";
			res.body_len = call->resp.len;
		} else {
			res.error_text = call->errbuf;
			res.body = "";
		}
		active_remove(c);
		/* The result borrows the call's buffers: recycle the call only after cb returned.
		 * cb may send new calls (they get other call objects) or cancel others, also ones
		 * of this batch. */
		cb(&res, arg);
		call_put(c, call);
	}
	c->dispatching--;
	if (c->closing && c->dispatching == 0)
		client_teardown(c);
}

/* Sets the handle's proxy for the URL's scheme (http_proxy.h); only when it changes. */
static void set_proxy(struct http_client *c, struct http_call *call, const char *url)
{
	enum http_proxy_scheme want = http_proxy_scheme(url);

	if (want == call->proxy)
		return;
	curl_easy_setopt(call->easy, CURLOPT_PROXY, http_proxy_for(&c->proxy, want));
	call->proxy = want;
}

static const int async_signals[] = {
	SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH,
};

int http_client_new(uv_loop_t *loop, const struct http_client_options *opt,
		    struct http_client **out)
{
	struct http_client *c;
	long max_host = HTTP_DEFAULT_MAX_HOST_CONNECTIONS;
	sigset_t async, old;
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return SAGAD_EIO;
	c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->max_response = HTTP_DEFAULT_MAX_RESPONSE;
	if (opt != NULL && opt->max_response_bytes > 0)
		c->max_response = opt->max_response_bytes;
	if (opt != NULL && opt->max_host_connections > 0)
		max_host = opt->max_host_connections;
	c->user_agent = xstrdup(opt != NULL && opt->user_agent != NULL ? opt->user_agent
								      : HTTP_USER_AGENT);
	http_proxy_init(&c->proxy);
	c->urls = http_url_table_new();
	c->multi = curl_multi_init();
	if (c->multi == NULL)
		goto fail;
	if (uv_loop_init(&c->wloop) != 0) {
		curl_multi_cleanup(c->multi);
		goto fail;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
	/* The idle-connection cache: room for several participants' worth of keep-alives. */
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, max_host * 8);
	pthread_mutex_init(&c->mu, NULL);
	c->submit_tail = &c->submit_head;
	c->done_tail = &c->done_head;
	uv_timer_init(&c->wloop, &c->timer);
	c->timer.data = c;
	uv_async_init(&c->wloop, &c->work_wake, on_work_wake);
	c->work_wake.data = c;
	uv_async_init(loop, &c->done_wake, on_done_wake);
	c->done_wake.data = c;
	uv_unref((uv_handle_t *)&c->done_wake);
	/* Signals stay with the caller's threads: the client thread starts with the asynchronous
	 * ones blocked (not the faults: a crash must still reach its handler). */
	sigemptyset(&async);
	for (size_t i = 0; i < sizeof(async_signals) / sizeof(async_signals[0]); i++)
		sigaddset(&async, async_signals[i]);
	pthread_sigmask(SIG_BLOCK, &async, &old);
	rc = pthread_create(&c->thread, NULL, worker_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		fatalx("http: cannot start the HTTP client thread");
	*out = c;
	return 0;

fail:
	free(c->user_agent);
	http_proxy_close(&c->proxy);
	http_url_table_free(c->urls);
	free(c);
	curl_global_cleanup();
	return SAGAD_EIO;
}

static void on_client_closed(uv_handle_t *h)
{
	struct http_client *c = h->data;

	free(c->user_agent);
	http_proxy_close(&c->proxy);
	free(c);
	curl_global_cleanup();
}

/* Runs once no callback is being dispatched: stops and joins the client thread, frees every
 * call wherever it was, closes the caller's handle. */
static void client_teardown(struct http_client *c)
{
	struct http_call *call;

	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_mutex_unlock(&c->mu);
	uv_async_send(&c->work_wake);
	pthread_join(c->thread, NULL);
	if (uv_loop_close(&c->wloop) != 0)
		fatalx("http: the client thread's loop still has handles");
	pthread_mutex_destroy(&c->mu);
	while ((call = c->all_calls) != NULL) {
		c->all_calls = call->all_next;
		call_destroy(call);
	}
	http_url_table_free(c->urls);
	c->urls = NULL;
	c->free_calls = NULL;
	c->n_active = 0;
	uv_close((uv_handle_t *)&c->done_wake, on_client_closed);
}

void http_client_free(struct http_client *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = 1;
	if (c->dispatching == 0)
		client_teardown(c);
}

size_t http_client_active(const struct http_client *c)
{
	return c->n_active;
}

size_t http_client_idle_calls(const struct http_client *c)
{
	size_t n = 0;

	for (const struct http_call *call = c->free_calls; call != NULL; call = call->free_next)
		n++;
	return n;
}

/* The request's header lines and "Expect:" (no "Expect: 100-continue" round trip before a
 * body) as a curl_slist built in the call's own buffers: libcurl only reads the list, so it
 * needs no curl_slist_append() (a node and a copy allocated per line, freed per call). */
static void set_headers(struct http_call *call, const struct http_request *req)
{
	static const char expect[] = "Expect:";
	size_t n = req->n_headers + 1, len = sizeof(expect), off = 0;
	struct curl_slist *nodes;

	for (size_t i = 0; i < req->n_headers; i++)
		len += strlen(req->headers[i]) + 1;
	if (n > call->hdr_nodes_cap) {
		call->hdr_nodes = xrealloc(call->hdr_nodes, n * sizeof(*call->hdr_nodes));
		call->hdr_nodes_cap = n;
	}
	if (len > call->hdr_text_cap) {
		free(call->hdr_text);
		call->hdr_text = xmalloc(len);
		call->hdr_text_cap = len;
	}
	nodes = call->hdr_nodes;
	for (size_t i = 0; i < n; i++) {
		const char *line = i < req->n_headers ? req->headers[i] : expect;
		size_t l = strlen(line) + 1;

		memcpy(call->hdr_text + off, line, l);
		nodes[i].data = call->hdr_text + off;
		nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
		off += l;
	}
	curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, nodes);
}

static int set_body(struct http_call *call, const struct http_request *req)
{
	if (req->body_len > call->body_cap) {
		free(call->body);
		call->body = xmalloc(req->body_len);
		call->body_cap = req->body_len;
	}
	if (req->body_len > 0)
		memcpy(call->body, req->body, req->body_len);
	curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS, req->body_len > 0 ? call->body : "");
	return 0;
}

int http_client_send(struct http_client *c, const struct http_request *req, http_done_cb cb,
		     void *arg, struct http_call **out)
{
	struct http_call *call;
	const char *method;
	CURL *e;
	int wake;

	if (c->closing)
		return SAGAD_ESHUTDOWN;
	if (req->url == NULL || cb == NULL || req->timeout_ms <= 0 ||
	    (req->body == NULL && req->body_len > 0))
		return SAGAD_EINVAL;
	method = req->method != NULL ? req->method : "POST";

	/* The handle is in no multi while the caller holds the call: its options are set here. */
	call = call_get(c);
	e = call->easy;
	call->cb = cb;
	call->arg = arg;
	if (set_url(c, call, req->url) != CURLE_OK) {
		call_put(c, call);
		return SAGAD_EINVAL;
	}
	set_proxy(c, call, req->url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	set_headers(call, req);

	/* The method: every call sets all three of the handle's method options (the request
	 * kind, NOBODY, CUSTOMREQUEST), so none is left from the handle's previous call. */
	if (strcmp(method, "GET") == 0 && req->body_len == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);       /* also NOBODY 0 */
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	} else if (req->body_len > 0 || strcmp(method, "POST") == 0 ||
		   strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
		set_body(call, req);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
				 strcmp(method, "POST") != 0 ? method : NULL);
	} else {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);  /* DELETE, OPTIONS... */
	}

	/* The transfer starts on the client thread; cb runs on this loop from a later wake-up,
	 * so never inside this function. One wake-up per batch: the thread takes the whole list. */
	pthread_mutex_lock(&c->mu);
	call->where = CALL_SUBMITTED;
	call->qnext = NULL;
	wake = c->submit_head == NULL && c->cancels == NULL;
	*c->submit_tail = call;
	c->submit_tail = &call->qnext;
	pthread_mutex_unlock(&c->mu);
	if (wake)
		uv_async_send(&c->work_wake);
	active_add(c);
	if (out != NULL)
		*out = call;
	return 0;
}

void http_call_cancel(struct http_call *call)
{
	struct http_client *c;
	int wake = 0;

	if (call == NULL)
		return;
	c = call->c;
	pthread_mutex_lock(&c->mu);
	call->cancelled = 1;
	/* Submitted: the thread gives it back unsent. Done: the dispatch skips it. */
	if (call->where == CALL_WORKER && !call->in_cancel_list) {
		call->in_cancel_list = 1;
		call->cnext = c->cancels;
		wake = c->cancels == NULL && c->submit_head == NULL;
		c->cancels = call;
	}
	pthread_mutex_unlock(&c->mu);
	if (wake)
		uv_async_send(&c->work_wake);
	active_remove(c);
}
