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
	$(BIN)/python bench/cycles.py

# Re-resolve pins from pyproject (needs the package index); commit the result.
lock:
	rm -rf /tmp/gxnor-lock && $(PYTHON) -m venv /tmp/gxnor-lock
	/tmp/gxnor-lock/bin/pip install --quiet -e .[test]
	/tmp/gxnor-lock/bin/pip freeze --exclude-editable | grep -v '^torch==' > requirements.lock.new
	( echo 'torch==2.13.0'; cat requirements.lock.new ) > requirements.lock && rm requirements.lock.new

clean:
	rm -rf build .pytest_cache

# Full place and route of the board top (UART link + engine), minutes each: the tiny preset on both
# boards and the 28x28 zoo gated CNN on the ULX3S (baked), and one loadable ULX3S bitstream whose
# envelope covers every zoo model; on the iCEBreaker the zoo gated CNN (1 lane) and CNN (2 lanes)
# baked, and one loadable 1-lane bitstream for both (weights in SPRAM: `gxnor board --load` before
# images); each on its board PLL at the fastest clock that closed here (a
# build that misses its clock fails with the margin). Reports go to build/fpga/<name>.json; then
# bench/fpga.py prints the figures table of docs/fpga.md (images/s, GOPS) and the zoo fit table.
FPGA_ARCH  ?= tiny
FPGA_LANES ?= 4
FPGA_CLK_ICE40 ?= 20
FPGA_CLK_ECP5  ?= 45
FPGA_CLK_ECP5_CNN ?= 34.375
FPGA_CLK_ECP5_ZOO ?= 30
FPGA_CLK_ICE40_ZOO ?= 18
FPGA_CLK_ICE40_CNN ?= 24
FPGA_BUILD = $(BIN)/gxnor build --lanes $(FPGA_LANES) --json
fpga: $(STAMP)
	mkdir -p build/fpga
	$(BIN)/gxnor model random --arch $(FPGA_ARCH) --seed 1 -o build/fpga/$(FPGA_ARCH).gxm --force
	$(FPGA_BUILD) --board icebreaker --model build/fpga/$(FPGA_ARCH).gxm --clock $(FPGA_CLK_ICE40) \
		-o build/fpga/icebreaker-$(FPGA_ARCH) > build/fpga/icebreaker-$(FPGA_ARCH).json
	$(FPGA_BUILD) --board ulx3s --model build/fpga/$(FPGA_ARCH).gxm --clock $(FPGA_CLK_ECP5) \
		-o build/fpga/ulx3s-$(FPGA_ARCH) > build/fpga/ulx3s-$(FPGA_ARCH).json
	$(FPGA_BUILD) --board ulx3s --model zoo/gated-cnn.gxm --clock $(FPGA_CLK_ECP5_CNN) \
		-o build/fpga/ulx3s-gated-cnn > build/fpga/ulx3s-gated-cnn.json
	$(FPGA_BUILD) --board ulx3s --model zoo/gated-cnn.gxm --weights loadable --envelope zoo/cnn.gxm zoo/mlp.gxm \
		--clock $(FPGA_CLK_ECP5_ZOO) -o build/fpga/ulx3s-zoo-loadable > build/fpga/ulx3s-zoo-loadable.json
	$(BIN)/gxnor build --board icebreaker --model zoo/gated-cnn.gxm --lanes 1 --clock $(FPGA_CLK_ICE40_ZOO) --json \
		-o build/fpga/icebreaker-gated-cnn > build/fpga/icebreaker-gated-cnn.json
	$(BIN)/gxnor build --board icebreaker --model zoo/cnn.gxm --lanes 2 --clock $(FPGA_CLK_ICE40_CNN) --json \
		-o build/fpga/icebreaker-cnn > build/fpga/icebreaker-cnn.json
	$(BIN)/gxnor build --board icebreaker --model zoo/gated-cnn.gxm --lanes 1 --weights loadable --envelope zoo/cnn.gxm --clock $(FPGA_CLK_ICE40_ZOO) \
		--json -o build/fpga/icebreaker-cnn-loadable > build/fpga/icebreaker-cnn-loadable.json
	$(BIN)/python bench/fpga.py build/fpga/icebreaker-$(FPGA_ARCH).json:build/fpga/$(FPGA_ARCH).gxm:digits \
		build/fpga/icebreaker-gated-cnn.json:zoo/gated-cnn.gxm:mnist5k build/fpga/icebreaker-cnn.json:zoo/cnn.gxm:mnist5k \
		build/fpga/icebreaker-cnn-loadable.json:zoo/gated-cnn.gxm:mnist5k build/fpga/icebreaker-cnn-loadable.json:zoo/cnn.gxm:mnist5k \
		build/fpga/ulx3s-$(FPGA_ARCH).json:build/fpga/$(FPGA_ARCH).gxm:digits \
		build/fpga/ulx3s-gated-cnn.json:zoo/gated-cnn.gxm:mnist5k \
		build/fpga/ulx3s-zoo-loadable.json:zoo/gated-cnn.gxm:mnist5k \
		build/fpga/ulx3s-zoo-loadable.json:zoo/cnn.gxm:mnist5k build/fpga/ulx3s-zoo-loadable.json:zoo/mlp.gxm:mnist5k
	$(BIN)/python bench/fpga.py --zoo zoo/mlp.gxm zoo/cnn.gxm zoo/gated-cnn.gxm build/fpga/$(FPGA_ARCH).gxm
