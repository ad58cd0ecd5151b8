# Warren: the two commands of the README are `make demo` and `make test`.
SWIFT ?= swift
BENCH_ARGS ?=

.PHONY: all deps build format test test-fast traits-check demo demo-up first-day screenshots bench chaos fuzz otlp-check local-broker clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

## Formats the code as .swift-format says (`make test` fails on code that is not: swift format lint --strict).
format:
	$(SWIFT) format -i -r Sources Tests Plugins Package.swift

## Installs what is missing, then runs every test (unit and broker-backed integration tests; the tests start
## their own throwaway RabbitMQ unless WARREN_TEST_AMQP_URL names one).
test: deps
	scripts/check-paths.sh
	$(SWIFT) format lint --strict -r Sources Tests Plugins Package.swift
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

## The tests that need no service (no RabbitMQ, PostgreSQL or Chromium): those that do are reported as skipped.
## WARREN_TEST_SERVICES=broker,postgres (or browser, cluster) picks services; `make test` runs them all.
test-fast:
	$(SWIFT) build --build-tests
	WARREN_TEST_SERVICES=none $(SWIFT) test --skip-build

## A throwaway broker, warren-dashboard recording the ledger, the orders-worker example host, a scripted burst
## published with the warren CLI, the outcomes as they happen, the dead letters and the ledger's view at the end, then
## the report-api example (202, status, 303 to the CSV, 500); then everything stops.
demo: deps
	$(SWIFT) build --product orders-worker
	$(SWIFT) build --product warren
	$(SWIFT) build --product warren-local-broker
	$(SWIFT) build --product warren-dashboard
	$(SWIFT) build --product report-api
	scripts/demo.sh

## The demo's burst, then the broker, orders-worker and warren-dashboard stay up (the address and a sign-in token are
## printed) until Ctrl-C.
demo-up: deps
	$(SWIFT) build --product orders-worker
	$(SWIFT) build --product warren
	$(SWIFT) build --product warren-local-broker
	$(SWIFT) build --product warren-dashboard
	WARREN_DEMO_STAY_UP=1 scripts/demo.sh

## A new package written from the README and docs/ (its manifest, a host, handlers and tests; Warren by path) builds,
## tests and runs against a throwaway broker: scripts/first-day.sh. Several minutes (it builds Warren again).
first-day: deps
	scripts/first-day.sh

## The dashboard's screenshots in docs/images, taken by the browser tests in headless Chromium.
screenshots: deps
	$(SWIFT) build --build-tests
	WARREN_SCREENSHOTS=$(CURDIR)/docs/images $(SWIFT) test --skip-build --filter DashboardBrowserTests

## The benchmark, in release mode, against a throwaway broker (or --url).
bench: deps
	$(SWIFT) build -c release --product warren-bench
	$$($(SWIFT) build -c release --show-bin-path)/warren-bench consume $(BENCH_ARGS)

## The chaos suite: every fault (broker restart, stop_app, a frozen broker, a killed worker, a killed cluster node,
## a poison message) with a ledger of published vs handled ids; prints the table. `make test` runs its fast part.
chaos: deps
	$(SWIFT) build --product warren-chaos
	$$($(SWIFT) build --show-bin-path)/warren-chaos run $(CHAOS_ARGS)

## The JSON fast path against Foundation's JSONDecoder under libFuzzer, for FUZZ_SECONDS (default 120), in a build
## of its own (.build-fuzz: the main build is not touched). A disagreement crashes and leaves its input in .build-fuzz/.
## `make test` runs the same check over a fixed-seed set of inputs.
FUZZ_SECONDS ?= 120
FUZZ_BUILD = $(SWIFT) build -c release --product warren-json-fuzz --scratch-path .build-fuzz --sanitize=fuzzer \
	-Xswiftc -DWARREN_FUZZ -Xswiftc -parse-as-library
fuzz: deps
	$(SWIFT) build --product warren-json-fuzz
	$$($(SWIFT) build --show-bin-path)/warren-json-fuzz --seeds .build-fuzz/seeds
	$(FUZZ_BUILD)
	mkdir -p .build-fuzz/corpus
	bin="$$($(FUZZ_BUILD) --show-bin-path)" && cd .build-fuzz && "$$bin/warren-json-fuzz" corpus seeds \
		-max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1

## orders-worker built with the OTLP trait (swift-otel, several minutes to build the first time, in .build-otlp so the
## main build is not touched) exports its spans over OTLP/HTTP to a small receiver; checks what arrived.
otlp-check: deps
	$(SWIFT) build --product warren
	$(SWIFT) build --product warren-local-broker
	$(SWIFT) build --traits OTLP --product orders-worker --scratch-path .build-otlp
	scripts/otlp-check.sh

clean:
	rm -rf .build .build-fuzz .build-otlp .build-traits

## The optional parts' traits hold: WarrenLedger builds with its SQLite store alone (no postgres-nio, no swift-nio-ssl),
## and the core with no trait at all; each in a build folder of its own (.build-traits), as a dependent would build it.
traits-check: deps
	$(SWIFT) build --scratch-path .build-traits --disable-default-traits --traits Ledger --target WarrenLedger
	$(SWIFT) build --scratch-path .build-traits --disable-default-traits --target WarrenTesting
