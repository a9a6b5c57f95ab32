"""Board top (UART + link + engine) through its serial pins on Verilator, bit-exact against golden;
also the link's constructor checks and lint. The cocotb side is sim/test_board_top.py.

Three tops: the real :class:`rtl.engine.Engine` with a small gated CNN baked in (the product; its
default k 3 is the k register's reset value); the same engine built loadable (``loadable``: envelope
of that CNN, a second model with other classes and pixels and one with an input table, loaded
through LOAD frames, plus a model outside the envelope); and the
test-only stand-in (sim/standin_engine.py) with a dense-only model, which exercises the
link on a second set of widths (1-lane-wide classes field, other tau width) at little build cost.
"""

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from fpga.link import Link
from fpga.top import BoardTop
from golden import modelfile
from rtl.engine.config import EngineConfig
from rtl.engine.schedule import cycles
from golden.forward import run
from golden.randmodel import random_model
from sim import toolchain

from sim.standin_engine import StandinEngine
from .waivers import split_engine, waiver_args

CLK = 100_000_000            # testbench clock, 10 ns
DIVISOR = 4                  # fastest legal UART: keeps the simulated serial traffic short
TIMEOUT_BYTES = 4
LANES = 4
QUEUE = 256                  # receive FIFO bytes: a set_tau and three 1x8x8 image frames in flight
SEED = 20240613


def board_model(engine):
    if engine == "standin":
        return random_model("f,d6", (1, 5, 7), seed=SEED, input_lo=60, input_hi=150, name="standin-mlp")
    # default k 3 (of the gated layer's 8 kernels): the k register's reset value (fpga.top k_init)
    return replace(random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=SEED, input_lo=60, input_hi=150,
                                name="board-cnn"), default_k=3)


def load_models():
    """(inside, outside, table) for the loadable build: another gated CNN with 7 classes on 1x6x6
    (inside the envelope built for all but outside), a wider CNN outside it (more weights,
    channels), and a gated CNN whose first layer is an input table (p - 128: CODES refused)."""
    inside = random_model("c4g,p,c8,f,d7", (1, 6, 6), seed=SEED + 1, input_lo=50, input_hi=170,
                          name="board-cnn-b")
    outside = random_model("c8,p,c16g,f,d10", (1, 8, 8), seed=SEED + 2, input_lo=60, input_hi=150,
                           name="board-cnn-big")
    table = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=SEED + 3, input_table="centred", name="board-tab")
    return inside, outside, table


def envelope(model):
    inside, _, table = load_models()
    return EngineConfig.for_models([model, inside, table], LANES)


# "engine-q": the baked engine at 3 pixels per beat (the board packs each 8-pixel row into beats of
# 3, 3 and 2 pixels: fpga.top.PixelPacker)
PPB = {"engine-q": 3}
# INFO's model_id (protocol 8) is a constant of the build: the stand-in board carries a nonzero one
# (the RTL's INFO bytes are compared with the reference's), the others derive 0
MODEL_ID = {"standin": 0x5EED1234}


def make_top(model, engine):
    if engine == "standin":
        eng = StandinEngine(model)
    else:
        from rtl.engine import Engine
        cfg = envelope(model) if engine == "loadable" else EngineConfig.for_models([model], LANES, 3,
                                                                                     PPB.get(engine, 1))
        eng = Engine(cfg, model)
    return BoardTop(eng, classes=model.num_classes, pixels=int(np.prod(model.input_shape)),
                    tau_init=model.default_tau, k_init=model.default_k, clk_freq=CLK, baud=CLK / DIVISOR,
                    timeout_bytes=TIMEOUT_BYTES, loadable=engine == "loadable", rx_depth=QUEUE, bench=True,
                    row_width=int(model.input_shape[-1]), model_id=MODEL_ID.get(engine))


def generate(engine):
    model = board_model(engine)
    key = hashlib.sha1(modelfile.to_arrays(model)[0]["checksum"].encode()).hexdigest()[:10]
    # keyed `core`, not `engine`: no build folder name matches sim/engine.py's `build/*engine*` waivers
    core = {"engine": "baked", "engine-q": "baked-q"}.get(engine, engine)
    build_dir = toolchain.sim_build_dir("board_top", {"core": core, "model": key, "P": LANES})
    path = build_dir / "model.gxm"
    build_dir.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        modelfile.save(model, path, overwrite=True)
    if engine == "loadable":
        for i, m in enumerate(load_models()):
            modelfile.save(m, build_dir / f"load{i}.gxm", overwrite=True)
        toolchain.write_if_changed(build_dir / "envelope.json", envelope(model).to_json())
    return model, build_dir, split_engine(make_top(model, engine), build_dir / "board_top.v")


def env(engine, build_dir):
    out = {"GXNOR_MODEL": build_dir / "model.gxm", "GXNOR_LANES": LANES, "GXNOR_DIVISOR": DIVISOR,
           "GXNOR_TIMEOUT_BYTES": TIMEOUT_BYTES, "GXNOR_ENGINE": engine, "GXNOR_SEED": SEED,
           "GXNOR_CLK_HZ": CLK, "GXNOR_QUEUE": QUEUE, "GXNOR_BENCH": 1, "GXNOR_PPB": PPB.get(engine, 1),
           "GXNOR_MODEL_ID": MODEL_ID.get(engine, 0)}
    if engine == "loadable":
        import json
        out["GXNOR_ENVELOPE"] = build_dir / "envelope.json"
        out["GXNOR_LOAD_MODELS"] = json.dumps([str(build_dir / f"load{i}.gxm") for i in range(3)])
    return out


def run_board(engine, extra_env=None):
    model, build_dir, srcs = generate(engine)
    return toolchain.build_and_run(list(srcs), "board_top", "sim.test_board_top", build_dir=build_dir,
                                   extra_env={**env(engine, build_dir), **(extra_env or {})},
                                   build_args=waiver_args(srcs[1]))


@pytest.mark.parametrize("kw,match", [
    ({"classes": 0}, "classes"), ({"pixels": 70000}, "pixels"), ({"tau_bits": 1}, "tau_bits"),
    ({"acc_bits": 40}, "acc_bits"), ({"timeout": 1}, "timeout"), ({"tau_init": 8}, "tau_init"),
    ({"classes": 2.0}, "classes"), ({"k_bits": 17}, "k_bits"), ({"k_init": 3}, "k_init"),
    ({"k_bits": 2, "k_init": 4}, "k_init")])
def test_link_rejects(kw, match):
    args = dict(classes=10, pixels=64, tau_bits=4, acc_bits=9, class_bits=4)
    with pytest.raises(ValueError, match=match):
        Link(**{**args, **kw})


def test_board_top_rejects_bad_baud():
    model = board_model("standin")
    with pytest.raises(ValueError, match="too fast"):
        BoardTop(StandinEngine(model), classes=6, pixels=35, clk_freq=12e6, baud=12e6)
    with pytest.raises(ValueError, match="timeout_bytes"):
        BoardTop(StandinEngine(model), classes=6, pixels=35, clk_freq=CLK, baud=CLK / 8, timeout_bytes=1)


@pytest.mark.parametrize("engine", ["standin", "engine", "loadable"])
def test_lint_clean(engine):
    """The board's own modules (board_top.v) against FPGA_WAIVERS alone; the engine's modules
    (engine.v) against ENGINE_WAIVERS, applied to that file only."""
    _, _, srcs = generate(engine)
    assert "module \\board_top.engine" not in srcs[0].read_text()
    assert "module \\board_top.link" not in srcs[1].read_text()
    rc, out = toolchain.lint(list(srcs), "board_top", extra_args=waiver_args(srcs[1]))
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


# The baked engine runs here at Q = 3 ("engine-q") only: the baked Q = 1 board is the cross of the
# baked ROMs (engine-q) and the Q = 1 pixel path (loadable, which runs every test as well); its own
# run cost 127 s of the suite's 15 minutes for no path the other two miss. It is still linted
# (test_lint_clean[engine]) and built by `make fpga`.
@pytest.mark.parametrize("engine", ["standin", "loadable", "engine-q"])
def test_cocotb(engine):
    # info/tau, images, errors, queued, competition, bench, throughput (skipped here), load (loadable
    # only), host tool (skipped)
    assert run_board(engine) == 9


def test_host_tool_through_pty():
    """`gxnor board --load --k 2 --bench 3` against the simulated loadable board: a pseudo-terminal
    bridged to the UART pins; loads the second model (other classes and pixels), sets the k register
    (SET_K) and runs it with several images in flight (the board's queue) as CODES frames (the
    default on a board that takes them; the board expands them with the loaded model's quantizer),
    exact vs golden at k 2, then BENCH: summed cycles exact against the cycle model at k 2, images/s
    from the board's clock."""

    import json
    import sys
    _, build_dir, _ = generate("loadable")
    model = load_models()[0]
    rng = np.random.default_rng(SEED)
    imgs = rng.integers(0, 256, (6, *model.input_shape), dtype=np.uint8)
    lo, _ = model.tau_range
    labels = np.asarray(run(model, imgs, lo, k=2).predictions)
    labels[0] = (labels[0] + 1) % model.num_classes          # one wrong label: accuracy 5/6
    work = build_dir / "host"
    work.mkdir(exist_ok=True)
    np.savez(work / "inputs.npz", images=imgs, labels=labels)
    out = work / "host_out.txt"
    argv = ["board", "--port", "{port}", "--model", str(build_dir / "load0.gxm"), "--load", "--inputs",
            str(work / "inputs.npz"), "--lanes", str(LANES), "--tau-int", str(lo), "--k", "2", "--json",
            "--timeout", "1800", "--bench", "3"]  # wall-clock s per reply: only a hang reaches it, never a loaded machine
    ran = run_board("loadable", {"GXNOR_HOST_ARGV": json.dumps(argv), "GXNOR_HOST_OUT": out,
                                 "GXNOR_PYTHON": sys.executable, "GXNOR_REPO": toolchain.REPO_ROOT,
                                 "COCOTB_TEST_FILTER": "test_host_tool"})
    assert ran == 1
    text = out.read_text()
    assert text.rstrip().endswith("[exit 0]"), text
    rep = json.loads(text[:text.rindex("[exit")])
    assert rep["images"] == 6 and rep["mismatches"] == 0 and rep["error_replies"] == 0, rep
    assert rep["frames"] == "codes"                 # the board takes CODES (INFO flag): the default
    assert rep["load"]["frames"] >= 1 and rep["load"]["records"] > 0
    assert rep["accuracy"] == 5 / 6 and rep["tau"] == lo and rep["k"] == 2 and rep["in_flight_bytes"] == QUEUE
    b = rep["bench"]
    want = int(cycles(model, imgs[:1], lo, lanes=LANES, k=2)[0])
    assert b["runs"] == 3 and b["cycles"] == b["cycles_expected"] == 3 * want and b["clk_hz"] == CLK
    assert b["span"] >= b["cycles"] and b["images_per_s"] == 3 * CLK / b["span"]
    assert rep["counters_total"]["cycles"] == int(cycles(model, imgs, lo, LANES, k=2).sum())
    # k 2 of the gated layer's 4 kernels is competition: the cycle count differs from no competition's
    assert rep["counters_total"]["cycles"] != int(cycles(model, imgs, lo, LANES).sum())
