"""The mappings shipped with labservice (`labservice/batch/mappings/*.json`), found by name: the CLI's
`--mapping mimic-iii-labevents` and the upload's `mapping=mimic-iii-labevents` use the same lookup."""

from __future__ import annotations

import re
from pathlib import Path

BUILTIN_MAPPINGS = Path(__file__).resolve().parent / "mappings"
BUILTIN_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def builtin_mapping_path(name: str) -> Path | None:
    """The file of the built-in mapping `name` names, or None when it names none."""
    name = name.strip()
    path = BUILTIN_MAPPINGS / f"{name}.json"
    return path if BUILTIN_NAME.match(name) and path.is_file() else None
