"""Which Observations make one CBC.

In order of precedence:

1. a DiagnosticReport: the Observations its `result` references, through `hasMember` panels;
2. a panel Observation (any Observation with `hasMember`, e.g. 58410-2 or 57021-8) that no report
   holds: its members, through nested panels;
3. CBC-coded Observations that neither holds: grouped by subject, specimen and effective time.

A report or panel counts as a CBC when its code is a CBC panel or when it holds at least one
CBC-coded Observation; other reports (lipid panels, ...) are left for the reader to count as ignored.
References inside a CBC that do not resolve, or that point to something other than an Observation,
are kept as problems so the reader can list them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labservice.adapters.context_codes import load_context_codes
from labservice.adapters.errors import InputError
from labservice.adapters.fhir.codes import coded_parts, is_cbc_panel, loinc_codes
from labservice.adapters.fhir.index import Node, ResourceIndex, reference_text
from labservice.adapters.fhir.model import Unused
from labservice.adapters.film_words import SCHISTOCYTE_LOINC
from labservice.core.ruleset import Ruleset


@dataclass
class Group:
    """The resources of one CBC before its values are read."""

    report: Node | None  # DiagnosticReport or panel Observation; None for loose Observations
    members: list[Node] = field(default_factory=list)  # leaf Observations, in reference order
    panels: list[Node] = field(default_factory=list)  # panel Observations passed through
    direct: dict[int, list[Node]] = field(default_factory=dict)  # id(panel) -> its leaf members
    problems: list[Unused] = field(default_factory=list)


def find_groups(index: ResourceIndex, ruleset: Ruleset) -> list[Group]:
    claimed: set[int] = set()
    groups: list[Group] = []
    for node in index:
        if node.type == "DiagnosticReport":
            group = _gather(index, node, "result", ruleset, claimed)
            if group is not None:
                groups.append(group)
    nested = _panel_members(index)
    for node in index:
        if node.type == "Observation" and _members(node) and id(node) not in claimed and id(node) not in nested:
            group = _gather(index, node, "hasMember", ruleset, claimed)
            if group is not None:
                groups.append(group)
    groups.extend(_loose(index, ruleset, claimed))
    return groups


def _members(node: Node) -> list[Any]:
    members = node.resource.get("hasMember")
    if members is None:
        return []
    if not isinstance(members, list):
        raise InputError({f"{node.path}.hasMember": ["hasMember must be a list of References."]})
    return members


def _panel_members(index: ResourceIndex) -> set[int]:
    """Nodes that some panel Observation lists in hasMember (so they are not panels of their own)."""
    out: set[int] = set()
    for node in index:
        if node.type == "Observation":
            for ref in _members(node):
                target = index.resolve(ref, node)
                if target is not None:
                    out.add(id(target))
    return out


def _gather(index: ResourceIndex, top: Node, key: str, ruleset: Ruleset, claimed: set[int]) -> Group | None:
    refs = top.resource.get(key)
    if refs is None:
        refs = []
    if not isinstance(refs, list):
        raise InputError({f"{top.path}.{key}": [f"{key} must be a list of References."]})
    group = Group(report=top)
    seen: set[int] = {id(top)}
    _walk(index, top, refs, f"{top.path}.{key}", group, seen, claimed)
    coded = any(coded_parts(m.resource, m.path, ruleset) for m in group.members)
    if not (
        coded
        or is_cbc_panel(top.resource.get("code"))
        or any(is_cbc_panel(p.resource.get("code")) for p in group.panels)
    ):
        return None
    claimed.add(id(top))
    claimed.update(id(node) for node in (*group.members, *group.panels))
    return group


def _walk(
    index: ResourceIndex, source: Node, refs: list[Any], path: str, group: Group, seen: set[int], claimed: set[int]
) -> None:
    for k, ref in enumerate(refs):
        where = f"{path}[{k}]"
        if not isinstance(ref, dict):
            raise InputError({where: ["A Reference must be a JSON object."]})
        target = index.resolve(ref, source)
        if target is None:
            group.problems.append(_unresolved(ref, where))
            continue
        if id(target) in seen:
            continue
        seen.add(id(target))
        if target.type != "Observation":
            group.problems.append(
                Unused(target.type, target.id, where, f"{reference_text(ref)} is a {target.type}, not an Observation")
            )
            continue
        if id(target) in claimed:
            group.problems.append(
                Unused("Observation", target.id, target.path, "already part of another CBC in this input")
            )
            continue
        members = _members(target)
        if members:
            group.panels.append(target)
            _walk(index, target, members, f"{target.path}.hasMember", group, seen, claimed)
        else:
            group.members.append(target)
            group.direct.setdefault(id(source), []).append(target)


def _unresolved(ref: dict[str, Any], where: str) -> Unused:
    text = reference_text(ref)
    if text is None:
        return Unused("Observation", None, where, "the reference has no `reference` to resolve")
    parts = text.split("/_history/", 1)[0].rstrip("/").split("/")
    kind, ident = (parts[-2], parts[-1]) if len(parts) >= 2 and not text.startswith("urn:") else ("Observation", text)
    return Unused(kind, ident.lstrip("#"), where, f"the reference {text!r} does not resolve in the input")


def _effective(resource: dict[str, Any]) -> Any:
    period = resource.get("effectivePeriod")
    start = period.get("start") if isinstance(period, dict) else None
    return resource.get("effectiveDateTime") or start or resource.get("effectiveInstant")


def _is_film(node: Node, ruleset: Ruleset) -> bool:
    """A blood-film Observation (graded schistocytes, platelet clumps) or a PLASMIC laboratory item (clinical-rules
    §8, §10 v2; reference_ranges/context_codes.csv): grouped with the counts of the same specimen and time."""
    codes = loinc_codes(node.resource.get("code"))
    return bool(SCHISTOCYTE_LOINC.intersection(codes)) or bool(
        load_context_codes(ruleset.directory).observation_codes().intersection(codes)
    )


def _loose(index: ResourceIndex, ruleset: Ruleset, claimed: set[int]) -> list[Group]:
    """CBC-coded (and film) Observations outside any report or panel, by subject + specimen + effective time."""
    by_key: dict[tuple[Any, ...], Group] = {}
    for node in index:
        if (
            node.type != "Observation"
            or id(node) in claimed
            or _members(node)
            or not (coded_parts(node.resource, node.path, ruleset) or _is_film(node, ruleset))
        ):
            continue
        subject = node.resource.get("subject")
        target = index.resolve(subject, node) if isinstance(subject, dict) else None
        subject_key = id(target) if target is not None else reference_text(subject)
        key = (subject_key, reference_text(node.resource.get("specimen")), str(_effective(node.resource)))
        by_key.setdefault(key, Group(report=None)).members.append(node)
        claimed.add(id(node))
    return list(by_key.values())
