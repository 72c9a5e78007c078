# The two commands of the README. Each works from nothing: it makes .venv and installs meetvar first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

MP_VENV := .venv-mediapipe
MMPOSE_VENV := .venv-mmpose
CHECKOV_VENV := .venv-checkov

.PHONY: demo test lint system-deps bench-deps deploy-deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/meetvar demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium; tests/test_multihost.py puts each service in a network
# namespace of its own with iproute2's `ip` (and needs root). Install them once (root, as on CI) when missing.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v ip >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver iproute2)

# Google's MediaPipe (numpy<2) lives in its own venv; the pose benchmark and its test compare against it.
bench-deps: $(MP_VENV)/.installed $(MMPOSE_VENV)/.installed
$(MP_VENV)/.installed:
	$(PYTHON) -m venv $(MP_VENV)
	$(MP_VENV)/bin/pip install --quiet mediapipe==0.10.21
	touch $@

# mmpose (RTMPose export) has its own venv too: deploy/mmpose/README.md says why and how (about a minute).
$(MMPOSE_VENV)/.installed: deploy/mmpose/make_venv.sh
	PYTHON=$(PYTHON) deploy/mmpose/make_venv.sh $(MMPOSE_VENV)
	touch $@

# checkov pins many packages of its own (boto3, pydantic, …): its own venv, used by tests/test_deploy.py.
deploy-deps: $(CHECKOV_VENV)/.installed
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	touch $@

test: lint system-deps bench-deps deploy-deps
	$(BIN)/pytest -q
