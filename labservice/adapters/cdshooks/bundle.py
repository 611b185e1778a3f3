"""One FHIR Bundle (type collection) for the reader: the Patient, then the Observation search entries.

The reader resolves each Observation's `subject` (`Patient/123`, or an absolute URL on the same
server) to the Patient entry, so sex and birth date reach the CBC documents. Entries keep their
`fullUrl`; the Patient gets none, so both relative and absolute references find it by type and id.
`to_call_path` turns a reader location ("Bundle.entry[3].resource(Observation/x).valueQuantity")
back into the place in the CDS Hooks call ("prefetch.cbcObservations.entry[2].resource(Observation/x)
.valueQuantity"), so errors and the card name what the client sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from labservice.adapters.cdshooks.prefetch import Gathered

ENTRY_PATH = re.compile(r"^Bundle\.entry\[(\d+)\]\.resource")


@dataclass(frozen=True)
class ReviewBundle:
    bundle: dict[str, Any]
    origins: list[str]  # entry index -> where that resource was in the call

    def resource_at(self, path: str) -> dict[str, Any] | None:
        """The entry's resource a reader location points into, if it is one."""
        match = ENTRY_PATH.match(path)
        if match is None or int(match.group(1)) >= len(self.bundle["entry"]):
            return None
        return self.bundle["entry"][int(match.group(1))]["resource"]

    def to_call_path(self, path: str) -> str:
        match = ENTRY_PATH.match(path)
        if match is None or int(match.group(1)) >= len(self.origins):
            return path
        return self.origins[int(match.group(1))] + path[match.end() :]


def review_bundle(gathered: Gathered) -> ReviewBundle:
    entries: list[dict[str, Any]] = []
    origins: list[str] = []
    if gathered.patient is not None:
        entries.append({"resource": gathered.patient})
        origins.append(gathered.patient_origin)
    for entry in gathered.entries:
        item: dict[str, Any] = {"resource": entry.resource}
        if entry.full_url:
            item["fullUrl"] = entry.full_url
        entries.append(item)
        origins.append(entry.origin)
    return ReviewBundle({"resourceType": "Bundle", "type": "collection", "entry": entries}, origins)
