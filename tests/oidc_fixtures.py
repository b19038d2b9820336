"""A real OpenID provider for the SSO tests: panva's oidc-provider (tests/oidc/provider.mjs) on loopback.

`npm ci` runs once if tests/oidc/node_modules is missing (CI starts from a clean clone). Each
provider is a node process on a port the OS picks, with its own signing key; it prints its issuer
when ready (about 0.3 s) and is stopped when the fixture ends. Without node the tests are skipped,
which tests/conftest.py turns into a failure when CI=true.

`IdpUser` is a person at the provider's login page, driven with urllib and a cookie jar of its
own (the portal's cookies live in the Flask test client or the browser): it follows the
provider's redirects until the provider sends it back to the portal's callback.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.cookiejar
import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest

HERE = Path(__file__).resolve().parent / "oidc"
READY_TIMEOUT = 30  # seconds; it is usually ready in a quarter of one, but the machine may be busy


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (Node 20+ runs the test OpenID provider)")
    return path


def ensure_installed() -> None:
    """`npm ci` from the committed package-lock.json, once, even with several test processes."""
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (it installs the test OpenID provider)")
    lock_path = Path(tempfile.gettempdir()) / f"peace-portal-npm-ci-{hashlib.sha256(bytes(HERE)).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True,
                           timeout=600)


@dataclass
class Account:
    password: str
    email: str
    email_verified: bool = True
    sub: str | None = None


class Accounts:
    """The provider's people, in a JSON file it reads on every use: change one between logins."""

    def __init__(self, path: Path):
        self.path = path
        self.people: dict[str, Account] = {}
        self._write()

    def add(self, username: str, email: str, password: str = "idp-password", email_verified: bool = True,
            sub: str | None = None) -> Account:
        self.people[username] = Account(password, email, email_verified, sub)
        self._write()
        return self.people[username]

    def update(self, username: str, **changes) -> None:
        for key, value in changes.items():
            setattr(self.people[username], key, value)
        self._write()

    def _write(self) -> None:
        data = {u: {k: v for k, v in vars(a).items() if v is not None} for u, a in self.people.items()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class ClientSpec:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    extra: dict = field(default_factory=dict)

    def registration(self) -> dict:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "redirect_uris": list(self.redirect_uris), **self.extra}


class Provider:
    """One running provider process."""

    def __init__(self, clients: list[ClientSpec], accounts: Accounts, **options: str):
        env = {"PATH": os.environ.get("PATH", ""), "OIDC_CLIENTS": json.dumps([c.registration() for c in clients]),
               "OIDC_ACCOUNTS": str(accounts.path), **options}
        self.accounts = accounts
        # Its warnings go to a file: an undrained pipe would block the provider once full.
        self.log = accounts.path.with_suffix(".provider.log")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([node(), str(HERE / "provider.mjs")], cwd=HERE, env=env,
                                            stdout=subprocess.PIPE, stderr=log, text=True)
        ready = self._first_line()
        self.issuer: str = ready["issuer"]
        self.port: int = ready["port"]
        self.url = f"http://127.0.0.1:{self.port}"  # where it listens (a hostile one may claim another issuer)

    def _first_line(self) -> dict:
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=READY_TIMEOUT)
        selector.close()
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"the OpenID provider did not start: {self.log.read_text()[-2000:]}")
        return json.loads(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout:
            self.process.stdout.close()


class ProviderFactory:
    """Start providers for one test (or module); every one is stopped at the end."""

    def __init__(self, tmp_path: Path):
        ensure_installed()
        self.tmp_path = tmp_path
        self.running: list[Provider] = []

    def accounts(self, name: str = "accounts") -> Accounts:
        return Accounts(self.tmp_path / f"{name}-{len(self.running)}-{time.monotonic_ns()}.json")

    def start(self, clients: list[ClientSpec], accounts: Accounts | None = None, **options: str) -> Provider:
        provider = Provider(clients, accounts or self.accounts(), **options)
        self.running.append(provider)
        return provider

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Answer:
    status: int
    url: str
    location: str | None
    body: str


class IdpUser:
    """A person at the provider, with the provider's cookies only."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirects)

    def request(self, url: str, form: dict | None = None) -> Answer:
        data = urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(urllib.request.Request(url, data=data), timeout=10) as response:
                return Answer(response.status, url, response.headers.get("Location"),
                              response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as error:
            location = error.headers.get("Location")
            return Answer(error.code, url, urljoin(url, location) if location else None,
                          error.read().decode("utf-8", "replace"))

    def _follow(self, url: str, stop_at: str, form: dict | None = None) -> Answer:
        """Follow the provider's redirects until one leaves for `stop_at` (the portal's callback)."""
        answer = self.request(url, form)
        for _ in range(10):
            if answer.location is None or answer.location.startswith(stop_at):
                return answer
            answer = self.request(answer.location)
        raise AssertionError("the provider kept redirecting")

    def sign_in(self, authorization_url: str, username: str, password: str, callback: str) -> str:
        """From the authorization URL through the login form; the callback URL the provider sends back."""
        page = self._follow(authorization_url, callback)
        if page.location:  # already signed in at the provider: straight back
            return page.location
        assert page.status == 200 and 'name="password"' in page.body, f"no login form: {page.status} {page.body[:300]}"
        answer = self._follow(_form_action(page, "login"), callback, {"username": username, "password": password})
        assert answer.location and answer.location.startswith(callback), \
            f"the provider did not send the browser back: {answer.status} {answer.body[:300]}"
        return answer.location

    def cancel(self, authorization_url: str, callback: str) -> str:
        """Open the login form and press Cancel; the callback URL (with an error) it sends back."""
        page = self._follow(authorization_url, callback)
        answer = self._follow(_form_action(page, "abort"), callback, {})
        assert answer.location and answer.location.startswith(callback)
        return answer.location


def _form_action(page: Answer, ending: str) -> str:
    actions = [unescape(a) for a in re.findall(r'<form method="post" action="([^"]+)"', page.body)]
    action = next(a for a in actions if a.endswith("/" + ending))
    return urljoin(page.url, action)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
