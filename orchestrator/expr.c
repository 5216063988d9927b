/* expr.c: templates (JSON values whose strings hold ${...}) and the small expression language
 * inside them. Everything is parsed once by tmpl_compile(); tmpl_eval() only walks the
 * compiled tree, since a saga step renders its request with it on every attempt. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "error.h"
#include "jsonw.h"
#include "expr.h"
#include "util.h"

#define MAX_DEPTH 32      /* nesting of calls, parentheses, lists and "!" inside one ${...} */
#define STACK_ARGS 8      /* arguments evaluated without a heap allocation */

/* --- compiled forms ------------------------------------------------------------------------ */

struct seg {
	char *name;               /* key, or "[N]" for an index */
	size_t len;               /* key length (keys may hold any UTF-8) */
	bool is_index;
	size_t index;
};

enum expr_kind { E_LITERAL, E_PATH, E_CALL, E_OP, E_LIST };

/* Operators, from the loosest binding to the tightest (see op_level()). */
enum op { OP_OR, OP_AND, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOT };

static const char *const op_names[] = { "||", "&&", "==", "!=", "<", "<=", ">", ">=", "in", "!" };

struct ev;
struct expr;

/* A function's implementation. Eager functions get their evaluated arguments in args (borrowed);
 * lazy ones get args == NULL and evaluate call->args themselves. Returns EV_* and on EV_OK
 * stores a new reference in *out. */
typedef int (*func_cb)(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out);

struct func {
	const char *name;
	int min_args, max_args;   /* max_args < 0: any number */
	bool lazy;
	func_cb fn;
};

struct expr {
	enum expr_kind kind;
	size_t offset;            /* inside the template string */
	json_t *literal;          /* E_LITERAL */
	struct seg *segs;         /* E_PATH */
	const char **names;       /* segs[i].name, for tmpl_visit_refs() */
	size_t n_segs;
	char *text;               /* the path spelled out, for messages */
	size_t *ends;             /* length of text after each segment */
	const struct func *func;  /* E_CALL */
	enum op op;               /* E_OP; its source text is in text */
	struct expr **args;       /* E_CALL arguments, E_OP operands, E_LIST items */
	size_t n_args;
};

/* One piece of a template string: literal text, or an expression (with the offset of its ${). */
struct piece {
	char *text;
	size_t len;
	struct expr *expr;
	size_t dollar;
};

enum node_kind { T_CONST, T_STRING, T_OBJECT, T_ARRAY };

struct node {
	enum node_kind kind;
	json_t *value;            /* T_CONST */
	char *string;             /* T_STRING: its source */
	bool typed;               /* T_STRING: exactly one ${...}, keeps the JSON type */
	struct piece *pieces;
	size_t n_pieces;
	char **keys;              /* T_OBJECT */
	size_t *key_lens;
	struct node **kids;       /* T_OBJECT, T_ARRAY */
	size_t n_kids;
};

struct tmpl {
	struct node *root;
};

/* --- evaluation state ---------------------------------------------------------------------- */

enum { EV_OK, EV_MISSING, EV_FAIL };

struct ev {
	json_t *ctx;
	char *err;
	size_t errlen;
	int quiet;                /* > 0 inside default(): failures are expected, skip messages */
};

static int evfail(struct ev *ev, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int evfail(struct ev *ev, int code, const char *fmt, ...)
{
	va_list ap;

	if (ev->quiet > 0 || ev->err == NULL || ev->errlen == 0)
		return code;
	va_start(ap, fmt);
	vsnprintf(ev->err, ev->errlen, fmt, ap);
	va_end(ap);
	return code;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

/* --- string conversion --------------------------------------------------------------------- */

/* The shortest of %.15g..%.17g that reads back exactly, always with a '.' or an exponent. A
 * whole number below 1e19 (the int64 range: ids) is written out in full, "1200000000000000.0"
 * rather than "1.2e+15". */
static void add_real(struct strbuf *b, double d)
{
	char buf[48];
	int prec;

	if (d == trunc(d) && fabs(d) < 1e19) {
		snprintf(buf, sizeof(buf), "%.1f", d);
		strbuf_adds(b, buf);
		return;
	}
	for (prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	strbuf_adds(b, buf);
	if (strpbrk(buf, ".eEni") == NULL)
		strbuf_add(b, ".0", 2);
}

/* Appends v as interpolation text: strings as is, null as "", the rest as compact JSON. */
static void add_string(struct strbuf *b, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		strbuf_add(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		jsonw_int(b, (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		add_real(b, json_real_value(v));
		break;
	case JSON_TRUE:
		strbuf_add(b, "true", 4);
		break;
	case JSON_FALSE:
		strbuf_add(b, "false", 5);
		break;
	case JSON_NULL:
		break;
	case JSON_OBJECT:
	case JSON_ARRAY:
		jsonw_value(b, v); /* json_dumps(COMPACT | ENCODE_ANY), byte for byte */
		break;
	}
}

static json_t *buf_to_json(struct strbuf *b)
{
	json_t *s = json_stringn_nocheck(b->data ? b->data : "", b->len);

	strbuf_close(b);
	return s;
}

/* Parses a whole string as a number ("12", "-1.5e3", surrounding blanks allowed). */
static bool parse_number(const char *s, size_t len, json_t **out)
{
	char buf[64], *end;
	size_t i, j;
	bool is_int = true;

	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.' || c == 'e' || c == 'E')
			is_int = false;
		else if (!(c >= '0' && c <= '9') && c != '-' && c != '+')
			return false;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	j = buf[0] == '-' || buf[0] == '+';
	if (buf[j] < '0' || buf[j] > '9') {
		if (buf[j] != '.')
			return false;
	}
	errno = 0;
	if (is_int) {
		long long v = strtoll(buf, &end, 10);
		if (*end == '\0' && errno == 0) {
			*out = json_integer(v);
			return true;
		}
		if (*end != '\0')
			return false;
	}
	errno = 0;
	double d = strtod(buf, &end);
	if (*end != '\0' || !isfinite(d))
		return false;
	*out = json_real(d);
	return true;
}

/* --- functions ----------------------------------------------------------------------------- */

static int eval_expr(struct ev *ev, const struct expr *e, json_t **out);

static int fn_string(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	struct strbuf b;

	if (json_is_string(args[0])) {
		*out = json_incref(args[0]);
		return EV_OK;
	}
	strbuf_init(&b);
	add_string(&b, args[0]);
	*out = buf_to_json(&b);
	return EV_OK;
}

static int fn_number(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	json_t *x = args[0];

	if (json_is_number(x)) {
		*out = json_incref(x);
		return EV_OK;
	}
	if (json_is_boolean(x)) {
		*out = json_integer(json_is_true(x));
		return EV_OK;
	}
	if (json_is_string(x)) {
		if (parse_number(json_string_value(x), json_string_length(x), out))
			return EV_OK;
		return evfail(ev, EV_FAIL, "%s(): \"%.64s\" is not a number", call->func->name,
			      json_string_value(x));
	}
	return evfail(ev, EV_FAIL, "%s(): cannot convert %s to a number", call->func->name,
		      type_name(x));
}

static int fn_integer(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	json_t *num;
	double d;
	int r;

	if (json_is_integer(args[0])) {
		*out = json_incref(args[0]);
		return EV_OK;
	}
	if ((r = fn_number(ev, call, args, &num)) != EV_OK)
		return r;
	if (json_is_integer(num)) {
		*out = num;
		return EV_OK;
	}
	d = trunc(json_real_value(num));
	json_decref(num);
	if (!(d > -9.2e18 && d < 9.2e18))
		return evfail(ev, EV_FAIL, "%s(): %g is out of the integer range", call->func->name, d);
	*out = json_integer((json_int_t)d);
	return EV_OK;
}

static int fn_boolean(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	json_t *x = args[0];
	const char *s;

	switch (json_typeof(x)) {
	case JSON_TRUE:
	case JSON_FALSE:
		*out = json_incref(x);
		return EV_OK;
	case JSON_INTEGER:
		*out = json_boolean(json_integer_value(x) != 0);
		return EV_OK;
	case JSON_REAL:
		*out = json_boolean(json_real_value(x) != 0);
		return EV_OK;
	case JSON_NULL:
		*out = json_false();
		return EV_OK;
	case JSON_STRING:
		s = json_string_value(x);
		if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0) {
			*out = json_true();
			return EV_OK;
		}
		if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || *s == '\0') {
			*out = json_false();
			return EV_OK;
		}
		return evfail(ev, EV_FAIL, "%s(): \"%.64s\" is not a boolean (true, false, 1, 0)",
			      call->func->name, s);
	default:
		return evfail(ev, EV_FAIL, "%s(): cannot convert %s to a boolean", call->func->name,
			      type_name(x));
	}
}

static int fn_json(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	struct strbuf b;

	strbuf_init(&b);
	jsonw_value(&b, args[0]);
	*out = buf_to_json(&b);
	return EV_OK;
}

/* default(x, fallback): fallback when x is missing or null; other errors of x still count. */
static int fn_default(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	json_t *v = NULL;
	int r;

	ev->quiet++;
	r = eval_expr(ev, call->args[0], &v);
	ev->quiet--;
	if (r == EV_OK && !json_is_null(v)) {
		*out = v;
		return EV_OK;
	}
	if (r == EV_OK)
		json_decref(v);
	if (r == EV_FAIL)               /* again, to write the message */
		return eval_expr(ev, call->args[0], out);
	return eval_expr(ev, call->args[1], out);
}

static int fn_now(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	char buf[40];

	util_format_time(util_now_ms(), buf, sizeof(buf));
	*out = json_string_nocheck(buf);
	return EV_OK;
}

static int fn_now_ms(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	*out = json_integer(util_now_ms());
	return EV_OK;
}

/* --- dates ---------------------------------------------------------------------------------- */

#define MIN_TIME_MS (-62135596800000LL)   /* 0001-01-01T00:00:00.000Z */
#define MAX_TIME_MS 253402300799999LL     /* 9999-12-31T23:59:59.999Z */

/* Reads a time argument: an RFC 3339 string (or a date) or a number of milliseconds since the
 * epoch. */
static int get_time(struct ev *ev, const struct expr *call, const json_t *x, int64_t *ms)
{
	double d;

	switch (json_typeof(x)) {
	case JSON_STRING:
		if (util_parse_time(json_string_value(x), json_string_length(x), ms) == 0)
			return EV_OK;
		return evfail(ev, EV_FAIL, "%s(): \"%.64s\" is not an RFC 3339 time "
			      "(2026-11-21T18:33:42.123Z) or a date (2026-11-21)", call->func->name,
			      json_string_value(x));
	case JSON_INTEGER:
		*ms = json_integer_value(x);
		break;
	case JSON_REAL:
		d = floor(json_real_value(x));
		*ms = d > -1e16 && d < 1e16 ? (int64_t)d : INT64_MAX;
		break;
	default:
		return evfail(ev, EV_FAIL, "%s(): cannot read a time from %s (give an RFC 3339 "
			      "string or milliseconds since the epoch)", call->func->name, type_name(x));
	}
	if (*ms < MIN_TIME_MS || *ms > MAX_TIME_MS)
		return evfail(ev, EV_FAIL, "%s(): %.17g ms is outside the years 0001-9999",
			      call->func->name, json_number_value(x));
	return EV_OK;
}

static int time_result(struct ev *ev, const struct expr *call, int64_t ms, json_t **out)
{
	char buf[40];

	if (ms < MIN_TIME_MS || ms > MAX_TIME_MS)
		return evfail(ev, EV_FAIL, "%s(): the result is outside the years 0001-9999",
			      call->func->name);
	util_format_time(ms, buf, sizeof(buf));
	*out = json_string_nocheck(buf);
	return EV_OK;
}

/* A duration: "21d", "-1h", "+90m", "1.5s", "500ms", "250" (ms), or a number of milliseconds. */
static int get_duration(struct ev *ev, const struct expr *call, const json_t *x, int64_t *ms)
{
	const char *s;
	double d;
	int sign = 1;

	if (json_is_integer(x)) {
		*ms = json_integer_value(x);
		if (*ms > -(1LL << 53) && *ms < (1LL << 53))
			return EV_OK;
	} else if (json_is_real(x)) {
		d = json_real_value(x);
		if (d > -9e15 && d < 9e15) {
			*ms = llround(d);
			return EV_OK;
		}
	} else if (json_is_string(x)) {
		s = json_string_value(x);
		if (*s == '-' || *s == '+')
			sign = *s++ == '-' ? -1 : 1;
		if (*s >= '0' && *s <= '9' && util_parse_duration(s, ms) == 0) {
			*ms *= sign;
			return EV_OK;
		}
		return evfail(ev, EV_FAIL, "%s(): \"%.64s\" is not a duration (21d, -1h, 90m, 1.5s, "
			      "500ms)", call->func->name, json_string_value(x));
	} else {
		return evfail(ev, EV_FAIL, "%s(): cannot read a duration from %s (give a string "
			      "like '21d' or a number of milliseconds)", call->func->name,
			      type_name(x));
	}
	return evfail(ev, EV_FAIL, "%s(): duration out of range", call->func->name);
}

static int fn_parse_date(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	int64_t ms;
	int r;

	if ((r = get_time(ev, call, args[0], &ms)) != EV_OK)
		return r;
	return time_result(ev, call, ms, out);
}

static int fn_date_add(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	int64_t ms, dur;
	int r;

	if ((r = get_time(ev, call, args[0], &ms)) != EV_OK ||
	    (r = get_duration(ev, call, args[1], &dur)) != EV_OK)
		return r;
	return time_result(ev, call, ms + dur, out);
}

static int fn_date_diff_ms(struct ev *ev, const struct expr *call, json_t *const *args,
			   json_t **out)
{
	int64_t a, b;
	int r;

	if ((r = get_time(ev, call, args[0], &a)) != EV_OK ||
	    (r = get_time(ev, call, args[1], &b)) != EV_OK)
		return r;
	*out = json_integer(a - b);
	return EV_OK;
}

/* Writes ms with pattern: YYYY, MM, DD, HH, mm, ss and SSS are replaced (longest first), any
 * other character is copied. */
static void format_date(struct strbuf *b, int64_t ms, const char *pat, size_t len)
{
	static const struct { const char *tok; size_t len; } toks[] = {
		{ "YYYY", 4 }, { "SSS", 3 }, { "MM", 2 }, { "DD", 2 }, { "HH", 2 }, { "mm", 2 },
		{ "ss", 2 },
	};
	int64_t rem = ((ms % 1000) + 1000) % 1000;
	time_t secs = (time_t)((ms - rem) / 1000);
	struct tm tm;
	size_t i = 0, k;

	gmtime_r(&secs, &tm);
	while (i < len) {
		for (k = 0; k < sizeof(toks) / sizeof(toks[0]); k++)
			if (len - i >= toks[k].len && memcmp(pat + i, toks[k].tok, toks[k].len) == 0)
				break;
		switch (k) {
		case 0: strbuf_addf(b, "%04d", tm.tm_year + 1900); break;
		case 1: strbuf_addf(b, "%03d", (int)rem); break;
		case 2: strbuf_addf(b, "%02d", tm.tm_mon + 1); break;
		case 3: strbuf_addf(b, "%02d", tm.tm_mday); break;
		case 4: strbuf_addf(b, "%02d", tm.tm_hour); break;
		case 5: strbuf_addf(b, "%02d", tm.tm_min); break;
		case 6: strbuf_addf(b, "%02d", tm.tm_sec); break;
		default:
			strbuf_add(b, pat + i, 1);
			i++;
			continue;
		}
		i += toks[k].len;
	}
}

static int fn_date_format(struct ev *ev, const struct expr *call, json_t *const *args,
			  json_t **out)
{
	struct strbuf b;
	int64_t ms;
	int r;

	if ((r = get_time(ev, call, args[0], &ms)) != EV_OK)
		return r;
	if (!json_is_string(args[1]))
		return evfail(ev, EV_FAIL, "%s(): the pattern is %s, not a string such as "
			      "'YYYY-MM-DD'", call->func->name, type_name(args[1]));
	strbuf_init(&b);
	format_date(&b, ms, json_string_value(args[1]), json_string_length(args[1]));
	*out = buf_to_json(&b);
	return EV_OK;
}

static int fn_date(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	struct strbuf b;
	int64_t ms;
	int r;

	if ((r = get_time(ev, call, args[0], &ms)) != EV_OK)
		return r;
	strbuf_init(&b);
	format_date(&b, ms, "YYYY-MM-DD", 10);
	*out = buf_to_json(&b);
	return EV_OK;
}

/* ASCII case mapping; other bytes (UTF-8 sequences) are left alone. */
static int change_case(json_t *const *args, json_t **out, bool up)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b);
	add_string(&b, args[0]);
	for (i = 0; i < b.len; i++) {
		char c = b.data[i];
		if (up && c >= 'a' && c <= 'z')
			b.data[i] = (char)(c - 'a' + 'A');
		else if (!up && c >= 'A' && c <= 'Z')
			b.data[i] = (char)(c - 'A' + 'a');
	}
	*out = buf_to_json(&b);
	return EV_OK;
}

static int fn_upper(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	return change_case(args, out, true);
}

static int fn_lower(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	return change_case(args, out, false);
}

static int fn_concat(struct ev *ev, const struct expr *call, json_t *const *args, json_t **out)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b);
	for (i = 0; i < call->n_args; i++)
		add_string(&b, args[i]);
	*out = buf_to_json(&b);
	return EV_OK;
}

/* The function table. To add a function: write fn_<name>() above with the func_cb signature
 * and add a row here; arity is checked at compile time, so the implementation can index args
 * directly. */
static const struct func funcs[] = {
	{ "string", 1, 1, false, fn_string },
	{ "number", 1, 1, false, fn_number },
	{ "integer", 1, 1, false, fn_integer },
	{ "boolean", 1, 1, false, fn_boolean },
	{ "json", 1, 1, false, fn_json },
	{ "default", 2, 2, true, fn_default },
	{ "upper", 1, 1, false, fn_upper },
	{ "lower", 1, 1, false, fn_lower },
	{ "concat", 1, -1, false, fn_concat },
	/* Time: RFC 3339 UTC strings with milliseconds, like now(). */
	{ "now", 0, 0, false, fn_now },
	{ "now_ms", 0, 0, false, fn_now_ms },
	{ "parse_date", 1, 1, false, fn_parse_date },
	{ "date_add", 2, 2, false, fn_date_add },
	{ "date_diff_ms", 2, 2, false, fn_date_diff_ms },
	{ "date_format", 2, 2, false, fn_date_format },
	{ "date", 1, 1, false, fn_date },
};

static const struct func *find_func(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++)
		if (strlen(funcs[i].name) == len && memcmp(funcs[i].name, name, len) == 0)
			return &funcs[i];
	return NULL;
}

/* --- parsing ------------------------------------------------------------------------------- */

struct parser {
	const char *s;
	size_t len, pos;
	size_t dollar;            /* offset of the current ${ */
	int depth;
	char *err;
	size_t errlen;
	size_t err_offset;
};

static void *perr(struct parser *p, size_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void *perr(struct parser *p, size_t offset, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->err_offset = offset;
	if (p->err != NULL && p->errlen > 0)
		snprintf(p->err, p->errlen, "offset %zu: %s", offset, msg);
	return NULL;
}

static bool is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
				   p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
		p->pos++;
}

static void *unterminated(struct parser *p)
{
	return perr(p, p->dollar, "unterminated \"${\" (missing \"}\")");
}

/* Enters one more level of nesting (a call, "(", "[" or "!"), or fails at offset at. */
static bool nest(struct parser *p, size_t at)
{
	if (++p->depth <= MAX_DEPTH)
		return true;
	p->depth--;
	perr(p, at, "expression nested too deeply");
	return false;
}

static void expr_free(struct expr *e)
{
	size_t i;

	if (e == NULL)
		return;
	json_decref(e->literal);
	for (i = 0; i < e->n_segs; i++)
		free(e->segs[i].name);
	free(e->segs);
	free(e->names);
	free(e->text);
	free(e->ends);
	for (i = 0; i < e->n_args; i++)
		expr_free(e->args[i]);
	free(e->args);
	free(e);
}

static struct expr *expr_new(enum expr_kind kind, size_t offset)
{
	struct expr *e = xcalloc(1, sizeof(*e));

	e->kind = kind;
	e->offset = offset;
	return e;
}

static bool read_hex4(struct parser *p, unsigned *v)
{
	int i, h;

	if (p->pos + 4 > p->len)
		return false;
	*v = 0;
	for (i = 0; i < 4; i++) {
		if ((h = util_hex_digit(p->s[p->pos + i])) < 0)
			return false;
		*v = *v << 4 | (unsigned)h;
	}
	p->pos += 4;
	return true;
}

static void add_utf8(struct strbuf *b, unsigned cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	strbuf_add(b, u, n);
}

/* Reads the rest of a \uXXXX escape (a surrogate pair takes two); p->pos is after the 'u'. */
static bool read_u_escape(struct parser *p, unsigned *cp)
{
	unsigned lo;

	if (!read_hex4(p, cp))
		return false;
	if (*cp >= 0xd800 && *cp < 0xdc00) {
		if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
			return false;
		p->pos += 2;
		if (!read_hex4(p, &lo) || lo < 0xdc00 || lo >= 0xe000)
			return false;
		*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
		return true;
	}
	return !(*cp >= 0xdc00 && *cp < 0xe000) && *cp != 0;
}

/* Reads a 'quoted' or "quoted" string at p->pos into out (initialized here; the caller closes
 * it on success). */
static bool parse_quoted(struct parser *p, struct strbuf *out)
{
	size_t start = p->pos, esc;
	char q = p->s[p->pos++], c;
	unsigned cp;

	strbuf_init(out);
	for (;;) {
		if (p->pos >= p->len) {
			perr(p, start, "unterminated string literal");
			goto fail;
		}
		c = p->s[p->pos];
		if (c == q) {
			p->pos++;
			break;
		}
		if (c != '\\') {
			strbuf_add(out, &c, 1);
			p->pos++;
			continue;
		}
		esc = p->pos++;
		if (p->pos >= p->len) {
			perr(p, start, "unterminated string literal");
			goto fail;
		}
		c = p->s[p->pos++];
		switch (c) {
		case '\\': case '\'': case '"': case '/': strbuf_add(out, &c, 1); break;
		case 'n': strbuf_add(out, "\n", 1); break;
		case 't': strbuf_add(out, "\t", 1); break;
		case 'r': strbuf_add(out, "\r", 1); break;
		case 'b': strbuf_add(out, "\b", 1); break;
		case 'f': strbuf_add(out, "\f", 1); break;
		case 'u':
			if (!read_u_escape(p, &cp)) {
				perr(p, esc, "bad \\u escape in string literal");
				goto fail;
			}
			add_utf8(out, cp);
			break;
		default:
			perr(p, esc, "unknown escape \"\\%c\" in string literal", c);
			goto fail;
		}
	}
	if (out->data == NULL)
		strbuf_adds(out, "");
	return true;
fail:
	strbuf_close(out);
	return false;
}

static struct expr *parse_string_literal(struct parser *p)
{
	struct strbuf b;
	size_t start = p->pos;
	struct expr *e;

	if (!parse_quoted(p, &b))
		return NULL;
	e = expr_new(E_LITERAL, start);
	e->literal = json_stringn(b.data, b.len);
	strbuf_close(&b);
	if (e->literal == NULL) {
		expr_free(e);
		return perr(p, start, "string literal is not valid UTF-8");
	}
	return e;
}

static struct expr *parse_number_literal(struct parser *p)
{
	size_t start = p->pos;
	bool is_int = true;
	char *text, *end;
	struct expr *e;

	if (p->s[p->pos] == '-')
		p->pos++;
	while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
		p->pos++;
	if (p->pos + 1 < p->len && p->s[p->pos] == '.' && p->s[p->pos + 1] >= '0' &&
	    p->s[p->pos + 1] <= '9') {
		is_int = false;
		p->pos++;
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		size_t q = p->pos + 1;
		if (q < p->len && (p->s[q] == '+' || p->s[q] == '-'))
			q++;
		if (q < p->len && p->s[q] >= '0' && p->s[q] <= '9') {
			is_int = false;
			p->pos = q;
			while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
				p->pos++;
		}
	}
	if (p->pos < p->len && is_ident(p->s[p->pos]))
		return perr(p, start, "bad number literal");
	text = xstrndup(p->s + start, p->pos - start);
	e = expr_new(E_LITERAL, start);
	errno = 0;
	if (is_int) {
		long long v = strtoll(text, &end, 10);
		if (errno == 0)
			e->literal = json_integer(v);
	} else {
		double d = strtod(text, &end);
		if (errno == 0 && isfinite(d))
			e->literal = json_real(d);
	}
	free(text);
	if (e->literal == NULL) {
		expr_free(e);
		return perr(p, start, "number literal out of range");
	}
	return e;
}

static void add_seg(struct expr *e, struct strbuf *text, const char *name, size_t len,
		    bool is_index, size_t index)
{
	struct seg *s;
	bool plain = len > 0;
	size_t i;

	e->segs = xrealloc(e->segs, (e->n_segs + 1) * sizeof(*e->segs));
	e->ends = xrealloc(e->ends, (e->n_segs + 1) * sizeof(*e->ends));
	s = &e->segs[e->n_segs];
	s->is_index = is_index;
	s->index = index;
	if (is_index) {
		s->name = xasprintf("[%zu]", index);
		s->len = strlen(s->name);
		strbuf_adds(text, s->name);
	} else {
		s->name = xstrndup(name, len);
		s->len = len;
		for (i = 0; i < len; i++)
			plain = plain && is_ident(name[i]);
		if (plain) {
			if (e->n_segs > 0)
				strbuf_add(text, ".", 1);
			strbuf_add(text, name, len);
		} else {
			strbuf_add(text, "['", 2);
			strbuf_add(text, name, len);
			strbuf_add(text, "']", 2);
		}
	}
	e->ends[e->n_segs++] = text->len;
}

/* ident ( '.' name | '[' integer ']' | '[' quoted ']' )* ; p->pos is at the root identifier. */
static struct expr *parse_path(struct parser *p)
{
	struct expr *e = expr_new(E_PATH, p->pos);
	struct strbuf text, key;
	size_t start, i;

	strbuf_init(&text);
	start = p->pos;
	while (p->pos < p->len && is_ident(p->s[p->pos]))
		p->pos++;
	add_seg(e, &text, p->s + start, p->pos - start, false, 0);
	for (;;) {
		if (p->pos >= p->len)
			break;
		if (p->s[p->pos] == '.') {
			start = ++p->pos;
			while (p->pos < p->len && is_ident(p->s[p->pos]))
				p->pos++;
			if (p->pos == start) {
				perr(p, start, "expected a field name after \".\"");
				goto fail;
			}
			add_seg(e, &text, p->s + start, p->pos - start, false, 0);
		} else if (p->s[p->pos] == '[') {
			start = p->pos++;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
				size_t index = 0;
				while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
					if (index > 100000000) {
						perr(p, start, "array index too large");
						goto fail;
					}
					index = index * 10 + (size_t)(p->s[p->pos++] - '0');
				}
				add_seg(e, &text, NULL, 0, true, index);
			} else if (p->pos < p->len && (p->s[p->pos] == '\'' || p->s[p->pos] == '"')) {
				if (!parse_quoted(p, &key))
					goto fail;
				add_seg(e, &text, key.data, key.len, false, 0);
				strbuf_close(&key);
			} else {
				perr(p, p->pos, "expected an index or a quoted key after \"[\"");
				goto fail;
			}
			skip_ws(p);
			if (p->pos >= p->len || p->s[p->pos] != ']') {
				perr(p, start, "missing \"]\"");
				goto fail;
			}
			p->pos++;
		} else {
			break;
		}
	}
	e->text = strbuf_detach(&text);
	e->names = xmalloc(e->n_segs * sizeof(*e->names));
	for (i = 0; i < e->n_segs; i++)
		e->names[i] = e->segs[i].name;
	return e;
fail:
	strbuf_close(&text);
	expr_free(e);
	return NULL;
}

static struct expr *parse_expr(struct parser *p);

static void list_funcs(char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(funcs) / sizeof(funcs[0]) && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", funcs[i].name);
}

/* [expr (',' expr)*] close ; p->pos is at the opening character. Appends the items to e->args;
 * what names them in a message. */
static bool parse_items(struct parser *p, char close, struct expr *e, const char *what)
{
	struct expr *item;

	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == close) {
		p->pos++;
		return true;
	}
	for (;;) {
		if ((item = parse_expr(p)) == NULL)
			return false;
		e->args = xrealloc(e->args, (e->n_args + 1) * sizeof(*e->args));
		e->args[e->n_args++] = item;
		skip_ws(p);
		if (p->pos >= p->len) {
			unterminated(p);
			return false;
		}
		if (p->s[p->pos] == close) {
			p->pos++;
			return true;
		}
		if (p->s[p->pos] != ',') {
			perr(p, p->pos, "expected \",\" or \"%c\" in %s", close, what);
			return false;
		}
		p->pos++;
	}
}

/* name '(' [expr (',' expr)*] ')' ; p->pos is at the '('. */
static struct expr *parse_call(struct parser *p, size_t name_start, size_t name_len)
{
	const struct func *fn = find_func(p->s + name_start, name_len);
	char known[256], what[64];
	struct expr *e;

	if (fn == NULL) {
		list_funcs(known, sizeof(known));
		return perr(p, name_start, "unknown function \"%.*s\" (known: %s)", (int)name_len,
			    p->s + name_start, known);
	}
	if (!nest(p, name_start))
		return NULL;
	e = expr_new(E_CALL, name_start);
	e->func = fn;
	snprintf(what, sizeof(what), "the arguments of %s()", fn->name);
	if (!parse_items(p, ')', e, what))
		goto fail;
	p->depth--;
	if ((int)e->n_args < fn->min_args || (fn->max_args >= 0 && (int)e->n_args > fn->max_args)) {
		if (fn->max_args < 0)
			perr(p, name_start, "%s() takes at least %d argument%s, got %zu", fn->name,
			     fn->min_args, fn->min_args == 1 ? "" : "s", e->n_args);
		else
			perr(p, name_start, "%s() takes %d argument%s, got %zu", fn->name,
			     fn->max_args, fn->max_args == 1 ? "" : "s", e->n_args);
		expr_free(e);
		return NULL;
	}
	return e;
fail:
	p->depth--;
	expr_free(e);
	return NULL;
}

/* '(' expr ')' ; p->pos is at the '('. */
static struct expr *parse_group(struct parser *p)
{
	size_t open = p->pos;
	struct expr *e;

	if (!nest(p, open))
		return NULL;
	p->pos++;
	e = parse_expr(p);
	p->depth--;
	if (e == NULL)
		return NULL;
	skip_ws(p);
	if (p->pos >= p->len) {
		expr_free(e);
		return unterminated(p);
	}
	if (p->s[p->pos] != ')') {
		expr_free(e);
		return perr(p, p->pos, "expected \")\" to close the \"(\" at offset %zu, found \"%c\"",
			    open, p->s[p->pos]);
	}
	p->pos++;
	return e;
}

/* '[' [expr (',' expr)*] ']' ; p->pos is at the '['. */
static struct expr *parse_list(struct parser *p)
{
	struct expr *e;

	if (!nest(p, p->pos))
		return NULL;
	e = expr_new(E_LIST, p->pos);
	if (!parse_items(p, ']', e, "the list")) {
		expr_free(e);
		e = NULL;
	}
	p->depth--;
	return e;
}

/* A literal, a path, a function call, a list or a parenthesized expression. */
static struct expr *parse_primary(struct parser *p)
{
	size_t start, end;
	char c;

	skip_ws(p);
	if (p->pos >= p->len)
		return unterminated(p);
	start = p->pos;
	c = p->s[p->pos];
	if (c == '\'' || c == '"')
		return parse_string_literal(p);
	if (c == '(')
		return parse_group(p);
	if (c == '[')
		return parse_list(p);
	if ((c >= '0' && c <= '9') ||
	    (c == '-' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9'))
		return parse_number_literal(p);
	if (!is_ident_start(c)) {
		if (c == '}') {
			size_t i = p->dollar + 2;
			while (i < p->pos && strchr(" \t\r\n", p->s[i]) != NULL)
				i++;
			if (i == p->pos)
				return perr(p, p->pos, "empty expression");
			return perr(p, p->pos, "expected an operand before \"}\"");
		}
		return perr(p, p->pos, "unexpected \"%c\"; expected a path, a literal, a function "
			    "call or \"(\"", c);
	}
	while (p->pos < p->len && is_ident(p->s[p->pos]))
		p->pos++;
	end = p->pos;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == '(')
		return parse_call(p, start, end - start);
	p->pos = end;
	if (end == p->len || (p->s[end] != '.' && p->s[end] != '[')) {
		json_t *lit = NULL;
		if (end - start == 4 && memcmp(p->s + start, "true", 4) == 0)
			lit = json_true();
		else if (end - start == 5 && memcmp(p->s + start, "false", 5) == 0)
			lit = json_false();
		else if (end - start == 4 && memcmp(p->s + start, "null", 4) == 0)
			lit = json_null();
		if (lit != NULL) {
			struct expr *e = expr_new(E_LITERAL, start);
			e->literal = lit;
			return e;
		}
	}
	p->pos = start;
	return parse_path(p);
}

/* The operator at p->pos (not consumed), or -1; *len gets its length. "!" alone is unary and
 * not reported here. */
static int peek_op(const struct parser *p, size_t *len)
{
	const char *s = p->s + p->pos;
	size_t left = p->len - p->pos;
	char c1 = left > 1 ? s[1] : '\0';

	*len = 2;
	if (left == 0)
		return -1;
	switch (s[0]) {
	case '|': return c1 == '|' ? OP_OR : -1;
	case '&': return c1 == '&' ? OP_AND : -1;
	case '=': return c1 == '=' ? OP_EQ : -1;
	case '!': return c1 == '=' ? OP_NE : -1;
	case '<': if (c1 == '=') return OP_LE; *len = 1; return OP_LT;
	case '>': if (c1 == '=') return OP_GE; *len = 1; return OP_GT;
	case 'i': return c1 == 'n' && (left == 2 || !is_ident(s[2])) ? OP_IN : -1;
	}
	return -1;
}

/* Binding levels: 0 ||, 1 &&, 2 == !=, 3 < <= > >= in; then unary !. */
#define N_LEVELS 4

static int op_level(int op)
{
	switch (op) {
	case OP_OR: return 0;
	case OP_AND: return 1;
	case OP_EQ: case OP_NE: return 2;
	default: return 3;
	}
}

static struct expr *op_node(struct parser *p, enum op op, size_t op_pos, size_t start,
			    struct expr *a, struct expr *b)
{
	struct expr *e = expr_new(E_OP, op_pos);

	e->op = op;
	e->n_args = b != NULL ? 2 : 1;
	e->args = xmalloc(e->n_args * sizeof(*e->args));
	e->args[0] = a;
	if (b != NULL)
		e->args[1] = b;
	e->text = xstrndup(p->s + start, p->pos - start);
	return e;
}

/* '!' unary | primary */
static struct expr *parse_unary(struct parser *p)
{
	struct expr *e;
	size_t start;

	skip_ws(p);
	start = p->pos;
	if (p->pos + 1 >= p->len || p->s[p->pos] != '!' || p->s[p->pos + 1] == '=')
		return parse_primary(p);
	if (!nest(p, start))
		return NULL;
	p->pos++;
	e = parse_unary(p);
	p->depth--;
	return e != NULL ? op_node(p, OP_NOT, start, start, e, NULL) : NULL;
}

/* level ( op-of-this-level level+1 )* ; comparisons (levels 2 and 3) do not chain. */
static struct expr *parse_binary(struct parser *p, int level)
{
	struct expr *left, *right;
	size_t start, op_pos, len;
	int op, n = 0;

	if (level == N_LEVELS)
		return parse_unary(p);
	skip_ws(p);
	start = p->pos;
	if ((left = parse_binary(p, level + 1)) == NULL)
		return NULL;
	for (;;) {
		skip_ws(p);
		op_pos = p->pos;
		op = peek_op(p, &len);
		if (op < 0 || op_level(op) != level)
			break;
		if (level >= 2 && n > 0) {
			expr_free(left);
			return perr(p, op_pos, "comparisons do not chain: write a < b && b < c, or "
				    "add parentheses");
		}
		p->pos += len;
		if ((right = parse_binary(p, level + 1)) == NULL) {
			expr_free(left);
			return NULL;
		}
		left = op_node(p, (enum op)op, op_pos, start, left, right);
		n++;
	}
	if (level == 0 && p->pos < p->len) {      /* a near miss of an operator */
		const char *hint = NULL;
		char c = p->s[p->pos];
		if (c == '=')
			hint = "\"=\" is not an operator; compare with \"==\"";
		else if (c == '&')
			hint = "\"&\" is not an operator; write \"&&\"";
		else if (c == '|')
			hint = "\"|\" is not an operator; write \"||\"";
		if (hint != NULL) {
			expr_free(left);
			return perr(p, p->pos, "%s", hint);
		}
	}
	return left;
}

static struct expr *parse_expr(struct parser *p)
{
	return parse_binary(p, 0);
}

/* --- templates ----------------------------------------------------------------------------- */

static void node_free(struct node *n)
{
	size_t i;

	if (n == NULL)
		return;
	json_decref(n->value);
	free(n->string);
	for (i = 0; i < n->n_pieces; i++) {
		free(n->pieces[i].text);
		expr_free(n->pieces[i].expr);
	}
	free(n->pieces);
	for (i = 0; i < n->n_kids; i++) {
		if (n->keys != NULL)
			free(n->keys[i]);
		node_free(n->kids[i]);
	}
	free(n->keys);
	free(n->key_lens);
	free(n->kids);
	free(n);
}

static struct node *const_node(json_t *value)
{
	struct node *n = xcalloc(1, sizeof(*n));

	n->kind = T_CONST;
	n->value = value;
	return n;
}

static void add_piece(struct node *n, struct strbuf *lit, struct expr *e, size_t dollar)
{
	struct piece *pc;

	n->pieces = xrealloc(n->pieces, (n->n_pieces + 1) * sizeof(*n->pieces));
	pc = &n->pieces[n->n_pieces++];
	memset(pc, 0, sizeof(*pc));
	if (e != NULL) {
		pc->expr = e;
		pc->dollar = dollar;
	} else {
		pc->len = lit->len;
		pc->text = strbuf_detach(lit);
	}
}

/* Compiles one string (valid UTF-8, len bytes). */
static struct node *compile_string(struct parser *p, const char *s, size_t len)
{
	struct node *n = xcalloc(1, sizeof(*n));
	struct strbuf lit;
	struct expr *e;
	size_t i = 0, n_exprs = 0;
	const char *d;

	n->kind = T_STRING;
	strbuf_init(&lit);
	p->s = s;
	p->len = len;
	p->depth = 0;
	while (i < len) {
		d = memchr(s + i, '$', len - i);
		if (d == NULL) {
			strbuf_add(&lit, s + i, len - i);
			break;
		}
		strbuf_add(&lit, s + i, (size_t)(d - s) - i);
		i = (size_t)(d - s);
		if (i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
			strbuf_add(&lit, "${", 2);
			i += 3;
			continue;
		}
		if (i + 1 >= len || s[i + 1] != '{') {
			strbuf_add(&lit, "$", 1);
			i++;
			continue;
		}
		if (lit.len > 0)
			add_piece(n, &lit, NULL, 0);
		p->dollar = i;
		p->pos = i + 2;
		if ((e = parse_expr(p)) == NULL)
			goto fail;
		skip_ws(p);
		if (p->pos >= len) {
			expr_free(e);
			unterminated(p);
			goto fail;
		}
		if (s[p->pos] != '}') {
			expr_free(e);
			perr(p, p->pos, "expected \"}\" after the expression, found \"%c\"", s[p->pos]);
			goto fail;
		}
		add_piece(n, &lit, e, i);
		n_exprs++;
		i = p->pos + 1;
	}
	if (lit.len > 0)
		add_piece(n, &lit, NULL, 0);
	strbuf_close(&lit);

	if (n_exprs == 0) {              /* constant: "abc", or "" */
		json_t *v = json_stringn_nocheck(n->n_pieces ? n->pieces[0].text : "",
						 n->n_pieces ? n->pieces[0].len : 0);
		node_free(n);
		return const_node(v);
	}
	if (n->n_pieces == 1) {
		n->typed = true;
		if (n->pieces[0].expr->kind == E_LITERAL) {   /* "${'abc'}", "${12}" */
			json_t *v = json_incref(n->pieces[0].expr->literal);
			node_free(n);
			return const_node(v);
		}
	}
	n->string = xstrndup(s, len);
	return n;
fail:
	strbuf_close(&lit);
	node_free(n);
	return NULL;
}

static struct node *compile_value(struct parser *p, const json_t *v, const json_t **err_value)
{
	struct node *n, *kid;
	const char *key;
	json_t *val, *c;
	size_t i;
	bool all_const = true;

	switch (json_typeof(v)) {
	case JSON_STRING:
		n = compile_string(p, json_string_value(v), json_string_length(v));
		if (n == NULL && err_value != NULL)
			*err_value = v;
		return n;
	case JSON_OBJECT:
	case JSON_ARRAY:
		break;
	default:
		return const_node(json_deep_copy(v));
	}
	n = xcalloc(1, sizeof(*n));
	if (json_is_object(v)) {
		n->kind = T_OBJECT;
		n->kids = xmalloc((json_object_size(v) + 1) * sizeof(*n->kids));
		n->keys = xmalloc((json_object_size(v) + 1) * sizeof(*n->keys));
		n->key_lens = xmalloc((json_object_size(v) + 1) * sizeof(*n->key_lens));
		/* json_object_foreach takes a non-const object; iteration does not change it. */
		json_object_foreach((json_t *)v, key, val) {
			size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
			if ((kid = compile_value(p, val, err_value)) == NULL)
				goto fail;
			n->keys[n->n_kids] = xstrndup(key, klen);
			n->key_lens[n->n_kids] = klen;
			n->kids[n->n_kids++] = kid;
			all_const = all_const && kid->kind == T_CONST;
		}
	} else {
		n->kind = T_ARRAY;
		n->kids = xmalloc((json_array_size(v) + 1) * sizeof(*n->kids));
		json_array_foreach(v, i, val) {
			if ((kid = compile_value(p, val, err_value)) == NULL)
				goto fail;
			n->kids[n->n_kids++] = kid;
			all_const = all_const && kid->kind == T_CONST;
		}
	}
	if (!all_const)
		return n;
	c = n->kind == T_OBJECT ? json_object() : json_array();
	for (i = 0; i < n->n_kids; i++) {
		if (n->kind == T_OBJECT)
			json_object_setn_nocheck(c, n->keys[i], n->key_lens[i], n->kids[i]->value);
		else
			json_array_append(c, n->kids[i]->value);
	}
	node_free(n);
	return const_node(c);
fail:
	node_free(n);
	return NULL;
}

struct tmpl *tmpl_compile_ex(const json_t *value, char *err, size_t errlen, size_t *err_offset,
			     const json_t **err_value)
{
	struct parser p = { .err = err, .errlen = errlen };
	struct node *root;
	struct tmpl *t;

	if (err_offset != NULL)
		*err_offset = 0;
	if (err_value != NULL)
		*err_value = NULL;
	if (value == NULL) {
		perr(&p, 0, "no template");
		return NULL;
	}
	if ((root = compile_value(&p, value, err_value)) == NULL) {
		if (err_offset != NULL)
			*err_offset = p.err_offset;
		return NULL;
	}
	t = xmalloc(sizeof(*t));
	t->root = root;
	return t;
}

struct tmpl *tmpl_compile(const json_t *value, char *err, size_t errlen, size_t *err_offset)
{
	return tmpl_compile_ex(value, err, errlen, err_offset, NULL);
}

struct tmpl *tmpl_compile_string(const char *s, char *err, size_t errlen, size_t *err_offset)
{
	json_t *v = json_string(s);
	struct parser p = { .err = err, .errlen = errlen };
	struct tmpl *t;

	if (v == NULL) {
		if (err_offset != NULL)
			*err_offset = 0;
		perr(&p, 0, "template is not valid UTF-8");
		return NULL;
	}
	t = tmpl_compile_ex(v, err, errlen, err_offset, NULL);
	json_decref(v);
	return t;
}

void tmpl_free(struct tmpl *t)
{
	if (t == NULL)
		return;
	node_free(t->root);
	free(t);
}

bool tmpl_is_constant(const struct tmpl *t)
{
	return t->root->kind == T_CONST;
}

static void visit_expr(const struct expr *e, const struct node *n, size_t dollar, tmpl_ref_cb cb,
		       void *arg)
{
	struct tmpl_ref ref;
	size_t i;

	if (e->kind == E_PATH) {
		ref.segs = e->names;
		ref.n_segs = e->n_segs;
		ref.offset = dollar;
		ref.string = n->string;
		ref.path_offset = e->offset;
		cb(&ref, arg);
	}
	for (i = 0; i < e->n_args; i++)
		visit_expr(e->args[i], n, dollar, cb, arg);
}

static void visit_node(const struct node *n, tmpl_ref_cb cb, void *arg)
{
	size_t i;

	for (i = 0; i < n->n_pieces; i++)
		if (n->pieces[i].expr != NULL)
			visit_expr(n->pieces[i].expr, n, n->pieces[i].dollar, cb, arg);
	for (i = 0; i < n->n_kids; i++)
		visit_node(n->kids[i], cb, arg);
}

void tmpl_visit_refs(const struct tmpl *t, tmpl_ref_cb cb, void *arg)
{
	visit_node(t->root, cb, arg);
}

/* --- evaluation ---------------------------------------------------------------------------- */

/* Follows e's segments from root; borrowed result, or NULL with *at = the failing segment. */
static json_t *walk(const struct expr *e, json_t *root, size_t *at)
{
	json_t *cur = root;
	size_t i;

	for (i = 0; i < e->n_segs && cur != NULL; i++) {
		const struct seg *s = &e->segs[i];
		*at = i;
		if (s->is_index)
			cur = json_is_array(cur) ? json_array_get(cur, s->index) : NULL;
		else
			cur = json_is_object(cur) ? json_object_getn(cur, s->name, s->len) : NULL;
	}
	return cur;
}

static int path_error(struct ev *ev, const struct expr *e, size_t at)
{
	const struct seg *s = &e->segs[at];
	json_t *parent, *k;
	struct strbuf known;
	struct expr prefix;
	const char *key;
	size_t dummy;
	int r;

	if (ev->quiet > 0 || ev->err == NULL)
		return EV_MISSING;
	if (at == 0) {
		strbuf_init(&known);
		if (json_is_object(ev->ctx))
			json_object_foreach(ev->ctx, key, k)
				strbuf_addf(&known, "%s%s", known.len ? ", " : "", key);
		r = evfail(ev, EV_MISSING, "%s: no \"%s\" in the template context (known: %s)",
			   e->text, s->name, known.len ? known.data : "none");
		strbuf_close(&known);
		return r;
	}
	prefix = *e;
	prefix.n_segs = at;
	parent = walk(&prefix, ev->ctx, &dummy);
	assert(parent != NULL);
	if (s->is_index && json_is_array(parent))
		return evfail(ev, EV_MISSING, "%s: index %zu out of range in %.*s (length %zu)",
			      e->text, s->index, (int)e->ends[at - 1], e->text,
			      json_array_size(parent));
	if (!s->is_index && json_is_object(parent))
		return evfail(ev, EV_MISSING, "%s: no field \"%s\" in %.*s", e->text, s->name,
			      (int)e->ends[at - 1], e->text);
	return evfail(ev, EV_MISSING, "%s: %.*s is %s, not %s", e->text, (int)e->ends[at - 1],
		      e->text, type_name(parent), s->is_index ? "an array" : "an object");
}

static int eval_call(struct ev *ev, const struct expr *e, json_t **out)
{
	json_t *stack[STACK_ARGS], **args = stack;
	size_t i, n = 0;
	int r;

	if (e->func->lazy)
		return e->func->fn(ev, e, NULL, out);
	if (e->n_args > STACK_ARGS)
		args = xmalloc(e->n_args * sizeof(*args));
	for (n = 0; n < e->n_args; n++)
		if ((r = eval_expr(ev, e->args[n], &args[n])) != EV_OK)
			goto out;
	r = e->func->fn(ev, e, args, out);
out:
	for (i = 0; i < n; i++)
		json_decref(args[i]);
	if (args != stack)
		free(args);
	return r;
}

/* --- operators ---------------------------------------------------------------------------- */

/* Compares an integer with a double exactly (no rounding of big integers). */
static int cmp_int_real(json_int_t i, double d)
{
	double di = (double)i;

	if (di != d)
		return di < d ? -1 : 1;
	if (d >= 9223372036854775808.0)      /* 2^63: above every int64 */
		return -1;
	return i < (json_int_t)d ? -1 : i > (json_int_t)d;
}

static int cmp_numbers(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b))
		return json_integer_value(a) < json_integer_value(b) ? -1 :
		       json_integer_value(a) > json_integer_value(b);
	if (json_is_integer(a))
		return cmp_int_real(json_integer_value(a), json_real_value(b));
	if (json_is_integer(b))
		return -cmp_int_real(json_integer_value(b), json_real_value(a));
	return json_real_value(a) < json_real_value(b) ? -1 : json_real_value(a) > json_real_value(b);
}

/* JSON equality, deep, with numbers compared by value (1 == 1.0). */
static bool json_eq(const json_t *a, const json_t *b)
{
	const char *key;
	json_t *va, *vb;
	size_t i;

	if (json_is_number(a) && json_is_number(b))
		return cmp_numbers(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (i = 0; i < json_array_size(a); i++)
			if (!json_eq(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	case JSON_OBJECT:
		if (json_object_size(a) != json_object_size(b))
			return false;
		json_object_foreach((json_t *)a, key, va) {
			size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
			if ((vb = json_object_getn(b, key, klen)) == NULL || !json_eq(va, vb))
				return false;
		}
		return true;
	default:                        /* true, false, null */
		return true;
	}
}

static int eval_bool(struct ev *ev, const struct expr *op, const struct expr *arg,
		     const char *side, bool *out)
{
	json_t *v;
	int r;

	if ((r = eval_expr(ev, arg, &v)) != EV_OK)
		return r;
	if (!json_is_boolean(v)) {
		r = evfail(ev, EV_FAIL, "%.120s: the %s of \"%s\" is %s, not a boolean (compare it, "
			   "as in x == 'y', or convert it with boolean())", op->text, side,
			   op_names[op->op], type_name(v));
		json_decref(v);
		return r;
	}
	*out = json_is_true(v);
	json_decref(v);
	return EV_OK;
}

/* Applies an ordering or "in" operator to two values. */
static int binary_op(struct ev *ev, const struct expr *e, const json_t *a, const json_t *b,
		     bool *res)
{
	int c;

	if (e->op == OP_IN) {
		if (json_is_array(b)) {
			size_t i;
			*res = false;
			for (i = 0; i < json_array_size(b) && !*res; i++)
				*res = json_eq(a, json_array_get(b, i));
			return EV_OK;
		}
		if ((json_is_string(b) || json_is_object(b)) && !json_is_string(a))
			return evfail(ev, EV_FAIL, "%.120s: \"in\" %s needs a string on the left, "
				      "not %s", e->text, json_is_string(b) ? "a string" : "an object",
				      type_name(a));
		if (json_is_string(b)) {
			*res = memmem(json_string_value(b), json_string_length(b),
				      json_string_value(a), json_string_length(a)) != NULL;
			return EV_OK;
		}
		if (json_is_object(b)) {
			*res = json_object_getn(b, json_string_value(a), json_string_length(a)) != NULL;
			return EV_OK;
		}
		return evfail(ev, EV_FAIL, "%.120s: the right side of \"in\" is %s, not an array, a "
			      "string or an object", e->text, type_name(b));
	}
	if (json_is_number(a) && json_is_number(b)) {
		c = cmp_numbers(a, b);
	} else if (json_is_string(a) && json_is_string(b)) {
		size_t la = json_string_length(a), lb = json_string_length(b);
		c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
		if (c == 0)
			c = la < lb ? -1 : la > lb;
	} else {
		return evfail(ev, EV_FAIL, "%.120s: cannot compare %s with %s (\"%s\" takes two "
			      "numbers or two strings; convert with number() or string())", e->text,
			      type_name(a), type_name(b), op_names[e->op]);
	}
	switch (e->op) {
	case OP_LT: *res = c < 0; break;
	case OP_LE: *res = c <= 0; break;
	case OP_GT: *res = c > 0; break;
	case OP_GE: *res = c >= 0; break;
	default: fatalx("expr: bad operator %d", (int)e->op);
	}
	return EV_OK;
}

static int eval_op(struct ev *ev, const struct expr *e, json_t **out)
{
	json_t *a = NULL, *b = NULL;
	bool res;
	int r;

	switch (e->op) {
	case OP_NOT:
		if ((r = eval_bool(ev, e, e->args[0], "operand", &res)) != EV_OK)
			return r;
		*out = json_boolean(!res);
		return EV_OK;
	case OP_AND:
	case OP_OR:                     /* short-circuit: the right side may be missing */
		if ((r = eval_bool(ev, e, e->args[0], "left side", &res)) != EV_OK)
			return r;
		if (res == (e->op == OP_AND) &&
		    (r = eval_bool(ev, e, e->args[1], "right side", &res)) != EV_OK)
			return r;
		*out = json_boolean(res);
		return EV_OK;
	default:
		break;
	}
	if ((r = eval_expr(ev, e->args[0], &a)) != EV_OK)
		return r;
	if ((r = eval_expr(ev, e->args[1], &b)) != EV_OK)
		goto out;
	if (e->op == OP_EQ || e->op == OP_NE)
		res = json_eq(a, b) == (e->op == OP_EQ);
	else if ((r = binary_op(ev, e, a, b, &res)) != EV_OK)
		goto out;
	*out = json_boolean(res);
out:
	json_decref(a);
	json_decref(b);
	return r;
}

static int eval_list(struct ev *ev, const struct expr *e, json_t **out)
{
	json_t *list = json_array(), *v;
	size_t i;
	int r;

	for (i = 0; i < e->n_args; i++) {
		if ((r = eval_expr(ev, e->args[i], &v)) != EV_OK) {
			json_decref(list);
			return r;
		}
		json_array_append_new(list, v);
	}
	*out = list;
	return EV_OK;
}

static int eval_expr(struct ev *ev, const struct expr *e, json_t **out)
{
	json_t *v;
	size_t at = 0;

	switch (e->kind) {
	case E_LITERAL:
		*out = json_incref(e->literal);
		return EV_OK;
	case E_PATH:
		if ((v = walk(e, ev->ctx, &at)) == NULL)
			return path_error(ev, e, at);
		*out = json_incref(v);
		return EV_OK;
	case E_CALL:
		return eval_call(ev, e, out);
	case E_OP:
		return eval_op(ev, e, out);
	case E_LIST:
		return eval_list(ev, e, out);
	}
	fatalx("expr: bad kind %d", (int)e->kind);
}

/* Appends the interpolation of a T_STRING node to b. */
static int eval_pieces(struct ev *ev, const struct node *n, struct strbuf *b)
{
	json_t *v;
	size_t i;
	int r;

	for (i = 0; i < n->n_pieces; i++) {
		if (n->pieces[i].expr == NULL) {
			strbuf_add(b, n->pieces[i].text, n->pieces[i].len);
			continue;
		}
		if ((r = eval_expr(ev, n->pieces[i].expr, &v)) != EV_OK)
			return r;
		add_string(b, v);
		json_decref(v);
	}
	return EV_OK;
}

static json_t *eval_node(struct ev *ev, const struct node *n)
{
	struct strbuf b;
	json_t *v, *kid;
	size_t i;

	switch (n->kind) {
	case T_CONST:
		return json_incref(n->value);
	case T_STRING:
		if (n->typed)
			return eval_expr(ev, n->pieces[0].expr, &v) == EV_OK ? v : NULL;
		strbuf_init(&b);
		if (eval_pieces(ev, n, &b) != EV_OK) {
			strbuf_close(&b);
			return NULL;
		}
		return buf_to_json(&b);
	case T_OBJECT:
	case T_ARRAY:
		v = n->kind == T_OBJECT ? json_object() : json_array();
		for (i = 0; i < n->n_kids; i++) {
			if ((kid = eval_node(ev, n->kids[i])) == NULL) {
				json_decref(v);
				return NULL;
			}
			if (n->kind == T_OBJECT)
				json_object_setn_new_nocheck(v, n->keys[i], n->key_lens[i], kid);
			else
				json_array_append_new(v, kid);
		}
		return v;
	}
	fatalx("tmpl: bad node kind %d", (int)n->kind);
}

json_t *tmpl_eval(const struct tmpl *t, json_t *ctx, char *err, size_t errlen)
{
	struct ev ev = { .ctx = ctx, .err = err, .errlen = errlen };

	return eval_node(&ev, t->root);
}

/* Writes node n as JSON text: what eval_node() would return, as jsonw_value() writes it. The
 * nodes are visited in eval_node()'s order, so the first error is the same one. scratch holds
 * an interpolated string while it is escaped. */
static int write_node(struct ev *ev, const struct node *n, struct strbuf *b, struct strbuf *scratch)
{
	json_t *v;
	size_t i;
	int r;

	switch (n->kind) {
	case T_CONST:
		jsonw_value(b, n->value);
		return EV_OK;
	case T_STRING:
		if (n->typed) {
			if ((r = eval_expr(ev, n->pieces[0].expr, &v)) != EV_OK)
				return r;
			jsonw_value(b, v);
			json_decref(v);
			return EV_OK;
		}
		scratch->len = 0;
		if ((r = eval_pieces(ev, n, scratch)) != EV_OK)
			return r;
		jsonw_strn(b, scratch->data != NULL ? scratch->data : "", scratch->len);
		return EV_OK;
	case T_OBJECT:
	case T_ARRAY:
		strbuf_add(b, n->kind == T_OBJECT ? "{" : "[", 1);
		for (i = 0; i < n->n_kids; i++) {
			if (i > 0)
				strbuf_add(b, ",", 1);
			if (n->kind == T_OBJECT) {
				jsonw_strn(b, n->keys[i], n->key_lens[i]);
				strbuf_add(b, ":", 1);
			}
			if ((r = write_node(ev, n->kids[i], b, scratch)) != EV_OK)
				return r;
		}
		strbuf_add(b, n->kind == T_OBJECT ? "}" : "]", 1);
		return EV_OK;
	}
	fatalx("tmpl: bad node kind %d", (int)n->kind);
}

int tmpl_eval_json(const struct tmpl *t, json_t *ctx, struct strbuf *out, char *err,
		   size_t errlen)
{
	struct ev ev = { .ctx = ctx, .err = err, .errlen = errlen };
	struct strbuf scratch;
	int r;

	strbuf_init(&scratch);
	r = write_node(&ev, t->root, out, &scratch);
	strbuf_close(&scratch);
	return r == EV_OK ? 0 : -1;
}

char *tmpl_eval_string(const struct tmpl *t, json_t *ctx, char *err, size_t errlen)
{
	struct ev ev = { .ctx = ctx, .err = err, .errlen = errlen };
	const struct node *n = t->root;
	struct strbuf b;
	json_t *v;

	strbuf_init(&b);
	if (n->kind == T_STRING && !n->typed) {
		if (eval_pieces(&ev, n, &b) != EV_OK) {
			strbuf_close(&b);
			return NULL;
		}
		return strbuf_detach(&b);
	}
	if ((v = eval_node(&ev, n)) == NULL)
		return NULL;
	add_string(&b, v);
	json_decref(v);
	return strbuf_detach(&b);
}

/* --- paths outside templates --------------------------------------------------------------- */

static struct expr *parse_whole_path(const char *path)
{
	struct parser p = { .s = path, .len = strlen(path) };
	struct expr *e;

	if (p.len == 0 || !is_ident_start(path[0]))
		return NULL;
	if ((e = parse_path(&p)) == NULL)
		return NULL;
	if (p.pos != p.len) {
		expr_free(e);
		return NULL;
	}
	return e;
}

json_t *expr_lookup(json_t *v, const char *path)
{
	struct expr *e = parse_whole_path(path);
	json_t *r;
	size_t at;

	if (e == NULL)
		return NULL;
	r = walk(e, v, &at);
	expr_free(e);
	return r;
}

char **expr_path_split(const char *path, size_t *n)
{
	struct expr *e = parse_whole_path(path);
	char **segs;
	size_t i;

	if (e == NULL)
		return NULL;
	segs = xmalloc((e->n_segs + 1) * sizeof(*segs));
	for (i = 0; i < e->n_segs; i++) {
		segs[i] = e->segs[i].name;
		e->segs[i].name = NULL;
	}
	segs[i] = NULL;
	if (n != NULL)
		*n = e->n_segs;
	expr_free(e);
	return segs;
}

void expr_path_free(char **segs)
{
	size_t i;

	if (segs == NULL)
		return;
	for (i = 0; segs[i] != NULL; i++)
		free(segs[i]);
	free(segs);
}
