/* util.c: allocation, clocks, durations, ids, string buffers. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include "error.h"
#include "util.h"

static void oom(size_t n)
{
	fprintf(stderr, "level=error event=out_of_memory bytes=%zu\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t n)
{
	void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
	if (p == NULL)
		oom(nmemb * n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		oom(0);
	va_end(ap);
	return s;
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	fputs("level=error event=fatal msg=\"", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\"\n", stderr);
	abort();
}

int64_t util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put2(char *p, unsigned v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
}

bool util_time_text(int64_t ms, char out[24])
{
	/* the date of the last day written by this thread: an answer's times share their day */
	static __thread int64_t cached_days = -1;
	static __thread char cached_date[11];
	int64_t days, secs, z, era, y;
	unsigned doe, yoe, doy, mp, d, m, msec;

	if (ms < 0)
		return false;
	msec = (unsigned)(ms % 1000);
	secs = ms / 1000;
	days = secs / 86400;
	secs %= 86400;
	if (days == cached_days) {
		memcpy(out, cached_date, 11);
		goto time_of_day;
	}
	/* days since 1970-01-01 to a civil date (H. Hinnant's civil_from_days) */
	z = days + 719468;
	era = z / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	if (y > 9999)
		return false;
	put2(out, (unsigned)(y / 100));
	put2(out + 2, (unsigned)(y % 100));
	out[4] = '-';
	put2(out + 5, m);
	out[7] = '-';
	put2(out + 8, d);
	out[10] = 'T';
	memcpy(cached_date, out, 11);
	cached_days = days;
time_of_day:
	put2(out + 11, (unsigned)(secs / 3600));
	out[13] = ':';
	put2(out + 14, (unsigned)(secs / 60 % 60));
	out[16] = ':';
	put2(out + 17, (unsigned)(secs % 60));
	out[19] = '.';
	out[20] = (char)('0' + msec / 100);
	put2(out + 21, msec % 100);
	out[23] = 'Z';
	return true;
}

void util_format_time(int64_t ms, char *buf, size_t len)
{
	int64_t rem = ms % 1000;
	time_t secs;
	struct tm tm;

	/* without gmtime_r() and snprintf() (about 1,800 instructions) in the common case */
	if (len >= 25 && util_time_text(ms, buf)) {
		buf[24] = '\0';
		return;
	}

	if (rem < 0)                    /* before 1970: floor, so the milliseconds stay positive */
		rem += 1000;
	secs = (time_t)((ms - rem) / 1000);
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool read_digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
	int v = 0;

	if (*pos + (size_t)n > len)
		return false;
	for (int i = 0; i < n; i++) {
		char c = s[*pos + (size_t)i];
		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*pos += (size_t)n;
	*out = v;
	return true;
}

static bool expect_char(const char *s, size_t len, size_t *pos, const char *set)
{
	if (*pos >= len || strchr(set, s[*pos]) == NULL || s[*pos] == '\0')
		return false;
	(*pos)++;
	return true;
}

int util_parse_time(const char *s, size_t len, int64_t *ms)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, oh = 0, om = 0, sign = 0;
	size_t pos = 0;
	bool leap;

	if (!read_digits(s, len, &pos, 4, &y) || !expect_char(s, len, &pos, "-") ||
	    !read_digits(s, len, &pos, 2, &mo) || !expect_char(s, len, &pos, "-") ||
	    !read_digits(s, len, &pos, 2, &d))
		return SAGAD_EINVAL;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap))
		return SAGAD_EINVAL;
	if (pos < len) {
		if (!expect_char(s, len, &pos, "Tt ") || !read_digits(s, len, &pos, 2, &h) ||
		    !expect_char(s, len, &pos, ":") || !read_digits(s, len, &pos, 2, &mi) ||
		    !expect_char(s, len, &pos, ":") || !read_digits(s, len, &pos, 2, &sec))
			return SAGAD_EINVAL;
		if (h > 23 || mi > 59 || sec > 59)
			return SAGAD_EINVAL;
		if (pos < len && s[pos] == '.') {
			int digits = 0;
			pos++;
			while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
				if (digits++ < 3)
					frac = frac * 10 + (s[pos] - '0');
				pos++;
			}
			if (digits == 0)
				return SAGAD_EINVAL;
			for (; digits < 3; digits++)
				frac *= 10;
		}
		if (pos < len && (s[pos] == 'Z' || s[pos] == 'z')) {
			pos++;
		} else if (pos < len && (s[pos] == '+' || s[pos] == '-')) {
			sign = s[pos++] == '-' ? -1 : 1;
			if (!read_digits(s, len, &pos, 2, &oh) || !expect_char(s, len, &pos, ":") ||
			    !read_digits(s, len, &pos, 2, &om) || oh > 23 || om > 59)
				return SAGAD_EINVAL;
		} else {
			return SAGAD_EINVAL;    /* a time needs its offset */
		}
		if (pos != len)
			return SAGAD_EINVAL;
	}
	*ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
	       sign * (oh * 3600 + om * 60)) * 1000 + frac;
	return 0;
}

int util_parse_duration(const char *s, int64_t *ms)
{
	char *end;
	double v, mult;

	if (s == NULL || *s == '\0')
		return SAGAD_EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || v < 0 || !isfinite(v))
		return SAGAD_EINVAL;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60e3;
	else if (strcmp(end, "h") == 0)
		mult = 3600e3;
	else if (strcmp(end, "d") == 0)
		mult = 86400e3;
	else
		return SAGAD_EINVAL;
	if (v * mult > 9.2e15)
		return SAGAD_EINVAL;
	*ms = (int64_t)llround(v * mult);
	return 0;
}

int util_parse_size(const char *s, size_t *bytes)
{
	static const struct { const char *unit; unsigned shift; } units[] = {
		{ "", 0 }, { "b", 0 }, { "k", 10 }, { "kib", 10 }, { "m", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gib", 30 },
	};
	unsigned long long v;
	char *end;

	if (s == NULL || !isdigit((unsigned char)*s))
		return SAGAD_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return SAGAD_EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].unit) != 0)
			continue;
		if (v > (SIZE_MAX >> units[i].shift))
			return SAGAD_EINVAL;
		*bytes = (size_t)v << units[i].shift;
		return 0;
	}
	return SAGAD_EINVAL;
}

void util_random(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fatalx("getrandom: %s", strerror(errno));
		}
		p += r;
		n -= (size_t)r;
	}
}

uint64_t util_rand64(void)
{
	static uint64_t state;
	static bool seeded;
	uint64_t z;

	if (!seeded) {
		util_random(&state, sizeof(state));
		seeded = true;
	}
	z = (state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

size_t util_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t k = n < size - 1 ? n : size - 1;

		memcpy(dst, src, k);
		dst[k] = '\0';
	}
	return n;
}

char *util_concat(const char *first, ...)
{
	size_t lens[8], n = 0, k, i = 0;   /* the first pieces' lengths, measured once */
	va_list ap;
	const char *p;
	char *out, *w;

	va_start(ap, first);
	for (p = first; p != NULL; p = va_arg(ap, const char *), i++) {
		k = strlen(p);
		if (i < 8)
			lens[i] = k;
		n += k;
	}
	va_end(ap);
	out = w = xmalloc(n + 1);
	va_start(ap, first);
	i = 0;
	for (p = first; p != NULL; p = va_arg(ap, const char *), i++) {
		k = i < 8 ? lens[i] : strlen(p);
		memcpy(w, p, k);
		w += k;
	}
	va_end(ap);
	*w = '\0';
	return out;
}

void util_new_id(char *buf)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	static int64_t last_ms;
	static unsigned char last_rand[10];
	unsigned char rnd[10];
	int64_t t = util_now_ms();
	int i;

	/* Monotonic within one millisecond: increment the random part (ULID spec). */
	if (t <= last_ms) {
		t = last_ms;
		memcpy(rnd, last_rand, sizeof(rnd));
		for (i = 9; i >= 0 && ++rnd[i] == 0; i--)
			;
	} else {
		util_random(rnd, sizeof(rnd));
	}
	last_ms = t;
	memcpy(last_rand, rnd, sizeof(rnd));
	for (i = 9; i >= 0; i--) {
		buf[i] = alphabet[t & 31];
		t >>= 5;
	}
	/* 80 random bits -> 16 characters. */
	for (i = 0; i < 16; i++) {
		int bit = i * 5, byte = bit / 8, off = bit % 8;
		unsigned v = (unsigned)rnd[byte] << 8 | (byte + 1 < 10 ? rnd[byte + 1] : 0);
		buf[10 + i] = alphabet[(v >> (11 - off)) & 31];
	}
	buf[26] = '\0';
}

void strbuf_init(struct strbuf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void strbuf_close(struct strbuf *b)
{
	free(b->data);
	strbuf_init(b);
}

void strbuf_grow(struct strbuf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	b->cap = b->cap ? b->cap : 64;
	while (b->cap < need)
		b->cap *= 2;
	b->data = xrealloc(b->data, b->cap);
}

void strbuf_adds(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

void strbuf_addf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* Formats into the free space first; only a result that does not fit is formatted
	 * again after growing (one pass in the common case). */
	strbuf_grow(b, 63);
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->data[b->len] = '\0';
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		strbuf_grow(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

char *strbuf_detach(struct strbuf *b)
{
	char *s = b->data ? b->data : xstrdup("");

	strbuf_init(b);
	return s;
}

int util_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int util_hex_decode(const char *s, unsigned char *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return SAGAD_EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = util_hex_digit(s[2 * i]), lo = util_hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return SAGAD_EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

char *util_utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p != '\0') {
		uint32_t cp;
		int n, i;

		if (*p < 0x80) {   /* ASCII, most of the text: nothing to check */
			p++;
			continue;
		}
		n = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
		cp = n == 2 ? (*p & 0x1fu) : n == 3 ? (*p & 0x0fu) : (*p & 0x07u);

		for (i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				break;
			cp = cp << 6 | (p[i] & 0x3fu);
		}
		/* What JSON parsers (jansson) accept: no overlong form, no surrogate, <= U+10FFFF. */
		if (n == 0 || i < n || (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
	return s;
}

void util_ulid_at(int64_t ms, char *buf)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

	for (int i = 9; i >= 0; i--) {
		buf[i] = alphabet[ms & 31];
		ms >>= 5;
	}
	memset(buf + 10, '0', 16);
	buf[26] = '\0';
}
