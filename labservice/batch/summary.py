"""What a batch run reports: rows in and out, rejected rows, counts by urgency and by finding."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

#: How many duplicate examples the summary lists (all are counted, and noted on their rows).
DUPLICATE_EXAMPLES = 20


@dataclass
class BatchSummary:
    shape: str = ""
    encoding: str = ""
    delimiter: str = ""
    decimal: str = ""
    bom: bool = False  # the file began with a UTF-8 byte order mark (the CSV result then does too)
    rows_in: int = 0  # data lines read (wide: CBC rows; long: result rows), blank lines excluded
    rows_out: int = 0  # output rows: one per CBC, and one per unreadable line
    interpreted: int = 0
    rejected: int = 0
    blank_lines: int = 0
    ignored_results: int = 0  # long shape: results for items that are not CBC analytes
    ignored_items: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    duplicate_examples: list[dict[str, Any]] = field(default_factory=list)
    censored_interpreted: int = 0
    stored: int = 0  # CBCs with a patient id newly kept in the database (HTTP uploads; 0 for the command line)
    by_urgency: dict[str, int] = field(default_factory=dict)
    by_finding: dict[str, int] = field(default_factory=dict)
    columns_used: dict[str, str] = field(default_factory=dict)
    columns_ignored: list[str] = field(default_factory=list)
    output_columns: list[str] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the file as a whole (e.g. its encoding)
    ruleset_version: str = ""
    content_sha256: str = ""
    bytes_read: int = 0

    def count_urgency(self, counts: Counter) -> None:
        for name, count in counts.items():
            if count:
                self.by_urgency[name] = self.by_urgency.get(name, 0) + int(count)

    def count_findings(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            if count:
                self.by_finding[name] = self.by_finding.get(name, 0) + int(count)

    def merge(self, part: BatchSummary, first_errors: int) -> None:
        """Add the counts of one chunk (interpreted elsewhere) to this summary."""
        self.rows_out += part.rows_out
        self.interpreted += part.interpreted
        self.rejected += part.rejected
        self.censored_interpreted += part.censored_interpreted
        self.stored += part.stored
        self.count_urgency(Counter(part.by_urgency))
        self.count_findings(part.by_finding)
        self.first_errors.extend(part.first_errors[: max(0, first_errors - len(self.first_errors))])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"{self.rows_out} rows out of {self.rows_in} lines read ({self.shape}): "
            f"{self.interpreted} interpreted, {self.rejected} rejected"
        ]
        if self.by_urgency:
            lines.append("urgency: " + ", ".join(f"{k} {v}" for k, v in self.by_urgency.items()))
        if self.duplicates:
            lines.append(f"duplicates: {self.duplicates}")
        if self.ignored_results:
            lines.append(f"ignored results (items not mapped to an analyte): {self.ignored_results}")
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        lines.extend(f"  {error}" for error in self.first_errors)
        if self.rejected > len(self.first_errors):
            more = self.rejected - len(self.first_errors)
            lines.append(f"  ... and {more} more rejected rows (see the error column)")
        return "\n".join(lines)
