/* httpd.c: the admin API's HTTP/1.1 server: libmicrohttpd in external-epoll mode on the loop.
 * MHD's epoll fd is watched by a uv_poll; after every MHD_run() the uv_timer is re-armed from
 * MHD_get_timeout() (without that, keep-alive connections stall).
 *
 * A request (struct httpd_req) is allocated on the access handler's first call and stored as
 * MHD's per-request context. Its states:
 *   RECEIVING  the body is arriving (or being discarded after it grew past max_body_bytes);
 *   HANDLING   inside the handler: httpd_respond() here just queues the response;
 *   PENDING    the handler returned without answering: the connection is suspended;
 *              httpd_respond() queues the response and resumes it;
 *   RESPONDED  a response is queued; MHD still sends it;
 *   ABORTED    the client went away while PENDING; the abort callback has run.
 * The struct itself is freed once MHD reports the request completed (NOTIFY_COMPLETED); for
 * the caller it is invalid right after httpd_respond() or the abort callback.
 *
 * MHD does not watch a suspended connection, so a client that leaves while its answer is
 * pending would go unnoticed until the answer is written. Every connection's socket is
 * therefore in a second epoll set of our own (struct httpd_conn, from MHD's connection start to
 * its close notification), edge-triggered for EPOLLRDHUP (the peer's FIN) and errors, and that
 * set's fd is watched by one uv_poll. An event marks the connection's peer as gone for good; if
 * its request is PENDING with an abort callback, the abort callback runs and the connection is
 * resumed so that MHD closes it. A request suspended after its peer was already marked gone
 * re-arms the registration (EPOLL_CTL_MOD reports a standing condition again), so the abort
 * follows on the next loop turn. Registering per connection, not per suspended request, costs
 * two epoll_ctl calls per connection instead of five epoll_ctl calls and an ioctl per request
 * (uv_poll_init_socket checks the fd with an ADD and a DEL, then starts and stops it). Without
 * an abort callback a late httpd_respond() stays harmless: the write fails and the request is
 * released. A client that half-closes its side after sending a request counts as gone.
 *
 * httpd_free() resumes the suspended connections (MHD must not be stopped with any) and stops
 * MHD, which runs the pending requests' abort callbacks; a pending request without one is
 * released too, so nothing may answer it after httpd_free(). Called from inside a handler,
 * httpd_free() defers the stop until MHD_run() has returned. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include "error.h"
#include "httpd.h"
#include "log.h"
#include "util.h"

#define HTTPD_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTPD_DEFAULT_TIMEOUT_S 60
/* Each connection's memory pool: it holds the request line and headers (so a request head of
 * up to about 15.8 kB is accepted; larger gets 431), then the response header. MHD zeroes the
 * pool and half of it again for every request (48 KiB at MHD's default of 32 KiB, 24 KiB
 * here), which showed as 5 % of sagad's instructions and about 4 % of its CPU per saga
 * (docs/performance.md). 15.8 kB is about twice the longest bearer token auth.c reads (8192
 * bytes; tests/e2e/60-auth.sh sends a 7.5 kB JWT) and twice the 8 kB per header line that
 * common proxies (nginx, Apache) accept by default. */
#define HTTPD_CONNECTION_MEMORY (16 * 1024)

enum req_state { REQ_RECEIVING, REQ_HANDLING, REQ_PENDING, REQ_RESPONDED, REQ_ABORTED };

/* One per TCP connection, MHD's socket context: its entry in h->watch_fd's set. */
struct httpd_conn {
	int fd;                         /* -1: not in the set (EPOLL_CTL_ADD failed) */
	unsigned peer_gone : 1;         /* FIN or an error seen: sticky */
	struct httpd_req *pending;      /* its suspended request, if any */
};

struct httpd_req {
	struct httpd *h;
	struct MHD_Connection *conn;
	struct httpd_conn *wc;          /* the connection's watch entry, or NULL */
	struct httpd_req *prev, *next;  /* h->pending, while PENDING */
	const char *method;             /* MHD's, valid for the request */
	const char *path;
	struct strbuf body;
	enum req_state state;
	unsigned too_big : 1;
	httpd_abort_cb abort_cb;
	void *abort_arg;
	char peer[INET6_ADDRSTRLEN];
};

struct httpd {
	uv_loop_t *loop;
	struct MHD_Daemon *d;
	uv_poll_t poll;                 /* MHD's epoll fd */
	uv_timer_t timer;               /* MHD_get_timeout() */
	int watch_fd;                   /* our epoll set of the connections' sockets */
	uv_poll_t watch;                /* watch_fd */
	httpd_handler_cb handler;
	void *arg;
	size_t max_body;
	int port;
	int handles;                    /* open uv handles; freed when the last one closes */
	int run_soon;                   /* a resume happened: run MHD again at once */
	int closing;
	int in_run;                     /* inside MHD_run(): httpd_free() defers the stop */
	struct MHD_Response *too_big;   /* the shared 413 answer */
	struct httpd_req *pending;
	char *errbuf;                   /* while starting: where MHD's messages go */
	size_t errlen;
};

/* --- the loop bridge -------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);
static void stop(struct httpd *h);

static void rearm(struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (h->run_soon)
		uv_timer_start(&h->timer, on_timer, 0, 0);
	else if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
	else
		uv_timer_stop(&h->timer);
}

static void run(struct httpd *h)
{
	h->run_soon = 0;
	h->in_run = 1;
	MHD_run(h->d);
	h->in_run = 0;
	if (h->closing)
		stop(h);        /* httpd_free() was called from a handler */
	else
		rearm(h);
}

static void on_timer(uv_timer_t *t)
{
	run(t->data);
}

static void on_epoll(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	run(p->data);
}

/* Runs MHD on the next loop iteration (after a resume); never recursively. */
static void run_soon(struct httpd *h)
{
	h->run_soon = 1;
	uv_timer_start(&h->timer, on_timer, 0, 0);
}

/* --- requests --------------------------------------------------------------------------- */

static void pending_unlink(struct httpd_req *r)
{
	struct httpd *h = r->h;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		h->pending = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	if (r->wc != NULL)
		r->wc->pending = NULL;
}

/* The client of a PENDING request with an abort callback went away. */
static void req_abort(struct httpd_req *r)
{
	httpd_abort_cb cb = r->abort_cb;
	void *arg = r->abort_arg;

	pending_unlink(r);
	r->state = REQ_ABORTED;
	/* MHD closes the connection once it sees it again (the access handler says MHD_NO). */
	MHD_resume_connection(r->conn);
	run_soon(r->h);
	cb(r, arg);
}

static void on_watch(uv_poll_t *p, int status, int events)
{
	struct httpd *h = p->data;
	struct epoll_event ev[64];
	int n;

	(void)status;
	(void)events;
	/* Only loop callbacks run here, never MHD_run(): no connection is released meanwhile. */
	while ((n = epoll_wait(h->watch_fd, ev, 64, 0)) > 0) {
		for (int i = 0; i < n; i++) {
			struct httpd_conn *wc = ev[i].data.ptr;
			struct httpd_req *r = wc->pending;

			wc->peer_gone = 1;
			if (r != NULL && r->state == REQ_PENDING && r->abort_cb != NULL) {
				req_abort(r);
				/* an abort callback that stopped the server freed the entries */
				if (h->closing)
					return;
			}
		}
		if (n < 64)
			break;
	}
}

/* A request was suspended: if its peer already left, have the event reported again. */
static void watch_start(struct httpd_req *r)
{
	struct epoll_event ev;

	if (r->wc == NULL || !r->wc->peer_gone || r->abort_cb == NULL ||
	    r->state != REQ_PENDING)
		return;
	ev.events = EPOLLRDHUP | EPOLLET;
	ev.data.ptr = r->wc;
	epoll_ctl(r->h->watch_fd, EPOLL_CTL_MOD, r->wc->fd, &ev);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct httpd *h = cls;
	struct httpd_conn *wc = *socket_context;
	const union MHD_ConnectionInfo *ci;
	struct epoll_event ev;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		wc = xcalloc(1, sizeof(*wc));
		wc->fd = -1;
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		ev.events = EPOLLRDHUP | EPOLLET;
		ev.data.ptr = wc;
		if (ci != NULL && epoll_ctl(h->watch_fd, EPOLL_CTL_ADD, ci->connect_fd, &ev) == 0)
			wc->fd = ci->connect_fd;
		else
			log_warn("event=httpd_watch_failed errno=%d msg=\"a client leaving while its "
				 "answer is pending goes unnoticed on this connection\"", errno);
		*socket_context = wc;
		return;
	}
	if (wc == NULL)
		return;
	if (wc->fd >= 0)
		epoll_ctl(h->watch_fd, EPOLL_CTL_DEL, wc->fd, &ev);
	if (wc->pending != NULL)
		wc->pending->wc = NULL;
	*socket_context = NULL;
	free(wc);
}

static void queue(struct httpd_req *r, int status, const char *content_type, const char *body,
		  size_t len, const char *const *headers)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, (void *)(len > 0 ? body : ""),
					       MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		fatalx("httpd: cannot create a response");
	if (content_type != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
		MHD_add_response_header(resp, headers[i], headers[i + 1]);
	if (MHD_queue_response(r->conn, (unsigned)status, resp) != MHD_YES)
		log_warn("event=httpd_queue_failed method=%s status=%d", r->method, status);
	MHD_destroy_response(resp);
}

static void queue_too_big(struct httpd_req *r)
{
	if (MHD_queue_response(r->conn, MHD_HTTP_CONTENT_TOO_LARGE, r->h->too_big) != MHD_YES)
		log_warn("event=httpd_queue_failed method=%s status=413", r->method);
	r->state = REQ_RESPONDED;
	strbuf_close(&r->body);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version,
				 const char *upload_data, size_t *upload_data_size, void **ctx)
{
	struct httpd *h = cls;
	struct httpd_req *r = *ctx;

	(void)version;
	if (r == NULL) {
		const union MHD_ConnectionInfo *ci;
		const char *cl, *expect;
		unsigned long long n = 0;

		if (h->closing)
			return MHD_NO;
		r = xcalloc(1, sizeof(*r));
		r->h = h;
		r->conn = conn;
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->wc = ci != NULL ? ci->socket_context : NULL;
		r->method = method;
		r->path = url;
		strbuf_init(&r->body);
		*ctx = r;
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL)
			n = strtoull(cl, NULL, 10);
		if (n > h->max_body) {
			r->too_big = 1;
			/* A client waiting for "100 Continue" gets the 413 instead and never sends
			 * the body; others send it and we discard it (answering early would make
			 * the server close a socket with unread data, and the client likely miss
			 * the 413 in the reset). */
			expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_EXPECT);
			if (expect != NULL && strcasecmp(expect, "100-continue") == 0)
				queue_too_big(r);
		} else if (n > 0) {
			r->body.data = xmalloc((size_t)n + 1);
			r->body.data[0] = '\0';
			r->body.cap = (size_t)n + 1;
		}
		return MHD_YES;
	}

	if (*upload_data_size != 0) {
		if (!r->too_big && r->body.len + *upload_data_size > h->max_body) {
			r->too_big = 1;
			strbuf_close(&r->body);
		}
		if (!r->too_big)
			strbuf_add(&r->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}

	switch (r->state) {
	case REQ_RECEIVING:
		if (r->too_big) {
			queue_too_big(r);
			return MHD_YES;
		}
		r->state = REQ_HANDLING;
		h->handler(r, h->arg);
		if (r->state == REQ_HANDLING) {
			r->state = REQ_PENDING;
			r->next = h->pending;
			if (h->pending != NULL)
				h->pending->prev = r;
			h->pending = r;
			if (r->wc != NULL)
				r->wc->pending = r;
			MHD_suspend_connection(conn);
			watch_start(r);
		}
		return MHD_YES;
	case REQ_RESPONDED:
		return MHD_YES;
	case REQ_PENDING:       /* resumed by httpd_free() */
	case REQ_ABORTED:       /* resumed after the client left: close it */
	default:
		return MHD_NO;
	}
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
			 enum MHD_RequestTerminationCode toe)
{
	struct httpd_req *r = *ctx;

	(void)cls;
	(void)conn;
	(void)toe;
	if (r == NULL)
		return;
	*ctx = NULL;
	if (r->state == REQ_PENDING) {
		/* Only at shutdown: MHD does not look at suspended connections otherwise. */
		pending_unlink(r);
		r->state = REQ_ABORTED;
		if (r->abort_cb != NULL)
			r->abort_cb(r, r->abort_arg);
	}
	strbuf_close(&r->body);
	free(r);
}

/* --- the server ------------------------------------------------------------------------- */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct httpd *h = cls;
	char msg[512], q[600];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
		msg[--n] = '\0';
	if (h->errbuf != NULL && h->errlen > 0) {
		snprintf(h->errbuf, h->errlen, "%s", msg);
		return;
	}
	log_debug("event=httpd_mhd msg=%s", log_quote(msg, q, sizeof(q)));
}

static int parse_address(const char *addr, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		return AF_INET6;
	}
	return -1;
}

int httpd_start(uv_loop_t *loop, const struct httpd_options *opt, struct httpd **out,
		char *err, size_t errlen)
{
	const char *addr = opt->address != NULL ? opt->address : "127.0.0.1";
	unsigned timeout_s = opt->connection_timeout_s ? opt->connection_timeout_s
						       : HTTPD_DEFAULT_TIMEOUT_S;
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct httpd *h;
	char msg[256], body[256];
	int family, n, rc;

	msg[0] = '\0';
	if (opt->handler == NULL || opt->port < 0 || opt->port > 65535) {
		snprintf(err, errlen, "httpd: a handler and a port in 0..65535 are required");
		return SAGAD_EINVAL;
	}
	if ((family = parse_address(addr, opt->port, &ss)) < 0) {
		snprintf(err, errlen, "listen address \"%s\": not an IPv4 or IPv6 address", addr);
		return SAGAD_EINVAL;
	}
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;

	h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->handler = opt->handler;
	h->arg = opt->arg;
	h->max_body = opt->max_body_bytes ? opt->max_body_bytes : HTTPD_DEFAULT_MAX_BODY;
	h->errbuf = msg;
	h->errlen = sizeof(msg);
	h->watch_fd = epoll_create1(EPOLL_CLOEXEC);
	if (h->watch_fd < 0) {
		snprintf(err, errlen, "httpd: epoll_create1: %s", strerror(errno));
		free(h);
		return SAGAD_EIO;
	}
	h->d = MHD_start_daemon(flags, (uint16_t)opt->port, NULL, NULL, on_access, h,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
				MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTPD_CONNECTION_MEMORY,
				MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
				MHD_OPTION_END);
	h->errbuf = NULL;
	if (h->d == NULL) {
		const char *reason = strrchr(msg, ':');

		/* MHD says "Failed to bind to port 8080: Address already in use". */
		if (reason != NULL && strstr(msg, "bind") != NULL)
			snprintf(err, errlen, "bind %s%s%s:%d%s", family == AF_INET6 ? "[" : "",
				 addr, family == AF_INET6 ? "]" : "", opt->port, reason);
		else
			snprintf(err, errlen, "listen %s port %d: %s", addr, opt->port,
				 msg[0] ? msg : "cannot start the HTTP server");
		close(h->watch_fd);
		free(h);
		return SAGAD_EIO;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : opt->port;

	n = snprintf(body, sizeof(body),
		     "{\"error\":{\"code\":\"ETOOBIG\",\"message\":\"request body exceeds %zu "
		     "bytes; send a smaller body or raise --max-body\"}}", h->max_body);
	h->too_big = MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
	if (h->too_big == NULL)
		fatalx("httpd: cannot create a response");
	MHD_add_response_header(h->too_big, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");

	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL || (rc = uv_poll_init(loop, &h->poll, info->epoll_fd)) != 0) {
		snprintf(err, errlen, "httpd: cannot watch the epoll fd");
		MHD_destroy_response(h->too_big);
		MHD_stop_daemon(h->d);
		close(h->watch_fd);
		free(h);
		return SAGAD_EIO;
	}
	/* A fresh epoll fd that the loop cannot watch: the loop itself is broken. */
	if ((rc = uv_poll_init(loop, &h->watch, h->watch_fd)) != 0)
		fatalx("httpd: cannot watch an epoll fd: %s", uv_strerror(rc));
	h->poll.data = h;
	h->watch.data = h;
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	h->handles = 3;
	uv_poll_start(&h->poll, UV_READABLE, on_epoll);
	uv_poll_start(&h->watch, UV_READABLE, on_watch);
	rearm(h);
	*out = h;
	return 0;
}

int httpd_port(const struct httpd *h)
{
	return h->port;
}

void httpd_quiesce(struct httpd *h)
{
	MHD_socket fd;

	/* External polling mode: no ITC needed, and the returned listen socket is ours to close
	 * at once (only threaded modes must wait for MHD_stop_daemon()). */
	fd = MHD_quiesce_daemon(h->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

static void on_handle_closed(uv_handle_t *hd)
{
	struct httpd *h = hd->data;

	if (--h->handles == 0)
		free(h);
}

static void stop(struct httpd *h)
{
	struct httpd_req *r;

	uv_close((uv_handle_t *)&h->poll, on_handle_closed);
	uv_close((uv_handle_t *)&h->timer, on_handle_closed);
	uv_close((uv_handle_t *)&h->watch, on_handle_closed);
	/* MHD_stop_daemon() must not meet suspended connections: resume them; it then closes
	 * them and NOTIFY_COMPLETED runs the abort callbacks. */
	for (r = h->pending; r != NULL; r = r->next)
		MHD_resume_connection(r->conn);
	MHD_stop_daemon(h->d);
	MHD_destroy_response(h->too_big);
	close(h->watch_fd);
	h->watch_fd = -1;
	h->d = NULL;
}

void httpd_free(struct httpd *h)
{
	if (h == NULL || h->closing)
		return;
	h->closing = 1;
	if (!h->in_run)
		stop(h);
}

/* --- request accessors ------------------------------------------------------------------ */

const char *httpd_req_method(const struct httpd_req *r)
{
	return r->method;
}

const char *httpd_req_path(const struct httpd_req *r)
{
	return r->path;
}

const char *httpd_req_query(const struct httpd_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct prefix_scan {
	const char *prefix;
	const char *name, *value;
	int n;
};

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	struct prefix_scan *ps = cls;

	(void)kind;
	if (key != NULL && strncmp(key, ps->prefix, strlen(ps->prefix)) == 0) {
		if (ps->n++ == 0) {
			ps->name = key;
			ps->value = value ? value : "";
		}
	}
	return MHD_YES;
}

int httpd_req_query_prefix(const struct httpd_req *r, const char *prefix, const char **name,
			   const char **value)
{
	struct prefix_scan ps = { prefix, NULL, NULL, 0 };

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_query_arg, &ps);
	*name = ps.name;
	*value = ps.value;
	return ps.n;
}

const char *httpd_req_header(const struct httpd_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *httpd_req_body(const struct httpd_req *r, size_t *len)
{
	if (len != NULL)
		*len = r->body.len;
	return r->body.data != NULL ? r->body.data : "";
}

const char *httpd_req_peer(const struct httpd_req *r)
{
	struct httpd_req *w = (struct httpd_req *)r;   /* the address is formatted lazily */
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	if (w->peer[0] != '\0')
		return w->peer;
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || (sa = ci->client_addr) == NULL)
		return "";
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, w->peer,
			  sizeof(w->peer));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, w->peer,
			  sizeof(w->peer));
	return w->peer;
}

void httpd_req_on_abort(struct httpd_req *r, httpd_abort_cb cb, void *arg)
{
	r->abort_cb = cb;
	r->abort_arg = arg;
	watch_start(r);
}

void httpd_respond(struct httpd_req *r, int status, const char *content_type,
		   const char *body, size_t len, const char *const *headers)
{
	switch (r->state) {
	case REQ_HANDLING:
		queue(r, status, content_type, body, len, headers);
		r->state = REQ_RESPONDED;
		break;
	case REQ_PENDING:
		pending_unlink(r);
		queue(r, status, content_type, body, len, headers);
		r->state = REQ_RESPONDED;
		MHD_resume_connection(r->conn);
		run_soon(r->h);
		break;
	default:
		fatalx("httpd_respond: request %s %s is not awaiting an answer (state %d)",
		       r->method, r->path, (int)r->state);
	}
	strbuf_close(&r->body);
}
