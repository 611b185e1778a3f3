"""The engine imports no web or database framework (design.md, "One engine")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = ("flask", "marshmallow", "sqlalchemy", "flask_smorest", "werkzeug")


def test_core_interpret_imports_no_framework():
    code = (
        "import sys\n"
        "import labservice.core.interpret\n"
        f"print(','.join(name for name in {FORBIDDEN!r} if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True, cwd=ROOT)
    assert completed.stdout.strip() == ""
