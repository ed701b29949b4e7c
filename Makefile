# Netwatch. `make` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help build run run-sip test bench chaos lint fmt broker-install sip-install browser-install postgres-install broker-up broker-down up down clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

build: ## Build the netwatch binary (debug)
	$(CARGO) build -p netwatch

run: broker-install build ## Install and start the broker, run every role with a simulated site; Ctrl-C stops all
	infra/run.sh

run-sip: broker-install sip-install build ## Like run, but Netwatch watches a local Kamailio with real SIP calls from SIPp (docs/sip.md)
	infra/run-sip.sh

test: broker-install ## Run the whole suite: unit, property and end-to-end tests against a real broker
	@# Kamailio and SIPp for the SIP tests; where they cannot be installed those tests say so and skip.
	infra/kamailio.sh install || echo "Kamailio/SIPp could not be installed: the SIP tests will be skipped (see above)"
	@# Chromium and ChromeDriver for the wallboard's browser test; without them that test says so and skips.
	infra/chromium.sh install || echo "Chromium/ChromeDriver could not be installed: the wallboard browser test will be skipped (see above)"
	@# PostgreSQL with wal2json for the configuration-database source's tests; without it they say so and skip.
	infra/postgres.sh install || echo "PostgreSQL/wal2json could not be installed: the CDC tests will be skipped (see above)"
	@# Tests and binaries only: the criterion benches build under `make bench` (and `make lint` checks them).
	$(CARGO) build --workspace --tests --bins
	@# cargo-nextest (on the build machines) runs tests two at a time, each in its own process
	@# (.config/nextest.toml); plain cargo test otherwise.
	if $(CARGO) nextest --version >/dev/null 2>&1; then $(CARGO) nextest run --workspace --no-fail-fast; else $(CARGO) test --workspace; fi

chaos: broker-install ## The long fault suite (CHAOS_ROUNDS=6, 40 s broker outages); rewrites docs/reliability.md
	$(CARGO) build -p netwatch --tests
	CHAOS_ROUNDS=$${CHAOS_ROUNDS:-6} CHAOS_OUTAGE_S=$${CHAOS_OUTAGE_S:-40} CHAOS_REPORT=$(CURDIR)/docs/reliability.md \
		$(CARGO) test -p netwatch --test e2e_chaos -- --nocapture

bench: broker-install sip-install postgres-install ## Benchmarks (release build, own broker): prints a table and rewrites docs/benchmarks.md
	CARGO="$(CARGO)" infra/bench.sh

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

broker-install: ## Install tansu 0.6.0 with cargo unless that version is installed already
	infra/broker.sh install

sip-install: ## Install Kamailio 5.6 and SIPp from Debian unless they are there (the SIP tests and `make run-sip` use them)
	infra/kamailio.sh install

browser-install: ## Install Chromium and ChromeDriver from Debian unless they are there (the wallboard's browser test uses them)
	infra/chromium.sh install

postgres-install: ## Install PostgreSQL 15 and wal2json from Debian unless they are there (netwatch cdc postgres, docs/cdc.md)
	infra/postgres.sh install

broker-up: broker-install build ## Start the broker on 127.0.0.1:9092 (BROKER_PORT=... to change; data in data/broker)
	infra/broker.sh start

broker-down: ## Stop the broker
	infra/broker.sh stop

up: ## With Docker: Kafka + ScyllaDB + netwatch from infra/compose.yaml
	docker compose -f infra/compose.yaml up --build -d

down: ## With Docker: stop what `make up` started
	docker compose -f infra/compose.yaml down

clean: ## Remove build output and local data
	$(CARGO) clean
	rm -rf data
