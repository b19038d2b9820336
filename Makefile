# Peace Portal: `make run` serves the portal with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install policy-check clean bench bench-smoke

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/portal db upgrade
	$(BIN)/portal demo-data --referrals 300
	@echo "Peace Portal on http://127.0.0.1:5000 (demo accounts: see above; Ctrl-C stops)"
	$(BIN)/portal run --host 127.0.0.1 --port 5000

test: $(STAMP)
	$(BIN)/portal policy check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

policy-check: $(STAMP)
	$(BIN)/portal policy check

# The benchmark of bench/README.md: generates 1,000,000 referrals into portal_bench if absent.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The same harness on ~20,000 referrals in a scratch database (dropped afterwards); CI runs it.
bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
