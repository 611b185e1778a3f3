"""Errors in a document built from FHIR or HL7 v2 are reported where the client can find them.

An adapter that builds our JSON CBC documents from another format keeps, per document, a map from
document field path ("results.platelets", "results.platelets.unit", "patient.birth_date") to the
place in its input ("Bundle.entry[3].resource(Observation/f001).valueQuantity",
"OBR[1].OBX[5]-6"). `relocate` rewrites error paths of an indexed document list
("0.results.platelets.unit") through those maps: the longest mapped prefix wins and what is left
of the document path is kept after a colon, so no detail is lost.
"""

from __future__ import annotations


def relocate(errors: dict[str, list[str]], locations: list[dict[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path, messages in errors.items():
        out.setdefault(_locate(path, locations), []).extend(messages)
    return out


def _locate(path: str, locations: list[dict[str, str]]) -> str:
    head, _, rest = path.partition(".")
    if not head.isdigit() or int(head) >= len(locations):
        return path
    where = locations[int(head)]
    parts = rest.split(".") if rest else []
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in where:
            remainder = ".".join(parts[cut:])
            return f"{where[prefix]}: {remainder}" if remainder else where[prefix]
    whole = where.get("")
    return f"{whole}: {rest}" if whole and rest else (whole or path)
