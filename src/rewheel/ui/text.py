"""Text from packages and indexes made safe to print on a terminal."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides and
# isolates: what could move the cursor, rewrite the screen (escape sequences), set a terminal's
# title or make the text read other than it is.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control character shown as ``\\xNN`` (``\\uNNNN``); newlines kept only
    when ``newlines``, else shown too."""
    out = _UNSAFE.sub(_shown, text)
    return out if newlines else out.replace("\n", "\\n")


def _shown(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
