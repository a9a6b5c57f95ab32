"""Argmax/result: cocotb on Verilator vs the reference next to the block (exact), under random source
idles and sink back-pressure (sim/test_argmax.py); plus constructor checks."""

import pytest

from sim.blocktb import run_block
from rtl.argmax import Argmax


@pytest.mark.parametrize("params", [{'acc_bits': 7, 'classes': 10}])
def test_argmax_stream(params):
    assert run_block("argmax", Argmax(**{k: v for k, v in params.items() if k in ['acc_bits', 'classes']}), params) == 1


@pytest.mark.parametrize("bad", [{'acc_bits': 1, 'classes': 10}, {'acc_bits': 8, 'classes': 0}])
def test_argmax_bad_arguments(bad):
    with pytest.raises(ValueError):
        Argmax(**bad)
