# MLM — the two commands: `make run` (embedded default) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/mlm
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# Worker processes of `make test-fast` (pytest-xdist); each has its own test database and Redis
# database.
FAST_WORKERS ?= 2

.PHONY: run test test-fast lint format bench migrate clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The locked versions (requirements/*.lock, from `make lock`), then the project itself.
$(VENV)/.installed-run: pyproject.toml requirements/run.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/run.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@echo "Installed. Preparing the embedded database..."
	DEBUG=1 exec $(BIN)/python manage.py run_embedded --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the system and browser tests (markers `system`, `e2e`), in parallel.
test-fast: $(VENV)/.installed-dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest -q -n $(FAST_WORKERS) -m "not system and not e2e" $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/vulture

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-dev
	@set -e; for b in bench/[!_]*.py; do \
		echo "== $$b"; \
		DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
			$(BIN)/python $$b; \
	done

# Pin the newest versions pyproject.toml's ranges allow: run (`embedded` extra) and dev.
LOCK := $(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(VENV)/.installed-dev
	$(LOCK) --upgrade --extra embedded -o requirements/run.lock pyproject.toml
	$(LOCK) --upgrade --extra embedded --extra dev -o requirements/dev.lock pyproject.toml

clean:
	rm -rf var
