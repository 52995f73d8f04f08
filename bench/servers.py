"""Starting the servers under test as child processes and reading their memory and CPU.

Every case gets a fresh server on fresh ports, so memory per connection is measured from a
clean start and one server's state never leaks into another's figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("netsentinel", "websockets", "ws-node", "seed-style")
NODE_PEER = ROOT / "bench" / "peers" / "ws_node"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REDIS = "redis://127.0.0.1:6379/15"  # the Redis several netsentinel workers share (--redis)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runner_available() -> bool:
    """Whether this checkout's runner can start (it is being written alongside the bench)."""
    probe = subprocess.run(
        [sys.executable, "-m", "netsentinel_websocket", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


def node_peer_available() -> str | None:
    """Why the Node.js ``ws`` peer cannot run (None when it can): it needs ``node``, and its
    one dependency is installed here from the lockfile (``npm ci``) the first time."""
    if shutil.which("node") is None:
        return "node not found"
    if not (NODE_PEER / "node_modules" / "ws").is_dir():
        if shutil.which("npm") is None:
            return "npm not found (needed once, to install ws)"
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_PEER,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            return f"npm ci failed: {done.stderr.strip()[-300:]}"
    return None


def _output(*argv: str) -> str:
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def runner_version() -> str:
    """The package version and the checkout's commit, to label the figures."""
    code = "import netsentinel_websocket as m; print(getattr(m, '__version__', '?'))"
    version = _output(sys.executable, "-c", code) or "?"
    commit = _output("git", "rev-parse", "--short", "HEAD") or "no commit"
    dirty = _output("git", "status", "--porcelain", "netsentinel_websocket")
    return f"{version} ({commit}{', with uncommitted changes' if dirty else ''})"


def machine_busy() -> tuple[int, int]:
    """Busy and total jiffies of all cores, to tell a saturated machine from a waiting one."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Server:
    """One server process under test."""

    name: str
    secret: str
    workdir: Path
    port: int = field(default_factory=free_port)
    ingest_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # netsentinel config overrides
    redis: str = REDIS
    prefix: str | None = None  # the Redis key prefix of this run's workers, deleted at stop

    @property
    def workers(self) -> int:
        """netsentinel's ``server.workers`` (1 for the other servers)."""
        return int(self.settings.get("server.workers", 1)) if self.name == "netsentinel" else 1

    def command(self) -> list[str]:
        if self.name == "netsentinel":
            config = self.workdir / f"netsentinel-{self.port}.json"
            broker = {}
            if self.workers > 1 and "websocket.broker" not in self.settings:
                # several workers share one feed through Redis: a prefix of this run's own
                self.prefix = f"bench:{uuid.uuid4().hex[:8]}:"
                sep = "&" if "?" in self.redis else "?"
                broker["websocket.broker"] = f"{self.redis}{sep}prefix={self.prefix}"
            config.write_text(
                json.dumps(
                    {
                        "websocket.enabled": True,
                        "websocket.auth.jwt.secret": self.secret,
                        "websocket.auth.jwt.algorithms": ["HS256"],
                        "websocket.ingest.tcp": f"127.0.0.1:{self.ingest_port}",
                        "server.bind": "127.0.0.1",
                        "server.port": self.port,
                        "websocket.limits.max_connections": 20000,
                        "websocket.limits.per_ip": 20000,
                        "websocket.limits.per_subject": 20000,
                        **broker,
                        **self.settings,
                    },
                    indent=2,
                )
            )
            return [sys.executable, "-m", "netsentinel_websocket", "serve", "--config", str(config)]
        if self.name == "ws-node":
            return [
                "node",
                str(NODE_PEER / "server.js"),
                "--port",
                str(self.port),
                "--ingest-port",
                str(self.ingest_port),
                "--secret",
                self.secret,
            ]
        module = {"websockets": "websockets_broadcast", "seed-style": "seed_style"}[self.name]
        return [
            sys.executable,
            "-m",
            f"bench.peers.{module}",
            "--port",
            str(self.port),
            "--ingest-port",
            str(self.ingest_port),
            "--secret",
            self.secret,
        ]

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.workdir / f"{self.name}-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        if self.name == "netsentinel":  # READY once every worker listens, not just one
            while b"READY " not in Path(log.name).read_bytes():
                if self.process.poll() is not None:
                    raise RuntimeError(f"netsentinel exited; see {log.name}")
                if time.monotonic() > deadline:
                    raise RuntimeError("netsentinel did not print READY")
                time.sleep(0.1)
        for port in (self.port, self.ingest_port):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}; see {log.name}"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name} did not listen on {port}") from None
                    time.sleep(0.1)

    def pids(self) -> list[int]:
        """The server's process and its descendants (netsentinel's workers)."""
        assert self.process is not None
        found, at = [self.process.pid], 0
        while at < len(found):
            pid = found[at]
            with contextlib.suppress(OSError):  # gone meanwhile
                found += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
            at += 1
        return found

    def rss_kb(self) -> int:
        """VmRSS summed over :meth:`pids` (shared library pages count once per process)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        if not total:
            raise RuntimeError("no VmRSS")
        return total

    def cpu_by_process(self) -> dict[int, float]:
        """User and system CPU seconds of each of :meth:`pids`."""
        found = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                found[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return found

    def cpu_seconds(self) -> float:
        """User and system CPU summed over :meth:`pids`."""
        return sum(self.cpu_by_process().values())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30 if self.workers > 1 else 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.prefix is not None:
            from bench.redis_bench import forget  # needs the redis package

            forget(self.redis, self.prefix)
            self.prefix = None
