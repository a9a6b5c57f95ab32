"""cocotb testbench for ``loader`` (:class:`rtl.engine.loader.Loader`) vs :func:`rtl.engine.layout.images`.

The pytest driver (tests/sim/test_loader.py) passes, as JSON in ``GXNOR_LOADER_CASES``, the engine
config and per model its load stream (:func:`rtl.engine.layout.load_records`) and expected memory images
(:func:`rtl.engine.layout.images`). Each stream, with records of unknown ``sel`` (6, 7) mixed in, is driven
under each source-idle / ``enable``-drop mode of sim.blocktb.MODES (``enable`` low is the loader's
back-pressure: ``load.ready = enable``). Every cycle the write ports are checked: ``load.ready`` is
``enable``; no ``_en`` without a transfer; on a transfer exactly the selected memory's ``_en``
(none for an unknown ``sel``) with the record's address and data. The memories rebuilt from the
writes must equal the images exactly, and :func:`rtl.engine.loader.ref_loader` of the same stream.
"""

import json
import os
import types

import cocotb

from rtl.engine.config import EngineConfig
from rtl.engine import load_layout
from rtl.engine.loader import ports, ref_loader
from sim.blocktb import cases, fields, pack, params, seed

N_UNKNOWN = 12


def with_unknown(records, layout, rng):
    """Insert N_UNKNOWN records with sel 6 or 7 (random addr/data) at random places."""
    w = {name: width for name, _, width, _ in fields(layout)}
    recs = [tuple(r) for r in records]
    for _ in range(N_UNKNOWN):
        bad = (rng.choice((6, 7)), rng.getrandbits(w["addr"]), rng.getrandbits(w["data"]))
        recs.insert(rng.randint(0, len(recs)), bad)
    return recs


async def drive(dut, tb, recs, layout, spec):
    """Send ``recs`` under ``tb``'s idle / enable-drop rates; return the memories written."""
    from cocotb.triggers import ReadOnly, Timer
    mems = {name: {} for name, _, _, _ in spec}
    i, offered, cyc, unknown = 0, False, 0, 0
    max_cycles = 20 * len(recs) + 100
    while i < len(recs) and cyc < max_cycles:
        if offered or not (tb.idle and tb.rng.random() < tb.idle):
            sel, addr, data = recs[i]
            dut.load__payload.value = pack(layout, dict(sel=sel, addr=addr, data=data))
            dut.load__valid.value = 1
            offered = True
        else:
            dut.load__valid.value = 0
        enable = int(not (tb.bp and tb.rng.random() < tb.bp))
        dut.enable.value = enable
        await ReadOnly()
        where = f"cycle {cyc}, record {i} (seed {tb.seed}, idle {tb.idle}, enable drops {tb.bp})"
        assert int(dut.load__ready.value) == enable, f"load.ready != enable at {where}"
        take = offered and enable
        ens = {name: int(getattr(dut, f"{name}_en").value) for name, _, _, _ in spec}
        if not take:
            assert not any(ens.values()), f"write without a transfer at {where}: {ens}"
        else:
            sel, addr, data = recs[i]
            want = {name: int(s == sel) for s, (name, _, _, _) in enumerate(spec)}
            assert ens == want, f"record {recs[i]}: enables {ens}, want {want} at {where}"
            if sel < len(spec):
                name, _, abits, dbits = spec[sel]
                got_d = int(getattr(dut, f"{name}_data").value)
                assert got_d == data & ((1 << dbits) - 1), f"{name}_data {got_d:#x} != {data:#x} at {where}"
                a = 0
                if abits:
                    a = int(getattr(dut, f"{name}_addr").value)
                    assert a == addr & ((1 << abits) - 1), f"{name}_addr {a} != {addr} at {where}"
                mems[name][a] = got_d
            else:
                unknown += 1
            i += 1
            offered = False
        await Timer(10, unit="ns")
        cyc += 1
    assert i == len(recs), f"stalled: sent {i}/{len(recs)} in {cyc} cycles (seed {tb.seed})"
    dut.load__valid.value = 0
    return mems, unknown, cyc


def as_images(mems):
    out = {}
    for name, w in mems.items():
        if name == "header":
            out[name] = w.get(0)
        else:
            out[name] = [w.get(a) for a in range(max(w) + 1)] if w else []
    return out


@cocotb.test()
async def loader_vs_images(dut):
    from cocotb.triggers import Timer
    p = params()
    spec_in = json.loads(os.environ["GXNOR_LOADER_CASES"])
    cfg = EngineConfig.from_json(spec_in["cfg"])
    assert cfg.lanes == p["lanes"], (cfg.lanes, p)
    layout, spec = load_layout(cfg), ports(cfg)
    models = {m["name"]: m for m in spec_in["models"]}
    tb = types.SimpleNamespace(rng=None, idle=0.0, bp=0.0, seed=seed())
    dut._log.info("seed=%d (set GXNOR_SEED to change); models %s", seed(), list(models))
    dut.load__valid.value = 0
    dut.enable.value = 0
    await Timer(10, unit="ns")
    for name, rng in cases(tb, list(models)):
        m = models[name]
        recs = with_unknown(m["records"], layout, rng)
        mems, unknown, cyc = await drive(dut, tb, recs, layout, spec)
        got = as_images(mems)
        ctx = f"{name} (seed {tb.seed}, idle {tb.idle}, enable drops {tb.bp})"
        assert unknown == N_UNKNOWN, f"{ctx}: {unknown} unknown-sel records transferred, want {N_UNKNOWN}"
        # the build's memories (rtl.engine.layout.memory_map) carry the images; a memory the build
        # lacks (the input table without code_bits) must have an empty image
        want = {mem: m["images"][mem] for mem in got}
        absent = {mem: v for mem, v in m["images"].items() if mem not in got}
        assert all(v == [] for v in absent.values()), f"{ctx}: images for memories the build lacks: {absent}"
        for mem in want:
            assert got[mem] == want[mem], f"{ctx}: memory {mem} differs:\n got {got[mem]}\nwant {want[mem]}"
        assert ref_loader(recs, cfg) == got, f"{ctx}: ref_loader disagrees with the RTL"
        dut._log.info("%s: %d records (+%d unknown sel) in %d cycles, idle %.1f, enable drops %.1f: "
                      "memories equal rtl.engine.layout.images", name, len(m["records"]), unknown, cyc, tb.idle, tb.bp)
        await Timer(10, unit="ns")
