#!/usr/bin/env bash
# The baseline for bench/docker-deploy: what an operator's own deploy script
# does with the docker CLI, in the usual order — pull, stop, rm, run, then
# wait until the new version answers over HTTP.
#
#   bench/docker-deploy.sh IMAGE CONTAINER HOST_PORT EXPECTED_BODY
#
# Exits 0 once GET http://127.0.0.1:HOST_PORT/ returns EXPECTED_BODY, 1 when
# it does not within 60 s. No health gate and no rollback: a broken image
# leaves the service down, which is what wharf is there to prevent.
set -euo pipefail

image="$1" container="$2" port="$3" expected="$4"

docker pull -q "$image" >/dev/null
docker stop -t 10 "$container" >/dev/null 2>&1 || true
docker rm "$container" >/dev/null 2>&1 || true
docker run -d -q --name "$container" --restart unless-stopped \
    -p "127.0.0.1:${port}:80" "$image" >/dev/null

deadline=$((SECONDS + 60))
until [ "$(curl -fsS --max-time 2 "http://127.0.0.1:${port}/" 2>/dev/null)" = "$expected" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "not serving $expected after 60 s" >&2; exit 1; }
    sleep 0.01
done
