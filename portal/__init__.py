"""Peace Portal: the app factory. It only wires; each module brings its own init_app."""
from __future__ import annotations

import logging

from flask import Flask

from portal import config as portal_config
from portal.db import Database


def create_app(config: dict | None = None) -> Flask:
    """Build the app. `config` overrides PORTAL_* settings (tests) or adds Flask settings.

    Raises ConfigError for unusable settings and PolicyError for invalid policies, so the
    process refuses to start instead of serving with a broken boundary.
    """
    from portal import db as db_module
    from portal import notify
    from portal.admin.views import bp as admin_bp
    from portal.audit import trail
    from portal.audit.views import bp as audit_bp
    from portal.api.views import bp as api_bp
    from portal.auth import limits
    from portal.auth.recovery_views import bp as recovery_bp
    from portal.auth.views import bp as auth_bp
    from portal.auth.sso_views import bp as sso_bp
    from portal.crypto import KeyringError, load_keyring
    from portal.dashboards.views import bp as dashboards_bp
    from portal.extensions import csrf, login_manager
    from portal.home.views import bp as home_bp
    from portal.referrals.views import bp as referrals_bp
    from portal.releases.catalog import CatalogError, load_catalog
    from portal.releases.views import api as aggregates_api_bp
    from portal.releases.views import bp as aggregates_bp
    from portal.policy import PolicyEngine, PolicyError, gate
    from portal.web import errors, input_guard, security

    settings = portal_config.load(overrides=config)
    app = Flask(__name__, template_folder=str(portal_config.ROOT / "templates"),
                instance_path=str(settings.instance_path))
    app.config.update(
        PORTAL=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session that holds it
        WTF_CSRF_SSL_STRICT=True,
    )
    app.config.update(settings.extra)
    _configure_logging(settings.log_level)

    app.extensions["portal.pdp"] = PolicyEngine(settings.policy_dir)
    try:
        app.extensions["portal.keyring"] = load_keyring(settings.kek, settings.kek_file, settings.instance_path,
                                                        settings.production)
    except KeyringError as exc:
        raise portal_config.ConfigError(str(exc)) from None
    try:
        app.extensions["portal.catalog"] = load_catalog(settings.policy_dir)
    except CatalogError as exc:
        raise PolicyError(str(exc)) from None
    db_module.init_app(app, Database(settings.database_url))
    login_manager.init_app(app)
    csrf.init_app(app)
    security.init_app(app, settings)
    errors.init_app(app)
    input_guard.init_app(app)
    gate.init_app(app)
    trail.init_app(app)
    notify.init_app(app)

    for blueprint in (auth_bp, sso_bp, home_bp, admin_bp, referrals_bp, api_bp, dashboards_bp, aggregates_bp,
                      aggregates_api_bp, audit_bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(recovery_bp)
    limits.init_app(app)  # last: limits attach to the registered endpoints by name
    return app


def _configure_logging(level: str) -> None:
    """Log lines carry ids and codes only; personal details never reach a log."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
