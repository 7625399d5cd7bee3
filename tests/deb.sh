#!/usr/bin/env bash
# Build the Debian package, install it, and check what an operator gets:
# the binary, the user, the folders and their owners, the conffile, the unit
# (systemd-analyze verify), and the installed binary run against a temp
# config (`wharf check`, and `wharf serve` answering /healthz).
#
# Needs root (dpkg -i), cargo-deb and systemd-analyze; .ci/run provides them.
# Leaves the package installed (a second `dpkg -i` checks the upgrade path);
# `dpkg --purge wharf` removes it. Usage: tests/deb.sh [path/to/wharf.deb]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf -- '-- %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

deb=${1:-}
if [ -z "$deb" ]; then
  step "cargo deb (release build)"
  deb=$(cargo deb | tail -n 1)
fi
[ -f "$deb" ] || fail "no package at '$deb'"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"

step "dpkg -i (install, then again as an upgrade)"
dpkg -i "$deb"
dpkg -i "$deb"

step "the binary"
version=$(/usr/bin/wharf --version)
expected=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ "$version" = "wharf $expected" ] || fail "wharf --version: '$version', expected 'wharf $expected'"
echo "$version"

step "user, folders, conffile"
getent passwd wharf >/dev/null || fail "no user wharf"
getent group wharf >/dev/null || fail "no group wharf"
if getent group docker >/dev/null; then
  id -nG wharf | tr ' ' '\n' | grep -qx docker || fail "wharf is not in the docker group"
fi
[ "$(stat -c '%U:%G %a' /var/lib/wharf)" = "wharf:wharf 750" ] || fail "/var/lib/wharf: $(stat -c '%U:%G %a' /var/lib/wharf)"
[ "$(stat -c '%U:%G' /etc/wharf/projects)" = "wharf:wharf" ] || fail "/etc/wharf/projects: $(stat -c '%U:%G' /etc/wharf/projects)"
[ "$(stat -c '%U:%G %a' /etc/wharf/wharf.toml)" = "root:wharf 640" ] || fail "/etc/wharf/wharf.toml: $(stat -c '%U:%G %a' /etc/wharf/wharf.toml)"
grep -qx /etc/wharf/wharf.toml /var/lib/dpkg/info/wharf.conffiles || fail "/etc/wharf/wharf.toml is not a conffile"
grep -q '^state_dir = "/var/lib/wharf"$' /etc/wharf/wharf.toml || fail "installed state_dir is not /var/lib/wharf"

step "the docs"
for doc in README.md docs/README.md docs/configuration.md docs/http-api.md docs/cli.md docs/deployments.md docs/openapi.yaml; do
  [ -f "/usr/share/doc/wharf/$doc" ] || fail "no /usr/share/doc/wharf/$doc"
done
# Every relative link of the installed README resolves inside the package.
grep -o '](\(docs\|plugins\)/[^)#]*' /usr/share/doc/wharf/README.md | sed 's/^](//' | sort -u | while read -r link; do
  [ -e "/usr/share/doc/wharf/$link" ] || fail "README links $link, which the package lacks"
done

step "the unit"
unit=/usr/lib/systemd/system/wharf.service
[ -f "$unit" ] || fail "no $unit"
[ /lib/systemd/system/wharf.service -ef "$unit" ] || echo "note: /lib is not merged with /usr/lib here"
systemd-analyze verify "$unit"
echo "systemd-analyze verify: ok"
if security=$(systemd-analyze security --offline=true "$unit" 2>&1); then
  printf '%s\n' "$security" | grep -E '^(✗|→)' || true
else
  echo "systemd-analyze security --offline does not run here: $security"
fi

step "the route proxy's unit"
proxy_unit=/usr/lib/systemd/system/wharf-proxy.service
[ -f "$proxy_unit" ] || fail "no $proxy_unit"
systemd-analyze verify "$proxy_unit"
grep -q '^manage = false$' /etc/wharf/wharf.toml || fail "the packaged config should leave the proxy to systemd"
echo "wharf-proxy.service: ok"

step "wharf check on the installed layout, as the service user"
runuser -u wharf -- /usr/bin/wharf --config /etc/wharf/wharf.toml check

step "the installed binary against a temp config"
tmp=$(mktemp -d)
# Only a daemon we started: `kill 0` would signal this whole process group,
# .ci/run included.
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
mkdir "$tmp/projects"
cat >"$tmp/wharf.toml" <<'EOF'
listen = "127.0.0.1:0"
[auto_create]
enabled = false
EOF
cat >"$tmp/projects/web.toml" <<'EOF'
image = "registry.example.com/acme/web"
deployer = "script"
[script]
command = ["/bin/true"]
[stages.staging]
tags = ["main-*"]
EOF
/usr/bin/wharf --config "$tmp/wharf.toml" check | tee "$tmp/check.out"
grep -q '^ok: 1 project(s) loaded' "$tmp/check.out" || fail "wharf check did not load the project"
printf 'image = "acme/api"\n[stages.s\n' >"$tmp/projects/api.toml"
if /usr/bin/wharf --config "$tmp/wharf.toml" check >"$tmp/check.out"; then
  fail "wharf check accepted a broken project file"
fi
grep -q 'api.toml:2' "$tmp/check.out" || { cat "$tmp/check.out"; fail "no file:line for the broken project"; }
rm "$tmp/projects/api.toml"

/usr/bin/wharf --config "$tmp/wharf.toml" serve 2>"$tmp/serve.log" &
pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*wharf is listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/serve.log"; fail "wharf serve did not start"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] || fail "/healthz"
kill -TERM "$pid"
wait "$pid" || { cat "$tmp/serve.log"; fail "wharf serve did not exit cleanly"; }
pid=
if grep -q "$(sed -n 's/^webhook_secret = "\(.*\)"/\1/p' "$tmp/state/settings.toml")" "$tmp/serve.log"; then
  fail "the webhook secret reached the log"
fi
echo "deb: ok"
