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
from rtl.mem import SinglePortMemory, bank_cost, event_bits, plan, spram_tiles

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
    # gated-cnn, P = 1, KT = 3: 16 + 32*16 + 32*32 conv words plus ceil(10/9) = 2 dense groups x
    # 1568 inputs = 4,688 weight words of 18 bits (9 codes); in block RAM the best SB_RAM40_4K aspect
    # is 4 x 1024: ceil(18/4) * ceil(4688/1024) = 25 blocks; with the 9 tap banks (one block each,
    # 100 words x 12 bits) that is over the 30 EBR.
    assert cfg.weight_words == 16 + 32 * 16 + 32 * 32 + 2 * 1568
    all_ebr = plan(cfg, preload=True, extra={"rx_fifo": 1})
    assert all_ebr["detail"]["w"] == (25, 0) and all_ebr["detail"]["acc"] == (9, 0) and not all_ebr["fits"]
    # so the baked build keeps the weights in SPRAM (loaded at start): the low 16 bits of a word in
    # one SPRAM (4,688 <= 16K words), the top 2 bits in ceil(4688/2048) = 3 blocks of 2 x 2048
    # beside it; the event list (3,136 x 38 bits) in 3 SPRAMs side by side
    baked = B.memory_plan(cfg, "icebreaker", "baked")
    assert baked["fits"] and baked["spram"] == 4 and baked["detail"]["w"] == (3, 1)
    assert baked["banks"] == {"evt": [(0, "spram")],
                              "w": {"banks": [(0, "spram")], "spram_bits": 16, "merged": False}}
    # what fits without SPRAM weights stays wholly baked: the zoo cnn at P = 1 with 2 x 2 tap banks
    small = B.memory_plan(EngineConfig.for_models([c], 1, 2), "icebreaker", "baked")
    assert small["fits"] and "w" not in small["banks"]
    # mlp: 268,800 weight codes (537,600 bits) against 30 EBR of 4 kbit: never fits without SPRAM;
    # ungated, so the lanes share the weight address: P = 4, KT = 2 is one 32-bit word (2 SPRAMs
    # wide) of 16,896 words: 16,384 rows in 2 SPRAMs, the last 512 in 4 EBR (8 x 512)
    assert 784 * 256 + 256 * 256 + 256 * 10 == 268_800
    for P in (1, 2, 4):
        assert not plan(EngineConfig.for_models([mlp], P), preload=True)["fits"]
    mcfg = EngineConfig.for_models([mlp], 4, 2)
    mp = B.memory_plan(mcfg, "icebreaker", "baked")
    assert mcfg.weight_words == 16896 and mp["fits"] and mp["detail"]["w"] == (4, 2)
    assert mp["banks"]["w"] == {"banks": [(0, "spram"), (16384, "ebr")], "spram_bits": None, "merged": True}
    # other boards: every memory plain
    assert B.memory_plan(cfg, "ulx3s", "baked")["banks"] == {}
    # the plan never puts a memory past the SPRAM count, and tiles are counted as built
    assert spram_tiles(3136, 27) == 2 and spram_tiles(29648, 2) == 1 and spram_tiles(70000, 2) == 2
    assert bank_cost([(0, "spram")], 4688, 18, 16) == (3, 1)


def test_engine_spram_options():
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 2)
    for name in ("acc", "act"):
        with pytest.raises(ValueError, match="cannot be single-port"):
            Engine(cfg, m, spram={name: [(0, "spram")]})
    with pytest.raises(ValueError, match="merged weights need an ungated envelope"):
        Engine(cfg, m, spram={"w": {"banks": [(0, "spram")], "spram_bits": None, "merged": True}})
    assert quiet(Engine(cfg, m)).preloaded and quiet(Engine(cfg, m, spram={"evt": [(0, "spram")]})).preloaded
    # weights in SPRAM start empty: the host loads them; the behavioural model keeps the image
    assert not quiet(Engine(cfg, m, spram={"w": [(0, "spram")]})).preloaded
    assert quiet(Engine(cfg, m, spram={"w": [(0, "spram")]}, spram_mode="model")).preloaded


def test_weights_only_load_keeps_the_rest_rom():
    """The iCE40 baked build with SPRAM weights: the load port writes only the weights, so yosys
    keeps the descriptors (and thresholds, gate weights) as ROMs: fewer EBR than with every memory
    writable, and the weights in SPRAM."""
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 1, 2)        # KT = 2: half the synthesis time of KT = 3
    sp = {"w": [(0, "spram")]}
    only = B.synth_stat(Engine(cfg, m, spram=sp, loads=("weights",)), name="engine")
    every = B.synth_stat(Engine(cfg, m, spram=sp), name="engine")
    tiles = spram_tiles(cfg.weight_words, 2 * cfg.taps ** 2)     # 8-bit words, 528 of them: 1 SPRAM
    assert tiles == 1 and only.get("SB_SPRAM256KA", 0) == every.get("SB_SPRAM256KA", 0) == tiles
    assert only.get("SB_RAM40_4K", 0) < every.get("SB_RAM40_4K", 0), (only, every)


def test_synth_ice40_spram_cells():
    """One-lane engine (KT = 2), no baked model: the event list (31 bits wide: 2 SPRAMs side by
    side) in SPRAM; the other memories in EBR."""
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    cfg = EngineConfig.for_models([m], 1, 2)
    banks = {"evt": [(0, "spram")]}
    assert event_bits(cfg) == 31
    want = quiet(SinglePortMemory(shape=event_bits(cfg), depth=cfg.events, banks=banks["evt"])).spram_count()
    assert want == 2
    cells = B.synth_stat(Engine(cfg, spram=banks), name="engine")
    assert cells.get("SB_SPRAM256KA", 0) == want, cells
    assert cells.get("SB_RAM40_4K", 0) >= 1, cells
    plain = B.synth_stat(Engine(cfg), name="engine")
    assert "SB_SPRAM256KA" not in plain and plain["SB_RAM40_4K"] > cells["SB_RAM40_4K"], plain
