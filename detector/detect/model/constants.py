"""The model's tuned constants, each with the one-line reason for its value.
How they were chosen, with the figures of the labelled evaluation:
docs/model.md, "How the constants were chosen"."""

from __future__ import annotations

import numpy as np

from ...features.hosts import FEATURE_NAMES

# Bytes sent to outside addresses this host had never used: what only the traffic gives.
NOVELTY_FEATURE = "new_destination_bytes"
# Bytes sent to outside addresses no host of the site had used: the server a leak goes to.
SITE_NOVELTY_FEATURE = "unseen_destination_bytes"
NOVELTY_FEATURES: tuple[str, ...] = (NOVELTY_FEATURE, SITE_NOVELTY_FEATURE)
# What that never-seen address sent back so far: a web site answers, a leak goes one way.
SITE_NOVELTY_RECEIVED = "unseen_destination_bytes_in"
TRAFFIC_FEATURES: tuple[str, ...] = (*NOVELTY_FEATURES, SITE_NOVELTY_RECEIVED)
# Features kept as counts (the history's quantiles, the explanations); the model sees log1p.
COUNT_FEATURES: tuple[str, ...] = (
    *(
        name
        for name in FEATURE_NAMES
        if name not in ("upload_download_ratio", "off_hours", "hour_of_week")  # fmt: skip
    ),
    *NOVELTY_FEATURES,
)
# Five columns, each about egress against the host's own habits (format 4: the fifth).
MODEL_COLUMNS: tuple[str, ...] = (
    "bytes_out_vs_usual",
    "unseen_destination_bytes_vs_usual",
    "log_upload_download_ratio",
    "off_hours",
    "unseen_destination_one_way",
)
# What a host sends: a window is an egress anomaly only if one is above usual (egress_excess).
EGRESS_FEATURES: tuple[str, ...] = ("bytes_out", *NOVELTY_FEATURES)
# Twice the host's usual (95th percentile) of one egress feature: the forest's windows, a floor.
EGRESS_GATE = float(np.log(2.0))
# Local night: a record at these hours is a candidate wherever the bytes went (the modelled leak).
NIGHT_HOURS: tuple[int, int] = (22, 6)
# By day, a never-seen address is a candidate only if it got back under half what it was sent.
ONE_WAY_FACTOR = 2.0
# An episode whose bytes out went this much to allowlisted destinations raises no alert
# (unless an upload to a never-seen address beside them made it a candidate).
ALLOWLISTED_SHARE = 0.9
# Bytes a window sent to allowlisted destinations (from the traffic, not a model column):
# a sanctioned backup must not hide an upload beside it (issue 20, item 7).
SANCTIONED_BYTES = "allowlisted_bytes_out"
# The baseline scores kept at these quantiles: any percentile's threshold without retraining.
QUANTILE_GRID = np.linspace(0.0, 1.0, 10_001)
