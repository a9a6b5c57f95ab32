"""bench/effort.py's pieces: the static-mask control and the choice on validation."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from golden.data import load_dataset
from golden.forward import run
from quant.export import to_golden, verify
from quant.nets import Net

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench"))          # its `import _kit`, as when run as a script
spec = importlib.util.spec_from_file_location("effort", ROOT / "bench" / "effort.py")
effort = importlib.util.module_from_spec(spec)
spec.loader.exec_module(effort)


def test_static_mask_is_the_most_frequent_kernels_at_the_same_count():
    torch.manual_seed(3)
    net = Net("gated-cnn", in_hi=64, gate_norm=True, gate_regions=2).eval()
    model = to_golden(net)
    x, _ = load_dataset("mnist5k", "train")
    x = x[:300]
    res = run(model, x, tau=0)
    snet, masks = effort.static_mask_net(net, model, x, 0, None)
    smodel = to_golden(snet)
    sres = run(smodel, x, tau=0)
    assert masks
    for i, mask in masks.items():
        on = res.gates[i]
        assert int(mask.sum()) == int(round(float(on.sum(axis=1).mean())))
        freq = on.sum(axis=0)
        if mask.any() and (~mask).any():       # every kept kernel is on at least as often as every dropped one
            assert freq[mask].min() >= freq[~mask].max()
        assert (sres.gates[i] == mask[None, :]).all()          # constant gates: the mask on every image
    t, _ = load_dataset("mnist5k", "test")
    rep = verify(snet, smodel, t[:200], tau_int=0)
    assert rep["exact"], rep["mismatches"]
    again = effort.static_mask_net(net, model, x, 0, None)[1]          # deterministic
    assert again.keys() == masks.keys() and all(np.array_equal(again[i], masks[i]) for i in masks)


def test_choose_on_validation_within_budget():
    rows = [{"knob": k, "val": {"accuracy": a, "mac_fraction": m}} for k, a, m in
            ((0, 0.95, 0.60), (1, 0.94, 0.50), (2, 0.94, 0.45), (3, 0.90, 0.30))]
    assert effort.choose(rows, 0.50)["knob"] == 2          # equal accuracy: fewer MACs
    assert effort.choose(rows, 0.37)["knob"] == 3
    assert effort.choose(rows, 0.20) is None


def test_run_conditions_keep_the_teacher_and_the_study_order():
    outs = [a[a.index("-o") + 1] for a in effort.job_list("R", [0, 1], 15, ["events16", "ungated"])]
    assert outs == ["R/cnn-float", "R/s0-ungated", "R/s1-ungated", "R/s0-events16", "R/s1-events16"]
    assert len(effort.job_list("R", [0], 15)) == 1 + len(effort.CONDITIONS + effort.EVENT_CONDITIONS)


def test_event_lambda_chosen_on_validation():
    def ev(seed, val):
        return {"seed": seed, **{c: {"val": {"accuracy": a, "events_per_image": e}} for c, (a, e) in val.items()}}
    ungated = {"ungated": (0.97, 3000)}
    weak = {c: (0.95 - 0.01 * i, 900 - i) for i, c in enumerate(effort.EVENT_CONDITIONS)}   # >= 2 points below
    good = dict(weak, events4=(0.966, 1600))
    assert effort.choose_event_lambda([ev(s, {**ungated, **good}) for s in (0, 1)]) == "events4"
    good["events16"] = (0.968, 800)                                # within 0.5 points: the fewest events
    assert effort.choose_event_lambda([ev(s, {**ungated, **good}) for s in (0, 1)]) == "events16"
    assert effort.choose_event_lambda([ev(s, {**ungated, **weak}) for s in (0, 1)]) == effort.EVENT_CONDITIONS[0]
    assert effort.choose_event_lambda([ev(0, weak)]) is None        # no ungated run
