#!/bin/bash
# 60-auth.sh -- admin API authentication (docs/security.md) against the real sagad:
#
#   A  no token / an unknown token: 401 with WWW-Authenticate: Bearer and a JSON error; nothing
#      starts; /livez and /readyz stay open
#   B  static tokens (plain and sha256: in the file): read may GET (and /metrics) but gets 403
#      on start, cancel and retry; operator may do everything
#   C  JWTs made here (HS256 with python3's hmac, RS256 with openssl): valid ones work with the
#      role of their claim; expired, not yet valid (nbf), wrong iss, wrong aud, alg=none,
#      tampered, unknown alg and an HS256 token keyed with the RSA public key are refused
#   D  HS-vs-RS key confusion where only RS256 is configured (libjwt alone would accept it)
#   E  sagactl: --token / SAGAD_TOKEN, and its messages for 401 and 403
#   F  no token ever reaches sagad's log
#   G  the listen policy: a non-loopback address without authentication is refused (exit 2),
#      allowed with --insecure-allow-remote (warning), and warned about with authentication
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v openssl >/dev/null || skip_all "openssl is not installed"

# ---- credentials ------------------------------------------------------------------------------
READ_TOKEN=read-$(openssl rand -hex 16)
OP_TOKEN=op-$(openssl rand -hex 16)
OP_SHA=$(printf %s "$OP_TOKEN" | sha256sum | cut -d' ' -f1)
printf '# role token name\nread %s dashboards\noperator sha256:%s deployer\n' "$READ_TOKEN" \
	"$OP_SHA" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
openssl rand -hex 32 >"$TMP/hs.secret"
chmod 600 "$TMP/hs.secret"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/rs.key" 2>/dev/null
openssl pkey -in "$TMP/rs.key" -pubout -out "$TMP/rs.pub" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/other.key" 2>/dev/null
ISS=https://idp.test
AUD=sagad-admin

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# hs256 KEYFILE HEADER PAYLOAD: a JWT signed with HMAC-SHA256 (python3 standard library); the
# key is the file's bytes without a trailing newline.
hs256() {
	/usr/bin/python3 - "$@" <<'EOF'
import base64, hashlib, hmac, sys
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = open(sys.argv[1], "rb").read().rstrip(b"\r\n")
h, p = b64(sys.argv[2].encode()), b64(sys.argv[3].encode())
print(f"{h}.{p}.{b64(hmac.new(key, f'{h}.{p}'.encode(), hashlib.sha256).digest())}")
EOF
}
# rs256 KEYFILE HEADER PAYLOAD: a JWT signed with RSA-SHA256 by openssl.
rs256() {
	local h p
	h=$(printf %s "$2" | b64url)
	p=$(printf %s "$3" | b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1" -binary | b64url)"
}
NOW=$(date +%s)
claims() {   # claims ROLE [EXTRA-JQ]: the standard claims, then a jq filter
	jq -cn --arg iss "$ISS" --arg aud "$AUD" --arg role "$1" --argjson now "$NOW" \
		'{iss: $iss, aud: $aud, sub: "ci-bot", role: $role, iat: $now, exp: ($now + 600)}' |
		jq -c "${2:-.}"
}
HS='{"alg":"HS256","typ":"JWT"}'
RS='{"alg":"RS256","typ":"JWT"}'

start_participants || bail_out "participants did not start"
start_sagad --auth-tokens "$TMP/tokens" --jwt-secret-file "$TMP/hs.secret" \
	--jwt-public-key "$TMP/rs.pub" --jwt-issuer "$ISS" --jwt-audience "$AUD" --jwt-leeway 5s \
	--log-level debug || bail_out "sagad did not start"
like "$(grep 'event=auth ' "$TMP/sagad.log")" 'event=auth enabled tokens=2 jwt=HS256,RS256 iss=https://idp.test aud=sagad-admin role_claim=role leeway_s=5' \
	"start-up logs the authentication settings (no secret)"

bearer() { echo "Authorization: Bearer $1"; }
# is_refusal STATUS CODE DESC: the last answer had STATUS and {"error":{"code":CODE,...}}
is_refusal() {
	is "$HTTP_STATUS $(jq -r '.error.code' "$TMP/.http_body" 2>/dev/null)" "$1 $2" "$3"
}
INPUT=$(seed_input)

# ---- A: no token, unknown token ---------------------------------------------------------------
api GET /livez >/dev/null
is "$HTTP_STATUS" 200 "A: /livez is open"
api GET /readyz >/dev/null
is "$HTTP_STATUS" 200 "A: /readyz is open"
api GET /v1/flows "" -D "$TMP/h.txt" >/dev/null
is_refusal 401 EAUTH "A: GET /v1/flows without a token: 401 EAUTH"
is "$(header_value "$TMP/h.txt" WWW-Authenticate)" 'Bearer realm="sagad"' "A: 401 carries WWW-Authenticate: Bearer"
like "$(jq -r .error.message "$TMP/.http_body")" 'no bearer token.*SAGAD_TOKEN' "A: the message says how to send one"
api GET /metrics >/dev/null
is "$HTTP_STATUS" 401 "A: /metrics without a token: 401"
api POST '/v1/flows/apply/sagas?wait=none' "$INPUT" -D "$TMP/h.txt" >/dev/null
is_refusal 401 EAUTH "A: start without a token: 401"
api POST '/v1/flows/apply/sagas?wait=none' "$INPUT" -H "$(bearer not-a-token-0123456789)" -D "$TMP/h.txt" >/dev/null
is_refusal 401 EAUTH "A: start with an unknown token: 401"
like "$(header_value "$TMP/h.txt" WWW-Authenticate)" 'error="invalid_token"' "A: ... WWW-Authenticate says invalid_token"
api GET /v1/flows "" -H "Authorization: Basic $(printf 'u:%s' "$OP_TOKEN" | base64)" >/dev/null
is_refusal 401 EAUTH "A: Basic authentication is not accepted"
api GET /v1/nope >/dev/null
is "$HTTP_STATUS" 401 "A: an unknown route is 401 before 404 (routes are not probed without a token)"
api GET '/v1/sagas?limit=1000' "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is "$HTTP_STATUS $(jq '.sagas | length' "$TMP/.http_body")" "200 0" "A: the refused starts started nothing"

# ---- B: static tokens -------------------------------------------------------------------------
api GET /v1/flows "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is "$HTTP_STATUS" 200 "B: read token: GET /v1/flows 200"
api GET /v1/flows/apply "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is "$HTTP_STATUS" 200 "B: read token: GET /v1/flows/apply 200"
api GET /metrics "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is "$HTTP_STATUS" 200 "B: read token: GET /metrics 200"
api POST '/v1/flows/apply/sagas?wait=none' "$INPUT" -H "$(bearer "$READ_TOKEN")" -D "$TMP/h.txt" >/dev/null
is_refusal 403 EFORBIDDEN "B: read token: start is 403 EFORBIDDEN"
like "$(jq -r .error.message "$TMP/.http_body")" 'needs the operator role; this token \(dashboards\) has read' \
	"B: the 403 names the role needed and the token's name"
is "$(header_value "$TMP/h.txt" WWW-Authenticate)" "" "B: a 403 has no WWW-Authenticate"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$INPUT" -H "$(bearer "$OP_TOKEN")")
ID=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "B: operator token (stored as sha256:): start 200, completed"
api POST "/v1/sagas/$ID/cancel" "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is_refusal 403 EFORBIDDEN "B: read token: cancel is 403"
api POST "/v1/sagas/$ID/retry" "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is_refusal 403 EFORBIDDEN "B: read token: retry is 403"
api POST "/v1/sagas/$ID/cancel" "" -H "$(bearer "$OP_TOKEN")" >/dev/null
is_refusal 409 ESTATE "B: operator token: cancel passes authentication (409: the saga already ended)"
api GET "/v1/sagas/$ID" "" -H "$(bearer "$READ_TOKEN")" >/dev/null
is "$HTTP_STATUS $(jq -r .status "$TMP/.http_body")" "200 completed" "B: read token: GET /v1/sagas/{id} 200"
api POST "/v1/sagas/$ID/cancel" "" -H "$(bearer "${OP_TOKEN}x")" >/dev/null
is "$HTTP_STATUS" 401 "B: the operator token with one more character: 401"
like "$(grep -c "event=api_change .*who=token:deployer role=operator" "$TMP/sagad.log")" '^[1-9]' \
	"B: allowed changes are logged with who made them"

# ---- C: JWTs ----------------------------------------------------------------------------------
jwt_status() {   # jwt_status TOKEN METHOD PATH [BODY]: prints the status
	api "$2" "$3" "${4:-}" -H "$(bearer "$1")" >/dev/null
	echo "$HTTP_STATUS"
}
T=$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator)")
is "$(jwt_status "$T" POST '/v1/flows/apply/sagas?wait=none' "$INPUT")" 202 "C: HS256 operator JWT: start 202"
T=$(hs256 "$TMP/hs.secret" "$HS" "$(claims read)")
is "$(jwt_status "$T" GET '/v1/sagas?limit=5')" 200 "C: HS256 read JWT: GET 200"
is "$(jwt_status "$T" POST '/v1/flows/apply/sagas?wait=none' "$INPUT")" 403 "C: HS256 read JWT: start 403"
T=$(rs256 "$TMP/rs.key" "$RS" "$(claims operator)")
is "$(jwt_status "$T" POST '/v1/flows/apply/sagas?wait=none' "$INPUT")" 202 "C: RS256 operator JWT (openssl): start 202"
T=$(rs256 "$TMP/rs.key" "$RS" "$(claims read)")
is "$(jwt_status "$T" POST "/v1/sagas/$ID/cancel")" 403 "C: RS256 read JWT: cancel 403"
T=$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator '.role = "read operator"')")
is "$(jwt_status "$T" POST '/v1/flows/apply/sagas?wait=none' "$INPUT")" 202 "C: a space-separated role claim with operator: 202"
T=$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator 'del(.role)')")
is "$(jwt_status "$T" GET /v1/flows)" 403 "C: a valid JWT without a role: 403"
# a large bearer token (many group claims, as some identity providers issue), just under the
# 8192 bytes auth.c reads: the request head must fit sagad's connection memory (about 15.8 kB,
# orchestrator/httpd.c), and does with room to spare
T=$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator '.groups = [range(175) | "group-\(.)-of-the-organisation"]')")
is "$(( ${#T} > 7500 && ${#T} <= 8192 ))" 1 "C: the large JWT is 7.5-8 kB (${#T} bytes)"
is "$(jwt_status "$T" POST '/v1/flows/apply/sagas?wait=none' "$INPUT")" 202 "C: a large HS256 operator JWT: start 202"

# refused JWTs: each with the reason the 401 message gives
refused() {   # refused TOKEN REASON-REGEX DESC
	api GET /v1/flows "" -H "$(bearer "$1")" >/dev/null
	is "$HTTP_STATUS $(jq -r .error.code "$TMP/.http_body")" "401 EAUTH" "C: $3: 401"
	like "$(jq -r .error.message "$TMP/.http_body")" "$2" "C: $3: the message says why"
}
refused "$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator ".exp = $((NOW - 60))")")" 'JWT expired at' \
	"expired (60 s ago, leeway 5 s)"
refused "$(rs256 "$TMP/rs.key" "$RS" "$(claims operator ".exp = $((NOW - 60))")")" 'JWT expired' "expired RS256"
refused "$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator ".nbf = $((NOW + 120))")")" 'not valid before' "nbf in 2 minutes"
refused "$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator 'del(.exp)')")" 'no exp claim' "no exp"
refused "$(hs256 "$TMP/hs.secret" "$HS" "$(claims operator '.iss = "https://evil.test"')")" 'issuer' "wrong iss"
refused "$(rs256 "$TMP/rs.key" "$RS" "$(claims operator '.aud = "billing"')")" 'audience' "wrong aud"
NONE_H=$(printf %s '{"alg":"none","typ":"JWT"}' | b64url)
NONE_P=$(claims operator | tr -d '\n' | b64url)
refused "$NONE_H.$NONE_P." '"none" is not allowed' "alg=none, unsigned"
refused "$(hs256 "$TMP/hs.secret" '{"alg":"HS512","typ":"JWT"}' "$(claims operator)")" '"HS512" is not allowed' \
	"an algorithm not on the allow-list (HS512)"
refused "$(rs256 "$TMP/other.key" "$RS" "$(claims operator)")" 'signature' "RS256 signed by another key"
GOOD=$(hs256 "$TMP/hs.secret" "$HS" "$(claims read)")
EVIL_P=$(claims operator | tr -d '\n' | b64url)
refused "${GOOD%%.*}.$EVIL_P.${GOOD##*.}" 'signature' "a read token's signature on an operator payload (tampered)"
refused "$(hs256 "$TMP/rs.pub" "$HS" "$(claims operator)")" 'signature' \
	"HS256 keyed with the RSA public key (both HS256 and RS256 configured)"

# ---- E: sagactl -------------------------------------------------------------------------------
ctl() { "$SAGACTL" --url "$SAGAD_URL" "$@"; }
out=$(SAGAD_TOKEN='' ctl saga list 2>&1)
rc=$?
is "$rc" 1 "E: sagactl without a token: exit 1"
like "$out" 'no token given: set --token or SAGAD_TOKEN' "E: ... and it says how to give one"
out=$(SAGAD_TOKEN=$READ_TOKEN ctl saga list 2>&1)
is "$?" 0 "E: SAGAD_TOKEN=read token: saga list works"
like "$out" "$ID" "E: ... and lists the sagas"
out=$(ctl --token "$READ_TOKEN" saga start apply --input "$INPUT" 2>&1)
rc=$?
is "$rc" 1 "E: --token read token: saga start exits 1"
like "$out" 'needs the operator role' "E: ... with the daemon's 403 message"
out=$(SAGAD_TOKEN=$OP_TOKEN ctl -o json saga start apply --input "$INPUT" 2>&1)
is "$?" 0 "E: SAGAD_TOKEN=operator token: saga start works"
is "$(jq -r .status <<<"$out" 2>/dev/null)" completed "E: ... and the saga completed"
T=$(rs256 "$TMP/rs.key" "$RS" "$(claims operator)")
out=$(ctl --token "$T" flow show apply 2>&1)
is "$?" 0 "E: --token with an RS256 JWT: flow show works"
like "$("$SAGACTL" --help 2>&1)" 'SAGAD_TOKEN' "E: sagactl --help documents the token"

# ---- F: no token in the log -------------------------------------------------------------------
leaked=0
for secret in "$READ_TOKEN" "$OP_TOKEN" "$(cat "$TMP/hs.secret")" "$GOOD" "${GOOD##*.}"; do
	grep -qF -- "$secret" "$TMP/sagad.log" && leaked=$((leaked + 1))
done
is "$leaked" 0 "F: no token, JWT, signature or HMAC secret appears in sagad's log (debug level)"
like "$(grep -c 'event=auth_refused status=401' "$TMP/sagad.log")" '^[1-9]' "F: refusals are logged (reason only)"

# ---- D: key confusion with only RS256 configured ----------------------------------------------
stop_sagad
start_sagad --jwt-public-key "$TMP/rs.pub" || bail_out "sagad (RS256 only) did not start"
T=$(rs256 "$TMP/rs.key" "$RS" "$(jq -cn --argjson now "$NOW" '{role: "operator", exp: ($now + 600)}')")
is "$(jwt_status "$T" GET /v1/flows)" 200 "D: RS256 only: a valid RS256 JWT works"
T=$(hs256 "$TMP/rs.pub" "$HS" "$(jq -cn --argjson now "$NOW" '{role: "operator", exp: ($now + 600)}')")
api POST '/v1/flows/apply/sagas?wait=none' "$INPUT" -H "$(bearer "$T")" >/dev/null
is "$HTTP_STATUS" 401 "D: RS256 only: an HS256 JWT keyed with the public key PEM is refused"
like "$(jq -r .error.message "$TMP/.http_body")" '"HS256" is not allowed' "D: ... because HS256 is not allowed, before any key is used"
like "$(grep 'event=jwt_unscoped' "$TMP/sagad.log")" 'any issuer' "D: a JWT key without --jwt-issuer/--jwt-audience is warned about"
stop_sagad

# ---- G: the listen policy ---------------------------------------------------------------------
out=$(timeout 20 "$SAGAD" --flows "$TOP_SRCDIR/flows" --db "$TMP/g.db" --listen 0.0.0.0:0 2>&1)
rc=$?
is "$rc" 2 "G: --listen 0.0.0.0 without authentication: sagad refuses to start (exit 2)"
like "$out" 'refusing to listen on 0.0.0.0 without authentication.*--insecure-allow-remote' \
	"G: ... and says what to do"
ok '[ ! -e "$TMP/g.db" ]' "G: ... before touching the database"
start_sagad --listen 0.0.0.0:0 --insecure-allow-remote || bail_out "sagad did not start"
like "$(grep 'event=exposed' "$TMP/sagad.log" | tail -1)" 'WITHOUT authentication' \
	"G: --insecure-allow-remote starts, with a loud warning"
stop_sagad
start_sagad --listen 0.0.0.0:0 --auth-tokens "$TMP/tokens" || bail_out "sagad did not start"
like "$(grep 'event=exposed' "$TMP/sagad.log" | tail -1)" 'plain HTTP.*TLS proxy' \
	"G: with authentication on 0.0.0.0: starts, and advises TLS"
api GET /v1/flows >/dev/null
is "$HTTP_STATUS" 401 "G: ... and requires a token"
stop_sagad
out=$(timeout 20 "$SAGAD" --flows "$TOP_SRCDIR/flows" --db "$TMP/g.db" --auth-tokens "$TMP/nope" 2>&1)
is "$?:$(grep -c "auth-tokens $TMP/nope: No such file" <<<"$out")" "2:1" "G: a missing tokens file stops the start (exit 2)"

done_testing
