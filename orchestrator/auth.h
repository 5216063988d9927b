/* auth.h: who may call the admin API (docs/security.md).
 *
 * A request carries "Authorization: Bearer TOKEN". TOKEN is either a static token listed in a
 * tokens file, or a JWT signed with a configured HMAC secret (HS256/384/512) or RSA public key
 * (RS256/384/512). Each identity has a role: `read` may call GET routes and /metrics;
 * `operator` may also start, cancel and retry sagas and make every other change. /livez and
 * /readyz are always open. With nothing configured, authentication is off (the API then
 * listens on loopback only, unless the operator insists: main.c).
 *
 * Tokens are never logged or echoed: static tokens are compared as SHA-256 digests in
 * constant time; a JWT's algorithm is checked against the allow-list and the key type before
 * its signature is verified, so an RSA public key can never verify an HMAC token. */
#ifndef SAGAD_AUTH_H
#define SAGAD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;
struct httpd_req;

enum auth_role { AUTH_ROLE_NONE, AUTH_ROLE_READ, AUTH_ROLE_OPERATOR, AUTH_ROLE_MAX };
const char *auth_role_name(enum auth_role r);
/* "read" or "operator"; returns 0 or SAGAD_EINVAL. */
int auth_role_parse(const char *s, enum auth_role *out);

struct auth_options {
	const char *tokens_file;       /* "ROLE TOKEN NAME" lines, or NULL */
	const char *jwt_secret;        /* HMAC secret bytes (HS*), or NULL ... */
	size_t jwt_secret_len;
	const char *jwt_public_key_file; /* RSA public key PEM (RS*), or NULL */
	const char *jwt_algorithms;    /* allow-list "HS256,RS256"; NULL = HS256 with a secret,
					* RS256 with a public key */
	const char *jwt_issuer;        /* required "iss", or NULL (not checked) */
	const char *jwt_audience;      /* required in "aud", or NULL (not checked) */
	const char *jwt_role_claim;    /* claim holding the role; NULL = "role" */
	int64_t jwt_leeway_s;          /* clock skew allowed on exp and nbf; < 0 = 30 */
};

/* Loads the configuration (reads the files). Returns 0 and an auth owned by the caller
 * (auth_free()), or SAGAD_EINVAL / SAGAD_EIO with a message naming the file and line in err.
 * With no tokens file, no secret and no public key the result is a disabled auth that lets
 * every request through. */
int auth_new(const struct auth_options *opt, struct auth **out, char *err, size_t errlen);
void auth_free(struct auth *a);
/* False when nothing is configured (every request is allowed). NULL is disabled. */
bool auth_enabled(const struct auth *a);
/* One line describing the configuration for the start-up log: "tokens=3 jwt=HS256,RS256"
 * (never a secret). */
void auth_describe(const struct auth *a, char *buf, size_t len);

/* Who made a request. */
struct auth_identity {
	enum auth_role role;
	char name[64];      /* the token's name from the file, or the JWT's "sub" (sanitized) */
	const char *kind;   /* "token" or "jwt" (static) */
};

/* Checks an Authorization header value. Returns 0 with the identity, or SAGAD_EAUTH with the
 * reason in why ("no bearer token", "JWT expired at 2026-...Z"); the reason never contains
 * the token. now_s is the current time in seconds since the epoch. */
int auth_verify(const struct auth *a, const char *authorization, int64_t now_s,
		struct auth_identity *id, char *why, size_t whylen);

/* The role a route needs: NONE for /livez and /readyz, READ for GET and HEAD, OPERATOR for
 * every other method (every change). */
enum auth_role auth_route_role(const char *method, const char *path);

/* The gate in front of the API: true when the request may proceed. Otherwise it has been
 * answered: 401 with WWW-Authenticate: Bearer and a JSON error when the token is missing or
 * invalid, 403 with a JSON error when its role is too low. Logs refusals and every allowed
 * change (who, what) without the token. */
bool auth_admit(const struct auth *a, struct httpd_req *req);

#endif
