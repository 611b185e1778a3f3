"""InterpretationTable → the contract's JSON answer, one dict per CBC.

Texts quote numbers from the rule tables, never literals, so the wording follows the data.
The service describes counts: no text here names a diagnosis as established.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

import numpy as np

from labservice.core.aplastic import ASSESSMENT_NAMES, MARROW_NAMES, caveat, not_applicable_text
from labservice.core.compare import NOT_ASSESSED, YES
from labservice.core.derive import DIFFERENTIAL_DERIVED
from labservice.core.families import family, film
from labservice.core.families.base import TextView, fmt, json_number
from labservice.core.grading import FLAG_HH, FLAG_LL, FLAG_NAMES
from labservice.core.interpret import InterpretationTable
from labservice.core.numbers import text_number
from labservice.core.ranges import (
    DAYS_PER_YEAR,
    ORIGIN_DUFFY,
    ORIGIN_LAB,
    ORIGIN_LAB_PARTIAL,
    ORIGIN_NAMES,
    SET_ASIDE_IMPLAUSIBLE,
    SET_ASIDE_NO_OVERLAP,
    SET_ASIDE_ORDER,
    below_any_limit_threshold,
)
from labservice.core.ruleset import FindingSpec, Ruleset
from labservice.core.table import ANALYTES
from labservice.core.urgency import URGENCY_NAMES
from labservice.core.vocabulary import FINDING, REASON

#: The order of the summary's parts, by the `summary` column of findings.csv (aplastic after combined).
SUMMARY_PARTS = ("title", "count", "combined", "evidence", "text")


def urgency_text(urgency: str, reasons: dict[str, str] | None, rs: Ruleset | None = None) -> str:
    """An urgency and the actions of the reasons that set it, once each: "immediate: notify the
    treating clinician now" (an answer's `urgency` and `urgency_reasons`). With the ruleset, reasons
    of a lower urgency are left out (the renderer passes only those at the CBC's level)."""
    if not isinstance(reasons, dict):
        return urgency
    if rs is not None:
        reasons = {
            name: action
            for name, action in reasons.items()
            if (spec := rs.reason(name)) is None or spec.urgency == urgency
        }
    actions = list(dict.fromkeys(reasons.values()))
    return f"{urgency}: {'; '.join(actions)}" if actions else urgency


class _Texts:
    """Per ruleset, once: thresholds and titles as text, and each finding's text functions."""

    def __init__(self, rs: Ruleset):
        self.t = {key: fmt(th.value) for key, th in rs.thresholds.items()}
        specs = rs.finding_specs(FINDING)
        self.titles = {spec.code: rs.text(spec.title) for spec in specs}
        modules = {spec.code: family(spec.family) for spec in specs}
        self.details = {code: getattr(module, f"detail_{code}") for code, module in modules.items()}
        self.not_assessed = [
            (spec.code, getattr(modules[spec.code], f"not_assessed_{spec.code}"))
            for spec in sorted((s for s in specs if s.not_assessed is not None), key=lambda s: s.not_assessed or 0)
        ]
        # A family may word a finding's title for one CBC (`title_<code>(view, i)`, None: the table's title).
        self.title_overrides = {
            code: getattr(module, f"title_{code}")
            for code, module in modules.items()
            if hasattr(module, f"title_{code}")
        }
        # ... and its summary template (`summary_text_<code>(view, i)`, None: the table's summary_text).
        self.summary_overrides = {
            code: getattr(module, f"summary_text_{code}")
            for code, module in modules.items()
            if hasattr(module, f"summary_text_{code}")
        }
        self.summary_words = {
            code: getattr(module, f"summary_words_{code}")
            for code, module in modules.items()
            if hasattr(module, f"summary_words_{code}")
        }
        self.summary: dict[str, list[FindingSpec]] = {part: [] for part in SUMMARY_PARTS}
        for spec in specs:
            if spec.summary:
                self.summary[spec.summary].append(spec)
        self.quiet_not_assessed = {
            code for module in set(modules.values()) for code in getattr(module, "QUIET_NOT_ASSESSED", ())
        }
        self.citations: dict[tuple[str, ...], list[str]] = {}
        # Each urgency reason and the action it asks for (§9: `urgency_reasons` names both): its own
        # (findings.csv `action`, a new critical value's "notify the treating clinician now", §3 v2) or
        # that of its urgency (urgency_actions.csv).
        self.actions = {
            spec.reason: rs.text(spec.action) if spec.action else rs.urgency_action(spec.urgency)
            for spec in rs.finding_specs(FINDING, REASON)
            if spec.reason
        }
        # The skin block cites the lesion sizes and the presentation expected at each count.
        bands = [*rs.bands["skin_expected"], *rs.bands["lesion_size"]]
        self.skin_tags = tuple(dict.fromkeys(tag for band in bands for tag in band.sources))


class _Renderer(TextView):
    def __init__(self, result: InterpretationTable):
        self.r = result
        self.rs: Ruleset = result.ruleset
        cache = self.rs._cache
        if "render_texts" not in cache:
            cache["render_texts"] = _Texts(self.rs)
        self.texts: _Texts = cache["render_texts"]
        self.t, self.titles = self.texts.t, self.texts.titles
        # Per code: its "not assessed" rows (a mask, or a tri-state read per row, not compared whole).
        self.undecided = {code: (f.undecided, f.state) for code, f in result.findings.items()}

    def cite(self, tags: Sequence[str]) -> list[str]:
        key = tuple(tags)
        if key not in self.texts.citations:
            self.texts.citations[key] = self.rs.cite(key)
        return list(self.texts.citations[key])

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
        if rng.set_aside is not None and rng.set_aside[i]:
            notes.append("the range sent by the laboratory was set aside")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        return f"fallback table: {fallback}{suffix}"

    def set_aside_note(self, analyte: str, i: int) -> str | None:
        """Why the laboratory's range was not used (§2 v2), or None when it was used or none was sent."""
        why = self.r.ranges[analyte].set_aside
        if why is None or not why[i]:
            return None
        cols, unit = self.r.cols, self.rs.analytes[analyte].canonical_unit
        low, high = cols.ref_low[analyte][i], cols.ref_high[analyte][i]
        sent = " to ".join("?" if math.isnan(x) else fmt(x) for x in (low, high))
        reasons = {
            SET_ASIDE_ORDER: "its low is not below its high",
            SET_ASIDE_IMPLAUSIBLE: "a bound lies outside physical plausibility for the analyte (clinical-rules §1)",
            SET_ASIDE_NO_OVERLAP: "it does not overlap the fallback range for this age and sex (a range in another "
            "unit?)",
        }
        rng = self.r.ranges[analyte]
        instead = "the fallback range applies" if rng.origin[i] != 0 else "no fallback range applies either"
        return (
            f"The range sent by the laboratory ({sent} {unit}) was set aside: {reasons[int(why[i])]}; {instead} "
            "(clinical-rules §2)."
        )

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
            note = self.set_aside_note(analyte, i)
            if origin != 0:
                reference = {
                    "low": json_number(rng.low[i]),
                    "high": json_number(rng.high[i]),
                    "source": self.range_source(analyte, i),
                    "origin": ORIGIN_NAMES[origin],
                }
            elif note is not None:
                reference = {"low": None, "high": None, "source": note, "origin": ORIGIN_NAMES[origin]}
            if note is not None and reference is not None:
                reference["note"] = note
            grade = self.r.grades.get(analyte)
            flag = int(self.r.flags[analyte][i])
            out[analyte] = {
                "value": float(value),  # as sent, or rounded to 6 significant figures if computed (§1 v2)
                "unit": self.rs.analytes[analyte].canonical_unit,
                "reference_range": reference,
                "flag": FLAG_NAMES[flag],
                "ctcae_grade": int(grade[i]) if grade is not None and grade[i] > 0 else None,
                "derived": bool(cols.derived[analyte][i]),
                "critical": flag in (FLAG_LL, FLAG_HH),
            }
            lab_flag = cols.lab_flags.get(analyte)
            if lab_flag is not None and lab_flag[i]:
                out[analyte]["flag_origin"] = "laboratory"  # §3 v2: the laboratory's critical flag, honoured
            below = rng.below_any_limit
            if below is not None and below[i]:
                threshold = below_any_limit_threshold(self.rs, analyte)
                assert threshold is not None
                out[analyte]["flag_note"] = (
                    f"No reference range was available: below {fmt(threshold.value)} {self.rs.unit_text(analyte)}, "
                    "the CTCAE grade-2 bound, so below any lower limit (clinical-rules §2)."
                )
            if cols.derived[analyte][i] and analyte in DIFFERENTIAL_DERIVED:
                # clinical-rules §1 v2: said derived, not measured; imprecise from a WBC below 1.0.
                imprecise = cols.imprecise.get(analyte)
                out[analyte]["imprecise"] = bool(imprecise is not None and imprecise[i])
                out[analyte]["note"] = self.derived_text(analyte, i)
        return out

    # --- findings -------------------------------------------------------------------------
    def title(self, code: str, i: int) -> str:
        """A finding's title for one CBC: the table's, or the one its family words for this CBC."""
        title_of = self.texts.title_overrides.get(code)
        return (title_of(self, i) if title_of else None) or self.titles[code]

    def finding(self, code: str, i: int) -> dict:
        f = self.r.findings[code]
        spec = self.rs.finding(code)
        grade = None if f.grade is None or f.grade[i] <= 0 else int(f.grade[i])
        detail, severity, evidence = self.texts.details[code](self, i)
        if code in film.CYTOPENIA_CODES and film.nrbc_present(self, i):
            detail += film.nrbc_sentence(self, i)
            evidence = {**evidence, "nrbc_per_100_wbc": self.v("nrbc_per_100_wbc", i)}
        return {
            "code": code,
            "title": self.title(code, i),
            "detail": detail,
            "grade": grade,
            "severity": severity,
            "evidence": {k: json_number(v) if isinstance(v, float) else v for k, v in evidence.items()},
            "rule": spec.rule,
            "sources": self.cite(spec.sources),
        }

    def not_assessed(self, i: int) -> list[dict]:
        """What could not be decided, in the `not_assessed` order of findings.csv, with what would decide it."""
        out: list[dict] = []
        for code, reasons in self.texts.not_assessed:
            mask, state = self.undecided[code]
            if mask[i] if mask is not None else state is not None and state[i] == NOT_ASSESSED:
                out.extend({"code": code, "reason": reason, "needs": needs} for reason, needs in reasons(self, i))
        return out

    # --- aplastic, skin, urgency, summary ----------------------------------------------------
    def aplastic(self, i: int) -> dict:
        a = self.r.aplastic
        excluded = [reason for reason, mask in a.excluded_by.items() if mask[i]]
        if excluded:
            return self.aplastic_excluded(i, excluded)
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
            f"< {self.t[retic_key]} {self.rs.unit_text('reticulocytes')}).",
            "very_severe": "Meets blood-count criteria for very severe aplastic anaemia (severe criteria and "
            f"neutrophils < {self.t['aa_very_severe_neutrophils']} {self.rs.unit_text('neutrophils')}).",
        }
        marrow = MARROW_NAMES[int(a.marrow[i])]
        marrow_text = {
            "met": "The marrow cellularity sent meets the marrow criterion.",
            "not_met": "The marrow cellularity sent does not meet the marrow criterion.",
            "not_provided": (
                f"Cellularity {self.t['marrow_cellularity_met']}-{self.t['marrow_cellularity_partial_max']} % "
                "was sent without the residual haematopoietic cell percentage, which decides the marrow criterion."
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
            "caveat": caveat(self.rs),
            "not_applicable_reasons": [],
            "sources": self.cite(a.sources),
        }

    def aplastic_excluded(self, i: int, reasons: list[str]) -> dict:
        """§6 v2 `not_applicable` with its reasons: no criteria, no caveat, and a text that does not
        name aplastic anaemia (§10)."""
        a = self.r.aplastic
        return {
            "assessment": "not_applicable",
            "criteria_met": [],
            "criteria": {},
            "reticulocyte_threshold": None,
            "reticulocyte_method": None,
            "marrow_criterion": MARROW_NAMES[int(a.marrow[i])],
            "text": "Severity criteria from the counts not applied: "
            + "; ".join(not_applicable_text(reason) for reason in reasons)
            + ".",
            "caveat": None,
            "not_applicable_reasons": reasons,
            "sources": [],
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
        band = self.band("skin_expected", expected_index)
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
                f"Platelets {self.num('platelets', i)} {self.rs.unit_text('platelets')}: {band.text}"
                if band
                else "Not assessed: platelets not sent."
            ),
            "expected_band": band.label if band else None,
            "sources": self.cite(self.texts.skin_tags),
        }

    def film_blocks(self, i: int) -> dict:
        """`film` (what the film said, when any of it was sent) and `plasmic` (when the
        thrombotic-microangiopathy pattern is present), clinical-rules §10 v2."""
        out: dict = {}
        block = film.film_block(self, i)
        if block is not None:
            out["film"] = block
        if self.r.findings["thrombotic_microangiopathy_pattern"].present[i]:
            out["plasmic"] = film.plasmic(self, i)
        return out

    def urgency_reasons(self, i: int) -> dict[str, str]:
        """Every trigger that fired on this CBC, in the table's order, each with the action it asks for
        (§9). Lower triggers stay listed under a higher urgency: a new critical value does not hide
        the haematology referral that pancytopenia or severe aplastic criteria ask for."""
        return {name: self.texts.actions[name] for name, (_, mask) in self.r.triggers.items() if mask[i]}

    def top_reasons(self, i: int, reasons: dict[str, str]) -> dict[str, str]:
        """The reasons at the CBC's own urgency: those that set it."""
        level = self.r.urgency[i]
        return {name: action for name, action in reasons.items() if self.r.triggers[name][0] == level}

    def summary(
        self,
        i: int,
        findings: list[dict],
        urgency: str,
        not_assessed: list[dict],
        aplastic: dict,
        reasons: dict[str, str] | None = None,
    ) -> str:
        """A few plain sentences: red flags first, then the counts, then what was not assessed.

        Which part of the summary names a finding, and in which words, is the `summary` and
        `summary_text` of its row in findings.csv.
        """
        codes = {f["code"]: f for f in findings}
        parts = {part: [spec for spec in specs if spec.code in codes] for part, specs in self.texts.summary.items()}
        sentences = [codes[spec.code]["title"] + "." for spec in parts["title"]]
        counts = []
        for spec in parts["count"]:
            f = codes[spec.code]
            analyte = spec.analytes[0]
            words_of = self.texts.summary_words.get(spec.code)
            severity = words_of(self, i, f) if words_of else f["severity"] and f["severity"].replace("_", " ")
            words = [w for w in (severity, f["grade"] and f"CTCAE grade {f['grade']}") if w]
            counts.append(
                spec.summary_text.format(
                    label=self.rs.analytes[analyte].label.lower(),
                    value=self.num(analyte, i),
                    words=f"; {', '.join(words)}" if words else "",
                )
            )
        if counts:
            sentences.append(counts[0][0].upper() + "; ".join(counts)[1:] + ".")
        combined = " with ".join(spec.summary_text for spec in parts["combined"])
        if combined:
            sentences.append(combined[0].upper() + combined[1:] + ".")
        if aplastic["assessment"] != "not_applicable":
            sentences.append(aplastic["text"].split(". ")[0].rstrip(".") + " (counts alone cannot diagnose it).")
        for spec in parts["evidence"]:
            named = ", ".join(
                f"{self.rs.analytes[a].label.lower()} "
                + (self.num(a, i, v) if a in self.rs.analytes else text_number(v))
                for a, v in codes[spec.code]["evidence"].items()
            )
            override = self.texts.summary_overrides.get(spec.code)
            template = (override(self, i) if override else None) or spec.summary_text
            sentences.append(template.format(evidence=named))
        sentences.extend(spec.summary_text for spec in parts["text"])
        if not findings:
            sentences.append("No abnormal finding in the counts sent.")
        # Single analytes that were simply not sent are listed in not_assessed; the summary names
        # the decisions that stay open (combined findings, red flags, anaemia).
        open_decisions = [n for n in not_assessed if n["code"] not in self.texts.quiet_not_assessed]
        if open_decisions:
            sentences.append(
                "Not assessed: "
                + "; ".join(f"{n['code'].replace('_', ' ')} ({n['reason']})" for n in open_decisions[:3])
                + ("; and more" if len(open_decisions) > 3 else "")
                + "."
            )
        sentences.append(f"Urgency {urgency_text(urgency, reasons)}.")
        return " ".join(sentences) + " This describes the counts; it is not a diagnosis."


def finding_titles(result: InterpretationTable, rows: Sequence[int]) -> list[list[str]]:
    """The titles of the findings present on each of `rows`, in the order and words of the JSON answer's
    `findings` (labservice.core.row_texts words a whole table with one such row per distinct combination)."""
    renderer = _Renderer(result)
    return [[renderer.title(code, i) for code, f in result.findings.items() if f.present[i]] for i in rows]


def render_interpretations(
    result: InterpretationTable,
    patient_ids: Sequence[str | None] | None = None,
    reported: Sequence[dict] | None = None,
    rows: Sequence[int] | None = None,
) -> list[dict]:
    """One contract answer per row, in input order.

    With `rows`, only those rows of `result`, in that order (`patient_ids` and `reported` then hold one entry per
    answer): a caller that interpreted a whole table renders the rows it needs without running the engine again.
    """
    renderer = _Renderer(result)
    codes = list(result.findings)
    picked = range(result.n) if rows is None else rows
    by_row = np.array([f.present for f in result.findings.values()]).T if result.n else np.zeros((0, len(codes)))
    present_by_row = (by_row if rows is None else by_row[np.asarray(rows, dtype=np.intp)]).tolist()
    lesion_rows = result.cols.lesions["row"]
    order = np.argsort(lesion_rows, kind="stable")
    starts = np.searchsorted(lesion_rows[order], np.arange(result.n + 1))
    answers = []
    for position, i in enumerate(picked):
        findings = [
            renderer.finding(code, i) for code, present in zip(codes, present_by_row[position], strict=True) if present
        ]
        urgency = URGENCY_NAMES[int(result.urgency[i])]
        reasons = renderer.urgency_reasons(i)
        not_assessed = renderer.not_assessed(i)
        aplastic = renderer.aplastic(i)
        analytes = renderer.analytes(i)
        if reported is not None:
            for analyte, sent in reported[position].items():
                if analyte in analytes:
                    analytes[analyte]["reported"] = sent
        answer = {
            "id": uuid.uuid4().hex,
            "ruleset_version": result.ruleset.version,
            "ctcae_version": str(result.ctcae_version[i]),
            "patient_id": patient_ids[position] if patient_ids is not None else None,
            "analytes": analytes,
            "findings": findings,
            "not_assessed": not_assessed,
            "aplastic_anemia": aplastic,
            "skin": renderer.skin(i, order[starts[i] : starts[i + 1]]),
            "urgency": urgency,
            "urgency_reasons": reasons,
            **renderer.film_blocks(i),
            "summary": renderer.summary(i, findings, urgency, not_assessed, aplastic, renderer.top_reasons(i, reasons)),
        }
        answers.append(answer)
    return answers
