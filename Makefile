# weir: `make run` sets up and runs the example pipeline; `make test` runs all tests.

CARGO        ?= cargo
WASM_TARGETS := wasm32-wasip1 wasm32-wasip2
WEIR         := target/debug/weir
DIGITS       := examples/digits
DIGITS_WS    := $(DIGITS)/.weir
DIGITS_BINS  := validate prep train evaluate score
WORDS        := examples/wordcount
WORDS_WS     := $(WORDS)/.weir
WORDS_BINS   := normalize count stats report
COMPONENTIZE_PY_VERSION := 0.25.1
PY_VENV      := target/python-venv
# weir builds Python steps with this componentize-py (docs/python.md).
export WEIR_COMPONENTIZE_PY ?= $(CURDIR)/$(PY_VENV)/bin/componentize-py

.PHONY: all setup build examples run run-python run-wordcount run-embed test contract ui-test lint fmt bench bench-quick bench-peers bench-shared-cache bench-ui clean

all: build

## Install what a fresh machine lacks: the WASI targets for guests, Graphviz
## (the tests read the DOT graph back with `dot`) and Chromium (the web UI's
## browser tests; Playwright itself comes from PyPI into target/ui-venv), Docker's registry
## and skopeo (the step package tests push to a registry on loopback), minisign (which checks
## weir's package signatures in the tests). `make test`
## also starts a local Slurm cluster (scripts/slurm-cluster.sh, installing Debian's
## slurmd, slurmctld and munge as root) for the slurm executor's tests. componentize-py,
## which builds Python steps, goes into target/python-venv.
setup:
	@if command -v rustup >/dev/null 2>&1; then \
		rustup target add $(WASM_TARGETS) >/dev/null 2>&1 || rustup target add $(WASM_TARGETS); \
	else \
		echo "rustup not found: make sure the $(WASM_TARGETS) targets are installed"; \
	fi
	@if ! command -v dot >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y graphviz >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y graphviz >/dev/null)); \
		else \
			echo "Graphviz's dot is missing: install graphviz (the tests need it)"; \
		fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y chromium >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y chromium >/dev/null)); \
		else \
			echo "Chromium is missing: install chromium (the web UI's browser tests need it)"; \
		fi; \
	fi
	@if ! command -v docker-registry >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1 \
		|| ! command -v minisign >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y docker-registry skopeo minisign >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y docker-registry skopeo minisign >/dev/null)); \
		else \
			echo "docker-registry, skopeo or minisign is missing: install them (the step package tests need them)"; \
		fi; \
	fi
	@if [ "$$($(PY_VENV)/bin/componentize-py --version 2>/dev/null)" != "componentize-py $(COMPONENTIZE_PY_VERSION)" ]; then \
		python3 -m venv $(PY_VENV) && \
		$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check componentize-py==$(COMPONENTIZE_PY_VERSION); \
	fi

## Build the weir binary.
build: setup
	$(CARGO) build -p weir-cli

## Build the examples' steps (Rust, wasm32-wasip2 components) into each example's build/.
examples: setup
	$(CARGO) build --release --target wasm32-wasip2 \
		--manifest-path $(DIGITS)/steps/Cargo.toml --target-dir target/examples
	$(CARGO) build --release --target wasm32-wasip2 \
		--manifest-path $(WORDS)/steps/Cargo.toml --target-dir target/examples
	$(CARGO) build --release --target wasm32-wasip2 \
		--manifest-path examples/embed/step/Cargo.toml --target-dir target/examples
	mkdir -p $(DIGITS)/build $(WORDS)/build examples/embed/build
	cp target/examples/wasm32-wasip2/release/summarize.wasm examples/embed/build/
	for bin in $(DIGITS_BINS); do cp target/examples/wasm32-wasip2/release/$$bin.wasm $(DIGITS)/build/; done
	for bin in $(WORDS_BINS); do cp target/examples/wasm32-wasip2/release/$$bin.wasm $(WORDS)/build/; done

## Run the digits pipeline twice: the second run reuses every step.
run: build examples
	$(WEIR) run $(DIGITS)/pipeline.toml --workspace $(DIGITS_WS)
	@echo "--- again: nothing changed, so every step is reused ---"
	$(WEIR) run $(DIGITS)/pipeline.toml --workspace $(DIGITS_WS)
	@echo "--- exported: $(DIGITS)/results ---"
	@head -n 11 $(DIGITS)/results/confusion.csv

## The digits pipeline written in Python (examples/digits-py), twice: componentize-py
## builds each step once (10-20 s each), the second run reuses every step.
run-python: build
	$(WEIR) run examples/digits-py/pipeline.toml --workspace examples/digits-py/.weir
	@echo "--- again: nothing changed, so every step is reused ---"
	$(WEIR) run examples/digits-py/pipeline.toml --workspace examples/digits-py/.weir
	@head -n 11 examples/digits-py/results/confusion.csv

## The small text example: word counts and a report, from step packages packed here.
run-wordcount: build examples
	for step in $(WORDS_BINS); do $(WEIR) step pack $(WORDS)/packages/$$step/step.toml -o $(WORDS)/packages/$$step.tar; done
	$(WEIR) run $(WORDS)/pipeline.toml --workspace $(WORDS_WS)
	@digest=$$($(WEIR) run $(WORDS)/pipeline.toml --workspace $(WORDS_WS) --json \
		| python3 -c 'import json, sys; print(next(s for s in json.load(sys.stdin)["steps"] if s["step"] == "report")["outputs"]["report"])') \
		&& $(WEIR) cat "$$digest" --workspace $(WORDS_WS)

## The embedding example: a pipeline built in Rust with the application's own native code.
run-embed: examples
	$(CARGO) run -p weir-embed-example

## All tests: unit, integration (guests are built from source by the tests) and doc tests,
## then contract fuzzing of `weir serve` against its OpenAPI document (schemathesis, from PyPI
## into target/schemathesis-venv), then the web UI in headless Chromium (Playwright, from PyPI
## into target/ui-venv).
## A Slurm cluster this target starts is stopped again, whether the tests pass or fail.
test: setup
	@ours=; \
	if ! sinfo >/dev/null 2>&1; then \
		if scripts/slurm-cluster.sh up >/dev/null 2>&1; then ours=1; fi; \
	fi; \
	if sinfo >/dev/null 2>&1; then echo "a local Slurm cluster is up: the slurm tests run"; \
	else echo "no local Slurm cluster (scripts/slurm-cluster.sh up needs root): the slurm tests are skipped"; fi; \
	status=0; $(CARGO) test --workspace || status=$$?; \
	if [ -n "$$ours" ]; then scripts/slurm-cluster.sh down >/dev/null 2>&1 || true; fi; \
	exit $$status
	$(CARGO) test -p weir --features cuda --lib native::
	$(MAKE) contract
	$(MAKE) ui-test

## The web UI in a real browser (tests/ui/run.sh): the digits example published, triggered,
## followed live, compared, cancelled and edited in the designer. Screenshots: target/ui-screenshots.
ui-test: setup examples
	$(CARGO) build --workspace --bins --tests
	tests/ui/run.sh

## Contract fuzzing of the server's API (tests/contract/run.sh; WEIR_CONTRACT_SECONDS bounds it).
## The binary is built as the tests build it (their features), reusing what `cargo test` compiled.
contract: setup
	$(CARGO) build --workspace --bins --tests
	tests/contract/run.sh

## Benchmarks (release build; slow to compile the first time). Results go in BENCHMARKS.md.
## Criterion micro-benchmarks (bridge, engine) and whole-run suites (overhead, pipelines,
## hashing, compute) that print Markdown tables. `cargo install b3sum` for the hashing ratio.
bench: setup
	$(CARGO) bench -p weir-tests

## A quick subset (under a minute once built), before committing a change to a hot path.
bench-quick: setup
	WEIR_BENCH_RUNS=100 $(CARGO) bench -p weir-tests --bench overhead
	$(CARGO) bench -p weir-tests --bench engine -- --warm-up-time 1 --measurement-time 3 chain_1000/reused_cli

## weir and Snakemake side by side (installs Snakemake from PyPI into a virtual environment).
bench-peers:
	bench/peers.sh

## The shared cache: a 1,000-step chain sent to and pulled from `weir serve` on loopback.
bench-shared-cache: setup
	$(CARGO) build --release -p weir-cli
	CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128" $(CARGO) build --quiet --release --target wasm32-wasip1 --manifest-path tests/guests/tool/Cargo.toml --target-dir target/guests
	bench/shared_cache.sh 1000

## The web UI's run page for a 1,000-step chain: server time, bytes, first paint in Chromium.
bench-ui: setup
	$(CARGO) build --release -p weir-cli
	CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128" $(CARGO) build --quiet --release --target wasm32-wasip1 --manifest-path tests/guests/tool/Cargo.toml --target-dir target/guests
	bench/ui_page.sh 1000

## Formatting and lints, as CI checks them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p weir --features cuda --all-targets -- -D warnings
	$(CARGO) clippy -p weir-tests --features cuda --benches -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(DIGITS)/build $(DIGITS_WS) $(DIGITS)/results $(WORDS)/build $(WORDS_WS)
	rm -rf examples/digits-py/.weir examples/digits-py/results
