#!/bin/sh
# PostgreSQL of infra/docker-compose.yaml (image: infra/Dockerfile.stack, target postgres). On the first start,
# initdb with superuser POSTGRES_USER whose password comes from POSTGRES_PASSWORD_FILE (a mounted file) or
# POSTGRES_PASSWORD, then one database per name in POSTGRES_DATABASES; then PostgreSQL runs in the foreground,
# reached over TCP with that password (scram-sha-256).
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
: "${POSTGRES_USER:=compactlm}" "${POSTGRES_DATABASES:=}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then password=$(cat "$POSTGRES_PASSWORD_FILE")
  else password=${POSTGRES_PASSWORD:-}; fi
  [ -n "$password" ] || { echo "postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2; exit 1; }
  chown postgres "$PGDATA" && chmod 700 "$PGDATA"
  pwfile=$(mktemp) && printf '%s\n' "$password" > "$pwfile" && chown postgres "$pwfile"
  runuser -u postgres -- "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # Databases over the local socket only (trust is limited to it), before the server listens on the network.
  runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  for db in $(echo "$POSTGRES_DATABASES" | tr ',' ' '); do
    runuser -u postgres -- "$bin/createdb" -U "$POSTGRES_USER" "$db"
  done
  runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres: initialised $PGDATA (user $POSTGRES_USER, databases: ${POSTGRES_DATABASES:-none})"
fi
exec runuser -u postgres -- "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
