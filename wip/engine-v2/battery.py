"""battery.py P KT [n] [dense]: many random models in one loadable envelope (one build), exact check."""
import sys, time, numpy as np
from golden.randmodel import random_model
from rtl.engine.config import EngineConfig
from sim import engine as se
P, KT = int(sys.argv[1]), int(sys.argv[2]); Q = int(__import__('os').environ.get('Q', '1'))
n = int(sys.argv[3]) if len(sys.argv) > 3 else 3
dense = len(sys.argv) > 4 and sys.argv[4] == "dense"
specs = [("c4,p,c8g,f,d10", (1, 8, 8)), ("c3k1,c5g,p,f,d16,d8", (1, 8, 8)), ("c6k3v,p,c4k1,f,d9", (1, 11, 11)),
         ("c5k5,c3k5v,f,d7", (2, 9, 9)), ("c4k7,p,f,d6", (1, 9, 9)), ("c4k7v,c3,f,d5", (3, 10, 10)),
         ("p,c4g,p,p,f,d10", (1, 12, 12)), ("f,d12,d12,d10", (1, 5, 5)), ("c7g,c9k1g,p,c5g,f,d10", (3, 7, 7)),
         ("c3k1v,c3k1,f,d4", (1, 3, 3)), ("c2,p,f,d3", (1, 5, 7))]
if KT < 2:
    specs = [s for s in specs if ",p" not in s[0].replace("p,c", "X") or True]
ms, runs = [], []
rng = np.random.default_rng(7)
for i, (arch, shape) in enumerate(specs):
    m = random_model(arch, shape, seed=i + 1)
    try:
        EngineConfig.for_models([m], P, KT)
    except Exception as e:
        print("skip", arch, e); continue
    ms.append(m)
    runs.append({"model": m, "images": rng.integers(0, 256, (n,) + shape, dtype=np.uint8), "tau": None,
                 "dense": dense, "load": True})
cfg = EngineConfig.for_models(ms, P, KT, Q)
t = time.time()
hw, wall = se.simulate(cfg, runs)
tot = 0
for r, h in zip(runs, hw):
    bad, exp = se.compare(r["model"], r["images"], None, h, cfg, dense=dense)
    tot += len(bad)
    print("%-28s" % r["model"].name[:28], "bad", len(bad), bad[:1] if bad else "", "cyc", h["cycles"][:3].tolist(), exp["cycles"][:3].tolist())
print("P", P, "KT", KT, "dense", dense, "total mismatches", tot, "wall %.0f" % (time.time() - t))
