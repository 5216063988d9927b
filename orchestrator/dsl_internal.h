/* dsl_internal.h: what dsl.c (YAML -> node tree -> struct flow) and dsl_check.c (static checks
 * of templates, suggestions, sub-flow linking) share. Only those two files include it. */
#ifndef SAGAD_DSL_INTERNAL_H
#define SAGAD_DSL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "dsl.h"
#include "expr.h"
#include "flow.h"

enum dsl_node_kind { DSL_SCALAR, DSL_MAP, DSL_SEQ };
enum dsl_style { DSL_PLAIN, DSL_QUOTED, DSL_BLOCK };

/* A YAML node with where it was written. A node owns its children; an alias is expanded into
 * a copy that keeps the anchored node's location. */
struct dsl_node {
	enum dsl_node_kind kind;
	const char *file;           /* borrowed from the loader */
	int line, col;              /* 1-based */
	/* DSL_SCALAR */
	char *str;                  /* NUL-terminated value */
	size_t len;
	enum dsl_style style;
	char *tag;                  /* explicit tag ("tag:yaml.org,2002:str", "!"), or NULL */
	bool exact;                 /* str[i] sits on `line` at column text_col + chars before i */
	int text_col;
	/* DSL_MAP: keys[i] (scalars) -> items[i]; DSL_SEQ: items[i] */
	struct dsl_node **keys;
	struct dsl_node **items;
	size_t n, cap;
	/* For the limits: nodes, alias expansions and height of the subtree, copies included. */
	size_t size, n_alias;
	int height;
};

/* Where a sub-flow step's `flow:` value was written (for dsl_link messages). */
struct dsl_subflow_loc {
	const struct flow *flow;
	size_t step;
	int line, col;
};

/* The state of one file's load. */
struct dsl_loader {
	const char *file;
	struct dsl_limits lim;
	struct dsl_errors *errs;
	size_t n_errors;            /* reported by this load */
	int rc;                     /* SAGAD_ELIMIT / SAGAD_ENOMEM once a hard stop happened */
	struct flow *flow;
	bool input_declared;
	const char **input_names;   /* borrowed from flow->inputs */
	size_t n_input_names;
	const char **step_names;    /* every step's name, known before steps compile; borrowed */
	size_t n_step_names;
	const struct dsl_node **step_nodes; /* each (flattened) step's node; borrowed */
	int *step_group;            /* each step's parallel group (index of its first step) */
	json_t *env_ctx;            /* {"env": {...}}, built on first use */
	struct dsl_subflow_loc *subflows;
	size_t n_subflows;
	int name_line, name_col;    /* of the `name:` value */
};

/* Where a template is used: decides which roots and steps it may read. */
enum dsl_site_kind {
	DSL_SITE_SETTINGS,       /* participant url/headers/timeout: env only, at load time */
	DSL_SITE_TOPIC,          /* a Kafka topic (request, reply, trigger): env only, at load time */
	DSL_SITE_ACTION,         /* a step's action: earlier steps */
	DSL_SITE_COMPENSATION,   /* a step's compensation: earlier steps and itself */
	DSL_SITE_SUBFLOW_INPUT,  /* a sub-flow step's input: earlier steps */
	DSL_SITE_OUTPUT,         /* the flow's output: every step */
	DSL_SITE_TRIGGER_INPUT,  /* a trigger's input: event, headers, kafka (no saga yet) */
};

struct dsl_site {
	enum dsl_site_kind kind;
	int step;                /* index of the step using it, -1 when none */
	const char *what;        /* message prefix: "step \"pay\": action.body" */
};

/* dsl.c */
/* Appends "file:line:col: message" to the load's errors (line/col 0 when unknown). */
void dsl_report(struct dsl_loader *ld, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void dsl_errors_add(struct dsl_errors *e, const char *file, int line, int col, const char *msg);
/* The column of byte `offset` of a scalar's value (the node's column when not exact). */
int dsl_node_col(const struct dsl_node *n, size_t offset);

/* dsl_check.c */
/* Reports every reference of t (compiled from the string scalar n) that `site` may not read. */
void dsl_check_refs(struct dsl_loader *ld, const struct dsl_site *site, const struct dsl_node *n,
		    const struct tmpl *t);
/* Returns the candidate nearest to word (Levenshtein, case-insensitive), or NULL when none is
 * close enough to be a likely typo. */
const char *dsl_suggest(const char *word, const char *const *cands, size_t n);
/* Appends "a, b, c" to a new string owned by the caller. */
char *dsl_join(const char *const *names, size_t n);
/* dsl_link() with the locations of the `flow:` values when known (locs may be NULL). */
int dsl_link_locs(struct flow_set *fs, struct dsl_errors *errs, const struct dsl_subflow_loc *locs,
		  size_t n_locs);

#endif
