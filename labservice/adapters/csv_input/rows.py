"""The parsed form of a chunk of CBC rows, and the context columns every shape shares.

`RowErrors` collects messages per row ("line 7, column PLT: 'abc' is not a number"); a row with
any message is not interpreted and keeps its place with the messages joined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from labservice.adapters.collection_time import future_message, latest_collection
from labservice.adapters.csv_input.cells import SEX_TEXTS, TRISTATE_TEXTS, parse_codes, parse_dates, parse_numbers
from labservice.adapters.film_words import grade_words, schistocyte_grade
from labservice.core import vocabulary
from labservice.core.ranges import DAYS_PER_YEAR
from labservice.core.table import SCHISTOCYTE_GRADES, TRISTATE_COLUMNS

MAX_AGE_YEARS = 130.0


def _ctcae_spellings(versions: tuple[str, ...]) -> dict[str, str]:
    """How a CSV cell may name each CTCAE version of the rule tables (ctcae.csv): "5.0", "5", "v5", "v5.0"."""
    spellings: dict[str, str] = {}
    for version in versions:
        major = version.split(".")[0]
        for spelling in (version, major, f"v{major}", f"v{version}"):
            spellings[spelling] = version
    return spellings


CTCAE_VERSIONS = _ctcae_spellings(vocabulary.CTCAE_VERSIONS)
RETICULOCYTE_METHODS = {
    "manual": "manual",
    "automated": "automated",
    "auto": "automated",
    "analyser": "automated",
    "analyzer": "automated",
}


class RowErrors:
    """Messages per row of a chunk, kept sparse (most rows have none)."""

    def __init__(self, lines: np.ndarray) -> None:
        self.lines = lines
        self._messages: dict[int, list[str]] = {}

    def add(self, rows: np.ndarray, column: str | None, reason) -> None:
        """Record `reason` (a string, or a function of the row position) for each row in `rows`."""
        for row in np.flatnonzero(rows) if rows.dtype == bool else rows:
            text = reason(int(row)) if callable(reason) else reason
            where = f"line {int(self.lines[row])}" + (f", column {column}" if column else "")
            self._messages.setdefault(int(row), []).append(f"{where}: {text}")

    def any(self) -> bool:
        return bool(self._messages)

    def column(self, n: int) -> np.ndarray:
        out = np.full(n, None, dtype=object)
        for row, messages in self._messages.items():
            out[row] = "; ".join(messages)
        return out


@dataclass
class ParsedChunk:
    """Rows ready for the engine: the table (error rows included, their values ignored) and per-row texts."""

    table: dict[str, np.ndarray]
    lines: np.ndarray  # int64 input line of each row
    ids: list[np.ndarray]  # raw text of each id column, in the plan's order
    errors: np.ndarray  # object: None, or the row's error message
    notes: np.ndarray  # object: None, or a note (derived or censored values, duplicates)
    censored: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # analyte -> (op, bound)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # unreadable lines placed in this chunk
    censored_columns: dict[str, str] = field(default_factory=dict)  # analyte -> input column of its censored cells
    patient_ids: np.ndarray | None = None  # raw patient id per row, when the file has a patient column
    collected_text: np.ndarray | None = None  # raw collection time per row, when the file has one
    #: line -> the id cells (in the plan's order) of an unreadable line in bad_lines that showed them
    bad_ids: dict[int, list] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.lines)


def quoted(value) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_context(
    frame: pd.DataFrame,
    headers: dict[str, str],
    errors: RowErrors,
    *,
    decimal: str,
    age_factor: float,
    sex_codes: dict[str, str],
    date_order: str | None,
    clock_skew: timedelta | None = None,
) -> dict[str, np.ndarray]:
    """Sex, age (or birth date with collection time), pregnancy and the other context fields.

    `frame` holds raw cells keyed by field name; `headers` gives the input header of each field. With
    `clock_skew`, a collection time more than that ahead of the service's clock is a row error
    (labservice.adapters.collection_time).
    """
    n = len(frame)
    table: dict[str, np.ndarray] = {}
    if "collected_at" in frame and clock_skew is not None:
        _future_collection(frame, headers, errors, date_order, clock_skew)
    if "sex" in frame:
        codes = {**SEX_TEXTS, **{k.strip().casefold(): v for k, v in sex_codes.items()}}
        values, bad = parse_codes(frame["sex"], codes, "unknown")
        errors.add(
            bad,
            headers["sex"],
            lambda r: (
                f"{quoted(frame['sex'].iat[r])} is not a sex code (M, F, male, female, U); "
                "state other codes with sex_codes, e.g. 0=female,1=male"
            ),
        )
        table["sex"] = values
    age = np.full(n, np.nan)
    if "age_years" in frame:
        numbers = parse_numbers(frame["age_years"], decimal)
        age = numbers.values * age_factor
        errors.add(
            numbers.bad | (numbers.censored != 0),
            headers["age_years"],
            lambda r: f"{quoted(frame['age_years'].iat[r])} is not an age",
        )
        errors.add(
            (age < 0) | (age > MAX_AGE_YEARS),
            headers["age_years"],
            lambda r: f"age {frame['age_years'].iat[r]} is outside 0 to {MAX_AGE_YEARS:g} years",
        )
    if "birth_date" in frame:
        age = _age_from_birth(frame, headers, errors, age, date_order)
    table["age_years"] = age
    if "heparin_started_at" in frame:
        table["heparin_started_at"] = _heparin_start(frame, headers, errors, date_order)
    for name in (*TRISTATE_COLUMNS, "heparin_in_previous_30_days"):
        if name in frame:
            values, bad = parse_codes(frame[name], TRISTATE_TEXTS, np.nan)
            errors.add(
                bad,
                headers[name],
                lambda r, name=name: f"{quoted(frame[name].iat[r])} is not yes or no (yes/no, true/false, 1/0)",
            )
            table[name] = values.astype(np.float64)
    _film(frame, headers, errors, decimal, table)
    if "pregnant" in table and "sex" in table:
        errors.add(
            (table["pregnant"] == 1.0) & (np.asarray(table["sex"]) == "male"),
            headers["pregnant"],
            "a male patient cannot be marked pregnant (clinical-rules §8)",
        )
    if "pregnancy_trimester" in frame:
        numbers = parse_numbers(frame["pregnancy_trimester"], decimal)
        wrong = numbers.bad | ~np.isin(numbers.values, (1.0, 2.0, 3.0)) & ~np.isnan(numbers.values)
        errors.add(
            wrong,
            headers["pregnancy_trimester"],
            lambda r: f"{quoted(frame['pregnancy_trimester'].iat[r])} is not a trimester (1, 2 or 3)",
        )
        table["pregnancy_trimester"] = numbers.values
    for name, codes in (("reticulocyte_method", RETICULOCYTE_METHODS), ("ctcae_version", CTCAE_VERSIONS)):
        if name in frame:
            values, bad = parse_codes(frame[name], codes, "")
            errors.add(
                bad,
                headers[name],
                lambda r, name=name, codes=codes: (
                    f"{quoted(frame[name].iat[r])} is not one of {', '.join(sorted(set(codes.values())))}"
                ),
            )
            table[name] = values
    return table


#: Film and PLASMIC context columns (clinical-rules §10 v2): yes/no statements, and numbers with their limits.
FILM_TRISTATES = ("blasts_seen", "platelet_count_confirmed", "active_cancer", "transplant", "haptoglobin_undetectable")
FILM_NUMBERS = {
    "schistocytes_percent": 100.0,
    "inr": 100.0,
    "creatinine_mg_dl": 100.0,
    "indirect_bilirubin_mg_dl": 100.0,
}


def _film(frame: pd.DataFrame, headers: dict[str, str], errors: RowErrors, decimal: str, table: dict) -> None:
    """The blood film and the PLASMIC context, as the JSON adapter reads them (film_words for grades)."""
    for name in FILM_TRISTATES:
        if name in frame:
            values, bad = parse_codes(frame[name], TRISTATE_TEXTS, np.nan)
            errors.add(
                bad,
                headers[name],
                lambda r, name=name: f"{quoted(frame[name].iat[r])} is not yes or no (yes/no, true/false, 1/0)",
            )
            table[name] = values.astype(np.float64)
    for name, most in FILM_NUMBERS.items():
        if name in frame:
            numbers = parse_numbers(frame[name], decimal)
            wrong = numbers.bad | (numbers.censored != 0) | (numbers.values < 0) | (numbers.values > most)
            errors.add(
                wrong,
                headers[name],
                lambda r, name=name, most=most: f"{quoted(frame[name].iat[r])} is not a number from 0 to {most:g}",
            )
            table[name] = numbers.values
    if "schistocytes" in frame:
        texts = frame["schistocytes"]
        missing = texts.isna().to_numpy()
        words = [None if gone else schistocyte_grade(str(text)) for text, gone in zip(texts, missing, strict=True)]
        bad = np.array([word is None for word in words]) & ~missing
        errors.add(
            bad,
            headers["schistocytes"],
            lambda r: (
                f"{quoted(texts.iat[r])} is not a schistocyte grade ({grade_words()}); "
                "send a percentage as schistocytes_percent"
            ),
        )
        table["schistocytes_grade"] = np.array(
            [np.nan if word is None else float(SCHISTOCYTE_GRADES.index(word)) for word in words], dtype=np.float64
        )


def _heparin_start(
    frame: pd.DataFrame, headers: dict[str, str], errors: RowErrors, date_order: str | None
) -> np.ndarray:
    """context.heparin_started_at (clinical-rules §12 v2) as UTC seconds since the epoch, NaN when not given (a time
    without an offset is UTC, as a collection time)."""
    started, bad, ambiguous = parse_dates(frame["heparin_started_at"], date_order)
    _date_errors(frame, "heparin_started_at", headers, errors, bad, ambiguous)
    seconds = started.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    seconds[np.isnat(started)] = np.nan
    return seconds


def _age_from_birth(
    frame: pd.DataFrame, headers: dict[str, str], errors: RowErrors, age: np.ndarray, date_order: str | None
) -> np.ndarray:
    birth, bad, ambiguous = parse_dates(frame["birth_date"], date_order)
    _date_errors(frame, "birth_date", headers, errors, bad, ambiguous)
    needed = np.isnan(age) & ~np.isnat(birth)
    if not needed.any():
        return age
    if "collected_at" not in frame:
        errors.add(needed, headers["birth_date"], "a collection time column is needed to compute age from birth date")
        return age
    collected, bad_c, ambiguous_c = parse_dates(frame["collected_at"], date_order)
    _date_errors(frame, "collected_at", headers, errors, bad_c & needed, ambiguous_c & needed)
    days = (collected.astype("datetime64[D]") - birth.astype("datetime64[D]")).astype(np.float64)
    days[np.isnat(collected) | np.isnat(birth)] = np.nan
    errors.add(needed & (days < 0), headers["birth_date"], "birth date is after the collection time")
    out = age.copy()
    out[needed] = days[needed] / DAYS_PER_YEAR
    return out


def _future_collection(
    frame: pd.DataFrame, headers: dict[str, str], errors: RowErrors, date_order: str | None, skew: timedelta
) -> None:
    """Rows whose collection time is ahead of the clock by more than `skew` (times without an offset are UTC)."""
    collected, _, _ = parse_dates(frame["collected_at"], date_order)
    latest = latest_collection(skew)
    ahead = ~np.isnat(collected) & (collected > np.datetime64(latest.replace(tzinfo=None), "s"))
    errors.add(
        ahead, headers["collected_at"], lambda r: future_message(quoted(frame["collected_at"].iat[r]), latest, skew)
    )


def _date_errors(frame, name, headers, errors, bad, ambiguous) -> None:
    errors.add(bad, headers[name], lambda r: f"{quoted(frame[name].iat[r])} is not a date")
    errors.add(
        ambiguous,
        headers[name],
        lambda r: f"{quoted(frame[name].iat[r])} is ambiguous (day/month or month/day); state date_order DMY or MDY",
    )
