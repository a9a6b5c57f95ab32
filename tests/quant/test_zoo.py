"""Every zoo model: re-export from its Brevitas eval state and check bit-exactness on the whole
1,000-image test split of its data set (mnist5k, or mnist5k-saccade sequences for the LIAF model:
every layer, gate decision, log-alpha, membrane and time step, logit and prediction), and that the
committed .gxm is exactly what the export produces."""

import glob
import json
import os

import numpy as np
import pytest
import torch

from golden import modelfile
from quant.export import load_eval_state, to_golden, verify
from quant.train import load_data

ZOO = os.path.join(os.path.dirname(__file__), "..", "..", "zoo")
NAMES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ZOO, "*.gxm")))


def test_zoo_has_the_three_models():
    assert {"mlp", "cnn", "gated-cnn"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_exact_on_whole_test_split(name):
    torch.set_num_threads(1)
    model = modelfile.load(os.path.join(ZOO, f"{name}.gxm"))
    info = json.loads(open(os.path.join(ZOO, f"{name}.json")).read())
    cfg, net = load_eval_state(os.path.join(ZOO, f"{name}.evalstate.npz"))
    rebuilt = to_golden(net, default_tau=model.meta.get("default_tau_log_alpha") or 0.0)
    assert len(rebuilt.layers) == len(model.layers)
    for a, b in zip(rebuilt.layers, model.layers):
        assert a.kind == b.kind
        for key, arr in a.arrays().items():
            assert np.array_equal(arr, b.arrays()[key]), (name, key)
    assert rebuilt.default_tau == model.default_tau
    assert (rebuilt.time_steps, rebuilt.readout) == (model.time_steps, model.readout)
    x, y = load_data(cfg, "test")
    assert len(x) == 1000
    taus = [model.default_tau]
    if model.gated:
        taus += [model.tau_range[0], model.tau_from_log_alpha(2.0), model.tau_from_log_alpha(6.0)]
    for tau in taus:
        rep = verify(net, model, x, tau_int=tau)
        assert rep["exact"], (name, tau, rep["mismatches"])
    # the accuracy recorded in the JSON is golden's at the default tau
    rep = verify(net, model, x)
    assert info["test_accuracy"] == rep["golden_result"].accuracy(y)
