"""The differential and the blood film (clinical-rules §10 v2): blasts reported, the
thrombotic-microangiopathy pattern with its PLASMIC items, and nucleated red cells with a cytopenia.

Runs after the counts and combined families (it reads the lineages) and before the aplastic and
pitfalls families, which read what it decides (blasts make the aplastic-anaemia assessment not
applicable; blasts and schistocytes turn the pseudothrombocytopenia suggestion off).
"""

from __future__ import annotations

import math

import numpy as np

from labservice.core.compare import NO, NOT_ASSESSED, YES, band_index, meets, tristate
from labservice.core.families.base import FindingColumn, Stage, TextView, fmt, json_number
from labservice.core.ranges import DAYS_PER_YEAR
from labservice.core.table import SCHISTOCYTE_GRADES

#: The PLASMIC items in the order the answer lists them: (key, thresholds.csv key or None, words).
PLASMIC_ITEMS = (
    ("platelets", "plasmic_platelets", "platelets below {plasmic_platelets} {platelets_unit}"),
    (
        "hemolysis",
        None,
        "haemolysis (reticulocytes above {plasmic_reticulocytes_percent} %, haptoglobin undetectable, or indirect "
        "bilirubin above {plasmic_indirect_bilirubin} mg/dL)",
    ),
    ("no_active_cancer", None, "no active cancer"),
    ("no_transplant", None, "no solid-organ or stem-cell transplant"),
    ("mcv", "plasmic_mcv", "MCV below {plasmic_mcv} fL"),
    ("inr", "plasmic_inr", "INR below {plasmic_inr}"),
    ("creatinine", "plasmic_creatinine", "creatinine below {plasmic_creatinine} mg/dL"),
)
#: What an item needs, named in `not_assessed` (contract names).
PLASMIC_NEEDS = {
    "platelets": ["platelets"],
    "hemolysis": ["reticulocytes_percent", "context.haptoglobin_undetectable", "context.indirect_bilirubin_mg_dl"],
    "no_active_cancer": ["context.active_cancer"],
    "no_transplant": ["context.transplant"],
    "mcv": ["mcv"],
    "inr": ["context.inr"],
    "creatinine": ["context.creatinine_mg_dl"],
}
#: Findings whose detail mentions nucleated red cells (any cytopenia, clinical-rules §10 v2).
CYTOPENIA_CODES = (
    "thrombocytopenia",
    "neutropenia",
    "anemia",
    "leukopenia",
    "lymphopenia",
    "bicytopenia",
    "pancytopenia",
)


def _flag_state(values: np.ndarray, yes_means_met: bool) -> np.ndarray:
    """A stated 1.0 / 0.0 / NaN as a PLASMIC item: met when the statement is `yes_means_met`."""
    out = np.where(values == (1.0 if yes_means_met else 0.0), YES, NO).astype(np.int8)
    out[np.isnan(values)] = NOT_ASSESSED
    return out


def plasmic_items(stage: Stage) -> dict[str, np.ndarray]:
    """Each PLASMIC item [S26] as YES (one point) / NO / NOT_ASSESSED, over all rows."""
    cols, rs = stage.cols, stage.rs
    v, film = cols.values, cols.film
    retic = tristate(v["reticulocytes_percent"], rs.threshold("plasmic_reticulocytes_percent"))
    haptoglobin = _flag_state(film["haptoglobin_undetectable"], True)
    bilirubin = tristate(film["indirect_bilirubin_mg_dl"], rs.threshold("plasmic_indirect_bilirubin"))
    markers = np.array([retic, haptoglobin, bilirubin])
    # Met when any marker is met; not met only when all three were sent and none is; else not assessed.
    hemolysis = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
    hemolysis[(markers == NO).all(axis=0)] = NO
    hemolysis[(markers == YES).any(axis=0)] = YES
    return {
        "platelets": tristate(v["platelets"], rs.threshold("plasmic_platelets")),
        "hemolysis": hemolysis,
        "no_active_cancer": _flag_state(film["active_cancer"], False),
        "no_transplant": _flag_state(film["transplant"], False),
        "mcv": tristate(v["mcv"], rs.threshold("plasmic_mcv")),
        "inr": tristate(film["inr"], rs.threshold("plasmic_inr")),
        "creatinine": tristate(film["creatinine_mg_dl"], rs.threshold("plasmic_creatinine")),
    }


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    cols, rs, lineages = stage.cols, stage.rs, stage.lineages
    assert lineages is not None, "the counts family runs first"
    v, film = cols.values, cols.film
    grade, percent, seen = film["schistocytes_grade"], film["schistocytes_percent"], film["blasts_seen"]
    platelets_low = tristate(v["platelets"], rs.threshold("tma_platelets"))
    if (
        np.isnan(v["blasts_percent"]).all()
        and np.isnan(grade).all()
        and np.isnan(percent).all()
        and np.isnan(seen).all()
    ):
        # Nothing of the differential or the film was sent (the usual CBC): no blasts, no schistocytes.
        none = np.zeros(cols.n, dtype=bool)
        blasts_counted = blasts_seen = reported = enough = schisto_known = none
    else:
        blasts_counted = meets(v["blasts_percent"], rs.threshold("blasts_reported_percent"))
        blasts_seen = seen == 1.0
        graded = grade >= SCHISTOCYTE_GRADES.index("present")
        # Reported (§8: present, many or a percentage above 0), enough for the pattern (§10: > 1 % or graded).
        reported = graded | meets(percent, rs.threshold("schistocytes_reported_percent"))
        enough = graded | meets(percent, rs.threshold("tma_schistocytes_percent"))
        schisto_known = ~np.isnan(grade) | ~np.isnan(percent)
    blasts = FindingColumn(
        "blasts_reported", blasts_counted | blasts_seen, extra={"counted": blasts_counted, "seen": blasts_seen}
    )
    anemia = lineages.red
    pattern = enough & (platelets_low == YES) & (anemia == YES)
    # Not assessed: the counts could make the pattern but a part of it was not sent (never silently "no").
    counts_could = (platelets_low != NO) & (anemia != NO)
    counts_unknown = (platelets_low == NOT_ASSESSED) | (anemia == NOT_ASSESSED)
    undecided = ~pattern & ((enough & counts_unknown) | (~schisto_known & counts_could & ~counts_unknown))
    # PLASMIC is read only where the pattern is present: skip its columns for tables without it.
    if pattern.any():
        items = plasmic_items(stage)
    else:
        unread = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
        items = {key: unread for key, _, _ in PLASMIC_ITEMS}
    state = np.where(pattern, YES, np.where(undecided, NOT_ASSESSED, NO)).astype(np.int8)
    stage.states["thrombotic_microangiopathy_pattern"] = state
    tma = FindingColumn(
        "thrombotic_microangiopathy_pattern",
        pattern,
        extra={
            **{f"plasmic_{key}": item for key, item in items.items()},
            "schistocytes_unknown": ~schisto_known,
            "platelets_low": platelets_low,
            "anemia": anemia,
        },
        state=state,  # JSON and CSV list the same "not assessed" (the columnar output reads the state)
    )
    # What the pitfalls family reads: schistocytes or blasts reported on this CBC.
    stage.film_reported = reported | blasts.present
    return {f.code: f for f in (blasts, tma)}


# --- texts ---------------------------------------------------------------------------------------


def _percent_text(x: float) -> str:
    return f"{fmt(x)} %"


def detail_blasts_reported(view: TextView, i: int):
    counted = bool(view.extra("blasts_reported", "counted", i))
    seen = bool(view.extra("blasts_reported", "seen", i))
    what = []
    if counted:
        what.append(f"blasts {_percent_text(view.v('blasts_percent', i))} of leukocytes on the differential")
    if seen:
        what.append("blasts seen on the blood film")
    evidence: dict = {}
    if counted:
        evidence["blasts_percent"] = view.v("blasts_percent", i)
    if seen:
        evidence["blasts_seen"] = True
    return (
        f"Blasts reported on the differential ({'; '.join(what)}); acute leukaemia must be excluded: a blood count "
        f"or film suggesting acute leukaemia is referred for immediate specialist assessment "
        f"{view.tags('blasts_reported_percent')}. The counts are described, not diagnosed.",
        None,
        evidence,
    )


def schistocyte_words(view: TextView, i: int) -> str:
    """Schistocytes as sent: "schistocytes 2 % of red cells", "schistocytes present (graded)"."""
    film = view.r.cols.film
    parts = []
    percent = float(film["schistocytes_percent"][i])
    if not math.isnan(percent):
        parts.append(f"schistocytes {_percent_text(percent)} of red cells")
    grade = float(film["schistocytes_grade"][i])
    if not math.isnan(grade):
        parts.append(f"schistocytes {SCHISTOCYTE_GRADES[int(grade)]} on the film")
    return "; ".join(parts)


def plasmic(view: TextView, i: int) -> dict:
    """The PLASMIC block of an answer [S26]: each item's point, the items not assessed, the band only
    when every item is known."""
    items = {
        key: int(view.extra("thrombotic_microangiopathy_pattern", f"plasmic_{key}", i)) for key, _, _ in PLASMIC_ITEMS
    }
    met = [key for key, state in items.items() if state == YES]
    unknown = [key for key, state in items.items() if state == NOT_ASSESSED]
    band = None
    if not unknown:  # the band only when every item is known (§10 v2)
        found = view.band(
            "plasmic_risk", int(band_index(np.array([float(len(met))]), view.rs.bands["plasmic_risk"])[0])
        )
        band = found.label if found else None
    words = {
        key: text.format(**view.t, platelets_unit=view.rs.unit_text("platelets")) for key, _, text in PLASMIC_ITEMS
    }
    return {
        "items": {key: ("met" if s == YES else "not_met" if s == NO else "not_assessed") for key, s in items.items()},
        "points": len(met),
        "points_possible": len(items),
        "not_assessed": [{"item": key, "needs": PLASMIC_NEEDS[key]} for key in unknown],
        "risk": band,
        "text": (
            f"PLASMIC score {len(met)} of {len(items)} [S26]"
            + (f" ({'; '.join(words[k] for k in met)})" if met else "")
            + (
                f"; not assessed: {'; '.join(words[k] for k in unknown)}, so no risk band is given"
                if unknown
                else f": {band} risk of severe ADAMTS13 deficiency"
            )
            + "."
        ),
        "sources": view.rs.cite(("S26",)),
    }


def detail_thrombotic_microangiopathy_pattern(view: TextView, i: int):
    evidence: dict[str, float | str | None] = {
        "platelets": view.v("platelets", i),
        "hemoglobin": view.v("hemoglobin", i),
    }
    film = view.r.cols.film
    for key in ("schistocytes_percent", "schistocytes_grade"):
        value = float(film[key][i])
        if not math.isnan(value):
            evidence[key.replace("_grade", "")] = (
                SCHISTOCYTE_GRADES[int(value)] if key.endswith("grade") else json_number(value)
            )
    score = plasmic(view, i)
    return (
        f"Platelets {fmt(view.v('platelets', i))} {view.rs.unit_text('platelets')} (below "
        f"{view.t['tma_platelets']}), anaemia and {schistocyte_words(view, i)}: the pattern of a thrombotic "
        f"microangiopathy {view.tags('tma_schistocytes_percent')}. Thrombotic thrombocytopenic purpura is a medical "
        f"emergency: same-day haematology. {score['text']}",
        None,
        evidence,
    )


def not_assessed_thrombotic_microangiopathy_pattern(view: TextView, i: int):
    if view.extra("thrombotic_microangiopathy_pattern", "schistocytes_unknown", i):
        return [
            (
                "thrombotic microangiopathy pattern not assessed: platelets are low with anaemia but no blood film "
                "(schistocytes) was sent",
                ["film.schistocytes"],
            )
        ]
    needs = []
    if view.extra("thrombotic_microangiopathy_pattern", "platelets_low", i) == NOT_ASSESSED:
        needs.append("platelets")
    if view.extra("thrombotic_microangiopathy_pattern", "anemia", i) == NOT_ASSESSED:
        needs.append("hemoglobin")
    return [(f"schistocytes were reported but {' and '.join(needs)} would decide the pattern", needs)]


def nrbc_present(view: TextView, i: int) -> bool:
    """Nucleated red cells above 0 per 100 leukocytes in a patient older than 28 days (§10 v2; an
    unknown age counts as older, as the adult ranges do)."""
    nrbc = view.v("nrbc_per_100_wbc", i)
    if math.isnan(nrbc) or not nrbc > view.rs.value("nrbc_reported"):
        return False
    age = float(view.r.cols.age_years[i])
    days = round(age * DAYS_PER_YEAR, 6)  # an age sent in days and read back from years is exact again
    return math.isnan(age) or bool(meets(np.array([days]), view.rs.threshold("nrbc_newborn_age_days"))[0])


def nrbc_sentence(view: TextView, i: int) -> str:
    return (
        f" Nucleated red cells {fmt(view.v('nrbc_per_100_wbc', i))} per 100 leukocytes with a cytopenia: a "
        "leucoerythroblastic picture calls for a film review."
    )


def film_block(view: TextView, i: int) -> dict | None:
    """What the film and the extended differential said, described only (None when nothing was sent)."""
    cols = view.r.cols
    film = cols.film
    sent = {
        key: float(film[key][i])
        for key in ("schistocytes_percent", "schistocytes_grade", "blasts_seen", "platelet_count_confirmed")
        if not math.isnan(float(film[key][i]))
    }
    if not sent:
        return None
    out: dict = {}
    if "schistocytes_percent" in sent:
        out["schistocytes_percent"] = json_number(sent["schistocytes_percent"])
    if "schistocytes_grade" in sent:
        out["schistocytes"] = SCHISTOCYTE_GRADES[int(sent["schistocytes_grade"])]
    for key in ("blasts_seen", "platelet_count_confirmed"):
        if key in sent:
            out[key] = sent[key] == 1.0
    words = schistocyte_words(view, i)
    pattern = bool(view.r.findings["thrombotic_microangiopathy_pattern"].present[i])
    if words:
        out["text"] = (
            f"Film: {words}."
            if pattern
            else f"Film: {words}; the counts do not show the thrombotic-microangiopathy pattern (platelets below "
            f"{view.t['tma_platelets']} with anaemia), so this is described only."
        )
    return out
