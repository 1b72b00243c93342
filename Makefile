# Two commands for a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
# The benchmarks' own venv: the project plus the official OpenAI instrumentation they compare with
# (installed for the benchmarks only, never a dependency of the project).
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_REFERENCE := opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==1.1b0

.PHONY: demo test soak bench screenshots lint browser postgres clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,otlp]'
	touch $(STAMP)

# A Chromium for the browser tests: Debian's package where apt works (no browser download is
# possible here), else Playwright's own download (machines with internet). With it a CJK font, so
# that the Chinese screenshots (docs/screenshots/*-zh.png) show text rather than boxes.
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
browser:
	@if [ -x $(CHROMIUM) ] && [ -e $(CJK_FONT) ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
			|| echo "warning: apt-get could not install chromium and fonts-wqy-microhei"; \
	fi; \
	if [ ! -x $(CHROMIUM) ] && [ -x $(BIN)/playwright ]; then $(BIN)/playwright install chromium; fi; \
	[ -x $(CHROMIUM) ] || echo "warning: no Chromium at $(CHROMIUM); browser tests will use Playwright's, if any"

# A PostgreSQL server's binaries for the PostgreSQL store tests (tests/exporter/test_postgres.py starts
# a throwaway cluster with them): Debian's package where apt works. Without them those tests fail and
# say how to install them.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
			|| echo "warning: apt-get could not install postgresql"; \
	fi; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| echo "warning: no PostgreSQL server binaries; the PostgreSQL store tests will fail"

demo: $(STAMP)
	$(BIN)/llm-otel demo

# One pytest worker per core (pytest-xdist), each module whole on one worker (its module fixtures
# built once); each worker starts its own Chromium and throwaway PostgreSQL cluster.
test: $(STAMP) browser postgres
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# Load (with the admin SIGKILLed mid-run), faults, a PostgreSQL restart and streams at the full scale
# of the reliability issue (tests/soak; figures in docs/operations.md): 20-25 minutes on a shared
# 2-core machine. Needs root for the disk-full run (a small tmpfs). Scale down with SOAK_CALLS (per
# process, default 10000), SOAK_PROCESSES (4), SOAK_CLIENTS (20), SOAK_STREAMS (10000).
soak: $(STAMP) postgres
	$(BIN)/python -m pytest -q -s -m soak tests/soak

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e '.[test]' $(BENCH_REFERENCE)
	touch $(BENCH_STAMP)

# Every benchmark, then their figures into docs/performance.md (about an hour; ARGS=--quick: minutes).
bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/run.py $(ARGS)

# The README's and docs/page.md's pictures (a plain `make test` writes them to a temporary folder).
screenshots: $(STAMP) browser
	LLM_OTEL_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/admin_flask/browser/test_screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(BENCH_VENV) *.egg-info
