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
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import payload as pk
from ..alerts.record import Alert
from ..capture.batch import address_text
from ..features.hosts import HostTraffic
from ..flows.records import TRANSPORT_NAMES
from .rules import _ids, _when

if TYPE_CHECKING:
    import pandas as pd

    from ..policy import Policy

APP_RULES = {
    "p2p": "P2P client on an internal host",
    "cleartext-pii": "Personal ID numbers sent in the clear",
    "im-app": "Messaging app on an internal host",
    "dns-tunnel": "Data carried in DNS names (a DNS tunnel)",
    "beacon": "Periodic connections to one outside address (a beacon)",
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


@dataclass(frozen=True)
class App:
    app_id: str
    name: str
    domains: tuple[str, ...]
    networks: tuple[str, ...]


def messaging_apps(policy: Policy) -> list[App]:
    """The shipped list (detector/data/im_apps.toml) with the policy's
    additions and omissions (``[rules.im-app]``)."""
    import tomllib
    from importlib import resources

    with resources.files("detector").joinpath("data/im_apps.toml").open("rb") as stream:
        shipped = tomllib.load(stream)
    settings = policy.rule("im-app")
    apps = [
        App(app_id, entry["name"], tuple(entry["domains"]), tuple(entry["networks"]))
        for app_id, entry in sorted(shipped.items())
        if app_id not in settings["ignore"]
    ]
    if settings["domains"] or settings["networks"]:
        apps.append(App("site", "site-listed messaging service", tuple(settings["domains"]),
                        tuple(settings["networks"])))  # fmt: skip
    return apps


def check_im_app(facts: pd.DataFrame, traffic: HostTraffic | None, policy: Policy) -> list[Alert]:
    """A host that looked up, or connected by name or address to, a messaging app."""
    import pandas as pd

    from ..policy import NetworkSet

    settings = policy.rule("im-app")
    hits = []  # (host hi, host lo, app id, ts, evidence)
    named = facts[facts["kind"].isin(["dns", "tls-sni", "http"]).to_numpy()]
    if not named.empty:
        # The asking host is the packet's source: DNS questions (not answers), ClientHellos
        # and requests all go from the client.
        named = named[~((named["kind"] == "dns") & (named["c"] == 1)).to_numpy()]
        src_in = policy.internal.contains(named["src_hi"].to_numpy(), named["src_lo"].to_numpy())
        named = named[src_in]
    apps = messaging_apps(policy)
    for app in apps:
        if not named.empty and app.domains:
            asked = named["text"].str.split(":").str[0]
            match = np.zeros(len(named), dtype=bool)
            for domain in app.domains:
                match |= ((asked == domain) | asked.str.endswith("." + domain)).to_numpy()
            found = named[match]
            for s_hi, s_lo, ts, text in zip(found["src_hi"].to_numpy(), found["src_lo"].to_numpy(),
                                            found["ts_ns"].to_numpy(), found["text"].to_numpy(),
                                            strict=True):  # fmt: skip
                hits.append((int(s_hi), int(s_lo), app.app_id, int(ts), str(text)))
        if traffic is not None and app.networks and not traffic.frame.empty:
            frame = traffic.frame
            peers = np.unique(frame["peer_id"].to_numpy())
            inside = NetworkSet(app.networks).contains(
                traffic.address_hi[peers], traffic.address_lo[peers]
            )
            wanted = peers[inside]
            rows = frame[np.isin(frame["peer_id"].to_numpy(), wanted)]
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
            Alert(
                rule_id="im-app",
                rule_name=APP_RULES["im-app"],
                severity=settings.severity,
                start_ns=start,
                end_ns=end,
                source_ip=host,
                message=(
                    f"{host} uses {names[str(app_id)]} ({', '.join(seen[:3])}"
                    + (" …" if len(seen) > 3 else "")
                    + f") {_when(start, end, policy)}; messaging apps are outside the "
                    "agency's control and not for official business"
                ),
                evidence={"app": str(app_id), "app_name": names[str(app_id)], "seen": seen[:10]},
            )
        )
    return alerts


_GENERIC_SECOND_LEVEL = ("com", "net", "org", "gov", "edu", "ac", "co", "or", "ne", "go")


def _base_domain(labels: list[str]) -> int:
    """How many trailing labels make the registered domain: 2, or 3 under a
    two-letter country code with a generic second level (example.com.tw)."""
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _GENERIC_SECOND_LEVEL:
        return 3
    return 2


_HOSTNAME_BYTES = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def check_dns_tunnel(facts: pd.DataFrame, policy: Policy) -> list[Alert]:
    """DNS questions that carry data: one name with an encoded label, or many
    long unique names (or TXT/NULL questions) under one domain."""
    settings = policy.rule("dns-tunnel")
    queries = facts[((facts["kind"] == "dns") & (facts["c"] == 0)).to_numpy()]
    if queries.empty:
        return []
    src_in = policy.internal.contains(queries["src_hi"].to_numpy(), queries["src_lo"].to_numpy())
    queries = queries[src_in]
    groups: dict[tuple[int, int, str], dict[str, Any]] = {}
    for s_hi, s_lo, ts_ns, qtype, text in zip(
        queries["src_hi"].to_numpy(), queries["src_lo"].to_numpy(), queries["ts_ns"].to_numpy(),
        queries["a"].to_numpy(), queries["text"].to_numpy(), strict=True,
    ):  # fmt: skip
        name = str(text)
        ts = int(ts_ns)
        if name.endswith((".in-addr.arpa", ".ip6.arpa")):
            continue  # reverse look-ups: long, but the name is an address
        labels = name.split(".")
        keep = _base_domain(labels)
        base = ".".join(labels[-keep:])
        sub = ".".join(labels[:-keep])
        g = groups.setdefault((int(s_hi), int(s_lo), base), {
            "subs": set(), "txt_null": 0, "queries": 0, "encoded": [], "first": ts,
            "last": ts, "bytes": 0})  # fmt: skip
        g["queries"] += 1
        g["bytes"] += len(name)
        g["subs"].add(sub)
        g["first"] = min(g["first"], ts)
        g["last"] = max(g["last"], ts)
        if int(qtype) in (16, 10):  # TXT, NULL
            g["txt_null"] += 1
        longest = max((len(label) for label in labels[:-keep]), default=0)
        # 8-bit labels (iodine's base128): several bytes no host name has.
        binary = sum(c not in _HOSTNAME_BYTES for c in name) >= 4
        if longest >= int(settings["min_label_length"]) or binary:
            g["encoded"].append(name)
    # One alert per host: a tunnel tool without a domain of its own (dnscat
    # straight to a resolver) makes every name look like a new domain.
    per_host: dict[tuple[int, int], list[tuple[str, dict[str, Any], list[str]]]] = {}
    for (h_hi, h_lo, base), g in sorted(groups.items()):
        subs = [s for s in g["subs"] if s]
        mean = sum(len(s) for s in subs) / len(subs) if subs else 0.0
        reasons = []
        if g["encoded"]:
            reasons.append(f"{len(g['encoded'])} name(s) carrying encoded data")
        if (len(subs) >= int(settings["min_unique_subdomains"])
                and mean >= int(settings["min_mean_subdomain_length"])):  # fmt: skip
            reasons.append(f"{len(subs):,} unique subdomains of {mean:.0f} characters on average")
        if g["txt_null"] >= int(settings["min_txt_null_queries"]):
            reasons.append(f"{g['txt_null']:,} TXT/NULL questions")
        if reasons:
            g["unique"] = len(subs)
            per_host.setdefault((h_hi, h_lo), []).append((base, g, reasons))
    alerts: list[Alert] = []
    for (h_hi, h_lo), found in per_host.items():
        host = address_text(h_hi, h_lo)
        found.sort(key=lambda item: -item[1]["queries"])
        base, g, reasons = found[0]
        first = min(int(item[1]["first"]) for item in found)
        last = max(int(item[1]["last"]) for item in found)
        total = sum(int(item[1]["queries"]) for item in found)
        example = (g["encoded"] or sorted(g["subs"], key=len, reverse=True) or [base])[0]
        shown = example.encode("ascii", "backslashreplace").decode()[:80]
        where = (
            f"under {base}" if len(found) == 1 else f"under {len(found):,} domains (most: {base})"
        )
        alerts.append(
            Alert(
                rule_id="dns-tunnel",
                rule_name=APP_RULES["dns-tunnel"],
                severity=settings.severity,
                start_ns=first,
                end_ns=last,
                source_ip=host,
                source_packets=total,
                message=(
                    f"{host} asked {total:,} DNS questions {where}: "
                    + "; ".join(reasons)
                    + f" (e.g. {shown}) {_when(first, last, policy)}"
                ),
                evidence={
                    "domains": [item[0] for item in found[:10]],
                    "domain_count": len(found),
                    "queries": total,
                    "unique_subdomains": int(g["unique"]),
                    "name_bytes": sum(int(item[1]["bytes"]) for item in found),
                    "txt_null_queries": sum(int(item[1]["txt_null"]) for item in found),
                },
            )  # fmt: skip
        )
    return alerts


def _bowley_score(values: np.ndarray) -> float:
    """1 for a symmetric distribution, 0 for a fully skewed one (RITA's skew score)."""
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    if q3 - q1 <= 0:
        return 1.0
    return float(1.0 - abs((q3 + q1 - 2 * q2) / (q3 - q1)))


def _madm(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))))


def beacon_score(starts_ns: np.ndarray, sizes: np.ndarray) -> tuple[float, float, float]:
    """(score 0–1, median interval s, interval MADM s) for connection start
    times and bytes sent, after RITA: the mean of the interval and size
    regularity scores (skew and median absolute deviation)."""
    intervals = np.diff(np.sort(starts_ns)) / 1e9
    if len(intervals) < 2:
        return 0.0, 0.0, 0.0
    median = float(np.median(intervals))
    madm = _madm(intervals)
    ts_skew = _bowley_score(intervals)
    # Jitter judged against the period: ±10% of a 60 s period is still a beacon.
    ts_madm = max(0.0, 1.0 - madm / max(median * 0.5, 1e-9)) if median > 0 else 0.0
    size_skew = _bowley_score(sizes.astype(np.float64))
    size_median = float(np.median(sizes))
    size_madm = max(0.0, 1.0 - _madm(sizes.astype(np.float64)) / max(size_median * 0.5, 1.0))
    score = (ts_skew + ts_madm + size_skew + size_madm) / 4
    return score, median, madm


def check_beacon(flows: Any, policy: Policy) -> list[Alert]:
    """Regular connections from an internal host to one outside address over hours."""
    import pandas as pd

    from .._kernels import flowtable as fk
    from ..flows.write import human_bytes

    settings = policy.rule("beacon")
    rows = flows.exported_rows()
    if len(rows) == 0:
        return []
    u = rows.view(np.uint64)
    init_a = rows[:, fk.C_INIT_IS_A] == 1
    src_hi = np.where(init_a, u[:, fk.C_A_HI], u[:, fk.C_B_HI])
    src_lo = np.where(init_a, u[:, fk.C_A_LO], u[:, fk.C_B_LO])
    dst_hi = np.where(init_a, u[:, fk.C_B_HI], u[:, fk.C_A_HI])
    dst_lo = np.where(init_a, u[:, fk.C_B_LO], u[:, fk.C_A_LO])
    a_bytes = rows[:, fk.C_DIR + fk.D_BYTES]
    b_bytes = rows[:, fk.C_DIR + fk.DIR_WIDTH + fk.D_BYTES]
    sent = np.where(init_a, a_bytes, b_bytes)
    meta = u[:, fk.C_META]
    a_port = (meta >> np.uint64(48)) & np.uint64(0xFFFF)
    b_port = (meta >> np.uint64(32)) & np.uint64(0xFFFF)
    dst_port = np.where(init_a, b_port, a_port).astype(np.int64)
    ignored = np.array(sorted(settings["ignore_ports"]), dtype=np.int64)
    keep = (policy.internal.contains(src_hi, src_lo) & policy.is_external(dst_hi, dst_lo)
            & ~policy.allowlist_destinations.contains(dst_hi, dst_lo)
            & ~np.isin(dst_port, ignored))  # fmt: skip
    table = pd.DataFrame({"src_hi": src_hi[keep], "src_lo": src_lo[keep], "dst_hi": dst_hi[keep],
                          "dst_lo": dst_lo[keep], "start": rows[keep, fk.C_FIRST],
                          "sent": sent[keep]})  # fmt: skip
    if table.empty:
        return []
    keys = ["src_hi", "src_lo", "dst_hi", "dst_lo"]
    counts = table.groupby(keys, sort=False)["start"].transform("size").to_numpy()
    table = table[counts >= int(settings["min_connections"])]
    alerts: list[Alert] = []
    min_span = float(settings["min_hours"]) * 3600e9
    for key, group in table.groupby(keys, sort=True):
        s_hi, s_lo, d_hi, d_lo = _ids(key)
        starts = np.sort(group["start"].to_numpy())
        if starts[-1] - starts[0] < min_span:
            continue
        score, period, jitter = beacon_score(starts, group["sent"].to_numpy())
        if score * 100 < float(settings["min_score"]):
            continue
        host = address_text(s_hi, s_lo)
        peer = address_text(d_hi, d_lo)
        size = float(np.median(group["sent"].to_numpy()))
        first, last = int(starts[0]), int(starts[-1])
        alerts.append(
            Alert(
                rule_id="beacon",
                rule_name=APP_RULES["beacon"],
                severity=settings.severity,
                start_ns=first,
                end_ns=last,
                source_ip=host,
                source_bytes=int(group["sent"].sum()),
                destination_ip=peer,
                direction="egress",
                message=(
                    f"{host} connects to {peer} every {_seconds(period)} ± {_seconds(jitter)}, "
                    f"{len(starts):,} times, {human_bytes(size)} each "
                    f"{_when(first, last, policy)} (beacon score {score:.2f})"
                ),
                evidence={
                    "beacon_score": round(score, 3),
                    "period_seconds": round(period, 3),
                    "jitter_seconds": round(jitter, 3),
                    "connections": len(starts),
                },
            )  # fmt: skip
        )
    return alerts


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.0f} min"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def annotate_mail_sizes(alerts: list[Alert], facts: pd.DataFrame) -> None:
    """``mail-egress`` alerts gain the message sizes the mail client declared
    (ESMTP SIZE, RFC 1870: the whole message, attachments included)."""
    sizes = facts[(facts["kind"] == "smtp-size").to_numpy()] if not facts.empty else facts
    if sizes.empty:
        return
    src = [address_text(int(h), int(lo)) for h, lo in zip(sizes["src_hi"], sizes["src_lo"],
                                                          strict=True)]  # fmt: skip
    dst = [address_text(int(h), int(lo)) for h, lo in zip(sizes["dst_hi"], sizes["dst_lo"],
                                                          strict=True)]  # fmt: skip
    table = sizes.assign(src=src, dst=dst)
    from ..flows.write import human_bytes

    for alert in alerts:
        if alert.rule_id != "mail-egress":
            continue
        ts = table["ts_ns"].to_numpy()
        mine = table[
            (table["src"] == alert.source_ip).to_numpy()
            & (table["dst"] == alert.destination_ip).to_numpy()
            & (ts >= alert.start_ns - 60_000_000_000)
            & (ts <= alert.end_ns)
        ]
        if mine.empty:
            continue
        declared = [int(v) for v in mine["a"]]
        alert.evidence["declared_message_bytes"] = declared
        alert.message += (
            f"; {len(declared)} message(s) declared at {human_bytes(sum(declared))} "
            "(attachments included)"
        )


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


def run_app_rules(
    facts: pd.DataFrame,
    policy: Policy,
    names: Names,
    traffic: HostTraffic | None = None,
    flows: Any = None,
) -> list[Alert]:
    alerts: list[Alert] = []
    if flows is not None and policy.rule("beacon").enabled:
        alerts.extend(check_beacon(flows, policy))
    if policy.rule("im-app").enabled:
        alerts.extend(check_im_app(facts, traffic, policy))
    if facts.empty:
        return alerts
    if policy.rule("p2p").enabled:
        alerts.extend(check_p2p(facts, policy))
    if policy.rule("cleartext-pii").enabled:
        alerts.extend(check_cleartext_pii(facts, policy, names))
    if policy.rule("dns-tunnel").enabled:
        alerts.extend(check_dns_tunnel(facts, policy))
    return alerts
