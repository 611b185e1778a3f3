"""The rule tables are validated on load: each kind of fault names its file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labservice.core.ruleset import RulesetError, load_ruleset
from labservice.rule_tables import packaged_directory


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    target = tmp_path / "reference_ranges"
    shutil.copytree(packaged_directory(), target)
    return target


def append(path: Path, line: str) -> int:
    """Append a row; return its 1-based line number."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")
    return len(path.read_text(encoding="utf-8").splitlines())


def test_the_shipped_tables_load():
    ruleset = load_ruleset()
    assert ruleset.version.startswith("v1-")
    assert {"5.0", "6.0"} <= set(ruleset.ctcae_versions())


BROKEN_ROWS = [
    ("adults.csv", "platelets,777-3,10*9/L,any,6574.5,54787.5,410,150,S14 reversed", "low 410 is not below high 150"),
    ("adults.csv", "platelets,777-3,10*9/L,any,6574.5,54787.5,150,150,S14 equal", "is not below high"),
    ("adults.csv", "platelets,777-3,10*9/L,female,20000,30000,140,400,S14 overlaps", "overlaps"),
    ("adults.csv", "spleen,,10*9/L,any,6574.5,54787.5,1,2,S14", "unknown analyte 'spleen'"),
    ("adults.csv", "platelets,777-3,furlongs,any,0,100,1,2,S14", "unknown unit 'furlongs'"),
    ("adults.csv", "platelets,777-3,10*9/L,other,0,100,1,2,S14", "sex 'other'"),
    ("adults.csv", "platelets,777-3,10*9/L,any,0,100,one,2,S14", "'one' is not a number"),
    ("adults.csv", "platelets,777-3,10*9/L,any,100,50,1,2,S14", "age_low_days 100.0 is not below"),
    ("children.csv", "hemoglobin,718-7,g/dL,any,400,500,11,14,child overlap", "overlaps"),
    ("thresholds.csv", "thrombocytopenia,platelets,<,140,10*9/L,S1,again", "listed twice"),
    ("thresholds.csv", "extra_rule,platelets,=<,140,10*9/L,S1,bad operator", "operator '=<'"),
    ("thresholds.csv", "extra_rule,platelets,<,140,10*9/L,S99,unknown tag", "source tag 'S99'"),
    ("ctcae.csv", "5.0,platelets,5,<,10,10*9/L,S3,grade five", "grade must be 1-4"),
    ("bands.csv", "lesion_size,huge,50,>=,40,<,mm,S17,upside down", "lower 50.0 is not below upper 40.0"),
    ("anemia_cutoffs.csv", "female,0,100,trimester_4,11,S9,bad", "pregnancy 'trimester_4'"),
    ("findings.csv", "anemia,30,finding,counts,routine,,,hemoglobin,,,,Again,r,S9", "code 'anemia' is listed twice"),
    ("findings.csv", "new_one,1,finding,counts,routine,,,,,,,New,r,S1", "order '1' is not a whole number used once"),
    ("findings.csv", "new_one,30,symptom,counts,routine,,,,,,,New,r,S1", "kind 'symptom'"),
    ("findings.csv", "new_one,30,finding,spleen,routine,,,,,,,New,r,S1", "family 'spleen'"),
    ("findings.csv", "new_one,30,finding,counts,asap,,,,,,,New,r,S1", "urgency 'asap'"),
    ("findings.csv", "new_one,30,finding,counts,soon,,,,,,,New,r,S1", "a reason is needed"),
    ("findings.csv", "new_one,30,finding,counts,soon,bicytopenia,,,,,,New,r,S1", "reason 'bicytopenia'"),
    ("findings.csv", "new_one,30,finding,counts,soon,new_reason,,,,,,New,r,S1", "reason_text is needed"),
    ("findings.csv", "new_one,30,finding,counts,routine,,,spleen,,,,New,r,S1", "unknown analyte(s) spleen"),
    ("findings.csv", "new_one,30,finding,counts,routine,,,,,,,New {no_such_rule},r,S1", "no_such_rule"),
    ("findings.csv", "new_one,30,finding,counts,routine,,,,,count,x,New,r,S1", "needs its analyte"),
    ("findings.csv", "new_one,30,finding,counts,routine,,,,,,,New,r,S99", "source tag 'S99'"),
    ("findings.csv", "new_one,30,finding,counts,routine,,,,,,,,r,S1", "title is empty"),
    ("findings.csv", "new_one,30,finding,counts,routine,,,,1,,,New,r,S1", "not_assessed '1'"),
    ("urgency_actions.csv", "urgent,call again,S22", "urgency 'urgent' is listed twice"),
    ("urgency_actions.csv", "routine,nothing,S22", "urgency 'routine' is not one of"),
    ("urgency_actions.csv", "asap,run,S22", "urgency 'asap' is not one of"),
    ("urgency_actions.csv", "urgent,,S22", "action is empty"),
    ("urgency_actions.csv", "urgent,see {no_such_rule},S22", "no_such_rule"),
    ("urgency_actions.csv", "urgent,call,S99", "source tag 'S99'"),
]


@pytest.mark.parametrize(("name", "row", "message"), BROKEN_ROWS, ids=[f"{b[0]}:{b[2]}" for b in BROKEN_ROWS])
def test_a_broken_row_names_file_line_and_fault(tables, name, row, message):
    line = append(tables / name, row)
    with pytest.raises(RulesetError) as raised:
        load_ruleset(tables)
    text = str(raised.value)
    assert message in text
    assert f"{name}:{line}" in text


def test_an_urgency_without_its_action_row_is_refused(tables):
    """Every raised urgency needs its action in urgency_actions.csv (clinical-rules §9 names one each)."""
    path = tables / "urgency_actions.csv"
    kept = [line for line in path.read_text().splitlines() if not line.startswith("soon,")]
    path.write_text("\n".join(kept) + "\n")
    with pytest.raises(RulesetError, match=r"urgency_actions.csv: missing urgency row\(s\) soon"):
        load_ruleset(tables)


def test_the_urgency_actions_are_read_from_the_table_with_their_citations():
    """§9: urgent is "haematology within 24-48 h [S22]"; the action is the table's, the tag cited after it."""
    ruleset = load_ruleset()
    assert ruleset.urgency_action("urgent") == "discuss with haematology within 24-48 hours [S22]"
    assert ruleset.urgency_action("immediate") == "emergency assessment now"
    assert ruleset.urgency_action("soon") == "clinical review within days"


def test_an_edited_urgency_action_changes_the_answer(tables):
    """The action text lives in the table only: editing the row changes the text (no copy in the code)."""
    path = tables / "urgency_actions.csv"
    path.write_text(path.read_text().replace("clinical review within days", "review by the GP within days"))
    assert load_ruleset(tables).urgency_action("soon") == "review by the GP within days"


def test_a_missing_required_rule_is_refused(tables):
    path = tables / "thresholds.csv"
    kept = [line for line in path.read_text().splitlines() if not line.startswith("febrile_neutropenia,")]
    path.write_text("\n".join(kept) + "\n")
    with pytest.raises(RulesetError, match="febrile_neutropenia"):
        load_ruleset(tables)


def test_a_missing_column_is_refused(tables):
    path = tables / "adults.csv"
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join([lines[0].replace(",source", "")] + [line.rsplit(",", 1)[0] for line in lines[1:]]) + "\n"
    )
    with pytest.raises(RulesetError, match=r"adults.csv:1: missing column\(s\) source"):
        load_ruleset(tables)


def test_a_range_written_in_another_unit_is_converted(tables):
    path = tables / "adults.csv"
    text = path.read_text().replace(
        "hemoglobin,718-7,g/dL,male,6574.5,54787.5,13.0,17.0", "hemoglobin,718-7,g/L,male,6574.5,54787.5,130,170"
    )
    path.write_text(text)
    ruleset = load_ruleset(tables)
    row = next(r for r in ruleset.ranges if r.analyte == "hemoglobin" and r.sex == "male" and r.age_low_days == 6574.5)
    assert (row.low, row.high) == pytest.approx((13.0, 17.0))
