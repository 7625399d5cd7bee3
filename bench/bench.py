#!/usr/bin/env python3
"""wharf against adnanh/webhook, side by side in one run; prints one table.

Started by `bench/run`, which installs wrk, hyperfine and webhook and builds
wharf first. Everything listens on 127.0.0.1 only, every load is bounded in
time or count, and every process started here is stopped here. The method
and the latest results are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
POST_LUA = HERE / "post.lua"
IMAGE = "registry.example.com/acme/web"
ACCEPTED_BODY = json.dumps({"image": f"{IMAGE}:v1.0.0"})
CONNECTIONS = 16
THREADS = 2
# Between two wrk runs.
PAUSE_S = 0.5


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) and of the
    children it waited for (adnanh/webhook's /bin/true), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, quiet_s: float = 0.3, limit_s: float = 15.0) -> float:
    """Wait until a server stops using CPU; its CPU seconds then. adnanh/webhook
    answers before its command ran, so its work goes on after wrk stopped:
    that work belongs to the run (and must not slow down the next one)."""
    deadline = time.monotonic() + limit_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now == last:
            break
        last = now
    return last


def request(port: int, method: str, path: str, body: str | None = None,
            conn: http.client.HTTPConnection | None = None, timeout: float = 5.0):
    """One HTTP request; (status, body text). Reuses `conn` when given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        if own:
            conn.close()


def wait_answering(port: int, path: str, want: int | None, deadline_s: float,
                   proc: subprocess.Popen) -> float:
    """Poll `path` until it answers (with `want`, when given); seconds waited."""
    start = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering")
        try:
            status, _ = request(port, "GET", path, timeout=1.0)
            if want is None or status == want:
                return time.perf_counter() - start
        except OSError:
            pass
        if time.perf_counter() - start > deadline_s:
            raise RuntimeError(f"nothing answered on port {port} within {deadline_s}s")
        time.sleep(0.002)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median(values):
    return statistics.median(values) if values else float("nan")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- wrk


def wrk(port: int, path: str, body: str, duration: float, limit: int = 0,
        pid: int | None = None) -> dict:
    """Run wrk (16 connections, 2 threads) against 127.0.0.1; its summary,
    plus the server's CPU seconds per request when `pid` is given (after
    waiting for the server to go idle: what it still does after wrk stopped
    belongs to the run)."""
    env = dict(os.environ, BENCH_BODY=body, BENCH_LIMIT=str(limit), BENCH_THREADS=str(THREADS))
    # A count-limited run still gets a time bound: it stops at whichever
    # comes first.
    seconds = max(1, int(round(duration)))
    command = ["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds}s",
               "--latency", "-s", str(POST_LUA), f"http://127.0.0.1:{port}{path}"]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if limit:
        # wrk waits out -d even when every thread stopped: interrupt it then.
        done = 0
        for line in proc.stderr:
            done += line.strip() == "WRKDONE"
            if done == THREADS:
                proc.send_signal(signal.SIGINT)
                break
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err}")
    cpu_after = settle(pid) if pid else 0.0
    line = next(l for l in out.splitlines() if l.startswith("WRKJSON "))
    result = json.loads(line[len("WRKJSON "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if pid and result["requests"]:
        result["cpu_us_per_request"] = (cpu_after - cpu_before) * 1e6 / result["requests"]
    return result


# ---------------------------------------------------------------- wharf


def project_text(image: str, prod_auto: bool = False, staging_tags: str = "main-*") -> str:
    return f"""# benchmark project
image    = "{image}"
deployer = "script"

[script]
command = ["/bin/true"]
timeout = "1m"

[stages.staging]
tags        = ["{staging_tags}", "sha-*"]
auto_deploy = true

[stages.prod]
tags        = ["v*"]
auto_deploy = {"true" if prod_auto else "false"}
"""


def bench_project_name(i: int) -> str:
    return f"p{i:05d}"


def write_atomically(path: Path, text: str) -> None:
    """Like an editor that saves by rename (the hidden name is not a project file)."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


class Wharf:
    """One wharf daemon in its own folder."""

    def __init__(self, binary: Path, root: Path, name: str, projects: int,
                 synchronous: str = "normal"):
        self.binary = binary
        self.dir = root / name
        self.projects_dir = self.dir / "projects"
        self.projects_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.dir / "wharf.toml").write_text(
            f'listen = "127.0.0.1:{self.port}"\n'
            'projects_dir = "projects"\nstate_dir = "state"\n'
            '[auto_create]\nenabled = false\n'
            f'[store]\nsynchronous = "{synchronous}"\n')
        # The project every webhook benchmark pushes to: `v1.0.0` matches its
        # prod stage (auto_deploy = false), so each push is a real insert
        # and nothing deploys.
        (self.projects_dir / "web.toml").write_text(project_text(IMAGE))
        for i in range(projects):
            (self.projects_dir / f"{bench_project_name(i)}.toml").write_text(
                project_text(f"registry.example.com/bench/{bench_project_name(i)}"))
        self.proc: subprocess.Popen | None = None
        self.log = open(self.dir / "wharf.log", "ab")

    def start(self) -> float:
        """Start and wait for /healthz 200; seconds from exec to healthy."""
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(self.binary), "--config", str(self.dir / "wharf.toml"), "serve"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_answering(self.port, "/healthz", 200, 60, self.proc)
        return time.perf_counter() - start

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def secret(self) -> str:
        with open(self.dir / "state" / "settings.toml", "rb") as f:
            return tomllib.load(f)["webhook_secret"]

    def webhook_path(self) -> str:
        return f"/api/webhook/{self.secret()}"

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


# ---------------------------------------------------------------- adnanh/webhook


class Peer:
    """adnanh/webhook with the hook equivalent to wharf's accepted push: a
    UUID id, a trigger rule on the payload's `image`, executing /bin/true."""

    def __init__(self, root: Path):
        self.dir = root / "peer"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hook_id = str(uuid.uuid4())
        hooks = [{
            "id": self.hook_id,
            "execute-command": "/bin/true",
            "http-methods": ["POST"],
            "response-message": "deploying",
            "pass-arguments-to-command": [{"source": "payload", "name": "image"}],
            "trigger-rule": {"match": {
                "type": "regex",
                "regex": "^registry\\.example\\.com/acme/web:v",
                "parameter": {"source": "payload", "name": "image"},
            }},
        }]
        (self.dir / "hooks.json").write_text(json.dumps(hooks, indent=2))
        self.proc: subprocess.Popen | None = None
        self.log = open(self.dir / "webhook.log", "ab")

    def start(self) -> float:
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            ["webhook", "-ip", "127.0.0.1", "-port", str(self.port),
             "-hooks", str(self.dir / "hooks.json")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        # It has no health route: any answer means it serves.
        wait_answering(self.port, "/", None, 30, self.proc)
        return time.perf_counter() - start

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def hook_path(self) -> str:
        return f"/hooks/{self.hook_id}"

    def close(self) -> None:
        stop(self.proc)
        self.proc = None
        self.log.close()


# ---------------------------------------------------------------- the run


def check_answers(wharf: Wharf, peer: Peer) -> None:
    """Both sides answer what the scenario says they answer."""
    wrong = f"/api/webhook/{uuid.uuid4()}"
    status, body = request(wharf.port, "POST", wrong, ACCEPTED_BODY)
    assert status == 404, (status, body)
    status_other, body_other = request(wharf.port, "GET", "/no/such/path")
    assert (status, body) == (status_other, body_other), "wrong secret differs from unknown path"
    status, body = request(wharf.port, "POST", wharf.webhook_path(), ACCEPTED_BODY)
    assert status == 202 and '"awaiting_approval"' in body, (status, body)
    status, body = request(peer.port, "POST", f"/hooks/{uuid.uuid4()}", ACCEPTED_BODY)
    assert status == 404, (status, body)
    status, body = request(peer.port, "POST", peer.hook_path(), ACCEPTED_BODY)
    assert status == 200 and body.strip() == "deploying", (status, body)


def throughput(args, wharf: Wharf, wharf_full: Wharf, peer: Peer,
               wait_idle: bool = True) -> dict:
    """wrk runs in rounds; within a round wharf and the peer run back to back
    (which goes first alternates), so a change of load on the machine hits
    both sides alike. Ratios are the median of the per-round ratios.

    `wait_idle` (today's method): after each run, wait until the server
    uses no more CPU; the peer's /bin/true children that outlive the run
    (after a 5 s run, both cores for ~7 s more) are counted into its CPU
    per request. Without it (the client's view): before each run, wait until
    every server is quiet, so that no run starts on the leftovers of
    another, and take wrk's req/s of each server answering as it does by
    default; no CPU is counted."""
    results: dict[str, list[dict]] = {}
    scenarios = {
        "wharf_404": (wharf.port, f"/api/webhook/{uuid.uuid4()}", wharf.pid),
        "peer_404": (peer.port, f"/hooks/{uuid.uuid4()}", peer.pid),
        "wharf_accepted": (wharf.port, wharf.webhook_path(), wharf.pid),
        "peer_accepted": (peer.port, peer.hook_path(), peer.pid),
        "wharf_accepted_full": (wharf_full.port, wharf_full.webhook_path(), wharf_full.pid),
    }
    view = "settled" if wait_idle else "client view"
    servers = [wharf.pid, wharf_full.pid, peer.pid]

    def quiet() -> None:
        if not wait_idle:
            for pid in servers:
                settle(pid)

    for port, path, _ in scenarios.values():
        wrk(port, path, ACCEPTED_BODY, 2)  # warm-up
    # The peer's warm-up leaves work behind: no round starts on it.
    for pid in servers:
        settle(pid)
    pairs = [("wharf_404", "peer_404"), ("wharf_accepted", "peer_accepted"),
             ("wharf_accepted_full", "peer_accepted")]
    for round_ in range(args.rounds):
        order = []
        for a, b in pairs[:2]:
            order += [a, b] if round_ % 2 == 0 else [b, a]
        order.append("wharf_accepted_full")
        for name in order:
            port, path, pid = scenarios[name]
            log(f"wrk {name} round {round_ + 1}/{args.rounds} ({args.duration}s, {view})")
            quiet()
            result = wrk(port, path, ACCEPTED_BODY, args.duration,
                         pid=pid if wait_idle else None)
            if "accepted" in name:
                assert result["status_errors"] == 0, (name, result)
            results.setdefault(name, []).append(result)
            time.sleep(PAUSE_S)
    out = {}
    for wharf_name, peer_name in pairs:
        ratios = [w["rps"] / p["rps"] for w, p in zip(results[wharf_name], results[peer_name])]
        out[f"ratio_{wharf_name}"] = median(ratios)
        out[f"ratios_{wharf_name}"] = [round(r, 2) for r in ratios]
    # The round with the median req/s stands for the scenario.
    for name, runs in results.items():
        ordered = sorted(runs, key=lambda r: r["rps"])
        out[name] = ordered[len(ordered) // 2]
        out[name]["all_rps"] = [round(r["rps"]) for r in runs]
    return out


def memory_under_load(wharf: Wharf, peer: Peer, count: int) -> dict:
    out = {"wharf_idle": proc_status(wharf.pid), "peer_idle": proc_status(peer.pid)}
    for name, port, path, pid in (
        ("wharf", wharf.port, wharf.webhook_path(), wharf.pid),
        ("peer", peer.port, peer.hook_path(), peer.pid),
    ):
        log(f"{count} accepted pushes to {name}")
        result = wrk(port, path, ACCEPTED_BODY, 300, limit=count, pid=pid)
        out[f"{name}_loaded"] = proc_status(pid)
        out[f"{name}_loaded"]["requests"] = result["requests"]
    return out


def startup(args, binary: Path, root: Path) -> dict:
    out: dict = {}
    for projects in (0, args.projects):
        times, cpu, rss = [], [], []
        wharf = Wharf(binary, root, f"start-{projects}", projects)
        try:
            for i in range(args.starts):
                times.append(wharf.start())
                cpu.append(cpu_seconds(wharf.pid))
                time.sleep(0.5)
                rss.append(proc_status(wharf.pid)["VmRSS"])
                if projects and i == args.starts - 1:
                    out["reload"] = reload_times(args, wharf)
                wharf.stop()
        finally:
            wharf.close()
        out[projects] = {"times": times, "cpu": cpu, "rss": rss}
        log(f"start to healthy with {projects} projects: "
            + ", ".join(f"{t * 1000:.0f} ms" for t in times))
    peer = Peer(root / "peer-start")
    peer_times = []
    try:
        for _ in range(args.starts):
            peer_times.append(peer.start())
            stop(peer.proc)
    finally:
        peer.close()
    out["peer"] = peer_times
    if shutil.which("hyperfine"):
        out["check"] = hyperfine_check(binary, root / f"start-{args.projects}")
    return out


def hyperfine_check(binary: Path, folder: Path) -> dict | None:
    """`wharf check` reads and validates every project, without a server."""
    export = folder / "hyperfine.json"
    command = [str(binary), "--config", str(folder / "wharf.toml"), "check"]
    done = subprocess.run(["hyperfine", "--shell=none", "--warmup", "1", "--runs", "5",
                           "--style", "none", "--export-json", str(export), " ".join(command)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        direct = subprocess.run(command, capture_output=True, text=True)
        log(f"hyperfine failed: {done.stderr.strip()}; the command alone said: "
            f"{direct.stdout.strip()[-300:]} {direct.stderr.strip()[-300:]}")
        return None
    result = json.loads(export.read_text())["results"][0]
    return {"median": result["median"], "min": result["min"], "max": result["max"]}


def poll_until_matched(wharf: Wharf, image: str, deadline_s: float = 30) -> float:
    """Push `image` until wharf records a deployment for it; seconds waited."""
    body = json.dumps({"image": image})
    path = wharf.webhook_path()
    conn = http.client.HTTPConnection("127.0.0.1", wharf.port, timeout=5)
    start = time.perf_counter()
    try:
        while True:
            status, answer = request(wharf.port, "POST", path, body, conn=conn)
            if status == 202:
                return time.perf_counter() - start
            assert status == 200, (status, answer)
            if time.perf_counter() - start > deadline_s:
                raise RuntimeError(f"{image} never matched")
            time.sleep(0.001)
    finally:
        conn.close()


def reload_times(args, wharf: Wharf) -> dict:
    """Rewrite one project file among many (new staging tags) and push until
    the new tag matches: the file watcher's path. Then the same edit followed
    at once by SIGHUP, which re-reads every file: the full reload."""
    name = bench_project_name(args.projects // 2)
    path = wharf.projects_dir / f"{name}.toml"
    image = f"registry.example.com/bench/{name}"
    one, full = [], []
    for i in range(args.reloads):
        write_atomically(path, project_text(image, staging_tags=f"one{i}-*"))
        one.append(poll_until_matched(wharf, f"{image}:one{i}-1"))
        time.sleep(1)
    for i in range(args.reloads):
        write_atomically(path, project_text(image, staging_tags=f"all{i}-*"))
        os.kill(wharf.pid, signal.SIGHUP)
        full.append(poll_until_matched(wharf, f"{image}:all{i}-1"))
        # Let the watcher's own reload of that file pass before the next try.
        time.sleep(1.5)
    log("reload one file: " + ", ".join(f"{t * 1000:.0f} ms" for t in one))
    log("full reload (SIGHUP): " + ", ".join(f"{t * 1000:.0f} ms" for t in full))
    return {"one": one, "full": full}


def deploy_latency(args) -> dict | None:
    """The docker deployer's own benchmark (bench/docker-deploy, owned with
    the docker plugin): webhook → new container serving, against a docker CLI
    script. Skipped without a Docker engine."""
    script = HERE / "docker-deploy"
    if args.no_docker or not os.access(script, os.X_OK):
        return None
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        log("no Docker engine: deploy latency skipped")
        return None
    log(f"bench/docker-deploy --rounds {args.deploy_rounds}")
    done = subprocess.run([str(script), "--rounds", str(args.deploy_rounds)],
                          env=dict(os.environ, WHARF_BIN=str(args.wharf)),
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        log(f"bench/docker-deploy failed: {done.stderr.strip()[-500:]}")
        return None
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(("wharf", "docker CLI")):
            rows["wharf" if cells[0].startswith("wharf") else "script"] = cells[1]
    table = done.stdout[done.stdout.find("Replacing"):].strip()
    return {"wharf": rows.get("wharf", "?"), "script": rows.get("script", "?"), "table": table}


# ---------------------------------------------------------------- the table


def fmt_rps(r: dict) -> str:
    return f"{r['rps']:,.0f} req/s"


def fmt_lat(r: dict) -> str:
    return f"{r['p50_us'] / 1000:.2f} / {r['p99_us'] / 1000:.2f} ms"


def fmt_mb(kib: int) -> str:
    return f"{kib / 1024:.1f} MB"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def table(args, t: dict, client: dict, mem: dict, start: dict, deploy: str | None) -> str:
    rows = [("measurement", "wharf", "adnanh/webhook", "wharf/peer", "target")]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "-"

    w404, p404 = t["wharf_404"], t["peer_404"]
    wacc, pacc, wfull = t["wharf_accepted"], t["peer_accepted"], t["wharf_accepted_full"]

    def per_round(name: str, results: dict = t) -> str:
        return f"{results['ratio_' + name]:.2f}×"

    rows += [
        ("webhook, wrong secret / unknown hook (404)", fmt_rps(w404), fmt_rps(p404),
         per_round("wharf_404"), ""),
        ("  latency p50 / p99", fmt_lat(w404), fmt_lat(p404), "", ""),
        ("accepted push, committed before 202 (synchronous = normal)", fmt_rps(wacc),
         fmt_rps(pacc), per_round("wharf_accepted"), ""),
        ("  latency p50 / p99", fmt_lat(wacc), fmt_lat(pacc), "", ""),
        ("accepted push, synchronous = full (fsync per commit)", fmt_rps(wfull),
         fmt_rps(pacc), per_round("wharf_accepted_full"), ""),
        ("  latency p50 / p99", fmt_lat(wfull), fmt_lat(pacc), "", ""),
        ("client view (each run on a quiet machine, wrk's req/s): 404",
         fmt_rps(client["wharf_404"]), fmt_rps(client["peer_404"]),
         per_round("wharf_404", client), "≥ 1.2×"),
        ("client view: accepted push (synchronous = normal)",
         fmt_rps(client["wharf_accepted"]), fmt_rps(client["peer_accepted"]),
         per_round("wharf_accepted", client), "≥ 2×"),
        ("client view: accepted push, synchronous = full",
         fmt_rps(client["wharf_accepted_full"]), fmt_rps(client["peer_accepted"]),
         per_round("wharf_accepted_full", client), ""),
        ("server CPU per request: 404 / accepted / full",
         " / ".join(f"{t[k].get('cpu_us_per_request', 0):.0f} µs"
                    for k in ("wharf_404", "wharf_accepted", "wharf_accepted_full")),
         " / ".join(f"{t[k].get('cpu_us_per_request', 0):.0f} µs"
                    for k in ("peer_404", "peer_accepted")) + " (incl. /bin/true)", "", ""),
        ("RSS idle after start", fmt_mb(mem["wharf_idle"]["VmRSS"]),
         fmt_mb(mem["peer_idle"]["VmRSS"]),
         ratio(mem["wharf_idle"]["VmRSS"], mem["peer_idle"]["VmRSS"]), "≤ 1×"),
        (f"RSS after {args.requests // 1000}k accepted pushes (peak)",
         f"{fmt_mb(mem['wharf_loaded']['VmRSS'])} ({fmt_mb(mem['wharf_loaded']['VmHWM'])})",
         f"{fmt_mb(mem['peer_loaded']['VmRSS'])} ({fmt_mb(mem['peer_loaded']['VmHWM'])})",
         ratio(mem["wharf_loaded"]["VmRSS"], mem["peer_loaded"]["VmRSS"]), "≤ 0.2×"),
        (f"RSS with {args.projects:,} projects", fmt_mb(median(start[args.projects]["rss"])),
         "-", "", ""),
        ("start to healthy, 0 projects (median)", fmt_ms(median(start[0]["times"])),
         fmt_ms(median(start["peer"])) + " (1 hook)", "", ""),
        (f"start to healthy, {args.projects:,} projects (median)",
         fmt_ms(median(start[args.projects]["times"])), "-", "", "< 1 s"),
        ("  CPU time used until healthy (user + system)",
         fmt_ms(median(start[args.projects]["cpu"])), "-", "", ""),
    ]
    if start.get("check"):
        rows.append((f"`wharf check` of {args.projects:,} projects (hyperfine median)",
                     fmt_ms(start["check"]["median"]), "-", "", ""))
    if "reload" in start:
        rows += [
            (f"edit 1 file of {args.projects:,} → live (median)",
             fmt_ms(median(start["reload"]["one"])), "-", "", "≪ full reload"),
            (f"full reload of {args.projects:,} (SIGHUP) → live (median)",
             fmt_ms(median(start["reload"]["full"])), "-", "", ""),
        ]
    if deploy:
        rows.append(("deploy: webhook → new container serves (median, min–max)",
                     deploy["wharf"], deploy["script"] + " (docker CLI script)", "", ""))
    else:
        rows.append(("deploy: webhook → new container serves",
                     "not measured: needs a Docker engine (bench/docker-deploy)", "-", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores ({cpu}), kernel {os.uname().release}, "
            f"load average before the run {load[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wharf", type=Path, required=True, help="the wharf binary")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="wrk runs per scenario")
    parser.add_argument("--requests", type=int, default=100_000,
                        help="accepted pushes before the loaded RSS reading")
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=5, help="start-ups timed per case")
    parser.add_argument("--reloads", type=int, default=5, help="reloads timed per kind")
    parser.add_argument("--deploy-rounds", type=int, default=5,
                        help="rounds of bench/docker-deploy")
    parser.add_argument("--no-docker", action="store_true",
                        help="skip the deploy latency (bench/docker-deploy)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    # wharf reads WHARF_* variables as settings (WHARF_BIN would be an
    # unknown key): none reaches the processes started here.
    for name in [n for n in os.environ if n.startswith("WHARF_") or n == "RUST_LOG"]:
        del os.environ[name]

    print(f"machine: {machine()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="wharf-bench."))
    wharf = Wharf(args.wharf, root, "wharf", 0)
    wharf_full = Wharf(args.wharf, root, "wharf-full", 0, synchronous="full")
    peer = Peer(root)
    try:
        wharf.start()
        peer.start()
        time.sleep(2)
        check_answers(wharf, peer)
        mem = memory_under_load(wharf, peer, args.requests)
        wharf_full.start()
        t = throughput(args, wharf, wharf_full, peer)
        client = throughput(args, wharf, wharf_full, peer, wait_idle=False)
        wharf.close()
        wharf_full.close()
        peer.close()
        start = startup(args, args.wharf, root)
        deploy = deploy_latency(args)
    finally:
        wharf.close()
        wharf_full.close()
        peer.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"scratch folder kept: {root}")
    if args.json:
        args.json.write_text(json.dumps(
            {"throughput": t, "client_view": client, "memory": mem, "startup": start,
             "deploy": deploy},
            indent=2, default=str))
    print()
    print(table(args, t, client, mem, start, deploy))
    for view, results in (("settled", t), ("client view", client)):
        print(f"\nwharf/peer for req/s, {view}: the median of the per-round ratios "
              f"(404: {results['ratios_wharf_404']}, "
              f"accepted: {results['ratios_wharf_accepted']}, "
              f"full: {results['ratios_wharf_accepted_full']})")
    print(f"machine: {machine()}")
    if deploy:
        print()
        print(deploy["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
