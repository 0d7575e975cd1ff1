# The README's two commands: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ES := $(BIN)/python deploy/es-local

.PHONY: demo test lint venv bench es-start es-stop prereqs clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@deploy/prereqs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

demo: venv
	$(BIN)/nis2triage demo

# Throughput, ElastAlert 2, latency, memory and accuracy on the checkout's local node (started
# or reused as for the demo); table, bench.json and bench.png in out/bench. Not run in CI.
# The large run (see the README): make bench EVENTS=10000000 REPEAT=1 BENCH_ARGS="--skip elastalert
# --skip latency --skip memory --skip nab --read windowed --read scroll"
# (the unbounded paging is quadratic in the events).
EVENTS ?= 2000000
REPEAT ?= 3
bench: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m nis2triage.bench.run --events $(EVENTS) --repeat $(REPEAT) --out out/bench $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check plugin tests deploy/es-local
	$(BIN)/ruff format --check plugin tests
	$(BIN)/mypy

# Starts the node unless one is already running from this checkout or NIS2TRIAGE_ES_URL
# names a cluster to test against, and stops only a node it started, whatever the checks said.
test: venv
	@started=0; \
	if [ -n "$$NIS2TRIAGE_ES_URL" ]; then \
		echo "make test: testing against $$NIS2TRIAGE_ES_URL (NIS2TRIAGE_ES_URL)"; \
	elif $(ES) status >/dev/null; then \
		echo "make test: using the node already running from this checkout ($$($(ES) url)); it is left running"; \
	else $(ES) start || exit 1; started=1; fi; \
	rc=0; \
	$(MAKE) --no-print-directory lint && $(BIN)/pytest || rc=$$?; \
	if [ $$started = 1 ]; then $(ES) stop; fi; \
	exit $$rc

es-start: venv
	$(ES) start

es-stop: venv
	$(ES) stop

clean:
	-$(ES) stop
	rm -rf $(VENV) .es
