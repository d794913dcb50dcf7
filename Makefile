# weir: `make run` sets up and runs the example pipeline; `make test` runs all tests.

CARGO        ?= cargo
WASM_TARGETS := wasm32-wasip1 wasm32-wasip2
WEIR         := target/debug/weir
EXAMPLE      := examples/wordcount
EXAMPLE_WS   := $(EXAMPLE)/.weir
STEP_BINS    := normalize count stats report

.PHONY: all setup build example run test lint fmt bench clean

all: build

## Install what a fresh machine lacks: the WASI targets for guests.
setup:
	@if command -v rustup >/dev/null 2>&1; then \
		rustup target add $(WASM_TARGETS) >/dev/null 2>&1 || rustup target add $(WASM_TARGETS); \
	else \
		echo "rustup not found: make sure the $(WASM_TARGETS) targets are installed"; \
	fi

## Build the weir binary.
build: setup
	$(CARGO) build -p weir-cli

## Build the example's steps (Rust, wasm32-wasip2 components) into $(EXAMPLE)/build.
example: setup
	$(CARGO) build --release --target wasm32-wasip2 \
		--manifest-path $(EXAMPLE)/steps/Cargo.toml --target-dir target/examples
	mkdir -p $(EXAMPLE)/build
	for bin in $(STEP_BINS); do cp target/examples/wasm32-wasip2/release/$$bin.wasm $(EXAMPLE)/build/; done

## Run the example pipeline twice (the second run reuses every step), then print its report.
run: build example
	$(WEIR) run $(EXAMPLE)/pipeline.toml --workspace $(EXAMPLE_WS)
	@echo "--- again: nothing changed, so every step is reused ---"
	$(WEIR) run $(EXAMPLE)/pipeline.toml --workspace $(EXAMPLE_WS)
	@echo "--- the report ---"
	@digest=$$($(WEIR) run $(EXAMPLE)/pipeline.toml --workspace $(EXAMPLE_WS) --json \
		| python3 -c 'import json, sys; print(json.load(sys.stdin)["steps"]["report"]["outputs"]["report"])') \
		&& $(WEIR) cat "$$digest" --workspace $(EXAMPLE_WS)

## All tests: unit, integration (guests are built from source by the tests) and doc tests.
test: setup
	$(CARGO) test --workspace

## Benchmarks (release build; slow to compile the first time). Results go in BENCHMARKS.md.
bench: setup
	$(CARGO) bench -p weir-tests

## Formatting and lints, as CI checks them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p weir --features cuda -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(EXAMPLE)/build $(EXAMPLE_WS)
