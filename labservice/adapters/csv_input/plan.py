"""Which column holds what: the header resolved against the common names and the explicit mapping.

Problems that concern every row (an unknown unit in a header, two columns for one analyte, no
analyte at all) make the file unusable and are reported once, naming the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labservice.adapters.csv_input.headers import (
    AGE_UNITS,
    FIELDS,
    ID_FIELDS,
    IGNORE,
    name_key,
    resolve_header,
)
from labservice.adapters.csv_input.options import BatchFileError, BatchOptions, MappingError
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES
from labservice.core.units import UnitError, conversion_factor


@dataclass
class ColumnPlan:
    shape: str  # "wide" or "long"
    header: list[str]
    fields: dict[str, int]  # field -> column index
    units: dict[str, str | None] = field(default_factory=dict)  # analyte -> unit of its column (wide)
    factors: dict[str, float] = field(default_factory=dict)  # analyte -> factor to canonical (wide)
    age_factor: float = 1.0
    id_columns: list[int] = field(default_factory=list)  # indexes of the id columns, in file order
    ignored: list[str] = field(default_factory=list)

    @property
    def analytes(self) -> list[str]:
        """Analyte columns of a wide file, in the engine's order."""
        return [a for a in ANALYTES if a in self.fields]

    def id_position(self, name: str) -> int | None:
        """Where the column of an id field is among id_columns (None when the file has no such column)."""
        return self.id_columns.index(self.fields[name]) if name in self.fields else None

    def header_of(self, name: str) -> str:
        return self.header[self.fields[name]]

    def used(self) -> dict[str, str]:
        return {self.header[i]: name for name, i in sorted(self.fields.items(), key=lambda kv: kv[1])}


def _explicit(options: BatchOptions) -> dict[str, str]:
    for target in options.columns.values():
        if target not in FIELDS:
            raise MappingError(f"the columns mapping names an unknown field {target!r}; fields: {', '.join(FIELDS)}")
    return {name_key(header): target for header, target in options.columns.items()}


def plan_columns(header: list[str], options: BatchOptions, ruleset: Ruleset) -> ColumnPlan:
    """Resolve every header; raise BatchFileError for problems that concern the whole file."""
    explicit = _explicit(options)
    fields: dict[str, int] = {}
    header_units: dict[str, str | None] = {}
    ignored: list[str] = []
    for index, title in enumerate(header):
        target = explicit.get(name_key(title))
        unit = None
        if target is None:
            target, unit = resolve_header(title)
        if target is None or target == IGNORE:
            ignored.append(title or f"(column {index + 1})")
            continue
        if target in fields:
            other = header[fields[target]]
            raise BatchFileError(f"columns {other!r} and {title!r} both hold {target}; map one of them to 'ignore'")
        fields[target] = index
        header_units[target] = unit
    for wanted in options.columns:
        if name_key(wanted) not in {name_key(h) for h in header}:
            raise MappingError(f"the columns mapping names {wanted!r}, which is not a column of this file")
    shape = _shape(fields, options)
    plan = ColumnPlan(shape, header, fields, ignored=ignored)
    plan.id_columns = sorted(fields[f] for f in ID_FIELDS if f in fields)
    if "age_years" in fields and (age_unit := header_units.get("age_years")):
        unit = age_unit.casefold()
        if unit not in AGE_UNITS:
            raise BatchFileError(
                f"column {plan.header_of('age_years')!r}: unknown age unit {header_units['age_years']!r}"
            )
        plan.age_factor = AGE_UNITS[unit]
    if shape == "wide":
        for analyte in plan.analytes:
            unit = header_units.get(analyte) or options.units.get(analyte)
            try:
                plan.factors[analyte] = conversion_factor(ruleset, analyte, unit)
            except UnitError as error:
                raise BatchFileError(f"column {plan.header_of(analyte)!r}: {error}") from None
            plan.units[analyte] = unit
    return plan


def _shape(fields: dict[str, int], options: BatchOptions) -> str:
    has_analytes = any(a in fields for a in ANALYTES)
    is_long = "item" in fields and "value" in fields
    shape = options.shape
    if shape == "auto":
        shape = "long" if is_long and not has_analytes else "wide"
    if shape == "long":
        missing = [name for name in ("item", "value") if name not in fields]
        if missing:
            raise BatchFileError(
                f"a long file needs {' and '.join(missing)} column(s) (one row per result: id, time, item, value, unit)"
            )
        if not any(f in fields for f in ("patient_id", "sample_id")):
            raise BatchFileError("a long file needs a patient or sample id column to group results into CBCs")
    elif not has_analytes:
        raise BatchFileError(
            "no column holds a CBC analyte (recognised names include PLT, WBC, HGB, NEUT#); "
            "name the columns with the columns mapping"
        )
    return shape
