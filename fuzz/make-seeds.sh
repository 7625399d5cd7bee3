#!/usr/bin/env bash
# Build the seed corpora in fuzz/seeds/<target>/ from tests/fixtures (plus a
# few hand-written shapes the fixtures do not cover), and for config from
# config.example.toml, debian/wharf.toml, README.md's TOML blocks and the
# project shapes the end-to-end tests write. Idempotent; run.sh calls
# it, and the result is committed so the seeds are kept even if it is not run.
# Needs jq.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../tests/fixtures"
seeds="$here/seeds"
command -v jq >/dev/null || { echo "make-seeds.sh: jq is required" >&2; exit 1; }
rm -rf "$seeds"
mkdir -p "$seeds/payload" "$seeds/reference" "$seeds/signature" "$seeds/config"

# payload: one selector byte (see fuzz_targets/payload.rs) + body.
# Selectors: 0 no headers, 1 distribution v1, 2 distribution v2, 4 X-GitHub-Event
# registry_package, 3 package, 7 X-Gitea-Event package, 10 Gitea with both
# headers, 11 Harbor binary CloudEvent, 0x80 fuzzed Content-Type (value, '\n', body).
payload_seed() { # name selector-as-octal-escape body-file
  { printf "$2"; cat "$3"; } >"$seeds/payload/$1"
}
for f in "$fixtures"/*.json; do
  base=$(basename "$f" .json)
  payload_seed "$base.none" '\000' "$f"
done
payload_seed github-registry-package-published.hdr '\004' "$fixtures/github-registry-package-published.json"
payload_seed github-registry-package-published.pkg '\003' "$fixtures/github-registry-package-published.json"
payload_seed gitea-package-created.hdr '\007' "$fixtures/gitea-package-created.json"
payload_seed gitea-package-created.both '\012' "$fixtures/gitea-package-created.json"

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
n=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  n=$((n + 1))
  jq -j '.body' <<<"$line" >"$tmp"
  payload_seed "distribution-line$n.v1" '\001' "$tmp"
  payload_seed "distribution-line$n.v2" '\002' "$tmp"
  payload_seed "distribution-line$n.none" '\000' "$tmp"
  { printf '\200%s\n' "$(jq -r '.headers["Content-Type"] // ""' <<<"$line")"; cat "$tmp"; } \
    >"$seeds/payload/distribution-line$n.fuzzed-ct"
done <"$fixtures/distribution-2.8.2-docker-push.jsonl"

digest=sha256:b2c85c3f0915aee5337f8061308f87d2d7306580e8cfd653a3b8d44a30f6a4b3
inline() { printf "$2%s" "$3" >"$seeds/payload/$1"; }
inline native '\000' '{"image": "localhost:5000/acme/web:1.2.3"}'
inline native-digest '\000' "{\"image\": \"ghcr.io/acme/web:1@$digest\", \"digest\": \"$digest\"}"
inline github-ping '\000' '{"zen": "Keep it logically awesome.", "hook_id": 1}'
inline harbor-cloudevent '\000' "{\"specversion\": \"1.0\", \"id\": \"e1\", \"type\": \"harbor.artifact.pushed\", \"data\": {\"resources\": [{\"digest\": \"$digest\", \"tag\": \"v1\", \"resource_url\": \"harbor.example.com/library/app:v1\"}]}}"
inline harbor-binary '\013' "{\"resources\": [{\"digest\": \"$digest\", \"tag\": \"v1\", \"resource_url\": \"harbor.example.com/library/app:v1\"}]}"
inline acr '\000' "{\"id\": \"acr-1\", \"timestamp\": \"2024-01-01T00:00:00Z\", \"action\": \"push\", \"target\": {\"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\", \"repository\": \"acme/web\", \"tag\": \"1.0\", \"digest\": \"$digest\"}, \"request\": {\"host\": \"acme.azurecr.io\"}}"
inline distribution-empty '\001' '{}'

# reference: every string in the fixtures that looks like a reference, plus
# the image names the fixtures stand for and grammar corner cases.
refs=$(mktemp)
trap 'rm -f "$tmp" "$refs"' EXIT
{
  for f in "$fixtures"/*.json; do jq -r '.. | strings' "$f"; done
  jq -r '.body | fromjson | .. | strings' "$fixtures/distribution-2.8.2-docker-push.jsonl"
  cat <<REFS
localhost:5000/acme/web:1.2.3
localhost:5000/acme/web@$digest
localhost:5000/acme/web:1.2.3@$digest
ghcr.io/codertocat/hello-world:v1.4.0
quay.io/dgangaia/test:latest
hub.harbor.com/test-webhook/debian:latest
nginx
nginx:latest
library/nginx
docker.io/library/nginx
index.docker.io/acme/web
Registry.Example.com:443/acme/web
[::1]:5000/foo:bar
[fe80::1]/foo
a.b/c__d-e.f/g--h_i:T_1.x-y
localhost
localhost:5000
Owner/app
foo_bar.com/app
acme/web@sha512:$(printf 'f%.0s' $(seq 128))
$(printf 'a%.0s' $(seq 64))
REFS
} | grep -E '^[][A-Za-z0-9._/:@+-]{1,300}$' | sort -u >"$refs"
i=0
while IFS= read -r r; do
  i=$((i + 1))
  printf '%s' "$r" >"$seeds/reference/ref$i"
done <"$refs"

# signature: [name selector, mode, secret length, secret, body].
sig_seed() { # name selector mode body-file
  { printf "\\$(printf '%03o' "$2")\\$(printf '%03o' "$3")\\006secret"; cat "$4"; } >"$seeds/signature/$1"
}
sig_seed github 0 0 "$fixtures/github-registry-package-published.json"
sig_seed gitea 1 0 "$fixtures/gitea-package-created.json"
sig_seed forgejo-upper 2 1 "$fixtures/gitea-package-created.json"
sig_seed hub-spaced 3 2 "$fixtures/github-registry-package-published.json"
sig_seed forged 0 3 "$fixtures/dockerhub-push.json"
sig_seed truncated 1 4 "$fixtures/quay-repo-push.json"
sig_seed empty 0 5 "$fixtures/harbor-push-artifact.json"
sig_seed sha1-only 4 0 "$fixtures/harbor-push-artifact.json"
printf '\000\006\006secretsha256=0123abcd\n{}' >"$seeds/signature/fuzzed-value"

# config: one selector byte (see fuzz_targets/config.rs: 0 project file,
# 1 wharf.toml, 2 settings.toml) + the file's text.
config_seed() { # name selector-as-octal-escape text-file
  { printf "$2"; cat "$3"; } >"$seeds/config/$1"
}
config_text() { # name selector-as-octal-escape text
  printf "$2%s" "$3" >"$seeds/config/$1"
}
config_seed config-example '\001' "$here/../config.example.toml"
config_seed debian-wharf '\001' "$here/../debian/wharf.toml"
# README's ```toml blocks: a project file when it names an image, else wharf.toml.
blocks=$(mktemp -d)
trap 'rm -rf "$tmp" "$refs" "$blocks"' EXIT
awk -v dir="$blocks" '/^```toml/ { n++; f = 1; next } /^```/ { f = 0 } f { print > (dir "/" n) }' "$here/../README.md"
for b in "$blocks"/*; do
  [ -f "$b" ] || continue
  if grep -q '^image' "$b"; then sel='\000'; else sel='\001'; fi
  config_seed "readme-block$(basename "$b")" "$sel" "$b"
done
config_text wharf-hosts '\001' $'listen = "127.0.0.1:0"\n[auto_create]\nallow = ["registry.example.com/acme/*"]\n\n[[notify]]\nurl = "http://127.0.0.1:9/hook"\nevents = ["succeeded", "failed"]\nformat = "slack"\n\n[hosts.web1]\ndocker_host = "tcp://10.0.0.5:2376"\n\n[hosts.web2]\ndocker_host = "ssh://deploy@10.0.0.6"\n'
config_text project-docker '\000' $'image = "localhost:5000/acme/web"\n\n[stages.dev]\ntags = ["*"]\n\n[docker]\nports = ["127.0.0.1:18080:8080"]\nenv = { RUST_LOG = "info", PORT = 8080 }\nhealth = { http = { path = "/", port = 8080 }, grace = "2s", timeout = "30s" }\nrestart = "unless-stopped"\nmemory = "64m"\ncpus = 0.5\nstrategy = "start-first"\nstop_timeout = "5s"\n'
config_text project-stages '\000' $'image = "Registry.example.com:5000/acme/web"\ndeployer = "script"\n\n[script]\ncommand = ["/bin/true"]\ntimeout = "1m"\n\n[stages.staging]\ntags = ["main-*", "sha-?"]\n\n[stages.prod]\ntags = ["v*"]\nauto_deploy = false\n\n[stages.prod.script]\ntimeout = "5m"\nenv = { A = "b" }\n\n[stages.prod.docker]\nname = "web-prod"\n'
config_text project-compose '\000' $'image = "acme/web"\ndeployer = "compose"\n\n[stages.prod]\ntags = ["v*"]\n\n[compose]\nfile = "/srv/web/compose.yml"\nservice = "web"\ntag_variable = "WEB_TAG"\nproject_name = "web"\n'
config_text project-swarm '\000' $'image = "localhost:5000/acme/web"\ndeployer = "swarm"\n\n[stages.dev]\ntags = ["v*"]\n\n[swarm]\nservice = "web"\ntimeout = "150s"\n\n[swarm.create]\nreplicas = 1\nports = ["18081:80"]\nupdate_config = { parallelism = 1, order = "start-first", failure_action = "rollback", monitor = "5s" }\n'
config_text project-glob-utf8 '\000' $'image = "acme/web"\n[stages.a]\ntags = ["\xc3\xa9*"]\n'
config_text project-control-char '\000' $'image = "acme/web"\ndeployer = "sw\\rm"\n[stages."a\\u001b[31m"]\ntags = ["*"]\n'
config_text settings '\002' $'# wharf\'s secrets\nwebhook_secret = "d8f2a1e9-3c4b-4f7a-9e21-5b6c7d8e9f00"\nadmin_token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"\n'
config_text settings-secret-in-key '\002' $'webhook_secret = "0123456789abcdef-secret"\n"x0123456789abcdef-secret" = 1\n'
config_text settings-partial '\002' $'webhook_secret = "d8f2a1e9-3c4b-4f7a-9e21-5b6c7d8e9f00"\n'

for t in payload reference signature config; do
  echo "seeds/$t: $(ls "$seeds/$t" | wc -l) files"
done
