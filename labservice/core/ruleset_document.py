"""The ruleset as a JSON-ready document: every threshold, band, grade, cut-off and range in use,
each with its source, so a laboratory can check what a running service applies."""

from __future__ import annotations

import math

from labservice.core.ruleset import Ruleset


def _number(x: float | None) -> float | None:
    return None if x is None or math.isinf(x) else x


def ruleset_document(rs: Ruleset) -> dict:
    return {
        "version": rs.version,
        "thresholds": [
            {
                "key": t.key,
                "analyte": t.analyte or None,
                "operator": t.operator,
                "value": t.value,
                "unit": t.unit,
                "meaning": t.meaning,
                "sources": list(t.sources),
            }
            for t in rs.thresholds.values()
        ],
        "ctcae": [
            {
                "version": r.version,
                "analyte": r.analyte,
                "grade": r.grade,
                "operator": r.operator,
                "bound": "LLN" if r.bound is None else r.bound,
                "note": r.note,
                "sources": list(r.sources),
            }
            for r in rs.ctcae
        ],
        "bands": {
            scheme: [
                {
                    "label": b.label,
                    "lower": _number(b.lower),
                    "lower_op": b.lower_op,
                    "upper": _number(b.upper),
                    "upper_op": b.upper_op,
                    "unit": b.unit,
                    "text": b.text,
                    "sources": list(b.sources),
                }
                for b in bands
            ]
            for scheme, bands in rs.bands.items()
        },
        "anemia_cutoffs": [
            {
                "population": c.population,
                "sex": c.sex,
                "age_low_days": c.age_low_days,
                "age_high_days": c.age_high_days,
                "pregnancy": c.pregnancy,
                "cutoff_g_dl": c.cutoff,
                "severity_bands": c.severity,
                "sources": list(c.sources),
            }
            for c in rs.anemia_cutoffs
        ],
        "reference_ranges": [
            {
                "table": "duffy_null" if r in rs.duffy_ranges else "general",
                "analyte": r.analyte,
                "unit": r.unit,
                "sex": r.sex,
                "age_low_days": r.age_low_days,
                "age_high_days": r.age_high_days,
                "low": r.low,
                "high": r.high,
                "source": r.source,
            }
            for r in rs.ranges + rs.duffy_ranges
        ],
        "analytes": [
            {
                "analyte": a.name,
                "label": a.label,
                "canonical_unit": a.canonical_unit,
                "loinc": list(a.loinc),
                "units": [s.unit for s in rs.units.spellings(a.unit_kind) if s.factor is not None],
                "plausible": {"min": a.plausible_min, "min_op": a.min_op, "max": a.plausible_max, "max_op": a.max_op},
            }
            for a in rs.analytes.values()
        ],
        "sources": rs.sources,
    }
