"""iCE40UP5K memory placement: rtl.mem.plan's decisions for the zoo, and yosys synth_ice40 of an
engine whose event list and weights are single-port: SB_SPRAM256KA cells where
intended, as many as rtl.mem counts (synthesis only, no place and route)."""

from pathlib import Path

import pytest

from fpga import build as B
from golden import modelfile
from rtl.engine.config import EngineConfig
from golden.randmodel import random_model
from rtl.engine import Engine
from rtl.mem import SinglePortMemory, event_bits, spram_tiles

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
    # Engine v2 keeps its weights in dual-port EBR (a weight word is 9 codes per lane, 18 bits:
    # wider than the 16-bit SPRAM). gated-cnn, P = 1, KT = 3: 16 + 32*16 + 32*32 conv words plus
    # ceil(10/9) = 2 dense groups x 1568 inputs = 4,688 words of 18 bits; the best SB_RAM40_4K
    # aspect is 4 x 1024: ceil(18/4) * ceil(4688/1024) = 25 blocks. The 9 tap banks take one block
    # each (100 words x 12 bits): the plan does not fit the 30 EBR, and says so.
    assert cfg.weight_words == 16 + 32 * 16 + 32 * 32 + 2 * 1568
    assert baked["detail"]["w"] == (25, 0) and baked["detail"]["acc"] == (9, 0)
    assert not baked["fits"] and baked["banks"] == {"evt": [(0, "spram")]}
    # the zoo cnn fits at P = 1 with 2 x 2 tap banks (fewer, smaller weight words)
    assert B.memory_plan(EngineConfig.for_models([c], 1, 2), "icebreaker", "baked")["fits"]
    # mlp: 268,800 weight codes (537,600 bits) against 30 EBR of 4 kbit: never fits without SPRAM
    assert 784 * 256 + 256 * 256 + 256 * 10 == 268_800
    for P in (1, 2, 4):
        for w in ("baked", "loadable"):
            assert not B.memory_plan(EngineConfig.for_models([mlp], P), "icebreaker", w)["fits"]
    # other boards: every memory plain
    assert B.memory_plan(cfg, "ulx3s", "baked")["banks"] == {}
    # the plan never puts a memory past the SPRAM count, and tiles are counted as built
    assert spram_tiles(3136, 27) == 2 and spram_tiles(29648, 2) == 1 and spram_tiles(70000, 2) == 2


def test_engine_spram_options():
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 2)
    for name in ("acc", "w", "act"):
        with pytest.raises(ValueError, match="cannot be single-port"):
            Engine(cfg, m, spram={name: [(0, "spram")]})
    assert quiet(Engine(cfg, m)).preloaded and quiet(Engine(cfg, m, spram={"evt": [(0, "spram")]})).preloaded


def test_synth_ice40_spram_cells():
    """One-lane engine, no baked model: the event list (30 bits wide: 2 SPRAMs side by side) in
    SPRAM; the other memories in EBR."""
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 1)
    banks = {"evt": [(0, "spram")]}
    assert event_bits(cfg) == 30
    want = quiet(SinglePortMemory(shape=event_bits(cfg), depth=cfg.events, banks=banks["evt"])).spram_count()
    assert want == 2
    cells = B.synth_stat(Engine(cfg, spram=banks), name="engine")
    assert cells.get("SB_SPRAM256KA", 0) == want, cells
    assert cells.get("SB_RAM40_4K", 0) >= 1, cells
    plain = B.synth_stat(Engine(cfg), name="engine")
    assert "SB_SPRAM256KA" not in plain and plain["SB_RAM40_4K"] > cells["SB_RAM40_4K"], plain
