"""Gate predictor: cocotb on Verilator vs the reference next to the block (exact), under random source
idles and sink back-pressure (sim/test_gate.py); plus constructor checks."""

import pytest

from sim.blocktb import run_block
from rtl.gate import GateUnit


@pytest.mark.parametrize("params", [{'w_bits': 8, 's_bits': 8, 'b_bits': 24, 'la_bits': 25, 'tau_bits': 24, 'channels': 5}])
def test_gate_stream(params):
    assert run_block("gate", GateUnit(**{k: v for k, v in params.items() if k in ['w_bits', 's_bits', 'b_bits', 'la_bits', 'tau_bits']}), params) == 1


@pytest.mark.parametrize("bad", [{'w_bits': 1, 's_bits': 8, 'b_bits': 24, 'la_bits': 25, 'tau_bits': 24}])
def test_gate_bad_arguments(bad):
    with pytest.raises(ValueError):
        GateUnit(**bad)
