"""The Content-Security-Policy in a real browser (Debian's chromium, Playwright) against gunicorn.

(With the security tests in spirit; here because Playwright's sync API allows one instance per process, the
browser fixture of tests/e2e/conftest.py.)

The dashboard, with its strict policy, must work as before: stylesheet applied, the SVG trend charts drawn,
its one script file run, and not a single CSP violation. Swagger UI must run under its own policy. Hostile
patient ids and notes must not run in the page (they are escaped, and the policy would stop them anyway);
the policy is shown to be enforced by trying an inline script.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from labservice.store.database import Database
from labservice.store.models import User
from tests.credentials import TEST_PASSWORD
from tests.credentials import test_password_hash as password_hash
from tests.security.audit_support import cbc, seed_database, start_gunicorn

pytestmark = pytest.mark.slow
HOSTILE_ID = '"><img src=x onerror="window.__pwned=1">'
HOSTILE_NOTE = "<script>window.__pwned=2</script>[click](javascript:window.__pwned=3)"
#: Records every CSP violation the page reports (init scripts run outside the page's policy).
WATCH = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """gunicorn with a key, a signed-up clinician and hostile data: (base URL, a referral id)."""
    folder = tmp_path_factory.mktemp("csp")
    url, token = seed_database(folder)
    database = Database.connect(url)
    with database.session() as session:
        session.add(
            User(
                username="csp.clinician",
                display_name="CSP Clinician",
                password_hash=password_hash(),
                role="clinician",
                created_at=datetime.now(UTC),
                failed_sign_ins=0,
            )
        )
    database.engine.dispose()
    process, port, _, _ = start_gunicorn(folder, url)
    base = f"http://127.0.0.1:{port}"
    try:
        urllib.request.urlopen(base + "/dashboard/sign-in", timeout=10).close()
    except urllib.error.HTTPError:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        pytest.skip("the dashboard's sign-in comes with its own commit")

    def call(method: str, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    try:
        for day, platelets in (("2026-11-10", 180), ("2026-11-14", 12)):
            body = cbc(HOSTILE_ID)
            body["collected_at"] = f"{day}T08:00:00Z"
            body["results"]["platelets"] = {"value": platelets, "unit": "10*9/L"}
            answer = call("POST", "/api/v1/interpretations", body)
        referral = answer["stored"]["referral_id"]
        call(
            "PATCH",
            f"/api/v1/referrals/{referral}",
            {"status": "acknowledged", "note": HOSTILE_NOTE, "actor": HOSTILE_NOTE[:100]},
        )
        yield base, str(referral)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


@pytest.fixture
def page(browser):  # tests/e2e/conftest.py's browser (one Playwright per session)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(WATCH)
    page = context.new_page()
    page.console_messages_seen = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_messages_seen.append(message.text))
    yield page
    context.close()


def sign_in(page, base: str) -> None:
    page.goto(base + "/dashboard/sign-in")
    page.fill("#sign-in-username", "csp.clinician")
    page.fill("#sign-in-password", TEST_PASSWORD)
    page.click("#sign-in-button")
    page.wait_for_url(base + "/dashboard/")


def violations(page) -> list[str]:
    return [
        *page.evaluate("window.__violations"),
        *(text for text in page.console_messages_seen if "Content Security Policy" in text),
    ]


def test_the_dashboard_works_under_its_strict_policy_with_no_violation(page, server):
    base, referral = server
    sign_in(page, base)
    assert violations(page) == []
    # The stylesheet applies (a rule of dashboard.css, not the browser's default).
    assert page.evaluate("getComputedStyle(document.body).margin") != "8px"
    for path in ("/dashboard/", "/dashboard/batches", f"/dashboard/referrals/{referral}/status"):
        page.goto(base + path)
        assert violations(page) == [], path
    page.goto(base + "/dashboard/")
    page.click("#worklist tbody tr[data-urgency] a[href*='/dashboard/patients/']")
    page.wait_for_selector("svg")
    charts = page.locator("svg")
    assert charts.count() >= 3
    box = charts.first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50  # the charts are drawn, sized by CSS and attributes
    assert page.locator("svg line, svg path, svg polyline").count() > 3
    assert violations(page) == []


def test_hostile_ids_and_notes_are_shown_as_text_and_run_nothing(page, server):
    base, referral = server
    sign_in(page, base)
    for path in ("/dashboard/", f"/dashboard/referrals/{referral}/status"):
        page.goto(base + path)
        assert page.evaluate("window.__pwned") is None, path
        assert HOSTILE_ID in page.inner_text("body"), path  # shown, as text
    page.click("a[href*='/dashboard/patients/']")
    page.wait_for_selector("svg")
    assert page.evaluate("window.__pwned") is None
    assert "<script>window.__pwned=2</script>" in page.inner_text("body")
    assert page.locator("a[href^='javascript:']").count() == 0
    assert page.locator("img[src='x']").count() == 0


def test_the_policy_is_enforced_an_inline_script_does_not_run(page, server):
    base, _ = server
    sign_in(page, base)
    page.evaluate("""() => { const s = document.createElement('script');
                             s.textContent = 'window.__inline = 1'; document.body.appendChild(s); }""")
    assert page.evaluate("window.__inline") is None
    assert any(v.startswith("script-src") for v in page.evaluate("window.__violations"))


def test_swagger_ui_runs_under_its_own_policy(page, server):
    base, _ = server
    page.goto(base + "/api/docs")
    page.wait_for_selector(".opblock", timeout=15000)  # operations listed: its script ran and fetched the document
    assert page.locator(".opblock").count() >= 10
    assert violations(page) == []


def test_swagger_try_it_out_neither_reuses_a_key_nor_stores_by_default(page, server):
    """Issue 14 item 3: "Try it out" must not prefill a fixed Idempotency-Key (a second try gets 422 "already
    used") nor store a made-up patient on the worklist (the store parameter is prefilled `false`)."""
    base, _ = server
    page.goto(base + "/api/docs")
    block = page.locator("#operations-interpretations-createInterpretations")  # Swagger's id: tag + operationId
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    key = block.locator('tr[data-param-name="Idempotency-Key"] input')
    store = block.locator('tr[data-param-name="store"] select')
    assert key.input_value() == ""
    assert store.input_value() == "false"
