"""gunicorn settings for the portal, loaded by docker/entrypoint.sh (`gunicorn --config`).

Only gunicorn's own variables are read here (PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS, ...):
every PORTAL_* variable belongs to the app, which refuses to start on one it does not know.

gunicorn applies this file first, then GUNICORN_CMD_ARGS, then its command line, so any
setting below can be overridden without editing it, e.g.
GUNICORN_CMD_ARGS="--bind 127.0.0.1:8001 --workers 1".
"""
from __future__ import annotations

import gc
import os


def _whole_number(name: str, default: int) -> int:
    """A positive whole number from the environment, or a one-line refusal to start."""
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"gunicorn.conf.py: {name} must be a positive whole number, not {raw!r}")
    return value


# -- where and how many ------------------------------------------------------------------------
# Inside a container the port is published by the engine, so listen on every interface of the
# container; outside one, bind to loopback with GUNICORN_CMD_ARGS="--bind 127.0.0.1:PORT".
bind = [f"0.0.0.0:{_whole_number('PORT', 8000)}"]
# Sync workers: one request at a time each. The app is stateless (sessions live in the
# database), so more workers, or more replicas behind the load balancer, scale it out.
workers = _whole_number("WEB_CONCURRENCY", 2)
worker_class = "sync"
# Each worker builds its own app and its own database pool after the fork: no connection is
# ever shared between processes, and a bad setting fails in `portal db upgrade` before this.
preload_app = False


def post_worker_init(worker) -> None:
    """Once the worker has built its app: what start-up made (routes, templates, policies,
    SQLAlchemy's mappers) lives as long as the worker, so take it out of the cyclic garbage
    collector's walks, which then cover only what requests make. An inbox page costs 15-20% less
    of the worker's CPU (bench/README.md, item a)."""
    gc.freeze()


# -- timeouts and recycling --------------------------------------------------------------------
timeout = 30              # a worker silent this long is killed and replaced
graceful_timeout = 20     # on SIGTERM, in-flight requests get this long (compose allows 30 s)
keepalive = 5             # only used by async workers; the reverse proxy holds client connections
# Recycle workers now and then, so slow leaks cannot build up, and not all at the same moment.
# Not much more often: a new worker spends ~0.5 s of CPU building the app and starts with cold
# caches, and at 200 requests a second 1,000 requests was a restart every 10 s (bench item d).
max_requests = 10000
max_requests_jitter = 1000

# The heartbeat file lives in memory, not on the (possibly read-only) container filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No runtime control socket (gunicornc): nothing in a container uses it, and it would be one
# more way in and one more file written under $HOME.
control_socket_disable = True

# -- behind the reverse proxy ------------------------------------------------------------------
# TLS terminates at the reverse proxy. forwarded_allow_ips is deliberately not set here:
# gunicorn reads FORWARDED_ALLOW_IPS (default "127.0.0.1,::1"), which must name the proxy's
# address as gunicorn sees it, so X-Forwarded-Proto: https is trusted from the proxy only.

# -- logging -----------------------------------------------------------------------------------
# Both logs go to standard output/error for the container runtime to collect.
accesslog = "-"
errorlog = "-"
# Client address, method, path, status, size, duration. Never the query string (%(q)s, or
# %(r)s, which contains it), the referer (%(f)s), the user agent or any header: URL paths
# carry only opaque ids, while a query string or a referer could carry personal details.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)s'
# gunicorn's own messages follow the app's level (PORTAL_LOG_LEVEL is the app's own setting).
loglevel = os.environ.get("PORTAL_LOG_LEVEL", "info").lower()
# The process title shows in `ps` on the host too.
proc_name = "peace-portal"
