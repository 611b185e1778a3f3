"""Long files: one row per result (id, time, item, value, unit) → CBCs grouped by id and time.

Results are read chunk by chunk into compact arrays (about 40 bytes per result; item texts,
units and ids are not kept), so a CBC whose results are spread over the file is still one CBC.
Items resolve through the `items` mapping, then LOINC codes, then common names; results for
items that are not CBC analytes are counted as ignored. CBCs come out in order of their first
result; a result that cannot be read makes its CBC an error row naming the result's line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from labservice.adapters.csv_input.cells import parse_numbers
from labservice.adapters.csv_input.headers import FILM_FIELDS, field_for_name, name_key
from labservice.adapters.csv_input.options import BatchOptions
from labservice.adapters.csv_input.plan import ColumnPlan
from labservice.adapters.csv_input.reader import RecordChunk
from labservice.adapters.csv_input.rows import ParsedChunk, RowErrors, parse_context, quoted
from labservice.adapters.csv_input.wide import bare_hematocrit_fraction, canonical
from labservice.adapters.film_words import SCHISTOCYTE_LOINC, grade_words, schistocyte_grade
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES
from labservice.core.units import UnitError, conversion_factor, implausibility_message, plausible_mask

#: Context fields a long file may carry on its result rows; a CBC takes the first value given.
LONG_CONTEXT = (
    "sex",
    "age_years",
    "birth_date",
    "collected_at",
    "pregnant",
    "fever",
    "duffy_null",
    "myelosuppressive_therapy",
    "heparin_started_at",
    "heparin_in_previous_30_days",
)
NO_ANALYTE = -1


def film_item_resolver(options: BatchOptions):
    """item text → the film or PLASMIC field it carries (clinical-rules §10 v2), or None: by the `items`
    mapping, the schistocyte LOINC code, then the field's common names."""
    explicit = {name_key(k): v for k, v in options.items.items()}
    cache: dict[str, str | None] = {}

    def resolve(item: str) -> str | None:
        if item not in cache:
            name = explicit.get(name_key(item)) or ("schistocytes" if item.strip() in SCHISTOCYTE_LOINC else None)
            name = name or field_for_name(item)
            cache[item] = name if name in FILM_FIELDS else None
        return cache[item]

    return resolve


def item_resolver(options: BatchOptions, rs: Ruleset):
    """item text → analyte index in ANALYTES (or NO_ANALYTE), cached per distinct item."""
    by_loinc = rs.analyte_by_loinc()
    explicit = {name_key(k): v for k, v in options.items.items()}
    cache: dict[str, int] = {}

    def resolve(item: str) -> int:
        if item in cache:
            return cache[item]
        key = name_key(item)
        name = explicit.get(key) or by_loinc.get(item.strip()) or field_for_name(item)
        cache[item] = ANALYTES.index(name) if name in ANALYTES else NO_ANALYTE
        return cache[item]

    return resolve


@dataclass
class LongResults:
    """Every mapped result of the file, grouped by CBC key (group numbers in order of first appearance)."""

    group: list[np.ndarray] = field(default_factory=list)
    analyte: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    censored: list[np.ndarray] = field(default_factory=list)
    bound: list[np.ndarray] = field(default_factory=list)
    line: list[np.ndarray] = field(default_factory=list)
    errors: dict[int, list[str]] = field(default_factory=dict)  # group -> messages
    keys: dict[str, int] = field(default_factory=dict)
    group_ids: list[list] = field(default_factory=list)  # per id column: raw text per group
    group_context: dict[str, list] = field(default_factory=dict)
    missing_id: list[bool] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    film: dict[str, dict[int, object]] = field(default_factory=dict)  # film field -> group -> first value sent
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    bad_ids: dict[int, list] = field(default_factory=dict)  # line -> id cells an unreadable line showed
    blank_lines: int = 0
    results_read: int = 0


class LongFile:
    """Reads every chunk, then yields ParsedChunks of CBCs in order of first appearance."""

    def __init__(self, plan: ColumnPlan, options: BatchOptions, decimal: str, rs: Ruleset) -> None:
        self.plan, self.options, self.decimal, self.rs = plan, options, decimal, rs
        self.resolve = item_resolver(options, rs)
        self.resolve_film = film_item_resolver(options)
        #: (CBC key, film field) -> (value, item, line) of its first result
        self._film_pending: dict[tuple[str, str], tuple[object, str, int]] = {}
        self.results = LongResults(group_ids=[[] for _ in plan.id_columns])
        self.context_fields = [f for f in LONG_CONTEXT if f in plan.fields]
        self.results.group_context = {f: [] for f in self.context_fields}
        self._factors: dict[tuple[int, str], float | str] = {}
        self.duplicates = 0  # (CBC, analyte) pairs sent more than once

    # -- reading ----------------------------------------------------------------------------

    def add(self, records: RecordChunk) -> None:
        res = self.results
        res.bad_lines.extend(records.bad_lines)
        res.bad_ids.update(
            {line: [cells[i] for i in self.plan.id_columns] for line, cells in records.bad_cells.items()}
        )
        res.blank_lines += records.blank_lines
        frame, lines = records.frame, records.lines
        res.results_read += len(frame) + len(records.bad_lines)
        if frame.empty:
            return
        items = frame[self.plan.fields["item"]].astype(object).fillna("").astype(str).str.strip()
        uniques, inverse = np.unique(items.to_numpy(dtype=object).astype(str), return_inverse=True)
        codes = np.array([self.resolve(u) for u in uniques], dtype=np.int16)[inverse]
        ignored = codes == NO_ANALYTE
        if ignored.any():
            film_fields = np.array([self.resolve_film(u) for u in uniques], dtype=object)[inverse]
            film_rows = np.flatnonzero(ignored & (film_fields != None))  # noqa: E711 (elementwise)
            if film_rows.size:
                self._film(frame.iloc[film_rows], film_fields[film_rows], lines[film_rows])
                ignored[film_rows] = False
                codes = codes.copy()
                codes[film_rows] = NO_ANALYTE - 1  # kept out of the analyte arrays below
        if ignored.any():
            res.ignored.update(items[ignored].value_counts().to_dict())
        keep = np.flatnonzero(~ignored & (codes >= 0))
        if keep.size == 0:
            return
        frame, lines, codes = frame.iloc[keep], lines[keep], codes[keep]
        groups = self._groups(frame)
        values, censored, bound, row_errors = self._values(frame, codes, lines)
        res.group.append(groups)
        res.analyte.append(codes.astype(np.int8))
        res.value.append(values)
        res.censored.append(censored)
        res.bound.append(bound)
        res.line.append(lines)
        for row, message in row_errors.items():
            res.errors.setdefault(int(groups[row]), []).append(message)

    def _film(self, frame: pd.DataFrame, fields: np.ndarray, lines: np.ndarray) -> None:
        """Film results (a graded schistocyte text, blasts seen, ...): the first value per CBC key, joined to
        the CBC of that key once the whole file is read (a key with no count is not a CBC: its film
        results are counted as ignored), and parsed with the wide columns' rules when the chunk is built."""
        keys, missing = self._keys(frame)
        values = frame[self.plan.fields["value"]].to_numpy(dtype=object)
        items = frame[self.plan.fields["item"]].astype(object).fillna("").astype(str).str.strip().to_numpy()
        for key, gone, name, value, item, line in zip(keys, missing, fields, values, items, lines, strict=True):
            if gone or value is None or value != value:
                continue
            self._film_pending.setdefault((str(key), str(name)), (value, str(item), int(line)))

    def film_fields(self) -> list[str]:
        """The film fields read for at least one CBC (joins the film results to their CBCs, once)."""
        res = self.results
        for (key, name), (value, item, line) in self._film_pending.items():
            number = res.keys.get(key)
            if number is None:
                res.ignored[item] += 1
            elif name == "schistocytes" and schistocyte_grade(str(value)) is None:
                res.errors.setdefault(number, []).append(
                    f"line {line}, column {self.plan.header_of('value')}: {quoted(value)} is not a schistocyte "
                    f"grade ({grade_words()})"
                )
            else:
                res.film.setdefault(name, {}).setdefault(number, value)
        self._film_pending.clear()
        return sorted(res.film)

    def _keys(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The CBC key text of each row (ids and collection time) and where every id is missing."""
        plan = self.plan
        id_fields = [f for f in ("patient_id", "sample_id") if f in plan.fields]
        id_text = [frame[plan.fields[f]].astype(object) for f in id_fields]
        missing = np.logical_and.reduce([t.isna().to_numpy() for t in id_text])
        key = id_text[0].fillna("").astype(str)
        for extra in id_text[1:]:
            key = key + "\x1f" + extra.fillna("").astype(str)
        if "collected_at" in plan.fields:
            key = key + "\x1e" + frame[plan.fields["collected_at"]].astype(object).fillna("").astype(str).str.strip()
        return key.to_numpy(dtype=object), missing

    def _groups(self, frame: pd.DataFrame) -> np.ndarray:
        res, plan = self.results, self.plan
        key_array, missing = self._keys(frame)
        first_rows = pd.Series(np.arange(len(key_array))).groupby(key_array, sort=False).first()
        groups_of_key: dict[str, int] = {}
        for text, row in first_rows.items():
            text, row = str(text), int(row)
            number = res.keys.get(text)
            if number is None:
                number = len(res.keys)
                res.keys[text] = number
                for position, column in enumerate(plan.id_columns):
                    res.group_ids[position].append(frame[column].iat[row])
                for name in self.context_fields:
                    res.group_context[name].append(None)
                res.missing_id.append(bool(missing[row]))
            groups_of_key[text] = number
        groups = pd.Series(key_array).map(groups_of_key).to_numpy(dtype=np.int64)
        for name in self.context_fields:
            context_column = frame[plan.fields[name]].astype(object)
            given = context_column.notna().to_numpy()
            if not given.any():
                continue
            firsts = pd.Series(context_column.to_numpy()[given]).groupby(groups[given], sort=False).first()
            store = res.group_context[name]
            for group, value in firsts.items():
                if store[int(group)] is None:  # type: ignore[call-overload]
                    store[int(group)] = value  # type: ignore[call-overload]
        return groups

    def _values(self, frame: pd.DataFrame, codes: np.ndarray, lines: np.ndarray):
        plan, rs = self.plan, self.rs
        value_header = plan.header_of("value")
        column = frame[plan.fields["value"]]
        numbers = parse_numbers(column, self.decimal)
        units = self._units(frame, codes)
        unit_keys, unit_inverse = np.unique(units.astype(str), return_inverse=True)
        factors = np.ones(len(frame))
        problems: dict[int, str] = {}
        pair_codes = codes.astype(np.int64) * len(unit_keys) + unit_inverse
        for pair in np.unique(pair_codes):
            analyte = ANALYTES[pair // len(unit_keys)]
            unit = str(unit_keys[pair % len(unit_keys)])
            factor = self._factor(analyte, unit)
            rows = pair_codes == pair
            if isinstance(factor, str):
                for row in np.flatnonzero(rows):
                    problems[int(row)] = f"line {int(lines[row])}, column {self._unit_header()}: {factor}"
                factors[rows] = np.nan
            else:
                factors[rows] = factor
        values = np.where(factors == 1.0, numbers.values, canonical(numbers.values, factors))
        hct = (codes == ANALYTES.index("hematocrit")) & (units == "")
        if hct.any():  # a bare haematocrit fraction, as on the JSON path (clinical-rules §1)
            values = np.where(hct, bare_hematocrit_fraction(rs, values), values)
        for row in np.flatnonzero(numbers.bad):
            problems.setdefault(
                int(row),
                f"line {int(lines[row])}, column {value_header}: {quoted(column.iat[int(row)])} is not a number",
            )
        for code in np.unique(codes):
            analyte = ANALYTES[code]
            rows = codes == code
            wrong = rows & ~plausible_mask(rs, analyte, values) & ~np.isnan(factors)
            for row in np.flatnonzero(wrong):
                given_unit: str | None = units[row] or None
                problems.setdefault(
                    int(row),
                    f"line {int(lines[row])}, column {value_header}: "
                    + implausibility_message(rs, analyte, float(numbers.values[row]), given_unit),
                )
        bound = (
            np.full(len(frame), np.nan)
            if numbers.bound is None
            else np.where(factors == 1.0, numbers.bound, canonical(numbers.bound, factors))
        )
        return values, numbers.censored, bound, problems

    def _unit_header(self) -> str:
        return self.plan.header_of("unit") if "unit" in self.plan.fields else "unit"

    def _units(self, frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
        n = len(frame)
        units = np.full(n, "", dtype=object)
        if "unit" in self.plan.fields:
            given = frame[self.plan.fields["unit"]].astype(object)
            units = given.fillna("").astype(str).str.strip().to_numpy(dtype=object)
        missing = units == ""
        if missing.any() and (self.options.item_units or self.options.units):
            items = frame[self.plan.fields["item"]].astype(object).fillna("").astype(str).str.strip()
            by_item = {name_key(k): v for k, v in self.options.item_units.items()}
            for row in np.flatnonzero(missing):
                unit = by_item.get(name_key(str(items.iat[int(row)]))) or self.options.units.get(ANALYTES[codes[row]])
                if unit:
                    units[row] = unit
        return units

    def _factor(self, analyte: str, unit: str) -> float | str:
        key = (ANALYTES.index(analyte), unit)
        if key not in self._factors:
            try:
                self._factors[key] = conversion_factor(self.rs, analyte, unit or None)
            except UnitError as error:
                self._factors[key] = str(error)
        return self._factors[key]

    # -- grouping ---------------------------------------------------------------------------

    def analytes(self) -> list[str]:
        seen: Any = np.unique(np.concatenate(self.results.analyte)) if self.results.analyte else []
        return [ANALYTES[int(code)] for code in seen]

    def chunks(self, chunk_rows: int) -> Iterator[ParsedChunk]:
        res = self.results
        self.film_fields()
        count = len(res.keys)
        if res.group:
            group = np.concatenate(res.group)
            analyte = np.concatenate(res.analyte)
            value = np.concatenate(res.value)
            censored = np.concatenate(res.censored)
            bound = np.concatenate(res.bound)
            line = np.concatenate(res.line)
        else:
            group = analyte = censored = line = np.zeros(0, dtype=np.int64)
            value = bound = np.zeros(0)
        first_line = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_line, group, line)
        tables, notes = self._pivot(group, analyte, value, censored, bound, line, count)
        order_bad = sorted(res.bad_lines)
        bad_index = 0
        for start in range(0, count, chunk_rows):
            stop = min(start + chunk_rows, count)
            lines = first_line[start:stop]
            extra = []
            while bad_index < len(order_bad) and (stop == count or order_bad[bad_index][0] < lines[-1]):
                extra.append(order_bad[bad_index])
                bad_index += 1
            yield self._chunk(start, stop, lines, tables, notes, extra)
        if bad_index < len(order_bad) or count == 0:
            yield self._chunk(0, 0, np.zeros(0, dtype=np.int64), tables, notes, order_bad[bad_index:])

    def _pivot(self, group, analyte, value, censored, bound, line, count):
        res = self.results
        tables: dict[str, np.ndarray] = {}
        notes: dict[int, list[str]] = {}
        for code in np.unique(analyte):
            name = ANALYTES[int(code)]
            rows = analyte == code
            g, v, ln = group[rows], value[rows], line[rows]
            seen = np.bincount(g, minlength=count)
            low = np.full(count, np.inf)
            high = np.full(count, -np.inf)
            np.minimum.at(low, g, np.where(np.isnan(v), np.inf, v))
            np.maximum.at(high, g, np.where(np.isnan(v), -np.inf, v))
            column = np.where(np.isfinite(low), low, np.nan)
            tables[name] = column
            self.duplicates += int(np.count_nonzero(seen > 1))
            for number in np.flatnonzero(seen > 1):
                where = ", ".join(str(int(x)) for x in np.sort(ln[g == number]))
                if low[number] != high[number]:
                    res.errors.setdefault(int(number), []).append(
                        f"lines {where}: different values for {name} in one CBC"
                    )
                else:
                    notes.setdefault(int(number), []).append(f"{name} sent more than once (lines {where})")
            cens_rows = censored[rows] != 0
            if cens_rows.any():
                op = np.zeros(count, dtype=np.int8)
                bnd = np.full(count, np.nan)
                op[g[cens_rows]] = censored[rows][cens_rows]
                bnd[g[cens_rows]] = bound[rows][cens_rows]
                tables[f"__censored_{name}"] = op
                tables[f"__bound_{name}"] = bnd
        return tables, notes

    def _chunk(self, start, stop, lines, tables, notes, bad_lines) -> ParsedChunk:
        res, plan = self.results, self.plan
        n = stop - start
        errors = RowErrors(lines)
        table = {name: column[start:stop] for name, column in tables.items() if not name.startswith("__")}
        censored = {
            name[len("__censored_") :]: (tables[name][start:stop], tables["__bound_" + name[11:]][start:stop])
            for name in tables
            if name.startswith("__censored_")
        }
        missing = np.asarray(res.missing_id[start:stop], dtype=bool)
        id_headers = " / ".join(plan.header_of(f) for f in ("patient_id", "sample_id") if f in plan.fields)
        errors.add(missing, id_headers, "no id: the results cannot be grouped into a CBC")
        context = pd.DataFrame(
            {name: pd.Series(res.group_context[name][start:stop], dtype=object) for name in self.context_fields}
        )
        context.index = pd.RangeIndex(n)
        headers = {name: plan.header_of(name) for name in self.context_fields}
        for name, by_group in res.film.items():
            context[name] = pd.Series([by_group.get(number) for number in range(start, stop)], dtype=object)
            headers[name] = f"{plan.header_of('value')} ({name})"
        table.update(
            parse_context(
                context,
                headers,
                errors,
                decimal=self.decimal,
                age_factor=plan.age_factor,
                sex_codes=self.options.sex_codes,
                date_order=self.options.date_order,
                clock_skew=self.options.clock_skew,
            )
        )
        error_column = errors.column(n)
        for number in range(start, stop):
            if number in res.errors:
                own = "; ".join(res.errors[number])
                error_column[number - start] = (
                    own if error_column[number - start] is None else (error_column[number - start] + "; " + own)
                )
        note_column = np.full(n, None, dtype=object)
        for number, texts in notes.items():
            if start <= number < stop:
                note_column[number - start] = "; ".join(texts)
        ids = [np.asarray(values[start:stop], dtype=object) for values in res.group_ids]
        patient, collected = plan.id_position("patient_id"), plan.id_position("collected_at")
        return ParsedChunk(
            table,
            lines,
            ids,
            error_column,
            note_column,
            censored,
            bad_lines,
            {analyte: plan.header_of("value") for analyte in censored},
            None if patient is None else ids[patient],
            None if collected is None else ids[collected],
            {line: res.bad_ids[line] for line, _ in bad_lines if line in res.bad_ids},
        )
