"""Single lineages (clinical-rules §4): thrombocytopenia, thrombocytosis, anaemia, neutropenia,
leukopenia, lymphopenia; and the lineage states the combined findings read.

Lineage states are tri-state so that a missing analyte reads as "not assessed", never as normal.
"""

from __future__ import annotations

import math

import numpy as np

from labservice.core.compare import NO, NOT_ASSESSED, YES, band_index, meets, tristate
from labservice.core.families.base import FindingColumn, Lineages, Stage, TextView, cite_tags, fmt
from labservice.core.ranges import DAYS_PER_YEAR, RangeInUse, below_any_limit_threshold
from labservice.core.ruleset import Ruleset
from labservice.core.table import SEX_CODES, CbcColumns

#: Not-assessed entries of these findings mean an analyte not sent or a range missing: the answer
#: lists them, the summary does not repeat them (it names the decisions that stay open).
QUIET_NOT_ASSESSED = frozenset({"thrombocytopenia", "neutropenia", "leukopenia", "lymphopenia"})


def _below_lln(values: np.ndarray, rng: RangeInUse) -> np.ndarray:
    """Below the lower limit in use; with none, YES only below any lower limit (§2 v2), else NOT_ASSESSED."""
    out = np.where(values < rng.low, YES, NO).astype(np.int8)
    out[np.isnan(values) | np.isnan(rng.low)] = NOT_ASSESSED
    if rng.below_any_limit is not None:
        out[rng.below_any_limit] = YES
    return out


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    cols, rs, grades, ranges = stage.cols, stage.rs, stage.grades, stage.ranges
    v = cols.values
    plt, neut, hb = v["platelets"], v["neutrophils"], v["hemoglobin"]
    states = stage.states

    states["thrombocytopenia"] = tristate(plt, rs.threshold("thrombocytopenia"))
    thrombocytopenia = FindingColumn(
        "thrombocytopenia",
        states["thrombocytopenia"] == YES,
        grade=grades["platelets"],
        extra={
            "bleeding_band": band_index(plt, rs.bands["platelet_bleeding_risk"]),
            "often_benign_range": meets(plt, rs.threshold("thrombocytopenia_often_benign")),
        },
        raises=meets(plt, rs.threshold("soon_platelets")),
        state=states["thrombocytopenia"],
    )

    states["thrombocytosis"] = tristate(plt, rs.threshold("thrombocytosis"))
    thrombocytosis = FindingColumn("thrombocytosis", states["thrombocytosis"] == YES)

    states["anemia"] = stage.anemia.state
    # WHO 2011 severity for every group (§4 v2): the bands.csv scheme of the cut-off row applied
    # (children 6-59 months and pregnancy: 7.0 / 10.0; children 5-14 y, women and men: 8.0 / 11.0).
    # No WHO cut-off (under 6 months, decided by the lab's range): no severity.
    schemes = anemia_severity_schemes(rs)
    scheme = _scheme_of_cutoff_row(rs)[stage.anemia.row_index]  # row_index -1 picks the trailing -1
    severity = np.full(cols.n, -1, dtype=np.int8)
    moderate_or_severe = np.zeros(cols.n, dtype=bool)
    for k, name in enumerate(schemes):
        rows = scheme == k
        if not rows.any():
            continue
        bands = rs.bands[name]
        index = band_index(hb, bands)
        severity[rows] = index[rows]
        labels = [b.label for b in bands]
        moderate_or_severe |= rows & ((index == labels.index("moderate")) | (index == labels.index("severe")))
    anemic = stage.anemia.state == YES
    anemia = FindingColumn(
        "anemia",
        anemic,
        grade=grades["hemoglobin"],
        extra={"severity": severity, "scheme": scheme},
        raises=anemic & moderate_or_severe,
        state=states["anemia"],
    )

    duffy = cols.duffy_null == 1.0
    t_neut, t_duffy = rs.threshold("neutropenia"), rs.threshold("neutropenia_duffy_null")
    below_limit = meets(neut, t_neut)
    neutropenic = np.where(duffy, meets(neut, t_duffy), below_limit)
    states["neutropenia"] = np.where(np.isnan(neut), NOT_ASSESSED, np.where(neutropenic, YES, NO)).astype(np.int8)
    neutropenia = FindingColumn(
        "neutropenia",
        neutropenic,
        grade=grades["neutrophils"],
        extra={
            "severity": band_index(neut, rs.bands["neutropenia_severity"]),
            "duffy_null": duffy,
            "derived": cols.derived["neutrophils"],
        },
        raises=meets(neut, rs.threshold("soon_neutrophils")),
        state=states["neutropenia"],
    )

    states["leukopenia"] = _below_lln(v["wbc"], ranges["wbc"])
    leukopenia = FindingColumn(
        "leukopenia", states["leukopenia"] == YES, grade=grades["wbc"], state=states["leukopenia"]
    )
    states["lymphopenia"] = _below_lln(v["lymphocytes"], ranges["lymphocytes"])
    lymphopenia = FindingColumn(
        "lymphopenia", states["lymphopenia"] == YES, grade=grades["lymphocytes"], state=states["lymphopenia"]
    )

    erythrocytosis = _erythrocytosis(stage)

    stage.lineages = lineages = lineages_from(states, cols)
    # The Duffy-null caveat (§4): an isolated count from duffy_caveat_from up to the neutropenia
    # limit, Duffy status not given.
    neutropenia.extra["duffy_caveat"] = (
        np.isnan(cols.duffy_null)
        & (lineages.red != YES)
        & (lineages.platelets != YES)
        & meets(neut, rs.threshold("duffy_caveat_from"))
        & below_limit
    )
    findings = (thrombocytopenia, thrombocytosis, anemia, neutropenia, leukopenia, lymphopenia, erythrocytosis)
    return {f.code: f for f in findings}


def _erythrocytosis(stage: Stage) -> FindingColumn:
    """§4 v2: haematocrit above 52 % (men, sex not given) / 48 % (women) to repeat; above 60 / 56 % an
    absolute erythrocytosis that asks for `soon` [S28]. Men and women: from 15 years, or no age given."""
    cols, rs = stage.cols, stage.rs
    hct = cols.values["hematocrit"]
    woman = cols.sex == SEX_CODES["female"]
    if "hematocrit" not in cols.present_analytes():  # no haematocrit in the table: nothing to compare
        none = np.zeros(cols.n, dtype=bool)
        return FindingColumn("erythrocytosis", none, extra={"absolute": none, "woman": woman}, raises=none)
    adult = np.isnan(cols.age_years) | meets(cols.age_years, rs.threshold("erythrocytosis_from_age_years"))
    raised = adult & np.where(
        woman,
        meets(hct, rs.threshold("erythrocytosis_hematocrit_female")),
        meets(hct, rs.threshold("erythrocytosis_hematocrit_male")),
    )
    absolute = raised & np.where(
        woman,
        meets(hct, rs.threshold("absolute_erythrocytosis_hematocrit_female")),
        meets(hct, rs.threshold("absolute_erythrocytosis_hematocrit_male")),
    )
    return FindingColumn("erythrocytosis", raised, extra={"absolute": absolute, "woman": woman}, raises=absolute)


def _scheme_of_cutoff_row(rs: Ruleset) -> np.ndarray:
    """The severity scheme (index into anemia_severity_schemes) of each anemia_cutoffs.csv row, then -1
    (built once per ruleset: per-call overhead of one CBC)."""
    key = "anemia_scheme_of_cutoff_row"
    if key not in rs._cache:
        schemes = anemia_severity_schemes(rs)
        scheme_of_row = np.array([schemes.index(row.severity) for row in rs.anemia_cutoffs] + [-1], dtype=np.int8)
        scheme_of_row.flags.writeable = False
        rs._cache[key] = scheme_of_row
    return rs._cache[key]


def anemia_severity_schemes(rs: Ruleset) -> tuple[str, ...]:
    """The bands.csv schemes that anemia_cutoffs.csv names for WHO 2011 severity, in first-use order."""
    key = "anemia_severity_schemes"
    if key not in rs._cache:
        rs._cache[key] = tuple(dict.fromkeys(row.severity for row in rs.anemia_cutoffs))
    return rs._cache[key]


def lineages_from(states: dict[str, np.ndarray], cols: CbcColumns) -> Lineages:
    """Red = anaemia; white = leukopenia or neutropenia; platelets = thrombocytopenia (§5).

    White is low if either is low; not low if one is assessed not low and the other was either
    assessed not low or not sent; otherwise (a WBC sent with no range to judge it) not assessed.
    """
    leuko, neutro = states["leukopenia"], states["neutropenia"]
    wbc_undecided = (leuko == NOT_ASSESSED) & ~np.isnan(cols.values["wbc"])
    white = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
    white[((leuko == NO) | (neutro == NO)) & ~wbc_undecided] = NO
    white[(leuko == YES) | (neutro == YES)] = YES
    return Lineages(red=states["anemia"], white=white, platelets=states["thrombocytopenia"])


# --- texts -----------------------------------------------------------------------------------------


def detail_thrombocytopenia(view: TextView, i: int):
    plt = view.v("platelets", i)
    band = view.band("platelet_bleeding_risk", int(view.extra("thrombocytopenia", "bleeding_band", i)))
    unit = view.rs.unit_text("platelets")
    parts = [
        f"Platelets {view.num('platelets', i)} {unit}, below {view.t['thrombocytopenia']} "
        f"{view.tags('thrombocytopenia')}; "
        f"{view.grade_text('platelets', i)}."
    ]
    if band is not None:
        parts.append(f"Bleeding risk at this count: {band.text} {cite_tags(band.sources)}.")
    if view.extra("thrombocytopenia", "often_benign_range", i):
        parts.append(
            f"A count {view.span('thrombocytopenia_often_benign', 'thrombocytopenia')}"
            f" that is isolated and stable on repeat is often benign {view.tags('thrombocytopenia_often_benign')}."
        )
    return " ".join(parts), band.label if band else None, {"platelets": plt}


def summary_words_thrombocytopenia(view: TextView, i: int, finding: dict) -> str | None:
    """The summary names the bleeding risk of the band rather than its label."""
    if not finding["severity"]:
        return None
    band = next(b for b in view.rs.bands["platelet_bleeding_risk"] if b.label == finding["severity"])
    return f"bleeding risk: {band.text}"


def detail_thrombocytosis(view: TextView, i: int):
    plt = view.v("platelets", i)
    unit = view.rs.unit_text("platelets")
    return (
        f"Platelets {view.num('platelets', i)} {unit}, at or above {view.t['thrombocytosis']} "
        f"{view.tags('thrombocytosis')}. "
        "A raised count is most often reactive; persistence needs review.",
        None,
        {"platelets": plt},
    )


def detail_anemia(view: TextView, i: int):
    hb = view.v("hemoglobin", i)
    cut = view.r.anemia
    if cut.lab_range[i]:
        low = view.r.cols.ref_low["hemoglobin"][i]
        youngest = youngest_cutoff_age(view.rs)
        return (
            f"Haemoglobin {view.num('hemoglobin', i)} g/dL, below the laboratory's lower limit {fmt(low)} g/dL; "
            f"there is no WHO cut-off under {youngest}, so the laboratory's range decides "
            f"and no WHO severity applies [S9]; "
            f"{view.grade_text('hemoglobin', i)}.",
            None,
            {"hemoglobin": hb},
        )
    row = int(cut.row_index[i])
    cutoff_row = view.rs.anemia_cutoffs[row] if row >= 0 else None
    population = cutoff_row.population if cutoff_row else "population"
    cutoff_tags = cite_tags(cutoff_row.sources) if cutoff_row else ""
    scheme = int(view.extra("anemia", "scheme", i))
    band = (
        view.band(anemia_severity_schemes(view.rs)[scheme], int(view.extra("anemia", "severity", i)))
        if scheme >= 0
        else None
    )
    low, high = cut.low[i], cut.high[i]
    if low == high:
        cutoff_text = f"the WHO cut-off of {fmt(low)} g/dL for {population} {cutoff_tags}"
    else:
        cutoff_text = (
            f"the WHO cut-off of {fmt(low)} g/dL, the lowest that could apply with the sex not given "
            f"(the cut-off for {population}; the highest that could apply is {fmt(high)}) {cutoff_tags}"
        )
    parts = [f"Haemoglobin {view.num('hemoglobin', i)} g/dL, below {cutoff_text}; {view.grade_text('hemoglobin', i)}."]
    if band is not None:
        parts.append(f"WHO severity for {population}: {band.label} {cite_tags(band.sources)}.")
    return " ".join(parts), band.label if band else None, {"hemoglobin": hb}


def detail_erythrocytosis(view: TextView, i: int):
    hct = view.v("hematocrit", i)
    woman = bool(view.extra("erythrocytosis", "woman", i))
    sex = "female" if woman else "male"
    who = "women" if woman else ("men" if view.r.cols.sex[i] == SEX_CODES["male"] else "men (sex not given)")
    if view.extra("erythrocytosis", "absolute", i):
        key = f"absolute_erythrocytosis_hematocrit_{sex}"
        text = (
            f"Haematocrit {view.num('hematocrit', i)} %, above {view.t[key]} % for {who} {view.tags(key)}: an absolute "
            "erythrocytosis, without the need for a red cell mass measurement; it needs investigation of its cause."
        )
        label = "absolute_erythrocytosis"
    else:
        key = f"erythrocytosis_hematocrit_{sex}"
        text = (
            f"Haematocrit {view.num('hematocrit', i)} %, above {view.t[key]} % for {who} {view.tags(key)}: a raised "
            "haematocrit to repeat and, if persistent, investigate."
        )
        label = "raised_hematocrit"
    return text + " The counts do not name a cause.", label, {"hematocrit": hct}


def detail_neutropenia(view: TextView, i: int):
    neut = view.v("neutrophils", i)
    duffy = bool(view.extra("neutropenia", "duffy_null", i))
    limit = view.t["neutropenia_duffy_null"] if duffy else view.t["neutropenia"]
    band = view.band("neutropenia_severity", int(view.extra("neutropenia", "severity", i)))
    parts = [
        f"Neutrophils {view.num('neutrophils', i)} {view.rs.unit_text('neutrophils')}, below {limit}"
        + (
            f" (the limit for a patient stated to be Duffy-null {view.tags('neutropenia_duffy_null')})"
            if duffy
            else f" {view.tags('neutropenia')}"
        )
        + f"; {view.grade_text('neutrophils', i)}."
    ]
    if band is not None:
        parts.append(f"Severity: {band.text} {cite_tags(band.sources)}.")
    if view.extra("neutropenia", "derived", i):
        parts.append(view.derived_text("neutrophils", i))
    if view.extra("neutropenia", "duffy_caveat", i):
        parts.append(
            f"An isolated count {view.span('duffy_caveat_from', 'neutropenia')} "
            "may be a Duffy-null associated neutrophil count, common and benign in people of African or "
            "Middle Eastern ancestry; Duffy status was not given and is never inferred from ancestry "
            f"{view.tags('duffy_caveat_from')}."
        )
    return " ".join(parts), band.label if band else None, {"neutrophils": neut}


def _below_lower_limit(view: TextView, analyte: str, i: int):
    value = view.v(analyte, i)
    rng = view.r.ranges[analyte]
    low = rng.low[i]
    unit = view.rs.unit_text(analyte)
    if math.isnan(low):
        return below_any_limit_text(view, analyte, i), None, {analyte: value}
    return (
        f"{view.rs.analytes[analyte].label} {view.num(analyte, i)} {unit}, below the lower limit {fmt(low)} of "
        f"the range in use; {view.grade_text(analyte, i)}."
        + (f" {derived}" if (derived := view.derived_text(analyte, i)) else ""),
        None,
        {analyte: value},
    )


def below_any_limit_text(view: TextView, analyte: str, i: int) -> str:
    """The detail of a count below any lower limit (§2 v2): no range was available, the value is below
    the CTCAE grade-2 bound, which lies below every lower limit the grade-1 band assumes."""
    threshold = below_any_limit_threshold(view.rs, analyte)
    assert threshold is not None
    unit = view.rs.unit_text(analyte)
    return (
        f"{view.rs.analytes[analyte].label} {view.num(analyte, i)} {unit}: no reference range was available for "
        f"this age and sex, but the value is below {fmt(threshold.value)} {unit}, the CTCAE grade-2 bound "
        f"{cite_tags(threshold.sources)}, and so below any lower limit (clinical-rules §2); "
        f"{view.grade_text(analyte, i)}."
    )


def detail_leukopenia(view: TextView, i: int):
    return _below_lower_limit(view, "wbc", i)


def detail_lymphopenia(view: TextView, i: int):
    return _below_lower_limit(view, "lymphocytes", i)


# --- not assessed ----------------------------------------------------------------------------------


def _analyte_not_assessed(view: TextView, analyte: str, i: int) -> list[tuple[str, list[str]]]:
    if math.isnan(view.v(analyte, i)):
        return [(f"{analyte} not sent", [analyte])]
    threshold = below_any_limit_threshold(view.rs, analyte)
    if threshold is not None:
        return [
            (
                f"no reference range for {analyte} at this age or sex, and the value is not below "
                f"{fmt(threshold.value)} {view.rs.unit_text(analyte)} (below any lower limit, clinical-rules §2): "
                "send the laboratory's range",
                [],
            )
        ]
    return [(f"no reference range for {analyte} at this age or sex: send the laboratory's range", [])]


def not_assessed_thrombocytopenia(view: TextView, i: int):
    return _analyte_not_assessed(view, "platelets", i)


def not_assessed_neutropenia(view: TextView, i: int):
    return _analyte_not_assessed(view, "neutrophils", i)


def not_assessed_leukopenia(view: TextView, i: int):
    return _analyte_not_assessed(view, "wbc", i)


def not_assessed_lymphopenia(view: TextView, i: int):
    return _analyte_not_assessed(view, "lymphocytes", i)


def youngest_cutoff_age(rs: Ruleset) -> str:
    """The lowest age of the WHO cut-offs outside pregnancy (anemia_cutoffs.csv) in words: "6 months"
    (§4: no cut-off below it). Months under two years, years from there (1 month = 365.25 / 12 days)."""
    key = "youngest_anemia_cutoff_age"
    if key not in rs._cache:
        days = min(row.age_low_days for row in rs.anemia_cutoffs if row.pregnancy == "no")
        months = days / (DAYS_PER_YEAR / 12)
        if months < 24:
            rs._cache[key] = f"{fmt(round(months, 1))} month{'' if months == 1 else 's'}"
        else:
            rs._cache[key] = f"{fmt(round(days / DAYS_PER_YEAR, 1))} years"
    return rs._cache[key]


def not_assessed_anemia(view: TextView, i: int):
    if math.isnan(view.v("hemoglobin", i)):
        return [("hemoglobin not sent", ["hemoglobin"])]
    youngest = youngest_cutoff_age(view.rs)
    return [
        (
            f"no WHO haemoglobin cut-off for this age (under {youngest}) and no laboratory range sent: "
            "send the laboratory's range",
            [],
        )
    ]
