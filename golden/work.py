"""Work accounting: what the event-driven hardware does and what it skips.

For every conv/dense layer the *nominal* (dense) work is ``positions * K * fan_in`` MACs, padding
taps included. Each nominal MAC ``(kernel k, output position p, tap t)`` falls in exactly one class,
tested in this order:

1. ``skip_gated``: kernel ``k`` is gated off for this input;
2. ``skip_shape``: tap ``t`` does not exist in kernel ``k``'s learned shape (its tap mask is 0);
3. ``skip_zero_act``: the activation under tap ``t`` is 0 (a zero pad counts as a zero activation);
4. ``skip_zero_weight``: the weight is 0;
5. ``fired``: both are nonzero: one gated XNOR fires (+1 or -1).

So ``dense_macs == fired + skip_gated + skip_shape + skip_zero_act + skip_zero_weight`` always
(checked by :meth:`LayerWork.check` on every run).
``input_events`` counts the nonzero activations of the layer's input (what the event encoder
emits). ``kernels_off`` counts (image, kernel) pairs gated off by a pre-synaptic gate;
``post_off`` those zeroed by a post-synaptic gate (computed, so their MACs are in the other
classes); ``lateral_zeroed`` the outputs that the thresholds made nonzero and lateral depression
set to 0; ``gate_macs`` is the gate predictors' integer work (``K * C * R*R`` per image and gate).
All counts are summed over the images of a run.
"""

from dataclasses import asdict, dataclass, fields


@dataclass
class LayerWork:
    index: int
    kind: str
    images: int = 0
    dense_macs: int = 0
    input_events: int = 0
    fired: int = 0
    skip_gated: int = 0
    skip_shape: int = 0
    skip_zero_act: int = 0
    skip_zero_weight: int = 0
    kernels: int = 0
    kernels_off: int = 0
    gate_macs: int = 0
    post_off: int = 0
    lateral_zeroed: int = 0

    COUNTS = ("images", "dense_macs", "input_events", "fired", "skip_gated", "skip_shape", "skip_zero_act",
              "skip_zero_weight", "kernels", "kernels_off", "gate_macs", "post_off", "lateral_zeroed")
    SKIPS = ("skip_gated", "skip_shape", "skip_zero_act", "skip_zero_weight")

    def add(self, other):
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def skips(self):
        return sum(getattr(self, n) for n in self.SKIPS)

    def check(self):
        total = self.fired + self.skips
        assert total == self.dense_macs, (self, total)

    def as_dict(self):
        return asdict(self)


def totals(works):
    """Sum a list of LayerWork into one row (kind 'total'); ``images`` is taken once."""
    t = LayerWork(index=-1, kind="total")
    for w in works:
        t.add(w)
    t.images = works[0].images if works else 0
    return t


def work_json(works):
    """JSON-ready dict: per-layer rows and the total."""
    return {"layers": [w.as_dict() for w in works], "total": totals(works).as_dict()}


def format_table(works):
    """A readable table of the work, one row per layer plus the total."""
    cols = [("layer", 6), ("kind", 8), ("dense MACs", 13), ("events", 11), ("fired", 12),
            ("fired %", 8), ("skip act", 12), ("skip wgt", 12), ("skip gate", 12), ("skip shape", 12),
            ("k off %", 8)]
    head = " ".join(f"{c:>{w}}" for c, w in cols)
    lines = [head, "-" * len(head)]
    for w in list(works) + [totals(works)]:
        pct = 100.0 * w.fired / w.dense_macs if w.dense_macs else 0.0
        off = 100.0 * w.kernels_off / w.kernels if w.kernels else 0.0
        name = "total" if w.index < 0 else str(w.index)
        vals = [name, w.kind, w.dense_macs, w.input_events, w.fired, f"{pct:.2f}", w.skip_zero_act,
                w.skip_zero_weight, w.skip_gated, w.skip_shape, f"{off:.1f}"]
        lines.append(" ".join(f"{v:>{cw}}" for v, (_, cw) in zip(vals, cols)))
    return "\n".join(lines)


assert {f.name for f in fields(LayerWork)} >= set(LayerWork.COUNTS)
