"""Settings: embedded defaults for development, refusal in production, no unknown keys."""
import subprocess
import sys

import pytest

from portal.config import ConfigError, load


def test_development_defaults_to_sqlite_under_instance_and_keeps_its_secret(tmp_path):
    """Development needs no settings: SQLite under instance/, a secret generated once and kept."""
    first = load({"PORTAL_INSTANCE_PATH": str(tmp_path)})
    second = load({"PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert first.database_url == f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("missing", ["PORTAL_SECRET_KEY", "PORTAL_DATABASE_URL"])
def test_production_refuses_without_required_settings(missing):
    """Production never falls back to a generated secret or an embedded database."""
    environ = {"PORTAL_ENV": "production", "PORTAL_SECRET_KEY": "s" * 40, "PORTAL_DATABASE_URL": "sqlite://"}
    del environ[missing]
    with pytest.raises(ConfigError, match=missing):
        load(environ)


def test_unknown_portal_setting_is_an_error():
    """A misspelled setting must not silently fall back to its default."""
    with pytest.raises(ConfigError, match="PORTAL_DATABSE_URL"):
        load({"PORTAL_DATABSE_URL": "sqlite://"})


def test_short_production_secret_is_refused():
    with pytest.raises(ConfigError, match="32"):
        load({"PORTAL_ENV": "production", "PORTAL_SECRET_KEY": "short", "PORTAL_DATABASE_URL": "sqlite://"})


def test_cli_refuses_production_without_secret_in_one_line(tmp_path):
    """The operator gets one clear line and a non-zero exit, not a traceback."""
    env = {"PATH": "/usr/bin:/bin", "PORTAL_ENV": "production", "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-m", "portal.cli", "db", "upgrade"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "portal: production requires PORTAL_SECRET_KEY"
