# Every target sets up what it needs: a virtual environment with the locked dependencies.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

# The package's bytecode is compiled as `pip install` would for a regular install, so that
# a process started with PYTHONDONTWRITEBYTECODE=1 does not compile the source every time
# (a source file edited later is compiled in each process again, until the next set-up).
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("monitor needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q monitor
	touch $(STAMP)

# The webhooks' signing secret, when MONITOR_WEBHOOK_SECRET is not set: made once, kept
# beside the database (readable by its owner only), so a receiver can check signatures.
SECRET := data/webhook-secret

## run: the daemon with the default config (Ctrl-C stops it)
run: $(STAMP)
	@test -n "$$MONITOR_WEBHOOK_SECRET" || test -s $(SECRET) || { \
	    mkdir -p data && umask 077 && \
	    $(BIN)/python -c 'import secrets, base64; print("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())' > $(SECRET) && \
	    echo "made a webhook signing secret in $(SECRET): give it to your receiver"; }
	MONITOR_WEBHOOK_SECRET="$${MONITOR_WEBHOOK_SECRET:-$$(cat $(SECRET))}" \
	    $(BIN)/monitor --config config/monitor.toml run

## test: lint, type-check and the whole test suite
test: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/mypy --strict monitor
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor
	$(BIN)/mypy --strict monitor

bench: $(STAMP)
	$(BIN)/python bench/poll_cycle.py
	$(BIN)/python bench/decide.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
