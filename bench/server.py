"""gunicorn on a free loopback port, signing in through the real forms, and worker memory.

The server runs the production configuration (docker/gunicorn.conf.py, PORTAL_ENV=production)
behind a pretend TLS proxy: requests carry `X-Forwarded-Proto: https`, which gunicorn trusts from
127.0.0.1, so the portal sees https as it would in production (Secure `__Host-` cookie, strict
CSRF referrer check).
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pyotp

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PROXY = {"X-Forwarded-Proto": "https"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`gunicorn 'bench.app:create_bench_app()'` with 2 sync workers; stop() ends it and its workers."""

    def __init__(self, env: dict, log_path: Path, workers: int = 2, max_requests: int | None = None):
        self.port = free_port()
        self.log_path = log_path
        args = [str(BIN / "gunicorn"), "--config", str(ROOT / "docker" / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        if max_requests is not None:
            args += ["--max-requests", str(max_requests)]
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(args + ["bench.app:create_bench_app()"], cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **env})

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log_path}")
            try:
                status, _, _ = request(self.port, "GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s; see {self.log_path}")

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def request(port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={**PROXY, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


class Browser:
    """One signed-in session: its cookie and CSRF token, obtained through the real sign-in forms."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def headers(self, path: str = "/") -> dict:
        """What a signed-in browser sends: the cookie, and for a POST the CSRF token and referrer."""
        return {"Cookie": self.cookie_header(), "X-CSRFToken": self.csrf or "", "Referer": self.origin + path}

    def _send(self, method: str, path: str, form: dict | None = None):
        headers = {"Cookie": self.cookie_header(), "Referer": self.origin + path}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        status, response_headers, content = request(self.port, method, path, headers, body)
        for name, value in response_headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        text = content.decode("utf-8", "replace")
        if (match := CSRF_META.search(text)) is not None:
            self.csrf = match.group(1)
        location = next((v for k, v in response_headers if k.lower() == "location"), None)
        return status, location, text

    def sign_in(self, email: str, password: str, totp_secret: str, landing: str = "/") -> None:
        """Password, then a TOTP code at /login/code, then a page to settle the cookie and token."""
        self._send("GET", "/login")
        status, location, _ = self._send("POST", "/login", {"email": email, "password": password,
                                                            "csrf_token": self.csrf})
        if status != 302 or not (location or "").endswith("/login/code"):
            raise RuntimeError(f"sign-in of {email} stopped at the password step ({status})")
        self._send("GET", "/login/code")
        code = pyotp.TOTP(totp_secret).now()
        status, location, _ = self._send("POST", "/login/code", {"code": code, "csrf_token": self.csrf})
        if status != 302:
            raise RuntimeError(f"sign-in of {email} stopped at the code step ({status})")
        status, _, _ = self._send("GET", landing)
        if status != 200:
            raise RuntimeError(f"signed in as {email}, but {landing} answered {status}")


class MemoryMonitor:
    """Samples every gunicorn worker's VmHWM and VmRSS (from /proc) while the load runs."""

    def __init__(self, server: Server, interval: float = 0.2):
        self.server, self.interval = server, interval
        self.peak_hwm_kb: dict[int, int] = {}
        self.peak_rss_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _status(pid: int) -> dict[str, int]:
        values = {}
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("VmHWM:", "VmRSS:")):
                    name, value = line.split(":", 1)
                    values[name] = int(value.split()[0])
        except OSError:
            pass
        return values

    def reset(self) -> None:
        """Forget the peaks so far (sign-in's argon2id, start-up), in the kernel and here."""
        for pid in self.server.workers():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.peak_hwm_kb.clear()
        self.peak_rss_kb.clear()

    def sample(self) -> None:
        for pid in self.server.workers():
            status = self._status(pid)
            if "VmHWM" in status:
                self.peak_hwm_kb[pid] = max(self.peak_hwm_kb.get(pid, 0), status["VmHWM"])
                self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), status["VmRSS"])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def summary(self) -> dict:
        """The peak (VmHWM, the kernel's high-water mark) and the largest resident size sampled."""
        hwm, rss = self.peak_hwm_kb, self.peak_rss_kb
        return {"workers_seen": len(hwm), "peak_vmhwm_mb": round(max(hwm.values()) / 1024, 1) if hwm else None,
                "per_worker_vmhwm_mb": sorted((round(v / 1024, 1) for v in hwm.values()), reverse=True),
                "peak_sampled_rss_mb": round(max(rss.values()) / 1024, 1) if rss else None}
