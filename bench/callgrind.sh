#!/usr/bin/env bash
# bench/callgrind.sh — instructions per request of one cellgate binary, under valgrind's
# callgrind: the repeatable figure for a small change on this shared VM (the same count whatever
# else the machine does), which docs/performance.md quotes beside the bench/ab.sh CPU A/Bs.
#
#   bench/callgrind.sh BINARY [--mode M] [--ratio R]
#   bench/callgrind.sh /work/bench-bins/cellgate-before
#   bench/callgrind.sh target/release/cellgate --mode traced --ratio 0.01
#
# One worker, access log off, subdomain routing to an nginx upstream; a Python client sends
# keep-alive GETs with the wrk head (request line and Host) one at a time. The proxy runs twice
# under callgrind, serving 2,000 and then 6,000 requests; per request = (I(6000) − I(2000)) /
# 4000, so start-up and shutdown cancel out. Modes: subdomain (default), traced ([tracing] at
# --ratio, default 0.01, exporting every 200 ms to bench/otlp_sink.py: the exporter's work is
# counted, it is the proxy's CPU; its 25 ms drain ticks follow wall time, not requests, so
# traced counts spread by a few hundred instructions between runs). Needs valgrind, nginx and
# python3.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
LOG_TAG=callgrind
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

MODE=subdomain RATIO=0.01 PORT_BASE="${PORT_BASE:-18380}" KEEP_TMP="${KEEP_TMP:-0}"
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) MODE="$2"; shift ;;
    --ratio) RATIO="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[[ ${#ARGS[@]} -eq 1 && -x ${ARGS[0]} ]] || { echo "usage: bench/callgrind.sh BINARY [--mode subdomain|traced] [--ratio R]" >&2; exit 2; }
[[ $MODE == subdomain || $MODE == traced ]] || { echo "--mode: subdomain or traced" >&2; exit 2; }
BIN="$(cd "$(dirname "${ARGS[0]}")" && pwd)/$(basename "${ARGS[0]}")"
UPSTREAM=$PORT_BASE PROXY=$((PORT_BASE + 1)) ADMIN=$((PORT_BASE + 2)) SINK=$((PORT_BASE + 3))

install_missing valgrind:valgrind nginx:nginx-light curl:curl python3:python3
export PATH="$PATH:/usr/sbin:/sbin"
start_workdir cellgate-callgrind
for p in "$UPSTREAM" "$PROXY" "$ADMIN" "$SINK"; do
  if port_open "$p"; then echo "port 127.0.0.1:$p is already in use (set PORT_BASE)" >&2; exit 1; fi
done

cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$UPSTREAM;
    keepalive_requests 1000000;
    location / { return 200 "hello from cell\n"; }
  }
}
EOF
cat >"$WORK/registry.toml" <<EOF
[[cells]]
id = "cell-1"
targets = ["http://127.0.0.1:$UPSTREAM"]

[[tenants]]
id = "acme"
cell = "cell-1"
status = "ACTIVE"
EOF
cat >"$WORK/cellgate.toml" <<EOF
[server]
workers = 1

[[listeners]]
address = "127.0.0.1:$PROXY"

[admin]
address = "127.0.0.1:$ADMIN"

[tenant]
sources = ["subdomain"]
base_domains = ["app.test"]

[registry]
source = "file"
path = "registry.toml"

[access_log]
enabled = false
EOF
if [[ $MODE == traced ]]; then
  printf '\n[tracing]\notlp_endpoint = "http://127.0.0.1:%s/v1/traces"\nsample_ratio = %s\nexport_interval = "200ms"\n' \
    "$SINK" "$RATIO" >>"$WORK/cellgate.toml"
  start_bg sink 0 python3 "$BENCH_DIR/otlp_sink.py" "$SINK"
  wait_port sink "$SINK" || { echo "the OTLP sink did not start" >&2; exit 1; }
fi
start_bg nginx 0 nginx -c "$WORK/nginx.conf"
wait_port nginx "$UPSTREAM" || { echo "nginx did not start" >&2; exit 1; }

cat >"$WORK/client.py" <<'EOF'
import socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req, buf = b"GET / HTTP/1.1\r\nHost: acme.app.test\r\n\r\n", b""
for _ in range(n):
    s.sendall(req)
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            head = buf[:i].decode()
            cl = next((int(v) for k, _, v in (l.partition(":") for l in head.split("\r\n")[1:])
                       if k.lower() == "content-length"), 0)
            if len(buf) >= i + 4 + cl:
                assert head.startswith("HTTP/1.1 200"), head
                buf = buf[i + 4 + cl:]
                break
        d = s.recv(65536)
        if not d:
            raise SystemExit("the proxy closed the connection")
        buf += d
EOF

count() {  # count N — total instructions of a proxy that served N requests
  local out="$WORK/callgrind.$1" i
  (cd "$WORK" && valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" serve \
    --config "$WORK/cellgate.toml" >"$WORK/proxy-$1.log" 2>&1) &
  PID[proxy]=$!
  for ((i = 0; i < 600; i++)); do
    curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break
    sleep 0.1
  done
  python3 "$WORK/client.py" "$1" "$PROXY"
  sleep 0.5
  pkill -TERM -f "callgrind-out-file=$out" || true
  wait "${PID[proxy]}" || true
  unset "PID[proxy]"
  sed -n 's/^totals: \([0-9]*\)/\1/p' "$out"
}
if [[ $MODE == traced ]]; then log "binary $BIN, mode traced (sample_ratio $RATIO)"; else log "binary $BIN, mode subdomain"; fi
low="$(count 2000)"; high="$(count 6000)"
echo "instructions: $low at 2000 requests, $high at 6000; per request: $(( (high - low) / 4000 ))"
