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

# Full place and route of the board top (UART link + engine) for both boards, minutes each.
# Reports (utilisation, Fmax, bitstream) go to build/fpga/<board>.json; figures in docs/fpga.md.
FPGA_ARCH  ?= tiny
FPGA_LANES ?= 4
fpga: $(STAMP)
	mkdir -p build/fpga
	$(BIN)/gxnor model random --arch $(FPGA_ARCH) --seed 1 -o build/fpga/$(FPGA_ARCH).gxm --force
	$(BIN)/gxnor build --board icebreaker --model build/fpga/$(FPGA_ARCH).gxm --lanes $(FPGA_LANES) \
		-o build/fpga/icebreaker-$(FPGA_ARCH) --json > build/fpga/icebreaker.json
	$(BIN)/gxnor build --board ulx3s --model build/fpga/$(FPGA_ARCH).gxm --lanes $(FPGA_LANES) \
		-o build/fpga/ulx3s-$(FPGA_ARCH) --json > build/fpga/ulx3s.json
	$(BIN)/python -c "import json, sys; from fpga.build import format_report; \
		[print(format_report(json.load(open(f'build/fpga/{b}.json')))) for b in ('icebreaker', 'ulx3s')]"
