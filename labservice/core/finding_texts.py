"""The detail text of each finding, one method per finding code (`_detail_<code>`).

Each returns (detail, severity label or None, evidence). Numbers in the texts come from the rule
tables (`self.t` holds every threshold as text), never from literals here.
"""

from __future__ import annotations

import math

import numpy as np

from labservice.core.compare import NOT_ASSESSED, YES
from labservice.core.interpret import InterpretationTable
from labservice.core.ruleset import Ruleset

LINEAGE_ANALYTES = {"red": ["hemoglobin"], "white": ["wbc", "neutrophils"], "platelets": ["platelets"]}


def fmt(x: float) -> str:
    """A number as short text (45, 0.4, 8.2)."""
    return f"{float(x):g}"


def json_number(x: float | None) -> float | None:
    """A JSON number rounded to 4 decimals, None for missing (round on a Python float: numpy's is slow)."""
    if x is None:
        return None
    x = float(x)
    return None if x != x else round(x, 4)


class FindingTexts:
    """Mixin for the renderer: needs `r` (InterpretationTable), `rs` (Ruleset) and `t` (thresholds as text)."""

    r: InterpretationTable
    rs: Ruleset
    t: dict[str, str]

    def v(self, analyte: str, i: int) -> float:
        return float(self.r.cols.values[analyte][i])

    def _grade_text(self, analyte: str, i: int) -> str:
        grade = int(self.r.grades[analyte][i])
        if grade <= 0:
            return "no CTCAE grade"
        return f"CTCAE v{self.r.ctcae_version[i]} grade {grade} [S3]"

    def _band(self, scheme: str, index: int):
        return self.rs.bands[scheme][index] if index >= 0 else None

    def _detail_thrombocytopenia(self, i):
        plt = self.v("platelets", i)
        f = self.r.findings["thrombocytopenia"]
        band = self._band("platelet_bleeding_risk", int(f.extra["bleeding_band"][i]))
        parts = [
            f"Platelets {fmt(plt)} x10^9/L, below {self.t['thrombocytopenia']} [S1][S2]; "
            f"{self._grade_text('platelets', i)}."
        ]
        if band is not None:
            parts.append(f"Bleeding risk at this count: {band.text} [S4][S5].")
        if f.extra["often_benign_range"][i]:
            parts.append(
                f"A count of {self.t['thrombocytopenia_often_benign']}-{fmt(self.rs.value('thrombocytopenia') - 1)}"
                " that is isolated and stable on repeat is often benign [S2]."
            )
        return " ".join(parts), band.label if band else None, {"platelets": plt}

    def _detail_thrombocytosis(self, i):
        plt = self.v("platelets", i)
        return (
            f"Platelets {fmt(plt)} x10^9/L, at or above {self.t['thrombocytosis']} [S7]. "
            "A raised count is most often reactive; persistence needs review.",
            None,
            {"platelets": plt},
        )

    def _detail_anemia(self, i):
        hb = self.v("hemoglobin", i)
        cut = self.r.anemia
        row = int(cut.row_index[i])
        population = self.rs.anemia_cutoffs[row].population if row >= 0 else "population"
        severity_index = int(self.r.findings["anemia"].extra["severity"][i])
        band = self._band("anemia_severity_adult", severity_index)
        low, high = cut.low[i], cut.high[i]
        cutoff_text = fmt(low) if low == high else f"{fmt(low)} (the lowest cut-off that could apply)"
        parts = [
            f"Haemoglobin {fmt(hb)} g/dL, below the WHO cut-off of {cutoff_text} g/dL for {population} [S9]; "
            f"{self._grade_text('hemoglobin', i)}."
        ]
        if band is not None:
            parts.append(f"WHO severity: {band.label} [S9].")
        else:
            parts.append("WHO severity bands are applied to non-pregnant people from 15 years only; not graded here.")
        return " ".join(parts), band.label if band else None, {"hemoglobin": hb}

    def _detail_neutropenia(self, i):
        neut = self.v("neutrophils", i)
        f = self.r.findings["neutropenia"]
        duffy = bool(f.extra["duffy_null"][i])
        limit = self.t["neutropenia_duffy_null"] if duffy else self.t["neutropenia"]
        band = self._band("neutropenia_severity", int(f.extra["severity"][i]))
        parts = [
            f"Neutrophils {fmt(neut)} x10^9/L, below {limit}"
            + (" (the limit for a patient stated to be Duffy-null [S10])" if duffy else " [S8]")
            + f"; {self._grade_text('neutrophils', i)}."
        ]
        if band is not None:
            parts.append(f"Severity: {band.text} [S8].")
        if f.extra["derived"][i]:
            parts.append("The absolute count was derived from WBC x neutrophil %, not measured.")
        if self._duffy_caveat(i):
            parts.append(
                f"An isolated count of {self.t['duffy_caveat_from']}-{fmt(self.rs.value('neutropenia') - 0.01)} "
                "may be a Duffy-null associated neutrophil count, common and benign in people of African or "
                "Middle Eastern ancestry; Duffy status was not given and is never inferred from ancestry [S10]."
            )
        return " ".join(parts), band.label if band else None, {"neutrophils": neut}

    def _duffy_caveat(self, i) -> bool:
        neut = self.v("neutrophils", i)
        lin = self.r.lineages
        isolated = lin.red[i] != YES and lin.platelets[i] != YES
        return (
            bool(np.isnan(self.r.cols.duffy_null[i]))
            and isolated
            and self.rs.value("duffy_caveat_from") <= neut < self.rs.value("neutropenia")
        )

    def _below_lower_limit(self, analyte: str, i: int):
        value = self.v(analyte, i)
        low = self.r.ranges[analyte].low[i]
        return (
            f"{self.rs.analytes[analyte].label} {fmt(value)} x10^9/L, below the lower limit {fmt(low)} of the "
            f"range in use; {self._grade_text(analyte, i)}.",
            None,
            {analyte: value},
        )

    def _detail_leukopenia(self, i):
        return self._below_lower_limit("wbc", i)

    def _detail_lymphopenia(self, i):
        return self._below_lower_limit("lymphocytes", i)

    def _low_lineages(self, i) -> tuple[list[str], list[str]]:
        lin = self.r.lineages
        names = {
            "red": "red cells (anaemia)",
            "white": "white cells (leukopenia or neutropenia)",
            "platelets": "platelets (thrombocytopenia)",
        }
        low = [names[k] for k in names if getattr(lin, k)[i] == YES]
        unknown = [k for k in names if getattr(lin, k)[i] == NOT_ASSESSED]
        return low, unknown

    def _lineage_evidence(self, i) -> dict:
        return {
            a: json_number(self.v(a, i))
            for a in ("hemoglobin", "wbc", "neutrophils", "platelets")
            if not math.isnan(self.v(a, i))
        }

    def _detail_bicytopenia(self, i):
        low, unknown = self._low_lineages(i)
        text = f"Two cell lines are low: {' and '.join(low)} [S11]."
        if unknown:
            needs = [a for k in unknown for a in LINEAGE_ANALYTES[k]]
            text += (
                f" The third line was not assessed ({' or '.join(needs)} not sent): pancytopenia cannot be excluded."
            )
        return text, None, self._lineage_evidence(i)

    def _detail_pancytopenia(self, i):
        return (
            "All three cell lines are low: red cells, white cells and platelets [S11]. "
            "Pancytopenia needs prompt haematology input [S22].",
            None,
            self._lineage_evidence(i),
        )

    def _detail_marrow_failure_range(self, i):
        f = self.r.findings["marrow_failure_range"]
        met = [
            label
            for key, label in (
                ("hb", f"haemoglobin < {self.t['marrow_failure_hemoglobin']} g/dL"),
                ("neut", f"neutrophils < {self.t['marrow_failure_neutrophils']} x10^9/L"),
                ("plt", f"platelets < {self.t['marrow_failure_platelets']} x10^9/L"),
            )
            if f.extra[key][i] == YES
        ]
        return (
            f"At least two of the BSH 2016 entry criteria are met ({'; '.join(met)}) [S12]. This is the range "
            "that prompts a haematologist to consider marrow failure; it is not a diagnosis.",
            None,
            self._lineage_evidence(i),
        )

    def _detail_critical_value(self, i):
        f = self.r.findings["critical_value"]
        hits, evidence = [], {}
        for key, mask in f.extra.items():
            if mask[i]:
                th = self.rs.threshold(key)
                value = self.v(th.analyte, i)
                evidence[th.analyte] = value
                hits.append(
                    f"{self.rs.analytes[th.analyte].label.lower()} {fmt(value)} "
                    f"({th.operator} {fmt(th.value)} {th.unit})"
                )
        return (
            f"Critical value{'s' if len(hits) > 1 else ''}: {'; '.join(hits)} [S6]. "
            "Critical limits are configurable per laboratory policy.",
            None,
            evidence,
        )

    def _detail_possible_pseudothrombocytopenia(self, i):
        f = self.r.findings["possible_pseudothrombocytopenia"]
        why = (
            "the laboratory reported platelet clumps"
            if f.extra["clumps"][i]
            else "the thrombocytopenia is isolated and no bleeding signs were reported"
            + ("" if f.extra["skin_reported"][i] else " (no skin examination was sent)")
        )
        return (
            f"Possible EDTA pseudothrombocytopenia because {why}: suggest a blood film review for clumps and "
            "a repeat count in a citrate tube [S21].",
            None,
            {"platelets": self.v("platelets", i)},
        )

    def _detail_gestational_thrombocytopenia_possible(self, i):
        plt = self.v("platelets", i)
        usual = self.r.findings["gestational_thrombocytopenia_possible"].extra["usual"][i]
        text = (
            f"Pregnancy with platelets {fmt(plt)} x10^9/L ({self.t['gestational_platelets_from']}-"
            f"{fmt(self.rs.value('gestational_platelets_below') - 1)}) and no other cytopenia: gestational "
            f"thrombocytopenia is common and usually above {self.t['gestational_platelets_usual']} [S1]."
        )
        if not usual:
            text += " This count is lower than usual for it: other causes need excluding [S1]."
        return text, None, {"platelets": plt}

    def _detail_vasculitis_pattern(self, i):
        plt = self.v("platelets", i)
        text = (
            "Palpable purpura suggests small-vessel vasculitis, e.g. IgA vasculitis, whose definition requires "
            "that the purpura is not related to thrombocytopenia [S18]."
        )
        if not math.isnan(plt) and plt < self.rs.value("thrombocytopenia"):
            text += " The platelet count is low here, so the pattern needs clinical review."
        return text, None, {"palpable_lesions": int(self.r.skin.palpable_count[i])}

    def _detail_fever_with_nonblanching_rash(self, i):
        return (
            "Fever with a non-blanching rash: emergency assessment for meningococcal sepsis, whatever the "
            "counts [S19].",
            None,
            {"fever": True, "nonblanching_lesions": int(self.r.skin.hemorrhagic_count[i])},
        )

    def _detail_febrile_neutropenia(self, i):
        neut = self.v("neutrophils", i)
        return (
            f"Fever with neutrophils {fmt(neut)} x10^9/L (at or below {self.t['febrile_neutropenia']}): possible "
            "neutropenic sepsis; assess and treat as an emergency [S8].",
            None,
            {"fever": True, "neutrophils": neut},
        )

    def _detail_unexplained_petechiae_child(self, i):
        age = float(self.r.cols.age_years[i])
        return (
            f"Petechiae in a child or young person (age {fmt(round(age, 2))} years): immediate specialist "
            "assessment unless explained [S20].",
            None,
            {"age_years": age},
        )

    # --- not assessed -----------------------------------------------------------------------
