"""Ternary max-pool: cocotb on Verilator vs the reference next to the block (exact), under random source
idles and sink back-pressure (sim/test_pool.py); plus constructor checks."""

import pytest

from sim.blocktb import run_block
from rtl.pool import PoolMax


@pytest.mark.parametrize("params", [{'lanes': 4}])
def test_pool_stream(params):
    assert run_block("pool", PoolMax(**{k: v for k, v in params.items() if k in ['lanes']}), params) == 1


@pytest.mark.parametrize("bad", [{'lanes': 0}, {'lanes': 2.5}])
def test_pool_bad_arguments(bad):
    with pytest.raises(ValueError):
        PoolMax(**bad)
