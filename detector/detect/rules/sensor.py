"""sensor-drops and sensor-blind: news about the live sensor itself, raised by the
live engine (detector/pipelines/live.py) when its capture ring overflowed. Declared
like the rules so alerts, the report and the docs take their words from here."""

from __future__ import annotations

from ..declare import SENSOR, Detection

DROPS = Detection(
    rule_id="sensor-drops",
    title="Sensor dropped packets",
    severity=2,
    stage=SENSOR,
    in_policy=False,
    catches="live only: the capture ring overflowed and packets were lost",
    why_it_matters=(
        "The sensor could not keep up and lost packets: traffic in this span is "
        "under-counted, so a transfer in it may be larger than the alerts say."
    ),
    description="""\
Live capture only (docs/live.md). A window in which the kernel reported
packets dropped (the ring was full) raises one alert about the sensor, with no
host: `observer.hostname` and `observer.ingress.interface.name` say which
sensor, `egress.sensor_dropped_packets` how many packets were lost. Alerts
overlapping the span carry the count too. Raise `--block-count` or `--workers`.""",
)

BLIND = Detection(
    rule_id="sensor-blind",
    title="Sensor blind outside business hours",
    severity=3,
    stage=SENSOR,
    in_policy=False,
    catches="live only: packets dropped outside business hours while isolated networks are watched",
    why_it_matters=(
        "The sensor lost packets while nobody was working and it was watching isolated "
        "networks: it cannot vouch that they sent nothing outside in that time."
    ),
    description="""\
Live capture only. When the policy has isolated networks and a span of
dropped packets is not wholly inside business hours, the sensor also raises
this alert: it cannot vouch that the isolated networks sent nothing outside in
that time (`egress.isolated_networks`).""",
)
