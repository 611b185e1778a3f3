"""reference_ranges/findings.csv: one declaration per finding, and everything generic over it.

The finding codes are those of api-contract.md (`findings[*].code`, v1) plus the two delta findings;
the urgencies those of the contract's `urgency`.
"""

from __future__ import annotations

import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import labservice.core.render
from labservice.adapters import cbc_schema
from labservice.api import schemas
from labservice.core import vocabulary
from labservice.core.families import EVALUATION_ORDER, family
from labservice.core.families.base import FindingColumn
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import RulesetError, load_ruleset
from labservice.rule_tables import packaged_directory
from tests.adapters.fhir.test_output_terminology import DELTA_FINDINGS, contract_finding_codes

RULESET = load_ruleset()


def test_the_vocabulary_holds_the_contract_codes():
    # api-contract *v2* finding codes join the vocabulary as the clinical-rules v2 work adds them
    v1, v2 = contract_finding_codes(v2=False), contract_finding_codes(v2=True)
    assert v1 | DELTA_FINDINGS <= set(vocabulary.FINDING_CODES) <= v2 | DELTA_FINDINGS
    # the history rules' codes (clinical-rules §12 v2) are among them
    history = set(vocabulary.HISTORY_FINDING_CODES)
    assert history == {"heparin_induced_thrombocytopenia_possible", "possible_sample_misidentification"}
    assert history <= set(vocabulary.FINDING_CODES)
    assert set(vocabulary.DELTA_FINDING_CODES) == DELTA_FINDINGS
    assert set(vocabulary.URGENCY_NAMES) == {"immediate", "urgent", "soon", "routine"}
    assert vocabulary.Urgency("urgent").rank > vocabulary.Urgency("soon").rank


def test_the_vocabulary_reads_the_table_the_ruleset_loads():
    assert RULESET.finding_codes() == vocabulary.ENGINE_FINDING_CODES
    assert tuple(s.code for s in RULESET.finding_specs(vocabulary.DELTA)) == vocabulary.DELTA_FINDING_CODES
    assert (
        tuple(s.reason for s in RULESET.finding_specs(vocabulary.FINDING, vocabulary.REASON) if s.reason)
        + tuple(s.reason for s in RULESET.finding_specs(vocabulary.HISTORY) if s.reason)
        == vocabulary.URGENCY_REASONS
    )


def test_the_http_enums_are_the_vocabulary():
    assert schemas.FINDING_CODES == vocabulary.FINDING_CODES
    assert set(schemas.URGENCIES) == set(vocabulary.URGENCY_NAMES)
    assert schemas.URGENCY_REASONS == vocabulary.URGENCY_REASONS
    assert cbc_schema.ANALYTE_KEYS == vocabulary.ANALYTES  # the request schema (labservice.adapters.cbc_schema)


def test_ctcae_versions_are_those_of_ctcae_csv():
    assert vocabulary.CTCAE_VERSIONS == RULESET.ctcae_versions() == cbc_schema.CTCAE_VERSIONS
    assert vocabulary.CTCAE_DEFAULT_VERSION in vocabulary.CTCAE_VERSIONS


def test_the_engine_reports_the_table_codes_in_table_order():
    result = interpret_cbc_table({"platelets": [45.0]})
    assert tuple(result.findings) == vocabulary.ENGINE_FINDING_CODES
    orders = [RULESET.finding(code).order for code in result.findings]
    assert orders == sorted(orders)


def test_each_finding_has_its_texts_in_its_family_module():
    for spec in RULESET.finding_specs(vocabulary.FINDING):
        module = family(spec.family)
        assert callable(getattr(module, f"detail_{spec.code}", None)), spec.code
        if spec.not_assessed is not None:
            assert callable(getattr(module, f"not_assessed_{spec.code}", None)), spec.code
    for spec in RULESET.finding_specs(vocabulary.FINDING, vocabulary.REASON):
        assert spec.family in EVALUATION_ORDER, spec.code


def test_the_urgency_reasons_follow_the_table():
    """§9: platelets 45 (< 100) ask for "soon" under the reason the thrombocytopenia row names."""
    answer = render_interpretations(interpret_cbc_table({"platelets": [45.0], "hemoglobin": [14.0]}))[0]
    assert answer["urgency"] == RULESET.finding("thrombocytopenia").urgency == "soon"
    # §9 (*v2* contract: urgency_reasons names each trigger with the action it asks for): a mapping
    # reason -> action; the list of v1 becomes its keys.
    assert (
        list(answer["urgency_reasons"])
        == [RULESET.finding("thrombocytopenia").reason]
        == ["thrombocytopenia_below_100"]
    )
    assert answer["urgency_reasons"]["thrombocytopenia_below_100"] == "clinical review within days"


def test_the_duffy_caveat_is_a_column():
    """§4: an isolated neutrophil count of 1.0-1.49 with no Duffy status carries the caveat; a stated
    Duffy status or another low lineage removes it."""
    result = interpret_cbc_table(
        {
            "neutrophils": [1.0, 1.49, 1.2, 0.99, 1.5, 1.2],
            "platelets": [250.0, 250.0, 250.0, 250.0, 250.0, 45.0],
            "duffy_null": [np.nan, np.nan, 0.0, np.nan, np.nan, np.nan],
        }
    )
    caveat = result.findings["neutropenia"].extra["duffy_caveat"]
    assert caveat.tolist() == [True, True, False, False, False, False]


# --- adding a finding: one table row, one family module ------------------------------------------


@pytest.fixture
def demo_family(monkeypatch):
    """A family module that is not in the package: it says MCV below 70 fL is 'demo_low_mcv'."""
    module = types.ModuleType("labservice.core.families.demo")
    module.__spec__ = types.SimpleNamespace(name=module.__name__)  # type: ignore[assignment]

    def evaluate(stage):
        low = stage.cols.values["mcv"] < 70
        return {"demo_low_mcv": FindingColumn("demo_low_mcv", low)}

    def detail_demo_low_mcv(view, i):
        return f"MCV {view.v('mcv', i):g} fL.", None, {"mcv": view.v("mcv", i)}

    module.evaluate = evaluate  # type: ignore[attr-defined]
    module.detail_demo_low_mcv = detail_demo_low_mcv  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_a_new_finding_needs_one_row_and_one_family_module(tmp_path: Path, demo_family):
    tables = tmp_path / "reference_ranges"
    shutil.copytree(packaged_directory(), tables)
    with (tables / "findings.csv").open("a", encoding="utf-8") as handle:
        handle.write(
            "demo_low_mcv,4.5,finding,demo,soon,demo_low_mcv,,mcv,,text,Demo sentence.,"
            "Demo: MCV below {thrombocytopenia},demo:mcv,S14\n"
        )
    with pytest.raises(RulesetError, match=r"order '4\.5'"):
        load_ruleset(tables)
    text = (tables / "findings.csv").read_text(encoding="utf-8").replace("demo_low_mcv,4.5,", "demo_low_mcv,40,")
    (tables / "findings.csv").write_text(text, encoding="utf-8")
    rs = load_ruleset(tables)
    answer = render_interpretations(interpret_cbc_table({"mcv": [60.0], "platelets": [45.0]}, ruleset=rs))[0]
    codes = [f["code"] for f in answer["findings"]]
    assert codes[-1] == "demo_low_mcv" and "thrombocytopenia" in codes
    demo = answer["findings"][-1]
    assert demo["title"] == "Demo: MCV below 150"
    assert demo["rule"] == "demo:mcv" and demo["sources"][0].startswith("[S14]")
    assert "demo_low_mcv" in answer["urgency_reasons"]
    assert "Demo sentence." in answer["summary"]


def test_the_no_who_cutoff_age_is_the_tables_youngest_row(tmp_path):
    """§4: "Under 6 months there is no WHO cut-off"; the age the text names is the lowest age of the
    non-pregnancy rows of anemia_cutoffs.csv (182.625 days = 6 months), so moving that row moves it."""
    infant = {"hemoglobin": [9.0], "age_years": [0.25], "sex": ["female"]}
    answer = render_interpretations(interpret_cbc_table(infant))[0]
    anemia = next(n for n in answer["not_assessed"] if n["code"] == "anemia")
    # clinical-rules §4 v2: under 6 months "anaemia is decided by the lab's range only, else not assessed"
    assert anemia["reason"] == (
        "no WHO haemoglobin cut-off for this age (under 6 months) and no laboratory range sent: "
        "send the laboratory's range"
    )

    tables = tmp_path / "reference_ranges"
    shutil.copytree(packaged_directory(), tables)
    path = tables / "anemia_cutoffs.csv"
    path.write_text(path.read_text().replace("any,182.625,730.5,no,", "any,365.25,730.5,no,"))
    rs = load_ruleset(tables)
    answer = render_interpretations(interpret_cbc_table({**infant, "age_years": [0.75]}, ruleset=rs))[0]
    anemia = next(n for n in answer["not_assessed"] if n["code"] == "anemia")
    assert "(under 12 months)" in anemia["reason"]


def test_the_engine_texts_compute_no_bound_and_spell_no_unit():
    """Issue 11: texts quote the tables' numbers as they are (no `value(...) - 1` making "149") and
    write a count's unit from analytes.csv through one display spelling (ruleset.DISPLAY_UNITS)."""
    core = Path(labservice.core.render.__file__).parent
    for path in [core / "render.py", core / "delta.py", *sorted((core / "families").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        assert "x10^9/L" not in text, path
        assert not re.search(r"value\([^)]*\) [-+] \d", text), path
        assert "24-48" not in text, path
