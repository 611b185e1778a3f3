"""The dashboard's pages with the Flask test client, on SQLite and PostgreSQL.

CBCs are seeded through POST /api/v1/interpretations. Expected urgencies from clinical-rules.md §9:
fever with neutrophils <= 0.5 is a red flag -> immediate (§7); platelets 15 < 20 is a new critical value
-> immediate (§3, §9 *v2*: clinical-rules.md lines 99-102 and 243; v1 said urgent); thrombocytopenia < 100
and neutropenia < 1.0 -> soon; a normal CBC -> routine, which
opens no referral. Chart lines from §4 / §5 / §3: platelets 150, 50, 20; neutrophils 1.5, 0.5; the WHO
haemoglobin cut-off (§4, anemia_cutoffs.csv): women from 15 years 12 g/dL, men 13, pregnancy second
trimester 10.5, children 5-11 years 11.5.
"""

from __future__ import annotations

import html
import io
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from labservice.store.database import Database
from labservice.store.repository import get_referral
from tests.credentials import TEST_DISPLAY_NAME, csrf_token, set_display_name

HOSTILE_ID = "<script>alert(1)</script>"
HOSTILE_NOTE = '<img src=x onerror="alert(2)">'
CSS = Path(__file__).resolve().parents[2] / "labservice" / "dashboard" / "static" / "dashboard.css"
# Plot area of the charts (labservice.dashboard.charts.Frame): y 16 (top) to 204 (bottom).
PLOT_TOP, PLOT_BOTTOM = 16.0, 204.0


def cbc(
    patient_id: str,
    when: str | None,
    sex: str | None,
    age: float | None,
    platelets: float | None,
    neutrophils: float | None,
    hemoglobin: float | None,
    **extra: Any,
) -> dict[str, Any]:
    """A CBC document in canonical units; `patient={...}` adds context (pregnancy...), other keywords go
    to the top level (skin...)."""
    person: dict[str, Any] = {"id": patient_id}
    if sex:
        person["sex"] = sex
    if age is not None:
        person["age_years"] = age
    person.update(extra.pop("patient", {}))
    results = {
        name: value
        for name, value in (("platelets", platelets), ("neutrophils", neutrophils), ("hemoglobin", hemoglobin))
        if value is not None
    }
    doc: dict[str, Any] = {"patient": person, "results": results, **extra}
    if when:
        doc["collected_at"] = when
    return doc


SEED = [
    cbc("P-IMM", "2026-03-04T09:00:00Z", "male", 50, 250, 0.4, 14.5, skin={"fever": True}),  # immediate
    cbc("P-URG", "2026-03-02T09:00:00Z", "male", 50, 15, 3.0, 14.5),  # immediate (new critical platelets, §3 v2)
    cbc("P-SOON", "2026-03-01T09:00:00Z", "female", 40, 80, 3.0, 13.5),  # soon (platelets < 100)
    cbc("P-SOON2", "2026-03-03T09:00:00Z", "female", 40, 250, 0.8, 13.5),  # soon (neutrophils < 1.0)
    cbc("P-ROUT", "2026-03-03T10:00:00Z", "female", 40, 250, 3.0, 13.5),  # routine: no referral
]
# Most urgent first; within an urgency the most severe first: critical before non-critical, then the lowest
# platelets, then the lowest neutrophils (issue 13 item 5, v2; v1: then the most recent CBC). P-URG (platelets 15)
# and P-IMM (neutrophils 0.4) both show a critical value: the lower platelets first.
ORDER = ["P-URG", "P-IMM", "P-SOON", "P-SOON2"]


# --- helpers ------------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside <label> elements, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.label_depth = 0
        self.in_label: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self.in_label.append(self.label_depth > 0)
        if tag == "label":
            self.label_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1


def elements(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def rows(page: str) -> list[dict[str, str]]:
    """The worklist rows' attributes (data-patient, data-urgency, data-status, data-referral-id)."""
    table = page.split('<table id="worklist"', 1)[1].split("</table>", 1)[0]
    return [attrs for tag, attrs in elements(table).tags if tag == "tr" and "data-referral-id" in attrs]


def patients(page: str) -> list[str]:
    return [row["data-patient"] for row in rows(page)]


def counts(page: str) -> dict[str, int]:
    block = page.split('id="urgency-counts"', 1)[1].split("</ul>", 1)[0]
    found = re.findall(r'<li data-urgency="(\w+)">.*?data-count="(\d+)"', block, re.S)
    return {urgency: int(count) for urgency, count in found}


def chart(page: str, analyte: str) -> ET.Element:
    match = re.search(rf'<svg id="chart-{analyte}".*?</svg>', page, re.S)
    assert match, f"no {analyte} chart"
    return ET.fromstring(match.group(0))


def threshold_lines(svg: ET.Element) -> dict[str, float]:
    """data-value -> y of every threshold line (checked horizontal)."""
    out = {}
    for line in svg.iter("line"):
        if line.get("class") == "threshold":
            assert line.get("y1") == line.get("y2")
            out[line.get("data-value")] = float(line.get("y1"))
    return out


def expected_y(value: float, svg: ET.Element) -> float:
    high = float(svg.get("data-high"))
    return PLOT_BOTTOM - value / high * (PLOT_BOTTOM - PLOT_TOP)


def seed(client: FlaskClient, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post("/api/v1/interpretations", json=docs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def referral_id(client: FlaskClient, patient: str) -> int:
    page = client.get("/dashboard/?status=new&status=acknowledged&status=referred&status=dismissed").text
    return int(next(row["data-referral-id"] for row in rows(page) if row["data-patient"] == patient))


def form(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    """Form fields plus the session's CSRF token, as the dashboard's own forms send them."""
    return {**fields, "csrf_token": csrf_token(client)}


def text(page: str) -> str:
    """The page's text with entities decoded (for messages)."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture
def client(make_app, database_url: str) -> FlaskClient:
    return make_app(DATABASE_URL=database_url, SECRET_KEY="test-secret").test_client()


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    answers = seed(client, SEED)
    # v2 changes P-URG's v1 expectation (urgent): a new critical value is immediate (clinical-rules.md §9 line 243)
    assert [a["urgency"] for a in answers] == ["immediate", "immediate", "soon", "soon", "routine"]
    return client


@pytest.fixture
def sqlite_client(make_app) -> FlaskClient:
    """For page checks that do not depend on the database engine."""
    return make_app(SECRET_KEY="test-secret").test_client()


# --- layout -------------------------------------------------------------------------------------


def test_root_redirects_to_the_worklist(sqlite_client):
    response = sqlite_client.get("/")
    assert response.status_code == 302
    assert response.location == "/dashboard/"


def test_pages_share_an_accessible_layout(seeded):
    for url in (
        "/dashboard/",
        "/dashboard/patients/P-URG",
        "/dashboard/batches",
        f"/dashboard/referrals/{referral_id(seeded, 'P-URG')}/status",
    ):
        response = seeded.get(url)
        assert response.status_code == 200, url
        assert response.mimetype == "text/html"
        page = response.text
        tags = elements(page).tags
        assert '<html lang="en">' in page
        assert '<a class="skip-link" href="#main">' in page
        assert [a.get("id") for t, a in tags if t == "main"] == ["main"]
        assert sum(1 for t, _ in tags if t == "h1") == 1, url
        assert any(t == "nav" for t, _ in tags)
        # The signed-in user is named in the header (with Sign out) and the footer says who the actor is.
        assert f"Signed in as <strong>{TEST_DISPLAY_NAME}</strong>" in page and 'id="sign-out-form"' in page
        assert f"recorded under your name, <strong>{TEST_DISPLAY_NAME}</strong>" in page
        # No external assets: every stylesheet and script is served by the service itself.
        for tag, attrs in tags:
            if tag in ("link", "script", "img"):
                assert (attrs.get("href") or attrs.get("src") or "").startswith("/dashboard/static/"), (url, attrs)
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_every_form_control_has_a_label(seeded):
    for url in (
        "/dashboard/",
        "/dashboard/patients/P-URG",
        "/dashboard/batches",
        f"/dashboard/referrals/{referral_id(seeded, 'P-URG')}/status",
    ):
        parsed = elements(seeded.get(url).text)
        labelled = {attrs["for"] for tag, attrs in parsed.tags if tag == "label" and "for" in attrs}
        for (tag, attrs), inside_label in zip(parsed.tags, parsed.in_label, strict=True):
            if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
                assert inside_label or attrs.get("id") in labelled, (url, tag, attrs)


def test_static_files_are_served(sqlite_client):
    assert sqlite_client.get("/dashboard/static/dashboard.css").status_code == 200
    assert sqlite_client.get("/dashboard/static/dashboard.js").status_code == 200


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("urgency", ["immediate", "urgent", "soon", "routine"])
def test_urgency_badges_meet_wcag_aa_contrast(urgency):
    css = CSS.read_text(encoding="utf-8")
    colours = dict(re.findall(r"--urgency-(\w+-(?:bg|fg)):\s*(#[0-9a-fA-F]{6});", css))
    light, dark = sorted((_luminance(colours[f"{urgency}-bg"]), _luminance(colours[f"{urgency}-fg"])), reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= 4.5
    assert f".badge-{urgency} {{ background: var(--urgency-{urgency}-bg); color: var(--urgency-{urgency}-fg);" in css


# --- the worklist -------------------------------------------------------------------------------


def test_worklist_has_a_row_per_open_referral_most_urgent_first(seeded):
    page = seeded.get("/dashboard/").text
    assert patients(page) == ORDER
    # P-URG's new critical platelets are immediate (clinical-rules.md §9 line 243, *v2*; v1: urgent)
    assert [row["data-urgency"] for row in rows(page)] == ["immediate", "immediate", "soon", "soon"]
    assert {row["data-status"] for row in rows(page)} == {"new"}
    assert counts(page) == {"immediate": 2, "urgent": 0, "soon": 2, "routine": 0}
    assert "<caption" in page
    # The critical row: badge with its text, patient link, sex and age, reason, time, the three actions.
    row = page.split('data-patient="P-URG"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="badge badge-immediate" data-urgency="immediate">immediate</span>' in row
    assert re.search(r'<a href="/dashboard/patients/P-URG" class="patient-link"\s+title="P-URG">P-URG</a>', row)
    assert "male, 50 y" in text(row)
    assert "critical value" in row and "PLT 15" in row
    assert '<time datetime="2026-03-02T09:00:00+00:00">2026-03-02 09:00 UTC</time>' in row
    buttons = re.findall(r'<button type="submit" name="status" value="(\w+)"[^>]*>(\w+)</button>', row)
    assert buttons == [("acknowledged", "Acknowledge"), ("referred", "Refer")]
    # Issue 14 item 8: dismissing is not one click: a link to the form that asks for the reason.
    assert re.search(
        r'<a class="action action-dismissed"[^>]*href="/dashboard/referrals/\d+/status\?status=dismissed', row
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("urgency=soon", ["P-SOON", "P-SOON2"]),  # platelets 80 before 250 (issue 13 item 5)
        ("urgency=immediate&urgency=urgent", ["P-URG", "P-IMM"]),
        ("finding=neutropenia", ["P-IMM", "P-SOON2"]),
        ("finding=critical_value", ["P-URG", "P-IMM"]),
        ("from=2026-03-02&to=2026-03-03", ["P-URG", "P-SOON2"]),  # the "to" day is included
        ("from=2026-03-04", ["P-IMM"]),
        ("to=2026-03-01", ["P-SOON"]),
        ("status=dismissed", []),
    ],
)
def test_worklist_filters(seeded, query, expected):
    page = seeded.get(f"/dashboard/?{query}").text
    assert patients(page) == expected
    if not expected:
        assert "No referrals match these filters." in page


def test_filters_are_kept_in_the_form(seeded):
    page = seeded.get("/dashboard/?urgency=soon&finding=neutropenia&from=2026-03-01&to=2026-03-05").text
    assert (
        '<input type="checkbox" name="urgency" value="soon"\n                 id="filter-urgency-soon"\n'
        "                 checked>" in page
    )
    assert '<option value="neutropenia" selected>' in page
    assert 'name="from" value="2026-03-01"' in page and 'name="to" value="2026-03-05"' in page


def test_bad_filter_values_are_reported_and_ignored(seeded):
    response = seeded.get("/dashboard/?urgency=bogus&finding=nonsense&from=yesterday&page=x")
    assert response.status_code == 200
    page = text(response.text)
    assert "An unknown urgency was ignored." in page
    assert "The finding filter is not a known finding code and was ignored." in page
    assert "The “from” date is not a date (YYYY-MM-DD) and was ignored." in page
    assert patients(response.text) == ORDER


def test_counts_follow_the_status_filter(seeded):
    rid = referral_id(seeded, "P-URG")
    seeded.post(f"/dashboard/referrals/{rid}/status", data=form(seeded, status="dismissed", reason="already_managed"))
    assert counts(seeded.get("/dashboard/").text)["immediate"] == 1  # P-IMM; P-URG is immediate in v2 (§9 line 243)
    page = seeded.get("/dashboard/?status=dismissed").text
    assert counts(page) == {"immediate": 1, "urgent": 0, "soon": 0, "routine": 0}
    assert patients(page) == ["P-URG"]
    row = page.split('data-patient="P-URG"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'value="(\w+)" class="action[^>]*>([\w ]+)</button>', row) == [("new", "Undo dismissal")]


def test_worklist_pages(client):
    docs = [
        cbc(f"P{i:03d}", f"2026-03-01T{i // 60:02d}:{i % 60:02d}:00Z", "male", 50, 80, 3.0, 14.5) for i in range(53)
    ]  # all soon (platelets < 100)
    seed(client, docs)
    first = client.get("/dashboard/").text
    assert len(rows(first)) == 50
    assert "(page 1 of 2)" in first
    assert 'href="/dashboard/?page=2" rel="next">Next page</a>' in first
    second = client.get("/dashboard/?page=2").text
    assert patients(second) == ["P002", "P001", "P000"]  # the oldest CBCs last
    assert counts(second)["soon"] == 53


def test_a_hostile_patient_id_and_note_are_escaped(client):
    seed(client, [cbc(HOSTILE_ID, "2026-03-02T09:00:00Z", "male", 50, 15, 3.0, 14.5)])
    worklist = client.get("/dashboard/").text
    assert HOSTILE_ID not in worklist
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in worklist
    assert patients(worklist) == [HOSTILE_ID]  # the parser decodes the escaped attribute
    assert 'href="/dashboard/patients/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in worklist  # one path segment
    rid = referral_id(client, HOSTILE_ID)
    set_display_name(client, "<b>Dr X</b>")  # the actor is the signed-in user: give them a hostile name
    response = client.post(
        f"/dashboard/referrals/{rid}/status",
        data=form(
            client,
            status="acknowledged",
            note=HOSTILE_NOTE,
            next="/dashboard/patients/%3Cscript%3Ealert(1)%3C/script%3E",
        ),
    )
    assert response.status_code == 303
    page = client.get(response.location).text
    assert response.location == "/dashboard/patients/%3Cscript%3Ealert(1)%3C/script%3E"
    for raw in (HOSTILE_ID, HOSTILE_NOTE, "<b>Dr X</b>"):
        assert raw not in page
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in page
    assert "Patient &lt;script&gt;alert(1)&lt;/script&gt;: referral acknowledged by &lt;b&gt;Dr X&lt;/b&gt;." in page
    form_page = client.get(f"/dashboard/referrals/{rid}/status").text
    assert HOSTILE_ID not in form_page and "<b>Dr X</b>" not in form_page


@pytest.mark.parametrize("patient_id", ["../../api/v1/referrals?x=", "a/../../../healthz", "x#y", "50% off?"])
def test_a_patient_link_is_one_percent_encoded_path_segment_that_stays_on_the_dashboard(client, patient_id):
    """Issue 10, item 11: a link built from the id `../../api/v1/referrals?x=` left the dashboard (`..` segments
    and `?` were written as they are). The id is one segment: `/`, `?`, `#`, `%` percent-encoded."""
    seed(client, [cbc(patient_id, "2026-03-02T09:00:00Z", "male", 50, 15, 3.0, 14.5)])
    worklist = client.get("/dashboard/").text
    links = [
        attrs["href"]
        for tag, attrs in elements(worklist).tags
        if tag == "a" and attrs.get("href", "").startswith("/dashboard/patients/")
    ]
    assert links == ["/dashboard/patients/" + urllib.parse.quote(patient_id, safe="")]
    segment = links[0].removeprefix("/dashboard/patients/")
    assert not set("/?#") & set(segment) and urllib.parse.unquote(segment) == patient_id
    # A browser resolves it where it was meant to go (no dot segment, no query), and it opens the patient.
    resolved = urllib.parse.urlsplit(urllib.parse.urljoin("http://host/dashboard/", links[0]))
    assert resolved.path == links[0] and resolved.query == "" and resolved.fragment == ""
    page = client.get(links[0])
    assert page.status_code == 200 and html.escape(patient_id) in page.text


# --- the patient page ---------------------------------------------------------------------------


def test_patient_page_draws_three_charts_with_the_ruleset_lines(client):
    seed(
        client,
        [
            cbc("P-1", "2026-03-01T08:00:00Z", "female", 40, 210, 3.1, 13.0),
            cbc("P-1", "2026-03-03T08:00:00Z", "female", 40, 45, 0.4, 8.2),
        ],
    )
    page = client.get("/dashboard/patients/P-1").text
    assert page.count("<svg ") == 3
    platelets, neutrophils, hemoglobin = (chart(page, a) for a in ("platelets", "neutrophils", "hemoglobin"))
    for svg in (platelets, neutrophils, hemoglobin):
        assert svg.get("role") == "img"
        assert svg.get("aria-label")
        assert svg.find("desc") is not None
        assert next(c.find("title").text for c in svg.iter("circle")).startswith("2026-03-01 08:00 UTC: ")
    for svg, values in ((neutrophils, (1.5, 0.5)), (hemoglobin, (12,))):
        lines = threshold_lines(svg)
        assert set(lines) == {f"{v:g}" for v in values}
        for value in values:
            assert lines[f"{value:g}"] == pytest.approx(expected_y(value, svg), abs=0.005)
    # Issue 14 item 10: platelets on a log axis, from 20 (the lowest line) to 500 (a 1-2-5 step above the
    # reference band's upper limit 410 + 10 %): y = 204 - log(v / 20) / log(500 / 20) * 188.
    assert (platelets.get("data-scale"), platelets.get("data-low"), platelets.get("data-high")) == ("log", "20", "500")
    for value in (150, 50, 20):
        y = 204 - math.log10(value / 20) / math.log10(500 / 20) * 188
        assert threshold_lines(platelets)[f"{value:g}"] == pytest.approx(y, abs=0.005)
    # 210 is inside the range (a circle), 45 below it (flag L: a triangle pointing down), both labelled.
    assert [c.get("data-value") for c in platelets.iter("circle")] == ["210"]
    [low] = [p for p in platelets.iter("polygon") if "point" in p.get("class")]
    assert (low.get("data-value"), low.get("data-flag")) == ("45", "L")
    assert [t.text for t in platelets.iter("text") if "point-value" in (t.get("class") or "")] == ["210", "45 L"]
    band = next(g for g in platelets.iter("g") if g.get("class") == "reference")
    assert (band.get("data-low"), band.get("data-high")) == ("150", "410")  # clinical-rules §2 adult platelets
    assert platelets.get("aria-label") == (
        "Platelets (×10⁹/L): 2 results from 2026-03-01 to 2026-03-03; latest 45, lowest 45, highest 210. "
        "Lines at 150 (thrombocytopenia); 50 (marrow-failure range); 20 (critical). "
        "Shaded: reference interval 150 to 410. Logarithmic axis."
    )
    assert "WHO anaemia cut-off 12 g/dL for non-pregnant women from 15 years." in page


def test_a_duffy_null_patient_gets_the_duffy_null_neutropenia_line(client):
    # clinical-rules §4: neutropenia < 1.5 x10^9/L, or < 1.2 for a patient stated to be Duffy-null.
    seed(client, [cbc("P-DN", "2026-03-01T08:00:00Z", "male", 30, 210, 1.3, 14.0, patient={"duffy_null": True})])
    page = client.get("/dashboard/patients/P-DN").text
    assert set(threshold_lines(chart(page, "neutrophils"))) == {"1.2", "0.5"}
    assert "Stated Duffy-null: neutropenia is below 1.2 here, not 1.5." in page


@pytest.mark.parametrize(
    ("patient", "lines", "sentence"),
    [
        ({"sex": "male", "age_years": 50}, {"13"}, "WHO anaemia cut-off 13 g/dL for men from 15 years."),
        (
            {"sex": "female", "age_years": 30, "pregnant": True, "pregnancy_trimester": 2},
            {"10.5"},
            "WHO anaemia cut-off 10.5 g/dL for pregnancy second trimester.",
        ),
        ({"sex": "female", "age_years": 8}, {"11.5"}, "WHO anaemia cut-off 11.5 g/dL for children 5-11 years."),
        ({"age_years": 40}, {"12", "13"}, "Sex not recorded: the WHO anaemia cut-off is between 12 and 13 g/dL"),
    ],
)
def test_the_haemoglobin_line_is_the_patients_who_cutoff(sqlite_client, patient, lines, sentence):
    doc = cbc("P-HB", "2026-03-01T08:00:00Z", None, None, 250, 3.0, 11.0, patient=patient)
    seed(sqlite_client, [doc])
    page = sqlite_client.get("/dashboard/patients/P-HB").text
    svg = chart(page, "hemoglobin")
    assert set(threshold_lines(svg)) == lines
    for value in lines:
        assert threshold_lines(svg)[value] == pytest.approx(expected_y(float(value), svg), abs=0.005)
    assert sentence in text(page)


def test_patient_page_shows_findings_with_sources_delta_and_history(client):
    seed(
        client,
        [
            cbc("P-2", "2026-03-01T08:00:00Z", "female", 40, 200, 3.0, 13.5),
            cbc("P-2", "2026-03-03T08:00:00Z", "female", 40, 80, 3.0, 13.5),  # a 60 % fall within 7 days
        ],
    )
    page = client.get("/dashboard/patients/P-2").text
    codes = re.findall(r'<li class="finding" data-code="(\w+)">', page)
    assert "thrombocytopenia" in codes and "platelet_drop" in codes
    finding = page.split('data-code="thrombocytopenia">', 1)[1].split("</li>\n", 1)[0]
    assert "Rule: <code>thresholds.csv:thrombocytopenia</code>" in finding
    assert "[S1] ACOG Practice Bulletin 207" in finding and "[S2] Stasi R." in finding
    delta = text(page.split('id="delta"', 1)[1].split("</div>", 1)[0])
    assert "Platelet fall 60 % (platelet drop)" in delta
    assert "Window 7 days" in delta
    assert 'id="open-referral"' in page
    assert "No status change yet." in page
    assert re.findall(r"<th scope=\"row\"><time datetime=\"([^\"]+)\"", page) == [
        "2026-03-03T08:00:00+00:00",
        "2026-03-01T08:00:00+00:00",
    ]  # results newest first


def test_undated_cbcs_are_listed_but_not_plotted(sqlite_client):
    seed(sqlite_client, [cbc("P-3", None, "male", 50, 80, 3.0, 14.5)])
    page = sqlite_client.get("/dashboard/patients/P-3").text
    assert "1 CBC without a collection time cannot be placed in time and is not plotted" in text(page)
    assert not list(chart(page, "platelets").iter("circle"))
    assert "no collection time" in page


def test_an_unknown_patient_is_a_404_page(sqlite_client):
    response = sqlite_client.get("/dashboard/patients/nobody")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is no patient nobody." in response.text


# --- status changes -----------------------------------------------------------------------------


def test_acknowledge_records_the_signed_in_user_and_redirects_back(seeded, database_url):
    rid = referral_id(seeded, "P-URG")
    set_display_name(seeded, "Dr Ada")
    response = seeded.post(
        f"/dashboard/referrals/{rid}/status", data=form(seeded, status="acknowledged", note="seen", next="/dashboard/")
    )
    assert response.status_code == 303
    assert response.location == "/dashboard/"
    assert "labservice_actor" not in response.headers.get("Set-Cookie", "")  # no "your name" cookie any more
    page = seeded.get("/dashboard/").text
    assert "Patient P-URG: referral acknowledged by Dr Ada." in page
    assert next(row for row in rows(page) if row["data-patient"] == "P-URG")["data-status"] == "acknowledged"
    database = Database.connect(database_url)
    with database.session() as session:
        referral = get_referral(session, rid)
        assert (referral.status, referral.status_by, referral.note) == ("acknowledged", "Dr Ada", "seen")
        assert [(e.from_status, e.to_status, e.actor, e.note) for e in referral.events] == [
            ("new", "acknowledged", "Dr Ada", "seen")
        ]
    database.engine.dispose()
    # A name sent in the form is not believed: the signed-in user is the actor, and the history shows both.
    response = seeded.post(
        f"/dashboard/referrals/{rid}/status",
        data=form(seeded, status="referred", actor="Mallory", next="/dashboard/patients/P-URG"),
    )
    assert response.status_code == 303 and response.location == "/dashboard/patients/P-URG"
    history = text(seeded.get("/dashboard/patients/P-URG").text)
    assert "new → acknowledged Dr Ada seen" in history
    assert "acknowledged → referred Dr Ada" in history
    assert "Mallory" not in history
    assert "Status changes you make are recorded under your name, Dr Ada" in history


def test_the_patient_page_has_the_status_form(seeded):
    page = seeded.get("/dashboard/patients/P-SOON").text
    form = page.split('id="status-form"', 1)[1].split("</form>", 1)[0]
    assert f'id="status-actor" class="hint">Recorded with the change as made by <strong>{TEST_DISPLAY_NAME}' in form
    assert 'name="actor"' not in form  # no name to type: the signed-in user acts
    assert '<select id="dismiss-reason" name="reason"' in form  # issue 14 item 8
    assert re.findall(r'value="(\w+)" class="action[^>]*>(\w+)</button>', form) == [
        ("acknowledged", "Acknowledge"),
        ("referred", "Refer"),
        ("dismissed", "Dismiss"),
    ]
    assert 'name="next" value="/dashboard/patients/P-SOON"' in form


def test_an_invalid_transition_is_a_message_not_an_error(seeded):
    rid = referral_id(seeded, "P-SOON")
    seeded.post(f"/dashboard/referrals/{rid}/status", data=form(seeded, status="dismissed", reason="not_current"))
    response = seeded.post(
        f"/dashboard/referrals/{rid}/status",
        data=form(seeded, status="acknowledged", next="/dashboard/patients/P-SOON"),
    )
    assert response.status_code == 303
    page = seeded.get(response.location)
    assert page.status_code == 200
    message = text(page.text).split("The status was not changed: ", 1)[1]  # then the repository's reason
    assert "dismissed" in message.split(".")[0] and "not acknowledged" in message.split(".")[0]
    assert 'role="alert"' in page.text


def test_a_note_that_is_too_long_is_a_message(seeded):
    rid = referral_id(seeded, "P-SOON")
    response = seeded.post(
        f"/dashboard/referrals/{rid}/status", data=form(seeded, status="referred", note="x" * 2001, next="/dashboard/")
    )
    assert response.status_code == 303
    assert response.location.startswith(f"/dashboard/referrals/{rid}/status?")
    page = seeded.get(response.location).text
    assert "A note can have at most 2000 characters." in page
    assert 'data-chosen="true">Refer</button>' in page
    still = next(r for r in rows(seeded.get("/dashboard/").text) if r["data-patient"] == "P-SOON")
    assert still["data-status"] == "new"


def test_the_your_name_form_and_cookie_are_gone(seeded):
    assert seeded.post("/dashboard/actor", data=form(seeded, actor="Dr Carol")).status_code == 404
    page = seeded.get("/dashboard/").text
    assert 'name="actor"' not in page and "Remember my name" not in page
    assert f'<strong id="actor-name">{TEST_DISPLAY_NAME}</strong>' in page


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/api/v1/ruleset",
        "javascript:alert(1)",
        "/dashboard/\r\nSet-Cookie: x=1",
    ],
)
def test_redirects_stay_on_the_dashboard(seeded, target):
    rid = referral_id(seeded, "P-SOON")
    response = seeded.post(f"/dashboard/referrals/{rid}/status", data=form(seeded, status="acknowledged", next=target))
    assert response.status_code == 303
    assert response.location == "/dashboard/"


def test_an_unknown_status_or_referral(seeded):
    rid = referral_id(seeded, "P-SOON")
    response = seeded.post(f"/dashboard/referrals/{rid}/status", data=form(seeded, status="deleted"))
    assert response.status_code == 303
    assert "Choose Acknowledge, Refer or Dismiss." in seeded.get(response.location).text
    missing = seeded.post("/dashboard/referrals/999999/status", data=form(seeded, status="acknowledged"))
    assert missing.status_code == 404 and "There is no referral 999999." in missing.text
    assert seeded.get("/dashboard/referrals/999999/status").status_code == 404


# --- batches ------------------------------------------------------------------------------------

# Platelets 15 < 20: a new critical value -> immediate (§3, §9 *v2*, clinical-rules.md line 243; v1: urgent);
# the other rows are normal (routine); "abc" is rejected.
BATCH_CSV = (
    b"Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)\n"
    b"B1,2026-03-01T08:00:00Z,F,40,250,13.5,3.0\n"
    b"B2,2026-03-01T09:00:00Z,M,55,15,14.5,3.0\n"
    b"B3,2026-03-01T10:00:00Z,M,60,abc,14.5,3.0\n"
)


def upload(client: FlaskClient, data: bytes, mapping: str = "") -> Any:
    return client.post(
        "/dashboard/batches",
        data=form(client, file=(io.BytesIO(data), "cbc.csv"), mapping=mapping),
        content_type="multipart/form-data",
    )


def test_the_upload_form(sqlite_client):
    page = sqlite_client.get("/dashboard/batches").text
    assert 'enctype="multipart/form-data"' in page
    assert '<label for="upload-file">CSV file</label>' in page
    assert '<label for="upload-mapping">Mapping (optional, JSON)</label>' in page
    assert 'type="file" id="upload-file" name="file"' in page


def test_upload_shows_the_summary_and_links_to_the_downloads(client):
    response = upload(client, BATCH_CSV)
    assert response.status_code == 303
    match = re.fullmatch(r"/dashboard/batches/([0-9a-f]{32})", response.location)
    assert match
    batch_id = match.group(1)
    page = client.get(response.location).text
    assert "Batch read: 2 CBCs interpreted, 1 rows rejected." in page
    fields = dict(re.findall(r'<dd data-field="(\w+)">(\d+)</dd>', page))
    assert fields == {
        "rows_in": "3",
        "rows_out": "3",
        "interpreted": "2",
        "rejected": "1",
        "stored": "2",
        "duplicates": "0",
    }
    assert re.search(r'<tr data-urgency="immediate">.*?<td>1</td>', page, re.S)
    # The dashboard's own downloads (the API's need an API key; these, a signed-in user).
    assert f'id="download-csv" href="/dashboard/batches/{batch_id}/result.csv"' in page
    assert f'id="download-json" href="/dashboard/batches/{batch_id}/result.json"' in page
    assert f'id="download-csv-excel" href="/dashboard/batches/{batch_id}/result.csv?excel=true"' in page
    for prefix in ("/dashboard", "/api/v1"):
        csv_download = client.get(f"{prefix}/batches/{batch_id}/result.csv")
        assert csv_download.status_code == 200 and csv_download.mimetype == "text/csv"
        assert csv_download.data == client.get(f"/api/v1/batches/{batch_id}/result.csv").data
        # Issue 14 item 5: named after the uploaded file, and with a byte order mark for Excel when asked.
        assert 'filename="cbc.interpreted.csv"' in csv_download.headers["Content-Disposition"]
        excel = client.get(f"{prefix}/batches/{batch_id}/result.csv?excel=true")
        assert excel.data == b"\xef\xbb\xbf" + csv_download.data
        assert len(client.get(f"{prefix}/batches/{batch_id}/result.json").get_json()) == 3
    assert client.get("/dashboard/batches/" + "0" * 32 + "/result.csv").status_code == 404
    # The stored rows are on the worklist like any other CBC.
    assert patients(client.get("/dashboard/").text) == ["B2"]
    # The same file again: the same batch, not interpreted twice.
    again = upload(client, BATCH_CSV)
    assert again.location == response.location
    assert "This file was already uploaded with this mapping" in client.get(again.location).text


def test_an_upload_that_cannot_be_read_shows_the_reason(sqlite_client):
    response = upload(sqlite_client, BATCH_CSV, mapping="{not json")
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert "The file was not read: The mapping cannot be used:" in response.text
    assert "{not json</textarea>" in response.text  # the mapping is kept for correcting
    empty = upload(sqlite_client, b"")
    assert empty.status_code == 422 and "The file was not read: The file cannot be read as CBCs" in empty.text


def test_an_unknown_batch_is_a_404_page(sqlite_client):
    assert sqlite_client.get("/dashboard/batches/" + "0" * 32).status_code == 404
    assert sqlite_client.get("/dashboard/batches/../../etc").status_code == 404


def test_the_batches_page_lists_recent_uploads_newest_first(sqlite_client):
    assert "No batch has been uploaded yet." in sqlite_client.get("/dashboard/batches").text
    first = upload(sqlite_client, BATCH_CSV).location
    second_csv = BATCH_CSV.replace(b"B3,", b"B4,")
    second = sqlite_client.post(
        "/dashboard/batches",
        data=form(sqlite_client, file=(io.BytesIO(second_csv), "later.csv")),
        content_type="multipart/form-data",
    ).location
    page = sqlite_client.get("/dashboard/batches").text
    table = page[page.index('id="recent-batches"') :]
    rows = re.findall(r'<a href="(/dashboard/batches/[0-9a-f]{32})">([^<]+)</a>', table)
    assert rows == [(second, "later.csv"), (first, "cbc.csv")]
    # Three rows in each file: two interpreted, one rejected ("abc" platelets).
    assert re.search(r"later\.csv</a></td>\s*<td>[\d: -]+</td>\s*<td>3</td><td>2</td><td>1</td>", table)
