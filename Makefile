# devbox — two commands on a fresh Debian 12 machine (as root):
#   make run    install packages, build, build the Debian box image once per machine, serve
#   make test   install packages and the Python test venv, build, run every test
#   make unit   the fast tier only: Swift tests without root or crun (~10 s after a build;
#               as root it builds first, as any other user it runs the existing build)
#   make service  install the release binary as /usr/local/bin/devbox and the systemd unit
#                 (devbox install-service; a copy is scripts/devbox.service)
SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test deps test-deps build build-release image image-debug unit integration e2e venv bench clean format

deps:
	@scripts/install-deps.sh
	@scripts/cgroup-fix.sh

test-deps:
	@scripts/install-deps.sh --test
	@scripts/cgroup-fix.sh

build-release: deps
	$(SWIFT) build -c release --product devbox

build: deps
	$(SWIFT) build --build-tests

# The boxes' Debian image, once per machine (/var/lib/devbox/images, or DEVBOX_IMAGE_DIR):
# debootstrap from the host's apt mirror, about a minute; a no-op when the store has it.
image: build-release
	.build/release/devbox image build --if-missing >/dev/null

image-debug: build
	.build/debug/devbox image build --if-missing >/dev/null

run: build-release image
	.build/release/devbox serve

# Under systemd: Type=notify (READY=1 once listening, STOPPING=1 on SIGTERM), boxes survive a
# restart (KillMode=process). Then: systemctl daemon-reload && systemctl enable --now devbox
service: build-release
	install -m 0755 .build/release/devbox /usr/local/bin/devbox
	/usr/local/bin/devbox install-service --binary /usr/local/bin/devbox

venv: $(VENV)/.done
$(VENV)/.done: Tests/e2e/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r Tests/e2e/requirements.txt
	touch $@

# The fast tier (scripts/unit.sh): every Swift test but SandboxTests and DevboxIntegrationTests,
# run from the built test bundle — no root, no crun. A non-root user cannot build here (the
# packages and .build are root's): `make build`, then e.g. `runuser -u nobody -- make unit`.
unit: $(if $(filter 0,$(shell id -u)),build)
	scripts/unit.sh

# The Swift integration tier alone: crun, root, the host (SandboxTests, DevboxIntegrationTests).
integration: build
	DEVBOX_TEST_PYTHON=$(CURDIR)/$(PY) $(SWIFT) test --skip-build --filter '^(SandboxTests|DevboxIntegrationTests)\.'

e2e: build venv image-debug
	DEVBOX_BIN=$(CURDIR)/.build/debug/devbox $(PY) -m pytest -q Tests/e2e

test: test-deps venv build image-debug
	DEVBOX_TEST_PYTHON=$(CURDIR)/$(PY) $(SWIFT) test --skip-build
	DEVBOX_BIN=$(CURDIR)/.build/debug/devbox $(PY) -m pytest -q Tests/e2e

bench: build-release venv
	bench/run.sh

clean:
	rm -rf .build $(VENV)
