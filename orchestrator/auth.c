/* auth.c: bearer tokens and JWTs for the admin API (auth.h, docs/security.md).
 *
 * Static tokens: the file's tokens are kept only as SHA-256 digests; a presented token is
 * hashed and compared with every entry by CRYPTO_memcmp() without stopping at a match, so the
 * time taken says nothing about the tokens.
 *
 * JWTs: libjwt 1.10 (Debian 12) verifies a signature with whatever algorithm the token's
 * header names, using the key it is given: handed an RSA public key PEM, it happily checks an
 * HS256 token's HMAC with the PEM's bytes as the secret (the classic key-confusion forgery).
 * So the header is decoded here first, its "alg" must be on the allow-list, and the key is
 * chosen by the algorithm's family: the HMAC secret for HS*, the public key for RS*. Only
 * then does jwt_decode() verify the signature; the claims (exp, nbf, iss, aud, role) are
 * checked here on the verified payload. "none" is never accepted. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"
#include "error.h"
#include "httpd.h"
#include "log.h"
#include "util.h"

#define DIGEST_LEN 32
#define MAX_TOKEN_LEN 8192       /* longer Authorization values are refused unread */
#define MIN_PLAIN_TOKEN_LEN 16
#define MIN_HMAC_SECRET_LEN 32   /* RFC 7518 3.2: at least the hash size */
#define DEFAULT_LEEWAY_S 30

static const char *const role_names[AUTH_ROLE_MAX] = { "none", "read", "operator" };

struct static_token {
	unsigned char digest[DIGEST_LEN];
	enum auth_role role;
	char name[64];
};

/* The JWT algorithms sagad knows; ES* are refused (not supported). */
enum alg_family { FAMILY_HMAC, FAMILY_RSA };
static const struct {
	const char *name;
	jwt_alg_t alg;
	enum alg_family family;
} algs[] = {
	{ "HS256", JWT_ALG_HS256, FAMILY_HMAC }, { "HS384", JWT_ALG_HS384, FAMILY_HMAC },
	{ "HS512", JWT_ALG_HS512, FAMILY_HMAC }, { "RS256", JWT_ALG_RS256, FAMILY_RSA },
	{ "RS384", JWT_ALG_RS384, FAMILY_RSA },  { "RS512", JWT_ALG_RS512, FAMILY_RSA },
};
#define N_ALGS (sizeof(algs) / sizeof(algs[0]))

struct auth {
	struct static_token *tokens;
	size_t n_tokens;
	bool allowed[N_ALGS];          /* the allow-list */
	bool jwt;                      /* some algorithm is allowed */
	unsigned char *secret;         /* HMAC secret */
	size_t secret_len;
	unsigned char *public_pem;     /* RSA public key, PEM text */
	size_t public_pem_len;
	char *issuer, *audience, *role_claim;
	int64_t leeway_s;
};

const char *auth_role_name(enum auth_role r)
{
	return r >= 0 && r < AUTH_ROLE_MAX ? role_names[r] : "?";
}

int auth_role_parse(const char *s, enum auth_role *out)
{
	if (strcmp(s, "read") == 0)
		*out = AUTH_ROLE_READ;
	else if (strcmp(s, "operator") == 0)
		*out = AUTH_ROLE_OPERATOR;
	else
		return SAGAD_EINVAL;
	return 0;
}

static void sha256(const void *p, size_t n, unsigned char out[DIGEST_LEN])
{
	unsigned int len = DIGEST_LEN;

	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != DIGEST_LEN)
		fatalx("auth: SHA-256 failed");
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 64 &&
	       s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:-")] == '\0';
}

/* Characters RFC 6750 allows in a bearer token (b64token). */
static bool valid_token_text(const char *s)
{
	return *s != '\0' &&
	       s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/=")] == '\0';
}

/* Reads the tokens file: "ROLE TOKEN NAME" per line; TOKEN is "sha256:HEX" or the token
 * itself; # starts a comment. */
static int load_tokens(struct auth *a, const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");
	char line[4096];
	int lineno = 0, plain = 0;
	struct stat stb;

	if (fp == NULL) {
		snprintf(err, errlen, "--auth-tokens %s: %s", path, strerror(errno));
		return SAGAD_EIO;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *role, *token, *name, *extra, *save = NULL;
		struct static_token t;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			snprintf(err, errlen, "%s:%d: line too long", path, lineno);
			goto fail;
		}
		if ((role = strtok_r(line, " \t\r\n", &save)) == NULL || role[0] == '#')
			continue;
		token = strtok_r(NULL, " \t\r\n", &save);
		name = strtok_r(NULL, " \t\r\n", &save);
		extra = strtok_r(NULL, " \t\r\n", &save);
		memset(&t, 0, sizeof(t));
		if (token == NULL || name == NULL || (extra != NULL && extra[0] != '#')) {
			snprintf(err, errlen, "%s:%d: expected ROLE TOKEN NAME, e.g. \"operator "
				 "sha256:<hex of the token's SHA-256> deploy-bot\"", path, lineno);
			goto fail;
		}
		if (auth_role_parse(role, &t.role) != 0) {
			snprintf(err, errlen, "%s:%d: role \"%.32s\": expected read or operator", path,
				 lineno, role);
			goto fail;
		}
		if (!valid_name(name)) {
			snprintf(err, errlen, "%s:%d: name \"%.64s\": use 1 to 63 letters, digits and "
				 "._@:-", path, lineno, name);
			goto fail;
		}
		snprintf(t.name, sizeof(t.name), "%s", name);
		if (strncmp(token, "sha256:", 7) == 0) {
			if (util_hex_decode(token + 7, t.digest, DIGEST_LEN) != 0) {
				snprintf(err, errlen, "%s:%d: sha256: must be followed by 64 hex digits "
					 "(printf %%s TOKEN | sha256sum)", path, lineno);
				goto fail;
			}
		} else {
			if (strlen(token) < MIN_PLAIN_TOKEN_LEN || !valid_token_text(token)) {
				snprintf(err, errlen, "%s:%d: token for \"%s\": use at least %d characters "
					 "of A-Z a-z 0-9 -._~+/= (e.g. openssl rand -hex 32), or "
					 "sha256:HEX", path, lineno, name, MIN_PLAIN_TOKEN_LEN);
				goto fail;
			}
			sha256(token, strlen(token), t.digest);
			plain++;
		}
		OPENSSL_cleanse(line, sizeof(line));
		for (size_t i = 0; i < a->n_tokens; i++)
			if (CRYPTO_memcmp(a->tokens[i].digest, t.digest, DIGEST_LEN) == 0) {
				snprintf(err, errlen, "%s:%d: \"%s\" has the same token as \"%s\"", path,
					 lineno, t.name, a->tokens[i].name);
				goto fail;
			}
		a->tokens = xrealloc(a->tokens, (a->n_tokens + 1) * sizeof(*a->tokens));
		a->tokens[a->n_tokens++] = t;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "--auth-tokens %s: read error", path);
		goto fail;
	}
	if (a->n_tokens == 0) {
		snprintf(err, errlen, "--auth-tokens %s: no tokens (lines \"ROLE TOKEN NAME\")", path);
		goto fail;
	}
	if (plain > 0 && fstat(fileno(fp), &stb) == 0 && (stb.st_mode & 077) != 0)
		log_warn("event=auth_tokens_file_readable file=%s msg=\"the file holds plain tokens and "
			 "other users may read it: chmod 600 it, or list sha256:HEX digests\"", path);
	fclose(fp);
	return 0;
fail:
	OPENSSL_cleanse(line, sizeof(line));
	fclose(fp);
	return SAGAD_EINVAL;
}

static int read_file(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	struct strbuf b;
	char chunk[4096];
	size_t n;

	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return SAGAD_EIO;
	}
	strbuf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0 && b.len < (1 << 20))
		strbuf_add(&b, chunk, n);
	fclose(fp);
	*len = b.len;
	*out = (unsigned char *)(b.data ? strbuf_detach(&b) : xstrdup(""));
	return 0;
}

static int load_public_key(struct auth *a, const char *path, char *err, size_t errlen)
{
	EVP_PKEY *pk;
	BIO *bio;
	int rc;

	if ((rc = read_file(path, &a->public_pem, &a->public_pem_len, err, errlen)) != 0)
		return rc;
	bio = BIO_new_mem_buf(a->public_pem, (int)a->public_pem_len);
	pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (pk == NULL) {
		snprintf(err, errlen, "--jwt-public-key %s: not a PEM public key (expected "
			 "-----BEGIN PUBLIC KEY-----; openssl rsa -in key.pem -pubout makes one)", path);
		return SAGAD_EINVAL;
	}
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "--jwt-public-key %s: not an RSA key (RS256/384/512 need one)",
			 path);
		EVP_PKEY_free(pk);
		return SAGAD_EINVAL;
	}
	if (EVP_PKEY_get_bits(pk) < 2048)
		log_warn("event=jwt_weak_key file=%s bits=%d msg=\"use an RSA key of 2048 bits or more\"",
			 path, EVP_PKEY_get_bits(pk));
	EVP_PKEY_free(pk);
	return 0;
}

static int alg_index(const char *name)
{
	for (size_t i = 0; i < N_ALGS; i++)
		if (strcmp(algs[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int parse_algorithms(struct auth *a, const char *list, char *err, size_t errlen)
{
	char *copy = xstrdup(list), *save = NULL, *tok;
	int rc = 0;

	for (tok = strtok_r(copy, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		int i = alg_index(tok);

		if (i < 0) {
			snprintf(err, errlen, "--jwt-algorithms: \"%.32s\" is not supported; use HS256, "
				 "HS384, HS512, RS256, RS384 or RS512 (\"none\" is never accepted)", tok);
			rc = SAGAD_EINVAL;
			break;
		}
		if (algs[i].family == FAMILY_HMAC && a->secret == NULL) {
			snprintf(err, errlen, "--jwt-algorithms: %s needs the HMAC secret "
				 "(--jwt-secret-file or SAGAD_JWT_SECRET)", tok);
			rc = SAGAD_EINVAL;
			break;
		}
		if (algs[i].family == FAMILY_RSA && a->public_pem == NULL) {
			snprintf(err, errlen, "--jwt-algorithms: %s needs the RSA public key "
				 "(--jwt-public-key FILE)", tok);
			rc = SAGAD_EINVAL;
			break;
		}
		a->allowed[i] = true;
		a->jwt = true;
	}
	free(copy);
	if (rc == 0 && !a->jwt) {
		snprintf(err, errlen, "--jwt-algorithms: empty list");
		rc = SAGAD_EINVAL;
	}
	return rc;
}

int auth_new(const struct auth_options *opt, struct auth **out, char *err, size_t errlen)
{
	struct auth *a = xcalloc(1, sizeof(*a));
	int rc = 0;

	a->leeway_s = opt->jwt_leeway_s >= 0 ? opt->jwt_leeway_s : DEFAULT_LEEWAY_S;
	a->role_claim = xstrdup(opt->jwt_role_claim && *opt->jwt_role_claim ? opt->jwt_role_claim
								: "role");
	if (opt->tokens_file != NULL && (rc = load_tokens(a, opt->tokens_file, err, errlen)) != 0)
		goto fail;
	if (opt->jwt_secret != NULL) {
		if (opt->jwt_secret_len < MIN_HMAC_SECRET_LEN) {
			snprintf(err, errlen, "the JWT HMAC secret has %zu bytes; use at least %d "
				 "(e.g. openssl rand -hex 32)", opt->jwt_secret_len, MIN_HMAC_SECRET_LEN);
			rc = SAGAD_EINVAL;
			goto fail;
		}
		a->secret = xmalloc(opt->jwt_secret_len);
		memcpy(a->secret, opt->jwt_secret, opt->jwt_secret_len);
		a->secret_len = opt->jwt_secret_len;
	}
	if (opt->jwt_public_key_file != NULL &&
	    (rc = load_public_key(a, opt->jwt_public_key_file, err, errlen)) != 0)
		goto fail;
	if (opt->jwt_algorithms != NULL) {
		if ((rc = parse_algorithms(a, opt->jwt_algorithms, err, errlen)) != 0)
			goto fail;
	} else {
		a->allowed[alg_index("HS256")] = a->secret != NULL;
		a->allowed[alg_index("RS256")] = a->public_pem != NULL;
		a->jwt = a->secret != NULL || a->public_pem != NULL;
	}
	if (opt->jwt_issuer != NULL && *opt->jwt_issuer)
		a->issuer = xstrdup(opt->jwt_issuer);
	if (opt->jwt_audience != NULL && *opt->jwt_audience)
		a->audience = xstrdup(opt->jwt_audience);
	if ((a->issuer != NULL || a->audience != NULL) && !a->jwt) {
		snprintf(err, errlen, "--jwt-issuer and --jwt-audience need a JWT key "
			 "(--jwt-secret-file, SAGAD_JWT_SECRET or --jwt-public-key)");
		rc = SAGAD_EINVAL;
		goto fail;
	}
	*out = a;
	return 0;
fail:
	auth_free(a);
	return rc;
}

void auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	OPENSSL_cleanse(a->tokens, a->n_tokens * sizeof(*a->tokens));
	free(a->tokens);
	if (a->secret != NULL)
		OPENSSL_cleanse(a->secret, a->secret_len);
	free(a->secret);
	free(a->public_pem);
	free(a->issuer);
	free(a->audience);
	free(a->role_claim);
	free(a);
}

bool auth_enabled(const struct auth *a)
{
	return a != NULL && (a->n_tokens > 0 || a->jwt);
}

void auth_describe(const struct auth *a, char *buf, size_t len)
{
	struct strbuf b;
	int n = 0;

	strbuf_init(&b);
	strbuf_addf(&b, "tokens=%zu jwt=", a ? a->n_tokens : 0);
	for (size_t i = 0; a != NULL && i < N_ALGS; i++)
		if (a->allowed[i])
			strbuf_addf(&b, "%s%s", n++ ? "," : "", algs[i].name);
	if (n == 0)
		strbuf_adds(&b, "off");
	else
		strbuf_addf(&b, " iss=%s aud=%s role_claim=%s leeway_s=%lld",
			    a->issuer ? a->issuer : "-", a->audience ? a->audience : "-", a->role_claim,
			    (long long)a->leeway_s);
	snprintf(buf, len, "%s", b.data);
	strbuf_close(&b);
}

/* ---- verification ---------------------------------------------------------------------- */

/* base64url (no padding) -> malloc()ed NUL-terminated bytes, or NULL. */
static char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
	size_t padded = (n + 3) / 4 * 4;
	char *std = xmalloc(padded + 1);
	unsigned char *out;
	int len;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!isalnum((unsigned char)c)) {
			free(std);
			return NULL;
		}
		std[i] = c;
	}
	for (size_t i = n; i < padded; i++)
		std[i] = '=';
	std[padded] = '\0';
	out = xmalloc(padded / 4 * 3 + 1);
	len = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
	free(std);
	if (len < 0 || n % 4 == 1) {
		free(out);
		return NULL;
	}
	len -= (int)(padded - n);   /* EVP_DecodeBlock counts the padding as zero bytes */
	out[len] = '\0';
	*out_len = (size_t)len;
	return (char *)out;
}

static void format_epoch(int64_t s, char *buf, size_t len)
{
	util_format_time(s * 1000, buf, len);
}

/* Copies printable characters of s into out (the JWT "sub" for the audit log). */
static void sanitize_name(const char *s, char *out, size_t len)
{
	size_t k = 0;

	for (; s != NULL && *s && k + 1 < len; s++)
		out[k++] = isalnum((unsigned char)*s) || strchr("._@:-", *s) ? *s : '_';
	out[k] = '\0';
}

/* A claim that must be a number of seconds; 1 when present and valid, 0 when absent, -1 when
 * malformed. */
static int time_claim(json_t *claims, const char *name, int64_t *out)
{
	json_t *v = json_object_get(claims, name);

	if (v == NULL)
		return 0;
	if (json_is_integer(v))
		*out = (int64_t)json_integer_value(v);
	else if (json_is_real(v) && fabs(json_real_value(v)) < 1e15)
		*out = (int64_t)json_real_value(v);
	else
		return -1;
	if (*out > INT64_MAX / 2 || *out < INT64_MIN / 2)
		return -1;   /* absurd; keeps the arithmetic below in range */
	return 1;
}

/* The highest role named by the claim: a string of space-separated words ("read operator",
 * an OAuth scope) or an array of strings. */
static enum auth_role role_of(json_t *v)
{
	enum auth_role best = AUTH_ROLE_NONE, r;
	size_t i;
	json_t *x;

	if (json_is_array(v)) {
		json_array_foreach(v, i, x) {
			r = role_of(x);
			if (r > best)
				best = r;
		}
		return best;
	}
	if (json_is_string(v)) {
		char *copy = xstrdup(json_string_value(v)), *save = NULL, *w;

		for (w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
			if (auth_role_parse(w, &r) == 0 && r > best)
				best = r;
		free(copy);
	}
	return best;
}

static bool audience_ok(json_t *aud, const char *want)
{
	size_t i;
	json_t *x;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (json_is_array(aud))
		json_array_foreach(aud, i, x)
			if (json_is_string(x) && strcmp(json_string_value(x), want) == 0)
				return true;
	return false;
}

static int verify_jwt(const struct auth *a, const char *token, int64_t now,
		      struct auth_identity *id, char *why, size_t whylen)
{
	const char *dot = strchr(token, '.');
	char *head_text, *claims_text = NULL, t1[40], t2[40];
	json_t *head, *claims = NULL, *alg_v;
	const unsigned char *key;
	size_t n, key_len;
	jwt_t *jwt = NULL;
	int64_t exp = 0, nbf = 0;
	int ai, rc = SAGAD_EAUTH, k;

	head_text = b64url_decode(token, (size_t)(dot - token), &n);
	head = head_text ? json_loads(head_text, 0, NULL) : NULL;
	free(head_text);
	if (!json_is_object(head)) {
		snprintf(why, whylen, "malformed JWT header");
		goto out;
	}
	alg_v = json_object_get(head, "alg");
	if (!json_is_string(alg_v)) {
		snprintf(why, whylen, "JWT header has no alg");
		goto out;
	}
	ai = alg_index(json_string_value(alg_v));
	if (ai < 0 || !a->allowed[ai]) {
		snprintf(why, whylen, "JWT algorithm \"%.16s\" is not allowed", json_string_value(alg_v));
		goto out;
	}
	if (json_object_get(head, "crit") != NULL) {
		snprintf(why, whylen, "JWT header has critical extensions (crit) sagad does not know");
		goto out;
	}
	/* The key follows from the allowed algorithm's family, never from the token alone. */
	if (algs[ai].family == FAMILY_HMAC) {
		key = a->secret;
		key_len = a->secret_len;
	} else {
		key = a->public_pem;
		key_len = a->public_pem_len;
	}
	if (jwt_decode(&jwt, token, key, (int)key_len) != 0 || jwt == NULL) {
		snprintf(why, whylen, "JWT signature does not verify");
		goto out;
	}
	if (jwt_get_alg(jwt) != algs[ai].alg) {
		snprintf(why, whylen, "JWT algorithm mismatch");
		goto out;
	}
	claims_text = jwt_get_grants_json(jwt, NULL);
	claims = claims_text ? json_loads(claims_text, 0, NULL) : NULL;
	if (!json_is_object(claims)) {
		snprintf(why, whylen, "JWT claims are not a JSON object");
		goto out;
	}
	k = time_claim(claims, "exp", &exp);
	if (k == 0) {
		snprintf(why, whylen, "JWT has no exp claim (sagad requires an expiry)");
		goto out;
	}
	if (k < 0 || time_claim(claims, "nbf", &nbf) < 0) {
		snprintf(why, whylen, "JWT exp or nbf is not a number of seconds");
		goto out;
	}
	if (now > exp + a->leeway_s) {
		format_epoch(exp, t1, sizeof(t1));
		snprintf(why, whylen, "JWT expired at %s", t1);
		goto out;
	}
	if (nbf != 0 && now + a->leeway_s < nbf) {
		format_epoch(nbf, t1, sizeof(t1));
		format_epoch(now, t2, sizeof(t2));
		snprintf(why, whylen, "JWT not valid before %s (now %s)", t1, t2);
		goto out;
	}
	if (a->issuer != NULL) {
		json_t *iss = json_object_get(claims, "iss");
		if (!json_is_string(iss) || strcmp(json_string_value(iss), a->issuer) != 0) {
			snprintf(why, whylen, "JWT issuer (iss) is not the one sagad trusts");
			goto out;
		}
	}
	if (a->audience != NULL && !audience_ok(json_object_get(claims, "aud"), a->audience)) {
		snprintf(why, whylen, "JWT audience (aud) does not include \"%s\"", a->audience);
		goto out;
	}
	id->role = role_of(json_object_get(claims, a->role_claim));
	id->kind = "jwt";
	sanitize_name(json_string_value(json_object_get(claims, "sub")), id->name, sizeof(id->name));
	if (id->name[0] == '\0')
		snprintf(id->name, sizeof(id->name), "-");
	rc = 0;
out:
	json_decref(head);
	json_decref(claims);
	free(claims_text);
	jwt_free(jwt);
	return rc;
}

int auth_verify(const struct auth *a, const char *authorization, int64_t now_s,
		struct auth_identity *id, char *why, size_t whylen)
{
	unsigned char digest[DIGEST_LEN];
	const struct static_token *match = NULL;
	const char *token, *p;
	size_t dots = 0;

	memset(id, 0, sizeof(*id));
	if (authorization == NULL || *authorization == '\0') {
		snprintf(why, whylen, "no bearer token: send Authorization: Bearer TOKEN "
			 "(sagactl: --token or SAGAD_TOKEN)");
		return SAGAD_EAUTH;
	}
	if (strncasecmp(authorization, "Bearer ", 7) != 0) {
		snprintf(why, whylen, "the Authorization scheme must be Bearer");
		return SAGAD_EAUTH;
	}
	for (token = authorization + 7; *token == ' '; token++)
		;
	if (strlen(token) > MAX_TOKEN_LEN || !valid_token_text(token)) {
		snprintf(why, whylen, "malformed bearer token");
		return SAGAD_EAUTH;
	}
	if (a->n_tokens > 0) {
		sha256(token, strlen(token), digest);
		/* Every entry is compared: the time does not depend on which one matches. */
		for (size_t i = 0; i < a->n_tokens; i++)
			if (CRYPTO_memcmp(a->tokens[i].digest, digest, DIGEST_LEN) == 0)
				match = &a->tokens[i];
		if (match != NULL) {
			id->role = match->role;
			id->kind = "token";
			snprintf(id->name, sizeof(id->name), "%s", match->name);
			return 0;
		}
	}
	for (p = token; *p; p++)
		dots += *p == '.';
	if (a->jwt && dots == 2)
		return verify_jwt(a, token, now_s, id, why, whylen);
	snprintf(why, whylen, a->jwt ? "unknown token (neither a listed token nor a JWT)" :
		 "unknown token");
	return SAGAD_EAUTH;
}

enum auth_role auth_route_role(const char *method, const char *path)
{
	while (*path == '/')
		path++;
	if (strcmp(path, "livez") == 0 || strcmp(path, "readyz") == 0)
		return AUTH_ROLE_NONE;
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return AUTH_ROLE_READ;
	return AUTH_ROLE_OPERATOR;
}

/* ---- the gate -------------------------------------------------------------------------- */

static void refuse(struct httpd_req *req, int status, const char *code, const char *message,
		   const char *www_authenticate)
{
	const char *headers[] = { "WWW-Authenticate", www_authenticate, NULL };
	json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
	char *text = json_dumps(body, JSON_COMPACT);

	httpd_respond(req, status, "application/json", text, strlen(text),
		      www_authenticate ? headers : NULL);
	free(text);
	json_decref(body);
}

bool auth_admit(const struct auth *a, struct httpd_req *req)
{
	const char *method = httpd_req_method(req), *path = httpd_req_path(req);
	enum auth_role need = auth_route_role(method, path);
	struct auth_identity id;
	char why[256], msg[400], q1[300], q2[300];

	if (!auth_enabled(a) || need == AUTH_ROLE_NONE)
		return true;
	if (auth_verify(a, httpd_req_header(req, "Authorization"), (int64_t)time(NULL), &id, why,
			sizeof(why)) != 0) {
		log_info("event=auth_refused status=401 peer=%s method=%s path=%s reason=%s",
			 httpd_req_peer(req), method, log_quote(path, q1, sizeof(q1)),
			 log_quote(why, q2, sizeof(q2)));
		snprintf(msg, sizeof(msg), "authentication required: %s", why);
		refuse(req, 401, sagad_errname(SAGAD_EAUTH), msg,
		       httpd_req_header(req, "Authorization") == NULL ? "Bearer realm=\"sagad\"" :
		       "Bearer realm=\"sagad\", error=\"invalid_token\"");
		return false;
	}
	if (id.role < need) {
		log_info("event=auth_refused status=403 peer=%s method=%s path=%s who=%s:%s role=%s "
			 "needs=%s", httpd_req_peer(req), method, log_quote(path, q1, sizeof(q1)),
			 id.kind, id.name, auth_role_name(id.role), auth_role_name(need));
		snprintf(msg, sizeof(msg), "%s %s needs the %s role; this %s (%s) has %s", method,
			 path, auth_role_name(need), id.kind, id.name,
			 id.role == AUTH_ROLE_NONE ? "no sagad role" : auth_role_name(id.role));
		refuse(req, 403, sagad_errname(SAGAD_EFORBIDDEN), msg, NULL);
		return false;
	}
	if (need == AUTH_ROLE_OPERATOR)
		log_info("event=api_change peer=%s method=%s path=%s who=%s:%s role=%s",
			 httpd_req_peer(req), method, log_quote(path, q1, sizeof(q1)), id.kind, id.name,
			 auth_role_name(id.role));
	return true;
}
