"""workers.py: what each worker gets, the shutdown barrier's arithmetic, the held ports, and the
supervisor against stand-in worker processes (Python one-liners speaking its line protocol)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from tornado.netutil import bind_sockets

from netsentinel_websocket.positions import Position
from netsentinel_websocket.workers import Supervisor, highest, lagging, reserve, worker_config


def test_only_worker_0_follows_files_and_a_configured_node_id_is_numbered():
    config = {"websocket.node_id": "edge", "websocket.ingest.files": ["/var/log/oc.log"]}
    assert worker_config(config, 0) == {**config, "websocket.node_id": "edge-0"}
    assert worker_config(config, 1) == {"websocket.node_id": "edge-1", "websocket.ingest.files": []}
    assert worker_config({}, 1) == {"websocket.ingest.files": []}  # unset: hostname-pid
    assert config["websocket.node_id"] == "edge"  # the parent's copy is left alone


def test_the_barrier_waits_only_for_higher_offsets_of_the_same_epoch():
    tops = highest([{"events": ["e1", 7], "alerts": ["e2", 3]}, {"events": ["e1", 9]}])
    assert tops == {"events": {"e1": 9}, "alerts": {"e2": 3}}
    assert lagging({"events": Position("e1", 8), "alerts": Position("e2", 3)}, tops) == ["events"]
    assert lagging({"events": Position("e1", 9)}, tops) == []
    # a worker in an outage epoch of its own cannot catch up: not waited for
    assert lagging({"events": Position("local-x", 1)}, tops) == []
    assert lagging({"threats": Position("e3", 1)}, tops) == []


def test_held_ports_fix_port_0_take_no_connection_and_keep_others_off():
    held = reserve("server.port", "127.0.0.1", 0)
    port = held[0].getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError):  # bound, not listening
            socket.create_connection(("127.0.0.1", port), timeout=2)
        worker = bind_sockets(port, "127.0.0.1", reuse_port=True)  # as each worker does
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        worker[0].close()
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # a program without SO_REUSEPORT
    finally:
        for sock in held:
            sock.close()


def test_a_taken_port_names_its_key():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        where = rf"cannot listen on 127\.0\.0\.1:{port} \(server\.port\)"
        with pytest.raises(OSError, match=where):
            reserve("server.port", "127.0.0.1", port)


# --- the supervisor, with stand-in workers ---

# Reads its configuration, serves until SIGTERM, reports DRAINED with offset 10 * (index + 1),
# writes the TOP it gets back and the configuration to OUT/<index>.
STAND_IN = textwrap.dedent(
    """
    import json, signal, sys, time
    index, out = int(sys.argv[1]), sys.argv[2]
    config = json.loads(sys.stdin.readline())
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    if index == int(config.get("fail", -1)):
        time.sleep(0.5)  # the other one is up by then
        sys.exit(3)
    print("READY 1 2", flush=True)
    while not stopped:
        time.sleep(0.01)
    print("DRAINED " + json.dumps({"events": ["e1", 10 * (index + 1)]}), flush=True)
    top = sys.stdin.readline()
    with open(f"{out}/{index}", "w") as fh:
        fh.write(json.dumps({"top": top, "config": config}))
    """
)


def supervise(tmp_path: Path, config: dict[str, object], count: int) -> tuple[int, list[str], str]:
    """Run a supervisor of stand-ins, stopping it once all are ready; (exit code, readiness
    calls, failure)."""
    ready: list[str] = []

    def argv(index: int) -> list[str]:
        return [sys.executable, "-c", STAND_IN, str(index), str(tmp_path)]

    async def run() -> tuple[int, Supervisor]:
        supervisor = Supervisor(argv, config, count, shutdown_grace=1)

        def on_ready() -> None:
            ready.append("ready")
            asyncio.get_running_loop().call_later(0.2, supervisor.stop)

        return await asyncio.wait_for(supervisor.run(on_ready), 30), supervisor

    code, supervisor = asyncio.run(run())
    return code, ready, supervisor.failure or ""


def test_stopping_meets_every_worker_at_the_highest_position(tmp_path):
    code, ready, failure = supervise(tmp_path, {"k": "v"}, 3)
    assert (code, ready, failure) == (0, ["ready"], "")
    for index in range(3):
        got = json.loads((tmp_path / str(index)).read_text())
        assert got["config"] == {"k": "v"}  # the configuration came on stdin
        assert json.loads(got["top"].removeprefix("TOP ")) == {"events": {"e1": 30}}


def test_a_worker_that_dies_before_it_is_ready_stops_them_all(tmp_path):
    code, ready, failure = supervise(tmp_path, {"fail": 1}, 2)
    assert (code, ready) == (1, [])
    assert failure == "worker 1 exited with 3 before it was ready"
    # worker 0 was stopped through the same shutdown (it got its TOP, from itself only)
    got = json.loads((tmp_path / "0").read_text())
    assert json.loads(got["top"].removeprefix("TOP ")) == {"events": {"e1": 10}}


def test_a_worker_that_cannot_be_started_ends_the_serve():
    async def run() -> tuple[int, str | None]:
        supervisor = Supervisor(lambda i: ["/nonexistent/netsentinel"], {}, 2, shutdown_grace=1)
        return await asyncio.wait_for(supervisor.run(lambda: None), 30), supervisor.failure

    code, failure = asyncio.run(run())
    assert code == 1 and failure is not None and "FileNotFoundError" in failure
