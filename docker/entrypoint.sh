#!/bin/sh
# Start the portal: apply the database migrations, then replace this shell with gunicorn.
#
#   entrypoint.sh [GUNICORN OPTION ...]   migrate, then serve portal.wsgi:app
#   entrypoint.sh COMMAND [ARG ...]       run COMMAND instead (e.g. `portal users create ...`)
#
# Settings come from the environment (PORTAL_* for the app, PORT / WEB_CONCURRENCY /
# GUNICORN_CMD_ARGS for gunicorn); `portal` and `gunicorn` come from PATH. Several replicas may
# start at once: `portal db upgrade` holds a PostgreSQL advisory lock while it migrates.
# A bad setting stops the start here with a one-line message and a non-zero exit status.
set -eu

# An argument that is not an option is a command to run in the portal's environment,
# e.g. `docker compose run --rm portal portal users create --email ... --org ...`.
if [ "$#" -gt 0 ]; then
    case "$1" in
        -*) ;;
        *) exec "$@" ;;
    esac
fi

# gunicorn.conf.py sits beside this script, in the image (/app/docker) and in a checkout alike.
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)

portal db upgrade
exec gunicorn --config "$here/gunicorn.conf.py" portal.wsgi:app "$@"
