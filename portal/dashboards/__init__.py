"""The city office's dashboard: live aggregates of the referral exchange, never a referral.

`queries.py` computes every number in the database (GROUP BY on coarse columns, percentiles in
SQL) and shapes the few aggregate rows into tables; `charts.py` turns a table into SVG geometry;
`views.py` parses the filters and renders the page, the htmx partial and the CSV exports.

This package reads counts. It never imports `portal.crypto`, `portal.referrals.vault` or
`portal.referrals.service`, and never names the encrypted columns (tests/test_dashboards.py
parses its imports to keep it so).
"""
