"""iCE40UP5K memory placement: rtl.mem.plan's decisions for the zoo, and yosys synth_ice40 of an
engine whose event list and weights are single-port: SB_SPRAM256KA cells where
intended, as many as rtl.mem counts (synthesis only, no place and route)."""

from pathlib import Path

import pytest

from fpga import build as B
from fpga.top import BoardTop
from golden import modelfile
from rtl.engine.config import EngineConfig
from golden.randmodel import random_model
from rtl.engine import Engine
from rtl.mem import SinglePortMemory, spram_tiles

ZOO = Path(__file__).resolve().parents[2] / "zoo"


def quiet(elaboratable):
    """Built only to be inspected (no UnusedElaboratable warning)."""
    elaboratable._MustUse__silence = True
    return elaboratable


def zoo(name):
    return modelfile.load(ZOO / f"{name}.gxm")


def test_plan_zoo_decisions():
    g, c, mlp = zoo("gated-cnn"), zoo("cnn"), zoo("mlp")
    cfg = EngineConfig.for_models([g], 1)
    baked = B.memory_plan(cfg, "icebreaker", "baked")
    # baked: the weights are in the bitstream, SPRAM cannot hold them; the event list goes to
    # SPRAM (2, 26 bits wide), everything else (activations: dual-port for the fused pool) to EBR
    assert baked["fits"] and baked["spram"] == 2 and baked["banks"] == {"evt": [(0, "spram")]}
    loadable = B.memory_plan(cfg, "icebreaker", "loadable")
    assert loadable["fits"] and loadable["banks"]["w"] == [(0, "spram")] and loadable["spram"] == 3
    assert baked["ebr"] <= 30 and loadable["ebr"] <= 30
    assert B.memory_plan(EngineConfig.for_models([c], 2), "icebreaker", "baked")["fits"]
    # mlp: 784*256 + 256*256 + 256*10 = 268,800 weight codes, 537,600 bits: 4.4x the 30 EBR
    # (122,880 bits), so never baked. Loadable, the banks pack 8 codes per 16-bit row, 131,072
    # codes per SPRAM; each lane is its own bank (own address) and the event list needs 2 SPRAMs
    # if it is not in EBR. P = 1: 33,600 rows = 2 SPRAMs (32,768 rows) + 832 rows in EBR.
    # P = 2: 16,800 rows per lane = one SPRAM each + 416 rows in EBR. P = 4: 8,416 rows per lane,
    # one SPRAM each, so the event list goes to EBR and the rest no longer fits.
    assert 784 * 256 + 256 * 256 + 256 * 10 == 268_800
    for P in (1, 2, 4):
        assert not B.memory_plan(EngineConfig.for_models([mlp], P), "icebreaker", "baked")["fits"]
    p1 = B.memory_plan(EngineConfig.for_models([mlp], 1), "icebreaker", "loadable")
    assert p1["fits"] and p1["spram"] == 4, p1
    assert p1["banks"] == {"evt": [(0, "spram")], "w": [(0, "spram"), (2 * 16384, "ebr")]}, p1["banks"]
    p2 = B.memory_plan(EngineConfig.for_models([mlp], 2), "icebreaker", "loadable")
    assert p2["fits"] and p2["banks"]["w"] == [(0, "spram"), (16384, "ebr")], p2
    assert not B.memory_plan(EngineConfig.for_models([mlp], 4), "icebreaker", "loadable")["fits"]
    assert not B.memory_plan(EngineConfig.for_models([g], 4), "icebreaker", "baked")["fits"]
    assert not B.memory_plan(EngineConfig.for_models([g], 2), "icebreaker", "baked")["fits"]
    # other boards: every memory plain
    assert B.memory_plan(cfg, "ulx3s", "baked")["banks"] == {}
    # the plan never puts a memory past the SPRAM count, and tiles are counted as built
    assert spram_tiles(3136, 27) == 2 and spram_tiles(29648, 2) == 1 and spram_tiles(70000, 2) == 2


def test_engine_spram_options():
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 2)
    with pytest.raises(ValueError, match="cannot be single-port"):
        Engine(cfg, m, spram={"acc": [(0, "spram")]})
    assert quiet(Engine(cfg, m)).preloaded and quiet(Engine(cfg, m, spram={"evt": [(0, "spram")]})).preloaded
    e = quiet(Engine(cfg, m, spram={"w": [(0, "spram")]}))
    assert not e.preloaded                     # SPRAM weights: not in the bitstream
    top = quiet(BoardTop(e, classes=10, pixels=64, clk_freq=12e6, baud=115200, loadable=True))
    assert top.link_args["model_init"] is False        # the link starts with no model committed
    with pytest.raises(ValueError, match="loadable"):
        BoardTop(e, classes=10, pixels=64, clk_freq=12e6, baud=115200)


def test_synth_ice40_spram_cells():
    """One-lane engine, no baked model: events (2 SPRAMs wide) and weights (1, nibble-packed) in
    SPRAM; the other memories in EBR."""
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 1)
    banks = {"evt": [(0, "spram")], "w": [(0, "spram")]}
    want = sum(quiet(SinglePortMemory(shape=w, depth=d, banks=banks[n])).spram_count()
               for n, (d, w) in {"evt": (cfg.events, 2 + 2 * cfg.dim_bits + cfg.woff_bits),
                                 "w": (cfg.weight_words, 2)}.items())
    assert want == 3
    cells = B.synth_stat(Engine(cfg, spram=banks), name="engine")
    assert cells.get("SB_SPRAM256KA", 0) == want, cells
    assert cells.get("SB_RAM40_4K", 0) >= 1, cells
    plain = B.synth_stat(Engine(cfg), name="engine")
    assert "SB_SPRAM256KA" not in plain and plain["SB_RAM40_4K"] > cells["SB_RAM40_4K"], plain
