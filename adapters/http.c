/* http.c: the HTTP participant transport: libcurl's multi interface on the libuv loop, after
 * curl's docs/examples/multi-uv.c. Each socket curl opens gets a uv_poll (struct sock, freed
 * in the poll's close callback); one uv_timer carries curl's timeout; both feed
 * curl_multi_socket_action() and then drain curl_multi_info_read().
 *
 * Calls are recycled: struct http_call owns an easy handle, a request body buffer and a
 * response buffer, and returns to a free list when it completes or is cancelled, so a steady
 * load allocates nothing per call but curl's header list. The options that are the same for
 * every call are set once when the easy handle is made (easy_init_fixed()); a call sets only
 * its URL, timeout, headers and method, each of them every time, so nothing of a previous call
 * carries over (no curl_easy_reset(), which re-creates every default per call). Connections
 * stay in the multi's cache and are reused (keep-alive, CURLMOPT_MAX_HOST_CONNECTIONS per
 * host).
 *
 * request_sent: 0 only when the transfer provably never wrote to a connection: name
 * resolution or connect failed (or the URL was refused before any I/O), or curl counted no
 * request bytes and neither a new connection got established (TCP, plus TLS for https) nor a
 * reused one was ever attached (no primary IP). In every other case a part of the request may
 * have reached the server and the result says 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>
#include "error.h"
#include "http.h"
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

struct http_call {
	struct http_client *c;
	struct http_call *prev, *next;  /* the active list, or next in the free list */
	CURL *easy;
	struct curl_slist *headers;
	char *body;                     /* request body, owned, reused (CURLOPT_POSTFIELDS) */
	size_t body_cap;
	struct strbuf resp;             /* response body, reused */
	http_done_cb cb;
	void *arg;
	int too_big;
	char errbuf[CURL_ERROR_SIZE];
};

/* One per socket curl watches; freed in the poll's close callback. */
struct sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct http_client *c;
	struct sock *prev, *next;
};

struct http_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct http_call *active;       /* doubly linked */
	struct http_call *free_calls;   /* singly linked through next */
	struct sock *socks;             /* doubly linked */
	size_t n_active;
	size_t max_response;
	char *user_agent;
	int dispatching;                /* inside check_done(): defer the teardown */
	int closing;
};

static void check_done(struct http_client *c);
static void client_teardown(struct http_client *c);

/* --- calls ------------------------------------------------------------------------------ */

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
}

static struct http_call *call_get(struct http_client *c)
{
	struct http_call *call = c->free_calls;

	if (call != NULL) {
		c->free_calls = call->next;
	} else {
		call = xcalloc(1, sizeof(*call));
		call->c = c;
		call->easy = curl_easy_init();
		if (call->easy == NULL)
			fatalx("http: curl_easy_init failed");
		strbuf_init(&call->resp);
		easy_init_fixed(c, call);
	}
	call->prev = call->next = NULL;
	call->resp.len = 0;
	if (call->resp.data != NULL)
		call->resp.data[0] = '\0';
	call->too_big = 0;
	call->errbuf[0] = '\0';
	return call;
}

static void call_destroy(struct http_call *call)
{
	curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->headers);
	free(call->body);
	strbuf_close(&call->resp);
	free(call);
}

static void active_unlink(struct http_client *c, struct http_call *call)
{
	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		c->active = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	c->n_active--;
}

/* Takes a finished or cancelled call (already removed from the multi) back to the free list. */
static void call_put(struct http_client *c, struct http_call *call)
{
	curl_slist_free_all(call->headers);
	call->headers = NULL;
	call->cb = NULL;
	call->arg = NULL;
	if (call->resp.cap > HTTP_KEEP_BUFFER)
		strbuf_close(&call->resp);
	if (call->body_cap > HTTP_KEEP_BUFFER) {
		free(call->body);
		call->body = NULL;
		call->body_cap = 0;
	}
	call->next = c->free_calls;
	c->free_calls = call;
}

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

static void finish(struct http_client *c, struct http_call *call, CURLcode rc)
{
	struct http_result res;
	http_done_cb cb = call->cb;
	void *arg = call->arg;
	curl_off_t total_us = 0;
	long status = 0;
	char *ct = NULL;

	memset(&res, 0, sizeof(res));
	res.retry_after_ms = -1;
	curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	res.elapsed_ms = total_us / 1000;
	res.request_sent = request_sent(call->easy, rc);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
		res.status = (int)status;
		res.content_type = ct;
		res.retry_after_ms = retry_after_ms(call->easy);
		res.body = call->resp.data != NULL ? call->resp.data : "";
		res.body_len = call->resp.len;
	} else {
		res.error = call->too_big ? SAGAD_ETOOBIG : map_error(rc);
		if (res.error == SAGAD_ETOOBIG) {
			snprintf(call->errbuf, sizeof(call->errbuf),
				 "response body exceeds %zu bytes", c->max_response);
		} else if (call->errbuf[0] == '\0') {
			snprintf(call->errbuf, sizeof(call->errbuf), "%s", curl_easy_strerror(rc));
		}
		res.error_text = call->errbuf;
		res.body = "";
	}
	/* The result borrows the call's buffers: hand the call back only after cb returned.
	 * cb may send new calls (they get other call objects) or cancel others. */
	cb(&res, arg);
	call_put(c, call);
}

static void check_done(struct http_client *c)
{
	struct http_call *call;
	CURLMsg *msg;
	int pending;

	c->dispatching++;
	while (!c->closing && (msg = curl_multi_info_read(c->multi, &pending)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURLcode rc = msg->data.result;
		CURL *e = msg->easy_handle;

		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&call);
		curl_multi_remove_handle(c->multi, e);
		active_unlink(c, call);
		finish(c, call, rc);
	}
	c->dispatching--;
	if (c->closing && c->dispatching == 0)
		client_teardown(c);
}

/* --- the loop bridge -------------------------------------------------------------------- */

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
		if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
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

/* --- the client ------------------------------------------------------------------------- */

int http_client_new(uv_loop_t *loop, const struct http_client_options *opt,
		    struct http_client **out)
{
	struct http_client *c;
	long max_host = HTTP_DEFAULT_MAX_HOST_CONNECTIONS;

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
	c->multi = curl_multi_init();
	if (c->multi == NULL) {
		free(c->user_agent);
		free(c);
		curl_global_cleanup();
		return SAGAD_EIO;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
	/* The idle-connection cache: room for several participants' worth of keep-alives. */
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, max_host * 8);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	*out = c;
	return 0;
}

static void on_client_closed(uv_handle_t *h)
{
	struct http_client *c = h->data;

	free(c->user_agent);
	free(c);
	curl_global_cleanup();
}

/* Runs once no completion is being dispatched: drops all calls, closes the handles. */
static void client_teardown(struct http_client *c)
{
	struct http_call *call;

	while ((call = c->active) != NULL) {
		curl_multi_remove_handle(c->multi, call->easy);
		active_unlink(c, call);
		call_destroy(call);
	}
	while ((call = c->free_calls) != NULL) {
		c->free_calls = call->next;
		call_destroy(call);
	}
	/* Stop watching the sockets before curl closes them; curl_multi_cleanup() may still
	 * report CURL_POLL_REMOVE for them, with a NULL socketp by then. */
	while (c->socks != NULL) {
		curl_multi_assign(c->multi, c->socks->fd, NULL);
		sock_close(c->socks);
	}
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	uv_close((uv_handle_t *)&c->timer, on_client_closed);
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
	struct curl_slist *h = NULL, *tmp;
	CURL *e;

	if (c->closing)
		return SAGAD_ESHUTDOWN;
	if (req->url == NULL || cb == NULL || req->timeout_ms <= 0 ||
	    (req->body == NULL && req->body_len > 0))
		return SAGAD_EINVAL;
	method = req->method != NULL ? req->method : "POST";

	for (size_t i = 0; i < req->n_headers; i++) {
		if ((tmp = curl_slist_append(h, req->headers[i])) == NULL)
			goto fail_nomem;
		h = tmp;
	}
	/* No "Expect: 100-continue" round trip before a body. */
	if ((tmp = curl_slist_append(h, "Expect:")) == NULL)
		goto fail_nomem;
	h = tmp;

	call = call_get(c);
	e = call->easy;
	call->headers = h;
	call->cb = cb;
	call->arg = arg;
	if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK) {
		call_put(c, call);
		return SAGAD_EINVAL;
	}
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);

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

	/* Adding the handle only arms the timer (at 0 ms): the transfer starts on the next
	 * loop iteration, so cb never runs inside this function. */
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		call_put(c, call);
		return SAGAD_EIO;
	}
	call->next = c->active;
	if (c->active != NULL)
		c->active->prev = call;
	c->active = call;
	c->n_active++;
	if (out != NULL)
		*out = call;
	return 0;

fail_nomem:
	curl_slist_free_all(h);
	return SAGAD_ENOMEM;
}

void http_call_cancel(struct http_call *call)
{
	struct http_client *c;

	if (call == NULL)
		return;
	c = call->c;
	curl_multi_remove_handle(c->multi, call->easy);
	active_unlink(c, call);
	call_put(c, call);
}
