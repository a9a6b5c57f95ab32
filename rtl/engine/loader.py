"""Run-time weight loader (the ``load`` decode of :class:`rtl.engine.Engine`), and its reference.

Decodes the engine's ``load`` stream of ``(sel, addr, data)`` records (:func:`rtl.engine.layout.load_records`)
into one write port per engine memory, selected by the ``SEL_*`` code of :mod:`rtl.engine.layout`.
Port widths are those :func:`rtl.engine.layout.check_records` validates against.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig

from .layout import memory_map


def _check(cfg):
    if not isinstance(cfg, EngineConfig):
        raise ValueError(f"Loader cfg must be a rtl.engine.config.EngineConfig, not {type(cfg).__name__}")
    return cfg


def ports(cfg):
    """Per memory, in ``SEL_*`` order: ``(name, depth, addr_bits, data_bits)``.

    ``addr_bits`` is the write address width of a memory of that depth (at least 1); the header is a
    register (depth 1, no address port: ``addr_bits`` 0).
    """
    cfg = _check(cfg)
    return [(n, depth, 0 if n == "header" else max(1, (depth - 1).bit_length()), width)
            for n, _sel, depth, width in memory_map(cfg)]


def ref_loader(records, cfg):
    """Reference: the memory images a record stream writes, shaped like :func:`rtl.engine.layout.images`.

    ``records``: (sel, addr, data) in stream order. Returns ``{"header": int or None, name: list}``
    for each memory of the build (:func:`rtl.engine.layout.memory_map`; the input table only in a
    build with ``code_bits``): each list runs to the highest address written (a word never written is
    None), a later write to an address wins, records with a ``sel`` that selects no memory write
    nothing. As in hardware, ``addr`` and ``data`` are cut to the port's width (records that pass
    :func:`rtl.engine.layout.check_records` are unaffected).
    """
    bits = {name: (abits, dbits) for name, _, abits, dbits in ports(cfg)}
    spec = {sel: (name,) + bits[name] for name, sel, _, _ in memory_map(cfg)}
    written = {name: {} for name in bits}
    for sel, addr, data in records:
        sel, addr, data = int(sel), int(addr), int(data)
        if sel not in spec:
            continue
        name, abits, dbits = spec[sel]
        written[name][addr & ((1 << abits) - 1)] = data & ((1 << dbits) - 1)
    out = {}
    for name, w in written.items():
        if name == "header":
            out[name] = w.get(0)
        else:
            out[name] = [w.get(a) for a in range(max(w) + 1)] if w else []
    return out


class Loader(wiring.Component):
    """Load records in, one memory write per record out.

    Parameters
    ----------
    cfg : rtl.engine.config.EngineConfig

    Members
    -------
    load : In(stream.Signature(rtl.engine.load_layout(cfg)))
        ``sel`` (``rtl.engine.layout.SEL_*``), ``addr``, ``data`` (low bits used, per memory).
    enable : In(1)
        The engine is idle; ``load.ready`` is ``enable``.
    <name>_en, <name>_addr, <name>_data : Out
        For each memory of ``rtl.engine.layout.memory_map(cfg)`` (header, desc, weights, thr, gw, gb,
        and table in a build with input tables): ``_en`` is 1
        exactly in a cycle a record with that ``sel`` is transferred (``load.valid & load.ready``);
        ``_addr`` (none for the header register) and ``_data`` carry its address and data cut to the
        widths of :func:`ports`. Unknown ``sel`` values (7, and 6 without a table) are accepted and
        write nothing.

    Latency 0 (combinational, no state), throughput one record per cycle while ``enable``.
    """

    def __init__(self, cfg):
        self.cfg = _check(cfg)
        self.spec = ports(cfg)
        # imported here, not at module level, so that rtl.engine may import this module
        from .top import load_layout
        members = {"load": In(stream.Signature(load_layout(cfg))), "enable": In(1)}
        for name, _, abits, dbits in self.spec:
            members[f"{name}_en"] = Out(1)
            if abits:
                members[f"{name}_addr"] = Out(unsigned(abits))
            members[f"{name}_data"] = Out(unsigned(dbits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ld = self.load.payload
        take = self.load.valid & self.load.ready
        m.d.comb += self.load.ready.eq(self.enable)
        hit = Signal(len(self.spec))       # one-hot decode of sel (a Switch: full-width case labels)
        with m.Switch(ld.sel):
            for sel in range(len(self.spec)):
                with m.Case(sel):
                    m.d.comb += hit[sel].eq(1)
            with m.Default():            # unknown sel (7; 6 without a table): no memory
                m.d.comb += hit.eq(0)
        for sel, (name, _, abits, dbits) in enumerate(self.spec):
            m.d.comb += [getattr(self, f"{name}_en").eq(take & hit[sel]),
                         getattr(self, f"{name}_data").eq(ld.data[:dbits])]
            if abits:
                m.d.comb += getattr(self, f"{name}_addr").eq(ld.addr[:abits])
        return m
