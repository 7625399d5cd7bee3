#!/usr/bin/env python3
"""Zero-downtime routes: wharf's route proxy against the same container
reached directly and through Debian's nginx, and a routed deployment
against the physical limit, in one run.

Started by `bench/route`, which builds wharf first. Two parts:

1. Throughput and latency, against one keep-alive upstream: Debian's own
   nginx binary, the shared libraries `ldd` lists and the loader, copied
   into a `FROM scratch` image (nothing is pulled), one process
   (`master_process off`) serving a 10-byte static file, keep-alive without
   a request limit. wharf deploys it to the route like any image; then the
   same container is reached directly (its published loopback port, so
   docker-proxy is in every path), through the route, and through nginx
   (`proxy_pass` with an upstream keepalive pool). Per round and side:
   - saturated: `wrk -t2 -c16 --latency` for `--seconds`: req/s (and the
     p50/p99 of that queue, which is Little's law: 16 connections / req/s);
   - paced: the same 16 connections, each waiting `--pace` ms after every
     answer (bench/paced.lua; about 1,000 req/s, a fraction of what the
     machine serves): p50/p99 of the path itself. "p99 within 1 ms of
     direct" is judged here; a saturated p99 measures the queue.
   The order of the three rotates each round; the tables show the median
   round of each and the median of per-round ratios/differences.
2. Deployment: a webhook for a new image of a routed stage (busybox httpd,
   FROM scratch) → the first answer of the new version through the route (a
   prober GETs it every 5 ms, counting every failed probe), against the
   physical limit measured in the same run: `docker pull` of an image of
   the same size from the same registry plus its own `docker run -d -p
   127.0.0.1::80` to its first answer. Where wharf's time goes comes from
   the deployment log's timestamps (ms, stamped as the lines arrive).

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
import shutil
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


PACED = HERE / "paced.lua"
NGINX = "/usr/sbin/nginx"
KEEPALIVE_TAG = "wharf-keepalive"
KEEPALIVE_BODY = "keepalive"
# The upstream's nginx.conf: one process, keep-alive without a request
# limit, no logs; its temp paths under /tmp, the only writable directory.
UPSTREAM_CONF = """daemon off;
master_process off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/html;
  keepalive_requests 1000000;
  client_body_temp_path /tmp/body; proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi; uwsgi_temp_path /tmp/uwsgi; scgi_temp_path /tmp/scgi;
  server { listen 80; root /www; index index.html; }
}
"""


def build_keepalive_image(context: Path, image: str, body: str) -> None:
    """Debian's nginx binary with the libraries and loader it links, in a
    FROM scratch image: a keep-alive upstream that needs no pull."""
    shutil.rmtree(context, ignore_errors=True)
    root = context / "root"
    listing = subprocess.run(["ldd", NGINX], capture_output=True, text=True, check=True).stdout
    for library in re.findall(r"(/\S+) \(0x", listing):
        dest = root / library.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(library, dest)
    for path in ("usr/sbin", "etc/nginx", "tmp", "www"):
        (root / path).mkdir(parents=True, exist_ok=True)
    shutil.copy(NGINX, root / "usr/sbin/nginx")
    # nginx looks up its default user (Debian's build: nobody) even in one process.
    (root / "etc/passwd").write_text("root:x:0:0::/:/nonexistent\nnobody:x:65534:65534::/:/nonexistent\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc/nginx/nginx.conf").write_text(UPSTREAM_CONF)
    (root / "www/index.html").write_text(body + "\n")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY root /\nEXPOSE 80\n"
        'ENTRYPOINT ["/usr/sbin/nginx", "-e", "stderr", "-c", "/etc/nginx/nginx.conf"]\n'
    )
    dd.docker("build", "-q", "-t", image, str(context))


def wrk(port: int, seconds: int, pace_ms: int = 0) -> dict[str, float]:
    """req/s and p50/p99 latency (ms) of one wrk run; with `pace_ms`, each
    connection waits that long after every answer."""
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if pace_ms:
        args += ["-s", str(PACED)]
    args.append(f"http://127.0.0.1:{port}/")
    if pace_ms:
        args += ["--", str(pace_ms)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout
    out = process.stdout.read()
    # wait4 for wrk's own CPU time (the client is part of every path's cost).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"wrk failed ({process.returncode}):\n{out}")
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"no {p}% in wrk output:\n{out}")
        return float(m.group(1)) * unit[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        log(f"wrk saw errors on port {port}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": percentile("50"), "p99": percentile("99"),
            "requests": requests, "wrk_cpu": usage.ru_utime + usage.ru_stime}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (all their
    threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


class RouteBench(dd.Bench):
    def __init__(self, wharf_bin: str, rounds: int, seconds: int, deploys: int, pace: int) -> None:
        super().__init__(wharf_bin, deploys)
        self.wrk_rounds = rounds
        self.seconds = seconds
        self.pace = pace
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

    def prepare_images(self) -> None:
        super().prepare_images()
        image = f"{self.repository}:{KEEPALIVE_TAG}"
        log(f"building and pushing the keep-alive upstream {image}")
        build_keepalive_image(self.dir / "keepalive", image, KEEPALIVE_BODY)
        dd.docker("push", "-q", image)
        dd.docker("rmi", image, check=False)

    def deployments_of(self, tag: str) -> dict:
        request = dd.urllib.request.Request(
            f"{self.base}/api/admin/deployments?project=bench",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with dd.urllib.request.urlopen(request, timeout=10) as response:
            page = json.load(response)["deployments"]
        found = next((d for d in page if d["tag"] == tag), None)
        if found is None:
            raise SystemExit(f"no deployment of {tag} listed")
        return self.deployment(found["id"])

    def limit_deploy(self, tag: str) -> dict[str, float]:
        """docker pull + docker run to first answer, seconds (and when pull
        and run returned)."""
        image = f"{self.repository}:{tag}"
        name = self.containers[-1]
        dd.docker("rm", "-f", name, check=False)
        started = time.monotonic()
        dd.docker("pull", "-q", image)
        pulled = time.monotonic()
        dd.docker("run", "-d", "-q", "--name", name, "-p", "127.0.0.1::80", image)
        ran = time.monotonic()
        port = int(dd.docker("port", name, "80/tcp").splitlines()[0].rsplit(":", 1)[1])
        deadline = started + 60
        while dd.get(port) != tag:
            if time.monotonic() > deadline:
                raise SystemExit(f"{image} never answered")
            time.sleep(0.002)
        took = time.monotonic() - started
        dd.docker("rm", "-f", name, check=False)
        dd.docker("rmi", image, check=False)
        return {"total": took, "pull": pulled - started, "run": ran - pulled, "answer": started + took - ran}

    def run(self) -> dict:
        self.start_registry()
        self.prepare_images()
        self.start_wharf(free_port())
        log("initial deployment (not measured)")
        self.wharf_deploy("wharf-0")
        results: dict = {"serve": [], "limit": [], "gap": [], "failed": [], "done": [],
                         "steps": [], "limit_steps": []}
        for k in range(1, self.rounds + 1):
            prober = dd.Prober(self.listen)
            prober.start()
            time.sleep(0.2)
            started = time.monotonic()
            started_wall_ms = time.time() * 1000
            tag = f"wharf-{k}"
            done = self.wharf_deploy(tag)
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
            steps = deploy_steps(self.deployments_of(tag), started_wall_ms)
            steps["served"] = (served - started) * 1000
            results["steps"].append(steps)
            limit = self.limit_deploy(f"script-{k}")
            results["limit"].append(limit["total"])
            results["limit_steps"].append(limit)
            log(f"deploy {k}: route serves the new version after {served - started:.2f}s "
                f"(limit {limit['total']:.2f}s), {results['failed'][-1]} failed probes; "
                + ", ".join(f"{name} {at:.0f}" for name, at in steps.items()) + " ms")

        log("deploying the keep-alive upstream to the route (not measured)")
        self.wharf_deploy(KEEPALIVE_TAG)
        deadline = time.monotonic() + 10
        while dd.get(self.listen) != KEEPALIVE_BODY:
            if time.monotonic() > deadline:
                raise SystemExit("the route never served the keep-alive upstream")
            time.sleep(0.05)
        upstream = int(dd.docker("port", self.containers[0], "80/tcp").splitlines()[0].rsplit(":", 1)[1])
        nginx = self.start_nginx(upstream)
        sides = {"direct": upstream, "route": self.listen, "nginx": nginx}
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        paced: dict[str, list[dict]] = {side: [] for side in sides}
        log(f"warm-up, then {self.wrk_rounds} rounds of {self.seconds}s per side, saturated and paced")
        for port in sides.values():
            wrk(port, 1)
        # The CPU time each proxy spends per request (saturated runs): the
        # figure foreign load on the machine disturbs least.
        assert self.nginx
        proxy_pid = int((self.dir / "state" / "proxy.pid").read_text().strip())
        processes = {"direct": [], "route": [proxy_pid],
                     "nginx": [self.nginx.pid, *children(self.nginx.pid)]}
        # What every side shares: the published port's docker-proxy and the
        # container's nginx.
        found = subprocess.run(["pgrep", "-f", f"docker-proxy .*-host-port {upstream} "],
                               capture_output=True, text=True).stdout.split()
        shared = [int(p) for p in found]
        shared.append(int(dd.docker("inspect", "-f", "{{.State.Pid}}", self.containers[0])))
        order = list(sides)
        for r in range(self.wrk_rounds):
            for side in order[r % 3:] + order[: r % 3]:
                before = cpu_seconds(processes[side]), cpu_seconds(shared)
                run = wrk(sides[side], self.seconds)
                proxy, rest = cpu_seconds(processes[side]) - before[0], cpu_seconds(shared) - before[1]
                run["cpu_us"] = proxy * 1e6 / run["requests"]
                run["path_us"] = (proxy + rest + run["wrk_cpu"]) * 1e6 / run["requests"]
                runs[side].append(run)
                paced[side].append(wrk(sides[side], self.seconds, self.pace))
                log(f"round {r + 1} {side:6}: {runs[side][-1]['rps']:.0f} req/s, "
                    f"p99 {runs[side][-1]['p99']:.2f} ms; paced {paced[side][-1]['rps']:.0f} req/s, "
                    f"p50 {paced[side][-1]['p50']:.3f} ms, p99 {paced[side][-1]['p99']:.3f} ms")
        results["wrk"] = runs
        results["paced"] = paced
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


# Milestones of a docker deployment in its log: (name, how the line starts
# or what it contains), in the order they happen.
MILESTONES = (
    ("pull", lambda t: t.startswith("pulling ")),
    ("pulled", lambda t: t.startswith("pulled ")),
    ("created", lambda t: t.startswith("created ")),
    ("started", lambda t: t.startswith("started ")),
    ("healthy", lambda t: " is healthy: " in t),
    ("switched", lambda t: t.startswith("route ") and " switched to " in t),
)


def deploy_steps(deployment: dict, webhook_ms: float) -> dict[str, float]:
    """When each milestone of a deployment was logged, ms after the webhook
    was sent (wall clock on both sides)."""
    steps = {"recorded": deployment["created_ms"] - webhook_ms,
             "running": (deployment.get("started_ms") or 0) - webhook_ms}
    for name, matches in MILESTONES:
        at = next((line["at_ms"] for line in deployment.get("log", []) if matches(line["text"])), None)
        if at is not None:
            steps[name] = at - webhook_ms
    return steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def median_p99(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["p99"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wharf", required=True, help="path to the wharf binary")
    parser.add_argument("--rounds", type=int, default=7, help="wrk rounds")
    parser.add_argument("--seconds", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--deploys", type=int, default=5, help="measured deployments")
    parser.add_argument("--pace", type=int, default=16,
                        help="paced runs: ms each connection waits after an answer")
    args = parser.parse_args()
    for tool in (NGINX, "/usr/bin/wrk", dd.BUSYBOX, dd.REGISTRY):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing (bench/route installs it)")
    bench = RouteBench(args.wharf, args.rounds, args.seconds, args.deploys, args.pace)
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    runs, paced = results["wrk"], results["paced"]
    sides_ = ("direct", "route", "nginx")
    d, r, n = (median_run(runs[s]) for s in ("direct", "route", "nginx"))
    pd, pr, pn = (median_p99(paced[s]) for s in ("direct", "route", "nginx"))
    vs_nginx = statistics.median(a["rps"] / b["rps"] for a, b in zip(runs["route"], runs["nginx"]))
    vs_direct = statistics.median(a["rps"] / b["rps"] for a, b in zip(runs["route"], runs["direct"]))
    p99_extra = statistics.median(a["p99"] - b["p99"] for a, b in zip(paced["route"], paced["direct"]))
    p99_nginx = statistics.median(a["p99"] - b["p99"] for a, b in zip(paced["nginx"], paced["direct"]))
    p99_sat = statistics.median(a["p99"] - b["p99"] for a, b in zip(runs["route"], runs["direct"]))
    engine = dd.docker("version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})")
    load = os.getloadavg()
    print(f"\nRoutes, Docker {engine}, {os.cpu_count()} CPUs, load average {load[0]:.2f} "
          f"(5 min {load[1]:.2f}) at the end; wrk -t2 -c16, {args.rounds} rounds of {args.seconds}s; "
          "median round\n")
    print("| path to the same keep-alive nginx container | req/s (saturated) | p50 | p99 "
          f"| paced ({args.pace} ms/conn) req/s | p50 | p99 |")
    print("|---|---|---|---|---|---|---|")
    for label, run, pace in (("direct (published port)", d, pd), ("wharf route proxy", r, pr),
                             ("nginx (Debian, keepalive pool)", n, pn)):
        print(f"| {label} | {run['rps']:,.0f} | {run['p50']:.2f} ms | {run['p99']:.2f} ms "
              f"| {pace['rps']:,.0f} | {pace['p50']:.3f} ms | {pace['p99']:.3f} ms |")
    cpu = {side: statistics.median(x["cpu_us"] for x in runs[side]) for side in sides_}
    path = {side: statistics.median(x["path_us"] for x in runs[side]) for side in sides_}
    print(f"\nCPU time per request, saturated runs, median of rounds (user + system, from /proc):"
          f" the proxy itself: wharf {cpu['route']:.1f} µs, nginx {cpu['nginx']:.1f} µs; the whole path"
          f" (wrk + proxy + docker-proxy + upstream): direct {path['direct']:.1f} µs, wharf"
          f" {path['route']:.1f} µs, nginx {path['nginx']:.1f} µs. On an otherwise idle machine req/s"
          f" is CPUs / path time: route/nginx {path['nginx'] / path['route']:.2f}× by CPU time.")
    print(f"\nroute/nginx req/s: {vs_nginx:.2f}× (per round: "
          f"{[round(a['rps'] / b['rps'], 2) for a, b in zip(runs['route'], runs['nginx'])]}); "
          f"route/direct {vs_direct:.2f}×")
    print(f"paced p99, route − direct: {p99_extra:+.3f} ms (per round: "
          f"{[round(a['p99'] - b['p99'], 3) for a, b in zip(paced['route'], paced['direct'])]}); "
          f"nginx − direct: {p99_nginx:+.3f} ms; saturated p99 route − direct: {p99_sat:+.2f} ms "
          "(medians of rounds)\n")
    serve, limit = results["serve"], results["limit"]
    ratio = statistics.median(s / l for s, l in zip(serve, limit))
    print(f"| {args.deploys} deployments, median (min–max) | seconds |")
    print("|---|---|")
    print(f"| webhook → new version answers through the route | {dd.summary(serve)} |")
    print(f"| webhook → deployment recorded succeeded (after drain and removal) | {dd.summary(results['done'])} |")
    print(f"| physical limit: docker pull + docker run → first answer | {dd.summary(limit)} |")
    print(f"| failed probes through the route during deployments (every 5 ms) | {sum(results['failed'])} |")
    print(f"| longest gap between answers through the route | {dd.summary(results['gap'], 'ms')} |")
    print(f"\nroute deployment / physical limit: {ratio:.2f}× (median of per-deployment ratios; "
          f"per deployment {[round(s / l, 2) for s, l in zip(serve, limit)]}; "
          f"ratio of medians {statistics.median(serve) / statistics.median(limit):.2f}×)\n")
    names = list(results["steps"][0])
    print("| where the time goes, ms after the webhook (median) | wharf | limit |")
    print("|---|---|---|")
    limits = results["limit_steps"]
    limit_at = {"pulled": [l["pull"] * 1000 for l in limits],
                "started": [(l["pull"] + l["run"]) * 1000 for l in limits],
                "served": [l["total"] * 1000 for l in limits]}
    for name in names:
        values = [s[name] for s in results["steps"] if name in s]
        other = f"{statistics.median(limit_at[name]):.0f}" if name in limit_at else ""
        print(f"| {name} | {statistics.median(values):.0f} | {other} |")
    print(json.dumps({"serve": serve, "limit": limit, "steps": results["steps"],
                      "limit_steps": limits, "wrk": runs, "paced": paced}), file=sys.stderr)

if __name__ == "__main__":
    main()
