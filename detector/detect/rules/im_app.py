"""im-app: a commercial messaging app on an internal host (bulletin No. 6), by the
names it looks up or connects to, or by the vendor's published address ranges."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...arrays import sorted_unique
from ...flows.payload import DNS_IS_RESPONSE
from ...flows.records import initiator_columns
from ...networks import NetworkSet, address_text
from ..declare import PAYLOAD, Choices, Detection, Domains, Networks, Rule, Setting
from ..names import DomainOwners, domain_owners
from .common import when

if TYPE_CHECKING:
    from ...policy import Policy
    from ..context import ScanContext
    from ..packets import PacketContext


@cache
def _shipped_apps() -> dict[str, Any]:
    """detector/data/im_apps.toml: each app's name, domains and published ranges."""
    with resources.files("detector").joinpath("data/im_apps.toml").open("rb") as stream:
        return tomllib.load(stream)


def im_app_ids() -> tuple[str, ...]:
    """The app ids of the shipped messaging-app list (detector/data/im_apps.toml)."""
    return tuple(sorted(_shipped_apps()))


DETECTION = Detection(
    rule_id="im-app",
    title="Messaging app on an internal host",
    severity=2,
    catches="LINE, WeChat, Messenger, WhatsApp, Telegram, Signal, by name or published "
    "address range",
    why_it_matters=(
        "Commercial messaging apps are outside the agency's control (bulletin No. 6): "
        "what is sent there cannot be recalled or audited."
    ),
    description="""\
Bulletin No. 6: LINE, Facebook Messenger, WeChat are outside the agency's
control. Fires for an internal host that asks DNS for, opens TLS to, or sends an
HTTP request to a name of a messaging app, or starts a connection to an address
in an app's published range (Telegram connects to fixed addresses without
DNS); packets that only come *from* such an address (a forged source in a
flood) do not count. The lists
ship in `detector/data/im_apps.toml` (dated; sources named there); a policy
adds names or ranges, or leaves apps out. One alert per (host, app), severity
medium. Known misses: an app whose connections carry no name and whose vendor
publishes no ranges (WhatsApp calls by address alone).""",
    settings=(
        Setting(
            "domains",
            Domains(),
            (),
            "More names to report as a messaging app (on top of the shipped list, "
            "`detector/data/im_apps.toml`).",
        ),
        Setting("networks", Networks(), (), "More address ranges to report."),
        Setting(
            "ignore",
            Choices(im_app_ids, "app", "array of app ids"),
            (),
            "Shipped apps to leave out: `line`, `messenger`, `signal`, `telegram`, "
            "`wechat`, `whatsapp`.",
        ),
    ),  # fmt: skip
    # Two apps of one host are two incidents (the alert names no other side).
    incident=lambda alert: alert.evidence.get("app"),
)


@dataclass(frozen=True)
class App:
    app_id: str
    name: str
    domains: tuple[str, ...]
    networks: tuple[str, ...]


def messaging_apps(policy: Policy) -> list[App]:
    """The shipped list (detector/data/im_apps.toml) with the policy's
    additions and omissions (``[rules.im-app]``)."""
    shipped = _shipped_apps()
    settings = policy.rule(DETECTION.rule_id)
    apps = [
        App(app_id, entry["name"], tuple(entry["domains"]), tuple(entry["networks"]))
        for app_id, entry in sorted(shipped.items())
        if app_id not in settings["ignore"]
    ]
    if settings["domains"] or settings["networks"]:
        apps.append(App("site", "site-listed messaging service", tuple(settings["domains"]),
                        tuple(settings["networks"])))  # fmt: skip
    return apps


@DETECTION.checks(over=PAYLOAD)
def check_im_app(ctx: ScanContext, rule: Rule) -> list[Alert]:
    """A host that looked up, or connected by name or address to, a messaging app."""
    facts, traffic, policy = ctx.facts, ctx.traffic, ctx.policy
    if facts is None:
        return []
    hits = []  # (host hi, host lo, app id, ts, evidence)
    named = facts[facts["kind"].isin(["dns", "tls-sni", "http"]).to_numpy()]
    if not named.empty:
        # The asking host is the packet's source: DNS questions (not answers), ClientHellos
        # and requests all go from the client.
        named = named[~((named["kind"] == "dns") & (named[DNS_IS_RESPONSE] == 1)).to_numpy()]
        src_in = policy.internal.contains(named["src_hi"].to_numpy(), named["src_lo"].to_numpy())
        named = named[src_in]
    apps = messaging_apps(policy)
    # Each distinct name once (an HTTP Host without its port), against every
    # app's domains at once.
    codes, asked = np.empty(0, dtype=np.int64), []
    if not named.empty:
        codes, distinct = pd.factorize(named["text"].str.split(":").str[0])
        asked = [str(name) for name in distinct]
    owned = domain_owners(asked, [app.domains for app in apps])
    for k, app in enumerate(apps):
        if asked and app.domains:
            hit = owned[:, k]
            found = named[(codes >= 0) & hit[np.maximum(codes, 0)]]
            for s_hi, s_lo, ts, text in zip(found["src_hi"].to_numpy(), found["src_lo"].to_numpy(),
                                            found["ts_ns"].to_numpy(), found["text"].to_numpy(),
                                            strict=True):  # fmt: skip
                hits.append((int(s_hi), int(s_lo), app.app_id, int(ts), str(text)))
        if traffic is not None and app.networks and not traffic.frame.empty:
            frame = traffic.frame
            ranges = NetworkSet(app.networks)
            peers = sorted_unique(frame["peer_id"].to_numpy())
            wanted = peers[ranges.contains(traffic.address_hi[peers], traffic.address_lo[peers])]
            rows = frame[np.isin(frame["peer_id"].to_numpy(), wanted)]
            rows = rows[_started_by_host(ctx, rows, ranges)]
            for h, peer, ts in zip(rows["host_id"].to_numpy(), rows["peer_id"].to_numpy(),
                                   rows["first_ns"].to_numpy(), strict=True):  # fmt: skip
                hits.append((int(traffic.address_hi[h]), int(traffic.address_lo[h]), app.app_id,
                             int(ts), traffic.text(int(peer))))  # fmt: skip
    if not hits:
        return []
    table = pd.DataFrame(hits, columns=["host_hi", "host_lo", "app", "ts_ns", "evidence"])
    names = {app.app_id: app.name for app in apps}
    alerts: list[Alert] = []
    for (h_hi, h_lo, app_id), rows in table.groupby(["host_hi", "host_lo", "app"], sort=True):
        host = address_text(int(h_hi), int(h_lo))  # type: ignore[call-overload]
        seen = sorted(set(rows["evidence"]))
        start, end = int(rows["ts_ns"].min()), int(rows["ts_ns"].max())
        alerts.append(
            rule.alert(
                start,
                end,
                host,
                text=(
                    f"{host} uses {names[str(app_id)]} ({', '.join(seen[:3])}"
                    + (" …" if len(seen) > 3 else "")
                    + f") {when(start, end, policy)}; messaging apps are outside the "
                    "agency's control and not for official business"
                ),
                evidence={"app": str(app_id), "app_name": names[str(app_id)], "seen": seen[:10]},
            )
        )
    return alerts


def _started_by_host(ctx: ScanContext, rows: pd.DataFrame, ranges: NetworkSet) -> np.ndarray:
    """Which of ``rows`` (host traffic with an app's address) are of a (host,
    address) pair where the host started a flow: a packet from a forged
    source in the app's range (a spoofed flood) must not say the host uses the
    app. Without flow records, where the host sent at least one packet."""
    sent = rows["packets_out"].to_numpy() > 0
    if ctx.flows is None or not len(rows):
        return sent  # type: ignore[no-any-return]

    def started_to_app(flow_rows: np.ndarray) -> np.ndarray:
        flow = initiator_columns(flow_rows)
        return ranges.contains(flow["dst_hi"], flow["dst_lo"])  # type: ignore[no-any-return]

    started = initiator_columns(ctx.flows.rows_where(started_to_app))
    pairs = pd.MultiIndex.from_arrays(
        [started["src_hi"], started["src_lo"], started["dst_hi"], started["dst_lo"]]
    )
    traffic = ctx.traffic
    host = rows["host_id"].to_numpy()
    peer = rows["peer_id"].to_numpy()
    mine = pd.MultiIndex.from_arrays(
        [traffic.address_hi[host], traffic.address_lo[host],
         traffic.address_hi[peer], traffic.address_lo[peer]]
    )  # fmt: skip
    return sent & mine.isin(pairs)  # type: ignore[no-any-return]


@DETECTION.watches
def app_packets(packets: PacketContext) -> set[tuple[int, int, str]]:
    """In a live sensor, at once: (internal host, app) for a name of an app asked
    for, opened over TLS or requested over HTTP by the host, or a packet the
    host sent to an app's published range (the analysis then checks that the
    host started the connection)."""
    policy = packets.policy
    apps = packets.remember(DETECTION.rule_id, lambda: [
        (app.app_id, NetworkSet(app.networks) if app.networks else None)
        for app in messaging_apps(policy)
    ])  # fmt: skip
    owners = packets.remember(f"{DETECTION.rule_id} domains", lambda: DomainOwners(
        [app.domains for app in messaging_apps(policy)]))  # fmt: skip
    sightings: set[tuple[int, int, str]] = set()
    facts = packets.facts
    if facts is not None and len(facts["kind"]):
        kind = facts["kind"]
        asking = np.isin(kind, ["dns", "tls-sni", "http"]) & ~(
            (kind == "dns") & (facts[DNS_IS_RESPONSE] == 1)
        )
        asking &= policy.internal.contains(facts["src_hi"], facts["src_lo"])
        names = [str(text).split(":")[0] for text in facts["text"][asking].tolist()]
        rows, which = np.nonzero(owners(names))
        s_hi, s_lo = facts["src_hi"][asking], facts["src_lo"][asking]
        sightings |= {(int(s_hi[r]), int(s_lo[r]), apps[k][0])
                      for r, k in zip(rows.tolist(), which.tolist(), strict=True)}  # fmt: skip
    b = packets.batch
    sent = np.flatnonzero(packets.internal.src)
    every_range = packets.remember(f"{DETECTION.rule_id} ranges", lambda: NetworkSet(
        [network for app in messaging_apps(policy) for network in app.networks]
    ))  # fmt: skip
    if len(sent):  # one look-up of every packet, then each app's of the few that hit
        sent = sent[every_range.contains(b.dst_hi[sent], b.dst_lo[sent])]
    for app_id, ranges in apps:
        if ranges is None or not len(sent):
            continue
        rows = sent[ranges.contains(b.dst_hi[sent], b.dst_lo[sent])]
        sightings |= {
            (h, lo, app_id)
            for h, lo in zip(b.src_hi[rows].tolist(), b.src_lo[rows].tolist(), strict=True)
        }
    return sightings
