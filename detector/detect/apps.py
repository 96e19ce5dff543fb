"""Application-aware rules over payload facts (detector/flows/payload.py).

* names: DNS answers, TLS server names and HTTP Hosts tell what each outside
  address is called, so alerts say ``203.0.113.140 (files.example.net)``, and
  ``allowlist.domains`` can sanction destinations by name;
* ``p2p``: a P2P client on an internal host (bulletin No. 3 bans P2P software);
* ``cleartext-pii``: Taiwan ID numbers sent out unencrypted (bulletin No. 4),
  shown only masked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._kernels import payload as pk
from ..alerts.record import Alert
from ..capture.batch import address_text
from ..flows.records import TRANSPORT_NAMES
from .rules import _when

if TYPE_CHECKING:
    import pandas as pd

    from ..policy import Policy

APP_RULES = {
    "p2p": "P2P client on an internal host",
    "cleartext-pii": "Personal ID numbers sent in the clear",
}
MAX_NAMES = 3  # names shown per address


@dataclass
class Names:
    """What each address is called in this scan: (hi, lo) → names, most seen first."""

    by_address: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    def of(self, address: str | tuple[int, int]) -> list[str]:
        if isinstance(address, str):
            address = _pair(address)
        return self.by_address.get(address, [])

    def matching(self, domains: Iterable[str]) -> list[tuple[int, int]]:
        """Addresses with a name equal to, or under, one of ``domains``."""
        wanted = tuple(domains)
        if not wanted:
            return []
        return [
            address
            for address, names in self.by_address.items()
            if any(_under(name, domain) for name in names for domain in wanted)
        ]


def _under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def _pair(address: str) -> tuple[int, int]:
    import ipaddress

    ip = ipaddress.ip_address(address)
    value = int(ip) if ip.version == 6 else (0xFFFF << 32) | int(ip)
    return value >> 64, value & ((1 << 64) - 1)


def names_from_facts(facts: pd.DataFrame) -> Names:
    """Names of addresses: DNS A/AAAA answers name the answer's address; TLS SNI
    and HTTP Host name the server the packet went to."""
    counts: dict[tuple[int, int], dict[str, int]] = {}
    if facts.empty:
        return Names()
    kind = facts["kind"].to_numpy()
    answers = facts[kind == "dns-answer"]
    for a_hi, a_lo, name in zip(
        answers["b"].to_numpy().astype(np.uint64),
        answers["c"].to_numpy().astype(np.uint64),
        answers["text"],
        strict=True,
    ):
        key = (int(a_hi), int(a_lo))
        counts.setdefault(key, {}).setdefault(name, 0)
        counts[key][name] += 1
    named = facts[((kind == "tls-sni") | (kind == "http")) & (facts["text"].str.len() > 0)]
    for d_hi, d_lo, name in zip(named["dst_hi"], named["dst_lo"], named["text"], strict=True):
        host = str(name).split(":")[0]  # an HTTP Host may carry a port
        key = (int(d_hi), int(d_lo))
        counts.setdefault(key, {}).setdefault(host, 0)
        counts[key][host] += 1
    return Names(
        {
            key: [n for n, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
            for key, c in counts.items()
        }
    )


def _internal_side(facts: pd.DataFrame, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
    src_in = policy.internal.contains(facts["src_hi"].to_numpy(), facts["src_lo"].to_numpy())
    dst_in = policy.internal.contains(facts["dst_hi"].to_numpy(), facts["dst_lo"].to_numpy())
    return src_in, dst_in


def check_p2p(facts: pd.DataFrame, policy: Policy) -> list[Alert]:
    settings = policy.rule("p2p")
    p2p = facts[facts["kind"].to_numpy() == "p2p"]
    if p2p.empty:
        return []
    src_in, dst_in = _internal_side(p2p, policy)
    alerts: list[Alert] = []
    # The host is the internal end; a packet between two internal hosts counts for both.
    sides = []
    for mask, h, p in ((src_in, "src", "dst"), (dst_in & ~src_in, "dst", "src")):
        part = p2p[mask]
        sides.append(
            part.assign(
                host_hi=part[f"{h}_hi"], host_lo=part[f"{h}_lo"],
                peer_hi=part[f"{p}_hi"], peer_lo=part[f"{p}_lo"],
                peer_port=part["dport" if h == "src" else "sport"],
            )
        )  # fmt: skip
    import pandas as pd

    oriented = pd.concat(sides, ignore_index=True)
    for (h_hi, h_lo), rows in oriented.groupby(["host_hi", "host_lo"], sort=True):
        host = address_text(int(h_hi), int(h_lo))  # type: ignore[call-overload]
        peers = rows.groupby(["peer_hi", "peer_lo"]).size().sort_values(ascending=False)
        signatures = sorted({pk.P2P_NAMES[int(s)] for s in rows["a"]})
        top_hi, top_lo = peers.index[0]
        top = address_text(int(top_hi), int(top_lo))
        start, end = int(rows["ts_ns"].min()), int(rows["ts_ns"].max())
        alert = Alert(
            rule_id="p2p",
            rule_name=APP_RULES["p2p"],
            severity=settings.severity,
            start_ns=start,
            end_ns=end,
            source_ip=host,
            source_packets=len(rows),
            destination_ip=top,
            transport=TRANSPORT_NAMES.get(int(rows["proto"].iloc[0]), None),
            direction="egress" if policy.is_external(np.array([top_hi], np.uint64),
                                                     np.array([top_lo], np.uint64))[0]
            else "internal",
            message=(
                f"{host} runs a P2P client: {', '.join(signatures)} seen with {len(peers):,} "
                f"peer(s) {_when(start, end, policy)}; P2P software is banned on "
                "official computers"
            ),
            evidence={"signatures": signatures, "peers": len(peers),
                      "packets_matched": len(rows)},
        )  # fmt: skip
        alerts.append(alert)
    return alerts


def check_cleartext_pii(facts: pd.DataFrame, policy: Policy, names: Names) -> list[Alert]:
    settings = policy.rule("cleartext-pii")
    pii = facts[facts["kind"].to_numpy() == "pii"]
    if pii.empty:
        return []
    src_in, _ = _internal_side(pii, policy)
    outbound = policy.is_external(pii["dst_hi"].to_numpy(), pii["dst_lo"].to_numpy())
    sent = pii[src_in & outbound]
    alerts: list[Alert] = []
    keys = ["src_hi", "src_lo", "dst_hi", "dst_lo"]
    for (s_hi, s_lo, d_hi, d_lo), rows in sent.groupby(keys, sort=True):
        distinct = rows.drop_duplicates("secret")
        if len(distinct) < int(settings["min_count"]):
            continue
        host = address_text(int(s_hi), int(s_lo))  # type: ignore[call-overload]
        peer = address_text(int(d_hi), int(d_lo))  # type: ignore[call-overload]
        port = int(rows["dport"].value_counts().index[0])
        start, end = int(rows["ts_ns"].min()), int(rows["ts_ns"].max())
        masked = list(distinct["text"].head(5))
        kinds = {int(k) for k in distinct["a"]}
        what = " and ".join(
            label for k, label in ((1, "national ID"), (2, "resident certificate")) if k in kinds
        )
        alerts.append(
            Alert(
                rule_id="cleartext-pii",
                rule_name=APP_RULES["cleartext-pii"],
                severity=settings.severity,
                start_ns=start,
                end_ns=end,
                source_ip=host,
                source_packets=len(rows),
                destination_ip=peer,
                destination_port=port,
                transport="tcp",
                direction="egress",
                message=(
                    f"{host} sent {len(distinct)} {what} number(s) unencrypted to "
                    f"{peer}:{port} {_when(start, end, policy)}: {', '.join(masked)}"
                    + (" …" if len(distinct) > len(masked) else "")
                    + "; personal data must not leave in the clear"
                ),
                evidence={"pii_count": len(distinct), "pii_masked": masked},
            )
        )
    return alerts


def name_alerts(alerts: list[Alert], names: Names) -> None:
    """Give each alert's destination its name(s): ``destination.domain`` and
    '203.0.113.140 (files.example.net)' in the message."""
    for alert in alerts:
        if not alert.destination_ip:
            continue
        found = names.of(alert.destination_ip)
        if not found:
            continue
        alert.destination_domain = found[0]
        label = ", ".join(found[:MAX_NAMES]) + (" …" if len(found) > MAX_NAMES else "")
        ip = alert.destination_ip
        with_port = f"{ip}:{alert.destination_port}" if alert.destination_port else None
        if with_port and with_port in alert.message:
            alert.message = alert.message.replace(with_port, f"{with_port} ({label})", 1)
        elif ip in alert.message:
            alert.message = alert.message.replace(ip, f"{ip} ({label})", 1)
        if len(found) > 1:
            alert.evidence.setdefault("destination_names", found[:10])


def run_app_rules(facts: pd.DataFrame, policy: Policy, names: Names) -> list[Alert]:
    alerts: list[Alert] = []
    if facts.empty:
        return alerts
    if policy.rule("p2p").enabled:
        alerts.extend(check_p2p(facts, policy))
    if policy.rule("cleartext-pii").enabled:
        alerts.extend(check_cleartext_pii(facts, policy, names))
    return alerts
