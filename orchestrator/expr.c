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
#include "error.h"
#include "expr.h"
#include "util.h"

#define MAX_DEPTH 32      /* nesting of function calls inside one ${...} */
#define STACK_ARGS 8      /* arguments evaluated without a heap allocation */

/* --- compiled forms ------------------------------------------------------------------------ */

struct seg {
	char *name;               /* key, or "[N]" for an index */
	size_t len;               /* key length (keys may hold any UTF-8) */
	bool is_index;
	size_t index;
};

enum expr_kind { E_LITERAL, E_PATH, E_CALL };

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
	struct expr **args;
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

static int dump_cb(const char *buf, size_t size, void *arg)
{
	strbuf_add(arg, buf, size);
	return 0;
}

/* The shortest of %.15g..%.17g that reads back exactly, always with a '.' or an exponent. */
static void add_real(struct strbuf *b, double d)
{
	char buf[48];
	int prec;

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
		strbuf_addf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
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
		json_dump_callback(v, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY);
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
	json_dump_callback(args[0], dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY);
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
	/* Time. Date arithmetic goes here (e.g. add_duration(time, '2h'), format_time(ms),
	 * parse_time(s)), built on util_format_time() and util_parse_duration(). */
	{ "now", 0, 0, false, fn_now },
	{ "now_ms", 0, 0, false, fn_now_ms },
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

/* name '(' [expr (',' expr)*] ')' ; p->pos is at the '('. */
static struct expr *parse_call(struct parser *p, size_t name_start, size_t name_len)
{
	const struct func *fn = find_func(p->s + name_start, name_len);
	struct expr *e, *arg;
	char known[256];

	if (fn == NULL) {
		list_funcs(known, sizeof(known));
		return perr(p, name_start, "unknown function \"%.*s\" (known: %s)", (int)name_len,
			    p->s + name_start, known);
	}
	if (++p->depth > MAX_DEPTH) {
		p->depth--;
		return perr(p, name_start, "expression nested too deeply");
	}
	e = expr_new(E_CALL, name_start);
	e->func = fn;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == ')')
		p->pos++;
	else for (;;) {
		if ((arg = parse_expr(p)) == NULL)
			goto fail;
		e->args = xrealloc(e->args, (e->n_args + 1) * sizeof(*e->args));
		e->args[e->n_args++] = arg;
		skip_ws(p);
		if (p->pos >= p->len) {
			unterminated(p);
			goto fail;
		}
		if (p->s[p->pos] == ')') {
			p->pos++;
			break;
		}
		if (p->s[p->pos] != ',') {
			perr(p, p->pos, "expected \",\" or \")\" in the arguments of %s()", fn->name);
			goto fail;
		}
		p->pos++;
	}
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

static struct expr *parse_expr(struct parser *p)
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
	if ((c >= '0' && c <= '9') ||
	    (c == '-' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9'))
		return parse_number_literal(p);
	if (!is_ident_start(c)) {
		if (c == '}')
			return perr(p, p->pos, "empty expression");
		return perr(p, p->pos, "unexpected \"%c\"; expected a path, a literal or a function call", c);
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
