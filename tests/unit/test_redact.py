"""Redaction of dotted paths for clients without events:sensitive."""

from __future__ import annotations

import copy

import pytest

from netsentinel_websocket.config import DEFAULT_REDACT
from netsentinel_websocket.redact import MARK, Redactor

EVENT = {
    "event_type": "honeypot.ssh.login_attempt",
    "data": {"src_ip": "203.0.113.7", "logdata": {"USERNAME": "root", "PASSWORD": "hunter2"}},
    "metadata": {"note": "x"},
}


def test_default_paths_hide_attempted_passwords_and_nothing_else():
    original = copy.deepcopy(EVENT)
    hidden = Redactor(DEFAULT_REDACT).apply(EVENT)
    assert hidden is not None
    assert hidden["data"]["logdata"] == {"USERNAME": "root", "PASSWORD": MARK}
    assert hidden["data"]["src_ip"] == "203.0.113.7"
    assert original == EVENT  # the shared event is never changed
    assert hidden["metadata"] is EVENT["metadata"]  # untouched branches are shared, not copied


@pytest.mark.parametrize(
    "paths",
    [
        ["data.logdata.PASSWORD_HASH"],
        ["data.src_ip.deeper"],  # a string on the way: nothing to hide
        ["nope"],
        [],
    ],
)
def test_nothing_to_hide_gives_none(paths):
    assert Redactor(paths).apply(EVENT) is None


def test_several_paths_and_whole_subtrees():
    hidden = Redactor(["data.logdata", "metadata.note", "event_type"]).apply(EVENT)
    assert hidden == {
        "event_type": MARK,
        "data": {"src_ip": "203.0.113.7", "logdata": MARK},
        "metadata": {"note": MARK},
    }


def test_none_values_are_hidden_too():
    assert Redactor(["data.secret"]).apply({"data": {"secret": None}}) == {"data": {"secret": MARK}}
