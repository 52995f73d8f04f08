"""The README's commands, verbatim, from a fresh copy of the project: what a new user does in
their first minutes. The run command installs into a new venv and serves; its banner's URLs,
token and ``Try:`` line must work as printed, from another directory and without the venv
activated. The test command is the one CI runs (tox is not run inside tox here)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from tornado.httpclient import HTTPClient

from ..fresh import ROOT, fresh_copy

DEFAULT_PORTS_LOCK = "/tmp/netsentinel-websocket-default-ports.lock"

TOOL = ROOT / "tools" / "readme_command.py"


def readme_command(which: str) -> str:
    result = subprocess.run(
        [sys.executable, str(TOOL), which], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class Lines:
    """A process's stdout lines, read by a thread (select() on a buffered pipe misses the
    lines already in its buffer, so a banner written in one piece would stall the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def until(self, pattern: str, timeout: float) -> list[str]:
        """Lines up to the first matching ``pattern``; fails after ``timeout`` seconds."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {pattern!r} in {timeout} s: {''.join(lines)[-2000:]}"
                ) from None
            assert line is not None, f"exited with {self.proc.wait()}: {''.join(lines)[-2000:]}"
            lines.append(line)
            if re.search(pattern, line):
                return lines


@pytest.mark.timeout(400)  # a fresh venv and a pip install from the index
def test_the_run_command_from_a_fresh_copy(tmp_path):
    with contextlib.ExitStack() as stack:
        _run_command_from_a_fresh_copy(tmp_path, stack)


def _run_command_from_a_fresh_copy(tmp_path: Path, stack: contextlib.ExitStack) -> None:
    command = readme_command("run")
    assert command.endswith("serve --dev --demo") and "activate" not in command
    project = fresh_copy(tmp_path / "clone")
    # The command serves on the default ports (8082, 1514): one run at a time on this machine,
    # across tox's parallel environments too.
    lock = stack.enter_context(open(DEFAULT_PORTS_LOCK, "a"))  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    # What a new shell has: no venv active, no project variables.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path))}
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PYENV_ROOT"):
        if name in os.environ:  # where this machine's packages come from
            env[name] = os.environ[name]
    server = subprocess.Popen(
        ["bash", "-c", command],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the whole chain is stopped as one group below
    )
    try:
        banner = "".join(Lines(server).until(r"^READY ", timeout=330))
        dashboard = re.search(r"^Dashboard: (\S+)$", banner, re.M)[1]
        token = re.search(r"^(eyJ\S+)$", banner, re.M)[1]
        hint = re.search(r"^Try: (.+)$", banner, re.M)[1]
        assert token not in hint
        assert hint.startswith(str(project / ".venv" / "bin" / "netsentinel-websocket") + " ")
        client = HTTPClient()
        try:
            assert client.fetch(dashboard).code == 200
            # the README installs the geoip extra, so --dev enriches and the map has countries
            base = dashboard.split("/ws/")[0]
            deadline = time.monotonic() + 30
            while True:
                history = client.fetch(
                    f"{base}/ws/history/events?limit=100",
                    headers={"Authorization": f"Bearer {token}"},
                )
                events = orjson.loads(history.body)["events"]
                countries = {e["event"]["data"].get("src_geo", {}).get("country") for e in events}
                if countries - {None} or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert countries - {None}, events[-3:]
        finally:
            client.close()
        tail = subprocess.Popen(
            ["bash", "-c", hint],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:  # the demo stream, through the printed token
            Lines(tail).until(r"honeypot\.\S+ ", timeout=30)
        finally:
            tail.terminate()
            tail.communicate(timeout=10)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_command("test")
    assert command.endswith("tox -p auto")
    ci = (ROOT / ".ci" / "run").read_text()
    assert '"$(python tools/readme_command.py test)"' in ci and 'eval "$test_command"' in ci
    assert not re.search(r"^\s*tox\b", ci, re.M)  # no second, different test command


def test_the_readme_says_what_the_test_command_reports():
    readme = (ROOT / "README.md").read_text()
    assert "parallel_show_output = true" in (ROOT / "tox.ini").read_text()
    assert "pyenv" in readme and "SKIP" in readme


def test_the_pytest_configuration_prints_why_a_test_skipped_and_which_failed(tmp_path):
    """Under the project's pytest configuration a skip says why and a failure is named in the
    summary (the -r characters replace pytest's default ones, so both must be there)."""
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_needs_a_widget():\n    pytest.skip('no widget on this machine')\n\n"
        "def test_fails():\n    assert 1 == 2\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_sample.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stdout
    assert "SKIPPED [1] test_sample.py:4: no widget on this machine" in run.stdout
    assert "FAILED test_sample.py::test_fails" in run.stdout


def test_the_readme_command_tool_refuses_a_readme_of_another_shape(tmp_path):
    other = tmp_path / "README.md"
    other.write_text("# nothing to run\n")
    result = subprocess.run(
        [sys.executable, str(TOOL), "test", str(other)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "no sh block after **Test it**" in result.stderr
