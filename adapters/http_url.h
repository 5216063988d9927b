/* http_url.h: the HTTP client's table of parsed participant URLs. libcurl (7.88) parses the
 * URL given with CURLOPT_URL on every transfer; a handle given a parsed URL (CURLOPT_CURLU)
 * only copies it. Participant URLs repeat, so the client parses each one once here and keeps
 * it, up to a bound, the least recently used evicted first. Used from the caller's loop
 * thread only (adapters/http.c), like the client's calls that hold the entries. */
#ifndef SAGAD_ADAPTER_HTTP_URL_H
#define SAGAD_ADAPTER_HTTP_URL_H

#include <curl/curl.h>

/* Entries no call holds beyond this many are evicted, least recently used first. */
#define HTTP_URL_CACHE_MAX 1024

struct http_url_table;
struct http_url;

/* Returns a new, empty table owned by the caller; free it with http_url_table_free(). */
struct http_url_table *http_url_table_new(void);
/* Frees every entry the table keeps, held or not; release every held entry first
 * (http_url_put()): a holder must not use or put an entry after this. NULL is a no-op. */
void http_url_table_free(struct http_url_table *t);

/* Returns the entry for url with one more reference, or NULL when url does not parse (the
 * caller then gives libcurl the text, which fails there exactly as before). Parsed with the
 * flags libcurl uses for CURLOPT_URL (url.c, parseurlandfillconn(): guess the scheme, accept
 * any scheme; the protocol check comes later, per transfer). Held entries are never evicted;
 * when the table is full of them, the new entry lives only as long as its references. */
struct http_url *http_url_get(struct http_url_table *t, const char *url);
/* Drops one reference; an entry with none may be evicted (or, if the table did not keep it,
 * is freed) from now on. NULL is a no-op. */
void http_url_put(struct http_url_table *t, struct http_url *u);

/* The parsed URL, for CURLOPT_CURLU; the entry's, valid while a reference is held. */
CURLU *http_url_curlu(const struct http_url *u);
/* The URL as libcurl writes it (curl_url_get()), for CURLOPT_URL; the entry's, valid while a
 * reference is held. */
const char *http_url_text(const struct http_url *u);

#endif
