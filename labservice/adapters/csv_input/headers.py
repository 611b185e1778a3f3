"""Column headers → fields: the common names and abbreviations of LIS, analyser and spreadsheet exports.

A header may carry its unit: `PLT (K/uL)`, `Hb [g/L]`, `WBC, 10^9/L`. Names are matched without
regard to case, spaces, dots, dashes or underscores. A percentage unit on a count that has a
percentage twin (`Neutrophils (%)`, `RETIC %`) means the twin. Anything else is left for the
explicit `columns` mapping; unrecognised columns are kept out of the engine and listed as ignored.
"""

from __future__ import annotations

import re

from labservice.core.table import ANALYTES

#: The blood film and the PLASMIC context (clinical-rules §10 v2), as CSV columns (and long-file items).
FILM_FIELDS = (
    "schistocytes",
    "schistocytes_percent",
    "blasts_seen",
    "platelet_count_confirmed",
    "active_cancer",
    "transplant",
    "haptoglobin_undetectable",
    "inr",
    "creatinine_mg_dl",
    "indirect_bilirubin_mg_dl",
)
#: Context fields a column can hold besides the analytes.
CONTEXT_FIELDS = (
    "patient_id",
    "sample_id",
    "collected_at",
    "sex",
    "age_years",
    "birth_date",
    "pregnant",
    "pregnancy_trimester",
    "duffy_null",
    "fever",
    "platelet_clumps",
    "myelosuppressive_therapy",
    "reticulocyte_method",
    "ctcae_version",
    "heparin_started_at",
    "heparin_in_previous_30_days",
    *FILM_FIELDS,
)
#: Columns of the long shape (one row per result).
LONG_FIELDS = ("item", "value", "unit")
#: The input columns that identify a CBC and are copied to the output.
ID_FIELDS = ("patient_id", "sample_id", "collected_at")
RANGE_FIELDS = tuple(f"{a}_ref_{side}" for a in ANALYTES for side in ("low", "high"))
IGNORE = "ignore"
FIELDS = (*ANALYTES, *RANGE_FIELDS, *CONTEXT_FIELDS, *LONG_FIELDS, IGNORE)

_ALIASES: dict[str, tuple[str, ...]] = {
    "platelets": (
        "plt",
        "plts",
        "platelets",
        "platelet",
        "platelet count",
        "plt count",
        "thrombocytes",
        "thrombocyte count",
        "plat",
    ),
    "wbc": (
        "wbc",
        "wcc",
        "white cell count",
        "white blood cells",
        "white blood cell count",
        "leukocytes",
        "leucocytes",
        "leukocyte count",
        "total wbc",
    ),
    "neutrophils": (
        "neut#",
        "neut abs",
        "neutabs",
        "abs neut",
        "absneut",
        "anc",
        "neutn",
        "neu#",
        "neutrophils",
        "neutrophil count",
        "absolute neutrophil count",
        "neutrophils abs",
        "neutrophils absolute",
        "neutrophils#",
    ),
    "neutrophils_percent": (
        "neut%",
        "neu%",
        "neutrophil %",
        "neutrophils %",
        "neutrophils percent",
        "neutrophils pct",
        "neut pct",
    ),
    "lymphocytes": (
        "lymph#",
        "lym#",
        "lymn",
        "lymphn",
        "lymphocytes",
        "lymphocyte count",
        "abs lymph",
        "alc",
        "lymphocytes abs",
        "absolute lymphocyte count",
        "lymphocytes absolute",
    ),
    "hemoglobin": ("hgb", "hb", "haemoglobin", "hemoglobin", "hbg"),
    "hematocrit": ("hct", "haematocrit", "hematocrit", "pcv", "packed cell volume"),
    "rbc": (
        "rbc",
        "rcc",
        "red cell count",
        "red blood cells",
        "red blood cell count",
        "erythrocytes",
        "erythrocyte count",
    ),
    "mcv": ("mcv", "mean cell volume", "mean corpuscular volume"),
    "mch": ("mch", "mean cell haemoglobin", "mean cell hemoglobin", "mean corpuscular hemoglobin"),
    "mchc": (
        "mchc",
        "mean cell haemoglobin concentration",
        "mean cell hemoglobin concentration",
        "mean corpuscular hemoglobin concentration",
    ),
    "rdw": ("rdw", "rdw cv", "rdwcv", "red cell distribution width"),
    "rdw_sd": ("rdw sd", "rdwsd", "red cell distribution width sd"),  # clinical-rules §1 v2
    "lymphocytes_percent": (  # clinical-rules §1 v2
        "lymph%",
        "lym%",
        "lymphocyte %",
        "lymphocytes %",
        "lymphocytes percent",
        "lymphocytes pct",
        "lymph pct",
    ),
    "reticulocytes": (
        "retic#",
        "ret#",
        "retic abs",
        "reticulocytes",
        "reticulocyte count",
        "absolute reticulocytes",
        "reticulocytes abs",
        "reticulocytes absolute",
    ),
    "reticulocytes_percent": ("retic%", "ret%", "retic", "retic pct", "reticulocytes %", "reticulocytes percent"),
    "patient_id": (
        "patient id",
        "patient",
        "patientid",
        "patient no",
        "patient number",
        "mrn",
        "pid",
        "subject id",
        "hospital number",
        "nhs number",
        "urn",
    ),
    "sample_id": (
        "sample id",
        "id",
        "sample",
        "sampleid",
        "sample no",
        "specimen id",
        "specimen",
        "accession",
        "accession number",
        "lab no",
        "lab number",
        "order id",
        "barcode",
        "hadm id",
        "episode",
    ),
    "collected_at": (
        "collected at",
        "collected",
        "collection time",
        "collection date",
        "collection datetime",
        "collection date time",
        "date collected",
        "sample time",
        "sample date",
        "specimen date",
        "date",
        "datetime",
        "date time",
        "time",
        "charttime",
        "drawn",
        "taken",
        "result date",
    ),
    "sex": ("sex", "gender", "sex at birth"),
    "age_years": ("age", "age years", "age yrs", "patient age"),
    "birth_date": ("birth date", "date of birth", "dob", "birthdate", "born"),
    "pregnant": ("pregnant", "pregnancy"),
    "pregnancy_trimester": ("pregnancy trimester", "trimester"),
    "duffy_null": ("duffy null", "duffy"),
    "fever": ("fever", "febrile"),
    "platelet_clumps": ("platelet clumps", "plt clumps", "clumps"),
    "myelosuppressive_therapy": ("myelosuppressive therapy", "myelosuppressive treatment", "myelosuppression"),
    "reticulocyte_method": ("reticulocyte method", "retic method"),
    "blasts_percent": ("blasts", "blasts %", "blast%", "blast cells", "blasts percent"),
    "promyelocytes_percent": ("promyelocytes", "promyelocytes %", "promyelo%", "promyelocytes percent"),
    "myelocytes_percent": ("myelocytes", "myelocytes %", "myelo%", "myelocytes percent"),
    "metamyelocytes_percent": ("metamyelocytes", "metamyelocytes %", "metamyelo%", "metamyelocytes percent"),
    "bands_percent": ("bands", "bands %", "band%", "band neutrophils", "band forms", "bands percent"),
    "nrbc_per_100_wbc": ("nrbc", "nrbc/100 wbc", "nucleated red cells", "nucleated rbc", "nrbc per 100 wbc"),
    "schistocytes": ("schistocytes", "schistocyte", "schistocytes grade", "fragments", "film schistocytes"),
    "schistocytes_percent": ("schistocytes %", "schistocytes percent", "schistocyte%", "schisto%"),
    "blasts_seen": ("blasts seen", "film blasts seen", "film blasts"),
    "platelet_count_confirmed": ("platelet count confirmed", "film platelet count confirmed", "plt confirmed"),
    "active_cancer": ("active cancer",),
    "transplant": ("transplant", "organ or stem cell transplant"),
    "haptoglobin_undetectable": ("haptoglobin undetectable",),
    "inr": ("inr",),
    # Named with their unit only: a creatinine or bilirubin column in umol/L must not be read as mg/dL.
    "creatinine_mg_dl": ("creatinine mg dl", "creatinine (mg/dl)"),
    "indirect_bilirubin_mg_dl": ("indirect bilirubin mg dl", "indirect bilirubin (mg/dl)"),
    "ctcae_version": ("ctcae version",),
    "heparin_started_at": ("heparin started at", "heparin started", "heparin start", "heparin start time"),
    "heparin_in_previous_30_days": ("heparin in previous 30 days", "heparin previous 30 days", "recent heparin"),
    "item": (
        "item",
        "itemid",
        "item id",
        "test",
        "test code",
        "test name",
        "analyte",
        "code",
        "loinc",
        "loinc code",
        "observation",
        "observation code",
        "parameter",
        "component",
    ),
    "value": ("value", "result", "result value", "value num", "valuenum", "numeric value", "obs value"),
    "unit": ("unit", "units", "uom", "valueuom", "unit of measure", "result unit"),
}
#: Counts whose percentage twin a `%` header unit selects.
PERCENT_TWINS = {
    "neutrophils": "neutrophils_percent",
    "reticulocytes": "reticulocytes_percent",
    "lymphocytes": "lymphocytes_percent",
    "schistocytes": "schistocytes_percent",
}
#: Header units for age columns, as a factor to years.
AGE_UNITS = {
    "y": 1.0,
    "yr": 1.0,
    "yrs": 1.0,
    "year": 1.0,
    "years": 1.0,
    "m": 1 / 12,
    "mo": 1 / 12,
    "months": 1 / 12,
    "month": 1 / 12,
    "w": 7 / 365.25,
    "wk": 7 / 365.25,
    "weeks": 7 / 365.25,
    "d": 1 / 365.25,
    "days": 1 / 365.25,
}

_SEPARATORS = re.compile(r"[\s._\-]+")
#: Unit parts a header may end with: `(unit)`, `[unit]` (no brackets of the kind inside), `, unit` (no comma).
_UNIT_BRACKETS = (("(", ")"), ("[", "]"))


def name_key(text: str) -> str:
    """The matching key of a header or item name: case-folded, separators collapsed to one space."""
    return _SEPARATORS.sub(" ", text.strip().casefold()).strip()


_BY_KEY: dict[str, str] = {}
for _field, _names in _ALIASES.items():
    for _name in (_field, *_names):
        _BY_KEY.setdefault(name_key(_name), _field)
for _field in FIELDS:
    _BY_KEY.setdefault(name_key(_field), _field)


def split_header(header: str) -> tuple[str, str | None]:
    """`PLT (K/uL)` → ("PLT", "K/uL"); `Hb [g/L]` → ("Hb", "g/L"); a header without a unit → (header, None).

    Found with rfind, not a regular expression: the pattern used before (a lazy name, spaces, then the unit
    part, anchored at the end) backtracked through every split of a cell of spaces: seconds for one header
    cell of 45,000. The unit part is the earliest of: the last `(` when the text ends
    with `)` and no `)` is between them, the same with `[` `]`, and the text after the last comma. The name
    before it must not be empty and holds no line break (one may stand between the name and the unit).
    """
    text = header.strip()
    parts = []  # (where the unit part starts, the unit text)
    for opening, closing in _UNIT_BRACKETS:
        start = text.rfind(opening)
        if start != -1 and text.endswith(closing) and start < len(text) - 1 and closing not in text[start + 1 : -1]:
            parts.append((start, text[start + 1 : -1]))
    comma = text.rfind(",")
    if comma != -1 and comma < len(text) - 1:
        parts.append((comma, text[comma + 1 :]))
    if not parts:
        return text, None
    start, unit = min(parts)
    name = text[:start].rstrip()
    if not name or "\n" in name or not unit.strip():
        return text, None
    return name, unit.strip()


def field_for_name(name: str) -> str | None:
    """The field a header name (without its unit) or an item name stands for, or None."""
    key = name_key(name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    compact = key.replace(" ", "")
    for candidate in (compact, compact.replace("#", " #"), key.replace(" #", "#").replace(" %", "%")):
        if candidate in _BY_KEY:
            return _BY_KEY[candidate]
    return None


def resolve_header(header: str) -> tuple[str | None, str | None]:
    """(field, unit in the header) for a column header; field None when the header is not recognised."""
    field = field_for_name(header)
    if field is not None:
        return field, None
    name, unit = split_header(header)
    field = field_for_name(name)
    if field is None:
        return None, None
    if unit is not None and unit.strip() == "%" and field in PERCENT_TWINS:
        return PERCENT_TWINS[field], "%"
    if field == "rdw" and unit is not None and unit.strip().casefold() == "fl":
        return "rdw_sd", unit  # RDW in fL is RDW-SD, its own analyte (clinical-rules §1 v2)
    return field, unit
