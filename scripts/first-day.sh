#!/usr/bin/env bash
# make first-day: a new package written from the README and docs/ alone — the README's manifest with this checkout as
# a path dependency (in a folder whose name is not `warren`, as the README says for a clone), the handlers of
# scripts/first-day (two message types, a flaky gateway that is retried, a declined card that is dead-lettered, a
# follow-up publish), its host (WarrenSettings, WarrenEventPublisher, WarrenHTTP health and metrics) and its tests
# (WarrenTesting, WarrenLocalBroker). It builds the package and the `warren` CLI from the dependency, runs the tests,
# then runs the host against the throwaway broker of `swift package local-broker`, publishes with the CLI, checks the
# outcomes, the probes and the metrics, and stops it with SIGTERM. Every step's output is in $FIRST_DAY_DIR (kept on
# failure). Takes several minutes: the package builds Warren and its dependencies in its own .build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd -P)"
for tool in python3 curl; do command -v "$tool" > /dev/null || { echo "first-day: needs $tool" >&2; exit 1; }; done
work="${FIRST_DAY_DIR:-$(mktemp -d /tmp/warren-first-day.XXXXXX)}"
work="$(cd "$work" && pwd -P)"
package="$work/billing"
broker_started=""
worker_pid=""
ok=""
cleanup() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then kill -KILL "$worker_pid" 2>/dev/null || true; fi
  if [ -n "$broker_started" ]; then (cd "$package" && swift package --disable-sandbox local-broker stop >/dev/null 2>&1) || true; fi
  if [ -n "$ok" ] && [ -z "${FIRST_DAY_DIR:-}" ]; then rm -rf "$work"; else echo "first-day: kept $work"; fi
}
trap cleanup EXIT
say() { printf '\n\033[1mfirst-day: %s\033[0m\n' "$*"; }
fail() { echo "first-day: FAILED: $*" >&2; exit 1; }

say "writing $package from README.md (Warren by path: $root)"
mkdir -p "$package/Sources/Billing" "$package/Sources/billing-worker" "$package/Tests/BillingTests"
cp "$root/scripts/first-day/Billing.swift" "$package/Sources/Billing/"
cp "$root/scripts/first-day/main.swift" "$package/Sources/billing-worker/"
cp "$root/scripts/first-day/BillingTests.swift" "$package/Tests/BillingTests/"
python3 - "$root" "$package/Package.swift" <<'PY'
import os, re, sys
root, out = sys.argv[1], sys.argv[2]
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
section = readme.index("## Add Warren to your package")
start = readme.index("```swift\n", section) + len("```swift\n")
excerpt = readme[start:readme.index("\n```", start)]
url = re.search(r'\.package\(url: "[^"]*warren\.git"[^)]*\)', excerpt)
if not url:
    sys.exit("first-day: README's manifest has no .package(url: …warren.git…)")
# As the README says for a clone: the path, and the folder's name, lowercased, as the package's.
identity = os.path.basename(root.rstrip("/")).lower()
excerpt = excerpt.replace(url.group(0), '.package(path: "%s")' % root).replace('package: "warren"', 'package: "%s"' % identity)
open(out, "w", encoding="utf-8").write(
    "// swift-tools-version: 6.1\nimport PackageDescription\n\nlet package = Package(\n    name: \"billing\",\n"
    "    platforms: [.macOS(.v15)],\n" + excerpt + "\n)\n")
PY
cd "$package"

say "swift build (the package, then the warren CLI from the dependency)"
swift build > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "swift build"; }
if grep -F "$package/" "$work/build.log" | grep -F "warning:"; then fail "the package builds with warnings"; fi
swift build --product warren > "$work/build-cli.log" 2>&1 || { tail -40 "$work/build-cli.log"; fail "swift build --product warren"; }
bin="$(swift build --show-bin-path)"

say "swift test (WarrenTesting, then WarrenLocalBroker)"
swift test > "$work/test.log" 2>&1 || { tail -60 "$work/test.log"; fail "swift test"; }
grep -E "Test run with .* passed" "$work/test.log" || { tail -60 "$work/test.log"; fail "no passing test run in the log"; }

say "swift package local-broker start"
swift package --disable-sandbox local-broker start > "$work/broker.log" 2>&1 || { cat "$work/broker.log"; fail "local-broker start"; }
broker_started=1
export WARREN_AMQP_URL="$(sed -n 's/^WARREN_AMQP_URL=//p' "$work/broker.log" | tail -1)"
[ -n "$WARREN_AMQP_URL" ] || { cat "$work/broker.log"; fail "no WARREN_AMQP_URL from local-broker start"; }

say "billing-worker, then three charges published with warren publish"
export BILLING_HTTP_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin/billing-worker" > "$work/worker.log" 2>&1 &
worker_pid=$!
ready=""
for _ in $(seq 1 200); do
  if curl -sf "http://127.0.0.1:$BILLING_HTTP_PORT/health/ready" > /dev/null; then ready=1; break; fi
  kill -0 "$worker_pid" 2>/dev/null || { cat "$work/worker.log"; fail "billing-worker exited"; }
  sleep 0.1
done
[ -n "$ready" ] || { cat "$work/worker.log"; fail "billing-worker never ready"; }
for id in inv-1 inv-2-flaky inv-3-declined; do
  "$bin/warren" publish --routing-key billing.charges --type billing.charge --message-id "$id" \
    --body "{\"invoiceId\":\"$id\",\"cents\":1200}" > /dev/null
done
settled=""
for _ in $(seq 1 200); do
  receipts="$(grep -c 'receipt sent' "$work/worker.log" || true)"
  letters="$("$bin/warren" dlx list --queue billing.charges --json 2>/dev/null || true)"
  if [ "$receipts" -ge 2 ] && grep -q 'inv-3-declined' <<< "$letters"; then settled=1; break; fi
  sleep 0.1
done
[ -n "$settled" ] || { cat "$work/worker.log"; fail "the charges were not all settled"; }
metrics="$(curl -sf "http://127.0.0.1:$BILLING_HTTP_PORT/metrics")" || fail "GET /metrics"
grep -Eq '^billing_charged_total 2(\.0)?$' <<< "$metrics" || { grep billing <<< "$metrics" || true; fail "billing_charged_total is not 2"; }
grep -q '^warren_retries_total{.*queue="billing.charges"' <<< "$metrics" || fail "no warren_retries_total for billing.charges"
grep -q '^warren_dead_letters_total{.*queue="billing.charges"' <<< "$metrics" || fail "no warren_dead_letters_total for billing.charges"
"$bin/warren" dlx list --queue billing.charges

say "SIGTERM"
kill -TERM "$worker_pid"
status=0
wait "$worker_pid" || status=$?
worker_pid=""
[ "$status" -eq 0 ] || { cat "$work/worker.log"; fail "billing-worker exited with $status after SIGTERM"; }
grep -q "worker stopped" "$work/worker.log" || { cat "$work/worker.log"; fail "no 'worker stopped' in the log"; }
ok=1
say "a package written from the docs builds, tests and runs"
