"""One gated-XNOR lane accumulator, and its reference model.

The lane consumes one (weight, activation) pair of 2-bit ternary codes per cycle and keeps a
running sum of their gated-XNOR products, as specified by :mod:`golden.ternary` (code ``0b00`` = 0,
``0b01`` = +1, ``0b11`` = -1; the product fires only when both nonzero bits are set, then it is +1
when the sign bits are equal and -1 when they differ).
"""

import numpy as np
from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.ternary import decode


def _check_width(width):
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 2:
        raise ValueError(f"XnorLane width must be an integer >= 2, not {width!r}")
    return int(width)


def wrap_signed(x, width):
    """Two's-complement wrap of integer array ``x`` into ``width`` bits (int64)."""
    x = np.asarray(x, dtype=np.int64)
    half = np.int64(1) << (width - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def ref_xnor_lane(weights, acts, en=None, clear=None, *, width):
    """Reference model of :class:`XnorLane`: the accumulator value after each clock edge.

    Parameters
    ----------
    weights, acts : int array [T]
        2-bit ternary codes, one pair per cycle (see :func:`golden.ternary.decode`).
    en : bool array [T], optional
        Event valid per cycle (default: every cycle).
    clear : bool array [T], optional
        Clear per cycle (default: never).
    width : int
        Accumulator width in bits (>= 2).

    Returns
    -------
    int64 [T]
        ``acc`` as seen after the rising edge of each cycle, starting from reset value 0:
        ``acc <- (0 if clear else acc) + (w * a if en else 0)``, wrapped to ``width`` bits
        (two's complement).

    Raises
    ------
    golden.errors.GxnorError
        A code is invalid (``0b10``, or wider than 2 bits) in a cycle where ``en`` is set.
    ValueError
        ``width`` < 2, or the arrays differ in length.
    """
    width = _check_width(width)
    w = np.asarray(weights, dtype=np.uint8)
    a = np.asarray(acts, dtype=np.uint8)
    n = w.shape[0]
    en = np.ones(n, bool) if en is None else np.asarray(en, dtype=bool)
    clear = np.zeros(n, bool) if clear is None else np.asarray(clear, dtype=bool)
    if not (w.shape == a.shape == en.shape == clear.shape == (n,)):
        raise ValueError("weights, acts, en and clear must be 1-D arrays of one length")
    # Only codes that take part (en set) must be valid; idle cycles may carry anything.
    p = np.zeros(n, np.int64)
    p[en] = decode(w[en]).astype(np.int64) * decode(a[en]).astype(np.int64)
    total = np.cumsum(p)
    # A clear in cycle t restarts the sum at t (its own product still counts).
    idx = np.where(clear, np.arange(n), -1)
    last_clear = np.maximum.accumulate(idx) if n else idx
    before = np.where(last_clear > 0, total[np.maximum(last_clear - 1, 0)], 0)
    return wrap_signed(total - before, width)


class XnorLane(wiring.Component):
    """Gated-XNOR lane accumulator. Implements :func:`ref_xnor_lane` (golden: :mod:`golden.ternary`).

    Each cycle, with ``en`` set, the product of ternary codes ``w`` and ``a`` is added to ``acc``:
    +1 when both are nonzero with equal signs, -1 when both are nonzero with different signs,
    nothing otherwise. ``clear`` restarts the sum at 0 in the same cycle, so ``clear`` together with
    ``en`` loads that cycle's product (no event is lost between two sums). The sum wraps modulo
    ``2**width`` (two's complement); size ``width`` to the longest sum you need (a sum of ``n``
    products needs ``golden.ternary.bit_length_signed(-n, n)`` bits).

    Only the nonzero bit (bit 0) gates a code, so the invalid code ``0b10`` acts as 0.

    Latency: ``acc`` shows an event one cycle after it is presented (registered output).
    Throughput: one event per cycle, no stall. Reset (``rst`` of the ``sync`` domain): ``acc = 0``.

    Parameters
    ----------
    width : int
        Accumulator width in bits, >= 2.

    Members
    -------
    w : In(2)
        Weight code (bit 0 nonzero, bit 1 sign).
    a : In(2)
        Activation code (bit 0 nonzero, bit 1 sign).
    en : In(1)
        The pair on ``w``/``a`` is an event this cycle.
    clear : In(1)
        Restart the sum at 0 this cycle.
    acc : Out(signed(width))
        The running sum (registered).

    Raises
    ------
    ValueError
        ``width`` is not an integer >= 2.
    """

    def __init__(self, width):
        self.width = _check_width(width)
        super().__init__({
            "w": In(2),
            "a": In(2),
            "en": In(1),
            "clear": In(1),
            "acc": Out(signed(self.width)),
        })

    def elaborate(self, platform):
        m = Module()
        fire = self.en & self.w[0] & self.a[0]
        negative = self.w[1] ^ self.a[1]
        base = Mux(self.clear, 0, self.acc)
        with m.If(fire):
            # .eq truncates the (width+1)-bit sum: the documented two's-complement wrap.
            m.d.sync += self.acc.eq(Mux(negative, base - 1, base + 1))
        with m.Elif(self.clear):
            m.d.sync += self.acc.eq(0)
        return m
