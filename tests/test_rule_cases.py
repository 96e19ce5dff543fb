"""Every declared rule against its regression captures (tests/rule_cases.py):
each fire case raises exactly its expected alerts and no other rule's it does
not name; each near-miss raises none of its rule's. A rule with a check and
no cases of either kind fails here, so no rule is added without them."""

from __future__ import annotations

from pathlib import Path

import pytest
from rule_cases import CASES, KINDS, Case, Expect

from detector.alerts.record import Alert
from detector.detect.rules import DETECTIONS, Detection
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

CHECKED = [d for d in DETECTIONS if d.check is not None]


def _shown(alerts: list[Alert]) -> str:
    return "\n".join(
        f"  {a.rule_id} {a.source_ip} -> {a.destination_ip} {a.source_bytes:,} B "
        f"{a.source_packets:,} pkts: {a.message}"
        for a in alerts
    )


def _matches(alert: Alert, expect: Expect) -> list[str]:
    """What differs between ``alert`` and ``expect`` (nothing: it matches)."""
    wrong = []
    for name, want in [("rule_id", expect.rule_id), ("source_ip", expect.source_ip),
                       ("destination_ip", expect.destination_ip), *expect.attributes.items()]:  # fmt: skip
        got = getattr(alert, name)
        if got != want:
            wrong.append(f"{name} {got!r} != {want!r}")
    for key, want in expect.evidence.items():
        got = alert.evidence.get(key, "<absent>")
        if got != want:
            wrong.append(f"evidence[{key!r}] {got!r} != {want!r}")
    return wrong


def _run(case: Case, tmp_path: Path) -> None:
    paths = case.write(tmp_path / case.name)
    for path in paths:
        assert path.stat().st_size < 1_000_000, f"{case.name}: {path.name} is not small"
    result = scan_captures(paths, parse_policy(case.policy, f"{case.name}.toml"))
    where = f"{case.rule_id} {case.kind} case {case.name} ({case.doc.splitlines()[0]} ...)"
    mine = [a for a in result.alerts if a.rule_id == case.rule_id]
    others = {a.rule_id for a in result.alerts if a.rule_id != case.rule_id}
    assert others == case.others, (
        f"{where}: other rules raised {sorted(others)}, expected {sorted(case.others)}:\n"
        + _shown(result.alerts)
    )
    if case.kind != "fire":
        assert mine == [], f"{where}: the near-miss fired:\n{_shown(mine)}"
        return
    assert len(mine) == len(case.alerts), (
        f"{where}: {len(mine)} alert(s), expected {len(case.alerts)}:\n{_shown(mine)}"
    )
    unmatched = list(mine)
    for expect in case.alerts:
        differences = [_matches(alert, expect) for alert in unmatched]
        if [] not in differences:
            closest = min(differences, key=len) if differences else []
            pytest.fail(f"{where}: no alert matches {expect}; closest differs in "
                        f"{'; '.join(closest)}:\n{_shown(mine)}")  # fmt: skip
        unmatched.pop(differences.index([]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("detection", CHECKED, ids=[d.rule_id for d in CHECKED])
def test_rule_regression_captures(detection: Detection, kind: str, tmp_path: Path) -> None:
    stale = set(CASES) - {d.rule_id for d in CHECKED}
    assert not stale, f"tests/rule_cases.py has cases of rules with no check: {sorted(stale)}"
    cases = CASES.get(detection.rule_id, {}).get(kind, [])
    if not cases:
        pytest.fail(
            f"{detection.rule_id} has a check but no {kind} case: add one to tests/rule_cases.py "
            "(docs/architecture.md, 'How to add a rule', step 4)"
        )
    for case in cases:
        _run(case, tmp_path)
