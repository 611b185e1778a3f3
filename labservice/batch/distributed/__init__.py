"""The engine on a Dask cluster: Parquet in (a file, a directory or a glob of parts), Parquet parts out.

Needs the optional extra `labservice[distributed]` (dask[dataframe], distributed, pyarrow); `missing_extra()`
says what to install when it is not there. Everything else imports the modules below only after that check.
"""

from __future__ import annotations

import glob
import importlib.util
import os

EXTRA_MODULES = ("dask", "dask.dataframe", "distributed", "pyarrow")
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
INSTALL_HINT = "pip install 'labservice[distributed]'"


def missing_extra() -> str | None:
    """None when the distributed extra is installed; otherwise a sentence naming what is missing and the fix."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or hidden (sys.modules[name] = None)
            found = False
        if not found:
            missing.append(name.split(".")[0])
    if not missing:
        return None
    names = ", ".join(dict.fromkeys(missing))
    return (
        f"Parquet files and Dask clusters need the optional extra 'distributed' ({names} not installed): {INSTALL_HINT}"
    )


def is_parquet_input(spec: str) -> bool:
    """A Parquet file, a directory (of Parquet parts), or a glob of them (a file that exists is taken by its name,
    even when its name holds glob characters such as `[`)."""
    if spec.lower().endswith(PARQUET_SUFFIXES) or os.path.isdir(spec):
        return True
    return not os.path.exists(spec) and glob.has_magic(spec)
