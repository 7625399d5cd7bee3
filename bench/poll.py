#!/usr/bin/env python3
"""Registry polling at scale: N polled stages against one local registry.

Prints the registry requests per poll cycle (from the registry's access log)
and the daemon's CPU time per cycle (user + system, /proc/<pid>/stat), in
steady state: after every stage has polled and deployed once, nothing new
is pushed, so each cycle is the cost of finding that nothing changed.

    bench/poll.py --wharf target/release/wharf            # 200 stages, 10 s
    bench/poll.py --wharf ... --stages 50 --interval 5s --cycles 2

Needs Debian's docker-registry. Everything listens on 127.0.0.1, in a
scratch folder removed afterwards; every process started here is stopped
here. Half the stages follow semver tags (`v*`), half a moving tag
(`latest`, watched by digest); all use the `script` deployer (`/bin/true`).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_port(port: int, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def request(port: int, method: str, path: str, body: bytes = b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def push(port: int, repository: str, tag: str, marker: str) -> None:
    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = request(port, "POST", f"/v2/{repository}/blobs/uploads/")
        assert status == 202, status
        location = headers.get("Location") or headers.get("location")
        sep = "&" if "?" in location else "?"
        path = location.split("127.0.0.1:%d" % port, 1)[-1]
        status, _, _ = request(
            port, "PUT", f"{path}{sep}digest={digest}", data,
            {"Content-Type": "application/octet-stream"},
        )
        assert status == 201, status
        return digest, len(data)

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": {"marker": marker}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest, config_size = blob(config)
    layer_digest, layer_size = blob(f"layer {marker}".encode())
    media = "application/vnd.oci.image.manifest.v1+json"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    }).encode()
    status, _, body = request(port, "PUT", f"/v2/{repository}/manifests/{tag}",
                              manifest, {"Content-Type": media})
    assert status == 201, (status, body)


def registry_requests(log: Path) -> int:
    """Requests to /v2/<repository>/… the registry logged (not the bench's
    own pushes, which are counted before the measurement starts)."""
    text = log.read_text(errors="replace")
    return sum(1 for line in text.splitlines()
               if '"GET /v2/acme' in line or '"HEAD /v2/acme' in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wharf", required=True)
    parser.add_argument("--stages", type=int, default=200)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    interval = float(args.interval.rstrip("s"))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        port = free_port()
        (root / "registry.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
        reg_log = root / "registry.log"
        registry = subprocess.Popen([REGISTRY, "serve", str(root / "registry.yml")],
                                    stdout=reg_log.open("w"), stderr=subprocess.STDOUT)
        wharf = None
        try:
            wait_port(port)
            for tag in ["v1.0.0", "v1.1.0", "v1.2.0", "latest"]:
                push(port, "acme/web", tag, tag)
            (root / "projects").mkdir()
            stages = []
            for i in range(args.stages):
                tags = '["v*"]' if i % 2 == 0 else '["latest"]'
                stages.append(f'[stages.s{i:03}]\ntags = {tags}\npoll = "{args.interval}"\n')
            (root / "projects" / "web.toml").write_text(
                f'image = "127.0.0.1:{port}/acme/web"\ndeployer = "script"\n'
                '[script]\ncommand = ["/bin/true"]\n' + "".join(stages))
            listen = free_port()
            (root / "wharf.toml").write_text(
                f'listen = "127.0.0.1:{listen}"\nprojects_dir = "projects"\n'
                'state_dir = "state"\n[auto_create]\nenabled = false\n'
                '[deploy]\nmax_concurrent = 4\n')
            wharf = subprocess.Popen([args.wharf, "serve", "--config", str(root / "wharf.toml")],
                                     stdout=(root / "wharf.log").open("w"),
                                     stderr=subprocess.STDOUT,
                                     env={**os.environ, "RUST_LOG": "warn"})
            wait_port(listen)
            settings = tomllib.loads((root / "state" / "settings.toml").read_text())
            token = settings["admin_token"]

            def deployed() -> int:
                status, _, body = request(
                    listen, "GET", "/api/admin/deployments?status=succeeded&limit=500",
                    headers={"Authorization": f"Bearer {token}"})
                return len(json.loads(body)["deployments"]) if status == 200 else 0

            deadline = time.monotonic() + 120
            while deployed() < args.stages:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {deployed()} of {args.stages} stages deployed")
                time.sleep(0.5)
            # One more cycle, so every stage is past its first poll.
            time.sleep(interval * 1.2)
            requests0, cpu0 = registry_requests(reg_log), cpu_seconds(wharf.pid)
            time.sleep(interval * args.cycles)
            requests1, cpu1 = registry_requests(reg_log), cpu_seconds(wharf.pid)
            per_cycle = (requests1 - requests0) / args.cycles
            cpu = (cpu1 - cpu0) / args.cycles
            print(f"{args.stages} polled stages ({args.stages - args.stages // 2} semver `v*`, "
                  f"{args.stages // 2} moving `latest`), poll = {args.interval}, "
                  f"{args.cycles} cycles in steady state:")
            print(f"  registry requests per cycle: {per_cycle:.0f} "
                  f"({per_cycle / args.stages:.2f} per stage)")
            print(f"  wharf CPU per cycle (user + system): {cpu * 1000:.0f} ms "
                  f"({cpu * 1e6 / args.stages:.0f} µs per stage poll)")
            print(f"  deployments: {deployed()} (one per stage; none in steady state)")
        finally:
            for process in (wharf, registry):
                if process is not None:
                    process.terminate()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()


if __name__ == "__main__":
    main()
