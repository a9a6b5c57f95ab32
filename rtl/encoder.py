"""Event encoder (the SCAN_W step of :class:`rtl.engine.Engine`), and its reference.

Turns one activation word of P ternary codes into *events*: the lanes whose code is nonzero (every
lane, zeros included, in the dense schedule), restricted to a mask of lanes that may be on, lowest
lane first, one event per cycle. Ternary codes as in :mod:`golden.ternary` (``0b00`` = 0, ``0b01``
= +1, ``0b11`` = -1; ``0b10`` is invalid and never produced: the RTL, like the engine, tests only
the nonzero bit, bit 0).
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.ternary import decode, encode


def _check(lanes):
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"EventEncoder lanes must be an integer >= 1, not {lanes!r}")
    return int(lanes)


def _check_slots(slots, lanes):
    if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or not 1 <= slots <= lanes:
        raise ValueError(f"EventEncoder slots must be an integer in [1, lanes = {lanes}], not {slots!r}")
    return int(slots)


def or_all(terms):
    """The OR of ``terms`` (values of one width), 0 for none (also the engine's AND-OR selects)."""
    out = Const(0, 1)
    for t in terms:
        out = out | t
    return out


def lane_bits(lanes):
    """Width of the ``lane`` field: enough for lane ``P-1``, at least 1."""
    return max(1, (_check(lanes) - 1).bit_length())


def in_layout(lanes):
    return data.StructLayout({"word": unsigned(2 * lanes), "mask": unsigned(lanes)})


def out_layout(lanes, slots=1):
    """``lane`` (its number), ``onehot`` (the same lane as bit ``lane`` of P), ``code``, ``last``;
    with ``slots`` E > 1 also ``xonehot`` and ``xcode``: the beat's further events, slot s (1..E-1)
    at ``xonehot[(s-1)*P:s*P]`` and ``xcode[2*(s-1):2*s]`` (an empty slot: onehot 0, code 0)."""
    lanes = _check(lanes)
    f = {"lane": unsigned(lane_bits(lanes)), "onehot": unsigned(lanes), "code": unsigned(2), "last": unsigned(1)}
    if _check_slots(slots, lanes) > 1:
        f.update(xonehot=unsigned(lanes * (slots - 1)), xcode=unsigned(2 * (slots - 1)))
    return data.StructLayout(f)


def _codes(word, lanes):
    """A word (int, lane j at bits 2j..2j+1, or a sequence of P codes) -> uint8 codes [P]."""
    if isinstance(word, (int, np.integer)):
        return np.array([(int(word) >> (2 * j)) & 3 for j in range(lanes)], np.uint8)
    codes = np.asarray(word, np.uint8)
    if codes.shape != (lanes,):
        raise ValueError(f"word has {codes.shape} codes, expected ({lanes},)")
    return codes


def _bools(mask, lanes):
    if isinstance(mask, (int, np.integer)):
        return [bool((int(mask) >> j) & 1) for j in range(lanes)]
    mask = [bool(b) for b in mask]
    if len(mask) != lanes:
        raise ValueError(f"mask has {len(mask)} lanes, expected {lanes}")
    return mask


def ref_encoder(words, masks, dense, lanes, slots=1):
    """Reference: the event list of a sequence of words.

    ``words``: per word an int (lane j at bits 2j..2j+1) or a sequence of P codes; ``masks``: per
    word an int (bit j = lane j) or a sequence of P bools; ``dense``: emit zeros too.
    Returns a list of ``(word index, lane, code)``, words in order, lanes ascending, where a lane is
    emitted iff it is masked and its ternary value (golden decode) is nonzero or ``dense``. The
    encoder marks each word's final event ``last``; words with no event produce nothing.
    Raises GxnorError (golden decode) on the invalid code 0b10.

    With ``slots`` E > 1 it returns the encoder's beats instead: per beat a list of up to E such
    triples (one word's next E events, lanes ascending).
    """
    lanes = _check(lanes)
    slots = _check_slots(slots, lanes)
    if len(words) != len(masks):
        raise ValueError(f"{len(words)} words but {len(masks)} masks")
    out = []
    for n, (w, mk) in enumerate(zip(words, masks)):
        v = decode(_codes(w, lanes)).astype(np.int8)
        for j, on in enumerate(_bools(mk, lanes)):
            if on and (dense or v[j] != 0):
                out.append((n, j, int(encode(v[j]))))
    if slots == 1:
        return out
    beats = []
    for ev in out:
        if beats and beats[-1][0][0] == ev[0] and len(beats[-1]) < slots:
            beats[-1].append(ev)
        else:
            beats.append([ev])
    return beats


class EventEncoder(wiring.Component):
    """One activation word in, its events out, one per cycle (E per cycle with ``slots``), lowest
    lane first.

    Parameters
    ----------
    lanes : int    P
    slots : int    E (1..P): events per beat; slot 0 in ``lane``/``onehot``/``code``, slots 1..E-1
                   in ``xonehot``/``xcode`` (see :func:`out_layout`), lanes ascending over the slots

    Members
    -------
    i : In(stream.Signature(in_layout))
        ``word``: P 2-bit codes (lane j = bits 2j..2j+1); ``mask``: lanes allowed to emit.
    dense : In(1)
        1: every masked lane is emitted, zeros included (the dense schedule). Hold it stable while
        a word is in flight (between words it may change).
    o : Out(stream.Signature(out_layout))
        ``lane`` and its ``code``; ``onehot``: the lane as a P-bit one-hot (bit ``lane`` set), for
        a user that selects per-lane values with an AND-OR instead of decoding ``lane`` (the engine's
        weight offset: no priority encoder and no multiplier on its path); ``last`` on the word's
        final beat.

    Latency 0: ``o.valid``/``o.payload`` are combinational from ``i.valid``/``i.payload`` and the
    register ``done`` (lanes of the current word already emitted; cleared by reset and when a
    word is consumed). ``i.ready`` is 1 in the cycle the word's last event is accepted
    (``o.valid & o.ready & last``), or for a word with nothing to emit (consumed in one cycle, no
    output beat); until then the word stays offered. Throughput: with an always-ready sink a word
    costs ``max(1, ceil(events / E))`` cycles.
    """

    def __init__(self, lanes, slots=1):
        self.lanes = _check(lanes)
        self.slots = _check_slots(slots, self.lanes)
        super().__init__({"i": In(stream.Signature(in_layout(self.lanes))),
                          "dense": In(1),
                          "o": Out(stream.Signature(out_layout(self.lanes, self.slots)))})

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        i, o = self.i.payload, self.o.payload
        done = Signal(P)
        nz = Signal(P)
        rem = Signal(P)          # lanes of this word still to emit
        low = Signal(P)          # the lowest of them, one-hot
        m.d.comb += [nz.eq(i.word[0::2]),
                     rem.eq(Mux(self.dense, i.mask, i.mask & nz) & ~done),
                     low.eq(rem & (-rem)[:P])]
        # lane number and code from the one-hot by AND-OR (no priority chain: ``low`` is one-hot)
        # (``lane`` straight into the port: a user of ``onehot`` alone leaves no unused wire)
        code = Signal(2)
        m.d.comb += [o.lane.eq(Cat(*[or_all([low[j] for j in range(P) if (j >> k) & 1])
                                     for k in range(lane_bits(P))])),
                     code.eq(or_all([i.word[2 * j:2 * j + 2] & low[j].replicate(2) for j in range(P)]))]
        # slots 1..E-1: the next lowest lanes, each taken off what is left
        took, left = low, rem & ~low
        for s in range(1, self.slots):
            lo_s = Signal(P, name=f"low{s}")
            m.d.comb += [lo_s.eq(left & (-left)[:P]),
                         o.xonehot[(s - 1) * P:s * P].eq(lo_s),
                         o.xcode[2 * (s - 1):2 * s].eq(or_all([i.word[2 * j:2 * j + 2] & lo_s[j].replicate(2)
                                                               for j in range(P)]))]
            took = took | lo_s
            left = left & ~lo_s
        single = Signal()        # the lanes emitted now are the word's last (or there are none)
        if self.slots == 1:
            m.d.comb += single.eq((rem & (rem - 1)[:P]) == 0)
        else:
            m.d.comb += single.eq(left == 0)
        m.d.comb += [o.onehot.eq(low), o.code.eq(code), o.last.eq(single),
                     self.o.valid.eq(self.i.valid & rem.any()),
                     self.i.ready.eq(Mux(rem.any(), self.o.ready & single, 1))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += done.eq(0)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += done.eq(done | took)
        return m
