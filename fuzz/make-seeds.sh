#!/usr/bin/env bash
# Build the seed corpora in fuzz/seeds/<target>/ from tests/fixtures (plus a
# few hand-written shapes the fixtures do not cover). Idempotent; run.sh calls
# it, and the result is committed so the seeds are kept even if it is not run.
# Needs jq.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../tests/fixtures"
seeds="$here/seeds"
command -v jq >/dev/null || { echo "make-seeds.sh: jq is required" >&2; exit 1; }
rm -rf "$seeds"
mkdir -p "$seeds/payload" "$seeds/reference" "$seeds/signature"

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

for t in payload reference signature; do
  echo "seeds/$t: $(ls "$seeds/$t" | wc -l) files"
done
