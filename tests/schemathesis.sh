#!/usr/bin/env bash
# Holds docs/openapi.yaml to the truth: starts the real wharf binary on a
# free loopback port with a temp config (script projects running /bin/true,
# so nothing touches a container engine), and lets schemathesis send it
# generated requests for every route in the document. Fails when a response
# is a 5xx, has a status, content type or body the document does not allow,
# or when the daemon no longer answers /healthz afterwards.
#
# Usage: tests/schemathesis.sh [path/to/wharf]   (default target/debug/wharf)
# It builds nothing. Schemathesis (pinned below) is installed from PyPI
# into a venv under ~/.cache the first time (OPENAPI_VENV to choose
# another). OPENAPI_EXAMPLES: test cases per route and phase (default 150).
# (Not WHARF_*: the daemon reads those as its own settings.)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/wharf}
spec=$PWD/docs/openapi.yaml
# The CLI changed between major versions (3 → 4): options below are 4.x's.
version=4.32.5
venv=${OPENAPI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf/schemathesis-$version}
examples=${OPENAPI_EXAMPLES:-150}

log() { printf '\n== schemathesis.sh: %s\n' "$*"; }
fail() { printf 'schemathesis.sh: %s\n' "$*" >&2; exit 1; }

[ -x "$bin" ] || fail "no wharf binary at $bin (build it first: cargo build)"
bin=$(realpath "$bin")

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "version $version"; then
  log "installing schemathesis $version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
"$venv/bin/schemathesis" --version

dir=$(mktemp -d /tmp/wharf-schemathesis.XXXXXX)
pid=
cleanup() {
  local status=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$dir/wharf.log" ]; then
    echo "--- the daemon's log (last 40 lines):" >&2
    tail -n 40 "$dir/wharf.log" >&2
  fi
  rm -rf "$dir"
  exit "$status"
}
trap cleanup EXIT

mkdir -p "$dir/projects"
cat >"$dir/wharf.toml" <<'EOF'
listen = "127.0.0.1:0"
projects_dir = "projects"
state_dir = "state"

[auto_create]
enabled = false
EOF
cat >"$dir/projects/web.toml" <<'EOF'
image = "localhost:5000/acme/web"
deployer = "script"

[script]
command = ["/bin/true"]
timeout = "10s"

[stages.staging]
tags = ["main-*"]
auto_deploy = true

[stages.prod]
tags = ["v*"]
auto_deploy = false
EOF
cat >"$dir/projects/api.toml" <<'EOF'
image = "localhost:5000/acme/api"
deployer = "script"

[script]
command = ["/bin/true"]

[stages.dev]
tags = ["*"]
EOF
# A file that does not validate, so that the projects listing has an error.
printf 'image = "localhost:5000/acme/broken"\ndeployer = "nope"\n' >"$dir/projects/broken.toml"

log "starting $bin"
env -u WHARF_CONFIG RUST_LOG=info "$bin" --config "$dir/wharf.toml" >"$dir/wharf.log" 2>&1 </dev/null &
pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*wharf is listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/wharf.log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "wharf exited at start"
  sleep 0.1
done
[ -n "$port" ] || fail "wharf did not start listening"
base=http://127.0.0.1:$port

settings=$dir/state/settings.toml
setting() { sed -n "s/^$1 *= *\"\(.*\)\"$/\1/p" "$settings"; }
OPENAPI_ADMIN_TOKEN=$(setting admin_token)
OPENAPI_WEBHOOK_SECRET=$(setting webhook_secret)
[ -n "$OPENAPI_ADMIN_TOKEN" ] && [ -n "$OPENAPI_WEBHOOK_SECRET" ] || fail "no secrets in $settings"
# Schemathesis reads them from its config file (below), not from argv.
export OPENAPI_ADMIN_TOKEN OPENAPI_WEBHOOK_SECRET

# Some history first, so that listings, logs, approvals and rollbacks have
# something to answer with: deployed, awaiting approval, and two succeeded
# tags of one stage to roll back between.
push() {
  curl -sS -o /dev/null -w '%{http_code}' -X POST --data "{\"image\": \"$1\"}" \
    "$base/api/webhook/$OPENAPI_WEBHOOK_SECRET"
}
for image in localhost:5000/acme/web:main-1 localhost:5000/acme/web:v1 \
  localhost:5000/acme/api:a localhost:5000/acme/web:main-2; do
  code=$(push "$image")
  [ "$code" = 202 ] || fail "seeding: pushing $image answered $code"
  sleep 0.3
done

cat >"$dir/schemathesis.toml" <<'EOF'
headers = { Authorization = "Bearer ${OPENAPI_ADMIN_TOKEN}" }

[parameters]
"path.secret" = "${OPENAPI_WEBHOOK_SECRET}"
EOF

# No 5xx; statuses, content types and bodies as documented; a request the
# document calls invalid gets a 4xx (negative_data_rejection), and one
# without the token a 401 (ignored_auth).
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks=$checks,response_schema_conformance,negative_data_rejection,ignored_auth
st() {
  # From the temp dir: schemathesis keeps a cache in its working directory.
  # One worker: hypothesis parses lambdas' source with `ast`, which is not
  # thread-safe in CPython 3.11 ("AST constructor recursion depth mismatch").
  # A bound on the whole run, so that a hung tool cannot hold up CI.
  (cd "$dir" && timeout 300 "$venv/bin/schemathesis" --config-file "$dir/schemathesis.toml" \
    run "$spec" --url "$base" --checks "$checks" --workers 1 \
    --request-timeout 10 --no-color "$@")
}

# Rotation would retire the secret the webhook cases use: it goes last, on
# its own (its links lead to routes left out, hence no stateful phase).
# The event stream never ends by itself, so every request to it would time
# out: it is left out here and tested by tests/dashboard.rs.
log "every route but rotation and the event stream ($examples examples each)"
st --max-examples "$examples" --exclude-path /api/admin/rotate --exclude-path /api/admin/events
log "rotation"
st --max-examples 5 --include-path /api/admin/rotate --phases examples,coverage,fuzzing

log "the daemon is still alive"
kill -0 "$pid" 2>/dev/null || fail "wharf is gone"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/healthz")
[ "$code" = 200 ] || fail "/healthz answered $code"
if grep -q 'panicked' "$dir/wharf.log"; then
  grep -n 'panicked' "$dir/wharf.log" >&2
  fail "wharf panicked while answering"
fi
log "passed"
