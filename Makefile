# Two entry points for a fresh machine: `make demo` (simulated demo) and `make test`.
# Both create and reuse .venv at the repo root; it is rebuilt when requirements.txt changes.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test lint clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dp-tt-ros sim --episodes 3

test: $(STAMP)
	$(PY) -m pytest -q test

clean-venv:
	rm -rf $(VENV)
