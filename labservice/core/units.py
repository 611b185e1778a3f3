"""Unit spellings, conversion to canonical units, and the plausibility check with a unit-slip hint.

The conversion factors live in `reference_ranges/units.csv`; this module only matches spellings
and multiplies. A unit it does not know is an error naming the unit, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from labservice.core.ruleset_error import RulesetError

_MICRO_SIGNS = str.maketrans({"µ": "u", "μ": "u", "×": "x"})
#: Superscript digits as a spreadsheet or a word processor writes a power of ten (`x10³/µL`, `×10⁹/L`).
_SUPERSCRIPTS = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def exact_unit_key(unit: str) -> str:
    """A unit spelling with the micro sign as u, the multiplication sign as x, a superscript power as ^ and its
    digits (`x10³/µL` is `x10^3/uL`), and no spaces, case kept (G/L is giga, g/L grams)."""
    plain = _SUPERSCRIPTS.sub(lambda power: "^" + power.group().translate(_SUPERSCRIPT_DIGITS), unit)
    return plain.translate(_MICRO_SIGNS).replace(" ", "")


def normalise_unit_key(unit: str) -> str:
    """The matching key of a unit spelling: case-folded, micro sign as u, no spaces."""
    return exact_unit_key(unit).casefold()


@dataclass(frozen=True)
class UnitSpelling:
    kind: str
    unit: str
    factor: float | None  # None: a known unit that cannot be converted (the note says why)
    note: str
    where: str


@dataclass
class UnitTable:
    """Unit spellings by kind (count_1e9, hemoglobin, ...) with their factor to the canonical unit."""

    _by_kind: dict[str, dict[str, UnitSpelling]] = field(default_factory=dict)
    #: Spellings matched with their case, where two spellings differ only by case (`G/L` giga per
    #: litre, `g/L` grams per litre: clinical-rules §1 v2). Their case-folded key then keeps the
    #: refusal (factor None) if either is one: `g/l` for a count is refused, never read as giga.
    _exact: dict[str, dict[str, UnitSpelling]] = field(default_factory=dict)

    def add(self, kind: str, unit: str, factor: float | None, note: str, where: str) -> None:
        key = normalise_unit_key(unit)
        spellings = self._by_kind.setdefault(kind, {})
        spelling = UnitSpelling(kind, unit, factor, note, where)
        other = spellings.get(key)
        if other is not None and other.factor != factor:
            if exact_unit_key(other.unit) == exact_unit_key(unit):
                raise RulesetError(f"{where}: unit {unit!r} already has another factor ({other.where})")
            exact = self._exact.setdefault(kind, {})
            exact.setdefault(exact_unit_key(other.unit), other)
            exact.setdefault(exact_unit_key(unit), spelling)
            if factor is None:
                spellings[key] = spelling
            return
        spellings.setdefault(key, spelling)

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._by_kind)

    def lookup(self, kind: str, unit: str) -> UnitSpelling | None:
        exact = self._exact.get(kind)
        if exact:
            found = exact.get(exact_unit_key(unit))
            if found is not None:
                return found
        return self._by_kind.get(kind, {}).get(normalise_unit_key(unit))

    def factor(self, kind: str, unit: str) -> float | None:
        spelling = self.lookup(kind, unit)
        return None if spelling is None else spelling.factor

    def spellings(self, kind: str) -> list[UnitSpelling]:
        listed = {id(s): s for s in self._by_kind.get(kind, {}).values()}
        listed.update({id(s): s for s in self._exact.get(kind, {}).values()})
        return list(listed.values())


class UnitError(ValueError):
    """A unit that is unknown for the analyte, or known but not convertible."""


def conversion_factor(ruleset, analyte: str, unit: str | None) -> float:
    """Factor from `unit` to the analyte's canonical unit; None or '' means the canonical unit."""
    info = ruleset.analytes[analyte]
    if unit is None or unit.strip() == "":
        return 1.0
    spelling = ruleset.units.lookup(info.unit_kind, unit)
    if spelling is None:
        known = ", ".join(s.unit for s in ruleset.units.spellings(info.unit_kind) if s.factor is not None)
        raise UnitError(f"unknown unit {unit!r} for {analyte}; accepted units: {known}")
    if spelling.factor is None:
        if spelling.note.startswith("unknown unit"):
            raise UnitError(f"unknown unit {unit!r} for {analyte}: {spelling.note[len('unknown unit') :].lstrip(': ')}")
        raise UnitError(f"unit {unit!r} cannot be used for {analyte}: {spelling.note}")
    return spelling.factor


def to_canonical(ruleset, analyte: str, values: np.ndarray, unit: str | None) -> np.ndarray:
    """Values in `unit` converted to the analyte's canonical unit (vectorised)."""
    return np.asarray(values, dtype=np.float64) * conversion_factor(ruleset, analyte, unit)


def from_canonical(ruleset, analyte: str, values: np.ndarray, unit: str) -> np.ndarray:
    """Canonical values expressed in `unit` (the inverse of to_canonical)."""
    return np.asarray(values, dtype=np.float64) / conversion_factor(ruleset, analyte, unit)


def _within(value: np.ndarray, low: float, low_op: str, high: float, high_op: str) -> np.ndarray:
    above = value > low if low_op == ">" else value >= low
    below = value < high if high_op == "<" else value <= high
    return above & below


def plausible_mask(ruleset, analyte: str, canonical_values: np.ndarray) -> np.ndarray:
    """True where a canonical value is physically plausible for the analyte; NaN counts as plausible."""
    info = ruleset.analytes[analyte]
    values = np.asarray(canonical_values, dtype=np.float64)
    ok = _within(values, info.plausible_min, info.min_op, info.plausible_max, info.max_op)
    return ok | np.isnan(values)


def implausibility_message(ruleset, analyte: str, raw_value: float, unit: str | None) -> str:
    """Say why a value is implausible and which unit it was probably meant in."""
    info = ruleset.analytes[analyte]
    factor = conversion_factor(ruleset, analyte, unit)
    canonical = raw_value * factor
    shown_unit = unit if unit else info.canonical_unit
    if not np.isfinite(canonical):
        return f"{info.label} {raw_value} is not a finite number"
    if canonical < 0:
        return f"{info.label} cannot be negative ({raw_value} {shown_unit})"
    limit = (
        f"{info.min_op.replace('>', 'above').replace('=', ' or equal to')} {info.plausible_min:g}"
        f" and at most {info.plausible_max:g} {info.canonical_unit}"
    )
    message = f"{info.label} {raw_value:g} {shown_unit} is outside physical plausibility (must be {limit})"
    hint = _unit_slip_hint(ruleset, analyte, raw_value, unit)
    return f"{message}; {hint}" if hint else message


def _unit_slip_hint(ruleset, analyte: str, raw_value: float, unit: str | None) -> str:
    """The unit under which the raw number would be plausible and nearest the typical value."""
    info = ruleset.analytes[analyte]
    current = normalise_unit_key(unit) if unit else normalise_unit_key(info.canonical_unit)
    best: tuple[float, str] | None = None
    seen_factors: set[float] = {conversion_factor(ruleset, analyte, unit)}
    for spelling in ruleset.units.spellings(info.unit_kind):
        if spelling.factor is None or spelling.factor in seen_factors:
            continue
        if normalise_unit_key(spelling.unit) == current:
            continue
        seen_factors.add(spelling.factor)
        candidate = raw_value * spelling.factor
        if not plausible_mask(ruleset, analyte, np.array([candidate]))[0] or candidate <= 0:
            continue
        distance = abs(np.log(candidate / info.typical))
        if best is None or distance < best[0]:
            best = (distance, spelling.unit)
    if best is None:
        return ""
    converted = raw_value * conversion_factor(ruleset, analyte, best[1])
    return f"did you mean {best[1]}? ({raw_value:g} {best[1]} = {converted:g} {info.canonical_unit})"
