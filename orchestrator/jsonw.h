/* jsonw.h: writing JSON text straight into a strbuf, for the API's hot answers (a saga with its
 * steps and history) without building a jansson tree and dumping it.
 *
 * The output is what jansson's json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(15)) makes of the
 * same values: UTF-8 as is, '"' '\\' and control characters escaped, reals with 15 significant
 * digits. JSON text the store holds (a saga's input and output, a step's kept response) is
 * copied, not parsed and dumped again: jsonw_json() checks it and rewrites only its reals. */
#ifndef SAGAD_JSONW_H
#define SAGAD_JSONW_H

#include <stdint.h>
#include <jansson.h>
#include "util.h"

/* A JSON string: s quoted and escaped. Bytes that are not valid UTF-8 become '?', as
 * util_utf8_sanitize() makes them. */
void jsonw_str(struct strbuf *b, const char *s);
/* The same for len bytes at s (NULs in them written as \u0000). */
void jsonw_strn(struct strbuf *b, const char *s, size_t len);
/* jsonw_str(), or null when s is NULL. */
void jsonw_str_or_null(struct strbuf *b, const char *s);
void jsonw_int(struct strbuf *b, long long v);
/* "2026-11-21T21:03:29.979Z" (UTC, as util_format_time()), or null when ms <= 0. */
void jsonw_time(struct strbuf *b, int64_t ms);
/* The JSON text `text` as a value when it is valid JSON (any value, surrounding whitespace
 * allowed); when it is not, the text as a JSON string; null when text is NULL. Reals are
 * written with 15 significant digits, everything else as it is. */
void jsonw_json(struct strbuf *b, const char *text);
/* 0 when text (len bytes) is one valid JSON value, -1 otherwise. */
int jsonw_check(const char *text, size_t len);

/* A jansson value as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it, byte for byte
 * (objects in insertion order, reals with 17 significant digits), for the texts the engine
 * stores: about 4 times fewer instructions than jansson's dump. */
void jsonw_value(struct strbuf *b, const json_t *v);
/* jsonw_value() in a new string owned by the caller (free()), or NULL when v is NULL. */
char *jsonw_dumps(const json_t *v);
#endif
