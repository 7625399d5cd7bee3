#!/usr/bin/env python3
"""Replacing a running container: wharf's docker deployer against a shell
script using the docker CLI (bench/docker-deploy.sh), in the same run.

Started by `bench/docker-deploy`, which builds wharf first. For each round,
each side deploys a new image of the same tiny web server (busybox httpd,
FROM scratch, built here and pushed to a local docker-registry, removed from
the engine so that every deploy really pulls). A prober GETs the published
port every few milliseconds throughout and measures:

- time to serve: from the webhook POST (wharf) or the script's start, to the
  first response carrying the new version;
- downtime: the longest gap between two successful responses during the
  replacement (a probe unanswered within 100 ms counts as failed, so the
  resolution is about 0.1 s);
- for wharf, also the time until the deployment is recorded `succeeded`
  (after its HTTP health check passed and the old container was removed).

Everything listens on 127.0.0.1 only; everything started here is removed
here, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "docker-deploy.sh"
BUSYBOX = "/bin/busybox"
REGISTRY = "/usr/bin/docker-registry"
PROBE_EVERY = 0.005
# A probe that gets no answer within this counts as a failure. The server is
# local and trivial (answers in about a millisecond); a longer timeout would
# hide the moment the new container starts answering behind a connection
# that hangs during the switch.
PROBE_TIMEOUT = 0.1


def log(message: str) -> None:
    print(f"[docker-deploy] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if check and result.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def get(port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The body of GET / on 127.0.0.1:port when it is a 200, else None."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode(errors="replace").strip()
        conn.close()
        return body if response.status == 200 else None
    except OSError:
        return None
    except http.client.HTTPException:
        return None


class Prober(threading.Thread):
    """GETs a port in a loop and keeps (time, body-or-None)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[float, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append((time.monotonic(), get(self.port)))
            time.sleep(PROBE_EVERY)

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def first(self, body: str, after: float) -> float | None:
        return next((t for t, b in self.samples if t >= after and b == body), None)

    def longest_gap(self) -> float:
        """Longest time between two successful answers."""
        longest, last_ok = 0.0, None
        for t, body in self.samples:
            if body is None:
                continue
            if last_ok is not None:
                longest = max(longest, t - last_ok)
            last_ok = t
        return longest


def build_image(context: Path, tag: str, body: str) -> None:
    """A web server that answers `body`, and exits at once on SIGTERM (so a
    stop costs no 10 s timeout on either side)."""
    shutil.rmtree(context, ignore_errors=True)
    (context / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "www" / "index.html").write_text(body + "\n")
    (context / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY www /www\n"
        "EXPOSE 80\n"
        'ENTRYPOINT ["/bin/busybox", "sh", "-c", '
        "\"trap 'exit 0' TERM; /bin/busybox httpd -f -p 80 -h /www & wait\"]\n"
    )
    docker("build", "-q", "-t", tag, str(context))


class Bench:
    def __init__(self, wharf_bin: str, rounds: int) -> None:
        self.wharf_bin = wharf_bin
        self.rounds = rounds
        self.dir = Path(tempfile.mkdtemp(prefix="wharf-docker-bench-"))
        self.pid = os.getpid()
        self.registry: subprocess.Popen | None = None
        self.wharf: subprocess.Popen | None = None
        self.wharf_lines: list[str] = []
        self.containers = [f"wharf-bench-{self.pid}", f"script-bench-{self.pid}"]
        self.repository = ""

    # ------------------------------------------------------------ setup

    def start_registry(self) -> None:
        port = free_port()
        config = self.dir / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'registry'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        self.registry = subprocess.Popen(
            [REGISTRY, "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("docker-registry did not start")
                time.sleep(0.05)
        self.repository = f"127.0.0.1:{port}/bench/web-{self.pid}"

    def prepare_images(self) -> None:
        tags = [f"{side}-{k}" for side in ("wharf", "script") for k in range(self.rounds + 1)]
        log(f"building and pushing {len(tags)} images to {self.repository}")
        for tag in tags:
            image = f"{self.repository}:{tag}"
            build_image(self.dir / "context", image, tag)
            docker("push", "-q", image)
        # Off the engine again: every deployment below really pulls.
        for tag in tags:
            docker("rmi", f"{self.repository}:{tag}", check=False)

    def project(self, wharf_port: int) -> str:
        """The project file: the stage's container on a fixed host port."""
        return (
            f'image = "{self.repository}"\n\n[stages.prod]\ntags = ["wharf-*"]\n\n'
            f'[docker]\nname = "{self.containers[0]}"\n'
            f'ports = ["127.0.0.1:{wharf_port}:80"]\n'
            'health = { http = { path = "/", port = 80 } }\n'
            "keep_images = 0\n"
        )

    def start_wharf(self, wharf_port: int) -> None:
        (self.dir / "projects").mkdir()
        (self.dir / "wharf.toml").write_text(
            'listen = "127.0.0.1:0"\nprojects_dir = "projects"\nstate_dir = "state"\n'
            '[auto_create]\nenabled = false\n'
        )
        (self.dir / "projects" / "bench.toml").write_text(self.project(wharf_port))
        self.wharf = subprocess.Popen(
            [self.wharf_bin, "--config", str(self.dir / "wharf.toml")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("WHARF_")},
                 "RUST_LOG": "info"},
        )
        ready = threading.Event()

        def read() -> None:
            assert self.wharf and self.wharf.stderr
            for line in self.wharf.stderr:
                self.wharf_lines.append(line.rstrip())
                if "address=127.0.0.1:" in line:
                    port = line.split("address=127.0.0.1:")[1]
                    self.base = "http://127.0.0.1:" + "".join(
                        c for c in port if c.isdigit()
                    )
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            raise SystemExit("wharf did not start:\n" + "\n".join(self.wharf_lines))
        settings = (self.dir / "state" / "settings.toml").read_text()
        values = dict(
            line.split(" = ", 1) for line in settings.splitlines() if " = " in line
        )
        self.secret = values["webhook_secret"].strip().strip('"')
        self.token = values["admin_token"].strip().strip('"')

    # ------------------------------------------------------------ wharf side

    def post_webhook(self, tag: str) -> str:
        body = json.dumps({"image": f"{self.repository}:{tag}"}).encode()
        request = urllib.request.Request(
            f"{self.base}/api/webhook/{self.secret}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        deployments = answer["deployments"]
        if len(deployments) != 1:
            raise SystemExit(f"wharf did not record one deployment: {answer}")
        return deployments[0]["id"]

    def deployment(self, id_: str) -> dict:
        request = urllib.request.Request(
            f"{self.base}/api/admin/deployments/{id_}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def wharf_deploy(self, tag: str) -> float:
        """POST the webhook and wait until the deployment ends; returns the
        time at which it was seen `succeeded`."""
        id_ = self.post_webhook(tag)
        deadline = time.monotonic() + 120
        while True:
            d = self.deployment(id_)
            if d["status"] == "succeeded":
                return time.monotonic()
            if d["status"] in ("failed", "interrupted", "superseded", "rejected"):
                lines = "\n".join(line["text"] for line in d.get("log", []))
                raise SystemExit(f"wharf deployment of {tag} {d['status']}: {d['reason']}\n{lines}")
            if time.monotonic() > deadline:
                raise SystemExit(f"wharf deployment of {tag} still {d['status']}")
            time.sleep(0.01)

    # ------------------------------------------------------------ script side

    def script_deploy(self, tag: str, port: int) -> None:
        subprocess.run(
            [str(SCRIPT), f"{self.repository}:{tag}", self.containers[1], str(port), tag],
            check=True,
        )

    # ------------------------------------------------------------ the run

    def run(self) -> dict[str, dict[str, list[float]]]:
        self.start_registry()
        self.prepare_images()
        wharf_port, script_port = free_port(), free_port()
        self.start_wharf(wharf_port)
        log("initial deployments (not measured)")
        self.wharf_deploy("wharf-0")
        self.script_deploy("script-0", script_port)
        results: dict[str, dict[str, list[float]]] = {
            "wharf": {"serve": [], "down": [], "done": []},
            "script": {"serve": [], "down": []},
        }
        for k in range(1, self.rounds + 1):
            for side, port in (("wharf", wharf_port), ("script", script_port)):
                tag = f"{side}-{k}"
                prober = Prober(port)
                prober.start()
                time.sleep(0.2)
                started = time.monotonic()
                if side == "wharf":
                    done = self.wharf_deploy(tag)
                    results["wharf"]["done"].append(done - started)
                else:
                    self.script_deploy(tag, port)
                # Keep probing a moment: the window must close on a success.
                deadline = time.monotonic() + 10
                while prober.first(tag, started) is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.2)
                prober.stop()
                served = prober.first(tag, started)
                if served is None:
                    raise SystemExit(f"{side} never served {tag}")
                results[side]["serve"].append(served - started)
                results[side]["down"].append(prober.longest_gap())
                log(
                    f"round {k} {side:6}: serving after {served - started:.2f}s, "
                    f"longest gap {prober.longest_gap() * 1000:.0f} ms"
                )
        return results

    def cleanup(self) -> None:
        for process in (self.wharf, self.registry):
            if process and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        for container in self.containers + [c + "-wharf-old" for c in self.containers]:
            docker("rm", "-f", container, check=False)
        if self.repository:
            listing = docker("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}", check=False)
            ids = {
                line.split()[0]
                for line in listing.splitlines()
                if len(line.split()) == 2 and line.split()[1] == self.repository
            }
            for image in ids:
                docker("rmi", "-f", image, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def summary(values: list[float], unit: str = "s") -> str:
    scale = 1000 if unit == "ms" else 1
    med = statistics.median(values) * scale
    lo, hi = min(values) * scale, max(values) * scale
    fmt = "{:.0f}" if unit == "ms" else "{:.2f}"
    return f"{fmt.format(med)} {unit} ({fmt.format(lo)}–{fmt.format(hi)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wharf", required=True, help="path to the wharf binary")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for path in (BUSYBOX, REGISTRY):
        if not Path(path).exists():
            raise SystemExit(f"{path} is missing (apt-get install busybox-static docker-registry)")
    if shutil.which("curl") is None:
        raise SystemExit("curl is missing")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("no Docker engine (`docker info` fails)")

    bench = Bench(args.wharf, args.rounds)
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    engine = docker("version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})")
    print(f"\nReplacing a running container, {args.rounds} rounds each, "
          f"Docker {engine}, {os.cpu_count()} CPUs; median (min–max)\n")
    print("| | webhook/start → new version serves | downtime (longest gap between answers) | until recorded done |")
    print("|---|---|---|---|")
    w, s = results["wharf"], results["script"]
    print(f"| wharf (docker deployer, stop-first, HTTP health gate) | {summary(w['serve'])} | "
          f"{summary(w['down'], 'ms')} | {summary(w['done'])} |")
    print(f"| docker CLI script (pull, stop, rm, run, wait for HTTP) | {summary(s['serve'])} | "
          f"{summary(s['down'], 'ms')} | — |")


if __name__ == "__main__":
    main()
