#!/usr/bin/env bash
# Build and try the container images on a machine that reaches only the package registries (no image hub):
# the base image is made from Debian packages, and the Dockerfiles take it as a build argument.
#
#   infra/images.sh engine   start dockerd in the background (as root, no systemd) unless an engine answers;
#                            `engine-stop` stops the one it started
#   infra/images.sh base     compactlm-base:bookworm: mmdebstrap of Debian bookworm (python3 3.11, a venv at
#                            /opt/venv first on PATH) imported with `docker import`; skipped when it exists
#                            (FORCE=1 rebuilds)
#   infra/images.sh build    compactlm-worker (infra/Dockerfile), compactlm-serve (infra/Dockerfile.serve) and
#                            compactlm-stack-{postgres,s3} (infra/Dockerfile.stack) on BASE_IMAGE
#   infra/images.sh test     serve a tiny model (made here with the project's library, mounted read-only) from
#                            compactlm-serve on 127.0.0.1, wait for /ready, POST one completion, remove it
#   infra/images.sh compose  the stack of infra/docker-compose.yaml (credentials: .compactlm/compose.env, made
#                            once, mode 600): up, Prefect /api/health and MLflow /health answer, tables in
#                            PostgreSQL, the buckets exist, `prefect deploy --all` and a review-sweep run on the
#                            worker, an MLflow artifact lands in S3, no credential in a log, down (volumes deleted)
#   infra/images.sh all      engine + base + build + test + compose
#
# Each step prints its time; a failure exits non-zero naming the step. Elsewhere the Dockerfiles build from the
# public python:3.11-slim (their default BASE_IMAGE) with any BuildKit builder (`docker build` with buildx,
# `docker compose build`); nothing here is needed there.
#
# Environment: BASE_IMAGE (compactlm-base:bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian), DOCKER (a
# client with BuildKit: `docker` when it has buildx, else Debian's /usr/bin/docker), TORCH_WHEEL (a local CPU
# torch wheel, e.g. /opt/wheels/torch-2.13.0+cpu-*.whl; default: the one in PIP_FIND_LINKS, if any), PIP_CERT
# (a CA bundle pip needs to reach PyPI through a TLS-inspecting proxy; default: pip's own setting), TEST_PORT
# (18000). The CA bundle reaches the build as a BuildKit secret and the wheel through a bind mount: neither is in
# any image layer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE_IMAGE="${BASE_IMAGE:-compactlm-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY="${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
TEST_PORT="${TEST_PORT:-18000}"
WORK="$ROOT/.compactlm/images"   # scratch: the tiny test model, logs, the PID of a dockerd started here
WHEELS="$ROOT/infra/wheels"      # build-context folder for local wheels (its .gitignore keeps them out of git)
export DOCKER_BUILDKIT=1

T0=$(date +%s)
STEP=setup
say() { printf '[images %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf 'images: step %s failed: %s\n' "$STEP" "$*" >&2; exit 1; }
step() { STEP=$1; STEP_T0=$(date +%s); say "$1: start"; }
done_step() { say "$STEP: done in $(( $(date +%s) - STEP_T0 ))s${1:+ ($1)}"; }

docker_cli() {  # a docker client whose `build` has BuildKit (--secret, RUN --mount)
  if [[ -n ${DOCKER:-} ]]; then echo "$DOCKER"
  elif docker buildx version >/dev/null 2>&1; then echo docker
  elif [[ -x /usr/bin/docker ]]; then echo /usr/bin/docker   # Debian's docker.io: BuildKit built in
  else echo docker; fi
}
DOCKER="$(docker_cli)"
dk() { "$DOCKER" "$@"; }
image_exists() { dk image inspect "$1" >/dev/null 2>&1; }
size_of() { dk image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }

engine_check() {
  command -v "$DOCKER" >/dev/null || die "no docker client ($DOCKER): apt-get install -y docker.io"
  dk info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed): infra/images.sh engine starts one"
}

# --- engine -------------------------------------------------------------------------------------------------
engine_start() {  # dockerd in the background (root; no systemd here), unless an engine already answers
  step engine
  command -v dockerd >/dev/null || die "dockerd is not installed: apt-get install -y docker.io"
  if dk info >/dev/null 2>&1; then say "engine: a Docker engine already answers"; done_step; return; fi
  mkdir -p "$WORK"
  setsid dockerd >"$WORK/dockerd.log" 2>&1 </dev/null &
  echo $! >"$WORK/dockerd.pid"
  local start=$SECONDS
  until dk info >/dev/null 2>&1; do
    kill -0 "$(cat "$WORK/dockerd.pid")" 2>/dev/null || die "dockerd exited: $(tail -n 3 "$WORK/dockerd.log" | tr '\n' ' ')"
    (( SECONDS - start < 60 )) || die "dockerd did not answer within 60s; see $WORK/dockerd.log"
    sleep 1
  done
  done_step "dockerd PID $(cat "$WORK/dockerd.pid"), $(dk info --format '{{.Driver}}') storage; log $WORK/dockerd.log"
}

engine_stop() {  # the dockerd that `engine` started (by its PID), after removing this script's containers
  step engine-stop
  [[ -s $WORK/dockerd.pid ]] || { say "engine-stop: no dockerd started by this script"; done_step; return; }
  local pid; pid=$(cat "$WORK/dockerd.pid")
  dk rm -f compactlm-serve-test >/dev/null 2>&1 || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && die "dockerd (PID $pid) is still running"
  rm -f "$WORK/dockerd.pid"
  done_step "dockerd PID $pid stopped"
}

# --- base ---------------------------------------------------------------------------------------------------
base() {
  step base
  engine_check
  if image_exists "$BASE_IMAGE" && [[ -z ${FORCE:-} ]]; then
    say "base: $BASE_IMAGE exists ($(size_of "$BASE_IMAGE")); FORCE=1 rebuilds"; done_step; return
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed: apt-get install -y mmdebstrap"
  mkdir -p "$WORK"
  # A minimal bookworm (variant apt: Essential packages + apt, so Dockerfiles can apt-get install more) with
  # Python 3.11 and a venv in /opt/venv, so `python` and `pip` mean the same as in python:3.11-slim. No docs,
  # man pages or translations (as in the slim images).
  nice -n 10 mmdebstrap --variant=apt --quiet \
    --include=python3,python3-venv,ca-certificates,passwd \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/opt/venv/lib/python3.11/site-packages/pip/_vendor/distlib/*.exe' \
    bookworm - \
    "deb $DEBIAN_MIRROR bookworm main" "deb $DEBIAN_MIRROR bookworm-updates main" \
    "deb $DEBIAN_SECURITY bookworm-security main" 2>"$WORK/mmdebstrap.log" \
  | dk import \
      --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      --message "mmdebstrap bookworm + python3 venv (infra/images.sh base)" - "$BASE_IMAGE" >/dev/null \
    || die "mmdebstrap | docker import failed; see $WORK/mmdebstrap.log"
  dk run --rm --network none "$BASE_IMAGE" sh -c 'python --version && pip --version' \
    | sed 's/^/  /' || die "$BASE_IMAGE has no working python/pip"
  done_step "$(size_of "$BASE_IMAGE")"
}

# --- build --------------------------------------------------------------------------------------------------
pip_setting() {  # a global pip setting of this machine (empty when unset or pip is missing)
  python3 -m pip config list 2>/dev/null | sed -n "s/^global\.$1='\(.*\)'\$/\1/p" | head -n 1
}

pip_cert() {  # the CA bundle pip uses here, if any (PIP_CERT, else pip's configuration)
  local cert="${PIP_CERT:-}"
  [[ -n $cert ]] || cert=$(pip_setting cert)
  [[ -n $cert && -s $cert ]] && echo "$cert" || true
}

link_torch_wheel() {  # a local CPU torch wheel into the build context (hard link when possible)
  local version wheel dir
  version=$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' constraints.txt)
  rm -f "$WHEELS"/torch-*.whl
  wheel="${TORCH_WHEEL:-}"
  if [[ -z $wheel ]]; then
    for dir in ${PIP_FIND_LINKS:-} $(pip_setting find-links); do
      wheel=$(ls "$dir"/torch-"$version"+cpu-cp311-*.whl 2>/dev/null | head -n 1 || true)
      [[ -n $wheel ]] && break
    done
  fi
  if [[ -n $wheel ]]; then
    [[ -s $wheel ]] || die "TORCH_WHEEL=$wheel does not exist"
    ln -f "$wheel" "$WHEELS/" 2>/dev/null || cp "$wheel" "$WHEELS/"
    say "build: torch from the local wheel $(basename "$wheel")"
  else
    say "build: no local torch $version+cpu wheel; the build takes it from TORCH_INDEX_URL"
  fi
}

build_image() {  # tag dockerfile [extra build args...]
  local tag=$1 file=$2 start=$SECONDS cert; shift 2
  cert=$(pip_cert)
  say "build: $tag from $file on $BASE_IMAGE (log: $WORK/build-$tag.log)"
  nice -n 10 "$DOCKER" build --progress=plain --build-arg BASE_IMAGE="$BASE_IMAGE" \
      ${cert:+--secret id=pip_cert,src="$cert"} "$@" -f "$file" -t "$tag" . >"$WORK/build-$tag.log" 2>&1 \
    || die "docker build of $tag failed: $(tail -n 5 "$WORK/build-$tag.log" | tr '\n' ' ')"
  say "build: $tag in $(( SECONDS - start ))s, $(size_of "$tag")"
}

build() {
  step build
  engine_check
  image_exists "$BASE_IMAGE" || [[ $BASE_IMAGE == */* || $BASE_IMAGE == python:* ]] \
    || die "no image $BASE_IMAGE: run infra/images.sh base first"
  mkdir -p "$WORK" "$WHEELS"
  link_torch_wheel
  build_image compactlm-worker infra/Dockerfile
  build_image compactlm-serve infra/Dockerfile.serve
  build_image compactlm-stack-postgres infra/Dockerfile.stack --target postgres
  build_image compactlm-stack-s3 infra/Dockerfile.stack --target s3
  done_step
}

# --- test ---------------------------------------------------------------------------------------------------
tiny_model() {  # a tiny untrained decoder + tokenizer, saved with the project's library (as tests/serving do)
  local dir=$WORK/tiny-model
  [[ -s $dir/config.json ]] && { echo "$dir"; return; }
  [[ -x $ROOT/.venv/bin/python ]] || die "no virtual environment at $ROOT/.venv (make install) to make the tiny model"
  mkdir -p "$WORK"
  "$ROOT/.venv/bin/python" - "$dir" <<'PY' >"$WORK/tiny-model.log" 2>&1 || die "could not make the tiny model; see $WORK/tiny-model.log"
import sys

import pandas as pd
import torch

from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.encoding import corpus_texts

frame = pd.DataFrame({"instruction": ["Where is my order?", "Cancel my plan please", "I want a refund"],
                      "response": ["It ships tomorrow.", "Your plan is cancelled.", "The refund is on its way."]})
tokenizer = train_bpe_tokenizer(corpus_texts(frame) * 20, 300, 256)
torch.manual_seed(0)
model = build_decoder("decoder-tiny", len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                      tokenizer.eos_token_id)
model.save_pretrained(sys.argv[1])
tokenizer.save_pretrained(sys.argv[1])
PY
  chmod -R a+rX "$dir"   # the image runs as uid 10001
  echo "$dir"
}

test_serve() {
  step test
  engine_check
  image_exists compactlm-serve || die "no image compactlm-serve: run infra/images.sh build first"
  local model name=compactlm-serve-test key keyfile start ready_s answer latency code model_id
  model=$(tiny_model)
  mkdir -p "$WORK"
  dk rm -f "$name" >/dev/null 2>&1 || true
  # A fresh API key for this run: passed through the environment (-e NAME, not on a command line) and sent by
  # curl from a mode-600 header file, so it shows in no process list or log.
  key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  keyfile=$(mktemp "$WORK/auth.XXXXXX"); chmod 600 "$keyfile"
  printf 'Authorization: Bearer %s\n' "$key" > "$keyfile"
  trap "dk rm -f $name >/dev/null 2>&1 || true; rm -f '$keyfile'" EXIT
  start=$(date +%s.%N)
  COMPACTLM_API_KEYS="$key" dk run -d --name "$name" -e COMPACTLM_API_KEYS \
    -p "127.0.0.1:$TEST_PORT:8000" -v "$model:/model:ro" compactlm-serve --model-dir /model >/dev/null \
    || die "docker run compactlm-serve failed"
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$TEST_PORT/ready" 2>/dev/null; do
    [[ $(dk inspect -f '{{.State.Running}}' "$name") == true ]] \
      || die "the container exited: $(dk logs --tail 5 "$name" 2>&1 | tr '\n' ' ')"
    (( $(date +%s) - ${start%.*} < 300 )) || die "/ready did not answer 200 within 300s"
    sleep 0.5
  done
  ready_s=$(awk -v now="$(date +%s.%N)" -v start="$start" 'BEGIN { printf "%.1f", now - start }')
  say "test: container start to /ready 200 in ${ready_s}s"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      -d '{"prompt": "hi", "max_tokens": 2}' "http://127.0.0.1:$TEST_PORT/v1/completions" || true)
  [[ $code == 401 ]] || die "a completion without the API key answered $code, not 401"
  model_id=$(curl -fsS --max-time 10 -H @"$keyfile" "http://127.0.0.1:$TEST_PORT/v1/models" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])') || die "GET /v1/models failed"
  answer=$(curl -sS --max-time 60 -H @"$keyfile" -H 'Content-Type: application/json' \
      -w '\n%{http_code} %{time_total}' "http://127.0.0.1:$TEST_PORT/v1/completions" \
      -d "{\"model\": \"$model_id\", \"prompt\": \"Where is my order?\", \"max_tokens\": 8, \"temperature\": 0}") \
    || die "POST /v1/completions failed"
  latency=$(tail -n 1 <<<"$answer")
  [[ ${latency%% *} == 200 ]] || die "POST /v1/completions answered ${latency%% *}: $(head -n 1 <<<"$answer")"
  head -n 1 <<<"$answer" | python3 -c '
import json, sys
body = json.load(sys.stdin)
choice = body["choices"][0]
assert body["object"] == "text_completion" and isinstance(choice["text"], str), body
assert choice["finish_reason"] in ("stop", "length") and 0 < body["usage"]["completion_tokens"] <= 8, body
print("  completion: %r (%d tokens, %s)" % (choice["text"], body["usage"]["completion_tokens"], choice["finish_reason"]))
' || die "the completion is not a valid OpenAI answer: $(head -n 1 <<<"$answer" | cut -c1-300)"
  say "test: one completion (8 tokens max) in ${latency#* }s"
  dk logs "$name" 2>&1 | grep -qF "$key" && die "the API key appears in the container's log"
  dk rm -f "$name" >/dev/null; rm -f "$keyfile"; trap - EXIT
  done_step "image $(size_of compactlm-serve)"
}

# --- compose ------------------------------------------------------------------------------------------------
compose_cli() {  # the compose plugin when there is one, else docker-compose (Debian bookworm: 1.29)
  if "$DOCKER" compose version >/dev/null 2>&1; then echo "$DOCKER compose"
  elif command -v docker-compose >/dev/null; then echo docker-compose
  else die "no docker compose: apt-get install -y docker-compose"; fi
}

compose_env() {  # .compactlm/compose.env with random credentials, made once (mode 600)
  local file=$ROOT/.compactlm/compose.env name
  if [[ ! -s $file ]]; then
    mkdir -p "$(dirname "$file")"
    (umask 077; for name in COMPACTLM_PG_PASSWORD COMPACTLM_S3_ACCESS_KEY COMPACTLM_S3_SECRET_KEY; do
       echo "$name=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"; done > "$file")
  fi
  echo "$file"
}

wait_url() {  # what url seconds
  local start=$SECONDS
  until curl -fsS -o /dev/null --max-time 3 "$2" 2>/dev/null; do
    (( SECONDS - start < $3 )) || die "$1 did not answer $2 within $3s: $($COMPOSE "${CARGS[@]}" logs --tail 5 2>&1 | tail -n 8 | tr '\n' ' ')"
    sleep 1
  done
  say "compose: $1 answered $2 after $(( SECONDS - start ))s"
}

compose_stack() {
  step compose
  engine_check
  local envfile start value name
  envfile=$(compose_env)
  read -r -a COMPOSE <<<"$(compose_cli)"
  # Host ports away from the defaults (4200/5000/9000) and from infra/stack.sh's, so a running stack is not hit.
  export COMPACTLM_PREFECT_PORT="${COMPACTLM_PREFECT_PORT:-14200}" COMPACTLM_MLFLOW_PORT="${COMPACTLM_MLFLOW_PORT:-15000}"
  export COMPACTLM_S3_PORT="${COMPACTLM_S3_PORT:-19000}" BASE_IMAGE
  CARGS=(--env-file "$envfile" -p compactlm-images -f infra/docker-compose.yaml)
  for name in compactlm-worker compactlm-stack-postgres compactlm-stack-s3; do
    image_exists "$name" || die "no image $name: run infra/images.sh build first"
  done
  "${COMPOSE[@]}" "${CARGS[@]}" config -q || die "infra/docker-compose.yaml does not validate"
  trap '"${COMPOSE[@]}" "${CARGS[@]}" down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
  start=$SECONDS
  "${COMPOSE[@]}" "${CARGS[@]}" up -d --no-build >"$WORK/compose-up.log" 2>&1 \
    || die "compose up failed: $(tail -n 5 "$WORK/compose-up.log" | tr '\n' ' ')"
  wait_url "Prefect server" "http://127.0.0.1:$COMPACTLM_PREFECT_PORT/api/health" 300
  wait_url "MLflow server" "http://127.0.0.1:$COMPACTLM_MLFLOW_PORT/health" 300
  say "compose: stack up in $(( SECONDS - start ))s"
  # The worker polls its pool; the servers keep their tables in PostgreSQL; the buckets exist.
  local until=$(( SECONDS + 120 ))
  until "${COMPOSE[@]}" "${CARGS[@]}" logs worker 2>&1 | grep -q "started"; do
    (( SECONDS < until )) || die "the worker did not start: $("${COMPOSE[@]}" "${CARGS[@]}" logs --tail 5 worker 2>&1 | tr '\n' ' ')"
    sleep 2
  done
  say "compose: worker started on pool compactlm-process"
  for name in prefect mlflow; do
    value=$("${COMPOSE[@]}" "${CARGS[@]}" exec -T postgres psql -U compactlm -d "$name" -tA \
            -c "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") \
      || die "could not query the $name database"
    (( value > 5 )) || die "the $name database has $value tables"
    say "compose: PostgreSQL database $name holds $value tables"
  done
  value=$("${COMPOSE[@]}" "${CARGS[@]}" exec -T worker python -c \
          "import boto3; print(' '.join(sorted(b['Name'] for b in boto3.client('s3').list_buckets()['Buckets'])))") \
    || die "could not list the S3 buckets"
  [[ $value == *compactlm-data*compactlm-mlflow* ]] || die "S3 buckets: '$value'"
  say "compose: S3 buckets $value"
  # A flow run end to end: deploy the flows from the image, run the review sweep; the worker executes it.
  start=$SECONDS
  "${COMPOSE[@]}" "${CARGS[@]}" exec -T worker sh -c 'prefect --no-prompt deploy --all >/tmp/deploy.log 2>&1 \
      || { tail -n 20 /tmp/deploy.log; exit 1; }; prefect deployment run review-sweep/every-10-minutes --watch \
      --watch-timeout 300' >"$WORK/compose-flow.log" 2>&1 \
    || die "deploy + run of review-sweep/every-10-minutes failed: $(tail -n 5 "$WORK/compose-flow.log" | tr '\n' ' ')"
  grep -q "finished successfully" "$WORK/compose-flow.log" || die "review-sweep did not complete: $(tail -n 3 "$WORK/compose-flow.log")"
  say "compose: prefect deploy --all, and a review-sweep run completed on the worker in $(( SECONDS - start ))s"
  # MLflow: a run with an artifact from the worker; the artifact lands in the S3 bucket through the server.
  value=$("${COMPOSE[@]}" "${CARGS[@]}" exec -T worker python -c '
import boto3, mlflow
mlflow.set_experiment("compose-check")
with mlflow.start_run() as run:
    mlflow.log_text("ok", "check.txt")
keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="compactlm-mlflow").get("Contents", [])]
print(next(k for k in keys if k.endswith(run.info.run_id + "/artifacts/check.txt")))' 2>"$WORK/compose-mlflow.log" | tail -n 1) \
    || die "MLflow artifact round trip failed: $(tail -n 3 "$WORK/compose-mlflow.log" | tr '\n' ' ')"
  say "compose: an MLflow artifact logged from the worker is s3://compactlm-mlflow/$value"
  "${COMPOSE[@]}" "${CARGS[@]}" logs >"$WORK/compose.log" 2>&1
  while IFS='=' read -r name value; do
    [[ -n $value ]] && grep -qF "$value" "$WORK/compose.log" && die "$name appears in the stack's logs"
  done <"$envfile"
  say "compose: no credential in the logs"
  "${COMPOSE[@]}" "${CARGS[@]}" down -v --remove-orphans >/dev/null 2>&1 || die "compose down failed"
  trap - EXIT
  done_step "up to healthy, checked and down"
}

main() {
  case "${1:-}" in
    engine) engine_start ;;
    engine-stop) engine_stop ;;
    base) base ;;
    build) build ;;
    test) test_serve ;;
    compose) compose_stack ;;
    all) engine_start; base; build; test_serve; compose_stack ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
}
main "$@"
