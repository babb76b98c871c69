# `make run`: set up .venv and run the daily job on the embedded defaults.
# `make test`: set up .venv and run lint, type check and tests under coverage (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint browser bench bench-scale clean

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

# The browser tests need Chromium and its WebDriver. As root with apt (a fresh machine, CI)
# they are installed from Debian's packages by .ci/install-chromium (which waits for apt's
# locks); elsewhere the tests skip and say why (under CI=true they fail).
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	    .ci/install-chromium; \
	  else \
	    echo "chromium not found and cannot be installed here: the browser tests will be skipped"; \
	  fi; }

# The tests run under coverage, with the gate in pyproject.toml ([tool.coverage.report]
# fail_under): below it, the run fails. The report lists the files not wholly covered.
test: lint browser
	$(BIN)/pytest --cov --cov-report=term:skip-covered

bench: $(BIN)/digest
	$(BIN)/python bench/load.py
	$(BIN)/python bench/render.py

# Needs Postfix's smtp-sink and smtp-source, and PostgreSQL for the scale benchmark.
bench-scale: $(BIN)/digest
	$(BIN)/python bench/send.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis .coverage .coverage.*
