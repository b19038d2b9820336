"""A web worker does not load scipy: it only solves linear programs when a release is published
(CLI), and importing it costs every gunicorn worker about 40 MB resident (bench/README.md, item f)."""
import subprocess
import sys

from tests.conftest import KEK, SECRET

PROGRAM = """
import sys
from portal import create_app
app = create_app({"PORTAL_ENV": "test", "PORTAL_DATABASE_URL": "sqlite:///%s", "PORTAL_SECRET_KEY": "%s",
                  "PORTAL_INSTANCE_PATH": "%s", "PORTAL_KEK": "%s"})
with app.test_client() as client:
    assert client.get("/transparency").status_code == 200
print(sorted(m for m in sys.modules if m == "scipy" or m.startswith("scipy.")))
"""


def test_the_app_and_a_page_leave_scipy_unloaded(tmp_path):
    """create_app and a rendered page import nothing of scipy; publishing still can (lazily)."""
    program = PROGRAM % (tmp_path / "db.sqlite3", SECRET, tmp_path / "instance", KEK)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    check = subprocess.run([sys.executable, "-c", "from portal.disclosure import Statistic, audit; "
                            "print(audit([Statistic('total', frozenset({'x', 'y'}), 30, 30), "
                            "Statistic('y', frozenset({'y'}), 27, 27), Statistic('x', frozenset({'x'}), None, 3)], 11))"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "Violation" in check.stdout, check.stderr[-2000:]


def test_a_worker_takes_its_start_up_objects_out_of_the_garbage_collectors_walks(tmp_path):
    """docker/gunicorn.conf.py's post_worker_init freezes what the built app holds (bench/README.md, item a)."""
    program = (PROGRAM.replace('print(sorted(m for m in sys.modules if m == "scipy" or m.startswith("scipy.")))', "")
               % (tmp_path / "db.sqlite3", SECRET, tmp_path / "instance", KEK)) + """
import gc, runpy
from portal.config import ROOT
settings = runpy.run_path(str(ROOT / "docker" / "gunicorn.conf.py"))
before = gc.get_freeze_count()
settings["post_worker_init"](None)
print(before, gc.get_freeze_count())
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = map(int, done.stdout.split())
    assert before == 0 and after > 50_000, after  # the app's routes, templates, policies and mappers
