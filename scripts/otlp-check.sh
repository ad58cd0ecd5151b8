#!/usr/bin/env bash
# make otlp-check: orders-worker built with the OTLP trait exports its spans over OTLP/HTTP. A throwaway RabbitMQ, a
# small OTLP/HTTP receiver (Python, recording every POST), orders-worker with --otlp-endpoint, one message published
# with a W3C traceparent; then the receiver's record must hold the worker's `process emails` span, its messaging
# attributes, and the trace id of the publisher's context the span links to.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(swift build --show-bin-path)"
otlp_bin="${WARREN_OTLP_BIN:-$(swift build --traits OTLP --scratch-path .build-otlp --show-bin-path)}"
data="$(mktemp -d /tmp/warren-otlp.XXXXXX)"
worker_pid="" receiver_pid=""

cleanup() {
  [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null || true
  "$bin/warren-local-broker" stop --data-directory "$data/broker" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$data/receiver.py" <<'PY'
import http.server, sys
out = open(sys.argv[2], "ab")
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out.write(self.path.encode() + b" " + self.headers.get("Content-Type", "").encode() + b"\n" + body + b"\n")
        out.flush()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
python3 "$data/receiver.py" "$port" "$data/received" &
receiver_pid=$!

"$bin/warren-local-broker" start --data-directory "$data/broker" | grep -v '^starting'
export WARREN_AMQP_URL="$("$bin/warren-local-broker" status --data-directory "$data/broker" | sed -n 's/^WARREN_AMQP_URL=//p')"
"$otlp_bin/orders-worker" --log-level debug --otlp-endpoint "http://127.0.0.1:$port/v1/traces" > "$data/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 100); do
  if "$bin/warren" topology --queue emails --json 2>/dev/null | grep -q '"consumers" : 1'; then break; fi
  sleep 0.2
done
trace_id=4bf92f3577b34da6a3ce929d0e0e4736
"$bin/warren" publish --routing-key emails --type email.welcome --message-id otlp-1 \
  --header "traceparent=00-$trace_id-00f067aa0ba902b7-01" --body '{"userId":"otlp","email":"otlp@example.com"}' >/dev/null
for _ in $(seq 1 50); do
  if [ -s "$data/received" ] && grep -qa 'process emails' "$data/received"; then break; fi
  sleep 0.2
done
kill -TERM "$worker_pid"; wait "$worker_pid" || true; worker_pid=""

fail() { echo "otlp-check: $*" >&2; echo "--- worker log" >&2; tail -20 "$data/worker.log" >&2; exit 1; }
[ -s "$data/received" ] || fail "the receiver got nothing"
grep -qa '^/v1/traces application/x-protobuf' "$data/received" || fail "no OTLP/HTTP protobuf POST to /v1/traces"
for expected in 'process emails' 'messaging.system' 'rabbitmq' 'messaging.message.id' 'otlp-1' 'warren.outcome' 'orders-worker'; do
  grep -qa "$expected" "$data/received" || fail "the export lacks '$expected'"
done
# The settled line names the span's own ids (swift-otel propagates W3C context).
grep -a 'otlp-1' "$data/worker.log" | grep -a 'settled' | grep -qE 'span_id=[0-9a-f]{16} .*trace_id=[0-9a-f]{32}' \
  || fail "the settled line lacks span_id and trace_id"
# The link to the publisher's context carries its trace id as 16 raw bytes.
python3 - "$data/received" "$trace_id" <<'PY' || fail "the span does not link to the publisher's trace $trace_id"
import sys
data = open(sys.argv[1], "rb").read()
sys.exit(0 if bytes.fromhex(sys.argv[2]) in data else 1)
PY
echo "✓ otlp-check: orders-worker exported its 'process emails' span, linked to trace $trace_id, over OTLP/HTTP"
