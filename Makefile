# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
# The interpreter .venv is made from: Debian's own CPython where it is there with venv and is 3.11 or newer (built
# with profile-guided and link-time optimisation: `digest send` used 9 % less CPU on it than on a plain source build
# such as pyenv's, and `make test` ran a fifth faster), else the python3 on PATH. `make PYTHON=...` picks another.
SYSTEM_PYTHON := $(shell /usr/bin/python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo /usr/bin/python3)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test probe soak lint bench clean system-packages bench-packages apt-packages i18n

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e '.[test]'  # -qq: not setuptools' editable-install notice
	touch $(STAMP)

# The compiled catalogs (git-ignored): rebuilt from their .po whenever it changes, before anything runs.
LOCALES := src/digest/locales
CATALOGS := $(patsubst %.po,%.mo,$(wildcard $(LOCALES)/*/LC_MESSAGES/messages.po))

$(LOCALES)/%/LC_MESSAGES/messages.mo: $(LOCALES)/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --statistics --domain messages --directory $(LOCALES) --locale $*

## i18n: extract every message (code, pages, mails) into messages.pot, merge it into each language's .po, compile;
## then translate what is new (empty msgstr) and run it again. tests/test_translations.py fails until then.
i18n: $(STAMP)
	$(BIN)/pybabel extract --mapping-file babel.cfg --keywords _ --keywords ngettext:1,2 --no-location --no-wrap \
		--sort-output --output-file $(LOCALES)/messages.pot .
	$(BIN)/pybabel update --input-file $(LOCALES)/messages.pot --output-dir $(LOCALES) --no-fuzzy-matching \
		--no-wrap --ignore-obsolete
	$(BIN)/pybabel compile --statistics --domain messages --directory $(LOCALES)

## run: one full cycle on the embedded default (SQLite under var/, mail to the Maildir var/outbox)
run: $(STAMP) $(CATALOGS)
	$(BIN)/digest run --once

## system-packages: what the tests need from Debian (chromium: browser test; spamassassin; openssl: DKIM test key;
## nginx: the reverse-proxy test; postfix: smtp-sink, a real MTA's SMTP server for the delivery test; newsboat: a
## real feed reader reads every feed; prometheus: promtool checks the alert rules, and a real Prometheus scrapes;
## dovecot-imapd, dovecot-lmtpd: a real IMAP server holds the bounce mailbox, and a full mailbox (a quota) behind Postfix)
SYSTEM_PACKAGES := chromium spamassassin openssl nginx postfix newsboat prometheus dovecot-imapd dovecot-lmtpd
system-packages:
	@$(MAKE) --no-print-directory apt-packages PACKAGES="$(SYSTEM_PACKAGES)"

## bench-packages: what the benchmarks need from Debian (postfix: smtp-sink and smtp-source; apache2-utils: ab)
bench-packages:
	@$(MAKE) --no-print-directory apt-packages PACKAGES="postfix apache2-utils"

apt-packages:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing) \
			|| echo "could not install$$missing: the tests that need it will skip and say why"; \
		else echo "not root: cannot install$$missing (the browser test will skip)"; fi; \
	fi

## test: the whole test suite (needs PostgreSQL on 127.0.0.1:5432 for the PostgreSQL tests)
test: $(STAMP) $(CATALOGS)
	$(BIN)/pytest

## probe: the attacks and faults of the last probe (proxy, kills, replays, a store dropped, tokens in logs); in `make test` too
probe: $(STAMP) $(CATALOGS) system-packages
	$(BIN)/pytest -m probe

## soak: the long runs, not in make test: the delivery state machine with many more (unseeded) examples
soak: $(STAMP) $(CATALOGS)
	DIGEST_SOAK=1 $(BIN)/pytest tests/test_delivery_states.py

## lint: ruff (check and format), mypy --strict and the import contracts
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: the benchmarks in benchmarks/ (print figures; not tests)
bench: $(STAMP) $(CATALOGS) bench-packages
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_send.py
	$(BIN)/python benchmarks/bench_tokens.py
	$(BIN)/python benchmarks/bench_feed.py
	$(BIN)/python benchmarks/bench_feed_http.py
	$(BIN)/python benchmarks/bench_plan.py
	$(BIN)/python benchmarks/bench_throughput.py
	$(BIN)/python benchmarks/bench_throughput.py 50000
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_replies.py
	$(BIN)/python benchmarks/bench_api.py

clean:
	rm -rf var feeds/*.atom
