"""Threshold activation: cocotb on Verilator vs the reference next to the block (exact), under random source
idles and sink back-pressure (sim/test_activation.py); plus constructor checks."""

import pytest

from sim.blocktb import run_block
from rtl.activation import Activation


@pytest.mark.parametrize("params", [{'lanes': 3, 'acc_bits': 6}])
def test_activation_stream(params):
    assert run_block("activation", Activation(**{k: v for k, v in params.items() if k in ['lanes', 'acc_bits']}), params) == 1


@pytest.mark.parametrize("bad", [{'lanes': 0, 'acc_bits': 4}, {'lanes': 2, 'acc_bits': '8'}])
def test_activation_bad_arguments(bad):
    with pytest.raises(ValueError):
        Activation(**bad)
