"""Stream register slice: cocotb on Verilator vs the reference next to the block (exact), under
random source idles and sink back-pressure (sim/test_skid.py); plus constructor checks."""

import pytest

from rtl.skid import Skid
from sim.blocktb import run_block


@pytest.mark.parametrize("width", [1, 9, 37])
def test_skid_stream(width):
    assert run_block("skid", Skid(width, level=True), {"width": width}) == 1


def test_skid_bad_shape():
    with pytest.raises(ValueError):
        Skid("wide")
