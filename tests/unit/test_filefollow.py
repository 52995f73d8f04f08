"""File ingest: the pure follower core, and the follower on real files (growth, partial lines,
rotation by rename + create, copytruncate, truncation, inode reuse, restarts from state)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from netsentinel_websocket.broker_memory import MemoryBroker
from netsentinel_websocket.config import ConfigError, validate
from netsentinel_websocket.filefollow import (
    HEAD_MAX,
    Line,
    Seen,
    Tracked,
    Watermarks,
    dump_state,
    file_source,
    load_state,
    read_head,
    reconcile,
    take_lines,
)
from netsentinel_websocket.fileingest import FileFollower, parse_file_line
from netsentinel_websocket.ingest import IngestError
from netsentinel_websocket.positions import PreparedEvent


def reader(data: bytes):
    return lambda offset, size: data[offset : offset + size]


def texts(lines) -> list[bytes | None]:
    return [line.data for line in lines]


# --- take_lines ---


def test_complete_lines_with_their_offsets_and_a_partial_line_waits():
    data = b'{"a":1}\n\n  \n{"b":2}\n{"c":'
    taken = take_lines(reader(data), 0, False, 100, 1 << 20)
    assert taken.lines == (Line(0, b'{"a":1}'), Line(12, b'{"b":2}'))
    assert (taken.offset, taken.skipping, taken.eof) == (20, False, True)
    # The partial line completes: read from where the last call stopped.
    more = take_lines(reader(data + b"3}\n"), taken.offset, False, 100, 1 << 20)
    assert more.lines == (Line(20, b'{"c":3}'),) and more.offset == len(data) + 3


def test_budget_stops_at_a_line_boundary_and_the_next_read_goes_on(monkeypatch):
    monkeypatch.setattr("netsentinel_websocket.filefollow.READ_CHUNK", 8)
    data = b"".join(b"line-%03d\n" % n for n in range(10))  # 9 bytes each
    first = take_lines(reader(data), 0, False, 100, 20)
    assert not first.eof and first.offset % 9 == 0 and 20 <= first.offset < len(data)
    rest = take_lines(reader(data), first.offset, False, 100, 1000)
    assert texts(first.lines) + texts(rest.lines) == [b"line-%03d" % n for n in range(10)]


@pytest.mark.parametrize("chunk", [4, 64 * 1024])
def test_an_oversized_line_is_reported_once_and_skipped_to_its_end(monkeypatch, chunk):
    monkeypatch.setattr("netsentinel_websocket.filefollow.READ_CHUNK", chunk)
    data = b"ok1\n" + b"x" * 30 + b"\nok2\n" + b"y" * 10 + b"\n"
    taken = take_lines(reader(data), 0, False, 10, 1 << 20)
    assert taken.lines == (Line(0, b"ok1"), Line(4, None), Line(35, b"ok2"), Line(39, b"y" * 10))
    assert taken.offset == len(data) and not taken.skipping


def test_an_oversized_line_still_growing_is_skipped_across_reads():
    data = b"z" * 50
    taken = take_lines(reader(data), 0, False, 10, 1 << 20)
    assert taken.lines == (Line(0, None),) and taken.skipping and taken.offset == 50
    # Later reads (or a restart from state) go on skipping without counting it again.
    data += b"zzz\nnext\n"
    rest = take_lines(reader(data), taken.offset, True, 10, 1 << 20)
    assert rest.lines == (Line(54, b"next"),) and not rest.skipping


def test_head_is_the_first_line_or_head_max_bytes():
    assert read_head(reader(b'{"a":1}\n{"b"')) == b'{"a":1}\n'
    assert read_head(reader(b'{"a":')) is None  # no complete line yet: nothing to read
    assert read_head(reader(b"x" * (HEAD_MAX + 5))) == b"x" * HEAD_MAX


# --- reconcile ---


def test_reconcile_growth_rotation_truncation_and_inode_reuse():
    cur = Tracked(1, 10, head="h", head_len=5, offset=100)
    assert reconcile((), Seen(1, 10, 0)) == (Tracked(1, 10),)
    assert reconcile((cur,), None) == (cur,)  # path gone for now: keep reading what is open
    assert reconcile((cur,), Seen(1, 10, 150)) == (cur,)  # growth
    # rename + create: the old file is finished first, the new one read from 0
    assert reconcile((cur,), Seen(1, 11, 5)) == (cur, Tracked(1, 11))
    # truncated (copytruncate): the old content is looked for by its head, the inode reread
    moved = Tracked(1, 10, head="h", head_len=5, offset=100, moved=True)
    assert reconcile((cur,), Seen(1, 10, 40)) == (moved, Tracked(1, 10, gen=1))
    # same inode, other first line (reused inode, or truncated and regrown): same
    assert reconcile((cur,), Seen(1, 10, 500, same_head=False)) == (moved, Tracked(1, 10, gen=1))


def test_the_file_id_changes_with_inode_generation_and_first_line():
    base = Tracked(1, 10, head="aa", head_len=3, offset=7)
    ids = {
        base.fid,
        Tracked(1, 11, head="aa").fid,
        Tracked(1, 10, gen=1, head="aa").fid,
        Tracked(1, 10, head="bb").fid,
    }
    assert len(ids) == 4
    assert Tracked(1, 10, head="aa", offset=999).fid == base.fid  # not the position
    assert base.event_id(42) == f"file:{base.fid}:42"


def test_file_source_and_watermarks():
    fid = Tracked(1, 2, head="x").fid
    assert file_source(f"file:{fid}:0") == (f"file:{fid}", 1)
    for other in ("e-1", f"file:{fid}:x", "file:abc:1", f"file:{fid}:1:2", ""):
        assert file_source(other) is None
    marks = Watermarks(2)
    assert marks.fresh(f"file:{fid}:0") and marks.fresh(f"file:{fid}:10")
    assert not marks.fresh(f"file:{fid}:10") and not marks.fresh(f"file:{fid}:0")
    assert marks.fresh("e-1") and marks.fresh("e-1")  # other ids are never held back
    for n in range(2):  # the oldest sources are forgotten beyond the bound
        marks.fresh(f"file:{Tracked(9, n, head='x').fid}:0")
    assert marks.fresh(f"file:{fid}:10")


def test_state_round_trip_and_refusals():
    files = (Tracked(1, 2, 0, "ab", 3, 40, True, True), Tracked(1, 3))
    data = orjson.loads(orjson.dumps(dump_state("/var/log/x", files)))
    assert load_state("/var/log/x", data) == files
    with pytest.raises(ValueError):
        load_state("/var/log/other", data)
    for bad in ({"version": 2}, {**data, "files": [{"dev": 1}]}, {**data, "files": "x"}):
        with pytest.raises(ValueError):
            load_state("/var/log/x", bad)
    broken = {**data, "files": [{**files[0].as_dict(), "offset": -1}]}
    with pytest.raises(ValueError):
        load_state("/var/log/x", broken)


def test_formats_accept_only_their_records():
    canary = b'{"logtype": 4002, "src_host": "203.0.113.9", "node_id": "c1"}'
    event = b'{"event_type": "alert.x", "severity": "high"}'
    assert parse_file_line(canary, "auto")["event_type"].startswith("honeypot.")
    assert parse_file_line(canary, "opencanary")["source"] == "c1"
    assert parse_file_line(event, "netsentinel")["event_type"] == "alert.x"
    with pytest.raises(IngestError) as exc:
        parse_file_line(event, "opencanary")
    assert exc.value.reason == "invalid"
    with pytest.raises(IngestError) as exc:
        parse_file_line(canary, "cowrie")
    cowrie = b'{"eventid": "cowrie.login.failed", "src_ip": "203.0.113.9", "session": "s1"}'
    assert parse_file_line(cowrie, "cowrie")["event_type"].startswith("honeypot.")
    assert parse_file_line(cowrie, "auto")["event_type"].startswith("honeypot.")
    with pytest.raises(IngestError) as exc:
        parse_file_line(b"{not json", "auto")
    assert exc.value.reason == "malformed"


# --- the follower on real files ---


class Follow:
    """A follower of ``path`` whose every poll is committed (as the runner does once the
    broker holds the events); ``restart()`` is a new process reading the same state."""

    def __init__(self, path: Path, state: Path, max_line: int = 1000) -> None:
        self.path, self.state, self.max_line = path, state, max_line
        self.follower = FileFollower(str(path), str(state), max_line)
        self.ids: list[str] = []

    def read(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        while True:
            batch = self.follower.poll()
            self.ids += [event_id for event_id, _ in batch.lines]
            out += [line.data for _, line in batch.lines]
            self.follower.commit(batch)
            if not batch.more:
                return out

    def restart(self) -> None:
        self.follower.close()
        self.follower = FileFollower(str(self.path), str(self.state), self.max_line)


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(b"".join(lines))


@pytest.fixture
def follow(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    followers: list[Follow] = []

    def make(name: str = "app.log", **kwargs) -> Follow:
        f = Follow(tmp_path / name, state, **kwargs)
        followers.append(f)
        return f

    yield make
    for f in followers:
        f.follower.close()


def test_growth_partial_lines_and_a_restart_from_state(follow):
    f = follow()
    assert f.read() == []  # no file yet
    append(f.path, b"a1\n", b"a2\na")
    assert f.read() == [b"a1", b"a2"]
    append(f.path, b"3\n")
    assert f.read() == [b"a3"]
    first_ids = list(f.ids)
    f.restart()
    append(f.path, b"a4\n")
    assert f.read() == [b"a4"]
    assert len(set(f.ids)) == 4 and f.ids[:3] == first_ids


def test_uncommitted_lines_are_read_again_with_the_same_ids(follow):
    f = follow()
    append(f.path, b"a1\na2\n")
    batch = f.follower.poll()  # handed over, then the process dies before committing
    f.restart()
    assert f.read() == [b"a1", b"a2"]
    assert f.ids == [event_id for event_id, _ in batch.lines]


def test_rotation_by_rename_and_create_finishes_the_old_file_first(follow):
    f = follow()
    append(f.path, b"a1\n")
    assert f.read() == [b"a1"]
    append(f.path, b"a2\n")  # written before the rotation, not yet read
    os.rename(f.path, str(f.path) + ".1")
    assert f.read() == [b"a2"]  # the old file, still open; no new file yet
    append(f.path, b"b1\n")
    append(str(f.path) + ".1", b"a3\n")  # a last write to the old file, before the switch
    assert f.read() == [b"a3", b"b1"]
    append(f.path, b"b2\n")
    assert f.read() == [b"b2"]
    assert len(f.follower.files) == 1


def test_rotation_while_stopped_is_found_by_inode_among_siblings(follow):
    f = follow()
    append(f.path, b"a1\n")
    assert f.read() == [b"a1"]
    f.follower.close()
    append(f.path, b"a2\n")
    os.rename(f.path, str(f.path) + ".1")
    append(f.path, b"b1\n")
    f.restart()
    assert f.read() == [b"a2", b"b1"]


def test_copytruncate_reads_the_rest_from_the_copy_then_the_file_from_0(follow):
    f = follow()
    append(f.path, b'{"n":1}\n')
    assert f.read() == [b'{"n":1}']
    append(f.path, b'{"n":2}\n')
    copy = Path(str(f.path) + ".1")
    copy.write_bytes(f.path.read_bytes())
    os.truncate(f.path, 0)
    append(f.path, b'{"n":3}\n')
    assert f.read() == [b'{"n":2}', b'{"n":3}']
    append(f.path, b'{"n":4}\n')
    assert f.read() == [b'{"n":4}']
    assert len(set(f.ids)) == 4


def test_truncation_without_a_copy_reads_the_new_content_under_new_ids(follow):
    f = follow()
    append(f.path, b"same first line\nold\n")
    assert f.read() == [b"same first line", b"old"]
    os.truncate(f.path, 0)
    append(f.path, b"same first line\n")
    assert f.read() == [b"same first line"]
    assert len(set(f.ids)) == 3  # a new generation: the same offset is another event


def test_truncated_and_regrown_between_polls_is_seen_by_its_first_line(follow):
    f = follow()
    append(f.path, b"a1\n")
    assert f.read() == [b"a1"]
    with open(f.path, "wb") as fh:  # truncated and rewritten past the old offset
        fh.write(b"b1-longer\nb2\n")
    assert f.read() == [b"b1-longer", b"b2"]


def test_inode_reuse_with_another_first_line_is_a_new_file(follow, tmp_path):
    f = follow()
    append(f.path, b"old first\n")
    assert f.read() == [b"old first"]
    old = f.follower.files[0]
    f.follower.close()
    # Simulate a reused inode: the state names this inode, its content is another file's.
    f.path.write_bytes(b"new first line\nnew second\n")
    st = os.stat(f.path)
    state = dump_state(str(f.path), [Tracked(st.st_dev, st.st_ino, 0, old.head, 10, 10)])
    Path(f.follower.state_path).write_bytes(orjson.dumps(state))
    f.restart()
    assert f.read() == [b"new first line", b"new second"]


def test_oversized_lines_are_skipped_and_reported(follow):
    f = follow(max_line=16)
    append(f.path, b"ok\n" + b"x" * 40 + b"\nfine\n")
    assert f.read() == [b"ok", None, b"fine"]


def test_an_unusable_state_file_means_reading_from_the_start(follow, caplog):
    f = follow()
    append(f.path, b"a1\n")
    assert f.read() == [b"a1"]
    Path(f.follower.state_path).write_bytes(b"{garbage")
    f.restart()
    assert f.read() == [b"a1"]
    assert "unusable" in caplog.text


# --- configuration and the memory broker's part ---


def test_configuration_of_followed_files(tmp_path):
    files = [
        {"path": str(tmp_path / "a.log")},
        {"path": str(tmp_path / "b.json"), "format": "cowrie"},
    ]
    settings = validate(
        {"websocket.ingest.files": files, "websocket.ingest.state_dir": str(tmp_path / "s")}
    )
    section = settings.server.ingest_files
    assert section is not None and section.poll_interval == 0.25
    assert [(f.path, f.format) for f in section.files] == [
        (str(tmp_path / "a.log"), "auto"),
        (str(tmp_path / "b.json"), "cowrie"),
    ]
    assert validate({}).server.ingest_files is None
    with pytest.raises(ConfigError) as exc:
        validate({"websocket.ingest.files": files})
    assert exc.value.key == "websocket.ingest.state_dir"
    for bad in (
        [{"path": "relative.log"}],
        [{"path": "/x.log", "format": "syslog"}],
        [{"path": "/x.log", "mode": "tail"}],
        [{"path": "/x.log"}, {"path": "/./x.log"}],
        "/x.log",
    ):
        with pytest.raises(ConfigError) as exc:
            validate({"websocket.ingest.files": bad, "websocket.ingest.state_dir": str(tmp_path)})
        assert exc.value.key == "websocket.ingest.files"
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as exc:
        validate({"websocket.ingest.state_dir": str(tmp_path / "file" / "state")})
    assert exc.value.key == "websocket.ingest.state_dir"


@pytest.mark.gen_test
async def test_memory_broker_publishes_a_file_line_once():
    broker = MemoryBroker(100)
    got: list[int] = []
    await broker.start(lambda pub: got.append(pub.offset))
    line = f"file:{Tracked(1, 2, head='x').fid}:0"
    for event_id in (line, line, "e-1", "e-1", f"{line[:-1]}7", line):
        broker.publish("events", PreparedEvent({"id": event_id}, 0.0))
    assert got == [1, 2, 3, 4]  # the line once, other ids always, a later line once
