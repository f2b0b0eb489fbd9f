# trioproxy: `make demo` installs and runs the offline demo; `make test` runs the suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: help install demo run test lint docs docs-serve pictures bench js-clients deploy logs status reload health metrics
help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(VENV)/.installed  ## create .venv and install trioproxy with test extras
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: install  ## fake upstream + proxy on 127.0.0.1:8787, a sample stream, then keep running
	$(BIN)/trioproxy demo

run: install  ## trioproxy serve (pass ARGS="--config trioproxy.toml")
	$(BIN)/trioproxy serve $(ARGS)

lint: install  ## ruff
	$(BIN)/ruff check trioproxy tests bench
	$(BIN)/ruff format --check trioproxy tests bench

test: install js-clients docs  ## lint and types, the documentation site, then the whole test suite
	$(BIN)/ruff check trioproxy tests bench
	$(BIN)/mypy trioproxy
	$(BIN)/pytest

docs: install  ## the documentation site into site/, offline; a warning or a broken link fails it
	$(BIN)/python -m trioproxy.reference --check
	$(BIN)/zensical build --strict

docs-serve: install  ## the documentation site at http://127.0.0.1:8000, rebuilt as you edit
	$(BIN)/zensical serve --dev-addr 127.0.0.1:8000

pictures: install  ## the site's screenshots, regenerated (headless Chromium)
	$(BIN)/python -m bench.pictures

js-clients: tests/js/node_modules/.installed  ## the TypeScript SDK used as a real client by the tests
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix tests/js --no-fund --no-audit --loglevel=error && touch $@; \
	else echo "npm not found: the TypeScript SDK test will be skipped"; fi

bench: install  ## load tests: direct, nginx, the Trio floor relays and trioproxy (bench/README.md; ARGS="--duration 5")
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench.run $(ARGS)

# --- operating a deployed proxy (ansible/inventory.ini lists the servers) ---
INVENTORY ?= ansible/inventory.ini
PORT ?= 8787
# the admin.listen port (trioproxy_admin_port), when there is one
ADMIN_PORT ?= $(PORT)
ADHOC := $(BIN)/ansible trioproxy -i $(INVENTORY)

deploy: install  ## install or update the proxy on the servers (ARGS="--ask-vault-pass")
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/playbook.yml $(ARGS)

logs: install  ## last 200 log lines from each server
	$(ADHOC) -b -m ansible.builtin.command -a "journalctl -u trioproxy -n 200 --no-pager"

status: install  ## systemctl status on each server
	$(ADHOC) -b -m ansible.builtin.command -a "systemctl status trioproxy --no-pager"

reload: install  ## SIGHUP: re-read config and secret files, no dropped connection
	$(ADHOC) -b -m ansible.builtin.systemd_service -a "name=trioproxy state=reloaded"

health: install  ## GET /health on each server
	$(ADHOC) -m ansible.builtin.uri -a "url=http://127.0.0.1:$(PORT)/health return_content=true"

metrics: install  ## GET /metrics on each server (export TRIOPROXY_ADMIN_TOKEN first; ADMIN_PORT=...)
	$(ADHOC) -m ansible.builtin.uri -a "url=http://127.0.0.1:$(ADMIN_PORT)/metrics return_content=true headers={'authorization':'Bearer {{ lookup(\"ansible.builtin.env\", \"TRIOPROXY_ADMIN_TOKEN\") }}'}"
