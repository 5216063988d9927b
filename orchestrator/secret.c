/* secret.c: sealing (AES-256-GCM, OpenSSL's libcrypto) and redaction of secret values
 * (secret.h, docs/security.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "error.h"
#include "expr.h"
#include "flow.h"
#include "log.h"
#include "secret.h"
#include "util.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define SEALED_PREFIX "v1:"
#define SEALED_KEY "$sealed"

struct secret_key {
	unsigned char k[SECRET_KEY_LEN];
};

struct secret_set {
	char **forms;       /* every value in each form it can take in text, longest first */
	size_t n, cap;
};

/* ---- keys ------------------------------------------------------------------------------- */

struct secret_key *secret_key_from_bytes(const unsigned char raw[SECRET_KEY_LEN])
{
	struct secret_key *k = xmalloc(sizeof(*k));

	memcpy(k->k, raw, SECRET_KEY_LEN);
	return k;
}

void secret_key_free(struct secret_key *k)
{
	if (k == NULL)
		return;
	OPENSSL_cleanse(k->k, sizeof(k->k));
	free(k);
}

int secret_key_load(const char *path, struct secret_key **out, char *err, size_t errlen)
{
	unsigned char buf[128], raw[SECRET_KEY_LEN + 3];
	struct stat stb;
	size_t n;
	FILE *fp = fopen(path, "rb");
	int rc = SAGAD_EINVAL;

	if (fp == NULL) {
		snprintf(err, errlen, "--secrets-key %s: %s", path, strerror(errno));
		return SAGAD_EIO;
	}
	n = fread(buf, 1, sizeof(buf), fp);
	if (fstat(fileno(fp), &stb) == 0 && (stb.st_mode & 077) != 0)
		log_warn("event=secrets_key_readable file=%s msg=\"other users may read the secrets "
			 "key: chmod 600 it\"", path);
	fclose(fp);
	if (n == SECRET_KEY_LEN) {
		*out = secret_key_from_bytes(buf);
		rc = 0;
		goto out;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (n == 2 * SECRET_KEY_LEN) {
		buf[n] = '\0';
		if (util_hex_decode((const char *)buf, raw, SECRET_KEY_LEN) != 0)
			goto bad;
		*out = secret_key_from_bytes(raw);
		rc = 0;
		goto out;
	}
	if (n == 44 && EVP_DecodeBlock(raw, buf, 44) == SECRET_KEY_LEN + 1 && buf[43] == '=' &&
	    buf[42] != '=') {
		*out = secret_key_from_bytes(raw);
		rc = 0;
		goto out;
	}
bad:
	snprintf(err, errlen, "--secrets-key %s: expected a 256-bit key: 32 bytes, 64 hex digits or "
		 "44 characters of base64 (make one with: openssl rand -hex 32 > FILE; chmod 600 "
		 "FILE)", path);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

/* ---- sealing ---------------------------------------------------------------------------- */

char *secret_seal(const struct secret_key *k, const char *aad, const void *plain, size_t len)
{
	size_t blob_len = NONCE_LEN + len + TAG_LEN;
	unsigned char *blob = xmalloc(blob_len);
	char *out = xmalloc(sizeof(SEALED_PREFIX) + 4 * ((blob_len + 2) / 3) + 1);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, m = 0;

	util_random(blob, NONCE_LEN);
	if (c == NULL ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, k->k, blob) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
	    EVP_EncryptUpdate(c, blob + NONCE_LEN, &n, plain, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, blob + NONCE_LEN + n, &m) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, blob + NONCE_LEN + len) != 1)
		fatalx("secret: AES-256-GCM encryption failed");
	EVP_CIPHER_CTX_free(c);
	memcpy(out, SEALED_PREFIX, strlen(SEALED_PREFIX));
	EVP_EncodeBlock((unsigned char *)out + strlen(SEALED_PREFIX), blob, (int)blob_len);
	free(blob);
	return out;
}

int secret_open(const struct secret_key *k, const char *aad, const char *sealed, char **plain,
		size_t *len)
{
	const char *b64;
	size_t b64_len, blob_len, pad = 0, text_len;
	unsigned char *blob;
	EVP_CIPHER_CTX *c;
	int n = 0, m = 0, ok;

	if (k == NULL || sealed == NULL || strncmp(sealed, SEALED_PREFIX, strlen(SEALED_PREFIX)) != 0)
		return SAGAD_EINVAL;
	b64 = sealed + strlen(SEALED_PREFIX);
	b64_len = strlen(b64);
	if (b64_len == 0 || b64_len % 4 != 0)
		return SAGAD_EINVAL;
	pad = (b64[b64_len - 1] == '=') + (b64[b64_len - 2] == '=');
	blob = xmalloc(b64_len / 4 * 3 + 1);
	if (EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)b64_len) < 0) {
		free(blob);
		return SAGAD_EINVAL;
	}
	blob_len = b64_len / 4 * 3 - pad;
	if (blob_len < NONCE_LEN + TAG_LEN) {
		free(blob);
		return SAGAD_EINVAL;
	}
	text_len = blob_len - NONCE_LEN - TAG_LEN;
	*plain = xmalloc(text_len + 1);
	c = EVP_CIPHER_CTX_new();
	ok = c != NULL &&
	     EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
	     EVP_DecryptInit_ex(c, NULL, NULL, k->k, blob) == 1 &&
	     EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
	     EVP_DecryptUpdate(c, (unsigned char *)*plain, &n, blob + NONCE_LEN, (int)text_len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, blob + NONCE_LEN + text_len) == 1 &&
	     EVP_DecryptFinal_ex(c, (unsigned char *)*plain + n, &m) == 1;
	EVP_CIPHER_CTX_free(c);
	free(blob);
	if (!ok) {
		OPENSSL_cleanse(*plain, text_len + 1);
		free(*plain);
		*plain = NULL;
		return SAGAD_EINVAL;
	}
	(*plain)[text_len] = '\0';
	if (len != NULL)
		*len = text_len;
	return 0;
}

/* ---- redaction -------------------------------------------------------------------------- */

struct secret_set *secret_set_new(void)
{
	return xcalloc(1, sizeof(struct secret_set));
}

void secret_set_free(struct secret_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		OPENSSL_cleanse(s->forms[i], strlen(s->forms[i]));
		free(s->forms[i]);
	}
	free(s->forms);
	free(s);
}

bool secret_set_empty(const struct secret_set *s)
{
	return s == NULL || s->n == 0;
}

/* Keeps forms sorted longest first, so that a value containing another is replaced whole. */
static void add_form(struct secret_set *s, char *form)
{
	size_t len = strlen(form), i;

	if (len < SECRET_MIN_LEN) {
		free(form);
		return;
	}
	for (i = 0; i < s->n; i++)
		if (strcmp(s->forms[i], form) == 0) {
			free(form);
			return;
		}
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8;
		s->forms = xrealloc(s->forms, s->cap * sizeof(*s->forms));
	}
	for (i = s->n; i > 0 && strlen(s->forms[i - 1]) < len; i--)
		s->forms[i] = s->forms[i - 1];
	s->forms[i] = form;
	s->n++;
}

/* RFC 3986 encoding as flow.c writes query values (unreserved stay). */
static char *url_form(const char *v, bool path)
{
	static const char hex[] = "0123456789ABCDEF";
	struct strbuf b;

	strbuf_init(&b);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		bool keep = path ? !(*p <= 0x20 || *p >= 0x7f || strchr("\"<>\\^`{|}", *p) != NULL) :
			    ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL);
		if (keep) {
			strbuf_add(&b, p, 1);
		} else {
			char esc[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			strbuf_add(&b, esc, 3);
		}
	}
	return b.data ? strbuf_detach(&b) : xstrdup("");
}

static char *json_form(const char *v, size_t flags)
{
	json_t *j = json_string(v);
	char *text = j ? json_dumps(j, JSON_ENCODE_ANY | flags) : NULL;
	size_t n;

	json_decref(j);
	if (text == NULL)
		return xstrdup(v);
	n = strlen(text);
	memmove(text, text + 1, n - 2);      /* drop the quotes */
	text[n - 2] = '\0';
	return text;
}

void secret_set_add(struct secret_set *s, const char *value)
{
	if (value == NULL || strlen(value) < SECRET_MIN_LEN)
		return;
	add_form(s, xstrdup(value));
	add_form(s, json_form(value, 0));
	add_form(s, json_form(value, JSON_ENSURE_ASCII));
	add_form(s, url_form(value, false));
	add_form(s, url_form(value, true));
}

void secret_set_add_json(struct secret_set *s, const json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;
	char buf[64];

	switch (json_typeof(v)) {
	case JSON_STRING:
		secret_set_add(s, json_string_value(v));
		break;
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		secret_set_add(s, buf);
		break;
	case JSON_REAL: {
		char *text = json_dumps(v, JSON_ENCODE_ANY);
		secret_set_add(s, text);
		free(text);
		break;
	}
	case JSON_OBJECT:
		json_object_foreach((json_t *)v, k, x)
			secret_set_add_json(s, x);
		break;
	case JSON_ARRAY:
		json_array_foreach(v, i, x)
			secret_set_add_json(s, x);
		break;
	default:
		break;
	}
}

void secret_set_merge(struct secret_set *s, const struct secret_set *from)
{
	for (size_t i = 0; from != NULL && i < from->n; i++)
		add_form(s, xstrdup(from->forms[i]));
}

bool secret_find(const struct secret_set *s, const char *text)
{
	if (secret_set_empty(s) || text == NULL)
		return false;
	for (size_t i = 0; i < s->n; i++)
		if (strstr(text, s->forms[i]) != NULL)
			return true;
	return false;
}

/* Replaces a value's beginning left at the end of b's first `end` bytes (a truncated text). */
static bool scrub_tail(const struct secret_set *s, struct strbuf *b, size_t end)
{
	for (size_t i = 0; i < s->n; i++) {
		size_t flen = strlen(s->forms[i]);

		for (size_t k = flen - 1 < end ? flen - 1 : end; k >= SECRET_MIN_LEN; k--)
			if (memcmp(b->data + end - k, s->forms[i], k) == 0) {
				char *rest = xstrdup(b->data + end);

				b->len = end - k;
				b->data[b->len] = '\0';
				strbuf_adds(b, SECRET_MASK);
				strbuf_adds(b, rest);
				free(rest);
				return true;
			}
	}
	return false;
}

const char *secret_scrub(const struct secret_set *s, const char *text, char **owned)
{
	struct strbuf b;
	bool changed = false;
	size_t dots;

	*owned = NULL;
	if (secret_set_empty(s) || text == NULL)
		return text;
	strbuf_init(&b);
	strbuf_adds(&b, text);
	for (size_t i = 0; i < s->n; i++) {
		const char *f = s->forms[i];
		size_t flen = strlen(f);
		char *hit;

		if (strstr(b.data, f) == NULL)
			continue;
		{
			struct strbuf nb;
			const char *p = b.data;

			strbuf_init(&nb);
			while ((hit = strstr(p, f)) != NULL) {
				strbuf_add(&nb, p, (size_t)(hit - p));
				strbuf_adds(&nb, SECRET_MASK);
				p = hit + flen;
			}
			strbuf_adds(&nb, p);
			strbuf_close(&b);
			b = nb;
		}
		changed = true;
	}
	dots = b.len >= 3 && strcmp(b.data + b.len - 3, "...") == 0 ? 3 : 0;
	if (scrub_tail(s, &b, b.len - dots))
		changed = true;
	if (!changed) {
		strbuf_close(&b);
		return text;
	}
	*owned = strbuf_detach(&b);
	return *owned;
}

/* Scrubs a member of an object or array: in place for containers; a scalar that must change
 * is returned as a new value (the caller stores it), else NULL. */
static json_t *scrub_member(const struct secret_set *s, json_t *x)
{
	json_t *y;

	if (!json_is_string(x) && !json_is_number(x)) {
		secret_scrub_json(s, x);
		return NULL;
	}
	y = secret_scrub_json(s, json_incref(x));
	if (y == x) {
		json_decref(y);
		return NULL;
	}
	return y;
}

json_t *secret_scrub_json(const struct secret_set *s, json_t *v)
{
	const char *k;
	json_t *x, *y;
	size_t i;
	char *owned, buf[64];

	if (secret_set_empty(s) || v == NULL)
		return v;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		json_object_foreach(v, k, x)
			if ((y = scrub_member(s, x)) != NULL)
				json_object_set_new(v, k, y);
		return v;
	case JSON_ARRAY:
		json_array_foreach(v, i, x)
			if ((y = scrub_member(s, x)) != NULL)
				json_array_set_new(v, i, y);
		return v;
	case JSON_STRING:
		secret_scrub(s, json_string_value(v), &owned);
		if (owned == NULL)
			return v;
		json_decref(v);
		v = json_string(owned);
		free(owned);
		return v ? v : json_string(SECRET_MASK);
	case JSON_INTEGER:
	case JSON_REAL:
		if (json_is_integer(v))
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		else
			snprintf(buf, sizeof(buf), "%.17g", json_real_value(v));
		for (i = 0; i < s->n; i++)
			if (strcmp(s->forms[i], buf) == 0) {
				json_decref(v);
				return json_string(SECRET_MASK);
			}
		return v;
	default:
		return v;
	}
}

/* ---- flows and inputs ------------------------------------------------------------------- */

bool secret_flow_has_sensitive(const struct flow *f)
{
	for (size_t i = 0; i < f->n_inputs; i++)
		if (f->inputs[i].sensitive)
			return true;
	return false;
}

bool secret_flow_needs_key(const struct flow *f, char *why, size_t len)
{
	for (size_t i = 0; i < f->n_inputs; i++)
		if (f->inputs[i].sensitive) {
			snprintf(why, len, "flow %s marks input field %s sensitive", f->name,
				 f->inputs[i].name);
			return true;
		}
	for (size_t i = 0; i < f->n_participants; i++) {
		const struct participant *p = &f->participants[i];

		if (p->kind != PARTICIPANT_KAFKA)
			continue;
		for (size_t j = 0; j < p->n_headers; j++)
			if (p->headers[j].secret) {
				snprintf(why, len, "flow %s: Kafka participant %s takes header %s from the "
					 "environment (kept in the outbox)", f->name, p->name,
					 p->headers[j].name);
				return true;
			}
	}
	return false;
}

void secret_set_add_saga(struct secret_set *s, const struct flow *f, const json_t *input)
{
	json_t *empty = NULL;
	char err[128];

	for (size_t i = 0; i < f->n_inputs; i++)
		if (f->inputs[i].sensitive)
			secret_set_add_json(s, json_object_get(input, f->inputs[i].name));
	for (size_t i = 0; i < f->n_participants; i++) {
		const struct participant *p = &f->participants[i];

		for (size_t j = 0; j < p->n_headers; j++) {
			char *v;

			if (!p->headers[j].secret)
				continue;
			if (empty == NULL)
				empty = json_object();
			/* Resolved at load time: a constant. */
			v = tmpl_eval_string(p->headers[j].value, empty, err, sizeof(err));
			secret_set_add(s, v);
			free(v);
		}
	}
	json_decref(empty);
}

static bool is_sensitive(const struct flow *f, const char *name)
{
	for (size_t i = 0; f != NULL && i < f->n_inputs; i++)
		if (f->inputs[i].sensitive && strcmp(f->inputs[i].name, name) == 0)
			return true;
	return false;
}

static bool is_sealed(const json_t *v)
{
	return json_is_object(v) && json_object_size(v) == 1 &&
	       json_is_string(json_object_get(v, SEALED_KEY));
}

/* Whether v holds a secret of s (a string containing one, or a number equal to one). */
static bool holds_secret(const struct secret_set *s, const json_t *v)
{
	char *text;
	bool found;

	if (secret_set_empty(s))
		return false;
	text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	found = text != NULL && secret_find(s, text);
	free(text);
	return found;
}

static char *field_aad(const char *saga_id, const char *field)
{
	return xasprintf("sagad input %s %s", saga_id, field);
}

json_t *secret_seal_input(const struct secret_key *k, const char *saga_id, const struct flow *f,
			  const json_t *input, const struct secret_set *inherited)
{
	json_t *out = json_object(), *v;
	const char *name;

	json_object_foreach((json_t *)input, name, v) {
		char *text, *aad, *sealed;

		if (!is_sensitive(f, name) && !holds_secret(inherited, v)) {
			json_object_set(out, name, v);
			continue;
		}
		if (k == NULL) {
			json_object_set_new(out, name, json_string(SECRET_MASK));
			continue;
		}
		text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		aad = field_aad(saga_id, name);
		sealed = secret_seal(k, aad, text, strlen(text));
		json_object_set_new(out, name, json_pack("{s:s}", SEALED_KEY, sealed));
		OPENSSL_cleanse(text, strlen(text));
		free(text);
		free(aad);
		free(sealed);
	}
	return out;
}

int secret_open_input(const struct secret_key *k, const char *saga_id, json_t *input,
		      struct secret_set *found, char *err, size_t errlen)
{
	const char *name;
	json_t *v;

	json_object_foreach(input, name, v) {
		char *aad, *plain = NULL;
		json_t *value;
		int rc;

		if (!is_sealed(v))
			continue;
		if (k == NULL) {
			snprintf(err, errlen, "input field %s is sealed and sagad has no secrets key: "
				 "start it with --secrets-key FILE (the key it was stored with)", name);
			return SAGAD_ENOKEY;
		}
		aad = field_aad(saga_id, name);
		rc = secret_open(k, aad, json_string_value(json_object_get(v, SEALED_KEY)), &plain, NULL);
		free(aad);
		value = rc == 0 ? json_loads(plain, JSON_DECODE_ANY, NULL) : NULL;
		if (plain != NULL) {
			OPENSSL_cleanse(plain, strlen(plain));
			free(plain);
		}
		if (value == NULL) {
			snprintf(err, errlen, "input field %s does not open with this secrets key (another "
				 "key, or the value was altered)", name);
			return SAGAD_EINVAL;
		}
		if (found != NULL)
			secret_set_add_json(found, value);
		json_object_set_new(input, name, value);
	}
	return 0;
}

void secret_mask_input(const struct flow *f, json_t *input)
{
	const char *name;
	json_t *v;

	if (!json_is_object(input))
		return;
	json_object_foreach(input, name, v)
		if (is_sealed(v) || is_sensitive(f, name))
			json_object_set_new(input, name, json_string(SECRET_MASK));
}
