/* http.h: the HTTP participant transport: libcurl's multi interface on its own thread, the
 * HTTP client thread, driven by that thread's libuv loop (uv_poll per socket, one uv_timer;
 * curl's docs/examples/multi-uv.c). No thread per call; connections are kept alive and
 * reused. The caller's loop thread (the one whose loop is passed to http_client_new()) calls
 * every function here and gets every callback; the client thread only runs the transfers
 * (requests go to it and results come back on mutex-protected lists, each way with a
 * uv_async wake-up). Not for use from any other thread. */
#ifndef SAGAD_ADAPTER_HTTP_H
#define SAGAD_ADAPTER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_client;
struct http_call;

struct http_client_options {
	size_t max_response_bytes;   /* larger bodies fail the call with SAGAD_ETOOBIG; default 1 MiB */
	long max_host_connections;   /* per participant host; default 64 */
	const char *user_agent;      /* default "sagad/<version>" */
};

/* Returns 0 and a new client owned by the caller, or an error. */
int http_client_new(uv_loop_t *loop, const struct http_client_options *opt,
		    struct http_client **out);
/* Cancels every call in flight (their callbacks are not called), stops and joins the client
 * thread, and closes the client once its handle on the caller's loop is closed; safe to call
 * with NULL, also from inside a callback. The loop must run for the close (one turn). */
void http_client_free(struct http_client *c);

struct http_request {
	const char *method;          /* "POST" */
	const char *url;
	const char *const *headers;  /* "Name: value" lines */
	size_t n_headers;
	const char *body;            /* or NULL */
	size_t body_len;
	int64_t timeout_ms;          /* whole attempt; > 0 */
};

/* The outcome of a call; borrowed by the callback (copy what must outlive it). */
struct http_result {
	int error;                   /* 0 when an HTTP response arrived; else SAGAD_ETIMEOUT,
				      * SAGAD_ECONNECT (not connected / reset / DNS), SAGAD_ETOOBIG,
				      * or SAGAD_EIO, with error_text saying more */
	const char *error_text;
	int status;                  /* HTTP status when error == 0 */
	const char *content_type;    /* or NULL */
	const char *body;            /* NUL-terminated; "" when empty */
	size_t body_len;
	int64_t retry_after_ms;      /* from Retry-After (seconds or HTTP date), or -1 */
	int64_t elapsed_ms;
	int request_sent;            /* 1 when the request may have reached the server */
};

typedef void (*http_done_cb)(const struct http_result *res, void *arg);

/* Starts a call; everything in req is copied. cb runs exactly once on the caller's loop
 * thread, never before this function returns, unless the call is cancelled. Returns 0 (and
 * the call in *out if out is not NULL) or an error, in which case cb is never called. While
 * calls are active the client keeps the caller's loop alive (as the sockets on it did when
 * the transfers ran there). A call libcurl refuses to start on the client thread ends with
 * SAGAD_EIO through cb. */
int http_client_send(struct http_client *c, const struct http_request *req, http_done_cb cb,
		     void *arg, struct http_call **out);
/* Abandons a call: its callback will not run, even when the answer has already arrived and
 * waits for the loop; the transfer is stopped on the client thread if it still runs. The call
 * handle is invalid afterwards. */
void http_call_cancel(struct http_call *call);

/* Calls in flight: sent, not cancelled, callback not run yet. */
size_t http_client_active(const struct http_client *c);
/* Diagnostics (tests): calls given back (after their callback or cancel) and waiting on the
 * client's free list for reuse. Walks the list. */
size_t http_client_idle_calls(const struct http_client *c);

#endif
