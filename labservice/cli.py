"""The `labservice` command: serve the API, check the rule tables."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_WORKERS = 2


def serve(bind: str, workers: int) -> int:
    """Replace this process with gunicorn serving the app factory."""
    scripts = Path(sys.executable).parent
    gunicorn = scripts / "gunicorn"
    executable = str(gunicorn) if gunicorn.exists() else shutil.which("gunicorn")
    if executable is None:
        print("labservice serve: gunicorn is not installed", file=sys.stderr)
        return 1
    argv = [executable, "-w", str(workers), "-b", bind, "labservice.app:create_app()"]
    os.execv(executable, argv)
    return 0  # not reached


def check_ranges(directory: str | None) -> int:
    """Load and validate the rule tables; print OK and the version, or the error with file:line."""
    from labservice.config import load_settings
    from labservice.core.ruleset import RulesetError, load_ruleset

    target = directory or load_settings()["REFERENCE_RANGES"]
    try:
        ruleset = load_ruleset(target)
    except RulesetError as error:
        print(f"labservice check-ranges: {error}", file=sys.stderr)
        return 1
    print(f"OK {ruleset.version} ({ruleset.directory})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labservice", description="Complete blood count interpretation service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the API with gunicorn")
    serve_parser.add_argument("--bind", "-b", default=DEFAULT_BIND,
                              help=f"address to listen on (default {DEFAULT_BIND})")
    serve_parser.add_argument("--workers", "-w", type=int, default=DEFAULT_WORKERS,
                              help=f"worker processes (default {DEFAULT_WORKERS})")

    check_parser = commands.add_parser(
        "check-ranges", help="validate the rule tables (reference_ranges/)")
    check_parser.add_argument(
        "directory", nargs="?", default=None,
        help="directory of rule tables (default: LABSERVICE_REFERENCE_RANGES or reference_ranges/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.bind, args.workers)
    return check_ranges(args.directory)


if __name__ == "__main__":
    sys.exit(main())
