"""Encoding, packing and the packed gated-XNOR dot product (golden/ternary.py)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from golden.errors import GxnorError
from golden.ternary import (check_ternary, decode, encode, pack, packed_dot, threshold, unpack,
                            bit_length_signed)

ternary_rows = hnp.arrays(np.int8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=150),
                          elements=st.integers(-1, 1))


def test_codes_are_the_documented_ones():
    assert encode(np.array([0, 1, -1])).tolist() == [0b00, 0b01, 0b11]
    assert decode(np.array([0b00, 0b01, 0b11], np.uint8)).tolist() == [0, 1, -1]
    with pytest.raises(GxnorError, match="0b10"):
        decode(np.array([0b10], np.uint8))


def test_packing_layout_little_endian_words():
    t = np.zeros(130, np.int8)
    t[0], t[63], t[64], t[129] = 1, -1, 1, -1
    nz, sg = pack(t)
    assert nz.dtype == np.uint64 and nz.shape == (3,)
    assert nz.tolist() == [1 | (1 << 63), 1, 2]
    assert sg.tolist() == [1 << 63, 0, 2]


@given(ternary_rows)
def test_pack_unpack_roundtrip(t):
    nz, sg = pack(t)
    assert np.array_equal(unpack(nz, sg, t.shape[1]), t)


@settings(max_examples=1000)
@given(st.data())
def test_packed_dot_equals_integer_dot(data):
    n = data.draw(st.integers(1, 200))
    x = data.draw(hnp.arrays(np.int8, (data.draw(st.integers(1, 9)), n), elements=st.integers(-1, 1)))
    w = data.draw(hnp.arrays(np.int8, (data.draw(st.integers(1, 5)), n), elements=st.integers(-1, 1)))
    dot, fired = packed_dot(*pack(x), *pack(w), block=data.draw(st.integers(1, 4)))
    assert np.array_equal(dot, x.astype(np.int32) @ w.T.astype(np.int32))
    assert np.array_equal(fired, (x != 0).astype(np.int32) @ (w != 0).astype(np.int32).T)


def test_packed_dot_extremes_full_fan_in():
    n = 4096
    ones = np.ones((1, n), np.int8)
    dot, fired = packed_dot(*pack(ones), *pack(-ones))
    assert dot[0, 0] == -n and fired[0, 0] == n
    dot, fired = packed_dot(*pack(ones), *pack(ones), block=1)
    assert dot[0, 0] == n and fired[0, 0] == n
    dot, fired = packed_dot(*pack(np.zeros((1, n), np.int8)), *pack(ones))
    assert dot[0, 0] == 0 and fired[0, 0] == 0


def test_threshold_rule_directions():
    a = np.arange(-3, 4)
    # +1 iff a >= hi (2), -1 iff a < lo (-1), else 0
    assert threshold(a, -1, 2).tolist() == [-1, -1, 0, 0, 0, 1, 1]
    assert threshold(a, 0, 0).tolist() == [-1, -1, -1, 1, 1, 1, 1]


def test_check_ternary_names_value_and_index():
    with pytest.raises(GxnorError, match=r"value 2 at index \(1, 0\)"):
        check_ternary(np.array([[0, 1], [2, 0]]), "w")
    with pytest.raises(GxnorError, match="not an integer"):
        check_ternary(np.array([0.0, 1.0]), "w")


@pytest.mark.parametrize("lo,hi,bits", [(0, 0, 1), (-1, 0, 1), (-2, 1, 2), (-9, 10, 5), (-128, 127, 8), (-129, 0, 9)])
def test_bit_length_signed(lo, hi, bits):
    assert bit_length_signed(lo, hi) == bits
