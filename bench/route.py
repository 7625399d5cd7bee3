#!/usr/bin/env python3
"""Zero-downtime routes: wharf's route proxy against the same container
reached directly and through Debian's nginx, and a routed deployment
against the physical limit, in one run.

Started by `bench/route`, which builds wharf first. Two parts:

1. Throughput and latency: `wrk -t2 -c16 --latency` for `--seconds` per
   run, `--rounds` rounds, against the same upstream (busybox httpd in a
   container, published on 127.0.0.1): directly, through a `[docker.route]`
   of wharf's proxy, and through nginx (`proxy_pass` with an upstream
   keepalive pool). The order of the three rotates each round; the table
   shows the median round of each and the median of per-round ratios.
2. Deployment: a webhook for a new image of a routed stage → the first
   answer of the new version through the route (a prober GETs it every
   5 ms, counting every failed probe), against the physical limit measured
   in the same run: `docker pull` of an image of the same size from the
   same registry plus its own `docker run -d -p 127.0.0.1::80` to its first
   answer.

Reuses bench/docker-deploy.py's registry, images, prober and daemon
helpers. Everything listens on 127.0.0.1 only; everything started here is
removed here, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("docker_deploy", HERE / "docker-deploy.py")
assert _spec and _spec.loader
dd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dd)


def log(message: str) -> None:
    print(f"[route] {message}", file=sys.stderr, flush=True)


def wrk(port: int, seconds: int) -> dict[str, float]:
    """req/s and p50/p99 latency (ms) of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"no {p}% in wrk output:\n{out}")
        return float(m.group(1)) * unit[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        log(f"wrk saw errors on port {port}:\n{out}")
    return {"rps": rps, "p50": percentile("50"), "p99": percentile("99")}


class RouteBench(dd.Bench):
    def __init__(self, wharf_bin: str, rounds: int, seconds: int, deploys: int) -> None:
        super().__init__(wharf_bin, deploys)
        self.wrk_rounds = rounds
        self.seconds = seconds
        self.listen = free_port()
        self.nginx: subprocess.Popen | None = None
        self.containers.append(f"limit-bench-{self.pid}")

    def project(self, wharf_port: int) -> str:
        return (
            f'image = "{self.repository}"\n\n[stages.prod]\ntags = ["wharf-*"]\n\n'
            f'[docker]\nname = "{self.containers[0]}"\n'
            'health = { http = { path = "/", port = 80 } }\n'
            "keep_images = 0\n\n"
            f'[docker.route]\nlisten = "127.0.0.1:{self.listen}"\nport = 80\ndrain = "5s"\n'
        )

    def start_nginx(self, upstream: int) -> int:
        port = free_port()
        conf = self.dir / "nginx.conf"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "nginx" / sub).mkdir(parents=True, exist_ok=True)
        n = self.dir / "nginx"
        conf.write_text(
            f"worker_processes 2;\ndaemon off;\npid {n}/nginx.pid;\nerror_log {n}/error.log;\n"
            "events { worker_connections 1024; }\n"
            "http {\n  access_log off;\n"
            f"  client_body_temp_path {n}/body; proxy_temp_path {n}/proxy;\n"
            f"  fastcgi_temp_path {n}/fastcgi; uwsgi_temp_path {n}/uwsgi; scgi_temp_path {n}/scgi;\n"
            f"  upstream app {{ server 127.0.0.1:{upstream}; keepalive 16; }}\n"
            f"  server {{ listen 127.0.0.1:{port};\n"
            "    location / { proxy_pass http://app; proxy_http_version 1.1;\n"
            "      proxy_set_header Connection \"\"; proxy_set_header Host $host;\n"
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; } }\n}\n"
        )
        self.nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(n), "-e", str(n / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while dd.get(port) is None:
            if time.monotonic() > deadline:
                raise SystemExit("nginx did not start: " + (n / "error.log").read_text())
            time.sleep(0.05)
        return port

    def limit_deploy(self, tag: str) -> float:
        """docker pull + docker run to first answer, seconds."""
        image = f"{self.repository}:{tag}"
        name = self.containers[-1]
        dd.docker("rm", "-f", name, check=False)
        started = time.monotonic()
        dd.docker("pull", "-q", image)
        dd.docker("run", "-d", "-q", "--name", name, "-p", "127.0.0.1::80", image)
        port = int(dd.docker("port", name, "80/tcp").splitlines()[0].rsplit(":", 1)[1])
        deadline = started + 60
        while dd.get(port) != tag:
            if time.monotonic() > deadline:
                raise SystemExit(f"{image} never answered")
            time.sleep(0.002)
        took = time.monotonic() - started
        dd.docker("rm", "-f", name, check=False)
        dd.docker("rmi", image, check=False)
        return took

    def run(self) -> dict:
        self.start_registry()
        self.prepare_images()
        self.start_wharf(free_port())
        log("initial deployment (not measured)")
        self.wharf_deploy("wharf-0")
        results: dict = {"serve": [], "limit": [], "gap": [], "failed": [], "done": []}
        for k in range(1, self.rounds + 1):
            prober = dd.Prober(self.listen)
            prober.start()
            time.sleep(0.2)
            started = time.monotonic()
            done = self.wharf_deploy(f"wharf-{k}")
            tag = f"wharf-{k}"
            deadline = time.monotonic() + 10
            while prober.first(tag, started) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            prober.stop()
            served = prober.first(tag, started)
            if served is None:
                raise SystemExit(f"the route never served {tag}")
            results["serve"].append(served - started)
            results["done"].append(done - started)
            results["gap"].append(prober.longest_gap())
            results["failed"].append(sum(1 for _, body in prober.samples if body is None))
            results["limit"].append(self.limit_deploy(f"script-{k}"))
            log(f"deploy {k}: route serves the new version after {served - started:.2f}s "
                f"(limit {results['limit'][-1]:.2f}s), {results['failed'][-1]} failed probes")

        upstream = int(dd.docker("port", self.containers[0], "80/tcp").splitlines()[0].rsplit(":", 1)[1])
        nginx = self.start_nginx(upstream)
        sides = {"direct": upstream, "route": self.listen, "nginx": nginx}
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        log(f"warm-up, then {self.wrk_rounds} rounds of {self.seconds}s per side")
        for port in sides.values():
            wrk(port, 1)
        order = list(sides)
        for r in range(self.wrk_rounds):
            for side in order[r % 3:] + order[: r % 3]:
                runs[side].append(wrk(sides[side], self.seconds))
                log(f"round {r + 1} {side:6}: {runs[side][-1]['rps']:.0f} req/s, "
                    f"p99 {runs[side][-1]['p99']:.2f} ms")
        results["wrk"] = runs
        return results

    def cleanup(self) -> None:
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            self.nginx.wait(10)
        proxy_pid = self.dir / "state" / "proxy.pid"
        if proxy_pid.exists():
            try:
                os.kill(int(proxy_pid.read_text().strip()), 15)
            except (OSError, ValueError):
                pass
        super().cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wharf", required=True, help="path to the wharf binary")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--deploys", type=int, default=5, help="measured deployments")
    args = parser.parse_args()
    bench = RouteBench(args.wharf, args.rounds, args.seconds, args.deploys)
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    runs = results["wrk"]
    d, r, n = (median_run(runs[s]) for s in ("direct", "route", "nginx"))
    vs_nginx = statistics.median(a["rps"] / b["rps"] for a, b in zip(runs["route"], runs["nginx"]))
    p99_extra = statistics.median(a["p99"] - b["p99"] for a, b in zip(runs["route"], runs["direct"]))
    engine = dd.docker("version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})")
    load = os.getloadavg()[0]
    print(f"\nRoutes, Docker {engine}, {os.cpu_count()} CPUs, load average {load:.2f}; "
          f"wrk -t2 -c16, {args.rounds} rounds of {args.seconds}s; median round\n")
    print("| path to the same busybox httpd | req/s | p50 | p99 |")
    print("|---|---|---|---|")
    for label, run in (("direct (published port)", d), ("wharf route proxy", r), ("nginx (Debian, keepalive pool)", n)):
        print(f"| {label} | {run['rps']:,.0f} | {run['p50']:.2f} ms | {run['p99']:.2f} ms |")
    print(f"\nroute/nginx req/s: {vs_nginx:.2f}× (per round: "
          f"{[round(a['rps'] / b['rps'], 2) for a, b in zip(runs['route'], runs['nginx'])]}); "
          f"route p99 − direct p99: {p99_extra:+.2f} ms (median of rounds)\n")
    serve, limit = results["serve"], results["limit"]
    ratio = statistics.median(s / l for s, l in zip(serve, limit))
    print(f"| {args.deploys} deployments, median (min–max) | seconds |")
    print("|---|---|")
    print(f"| webhook → new version answers through the route | {dd.summary(serve)} |")
    print(f"| webhook → deployment recorded succeeded (after drain and removal) | {dd.summary(results['done'])} |")
    print(f"| physical limit: docker pull + docker run → first answer | {dd.summary(limit)} |")
    print(f"| failed probes through the route during deployments (every 5 ms) | {sum(results['failed'])} |")
    print(f"| longest gap between answers through the route | {dd.summary(results['gap'], 'ms')} |")
    print(f"\nroute deployment / physical limit: {ratio:.2f}× (median of per-deployment ratios)")
    print(json.dumps({"serve": serve, "limit": limit}), file=sys.stderr)


if __name__ == "__main__":
    main()
