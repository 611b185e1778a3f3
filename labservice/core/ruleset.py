"""Load and validate the rule tables in `reference_ranges/`: every threshold the engine uses.

The engine reads numbers only from here. Loading is strict: a malformed row stops the service
with the file and line, because a silently skipped threshold is a wrong answer later.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import math
import os
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labservice.core import vocabulary
from labservice.core.ruleset_error import RulesetError
from labservice.core.units import UnitTable, normalise_unit_key
from labservice.rule_tables import packaged_directory

RANGE_FILES = ("adults.csv", "children.csv")
DUFFY_FILE = "duffy_null.csv"
OPERATORS = ("<", "<=", ">", ">=")
SEXES = ("any", "female", "male")
PREGNANCY_STATES = ("no", "trimester_1", "trimester_2", "trimester_3", "trimester_unknown")


class _Number(float):
    """A threshold in a text template: `{key}` writes it short (150, not 150.0), `{key:.1f}` as asked."""

    def __format__(self, spec: str) -> str:
        return format(float(self), spec or "g")


@dataclass(frozen=True)
class Analyte:
    name: str
    label: str
    canonical_unit: str
    unit_kind: str
    loinc: tuple[str, ...]
    typical: float
    plausible_min: float
    min_op: str
    plausible_max: float
    max_op: str
    source: str


@dataclass(frozen=True)
class Threshold:
    key: str
    analyte: str
    operator: str
    value: float
    unit: str
    sources: tuple[str, ...]
    meaning: str


@dataclass(frozen=True)
class RangeRow:
    analyte: str
    loinc: str
    unit: str
    sex: str
    age_low_days: float
    age_high_days: float
    low: float
    high: float
    source: str
    where: str  # file:line, for messages


@dataclass(frozen=True)
class CtcaeRow:
    version: str
    analyte: str
    grade: int
    operator: str
    bound: float | None  # None means "below the lower limit of normal" (LLN)
    sources: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class Band:
    scheme: str
    label: str
    lower: float
    lower_op: str
    upper: float
    upper_op: str
    unit: str
    sources: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class AnemiaCutoff:
    sex: str
    age_low_days: float
    age_high_days: float
    pregnancy: str
    cutoff: float
    sources: tuple[str, ...]
    population: str
    severity: str = "anemia_severity_adult"  # the bands.csv scheme of its WHO 2011 severity (§4 v2)


@dataclass(frozen=True)
class FindingSpec:
    """One row of findings.csv: everything about a finding that is not its mask or its detail text."""

    code: str
    order: int
    kind: str  # vocabulary.FINDING_KINDS
    family: str  # the module of labservice.core.families that computes it (delta: core.delta; history: core.history)
    urgency: str  # the urgency it raises (routine: none)
    reason: str  # the urgency reason code an answer lists (empty when it raises none)
    reason_text: str  # template: the reason in words, when the reason is not the finding itself
    analytes: tuple[str, ...]
    not_assessed: int | None  # position in an answer's not_assessed list (None: never listed)
    summary: str  # how the summary names it: title, count, combined, evidence, text (empty: not named)
    summary_text: str
    title: str  # template: {threshold_key} is the threshold's value as text
    rule: str
    sources: tuple[str, ...]
    where: str  # file:line, for messages
    action: str = ""  # template: the action its urgency reason asks for (empty: the urgency's own action)

    @property
    def urgency_rank(self) -> int:
        return vocabulary.URGENCY_RANK[self.urgency]


@dataclass(frozen=True)
class UrgencyAction:
    """One row of urgency_actions.csv: what an urgency asks for when its reason names no action."""

    urgency: str
    action: str  # template, like findings.csv `action`
    sources: tuple[str, ...]  # tags of sources.csv are cited after the action; clinical-rules refs are not
    where: str  # file:line, for messages


#: How a text spells a canonical unit of analytes.csv (a unit not listed is written as it is).
DISPLAY_UNITS = {"10*9/L": "x10^9/L", "10*12/L": "x10^12/L"}


@dataclass(frozen=True)
class Ruleset:
    """Every table the engine needs, validated, with a content hash as its version."""

    analytes: dict[str, Analyte]
    units: UnitTable
    thresholds: dict[str, Threshold]
    ranges: tuple[RangeRow, ...]
    duffy_ranges: tuple[RangeRow, ...]
    ctcae: tuple[CtcaeRow, ...]
    bands: dict[str, tuple[Band, ...]]
    anemia_cutoffs: tuple[AnemiaCutoff, ...]
    sources: dict[str, str]
    version: str
    directory: Path
    findings: tuple[FindingSpec, ...] = ()  # findings.csv, in its `order`
    urgency_actions: dict[str, UrgencyAction] = field(default_factory=dict)  # urgency_actions.csv
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def threshold(self, key: str) -> Threshold:
        return self.thresholds[key]

    def value(self, key: str) -> float:
        return self.thresholds[key].value

    def cite(self, tags: Iterable[str]) -> list[str]:
        """Full citations for source tags, in order, without repeats."""
        out: list[str] = []
        for tag in tags:
            text = f"[{tag}] {self.sources[tag]}" if tag in self.sources else tag
            if text not in out:
                out.append(text)
        return out

    def ctcae_versions(self) -> tuple[str, ...]:
        if "ctcae_versions" not in self._cache:
            self._cache["ctcae_versions"] = tuple(sorted({row.version for row in self.ctcae}))
        return self._cache["ctcae_versions"]

    def finding_specs(self, *kinds: str) -> tuple[FindingSpec, ...]:
        """The rows of findings.csv of these kinds (all kinds when none is given), in `order`."""
        key = ("finding_specs", kinds)
        if key not in self._cache:
            self._cache[key] = tuple(spec for spec in self.findings if not kinds or spec.kind in kinds)
        return self._cache[key]

    def finding_codes(self) -> tuple[str, ...]:
        """The codes the engine reports, in report order."""
        if "finding_codes" not in self._cache:
            self._cache["finding_codes"] = tuple(spec.code for spec in self.finding_specs(vocabulary.FINDING))
        return self._cache["finding_codes"]

    def finding(self, code: str) -> FindingSpec:
        if "finding_by_code" not in self._cache:
            self._cache["finding_by_code"] = {spec.code: spec for spec in self.findings}
        return self._cache["finding_by_code"][code]

    def reason(self, reason: str) -> FindingSpec | None:
        """The findings.csv row whose urgency reason this is (None for a reason the table does not know)."""
        if "finding_by_reason" not in self._cache:
            self._cache["finding_by_reason"] = {spec.reason: spec for spec in self.findings if spec.reason}
        return self._cache["finding_by_reason"].get(reason)

    def text(self, template: str) -> str:
        """A template of findings.csv with each {threshold_key} replaced by its value: short by
        default (150, 0.5), or in a format spec's shape ({soon_neutrophils:.1f} is 1.0)."""
        if "threshold_text" not in self._cache:
            self._cache["threshold_text"] = {key: _Number(t.value) for key, t in self.thresholds.items()}
        return template.format_map(self._cache["threshold_text"])

    def unit_text(self, analyte: str) -> str:
        """The canonical unit of an analyte as texts write it (10*9/L is "x10^9/L")."""
        unit = self.analytes[analyte].canonical_unit
        return DISPLAY_UNITS.get(unit, unit)

    def urgency_action(self, urgency: str) -> str:
        """The action an urgency asks for, with the tags of its sources: "discuss with haematology
        within 24-48 hours [S22]" (urgency_actions.csv; clinical-rules §9)."""
        row = self.urgency_actions[urgency]
        cited = "".join(f"[{tag}]" for tag in row.sources if tag in self.sources)
        text = self.text(row.action)
        return f"{text} {cited}" if cited else text

    def analyte_by_loinc(self) -> dict[str, str]:
        """LOINC code -> analyte key, from the `loinc` column of analytes.csv (clinical-rules §1 [S15])."""
        if "analyte_by_loinc" not in self._cache:
            self._cache["analyte_by_loinc"] = {
                code: name for name, analyte in self.analytes.items() for code in analyte.loinc
            }
        return self._cache["analyte_by_loinc"]


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise RulesetError(f"{path}: file is missing")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        missing = [name for name in required if name not in header]
        if missing:
            raise RulesetError(f"{path}:1: missing column(s) {', '.join(missing)}")
        rows = []
        for row in reader:
            if not any((value or "").strip() for value in row.values()):
                continue
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}))
        return rows


def _number(text: str, where: str, column: str, *, blank: float | None = None) -> float:
    if text == "" and blank is not None:
        return blank
    try:
        value = float(text)
    except ValueError:
        raise RulesetError(f"{where}: column {column}: {text!r} is not a number") from None
    if math.isnan(value):
        raise RulesetError(f"{where}: column {column}: NaN is not allowed")
    return value


def _operator(text: str, where: str, column: str) -> str:
    if text not in OPERATORS:
        raise RulesetError(f"{where}: column {column}: operator {text!r} is not one of {OPERATORS}")
    return text


def _tags(text: str, where: str = "", known: dict[str, str] | None = None) -> tuple[str, ...]:
    """Source tags of a `source` cell ("S1;S2"); with `known`, an unknown tag is an error."""
    tags = tuple(tag.strip() for tag in text.split(";") if tag.strip())
    if known is not None:
        for tag in tags:
            if tag not in known and not tag.startswith("clinical-rules"):
                raise RulesetError(f"{where}: source tag {tag!r} is not in sources.csv")
    return tags


def _load_analytes(directory: Path) -> dict[str, Analyte]:
    path = directory / "analytes.csv"
    out: dict[str, Analyte] = {}
    for line, row in _rows(path, ("analyte", "canonical_unit", "unit_kind", "plausible_min")):
        where = f"{path}:{line}"
        name = row["analyte"]
        if name in out:
            raise RulesetError(f"{where}: analyte {name!r} is listed twice")
        out[name] = Analyte(
            name=name,
            label=row.get("label") or name,
            canonical_unit=row["canonical_unit"],
            unit_kind=row["unit_kind"],
            loinc=tuple(row.get("loinc", "").split()),
            typical=_number(row["typical"], where, "typical"),
            plausible_min=_number(row["plausible_min"], where, "plausible_min"),
            min_op=_operator(row["min_op"], where, "min_op"),
            plausible_max=_number(row["plausible_max"], where, "plausible_max"),
            max_op=_operator(row["max_op"], where, "max_op"),
            source=row.get("source", ""),
        )
    return out


def _load_units(directory: Path, analytes: dict[str, Analyte]) -> UnitTable:
    path = directory / "units.csv"
    table = UnitTable()
    for line, row in _rows(path, ("kind", "unit", "factor")):
        where = f"{path}:{line}"
        factor = None if row["factor"] == "" else _number(row["factor"], where, "factor")
        if factor is not None and factor <= 0:
            raise RulesetError(f"{where}: factor must be positive")
        table.add(row["kind"], row["unit"], factor, row.get("note", ""), where)
    for analyte in analytes.values():
        if analyte.unit_kind not in table.kinds():
            raise RulesetError(f"{path}: no units for kind {analyte.unit_kind!r} ({analyte.name})")
        if table.factor(analyte.unit_kind, analyte.canonical_unit) != 1:
            raise RulesetError(
                f"{directory / 'analytes.csv'}: canonical unit {analyte.canonical_unit!r} of "
                f"{analyte.name} must have factor 1 in units.csv"
            )
    return table


def _load_ranges(path: Path, analytes: dict[str, Analyte], units: UnitTable) -> list[RangeRow]:
    required = ("analyte", "unit", "sex", "age_low_days", "age_high_days", "low", "high", "source")
    out = []
    for line, row in _rows(path, required):
        where = f"{path}:{line}"
        name = row["analyte"]
        if name not in analytes:
            raise RulesetError(f"{where}: unknown analyte {name!r}")
        analyte = analytes[name]
        factor = units.factor(analyte.unit_kind, row["unit"])
        if factor is None:
            raise RulesetError(f"{where}: unknown unit {row['unit']!r} for {name}")
        if row["sex"] not in SEXES:
            raise RulesetError(f"{where}: sex {row['sex']!r} is not one of {SEXES}")
        age_low = _number(row["age_low_days"], where, "age_low_days")
        age_high = _number(row["age_high_days"], where, "age_high_days")
        if not age_low < age_high:
            raise RulesetError(f"{where}: age_low_days {age_low} is not below age_high_days {age_high}")
        low = _number(row["low"], where, "low") * factor
        high = _number(row["high"], where, "high") * factor
        if not low < high:
            raise RulesetError(f"{where}: low {row['low']} is not below high {row['high']}")
        if not row["source"]:
            raise RulesetError(f"{where}: source is empty")
        out.append(
            RangeRow(
                name,
                row.get("loinc", ""),
                analyte.canonical_unit,
                row["sex"],
                age_low,
                age_high,
                low,
                high,
                row["source"],
                where,
            )
        )
    return out


def _check_overlaps(rows: list[RangeRow]) -> None:
    """Two rows for one analyte whose sexes meet and whose age bands overlap are ambiguous."""
    by_analyte: dict[str, list[RangeRow]] = {}
    for row in rows:
        by_analyte.setdefault(row.analyte, []).append(row)
    for group in by_analyte.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                sexes_meet = a.sex == b.sex or "any" in (a.sex, b.sex)
                ages_overlap = a.age_low_days < b.age_high_days and b.age_low_days < a.age_high_days
                if sexes_meet and ages_overlap:
                    raise RulesetError(
                        f"{b.where}: {b.analyte} band {b.sex} {b.age_low_days}-{b.age_high_days} days "
                        f"overlaps {a.where}"
                    )


def _load_thresholds(
    directory: Path, analytes: dict[str, Analyte], units: UnitTable, known: dict[str, str]
) -> dict[str, Threshold]:
    path = directory / "thresholds.csv"
    out: dict[str, Threshold] = {}
    for line, row in _rows(path, ("key", "analyte", "operator", "value", "unit", "source")):
        where = f"{path}:{line}"
        if row["key"] in out:
            raise RulesetError(f"{where}: key {row['key']!r} is listed twice")
        value = _number(row["value"], where, "value")
        name = row["analyte"]
        if name in analytes:
            factor = units.factor(analytes[name].unit_kind, row["unit"])
            if factor is None:
                raise RulesetError(f"{where}: unknown unit {row['unit']!r} for {name}")
            value *= factor
        if not row["source"]:
            raise RulesetError(f"{where}: source is empty")
        out[row["key"]] = Threshold(
            row["key"],
            name,
            _operator(row["operator"], where, "operator"),
            value,
            row["unit"],
            _tags(row["source"], where, known),
            row.get("meaning", ""),
        )
    return out


def _load_ctcae(
    directory: Path, analytes: dict[str, Analyte], units: UnitTable, known: dict[str, str]
) -> list[CtcaeRow]:
    path = directory / "ctcae.csv"
    out = []
    for line, row in _rows(path, ("version", "analyte", "grade", "operator", "bound", "unit", "source")):
        where = f"{path}:{line}"
        name = row["analyte"]
        if name not in analytes:
            raise RulesetError(f"{where}: unknown analyte {name!r}")
        factor = units.factor(analytes[name].unit_kind, row["unit"])
        if factor is None:
            raise RulesetError(f"{where}: unknown unit {row['unit']!r} for {name}")
        bound = None if row["bound"] == "LLN" else _number(row["bound"], where, "bound") * factor
        grade = int(_number(row["grade"], where, "grade"))
        if grade not in (1, 2, 3, 4):
            raise RulesetError(f"{where}: grade must be 1-4")
        out.append(
            CtcaeRow(
                row["version"],
                name,
                grade,
                _operator(row["operator"], where, "operator"),
                bound,
                _tags(row["source"], where, known),
                row.get("note", ""),
            )
        )
    return out


def _load_bands(directory: Path, known: dict[str, str]) -> dict[str, tuple[Band, ...]]:
    path = directory / "bands.csv"
    out: dict[str, list[Band]] = {}
    for line, row in _rows(path, ("scheme", "label", "lower", "lower_op", "upper", "upper_op", "source")):
        where = f"{path}:{line}"
        lower = _number(row["lower"], where, "lower", blank=-math.inf)
        upper = _number(row["upper"], where, "upper", blank=math.inf)
        lower_op = _operator(row["lower_op"] or ">=", where, "lower_op")
        upper_op = _operator(row["upper_op"] or "<", where, "upper_op")
        if lower_op not in (">", ">=") or upper_op not in ("<", "<="):
            raise RulesetError(f"{where}: lower_op must be > or >=, upper_op < or <=")
        if not lower < upper:
            raise RulesetError(f"{where}: lower {lower} is not below upper {upper}")
        out.setdefault(row["scheme"], []).append(
            Band(
                row["scheme"],
                row["label"],
                lower,
                lower_op,
                upper,
                upper_op,
                row.get("unit", ""),
                _tags(row["source"], where, known),
                row.get("text", ""),
            )
        )
    return {scheme: tuple(bands) for scheme, bands in out.items()}


def _load_anemia_cutoffs(directory: Path, known: dict[str, str]) -> list[AnemiaCutoff]:
    path = directory / "anemia_cutoffs.csv"
    out = []
    for line, row in _rows(path, ("sex", "age_low_days", "age_high_days", "pregnancy", "cutoff", "source")):
        where = f"{path}:{line}"
        if row["sex"] not in SEXES:
            raise RulesetError(f"{where}: sex {row['sex']!r} is not one of {SEXES}")
        if row["pregnancy"] not in PREGNANCY_STATES:
            raise RulesetError(f"{where}: pregnancy {row['pregnancy']!r} is not one of {PREGNANCY_STATES}")
        low = _number(row["age_low_days"], where, "age_low_days")
        high = _number(row["age_high_days"], where, "age_high_days")
        if not low < high:
            raise RulesetError(f"{where}: age_low_days is not below age_high_days")
        out.append(
            AnemiaCutoff(
                row["sex"],
                low,
                high,
                row["pregnancy"],
                _number(row["cutoff"], where, "cutoff"),
                _tags(row["source"], where, known),
                row.get("population", ""),
                row.get("severity") or "anemia_severity_adult",
            )
        )
    return out


FINDING_COLUMNS = (
    "code",
    "order",
    "kind",
    "family",
    "urgency",
    "reason",
    "reason_text",
    "analytes",
    "not_assessed",
    "summary",
    "summary_text",
    "title",
    "rule",
    "sources",
)
SUMMARY_KINDS = ("", "title", "count", "combined", "evidence", "text")
#: Placeholders of a `count` summary template, filled by the renderer.
SUMMARY_FIELDS = {"count": {"label", "value", "words"}, "evidence": {"evidence"}}


def is_finding_family(name: str) -> bool:
    """Whether labservice.core.families has a module of this name (found, not imported)."""
    if not name.isidentifier() or name.startswith("_") or name == "base":
        return False
    try:
        return importlib.util.find_spec(f"labservice.core.families.{name}") is not None
    except (ImportError, ValueError):
        return False


def _template_fields(text: str, where: str, column: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as error:
        raise RulesetError(f"{where}: column {column}: {error}") from None


def _load_findings(
    directory: Path, thresholds: dict[str, Threshold], analytes: dict[str, Analyte], known: dict[str, str]
) -> list[FindingSpec]:
    """findings.csv: one declaration per finding (order, urgency and reason, title, rule, sources)."""
    path = directory / "findings.csv"
    out: list[FindingSpec] = []
    codes: set[str] = set()
    orders: set[int] = set()
    reasons: set[str] = set()
    positions: set[int] = set()
    for line, row in _rows(path, FINDING_COLUMNS):
        where = f"{path}:{line}"
        code = row["code"]
        if not code.isidentifier() or code != code.lower():
            raise RulesetError(f"{where}: code {code!r} is not a lower-case identifier")
        if code in codes:
            raise RulesetError(f"{where}: code {code!r} is listed twice")
        number = _number(row["order"], where, "order")
        if not number.is_integer() or int(number) in orders:
            raise RulesetError(f"{where}: order {row['order']!r} is not a whole number used once")
        kind = row["kind"]
        if kind not in vocabulary.FINDING_KINDS:
            raise RulesetError(f"{where}: kind {kind!r} is not one of {vocabulary.FINDING_KINDS}")
        family = row["family"]
        if kind not in (vocabulary.DELTA, vocabulary.HISTORY) and not is_finding_family(family):
            raise RulesetError(f"{where}: family {family!r} is not a module of labservice.core.families")
        urgency = row["urgency"]
        if urgency not in vocabulary.URGENCY_NAMES:
            raise RulesetError(f"{where}: urgency {urgency!r} is not one of {vocabulary.URGENCY_NAMES}")
        reason = row["reason"]
        raises = urgency != vocabulary.Urgency.ROUTINE
        if raises != bool(reason) or (kind == vocabulary.DELTA and raises):
            raise RulesetError(f"{where}: a reason is needed exactly when a finding or reason row raises the urgency")
        if reason and (reason in reasons or not reason.isidentifier()):
            raise RulesetError(f"{where}: reason {reason!r} is not an identifier used once")
        if kind == vocabulary.REASON and reason != code:
            raise RulesetError(f"{where}: a reason row's reason must be its code")
        if reason and reason != code and not row["reason_text"]:
            raise RulesetError(f"{where}: reason_text is needed when the reason is not the finding itself")
        names = tuple(name for name in row["analytes"].split(";") if name)
        unknown = [name for name in names if name not in analytes]
        if unknown:
            raise RulesetError(f"{where}: unknown analyte(s) {', '.join(unknown)}")
        not_assessed = None if row["not_assessed"] == "" else _number(row["not_assessed"], where, "not_assessed")
        if not_assessed is not None:
            if not not_assessed.is_integer() or int(not_assessed) in positions or kind != vocabulary.FINDING:
                raise RulesetError(
                    f"{where}: not_assessed {row['not_assessed']!r} is not a finding's position used once"
                )
            positions.add(int(not_assessed))
        summary = row["summary"]
        if summary not in SUMMARY_KINDS:
            raise RulesetError(f"{where}: summary {summary!r} is not one of {SUMMARY_KINDS}")
        if summary in ("count", "combined", "evidence", "text") and not row["summary_text"]:
            raise RulesetError(f"{where}: summary {summary!r} needs a summary_text")
        if summary == "count" and not names:
            raise RulesetError(f"{where}: a count summary needs its analyte in `analytes`")
        action = row.get("action", "")
        if action and not raises:
            raise RulesetError(f"{where}: an action is given only for a row that raises the urgency")
        for column, allowed in (
            ("title", set(thresholds)),
            ("reason_text", set(thresholds)),
            ("action", set(thresholds)),
            ("summary_text", SUMMARY_FIELDS.get(summary, set())),
        ):
            unknown = sorted(_template_fields(row.get(column, ""), where, column) - allowed)
            if unknown:
                raise RulesetError(f"{where}: column {column}: unknown placeholder(s) {', '.join(unknown)}")
        for column in ("title", "reason_text", "action"):
            try:
                row.get(column, "").format_map({key: _Number(t.value) for key, t in thresholds.items()})
            except (ValueError, KeyError, IndexError) as error:
                raise RulesetError(f"{where}: column {column}: {error}") from None
        # A history row without a title is an urgency reason only (known_critical_value, clinical-rules §3 v2).
        if kind not in (vocabulary.REASON, vocabulary.HISTORY) and not row["title"]:
            raise RulesetError(f"{where}: title is empty")
        if not row["rule"]:
            raise RulesetError(f"{where}: rule is empty")
        tags = _tags(row["sources"], where, known)
        if not tags:
            raise RulesetError(f"{where}: sources is empty")
        codes.add(code)
        orders.add(int(number))
        if reason:
            reasons.add(reason)
        position = None if not_assessed is None else int(not_assessed)
        out.append(
            FindingSpec(
                code,
                int(number),
                kind,
                family,
                urgency,
                reason,
                row["reason_text"],
                names,
                position,
                summary,
                row["summary_text"],
                row["title"],
                row["rule"],
                tags,
                where,
                action,
            )
        )
    return sorted(out, key=lambda spec: spec.order)


def _load_urgency_actions(
    directory: Path, thresholds: dict[str, Threshold], known: dict[str, str]
) -> dict[str, UrgencyAction]:
    """urgency_actions.csv: the action of each raised urgency (immediate, urgent, soon), once each."""
    path = directory / "urgency_actions.csv"
    out: dict[str, UrgencyAction] = {}
    values = {key: _Number(t.value) for key, t in thresholds.items()}
    for line, row in _rows(path, ("urgency", "action", "source")):
        where = f"{path}:{line}"
        urgency = row["urgency"]
        if urgency not in vocabulary.URGENCY_NAMES or urgency == vocabulary.Urgency.ROUTINE:
            raised = [name for name in vocabulary.URGENCY_NAMES if name != vocabulary.Urgency.ROUTINE]
            raise RulesetError(f"{where}: urgency {urgency!r} is not one of {tuple(raised)}")
        if not row["action"]:
            raise RulesetError(f"{where}: action is empty")
        unknown = sorted(_template_fields(row["action"], where, "action") - set(thresholds))
        if unknown:
            raise RulesetError(f"{where}: column action: unknown placeholder(s) {', '.join(unknown)}")
        try:
            row["action"].format_map(values)
        except (ValueError, KeyError, IndexError) as error:
            raise RulesetError(f"{where}: column action: {error}") from None
        tags = _tags(row["source"], where, known)
        if not tags:
            raise RulesetError(f"{where}: source is empty")
        if urgency in out:
            raise RulesetError(f"{where}: urgency {urgency!r} is listed twice")
        out[urgency] = UrgencyAction(urgency, row["action"], tags, where)
    missing = [u for u in vocabulary.URGENCY_NAMES if u != vocabulary.Urgency.ROUTINE and u not in out]
    if missing:
        raise RulesetError(f"{path}: missing urgency row(s) {', '.join(missing)}")
    return out


def _load_sources(directory: Path) -> dict[str, str]:
    path = directory / "sources.csv"
    return {row["tag"]: row["citation"] for _, row in _rows(path, ("tag", "citation"))}


def _version(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.csv")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return "v1-" + digest.hexdigest()[:12]


def load_ruleset(directory: str | os.PathLike[str] | None = None) -> Ruleset:
    """Read and validate every table; raise RulesetError naming the file and line on any fault."""
    base = Path(directory) if directory is not None else packaged_directory()
    analytes = _load_analytes(base)
    units = _load_units(base, analytes)
    ranges: list[RangeRow] = []
    for name in RANGE_FILES:
        if (base / name).exists() or name == "adults.csv":
            ranges.extend(_load_ranges(base / name, analytes, units))
    _check_overlaps(ranges)
    duffy = _load_ranges(base / DUFFY_FILE, analytes, units)
    _check_overlaps(duffy)
    sources = _load_sources(base)
    thresholds = _load_thresholds(base, analytes, units, sources)
    ctcae = _load_ctcae(base, analytes, units, sources)
    bands = _load_bands(base, sources)
    cutoffs = _load_anemia_cutoffs(base, sources)
    findings = _load_findings(base, thresholds, analytes, sources)
    urgency_actions = _load_urgency_actions(base, thresholds, sources)
    ruleset = Ruleset(
        analytes,
        units,
        thresholds,
        tuple(ranges),
        tuple(duffy),
        tuple(ctcae),
        bands,
        tuple(cutoffs),
        sources,
        _version(base),
        base,
        tuple(findings),
        urgency_actions,
    )
    _check_required(ruleset)
    return ruleset


REQUIRED_THRESHOLDS: tuple[str, ...] = (
    "thrombocytopenia",
    "thrombocytopenia_often_benign",
    "thrombocytosis",
    "neutropenia",
    "neutropenia_duffy_null",
    "duffy_caveat_from",
    "critical_platelets_low",
    "critical_platelets_high",
    "critical_neutrophils_low",
    "critical_hemoglobin_low",
    "critical_wbc_low",
    "critical_wbc_high",
    "marrow_failure_hemoglobin",
    "marrow_failure_neutrophils",
    "marrow_failure_platelets",
    "marrow_failure_min_criteria",
    "aa_neutrophils",
    "aa_platelets",
    "aa_reticulocytes_automated",
    "aa_reticulocytes_manual",
    "aa_min_criteria",
    "aa_very_severe_neutrophils",
    "marrow_cellularity_met",
    "marrow_cellularity_partial_max",
    "marrow_residual_met",
    "febrile_neutropenia",
    "child_age_years",
    "gestational_platelets_from",
    "gestational_platelets_below",
    "gestational_platelets_usual",
    "urgent_lesions_platelets",
    "soon_platelets",
    "soon_neutrophils",
    "hematocrit_bare_fraction",
    "infant_age_days",
    "adult_age_years",
)
#: The rules over the stored history (labservice.core.history; clinical-rules §12 v2).
REQUIRED_THRESHOLDS += (
    "mcv_delta",
    "mcv_delta_hours",
    "hit_fall_two_points",
    "hit_nadir_two_points",
    "hit_fall_zero_points",
    "hit_nadir_zero_points",
    "hit_onset_fall",
    "hit_onset_from_day",
    "hit_onset_to_day",
    "hit_onset_recent_heparin_days",
    "hit_onset_too_early_days",
    "hit_possible_points",
)
REQUIRED_BANDS = (
    "platelet_bleeding_risk",
    "neutropenia_severity",
    "anemia_severity_adult",
    "anemia_severity_child_pregnancy",
    "lesion_size",
    "skin_attribution",
    "skin_escalate",
    "skin_expected",
)


def _check_required(ruleset: Ruleset) -> None:
    missing = [key for key in REQUIRED_THRESHOLDS if key not in ruleset.thresholds]
    if missing:
        raise RulesetError(f"{ruleset.directory / 'thresholds.csv'}: missing key(s) {', '.join(missing)}")
    missing = [key for key in REQUIRED_BANDS if key not in ruleset.bands]
    if missing:
        raise RulesetError(f"{ruleset.directory / 'bands.csv'}: missing scheme(s) {', '.join(missing)}")
    unknown = sorted({row.severity for row in ruleset.anemia_cutoffs} - set(ruleset.bands))
    if unknown:
        raise RulesetError(
            f"{ruleset.directory / 'anemia_cutoffs.csv'}: unknown severity scheme(s) {', '.join(unknown)}"
        )
    if vocabulary.CTCAE_DEFAULT_VERSION not in ruleset.ctcae_versions():
        raise RulesetError(
            f"{ruleset.directory / 'ctcae.csv'}: CTCAE {vocabulary.CTCAE_DEFAULT_VERSION} rows are required"
        )


_DEFAULT: Ruleset | None = None


def default_ruleset() -> Ruleset:
    """The ruleset from LABSERVICE_REFERENCE_RANGES (or the packaged directory), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_ruleset(os.environ.get("LABSERVICE_REFERENCE_RANGES") or None)
    return _DEFAULT


__all__ = ["Ruleset", "RulesetError", "default_ruleset", "load_ruleset", "normalise_unit_key"]
