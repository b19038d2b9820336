"""docker/entrypoint.sh, run as the image runs it but outside Docker (no engine needed).

The script is started as a subprocess with the production settings the container would get,
`portal` and `gunicorn` found through PATH, and gunicorn bound to a free loopback port.
The parent's PORTAL_* settings never leak into it: each test names every PORTAL_* it sets.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from portal.migrate import alembic_config
from tests.conftest import _drop_postgres_database, _postgres_database

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
# The scripts folder of the interpreter running the tests: .venv/bin, with `portal` and `gunicorn`.
SCRIPTS = Path(sysconfig.get_path("scripts"))
SECRET = "entrypoint-test-secret-" + "k" * 25  # 48 characters
# A key-encryption key ring (ID:BASE64 of 32 bytes), as production is given one.
KEK = "entrypoint-test:" + base64.b64encode(bytes(range(32))).decode("ascii")
STARTUP_SECONDS = 30
# gunicorn's own variables in the parent environment would change what is being tested.
_GUNICORN_VARIABLES = ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "PORT", "FORWARDED_ALLOW_IPS")


def _environment(**settings: str) -> dict[str, str]:
    """os.environ without any PORTAL_* (PORTAL_TEST_* too) or gunicorn variable, plus `settings`,
    with the test interpreter's scripts folder first on PATH."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PORTAL_") and key not in _GUNICORN_VARIABLES}
    env["PATH"] = os.pathsep.join([str(SCRIPTS), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {name} ---\n{(tmp_path / name).read_text(errors='replace')}"
                     for name in ("stdout.log", "stderr.log") if (tmp_path / name).exists())


def _wait_until_healthy(process: subprocess.Popen, url: str, tmp_path: Path):
    """Poll `url` until it answers 200; return (body, headers). Fails on exit or time-out."""
    deadline = time.monotonic() + STARTUP_SECONDS
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"entrypoint exited with {process.returncode} before serving\n{_logs(tmp_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as error:  # 503 while the database does not answer
            last = f"HTTP {error.code}"
            error.close()
        except OSError as error:  # not listening yet
            last = repr(error)
        time.sleep(0.2)
    pytest.fail(f"{url} not healthy within {STARTUP_SECONDS} s ({last})\n{_logs(tmp_path)}")


def _stop(process: subprocess.Popen) -> int:
    """SIGTERM the process group (gunicorn and its workers); SIGKILL it if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # already gone
        return process.wait(timeout=10)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        raise


@pytest.fixture
def fresh_postgres(postgres_base_url):
    """An empty PostgreSQL database of its own, dropped afterwards; yields its URL."""
    name = f"portal_entrypoint_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = _postgres_database(postgres_base_url, name)
    yield url
    _drop_postgres_database(postgres_base_url, name)


def _alembic_versions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


@pytest.mark.postgres_only
def test_entrypoint_migrates_then_serves_production(fresh_postgres, tmp_path):
    """On a fresh database the entrypoint applies every migration, then gunicorn serves the
    production app: /healthz answers 200 {"status": "ok"} with Strict-Transport-Security, the
    access log names the path but never the query string, and SIGTERM stops it cleanly."""
    port = _free_loopback_port()
    env = _environment(
        PORTAL_ENV="production",
        PORTAL_SECRET_KEY=SECRET,
        PORTAL_KEK=KEK,
        PORTAL_DATABASE_URL=fresh_postgres,
        PORT=str(port),
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port} --workers 1",
    )
    assert len(env["PORTAL_SECRET_KEY"]) == 48
    with open(tmp_path / "stdout.log", "wb") as out, open(tmp_path / "stderr.log", "wb") as err:
        # Started from an unrelated folder: the script finds gunicorn.conf.py beside itself.
        process = subprocess.Popen([str(ENTRYPOINT)], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, start_new_session=True)
    try:
        body, headers = _wait_until_healthy(
            process, f"http://127.0.0.1:{port}/healthz?probe=query-must-not-be-logged", tmp_path)
        assert json.loads(body) == {"status": "ok"}
        assert headers["Strict-Transport-Security"].startswith("max-age=")

        head = ScriptDirectory.from_config(alembic_config(fresh_postgres)).get_current_head()
        assert _alembic_versions(fresh_postgres) == [head]
    finally:
        returncode = _stop(process)

    logs = _logs(tmp_path)
    assert returncode == 0, logs
    assert '"GET /healthz" 200' in logs
    assert "query-must-not-be-logged" not in logs
    assert "Traceback" not in logs


def test_entrypoint_refuses_production_without_secret_key(tmp_path):
    """Production without PORTAL_SECRET_KEY stops at once, before any migration or server:
    a non-zero exit and one line on stderr naming PORTAL_SECRET_KEY, with no traceback."""
    database = tmp_path / "portal.sqlite3"
    env = _environment(PORTAL_ENV="production", PORTAL_KEK=KEK, PORTAL_DATABASE_URL=f"sqlite:///{database}",
                       PORT=str(_free_loopback_port()))
    result = subprocess.run([str(ENTRYPOINT)], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PORTAL_SECRET_KEY" in lines[0]
    assert not database.exists(), "a migration ran despite the refused settings"


def test_entrypoint_runs_a_given_command_instead_of_the_server(tmp_path):
    """Arguments that are not gunicorn options are a command run in the portal's environment
    (e.g. `portal users create` in the image), neither migrating nor serving."""
    database = tmp_path / "portal.sqlite3"
    env = _environment(PORTAL_ENV="production", PORTAL_SECRET_KEY=SECRET, PORTAL_KEK=KEK,
                       PORTAL_DATABASE_URL=f"sqlite:///{database}")
    command = ["python", "-c", "import os, sys; print('ran in', os.environ['PORTAL_ENV'], sys.prefix)"]
    result = subprocess.run([str(ENTRYPOINT), *command], env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ran in production "), result.stdout + result.stderr
    assert not database.exists(), "the entrypoint migrated before running the command"
