"""The isolation-forest model: learn a site's normal egress, score host
windows, explain every anomaly in plain words.

Rules catch what the policy forbids; the model catches what is unusual for
this site, such as a slow leak that stays under every rule threshold.

**The anomaly score** (``EgressModel.score_samples``, ``egress.model.score``)
is the isolation forest's anomaly score, between 0 and 1: *higher is more
anomalous*. A window is flagged when it is an egress candidate
(:func:`egress_candidate`: the host sent more than twice its usual and broke
its own baseline record, at night, or one way to an address no host of the
site had used) and its score is beyond the calibrated percentile (policy
``[model] percentile``, default 99.5) of the baseline's host-days above usual
(those with a window in which the host sent over twice its usual), scored out
of sample. The candidate test alone flags a few windows per 1,000 host-days;
the forest's threshold is what decides.

The forest is fitted on the baseline windows in which a host sent more than
twice its usual (the population it is asked to judge), through one transform,
:func:`model_matrix`: bytes out against the host's usual at this hour of day,
bytes to addresses no host of the site had used against the host's usual such
bytes, the upload/download ratio, whether it is outside business hours, and
how one-way the traffic with the never-seen address it sent most to is.

The package, by job: ``constants`` (the tuned constants), ``frames`` (helpers
over host-window frames), ``history`` (the baseline, per host),
``transform`` (the forest's columns), ``candidates`` (the pre-condition),
``explain`` (reasons in plain words), ``estimator`` (:class:`EgressModel`),
``novelty`` (what the baseline knew of a scan's destinations), ``verdict``
(:func:`score_scan`), ``alerts`` (:func:`model_alerts`, the
``model-anomaly`` rule) and ``file`` (:func:`save_model`, :func:`load_model`),
which reads a model file as something an attacker may have written with
``archive`` (capped zip members), ``meta`` (meta.json's schema) and
``forest`` (every tree checked before scikit-learn walks it).
Everything callers use is importable from here.
"""

from __future__ import annotations

from .alerts import RULE_ID, RULE_NAME, SEVERITY, model_alerts
from .archive import file_sha256
from .candidates import above_usual, egress_candidate, egress_excess
from .constants import (
    ALLOWLISTED_SHARE,
    COUNT_FEATURES,
    EGRESS_FEATURES,
    EGRESS_GATE,
    MODEL_COLUMNS,
    NIGHT_HOURS,
    NOVELTY_FEATURE,
    NOVELTY_FEATURES,
    ONE_WAY_FACTOR,
    QUANTILE_GRID,
    SITE_NOVELTY_FEATURE,
    SITE_NOVELTY_RECEIVED,
    TRAFFIC_FEATURES,
)
from .estimator import EgressModel
from .explain import BYTE_FEATURES, LABELS
from .file import MAX_FILE_BYTES, MEMBER_BYTES, MEMBERS, TRUSTED_TYPES, load_model, save_model
from .frames import local_day
from .history import History, build_history, destinations_of
from .meta import MODEL_FORMAT, MODEL_KIND, MODEL_POLICY_SECTIONS
from .novelty import baseline_users, known_pairs, known_peers, with_novelty
from .transform import model_matrix, one_way, sends_outside
from .verdict import ModelVerdict, score_scan

__all__ = [
    "ALLOWLISTED_SHARE",
    "BYTE_FEATURES",
    "COUNT_FEATURES",
    "EGRESS_FEATURES",
    "EGRESS_GATE",
    "LABELS",
    "MAX_FILE_BYTES",
    "MEMBER_BYTES",
    "MEMBERS",
    "MODEL_COLUMNS",
    "MODEL_FORMAT",
    "MODEL_KIND",
    "MODEL_POLICY_SECTIONS",
    "NIGHT_HOURS",
    "NOVELTY_FEATURE",
    "NOVELTY_FEATURES",
    "ONE_WAY_FACTOR",
    "QUANTILE_GRID",
    "RULE_ID",
    "RULE_NAME",
    "SEVERITY",
    "SITE_NOVELTY_FEATURE",
    "SITE_NOVELTY_RECEIVED",
    "TRAFFIC_FEATURES",
    "TRUSTED_TYPES",
    "EgressModel",
    "History",
    "ModelVerdict",
    "above_usual",
    "baseline_users",
    "build_history",
    "destinations_of",
    "egress_candidate",
    "file_sha256",
    "egress_excess",
    "known_pairs",
    "known_peers",
    "load_model",
    "local_day",
    "model_alerts",
    "model_matrix",
    "one_way",
    "save_model",
    "score_scan",
    "sends_outside",
    "with_novelty",
]
