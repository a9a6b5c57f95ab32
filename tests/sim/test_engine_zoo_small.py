"""The zoo models on the RTL at the iCEBreaker configuration of engine v2 (P = 2, KT = 3, Q = 1):
200 test images per model, exact (see tests/sim/test_engine_zoo.py)."""

from tests.sim.test_engine_zoo import SEED, zoo_on_rtl


def test_zoo_models_on_rtl_icebreaker_config():
    zoo_on_rtl(2, 3, 1, SEED + 1)
