"""Event encoder: cocotb on Verilator vs the reference next to the block (exact event list), under
random source idles and sink back-pressure, plus the cycle count with no stalls
(sim/test_encoder.py); plus constructor checks."""

import pytest

from sim.blocktb import run_block
from rtl.encoder import EventEncoder, ref_encoder


@pytest.mark.parametrize("params", [{'lanes': 4}, {'lanes': 3}, {'lanes': 1}, {'lanes': 5, 'slots': 2},
                                    {'lanes': 4, 'slots': 3}])
def test_encoder_stream(params):
    assert run_block("encoder", EventEncoder(**params), params) == 1


@pytest.mark.parametrize("bad", [{'lanes': 0}, {'lanes': -2}, {'lanes': 2.5}, {'lanes': True}, {'lanes': "4"},
                                 {'lanes': 4, 'slots': 0}, {'lanes': 2, 'slots': 3}, {'lanes': 4, 'slots': True}])
def test_encoder_bad_arguments(bad):
    with pytest.raises(ValueError):
        EventEncoder(**bad)


def test_ref_encoder_small():
    # word 0: lanes +1, 0, -1 (mask all); word 1: zeros; word 2: -1 on lane 1, masked off
    words = [[0b01, 0b00, 0b11], 0, [0b00, 0b11, 0b00]]
    masks = [0b111, 0b111, 0b101]
    assert ref_encoder(words, masks, False, 3) == [(0, 0, 0b01), (0, 2, 0b11)]
    assert ref_encoder(words, masks, True, 3) == [(0, 0, 0b01), (0, 1, 0b00), (0, 2, 0b11),
                                                  (1, 0, 0), (1, 1, 0), (1, 2, 0), (2, 0, 0), (2, 2, 0)]
    # two slots: a word's events in beats of two, a beat never spanning two words
    assert ref_encoder(words, masks, False, 3, slots=2) == [[(0, 0, 0b01), (0, 2, 0b11)]]
    assert ref_encoder(words, masks, True, 3, slots=2) == [[(0, 0, 0b01), (0, 1, 0b00)], [(0, 2, 0b11)],
                                                           [(1, 0, 0), (1, 1, 0)], [(1, 2, 0)], [(2, 0, 0), (2, 2, 0)]]
