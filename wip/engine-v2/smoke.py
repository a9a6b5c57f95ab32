"""smoke.py arch shape P [KT] [n] [seed] [dense]"""
import sys, time, numpy as np
from golden.randmodel import random_model
from rtl.engine.config import EngineConfig
from sim import engine as se
arch, shape = sys.argv[1], tuple(int(v) for v in sys.argv[2].split("x"))
P = int(sys.argv[3]); Q = int(__import__('os').environ.get('Q', '1')); KT = int(sys.argv[4]) if len(sys.argv) > 4 else 3
n = int(sys.argv[5]) if len(sys.argv) > 5 else 4; seed = int(sys.argv[6]) if len(sys.argv) > 6 else 1
dense = len(sys.argv) > 7 and sys.argv[7] == "dense"
m = random_model(arch, shape, seed=seed)
rng = np.random.default_rng(seed)
imgs = rng.integers(0, 256, (n,) + shape, dtype=np.uint8)
cfg = EngineConfig.for_models([m], P, KT, Q)
t = time.time()
hw, wall = se.simulate(cfg, [{"model": m, "images": imgs, "tau": None, "dense": dense}], baked=m)
bad, exp = se.compare(m, imgs, None, hw[0], cfg, dense=dense)
print(arch, shape, "P", P, "KT", KT, "mismatches", len(bad), bad[:2])
print(" hw cycles", hw[0]["cycles"][:6].tolist(), "model", exp["cycles"][:6].tolist())
print(" events", hw[0]["events"][:6].tolist(), exp["events"][:6].tolist(), "fired", hw[0]["fired"][:4].tolist(), exp["fired"][:4].tolist())
print(" wall %.1f" % (time.time() - t))
print(" logits hw", hw[0]["logits"][:2].tolist()); print(" logits gd", exp["logits"][:2].tolist())
