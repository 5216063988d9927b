/* test-http.c: the HTTP server (orchestrator/httpd.c) and the HTTP client (adapters/http.c)
 * talking to each other: the server on the test's loop, the client's transfers on its own
 * thread, its callbacks on the test's loop; and the client's URL table and proxy settings on
 * their own (adapters/http_url.c, adapters/http_proxy.c). The concurrency tests also use a
 * second server on a thread of its own (the peer), which answers while the test's loop does
 * not run. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <uv.h>
#include "error.h"
#include "http.h"
#include "http_proxy.h"
#include "http_url.h"
#include "httpd.h"
#include "util.h"

#define BIG_BODY (2 * 1024 * 1024)

static uv_loop_t loop;
static struct httpd *srv;
static struct http_client *cli;
static char base[64];

/* --- the server side -------------------------------------------------------------------- */

static struct {
	int handled;            /* handler calls */
	int aborted;            /* abort callbacks */
	int late_responses;     /* delayed answers sent */
	char last_path[64], last_query[64], last_header[64], last_peer[64], last_method[16];
} seen;

static char *big_body;
static struct httpd *victim;    /* /shutdown frees it from inside its handler */

/* Counts an event and lets run_until() look at it. */
static void bump(int *count)
{
	(*count)++;
	uv_stop(&loop);
}

struct delayed {
	uv_timer_t timer;
	struct httpd_req *req;
};

static void on_delayed_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_delay(uv_timer_t *t)
{
	struct delayed *d = t->data;

	httpd_respond(d->req, 200, "text/plain", "late", 4, NULL);
	bump(&seen.late_responses);
	uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

static void on_req_abort(struct httpd_req *req, void *arg)
{
	struct delayed *d = arg;

	bump(&seen.aborted);
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src != NULL ? src : "(null)");
}

static void handler(struct httpd_req *req, void *arg)
{
	const char *path = httpd_req_path(req), *q;
	size_t len;
	const char *body = httpd_req_body(req, &len);
	char buf[64];

	bump(&seen.handled);
	copy(seen.last_path, sizeof(seen.last_path), path);
	copy(seen.last_method, sizeof(seen.last_method), httpd_req_method(req));
	copy(seen.last_query, sizeof(seen.last_query), httpd_req_query(req, "name"));
	copy(seen.last_header, sizeof(seen.last_header), httpd_req_header(req, "X-Test"));
	copy(seen.last_peer, sizeof(seen.last_peer), httpd_req_peer(req));

	if (strcmp(path, "/hello") == 0) {
		const char *hdrs[] = { "X-Reply", "yes", NULL };
		httpd_respond(req, 200, "text/plain", "hello", 5, hdrs);
	} else if (strcmp(path, "/q") == 0) {
		q = httpd_req_query(req, "name");
		httpd_respond(req, 200, "text/plain", q != NULL ? q : "", q != NULL ? strlen(q) : 0,
			      NULL);
	} else if (strcmp(path, "/shutdown") == 0) {
		httpd_respond(req, 202, NULL, "", 0, NULL);
		httpd_free(victim);
	} else if (strcmp(path, "/echo") == 0) {
		httpd_respond(req, 201, "application/octet-stream", body, len, NULL);
	} else if (strcmp(path, "/len") == 0) {
		int n = snprintf(buf, sizeof(buf), "%zu", len);
		httpd_respond(req, 200, "text/plain", buf, (size_t)n, NULL);
	} else if (strcmp(path, "/busy") == 0) {
		const char *hdrs[] = { "Retry-After", "2", NULL };
		httpd_respond(req, 503, "application/json", "{}", 2, hdrs);
	} else if (strcmp(path, "/busy-date") == 0) {
		char date[64];
		time_t t = time(NULL) + 10;
		struct tm tm;
		const char *hdrs[] = { "Retry-After", date, NULL };

		gmtime_r(&t, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		httpd_respond(req, 429, NULL, "", 0, hdrs);
	} else if (strcmp(path, "/big") == 0) {
		httpd_respond(req, 200, "text/plain", big_body, BIG_BODY, NULL);
	} else if (strcmp(path, "/async") == 0 || strcmp(path, "/async-noabort") == 0) {
		struct delayed *d = xmalloc(sizeof(*d));

		q = httpd_req_query(req, "ms");
		d->req = req;
		uv_timer_init(&loop, &d->timer);
		d->timer.data = d;
		uv_timer_start(&d->timer, on_delay, q != NULL ? strtoull(q, NULL, 10) : 10, 0);
		if (strcmp(path, "/async") == 0)
			httpd_req_on_abort(req, on_req_abort, d);
	} else {
		httpd_respond(req, 404, "application/json", "{\"error\":{}}", 12, NULL);
	}
}

/* --- the client side -------------------------------------------------------------------- */

struct outcome {
	int done;
	int error;
	int status;
	char *body;
	size_t body_len;
	char content_type[64];
	int64_t retry_after_ms;
	int request_sent;
};

static int n_done;             /* callbacks so far */
static int in_send;             /* a callback must never run inside http_client_send() */
static int cb_in_send;
static pthread_t test_thread;   /* callbacks run on the loop's thread, this one */
static int cb_off_thread;

static void on_done(const struct http_result *res, void *arg)
{
	struct outcome *o = arg;

	if (in_send)
		cb_in_send++;
	if (!pthread_equal(pthread_self(), test_thread))
		cb_off_thread++;
	o->done++;
	bump(&n_done);
	o->error = res->error;
	o->status = res->status;
	free(o->body);
	o->body = xstrndup(res->body, res->body_len);
	o->body_len = res->body_len;
	copy(o->content_type, sizeof(o->content_type), res->content_type);
	o->retry_after_ms = res->retry_after_ms;
	o->request_sent = res->request_sent;
}

static void outcome_clear(struct outcome *o)
{
	free(o->body);
	memset(o, 0, sizeof(*o));
}

static int send_req(struct http_client *c, const char *method, const char *path,
		    const char *body, size_t len, int64_t timeout_ms, struct outcome *o,
		    struct http_call **call)
{
	char url[256];
	const char *hdrs[] = { "X-Test: 42", "Content-Type: text/plain" };
	struct http_request req = {
		.method = method, .url = url, .headers = hdrs, .n_headers = 2,
		.body = body, .body_len = len, .timeout_ms = timeout_ms,
	};
	int rc;

	if (path[0] != '/')
		snprintf(url, sizeof(url), "%s", path);
	else
		snprintf(url, sizeof(url), "%s%s", base, path);
	in_send = 1;
	rc = http_client_send(c, &req, on_done, o, call);
	in_send = 0;
	return rc;
}

static int timed_out;

static void on_watchdog(uv_timer_t *t)
{
	timed_out = 1;
	uv_stop(&loop);
}

/* Runs the loop until *count reaches want (or 10 s pass); returns *count. */
static int run_until(int *count, int want)
{
	uv_timer_t dog;

	timed_out = 0;
	uv_timer_init(&loop, &dog);
	uv_timer_start(&dog, on_watchdog, 10000, 0);
	while (*count < want && !timed_out)
		uv_run(&loop, UV_RUN_DEFAULT);
	if (timed_out)
		fprintf(stderr, "# run_until: gave up at %d of %d\n", *count, want);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return *count;
}

static void run_for(uint64_t ms)
{
	uv_timer_t t;

	uv_timer_init(&loop, &t);
	uv_timer_start(&t, on_watchdog, ms, 0);
	timed_out = 0;
	while (!timed_out)
		uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static int call1(const char *method, const char *path, const char *body, size_t len,
		 int64_t timeout_ms, struct outcome *o)
{
	outcome_clear(o);
	assert_int_equal(send_req(cli, method, path, body, len, timeout_ms, o, NULL), 0);
	return run_until(&o->done, 1);
}

/* --- tests ------------------------------------------------------------------------------ */

static void test_basic(void **state)
{
	struct outcome o = { 0 };

	assert_int_equal(call1("GET", "/hello?name=ada%20l", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.error, 0);
	assert_int_equal(o.status, 200);
	assert_string_equal(o.body, "hello");
	assert_string_equal(o.content_type, "text/plain");
	assert_int_equal(o.retry_after_ms, -1);
	assert_int_equal(o.request_sent, 1);
	assert_string_equal(seen.last_path, "/hello");
	assert_string_equal(seen.last_method, "GET");
	assert_string_equal(seen.last_query, "ada l");
	assert_string_equal(seen.last_header, "42");
	assert_string_equal(seen.last_peer, "127.0.0.1");
	assert_int_equal(cb_in_send, 0);

	assert_int_equal(call1("GET", "/nope", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.status, 404);
	outcome_clear(&o);
}

static void test_post_echo(void **state)
{
	struct outcome o = { 0 };
	static const char body[] = "{\"order\":17,\"amount\":\"12.50\"}";

	assert_int_equal(call1("POST", "/echo", body, strlen(body), 2000, &o), 1);
	assert_int_equal(o.error, 0);
	assert_int_equal(o.status, 201);
	assert_int_equal(o.body_len, strlen(body));
	assert_string_equal(o.body, body);
	assert_string_equal(seen.last_method, "POST");

	assert_int_equal(call1("PUT", "/echo", "x", 1, 2000, &o), 1);
	assert_int_equal(o.status, 201);
	assert_string_equal(o.body, "x");
	assert_string_equal(seen.last_method, "PUT");

	assert_int_equal(call1("POST", "/echo", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.status, 201);
	assert_int_equal(o.body_len, 0);
	assert_string_equal(o.body, "");
	outcome_clear(&o);
}

static void test_async_answer(void **state)
{
	struct outcome o = { 0 };
	int late = seen.late_responses;

	assert_int_equal(call1("POST", "/async?ms=50", "{}", 2, 2000, &o), 1);
	assert_int_equal(o.error, 0);
	assert_int_equal(o.status, 200);
	assert_string_equal(o.body, "late");
	assert_int_equal(seen.late_responses, late + 1);
	outcome_clear(&o);
}

static void test_timeout(void **state)
{
	struct outcome o = { 0 };
	int aborted = seen.aborted;

	assert_int_equal(call1("POST", "/async?ms=3000", "{}", 2, 150, &o), 1);
	assert_int_equal(o.error, SAGAD_ETIMEOUT);
	assert_int_equal(o.request_sent, 1);
	/* curl closed the connection: the server notices and drops the pending answer */
	assert_int_equal(run_until(&seen.aborted, aborted + 1), aborted + 1);
	outcome_clear(&o);
}

static int closed_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void test_refused(void **state)
{
	struct outcome o = { 0 };
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port());
	assert_int_equal(call1("POST", url, "{}", 2, 2000, &o), 1);
	assert_int_equal(o.error, SAGAD_ECONNECT);
	assert_int_equal(o.request_sent, 0);
	assert_int_equal(cb_in_send, 0);

	/* only http and https */
	assert_int_equal(call1("GET", "file:///etc/passwd", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.error, SAGAD_EIO);
	assert_int_equal(o.request_sent, 0);
	assert_int_equal(cb_in_send, 0);
	outcome_clear(&o);
}

static void test_too_big(void **state)
{
	struct outcome o = { 0 };

	assert_int_equal(call1("GET", "/big", NULL, 0, 5000, &o), 1);
	assert_int_equal(o.error, SAGAD_ETOOBIG);
	assert_string_equal(o.body, "");
	/* the client is fine afterwards */
	assert_int_equal(call1("GET", "/hello", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.status, 200);
	outcome_clear(&o);
}

/* A bare HTTP/1.0-style server whose body has no length: only the write callback can stop it. */
static char raw_body[5000];

static void on_raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char rbuf[4096];

	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_raw_closed(uv_handle_t *h)
{
	free(h);
}

static void on_raw_written(uv_write_t *w, int status)
{
	uv_close((uv_handle_t *)w->handle, on_raw_closed);
	free(w);
}

static void on_raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	static char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
	uv_buf_t bufs[2] = { uv_buf_init(head, sizeof(head) - 1),
			     uv_buf_init(raw_body, sizeof(raw_body)) };
	uv_write_t *w;

	if (nread == 0)
		return;
	uv_read_stop(s);
	if (nread < 0) {
		uv_close((uv_handle_t *)s, on_raw_closed);
		return;
	}
	w = xmalloc(sizeof(*w));
	uv_write(w, s, bufs, 2, on_raw_written);
}

static void on_raw_conn(uv_stream_t *server, int status)
{
	uv_tcp_t *c = xmalloc(sizeof(*c));

	uv_tcp_init(&loop, c);
	assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
	uv_read_start((uv_stream_t *)c, on_raw_alloc, on_raw_read);
}

static void test_too_big_unknown_length(void **state)
{
	struct http_client_options copt = { .max_response_bytes = 1000 };
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct http_client *c;
	struct outcome o = { 0 };
	uv_tcp_t server;
	char url[64];

	memset(raw_body, 'r', sizeof(raw_body));
	uv_ip4_addr("127.0.0.1", 0, &sin);
	uv_tcp_init(&loop, &server);
	assert_int_equal(uv_tcp_bind(&server, (struct sockaddr *)&sin, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&server, 16, on_raw_conn), 0);
	uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &len);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(((struct sockaddr_in *)&ss)->sin_port));

	assert_int_equal(http_client_new(&loop, &copt, &c), 0);
	assert_int_equal(send_req(c, "GET", url, NULL, 0, 2000, &o, NULL), 0);
	assert_int_equal(run_until(&o.done, 1), 1);
	assert_int_equal(o.error, SAGAD_ETOOBIG);
	/* the same length with a Content-Length header is refused from the headers */
	outcome_clear(&o);
	assert_int_equal(send_req(c, "GET", "/echo", raw_body, sizeof(raw_body), 2000, &o, NULL), 0);
	assert_int_equal(run_until(&o.done, 1), 1);
	assert_int_equal(o.error, SAGAD_ETOOBIG);
	http_client_free(c);
	uv_close((uv_handle_t *)&server, NULL);
	run_for(20);
	outcome_clear(&o);
}

/* Freeing the client from inside a completion callback is allowed. */
static struct http_client *doomed;

static void on_done_free(const struct http_result *res, void *arg)
{
	on_done(res, arg);
	http_client_free(doomed);
}

static void test_client_free_in_callback(void **state)
{
	struct outcome o[2] = { { 0 } };
	char url[128];
	struct http_request req = { .method = "GET", .url = url, .timeout_ms = 2000 };

	snprintf(url, sizeof(url), "%s/hello", base);
	assert_int_equal(http_client_new(&loop, NULL, &doomed), 0);
	assert_int_equal(http_client_send(doomed, &req, on_done_free, &o[0], NULL), 0);
	assert_int_equal(http_client_send(doomed, &req, on_done_free, &o[1], NULL), 0);
	run_for(100);
	/* exactly one answer arrives; the other call is dropped with the client */
	assert_int_equal(o[0].done + o[1].done, 1);
	outcome_clear(&o[0]);
	outcome_clear(&o[1]);
}

static void test_retry_after(void **state)
{
	struct outcome o = { 0 };

	assert_int_equal(call1("POST", "/busy", "{}", 2, 2000, &o), 1);
	assert_int_equal(o.error, 0);
	assert_int_equal(o.status, 503);
	assert_int_equal(o.retry_after_ms, 2000);
	assert_string_equal(o.content_type, "application/json");

	assert_int_equal(call1("POST", "/busy-date", "{}", 2, 2000, &o), 1);
	assert_int_equal(o.status, 429);
	assert_in_range(o.retry_after_ms, 8000, 10000);
	assert_string_equal(o.content_type, "(null)");
	outcome_clear(&o);
}

static void test_body_limit(void **state)
{
	struct outcome o = { 0 };
	char *body = xmalloc(BIG_BODY);
	int handled = seen.handled;

	memset(body, 'a', BIG_BODY);
	assert_int_equal(call1("POST", "/echo", body, BIG_BODY, 5000, &o), 1);
	assert_int_equal(o.error, 0);
	assert_int_equal(o.status, 413);
	assert_string_equal(o.content_type, "application/json");
	assert_string_equal(o.body, "{\"error\":{\"code\":\"ETOOBIG\",\"message\":\"request body "
			    "exceeds 1048576 bytes; send a smaller body or raise --max-body\"}}");
	assert_int_equal(seen.handled, handled);

	/* a client that waits for "100 Continue" gets the 413 before sending the body */
	{
		char url[128];
		const char *hdrs[] = { "Expect: 100-continue" };
		struct http_request req = { .method = "POST", .url = url, .headers = hdrs,
					    .n_headers = 1, .body = body, .body_len = BIG_BODY,
					    .timeout_ms = 5000 };

		snprintf(url, sizeof(url), "%s/echo", base);
		outcome_clear(&o);
		assert_int_equal(http_client_send(cli, &req, on_done, &o, NULL), 0);
		assert_int_equal(run_until(&o.done, 1), 1);
		assert_int_equal(o.error, 0);
		assert_int_equal(o.status, 413);
		assert_non_null(strstr(o.body, "ETOOBIG"));
		assert_int_equal(seen.handled, handled);
	}

	/* exactly the limit is fine */
	assert_int_equal(call1("POST", "/len", body, 1024 * 1024, 5000, &o), 1);
	assert_int_equal(o.status, 200);
	assert_string_equal(o.body, "1048576");
	free(body);
	outcome_clear(&o);
}

/* Keep-alive: each answer sends the next request; stalls without the timer re-arm. */
static int chain_left, chain_ok;

static void on_chain(const struct http_result *res, void *arg)
{
	struct http_request req = { .method = "GET", .url = arg, .timeout_ms = 2000 };

	if (res->error == 0 && res->status == 200 && strcmp(res->body, "hello") == 0)
		bump(&chain_ok);
	if (--chain_left > 0)
		assert_int_equal(http_client_send(cli, &req, on_chain, arg, NULL), 0);
}

/* Calls reuse their easy handle without a reset: each one's method and body must not carry
 * over into the next call on the same handle. */
static void test_method_sequence(void **state)
{
	static const struct { const char *method, *body, *want; } seq[] = {
		{ "HEAD", NULL, "" },  { "POST", "abc", "3" }, { "GET", NULL, "0" },
		{ "PUT", "ab", "2" },  { "DELETE", NULL, "0" }, { "HEAD", NULL, "" },
		{ "PATCH", "abcd", "4" }, { "DELETE", "xy", "2" }, { "GET", NULL, "0" },
		{ "POST", "", "0" },   { "OPTIONS", NULL, "0" }, { "POST", "x", "1" },
	};
	struct outcome o = { 0 };

	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		size_t len = seq[i].body != NULL ? strlen(seq[i].body) : 0;

		assert_int_equal(call1(seq[i].method, "/len", seq[i].body, len, 2000, &o), 1);
		assert_int_equal(o.error, 0);
		assert_int_equal(o.status, 200);
		assert_string_equal(seen.last_method, seq[i].method);
		assert_string_equal(o.body, seq[i].want);
	}
	outcome_clear(&o);
}

static void test_keepalive_sequential(void **state)
{
	char url[128];
	uint64_t t0 = uv_now(&loop);
	int ok;

	snprintf(url, sizeof(url), "%s/hello", base);
	chain_left = 200;
	chain_ok = 0;
	assert_int_equal(http_client_send(cli, &(struct http_request){
				 .method = "GET", .url = url, .timeout_ms = 2000 },
				 on_chain, url, NULL), 0);
	ok = run_until(&chain_ok, 200);
	assert_int_equal(ok, 200);
	assert_int_equal(chain_left, 0);
	assert_true(uv_now(&loop) - t0 < 5000);
}

static void test_concurrent(void **state)
{
	enum { N = 100 };
	struct outcome *o = xcalloc(N, sizeof(*o));
	int done, ok = 0;

	for (int i = 0; i < N; i++)
		assert_int_equal(send_req(cli, "POST", i % 2 ? "/async?ms=20" : "/echo", "{}", 2,
					  5000, &o[i], NULL), 0);
	assert_int_equal(http_client_active(cli), N);
	done = n_done;
	assert_int_equal(run_until(&n_done, done + N), done + N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(o[i].done, 1);
		if (o[i].error == 0 && (o[i].status == 200 || o[i].status == 201))
			ok++;
		outcome_clear(&o[i]);
	}
	assert_int_equal(ok, N);
	assert_int_equal(http_client_active(cli), 0);
	free(o);
}

static void test_cancel(void **state)
{
	struct outcome o = { 0 };
	struct http_call *call;
	int late = seen.late_responses;

	assert_int_equal(send_req(cli, "POST", "/async-noabort?ms=100", "{}", 2, 2000, &o, &call), 0);
	assert_int_equal(http_client_active(cli), 1);
	http_call_cancel(call);
	assert_int_equal(http_client_active(cli), 0);
	run_for(300);
	assert_int_equal(o.done, 0);
	/* if the request got out at all, the server's late answer went nowhere, harmlessly */
	assert_in_range(seen.late_responses, late, late + 1);
	outcome_clear(&o);
}

static void test_client_abort(void **state)
{
	struct outcome o = { 0 };
	struct http_call *call;
	int handled = seen.handled, aborted = seen.aborted, late = seen.late_responses;

	/* with an abort callback: the server learns that the client left */
	assert_int_equal(send_req(cli, "POST", "/async?ms=5000", "{}", 2, 10000, &o, &call), 0);
	assert_int_equal(run_until(&seen.handled, handled + 1), handled + 1);
	http_call_cancel(call);
	assert_int_equal(run_until(&seen.aborted, aborted + 1), aborted + 1);
	assert_int_equal(o.done, 0);

	/* without one: the late answer is written to a closed connection, harmlessly */
	assert_int_equal(send_req(cli, "POST", "/async-noabort?ms=100", "{}", 2, 10000, &o,
				  &call), 0);
	assert_int_equal(run_until(&seen.handled, handled + 2), handled + 2);
	http_call_cancel(call);
	assert_int_equal(run_until(&seen.late_responses, late + 1), late + 1);
	run_for(50);
	assert_int_equal(o.done, 0);

	/* and the server keeps serving */
	assert_int_equal(call1("GET", "/hello", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.status, 200);
	outcome_clear(&o);
}

/* A raw client socket connected to srv (blocking for connect and send; reads are polled). */
static int raw_connect(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(httpd_port(srv)) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void raw_send(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), 0), (ssize_t)strlen(s));
}

/* Runs the loop until the server's answer has arrived on fd; returns how many bytes came. */
static size_t raw_drain(int fd)
{
	char buf[4096];
	size_t total = 0;
	ssize_t n;

	for (int i = 0; i < 100 && total == 0; i++) {
		run_for(10);
		while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			total += (size_t)n;
	}
	return total;
}

/* The disconnect watch is per connection: a client that leaves while its second request on a
 * keep-alive connection waits is noticed like one on a fresh connection, and one that
 * half-closes right after its request (the FIN may be seen before the request is suspended)
 * counts as gone too. */
static void test_client_abort_keepalive(void **state)
{
	int handled = seen.handled, aborted = seen.aborted;
	struct outcome o = { 0 };
	int fd;

	fd = raw_connect();
	raw_send(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(run_until(&seen.handled, handled + 1), handled + 1);
	assert_true(raw_drain(fd) > 0);
	raw_send(fd, "POST /async?ms=5000 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
	assert_int_equal(run_until(&seen.handled, handled + 2), handled + 2);
	run_for(20);
	assert_int_equal(seen.aborted, aborted);
	close(fd);
	assert_int_equal(run_until(&seen.aborted, aborted + 1), aborted + 1);

	fd = raw_connect();
	raw_send(fd, "POST /async?ms=5000 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
	shutdown(fd, SHUT_WR);
	assert_int_equal(run_until(&seen.aborted, aborted + 2), aborted + 2);
	close(fd);

	/* and the server keeps serving */
	assert_int_equal(call1("GET", "/hello", NULL, 0, 2000, &o), 1);
	assert_int_equal(o.status, 200);
	outcome_clear(&o);
}

static void test_client_free_in_flight(void **state)
{
	struct http_client *c;
	struct outcome o[3] = { { 0 } };

	assert_int_equal(http_client_new(&loop, NULL, &c), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(send_req(c, "POST", "/async?ms=2000", "{}", 2, 5000, &o[i], NULL), 0);
	run_for(50);
	http_client_free(c);
	run_for(100);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(o[i].done, 0);
		outcome_clear(&o[i]);
	}
}

static void test_server_lifecycle(void **state)
{
	struct httpd_options opt = { .address = "127.0.0.1", .port = httpd_port(srv),
				     .handler = handler };
	struct httpd *h;
	struct outcome o = { 0 };
	char err[256], want[128], url[128];
	int aborted;

	/* the port is taken */
	assert_int_not_equal(httpd_start(&loop, &opt, &h, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "bind 127.0.0.1:%d: Address already in use", opt.port);
	assert_string_equal(err, want);

	/* an IPv6 server on an ephemeral port */
	opt.address = "::1";
	opt.port = 0;
	if (httpd_start(&loop, &opt, &h, err, sizeof(err)) == 0) {
		snprintf(url, sizeof(url), "http://[::1]:%d/hello", httpd_port(h));
		assert_int_equal(call1("GET", url, NULL, 0, 2000, &o), 1);
		assert_int_equal(o.status, 200);
		assert_string_equal(seen.last_peer, "::1");
		httpd_free(h);
	}

	/* quiesce refuses new connections; free drops (aborts) a pending request */
	opt.address = NULL;
	assert_int_equal(httpd_start(&loop, &opt, &h, err, sizeof(err)), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/async?ms=5000", httpd_port(h));
	aborted = seen.aborted;
	outcome_clear(&o);
	assert_int_equal(send_req(cli, "POST", url, "{}", 2, 5000, &o, NULL), 0);
	run_for(100);
	httpd_quiesce(h);
	{
		struct outcome o2 = { 0 };
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", httpd_port(h));
		assert_int_equal(call1("GET", url, NULL, 0, 2000, &o2), 1);
		assert_int_equal(o2.error, SAGAD_ECONNECT);
		outcome_clear(&o2);
	}
	assert_int_equal(o.done, 0);
	httpd_free(h);
	assert_int_equal(seen.aborted, aborted + 1);
	assert_int_equal(run_until(&o.done, 1), 1);
	assert_int_equal(o.error, SAGAD_ECONNECT);

	/* freed from inside its own handler: the stop waits until MHD_run() returns */
	assert_int_equal(httpd_start(&loop, &opt, &victim, err, sizeof(err)), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/shutdown", httpd_port(victim));
	assert_int_equal(call1("GET", url, NULL, 0, 2000, &o), 1);
	assert_true(o.error == SAGAD_ECONNECT || o.status == 202);
	outcome_clear(&o);
}

/* --- the peer: a server on its own thread and loop --------------------------------------- */

static struct {
	pthread_t thread;
	uv_loop_t loop;
	uv_async_t stop;
	struct httpd *srv;
	char base[64];
	atomic_int handled;
} peer;

struct peer_delayed {
	uv_timer_t timer;
	struct httpd_req *req;
};

static void on_peer_delay(uv_timer_t *t)
{
	struct peer_delayed *d = t->data;

	httpd_respond(d->req, 200, "text/plain", "later", 5, NULL);
	uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

static void on_peer_abort(struct httpd_req *req, void *arg)
{
	struct peer_delayed *d = arg;

	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, on_delayed_closed);
}

/* /delay?ms=N answers after N ms; anything else at once. */
static void peer_handler(struct httpd_req *req, void *arg)
{
	const char *q = httpd_req_query(req, "ms");

	atomic_fetch_add(&peer.handled, 1);
	if (strcmp(httpd_req_path(req), "/delay") == 0) {
		struct peer_delayed *d = xmalloc(sizeof(*d));

		d->req = req;
		uv_timer_init(&peer.loop, &d->timer);
		d->timer.data = d;
		uv_timer_start(&d->timer, on_peer_delay, q != NULL ? strtoull(q, NULL, 10) : 10, 0);
		httpd_req_on_abort(req, on_peer_abort, d);
	} else {
		httpd_respond(req, 200, "text/plain", "peer", 4, NULL);
	}
}

static void on_peer_stop(uv_async_t *h)
{
	httpd_free(peer.srv);
	uv_close((uv_handle_t *)h, NULL);
}

static void *peer_main(void *arg)
{
	uv_run(&peer.loop, UV_RUN_DEFAULT);
	return NULL;
}

static int peer_start(void)
{
	struct httpd_options opt = { .address = "127.0.0.1", .port = 0, .handler = peer_handler };
	char err[256];

	assert_int_equal(uv_loop_init(&peer.loop), 0);
	if (httpd_start(&peer.loop, &opt, &peer.srv, err, sizeof(err)) != 0) {
		fprintf(stderr, "httpd_start (peer): %s\n", err);
		return -1;
	}
	snprintf(peer.base, sizeof(peer.base), "http://127.0.0.1:%d", httpd_port(peer.srv));
	uv_async_init(&peer.loop, &peer.stop, on_peer_stop);
	return pthread_create(&peer.thread, NULL, peer_main, NULL) == 0 ? 0 : -1;
}

static int peer_stop(void)
{
	uv_async_send(&peer.stop);
	pthread_join(peer.thread, NULL);
	return uv_loop_close(&peer.loop) == 0 ? 0 : -1;
}

static const char *peer_url(char *buf, size_t len, const char *path)
{
	snprintf(buf, len, "%s%s", peer.base, path);
	return buf;
}

/* Sleeps on this thread (the test's loop does not run) until the peer has handled want
 * requests, then lets the client thread finish what it got. */
static void wait_peer(int want)
{
	for (int i = 0; i < 500 && atomic_load(&peer.handled) < want; i++)
		usleep(10 * 1000);
	assert_true(atomic_load(&peer.handled) >= want);
	usleep(100 * 1000);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* Each call object came back exactly once after its cancel or callback: n new concurrent
 * calls on the same client take exactly the n objects on its free list (a call given back
 * twice would appear twice, one never given back would be replaced by a new one). */
static void assert_same_calls(struct http_call **a, struct http_call **b, size_t n)
{
	qsort(a, n, sizeof(*a), cmp_ptr);
	qsort(b, n, sizeof(*b), cmp_ptr);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(b[i] != b[i - 1]);
		assert_ptr_equal(a[i], b[i]);
	}
}

/* --- the client thread: cancel, free and many calls in every state --------------------- */

/* Cancelled right after the send: almost always before the client thread took the call
 * (that race cannot be forced from outside; either side must hold). */
static void test_cancel_before_pickup(void **state)
{
	enum { N = 200 };
	struct http_client *c;
	struct http_call *calls[N], *again[N];
	struct outcome *o = xcalloc(N, sizeof(*o));
	int handled = atomic_load(&peer.handled), done;
	char url[128];

	assert_int_equal(http_client_new(&loop, NULL, &c), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(send_req(c, "POST", peer_url(url, sizeof(url), "/delay?ms=20"),
					  "{}", 2, 5000, &o[i], &calls[i]), 0);
		http_call_cancel(calls[i]);
	}
	assert_int_equal(http_client_active(c), 0);
	/* Every call comes back (up to 10 s: a fixed 200 ms failed on a loaded machine, with
	 * the client thread not yet through its cancel messages). */
	for (int k = 0; k < 500 && http_client_idle_calls(c) < N; k++)
		run_for(20);
	assert_int_equal(http_client_idle_calls(c), N);
	fprintf(stderr, "# %d of %d cancelled calls reached the peer\n",
		atomic_load(&peer.handled) - handled, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(o[i].done, 0);

	done = n_done;
	for (int i = 0; i < N; i++)
		assert_int_equal(send_req(c, "GET", peer_url(url, sizeof(url), "/hello"), NULL, 0,
					  5000, &o[i], &again[i]), 0);
	assert_int_equal(http_client_active(c), N);
	assert_int_equal(run_until(&n_done, done + N), done + N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].status, 200);
		assert_string_equal(o[i].body, "peer");
		outcome_clear(&o[i]);
	}
	assert_int_equal(http_client_active(c), 0);
	assert_same_calls(calls, again, N);
	assert_int_equal(cb_off_thread, 0);
	http_client_free(c);
	run_for(20);
	free(o);
}

/* Two calls; whichever callback runs first cancels the other. */
struct pair {
	struct outcome o;
	struct http_call *call;
	struct pair *other;
};

static void on_done_cancel_other(const struct http_result *res, void *arg)
{
	struct pair *p = arg;

	on_done(res, &p->o);
	if (p->other->o.done == 0 && p->other->call != NULL) {
		http_call_cancel(p->other->call);
		p->other->call = NULL;
	}
}

/* A call the client thread finished and gave back, whose callback has not run yet: cancel
 * still wins, also from another callback of the same batch. */
static void test_cancel_after_completion(void **state)
{
	struct http_client *c;
	struct outcome o = { 0 };
	struct http_call *call, *first[2], *again[2];
	struct pair p[2];
	struct http_request req = { .method = "GET", .timeout_ms = 5000 };
	int handled = atomic_load(&peer.handled), done;
	char url[128];

	memset(p, 0, sizeof(p));
	assert_int_equal(http_client_new(&loop, NULL, &c), 0);
	assert_int_equal(send_req(c, "GET", peer_url(url, sizeof(url), "/hello"), NULL, 0, 5000,
				  &o, &call), 0);
	wait_peer(handled + 1);         /* answered; the callback waits for this loop */
	http_call_cancel(call);
	assert_int_equal(http_client_active(c), 0);
	run_for(100);
	assert_int_equal(o.done, 0);

	req.url = peer_url(url, sizeof(url), "/hello");
	p[0].other = &p[1];
	p[1].other = &p[0];
	for (int i = 0; i < 2; i++) {
		assert_int_equal(http_client_send(c, &req, on_done_cancel_other, &p[i], &p[i].call),
				 0);
		first[i] = p[i].call;
	}
	wait_peer(handled + 3);         /* both answered: one batch, one wake-up */
	done = n_done;
	run_for(100);
	assert_int_equal(n_done, done + 1);
	assert_int_equal(p[0].o.done + p[1].o.done, 1);
	assert_int_equal(http_client_active(c), 0);

	/* the cancelled call came back before the pair was sent (the pair reused it), and the
	 * pair's two objects are back, once each */
	assert_ptr_equal(first[0], call);
	{
		struct outcome o2[2] = { { 0 } };

		done = n_done;
		for (int i = 0; i < 2; i++)
			assert_int_equal(send_req(c, "GET", url, NULL, 0, 5000, &o2[i], &again[i]),
					 0);
		assert_int_equal(run_until(&n_done, done + 2), done + 2);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(o2[i].status, 200);
			outcome_clear(&o2[i]);
		}
		assert_same_calls(first, again, 2);
	}
	assert_int_equal(cb_off_thread, 0);
	http_client_free(c);
	run_for(20);
	outcome_clear(&o);
	outcome_clear(&p[0].o);
	outcome_clear(&p[1].o);
}

/* Freed with calls in every state: in the multi, cancelled in the multi, given back but not
 * dispatched, just submitted, submitted and cancelled. No callback runs, nothing leaks (the
 * sanitizer build), the loop's handles all close. */
static void test_free_everywhere(void **state)
{
	enum { N = 10 };
	struct http_client *c;
	struct http_call *call;
	struct outcome o[N] = { { 0 } };
	int handled = atomic_load(&peer.handled), n = 0;
	char slow[128], fast[128];

	peer_url(slow, sizeof(slow), "/delay?ms=5000");
	peer_url(fast, sizeof(fast), "/hello");
	assert_int_equal(http_client_new(&loop, NULL, &c), 0);
	for (; n < 3; n++)
		assert_int_equal(send_req(c, "POST", slow, "{}", 2, 10000, &o[n], &call), 0);
	for (; n < 5; n++)
		assert_int_equal(send_req(c, "GET", fast, NULL, 0, 10000, &o[n], NULL), 0);
	wait_peer(handled + 5);
	http_call_cancel(call);         /* in the multi: a cancel message */
	for (; n < 8; n++)
		assert_int_equal(send_req(c, "GET", fast, NULL, 0, 10000, &o[n], NULL), 0);
	assert_int_equal(send_req(c, "GET", fast, NULL, 0, 10000, &o[n++], &call), 0);
	http_call_cancel(call);
	assert_int_equal(http_client_active(c), 7);
	http_client_free(c);
	run_for(100);
	for (int i = 0; i < n; i++) {
		assert_int_equal(o[i].done, 0);
		outcome_clear(&o[i]);
	}
}

/* Many calls at once on one client, a fifth of them cancelled from other calls' callbacks
 * while in flight, given back or in the same batch: each ends exactly once (a callback or a
 * cancel), on this thread, with the right answer. */
enum { MANY = 500 };
static struct {
	struct outcome o[MANY];
	struct http_call *call[MANY];
	int cancelled[MANY];
	int ended;                      /* callbacks + cancels */
	int next_victim;
} many;

static void on_many_done(const struct http_result *res, void *arg)
{
	struct outcome *o = arg;
	int i = (int)(o - many.o);

	on_done(res, arg);
	many.call[i] = NULL;
	bump(&many.ended);
	/* every other callback cancels the next victim (i % 5 == 0) still in flight */
	while (i % 2 == 0 && many.next_victim < MANY) {
		int v = many.next_victim;

		many.next_victim += 5;
		if (many.call[v] != NULL) {
			http_call_cancel(many.call[v]);
			many.call[v] = NULL;
			many.cancelled[v] = 1;
			bump(&many.ended);
			break;
		}
	}
}

static void test_many_concurrent(void **state)
{
	struct http_client *c;
	struct http_request req = { .method = "POST", .body = "{}", .body_len = 2,
				    .timeout_ms = 10000 };
	char urls[4][128];
	int ok = 0, n_cancelled = 0;

	memset(&many, 0, sizeof(many));
	peer_url(urls[0], sizeof(urls[0]), "/hello");
	peer_url(urls[1], sizeof(urls[1]), "/delay?ms=1");
	peer_url(urls[2], sizeof(urls[2]), "/delay?ms=15");
	snprintf(urls[3], sizeof(urls[3]), "%s/echo", base);   /* the test loop's own server */
	assert_int_equal(http_client_new(&loop, NULL, &c), 0);
	for (int i = 0; i < MANY; i++) {
		req.url = urls[i % 4];
		assert_int_equal(http_client_send(c, &req, on_many_done, &many.o[i], &many.call[i]),
				 0);
	}
	assert_int_equal(http_client_active(c), MANY);
	assert_int_equal(run_until(&many.ended, MANY), MANY);
	run_for(50);                    /* nothing more arrives */
	assert_int_equal(many.ended, MANY);
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(many.o[i].done + many.cancelled[i], 1);
		n_cancelled += many.cancelled[i];
		if (many.o[i].done) {
			assert_int_equal(many.o[i].error, 0);
			assert_int_equal(many.o[i].status, i % 4 == 3 ? 201 : 200);
			assert_string_equal(many.o[i].body,
					    i % 4 == 0 ? "peer" : i % 4 == 3 ? "{}" : "later");
			ok++;
		}
		outcome_clear(&many.o[i]);
	}
	fprintf(stderr, "# %d answered, %d cancelled in flight\n", ok, n_cancelled);
	assert_true(n_cancelled > 0);
	assert_int_equal(http_client_active(c), 0);
	assert_int_equal(cb_off_thread, 0);
	http_client_free(c);
	run_for(20);
}

/* The caller's loop stays alive while a call is active, and only then (the client's handle
 * on it is referenced while calls are active). */
static int alive_done;

static void on_alive_done(const struct http_result *res, void *arg)
{
	alive_done = res->error == 0 && res->status == 200 ? 1 : -1;
}

static void test_loop_alive(void **state)
{
	struct http_client *c;
	uv_loop_t l2;
	char url[128];
	struct http_request req = { .method = "GET", .url = url, .timeout_ms = 5000 };

	peer_url(url, sizeof(url), "/delay?ms=50");
	assert_int_equal(uv_loop_init(&l2), 0);
	assert_int_equal(http_client_new(&l2, NULL, &c), 0);
	assert_int_equal(uv_run(&l2, UV_RUN_DEFAULT), 0);      /* an idle client: returns */
	alive_done = 0;
	assert_int_equal(http_client_send(c, &req, on_alive_done, NULL, NULL), 0);
	assert_int_equal(uv_run(&l2, UV_RUN_DEFAULT), 0);      /* returns after the callback */
	assert_int_equal(alive_done, 1);
	http_client_free(c);
	assert_int_equal(uv_run(&l2, UV_RUN_NOWAIT), 0);       /* one turn closes it */
	assert_int_equal(uv_loop_close(&l2), 0);
}

/* URLs are parsed once and kept (CURLOPT_CURLU), up to a bound: more distinct URLs than the
 * table holds, all in flight at once (the last ones are not kept), then as many new ones one
 * by one (the table evicts), each call reaching its own URL; URLs that do not parse fail as
 * before, on a handle that goes on with parsed URLs afterwards. */
#define URL_CALLS 1100                  /* > HTTP_URL_CACHE_MAX (adapters/http_url.h) */
_Static_assert(URL_CALLS > HTTP_URL_CACHE_MAX, "more URLs than the table keeps");

static void test_url_cache(void **state)
{
	static struct outcome o[URL_CALLS];
	struct outcome one = { 0 };
	char url[128], want[32];
	int before = n_done;

	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < URL_CALLS; i++) {
			outcome_clear(&o[i]);
			snprintf(url, sizeof(url), "%s/q?name=r%dn%d", base, round, i);
			assert_int_equal(send_req(cli, "GET", url, NULL, 0, 20000, &o[i], NULL), 0);
			if (round == 1)
				assert_int_equal(run_until(&o[i].done, 1), 1);
		}
		assert_int_equal(run_until(&n_done, before + URL_CALLS), before + URL_CALLS);
		before = n_done;
		for (int i = 0; i < URL_CALLS; i++) {
			snprintf(want, sizeof(want), "r%dn%d", round, i);
			assert_int_equal(o[i].done, 1);
			assert_int_equal(o[i].error, 0);
			assert_string_equal(o[i].body, want);
			outcome_clear(&o[i]);
		}
	}
	assert_int_equal(cb_off_thread, 0);

	/* no scheme: libcurl guesses http, as it does for CURLOPT_URL */
	snprintf(url, sizeof(url), "%s/q?name=guessed", base + strlen("http://"));
	assert_int_equal(call1("GET", url, NULL, 0, 2000, &one), 1);
	assert_int_equal(one.error, 0);
	assert_string_equal(one.body, "guessed");
	/* malformed, then fine again on the same (recycled) handle */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(call1("GET", "http://[::1/x", NULL, 0, 2000, &one), 1);
		assert_int_equal(one.error, SAGAD_EIO);
		assert_int_equal(one.request_sent, 0);
		assert_int_equal(call1("GET", "/q?name=after", NULL, 0, 2000, &one), 1);
		assert_int_equal(one.error, 0);
		assert_string_equal(one.body, "after");
	}
	outcome_clear(&one);
}

/* The table on its own (adapters/http_url.c): an entry is shared while it is held and kept
 * after its last release; the text is libcurl's normalized form (a guessed scheme); a URL that
 * does not parse has no entry; a table full of held entries still hands out (unkept) entries;
 * releasing them all and filling the table again evicts. The ASan run checks that every path
 * frees what it must, exactly once. */
static void test_url_table(void **state)
{
	enum { N = HTTP_URL_CACHE_MAX };
	static struct http_url *held[N];
	struct http_url_table *t = http_url_table_new();
	struct http_url *a, *b, *extra;
	char url[64];

	a = http_url_get(t, "127.0.0.1:8081/x?y=1");
	assert_non_null(a);
	assert_string_equal(http_url_text(a), "http://127.0.0.1:8081/x?y=1");
	assert_non_null(http_url_curlu(a));
	b = http_url_get(t, "127.0.0.1:8081/x?y=1");
	assert_ptr_equal(a, b);
	http_url_put(t, a);
	http_url_put(t, b);
	b = http_url_get(t, "127.0.0.1:8081/x?y=1");     /* kept with no holder */
	assert_ptr_equal(a, b);
	http_url_put(t, b);
	assert_null(http_url_get(t, "http://[::1/x"));
	http_url_put(t, NULL);

	/* N held entries (the last one evicts a, the only unheld one), then one more */
	for (int i = 0; i < N; i++) {
		snprintf(url, sizeof(url), "http://h/%d", i);
		held[i] = http_url_get(t, url);
		assert_non_null(held[i]);
		assert_string_equal(http_url_text(held[i]), url);
	}
	extra = http_url_get(t, "http://h/extra");
	assert_non_null(extra);
	assert_string_equal(http_url_text(extra), "http://h/extra");
	b = http_url_get(t, "http://h/extra");           /* not kept: a second, separate entry */
	assert_ptr_not_equal(extra, b);
	http_url_put(t, b);
	http_url_put(t, extra);
	for (int i = 0; i < N; i++)
		http_url_put(t, held[i]);
	b = http_url_get(t, "http://h/0");                /* still kept */
	assert_ptr_equal(b, held[0]);
	http_url_put(t, b);
	for (int i = 0; i < N; i++) {                     /* new URLs: each evicts one */
		snprintf(url, sizeof(url), "http://g/%d", i);
		b = http_url_get(t, url);
		assert_non_null(b);
		http_url_put(t, b);
	}
	http_url_table_free(t);
	http_url_table_free(NULL);
}

/* The header list is built in the call's own buffers, reused by the next call on the same
 * handle: fewer, more and longer lines than the last call's, each request carrying exactly its
 * own (the server sees this call's X-Test, not a stale one). */
static void test_header_list(void **state)
{
	static const int counts[] = { 1, 40, 2, 0, 25, 1 };
	char lines[40][64], big[3000], test_line[64];
	const char *hdrs[42];
	struct outcome o = { 0 };

	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		int n = counts[k];
		struct http_request req = { .method = "GET", .headers = hdrs, .timeout_ms = 2000 };
		char url[128];

		for (int i = 0; i < n; i++) {
			snprintf(lines[i], sizeof(lines[i]), "X-Pad-%d: %d-%d", i, (int)k, i);
			hdrs[i] = lines[i];
		}
		if (k == 4) {           /* one long line: the text buffer grows */
			memset(big, 'v', sizeof(big) - 1);
			big[sizeof(big) - 1] = '\0';
			memcpy(big, "X-Big: ", 7);
			hdrs[n++] = big;
		}
		if (k != 3) {           /* round 3: no X-Test at all */
			snprintf(test_line, sizeof(test_line), "X-Test: round-%d", (int)k);
			hdrs[n++] = test_line;
		}
		req.n_headers = (size_t)n;
		snprintf(url, sizeof(url), "%s/hello", base);
		req.url = url;
		outcome_clear(&o);
		snprintf(seen.last_header, sizeof(seen.last_header), "-");
		assert_int_equal(http_client_send(cli, &req, on_done, &o, NULL), 0);
		assert_int_equal(run_until(&o.done, 1), 1);
		assert_int_equal(o.status, 200);
		if (k == 3) {
			assert_string_equal(seen.last_header, "(null)");
		} else {
			snprintf(url, sizeof(url), "round-%d", (int)k);
			assert_string_equal(seen.last_header, url);
		}
	}
	outcome_clear(&o);
}

/* A kept-alive connection that the server drops when the next request arrives: libcurl sends
 * that request again on a new connection (Curl_retry_request(), from the URL text it keeps;
 * the handle also has the parsed URL). A raw server on a thread: on its first connection it
 * answers one request and closes on the second; on its second connection it answers again. */
struct dropper {
	int lfd;
	int port;
	char lines[3][128];             /* the request lines it read */
};

static int read_request(int fd, char *line, size_t n)
{
	char buf[4096];
	size_t len = 0;
	ssize_t r;

	while (len < sizeof(buf) - 1) {
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL)
			break;
	}
	snprintf(line, n, "%.*s", (int)strcspn(buf, "\r\n"), buf);
	return 0;
}

static void *dropper_main(void *arg)
{
	struct dropper *d = arg;
	static const char r1[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr1";
	static const char r2[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr2";
	int fd;

	fd = accept(d->lfd, NULL, NULL);
	if (fd < 0 || read_request(fd, d->lines[0], sizeof(d->lines[0])) != 0 ||
	    write(fd, r1, sizeof(r1) - 1) != (ssize_t)sizeof(r1) - 1)
		return NULL;
	(void)read_request(fd, d->lines[1], sizeof(d->lines[1]));
	close(fd);                      /* no answer to the second request */
	fd = accept(d->lfd, NULL, NULL);
	if (fd < 0 || read_request(fd, d->lines[2], sizeof(d->lines[2])) != 0 ||
	    write(fd, r2, sizeof(r2) - 1) != (ssize_t)sizeof(r2) - 1)
		return NULL;
	close(fd);
	return NULL;
}

static void test_retry_dead_connection(void **state)
{
	/* With a scheme, and without one (libcurl guesses http): the retry parses the handle's
	 * URL text again without guessing, so that text must be the normalized URL libcurl made
	 * of CURLOPT_URL itself (with the raw text, "127.0.0.1:PORT/..." reads as the scheme
	 * "127.0.0.1" and the retry fails). */
	static const char *const forms[] = { "http://127.0.0.1:%d/retry?x=1", "127.0.0.1:%d/retry?x=1" };

	for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		socklen_t len = sizeof(sin);
		struct dropper d = { 0 };
		struct outcome o = { 0 };
		pthread_t t;
		char url[128];

		print_message("# retry case %zu: %s\n", k, forms[k]);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		d.lfd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(bind(d.lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		assert_int_equal(listen(d.lfd, 4), 0);
		assert_int_equal(getsockname(d.lfd, (struct sockaddr *)&sin, &len), 0);
		assert_int_equal(pthread_create(&t, NULL, dropper_main, &d), 0);
		snprintf(url, sizeof(url), forms[k], ntohs(sin.sin_port));

		assert_int_equal(call1("GET", url, NULL, 0, 5000, &o), 1);
		assert_int_equal(o.error, 0);
		assert_string_equal(o.body, "r1");
		assert_int_equal(call1("POST", url, "{}", 2, 5000, &o), 1);
		assert_int_equal(o.error, 0);
		assert_string_equal(o.body, "r2");
		assert_int_equal(pthread_join(t, NULL), 0);
		close(d.lfd);
		assert_string_equal(d.lines[0], "GET /retry?x=1 HTTP/1.1");
		assert_string_equal(d.lines[1], "POST /retry?x=1 HTTP/1.1");
		assert_string_equal(d.lines[2], "POST /retry?x=1 HTTP/1.1");
		outcome_clear(&o);
	}
}

/* The proxy variables: the client reads them once when it is made (not per call, as libcurl
 * would) and must honour them exactly as libcurl does. The test's own server stands in for the
 * proxy: a request that went through it arrives with the absolute URL as its target (or as a
 * CONNECT for https), one that did not arrives with the bare path. A closed port as the proxy
 * tells a proxy that is used (the connect fails) from one that is not (the answer arrives). */
static const char *const proxy_vars[] = {
	"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
	"no_proxy", "NO_PROXY",
};

enum via { VIA_PROXY, VIA_DIRECT, VIA_DEAD_PROXY };

struct proxy_case {
	const char *env[4][2];          /* name, value ("@" = this server, "!" = a closed port) */
	const char *url;                /* "@" = this server's base */
	enum via via;
};

static void proxy_env_set(const struct proxy_case *pc, int dead_port)
{
	char val[64];

	for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++)
		unsetenv(proxy_vars[i]);
	for (int i = 0; i < 4 && pc->env[i][0] != NULL; i++) {
		const char *v = pc->env[i][1];

		if (strcmp(v, "@") == 0)
			snprintf(val, sizeof(val), "%s", base);
		else if (strcmp(v, "!") == 0)
			snprintf(val, sizeof(val), "http://127.0.0.1:%d", dead_port);
		else
			snprintf(val, sizeof(val), "%s", v);
		assert_int_equal(setenv(pc->env[i][0], val, 1), 0);
	}
}

static void test_proxy_env(void **state)
{
	static const struct proxy_case cases[] = {
		{ { { "http_proxy", "@" } }, "http://proxied.invalid:9/hello", VIA_PROXY },
		{ { { "all_proxy", "@" } }, "http://proxied.invalid:9/hello", VIA_PROXY },
		{ { { "ALL_PROXY", "@" } }, "http://proxied.invalid:9/hello", VIA_PROXY },
		/* http_proxy wins over all_proxy; an empty variable counts as unset */
		{ { { "http_proxy", "@" }, { "all_proxy", "!" } }, "http://proxied.invalid:9/hello",
		  VIA_PROXY },
		{ { { "http_proxy", "" }, { "all_proxy", "@" } }, "http://proxied.invalid:9/hello",
		  VIA_PROXY },
		{ { { "http_proxy", "!" } }, "@/hello", VIA_DEAD_PROXY },
		/* never HTTP_PROXY (libcurl's rule), nor https_proxy for http */
		{ { { "HTTP_PROXY", "!" }, { "https_proxy", "!" } }, "@/hello", VIA_DIRECT },
		{ { { "http_proxy", "!" }, { "no_proxy", "127.0.0.1" } }, "@/hello", VIA_DIRECT },
		{ { { "http_proxy", "!" }, { "NO_PROXY", "127.0.0.1" } }, "@/hello", VIA_DIRECT },
		{ { { "http_proxy", "!" }, { "no_proxy", "*" } }, "@/hello", VIA_DIRECT },
		/* no_proxy wins over NO_PROXY */
		{ { { "http_proxy", "!" }, { "no_proxy", "example.org" }, { "NO_PROXY", "*" } },
		  "@/hello", VIA_DEAD_PROXY },
		{ { { "HTTP_PROXY", "@" } }, "HTTP://127.0.0.1:1/hello", VIA_DEAD_PROXY },
		{ { { "http_proxy", "@" } }, "HTTP://proxied.invalid:9/hello", VIA_PROXY },
		/* https: a CONNECT to the proxy */
		{ { { "https_proxy", "@" } }, "https://proxied.invalid:9/x", VIA_PROXY },
		{ { { "HTTPS_PROXY", "@" } }, "https://proxied.invalid:9/x", VIA_PROXY },
		{ { { "all_proxy", "@" } }, "https://proxied.invalid:9/x", VIA_PROXY },
		{ { { "https_proxy", "!" }, { "no_proxy", "proxied.invalid" } },
		  "https://127.0.0.1:1/x", VIA_DEAD_PROXY },
	};
	int dead_port = closed_port();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct proxy_case *pc = &cases[i];
		struct http_client *c;
		struct outcome o = { 0 };
		char url[128], want_path[128];
		int handled = seen.handled;

		print_message("# proxy case %zu: %s\n", i, pc->url);
		proxy_env_set(pc, dead_port);
		assert_int_equal(http_client_new(&loop, NULL, &c), 0);
		/* read at creation: later changes do not count */
		for (size_t j = 0; j < sizeof(proxy_vars) / sizeof(proxy_vars[0]); j++)
			unsetenv(proxy_vars[j]);
		if (pc->url[0] == '@')
			snprintf(url, sizeof(url), "%s%s", base, pc->url + 1);
		else
			snprintf(url, sizeof(url), "%s", pc->url);
		snprintf(seen.last_path, sizeof(seen.last_path), "-");
		snprintf(seen.last_method, sizeof(seen.last_method), "-");
		assert_int_equal(send_req(c, "GET", url, NULL, 0, 3000, &o, NULL), 0);
		assert_int_equal(run_until(&o.done, 1), 1);
		switch (pc->via) {
		case VIA_PROXY:
			assert_int_equal(seen.handled, handled + 1);
			if (strncmp(url, "https", 5) == 0) {
				assert_string_equal(seen.last_method, "CONNECT");
				assert_int_not_equal(o.error, 0);   /* no tunnel: a 404 */
			} else {
				/* the absolute URL as the target, the host as given */
				snprintf(want_path, sizeof(want_path), "http://%s",
					 strstr(url, "://") + 3);
				assert_string_equal(seen.last_path, want_path);
				assert_int_equal(o.error, 0);
				assert_int_equal(o.status, 404);
			}
			break;
		case VIA_DIRECT:
			assert_int_equal(o.error, 0);
			assert_int_equal(o.status, 200);
			assert_string_equal(seen.last_path, "/hello");
			break;
		case VIA_DEAD_PROXY:
			assert_int_equal(o.error, SAGAD_ECONNECT);
			assert_int_equal(seen.handled, handled);
			break;
		}
		outcome_clear(&o);
		http_client_free(c);
		run_for(20);
	}
}

/* The settings on their own (adapters/http_proxy.c): which variable wins for each scheme, ""
 * for none, and the scheme of a URL. */
static void test_proxy_settings(void **state)
{
	static const struct {
		const char *env[4][2];
		const char *http, *https, *no;
	} cases[] = {
		{ { { NULL } }, "", "", "" },
		{ { { "http_proxy", "a" }, { "HTTP_PROXY", "b" }, { "all_proxy", "c" } },
		  "a", "c", "" },
		{ { { "HTTP_PROXY", "b" }, { "ALL_PROXY", "d" }, { "HTTPS_PROXY", "e" } },
		  "d", "e", "" },
		{ { { "http_proxy", "" }, { "all_proxy", "c" }, { "https_proxy", "f" },
		    { "HTTPS_PROXY", "e" } }, "c", "f", "" },
		{ { { "no_proxy", "x" }, { "NO_PROXY", "y" } }, "", "", "x" },
		{ { { "no_proxy", "" }, { "NO_PROXY", "y" } }, "", "", "y" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_proxy p;

		for (size_t j = 0; j < sizeof(proxy_vars) / sizeof(proxy_vars[0]); j++)
			unsetenv(proxy_vars[j]);
		for (int j = 0; j < 4 && cases[i].env[j][0] != NULL; j++)
			assert_int_equal(setenv(cases[i].env[j][0], cases[i].env[j][1], 1), 0);
		http_proxy_init(&p);
		assert_string_equal(p.http, cases[i].http);
		assert_string_equal(p.https, cases[i].https);
		assert_string_equal(p.no_proxy, cases[i].no);
		assert_string_equal(http_proxy_for(&p, HTTP_PROXY_HTTP), cases[i].http);
		assert_string_equal(http_proxy_for(&p, HTTP_PROXY_HTTPS), cases[i].https);
		assert_null(http_proxy_for(&p, HTTP_PROXY_OTHER));
		http_proxy_close(&p);
	}
	for (size_t j = 0; j < sizeof(proxy_vars) / sizeof(proxy_vars[0]); j++)
		unsetenv(proxy_vars[j]);
	assert_int_equal(http_proxy_scheme("http://h/"), HTTP_PROXY_HTTP);
	assert_int_equal(http_proxy_scheme("HTTP://h/"), HTTP_PROXY_HTTP);
	assert_int_equal(http_proxy_scheme("https://h/"), HTTP_PROXY_HTTPS);
	assert_int_equal(http_proxy_scheme("HttpS://h/"), HTTP_PROXY_HTTPS);
	assert_int_equal(http_proxy_scheme("h:80/x"), HTTP_PROXY_OTHER);
	assert_int_equal(http_proxy_scheme("ftp://h/"), HTTP_PROXY_OTHER);
	assert_int_equal(http_proxy_scheme("http:/h"), HTTP_PROXY_OTHER);
}

/* --- fixture ---------------------------------------------------------------------------- */

static int setup(void **state)
{
	struct httpd_options opt = { .address = "127.0.0.1", .port = 0, .handler = handler };
	char err[256];

	big_body = xmalloc(BIG_BODY);
	memset(big_body, 'b', BIG_BODY);
	assert_int_equal(uv_loop_init(&loop), 0);
	if (httpd_start(&loop, &opt, &srv, err, sizeof(err)) != 0) {
		fprintf(stderr, "httpd_start: %s\n", err);
		return -1;
	}
	assert_true(httpd_port(srv) > 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", httpd_port(srv));
	test_thread = pthread_self();
	if (peer_start() != 0)
		return -1;
	return http_client_new(&loop, NULL, &cli);
}

static void count_handle(uv_handle_t *h, void *arg)
{
	(void)h;
	(*(int *)arg)++;
}

static int teardown(void **state)
{
	int n = 0;

	http_client_free(cli);
	httpd_free(srv);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_walk(&loop, count_handle, &n);
	free(big_body);
	if (peer_stop() != 0) {
		fprintf(stderr, "the peer's loop has handles left open\n");
		return -1;
	}
	if (n != 0) {
		fprintf(stderr, "%d handles left open\n", n);
		return -1;
	}
	return uv_loop_close(&loop) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_post_echo),
		cmocka_unit_test(test_async_answer),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_too_big_unknown_length),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_method_sequence),
		cmocka_unit_test(test_keepalive_sequential),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_client_abort),
		cmocka_unit_test(test_client_abort_keepalive),
		cmocka_unit_test(test_client_free_in_flight),
		cmocka_unit_test(test_client_free_in_callback),
		cmocka_unit_test(test_server_lifecycle),
		cmocka_unit_test(test_cancel_before_pickup),
		cmocka_unit_test(test_cancel_after_completion),
		cmocka_unit_test(test_free_everywhere),
		cmocka_unit_test(test_many_concurrent),
		cmocka_unit_test(test_loop_alive),
		cmocka_unit_test(test_url_cache),
		cmocka_unit_test(test_url_table),
		cmocka_unit_test(test_header_list),
		cmocka_unit_test(test_retry_dead_connection),
		cmocka_unit_test(test_proxy_env),
		cmocka_unit_test(test_proxy_settings),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	if (getenv("TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests_name("http", tests, setup, teardown);
}
