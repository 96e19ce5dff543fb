"""model-anomaly: the trained model's verdict, declared like the rules so alerts,
the report and the docs take its words from one place. The model raises it
(detector/detect/model), not a check; its threshold is ``[model] percentile``."""

from __future__ import annotations

from ..declare import MODEL, Detection

DETECTION = Detection(
    rule_id="model-anomaly",
    title="Unusual egress for this site (model)",
    severity=2,  # medium: unusual is not forbidden; a person should look
    stage=MODEL,
    in_policy=False,
    catches="with `scan --model`: a window unusual for this site, by the trained model",
    why_it_matters=(
        "The trained model found this computer's traffic unusual for this site at this "
        "hour: it sent at least twice its usual. Confirm with the user what ran."
    ),
    description="""\
Only with `scan --model FILE` (a model made by `egress-detector train`, see
docs/model.md). Fires when the model flags a host window: its anomaly score
(0–1, higher is worse) is beyond the policy's `[model] percentile` (default
99.5) of the baseline host-days' highest scores, and the host sent at least
twice its usual by some egress measure. Consecutive flagged windows of a host
are one alert. The verdict is in `egress.model` (`score`, `percentile`,
`explanation`); the message says in plain words what moved, e.g. "bytes out
30.0 MB vs usual 4.0–5.8 kB at this hour; 30.0 MB to 1 new outside destination;
outside business hours".

When a rule alert about the same host's egress (direction egress) overlaps the
flagged windows, there is no second alert: the rule's alert carries
`egress.model` and both reasons in its message.""",
    false_positives=(
        "what the baseline never showed for that host — a first video call on a weekend, "
        "an upload larger than any in the baseline, a backup running hours late. Retrain "
        "on a baseline that includes such days."
    ),
)
