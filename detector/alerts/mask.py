"""What text from the traffic may look like when it is written anywhere.

Two concerns, one module, so every writer uses the same rules:

* **ID numbers** (bulletin No. 4: our outputs must not become a new leak).
  :func:`mask_personal` masks every Taiwan national ID or resident certificate
  number in a text: ``A123456789`` → ``A12*****89``. The ``Alert`` record runs
  it over its text (message, destination name, evidence) whenever that text is
  set, so every output of an alert — table, CSV, JSON lines, syslog, the
  nightly files and the HTML report — carries the masked form; the report
  also runs it over every text it shows.
* **Terminal and spreadsheet control** (a hostile DNS name such as
  ``\\x1b]0;owned\\x07.example.com``). :func:`printable` writes control
  characters as ``\\x1b``; :func:`csv_cell` also keeps a cell from starting
  like a spreadsheet formula. JSON escapes C0 controls (``\\u001b``) but not
  DEL or C1 (U+0080-U+009F, which a terminal may take as CSI and the like):
  :func:`json_text` escapes those too, for JSON lines on a terminal.

The ID pattern is what the ``cleartext-pii`` rule looks for in payloads
(``detector/_kernels/payload.py``: a letter, then ``1``/``2`` for a national
ID, ``A``-``D`` for an old-format or ``8``/``9`` for a 2021-format resident
certificate, then eight digits; not after another letter or digit, not
followed by another digit), with two differences that only mask more: letters
match in either case (DNS names, SNI and Host are lower-cased, and DNS is
case-insensitive), and the check digit is not required.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ID_NUMBER = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][12A-Da-d89][0-9]{8}(?![0-9])")
# C0 controls, DEL and C1 controls: what a terminal may act on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# What json.dumps(ensure_ascii=False) leaves raw that a terminal may act on; in
# its output such a character can only be inside a string.
_JSON_RAW_CONTROL = re.compile("[\x7f-\x9f]")
# Cells a spreadsheet runs as a formula (OWASP, "CSV Injection"); a tab or a
# carriage return at the start is already written as \x09 or \x0d by printable().
_FORMULA_START = ("=", "+", "-", "@")


def _mask_number(match: re.Match[str]) -> str:
    number = match.group(0)
    return number[:3] + "*****" + number[-2:]


def mask_personal(text: str) -> str:
    """'A123456789' → 'A12*****89' wherever an ID-number-shaped text appears
    ('j123194871.leak.example.com' → 'j12*****71.leak.example.com')."""
    return _ID_NUMBER.sub(_mask_number, text)


def mask_value(value: Any) -> Any:
    """``value`` with :func:`mask_personal` applied to every string in it: dict
    keys and values, list and tuple items, at any depth. Other values are
    returned as they are; containers are copied."""
    if isinstance(value, str):
        return mask_personal(value)
    if isinstance(value, dict):
        return {mask_value(k): mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_value(v) for v in value)
    return value


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group(0)):02x}"


def printable(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) written as ``\\xNN``,
    for output a terminal shows: ESC [2J (clear the screen) is written as the
    text ``\\x1b[2J`` and clears nothing."""
    return _CONTROL.sub(_escape, text)


def csv_cell(value: Any) -> Any:
    """One CSV cell: a string gets :func:`printable`, and a leading ``'`` when it
    starts with ``=``, ``+``, ``-`` or ``@`` (a spreadsheet then shows it as
    text instead of running it); numbers and None are returned as they are."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"


def json_text(doc: Any) -> str:
    """``json.dumps(doc, ensure_ascii=False)`` (UTF-8 text stays readable) with
    DEL and C1 controls written as ``\\u007f`` … ``\\u009f`` like the C0 ones:
    the same JSON value, safe to print."""
    return _JSON_RAW_CONTROL.sub(_json_escape, json.dumps(doc, ensure_ascii=False))
