/* jsonw.c: JSON text straight into a strbuf (see jsonw.h). */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jsonw.h"

#define MAX_DEPTH 2048   /* jansson's default parser depth */

static const char hex[] = "0123456789ABCDEF";

/* The bytes a JSON string holds as they are: printable ASCII (and DEL) but '"' and '\\'. */
static const unsigned char plain[256] = {
	[0x20 ... 0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1,   /* '"' 0x22, '\\' 0x5c */
};

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 when it is not one. The rules
 * of RFC 3629 (no overlong forms, no surrogates, nothing above U+10FFFF), as jansson. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))
			return 0;   /* overlong, or a surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
			return 0;   /* overlong, or above U+10FFFF */
		return 4;
	}
	return 0;
}

/* Writes into the buffer's free space directly: room for the rest of the text as it is and
 * the closing quote is kept reserved, and each escape reserves its own extra bytes (one
 * strbuf_add() per run and escape cost about 50 instructions each; a history row's response
 * summary is JSON, a quote every few bytes). */
static void put_str(struct strbuf *b, const char *s, size_t left)
{
	const unsigned char *p = (const unsigned char *)s, *run = p, *end = p + left;
	char *o;

	strbuf_reserve(b, left + 2);
	o = b->data + b->len;
	*o++ = '"';
	for (;;) {
		unsigned c;
		size_t k;

		/* the tight loop, where most bytes go: 4 at a time, then 1 */
		while (end - p >= 4 && (plain[p[0]] & plain[p[1]] & plain[p[2]] & plain[p[3]]))
			p += 4;
		while (p < end && plain[*p])
			p++;
		if (p == end)
			break;
		c = *p;
		left = (size_t)(end - p);
		if (c >= 0x80 && (k = utf8_len(p, left)) > 0) {
			p += k;
			continue;
		}
		memcpy(o, run, (size_t)(p - run));
		o += p - run;
		/* this byte becomes at most 6; the left - 1 after it and the quote stay covered */
		b->len = (size_t)(o - b->data);
		strbuf_reserve(b, left + 6);
		o = b->data + b->len;
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			if (c < 0x20) {
				memcpy(o, "u00", 3);
				o[3] = hex[c >> 4];
				o[4] = hex[c & 15];
				o += 5;
			} else {
				o[-1] = '?';   /* not UTF-8 (util_utf8_sanitize()) */
			}
		}
		p++;
		run = p;
	}
	memcpy(o, run, (size_t)(p - run));
	o += p - run;
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->data);
}

void jsonw_str(struct strbuf *b, const char *s)
{
	put_str(b, s, strlen(s));
}

void jsonw_strn(struct strbuf *b, const char *s, size_t len)
{
	put_str(b, s, len);
}

void jsonw_str_or_null(struct strbuf *b, const char *s)
{
	if (s == NULL)
		strbuf_add(b, "null", 4);
	else
		jsonw_str(b, s);
}

/* Digits by hand: snprintf's machinery cost about 700 instructions per number, and an
 * answer writes a dozen numbers per history row. */
void jsonw_int(struct strbuf *b, long long v)
{
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, t;
	char *o, *end;

	/* straight into the buffer (at most 20 bytes): no copy, no memcpy() call */
	strbuf_reserve(b, 20);
	o = b->data + b->len;
	if (v < 0)
		*o++ = '-';
	for (t = u, o++; t >= 10; t /= 10)
		o++;
	end = o;
	do {
		*--o = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	*end = '\0';
	b->len = (size_t)(end - b->data);
}

void jsonw_time(struct strbuf *b, int64_t ms)
{
	char t[26];

	if (ms <= 0) {
		strbuf_add(b, "null", 4);
		return;
	}
	if (!util_time_text(ms, t + 1)) {   /* outside what the fixed format holds */
		char buf[40];
		util_format_time(ms, buf, sizeof(buf));
		jsonw_str(b, buf);
		return;
	}
	t[0] = '"';
	t[25] = '"';
	strbuf_add(b, t, sizeof(t));
}

/* --- checking (and copying) JSON text --------------------------------------------------- */

/* A real as jansson's jsonp_dtostr() writes it with precision digits (15 or 17). */
static int format_real_digits(double v, int precision, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%.*g", precision, v);
	char *e, *start, *end;

	if (n < 0 || (size_t)n + 3 >= size)
		return -1;
	if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
		memcpy(buf + n, ".0", 3);
		n += 2;
	}
	e = strchr(buf, 'e');
	if (e != NULL) {   /* no '+' and no leading zeros in the exponent */
		start = e + 1;
		end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, (size_t)(buf + n - end) + 1);
			n -= (int)(end - start);
		}
	}
	return n;
}

static int format_real(double v, char *buf, size_t size)
{
	return format_real_digits(v, 15, buf, size);
}

/* --- jansson values ------------------------------------------------------------------- */

void jsonw_value(struct strbuf *b, const json_t *v)
{
	char buf[64];
	const char *key;
	json_t *item;
	size_t i, key_len;
	int n;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		strbuf_add(b, "{", 1);
		i = 0;
		/* json_object_foreach() walks in insertion order, as json_dumps() without
		 * JSON_SORT_KEYS does; a key is key_len bytes (it may hold a NUL, from a YAML
		 * "\0"), as json_dumps() writes it. */
		json_object_keylen_foreach((json_t *)v, key, key_len, item) {
			if (i++ > 0)
				strbuf_add(b, ",", 1);
			put_str(b, key, key_len);
			strbuf_add(b, ":", 1);
			jsonw_value(b, item);
		}
		strbuf_add(b, "}", 1);
		break;
	case JSON_ARRAY:
		strbuf_add(b, "[", 1);
		json_array_foreach(v, i, item) {
			if (i > 0)
				strbuf_add(b, ",", 1);
			jsonw_value(b, item);
		}
		strbuf_add(b, "]", 1);
		break;
	case JSON_STRING:
		put_str(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		jsonw_int(b, (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		n = format_real_digits(json_real_value(v), 17, buf, sizeof(buf));
		strbuf_add(b, buf, n > 0 ? (size_t)n : 0);
		break;
	case JSON_TRUE:
		strbuf_add(b, "true", 4);
		break;
	case JSON_FALSE:
		strbuf_add(b, "false", 5);
		break;
	case JSON_NULL:
		strbuf_add(b, "null", 4);
		break;
	}
}

char *jsonw_dumps(const json_t *v)
{
	struct strbuf b;

	if (v == NULL)
		return NULL;
	strbuf_init(&b);
	jsonw_value(&b, v);
	return strbuf_detach(&b);
}

struct scan {
	const unsigned char *p, *end;
	struct strbuf *out;             /* NULL: check only */
	const unsigned char *run;       /* start of the bytes not copied yet */
};

static void flush_run(struct scan *sc)
{
	if (sc->out != NULL && sc->p > sc->run)
		strbuf_add(sc->out, sc->run, (size_t)(sc->p - sc->run));
	sc->run = sc->p;
}

static int hex4(const unsigned char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (c | 0x20) - 'a' + 10;
		else
			return -1;
		*v = (*v << 4) | d;
	}
	return 0;
}

/* A string token at sc->p ('"'), kept as it is. */
static int scan_string(struct scan *sc)
{
	const unsigned char *p = sc->p + 1, *end = sc->end;
	unsigned u, lo;
	size_t k;

	while (p < end) {
		unsigned c = *p;
		if (c == '"') {
			sc->p = p + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			if (p + 1 >= end)
				return -1;
			switch (p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				continue;
			case 'u':
				if (end - p < 6 || hex4(p + 2, &u) != 0 || u == 0)
					return -1;  /* jansson refuses \u0000 */
				p += 6;
				if (u >= 0xdc00 && u <= 0xdfff)
					return -1;  /* a lone low surrogate */
				if (u >= 0xd800 && u <= 0xdbff) {
					if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
					    hex4(p + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
						return -1;
					p += 6;
				}
				continue;
			default:
				return -1;
			}
		}
		if (c >= 0x80) {
			if ((k = utf8_len(p, (size_t)(end - p))) == 0)
				return -1;
			p += k;
			continue;
		}
		p++;
	}
	return -1;
}

static bool digit(const unsigned char *p, const unsigned char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

/* The end of the number token (JSON's grammar) at p, or NULL when there is none; *real tells
 * whether it has a fraction or an exponent. */
static const unsigned char *number_end(const unsigned char *p, const unsigned char *end,
				       bool *real)
{
	*real = false;
	if (p < end && *p == '-')
		p++;
	if (!digit(p, end))
		return NULL;
	if (*p == '0')
		p++;
	else
		while (digit(p, end))
			p++;
	if (p < end && *p == '.') {
		*real = true;
		p++;
		if (!digit(p, end))
			return NULL;
		while (digit(p, end))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		*real = true;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!digit(p, end))
			return NULL;
		while (digit(p, end))
			p++;
	}
	return p;
}

/* A number token: integers are kept as they are (within long long, like jansson), reals are
 * written again with 15 significant digits. */
static int scan_number(struct scan *sc)
{
	const unsigned char *s = sc->p, *p;
	bool real;
	char tok[80], buf[40];
	size_t len;

	if ((p = number_end(s, sc->end, &real)) == NULL)
		return -1;
	len = (size_t)(p - s);
	if (!real && len < 18 && !(len == 2 && s[0] == '-' && s[1] == '0')) {
		sc->p = p;      /* a small integer: as it is */
		return 0;
	}
	if (len >= sizeof(tok))
		return -1;
	memcpy(tok, s, len);
	tok[len] = '\0';
	if (!real) {
		long long v;
		errno = 0;
		v = strtoll(tok, NULL, 10);
		if (errno == ERANGE)
			return -1;  /* jansson: "too big integer" */
		flush_run(sc);
		sc->p = p;
		sc->run = p;
		if (sc->out != NULL)
			jsonw_int(sc->out, v);
		return 0;
	} else {
		double v;
		int n;
		errno = 0;
		v = strtod(tok, NULL);
		if ((errno == ERANGE && fabs(v) > 1.0) || !isfinite(v))
			return -1;  /* jansson: "real number overflow" */
		if ((n = format_real(v, buf, sizeof(buf))) < 0)
			return -1;
		flush_run(sc);
		sc->p = p;
		sc->run = p;
		if (sc->out != NULL)
			strbuf_add(sc->out, buf, (size_t)n);
		return 0;
	}
}

static int scan_literal(struct scan *sc, const char *word, size_t n)
{
	if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
		return -1;
	sc->p += n;
	return 0;
}

static void skip_space_run(struct scan *sc)
{
	const unsigned char *p = sc->p;

	flush_run(sc);
	while (p < sc->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	sc->p = p;
	sc->run = p;
}

/* Inline: stored JSON text is compact, so there is almost never a space to skip. */
static inline void skip_space(struct scan *sc)
{
	if (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' ||
				*sc->p == '\r'))
		skip_space_run(sc);
}

/* One JSON value, then nothing but whitespace. */
static int scan(struct scan *sc)
{
	char stack[MAX_DEPTH];  /* '{' or '[' per open container */
	int depth = 0;

	for (;;) {
		/* a value */
		skip_space(sc);
		if (sc->p >= sc->end)
			return -1;
		switch (*sc->p) {
		case '{':
		case '[':
			if (depth == MAX_DEPTH)
				return -1;
			stack[depth++] = (char)*sc->p;
			sc->p++;
			skip_space(sc);
			if (sc->p < sc->end && *sc->p == (stack[depth - 1] == '{' ? '}' : ']')) {
				sc->p++;
				depth--;
				break;  /* an empty container is a complete value */
			}
			if (stack[depth - 1] == '{') {
				if (sc->p >= sc->end || *sc->p != '"' || scan_string(sc) != 0)
					return -1;
				skip_space(sc);
				if (sc->p >= sc->end || *sc->p != ':')
					return -1;
				sc->p++;
			}
			continue;       /* the first member's value */
		case '"':
			if (scan_string(sc) != 0)
				return -1;
			break;
		case 't':
			if (scan_literal(sc, "true", 4) != 0)
				return -1;
			break;
		case 'f':
			if (scan_literal(sc, "false", 5) != 0)
				return -1;
			break;
		case 'n':
			if (scan_literal(sc, "null", 4) != 0)
				return -1;
			break;
		default:
			if (scan_number(sc) != 0)
				return -1;
			break;
		}
		/* after a complete value: close containers, or the next member */
		for (;;) {
			skip_space(sc);
			if (depth == 0)
				return sc->p == sc->end ? 0 : -1;
			if (sc->p >= sc->end)
				return -1;
			if (*sc->p == (stack[depth - 1] == '{' ? '}' : ']')) {
				sc->p++;
				depth--;
				continue;
			}
			if (*sc->p != ',')
				return -1;
			sc->p++;
			if (stack[depth - 1] == '{') {
				skip_space(sc);
				if (sc->p >= sc->end || *sc->p != '"' || scan_string(sc) != 0)
					return -1;
				skip_space(sc);
				if (sc->p >= sc->end || *sc->p != ':')
					return -1;
				sc->p++;
			}
			break;          /* the next value */
		}
	}
}

int jsonw_check(const char *text, size_t len)
{
	struct scan sc = { (const unsigned char *)text, (const unsigned char *)text + len, NULL,
			   (const unsigned char *)text };

	return scan(&sc);
}

void jsonw_json(struct strbuf *b, const char *text)
{
	size_t len, mark = b->len;
	struct scan sc;

	if (text == NULL) {
		strbuf_add(b, "null", 4);
		return;
	}
	len = strlen(text);
	sc.p = sc.run = (const unsigned char *)text;
	sc.end = sc.p + len;
	sc.out = b;
	if (scan(&sc) == 0) {
		flush_run(&sc);
		return;
	}
	b->len = mark;   /* not JSON: the text as a string, as the API always showed it */
	if (b->data != NULL)
		b->data[mark] = '\0';
	jsonw_str(b, text);
}
