"""Wide files: one row per CBC, one column per analyte → ParsedChunk per chunk of records."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.adapters.csv_input.cells import parse_numbers
from labservice.adapters.csv_input.headers import CONTEXT_FIELDS
from labservice.adapters.csv_input.options import BatchOptions
from labservice.adapters.csv_input.plan import ColumnPlan
from labservice.adapters.csv_input.reader import RecordChunk
from labservice.adapters.csv_input.rows import ParsedChunk, RowErrors, parse_context, quoted
from labservice.core.numbers import round_sig
from labservice.core.ruleset import Ruleset
from labservice.core.units import implausibility_message, plausible_mask


def numeric_columns(plan: ColumnPlan) -> set[int]:
    """Columns the reader should parse as numbers (the others are read as text)."""
    names = [*plan.analytes, "age_years", "pregnancy_trimester"]
    names += [f"{a}_ref_{side}" for a in plan.analytes for side in ("low", "high")]
    return {plan.fields[name] for name in names if name in plan.fields}


def canonical(values: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """Values in canonical units: as sent without a conversion, else rounded to 6 significant figures
    before any comparison (clinical-rules §1 v2: exact on bounds, the same on every path; 82 g/L x 0.1
    is 8.2, not 8.200000000000001)."""
    if np.isscalar(factor) and factor == 1.0:
        return values
    return round_sig(values * factor)


def bare_hematocrit_fraction(rs: Ruleset, values: np.ndarray) -> np.ndarray:
    """A haematocrit sent with no unit and at most 1 is a fraction, x 100 (clinical-rules §1), as on the JSON
    path, the result rounded to 6 significant figures like every conversion (§1 v2)."""
    fraction = values <= rs.value("hematocrit_bare_fraction")
    if not fraction.any():
        return values
    return np.where(fraction, round_sig(values * 100.0), values)


def parse_analyte(
    rs: Ruleset,
    analyte: str,
    column: pd.Series,
    header: str,
    unit: str | None,
    factor: float,
    decimal: str,
    errors: RowErrors,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Canonical values of one analyte column; bad and implausible cells become row errors."""
    numbers = parse_numbers(column, decimal)
    errors.add(numbers.bad, header, lambda r: f"{quoted(column.iat[r])} is not a number")
    values = canonical(numbers.values, factor)
    if analyte == "hematocrit" and not unit:
        values = bare_hematocrit_fraction(rs, values)
    implausible = ~plausible_mask(rs, analyte, values)
    errors.add(implausible, header, lambda r: implausibility_message(rs, analyte, float(numbers.values[r]), unit))
    censored = None
    if numbers.bound is not None:
        bound = canonical(numbers.bound, factor)
        wrong = (numbers.censored != 0) & ~plausible_mask(rs, analyte, bound)
        errors.add(wrong, header, lambda r: f"censored value {quoted(column.iat[r])} is outside physical plausibility")
        censored = (numbers.censored, bound)
    return values, censored


def parse_wide_chunk(
    records: RecordChunk, plan: ColumnPlan, options: BatchOptions, dialect_decimal: str, rs: Ruleset
) -> ParsedChunk:
    """One chunk of a wide file → ParsedChunk (values in canonical units, one error text per bad row)."""
    frame, lines = records.frame, records.lines
    n = len(frame)
    errors = RowErrors(lines)
    table: dict[str, np.ndarray] = {}
    censored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sent = np.zeros(n, dtype=bool)
    for analyte in plan.analytes:
        column = frame[plan.fields[analyte]]
        values, cens = parse_analyte(
            rs,
            analyte,
            column,
            plan.header_of(analyte),
            plan.units[analyte],
            plan.factors[analyte],
            dialect_decimal,
            errors,
        )
        table[analyte] = values
        sent |= column.notna().to_numpy()
        if cens is not None:
            censored[analyte] = cens
        for side in ("low", "high"):
            name = f"{analyte}_ref_{side}"
            if name in plan.fields:
                bound = parse_numbers(frame[plan.fields[name]], dialect_decimal)
                errors.add(
                    bound.bad | (bound.censored != 0),
                    plan.header_of(name),
                    lambda r, name=name: f"{quoted(frame[plan.fields[name]].iat[r])} is not a number",
                )
                table[name] = canonical(bound.values, plan.factors[analyte])
    errors.add(~sent, None, "no analyte value in this row")
    context = pd.DataFrame(
        {name: frame[plan.fields[name]] for name in CONTEXT_FIELDS if name in plan.fields}, index=frame.index
    )
    headers = {name: plan.header_of(name) for name in context.columns}
    table.update(
        parse_context(
            context,
            headers,
            errors,
            decimal=dialect_decimal,
            age_factor=plan.age_factor,
            sex_codes=options.sex_codes,
            date_order=options.date_order,
            clock_skew=options.clock_skew,
        )
    )
    ids = [frame[i].to_numpy(dtype=object) for i in plan.id_columns]
    patient, collected = plan.id_position("patient_id"), plan.id_position("collected_at")
    return ParsedChunk(
        table,
        lines,
        ids,
        errors.column(n),
        np.full(n, None, dtype=object),
        censored,
        records.bad_lines,
        {analyte: plan.header_of(analyte) for analyte in censored},
        None if patient is None else ids[patient],
        None if collected is None else ids[collected],
        {line: [cells[i] for i in plan.id_columns] for line, cells in records.bad_cells.items()},
    )
