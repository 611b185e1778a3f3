"""The `labservice` command: serve the API, interpret a CSV file, check the rule tables."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from labservice import __version__, mllp

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_WORKERS = 2


def serve(bind: str, workers: int, job_worker: bool = True) -> int:
    """The buffering front on `bind` (labservice.serving.front), which runs gunicorn serving the app factory behind
    it (slow clients cannot hold a worker, and overload is refused by queue time), and, beside it, the batch job
    worker (`labservice worker`): both stop when either does, or on SIGINT/SIGTERM."""
    scripts = Path(sys.executable).parent
    gunicorn = scripts / "gunicorn"
    executable = str(gunicorn) if gunicorn.exists() else shutil.which("gunicorn")
    if executable is None:
        print("labservice serve: gunicorn is not installed", file=sys.stderr)
        return 1
    argv = [
        executable,
        "-c",
        "python:labservice.serving.gunicorn_conf",  # JSON logs, no URLs
        "-w",
        str(workers),
        "labservice.app:create_app()",
    ]
    from labservice.config import load_settings

    front = [sys.executable, "-m", "labservice.serving.front", "--bind", bind, "--", *argv]
    if not job_worker or load_settings()["JOB_QUEUE"].strip() == "immediate":  # no queue to consume
        os.execv(sys.executable, front)
        return 0  # not reached
    return run_beside(front, [sys.executable, "-m", "labservice.cli", "worker"])


def run_beside(server: list[str], worker: list[str]) -> int:
    """Run the server and the job worker as two child processes until one ends or a signal comes; then stop the
    other (SIGTERM, then SIGKILL after 30 s) and return the server's exit code."""
    import signal
    import subprocess

    worker_process = subprocess.Popen(worker)
    server_process = subprocess.Popen(server)
    children = (server_process, worker_process)

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(ChildProcessError):
        os.wait()  # the first child to end
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return server_process.returncode or 0


def worker(threads: int | None) -> int:
    """Run batch jobs from the queue (JOB_QUEUE) until SIGINT/SIGTERM."""
    import logging

    from labservice.app import create_app
    from labservice.services.job_queue import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_worker(create_app(), threads)


def init_db(url: str | None) -> int:
    """Create or migrate the database (DATABASE_URL, else <instance>/labservice.sqlite) to the newest schema."""
    from labservice.config import instance_path, load_settings
    from labservice.store.database import database_url, migrate

    settings = load_settings()
    target = database_url(url or settings["DATABASE_URL"], instance_path(settings))
    migrate(target)
    print(f"database ready: {target.split('@')[-1]}")
    return 0


def check_ranges(directory: str | None) -> int:
    """Load and validate the rule tables; print OK and the version, or the error with file:line."""
    from labservice.adapters.cdshooks.orders import OrderTableError, load_order_rules
    from labservice.adapters.context_codes import ContextCodeError, load_context_codes
    from labservice.config import load_settings
    from labservice.core.ruleset import RulesetError, load_ruleset

    target = directory or load_settings()["REFERENCE_RANGES"]
    try:
        ruleset = load_ruleset(target)
        # The code tables the FHIR, HL7 v2 and CDS Hooks paths read from the same directory, checked as they are
        # read there: a bad row would otherwise surface only when a request needs it.
        load_context_codes(Path(ruleset.directory))
        load_order_rules(Path(ruleset.directory))
    except (RulesetError, ContextCodeError, OrderTableError) as error:
        print(f"labservice check-ranges: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"labservice check-ranges: {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"OK {ruleset.version} ({ruleset.directory})")
    return 0


def _configured_database(url: str | None):
    """The configured database (DATABASE_URL / LABSERVICE_DATABASE_URL, else <instance>/labservice.sqlite, the
    server's default too), migrated to the newest schema first, like init-db."""
    from labservice.config import instance_path, load_settings
    from labservice.store.database import Database, database_url, migrate

    settings = load_settings()
    target = database_url(url or settings["DATABASE_URL"], instance_path(settings))
    migrate(target)
    return Database.connect(target)


def create_key(args: argparse.Namespace) -> int:
    """Create an API key and print it once (only a hash of its secret is kept)."""
    from labservice.security.keys import ApiKeyError
    from labservice.security.keys import create_key as make_key

    database = _configured_database(args.url)
    try:
        with database.session() as session:
            key = make_key(session, args.name, args.scopes)
    except ApiKeyError as error:
        print(f"labservice create-key: {error}", file=sys.stderr)
        return 1
    print(key.token)
    print(
        f"API key {key.name!r} with scopes {','.join(key.scopes)}. It is shown only now: keep it secret; send it "
        "as Authorization: Bearer <key>.",
        file=sys.stderr,
    )
    return 0


def list_keys(args: argparse.Namespace) -> int:
    """Print every API key: name, scopes, created, last used, revoked (never a secret)."""
    from labservice.security.keys import list_keys as all_keys

    def when(moment) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    with _configured_database(args.url).session() as session:
        keys = all_keys(session)
        print(f"{'name':<30} {'prefix':<14} {'scopes':<24} {'created':<17} {'last used':<17} revoked")
        for key in keys:
            print(
                f"{key.name:<30} {key.prefix:<14} {','.join(key.scopes):<24} {when(key.created_at):<17} "
                f"{when(key.last_used_at):<17} {when(key.revoked_at)}"
            )
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    """Revoke an API key by name; it is refused within API_KEY_CACHE_SECONDS (5 s) on every worker."""
    from labservice.security.keys import ApiKeyError
    from labservice.security.keys import revoke_key as revoke

    try:
        with _configured_database(args.url).session() as session:
            revoke(session, args.name)
    except ApiKeyError as error:
        print(f"labservice revoke-key: {error}", file=sys.stderr)
        return 1
    print(f"API key {args.name!r} revoked.", file=sys.stderr)
    return 0


def create_user(args: argparse.Namespace) -> int:
    """Create a dashboard user; the password comes from a prompt (twice) or from stdin (--password-stdin)."""
    import getpass

    from labservice.security.users import UserError, check_password_rules
    from labservice.security.users import create_user as make_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            print("labservice create-user: the passwords differ", file=sys.stderr)
            return 1
    try:
        check_password_rules(password)
        with _configured_database(args.url).session() as session:
            user = make_user(session, args.username, password, role=args.role, display_name=args.display_name)
            print(f"User {user.username!r} ({user.role}, shown as {user.display_name!r}) created.", file=sys.stderr)
    except UserError as error:
        print(f"labservice create-user: {error}", file=sys.stderr)
        return 1
    return 0


def purge(args: argparse.Namespace) -> int:
    """Delete the batch results older than the retention (labservice.batch.retention): the service's own settings
    (BATCH_DIRECTORY, DATABASE_URL, BATCH_RETENTION_DAYS). Prints one line per batch; --dry-run deletes nothing."""
    from labservice.app import create_app
    from labservice.batch.retention import cutoff, purge_batches
    from labservice.extensions import DATABASE_EXTENSION, current_store

    app = create_app({"DATABASE_URL": args.url} if args.url else None)
    days = args.days if args.days is not None else app.config["BATCH_RETENTION_DAYS"]
    if days < 1:
        print("labservice purge: --days must be at least 1", file=sys.stderr)
        return 2
    with app.app_context():
        store, database = current_store(), app.extensions[DATABASE_EXTENSION]
        purged = purge_batches(store, database, before=cutoff(days), dry_run=args.dry_run)
    for batch in purged:
        made = batch.created_at.strftime("%Y-%m-%d %H:%M") if batch.created_at else "-"
        print(f"{batch.batch_id}  {made}  {batch.result_bytes} bytes")
    verb = "would be deleted (dry run)" if args.dry_run else "deleted"
    print(
        f"{len(purged)} batch results older than {days} days {verb}: {sum(b.result_bytes for b in purged)} bytes.",
        file=sys.stderr,
    )
    return 0


def _add_purge_parser(commands) -> None:
    parser = commands.add_parser("purge", help="delete batch results older than the retention (BATCH_RETENTION_DAYS)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    parser.add_argument("--days", type=int, default=None, help="retention in days (default: BATCH_RETENTION_DAYS, 30)")
    parser.add_argument("--url", help="database URL (default: DATABASE_URL, else the service's SQLite file)")


def _add_security_parsers(commands) -> None:
    url_help = "database URL (default: DATABASE_URL, else <LABSERVICE_INSTANCE_PATH or instance>/labservice.sqlite)"
    parser = commands.add_parser("create-key", help="create an API key and print it once")
    parser.add_argument("--name", required=True, help="who or what holds the key, e.g. lis-interface")
    parser.add_argument(
        "--scopes",
        default="interpret,read",
        help="comma-separated: interpret, read, admin, metrics (default: interpret,read)",
    )
    parser.add_argument("--url", help=url_help)
    parser = commands.add_parser("list-keys", help="list the API keys (names, scopes, last use; no secrets)")
    parser.add_argument("--url", help=url_help)
    parser = commands.add_parser("revoke-key", help="revoke an API key by name")
    parser.add_argument("name")
    parser.add_argument("--url", help=url_help)
    parser = commands.add_parser("create-user", help="create a dashboard user (password prompted)")
    parser.add_argument("username")
    parser.add_argument("--role", choices=("clinician", "admin"), default="clinician")
    parser.add_argument("--display-name", help="the name shown and recorded with status changes (default: username)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    parser.add_argument("--url", help=url_help)


def credentials_hint(url: str | None = None) -> str | None:
    """What to run on a fresh machine: the commands for a first API key and dashboard user, when there is none."""
    from sqlalchemy import func, select

    from labservice.store.models import ApiKey, User

    database = _configured_database(url)
    try:
        with database.session() as session:
            keys = session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None)))
            users = session.scalar(select(func.count()).select_from(User).where(User.disabled_at.is_(None)))
    finally:
        database.engine.dispose()
    lines = []
    if not keys:
        lines.append(
            "No API key yet: the API refuses every call without one. Make one (it is shown once):\n"
            "  .venv/bin/labservice create-key --name my-first-key --scopes interpret,read"
        )
    if not users:
        lines.append(
            "No dashboard user yet. Make one (the password is asked for):\n"
            '  .venv/bin/labservice create-user admin --role admin --display-name "Your Name"'
        )
    return "\n".join(lines) or None


def print_credentials_hint() -> None:
    hint = credentials_hint()
    if hint:
        print(hint, file=sys.stderr)


SECURITY_COMMANDS = {
    "create-key": create_key,
    "list-keys": list_keys,
    "revoke-key": revoke_key,
    "create-user": create_user,
}


EXIT_ALL_INTERPRETED, EXIT_SOME_REJECTED, EXIT_UNUSABLE = 0, 1, 2


def _pairs(values: list[str], option: str) -> dict[str, str]:
    """["a=b", "c=d,e=f"] -> {"a": "b", "c": "d", "e": "f"}; the header side may contain commas if quoted alone."""
    out: dict[str, str] = {}
    for value in values:
        parts = [value] if value.count("=") == 1 else value.split(",")
        for part in parts:
            key, sep, target = part.rpartition("=")
            if not sep or not key.strip():
                raise ValueError(f"{option} expects NAME=VALUE, not {part!r}")
            out[key.strip()] = target.strip()
    return out


def batch_options(args: argparse.Namespace):
    """BatchOptions from --mapping (a file or a built-in name) and the individual options."""
    from labservice.adapters.csv_input.options import check_options
    from labservice.batch import BatchOptions, load_mapping_file
    from labservice.batch.builtin_mappings import builtin_mapping_path

    options = BatchOptions()
    if args.mapping:
        path = Path(args.mapping)
        if not path.exists():
            path = builtin_mapping_path(args.mapping) or path
        options = load_mapping_file(path, options)
    if args.items:
        options = load_mapping_file(Path(args.items), options)
    for name in ("shape", "delimiter", "decimal", "encoding", "date_order"):
        value = getattr(args, name)
        if value is not None:
            setattr(options, name, "\t" if value == "\\t" else value)
    options.columns.update(_pairs(args.column, "--column"))
    options.units.update(_pairs(args.unit, "--unit"))
    options.sex_codes.update(_pairs(args.sex_codes, "--sex-codes"))
    if args.chunk_rows:
        options.chunk_rows = args.chunk_rows
    check_options(options)
    return options


def default_jobs() -> int:
    """Processes for the chunks of `interpret`: 2 (on two cores or more), or 1 when the machine is already busy.

    A worker process costs about a third more CPU in all (forking, copying the pages it shares with the
    reader); it pays only when a core is free for it. With the 1-minute load average at least the cores
    less one half, none is: one process is then faster (10^6 rows at load 15 on 2 cores: 20-22 s against
    28 s with two workers; docs/performance.md)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): count the cores only
        load = 0.0
    return min(2, cores) if load < cores - 0.5 else 1


def interpret(args: argparse.Namespace) -> int:
    """Interpret a CSV file; exit 0 when every row was interpreted, 1 when some were rejected, 2 when unusable."""
    import json
    import tempfile

    from labservice.batch import BatchFileError, run_batch
    from labservice.batch.progress import SHOW_FROM_BYTES, ProgressBar, bytes_per_line, chunk_rows_for_steps
    from labservice.config import load_settings
    from labservice.core.ruleset import RulesetError, load_ruleset

    try:
        options = batch_options(args)
        ruleset = load_ruleset(args.ranges or load_settings()["REFERENCE_RANGES"])
    except (BatchFileError, ValueError, OSError, RulesetError) as error:
        print(f"labservice interpret: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    if _wants_distributed(args):
        return interpret_distributed(args, options, ruleset)
    output_format = args.format or ("json" if str(args.output).lower().endswith(".json") else "csv")
    try:
        source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as error:
        print(f"labservice interpret: cannot read {args.input}: {error.strerror}", file=sys.stderr)
        return EXIT_UNUSABLE
    total = None if args.input == "-" else os.fstat(source.fileno()).st_size
    show = args.progress or (args.progress is None and sys.stderr.isatty() and (total or 0) >= SHOW_FROM_BYTES)
    bar = ProgressBar(total) if show else None
    on_chunk = None
    if bar is not None and total:  # the bar moves per chunk, by the rows done (labservice.batch.progress)
        head = source.peek(1 << 16)[: 1 << 16] if hasattr(source, "peek") else b""
        if not args.chunk_rows:
            options.chunk_rows = chunk_rows_for_steps(total, head, options.chunk_rows)
        per_line = bytes_per_line(head)

        def on_chunk(summary, bytes_read: int) -> None:
            if summary.shape == "wide" and per_line is not None:
                lines = 1 + summary.rows_out + summary.blank_lines  # the header too
                bar(min(bytes_read, int(lines * per_line)))
            else:
                bar(bytes_read)

    if args.output == "-":
        target, temporary = sys.stdout, None
    else:
        directory = os.path.dirname(os.path.abspath(args.output))
        temporary = tempfile.NamedTemporaryFile(  # noqa: SIM115 (renamed over the output when complete)
            "w", encoding="utf-8", newline="", dir=directory, prefix=".labservice-", suffix=".partial", delete=False
        )
        target = temporary
    csv_out, json_out = (target, None) if output_format == "csv" else (None, target)
    try:
        with source:
            summary = run_batch(
                source,
                csv_out=csv_out,
                json_out=json_out,
                options=options,
                ruleset=ruleset,
                progress=bar,
                jobs=args.jobs or default_jobs(),
                on_chunk=on_chunk,
                excel=args.excel,
            )
    except BatchFileError as error:
        print(f"labservice interpret: {args.input}: {error}", file=sys.stderr)
        if temporary is not None:
            temporary.close()
            os.unlink(temporary.name)
        return EXIT_UNUSABLE
    if bar is not None:
        bar(summary.bytes_read, final=True)
    if temporary is not None:
        temporary.close()
        os.replace(temporary.name, args.output)
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as handle:
            json.dump(summary.to_dict(), handle, indent=2)
    if not args.quiet or summary.rejected:
        print(summary.describe(), file=sys.stderr)
    return EXIT_SOME_REJECTED if summary.rejected else EXIT_ALL_INTERPRETED


def _wants_distributed(args: argparse.Namespace) -> bool:
    """Parquet in or out, or a cluster: the Dask path (labservice.batch.distributed)."""
    if args.cluster or args.scheduler or args.format == "parquet":
        return True
    if args.input == "-":
        return False
    from labservice.batch.distributed import PARQUET_SUFFIXES, is_parquet_input

    return str(args.output).lower().endswith(PARQUET_SUFFIXES) or is_parquet_input(args.input)


def interpret_distributed(args: argparse.Namespace, options, ruleset) -> int:
    """Parquet input (a file, a directory or a glob) into a directory of Parquet parts, on a Dask cluster
    (--cluster local[:N], --scheduler tcp://host:port) or in this process; the same summary and exit codes."""
    import json

    from labservice.batch.distributed import is_parquet_input, missing_extra

    problem = missing_extra()
    if problem is not None:
        print(f"labservice interpret: {problem}", file=sys.stderr)
        return EXIT_UNUSABLE
    from labservice.batch import BatchFileError, MappingError
    from labservice.batch.distributed.cluster import connected
    from labservice.batch.distributed.job import DEFAULT_PARTITION_ROWS, run_job
    from labservice.batch.distributed.rulesets import RulesetRef

    if args.input == "-" or not is_parquet_input(args.input):
        print(
            f"labservice interpret: {args.input}: the Parquet path (--cluster, --scheduler, Parquet output) reads "
            "Parquet: a .parquet file, a directory of them or a glob",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    if (
        args.output == "-"
        or (args.format or "parquet") != "parquet"
        or str(args.output).lower().endswith((".csv", ".json"))
    ):
        print(
            "labservice interpret: the Parquet path writes a directory of Parquet parts: give -o a directory",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        with connected(args.cluster, args.scheduler, RulesetRef.of(ruleset), say=sys.stderr) as client:
            summary = run_job(
                args.input,
                args.output,
                options=options,
                ruleset=ruleset,
                client=client,
                partition_rows=args.partition_rows or DEFAULT_PARTITION_ROWS,
                show_progress=show,
            )
    except (BatchFileError, MappingError) as error:
        print(f"labservice interpret: {args.input}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as error:  # a scheduler that does not answer
        print(f"labservice interpret: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as handle:
            json.dump(summary.to_dict(), handle, indent=2)
    if not args.quiet or summary.rejected:
        print(summary.describe(), file=sys.stderr)
    return EXIT_SOME_REJECTED if summary.rejected else EXIT_ALL_INTERPRETED


def _add_interpret_parser(commands) -> None:
    parser = commands.add_parser(
        "interpret",
        help="interpret a CSV file of CBCs (wide or long) into CSV or JSON",
        description="Interpret every CBC of a CSV file. Exit 0: all rows interpreted; 1: some rows rejected "
        "(their error column says why; summary on stderr); 2: the file is unusable.",
    )
    parser.add_argument(
        "input", help="CSV file, or - for stdin; or Parquet: a .parquet file, a directory of them, or a glob"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="output .csv or .json, or - for stdout; a directory for Parquet"
    )
    parser.add_argument(
        "--format",
        choices=("csv", "json", "parquet"),
        help="output format (default: from the extension; parquet for Parquet input or a cluster)",
    )
    parser.add_argument(
        "--cluster",
        metavar="local[:N]",
        help="run on a Dask LocalCluster of N worker processes (Parquet; needs labservice[distributed])",
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on an existing Dask cluster (Parquet; labservice[distributed])",
    )
    parser.add_argument(
        "--partition-rows", type=int, help="Parquet: rows per partition (whole row groups merged up to it; 100000)"
    )
    parser.add_argument("--mapping", help="mapping JSON file, or a built-in name (mimic-iii-labevents)")
    parser.add_argument("--items", help="CSV of item,analyte[,unit] for a long file's item codes")
    parser.add_argument("--shape", choices=("auto", "wide", "long"))
    parser.add_argument("--delimiter", help="field delimiter (default: detected; \\t for tab)")
    parser.add_argument("--decimal", choices=(".", ","), help="decimal mark (default: detected)")
    parser.add_argument("--encoding", help="text encoding (default: UTF-8, else Windows-1252)")
    parser.add_argument("--date-order", choices=("DMY", "MDY"), help="how to read dates like 01/02/2026")
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="HEADER=FIELD",
        help="map a column to a field, e.g. Thrombozyten=platelets (repeatable)",
    )
    parser.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="ANALYTE=UNIT",
        help="unit of an analyte column without one in its header, e.g. platelets=K/uL",
    )
    parser.add_argument(
        "--sex-codes", action="append", default=[], metavar="CODE=SEX", help="extra sex codes, e.g. 0=female,1=male"
    )
    parser.add_argument("--chunk-rows", type=int, help="rows per chunk (memory against speed; default 100000)")
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        help="processes parsing and interpreting chunks besides the reading one (default: 2 on two cores or "
        "more, but 1, none besides it, when the load average is already at least the cores less one half)",
    )
    parser.add_argument(
        "--ranges",
        help="directory of rule tables (default: LABSERVICE_REFERENCE_RANGES, else the tables shipped in the package)",
    )
    parser.add_argument("--summary", help="also write the summary as JSON to this file")
    parser.add_argument(
        "--excel",
        action="store_true",
        help="begin the CSV with a UTF-8 byte order mark, so Excel reads it as UTF-8 (one is written anyway when "
        "the input had one); the delimiter and decimal mark are the input's",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: for files over 8 MB on a terminal)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary when every row was interpreted")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labservice", description="Complete blood count interpretation service.")
    parser.add_argument("--version", action="version", version=f"labservice {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the API with gunicorn")
    serve_parser.add_argument(
        "--bind", "-b", default=DEFAULT_BIND, help=f"address to listen on (default {DEFAULT_BIND})"
    )
    serve_parser.add_argument(
        "--workers", "-w", type=int, default=DEFAULT_WORKERS, help=f"worker processes (default {DEFAULT_WORKERS})"
    )

    serve_parser.add_argument(
        "--no-job-worker",
        action="store_true",
        help="do not start the batch job worker beside gunicorn (run `labservice worker` elsewhere)",
    )
    worker_parser = commands.add_parser(
        "worker", help="run the batch upload jobs (JOB_QUEUE: sqlite by default, or redis://...)"
    )
    worker_parser.add_argument("--threads", type=int, default=None, help="job threads (default JOB_WORKERS, 1)")

    _add_interpret_parser(commands)
    mllp.add_parser(commands)

    init_parser = commands.add_parser("init-db", help="create or migrate the database to the newest schema")
    init_parser.add_argument(
        "--url",
        help="database URL (default: DATABASE_URL, else <LABSERVICE_INSTANCE_PATH or instance>/labservice.sqlite)",
    )

    _add_security_parsers(commands)
    _add_purge_parser(commands)

    check_parser = commands.add_parser("check-ranges", help="validate the rule tables (reference_ranges/)")
    check_parser.add_argument(
        "directory",
        nargs="?",
        default=None,
        help="directory of rule tables (default: LABSERVICE_REFERENCE_RANGES, else the tables shipped in the package)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.bind, args.workers, not args.no_job_worker)
    if args.command == "worker":
        return worker(args.threads)
    if args.command == "interpret":
        return interpret(args)
    if args.command == "mllp":
        return mllp.run(args)
    if args.command == "init-db":
        return init_db(args.url)
    if args.command == "purge":
        return purge(args)
    if args.command in SECURITY_COMMANDS:
        return SECURITY_COMMANDS[args.command](args)
    return check_ranges(args.directory)


if __name__ == "__main__":
    sys.exit(main())
