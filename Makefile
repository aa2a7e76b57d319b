# Every target installs what it needs first (.venv from requirements.lock); nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv run run-distributed demo test test-fast fuzz chaos lint fmt bench migrate lock up clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

run: venv  ## the whole suite in one process: SQLite under ./var, in-process bus, demo data, :8000
	$(PY) -m gateway.run

demo: venv  ## a scripted clinic-and-pharmacy day through the embedded gateway, each step printed (temporary SQLite)
	$(PY) -m gateway.demo_day

run-distributed: venv  ## each service + gateway as its own process on local PostgreSQL and RabbitMQ
	$(PY) -m gateway.distributed

# Two workers (the machines have 2 cores), each with its own databases, vhost and SQLite files; an
# idle worker steals tests queued for the other, so the long ones at the end do not run one by one
# (6 min 13 s against 7 min 56 s with a file per worker).
TEST_WORKERS ?= 2

test: venv lint  ## the whole test suite (CI runs exactly this)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: venv  ## unit and API tests only, no PostgreSQL/RabbitMQ
	$(PY) -m pytest tests/unit tests/api

fuzz: venv  ## schemathesis against the gateway's merged OpenAPI, 25 examples per operation (make test runs 4)
	FUZZ_EXAMPLES=25 $(PY) -m pytest -s tests/fuzz

chaos: venv  ## outage drills on the distributed suite (stops and starts the local RabbitMQ); prints counts
	$(PY) -m tests.chaos.run

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services gateway

fmt: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv  ## prints figures side by side; asserts nothing about speed
	$(PY) -m tests.bench.run

migrate: venv  ## migrate every service's database named by DATABASE_URL (created if missing)
	$(PY) -m gateway.manage migrate

lock:  ## re-pin requirements.lock from pyproject.toml
	$(PY) -m pip install --quiet pip-tools && $(VENV)/bin/pip-compile --quiet --extra dev --strip-extras -o requirements.lock pyproject.toml

up:  ## the same topology in containers (needs a Docker engine)
	docker compose up --build

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
