/* util.c: allocation, clocks, durations, ids, string buffers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void util_format_time(int64_t ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
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

char *util_concat(const char *first, ...)
{
	va_list ap;
	const char *p;
	size_t n = 0, k;
	char *out, *w;

	va_start(ap, first);
	for (p = first; p != NULL; p = va_arg(ap, const char *))
		n += strlen(p);
	va_end(ap);
	out = w = xmalloc(n + 1);
	va_start(ap, first);
	for (p = first; p != NULL; p = va_arg(ap, const char *)) {
		k = strlen(p);
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

static void grow(struct strbuf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	b->cap = b->cap ? b->cap : 64;
	while (b->cap < need)
		b->cap *= 2;
	b->data = xrealloc(b->data, b->cap);
}

void strbuf_add(struct strbuf *b, const void *p, size_t n)
{
	grow(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void strbuf_adds(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

void strbuf_addf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *strbuf_detach(struct strbuf *b)
{
	char *s = b->data ? b->data : xstrdup("");

	strbuf_init(b);
	return s;
}

char *util_utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p != '\0') {
		int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 :
			(*p & 0xf8) == 0xf0 ? 4 : 0;
		int i;

		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				break;
		if (n == 0 || i < n || (n == 2 && *p < 0xc2)) {
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
