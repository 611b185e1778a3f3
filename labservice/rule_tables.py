"""Where the shipped rule tables are: the one resolver every reader of the default tables goes through.

The tables are reviewed in the repository's top-level `reference_ranges/` and shipped inside the package as
`labservice.reference_ranges` (pyproject.toml maps that directory there), so a wheel installed anywhere
carries them and an editable checkout reads the reviewed files themselves. `importlib.resources` finds the
package in both cases; a path built from a module's own location (`parents[2] / "reference_ranges"`) would
find them only in a checkout. LABSERVICE_REFERENCE_RANGES (labservice.config) can still name a laboratory's
own copy; this module knows only the shipped one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

PACKAGE = "labservice.reference_ranges"


@cache
def packaged_directory() -> Path:
    """The directory of the shipped rule tables (a real directory: the loader reads files and globs them)."""
    try:
        found = resources.files(PACKAGE)
    except ModuleNotFoundError:  # an editable install made before the tables became a package
        raise RuntimeError(
            f"{PACKAGE} is not installed: reinstall labservice (python3 tasks.py test does it in "
            "a checkout, or pip install -e .)"
        ) from None
    if not isinstance(found, Path):  # e.g. imported from a zip file: the tables need a directory on disk
        raise RuntimeError(
            f"the rule tables of {PACKAGE} are not in a directory ({found!r}); install labservice "
            "unzipped, or point LABSERVICE_REFERENCE_RANGES at a copy of reference_ranges/"
        )
    return found
