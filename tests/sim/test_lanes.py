"""P gated-XNOR lanes: cocotb on Verilator vs the reference next to the block (exact), under random source
idles and sink back-pressure (sim/test_lanes.py); plus constructor checks."""

import pytest

from sim.blocktb import run_block
from rtl.lanes import LaneArray


@pytest.mark.parametrize("params", [{'lanes': 4, 'acc_bits': 5}, {'lanes': 1, 'acc_bits': 2},
                                    {'lanes': 3, 'acc_bits': 4, 'slots': 2}, {'lanes': 2, 'acc_bits': 5, 'slots': 4}])
def test_lanes_stream(params):
    assert run_block("lanes", LaneArray(**{k: v for k, v in params.items() if k in ['lanes', 'acc_bits', 'slots']}),
                     params) == 1


@pytest.mark.parametrize("bad", [{'lanes': 0, 'acc_bits': 4}, {'lanes': 4, 'acc_bits': 1}, {'lanes': True, 'acc_bits': 4},
                                 {'lanes': 4, 'acc_bits': 4, 'slots': 0}])
def test_lanes_bad_arguments(bad):
    with pytest.raises(ValueError):
        LaneArray(**bad)
