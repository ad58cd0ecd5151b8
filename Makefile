# Warren: the two commands of the README are `make demo` and `make test`.
SWIFT ?= swift
BENCH_ARGS ?=

.PHONY: all deps build test demo bench chaos local-broker clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

## Installs what is missing, then runs every test (unit and broker-backed integration tests; the tests start
## their own throwaway RabbitMQ unless WARREN_TEST_AMQP_URL names one).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

## A throwaway broker, the orders-worker example host, a scripted burst published with the warren CLI, the
## outcomes as they happen, the dead letters at the end; then everything stops.
demo: deps
	$(SWIFT) build --product orders-worker
	$(SWIFT) build --product warren
	$(SWIFT) build --product warren-local-broker
	scripts/demo.sh

## The benchmark, in release mode, against a throwaway broker (or --url).
bench: deps
	$(SWIFT) build -c release --product warren-bench
	$$($(SWIFT) build -c release --show-bin-path)/warren-bench consume $(BENCH_ARGS)

## The chaos suite: every fault (broker restart, stop_app, a frozen broker, a killed worker, a killed cluster node,
## a poison message) with a ledger of published vs handled ids; prints the table. `make test` runs its fast part.
chaos: deps
	$(SWIFT) build --product warren-chaos
	$$($(SWIFT) build --show-bin-path)/warren-chaos run $(CHAOS_ARGS)

clean:
	rm -rf .build
