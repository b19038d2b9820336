"""Corrections: a new release restates a month; the old one stays; subtracting one from the other
never shows a change smaller than k."""
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal.cli import cli
from portal.db import get_session, utcnow
from portal.disclosure import TOTAL, Statistic, audit
from portal.models import Referral, Release
from portal.releases.publish import CorrectionError, build_correction, month_start, publish_due
from portal.releases.read import table_view
from tests.test_releases import history  # noqa: F401 — demo history made through the services


def _publish(app):
    with app.app_context():
        db = get_session()
        publish_due(db, app.extensions["portal.catalog"], utcnow())
        return [(r.number, r.period) for r in db.scalars(select(Release).order_by(Release.number))]


def _backdate(app, month: str, how_many: int, seed: int) -> None:
    """Referrals entered late: the newest `how_many` referrals move into `month`."""
    rng = random.Random(seed)
    with app.app_context():
        db = get_session()
        newest = db.scalars(select(Referral).order_by(Referral.created_at.desc()).limit(how_many)).all()
        start = datetime.combine(month_start(month), datetime.min.time(), timezone.utc)
        for referral in newest:
            referral.created_at = start + timedelta(days=rng.randint(0, 26), hours=rng.randint(0, 23))
        db.commit()


def _correct(app, month: str) -> Release:
    with app.app_context():
        db = get_session()
        release = build_correction(db, app.extensions["portal.catalog"], month, "late entries from the hospital",
                                   utcnow())
        db.add(release)
        db.commit()
        return release


def _standing_before(releases: list[Release], correction: Release) -> dict:
    before = {}
    for release in releases:
        if release.number >= correction.number:
            continue
        for name, content in release.tables.items():
            for row, value in content["values"].items():
                before[(name, content["period"], row)] = value
    return before


def _check_no_small_change(app, correction: Release) -> None:
    k = app.extensions["portal.catalog"].k
    with app.app_context():
        releases = list(get_session().scalars(select(Release).order_by(Release.number)))
    before = _standing_before(releases, correction)
    for name, content in correction.tables.items():
        values = content["values"]
        for row, value in values.items():
            old = before.get((name, content["period"], row), 0)
            if old is None:
                assert value is None, f"{name} {row}: suppressed before, shown now"
            elif value is not None and name != "median_days_to_first_contact":
                assert value == old or abs(value - old) >= k, f"{name} {row}: {old} → {value}"
        if values.get(TOTAL) is not None and before.get((name, content["period"], TOTAL)) is not None:
            shown = [r for r, v in values.items() if r != TOTAL and v is not None]
            hidden_now = values[TOTAL] - sum(values[r] for r in shown)
            hidden_before = before[(name, content["period"], TOTAL)] - sum(
                before.get((name, content["period"], r), 0) or 0 for r in shown)
            assert hidden_now == hidden_before or abs(hidden_now - hidden_before) >= k, str((name, values, {r: before.get((name, content["period"], r)) for r in values}))
    statistics = [Statistic(s["key"], frozenset(s["atoms"]), s["value"], 0)
                  for r in releases for s in r.statistics]
    assert audit(statistics, k) == []


def test_a_correction_is_a_new_release_and_the_old_one_stays(history):
    app = history
    published = _publish(app)
    month = published[-4][1]
    with app.app_context():
        original = get_session().scalar(select(Release).where(Release.period == month))
        original_tables, original_statistics = original.tables, original.statistics
    _backdate(app, month, 1, seed=1)
    correction = _correct(app, month)
    assert correction.number == published[-1][0] + 1
    assert (correction.revision, correction.corrects, correction.period) == (1, original.number, month)
    with app.app_context():
        db = get_session()
        again = db.get(Release, original.number)
        assert (again.tables, again.statistics) == (original_tables, original_statistics)
        view = table_view(db, app.extensions["portal.catalog"], "referrals_per_month")
    row = next(r for r in view["rows"] if r[0] == month)
    standing = correction.tables["referrals_per_month"]["values"]
    assert row[1:] == [view["suppressed_marker"] if v is None else v for v in standing.values()]
    assert view["released_through"] == published[-1][1]  # a correction never moves the horizon back
    _check_no_small_change(app, correction)


@pytest.mark.parametrize("late", [1, 5, 30])
def test_subtracting_old_numbers_from_new_never_shows_a_small_change(history, late):
    app = history
    published = _publish(app)
    month = published[-6][1]
    _backdate(app, month, late, seed=late)
    _check_no_small_change(app, _correct(app, month))
    _backdate(app, month, 1, seed=late + 100)  # and a correction of the correction
    second = _correct(app, month)
    assert second.revision == 2
    _check_no_small_change(app, second)


def test_a_single_late_referral_is_never_visible_as_a_difference_of_one(history):
    app = history
    published = _publish(app)
    month = published[-3][1]
    _backdate(app, month, 1, seed=7)
    correction = _correct(app, month)
    with app.app_context():
        releases = list(get_session().scalars(select(Release).order_by(Release.number)))
    before = _standing_before(releases, correction)
    monthly = correction.tables["referrals_per_month"]
    old_total = before[("referrals_per_month", month, "referrals")]
    assert monthly["values"]["referrals"] in (None, old_total)  # +1 would have shown the late entry


def test_only_a_released_month_with_a_reason_can_be_corrected(history):
    app = history
    published = _publish(app)
    with app.app_context():
        db, catalog = get_session(), app.extensions["portal.catalog"]
        with pytest.raises(CorrectionError, match="has not been released"):
            build_correction(db, catalog, "1999-01", "a reason", utcnow())
        with pytest.raises(CorrectionError, match="say why"):
            build_correction(db, catalog, published[0][1], "  ", utcnow())
    runner = app.test_cli_runner()
    refused = runner.invoke(cli, ["releases", "correct", "1999-01", "--reason", "x"])
    assert refused.exit_code == 2 and "has not been released" in refused.output
    done = runner.invoke(cli, ["releases", "correct", published[0][1], "--reason", "late entries"])
    assert done.exit_code == 0 and f"corrects No. {published[0][0]}" in done.output, done.output
