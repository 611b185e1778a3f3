"""One module per finding family: its vectorised masks and its texts.

A family module has
- `evaluate(stage) -> dict[code, FindingColumn]`: the masks (and every per-CBC decision its texts
  need, as columns) of the findings that `reference_ranges/findings.csv` assigns to it;
- `detail_<code>(view, i) -> (detail, severity label or None, evidence)` for each finding it reports;
- optionally `not_assessed_<code>(view, i) -> [(reason, needs)]` for a finding whose row has a
  `not_assessed` position, and `summary_words_<code>(view, i, finding)` to name a severity in the summary.

Order, urgency and reason, title, rule and sources come from the table, never from here. Families
are evaluated in EVALUATION_ORDER because later ones read what earlier ones decided (the lineages,
the skin assessment).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Families in the order their inputs become available.
EVALUATION_ORDER = ("counts", "critical", "combined", "film", "aplastic", "skin", "pitfalls", "red_flags")


def family(name: str) -> ModuleType:
    """The module of a family named in findings.csv."""
    return importlib.import_module(f"{__name__}.{name}")
