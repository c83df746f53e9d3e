#!/bin/sh
# The test PostgreSQL image's entrypoint, behaving like the official image's for the variables
# hoist's tests use: POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required),
# POSTGRES_DB (default: the user), PGDATA. First start: initdb (local connections trusted, TCP
# by password), the database created by a server listening on its socket only; then the real
# server on every address.
set -eu
export PATH="/usr/lib/postgresql/15/bin:$PATH"
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user=${POSTGRES_USER:-postgres}
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        pg_ctl -o "-c listen_addresses=''" -w start >/dev/null
        createdb --username="$user" "$db"
        pg_ctl -m fast -w stop >/dev/null
    fi
fi
exec postgres -c listen_addresses='*'
