"""Messy CSV files for the batch acceptance tests, each with the answer expected for every row.

Every expected flag, grade, finding, urgency and aplastic-anaemia assessment below was derived by
hand from /work/shared/clinical-rules.md (cited as §n) and reference_ranges/*.csv, never from
running the code. Values sit far from the thresholds unless a threshold is the point of the row.

The rules used throughout (adult fallback ranges §2, critical values §3, CTCAE v5.0 §4):

- platelets 150-410; thrombocytopenia < 150; CTCAE 1 < LLN(150), 2 < 75, 3 < 50, 4 < 25;
  critical (LL) < 20, (HH) >= 1000; thrombocytosis >= 450.
- WBC 4.0-10.0; leukopenia < LLN; CTCAE 1 < 4.0, 2 < 3.0, 3 < 2.0, 4 < 1.0; critical < 2.0, > 30.
- neutrophils 2.0-7.0; neutropenia < 1.5; CTCAE 1 < 2.0, 2 < 1.5, 3 < 1.0, 4 < 0.5; critical < 0.5.
- lymphocytes 1.0-3.0; lymphopenia < 1.0; CTCAE 1 < 1.0, 2 < 0.8, 3 < 0.5, 4 < 0.2.
- haemoglobin (g/dL) male 13.0-17.0, female 12.0-15.0, sex unknown: the envelope 12.0-17.0;
  anaemia (WHO) men < 13.0, women < 12.0; CTCAE 1 < LLN, 2 < 10.0, 3 < 8.0; critical < 7.0;
  severity moderate 8.0-10.9, severe < 8.0.
- haematocrit male 40-50 %, female 36-46 %; RBC male 4.5-5.5, female 3.8-4.8; MCV 83-101;
  reticulocytes (absolute) 50-100.
- §5 bicytopenia: exactly two lineages (red = anaemia, white = leukopenia or neutropenia,
  platelets = thrombocytopenia) low; pancytopenia: all three; marrow_failure_range: at least two
  of Hb < 10.0, neutrophils < 1.5, platelets < 50.
- §6 (only with pancytopenia or the marrow-failure range): (a) neutrophils < 0.5, (b) platelets
  < 20, (c) reticulocytes < 60; two or more -> severe (very_severe if neutrophils < 0.2); exactly
  one of (a)(b) and no reticulocyte count -> indeterminate; otherwise not_severe.
- §8 v2: possible_pseudothrombocytopenia needs clumps, or an isolated thrombocytopenia with a skin examination
  sent that shows no bleeding signs ("skin not sent is not 'no bleeding signs'"): a CSV carries no skin
  examination and these files no clumps, so no row here has it (v1 suggested it for every isolated count).
- §9 immediate: a new critical value (every critical value here: nothing is stored before it). v2 changes
  the v1 `urgent` of these rows: clinical-rules.md §3 lines 99-105 and §9 line 243 (*v2*).
- §9 urgent: pancytopenia, severe/very severe aplastic criteria; soon:
  bicytopenia, thrombocytopenia < 100, neutropenia < 1.0, moderate or severe anaemia; else routine.
- contract: skin attribution "none" when no non-blanching lesion is reported (CSV carries none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The analytes that get a `<analyte>_ctcae_grade` column.
GRADED = ("platelets", "neutrophils", "wbc", "lymphocytes", "hemoglobin")

AA_NA = "not_applicable"


@dataclass(frozen=True)
class Row:
    """What one output row must say."""

    line: int
    ids: dict[str, str]
    urgency: str | None = None  # None: an error row
    findings: frozenset[str] = frozenset()
    exact: bool = True  # findings is the whole set; False: a subset, and `absent` must be absent
    absent: frozenset[str] = frozenset()
    flags: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    aplastic: str | None = AA_NA  # None: not checked
    error_has: tuple[str, ...] = ()
    notes_has: tuple[str, ...] = ()
    not_assessed_has: tuple[str, ...] = ()
    #: value columns of the CSV as written ("platelets (10*9/L)" -> "99,5"); the summary line; the findings in
    #: words (their titles in findings.csv, in any order); None: not checked
    values: dict[str, str] = field(default_factory=dict)
    summary: str | None = None
    words: frozenset[str] | None = None

    @property
    def is_error(self) -> bool:
        return self.urgency is None


@dataclass
class MessyFile:
    """One messy input file, the options to read it and the expected rows."""

    name: str
    data: bytes
    options: dict[str, Any]
    rows: list[Row]
    shape: str = "wide"
    rows_in: int | None = None  # None: one input row per output row
    blank_lines: int = 0
    duplicates: int = 0
    ignored_results: int | None = None
    columns_ignored: tuple[str, ...] = ()
    columns_used: tuple[str, ...] = ()

    def write(self, directory: Path) -> Path:
        path = directory / self.name
        path.write_bytes(self.data)
        return path

    def mapping_json(self) -> str:
        return json.dumps(self.options)


def flags(spec: str) -> dict[str, tuple[str, int | None]]:
    """'platelets=L3 wbc=N' -> {"platelets": ("L", 3), "wbc": ("N", None)}: the flag, then the CTCAE grade."""
    out: dict[str, tuple[str, int | None]] = {}
    for item in spec.split():
        name, value = item.split("=")
        letters = value.rstrip("0123456789")
        digits = value[len(letters) :]
        out[name] = (letters, int(digits) if digits else None)
    return out


def ok(
    line: int,
    ids: dict[str, str],
    urgency: str,
    findings: set[str] | frozenset[str],
    flag_spec: str,
    aplastic: str | None = AA_NA,
    **kw: Any,
) -> Row:
    return Row(
        line=line,
        ids=ids,
        urgency=urgency,
        findings=frozenset(findings),
        flags=flags(flag_spec),
        aplastic=aplastic,
        **kw,
    )


def err(line: int, ids: dict[str, str], *error_has: str) -> Row:
    return Row(line=line, ids=ids, urgency=None, aplastic=None, error_has=error_has)


def _text(lines: list[str], eol: str = "\n") -> bytes:
    return (eol.join(lines) + eol).encode("utf-8")


# Findings shared by several rows, each derived once here.
#: Platelets 45 with every other lineage normal: thrombocytopenia (< 150, CTCAE 3: < 50-25) alone,
#: no skin examination sent, so no §8 v2 suggestion; < 100 -> soon (§9).
ISOLATED_45 = {"thrombocytopenia"}
#: Platelets < 20 with every other lineage normal: thrombocytopenia, critical_value (§3), no §8 v2
#: suggestion (no skin examination in a CSV); a new critical value -> immediate (§9 line 243, *v2*). One
#: criterion of the marrow-failure range only (< 50).
ISOLATED_CRITICAL = {"thrombocytopenia", "critical_value"}
#: The contract example pattern: platelets 45, Hb 8.2, neutrophils 0.4 (WBC normal): three lineages
#: low -> pancytopenia; Hb < 10, neutrophils < 1.5, platelets < 50 -> marrow_failure_range;
#: neutrophils < 0.5 -> critical_value; immediate (§9 line 243, *v2*). §6: (a) met, (b) not (45 >= 20), no reticulocyte
#: count -> indeterminate.
PANCYTOPENIA_45_82_04 = {
    "thrombocytopenia",
    "anemia",
    "neutropenia",
    "pancytopenia",
    "marrow_failure_range",
    "critical_value",
}
NORMAL_FLAGS = "platelets=N wbc=N neutrophils=N lymphocytes=N hemoglobin=N"


# --------------------------------------------------------------------------------------------------
# 1. Common header names and abbreviations, sex as M/F or 0/1 with a stated sex_codes mapping, age.
# --------------------------------------------------------------------------------------------------

# sample, sex, age, platelets, wbc, hemoglobin (g/dL), hematocrit (%), rbc, mcv, neutrophils,
# lymphocytes, reticulocytes (10^9/L), reticulocytes (%)
_CBCS = [
    ("S-101", "F", "34", "250", "6.0", "13.5", "40", "4.3", "90", "3.5", "2.0", "60", "1.4"),
    ("S-102", "M", "67", "45", "6.0", "14.5", "44", "5.0", "90", "3.5", "2.0", "70", "1.4"),
    ("S-103", "F", "52", "12", "1.5", "6.5", "20", "1.8", "111", "0.3", "0.9", "15", "0.8"),
    ("S-104", "M", "40", "300", "3.2", "10.5", "32", "3.6", "89", "1.2", "1.5", "55", "1.5"),
    ("S-105", "F", "29", "520", "8.0", "13.0", "39", "4.4", "88", "5.0", "2.5", "75", "1.7"),
    ("S-106", "M", "45", "250", "6.0", "12.5", "41", "4.6", "89", "3.5", "2.0", "60", "1.3"),
    ("S-107", "F", "45", "250", "6.0", "12.5", "38", "4.2", "90", "3.5", "2.0", "60", "1.4"),
    ("S-108", "F", "8", "300", "7.0", "11.8", "37", "4.5", "85", "3.0", "2.5", "60", "1.3"),
]
_KEYS = (
    "sample",
    "sex",
    "age",
    "platelets",
    "wbc",
    "hemoglobin",
    "hematocrit",
    "rbc",
    "mcv",
    "neutrophils",
    "lymphocytes",
    "reticulocytes",
    "reticulocytes_percent",
)

# (urgency, findings, flags for every analyte, aplastic) per sample, in the order of _CBCS.
_CBC_EXPECTED: list[tuple[str, set[str], str, str]] = [
    # S-101 female 34, all inside the female adult ranges (§2): nothing to report.
    (
        "routine",
        set(),
        "platelets=N wbc=N hemoglobin=N hematocrit=N rbc=N mcv=N neutrophils=N lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
    # S-102 male 67: platelets 45 -> L, CTCAE 3; isolated (see ISOLATED_45) -> soon.
    (
        "soon",
        ISOLATED_45,
        "platelets=L3 wbc=N hemoglobin=N hematocrit=N rbc=N mcv=N neutrophils=N lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
    # S-103 female 52: platelets 12 (< 20 LL, CTCAE 4: < 25); WBC 1.5 (< 2.0 LL, CTCAE 3: < 2.0-1.0);
    # Hb 6.5 (< 7.0 LL, CTCAE 3: < 8.0); Hct 20 < 36 L; RBC 1.8 < 3.8 L; MCV 111 > 101 H;
    # neutrophils 0.3 (< 0.5 LL, CTCAE 4); lymphocytes 0.9 (< 1.0 L, CTCAE 1: < LLN-0.8);
    # reticulocytes 15 < 50 L. All lineages low -> pancytopenia, marrow-failure range (3 of 3),
    # new critical values -> immediate (§9 line 243, *v2*). §6: (a) 0.3 < 0.5 and (b) 12 < 20 (and (c) 15 < 60
    # where sent):
    # >= 2 criteria and neutrophils not < 0.2 -> severe.
    (
        "immediate",
        {
            "thrombocytopenia",
            "anemia",
            "neutropenia",
            "leukopenia",
            "lymphopenia",
            "pancytopenia",
            "marrow_failure_range",
            "critical_value",
        },
        "platelets=LL4 wbc=LL3 hemoglobin=LL3 hematocrit=L rbc=L mcv=H neutrophils=LL4 lymphocytes=L1 reticulocytes=L",
        "severe",
    ),
    # S-104 male 40: WBC 3.2 (L, CTCAE 1: < 4.0-3.0); Hb 10.5 (< 13.0 L, anaemia, CTCAE 1: < LLN-10.0,
    # moderate 8.0-10.9); Hct 32 < 40 L; RBC 3.6 < 4.5 L; neutrophils 1.2 (< 1.5 neutropenia, CTCAE 2:
    # < 1.5-1.0). Red and white low, platelets 300 normal -> bicytopenia; marrow-failure range only
    # one criterion (neutrophils) -> not applicable; bicytopenia and moderate anaemia -> soon.
    (
        "soon",
        {"anemia", "leukopenia", "neutropenia", "bicytopenia"},
        "platelets=N wbc=L1 hemoglobin=L1 hematocrit=L rbc=L mcv=N neutrophils=L2 lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
    # S-105 female 29: platelets 520 > 410 H and >= 450 thrombocytosis (§4, [S7]); no urgency rule.
    (
        "routine",
        {"thrombocytosis"},
        "platelets=H wbc=N hemoglobin=N hematocrit=N rbc=N mcv=N neutrophils=N lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
    # S-106 MALE 45, Hb 12.5: < 13.0 (male range and WHO men) -> L, anaemia, CTCAE 1, mild -> routine.
    (
        "routine",
        {"anemia"},
        "platelets=N wbc=N hemoglobin=L1 hematocrit=N rbc=N mcv=N neutrophils=N lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
    # S-107 FEMALE 45, the same Hb 12.5: inside 12.0-15.0, not below the WHO women's 12.0 -> nothing.
    # (S-106/S-107 only differ by sex: they prove the sex column was read.)
    (
        "routine",
        set(),
        "platelets=N wbc=N hemoglobin=N hematocrit=N rbc=N mcv=N neutrophils=N lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
    # S-108 girl of 8: children's ranges 6-12 y (reference_ranges/children.csv): platelets 170-450,
    # WBC 5-13, neutrophils 2-8, lymphocytes 1-5, Hb 11.5-15.5, Hct 35-45, RBC 4-5.2, MCV 77-95,
    # reticulocytes 30-100; WHO cut-off 5-11 y 11.5 (§4). Hb 11.8 is normal for her (an adult woman
    # would be L at < 12.0): this row proves the age column was read.
    (
        "routine",
        set(),
        "platelets=N wbc=N hemoglobin=N hematocrit=N rbc=N mcv=N neutrophils=N lymphocytes=N reticulocytes=N",
        AA_NA,
    ),
]

#: header variants: (file name, {key: header}, sex coding, mapping options)
HEADER_VARIANTS: dict[str, tuple[dict[str, str], dict[str, str], dict[str, Any]]] = {
    "abbreviations": (
        {
            "sample": "Sample ID",
            "platelets": "PLT",
            "wbc": "WBC",
            "hemoglobin": "HGB",
            "hematocrit": "HCT",
            "rbc": "RBC",
            "mcv": "MCV",
            "neutrophils": "NEUT#",
            "lymphocytes": "LYMPH#",
            "reticulocytes": "RETIC#",
            "sex": "Sex",
            "age": "Age",
        },
        {"F": "F", "M": "M"},
        {},
    ),
    "names": (
        {
            "sample": "Specimen",
            "platelets": "Platelets",
            "wbc": "WBC",
            "hemoglobin": "Hb",
            "hematocrit": "HCT",
            "neutrophils": "ANC",
            "lymphocytes": "LYMn",
            "reticulocytes_percent": "RETIC%",
            "sex": "Gender",
            "age": "Age",
        },
        {"F": "F", "M": "M"},
        {},
    ),
    "sex_codes": (
        {
            "sample": "Lab No",
            "platelets": "Platelet Count",
            "wbc": "WBC",
            "hemoglobin": "Hgb",
            "rbc": "RBC",
            "mcv": "MCV",
            "neutrophils": "NEUTn",
            "lymphocytes": "LYMPH#",
            "sex": "Sex",
            "age": "Age",
        },
        {"F": "0", "M": "1"},
        {"sex_codes": {"0": "female", "1": "male"}},
    ),
}


def header_names(variant: str) -> MessyFile:
    """Case 1: common header names and abbreviations; the same eight CBCs under each header set."""
    headers, sex_coding, options = HEADER_VARIANTS[variant]
    keys = [k for k in _KEYS if k in headers]
    lines = [",".join(headers[k] for k in keys)]
    rows: list[Row] = []
    for number, (cbc, (urgency, found, flag_spec, aplastic)) in enumerate(
        zip(_CBCS, _CBC_EXPECTED, strict=True), start=2
    ):
        values = dict(zip(_KEYS, cbc, strict=True))
        values["sex"] = sex_coding[values["sex"]]
        lines.append(",".join(values[k] for k in keys))
        wanted = " ".join(item for item in flag_spec.split() if item.split("=")[0] in headers)
        said = _SUMMARIES.get(values["sample"]) if variant == "abbreviations" else None
        rows.append(ok(number, {headers["sample"]: values["sample"]}, urgency, found, wanted, aplastic, summary=said))
    return MessyFile(f"headers_{variant}.csv", _text(lines), options, rows)


#: The summary line of some rows of the "abbreviations" variant (issue 14 item 5), from the flags and grades
#: derived above: a sentence per count outside its range, the critical counts first, then the others, each in the
#: engine's order (platelets, WBC, neutrophils, lymphocytes, haemoglobin, haematocrit, RBC, MCV, reticulocytes),
#: labelled as analytes.csv labels them, in the units of §1 (x10^9/L is how texts write 10*9/L).
_SUMMARIES = {
    "S-101": "No count outside its reference range. Urgency routine.",
    "S-103": "Platelets 12 x10^9/L critically low (CTCAE grade 4). White cell count 1.5 x10^9/L critically low "
    "(CTCAE grade 3). Neutrophils 0.3 x10^9/L critically low (CTCAE grade 4). Haemoglobin 6.5 g/dL "
    "critically low (CTCAE grade 3). Lymphocytes 0.9 x10^9/L low (CTCAE grade 1). Haematocrit 20 % low. "
    "Red cell count 1.8 x10^12/L low. Mean cell volume 111 fL high. Reticulocytes (absolute) 15 x10^9/L "
    "low. Urgency immediate.",
    "S-105": "Platelets 520 x10^9/L high. Urgency routine.",  # thrombocytosis has no CTCAE grade here (§4)
    "S-106": "Haemoglobin 12.5 g/dL low (CTCAE grade 1). Urgency routine.",
}


# --------------------------------------------------------------------------------------------------
# 2. Units in the header.
# --------------------------------------------------------------------------------------------------


def header_units() -> MessyFile:
    """Case 2: `PLT (K/uL)`, `Hb [g/L]`, `"WBC, 10^9/L"`, neutrophils in /uL, haematocrit in L/L."""
    lines = [
        'Patient ID,Sex,Age,PLT (K/uL),"WBC, 10^9/L",NEUT# (/uL),Hb [g/L],HCT (L/L),LYMPH# (10*9/L)',
        # K/uL = 10^9/L; /uL / 1000; g/L / 10 = g/dL; L/L x 100 = % (§1).
        # P-1 female 34: platelets 45 (L, CTCAE 3), WBC 5.0 N, neutrophils 400/uL = 0.4 (LL, CTCAE 4),
        # Hb 82 g/L = 8.2 g/dL (< 12.0 L, anaemia, CTCAE 2: < 10.0-8.0), Hct 0.25 = 25 % < 36 L,
        # lymphocytes 1.8 N -> PANCYTOPENIA_45_82_04, indeterminate, immediate (new critical).
        # (Read without the header units, Hb 82 g/dL would be implausible (> 30) and 400 an HH count.)
        "P-1,F,34,45,5.0,400,82,0.25,1.8",
        # P-2 male 60: 250, 7.0, 3500/uL = 3.5, 150 g/L = 15.0, 0.45 = 45 %, 1.8: all normal (male).
        "P-2,M,60,250,7.0,3500,150,0.45,2.2",
        # P-3 female 70: platelets 130 (L, CTCAE 1: < 150-75) isolated, no skin sent (§8 v2: no suggestion);
        # >= 100 -> routine.
        # Hb 125 g/L = 12.5 (female N), 3000/uL = 3.0, 0.40 = 40 %.
        "P-3,F,70,130,6.0,3000,125,0.40,1.6",
    ]
    rows = [
        ok(
            2,
            {"Patient ID": "P-1"},
            "immediate",
            PANCYTOPENIA_45_82_04,
            "platelets=L3 wbc=N neutrophils=LL4 hemoglobin=L2 hematocrit=L lymphocytes=N",
            "indeterminate",
        ),
        ok(3, {"Patient ID": "P-2"}, "routine", set(), NORMAL_FLAGS + " hematocrit=N"),
        ok(
            4,
            {"Patient ID": "P-3"},
            "routine",
            {"thrombocytopenia"},  # §8 v2: no skin sent, no suggestion
            "platelets=L1 wbc=N neutrophils=N hemoglobin=N hematocrit=N lymphocytes=N",
        ),
    ]
    return MessyFile("header_units.csv", _text(lines), {}, rows)


# --------------------------------------------------------------------------------------------------
# 3. Long shape with a unit column; items by common name and by LOINC code (§1).
# --------------------------------------------------------------------------------------------------


def long_with_units() -> MessyFile:
    """Case 3: one row per result, a unit on every row, three CBCs interleaved, one unknown item."""
    lines = [
        "Patient,Collected,Test,Result,Units",
        "P1,2026-01-05 08:00,PLT,45,10*3/uL",  # 2  CBC A starts
        "P1,2026-01-05 08:00,HGB,82,g/L",  # 3
        "P2,2026-01-05 09:30,777-3,250,10^9/L",  # 4  CBC B starts (LOINC platelets)
        "P1,2026-01-05 08:00,WBC,2.1,10*9/L",  # 5
        "P1,2026-01-06 08:00,PLT,210000,/uL",  # 6  CBC C starts: same patient, next day
        "P2,2026-01-05 09:30,718-7,14.0,g/dL",  # 7  LOINC haemoglobin
        "P1,2026-01-05 08:00,NEUT#,400,cells/uL",  # 8
        "P2,2026-01-05 09:30,6690-2,6.0,x10E9/L",  # 9  LOINC WBC
        "P1,2026-01-06 08:00,HGB,8.7,mmol/L",  # 10
        "P1,2026-01-06 08:00,WBC,7.5,K/uL",  # 11
        "P2,2026-01-05 09:30,751-8,3.5,10*9/L",  # 12 LOINC neutrophils
        "P1,2026-01-06 08:00,NEUT#,4.1,10*9/L",  # 13
        "P2,2026-01-05 09:30,MPV,10.2,fL",  # 14 not an analyte of the service: an ignored result
        "P1,2026-01-05 08:00,LYMPH#,1.2,10*9/L",  # 15
        "P2,2026-01-05 09:30,731-0,2.0,10*9/L",  # 16 LOINC lymphocytes
        "P1,2026-01-06 08:00,LYMPH#,2.2,10*9/L",  # 17
    ]
    ids_a = {"Patient": "P1", "Collected": "2026-01-05 08:00"}
    ids_b = {"Patient": "P2", "Collected": "2026-01-05 09:30"}
    ids_c = {"Patient": "P1", "Collected": "2026-01-06 08:00"}
    rows = [
        # A (no sex, no age: adult ranges, Hb envelope 12.0-17.0): platelets 45 L3; Hb 82 g/L = 8.2
        # (L, CTCAE 2; below both WHO adult cut-offs -> anaemia); WBC 2.1 (L, not < 2.0 so not
        # critical, CTCAE 2: < 3.0-2.0 -> leukopenia); neutrophils 400 cells/uL = 0.4 (LL, CTCAE 4);
        # lymphocytes 1.2 N. Pancytopenia, marrow-failure range, new critical -> immediate; §6 indeterminate.
        ok(
            2,
            ids_a,
            "immediate",
            PANCYTOPENIA_45_82_04 | {"leukopenia"},
            "platelets=L3 hemoglobin=L2 wbc=L2 neutrophils=LL4 lymphocytes=N",
            "indeterminate",
        ),
        # B: 250, 14.0 g/dL, 6.0, 3.5, 2.0: all normal.
        ok(4, ids_b, "routine", set(), NORMAL_FLAGS),
        # C: 210000/uL = 210; Hb 8.7 mmol/L / 0.6206 = 14.0 g/dL [S16]; 7.5; 4.1; 2.2: all normal.
        ok(6, ids_c, "routine", set(), NORMAL_FLAGS),
    ]
    return MessyFile(
        "long_units.csv", _text(lines), {"shape": "long"}, rows, shape="long", rows_in=16, ignored_results=1
    )


# --------------------------------------------------------------------------------------------------
# 4. A units option (the columns carry no unit; the mapping states it).
# --------------------------------------------------------------------------------------------------


def units_option() -> MessyFile:
    """Case 4: counts in /uL and haemoglobin in g/L, stated by `units`, not by the headers."""
    lines = [
        "Sample ID,Sex,Age,PLT,HGB,WBC,Neutrophils,LYMPH#",
        # O-1 female 40: 45000/uL = 45 (L3); 82 g/L = 8.2 (L2, anaemia, moderate); WBC 5200/uL = 5.2 N;
        # neutrophils 3000/uL = 3.0 N; lymphocytes 2.0 (canonical, no unit stated) N.
        # Red + platelets low, white normal -> bicytopenia; Hb < 10 and platelets < 50 ->
        # marrow_failure_range. §6: (a) no, (b) no (45 >= 20), no reticulocytes: at most one
        # criterion possible -> not_severe. Soon (bicytopenia, < 100, moderate anaemia); nothing urgent.
        "O-1,F,40,45000,82,5200,3000,2.0",
        # O-2 male 50: 250, 14.0, 6.0, 3.5, 2.0: normal.
        "O-2,M,50,250000,140,6000,3500,2.0",
        # O-3 male 55: 1200000/uL = 1200 >= 1000 -> HH, critical_value (§3) and thrombocytosis
        # (>= 450) -> immediate (a new critical value, §9 line 243 *v2*). Hb 13.5, WBC 9.0, neutrophils 6.0 normal.
        "O-3,M,55,1200000,135,9000,6000,2.0",
    ]
    options = {"units": {"platelets": "/uL", "hemoglobin": "g/L", "wbc": "/uL", "neutrophils": "/uL"}}
    rows = [
        ok(
            2,
            {"Sample ID": "O-1"},
            "soon",
            {"thrombocytopenia", "anemia", "bicytopenia", "marrow_failure_range"},
            "platelets=L3 hemoglobin=L2 wbc=N neutrophils=N lymphocytes=N",
            "not_severe",
        ),
        ok(3, {"Sample ID": "O-2"}, "routine", set(), NORMAL_FLAGS),
        ok(
            4,
            {"Sample ID": "O-3"},
            "immediate",
            {"thrombocytosis", "critical_value"},
            "platelets=HH hemoglobin=N wbc=N neutrophils=N lymphocytes=N",
        ),
    ]
    return MessyFile("units_option.csv", _text(lines), options, rows)


# --------------------------------------------------------------------------------------------------
# 5. `;` delimiter with decimal commas.
# --------------------------------------------------------------------------------------------------


def semicolon_decimal_comma(explicit: bool) -> MessyFile:
    """Case 5: a European spreadsheet export; detected, or stated with delimiter/decimal."""
    lines = [
        "Sample ID;Sex;Age;PLT;WBC;HGB;NEUT#;LYMPH#",
        # E-1 female 34: 45 (L3); WBC 2,1 (L2, leukopenia); Hb 8,2 (L2, anaemia); neutrophils 0,4
        # (LL4); lymphocytes 1,1 N -> pancytopenia, marrow-failure range, new critical: immediate, indeterminate.
        "E-1;F;34;45;2,1;8,2;0,4;1,1",
        # E-2 male 40: normal.
        "E-2;M;40;250;6,5;14,1;3,2;2,0",
        # E-3 male 40: platelets 99,5 = 99.5 (L, CTCAE 1: >= 75), isolated; < 100 -> soon.
        # Misread as 995 it would be H and thrombocytosis.
        "E-3;M;40;99,5;7,0;13,9;4,4;2,0",
    ]
    options: dict[str, Any] = {"delimiter": ";", "decimal": ","} if explicit else {}
    # Issue 14 item 5: written back with `;` and decimal commas. The values used are those sent (in canonical
    # units already); the summary names the counts outside their range, critical ones first (neutrophils 0.4 <
    # 0.5, §3), then in the engine's order, with analytes.csv's labels; the words are findings.csv's titles.
    rows = [
        ok(
            2,
            {"Sample ID": "E-1"},
            "immediate",
            PANCYTOPENIA_45_82_04 | {"leukopenia"},
            "platelets=L3 wbc=L2 hemoglobin=L2 neutrophils=LL4 lymphocytes=N",
            "indeterminate",
            values={
                "platelets (10*9/L)": "45",
                "wbc (10*9/L)": "2,1",
                "hemoglobin (g/dL)": "8,2",
                "neutrophils (10*9/L)": "0,4",
                "lymphocytes (10*9/L)": "1,1",
            },
            summary="Neutrophils 0,4 x10^9/L critically low (CTCAE grade 4). Platelets 45 x10^9/L low (CTCAE grade 3). "
            "White cell count 2,1 x10^9/L low (CTCAE grade 2). Haemoglobin 8,2 g/dL low (CTCAE grade 2). "
            "Urgency immediate.",
            words=frozenset(
                {
                    "Critical value: notify the clinician now",
                    "Pancytopenia (all three cell lines low)",
                    "Counts in the marrow-failure range (BSH aplastic anaemia entry criteria)",
                    "Thrombocytopenia (platelet count below 150)",
                    "Neutropenia",
                    "Anaemia (haemoglobin below the WHO cut-off)",
                    "Leukopenia (white cell count below the lower reference limit)",
                }
            ),
        ),
        ok(
            3,
            {"Sample ID": "E-2"},
            "routine",
            set(),
            NORMAL_FLAGS,
            values={"platelets (10*9/L)": "250", "wbc (10*9/L)": "6,5", "hemoglobin (g/dL)": "14,1"},
            summary="No count outside its reference range. Urgency routine.",
            words=frozenset(),
        ),
        ok(
            4,
            {"Sample ID": "E-3"},
            "soon",
            ISOLATED_45,
            "platelets=L1 wbc=N hemoglobin=N neutrophils=N lymphocytes=N",
            values={"platelets (10*9/L)": "99,5"},
            summary="Platelets 99,5 x10^9/L low (CTCAE grade 1). Urgency soon.",
            words=frozenset({"Thrombocytopenia (platelet count below 150)"}),
        ),
    ]
    name = "semicolon_explicit.csv" if explicit else "semicolon_detected.csv"
    return MessyFile(name, _text(lines), options, rows)


# --------------------------------------------------------------------------------------------------
# 6. UTF-8 byte order mark; 7. CRLF line ends.
# --------------------------------------------------------------------------------------------------


def utf8_bom() -> MessyFile:
    """Case 6: a BOM before the first header, which is an analyte (PLT) so that a kept BOM loses it."""
    lines = [
        "PLT,Sample ID,HGB,WBC,NEUT#,LYMPH#,Sex,Age",
        "45,B-1,13.5,6.0,3.5,2.0,F,30",  # isolated platelets 45: L3, soon
        "250,B-2,13.5,6.0,3.5,2.0,F,30",  # normal
    ]
    rows = [
        ok(
            2,
            {"Sample ID": "B-1"},
            "soon",
            ISOLATED_45,
            "platelets=L3 hemoglobin=N wbc=N neutrophils=N lymphocytes=N",
            values={"platelets (10*9/L)": "45", "hemoglobin (g/dL)": "13.5"},
            summary="Platelets 45 x10^9/L low (CTCAE grade 3). Urgency soon.",
        ),
        ok(3, {"Sample ID": "B-2"}, "routine", set(), NORMAL_FLAGS),
    ]
    return MessyFile("bom.csv", b"\xef\xbb\xbf" + _text(lines), {}, rows)


def crlf() -> MessyFile:
    """Case 7: Windows line ends; the last column is a count, so a kept CR would spoil it."""
    lines = [
        "Sample ID,Sex,Age,WBC,NEUT#,LYMPH#,HGB,PLT",
        "C-1,F,30,6.0,3.5,2.0,13.5,45",  # isolated platelets 45: L3, soon
        # C-2 male 50: platelets 12: LL (< 20), CTCAE 4 (< 25), new critical -> immediate; isolated.
        "C-2,M,50,6.0,3.5,2.0,14.5,12",
        "C-3,F,30,6.0,3.5,2.0,13.5,250",  # normal
    ]
    rows = [
        ok(2, {"Sample ID": "C-1"}, "soon", ISOLATED_45, "platelets=L3 hemoglobin=N wbc=N neutrophils=N lymphocytes=N"),
        ok(
            3,
            {"Sample ID": "C-2"},
            "immediate",
            ISOLATED_CRITICAL,
            "platelets=LL4 hemoglobin=N wbc=N neutrophils=N lymphocytes=N",
        ),
        ok(4, {"Sample ID": "C-3"}, "routine", set(), NORMAL_FLAGS),
    ]
    return MessyFile("crlf.csv", _text(lines, eol="\r\n"), {}, rows)


# --------------------------------------------------------------------------------------------------
# 8. Quoted fields: the delimiter inside an id, a newline inside a comment, doubled quotes.
# --------------------------------------------------------------------------------------------------


def quoted_fields() -> MessyFile:
    """Case 8: RFC 4180 quoting; the record of line 3 runs over two physical lines (3 and 4)."""
    text = (
        "Sample ID,Comment,PLT,HGB,WBC,NEUT#,LYMPH#,Sex,Age\n"
        '"Q-1","ok",250,13.5,6.0,3.5,2.0,F,30\n'  # line 2: normal
        '"Q,2","first line\nsecond line","45",13.5,6.0,3.5,2.0,F,30\n'  # lines 3-4: isolated 45
        'Q-3,"said ""hello""","12",14.5,6.0,3.5,2.0,M,50\n'  # line 5: isolated 12, critical
    )
    rows = [
        ok(2, {"Sample ID": "Q-1"}, "routine", set(), NORMAL_FLAGS),
        ok(3, {"Sample ID": "Q,2"}, "soon", ISOLATED_45, "platelets=L3 hemoglobin=N wbc=N neutrophils=N lymphocytes=N"),
        ok(
            5,
            {"Sample ID": "Q-3"},
            "immediate",
            ISOLATED_CRITICAL,
            "platelets=LL4 hemoglobin=N wbc=N neutrophils=N lymphocytes=N",
        ),
    ]
    return MessyFile("quoted.csv", text.encode("utf-8"), {}, rows, columns_ignored=("Comment",))


# --------------------------------------------------------------------------------------------------
# 9. Blank lines.
# --------------------------------------------------------------------------------------------------


def blank_lines() -> MessyFile:
    """Case 9: blank lines between rows (lines 3, 5 and 6); they are skipped and counted."""
    lines = [
        "Sample ID,PLT,HGB,WBC,NEUT#,LYMPH#,Sex,Age",
        "K-1,250,13.5,6.0,3.5,2.0,F,30",  # 2 normal
        "",  # 3
        "K-2,45,13.5,6.0,3.5,2.0,F,30",  # 4 isolated 45
        "",  # 5
        "",  # 6
        "K-3,250,14.5,6.0,3.5,2.0,M,50",  # 7 normal
    ]
    rows = [
        ok(2, {"Sample ID": "K-1"}, "routine", set(), NORMAL_FLAGS),
        ok(4, {"Sample ID": "K-2"}, "soon", ISOLATED_45, "platelets=L3 hemoglobin=N wbc=N neutrophils=N lymphocytes=N"),
        ok(7, {"Sample ID": "K-3"}, "routine", set(), NORMAL_FLAGS),
    ]
    return MessyFile("blank_lines.csv", _text(lines), {}, rows, blank_lines=3)


# --------------------------------------------------------------------------------------------------
# 10. Extra columns (kept out of the engine, listed as ignored); an empty analyte cell.
# --------------------------------------------------------------------------------------------------


def extra_columns() -> MessyFile:
    """Case 10: ward, doctor, MPV and a comment among the CBC columns."""
    lines = [
        "Ward,Sample ID,Doctor,PLT,MPV,HGB,Comment,WBC,NEUT#,LYMPH#,Sex,Age,Collected",
        "W1,X-1,Dr A,250,10.1,13.5,fine,6.0,3.5,2.0,F,30,2026-02-01 08:00",  # normal
        # haemoglobin cell empty -> Hb not sent: no flag; the red lineage is "not assessed",
        # never normal (§5), so no anaemia, and no bi-/pancytopenia can be stated. Platelets 45
        # (L3, thrombocytopenia; < 100 -> soon).
        "W2,X-2,Dr B,45,11.0,,repeat,6.0,3.5,2.0,F,30,2026-02-01 09:00",
    ]
    rows = [
        ok(2, {"Sample ID": "X-1", "Collected": "2026-02-01 08:00"}, "routine", set(), NORMAL_FLAGS),
        Row(
            line=3,
            ids={"Sample ID": "X-2", "Collected": "2026-02-01 09:00"},
            urgency="soon",
            findings=frozenset({"thrombocytopenia"}),
            exact=False,
            absent=frozenset({"anemia", "bicytopenia", "pancytopenia", "critical_value"}),
            flags=flags("platelets=L3 hemoglobin= wbc=N neutrophils=N lymphocytes=N"),
            aplastic=None,
            not_assessed_has=("anemia",),
        ),
    ]
    return MessyFile(
        "extra_columns.csv",
        _text(lines),
        {},
        rows,
        columns_ignored=("Ward", "Doctor", "MPV", "Comment"),
        columns_used=("Sample ID", "PLT", "HGB", "WBC", "NEUT#", "LYMPH#", "Sex", "Age", "Collected"),
    )


# --------------------------------------------------------------------------------------------------
# 11. An explicit column mapping for unusual headers (German LIS export).
# --------------------------------------------------------------------------------------------------

GERMAN_MAPPING: dict[str, Any] = {
    "columns": {
        "Probennummer": "sample_id",
        "Geschlecht": "sex",
        "Alter": "age_years",
        "Thrombozyten": "platelets",
        "Leukozyten": "wbc",
        "Hämoglobin": "hemoglobin",
        "Neutrophile": "neutrophils",
    },
    "units": {"hemoglobin": "g/L"},
    "sex_codes": {"w": "female", "m": "male"},
}


def explicit_mapping() -> MessyFile:
    """Case 11: `Thrombozyten` -> platelets and friends, stated by the mapping's `columns`."""
    lines = [
        "Probennummer,Geschlecht,Alter,Thrombozyten,Leukozyten,Hämoglobin,Neutrophile",
        # M-1 woman 34: platelets 45 (L3), WBC 5.0 N, Hb 82 g/L = 8.2 (L2, anaemia), neutrophils 0.4
        # (LL4) -> PANCYTOPENIA_45_82_04, indeterminate, immediate (no lymphocytes: lymphopenia not assessed).
        "M-1,w,34,45,5.0,82,0.4",
        # M-2 man 61: 310, 7.2, 151 g/L = 15.1, 4.0: normal.
        "M-2,m,61,310,7.2,151,4.0",
    ]
    rows = [
        ok(
            2,
            {"Probennummer": "M-1"},
            "immediate",
            PANCYTOPENIA_45_82_04,
            "platelets=L3 wbc=N hemoglobin=L2 neutrophils=LL4",
            "indeterminate",
        ),
        ok(3, {"Probennummer": "M-2"}, "routine", set(), "platelets=N wbc=N hemoglobin=N neutrophils=N"),
    ]
    return MessyFile("explicit_mapping.csv", _text(lines), GERMAN_MAPPING, rows)


def explicit_mapping_windows_1252() -> MessyFile:
    """Case 11 again, saved by a Windows spreadsheet: `Hämoglobin` in Windows-1252, not UTF-8."""
    messy = explicit_mapping()
    messy.name = "explicit_mapping_cp1252.csv"
    messy.data = messy.data.decode("utf-8").encode("cp1252")
    return messy


# --------------------------------------------------------------------------------------------------
# Bad rows: not a number, UNABLE TO REPORT, too many fields, implausible value, censored values.
# --------------------------------------------------------------------------------------------------


def bad_rows() -> MessyFile:
    """Row errors keep their place; the rows around them are still interpreted."""
    head = "Sample ID,Collected,PLT (10^9/L),HGB,WBC,NEUT#,LYMPH#,Sex,Age"
    rest = "3.5,2.0,F,30"
    lines = [
        head,
        f"B-1,2026-02-01 08:00,250,13.5,6.0,{rest}",  # 2 normal
        f"B-2,2026-02-01 08:05,abc,13.5,6.0,{rest}",  # 3 not a number
        f"B-3,2026-02-01 08:10,250,UNABLE TO REPORT,6.0,{rest}",  # 4 a LIS comment instead of a value
        f"B-4,2026-02-01 08:15,250,13.5,6.0,{rest},surplus",  # 5 one field too many
        # 6: 210000 in 10^9/L is beyond physical plausibility (platelets <= 5000, §1): rejected with
        # the unit-slip hint "did you mean /uL?".
        f"B-5,2026-02-01 08:20,210000,13.5,6.0,{rest}",
        f"B-6,2026-02-01 08:25,45,13.5,6.0,{rest}",  # 7 isolated 45, after the errors
        # 8: "<5": every platelet count below 5 is LL (< 20), CTCAE 4 (< 25), thrombocytopenia,
        # critical; bleeding band "< 5" and the marrow-failure count (one criterion) do not change ->
        # interpreted, and the notes say the value was censored. Male 50, rest normal.
        "B-7,2026-02-01 08:30,<5,14.5,6.0,3.5,2.0,M,50",
        # 9: ">100" could be 120 (thrombocytopenia) or 300 (normal): decisions differ -> row error.
        f"B-8,2026-02-01 08:35,>100,13.5,6.0,{rest}",
        f"B-9,2026-02-01 08:40,250,13.5,6.0,{rest},surplus,and more",  # 10 two fields too many
    ]

    def ids(n: int, minute: str) -> dict[str, str]:
        return {"Sample ID": f"B-{n}", "Collected": f"2026-02-01 08:{minute}"}

    rows = [
        ok(2, ids(1, "00"), "routine", set(), NORMAL_FLAGS),
        err(3, ids(2, "05"), "line 3", "PLT", "abc"),
        err(4, ids(3, "10"), "line 4", "HGB", "UNABLE TO REPORT"),
        # The surplus field is the last: the id cells before it are the row's own, and are kept (issue 14 item 5).
        err(5, ids(4, "15"), "line 5", "more fields than the header"),
        err(6, ids(5, "20"), "line 6", "PLT", "/uL"),
        ok(7, ids(6, "25"), "soon", ISOLATED_45, "platelets=L3 hemoglobin=N wbc=N neutrophils=N lymphocytes=N"),
        # (the censoring note is checked in the test: "censor" or "<5")
        # The value used is written as it was sent, "<5" (the summary too).
        ok(
            8,
            ids(7, "30"),
            "immediate",
            ISOLATED_CRITICAL,
            "platelets=LL4 hemoglobin=N wbc=N neutrophils=N lymphocytes=N",
            values={"platelets (10*9/L)": "<5", "hemoglobin (g/dL)": "14.5"},
            summary="Platelets <5 x10^9/L critically low (CTCAE grade 4). Urgency immediate.",
        ),
        err(9, ids(8, "35"), "line 9", "PLT"),
        err(10, ids(9, "40"), "line 10", "more fields than the header"),  # pandas skips it: read again for its ids
    ]
    return MessyFile("bad_rows.csv", _text(lines), {}, rows)


# --------------------------------------------------------------------------------------------------
# Formula injection in id cells; duplicate (id, collection time) rows.
# --------------------------------------------------------------------------------------------------

#: (Sample ID in the file, the same cell as written to the output CSV)
INJECTION_IDS = [
    ('=HYPERLINK("http://evil.example/x","click")', '\'=HYPERLINK("http://evil.example/x","click")'),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("-2+3", "'-2+3"),  # text that a spreadsheet would evaluate
    ("+A1", "'+A1"),
    ("-5", "-5"),  # a plain negative number stays as it is
    ("+1", "+1"),  # a number, so not prefixed ("text cells ... that are not numbers")
    ("S-7", "S-7"),
]


def formula_injection() -> MessyFile:
    """Ids that a spreadsheet would run as formulas; all rows have normal counts (F 30)."""
    lines = ["Sample ID,Patient ID,PLT,HGB,WBC,NEUT#,LYMPH#,Sex,Age"]
    rows: list[Row] = []
    for number, (cell, written) in enumerate(INJECTION_IDS, start=2):
        quoted = '"' + cell.replace('"', '""') + '"'
        lines.append(f"{quoted},P-{number},250,13.5,6.0,3.5,2.0,F,30")
        rows.append(ok(number, {"Sample ID": written, "Patient ID": f"P-{number}"}, "routine", set(), NORMAL_FLAGS))
    n = len(INJECTION_IDS) + 2
    # A patient id that is a formula, and a formula in a count cell (a row error whose message must
    # not start a formula either).
    lines.append(f"S-{n},=1+1,250,13.5,6.0,3.5,2.0,F,30")
    rows.append(ok(n, {"Sample ID": f"S-{n}", "Patient ID": "'=1+1"}, "routine", set(), NORMAL_FLAGS))
    lines.append(f"S-{n + 1},P-{n + 1},=SUM(1;2),13.5,6.0,3.5,2.0,F,30")
    rows.append(err(n + 1, {"Sample ID": f"S-{n + 1}", "Patient ID": f"P-{n + 1}"}, f"line {n + 1}", "PLT"))
    return MessyFile("formula_injection.csv", _text(lines), {}, rows)


def duplicate_ids() -> MessyFile:
    """The same sample id and collection time twice (line 4 repeats line 2); other near-twins are not."""
    lines = [
        "Sample ID,Collected,PLT,HGB,WBC,NEUT#,LYMPH#,Sex,Age",
        "D-1,2026-03-01 08:00,250,13.5,6.0,3.5,2.0,F,30",  # 2
        "D-2,2026-03-01 08:00,45,13.5,6.0,3.5,2.0,F,30",  # 3 same time, other sample
        "D-1,2026-03-01 08:00,250,13.5,6.0,3.5,2.0,F,30",  # 4 duplicate of line 2
        "D-1,2026-03-02 08:00,250,13.5,6.0,3.5,2.0,F,30",  # 5 same sample, other time
        "D-3,2026-03-01 08:00,250,13.5,6.0,3.5,2.0,F,30",  # 6
    ]

    def ids(sample: str, day: str) -> dict[str, str]:
        return {"Sample ID": sample, "Collected": f"2026-03-0{day} 08:00"}

    rows = [
        ok(2, ids("D-1", "1"), "routine", set(), NORMAL_FLAGS),
        ok(3, ids("D-2", "1"), "soon", ISOLATED_45, "platelets=L3 hemoglobin=N wbc=N neutrophils=N lymphocytes=N"),
        ok(4, ids("D-1", "1"), "routine", set(), NORMAL_FLAGS, notes_has=("duplicate of line 2",)),
        ok(5, ids("D-1", "2"), "routine", set(), NORMAL_FLAGS),
        ok(6, ids("D-3", "1"), "routine", set(), NORMAL_FLAGS),
    ]
    return MessyFile("duplicates.csv", _text(lines), {}, rows, duplicates=1)


# --------------------------------------------------------------------------------------------------
# Unusable files: BatchFileError (exit code 2 / HTTP 422).
# --------------------------------------------------------------------------------------------------

UNUSABLE_FILES: dict[str, bytes] = {
    # A unit in a header that the service does not know: an error naming it, never a guess (§1).
    "unknown_header_unit": b"Sample ID,PLT (furlongs),HGB\nU-1,250,13.5\n",
    # No column that holds an analyte.
    "no_analyte_column": b"Sample ID,Ward,Comment\nU-1,W1,fine\n",
    # Nothing at all, so no header.
    "empty": b"",
    # Only blank lines.
    "blank_only": b"\n\n\n",
}
