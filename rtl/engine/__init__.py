"""The event-driven GXNOR engine: the Amaranth component and the facts of its microarchitecture.

NumPy-only modules (importable without Amaranth): :mod:`.config` (``EngineConfig``, hardware layers,
envelope), :mod:`.schedule` (exact cycle model), :mod:`.balance` (kernel order), :mod:`.layout`
(memory map, descriptors, memory images and load records). The Amaranth side: :mod:`.top`
(``Engine``) and :mod:`.loader`. ``from rtl.engine import Engine`` imports Amaranth on first use.
"""

_TOP = ("Engine", "pixel_layout", "result_layout", "trace_layout", "load_layout")


def __getattr__(name):
    if name in _TOP:
        from . import top
        return getattr(top, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
