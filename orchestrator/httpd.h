/* httpd.h: the admin API's HTTP/1.1 server: libmicrohttpd in external-epoll mode, its epoll fd
 * watched by a uv_poll and its timeout driven by a uv_timer on the daemon's loop. A handler may
 * answer at once or later (the connection is suspended until httpd_respond()). */
#ifndef SAGAD_HTTPD_H
#define SAGAD_HTTPD_H

#include <stddef.h>
#include <uv.h>

struct httpd;
struct httpd_req;

/* Called on the loop thread once a request's whole body has arrived. The handler must call
 * httpd_respond() exactly once, now or later, unless the abort callback ran first. */
typedef void (*httpd_handler_cb)(struct httpd_req *req, void *arg);
/* Called when the client went away before httpd_respond(); req is invalid afterwards. */
typedef void (*httpd_abort_cb)(struct httpd_req *req, void *arg);

struct httpd_options {
	const char *address;         /* "127.0.0.1" (default) or "::1", "0.0.0.0" */
	int port;                    /* 0 = pick a free port (see httpd_port()) */
	size_t max_body_bytes;       /* larger request bodies get 413 from httpd itself; default 1 MiB */
	unsigned connection_timeout_s; /* idle keep-alive timeout; default 60 */
	httpd_handler_cb handler;
	void *arg;
};

/* Starts listening. Returns 0 and a server owned by the caller (httpd_free()), or an error
 * with a message in err ("bind 127.0.0.1:8080: Address already in use"). */
int httpd_start(uv_loop_t *loop, const struct httpd_options *opt, struct httpd **out,
		char *err, size_t errlen);
/* The port it listens on. */
int httpd_port(const struct httpd *h);
/* Stops accepting new connections (in-flight requests may still be answered). */
void httpd_quiesce(struct httpd *h);
/* Stops the server; pending requests are dropped. Handles close on the loop. NULL no-op. */
void httpd_free(struct httpd *h);

/* Request accessors; strings are borrowed until httpd_respond() or abort. */
const char *httpd_req_method(const struct httpd_req *r);
const char *httpd_req_path(const struct httpd_req *r);          /* without the query */
const char *httpd_req_query(const struct httpd_req *r, const char *name); /* decoded or NULL */
/* Query arguments whose name starts with prefix, in order: returns how many there are and
 * points *name / *value at the first one (borrowed, decoded). */
int httpd_req_query_prefix(const struct httpd_req *r, const char *prefix, const char **name,
			   const char **value);
const char *httpd_req_header(const struct httpd_req *r, const char *name); /* or NULL */
const char *httpd_req_body(const struct httpd_req *r, size_t *len); /* "" when none */
const char *httpd_req_peer(const struct httpd_req *r);          /* "127.0.0.1" */

/* Sets a callback for the client going away while the answer is pending. */
void httpd_req_on_abort(struct httpd_req *r, httpd_abort_cb cb, void *arg);

/* Answers the request. headers is NULL or a NULL-terminated list of name, value pairs.
 * body is copied. After this, r is invalid. */
void httpd_respond(struct httpd_req *r, int status, const char *content_type,
		   const char *body, size_t len, const char *const *headers);

#endif
