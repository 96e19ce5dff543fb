"""What outside addresses are called in a scan: DNS answers, TLS server names and
HTTP Hosts name them, so alerts say ``203.0.113.140 (files.example.net)`` and
``allowlist.domains`` can sanction destinations by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..alerts.record import Alert
from ..flows.payload import ANSWER_HI, ANSWER_LO
from ..networks import address_pair

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Names:
    """What each address is called in this scan: (hi, lo) → names, most seen first."""

    by_address: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    def of(self, address: str | tuple[int, int]) -> list[str]:
        if isinstance(address, str):
            address = address_pair(address)
        return self.by_address.get(address, [])

    def matching(self, domains: Iterable[str]) -> list[tuple[int, int]]:
        """Addresses with a name equal to, or under, one of ``domains``."""
        under = domain_matcher(domains)
        return [address for address, names in self.by_address.items() if any(map(under, names))]


class DomainOwners:
    """Which of ``owners`` (each a list of domains) names are equal to or
    under: one walk up each name's labels for all the owners at once, as
    :func:`domain_matcher` walks for one. Built once, asked many times (a
    live sensor's look at every chunk of facts)."""

    def __init__(self, owners: Sequence[Iterable[str]]) -> None:
        self.count = len(owners)
        self._whose: dict[str, list[int]] = {}
        for k, domains in enumerate(owners):
            for domain in domains:
                self._whose.setdefault(domain, []).append(k)

    def __call__(self, names: Sequence[str]) -> np.ndarray:
        """A (names, owners) bool array."""
        out = np.zeros((len(names), self.count), dtype=bool)
        whose = self._whose
        if not whose:
            return out
        for i, name in enumerate(names):
            name = str(name)
            while True:
                found = whose.get(name)
                if found is not None:
                    out[i, found] = True
                dot = name.find(".")
                if dot < 0:
                    break
                name = name[dot + 1 :]
        return out


def domain_owners(names: Sequence[str], owners: Sequence[Iterable[str]]) -> np.ndarray:
    """:class:`DomainOwners` of ``owners``, asked once about ``names``."""
    return DomainOwners(owners)(names)


def domain_matcher(domains: Iterable[str]) -> Callable[[str], bool]:
    """A test of whether a name is one of ``domains`` or under one: a set look-up
    per label of the name, so a list of a million domains costs no more per
    name than a list of one."""
    wanted = frozenset(domains)

    def under(name: str) -> bool:
        if not wanted:
            return False
        while True:
            if name in wanted:
                return True
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1 :]

    return under


def names_from_facts(facts: pd.DataFrame) -> Names:
    """Names of addresses: DNS A/AAAA answers name the answer's address; TLS SNI
    and HTTP Host name the server the packet went to."""
    counts: dict[tuple[int, int], dict[str, int]] = {}
    if facts.empty:
        return Names()
    kind = facts["kind"].to_numpy()
    answers = facts[kind == "dns-answer"]
    for a_hi, a_lo, name in zip(
        answers[ANSWER_HI].to_numpy().astype(np.uint64),
        answers[ANSWER_LO].to_numpy().astype(np.uint64),
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


def name_alerts(alerts: list[Alert], names: Names) -> list[Alert]:
    """``alerts`` with each destination's name(s): ``destination.domain``, and
    '203.0.113.140 (files.example.net)' in the message (``Alert.message``)."""
    named = []
    for alert in alerts:
        found = names.of(alert.destination_ip) if alert.destination_ip else []
        if found:
            alert = replace(alert, destination_domain=found[0], destination_names=tuple(found[:10]))
            if len(found) > 1:
                alert = alert.with_evidence(destination_names=found[:10])
        named.append(alert)
    return named
