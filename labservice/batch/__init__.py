"""CSV batches: read a file of CBCs in chunks, interpret every row, write CSV or JSON with every row kept."""

from labservice.adapters.csv_input.options import (
    BatchFileError,
    BatchOptions,
    MappingError,
    load_mapping_file,
    load_mapping_text,
    options_from_document,
)
from labservice.batch.runner import run_batch
from labservice.batch.summary import BatchSummary

__all__ = [
    "BatchFileError",
    "BatchOptions",
    "BatchSummary",
    "MappingError",
    "load_mapping_file",
    "load_mapping_text",
    "options_from_document",
    "run_batch",
]
