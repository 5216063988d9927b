/* secret.h: values that must never be written in clear: input fields a flow marks
 * `sensitive: true` and participant headers whose value comes from the environment
 * (docs/security.md).
 *
 * Two tools:
 *  - sealing (AES-256-GCM, key from --secrets-key) for what the store must keep to resume a
 *    saga after a restart: the sensitive fields of its input, and Kafka outbox rows that carry
 *    a secret. A sealed value is bound to its place (saga id, field) by the AEAD's associated
 *    data, so it cannot be moved to another saga or field.
 *  - redaction for everything else sagad writes about a saga (history, step rows, output,
 *    errors, logs, API answers, lifecycle events): each secret value, in clear, JSON-escaped
 *    or URL-encoded, becomes "***". */
#ifndef SAGAD_SECRET_H
#define SAGAD_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define SECRET_MASK "***"
/* Shorter values are sealed and masked in the input but not searched for in free text (they
 * would match everywhere; a secret that short is not one). */
#define SECRET_MIN_LEN 4
#define SECRET_KEY_LEN 32

struct flow;
struct secret_key;

/* Reads a 256-bit key: a file holding 32 raw bytes, or 64 hex digits, or 44 characters of
 * base64 (a trailing newline is ignored). Returns 0 and a key owned by the caller
 * (secret_key_free()), or SAGAD_EIO / SAGAD_EINVAL with a message in err. */
int secret_key_load(const char *path, struct secret_key **out, char *err, size_t errlen);
struct secret_key *secret_key_from_bytes(const unsigned char raw[SECRET_KEY_LEN]);
void secret_key_free(struct secret_key *k);

/* Returns "v1:" + base64(nonce | ciphertext | tag), malloc()ed. aad names the value's place. */
char *secret_seal(const struct secret_key *k, const char *aad, const void *plain, size_t len);
/* Opens what secret_seal() made with the same key and aad. Returns 0 and *plain (malloc()ed,
 * NUL-terminated, *len bytes before the NUL), or SAGAD_EINVAL (not a sealed value, another
 * key, another place, or tampered with). */
int secret_open(const struct secret_key *k, const char *aad, const char *sealed, char **plain,
		size_t *len);

/* A set of secret values to redact, each kept in the forms it can take in text. */
struct secret_set;
/* Returns an empty set owned by the caller (secret_set_free()). */
struct secret_set *secret_set_new(void);
void secret_set_free(struct secret_set *s);
/* Adds a value (ignored when shorter than SECRET_MIN_LEN or already there). */
void secret_set_add(struct secret_set *s, const char *value);
/* Adds a JSON value: a string, a number's text, or every leaf of an object or array. */
void secret_set_add_json(struct secret_set *s, const json_t *v);
void secret_set_merge(struct secret_set *s, const struct secret_set *from);
/* True for NULL or a set without values. */
bool secret_set_empty(const struct secret_set *s);

/* True when text contains a value of s (in any form). */
bool secret_find(const struct secret_set *s, const char *text);
/* Redacts text: returns text itself when there is nothing to hide (or text or s is NULL),
 * else a new string stored in *owned (free() it; *owned is NULL otherwise). A value cut off
 * at the end of the text (before a "..." added by truncation) is redacted too. */
const char *secret_scrub(const struct secret_set *s, const char *text, char **owned);
/* Redacts a JSON value in place (strings and numbers) and returns it. NULL set: unchanged. */
json_t *secret_scrub_json(const struct secret_set *s, json_t *v);

/* ---- flows and saga inputs ------------------------------------------------------------ */

/* True when the flow declares a sensitive input field. */
bool secret_flow_has_sensitive(const struct flow *f);
/* True when sagas of f may need to seal values for the store (sensitive input fields, or a
 * Kafka participant with headers from the environment, written to the outbox); why names the
 * first reason ("input field payAccount is sensitive"). */
bool secret_flow_needs_key(const struct flow *f, char *why, size_t len);
/* Adds the secrets of a saga of f: its input's sensitive fields and f's participant headers
 * from the environment. */
void secret_set_add_saga(struct secret_set *s, const struct flow *f, const json_t *input);

/* The input as the store keeps it: a new object in which each sensitive field, and each field
 * whose value contains a value of inherited (a parent's secrets passed to a sub-flow), is
 * {"$sealed": "v1:..."}. Without a key such fields are stored as "***" (the saga cannot
 * resume them; the engine refuses such starts, see engine_start()). */
json_t *secret_seal_input(const struct secret_key *k, const char *saga_id, const struct flow *f,
			  const json_t *input, const struct secret_set *inherited);
/* Opens the sealed fields of an input read from the store, in place, adding their values to
 * found (may be NULL). Returns 0, or SAGAD_ENOKEY / SAGAD_EINVAL with a message in err (no
 * key, or not this key). */
int secret_open_input(const struct secret_key *k, const char *saga_id, json_t *input,
		      struct secret_set *found, char *err, size_t errlen);
/* The input as the API shows it, in place: sensitive fields and sealed fields become "***".
 * f may be NULL (sealed fields only). */
void secret_mask_input(const struct flow *f, json_t *input);

#endif
