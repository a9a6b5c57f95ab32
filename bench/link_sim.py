"""End-to-end images/s through the board protocol in simulation, at a real baud (issue 11 item 3).

    python bench/link_sim.py [--model zoo/gated-cnn.gxm] [--lanes 4] [--taps 3] [--pixels-per-beat 1]
                             [--clk-ns 15] [--divisor 22]
                             [--queue 2048] [--images 6] [--dataset mnist5k] [--frames both|image|codes]

Builds the board top (UART, receive FIFO of ``--queue`` bytes, link, the real engine with the
model baked in) with Verilator and runs ``sim/test_board_top.py::test_throughput``: the first
``--images`` test images sent through the ``rx`` pin as a host does (the next request as soon as
the queue has room for it), as IMAGE frames (8-bit pixels) and as CODES frames (2-bit codes of
golden's input quantizer, protocol 5), on the same build one after the other; every reply
byte-exact against the reference board; the rate is simulated time. Defaults: the ULX3S configuration near its 65 MHz / 3 Mbaud (15 ns clock,
divisor 22: 3.03 Mbaud; cocotbext-uart needs a whole-ns bit, so 3 Mbaud exactly, 333.3 ns, cannot be
simulated). Printed beside the link's formula (:func:`fpga.protocol.link_seconds`: queued, or one in flight when
two frames do not fit the queue) for the same images, clock and baud.
"""

import argparse
import json
from pathlib import Path

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from fpga.protocol import link_seconds  # noqa: E402
from fpga.top import BoardTop  # noqa: E402
from golden import modelfile  # noqa: E402
from golden.data import load_dataset  # noqa: E402
from rtl.engine import Engine  # noqa: E402
from rtl.engine.config import EngineConfig  # noqa: E402
from rtl.engine.schedule import cycles  # noqa: E402
from sim import toolchain  # noqa: E402
from tests.fpga.waivers import split_engine, waiver_args  # noqa: E402  (the board tests' lint set-up)


def formula(model, images, lanes, clk, baud, queue, codes=False, taps=3, q=1):
    """Mean seconds per image of the link's model (fpga.protocol.link_seconds) for these images."""
    cyc = cycles(model, images, model.default_tau, lanes=lanes, taps=taps, pixels_per_beat=q, k=model.default_k)
    c, h, w = model.input_shape
    return float(link_seconds(int(np.prod(model.input_shape)), model.num_classes, cyc, clk, baud, queue,
                              codes, beats=c * h * -(-w // q)).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "zoo" / "gated-cnn.gxm"))
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--taps", type=int, default=3)
    ap.add_argument("--pixels-per-beat", type=int, default=1)
    ap.add_argument("--clk-ns", type=int, default=15, help="clock period in ns (default 15: 66.7 MHz)")
    ap.add_argument("--divisor", type=int, default=22, help="UART clock cycles per bit (default 22)")
    ap.add_argument("--queue", type=int, default=2048, help="receive FIFO bytes (default 2048, the ECP5's)")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--frames", choices=("both", "image", "codes"), default="both",
                    help="request frames to simulate (default both, on one build)")
    args = ap.parse_args(argv)
    model = modelfile.load(args.model)
    images = np.asarray(load_dataset(args.dataset, "test")[0][:args.images], np.uint8)
    clk = 1e9 / args.clk_ns
    baud = clk / args.divisor
    KT, Q = args.taps, args.pixels_per_beat
    cfg = EngineConfig.for_models([model], args.lanes, KT, Q)
    top = BoardTop(Engine(cfg, model), classes=model.num_classes, pixels=int(np.prod(model.input_shape)),
                   tau_init=model.default_tau, k_init=model.default_k, clk_freq=clk, baud=baud,
                   rx_depth=args.queue, bench=True, row_width=int(model.input_shape[-1]))
    key = {"core": "tput", "model": model.name, "P": args.lanes, "q": args.queue, "div": args.divisor}
    if (KT, Q) != (3, 1):
        key.update(KT=KT, Q=Q)
    build_dir = toolchain.sim_build_dir("board_top", key)
    build_dir.mkdir(parents=True, exist_ok=True)
    modelfile.save(model, build_dir / "model.gxm", overwrite=True)
    np.savez(build_dir / "images.npz", images=images)
    srcs = split_engine(top, build_dir / "board_top.v")
    env = {"GXNOR_MODEL": build_dir / "model.gxm", "GXNOR_LANES": args.lanes, "GXNOR_TAPS": KT, "GXNOR_PPB": Q,
           "GXNOR_DIVISOR": args.divisor,
           "GXNOR_TIMEOUT_BYTES": 4, "GXNOR_ENGINE": "engine", "GXNOR_CLK_PS": args.clk_ns * 1000,
           "GXNOR_CLK_HZ": int(round(clk)), "GXNOR_QUEUE": args.queue, "GXNOR_BENCH": 1,
           "GXNOR_THROUGHPUT": build_dir / "images.npz", "COCOTB_TEST_FILTER": "test_throughput"}
    print(f"{model.name} P={args.lanes} KT={KT} Q={Q}, {clk / 1e6:.3f} MHz, {baud:,.0f} baud (divisor {args.divisor}), "
          f"queue {args.queue} bytes, {len(images)} {args.dataset} test images, replies byte-exact")
    kinds = ("image", "codes") if args.frames == "both" else (args.frames,)
    for i, kind in enumerate(kinds):
        out = build_dir / f"throughput-{kind}.json"
        toolchain.build_and_run(list(srcs), "board_top", "sim.test_board_top", build_dir=build_dir,
                                extra_env={**env, "GXNOR_THROUGHPUT_OUT": out,
                                           "GXNOR_THROUGHPUT_CODES": int(kind == "codes")},
                                build_args=waiver_args(srcs[1]), build=i == 0)
        r = json.loads(out.read_text())
        f = formula(model, images, args.lanes, clk, baud, args.queue, kind == "codes", KT, Q)
        print(f"  {kind.upper()} frames ({r['request_bytes']} bytes per request, {r['reply_bytes']} per reply): "
              f"simulated {r['images_per_s']:,.1f} images/s (first request to last reply), "
              f"{r['steady_images_per_s']:,.1f} between the first and the last reply; "
              f"formula (fpga.protocol.link_seconds) {1 / f:,.1f}")


if __name__ == "__main__":
    main()
