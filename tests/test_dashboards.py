"""The city dashboard: exact aggregates on both backends, filters, CSV, access, and what it never shows.

The world: nine referrals with known dimensions, made through the real services with `now` moved
to known times (as portal/demo_history.py does), so every count, rate and percentile is known.
"""
from __future__ import annotations

import ast
import csv
import io
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from sqlalchemy import event
from sqlalchemy.sql import visitors
from sqlalchemy.sql.schema import Column
from sqlalchemy.sql.selectable import CTE, Subquery

from portal.config import ROOT
from portal.dashboards import queries
from portal.dashboards.views import _cell
from portal.db import get_session
from portal.models import Referral, User
from portal.referrals import service
from portal.referrals.inputs import ConsentInput, ReferralInput
from tests.conftest import login
from tests.referral_world import build_world
from tests.test_referrals import NAME, PHONE, PHONE_E164, form, send

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)  # a Monday
H, D = timedelta(hours=1), timedelta(days=1)
RANGE = {"from": "2024-03-01", "to": "2024-04-30"}

# key: (receiver, zone, urgency, services, sent at, steps as (verb, after sending))
PLAN = {
    "r1": ("north", "N1", "urgent", ["intensive_mentoring", "behavioral_health"], T0,
           [("accept", 2 * H), ("reached", 6 * H), ("handoff", 1 * D), ("complete:engaged", 10 * D)]),
    "r2": ("north", "N1", "routine", ["care_management"], T0 + 1 * D, [("accept", 4 * H), ("reached", 30 * H)]),
    "r3": ("north", "C1", "routine", ["conflict_mediation"], T0 + 2 * D, [("decline", 1 * H)]),
    "r4": ("east", "E1", "urgent", ["intensive_mentoring"], T0 + 7 * D,
           [("accept", 1 * H), ("no_answer", 3 * H), ("reached", 12 * H), ("complete:unable_to_reach", 5 * D)]),
    "r5": ("east", "E1", "routine", ["life_coaching"], T0 + 8 * D, [("accept", 10 * H)]),
    "r6": ("north", "C1", "routine", ["intensive_mentoring", "social_networks"], T0 + 9 * D, []),
    "r7": ("east", "E1", "routine", ["behavioral_health"], T0 + 10 * D, [("cancel", 1 * H)]),
    "r8": ("north", "N1", "urgent", ["education_housing_employment"], datetime(2024, 4, 2, 9, tzinfo=timezone.utc),
           [("accept", 8 * H), ("reached", 20 * H), ("complete:engaged", 18 * D)]),
}
# r1 is handed off to the provider a day after it was sent: "r1c" (sender North, zone N1, urgent).
PEOPLE = {key: (f"Person {key.upper()} Zephyrine", f"+1555010{i:04d}") for i, key in enumerate(PLAN)}


def populate(app, world) -> dict[str, uuid.UUID]:
    """Send and work the PLAN through the services; return the referral ids by key."""
    with app.app_context():
        db = get_session()
        users = {name: db.get(User, getattr(world, name).id)
                 for name in ("nurse", "north_staff", "east_admin")}
        workers = {"north": users["north_staff"], "east": users["east_admin"]}
        ids = {}
        for key, (receiver, zone, urgency, services, sent_at, steps) in PLAN.items():
            receiver_org = getattr(world, receiver)
            ctx = service.Context(db, app.extensions["portal.keyring"], app.extensions["portal.pdp"], users["nurse"],
                                  sent_at, notify=False)
            recipients = [receiver_org.id] + ([world.provider.id] if key == "r1" else [])
            name, phone = PEOPLE[key]
            data = ReferralInput(
                receiver_org_id=receiver_org.id,
                person={"preferred_name": name, "phone": phone, "best_time": "after 3pm", "language": "English",
                        "safe_to_text": True, "safe_voicemail": False, "code_word": None},
                age_band="18_24", zone=zone, reason="gunshot_wound", services=services, urgency=urgency,
                note=f"Note for {name}", consent=ConsentInput("verbal", recipients, ["contact", "note"],
                                                              sent_at + 90 * D, sent_at))
            referral = service.create_referral(ctx, data)
            ids[key] = referral.id
            for verb, after in steps:
                ctx.now, ctx.actor = sent_at + after, workers[receiver]
                if verb == "accept":
                    service.transition(ctx, referral, "accept")
                elif verb == "decline":
                    service.transition(ctx, referral, "decline", reason="at_capacity")
                elif verb in ("reached", "no_answer"):
                    service.log_contact(ctx, referral, verb, None)
                elif verb.startswith("complete:"):
                    service.transition(ctx, referral, "complete", outcome=verb.split(":")[1])
                elif verb == "handoff":
                    ids["r1c"] = service.handoff(ctx, referral, world.provider.id).id
                elif verb == "cancel":
                    ctx.actor = users["nurse"]
                    service.transition(ctx, referral, "cancel", reason="sent_in_error")
        db.commit()
        return ids


@pytest.fixture
def world(app):
    return build_world(app)


@pytest.fixture
def ids(app, world):
    return populate(app, world)


def sign_in(app, user):
    client = app.test_client()
    assert login(client, user.email).status_code == 302
    return client


@pytest.fixture
def city(app, world):
    return sign_in(app, world.city_staff)


def export(client, table, **args) -> list[list[str]]:
    response = client.get(f"/dashboards/city/export/{table}.csv", query_string={**RANGE, **args})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def as_dict(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    """{row label: {column: value}} including the totals row."""
    header = rows[0]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in rows[1:]}


class Tables(HTMLParser):
    """The rendered page's tables by section id (`t-<slug>`): header, body and footer rows of cell text."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.section = self.row = self.cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and (attrs.get("id") or "").startswith("t-"):
            self.section = attrs["id"][2:]
            self.tables[self.section] = []
        elif tag == "tr" and self.section:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.section].append(self.row)
            self.row = None
        elif tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


# -- exact numbers --------------------------------------------------------------------------------
def test_counts_per_zone_team_sender_status_urgency_and_service(app, ids, city, world):
    """Each dimension's table counts the referrals sent in the range exactly, per week and in total."""
    zone = as_dict(export(city, "by-zone"))
    assert zone["2024-03-04"] == {"C1": "1", "E1": "0", "N1": "3", "Total": "4"}  # r1, r1c, r2 in N1; r3 in C1
    assert zone["2024-03-11"] == {"C1": "1", "E1": "3", "N1": "0", "Total": "4"}
    assert zone["2024-04-01"]["N1"] == "1" and zone["2024-02-26"]["Total"] == "0"
    assert zone["All periods"] == {"C1": "2", "E1": "3", "N1": "4", "Total": "9"}
    assert list(zone)[:-1] == ["2024-02-26", "2024-03-04", "2024-03-11", "2024-03-18", "2024-03-25", "2024-04-01",
                               "2024-04-08", "2024-04-15", "2024-04-22", "2024-04-29"]  # empty weeks included

    assert as_dict(export(city, "by-team"))["All periods"] == {"East Team": "3", "Harbor Health": "1",
                                                               "North Team": "5", "Total": "9"}
    assert as_dict(export(city, "by-sender"))["All periods"] == {"Mercy HVIP": "8", "North Team": "1", "Total": "9"}
    status = as_dict(export(city, "by-status"))["All periods"]
    assert status == {"Sent": "2", "Accepted": "1", "Declined": "1", "In progress": "1", "On hold": "0",
                      "Completed": "3", "Cancelled": "1", "Consent ended": "0", "Total": "9"}
    urgency = as_dict(export(city, "by-urgency"))["All periods"]
    assert (urgency["Routine"], urgency["Urgent (retaliation risk)"], urgency["Total"]) == ("5", "4", "9")
    services = as_dict(export(city, "by-service"))
    assert services["All periods"] == {"Intensive mentoring": "4", "Care management": "1", "Conflict mediation": "1",
                                       "Behavioral health": "3", "Life coaching and skills": "1",
                                       "Education, housing and employment": "1", "New social networks": "1"}
    assert services["2024-03-04"]["Intensive mentoring"] == "2" and "Total" not in services["2024-03-04"]


def test_acceptance_rate_median_and_p90(app, ids, city):
    """Acceptance = accepted ÷ (accepted + declined); times are percentile_cont of hours since sending."""
    acceptance = as_dict(export(city, "acceptance"))
    assert acceptance["North Team"] == {"Referrals": "5", "Accepted": "3", "Declined": "1", "Awaiting an answer": "1",
                                        "Acceptance rate (%)": "75.0"}
    assert acceptance["East Team"]["Acceptance rate (%)"] == "100.0"
    assert acceptance["Harbor Health"]["Acceptance rate (%)"] == ""  # nothing answered yet: no rate
    assert acceptance["All teams"] == {"Referrals": "9", "Accepted": "5", "Declined": "1", "Awaiting an answer": "2",
                                       "Acceptance rate (%)": "83.3"}

    times = as_dict(export(city, "response-times"))
    # accept: all [1, 2, 4, 8, 10] h; North [2, 4, 8]; East [1, 10]. Reached: all [6, 12, 20, 30]; North [6, 20, 30].
    assert times["All teams"] == {"Accepted": "5", "Median hours to accept": "4.0",
                                  "90th percentile hours to accept": "9.2", "Reached": "4",
                                  "Median hours to first contact": "16.0",
                                  "90th percentile hours to first contact": "27.0"}
    assert times["North Team"] == {"Accepted": "3", "Median hours to accept": "4.0",
                                   "90th percentile hours to accept": "7.2", "Reached": "3",
                                   "Median hours to first contact": "20.0",
                                   "90th percentile hours to first contact": "28.0"}
    assert times["East Team"] == {"Accepted": "2", "Median hours to accept": "5.5",
                                  "90th percentile hours to accept": "9.1", "Reached": "1",
                                  "Median hours to first contact": "12.0",
                                  "90th percentile hours to first contact": "12.0"}
    assert "Harbor Health" not in times  # never accepted, never reached

    outcomes = as_dict(export(city, "outcomes"))
    assert outcomes["Engaged in services"] == {"Completed referrals": "2", "Share of completed (%)": "66.7"}
    assert outcomes["Unable to reach"]["Completed referrals"] == "1"
    assert outcomes["All outcomes"] == {"Completed referrals": "3", "Share of completed (%)": "100.0"}


def test_percentiles_in_the_database_match_percentile_cont(app, ids):
    """The query layer itself: percentile_cont on PostgreSQL, the window query on SQLite, same numbers."""
    with app.app_context():
        db = get_session()
        f = queries.Filters(date(2024, 3, 1), date(2024, 4, 30))
        assert queries.response_times(db, f)[None] == ((5, 4.0, 9.2), (4, 16.0, 27.0))
        empty = queries.Filters(date(2020, 1, 1), date(2020, 1, 31))
        assert queries.response_times(db, empty) == {}


def test_months_bucket_by_calendar_month(app, ids, city):
    """period=month groups by calendar month on both backends (strftime / date_trunc)."""
    status = as_dict(export(city, "by-status", period="month"))
    assert list(status) == ["2024-03", "2024-04", "All periods"]
    assert (status["2024-03"]["Total"], status["2024-04"]["Total"]) == ("8", "1")
    assert status["2024-04"]["Completed"] == "1"


@pytest.mark.parametrize("args, total", [
    ({"zone": "N1"}, "4"),
    ({"zone": "n1"}, "4"),
    ({"urgency": "urgent"}, "4"),
    ({"zone": "N1", "urgency": "urgent"}, "3"),
    ({"from": "2024-03-11", "to": "2024-03-31"}, "4"),
    ({"from": "2024-03-04", "to": "2024-03-04"}, "1"),
])
def test_filters_narrow_every_table(app, ids, city, args, total):
    """Date range, zone and urgency filters narrow the cohort of every table alike."""
    assert as_dict(export(city, "by-status", **args))["All periods"]["Total"] == total
    assert as_dict(export(city, "acceptance", **args))["All teams"]["Referrals"] == total


def test_team_and_sender_filters(app, ids, city, world):
    """Filtering by receiving team or sender keeps only their referrals."""
    east = as_dict(export(city, "by-zone", team=str(world.east.id)))["All periods"]
    assert east == {"E1": "3", "Total": "3"}
    north_sent = as_dict(export(city, "by-team", sender=str(world.north.id)))["All periods"]
    assert north_sent == {"Harbor Health": "1", "Total": "1"}
    page = city.get("/dashboards/city", query_string={**RANGE, "team": str(world.east.id)}).get_data(as_text=True)
    assert "3 referrals sent 2024-03-01 to 2024-04-30" in page


# -- page, partial, tables, charts ----------------------------------------------------------------
def test_page_has_filters_and_every_table_with_chart_and_alternative(app, ids, city):
    """Every table: a heading, an SVG chart (role=img, <title>, <desc>), a captioned table, a CSV link."""
    response = city.get("/dashboards/city", query_string=RANGE)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in page
    assert 'hx-get="/dashboards/city"' in page and 'hx-target="#dashboard-tables"' in page
    assert 'hx-push-url="true"' in page and 'method="get"' in page and 'type="submit"' in page
    for slug in queries.TABLES:
        section = page.split(f'<section class="dash" id="t-{slug}"', 1)[1].split("</section>", 1)[0]
        assert f'<h2 id="t-{slug}-heading">' in section
        svg = section.split("<svg", 1)[1].split("</svg>", 1)[0]
        assert 'role="img"' in svg and f'<title id="t-{slug}-chart-title">' in svg
        assert re.search(rf'<desc id="t-{slug}-chart-desc">[^<]{{10,}}</desc>', svg), slug
        assert "<table" in section and f'<caption id="t-{slug}-caption">' in section
        assert f'/dashboards/city/export/{slug}.csv?' in section
    assert "<script" not in page.split("<body", 1)[1]  # no chart library: the charts are drawn on the server
    assert "9 referrals sent 2024-03-01 to 2024-04-30" in page
    assert "<desc" in page and "Highest: 2024-03-04 with 4" in page


def test_csv_export_matches_the_page_tables(app, ids, city):
    """Each CSV holds exactly the header, rows and totals of the table on the page ("—" is empty)."""
    tables = Tables(city.get("/dashboards/city", query_string=RANGE).get_data(as_text=True)).tables
    for slug in queries.TABLES:
        on_page = [["" if cell == "—" else cell for cell in row] for row in tables[slug]]
        assert export(city, slug) == on_page, slug


def test_htmx_gets_only_the_partial_and_history_restore_the_page(app, ids, city):
    """An htmx request renders the tables region (and updates the live status out of band)."""
    response = city.get("/dashboards/city", query_string={**RANGE, "zone": "E1"}, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body and "<form" not in body
    assert 'hx-swap-oob="innerHTML:#dashboard-status"' in body and "3 referrals sent" in body
    assert 'id="t-acceptance"' in body and "HX-Request" in response.headers.get("Vary", "")
    restore = city.get("/dashboards/city", query_string=RANGE,
                       headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)


def test_no_referrals_renders_empty_tables(app, world, city):
    """With nothing sent, every table still renders: zeros and dashes, no error."""
    response = city.get("/dashboards/city")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "0 referrals sent" in page and "No referrals match these filters" in page
    assert export(city, "response-times", **{"from": "", "to": ""})[-1] == ["All teams", "0", "", "", "0", "", ""]


def test_default_range_is_the_last_twelve_weeks(app, world, city):
    """Without filters: per week, the last 84 days to today (UTC); a referral sent today counts."""
    nurse = sign_in(app, world.nurse)
    assert send(nurse, form(world)).status_code == 303
    page = city.get("/dashboards/city").get_data(as_text=True)
    today = datetime.now(timezone.utc).date()
    assert f"1 referral sent {(today - timedelta(days=83)).isoformat()} to {today.isoformat()}, per week" in page


# -- bad input -----------------------------------------------------------------------------------
BAD = [
    ({"from": "2024-13-01"}, "Enter a date as YYYY-MM-DD."),
    ({"to": "2024-02-30"}, "Enter a date as YYYY-MM-DD."),
    ({"from": "yesterday"}, "Enter a date as YYYY-MM-DD."),
    ({"from": "2024W101"}, "Enter a date as YYYY-MM-DD."),
    ({"from": "２０２４-03-01"}, "Enter a date as YYYY-MM-DD."),
    ({"from": "2024-04-01", "to": "2024-03-01"}, "The start date is after the end date."),
    ({"from": "2000-01-01", "to": "2024-03-01"}, "at most ten years"),
    ({"period": "day"}, "Choose week or month."),
    ({"zone": "ZZ9"}, "Not a known zone."),
    ({"team": "not-a-uuid"}, "Not a known receiving organization."),
    ({"team": str(uuid.uuid4())}, "Not a known receiving organization."),
    ({"sender": str(uuid.uuid4())}, "Not a known sending organization."),
    ({"urgency": "panic"}, "Choose routine or urgent."),
]


@pytest.fixture
def statements(app):
    """Every SQL statement sent to the database while the test runs."""
    seen: list[str] = []
    engine = app.extensions["portal.db"].engine

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("args, message", BAD)
def test_bad_filter_input_answers_400_and_computes_nothing(app, ids, city, statements, args, message):
    """Unparseable dates, from > to, an unknown period, zone, team or sender: 400, the reason on the page."""
    statements.clear()
    response = city.get("/dashboards/city", query_string=args)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and message in page and "Nothing was computed." in page
    assert 'aria-invalid="true"' in page and "<table" not in page
    assert not [s for s in statements if re.search(r"\breferrals\b", s)]
    exported = city.get("/dashboards/city/export/by-zone.csv", query_string=args)
    assert exported.status_code == 400 and message in exported.get_data(as_text=True)


def test_bad_input_from_htmx_sends_the_browser_to_the_explaining_page(app, world, city):
    """htmx swaps no error response, so the 400 tells it to load the full page that shows the reason."""
    response = city.get("/dashboards/city", query_string={"period": "day"}, headers={"HX-Request": "true"})
    assert response.status_code == 400 and response.headers["HX-Redirect"] == "/dashboards/city?period=day"


def test_unknown_table_is_404(app, world, city):
    """Only the tables the page shows can be exported."""
    assert city.get("/dashboards/city/export/referrals.csv").status_code == 404
    assert city.get("/dashboards/city/export/by-zone.json").status_code == 404


# -- who may see it ------------------------------------------------------------------------------
DENIED = ["police_staff", "nurse", "north_admin", "north_staff", "east_admin", "provider_staff"]


@pytest.mark.parametrize("who", [*DENIED, "hospital_portal_admin", "cvi_portal_admin"])
def test_everyone_but_the_city_office_gets_403(app, world, make, who):
    """Police, CVI teams, hospitals, providers and portal admins outside the city office: 403 everywhere."""
    if who.endswith("portal_admin"):
        org = world.hospital if who.startswith("hospital") else world.north  # police may not administer
        user = make.user(org, "org_admin", portal_admin=True)
    else:
        user = getattr(world, who)
    client = sign_in(app, user)
    assert client.get("/dashboards/city", query_string=RANGE).status_code == 403
    assert client.get("/dashboards/city", headers={"HX-Request": "true"}).status_code == 403
    for slug in queries.TABLES:
        assert client.get(f"/dashboards/city/export/{slug}.csv").status_code == 403
    assert "/dashboards/city" not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("who", ["city_staff", "portal_admin"])
def test_city_office_staff_and_its_portal_admin_see_it_and_the_nav_link(app, world, who):
    """dashboard.view and dashboard.export belong to every role of the city office."""
    client = sign_in(app, getattr(world, who))
    assert client.get("/dashboards/city").status_code == 200
    assert client.get("/dashboards/city/export/outcomes.csv").status_code == 200
    assert 'href="/dashboards/city">Dashboard</a>' in client.get("/").get_data(as_text=True)


def test_visitor_is_sent_to_login(app, world):
    """A known URL that needs a login redirects a visitor to /login (htmx is told to go there)."""
    visitor = app.test_client()
    for path in ("/dashboards/city", "/dashboards/city/export/by-zone.csv"):
        response = visitor.get(path)
        assert response.status_code == 302 and response.location.startswith("/login"), path
    htmx = visitor.get("/dashboards/city", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")


# -- what it never shows, never reads, never imports ---------------------------------------------
def test_no_response_holds_a_referral_id_or_a_personal_value(app, world, ids, city):
    """Neither the page, the partial nor any CSV names a referral or a person, or links to one."""
    nurse = sign_in(app, world.nurse)
    web = send(nurse, form(world))
    ids = {**ids, "web": uuid.UUID(web.location.rsplit("/", 1)[1])}
    bodies = [city.get("/dashboards/city", query_string={**RANGE, "period": period}, headers=headers)
              .get_data(as_text=True) for period in ("week", "month") for headers in ({}, {"HX-Request": "true"})]
    bodies.append(city.get("/dashboards/city").get_data(as_text=True))
    bodies += [city.get(f"/dashboards/city/export/{slug}.csv", query_string=RANGE).get_data(as_text=True)
               for slug in queries.TABLES]
    secrets = [NAME, PHONE, PHONE_E164, "Prefers afternoons", "Zephyrine", "+1555010", "Note for", "after 3pm"]
    secrets += [text for rid in ids.values() for text in (str(rid), rid.hex)]
    for body in bodies:
        for secret in secrets:
            assert secret not in body
        assert "/referrals/" not in body


def test_only_aggregate_rows_are_fetched(app, world, ids, statements, monkeypatch):
    """Each dashboard statement fetches one row per group, selects only coarse keys and aggregates,
    and no SQL the dashboard sends names an encrypted column."""
    fetched = []
    real_rows = queries._rows

    def spy(db, statement):
        rows = real_rows(db, statement)
        fetched.append((statement, rows))
        return rows

    monkeypatch.setattr(queries, "_rows", spy)
    with app.app_context():
        db = get_session()
        ref = queries.reference(db)
        f = queries.Filters(date(2024, 3, 1), date(2024, 4, 30))
        statements.clear()
        fetched.clear()
        queries.build_tables(db, f, ref)
        zone_rows = queries.counts_by_period(db, f, "zone")
        times = queries.response_times(db, f)

    # (week, zone) groups: 03-04 N1 and C1; 03-11 E1 and C1; 04-01 N1.
    assert len(zone_rows) == 5 and sorted(n for *_, n in zone_rows) == [1, 1, 1, 3, 3]
    assert set(times) == {world.north.id, world.east.id, None}
    readable = {"sender_org_id", "receiver_org_id", "zone_id", "status", "urgency", "outcome", "created_at",
                "accepted_at", "first_contact_at"}
    for statement, rows in fetched:
        for column in statement.selected_columns:
            assert referral_columns(column) <= readable, (column, str(statement))
    # One row per group, never one per referral: status 9 (week, status) groups, team 5, sender 4, zone 5,
    # urgency 5, service 9 (these from the daily rollups); acceptance 3 teams; response times 2 teams and
    # all teams (from referrals); outcomes 2; then the zone query again (5) and the response times (3).
    assert [len(rows) for statement, rows in fetched] == [9, 5, 4, 5, 5, 9, 3, 3, 2, 5, 3]
    for sql in statements:
        assert "personal_enc" not in sql and "note_enc" not in sql
        if re.search(r"\b(FROM|JOIN)\s+referrals\b", sql, re.I):  # reads the referrals table
            assert re.search(r"count\(|sum\(|percentile_cont|row_number", sql, re.I), sql


def referral_columns(expression) -> set[str]:
    """The referrals columns an expression is computed from, through subqueries."""
    found = set()
    for node in visitors.iterate(expression):
        if isinstance(node, Column) and isinstance(node.table, (Subquery, CTE)):
            found |= referral_columns(node.table.element.selected_columns[node.key])
        elif isinstance(node, Column) and node.table is not None and node.table.name == "referrals":
            found.add(node.name)
    return found


FORBIDDEN_MODULES = ("portal.crypto", "portal.referrals.vault", "portal.referrals.service")
FORBIDDEN_NAMES = {"personal_enc", "note_enc"}


def test_dashboards_package_imports_no_crypto_vault_or_service_and_names_no_personal_column():
    """The dashboards read counts: no import of crypto, the vault or the referral service; no encrypted column."""
    found = []
    for path in sorted((ROOT / "portal" / "dashboards").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                names = []
            found += [f"{path.name} imports {n}" for n in names if n.startswith(FORBIDDEN_MODULES)]
            word = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name)
                    else node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "")
            found += [f"{path.name} names {w}" for w in FORBIDDEN_NAMES if w in word]
    assert found == []
    assert (ROOT / "portal" / "dashboards" / "views.py").exists()


def test_csv_cells_cannot_smuggle_a_spreadsheet_formula():
    """An organization named like a formula is exported as text."""
    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _cell("@SUM(A1)") == "'@SUM(A1)" and _cell("North Team") == "North Team"
    assert (_cell(None), _cell(4), _cell(7.5)) == ("", "4", "7.5")


@pytest.mark.postgres_only
def test_every_dashboard_read_is_planned_for_its_own_window(app, ids, city):
    """psycopg prepares a statement after five runs and PostgreSQL may then keep one generic plan,
    blind to the dates; at 1M referrals that made whole-history tables five times slower from the
    eleventh read of a worker on. Each read must be planned for its parameters."""
    from sqlalchemy import text
    with app.app_context():
        db = get_session()
        ref = queries.reference(db)
        for _ in range(3):
            for start in (date(2024, 1, 1), date(2024, 3, 1), date(2023, 6, 1), date(2024, 2, 5)):
                for slug in ("by-status", "acceptance"):
                    queries.build_table(db, queries.Filters(start, date(2024, 6, 30), "month"), ref, slug)
        generic, custom = db.execute(text(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) FROM pg_prepared_statements "
            "WHERE statement LIKE '%dashboard_%' AND cardinality(parameter_types) > 0")).one()
        db.rollback()
    assert custom > 0 and generic == 0, (generic, custom)
