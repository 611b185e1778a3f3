"""How to read a CSV batch: shape, dialect and the explicit mappings for anything unusual.

Every field has a safe default (detect the shape, the delimiter and the decimal mark; recognise
common headers). A mapping document (JSON) sets the same fields, so the command line and the
HTTP upload read files identically:

    {"shape": "long",
     "columns": {"HADM_ID": "sample_id", "CHARTTIME": "collected_at", "ITEMID": "item",
                 "VALUE": "value", "VALUEUOM": "unit"},
     "items": {"51265": "platelets", "51222": "hemoglobin"},
     "units": {"platelets": "K/uL"},
     "sex_codes": {"0": "female", "1": "male"},
     "date_order": "DMY"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

SHAPES = ("auto", "wide", "long")
DATE_ORDERS = ("DMY", "MDY")
SEX_VALUES = ("female", "male", "unknown")
#: Rows per chunk: memory is bounded by the chunk, not by the file.
DEFAULT_CHUNK_ROWS = 100_000


class BatchFileError(ValueError):
    """The file as a whole cannot be read as CBCs (the message says why and names the column or key)."""


class MappingError(BatchFileError):
    """A mapping document or option that cannot be used (names the key)."""


#: Options set by the service, not by the uploader's mapping (nor part of a batch's identity).
NOT_MAPPING_KEYS = frozenset({"chunk_rows", "clock_skew_seconds"})


@dataclass
class BatchOptions:
    """Options for reading one CSV file; empty means "detect" or "not stated"."""

    shape: str = "auto"
    delimiter: str | None = None  # None: detected from the header line
    decimal: str | None = None  # None: "," when the delimiter is ";" and the data use decimal commas
    encoding: str | None = None  # None: UTF-8 (BOM allowed), else Windows-1252, reported in the summary
    columns: dict[str, str] = field(default_factory=dict)  # header -> field (analyte or context)
    units: dict[str, str] = field(default_factory=dict)  # analyte -> unit of its column
    items: dict[str, str] = field(default_factory=dict)  # long shape: item code -> analyte
    item_units: dict[str, str] = field(default_factory=dict)  # long shape: item code -> unit
    sex_codes: dict[str, str] = field(default_factory=dict)  # cell value -> female / male / unknown
    date_order: str | None = None  # slash dates (01/02/2026) are refused unless this is stated
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    #: Seconds a collection time may be ahead of the clock (the service sets its CLOCK_SKEW_SECONDS; not a mapping
    #: key). None: no check (`labservice interpret` reads files offline and stores nothing).
    clock_skew_seconds: int | None = None

    @property
    def clock_skew(self) -> timedelta | None:
        """How far ahead of the service's clock a collection time may be (None: not checked)."""
        return None if self.clock_skew_seconds is None else timedelta(seconds=self.clock_skew_seconds)

    def to_document(self) -> dict[str, Any]:
        """The options as a mapping document (the canonical form hashed into a batch id)."""
        doc: dict[str, Any] = {}
        for spec in fields(self):
            if spec.name in NOT_MAPPING_KEYS:
                continue
            value = getattr(self, spec.name)
            if value not in (None, {}, "auto"):
                doc[spec.name] = value
        return doc


def options_from_document(doc: Any, base: BatchOptions | None = None) -> BatchOptions:
    """Options from a loaded mapping document; MappingError names the first bad key."""
    if not isinstance(doc, dict):
        raise MappingError("the mapping must be a JSON object")
    options = base or BatchOptions()
    known = {spec.name for spec in fields(BatchOptions)} - NOT_MAPPING_KEYS
    for key, value in doc.items():
        if key not in known:
            raise MappingError(f"mapping key {key!r} is not known; known keys: {', '.join(sorted(known))}")
        if key in ("columns", "units", "items", "item_units", "sex_codes"):
            if not isinstance(value, dict) or not all(isinstance(v, str | int) for v in value.values()):
                raise MappingError(f"mapping key {key!r} must be an object of strings")
            getattr(options, key).update({str(k): str(v) for k, v in value.items()})
        elif value is not None and not isinstance(value, str):
            raise MappingError(f"mapping key {key!r} must be a string")
        else:
            setattr(options, key, value)
    check_options(options)
    return options


def check_options(options: BatchOptions) -> None:
    """Reject values that cannot work, naming the option."""
    from labservice.adapters.csv_input.headers import FILM_FIELDS
    from labservice.core.table import ANALYTES

    for key in ("items", "units", "item_units"):
        mapping = getattr(options, key)
        names = mapping.values() if key == "items" else (mapping.keys() if key == "units" else [])
        # A long file's item may also carry a film or PLASMIC field (clinical-rules §10 v2).
        allowed = (*ANALYTES, *FILM_FIELDS) if key == "items" else ANALYTES
        for name in names:
            if name not in allowed and name != "ignore":
                raise MappingError(f"{key} names {name!r}, which is not an analyte; analytes: {', '.join(allowed)}")
    if options.shape not in SHAPES:
        raise MappingError(f"shape must be one of {', '.join(SHAPES)}, not {options.shape!r}")
    if options.date_order is not None and options.date_order.upper() not in DATE_ORDERS:
        raise MappingError(f"date_order must be DMY or MDY, not {options.date_order!r}")
    if options.date_order:
        options.date_order = options.date_order.upper()
    for code, sex in options.sex_codes.items():
        if sex not in SEX_VALUES:
            raise MappingError(f"sex_codes[{code!r}] must be female, male or unknown, not {sex!r}")
    if options.delimiter is not None and len(options.delimiter) != 1:
        raise MappingError("delimiter must be one character")
    if options.decimal is not None and options.decimal not in (".", ","):
        raise MappingError("decimal must be '.' or ','")
    if options.chunk_rows < 1:
        raise MappingError("chunk_rows must be positive")


def load_mapping_text(text: str, base: BatchOptions | None = None) -> BatchOptions:
    """Options from mapping JSON text."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise MappingError(f"the mapping is not valid JSON: {error.msg} at line {error.lineno}") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise MappingError("the mapping is not valid JSON: nested too deeply") from None
    return options_from_document(doc, base)


def load_mapping_file(path: str | Path, base: BatchOptions | None = None) -> BatchOptions:
    """Options from a mapping file: JSON (any key), or CSV `item,analyte[,unit]` (the items only)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() != ".csv":
        return load_mapping_text(text, base)
    import csv
    import io

    options = base or BatchOptions()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"item", "analyte"} <= set(reader.fieldnames):
        raise MappingError(f"{path.name}: an item mapping CSV needs the columns item,analyte[,unit]")
    for row in reader:
        options.items[row["item"].strip()] = row["analyte"].strip()
        if (row.get("unit") or "").strip():
            options.item_units[row["item"].strip()] = row["unit"].strip()
    return options
