/* api.h: the admin API's routes (docs/api.md) on top of httpd.h: JSON in, JSON out. Answers
 * are given only after the commit that makes them true (a start is acknowledged once it is
 * durable; reads never show uncommitted state). */
#ifndef SAGAD_API_H
#define SAGAD_API_H

#include <stdbool.h>
#include <stdint.h>

struct api;
struct engine;
struct store;
struct flow_set;
struct httpd_req;
struct auth;

struct api_options {
	struct engine *engine;          /* borrowed */
	struct store *store;            /* borrowed */
	struct flow_set *const *flows;  /* borrowed: points at the daemon's current set */
	const bool *ready;              /* borrowed: false until recovery is done */
	const char *const *not_ready_reason; /* borrowed: why /readyz says not ready */
	int64_t default_wait_ms;        /* wait timeout when the client gives none; default 30 s */
	const struct auth *auth;        /* borrowed; who may call what (auth.h); NULL = open */
};

/* Returns a new api owned by the caller (api_free()). */
struct api *api_new(const struct api_options *opt);
void api_free(struct api *a);
/* The httpd handler: arg is the struct api. */
void api_handle(struct httpd_req *req, void *arg);

#endif
