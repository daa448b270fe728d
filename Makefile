# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
UV     := uv==0.13.9
UVBIN  := .venv-lock/bin/uv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
PG_VERSION := $(shell ls /etc/postgresql 2>/dev/null | head -n1)
# Python's bytecode cache kept where the environment asks not to write it: the
# suite starts `digest` hundreds of times, and each start compiled the project's
# modules afresh (0.1 s of CPU a command); four test workers rewrote every test.
unexport PYTHONDONTWRITEBYTECODE


.PHONY: lock venv demo demo-site mariadb bench-sources test test-fast lint typecheck pytest a11y letter-pictures render-check thunderbird axe browser postfix bench bench-send bench-faults bench-greylist bench-workers bench-rate bench-rss bench-ingest bench-signup bench-startup bench-million bench-capture services smtp-sink clean

# Exactly the versions in requirements.lock, each checked against its hash; the
# project itself without resolving anything (its build backend is in the lock).
# uv (the tool `make lock` uses) installs them in 10 s where pip takes 27 (a
# clean clone's CI); pip does it if uv cannot be had.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	{ $(MAKE) --no-print-directory $(UVBIN) \
	  && $(UVBIN) pip install --python $(BIN)/python --quiet --compile-bytecode --require-hashes --no-deps -r $(LOCK) \
	  && $(UVBIN) pip install --python $(BIN)/python --quiet --no-deps --no-build-isolation -e . ; } \
	|| { $(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK) \
	  && $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . ; }
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

$(UVBIN):
	$(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet '$(UV)'

## make lock: resolve pyproject.toml's ranges afresh into requirements.lock (then run make test)
lock: $(UVBIN)
	$(UVBIN) pip compile pyproject.toml --extra test requirements-build.in \
		--generate-hashes --python-version 3.11 --quiet -o $(LOCK)

## make demo: set up, load the demo data and send a digest through a local SMTP capture server
demo: $(STAMP)
	$(BIN)/digest demo

## make demo-site: the same, read from a site's own database: the demo's articles in a WordPress-layout MariaDB (private, under var/site-db), synced by a source, sent
demo-site: $(STAMP) mariadb
	DIGEST_SOURCES_DIR=var/sources $(BIN)/digest demo --site

# The suite runs on every core (pytest-xdist); the tests of rates, caps and outages
# share one group so they never run beside each other (tests/support/tiers.py).
PYTEST_WORKERS ?= 4
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup

## make test: lint, type-check and the whole suite (real SMTP, SQLite and PostgreSQL), side by side
# Lint and type-check run beside pytest; their output comes as one block when done.
test: $(STAMP) services browser postfix axe thunderbird mariadb
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint typecheck & checks=$$!; \
	$(MAKE) --no-print-directory pytest; tests=$$?; \
	wait $$checks; checked=$$?; \
	if [ $$tests -ne 0 ] || [ $$checked -ne 0 ]; then echo "make test: failed (pytest $$tests, lint/typecheck $$checked)"; exit 1; fi

## make test-fast: the inner loop on SQLite: no PostgreSQL, browser, Postfix, outages or `digest` processes
test-fast: $(STAMP) services mariadb
	$(BIN)/pytest $(XDIST) -m "not postgres and not browser and not postfix and not outage and not timing and not acceptance and not thunderbird" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check digest tests bench
	$(BIN)/ruff format --check digest tests bench
	$(BIN)/bandit -q -c pyproject.toml -r digest

typecheck: $(STAMP)
	$(BIN)/mypy

# One run on every worker; the tests that measure seconds (rates, caps, holds,
# outages: the `timing` marker) share one xdist group, never beside each other.
pytest: $(STAMP) services browser postfix axe thunderbird mariadb
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

## make letter-pictures: the letter at 375 px, light and dark, images on and blocked, as the suite makes it, into docs/letter/ (the README shows them)
letter-pictures: $(STAMP) services browser
	$(BIN)/pytest tests/integration/test_the_letter_as_readers_see_it.py $(PYTEST_ARGS)
	mkdir -p docs/letter && cp var/letter/letter-375-*.png docs/letter/

## make render-check: each kind of letter (full, a section subset, text only) opened in Thunderbird under Xvfb, read back by OCR; pictures in var/thunderbird/
render-check: $(STAMP) services thunderbird
	$(BIN)/pytest -m thunderbird $(PYTEST_ARGS)

# Debian's Thunderbird, Xvfb, xdotool, ImageMagick and tesseract (Russian) for
# render-check. Under CI=true a failed install is an error.
THUNDERBIRD_PARTS := thunderbird xvfb xdotool imagemagick tesseract-ocr tesseract-ocr-rus
thunderbird:
	@{ command -v thunderbird && command -v Xvfb && command -v xdotool && command -v import && \
	   command -v tesseract && tesseract --list-langs 2>/dev/null | grep -qx rus; } >/dev/null || { \
		echo "installing Debian's thunderbird, xvfb, xdotool, imagemagick and tesseract for render-check (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(THUNDERBIRD_PARTS) >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(THUNDERBIRD_PARTS) >/dev/null; } || \
		{ echo "could not install $(THUNDERBIRD_PARTS)"; if [ "$$CI" = "true" ]; then exit 1; fi; }; }

## make a11y: the accessibility audit alone (axe-core in Chromium, the keyboard walk)
a11y: $(STAMP) services browser axe
	$(BIN)/pytest tests/integration/test_accessibility.py $(PYTEST_ARGS)

# axe-core for the accessibility tests, exactly as tests/axe/package-lock.json
# pins it (npm ci checks its integrity hash). Under CI=true no npm is an error.
AXE := tests/axe/node_modules/axe-core/axe.min.js
axe: $(AXE)
$(AXE): tests/axe/package.json tests/axe/package-lock.json
	@if command -v npm >/dev/null; then \
		cd tests/axe && npm ci --no-audit --no-fund --silent && touch node_modules/axe-core/axe.min.js; \
	else echo "no npm: the accessibility tests need it (Debian's npm package)"; \
		if [ "$$CI" = "true" ]; then exit 1; fi; fi

# PostgreSQL on 127.0.0.1:5432 (trust auth): start it when it is down. Under
# CI=true a missing server is an error, never a silent skip.
services:
	@if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then :; \
	elif [ -n "$(PG_VERSION)" ]; then \
		echo "starting PostgreSQL $(PG_VERSION)"; \
		pg_ctlcluster --skip-systemctl-redirect $(PG_VERSION) main start || true; \
		for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
		echo "PostgreSQL is not reachable on 127.0.0.1:5432"; \
		if [ "$$CI" = "true" ]; then exit 1; fi; }

## make bench: send rate against Postfix's smtp-sink, a faults run, one vs two workers
bench: bench-send bench-rss bench-faults bench-greylist bench-workers bench-rate bench-ingest bench-sources bench-signup bench-startup bench-capture

## make bench-capture: the test relay's CPU a message, aiosmtpd's DATA beside ours
bench-capture: $(STAMP)
	$(BIN)/python bench/capture.py --messages 2000

bench-send: $(STAMP) smtp-sink
	$(BIN)/python bench/send.py --subscribers 20000

bench-faults: $(STAMP)
	$(BIN)/python bench/delivery.py --faults --subscribers 5000
	$(BIN)/python bench/delivery.py --outage 30 --subscribers 2000

bench-greylist: $(STAMP)
	$(BIN)/python bench/delivery.py --greylist --subscribers 5000

bench-rate: $(STAMP)
	$(BIN)/python bench/delivery.py --rate 80 --subscribers 2000

bench-workers: $(STAMP) smtp-sink services
	$(BIN)/python bench/scale.py --subscribers 20000

## make bench-ingest: ingest's peak memory for a hostile JSON line and a gzip bomb of a feed
bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py --line-mb 10,15,50 --feed-mb 300

## make bench-sources: `digest sources sync` of 100 000 WordPress posts and 1 000 000 comments (private MariaDB): rows/s, peak RSS, against a raw read
bench-sources: $(STAMP) mariadb
	$(BIN)/python bench/sources.py --articles 100000 --comments 1000000

## make bench-signup: the subscription box's answer time, a new address against a known one
bench-signup: $(STAMP)
	$(BIN)/python bench/signup.py --requests 100

## make bench-startup: how long `digest --version`, `--help` and `status` take to answer
bench-startup: $(STAMP)
	$(BIN)/python bench/startup.py --runs 20

## make bench-million: a million readers on PostgreSQL (issue 31): import, enqueue, status and the desk's page, a send by workers into smtp-sink, a second edition; time, rate and peak RSS of each step beside 10 000 readers
bench-million: $(STAMP) smtp-sink services
	$(BIN)/python bench/million.py --readers 1000000 --send

## make bench-rss: peak memory for 10 000 and 100 000 subscribers
bench-rss: $(STAMP) smtp-sink
	$(BIN)/python bench/send.py --rss 10000,100000

# Debian's chromium for the browser tests (Playwright drives it; nothing is
# downloaded by Playwright itself). Under CI=true a failed install is an error.
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser tests (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
		{ echo "could not install chromium"; if [ "$$CI" = "true" ]; then exit 1; fi; }; }

# Debian's postfix: the test tier's private relay (tests/postfix.py, `postfix -c
# DIR` on its own port and queue) and smtp-sink for the benches. Installed with
# "No configuration": nothing of the machine's own mail setup changes.
# Under CI=true a failed install is an error.
postfix:
	@test -x /usr/sbin/postfix || { \
		echo "installing Debian's postfix for the relay tests (apt-get)"; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null; } || \
		{ echo "could not install postfix"; if [ "$$CI" = "true" ]; then exit 1; fi; }; }

smtp-sink: postfix

# Debian's MariaDB server: the tests' private site database (tests/support/mariadb.py,
# its own data directory, port and socket) and `make demo-site`'s. The package's own
# server is not needed and not configured. Under CI=true a failed install is an error.
mariadb:
	@{ command -v mariadbd || test -x /usr/sbin/mariadbd; } >/dev/null && command -v mariadb-install-db >/dev/null || { \
		echo "installing Debian's mariadb-server for the site database tests (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >/dev/null; } || \
		{ echo "could not install mariadb-server"; if [ "$$CI" = "true" ]; then exit 1; fi; }; }

clean:
	rm -rf $(VENV) .venv-lock var .pytest_cache .mypy_cache .ruff_cache tests/axe/node_modules
