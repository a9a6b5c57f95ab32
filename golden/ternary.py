"""Ternary values, their 2-bit code, and bit-plane packing.

Encoding (the contract every block meets)
-----------------------------------------
A ternary value ``v`` in {-1, 0, +1} is held as two bits:

=====  ====================  ==========
value  nonzero bit (bit 0)   sign bit (bit 1)
=====  ====================  ==========
  0    0                     0
 +1    1                     0
 -1    1                     1
=====  ====================  ==========

so the 2-bit code ``nz | sign << 1`` is ``0b00`` for 0, ``0b01`` for +1 and ``0b11`` for -1;
``0b10`` is invalid and never produced. A tensor is held as two *bit-planes*: the nonzero plane and
the sign plane, packed along the reduction axis, little-endian within a word: element ``i`` of a
row is bit ``i % 64`` of word ``i // 64`` (uint64). Bits past the end of a row are 0 in both planes,
so they never fire.

The gated XNOR of a weight ``w`` and an activation ``x``: it *fires* only when both nonzero bits are
set; then the XNOR of the sign bits gives +1 (signs equal) or -1 (signs differ). Otherwise the
product is 0 and nothing happens. A packed dot product is therefore::

    both = nz_x & nz_w
    neg  = both & (sg_x ^ sg_w)
    dot  = popcount(both) - 2 * popcount(neg)
"""

import numpy as np

from .errors import GxnorError

WORD_BITS = 64
CODE_ZERO, CODE_POS, CODE_NEG = 0b00, 0b01, 0b11


def check_ternary(a, what):
    """Raise GxnorError unless ``a`` is an integer array with values in {-1, 0, 1}."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise GxnorError(f"{what}: dtype {a.dtype} is not an integer type; expected values in {{-1,0,1}}")
    if a.size:
        bad = (a < -1) | (a > 1)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise GxnorError(f"{what}: value {int(a[idx])} at index {idx} is outside {{-1,0,1}}")
    return a


def encode(t):
    """Ternary int array -> 2-bit codes (uint8): 0 -> 0b00, +1 -> 0b01, -1 -> 0b11."""
    t = np.asarray(t)
    return ((t != 0).astype(np.uint8) | ((t < 0).astype(np.uint8) << 1))


def decode(codes):
    """2-bit codes -> ternary int8. Raises GxnorError on the invalid code 0b10."""
    codes = np.asarray(codes)
    if np.any(codes & ~np.uint8(3)) or np.any(codes == 0b10):
        raise GxnorError("ternary code 0b10 (or a code wider than 2 bits) is invalid")
    nz = (codes & 1).astype(np.int8)
    return nz - 2 * (codes >> 1).astype(np.int8)


def words_for(n):
    """Number of 64-bit words that hold ``n`` elements."""
    return (n + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits):
    """Pack a boolean array along its last axis into uint64 words (little-endian bit order)."""
    bits = np.asarray(bits, dtype=bool)
    n = bits.shape[-1]
    nbytes = words_for(n) * 8
    packed = np.packbits(bits, axis=-1, bitorder="little")
    if packed.shape[-1] != nbytes:
        pad = [(0, 0)] * (packed.ndim - 1) + [(0, nbytes - packed.shape[-1])]
        packed = np.pad(packed, pad)
    packed = np.ascontiguousarray(packed)
    return packed.view("<u8")


def pack(t):
    """Ternary int array [..., n] -> (nz, sg) uint64 bit-planes [..., words_for(n)]."""
    t = np.asarray(t)
    return pack_bits(t != 0), pack_bits(t < 0)


def unpack(nz, sg, n):
    """Inverse of :func:`pack`: bit-planes -> ternary int8 [..., n]."""
    nzb = np.unpackbits(np.ascontiguousarray(nz).view(np.uint8), axis=-1, bitorder="little")[..., :n]
    sgb = np.unpackbits(np.ascontiguousarray(sg).view(np.uint8), axis=-1, bitorder="little")[..., :n]
    return nzb.astype(np.int8) * (1 - 2 * sgb.astype(np.int8))


def packed_dot(nz_x, sg_x, nz_w, sg_w, block=None):
    """Gated-XNOR dot products by popcount.

    Parameters
    ----------
    nz_x, sg_x : uint64 [M, W]
        Activation bit-planes (M rows of W words).
    nz_w, sg_w : uint64 [K, W]
        Weight bit-planes.
    block : int or None
        Rows per step; keeps the [block, K] temporaries in cache (speed only). Default: about
        32K temporaries per step.

    Returns
    -------
    dot : int32 [M, K]
        Sum of the gated-XNOR products: ``popcount(both) - 2 * popcount(both & (sg_x ^ sg_w))``
        with ``both = nz_x & nz_w``, summed over the words.
    fired : int32 [M, K]
        How many products fired (weight and activation both nonzero): ``popcount(both)``.
    """
    m, words = nz_x.shape
    k = nz_w.shape[0]
    fired = np.zeros((m, k), np.int32)
    neg = np.zeros((m, k), np.int32)
    nz_wt, sg_wt = np.ascontiguousarray(nz_w.T), np.ascontiguousarray(sg_w.T)
    block = block or max(64, 32768 // max(k, 1))
    both = np.empty((block, k), np.uint64)
    diff = np.empty((block, k), np.uint64)
    count = np.empty((block, k), np.uint8)
    for s in range(0, m, block):
        e = min(m, s + block)
        n = e - s
        f, g, b, d, c = fired[s:e], neg[s:e], both[:n], diff[:n], count[:n]
        for i in range(words):
            np.bitwise_and(nz_x[s:e, i, None], nz_wt[i], out=b)
            f += np.bitwise_count(b, out=c)
            np.bitwise_xor(sg_x[s:e, i, None], sg_wt[i], out=d)
            d &= b
            g += np.bitwise_count(d, out=c)
    return fired - 2 * neg, fired


def threshold(a, lo, hi):
    """The ternary activation rule shared by the input quantizer and every hidden layer.

    ``+1 if a >= hi``, ``-1 if a < lo``, else ``0``; requires ``lo <= hi`` (so the two cases never
    overlap). ``lo``/``hi`` broadcast against ``a``. Returns int8.
    """
    return ((a >= hi).astype(np.int8) - (a < lo).astype(np.int8))


def bit_length_signed(lo, hi):
    """Bits of a two's-complement register that holds every integer in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits
