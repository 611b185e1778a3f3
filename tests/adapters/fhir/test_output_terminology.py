"""reference_ranges/snomed_ct.csv: every SNOMED CT code has a source, and the FHIR answer's conclusionCodes
come from this table only.

The finding codes are those of api-contract.md ("findings[*].code") plus the two delta findings of the
README (platelet_drop, new_cytopenia).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from labservice.adapters.fhir.output import to_bundle
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.fhir.terminology import (
    SNOMED_SYSTEM,
    load_snomed_map,
    snomed_map,
    verhoeff_valid,
)
from labservice.core import vocabulary
from labservice.core.ruleset import RulesetError, default_ruleset
from labservice.rule_tables import packaged_directory
from tests.adapters.fhir.test_output import pancytopenia_bundle, us_core_bundle
from tests.adapters.fhir.test_output_builders import SPEC, interpret, load
from tests.shared_data import FIXTURES, SHARED

TABLE = packaged_directory() / "snomed_ct.csv"
DELTA_FINDINGS = {"platelet_drop", "new_cytopenia"}


def rows() -> list[dict[str, str]]:
    with TABLE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def contract_finding_codes(*, v2: bool = True) -> set[str]:
    """The finding codes listed in api-contract.md, under `findings[*].code`; with v2=False only those listed
    before the contract's "*v2*:" mark (the v1 vocabulary)."""
    text = (SHARED / "api-contract.md").read_text(encoding="utf-8")
    block = text[text.index("`findings[*].code`") :]
    block = block[: block.index("\n- ", 1)]
    if not v2:
        block = block[: block.index("*v2*")]
    return set(re.findall(r"`([a-z_]+)`", block)) - {"findings"}


def test_every_finding_code_has_a_row():
    codes = [row["finding_code"] for row in rows()]
    assert len(codes) == len(set(codes))
    # clinical-rules v2 (api-contract *v2* finding codes): the v2 codes get their rows as they are added
    v1, v2 = contract_finding_codes(v2=False), contract_finding_codes(v2=True)
    assert v1 | DELTA_FINDINGS <= set(codes) <= v2 | DELTA_FINDINGS
    assert set(codes) == set(vocabulary.FINDING_CODES)  # every code an answer may carry has its row
    assert {"thrombocytopenia", "pancytopenia", "neutropenia", "anemia"} <= set(codes)


# clinical-rules v2: every api-contract *v2* finding code now has its row (the last two, blasts_reported and
# thrombotic_microangiopathy_pattern, are clinical-rules §10 v2), so the strict xfail mark is gone.
def test_every_v2_finding_code_has_a_row():
    codes = {row["finding_code"] for row in rows()}
    assert codes == contract_finding_codes(v2=True) | DELTA_FINDINGS


def test_every_code_has_its_fsn_a_source_and_a_valid_identifier():
    sources = default_ruleset().sources
    coded = [row for row in rows() if row["snomed_code"]]
    assert coded
    for row in coded:
        assert row["source"] and row["display"], row
        assert row["source_tag"] in sources, row  # the citation is in sources.csv
        assert row["display"].endswith(("(disorder)", "(finding)")), row  # a fully specified name
        assert verhoeff_valid(row["snomed_code"]) and row["snomed_code"][-3:-1] == "00", row


def test_a_finding_without_a_code_says_why():
    uncoded = [row for row in rows() if not row["snomed_code"]]
    assert uncoded
    for row in uncoded:
        assert row["note"] and not row["display"] and not row["source"], row


def test_the_check_digit_catches_a_typo():
    assert verhoeff_valid("302215000")
    assert not verhoeff_valid("302215001")  # last digit changed
    assert not verhoeff_valid("320215000")  # two digits swapped


@pytest.mark.parametrize(
    "line, message",
    [
        ("anemia,271737001,Anemia (disorder),SCT2,somewhere,", "not a SNOMED CT identifier"),
        ("anemia,271737000,,SCT2,somewhere,", "needs its display"),
        ("anemia,271737000,Anemia (disorder),,,", "needs its display"),
        ("anemia,,,,,", "must say why"),
    ],
)
def test_a_bad_row_stops_loading_with_file_and_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "snomed_ct.csv"
    path.write_text("finding_code,snomed_code,display,source_tag,source,note\n" + line + "\n", encoding="utf-8")
    with pytest.raises(RulesetError, match=rf"snomed_ct.csv:2: .*{message}"):
        load_snomed_map(path)


def bundles() -> list[dict]:
    resources = [
        load(SPEC / "diagnosticreport-example.json"),
        load(SPEC / "diagnosticreport-example-ghp.json"),
        us_core_bundle(),
        pancytopenia_bundle(),
    ]
    resources += [load(path) for path in sorted((FIXTURES / "synthea-r4-bundles").glob("*.json"))[:3]]
    out = []
    for resource in resources:
        read = read_fhir(resource)
        out.append(to_bundle(read, interpret(read), default_ruleset()))
    return out


def test_conclusion_codes_come_from_the_table():
    table = {row["snomed_code"]: row for row in rows() if row["snomed_code"]}
    seen = set()
    for bundle in bundles():
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "DiagnosticReport":
                continue
            for concept in resource.get("conclusionCode", []):
                for coding in concept["coding"]:
                    if coding["system"] == SNOMED_SYSTEM:
                        assert coding["code"] in table
                        assert coding["display"] == table[coding["code"]]["display"]
                        seen.add(coding["code"])
    assert {"302215000", "127034005", "165517008", "271737000"} <= seen  # the pancytopenia CBC, the spec's neutropenia


def test_snomed_map_matches_the_table():
    table = snomed_map(default_ruleset())
    expected = {row["finding_code"]: row["snomed_code"] for row in rows()}
    assert {code: row.snomed_code for code, row in table.items()} == expected
