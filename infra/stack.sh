#!/usr/bin/env bash
# The deployed stack on one machine, on loopback: PostgreSQL (the database of both the Prefect server and the
# MLflow server), an S3 API (moto in server mode: MLflow artifacts and the DVC remote), the Prefect server, the
# MLflow server, a process worker for the compactlm-process pool, and `prefect deploy --all`.
#
#   infra/stack.sh up      start everything (idempotent: a running stack is left as it is) and deploy
#   infra/stack.sh status  what runs, with PIDs and addresses
#   infra/stack.sh env     the variables a shell needs to use the stack (eval "$(infra/stack.sh env)")
#   infra/stack.sh check   prove it (infra/stack_check.py): a schedule fires, a review is approved through the
#                          Prefect form, an unanswered one times out to `rejected`, a tag decision is honoured
#   infra/stack.sh down    stop everything by PID and delete the stack's state
#   infra/stack.sh test    up + check + down; exits non-zero naming the failed step (make stack-test, CI)
#
# Ports (loopback only): STACK_PG_PORT 55432, STACK_S3_PORT 59000, STACK_PREFECT_PORT 54200, STACK_MLFLOW_PORT
# 55000. State: STACK_DIR (.compactlm/stack). Credentials are generated at `up` into $STACK_DIR/secrets (mode
# 600) and passed through the environment: they are never printed, and `check` fails if one shows in a log.
# PostgreSQL comes from Debian's `postgresql` package (`make stack-test` installs it when missing: make system-deps).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK_DIR="${STACK_DIR:-$ROOT/.compactlm/stack}"
BIN="${STACK_VENV_BIN:-$ROOT/.venv/bin}"
PG_PORT="${STACK_PG_PORT:-55432}"
S3_PORT="${STACK_S3_PORT:-59000}"
PREFECT_PORT="${STACK_PREFECT_PORT:-54200}"
MLFLOW_PORT="${STACK_MLFLOW_PORT:-55000}"
HOST=127.0.0.1
RUN="$STACK_DIR/run"      # PID files
LOGS="$STACK_DIR/logs"
SECRETS="$STACK_DIR/secrets"
# PostgreSQL refuses to run as root: as root, its data lives outside the repository (whose parents may not be
# searchable by the postgres user) and it runs as `postgres`.
if [[ $(id -u) == 0 ]]; then PGDATA_DIR="${STACK_PGDATA:-/tmp/compactlm-stack-$(echo "$STACK_DIR" | sha256sum | cut -c1-10)/pgdata}"
else PGDATA_DIR="${STACK_PGDATA:-$STACK_DIR/pgdata}"; fi

T0=$(date +%s)
say() { printf '[stack %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do [[ -x $dir/pg_ctl ]] && { echo "$dir"; return; }; done
  command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
  die "PostgreSQL is not installed: apt-get install -y postgresql (Debian), then run this again"
}
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_http() {  # name url seconds
  local name=$1 url=$2 limit=$3 start=$SECONDS
  until curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null; do
    alive "$name" || die "$name exited during start-up; its log: $LOGS/$name.log ($(tail -n 3 "$LOGS/$name.log" | tr '\n' ' '))"
    (( SECONDS - start < limit )) || die "$name did not answer $url within ${limit}s; its log: $LOGS/$name.log"
    sleep 1
  done
}

start_bg() {  # name command...: detached in its own session, PID recorded
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
  disown $! 2>/dev/null || true  # stopped by PID in `down`; no job-control notice when it is killed
}

secrets() {
  mkdir -p "$SECRETS"; chmod 700 "$SECRETS"
  local name
  for name in pg_password s3_access_key s3_secret_key; do
    [[ -s $SECRETS/$name ]] || (umask 077; "$BIN/python" -c 'import secrets; print(secrets.token_hex(16))' > "$SECRETS/$name")
  done
}

# The environment of every server and client of the stack (credentials read from the secrets folder).
stack_env() {
  local pw s3k s3s
  pw=$(cat "$SECRETS/pg_password"); s3k=$(cat "$SECRETS/s3_access_key"); s3s=$(cat "$SECRETS/s3_secret_key")
  export PREFECT_API_URL="http://$HOST:$PREFECT_PORT/api"
  export PREFECT_UI_URL="http://$HOST:$PREFECT_PORT"
  export PREFECT_SERVER_ANALYTICS_ENABLED=false
  export MLFLOW_TRACKING_URI="http://$HOST:$MLFLOW_PORT"
  export AWS_ACCESS_KEY_ID="$s3k" AWS_SECRET_ACCESS_KEY="$s3s" AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL="http://$HOST:$S3_PORT" MLFLOW_S3_ENDPOINT_URL="http://$HOST:$S3_PORT"
  export COMPACTLM_DVC_REMOTE="s3://compactlm-data/datasets"
  export STACK_PREFECT_DB_URL="postgresql+asyncpg://compactlm:$pw@$HOST:$PG_PORT/prefect"
  export STACK_MLFLOW_DB_URL="postgresql://compactlm:$pw@$HOST:$PG_PORT/mlflow"
  export STACK_TRAFFIC_DB_URL="postgresql://compactlm:$pw@$HOST:$PG_PORT/traffic"  # served requests, feedback, drift
  export STACK_DIR STACK_LOGS="$LOGS" STACK_SECRETS="$SECRETS"
}

up_postgres() {
  local bin; bin=$(pg_bin)
  if [[ ! -s $PGDATA_DIR/PG_VERSION ]]; then
    say "PostgreSQL: initdb ($("$bin/postgres" --version)) in $PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"; chmod 700 "$PGDATA_DIR"
    local pwfile; pwfile="$(dirname "$PGDATA_DIR")/pw"
    install -m 600 "$SECRETS/pg_password" "$pwfile"
    if [[ $(id -u) == 0 ]]; then chown -R postgres "$(dirname "$PGDATA_DIR")"; fi
    as_pg "$bin/initdb" -D "$PGDATA_DIR" -U compactlm --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 \
      >"$LOGS/initdb.log" 2>&1 || die "initdb failed; see $LOGS/initdb.log"
    rm -f "$pwfile"
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    port_free "$PG_PORT" || die "port $PG_PORT (STACK_PG_PORT) is in use"
    as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
      -o "-h $HOST -p $PG_PORT -k $(dirname "$PGDATA_DIR")" start >/dev/null \
      || die "PostgreSQL did not start; see $PGDATA_DIR/server.log"
  fi
  head -1 "$PGDATA_DIR/postmaster.pid" > "$RUN/postgres.pid"
  local db
  for db in prefect mlflow traffic; do
    PGPASSWORD=$(cat "$SECRETS/pg_password") "$bin/psql" -h "$HOST" -p "$PG_PORT" -U compactlm -d postgres -qtA \
      -c "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
      || PGPASSWORD=$(cat "$SECRETS/pg_password") "$bin/createdb" -h "$HOST" -p "$PG_PORT" -U compactlm "$db"
  done
  say "PostgreSQL up on $HOST:$PG_PORT (PID $(cat "$RUN/postgres.pid")): databases prefect, mlflow, traffic"
}

up() {
  [[ -x $BIN/python ]] || die "no virtual environment at $BIN: run 'make install' first"
  mkdir -p "$RUN" "$LOGS"
  secrets; stack_env
  up_postgres

  if ! alive s3; then
    port_free "$S3_PORT" || die "port $S3_PORT (STACK_S3_PORT) is in use"
    start_bg s3 "$BIN/moto_server" -H "$HOST" -p "$S3_PORT"
    wait_http s3 "http://$HOST:$S3_PORT/moto-api/" 60
    "$BIN/python" - <<'EOF' || die "could not create the S3 buckets"
import boto3
s3 = boto3.client("s3")
for bucket in ("compactlm-mlflow", "compactlm-data"):
    s3.create_bucket(Bucket=bucket)
EOF
  fi
  say "S3 API (moto server) up on $AWS_ENDPOINT_URL (PID $(cat "$RUN/s3.pid")): buckets compactlm-mlflow, compactlm-data"

  if ! alive prefect-server; then
    port_free "$PREFECT_PORT" || die "port $PREFECT_PORT (STACK_PREFECT_PORT) is in use"
    # PREFECT_UI_API_URL: where the UI in the browser finds the API (without it, the default port 4200).
    PREFECT_HOME="$STACK_DIR/prefect-server" PREFECT_API_DATABASE_CONNECTION_URL="$STACK_PREFECT_DB_URL" \
      PREFECT_UI_API_URL="$PREFECT_API_URL" \
      PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="${STACK_SCHEDULER_LOOP_SECONDS:-20}" \
      PREFECT_LOGGING_SERVER_LEVEL=WARNING \
      start_bg prefect-server env -u PREFECT_API_URL "$BIN/prefect" server start --host "$HOST" --port "$PREFECT_PORT"
    wait_http prefect-server "$PREFECT_API_URL/health" 180
  fi
  say "Prefect server up on $PREFECT_UI_URL (PID $(cat "$RUN/prefect-server.pid")), database postgresql+asyncpg://compactlm:***@$HOST:$PG_PORT/prefect"

  if ! alive mlflow-server; then
    port_free "$MLFLOW_PORT" || die "port $MLFLOW_PORT (STACK_MLFLOW_PORT) is in use"
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
      start_bg mlflow-server "$BIN/mlflow" server --host "$HOST" --port "$MLFLOW_PORT" --workers 2 \
      --backend-store-uri "$STACK_MLFLOW_DB_URL" --artifacts-destination s3://compactlm-mlflow
    wait_http mlflow-server "$MLFLOW_TRACKING_URI/health" 180
  fi
  say "MLflow server up on $MLFLOW_TRACKING_URI (PID $(cat "$RUN/mlflow-server.pid")), backend postgresql://compactlm:***@$HOST:$PG_PORT/mlflow, artifacts s3://compactlm-mlflow"

  "$BIN/prefect" --no-prompt work-pool create compactlm-process --type process >"$LOGS/work-pool.log" 2>&1 \
    || grep -q "already exists" "$LOGS/work-pool.log" || die "could not create the work pool; see $LOGS/work-pool.log"
  if ! alive worker; then
    PREFECT_HOME="$STACK_DIR/worker" COMPACTLM_HOME="$STACK_DIR/home" COMPACTLM_TRAFFIC_DB="$STACK_TRAFFIC_DB_URL" \
      HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
      start_bg worker "$BIN/prefect" worker start --pool compactlm-process --name stack-worker
    sleep 3; alive worker || die "the worker exited; see $LOGS/worker.log"
  fi
  say "process worker up for pool compactlm-process (PID $(cat "$RUN/worker.pid"))"

  local start=$SECONDS
  "$BIN/prefect" --no-prompt deploy --all >"$LOGS/deploy.log" 2>&1 || die "prefect deploy --all failed; see $LOGS/deploy.log"
  say "prefect deploy --all: $(grep -c "Deployment '.*' successfully created" "$LOGS/deploy.log") deployments in $(( SECONDS - start ))s"
  say "stack up. Prefect UI $PREFECT_UI_URL, MLflow UI $MLFLOW_TRACKING_URI; logs in $LOGS; use it with: eval \"\$(infra/stack.sh env)\""
}

down() {
  local name pid bin
  for name in worker mlflow-server prefect-server s3; do
    if alive "$name"; then
      pid=$(cat "$RUN/$name.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      say "stopped $name (PID $pid)"
    fi
    rm -f "$RUN/$name.pid"
  done
  if [[ -s $PGDATA_DIR/PG_VERSION ]]; then
    bin=$(pg_bin)
    as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 && say "stopped PostgreSQL" || true
  fi
  rm -rf "$(dirname "$PGDATA_DIR")" "$STACK_DIR"
  say "stack down; its state is deleted"
}

status() {
  local name
  for name in postgres s3 prefect-server mlflow-server worker; do
    if [[ $name == postgres ]] && [[ -f $PGDATA_DIR/postmaster.pid ]] && kill -0 "$(head -1 "$PGDATA_DIR/postmaster.pid")" 2>/dev/null; then
      echo "$name: running (PID $(head -1 "$PGDATA_DIR/postmaster.pid")) $HOST:$PG_PORT"
    elif alive "$name"; then
      case $name in
        s3) echo "$name: running (PID $(cat "$RUN/$name.pid")) http://$HOST:$S3_PORT" ;;
        prefect-server) echo "$name: running (PID $(cat "$RUN/$name.pid")) UI http://$HOST:$PREFECT_PORT" ;;
        mlflow-server) echo "$name: running (PID $(cat "$RUN/$name.pid")) UI http://$HOST:$MLFLOW_PORT" ;;
        *) echo "$name: running (PID $(cat "$RUN/$name.pid"))" ;;
      esac
    else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env)
    [[ -d $SECRETS ]] || die "the stack is not up (no $SECRETS): infra/stack.sh up"
    stack_env
    for v in PREFECT_API_URL PREFECT_UI_URL PREFECT_SERVER_ANALYTICS_ENABLED MLFLOW_TRACKING_URI AWS_ACCESS_KEY_ID \
             AWS_DEFAULT_REGION AWS_ENDPOINT_URL MLFLOW_S3_ENDPOINT_URL COMPACTLM_DVC_REMOTE; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
    # the secret by reference: eval reads the file, the terminal never shows the value
    printf 'export AWS_SECRET_ACCESS_KEY="$(cat %q)"\n' "$SECRETS/s3_secret_key"
    # the traffic store of `compactlm serve` and the monitor flow (PostgreSQL; the password by reference too)
    printf 'export COMPACTLM_TRAFFIC_DB="postgresql://compactlm:$(cat %q)@%s:%s/traffic"\n' "$SECRETS/pg_password" \
      "$HOST" "$PG_PORT" ;;
  check)
    [[ -d $SECRETS ]] || die "the stack is not up (no $SECRETS): infra/stack.sh up"
    stack_env
    PGBIN=$(pg_bin) STACK_PG_PORT=$PG_PORT "$BIN/python" infra/stack_check.py ;;
  test)
    trap 'rc=$?; down; exit $rc' EXIT
    up
    stack_env
    PGBIN=$(pg_bin) STACK_PG_PORT=$PG_PORT "$BIN/python" infra/stack_check.py
    say "stack test passed" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
