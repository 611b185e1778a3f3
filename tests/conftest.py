"""Shared fixtures: a test app, its client, and the contract's example CBC."""

from __future__ import annotations

import copy
import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from labservice.app import create_app
from labservice.config import load_settings
from labservice.examples import CONTRACT_EXAMPLE


@pytest.fixture
def make_app() -> Callable[..., Flask]:
    """Build a test app with config overrides, e.g. make_app(MAX_BATCH_ITEMS=3)."""

    def build(**config: Any) -> Flask:
        return create_app({"TESTING": True, **config})

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def example_cbc() -> dict[str, Any]:
    """A fresh deep copy of the contract example, safe to modify in a test."""
    return copy.deepcopy(CONTRACT_EXAMPLE)


@pytest.fixture
def broken_ranges(tmp_path) -> tuple[Path, str]:
    """A copy of reference_ranges/ with low >= high on adults.csv line 2: (dir, "file:line")."""
    source = Path(load_settings({})["REFERENCE_RANGES"])
    target = tmp_path / "reference_ranges"
    shutil.copytree(source, target)
    adults = target / "adults.csv"
    with adults.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    low, high = header.index("low"), header.index("high")
    rows[1][low], rows[1][high] = rows[1][high], rows[1][low]
    with adults.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return target, "adults.csv:2"
