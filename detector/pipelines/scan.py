"""A scan: read captures once, build per-host traffic and features, run the rules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..alerts.record import Alert
from ..capture.reading import ONE_THREAD, Reading
from ..detect.context import ScanContext
from ..detect.names import Names, name_alerts, names_from_facts
from ..detect.rules import run_payload_rules, run_rules, sensor
from ..detect.rules.mail_egress import annotate_mail_sizes
from ..features.hosts import HostTraffic, host_traffic, host_window_counts, host_windows
from ..flows.activity import DEFAULT_CAPACITY, DEFAULT_MAX_ROWS, ActivityTable
from ..flows.link import Inspectors, LinkInspector
from ..flows.payload import FactOverflow, PayloadInspector
from ..flows.table import FlowTable, count_flows
from ..units import MINUTE_NS
from .before import FIRST_CONTACT_KEY, NOTHING_BEFORE, Before

if TYPE_CHECKING:
    import pandas as pd

    from ..detect.model import EgressModel
    from ..distributed.shares import HostShare
    from ..policy import Policy


@dataclass
class ScanResult:
    alerts: list[Alert]
    # The features (host_windows), or what makes them when first asked for.
    _features: pd.DataFrame | Callable[[], pd.DataFrame]
    traffic: HostTraffic
    flows: FlowTable
    activity: ActivityTable
    facts: pd.DataFrame | None = None  # payload facts (detector/flows/payload.py)
    names: Names | None = None  # what outside addresses are called
    link: pd.DataFrame | None = None  # link facts of isolated segments (flows/link.py)

    @property
    def features(self) -> pd.DataFrame:
        """One row per (internal host, window) with traffic (``host_windows``),
        made when first asked for: a scan without a model that writes only its
        alerts never needs them (about 1 CPU second of the 20M-packet scan)."""
        if callable(self._features):
            self._features = self._features()
        return self._features

    def host_counts(self) -> tuple[int, int]:
        """Internal hosts with traffic and their host windows: the distinct
        hosts and the rows of ``features``, without making the features."""
        make = self._features
        if isinstance(make, partial) and make.func is host_windows:
            return host_window_counts(*make.args)
        f = self.features
        return (int(f["host"].nunique()) if len(f) else 0), len(f)


def scan_captures(
    paths: Iterable[str | os.PathLike[str]],
    policy: Policy,
    *,
    reading: Reading = ONE_THREAD,
    window_minutes: int | None = None,
    model: EgressModel | None = None,
    activity_rows: int = DEFAULT_MAX_ROWS,
    before: Before = NOTHING_BEFORE,
) -> ScanResult:
    """Scan captures (one stream, in the order given, read as ``reading``
    says) against ``policy`` (and a trained ``model``, whose verdicts join the
    rule alerts). ``activity_rows``:
    the conversation-minutes held before few-packet outside addresses are
    counted together (detector/flows/fold.py). ``before``: what the days
    before taught (the nightly's state)."""
    # Under a flood, few-packet outside addresses are counted together so
    # memory stays bounded; sensor-flood says so.
    activity = ActivityTable(bin_seconds=60, capacity=min(DEFAULT_CAPACITY, activity_rows),
                             max_rows=activity_rows, foldable=foldable(policy))  # fmt: skip
    inspector = None
    if policy.inspect_max_packets > 0 and policy.inspect_max_bytes > 0:
        inspector = PayloadInspector(
            max_packets=policy.inspect_max_packets, max_bytes=policy.inspect_max_bytes
        )
    # The link layer of isolated segments (devices, gateways, ARP, DHCP, router
    # advertisements), looked at only when there are isolated networks.
    link = LinkInspector(policy.isolated) if policy.isolated else None
    names = [os.fspath(p) for p in paths]
    flows = count_flows(
        names,
        **reading.counting(names),
        also=[activity],
        inspector=Inspectors(inspector, link) if link is not None else inspector,
    )
    facts = inspector.frame() if inspector is not None else None
    return scan_activity(
        activity, flows, policy, window_minutes=window_minutes, model=model, facts=facts,
        link=link.frame() if link is not None else None, before=before,
        fact_overflow=inspector.overflow if inspector is not None else None,
        folded_cards=link.folded_cards if link is not None else None,
    )  # fmt: skip


def scan_activity(
    activity: ActivityTable,
    flows: FlowTable,
    policy: Policy,
    *,
    window_minutes: int | None = None,
    model: EgressModel | None = None,
    facts: pd.DataFrame | None = None,
    hosts: HostShare | None = None,
    link: pd.DataFrame | None = None,
    before: Before = NOTHING_BEFORE,
    fact_overflow: FactOverflow | None = None,
    folded_cards: Mapping[int, int] | None = None,
) -> ScanResult:
    """The analysis half of a scan, once the captures have been counted
    (``facts``: what payload inspection found, if it ran, and
    ``fact_overflow`` what it counted past its budget; ``folded_cards``: the
    fleeting cards the link inspector counted past its; ``link``: the link
    facts of isolated segments, if looked at; ``before``: what the days before
    taught, or a live sensor saw before)."""
    first_contacts, other_users = before.first_contacts, before.other_users
    learned_devices = before.learned_devices
    minutes = window_minutes or policy.window_minutes
    names = names_from_facts(facts) if facts is not None else Names()
    sanctioned = names.matching(policy.allowlist_domains)
    traffic = host_traffic(activity.columns(), policy, also_allowlisted=sanctioned)
    if hosts is not None:  # a share of the hosts, on a worker (detector/distributed/shares.py)
        traffic = hosts.narrow(traffic)
    # Made when first asked for (ScanResult.features), unless the model needs them.
    features: pd.DataFrame | Callable[[], pd.DataFrame] = partial(
        host_windows, traffic, policy, minutes
    )
    earlier = None
    recorded: Callable[[np.ndarray], pd.DataFrame] | None = None
    if first_contacts is not None and len(first_contacts):
        earlier = _first_contacts_by_id(traffic, first_contacts)
        # Who else reached an address before (a live sensor's urgent look reads
        # only the hosts it watches): how many hosts share it.
        recorded = partial(traffic.users_of, partial(_recorded_users, first_contacts))
    if other_users is not None:
        recorded = _either(recorded, partial(traffic.users_of, other_users))
    rules = run_rules if hosts is None else hosts.run_rules
    contacts = None if before.earlier_users is None else partial(traffic.users_of,
                                                                  before.earlier_users)  # fmt: skip
    known = None  # (host, address) pairs of the model's baseline
    if model is None:
        alerts = rules(ScanContext(policy, traffic, minutes, first_contacts=earlier,
                                   baseline_users=recorded, earlier_contacts=contacts,
                                   link=link, learned_devices=learned_devices))  # fmt: skip
    else:
        from ..detect.model import baseline_users, known_pairs, model_alerts, score_scan

        known = known_pairs(model, traffic)
        # The cards the model's baseline saw on isolated segments (train stores them).
        learned_devices = learned_devices | model.known_devices()
        alerts = rules(ScanContext(policy, traffic, minutes, known_destinations=known,
                                   first_contacts=earlier, link=link, earlier_contacts=contacts,
                                   baseline_users=_either(baseline_users(model, traffic),
                                                          recorded),
                                   learned_devices=learned_devices))  # fmt: skip
        features = frame = host_windows(traffic, policy, minutes)
        verdict = score_scan(model, frame, traffic, policy, known)
        alerts = model_alerts(model, verdict, traffic, policy, alerts)
    if facts is not None:
        beats = known
        habits = before.habits
        if habits is not None and len(habits):  # beacon's habits only, not "not new"
            beats = _pairs_by_id(traffic, habits, known)
        payload = ScanContext(policy, traffic, minutes, facts=facts, names=names, flows=flows,
                              known_destinations=beats)  # fmt: skip
        alerts.extend(run_payload_rules(payload))
        alerts = annotate_mail_sizes(alerts, facts)
    alerts.extend(sensor.flood_alerts(activity.folded_sources, activity.bin_ns, traffic,
                                      minutes * MINUTE_NS))  # fmt: skip
    alerts.extend(sensor.port_flood_alerts(activity.folded_conversations, activity.bin_ns,
                                           minutes * MINUTE_NS))  # fmt: skip
    alerts.extend(sensor.fact_flood_alerts(fact_overflow))
    alerts.extend(sensor.card_flood_alerts(folded_cards, minutes * MINUTE_NS))
    alerts = name_alerts(alerts, names)
    alerts.sort(key=alert_order)
    return ScanResult(alerts, features, traffic, flows, activity, facts, names, link)


def alert_order(alert: Alert) -> tuple[int, int, int, str, str, str, int, str]:
    """The order a scan gives its alerts: worst, biggest, earliest first
    (``Alert.sort_key``), ties by host, other side, end and text, so that a
    scan analysed in one process and one analysed in shares of hosts on
    workers (docs/distributed.md) give the same alerts in the same order."""
    return (*alert.sort_key, alert.source_ip or "", alert.destination_ip or "", alert.end_ns,
            alert.message)  # fmt: skip


def foldable(policy: Policy) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Which addresses a scan under a flood may count together
    (detector/flows/fold.py): outside the site, and neither an allowlisted
    destination nor an isolated network's sanctioned peer, whose rules need
    each address by itself."""

    def may_fold(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return (
            policy.is_external(hi, lo)
            & ~policy.allowlist_destinations.contains(hi, lo)
            & ~policy.isolated_peers.contains(hi, lo)
        )

    return may_fold


def first_contacts(traffic: HostTraffic, before: pd.DataFrame | None = None) -> pd.DataFrame:
    """When each internal host first reached each outside address, by address
    (``FIRST_CONTACT_KEY`` and ``first_ns``), merged with an earlier record
    ``before`` (the earlier time wins). A live sensor keeps this after it
    drops old minutes, so an address first reached long ago is not new again."""
    import pandas as pd

    f = traffic.frame
    ext = f[f["peer_external"].to_numpy()]
    firsts = ext.groupby(["host_id", "peer_id"], sort=False)["first_ns"].min()
    h = firsts.index.get_level_values(0).to_numpy(dtype=np.int64)
    p = firsts.index.get_level_values(1).to_numpy(dtype=np.int64)
    now = pd.DataFrame({
        "host_hi": traffic.address_hi[h], "host_lo": traffic.address_lo[h],
        "peer_hi": traffic.address_hi[p], "peer_lo": traffic.address_lo[p],
        "first_ns": firsts.to_numpy(dtype=np.int64),
    })  # fmt: skip
    if before is None or not len(before):
        return now
    both = pd.concat([before, now], ignore_index=True)
    return both.groupby(FIRST_CONTACT_KEY, sort=False, as_index=False).agg(
        first_ns=("first_ns", "min")
    )


def _recorded_users(record: pd.DataFrame, peer_hi: np.ndarray, peer_lo: np.ndarray) -> pd.DataFrame:
    """The rows of ``record`` (:func:`first_contacts`) near given outside
    addresses (by their low halves: the exact match is the caller's merge)."""
    return record[np.isin(record["peer_lo"].to_numpy(), peer_lo)]


def _either(
    *sources: Callable[[np.ndarray], pd.DataFrame] | None,
) -> Callable[[np.ndarray], pd.DataFrame] | None:
    """One look-up of an address's users from several (None where absent)."""
    import pandas as pd

    found = [source for source in sources if source is not None]
    if len(found) < 2:
        return found[0] if found else None
    return lambda peers: pd.concat([source(peers) for source in found], ignore_index=True)


def _first_contacts_by_id(traffic: HostTraffic, record: pd.DataFrame) -> pd.Series:
    """``record``'s first contacts of this traffic's (host_id, peer_id) pairs."""
    import pandas as pd

    pairs = traffic.external_pairs()
    both = pairs.merge(record, on=FIRST_CONTACT_KEY, how="inner")
    index = pd.MultiIndex.from_arrays(
        [both["host_id"].to_numpy(), both["peer_id"].to_numpy()], names=["host_id", "peer_id"]
    )
    return pd.Series(both["first_ns"].to_numpy(dtype=np.int64), index=index)


def _pairs_by_id(
    traffic: HostTraffic, pairs: pd.DataFrame, also: pd.MultiIndex | None
) -> pd.MultiIndex:
    """``pairs`` (by address) of this traffic as (host_id, peer_id), with ``also``."""
    import pandas as pd

    both = traffic.external_pairs().merge(pairs, on=FIRST_CONTACT_KEY, how="inner")
    found = pd.MultiIndex.from_arrays(
        [both["host_id"].to_numpy(), both["peer_id"].to_numpy()], names=["host_id", "peer_id"]
    )
    return found if also is None or not len(also) else found.union(also)
