/* util.h: allocation that dies on OOM, clocks, durations, ids and a growable string buffer. */
#ifndef SAGAD_UTIL_H
#define SAGAD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

/* Allocation never returns NULL: it logs and aborts. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs "fatal: ..." and aborts: for states that cannot happen. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Wall clock in milliseconds since the epoch (persisted times, deadlines). */
int64_t util_now_ms(void);
/* Monotonic clock in milliseconds (durations). */
int64_t util_mono_ms(void);
/* Writes an RFC 3339 UTC time with milliseconds ("2026-11-21T18:33:42.123Z"); buf >= 32. */
void util_format_time(int64_t ms, char *buf, size_t len);
/* The same 24 bytes (no NUL) in out, for 0 <= ms up to the year 9999; false (out untouched)
 * for other times. */
bool util_time_text(int64_t ms, char out[24]);
/* Parses an RFC 3339 time of len bytes ("2026-11-21T18:33:42.123Z", "2026-11-21t20:33:42+02:00",
 * a space for the T, any number of fraction digits of which milliseconds are kept) or a date
 * alone ("2026-11-21", midnight UTC) into milliseconds since the epoch. Years 0001-9999; no
 * leap second (:60). Returns 0 or SAGAD_EINVAL. */
int util_parse_time(const char *s, size_t len, int64_t *ms);

/* Parses "250ms", "2s", "1.5s", "5m", "2h", "21d" or a bare integer (milliseconds) into
 * milliseconds. Returns 0 or SAGAD_EINVAL. */
int util_parse_duration(const char *s, int64_t *ms);
/* Parses a byte count: "1048576", "64k"/"64KiB", "1M"/"1MiB", "2G"/"2GiB" (powers of 1024).
 * Returns 0 or SAGAD_EINVAL (empty, negative, fractional, unknown unit, overflow). */
int util_parse_size(const char *s, size_t *bytes);
/* snprintf(dst, size, "%s", src) without the formatting machinery (about 300 instructions):
 * copies what fits, always NUL-terminates (size > 0); returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t size);

/* Writes a new 26-character sortable unique id (ULID: time + randomness) plus NUL; buf >= 27. */
void util_new_id(char *buf);
/* Writes the smallest ULID of millisecond ms (time part, then zeros); buf >= 27. */
void util_ulid_at(int64_t ms, char *buf);
/* Fills buf with n random bytes from getrandom(). */
void util_random(void *buf, size_t n);
/* 64 random bits from a fast generator (splitmix64) seeded once by util_random(): for ids
 * that must be unique, not secret (trace span ids). Loop thread only. */
uint64_t util_rand64(void);
/* The strings up to a NULL, concatenated, in a new string owned by the caller (free()). The
 * cheap xasprintf("%s%s...") for hot paths. */
char *util_concat(const char *first, ...) __attribute__((sentinel));

/* The value of a hex digit (either case), or -1. */
int util_hex_digit(int c);
/* Decodes exactly 2 * n hex digits (either case) of s into n bytes. Returns 0, or SAGAD_EINVAL
 * when s is not that (out may then be partly written). */
int util_hex_decode(const char *s, unsigned char *out, size_t n);

/* Replaces every byte that is not part of a valid UTF-8 sequence (a truncated tail, say) with
 * '?', in place, so the text can go into JSON. Returns s. */
char *util_utf8_sanitize(char *s);

/* A growable NUL-terminated byte buffer; embed it and release with strbuf_close(). */
struct strbuf {
	char *data;
	size_t len, cap;
};
void strbuf_init(struct strbuf *b);
void strbuf_close(struct strbuf *b);
void strbuf_adds(struct strbuf *b, const char *s);
void strbuf_addf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for n more bytes and the NUL after them (data + len on is writable): for writers
 * that fill the free space themselves, then set len and the NUL. */
static inline void strbuf_reserve(struct strbuf *b, size_t n);
/* Gives the buffer's string to the caller (free() it) and resets the buffer. */
char *strbuf_detach(struct strbuf *b);
/* The slow path of strbuf_reserve(): grows the buffer. */
void strbuf_grow(struct strbuf *b, size_t n);

/* Inline, so a constant-length add is a few stores, not a call and a memcpy() call: the
 * answers make about 260 adds per saga. */
static inline void strbuf_reserve(struct strbuf *b, size_t n)
{
	if (b->len + n + 1 > b->cap)
		strbuf_grow(b, n);
}

/* Appends n bytes at p. */
static inline void strbuf_add(struct strbuf *b, const void *p, size_t n)
{
	strbuf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

#endif
