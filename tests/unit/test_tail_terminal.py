"""What ``tail`` writes for hostile event content: visible escapes, never a raw control.

Expected strings are written out by hand (raw strings: ``r"\\x1b"`` is four visible characters).
"""

from __future__ import annotations

import io
import json

import pytest

from netsentinel_websocket.client import Event, Gap, Position, Reconnect
from netsentinel_websocket.tail import Printer
from netsentinel_websocket.terminal import json_line, printable

STAMP = 1_700_000_000  # 2023-11-14T22:13:20Z

HOSTILE = [
    ("\x1b[2J\x1b[H", r"\x1b[2J\x1b[H"),  # CSI: clear the screen, cursor home
    ("\x1b]0;pwned\x07", r"\x1b]0;pwned\x07"),  # OSC 0: window title
    ("\x1b]52;c;cm0gLXJmIH4K\x07", r"\x1b]52;c;cm0gLXJmIH4K\x07"),  # OSC 52: clipboard
    (
        "\x1b]8;;https://evil.example/\x1b\\docs\x1b]8;;\x1b\\",  # OSC 8 link, ST = ESC backslash
        r"\x1b]8;;https://evil.example/\x1b\\docs\x1b]8;;\x1b\\",
    ),
    ("\x9b2J", r"\x9b2J"),  # C1 CSI
    ("\x9d0;t\x9c", r"\x9d0;t\x9c"),  # C1 OSC ... ST
    ("a\x85b", r"a\x85b"),  # C1 NEL: a line break on some terminals
    ("invoice\u202egpj.exe", r"invoice\u202egpj.exe"),  # RIGHT-TO-LEFT OVERRIDE
    ("\u2066x\u2069 \u202a\u202c", r"\u2066x\u2069 \u202a\u202c"),  # isolates, embedding
    ("\u200e\u200f", r"\u200e\u200f"),  # LRM, RLM
    ("ro\u200bot\u200c\u200d", r"ro\u200bot\u200c\u200d"),  # zero-width space, (non-)joiner
    ("\ufeffadmin", r"\ufeffadmin"),  # BOM / zero-width no-break space
    ("soft\u00adhyphen", r"soft\xadhyphen"),
    ("tag\U000e0041\U000e007f", r"tag\U000e0041\U000e007f"),  # invisible tag characters
    ("a\x00b", r"a\x00b"),  # NUL
    ("a\tb\nc\rd", r"a\tb\nc\rd"),
    ("\x0b\x0c\x1c\x1f\x7f\x08", r"\x0b\x0c\x1c\x1f\x7f\x08"),
    ("\u2028\u2029", r"\u2028\u2029"),  # line and paragraph separators
    ("C:\\Windows\\x1b", r"C:\\Windows\\x1b"),  # a typed backslash never looks like an escape
]


def printable_ascii_only(text: str) -> bool:
    return all(0x20 <= ord(char) <= 0x7E for char in text)


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_controls_become_visible_escapes(raw, shown):
    out = printable(raw)
    assert out == shown
    assert printable_ascii_only(out)


@pytest.mark.parametrize(
    "code",
    [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x200B, 0x2010), 0x2028, 0x2029]
    + [*range(0x202A, 0x202F), *range(0x2060, 0x2065), *range(0x2066, 0x206A), 0xFEFF],
    ids=lambda code: f"U+{code:04X}",
)
def test_every_control_and_bidi_character_is_escaped(code):
    out = printable(f"<{chr(code)}>")
    assert printable_ascii_only(out)
    assert out.startswith("<\\") and out.endswith(">")


@pytest.mark.parametrize(
    "text",
    [
        "root admin_1 ~!@#$%^&*()-=+[]{};:'\",.<>/?|` 0123456789",
        "пользователь",  # Cyrillic
        "用户 ユーザー 사용자",  # CJK, kana, hangul (U+3000-style spacing kept)
        "مستخدم שלום",  # right-to-left scripts: the letters, not overrides
        "café naïve Ünïcödé",
        "🙂🔥🇫🇷",  # emoji, a flag
        "a\u00a0b",  # no-break space: a space, not a control
    ],
)
def test_ordinary_text_is_unchanged(text):
    assert printable(text) == text


def test_json_line_escapes_what_json_allows_raw_and_keeps_the_value():
    message = {
        "event": {
            "data": {
                "username": "\x1b]52;c;eA==\x07\x7f\x85\x9b\u202e\u2028\u2029\u200b\ufeff",
                "tag": "\U000e0041",
                "path": "C:\\temp\n",
                "name": "пользователь 🙂",
            }
        }
    }
    line = json_line(message)
    assert json.loads(line) == message
    assert "\n" not in line
    for char in line:
        code = ord(char)
        assert code >= 0x20 and not 0x7F <= code <= 0x9F, f"U+{code:04X} raw"
        assert not 0x2000 <= code <= 0x206F, f"U+{code:04X} raw"  # all the format controls
        assert code not in (0xFEFF, 0xE0041)
    assert r"\u001b]52;c;eA==\u0007\u007f\u0085\u009b\u202e\u2028\u2029\u200b\ufeff" in line
    assert r"\udb40\udc41" in line  # U+E0041 as a surrogate pair
    assert "пользователь 🙂" in line


def hostile_event(severity: str = "high", channel: str = "events") -> Event:
    return Event(
        channel,
        "E",
        1,
        {
            "timestamp": STAMP,
            "event_type": "honeypot.\x1b[2J.login",
            "severity": severity,
            "data": {
                "src_ip": "203.0.113.7\x1b]0;pwned\x07",
                "dst_host": "10.0.0.5",
                "dst_port": 22,
                "logdata": {"USERNAME": "r\u202eoot\x9b", "PATH": "/a\nb"},
            },
        },
    )


def lines(colour: bool = False, multi: bool = False, **kwargs: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(out, err, json_lines=False, colour=colour)
    printer.multi_channel = multi
    printer.show(hostile_event(**kwargs))
    return out.getvalue(), err.getvalue()


def test_human_line_escapes_every_field():
    out, err = lines()
    assert out == (
        r"2023-11-14T22:13:20Z HIGH     honeypot.\x1b[2J.login 203.0.113.7\x1b]0;pwned\x07 "
        r"-> 10.0.0.5:22 username=r\u202eoot\x9b path=/a\nb" + "\n"
    )
    assert err == ""


def test_our_colours_stay_and_data_is_escaped():
    out, _ = lines(colour=True)
    assert out.startswith("2023-11-14T22:13:20Z \x1b[1;31mHIGH\x1b[0m     honeypot.\\x1b[2J")
    assert out.count("\x1b") == 2  # the colour and the reset, nothing from the event


def test_hostile_severity_and_channel_are_escaped():
    out, _ = lines(colour=True, multi=True, severity="\x1b[5mhigh", channel="ev\x1b[8m")
    assert out.startswith(r"[ev\x1b[8m] 2023-11-14T22:13:20Z \x1b[5MHIGH honeypot.")
    assert "\x1b" not in out


def test_prose_line_breaks_fold_and_other_controls_show():
    out = io.StringIO()
    printer = Printer(out, io.StringIO(), json_lines=False, colour=False)
    data = {"src_ip": "192.0.2.1", "message": " two\r\n\tlines\x1b[2J\x85 "}
    printer.show(Event("events", "E", 1, {"timestamp": STAMP, "event_type": "t", "data": data}))
    shown = r"2023-11-14T22:13:20Z -        t 192.0.2.1 two lines\x1b[2J\x85"
    assert out.getvalue() == shown + "\n"


def test_json_mode_output_has_no_raw_controls():
    out = io.StringIO()
    Printer(out, io.StringIO(), json_lines=True, colour=False).show(hostile_event())
    text = out.getvalue()
    assert text.endswith("}\n") and text.count("\n") == 1
    assert printable_ascii_only(text[:-1])
    assert json.loads(text)["event"]["data"]["logdata"]["USERNAME"] == "r\u202eoot\x9b"


def test_notices_quote_the_server_escaped():
    err = io.StringIO()
    printer = Printer(io.StringIO(), err, json_lines=False, colour=False)
    printer.reconnecting(Reconnect(4009, "bye\x1b]0;pwned\x07\nfake line", 1, 0.5))
    printer.show(Gap("ev\u202ets", Position("E", 3), Position("F", 0)))
    assert err.getvalue().splitlines() == [
        r"netsentinel-websocket tail: disconnected (4009 bye\x1b]0;pwned\x07\nfake line); "
        "reconnecting and resuming",
        r"netsentinel-websocket tail: gap on channel ev\u202ets: events after offset 3 were "
        "lost; resuming at offset 1",
    ]


@pytest.mark.parametrize("stamp", [1e300, -1e18, "2023-11-14", None])
def test_a_time_no_clock_can_show_is_a_dash(stamp):
    out = io.StringIO()
    printer = Printer(out, io.StringIO(), json_lines=False, colour=False)
    event = {"timestamp": stamp, "event_type": "t", "severity": "high", "data": {}}
    printer.show(Event("events", "E", 1, event))
    assert out.getvalue() == "- HIGH     t -\n"
