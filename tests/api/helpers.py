"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

PROBLEM_FIELDS = ("type", "title", "status", "detail", "errors")
URL = "/api/v1/interpretations"


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert set(PROBLEM_FIELDS) <= set(body), body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], dict)
    for path, messages in body["errors"].items():
        assert isinstance(path, str)
        assert isinstance(messages, list) and messages
        assert all(isinstance(message, str) for message in messages)
    return body
