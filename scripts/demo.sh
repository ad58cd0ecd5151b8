#!/usr/bin/env bash
# make demo: a throwaway RabbitMQ, the orders-worker example host, a scripted burst of welcome emails (plain, flaky,
# bounce, slow, a malformed body), the outcomes as they happen, `warren dlx list` at the end; then everything stops.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${WARREN_BIN:-$(swift build --show-bin-path)}"
data="$(mktemp -d /tmp/warren-demo.XXXXXX)"
worker_pid=""

cleanup() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then kill -TERM "$worker_pid" 2>/dev/null; wait "$worker_pid" 2>/dev/null || true; fi
  "$bin/warren-local-broker" stop --data-directory "$data/broker" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. Starting a throwaway RabbitMQ node on 127.0.0.1"
"$bin/warren-local-broker" start --data-directory "$data/broker" | grep -v '^starting'
export WARREN_AMQP_URL="$("$bin/warren-local-broker" status --data-directory "$data/broker" | sed -n 's/^WARREN_AMQP_URL=//p')"

http_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "2. Starting orders-worker (queue 'emails': at most 4 attempts, retries after 1 s, 2 s, 4 s; health and metrics on :$http_port)"
"$bin/orders-worker" --log-level debug --http-port "$http_port" > "$data/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 100); do
  if "$bin/warren" topology --queue emails --json 2>/dev/null | grep -q '"consumers" : 1'; then break; fi
  sleep 0.2
done
# Show each settled delivery as it happens (the follower ends with the worker).
tail --pid="$worker_pid" -n +1 -f "$data/worker.log" | grep --line-buffered ' settled' | sed -u -E 's/^[^ ]+ +//; s/ \[Warren\] settled$//' &

say "3. Publishing a burst with the warren CLI"
for address in ada@example.com bob@flaky.example cy@bounce.example di@slow.example; do
  id=$("$bin/warren" publish --routing-key emails --type email.welcome --body "{\"userId\":\"${address%@*}\",\"email\":\"$address\"}")
  echo "   published $id  ($address)"
done
"$bin/warren" publish --routing-key emails --type email.welcome --message-id malformed-1 --body '{"userId": 5, "email": ' >/dev/null
echo "   published malformed-1  (a malformed body)"

say "4. Waiting for every message to settle (the flaky one succeeds on its third attempt)"
for _ in $(seq 1 150); do
  # ada: ack; bob: retry, retry, ack; cy: dead letter; di: ack after 2 s; malformed: dead letter.
  if [ "$(grep -c ' settled' "$data/worker.log")" -ge 7 ]; then break; fi
  sleep 0.2
done
sleep 0.5

say "5. The dead letters: warren dlx list --queue emails"
"$bin/warren" dlx list --queue emails

say "6. The topology: warren topology --queue emails"
"$bin/warren" topology --queue emails

say "7. Health and metrics: curl 127.0.0.1:$http_port/health/ready, /health/live, /metrics"
curl -s "127.0.0.1:$http_port/health/ready"
curl -s "127.0.0.1:$http_port/health/live"
curl -s "127.0.0.1:$http_port/metrics" | grep -E '^warren_(messages_total|retries_total|dead_letters_total|connection_up)' | sed 's/^/   /'

say "8. Stopping orders-worker with SIGTERM (it drains, then exits 0)"
kill -TERM "$worker_pid"
status=0
wait "$worker_pid" || status=$?
worker_pid=""
echo "   orders-worker exited with $status"

acked=$(grep -c 'outcome=ack' "$data/worker.log" || true)
dead=$(grep -c 'outcome=dead-letter' "$data/worker.log" || true)
retried=$(grep -c 'outcome=retry' "$data/worker.log" || true)
say "Summary: $acked acked, $retried retried, $dead dead-lettered; worker exit status $status"
if [ "$status" -ne 0 ] || [ "$acked" -ne 3 ] || [ "$dead" -ne 2 ] || [ "$retried" -ne 2 ]; then
  echo "demo: unexpected outcome (expected 3 acked, 2 retried, 2 dead-lettered, exit 0)" >&2
  exit 1
fi
echo "✓ demo finished"
