"""create_app: configuration layers and the startup check of the rule tables."""

from __future__ import annotations

import pytest

from labservice.app import create_app
from labservice.config import load_settings
from labservice.core.ruleset import RulesetError


def test_environment_overrides_defaults():
    settings = load_settings(
        {
            "LABSERVICE_MAX_BATCH_ITEMS": "50",
            "LABSERVICE_MAX_CONTENT_LENGTH": "4096",
            "LABSERVICE_REFERENCE_RANGES": "/srv/ranges",
        }
    )
    assert settings["MAX_BATCH_ITEMS"] == 50
    assert settings["MAX_CONTENT_LENGTH"] == 4096
    assert settings["REFERENCE_RANGES"] == "/srv/ranges"


def test_defaults_without_environment():
    settings = load_settings({})
    assert settings["MAX_BATCH_ITEMS"] == 1000
    assert settings["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    assert settings["REFERENCE_RANGES"].endswith("reference_ranges")


@pytest.mark.parametrize("raw", ["many", "0", "-5"])
def test_bad_integer_in_environment_is_refused(raw):
    with pytest.raises(ValueError, match="LABSERVICE_MAX_BATCH_ITEMS"):
        load_settings({"LABSERVICE_MAX_BATCH_ITEMS": raw})


def test_app_reads_the_environment(monkeypatch, sqlite_url):
    monkeypatch.setenv("LABSERVICE_MAX_BATCH_ITEMS", "7")
    assert create_app({"TESTING": True, "DATABASE_URL": sqlite_url}).config["MAX_BATCH_ITEMS"] == 7


def test_explicit_config_wins_over_environment(monkeypatch, sqlite_url):
    monkeypatch.setenv("LABSERVICE_MAX_BATCH_ITEMS", "7")
    assert create_app({"MAX_BATCH_ITEMS": 9, "DATABASE_URL": sqlite_url}).config["MAX_BATCH_ITEMS"] == 9


def test_database_url_from_the_environment_without_prefix(monkeypatch, sqlite_url):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert create_app({"TESTING": True}).config["DATABASE_URL"] == sqlite_url


def test_bad_rule_table_stops_the_app_naming_file_and_line(broken_ranges):
    directory, where = broken_ranges
    with pytest.raises(RulesetError, match=where):
        create_app({"TESTING": True, "REFERENCE_RANGES": str(directory)})
