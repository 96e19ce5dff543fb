"""dns-tunnel: data hidden in DNS questions (iodine, dnscat, dns2tcp over plain DNS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...alerts.mask import mask_personal
from ...alerts.record import Alert
from ...flows.payload import DNS_IS_RESPONSE, DNS_QTYPE
from ...networks import address_text
from ..declare import COUNT, PAYLOAD, Detection, Rule, Setting
from .common import over_facts, when

if TYPE_CHECKING:
    import pandas as pd

    from ..context import ScanContext


_GENERIC_SECOND_LEVEL = ("com", "net", "org", "gov", "edu", "ac", "co", "or", "ne", "go")


DETECTION = Detection(
    rule_id="dns-tunnel",
    title="Data carried in DNS names (a DNS tunnel)",
    severity=3,
    catches="data carried in DNS names (encoded labels, many long unique names, TXT/NULL volume)",
    why_it_matters=(
        "Data hidden in DNS questions passes most firewalls unseen; ordinary programs "
        "do not ask for such names. This is a common way to smuggle data out."
    ),
    description="""\
Data hidden in DNS questions (iodine, dnscat, dns2tcp over plain DNS). Per host:

- a question whose name has a label of at least `min_label_length` (48)
  characters, or several bytes no host name has (8-bit encodings): one such
  question is already a finding;
- at least `min_unique_subdomains` (100) unique names under one domain whose
  distinct part is `min_mean_subdomain_length` (20) characters long on average;
- at least `min_txt_null_queries` (50) TXT or NULL questions under one domain.

Reverse look-ups (`in-addr.arpa`, `ip6.arpa`) are left out. One alert per host,
naming the domains, the questions and an example (non-ASCII bytes escaped).
Known misses: DNS over HTTPS or TLS (encrypted), tunnels slower than the
thresholds within one scan.""",
    settings=(
        Setting(
            "min_label_length",
            COUNT,
            48,
            "One label this long in a question is encoded data (host names rarely exceed 30).",
        ),
        Setting(
            "min_unique_subdomains", COUNT, 100, "Unique names under one domain from one host …"
        ),
        Setting("min_mean_subdomain_length", COUNT, 20, "… when they are this long on average."),
        Setting(
            "min_txt_null_queries",
            COUNT,
            50,
            "TXT and NULL questions under one domain from one host.",
        ),
    ),  # fmt: skip
)


def _base_domain(labels: list[str]) -> int:
    """How many trailing labels make the registered domain: 2, or 3 under a
    two-letter country code with a generic second level (example.com.tw)."""
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _GENERIC_SECOND_LEVEL:
        return 3
    return 2


_HOSTNAME_BYTES = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@DETECTION.checks(over=PAYLOAD)
@over_facts("dns")
def check_dns_tunnel(ctx: ScanContext, rule: Rule, queries: pd.DataFrame) -> list[Alert]:
    """DNS questions that carry data: one name with an encoded label, or many
    long unique names (or TXT/NULL questions) under one domain."""
    queries = queries[queries[DNS_IS_RESPONSE].to_numpy() == 0]
    policy = ctx.policy
    src_in = policy.internal.contains(queries["src_hi"].to_numpy(), queries["src_lo"].to_numpy())
    queries = queries[src_in]
    groups: dict[tuple[int, int, str], dict[str, Any]] = {}
    for s_hi, s_lo, ts_ns, qtype, text in zip(
        queries["src_hi"].to_numpy(), queries["src_lo"].to_numpy(), queries["ts_ns"].to_numpy(),
        queries[DNS_QTYPE].to_numpy(), queries["text"].to_numpy(), strict=True,
    ):  # fmt: skip
        name = str(text)
        ts = int(ts_ns)
        if name.endswith((".in-addr.arpa", ".ip6.arpa")):
            continue  # reverse look-ups: long, but the name is an address
        labels = name.split(".")
        keep = _base_domain(labels)
        base = ".".join(labels[-keep:])
        sub = ".".join(labels[:-keep])
        # subs: a dict, not a set, so the names keep the order they were
        # asked in: the alert's example is then the same on every run (a
        # set's order follows str hashes, which differ from run to run).
        g = groups.setdefault((int(s_hi), int(s_lo), base), {
            "subs": {}, "txt_null": 0, "queries": 0, "encoded": [], "first": ts,
            "last": ts, "bytes": 0})  # fmt: skip
        g["queries"] += 1
        g["bytes"] += len(name)
        g["subs"].setdefault(sub, None)
        g["first"] = min(g["first"], ts)
        g["last"] = max(g["last"], ts)
        if int(qtype) in (16, 10):  # TXT, NULL
            g["txt_null"] += 1
        longest = max((len(label) for label in labels[:-keep]), default=0)
        # 8-bit labels (iodine's base128): several bytes no host name has.
        binary = sum(c not in _HOSTNAME_BYTES for c in name) >= 4
        if longest >= int(rule["min_label_length"]) or binary:
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
        if (len(subs) >= int(rule["min_unique_subdomains"])
                and mean >= int(rule["min_mean_subdomain_length"])):  # fmt: skip
            reasons.append(f"{len(subs):,} unique subdomains of {mean:.0f} characters on average")
        if g["txt_null"] >= int(rule["min_txt_null_queries"]):
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
        # The first asked of the longest names (sorted is stable).
        example = (g["encoded"] or sorted(g["subs"], key=len, reverse=True) or [base])[0]
        # Masked before it is cut: a cut can leave 9 of an ID number's 10
        # characters, which the alert could no longer tell from other text.
        shown = mask_personal(example.encode("ascii", "backslashreplace").decode())[:80]
        where = (
            f"under {base}" if len(found) == 1 else f"under {len(found):,} domains (most: {base})"
        )
        alerts.append(
            rule.alert(
                first,
                last,
                host,
                source_packets=total,
                text=(
                    f"{host} asked {total:,} DNS questions {where}: "
                    + "; ".join(reasons)
                    + f" (e.g. {shown}) {when(first, last, policy)}"
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
