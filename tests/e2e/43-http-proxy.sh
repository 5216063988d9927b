#!/bin/bash
# 43-http-proxy.sh -- sagad's participant calls honour the proxy environment it was started
# with (libcurl's rules; the HTTP client reads it once at start-up: docs/architecture.md,
# "Threads"): with http_proxy set, every call of a saga goes through a real forward proxy (a
# small Python one that logs each request's absolute target and forwards it to the real
# participant); with no_proxy naming the participants' host too, none does; HTTP_PROXY alone
# (never honoured, by libcurl's rule) is ignored; a dead http_proxy fails the first call with
# a connection error to the proxy's port, and the saga ends compensated without reaching any
# participant.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

start_participants || bail_out "participants did not start"

# The forward proxy: absolute-form targets only (what a client sends to an HTTP proxy).
cat >"$TMP/proxy.py" <<'EOF'
import http.client, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log_path, port_path = sys.argv[1], sys.argv[2]
HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te", "upgrade"}

class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        u = urllib.parse.urlsplit(self.path)
        if u.scheme != "http" or not u.netloc:
            self.send_error(400, "not an absolute http URL")
            return
        with open(log_path, "a") as f:
            f.write("%s %s\n" % (self.command, self.path))
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
        target = u.path + ("?" + u.query if u.query else "")
        conn.request(self.command, target or "/", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
with open(port_path + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(port_path + ".tmp", port_path)
srv.serve_forever()
EOF
: >"$TMP/proxy.log"
python3 "$TMP/proxy.py" "$TMP/proxy.log" "$TMP/proxy.port" >"$TMP/proxy.out" 2>&1 </dev/null &
e2e_track_pid "$!"
wait_until 60 test -s "$TMP/proxy.port" || bail_out "the proxy did not start"
PROXY="http://127.0.0.1:$(cat "$TMP/proxy.port")"
DEAD="http://127.0.0.1:$(free_port)"

# sagad started through a wrapper that sets its proxy variables and no others (the test's own
# curl calls stay direct).
REAL_SAGAD=$SAGAD
run_sagad_with() {   # run_sagad_with VAR=VALUE...: (re)starts sagad with that environment
	stop_sagad
	{
		echo '#!/bin/sh'
		printf 'exec env'
		# only the proxy variables given here, whatever the test runs under
		printf ' -u %s' http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY \
			no_proxy NO_PROXY
		printf ' %q' "$@"
		printf ' %q "$@"\n' "$REAL_SAGAD"
	} >"$TMP/sagad-env.sh"
	chmod +x "$TMP/sagad-env.sh"
	SAGAD="$TMP/sagad-env.sh" start_sagad
}
proxied() { wc -l <"$TMP/proxy.log" | tr -d ' '; }
class_port=${CLASS_URL##*:}

# ---- http_proxy: every call through the proxy ------------------------------------------------
run_sagad_with "http_proxy=$PROXY" || bail_out "sagad did not start"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input)")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "with http_proxy the saga completes"
is "$(grep -c "^POST http://127.0.0.1:$class_port/" "$TMP/proxy.log")" 1 \
	"the class call went through the proxy, its absolute URL as the target"
n=$(proxied)
ok "[ $n -ge 3 ]" "each participant's call went through the proxy ($n requests)"
is "$(grep -vc '^[A-Z]* http://127\.0\.0\.1:[0-9]*/' "$TMP/proxy.log")" 0 \
	"every proxied request names its participant by absolute URL"

# ---- no_proxy names the host: direct --------------------------------------------------------
run_sagad_with "http_proxy=$PROXY" "no_proxy=localhost,127.0.0.1" || bail_out "sagad did not start"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input)")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "with no_proxy naming the host the saga completes"
is "$(proxied)" "$n" "no call went through the proxy"

# ---- HTTP_PROXY is never honoured (libcurl's rule for http://) ------------------------------
run_sagad_with "HTTP_PROXY=$DEAD" || bail_out "sagad did not start"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input)")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "HTTP_PROXY alone is ignored: the saga completes"

# ---- a dead proxy: the calls fail to connect --------------------------------------------------
before=$(participant_log class | jq length)
run_sagad_with "http_proxy=$DEAD" || bail_out "sagad did not start"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input)")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "with a dead http_proxy the saga fails (and is compensated)"
like "$(jget "$body" '[.history[] | select(.step == "apply")][0].error // ""')" \
	"^connection failed: .* port ${DEAD##*:} after" "the apply step's attempt failed to connect to the proxy's port"
is "$(participant_log class | jq length)" "$before" "the class participant saw no request"
stop_sagad

done_testing
