#!/usr/bin/env bash
# make demo: a throwaway RabbitMQ, warren-dashboard recording the job ledger, the orders-worker example host, a
# scripted burst of welcome emails (plain, flaky, bounce, slow, a malformed body), the outcomes as they happen, the
# dead letters the ledger took off their queue (`warren dlx list --dashboard`), the jobs and failure groups as the
# ledger's API shows them and a headless-Chromium screenshot of the dashboard; then the report-api example (POST →
# 202, status from the ledger, 303 to the CSV, 500 with the reason); then everything stops. WARREN_DEMO_STAY_UP=1
# (make demo-up) leaves the broker, the worker and the dashboard running after the burst, for a person to open,
# until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${WARREN_BIN:-$(swift build --show-bin-path)}"
data="$(mktemp -d /tmp/warren-demo.XXXXXX)"
worker_pid=""
dashboard_pid=""
reports_pid=""

stop() { if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; fi; }
cleanup() {
  stop "$worker_pid"; stop "$reports_pid"; stop "$dashboard_pid"
  "$bin/warren-local-broker" stop --data-directory "$data/broker" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. Starting a throwaway RabbitMQ node on 127.0.0.1"
"$bin/warren-local-broker" start --data-directory "$data/broker" | grep -v '^starting'
export WARREN_AMQP_URL="$("$bin/warren-local-broker" status --data-directory "$data/broker" | sed -n 's/^WARREN_AMQP_URL=//p')"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The address a process prints ("listening on http://…") once it serves.
wait_listening() { for _ in $(seq 1 300); do if grep -q '^listening on' "$1"; then sed -n 's/^listening on //p' "$1"; return; fi; sleep 0.1; done; echo "demo: $1 never listened" >&2; exit 1; }

say "2. Starting warren-dashboard: it records every job's events and takes the dead letters in a ledger (SQLite), served under /api/"
export WARREN_DASHBOARD_TOKEN="demo-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
"$bin/warren-dashboard" --port 0 --store "sqlite:$data/ledger.sqlite" --queue emails --log-level warning > "$data/dashboard.out" 2>&1 &
dashboard_pid=$!
dashboard="$(wait_listening "$data/dashboard.out")"
for _ in $(seq 1 100); do if curl -s "$dashboard/health" | grep -q '"consuming"'; then break; fi; sleep 0.1; done
echo "   $dashboard (GET /api/jobs with Authorization: Bearer \$WARREN_DASHBOARD_TOKEN)"
api() { curl -s -H "Authorization: Bearer $WARREN_DASHBOARD_TOKEN" "$dashboard$1"; }

http_port="$(free_port)"
say "3. Starting orders-worker (queue 'emails': at most 4 attempts, retries after 1 s, 2 s, 4 s; health and metrics on :$http_port)"
"$bin/orders-worker" --log-level debug --http-port "$http_port" --cleanup-interval 2 > "$data/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 1 100); do
  if "$bin/warren" topology --queue emails --json 2>/dev/null | grep -q '"consumers" : 1'; then break; fi
  sleep 0.2
done
# Show each settled delivery as it happens (the follower ends with the worker).
tail --pid="$worker_pid" -n +1 -f "$data/worker.log" | grep --line-buffered ' settled' | grep --line-buffered 'queue=emails' | sed -u -E 's/^[^ ]+ +//; s/ \[Warren\] settled$//' &

say "4. Publishing a burst with the warren CLI"
for address in ada@example.com bob@flaky.example cy@bounce.example di@slow.example; do
  id=$("$bin/warren" publish --routing-key emails --type email.welcome --body "{\"userId\":\"${address%@*}\",\"email\":\"$address\"}")
  echo "   published $id  ($address)"
done
"$bin/warren" publish --routing-key emails --type email.welcome --message-id malformed-1 --body '{"userId": 5, "email": ' >/dev/null
echo "   published malformed-1  (a malformed body)"

say "5. Waiting for every message to settle (the flaky one succeeds on its third attempt)"
for _ in $(seq 1 150); do
  # ada: ack; bob: retry, retry, ack; cy: dead letter; di: ack after 2 s; malformed: dead letter.
  if [ "$(grep ' settled' "$data/worker.log" | grep -c 'queue=emails')" -ge 7 ]; then break; fi
  sleep 0.2
done
sleep 0.5

say "6. The dead letters, which the ledger took off emails.dead-letters: warren dlx list --queue emails --dashboard $dashboard"
for _ in $(seq 1 50); do
  if [ "$(api "/api/dead-letters?queue=emails" | python3 -c 'import json, sys; print(sum(1 for d in json.load(sys.stdin)["dead_letters"] if d["held"]))')" -ge 2 ]; then break; fi
  sleep 0.2
done
"$bin/warren" dlx list --queue emails --dashboard "$dashboard"

say "7. The topology: warren topology --queue emails"
"$bin/warren" topology --queue emails

say "8. Health and metrics: curl 127.0.0.1:$http_port/health/ready, /health/live, /metrics"
curl -s "127.0.0.1:$http_port/health/ready"
curl -s "127.0.0.1:$http_port/health/live"
curl -s "127.0.0.1:$http_port/metrics" | grep -E '^warren_(messages_total|retries_total|dead_letters_total|connection_up)' | sed 's/^/   /'

say "9. The ledger's view of the burst: curl $dashboard/api/jobs?queue=emails"
ledger_counts=""
for _ in $(seq 1 50); do
  ledger_counts="$(api "/api/jobs?queue=emails" | python3 -c '
import collections, json, sys
jobs = json.load(sys.stdin)["jobs"]
print(" ".join(f"{s}={n}" for s, n in sorted(collections.Counter(j["status"] for j in jobs).items())))')"
  if [ "$ledger_counts" = "dead_lettered=2 succeeded=3" ]; then break; fi
  sleep 0.2
done
api "/api/jobs?queue=emails" | python3 -c '
import json, sys
for job in json.load(sys.stdin)["jobs"]:
    print("   %-38s %-14s attempts=%s %s" % (job["message_id"], job["status"], job["attempts"], job["reason"] or ""))'
echo "   by status: $ledger_counts"
failure_groups="$(api "/api/failures?queue=emails" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["groups"]
for group in groups:
    print("   %d × %s %s: %s" % (group["count"], group["type"], group["reason"], group["error"]), file=sys.stderr)
print(len(groups))')"
echo "   failure groups: $failure_groups (GET /api/failures)"
screenshot="$PWD/.build/warren-demo/dashboard-jobs.png"
python3 scripts/dashboard-screenshot.py "$dashboard" "/jobs?queue=emails" "$screenshot"

if [ "${WARREN_DEMO_STAY_UP:-}" = 1 ]; then
  say "The broker, orders-worker and warren-dashboard stay up: open $dashboard"
  echo "   sign in with an empty user and the token $WARREN_DASHBOARD_TOKEN as password"
  echo "   (API: curl -H 'Authorization: Bearer $WARREN_DASHBOARD_TOKEN' $dashboard/api/jobs)"
  echo "   publish more: WARREN_AMQP_URL=$WARREN_AMQP_URL $bin/warren publish --routing-key emails --type email.welcome --body '{\"userId\":\"u9\",\"email\":\"bounce@example.com\"}'"
  echo "   Ctrl-C stops everything."
  sleeper=""
  trap 'kill "$sleeper" 2>/dev/null; exit 0' INT TERM
  while true; do sleep 3600 & sleeper=$!; wait "$sleeper"; done
fi

say "The recurring cleanup: orders-worker leads the scheduler (one instance among all would) and runs it every 2 s"
curl -s "http://127.0.0.1:$http_port/health/ready" | python3 -c '
import json, sys
for election in json.load(sys.stdin).get("leadership", []):
    print("   /health/ready leadership: %s is %s since %s" % (election["work"], election["role"], election["since"]))'
cleanup_runs=$(grep ' settled' "$data/worker.log" | grep -c 'schedule=cleanup' || true)
grep ' settled' "$data/worker.log" | grep 'schedule=cleanup' | tail -n 2 | sed -E 's/^[^ ]+ +/   /'
echo "   $cleanup_runs cleanup runs so far, each a message id of its schedule and time (cleanup@<ISO 8601>)"
echo "   warren schedules (what the leader lists; the dashboard's /schedules shows the same):"
"$bin/warren" schedules | sed 's/^/     /'

say "10. Stopping orders-worker with SIGTERM (it drains, then exits 0)"
kill -TERM "$worker_pid"
status=0
wait "$worker_pid" || status=$?
worker_pid=""
echo "   orders-worker exited with $status"

say "11. The request path: report-api (POST → 202 at once, a worker makes the report, GET → status from the ledger)"
"$bin/report-api" --port 0 --work-seconds 2 --reports-directory "$data/reports" --ledger "sqlite:$data/reports.sqlite" \
  --log-level warning > "$data/reports.out" 2>&1 &
reports_pid=$!
reports="$(wait_listening "$data/reports.out")"
echo "   \$ curl -i -X POST $reports/reports -d '{\"month\": \"2026-10\"}'"
curl -s -i -X POST "$reports/reports" -d '{"month": "2026-10"}' > "$data/post.txt"
grep -E '^(HTTP|Location)' "$data/post.txt" | tr -d '\r' | sed 's/^/   /'
location="$(sed -n 's/^Location: //p' "$data/post.txt" | tr -d '\r')"
report_status=""
for _ in $(seq 1 100); do
  answer="$(curl -s -o "$data/status.json" -w '%{http_code}' "$reports$location")"
  echo "   GET $location → $answer $(cat "$data/status.json")"
  if [ "$answer" != 202 ]; then report_status="$answer"; break; fi
  sleep 0.5
done
echo "   \$ curl -L $reports$location  (the 303 leads to the CSV)"
curl -s -L "$reports$location" | head -4 | sed 's/^/   /'
echo "   … and a report that can never be made (no orders before 2000):"
doomed="$(curl -s -X POST "$reports/reports" -d '{"month": "1999-12"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["status_url"])')"
doomed_status=""
for _ in $(seq 1 100); do
  doomed_status="$(curl -s -o "$data/doomed.json" -w '%{http_code}' "$reports$doomed")"
  if [ "$doomed_status" != 202 ]; then break; fi
  sleep 0.2
done
echo "   GET $doomed → $doomed_status $(cat "$data/doomed.json")"
stop "$reports_pid"; reports_pid=""
stop "$dashboard_pid"; dashboard_pid=""

acked=$(grep 'queue=emails' "$data/worker.log" | grep -c 'outcome=ack' || true)
dead=$(grep 'queue=emails' "$data/worker.log" | grep -c 'outcome=dead-letter' || true)
retried=$(grep 'queue=emails' "$data/worker.log" | grep -c 'outcome=retry' || true)
say "Summary: $acked acked, $retried retried, $dead dead-lettered; worker exit status $status; ledger $ledger_counts; report $report_status, doomed report $doomed_status"
if [ "$cleanup_runs" -lt 2 ]; then
  echo "demo: the recurring cleanup did not run (expected a run every 2 s)" >&2
  exit 1
fi
if [ "$status" -ne 0 ] || [ "$acked" -ne 3 ] || [ "$dead" -ne 2 ] || [ "$retried" -ne 2 ]; then
  echo "demo: unexpected outcome (expected 3 acked, 2 retried, 2 dead-lettered, exit 0)" >&2
  exit 1
fi
if [ "$ledger_counts" != "dead_lettered=2 succeeded=3" ] || [ "$failure_groups" != 2 ] || [ "$report_status" != 303 ] || [ "$doomed_status" != 500 ]; then
  echo "demo: unexpected ledger or report outcome (expected dead_lettered=2 succeeded=3, 2 failure groups, 303, 500)" >&2
  exit 1
fi
echo "✓ demo finished"
