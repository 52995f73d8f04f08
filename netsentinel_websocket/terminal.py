"""Text from the network made inert before it reaches a terminal.

Honeypot events carry whatever an intruder typed. Written raw, an escape sequence in a user
name can clear the analyst's screen, retitle the window, write the clipboard (OSC 52), plant a
link (OSC 8), and a bidi override or a zero-width character can make a line read differently
from what it holds. So every control and format character is shown as the backslash escape
Python's ``repr`` uses (``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0041``); the backslash itself
becomes ``\\\\`` so an escape on screen always means the character was there. Other text, in
any script, is left alone.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson

__all__ = ["INERT_CATEGORIES", "json_line", "printable"]

INERT_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories never written raw: controls (C0, DEL, C1), format characters (bidi,
zero-width, BOM, tags), lone surrogates, line and paragraph separators."""

_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Printable ASCII but the backslash passes untouched; anything else gets a closer look.
_SUSPECT = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
# orjson escapes C0, the quote and the backslash itself; DEL and non-ASCII are left to us.
_JSON_SUSPECT = re.compile(r"[^\x00-\x7e]")


def printable(text: str) -> str:
    """``text`` with every control and format character as a visible backslash escape."""
    return _SUSPECT.sub(_escape, text)


def json_line(message: Any) -> str:
    """``message`` as one line of JSON that parses to the same value, with the characters
    JSON allows raw (DEL, C1, bidi, U+2028/2029, ...) as ``\\u`` escapes instead."""
    return _JSON_SUSPECT.sub(_json_escape, orjson.dumps(message, default=str).decode())


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    if unicodedata.category(char) not in INERT_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in INERT_CATEGORIES:
        return char
    units = char.encode("utf-16-be", "surrogatepass")
    return "".join(
        f"\\u{int.from_bytes(units[i : i + 2], 'big'):04x}" for i in range(0, len(units), 2)
    )
