/* http_url.c: the HTTP client's table of parsed participant URLs (see http_url.h): a hash
 * table (FNV-1a, chained) of entries, and an LRU list of those no call holds, from which the
 * table evicts when it is full.
 *
 * libcurl (7.88) parses the URL given with CURLOPT_URL on every transfer (curl_url_set() and
 * a curl_url_get() of the normalized URL: some 6,000 instructions per call). A handle given a
 * parsed URL with CURLOPT_CURLU only copies it (curl_url_dup()). Participant URLs repeat, so
 * the client parses each one once, with the flags libcurl uses for CURLOPT_URL (url.c,
 * parseurlandfillconn(): guess the scheme, accept any scheme; the protocol check comes later,
 * per transfer, as before), and keeps it in a table. A URL that does not parse is not kept:
 * that call goes with CURLOPT_URL and fails in libcurl exactly as before. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "http_url.h"
#include "util.h"

#define HTTP_URL_BUCKETS 2048           /* a power of two */

/* A URL parsed once by curl_url_set() and given to the handles of the calls that use it
 * (CURLOPT_CURLU). refs counts the calls that hold it: from the send until the call is
 * recycled, when its handle lets go of it (CURLOPT_CURLU NULL). An entry with refs 0 is
 * pointed at by no handle and may be freed; those are on the LRU list. */
struct http_url {
	struct http_url *hnext;         /* the bucket's chain */
	struct http_url *lprev, *lnext; /* the LRU list, most recent first, refs == 0 only */
	unsigned refs;
	int cached;                     /* in the table; else freed when refs drops to 0 */
	uint32_t hash;
	CURLU *uh;
	char *text;                     /* uh's URL as libcurl writes it (curl_url_get()) */
	char url[];
};

struct http_url_table {
	struct http_url *buckets[HTTP_URL_BUCKETS];
	struct http_url *lru_head, *lru_tail;
	size_t n;                       /* in the table */
};

static uint32_t url_hash(const char *s)
{
	uint32_t h = 2166136261u;               /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void lru_unlink(struct http_url_table *t, struct http_url *u)
{
	if (u->lprev != NULL)
		u->lprev->lnext = u->lnext;
	else
		t->lru_head = u->lnext;
	if (u->lnext != NULL)
		u->lnext->lprev = u->lprev;
	else
		t->lru_tail = u->lprev;
	u->lprev = u->lnext = NULL;
}

static void entry_free(struct http_url *u)
{
	curl_url_cleanup(u->uh);
	curl_free(u->text);
	free(u);
}

/* Takes the least recently used entry that no handle points at out of the table. */
static void evict(struct http_url_table *t)
{
	struct http_url *u = t->lru_tail, **pp;

	lru_unlink(t, u);
	for (pp = &t->buckets[u->hash & (HTTP_URL_BUCKETS - 1)]; *pp != u; pp = &(*pp)->hnext)
		;
	*pp = u->hnext;
	t->n--;
	entry_free(u);
}

struct http_url_table *http_url_table_new(void)
{
	return xcalloc(1, sizeof(struct http_url_table));
}

void http_url_table_free(struct http_url_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < HTTP_URL_BUCKETS; i++) {
		struct http_url *u, *next;

		for (u = t->buckets[i]; u != NULL; u = next) {
			next = u->hnext;
			entry_free(u);
		}
	}
	free(t);
}

struct http_url *http_url_get(struct http_url_table *t, const char *url)
{
	uint32_t h = url_hash(url);
	struct http_url **bucket = &t->buckets[h & (HTTP_URL_BUCKETS - 1)], *u;
	size_t len;
	CURLU *uh;
	char *text = NULL;

	for (u = *bucket; u != NULL; u = u->hnext) {
		if (u->hash == h && strcmp(u->url, url) == 0) {
			if (u->refs++ == 0)
				lru_unlink(t, u);
			return u;
		}
	}
	if ((uh = curl_url()) == NULL)
		fatalx("http: curl_url failed");
	if (curl_url_set(uh, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) !=
	    CURLUE_OK || curl_url_get(uh, CURLUPART_URL, &text, 0) != CURLUE_OK) {
		curl_url_cleanup(uh);
		return NULL;
	}
	len = strlen(url);
	u = xmalloc(sizeof(*u) + len + 1);
	memcpy(u->url, url, len + 1);
	u->uh = uh;
	u->text = text;
	u->hash = h;
	u->refs = 1;
	u->lprev = u->lnext = NULL;
	u->hnext = NULL;
	if (t->n >= HTTP_URL_CACHE_MAX && t->lru_tail != NULL)
		evict(t);
	/* Full of entries that handles point at: this one lives only as long as its call. */
	u->cached = t->n < HTTP_URL_CACHE_MAX;
	if (u->cached) {
		u->hnext = *bucket;
		*bucket = u;
		t->n++;
	}
	return u;
}

void http_url_put(struct http_url_table *t, struct http_url *u)
{
	if (u == NULL || --u->refs > 0)
		return;
	if (!u->cached) {
		entry_free(u);
		return;
	}
	u->lprev = NULL;
	u->lnext = t->lru_head;
	if (t->lru_head != NULL)
		t->lru_head->lprev = u;
	else
		t->lru_tail = u;
	t->lru_head = u;
}

CURLU *http_url_curlu(const struct http_url *u)
{
	return u->uh;
}

const char *http_url_text(const struct http_url *u)
{
	return u->text;
}
