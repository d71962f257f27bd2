# csvault: every target sets up what it needs (a .venv with pinned dependencies).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the dependencies or the C fast path change.
NATIVE := csvault/csvio/_csvblocks.c csvault/csvio/_profile.c csvault/csvio/_utf8.h
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py $(NATIVE) | sha1sum | cut -c1-12)
PORT ?= 8000
HOST ?= 127.0.0.1
export PORT HOST

.PHONY: install run web worker beat migrate test coverage lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(NATIVE)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "csvault needs Python 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

migrate: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

## web and one worker (with the periodic reaper), foreground; Ctrl-C stops both
run: migrate
	scripts/run.sh

## the WSGI server alone (gunicorn)
web: migrate
	$(BIN)/gunicorn config.wsgi --config scripts/gunicorn.conf.py

## a Celery worker alone; CELERY_QUEUES=csvault.ingest (say) limits it to one stage
QUEUE_BASE = $${CELERY_TASK_DEFAULT_QUEUE:-csvault}
WORKER_QUEUES = $${CELERY_QUEUES:-$(QUEUE_BASE),$(QUEUE_BASE).scan,$(QUEUE_BASE).ingest}
worker: install
	$(BIN)/celery -A config worker --loglevel INFO --concurrency $${CELERY_CONCURRENCY:-2} \
	  -Q "$(WORKER_QUEUES)"

## the periodic scheduler (reaper); run exactly one per deployment
beat: install
	$(BIN)/celery -A config beat --loglevel INFO --schedule $${CSVAULT_DATA_DIR:-var}/celerybeat-schedule

## the test suite: embedded mode by default, PostgreSQL/Redis when DATABASE_URL etc. are set;
## prints coverage (data in $$COVERAGE_FILE, default .coverage) and the skips
test: install
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

## mypy's Django plugin imports the settings, which read embedded mode's dev secrets
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -c 'from config import bootstrap; bootstrap.prepare()'
	$(BIN)/mypy .
	$(BIN)/lint-imports
	@# A module past ~500 lines usually holds two ideas (docs/architecture.md).
	@find csvault -name '*.py' -not -path '*/migrations/*' -exec wc -l {} + | \
	  awk '$$2 != "total" && $$1 > 500 {print "over 500 lines: " $$2; bad = 1} END {exit bad}'
	@if command -v promtool >/dev/null; then \
	  promtool check rules deploy/prometheus/alerts.yml && promtool test rules deploy/prometheus/alerts.test.yml; \
	else echo "promtool not installed: alert rules not checked (see docs/operations.md)"; fi

## coverage of several `make test` runs together (COVERAGE_RUNS: their COVERAGE_FILEs);
## fails below COVERAGE_FLOOR percent (the two CI runs together reach 93.2%)
COVERAGE_FLOOR ?= 92
coverage: install
	$(BIN)/coverage combine --keep $(COVERAGE_RUNS)
	@echo "coverage, runs combined: $$($(BIN)/coverage report --format=total)% (floor $(COVERAGE_FLOOR)%)"
	@$(BIN)/coverage report --fail-under=$(COVERAGE_FLOOR) >/dev/null

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles .mypy_cache .ruff_cache .pytest_cache build csvault/csvio/_csvblocks.*.so

## the ingest benchmark against PostgreSQL + Redis (see bench/README.md); BENCH_ARGS="--rows 100000"
.PHONY: bench
bench: install
	$(BIN)/python bench/ingest_bench.py $(BENCH_ARGS)

## the load test (Locust, headless) against a private local instance it starts and stops;
## PostgreSQL/Redis when DATABASE_URL etc. are set, embedded otherwise; reports in loadtests/out/
LOADTEST_STAMP := $(VENV)/.loadtest-$(shell sha1sum pyproject.toml | cut -c1-12)
$(LOADTEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,loadtest]'
	rm -f $(VENV)/.loadtest-* && touch $@
.PHONY: loadtest
loadtest: $(LOADTEST_STAMP)
	scripts/loadtest.sh

## the C parser under ASan/UBSan: differential tests with more examples, then a bounded
## fuzzing run (scripts/c-sanitize.sh; CSVAULT_TEST_EXAMPLES, FUZZ_SECONDS); needs gcc
FUZZ_STAMP := $(VENV)/.fuzz-$(shell sha1sum pyproject.toml | cut -c1-12)
$(FUZZ_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	rm -f $(VENV)/.fuzz-* && touch $@
.PHONY: sanitize
sanitize: install $(FUZZ_STAMP)
	scripts/c-sanitize.sh
