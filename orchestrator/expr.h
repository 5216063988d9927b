/* expr.h: templates and expressions.
 *
 * A template is a JSON value (from YAML) whose strings may contain ${ expression }. A string
 * that is exactly one "${...}" keeps the expression's JSON type (a number stays a number);
 * otherwise the pieces are converted to strings and joined. "$${" writes a literal "${".
 *
 * Expressions: paths into the context (input.classId, saga.id, steps.pay.response.body.id,
 * steps.pay.response.body.items[0]), literals ('text', "text", 12, 1.5, true, false, null),
 * lists ([a, b]), parentheses, function calls (string, number, integer, boolean, json, default,
 * now, now_ms, upper, lower, concat, parse_date, date_add, date_diff_ms, date_format, date: see
 * docs/flow-dsl.md) and operators, loosest first: ||, &&, == !=, < <= > >= in, unary !.
 * == is deep JSON equality with numbers by value (1 == 1.0); ordering takes two numbers or two
 * strings (byte order); && || ! take booleans only (no truthiness) and short-circuit;
 * comparisons do not chain. A path that names missing data is an evaluation error unless
 * wrapped in default(). */
#ifndef SAGAD_EXPR_H
#define SAGAD_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct tmpl;
struct strbuf;

/* A reference found in a template, for static checks: the path's segments as written
 * ("steps", "pay", "response", "body", "id"; an index is the segment "[0]", a quoted key
 * ['a.b'] is "a.b"), and the offset of the ${ in the string (for column computation).
 * Borrowed; valid during the callback. */
struct tmpl_ref {
	const char *const *segs;
	size_t n_segs;
	size_t offset;
	const char *string;      /* the template string holding it */
	size_t path_offset;      /* offset of the path itself (inside a function call too) */
};
typedef void (*tmpl_ref_cb)(const struct tmpl_ref *ref, void *arg);

/* Compiles value (borrowed) into a new template owned by the caller (free with tmpl_free()).
 * Returns NULL on a syntax error and writes "offset N: message" style text into err, with
 * *err_offset set to the byte offset inside the offending string (or 0). */
struct tmpl *tmpl_compile(const json_t *value, char *err, size_t errlen, size_t *err_offset);
/* The same, and on error *err_value (when not NULL) points at the string inside value (borrowed)
 * that does not compile, so a loader can map it back to its source position. */
struct tmpl *tmpl_compile_ex(const json_t *value, char *err, size_t errlen, size_t *err_offset,
			     const json_t **err_value);
/* Compiles one string template. */
struct tmpl *tmpl_compile_string(const char *s, char *err, size_t errlen, size_t *err_offset);
void tmpl_free(struct tmpl *t);

/* True when the template has no ${...} (its value is a constant). */
bool tmpl_is_constant(const struct tmpl *t);
/* Calls cb for every path the template reads. */
void tmpl_visit_refs(const struct tmpl *t, tmpl_ref_cb cb, void *arg);

/* Evaluates t against ctx (borrowed). Returns a new reference, or NULL with a message in err
 * ("steps.pay.response.body.id: no field \"id\" in steps.pay.response.body"). The result may
 * share parts with the template's constants and with ctx: treat it as read-only
 * (json_deep_copy() it before changing it). */
json_t *tmpl_eval(const struct tmpl *t, json_t *ctx, char *err, size_t errlen);
/* Evaluates t into JSON text appended to out: the bytes json_dumps(tmpl_eval(...),
 * JSON_COMPACT | JSON_ENCODE_ANY) would make, written without building the value (a request
 * body). Returns 0, or -1 with the message tmpl_eval() gives in err (out then holds a partial
 * text: the caller drops it). */
int tmpl_eval_json(const struct tmpl *t, json_t *ctx, struct strbuf *out, char *err,
		   size_t errlen);
/* Evaluates t and converts the result to a string (strings as is, numbers and booleans in
 * their JSON text, null as "", objects and arrays as compact JSON). New malloc()ed string or
 * NULL with err. */
char *tmpl_eval_string(const struct tmpl *t, json_t *ctx, char *err, size_t errlen);

/* Looks up a dotted path ("body.items[0].id") in v; borrowed result or NULL. */
json_t *expr_lookup(json_t *v, const char *path);

/* Splits a path ("body.items[0].id") into its segments ("body", "items", "[0]", "id") as a new
 * NULL-terminated array owned by the caller (free with expr_path_free()); NULL when the path
 * does not parse. *n (may be NULL) receives the count. */
char **expr_path_split(const char *path, size_t *n);
void expr_path_free(char **segs);

#endif
