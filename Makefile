# The two commands of the README. Both create the virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install lifecycle-diagram architecture-doc

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "Creating a virtualenv failed: install python3-venv (apt-get install python3-venv) and run make again."; exit 1; }
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(BIN)/.installed

# Web server, a Celery worker per queue and beat together; Ctrl-C stops them all.
run: install
	@./scripts/run.sh

# Throwaway PostgreSQL, MariaDB and Redis on loopback ports, the whole suite, then stops them.
# Pass pytest arguments with ARGS, e.g. make test ARGS="-k deadlines -x".
test: install
	@./scripts/test.sh $(ARGS)

# Regenerate the lifecycle diagram in docs/lifecycle.md from the state machine.
lifecycle-diagram: install
	DEBUG=1 $(BIN)/python manage.py lifecycle_diagram --write docs/lifecycle.md

# Regenerate docs/architecture.md (packages, layers, the path of a request) from the code.
architecture-doc: install
	DEBUG=1 $(BIN)/python manage.py architecture_doc --write docs/architecture.md
