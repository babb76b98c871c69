# `make run`: set up .venv and run the daily job on the embedded defaults.
# `make test`: set up .venv and run lint, type check and tests under coverage (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint test-tools bench bench-scale clean

$(BIN)/digest: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/digest
	$(BIN)/digest load
	$(BIN)/digest subscribers import --source example config/subscribers.example.csv
	$(BIN)/digest preview
	$(BIN)/digest send
	@echo "Look at var/preview/digest.html in a browser, and at the sent copies in the"
	@echo "Maildir var/outbox/ (mutt -f var/outbox, or any mail client's local folder)."

lint: $(BIN)/digest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Some tests need programs from Debian's packages: Chromium and its WebDriver (the browser
# tests), SpamAssassin (digest check's spam score), Postfix (the bounce round trip),
# Dovecot (reading bounces over IMAP), Java and Node.js (the HTML checkers). As
# root with apt (a fresh machine, CI) the missing ones are installed by .ci/install-debs,
# which waits for apt's locks; elsewhere those tests skip and say why (under CI=true they
# fail).
TEST_TOOLS := chromium:chromium chromedriver:chromium-driver spamassassin:spamassassin \
	postconf:postfix dovecot:dovecot-imapd java:default-jre-headless node:nodejs npm:npm
CHECKERS := tests/checkers

test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
	  command -v "$${tool%%:*}" >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's$$missing for the tests"; \
	    .ci/install-debs $$missing; \
	  else \
	    echo "not found and cannot be installed here:$$missing (the tests that need them skip)"; \
	  fi; \
	fi
	@$(MAKE) --no-print-directory $(CHECKERS)/node_modules/.package-lock.json

# The Nu HTML checker and html-validate, at the versions package-lock.json pins.
$(CHECKERS)/node_modules/.package-lock.json: $(CHECKERS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  echo "installing the HTML checkers (npm ci in $(CHECKERS))"; \
	  npm ci --prefix $(CHECKERS) --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else \
	  echo "npm not found: the HTML checker tests skip"; \
	fi

# The tests run under coverage, with the gate in pyproject.toml ([tool.coverage.report]
# fail_under): below it, the run fails. The report lists the files not wholly covered.
test: lint test-tools
	$(BIN)/pytest --cov --cov-report=term:skip-covered

bench: $(BIN)/digest
	$(BIN)/python bench/load.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/signup.py
	$(BIN)/python bench/start.py
	$(BIN)/python bench/load.py --cached

# Needs Postfix's smtp-sink and smtp-source, and PostgreSQL for the scale benchmark.
bench-scale: $(BIN)/digest
	$(BIN)/python bench/send.py
	$(BIN)/python bench/send.py --greylist
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) $(CHECKERS)/node_modules var .mypy_cache .pytest_cache .ruff_cache .hypothesis .coverage .coverage.*
