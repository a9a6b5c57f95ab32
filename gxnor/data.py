"""Moved to :mod:`golden.data`: data loading is not part of the CLI (``quant`` and ``bench`` use it,
and nothing below the CLI may import ``gxnor``). This alias stays for callers that still import
``gxnor.data``; new code imports ``golden.data``.
"""

from golden.data import DATASETS, SPLITS, describe, load_dataset, read_idx

__all__ = ["DATASETS", "SPLITS", "load_dataset", "read_idx", "describe"]
