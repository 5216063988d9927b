/* dsl.h: the flow DSL loader: YAML (libyaml) -> struct flow (flow.h), with every mistake
 * reported as "file:line:col: what is wrong; hint". */
#ifndef SAGAD_DSL_H
#define SAGAD_DSL_H

#include <stddef.h>
#include "flow.h"

/* Limits the loader enforces (libyaml has none of its own). */
struct dsl_limits {
	size_t max_file_bytes;   /* default 1 MiB */
	int max_depth;           /* nesting of mappings/sequences, default 64 */
	int max_aliases;         /* alias (*ref) uses per file, default 100 */
	size_t max_nodes;        /* default 100000 */
	size_t max_steps;        /* default 256 */
};
void dsl_limits_default(struct dsl_limits *l);
/* Sets one limit from "NAME=VALUE" (names as in the struct: max_file_bytes takes a size such
 * as 2MiB, the others a positive integer). Returns 0 or SAGAD_EINVAL with a message in err. */
int dsl_limit_set(struct dsl_limits *l, const char *name_value, char *err, size_t errlen);

/* One diagnostic. */
struct dsl_error {
	char *file;
	int line, col;           /* 1-based; 0 when unknown */
	char *message;           /* "unknown key \"retires\"; did you mean \"retry\"?" */
};

/* Diagnostics of one load; dsl_errors_close() frees them. */
struct dsl_errors {
	struct dsl_error *v;
	size_t n;
};
void dsl_errors_close(struct dsl_errors *e);
/* Formats every error as "file:line:col: message\n" into a new string owned by the caller. */
char *dsl_errors_format(const struct dsl_errors *e);

/* Loads one flow file. On success returns 0 and a new flow owned by the caller (*out,
 * refs = 1). On failure returns SAGAD_ESYNTAX (or SAGAD_ELIMIT, -errno for I/O) and fills errs
 * with every problem found (the loader goes on after the first error where it can). env
 * lookups use getenv(). Sub-flow references are not resolved here: see dsl_link(). */
int dsl_load_file(const char *path, const struct dsl_limits *lim, struct flow **out,
		  struct dsl_errors *errs);
/* The same from a buffer; `name` is the file name used in messages. */
int dsl_load_buffer(const char *name, const char *yaml, size_t len, const struct dsl_limits *lim,
		    struct flow **out, struct dsl_errors *errs);

/* Loads every *.yaml / *.yml file of a directory into fs, then links them (dsl_link).
 * Returns 0 when all loaded, else SAGAD_ESYNTAX with errs filled (fs then holds the ones that
 * loaded cleanly). */
int dsl_load_dir(const char *dir, const struct dsl_limits *lim, struct flow_set *fs,
		 struct dsl_errors *errs);

/* Cross-flow checks: every sub-flow step names a flow in fs, and there is no cycle of
 * sub-flows. Returns 0 or SAGAD_ESYNTAX with errs filled (location of the offending step). */
int dsl_link(struct flow_set *fs, struct dsl_errors *errs);

#endif
