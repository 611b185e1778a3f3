"""The rule tables on the workers: loaded once per worker process, and the same tables the client read.

A job names its tables by a RulesetRef: the directory (None for the tables shipped in the package, so a worker
reads its own installed copy) and the content version the client loaded. `worker_ruleset` loads a directory once
per process (a cache keyed by directory and version) and refuses tables whose version differs from the
client's: a worker with other rule tables would give other answers. `RulesetPlugin` loads them when a worker
joins (and again on a worker that replaces one that died), so no task waits for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from labservice.core.ruleset import Ruleset, load_ruleset
from labservice.rule_tables import packaged_directory


class RulesetMismatch(RuntimeError):
    """A worker's rule tables are not the ones the job was planned with."""


@dataclass(frozen=True)
class RulesetRef:
    directory: str | None  # None: the tables shipped in the package
    version: str

    @classmethod
    def of(cls, ruleset: Ruleset) -> RulesetRef:
        shipped = Path(ruleset.directory).resolve() == Path(packaged_directory()).resolve()
        return cls(None if shipped else str(ruleset.directory), ruleset.version)


@lru_cache(maxsize=4)
def worker_ruleset(ref: RulesetRef) -> Ruleset:
    """The tables `ref` names, loaded at most once per process for each directory and version."""
    ruleset = load_ruleset(ref.directory)
    if ruleset.version != ref.version:
        where = ref.directory or "the tables shipped in labservice"
        raise RulesetMismatch(
            f"the rule tables at {where} on this worker are version {ruleset.version}, the job's are {ref.version}: "
            "install the same labservice (or the same --ranges directory) on every worker"
        )
    return ruleset


class RulesetPlugin(WorkerPlugin):
    """Loads the job's rule tables when a worker starts (or joins later)."""

    idempotent = False

    def __init__(self, ref: RulesetRef) -> None:
        self.ref = ref

    def setup(self, worker) -> None:
        worker_ruleset(self.ref)
