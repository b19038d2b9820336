"""Import directions: views → services → models; models know nothing of the web or the policy."""
import ast
from pathlib import Path

from portal.config import ROOT

PORTAL = ROOT / "portal"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((PORTAL / folder).rglob("*.py")):
        for name in _imports(path):
            if name.startswith(forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_models_import_nothing_of_the_web_policy_or_services():
    assert _violations("models", ("flask", "portal.policy", "portal.admin", "portal.auth", "portal.web",
                                  "portal.home", "werkzeug")) == []


def test_services_never_read_the_request():
    """Services take the actor and the session as arguments, so the CLI and API reuse them."""
    services = [p for p in PORTAL.rglob("service.py")]
    assert services
    for path in services:
        assert not any(n.startswith(("flask", "flask_login")) for n in _imports(path)), path
