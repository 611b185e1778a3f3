"""Every resource of a FHIR input with its location, and reference resolution between them.

A FHIR input is one resource: a Bundle (whose entries hold resources), a DiagnosticReport or an
Observation. Any of these may carry `contained` resources. `ResourceIndex` lists them all as
`Node`s, each with a FHIRPath-like location ("Bundle.entry[3].resource(Observation/abc)") that
errors and the answer use, and resolves a Reference the way FHIR R4 defines it (§2.3.0 Bundle,
"Resolving references in Bundles"): `#id` to a contained resource of the same container, a
`urn:uuid:` or absolute URL to an entry's fullUrl, and a relative `Type/id` to the entry with
that type and id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from labservice.adapters.errors import InputError


@dataclass(eq=False)
class Node:
    """One resource in the input."""

    resource: dict[str, Any]
    path: str  # "Bundle.entry[3].resource(Observation/abc)"
    full_url: str | None = None
    container: Node | None = None  # the resource whose `contained` holds this one
    contained: dict[str, Node] = field(default_factory=dict)  # "#id" -> node

    @property
    def type(self) -> str:
        return self.resource["resourceType"]

    @property
    def id(self) -> str | None:
        value = self.resource.get("id")
        return value if isinstance(value, str) else None

    @property
    def reference(self) -> str | None:
        """How another resource refers to this one: a urn:uuid fullUrl, `Type/id`, or `#id` when contained."""
        if self.container is not None:
            return f"#{self.id}" if self.id else None
        if self.full_url and self.full_url.startswith("urn:"):
            return self.full_url
        if self.id:
            return f"{self.type}/{self.id}"
        return self.full_url

    def where(self) -> str:
        """The reference when there is one, else the location."""
        return self.reference or self.path


def _label(resource: dict[str, Any]) -> str:
    kind = resource["resourceType"]
    ident = resource.get("id")
    return f"{kind}/{ident}" if isinstance(ident, str) and ident else kind


def _check_resource(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError({path: ["A FHIR resource must be a JSON object."]})
    kind = value.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InputError({f"{path}.resourceType": ["Every FHIR resource needs a resourceType (a string)."]})
    return value


class ResourceIndex:
    """The resources of one input, and how references between them resolve."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._by_url: dict[str, Node] = {}
        self._by_type_id: dict[str, Node] = {}

    @classmethod
    def of_bundle(cls, bundle: dict[str, Any]) -> ResourceIndex:
        index = cls()
        entries = bundle.get("entry", [])
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise InputError({"Bundle.entry": ["Bundle.entry must be a list of entries."]})
        for i, entry in enumerate(entries):
            where = f"Bundle.entry[{i}]"
            if not isinstance(entry, dict):
                raise InputError({where: ["A Bundle entry must be a JSON object."]})
            if "resource" not in entry or entry["resource"] is None:
                continue  # e.g. a transaction DELETE, or a search entry with only a fullUrl
            resource = _check_resource(entry["resource"], f"{where}.resource")
            full_url = entry.get("fullUrl")
            if full_url is not None and not isinstance(full_url, str):
                raise InputError({f"{where}.fullUrl": ["fullUrl must be a string."]})
            index._add(resource, f"{where}.resource({_label(resource)})", full_url or None)
        return index

    @classmethod
    def of_resource(cls, resource: dict[str, Any]) -> tuple[ResourceIndex, Node]:
        index = cls()
        return index, index._add(resource, f"{resource['resourceType']}({_label(resource)})", None)

    def _add(self, resource: dict[str, Any], path: str, full_url: str | None, container: Node | None = None) -> Node:
        node = Node(resource, path, full_url, container)
        self.nodes.append(node)
        if container is None:
            if full_url:
                self._by_url.setdefault(full_url, node)
            if node.id:
                self._by_type_id.setdefault(f"{node.type}/{node.id}", node)
        contained = resource.get("contained")
        if contained is not None and container is None:  # contained resources cannot contain others
            if not isinstance(contained, list):
                raise InputError({f"{path}.contained": ["contained must be a list of resources."]})
            for j, inner in enumerate(contained):
                where = f"{path}.contained[{j}]"
                inner = _check_resource(inner, where)
                child = self._add(inner, f"{where}({_label(inner)})", None, node)
                if child.id:
                    node.contained.setdefault(f"#{child.id}", child)
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def resolve(self, reference: Any, source: Node) -> Node | None:
        """The node a Reference (the JSON object) of `source` points to, or None."""
        target = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(target, str) or not target:
            return None
        if target.startswith("#"):
            owner = source.container or source
            return owner.contained.get(target)
        target = target.split("/_history/", 1)[0]
        found = self._by_url.get(target)
        if found is not None:
            return found
        if target.startswith(("urn:uuid:", "urn:oid:")):
            return None
        parts = target.rstrip("/").split("/")
        if len(parts) >= 2:
            found = self._by_type_id.get(f"{parts[-2]}/{parts[-1]}")
            if found is not None and (len(parts) == 2 or _same_base(target, found)):
                return found
            # A relative reference inside an entry with an absolute fullUrl resolves against its base.
            if len(parts) == 2 and source.full_url and "://" in source.full_url:
                base = source.full_url.rsplit("/", 2)[0]
                return self._by_url.get(f"{base}/{target}")
        return None


def _same_base(target: str, node: Node) -> bool:
    """An absolute reference matches an entry without a fullUrl, or one on the same server."""
    if not node.full_url:
        return True
    return node.full_url.split("/_history/", 1)[0] == target


def reference_text(reference: Any) -> str | None:
    """The `reference` string of a Reference, if it has one."""
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        return reference["reference"] or None
    return None
