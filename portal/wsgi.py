"""gunicorn entry point: `gunicorn portal.wsgi:app`. Refuses to start on bad settings."""
import sys

from portal import create_app
from portal.config import ConfigError
from portal.policy.engine import PolicyError

try:
    app = create_app()
except (ConfigError, PolicyError) as exc:
    print(f"portal: {exc}", file=sys.stderr)  # before logging exists: one line for the operator
    sys.exit(4)  # gunicorn stops on 4 ("App failed to load") instead of restarting the worker forever
