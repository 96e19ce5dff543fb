"""docs/rules.md and the rule settings of docs/policy.md, written from the
declarations, so the documentation says what the code does.

    python -m detector.detect.docs          # rewrite both files in place
    python -m detector.detect.docs --check  # exit 1 if either differs (the tests run this)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..alerts.record import SEVERITY_NAMES
from .declare import MODEL, PAYLOAD, SENSOR, TRAFFIC, Detection, Setting
from .rules import DETECTIONS, POLICY_RULES

DOCS = Path(__file__).resolve().parents[2] / "docs"
GENERATED = (
    "<!-- Written from the rule declarations (detector/detect/rules/) by "
    "`python -m detector.detect.docs`: edit those, not this. -->"
)
POLICY_START = "<!-- rule settings: begin -->"
POLICY_END = "<!-- rule settings: end -->"

_RULES_INTRO = """\
# The egress rules

`egress-detector scan` runs these rules over the traffic of every **internal**
host (docs/policy.md says which addresses are internal, isolated, allowlisted).
Rule ids are fixed: alerts, SIEM searches and policy files refer to them.
Every rule has `enabled` (default `true`) and `severity` in the policy, plus
its own thresholds, under `[rules.<id>]`.

How traffic is counted: bytes are frame bytes on the wire (as in
docs/flows.md), per host, per other address, per minute. Times are in the
site's time zone (`site.timezone`); business hours, weekends and holidays are
judged per minute of local time, so a transfer that starts at 17:20 and ends
at 17:50 with business hours ending 17:30 is half in, half out.

**One alert per episode.** Minutes of the same (rule, host, other address)
closer together than one feature window (`features.window_minutes`, default 10)
are one alert with a start and an end. Beyond 20 alerts for one (rule, host),
the rest are summed into one more alert that says how many destinations it
covers: a host sweeping the internet does not bury the console.

**Severity** is 1 low, 2 medium, 3 high, 4 critical (`event.severity` in the
JSON lines; the table shows the name).

Each rule is declared once, in its own module under `detector/detect/rules/`
(id, title, severity, settings, why it matters, the check); this page is
written from those declarations.
"""

_PAYLOAD_INTRO = """\
## Payload inspection and names

The rules below use what payload inspection finds in the first packets of
each flow (`[inspection]` in docs/policy.md: 8 packets with payload per flow,
2,048 bytes each; every DNS packet). It also names outside addresses: a DNS
answer, a TLS server name or an HTTP Host sent to an address gives it a name,
shown in alerts as `203.0.113.140 (files.example.net)` and as
`destination.domain`; `allowlist.domains` sanctions destinations by these names.
Cost: 17–22 % on top of decoding and counting flows on a full-payload capture
(`benchmarks/bench_payload.py`, figures in benchmarks/README.md).
Limits: names inside tunnels (GRE, IP-in-IP) and inside QUIC are not seen; a
ClientHello split over two TCP segments gives its SNI only if the name is in
the first. `beacon` reads flow records, not payload, but runs with them.
"""

_MODEL_INTRO = """\
## The model and the sensor

These are not checks a scan runs over traffic: the trained model raises
`model-anomaly`, and the live sensor raises `sensor-drops` and `sensor-blind`
about itself. They are declared like the rules, so alerts, the daily report
and this page take their words from one place; they have no `[rules.<id>]`
table (the model's threshold is `[model] percentile`).
"""

_OUTPUT = """\
## Output

See README.md for the table and `--format jsonl|csv`. JSON lines use ECS field
names: `@timestamp` (= `event.start`), `event.{kind,category,type,start,end,duration,severity}`,
`rule.{id,name}`, `source.{ip,bytes,packets}` (the site's host and what it
sent), `destination.{ip,port,bytes,packets}` (the other side and what it
sent back), `network.{transport,direction,community_id}`, `observer.name` (the
site), `message`, and `egress.*` for the rule's evidence (thresholds, other
destinations, `severity_name`). Times carry the site's UTC offset.
"""

_POLICY_INTRO = """\
## `[rules.<id>]`

One table per rule, named by its id. Every rule takes:

| key | type | default | meaning |
|---|---|---|---|
| `enabled` | boolean | `true` | `false` turns the rule off. |
| `severity` | severity | per rule | How serious the alert is. |

A **severity** is `"low"`, `"medium"`, `"high"` or `"critical"` (any case), or the
number 1, 2, 3 or 4 (1 = low … 4 = critical). Integers in the tables below must
be written as integers (`60`, not `60.0` or `"60"`); `_` may group digits
(`50_000_000`). Byte counts are bytes on the wire and may be 0; minutes, hours
and packet counts are at least 1; spans and `new_for_hours` are at most a year
(525 600 minutes, 8 760 hours).
"""

# The order of the pages: the rules over traffic, over payload, then the rest.
_STAGE_ORDER = (TRAFFIC, PAYLOAD, MODEL, SENSOR)


def _in_page_order(detections: Sequence[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: _STAGE_ORDER.index(d.stage))


def _default(setting: Setting) -> str:
    value = setting.default
    if value == ():
        return "none"
    if isinstance(value, tuple):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return setting.kind.shown(value)


def _severity(detection: Detection) -> str:
    return detection.severity_shown or SEVERITY_NAMES[detection.severity]


def rules_page() -> str:
    """docs/rules.md."""
    detections = _in_page_order(DETECTIONS)
    parts = [GENERATED, "", _RULES_INTRO]
    parts += ["| id | catches | default severity |", "|----|---------|------------------|"]
    parts += [f"| `{d.rule_id}` | {d.catches} | {_severity(d)} |" for d in detections]
    parts.append("")
    stage = None
    for detection in detections:
        if detection.stage != stage:
            stage = detection.stage
            if stage == PAYLOAD:
                parts.append(_PAYLOAD_INTRO)
            elif stage == MODEL:
                parts.append(_MODEL_INTRO)
        parts += [f"## `{detection.rule_id}`", "", detection.description, ""]
        if detection.false_positives:
            parts += [f"Known false positives: {detection.false_positives}", ""]
        if detection.settings:
            listed = ", ".join(f"`{s.key}` ({_default(s).strip('`')})" for s in detection.settings)
            parts += [
                f"Settings under `[rules.{detection.rule_id}]` (defaults in brackets; "
                f"docs/policy.md): {listed}.",
                "",
            ]
        parts += [f"Why it matters (the daily report's words): {detection.why_it_matters}", ""]
    parts.append(_OUTPUT)
    return "\n".join(parts)


def policy_rules_section() -> str:
    """The part of docs/policy.md between POLICY_START and POLICY_END."""
    parts = [POLICY_START, GENERATED, "", _POLICY_INTRO]
    for detection in _in_page_order(list(POLICY_RULES.values())):
        parts += [f"### `{detection.rule_id}`", ""]
        parts += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for setting in (detection.setting("severity"), *detection.settings):
            parts.append(
                f"| `{setting.key}` | {setting.kind.type_name} | {_default(setting)} "
                f"| {setting.meaning} |"
            )
        parts.append("")
        if detection.policy_example:
            parts += ["```toml", detection.policy_example, "```", ""]
    parts.append(POLICY_END)
    return "\n".join(parts)


def policy_page(current: str) -> str:
    """docs/policy.md with its rule settings written anew."""
    start = current.index(POLICY_START)
    end = current.index(POLICY_END) + len(POLICY_END)
    return current[:start] + policy_rules_section() + current[end:]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    rules_path, policy_path = DOCS / "rules.md", DOCS / "policy.md"
    wanted = {
        rules_path: rules_page(),
        policy_path: policy_page(policy_path.read_text(encoding="utf-8")),
    }
    stale = [path for path, text in wanted.items() if path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"{path}: differs from the rule declarations; run python -m detector.detect.docs")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
