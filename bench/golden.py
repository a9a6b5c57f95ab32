"""Benchmark: golden model throughput, measured side by side in one process.

For an MNIST-sized MLP (784-256-256-10) and a small CNN (c16,p,c32,p,f,d10 on 1x28x28), at batch
1,000 on the MNIST-5k test images:

* ``packed``: the bit-packed gated-XNOR golden (popcount);
* ``plain``: the plain integer reference (int32 matmul / direct convolution);
* ``torch``: a float32 torch forward of the same shapes (same ternary weights as floats,
  sign activations; no gradients), the yardstick.

Prints images/s (best of --repeat runs) and the ratios packed/torch and packed/plain.
Usage: python bench/golden.py [--repeat 5] [--json]
"""

import argparse
import json
import time

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

import numpy as np

from golden.forward import run  # noqa: E402
from golden.layers import Conv, Dense, Flatten, MaxPool  # noqa: E402
from golden.randmodel import random_model  # noqa: E402

CASES = {"mlp 784-256-256-10": "f,d256,d256,d10", "cnn c16,p,c32,p,f,d10": "c16,p,c32,p,f,d10"}


def torch_forward(model):
    import torch
    mods = []
    for layer in model.layers[1:]:
        if isinstance(layer, Conv):
            c = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, padding=layer.pad, bias=False)
            c.weight.data = torch.from_numpy(layer.weights.astype(np.float32))
            mods.append(c)
        elif isinstance(layer, Dense):
            d = torch.nn.Linear(layer.fan_in, layer.out_features, bias=False)
            d.weight.data = torch.from_numpy(layer.weights.astype(np.float32))
            mods.append(d)
        elif isinstance(layer, MaxPool):
            mods.append(torch.nn.MaxPool2d(2))
        elif isinstance(layer, Flatten):
            mods.append(torch.nn.Flatten())
        if isinstance(layer, (Conv, Dense)) and layer.lo is not None:
            mods.append(torch.nn.Hardtanh())   # stands in for the ternary activation's cost
    net = torch.nn.Sequential(*mods).eval()

    def f(images):
        with torch.no_grad():
            x = torch.from_numpy(images).float()
            x = torch.sign(x - 127.5)
            return net(x).argmax(1).numpy()
    return f


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch
    from golden.data import load_dataset
    images, _ = load_dataset("mnist5k", "test")
    images = images[:args.batch]
    rows = []
    for name, arch in CASES.items():
        model = random_model(arch, (1, 28, 28), seed=0)
        tf = torch_forward(model)
        t_packed = best_of(lambda: run(model, images, impl="packed"), args.repeat)
        t_plain = best_of(lambda: run(model, images, impl="plain"), args.repeat)
        t_torch = best_of(lambda: tf(images), args.repeat)
        n = len(images)
        rows.append({"case": name, "batch": n, "packed_img_s": n / t_packed, "plain_img_s": n / t_plain,
                     "torch_f32_img_s": n / t_torch, "packed_over_torch": t_torch / t_packed,
                     "packed_over_plain": t_plain / t_packed})
    if args.json:
        print(json.dumps({"torch_threads": torch.get_num_threads(), "rows": rows}, indent=1))
        return
    print(f"golden throughput, batch {args.batch}, best of {args.repeat}, torch threads {torch.get_num_threads()}")
    print(f"{'case':<24} {'packed img/s':>13} {'plain img/s':>12} {'torch f32 img/s':>16} "
          f"{'packed/torch':>13} {'packed/plain':>13}")
    for r in rows:
        print(f"{r['case']:<24} {r['packed_img_s']:>13.0f} {r['plain_img_s']:>12.0f} {r['torch_f32_img_s']:>16.0f} "
              f"{r['packed_over_torch']:>12.2f}x {r['packed_over_plain']:>12.2f}x")


if __name__ == "__main__":
    main()
