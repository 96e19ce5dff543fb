"""The catalogue: every detection, one module each, in the order a scan runs them.

Adding a rule is one new module here that declares ``DETECTION`` (see
``detector/detect/declare.py`` and docs/architecture.md), its entry below,
its test and its regression captures (tests/rule_cases.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..context import ScanContext
from ..declare import PAYLOAD, TRAFFIC, Detection
from . import (
    always_on,
    arp_outside_segment,
    beacon,
    bulk_upload_new_destination,
    cleartext_pii,
    dns_tunnel,
    im_app,
    isolated_egress,
    long_connection,
    low_and_slow,
    mail_egress,
    model_anomaly,
    new_device_isolated,
    offhours_bulk_egress,
    p2p,
    pivot_chain,
    quiet_protocol,
    rogue_dhcp_server,
    rogue_router,
    sensor,
    spread_egress,
)

if TYPE_CHECKING:
    from ...alerts.record import Alert

# Scan order: over host traffic, then the model, then over payload and flows
# (alerts of equal rank keep this order in the output).
DETECTIONS: tuple[Detection, ...] = (
    isolated_egress.DETECTION,
    offhours_bulk_egress.DETECTION,
    low_and_slow.DETECTION,
    bulk_upload_new_destination.DETECTION,
    spread_egress.DETECTION,
    quiet_protocol.DETECTION,
    pivot_chain.DETECTION,
    long_connection.DETECTION,
    mail_egress.DETECTION,
    always_on.DETECTION,
    new_device_isolated.DETECTION,
    rogue_dhcp_server.DETECTION,
    rogue_router.DETECTION,
    arp_outside_segment.DETECTION,
    model_anomaly.DETECTION,
    beacon.DETECTION,
    im_app.DETECTION,
    p2p.DETECTION,
    cleartext_pii.DETECTION,
    dns_tunnel.DETECTION,
    sensor.DROPS,
    sensor.BLIND,
    sensor.FLOOD,
)
BY_ID: dict[str, Detection] = {d.rule_id: d for d in DETECTIONS}
# The rules a site tunes under [rules.<id>], by id.
POLICY_RULES: dict[str, Detection] = {d.rule_id: d for d in DETECTIONS if d.in_policy}


def _run(ctx: ScanContext, stage: str) -> list[Alert]:
    alerts: list[Alert] = []
    for detection in DETECTIONS:
        if detection.stage == stage:
            alerts.extend(detection.run(ctx))
    return alerts


def run_rules(ctx: ScanContext) -> list[Alert]:
    """Every enabled rule over host traffic, alerts worst first (a chain's first
    leg folded into the chain's alert: one incident, one alert)."""
    alerts = pivot_chain.fold_legs(_run(ctx, TRAFFIC))
    alerts.sort(key=lambda a: a.sort_key)
    return alerts


def run_payload_rules(ctx: ScanContext) -> list[Alert]:
    """Every enabled rule over payload facts, names and flow records (in scan
    order), with what each alert's two sides sent (detect/figures.py)."""
    from ..figures import with_traffic_figures

    return with_traffic_figures(_run(ctx, PAYLOAD), ctx.traffic)


def detection_of(rule_id: str) -> Detection | None:
    return BY_ID.get(rule_id)


__all__ = [
    "BY_ID",
    "DETECTIONS",
    "POLICY_RULES",
    "ScanContext",
    "Detection",
    "detection_of",
    "run_payload_rules",
    "run_rules",
]
