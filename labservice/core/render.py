"""InterpretationTable → the contract's JSON answer, one dict per CBC.

Texts quote numbers from the rule tables, never literals, so the wording follows the data.
The service describes counts: no text here names a diagnosis as established.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

import numpy as np

from labservice.core.aplastic import ASSESSMENT_NAMES, CAVEAT, MARROW_NAMES
from labservice.core.compare import NOT_ASSESSED, YES
from labservice.core.finding_texts import LINEAGE_ANALYTES, FindingTexts, fmt, json_number
from labservice.core.grading import FLAG_HH, FLAG_LL, FLAG_NAMES
from labservice.core.interpret import InterpretationTable
from labservice.core.ranges import DAYS_PER_YEAR, ORIGIN_DUFFY, ORIGIN_LAB, ORIGIN_LAB_PARTIAL, ORIGIN_NAMES
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES
from labservice.core.urgency import URGENCY_NAMES

TITLES = {
    "thrombocytopenia": "Thrombocytopenia (platelet count below {thrombocytopenia})",
    "thrombocytosis": "Thrombocytosis (platelet count at or above {thrombocytosis})",
    "anemia": "Anaemia (haemoglobin below the WHO cut-off)",
    "neutropenia": "Neutropenia",
    "leukopenia": "Leukopenia (white cell count below the lower reference limit)",
    "lymphopenia": "Lymphopenia (lymphocytes below the lower reference limit)",
    "bicytopenia": "Bicytopenia (two cell lines low)",
    "pancytopenia": "Pancytopenia (all three cell lines low)",
    "marrow_failure_range": "Counts in the marrow-failure range (BSH aplastic anaemia entry criteria)",
    "critical_value": "Critical value: notify the clinician now",
    "possible_pseudothrombocytopenia": "Possible pseudothrombocytopenia: review the blood film",
    "gestational_thrombocytopenia_possible": "Pattern compatible with gestational thrombocytopenia",
    "vasculitis_pattern": "Palpable purpura: small-vessel vasculitis pattern",
    "fever_with_nonblanching_rash": "RED FLAG: fever with a non-blanching rash",
    "febrile_neutropenia": "RED FLAG: fever with neutrophils at or below {febrile_neutropenia}",
    "unexplained_petechiae_child": "RED FLAG: petechiae in a child or young person",
}
URGENCY_TEXT = {
    "immediate": "immediate: emergency assessment now",
    "urgent": "urgent: discuss with haematology within 24-48 hours [S22]",
    "soon": "soon: clinical review within days",
    "routine": "routine",
}
SINGLE_ANALYTE_CODES = {"thrombocytopenia", "neutropenia", "leukopenia", "lymphopenia", "thrombocytosis"}


class _Renderer(FindingTexts):
    def __init__(self, result: InterpretationTable):
        self.r = result
        self.rs: Ruleset = result.ruleset
        cache = self.rs._cache
        if "render_texts" not in cache:  # thresholds as text and titles, once per ruleset
            t = {key: fmt(th.value) for key, th in self.rs.thresholds.items()}
            cache["render_texts"] = (t, {code: title.format(**t) for code, title in TITLES.items()}, {})
        self.t, self.titles, self._citations = cache["render_texts"]

    def cite(self, tags: Sequence[str]) -> list[str]:
        key = tuple(tags)
        if key not in self._citations:
            self._citations[key] = self.rs.cite(key)
        return list(self._citations[key])

    # --- analytes -------------------------------------------------------------------------
    def range_source(self, analyte: str, i: int) -> str:
        rng = self.r.ranges[analyte]
        origin = int(rng.origin[i])
        if origin == ORIGIN_LAB:
            return "reference range sent by the laboratory"
        row_index = int(rng.row_index[i])
        fallback = rng.table[row_index].source if row_index >= 0 else None
        if origin == ORIGIN_LAB_PARTIAL:
            return f"one bound sent by the laboratory, the other from the fallback table ({fallback})"
        notes = []
        if math.isnan(self.r.cols.age_years[i]):
            notes.append("age not given: adult range used")
        elif self.r.cols.age_years[i] * DAYS_PER_YEAR < self.rs.value("infant_age_days"):
            notes.append("under one year: the laboratory's own range should be sent")
        if rng.envelope[i]:
            notes.append("sex not given: lowest low and highest high of the female and male ranges")
        if origin == ORIGIN_DUFFY:
            notes.append("patient stated to be Duffy-null")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        return f"fallback table: {fallback}{suffix}"

    def analytes(self, i: int) -> dict:
        out = {}
        cols = self.r.cols
        for analyte in ANALYTES:
            value = cols.values[analyte][i]
            if math.isnan(value):
                continue
            rng = self.r.ranges[analyte]
            origin = int(rng.origin[i])
            reference = None
            if origin != 0:
                reference = {
                    "low": json_number(rng.low[i]),
                    "high": json_number(rng.high[i]),
                    "source": self.range_source(analyte, i),
                    "origin": ORIGIN_NAMES[origin],
                }
            grade = self.r.grades.get(analyte)
            flag = int(self.r.flags[analyte][i])
            out[analyte] = {
                "value": json_number(value),
                "unit": self.rs.analytes[analyte].canonical_unit,
                "reference_range": reference,
                "flag": FLAG_NAMES[flag],
                "ctcae_grade": int(grade[i]) if grade is not None and grade[i] > 0 else None,
                "derived": bool(cols.derived[analyte][i]),
                "critical": flag in (FLAG_LL, FLAG_HH),
            }
        return out

    # --- findings -------------------------------------------------------------------------
    def finding(self, code: str, i: int) -> dict:
        f = self.r.findings[code]
        grade = None if f.grade is None or f.grade[i] <= 0 else int(f.grade[i])
        detail, severity, evidence = getattr(self, f"_detail_{code}")(i)
        return {
            "code": code,
            "title": self.titles[code],
            "detail": detail,
            "grade": grade,
            "severity": severity,
            "evidence": {k: json_number(v) if isinstance(v, float) else v for k, v in evidence.items()},
            "rule": f.rule,
            "sources": self.cite(f.sources),
        }

    def not_assessed(self, i: int) -> list[dict]:
        out: list[dict] = []
        st = self.r.states
        missing = {a for a in ANALYTES if math.isnan(self.r.cols.values[a][i])}

        def add(code: str, reason: str, needs: list[str]):
            out.append({"code": code, "reason": reason, "needs": needs})

        for code, analyte in (
            ("thrombocytopenia", "platelets"),
            ("neutropenia", "neutrophils"),
            ("leukopenia", "wbc"),
            ("lymphopenia", "lymphocytes"),
        ):
            if st[code][i] != NOT_ASSESSED:
                continue
            if analyte in missing:
                add(code, f"{analyte} not sent", [analyte])
            else:
                add(code, f"no reference range for {analyte} at this age or sex: send the laboratory's range", [])
        if st["anemia"][i] == NOT_ASSESSED:
            if "hemoglobin" in missing:
                add("anemia", "hemoglobin not sent", ["hemoglobin"])
            elif math.isnan(self.r.anemia.low[i]):
                add(
                    "anemia", "no WHO haemoglobin cut-off for this age (under 6 months); use the laboratory's range", []
                )
            else:
                add(
                    "anemia",
                    f"sex not given: haemoglobin {fmt(self.v('hemoglobin', i))} g/dL lies between the female "
                    f"({fmt(self.r.anemia.low[i])}) and male ({fmt(self.r.anemia.high[i])}) cut-offs",
                    [],
                )
        _, unknown = self._low_lineages(i)
        needs = [a for k in unknown for a in LINEAGE_ANALYTES[k] if a in missing]
        for code in ("pancytopenia", "bicytopenia"):
            if st[code][i] == NOT_ASSESSED:
                add(code, f"{code} cannot be assessed without {' or '.join(needs) or 'the missing lineage'}", needs)
        if st["marrow_failure_range"][i] == NOT_ASSESSED:
            f = self.r.findings["marrow_failure_range"]
            mf_needs = [
                a
                for key, a in (("hb", "hemoglobin"), ("neut", "neutrophils"), ("plt", "platelets"))
                if f.extra[key][i] == NOT_ASSESSED
            ]
            add("marrow_failure_range", f"could be met if {' or '.join(mf_needs)} were low", mf_needs)
        febrile = self.r.findings["febrile_neutropenia"].extra
        if febrile["fever_unknown_low_neutrophils"][i]:
            add(
                "febrile_neutropenia",
                f"neutrophils at or below {self.t['febrile_neutropenia']} and fever not stated: "
                "if the patient is febrile this is possible neutropenic sepsis [S8]",
                [],
            )
        if febrile["fever_neutrophils_missing"][i]:
            add("febrile_neutropenia", "fever reported but neutrophils not sent", ["neutrophils"])
        if self.r.findings["unexplained_petechiae_child"].extra["age_unknown"][i]:
            add("unexplained_petechiae_child", "petechiae reported but age not given", [])
        return out

    # --- aplastic, skin, urgency, summary ----------------------------------------------------
    def aplastic(self, i: int) -> dict:
        a = self.r.aplastic
        code = ASSESSMENT_NAMES[int(a.assessment[i])]
        states = {"neutrophils": a.neutrophils[i], "platelets": a.platelets[i], "reticulocytes": a.reticulocytes[i]}
        names = {YES: "met", 0: "not_met", NOT_ASSESSED: "not_assessed"}
        retic_key = "aa_reticulocytes_manual" if self.r.cols.reticulocyte_manual[i] else "aa_reticulocytes_automated"
        texts = {
            "not_applicable": "Not assessed for aplastic anaemia severity: neither pancytopenia nor the marrow-failure "
            "range is present.",
            "not_severe": "Does not meet blood-count criteria for severe aplastic anaemia.",
            "indeterminate": "Blood-count criteria for severe aplastic anaemia cannot be decided: "
            + " and ".join(k for k, s in states.items() if s == NOT_ASSESSED)
            + " would decide it.",
            "severe": "Meets blood-count criteria for severe aplastic anaemia (at least two of neutrophils "
            f"< {self.t['aa_neutrophils']}, platelets < {self.t['aa_platelets']}, reticulocytes "
            f"< {self.t[retic_key]} x10^9/L).",
            "very_severe": "Meets blood-count criteria for very severe aplastic anaemia (severe criteria and "
            f"neutrophils < {self.t['aa_very_severe_neutrophils']} x10^9/L).",
        }
        marrow = MARROW_NAMES[int(a.marrow[i])]
        marrow_text = {
            "met": "The marrow cellularity sent meets the marrow criterion.",
            "not_met": "The marrow cellularity sent does not meet the marrow criterion.",
            "not_provided": (
                "Cellularity 25-50 % was sent without the residual haematopoietic cell percentage, "
                "which decides the marrow criterion."
                if a.marrow_needs_residual[i]
                else "No marrow cellularity was sent."
            ),
        }[marrow]
        return {
            "assessment": code,
            "criteria_met": [k for k, s in states.items() if s == YES],
            "criteria": {k: names[int(s)] for k, s in states.items()},
            "reticulocyte_threshold": float(self.rs.value(retic_key)),
            "reticulocyte_method": (
                "manual"
                if self.r.cols.reticulocyte_manual[i]
                else "automated"
                if self.r.cols.reticulocyte_method_known[i]
                else "unknown"
            ),
            "marrow_criterion": marrow,
            "text": f"{texts[code]} {marrow_text}",
            "caveat": CAVEAT,
            "sources": self.cite(a.sources),
        }

    def skin(self, i: int, lesion_rows: np.ndarray) -> dict:
        s = self.r.skin
        lesions = self.r.cols.lesions
        sites = lesions.get("site")
        listed = []
        for j in lesion_rows:
            size = lesions["size_mm"][j]
            listed.append(
                {
                    "type": s.lesion_type[j] or None,
                    "hemorrhagic": bool(s.lesion_hemorrhagic[j]),
                    "type_from_size": bool(s.lesion_type_from_size[j]),
                    "size_mm": json_number(size),
                    "site": sites[j] if sites is not None else None,
                }
            )
        expected_index = int(s.expected[i])
        band = self._band("skin_expected", expected_index)
        attribution = str(s.attribution[i])
        attribution_text = {
            "none": "No non-blanching lesion reported.",
            "not_assessed": "Platelets not sent: the lesions cannot be related to the count.",
        }
        if attribution not in attribution_text:
            attr_band = next(b for b in self.rs.bands["skin_attribution"] if b.label == attribution)
            attribution_text[attribution] = f"Non-blanching lesions: {attr_band.text}."
        text = attribution_text[attribution]
        if s.escalate[i]:
            text += f" Platelets below {fmt(self.rs.bands['skin_escalate'][0].upper)} with bleeding signs: escalate."
        return {
            "lesions": listed,
            "attribution": attribution,
            "attribution_text": text,
            "escalate": bool(s.escalate[i]),
            "expected_presentation": (
                f"Platelets {fmt(self.v('platelets', i))} x10^9/L: {band.text}"
                if band
                else "Not assessed: platelets not sent."
            ),
            "expected_band": band.label if band else None,
            "sources": self.cite(("S4", "S5", "S17")),
        }

    def summary(self, i: int, findings: list[dict], urgency: str, not_assessed: list[dict], aplastic: dict) -> str:
        """A few plain sentences: red flags first, then the counts, then what was not assessed."""
        codes = {f["code"]: f for f in findings}
        sentences = [
            codes[c]["title"] + "."
            for c in ("fever_with_nonblanching_rash", "febrile_neutropenia", "unexplained_petechiae_child")
            if c in codes
        ]
        counts = []
        for code, analyte, unit in (
            ("thrombocytopenia", "platelets", "x10^9/L"),
            ("neutropenia", "neutrophils", "x10^9/L"),
            ("anemia", "hemoglobin", "g/dL"),
            ("leukopenia", "wbc", "x10^9/L"),
            ("lymphopenia", "lymphocytes", "x10^9/L"),
            ("thrombocytosis", "platelets", "x10^9/L"),
        ):
            if code in codes:
                f = codes[code]
                severity = f["severity"] and f["severity"].replace("_", " ")
                if code == "thrombocytopenia" and f["severity"]:
                    band = next(b for b in self.rs.bands["platelet_bleeding_risk"] if b.label == f["severity"])
                    severity = f"bleeding risk: {band.text}"
                words = [w for w in (severity, f["grade"] and f"CTCAE grade {f['grade']}") if w]
                label = {"anemia": "anaemia"}.get(code, code)
                counts.append(
                    f"{label} ({self.rs.analytes[analyte].label.lower()} {fmt(self.v(analyte, i))} {unit}"
                    + (f"; {', '.join(words)}" if words else "")
                    + ")"
                )
        if counts:
            sentences.append(counts[0][0].upper() + "; ".join(counts)[1:] + ".")
        combined = [
            name for code, name in (("pancytopenia", "Pancytopenia"), ("bicytopenia", "Bicytopenia")) if code in codes
        ]
        if "marrow_failure_range" in codes:
            combined.append("counts in the marrow-failure range" if combined else "Counts in the marrow-failure range")
        if combined:
            sentences.append(" with ".join(combined) + ".")
        if aplastic["assessment"] != "not_applicable":
            sentences.append(aplastic["text"].split(". ")[0].rstrip(".") + " (counts alone cannot diagnose it).")
        if "critical_value" in codes:
            named = ", ".join(
                f"{self.rs.analytes[a].label.lower()} {fmt(v)}" for a, v in codes["critical_value"]["evidence"].items()
            )
            sentences.append(f"Critical value ({named}): notify the clinician.")
        for code, text in (
            (
                "possible_pseudothrombocytopenia",
                "Possible pseudothrombocytopenia: review the film and repeat the count in citrate.",
            ),
            ("gestational_thrombocytopenia_possible", "Pattern compatible with gestational thrombocytopenia."),
            ("vasculitis_pattern", "Palpable purpura: vasculitis pattern."),
        ):
            if code in codes:
                sentences.append(text)
        if not findings:
            sentences.append("No abnormal finding in the counts sent.")
        # Single analytes that were simply not sent are listed in not_assessed; the summary names
        # the decisions that stay open (combined findings, red flags, anaemia).
        not_assessed = [n for n in not_assessed if n["code"] not in SINGLE_ANALYTE_CODES]
        if not_assessed:
            sentences.append(
                "Not assessed: "
                + "; ".join(f"{n['code'].replace('_', ' ')} ({n['reason']})" for n in not_assessed[:3])
                + ("; and more" if len(not_assessed) > 3 else "")
                + "."
            )
        sentences.append(f"Urgency {URGENCY_TEXT[urgency]}.")
        return " ".join(sentences) + " This describes the counts; it is not a diagnosis."


def render_interpretations(
    result: InterpretationTable, patient_ids: Sequence[str | None] | None = None, reported: Sequence[dict] | None = None
) -> list[dict]:
    """One contract answer per row, in input order."""
    renderer = _Renderer(result)
    codes = list(result.findings)
    present_by_row = np.array([f.present for f in result.findings.values()]).T.tolist() if result.n else []
    lesion_rows = result.cols.lesions["row"]
    order = np.argsort(lesion_rows, kind="stable")
    starts = np.searchsorted(lesion_rows[order], np.arange(result.n + 1))
    answers = []
    for i in range(result.n):
        findings = [
            renderer.finding(code, i) for code, present in zip(codes, present_by_row[i], strict=True) if present
        ]
        urgency = URGENCY_NAMES[int(result.urgency[i])]
        not_assessed = renderer.not_assessed(i)
        aplastic = renderer.aplastic(i)
        analytes = renderer.analytes(i)
        if reported is not None:
            for analyte, sent in reported[i].items():
                if analyte in analytes:
                    analytes[analyte]["reported"] = sent
        answer = {
            "id": uuid.uuid4().hex,
            "ruleset_version": result.ruleset.version,
            "ctcae_version": str(result.ctcae_version[i]),
            "patient_id": patient_ids[i] if patient_ids is not None else None,
            "analytes": analytes,
            "findings": findings,
            "not_assessed": not_assessed,
            "aplastic_anemia": aplastic,
            "skin": renderer.skin(i, order[starts[i] : starts[i + 1]]),
            "urgency": urgency,
            "urgency_reasons": [
                name for name, (level, mask) in result.triggers.items() if mask[i] and level == result.urgency[i]
            ],
            "summary": renderer.summary(i, findings, urgency, not_assessed, aplastic),
        }
        answers.append(answer)
    return answers
