"""The site policy: the sample file, every validation message, network membership
against ``ipaddress``, business hours and UTC offsets in the site's zone (hand-worked
instants, DST change days), the fingerprint and the no-policy default."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector.errors import PolicyError
from detector.policy import (
    DEFAULT_INTERNAL,
    LOCAL_SCOPE,
    RULE_DEFAULTS,
    RULE_IDS,
    SEVERITY_NAMES,
    NetworkSet,
    default_policy,
    load_policy,
    machine_timezone,
    parse_policy,
)

SAMPLE = Path(__file__).resolve().parent.parent / "captures" / "sample-policy.toml"
HOUR_NS = 3600 * 10**9
MINUTE_NS = 60 * 10**9


def pair(address: str) -> tuple[int, int]:
    """An address as the project's (hi, lo): IPv4 as IPv4-mapped IPv6."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return 0, 0x0000_FFFF_0000_0000 | int(ip)
    return int(ip) >> 64, int(ip) & (2**64 - 1)


def arrays(addresses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [pair(a) for a in addresses]
    return (
        np.array([p[0] for p in pairs], dtype=np.uint64),
        np.array([p[1] for p in pairs], dtype=np.uint64),
    )


def utc_ns(*stamps: str) -> np.ndarray:
    """UTC instants written as ISO text (no zone), as int64 nanoseconds."""
    return np.array([np.datetime64(s, "ns") for s in stamps]).view(np.int64)


@pytest.fixture(scope="module")
def sample():
    return load_policy(SAMPLE)


# --- the sample file ---------------------------------------------------------


def test_sample_policy_round_trip(sample):
    assert sample.source == str(SAMPLE)
    assert sample.warnings == ()
    assert sample.site_name == "taipei-mission"
    assert sample.timezone == "Asia/Taipei"
    assert sample.zone == zoneinfo.ZoneInfo("Asia/Taipei")
    assert sample.business_days == frozenset({0, 1, 2, 3, 4})
    assert (sample.business_start, sample.business_end) == (8 * 60 + 30, 17 * 60 + 30)
    assert sorted(sample.holidays) == [
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 16),
        dt.date(2026, 2, 17),
        dt.date(2026, 2, 18),
        dt.date(2026, 2, 19),
        dt.date(2026, 2, 20),
    ]
    assert str(sample.internal) == "10.8.0.0/16"
    assert str(sample.isolated) == "10.8.40.0/24"
    assert str(sample.isolated_peers) == "10.8.40.5/32"
    assert str(sample.allowlist_destinations) == "198.51.100.25/32"
    assert sample.window_minutes == 10
    assert sample.model_percentile == 99.5
    # The file spells out every default threshold, and exempts its servers.
    for rule_id in RULE_IDS:
        settings = sample.rule(rule_id)
        assert settings.rule_id == rule_id
        assert settings.enabled is True
        assert settings.severity == RULE_DEFAULTS[rule_id]["severity"]
        expected = {
            k: v for k, v in RULE_DEFAULTS[rule_id].items() if k not in ("enabled", "severity")
        }
        if rule_id == "always-on":
            expected["exempt"] = ("10.8.0.1/32", "10.8.40.5/32")
        assert dict(settings.params) == expected
    assert sample.rule("mail-egress")["ports"] == (25, 465, 587)
    assert sample.rule("always-on")["night_end"] == "06:00"
    # Spelled-out defaults and no file at all give the same effective rules.
    rules = parse_policy('[site]\ntimezone = "UTC"').settings()["rules"]
    rules["always-on"]["exempt"] = ["10.8.0.1/32", "10.8.40.5/32"]
    assert sample.settings()["rules"] == rules


def test_sample_describe(sample):
    text = sample.describe()
    assert text.splitlines()[0] == f"site taipei-mission, time zone Asia/Taipei; policy {SAMPLE}"
    assert "business hours: Mon–Fri 08:30–17:30 local; 6 holidays (2026-01-01 … 2026-02-20)" in text
    assert "isolated: 10.8.40.0/24 (may reach 10.8.40.5/32)" in text
    assert "allowlisted destinations: 198.51.100.25/32" in text
    assert "isolated-egress (critical)" in text


def test_sample_addresses(sample):
    hi, lo = arrays(
        ["10.8.40.31", "10.8.40.5", "10.8.10.44", "203.0.113.140", "198.51.100.25", "224.0.0.251"]
    )
    assert sample.isolated.contains(hi, lo).tolist() == [True, True, False, False, False, False]
    assert sample.isolated_peers.contains(hi, lo).tolist() == [
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    assert sample.is_external(hi, lo).tolist() == [False, False, False, True, True, False]
    assert sample.allowlist_destinations.contains_text("198.51.100.25")


def test_empty_file_is_all_defaults(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Paris")
    policy = parse_policy("# nothing set\n", "empty.toml")
    assert policy.site_name == "site"
    assert policy.timezone == "Europe/Paris"
    assert policy.internal == DEFAULT_INTERNAL
    assert not policy.isolated and not policy.isolated_peers and not policy.allowlist_destinations
    assert policy.business_days == frozenset(range(5))
    assert (policy.business_start, policy.business_end) == (480, 1080)
    assert policy.window_minutes == 10 and policy.model_percentile == 99.5
    assert policy.warnings == (
        "empty.toml: site.timezone is not set: using this machine's time zone Europe/Paris "
        "for business hours",
    )


def test_rule_overrides_and_severity_forms():
    policy = parse_policy(
        """
        [site]
        timezone = "UTC"
        [rules.offhours-bulk-egress]
        min_bytes = 0
        span_minutes = 30
        severity = "CRITICAL"
        [rules.isolated-egress]
        internal_severity = 2
        enabled = false
        [rules.always-on]
        night_start = 22:00:00
        night_end = "24:00"
        [rules.mail-egress]
        ports = [587, 25]
        """
    )
    offhours = policy.rule("offhours-bulk-egress")
    assert (offhours.severity, offhours["min_bytes"], offhours["span_minutes"]) == (4, 0, 30)
    isolated = policy.rule("isolated-egress")
    assert (isolated.enabled, isolated.severity, isolated["internal_severity"]) == (False, 4, 2)
    assert isolated["ignore_local_scope"] is True
    assert policy.rule("always-on")["night_start"] == "22:00"
    assert policy.rule("always-on")["night_end"] == "24:00"
    assert policy.rule("mail-egress")["ports"] == (25, 587)
    assert "disabled: isolated-egress" in policy.describe()
    with pytest.raises(KeyError, match="unknown rule 'dns-tunnels'"):
        policy.rule("dns-tunnels")


def test_constants():
    assert RULE_IDS == (
        "always-on",
        "arp-outside-segment",
        "beacon",
        "bulk-upload-new-destination",
        "cleartext-pii",
        "dns-tunnel",
        "im-app",
        "isolated-egress",
        "long-connection",
        "low-and-slow-egress",
        "mail-egress",
        "new-device-isolated",
        "offhours-bulk-egress",
        "p2p",
        "pivot-chain",
        "quiet-protocol-volume",
        "rogue-dhcp-server",
        "rogue-router",
        "spread-egress",
    )
    assert SEVERITY_NAMES == {1: "low", 2: "medium", 3: "high", 4: "critical"}
    assert all(list(RULE_DEFAULTS[r])[:2] == ["enabled", "severity"] for r in RULE_IDS)


def test_policy_is_immutable(sample):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.window_minutes = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        sample.rules["always-on"] = None  # type: ignore[index]


# --- validation: one line naming file, key path, problem and what is allowed -----

BAD = [
    (
        '[networks]\nisolated = ["10.8.40.0/24", "10.8.40.0/33"]',
        "policy.toml: networks.isolated[1]: '10.8.40.0/33' is not a network (use CIDR like 10.8.40.0/24)",
    ),
    (
        "[rules.offhours-bulk-egress]\nmin_byte = 5",
        "policy.toml: rules.offhours-bulk-egress: unknown key 'min_byte' "
        "(allowed: enabled, severity, min_bytes, span_minutes, two_way_percent, shared_by_hosts)",
    ),
    (
        '[site]\ntimezone = "Asia/Taipe"',
        "policy.toml: site.timezone: unknown time zone 'Asia/Taipe' "
        "(an IANA name such as Asia/Taipei, Europe/Paris, UTC)",
    ),
    (
        "[rules.p2p-apps]\nenabled = true",
        "policy.toml: rules.p2p-apps: unknown rule (known: always-on, arp-outside-segment, "
        "beacon, bulk-upload-new-destination, cleartext-pii, dns-tunnel, im-app, "
        "isolated-egress, long-connection, low-and-slow-egress, mail-egress, "
        "new-device-isolated, offhours-bulk-egress, p2p, pivot-chain, quiet-protocol-volume, "
        "rogue-dhcp-server, rogue-router, spread-egress)",
    ),
    (
        '[rules.new-device-isolated]\nknown_devices = ["02:08:0a:08:28:1f", "02:08:0a:08:28"]',
        "policy.toml: rules.new-device-isolated.known_devices[1]: '02:08:0a:08:28' is not "
        "a MAC address (write it as 00:1b:21:3a:4f:10)",
    ),
    (
        '[rules.rogue-router]\ngateways = ["02:08:0a:08:00:01", "02-08-0A-08-00-01"]',
        "policy.toml: rules.rogue-router.gateways[1]: 02:08:0a:08:00:01 is listed twice",
    ),
    (
        "[rules.rogue-dhcp-server]\nservers = [42]",
        "policy.toml: rules.rogue-dhcp-server.servers[0]: expected a network as a string "
        '("10.8.40.0/24"), got integer 42',
    ),
    (
        '[networks]\ninternal = ["10.8.0.0/16"]\nisolated = ["10.8.40.1/24"]',
        "policy.toml: networks.isolated[0]: '10.8.40.1/24' has host bits set "
        "(did you mean 10.8.40.0/24? use the network address, or /32 for one host)",
    ),
    (
        '[allowlist]\ndestinations = ["2001:db8::1/64"]',
        "policy.toml: allowlist.destinations[0]: '2001:db8::1/64' has host bits set "
        "(did you mean 2001:db8::/64? use the network address, or /128 for one host)",
    ),
    (
        '[allowlist]\ndestinations = ["198.51.100.25", "198.51.100.25/32"]',
        "policy.toml: allowlist.destinations[1]: '198.51.100.25/32' is listed twice",
    ),
    (
        "[allowlist]\ndestinations = [198]",
        "policy.toml: allowlist.destinations[0]: expected a network as a string "
        '("10.8.40.0/24"), got integer 198',
    ),
    (
        '[allowlist]\ndestinations = "198.51.100.25"',
        "policy.toml: allowlist.destinations: expected an array, got string '198.51.100.25'",
    ),
    (
        '[networks]\ninternal = ["10.8.0.0/16"]\nisolated = ["10.9.40.0/24"]',
        "policy.toml: networks.isolated[0]: '10.9.40.0/24' is not inside the internal networks "
        "(10.8.0.0/16): isolated hosts are internal by definition; add it to networks.internal",
    ),
    (
        "[networks]\ninternal = []",
        "policy.toml: networks.internal: is empty (list your internal networks, or leave the key "
        "out for the default RFC 1918 + fc00::/7)",
    ),
    (
        "[netwoks]\ninternal = []",
        "policy.toml: netwoks: unknown section (allowed: allowlist, business_hours, features, "
        "inspection, model, networks, report, rules, site, suppress)",
    ),
    (
        '[site]\nnmae = "x"',
        "policy.toml: site: unknown key 'nmae' (allowed: name, timezone, sensor)",
    ),
    ('site = "x"', "policy.toml: site: expected a table, got string 'x'"),
    ("[rules]\nmail-egress = 5", "policy.toml: rules.mail-egress: expected a table, got integer 5"),
    ("[site]\nname = 5", "policy.toml: site.name: expected a string, got integer 5"),
    (
        '[site]\nname = "a\\nb"',
        "policy.toml: site.name: must be one line of printable text, not empty",
    ),
    (
        '[features]\nwindow_minutes = "10"',
        "policy.toml: features.window_minutes: expected an integer, got string '10'",
    ),
    (
        "[features]\nwindow_minutes = 10.0",
        "policy.toml: features.window_minutes: expected an integer, got float 10.0",
    ),
    (
        "[features]\nwindow_minutes = 7",
        "policy.toml: features.window_minutes: 7 does not divide a day "
        "(use 1–1440 dividing 1440, such as 5, 10, 15, 30, 60)",
    ),
    (
        "[features]\nwindow_minutes = 2880",
        "policy.toml: features.window_minutes: 2880 does not divide a day "
        "(use 1–1440 dividing 1440, such as 5, 10, 15, 30, 60)",
    ),
    (
        "[features]\nwindow_minutes = 0",
        "policy.toml: features.window_minutes: 0 is too small (1–1440, dividing 1440)",
    ),
    (
        "[model]\npercentile = 0",
        "policy.toml: model.percentile: 0 is out of range (above 0, at most 100; e.g. 99.5)",
    ),
    (
        "[model]\npercentile = 100.5",
        "policy.toml: model.percentile: 100.5 is out of range (above 0, at most 100; e.g. 99.5)",
    ),
    (
        "[model]\npercentile = nan",
        "policy.toml: model.percentile: nan is out of range (above 0, at most 100; e.g. 99.5)",
    ),
    (
        '[model]\npercentile = "99"',
        "policy.toml: model.percentile: expected a number, got string '99'",
    ),
    (
        "[rules.offhours-bulk-egress]\nmin_bytes = true",
        "policy.toml: rules.offhours-bulk-egress.min_bytes: expected an integer, got boolean true",
    ),
    (
        "[rules.offhours-bulk-egress]\nmin_bytes = -1",
        "policy.toml: rules.offhours-bulk-egress.min_bytes: -1 is too small (bytes cannot be negative)",
    ),
    (
        "[rules.offhours-bulk-egress]\nspan_minutes = 0",
        "policy.toml: rules.offhours-bulk-egress.span_minutes: 0 is too small (must be at least 1)",
    ),
    (
        "[rules.offhours-bulk-egress]\nspan_minutes = 525_601",
        "policy.toml: rules.offhours-bulk-egress.span_minutes: 525601 is too large (at most 525_600)",
    ),
    (
        "[rules.bulk-upload-new-destination]\nnew_for_hours = 8761",
        "policy.toml: rules.bulk-upload-new-destination.new_for_hours: 8761 is too large (at most 8_760)",
    ),
    (
        "[rules.bulk-upload-new-destination]\nmin_bytes = 9_223_372_036_854_775_808",
        "policy.toml: rules.bulk-upload-new-destination.min_bytes: 9223372036854775808 is too large "
        "(at most 9_223_372_036_854_775_807)",
    ),
    (
        "[rules.bulk-upload-new-destination]\nnew_for_hours = 1.5",
        "policy.toml: rules.bulk-upload-new-destination.new_for_hours: expected an integer, got float 1.5",
    ),
    (
        '[rules.offhours-bulk-egress]\nseverity = "urgent"',
        "policy.toml: rules.offhours-bulk-egress.severity: 'urgent' is not a severity "
        "(use low, medium, high, critical or 1–4)",
    ),
    (
        "[rules.mail-egress]\nlarge_severity = 5",
        "policy.toml: rules.mail-egress.large_severity: 5 is not a severity (use low, medium, high, critical or 1–4)",
    ),
    (
        "[rules.mail-egress]\nseverity = true",
        "policy.toml: rules.mail-egress.severity: expected a severity (low, medium, high, critical or 1–4), got boolean true",
    ),
    (
        '[rules.mail-egress]\nenabled = "no"',
        "policy.toml: rules.mail-egress.enabled: expected true or false, got string 'no'",
    ),
    (
        "[rules.mail-egress]\nports = [25, 70000]",
        "policy.toml: rules.mail-egress.ports[1]: 70000 is too large (ports are 1–65535)",
    ),
    (
        "[rules.mail-egress]\nports = [25, 25]",
        "policy.toml: rules.mail-egress.ports[1]: 25 is listed twice",
    ),
    (
        '[rules.mail-egress]\nports = ["587"]',
        "policy.toml: rules.mail-egress.ports[0]: expected an integer, got string '587'",
    ),
    (
        '[rules.always-on]\nnight_start = "23:00"\nnight_end = "23:00"',
        "policy.toml: rules.always-on.night_end: 23:00 is the same time as night_start 23:00 (the night "
        "must have a length; an end earlier than the start crosses midnight)",
    ),
    (
        '[rules.always-on]\nnight_start = "24:00"',
        "policy.toml: rules.always-on.night_start: '24:00' is not a time (use HH:MM, 00:00–23:59)",
    ),
    (
        '[business_hours]\nstart = "8:30"',
        "policy.toml: business_hours.start: '8:30' is not a time (use HH:MM, 00:00–23:59)",
    ),
    (
        '[business_hours]\nstart = "24:00"',
        "policy.toml: business_hours.start: '24:00' is not a time (use HH:MM, 00:00–23:59)",
    ),
    (
        '[business_hours]\nend = "24:30"',
        "policy.toml: business_hours.end: '24:30' is not a time (use HH:MM, 00:00–24:00)",
    ),
    (
        "[business_hours]\nstart = 08:30:15",
        "policy.toml: business_hours.start: 08:30:15 is not a whole minute (use HH:MM, 00:00–23:59)",
    ),
    (
        "[business_hours]\nstart = 830",
        'policy.toml: business_hours.start: expected a time "HH:MM" (00:00–23:59), got integer 830',
    ),
    (
        '[business_hours]\nstart = "18:00"\nend = "08:00"',
        "policy.toml: business_hours: start 18:00 is not before end 08:00 (business hours cannot "
        'cross midnight; all day is start = "00:00", end = "24:00")',
    ),
    (
        '[business_hours]\nstart = "09:00"\nend = "09:00"',
        "policy.toml: business_hours: start 09:00 is not before end 09:00 (business hours cannot "
        'cross midnight; all day is start = "00:00", end = "24:00")',
    ),
    (
        '[business_hours]\ndays = ["mon", "wen"]',
        "policy.toml: business_hours.days[1]: 'wen' is not a day (use mon, tue, wed, thu, fri, sat, sun)",
    ),
    (
        '[business_hours]\ndays = ["mon", "MON"]',
        "policy.toml: business_hours.days[1]: 'MON' is listed twice",
    ),
    (
        '[business_hours]\ndays = "mon"',
        "policy.toml: business_hours.days: expected an array, got string 'mon'",
    ),
    (
        '[business_hours]\nholidays = ["2026-02-30"]',
        "policy.toml: business_hours.holidays[0]: '2026-02-30' is not a date (use YYYY-MM-DD)",
    ),
    (
        '[business_hours]\nholidays = ["20260101"]',
        "policy.toml: business_hours.holidays[0]: '20260101' is not a date (use YYYY-MM-DD)",
    ),
    (
        "[business_hours]\nholidays = [2026-01-01T00:00:00]",
        'policy.toml: business_hours.holidays[0]: expected a date "YYYY-MM-DD", got date-time 2026-01-01T00:00:00',
    ),
    (
        '[business_hours]\nholidays = [2026-01-01, "2026-01-01"]',
        "policy.toml: business_hours.holidays[1]: 2026-01-01 is listed twice",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), BAD, ids=[m.split(": ")[1] + f"#{i}" for i, (_, m) in enumerate(BAD)]
)
def test_invalid_policy_message(tmp_path, text, message):
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    # The file is named as given (here a full path); compare with the short name.
    assert str(caught.value).replace(str(path), "policy.toml") == message
    assert "\n" not in str(caught.value)


def test_toml_syntax_error_keeps_line_and_column():
    with pytest.raises(PolicyError) as caught:
        parse_policy('[site]\nname = "x"\ntimezone = Asia/Taipei\n', "site.toml")
    message = str(caught.value)
    assert message.startswith("site.toml: not valid TOML: ")
    assert re.search(r"\(at line 3, column 12\)$", message), message


def test_missing_unreadable_and_binary_files(tmp_path):
    with pytest.raises(
        PolicyError, match=r"^.*nope\.toml: cannot read the policy file: No such file or directory$"
    ):
        load_policy(tmp_path / "nope.toml")
    with pytest.raises(PolicyError, match=r": cannot read the policy file: Is a directory$"):
        load_policy(tmp_path)
    binary = tmp_path / "policy.toml"
    binary.write_bytes(b'[site]\nname = "\xff"\n')
    with pytest.raises(
        PolicyError,
        match=r"policy\.toml: not UTF-8 text \(byte 15\): a policy is a TOML text file$",
    ):
        load_policy(binary)


def test_accepted_edge_values():
    policy = parse_policy(
        """
        [site]
        timezone = "UTC"
        [business_hours]
        days = ["Sat", "SUN"]
        start = "00:00"
        end = "24:00"
        holidays = [2026-12-25]
        [networks]
        internal = ["10.0.0.0/8", "2001:db8::/32"]
        isolated = ["10.8.40.7", "2001:db8:1::/48"]
        [features]
        window_minutes = 1440
        [model]
        percentile = 100
        """
    )
    assert policy.business_days == frozenset({5, 6})
    assert (policy.business_start, policy.business_end) == (0, 1440)
    assert policy.holidays == frozenset({dt.date(2026, 12, 25)})
    assert str(policy.isolated) == "10.8.40.7/32, 2001:db8:1::/48"  # a bare address is one host
    assert policy.window_minutes == 1440 and policy.model_percentile == 100.0
    # Saturday 2026-02-07 23:59:59 is business time, Monday 2026-02-09 00:00 is not.
    assert policy.is_business_time(utc_ns("2026-02-07T23:59:59", "2026-02-09T00:00")).tolist() == [
        True,
        False,
    ]


def test_isolated_inside_merged_internal_blocks():
    # 10.8.0.0/16 is inside the union of two /17s though inside neither alone.
    policy = parse_policy(
        '[networks]\ninternal = ["10.8.0.0/17", "10.8.128.0/17"]\nisolated = ["10.8.0.0/16"]\n[site]\ntimezone = "UTC"'
    )
    assert str(policy.isolated) == "10.8.0.0/16"


def test_peers_without_isolated_warns():
    policy = parse_policy(
        '[site]\ntimezone = "UTC"\n[networks]\nisolated_peers = ["10.8.40.5"]', "p.toml"
    )
    assert policy.warnings == (
        "p.toml: networks.isolated_peers is set but networks.isolated is empty: the peers have no effect",
    )


# --- networks ---------------------------------------------------------------

V4_NETS = [
    "0.0.0.0/8", "10.0.0.0/8", "10.8.40.0/24", "172.16.0.0/12", "192.168.1.128/25",
    "203.0.113.140/32", "255.255.255.255/32", "100.64.0.0/10",
]  # fmt: skip
V6_NETS = [
    "::/128", "::1/128", "::ffff:198.51.100.0/120", "2001:db8::/32", "2001:db8:0:1:8000::/65",
    "fc00::/7", "fe80::/10", "0:0:0:1::/64", "0:0:0:2::/63", "ffff:ffff:ffff:ffff::/64",
    "ffff:ffff:ffff:fffe:ffff:ffff:ffff:fffe/127", "8000::/1",
]  # fmt: skip


def expected_membership(
    address: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Membership by ipaddress alone: an IPv4 address and its IPv4-mapped IPv6 form
    are one address (the project stores IPv4 that way)."""
    ip = ipaddress.ip_address(address)
    forms: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if ip.version == 4:
        forms.append(ipaddress.IPv6Address("::ffff:" + address))
    elif ip.ipv4_mapped is not None:
        forms.append(ip.ipv4_mapped)
    return any(form in net for form in forms for net in nets if net.version == form.version)


def boundary_addresses(networks: list[str]) -> list[str]:
    out = []
    for text in networks:
        net = ipaddress.ip_network(text)
        top = 2**net.max_prefixlen - 1
        klass = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
        for value in (
            int(net.network_address) - 1,
            int(net.network_address),
            int(net.broadcast_address),
            int(net.broadcast_address) + 1,
        ):
            if 0 <= value <= top:
                out.append(str(klass(value)))
    # Either side of every 64-bit boundary of the address space.
    for value in (
        2**64 - 1,
        2**64,
        2**65 - 1,
        2**127 - 1,
        2**127,
        2**128 - 2**64 - 1,
        2**128 - 2**64,
        2**128 - 1,
        0,
        1,
    ):
        out.append(str(ipaddress.IPv6Address(value)))
    return out


def pick(rng: np.random.Generator, values: list[int]) -> int:
    return values[int(rng.integers(len(values)))]  # rng.choice would go through float64


def random_addresses(rng: np.random.Generator, count: int) -> list[str]:
    out = []
    for _ in range(count):
        kind = rng.integers(0, 4)
        if kind == 0:
            out.append(str(ipaddress.IPv4Address(int(rng.integers(0, 2**32)))))
        elif kind == 1:  # near the ranges above
            base = pick(
                rng, [0x0A000000, 0xC0A80180, 0xCB00718C, 0xAC100000, 0xFFFFFF00, 0x64400000]
            )
            out.append(str(ipaddress.IPv4Address((base + int(rng.integers(-300, 300))) % 2**32)))
        elif kind == 2:
            out.append(
                str(
                    ipaddress.IPv6Address(
                        (int(rng.integers(0, 2**63)) << 65) | int(rng.integers(0, 2**63))
                    )
                )
            )
        else:  # small hi values, IPv4-mapped and 2001:db8::/32 neighbourhoods
            prefix = pick(
                rng, [0, 1, 2, 3, 0x20010DB8_00000000, 0x20010DB8_00000001, 0xFFFFFFFF_FFFFFFFF]
            )
            low = pick(rng, [0x0000FFFF_00000000, 0x80000000_00000000, 0]) + int(
                rng.integers(0, 2**33)
            )
            out.append(str(ipaddress.IPv6Address((prefix << 64) | low)))
    return out


@pytest.mark.parametrize(
    "networks",
    [
        V4_NETS + V6_NETS,
        V4_NETS,
        V6_NETS,
        # More than eight ranges within one hi value: the searchsorted path.
        [f"10.{i}.{i}.0/24" for i in range(0, 250, 7)]
        + ["192.0.2.0/24", "0:0:0:1::/80", "0:0:0:1:1::/80"],
    ],
    ids=["mixed", "v4", "v6", "many"],
)
def test_network_set_matches_ipaddress(networks):
    rng = np.random.default_rng(1917)
    addresses = boundary_addresses(networks) + random_addresses(rng, 3000)
    hi, lo = arrays(addresses)
    got = NetworkSet(networks).contains(hi, lo)
    nets = [ipaddress.ip_network(n) for n in networks]
    expected = np.array([expected_membership(a, nets) for a in addresses])
    mismatches = [a for a, g, e in zip(addresses, got, expected, strict=True) if g != e]
    assert mismatches == []
    assert 100 < expected.sum() < len(addresses) - 100  # both answers well represented


def test_network_set_basics():
    nets = NetworkSet(["10.0.0.0/25", "10.0.0.128/25", "2001:db8::/32", "10.0.0.0/25"])
    assert str(nets) == "10.0.0.0/25, 10.0.0.128/25, 2001:db8::/32"  # duplicate dropped, order kept
    assert nets.canonical() == ["10.0.0.0/24", "2001:db8::/32"]
    assert nets == NetworkSet(["2001:db8::/32", "10.0.0.0/24"])
    assert len(nets) == 3 and bool(nets) and not NetworkSet()
    assert nets.contains_text("10.0.0.200") and nets.contains_text("::ffff:10.0.0.1")
    assert not nets.contains_text("10.0.1.0") and nets.contains_text("2001:db8:ffff::1")
    with pytest.raises(ValueError):
        nets.contains_text("10.0.0.0/24")
    with pytest.raises(AttributeError, match="immutable"):
        nets.networks = ()  # type: ignore[misc]
    empty = NetworkSet().contains(np.zeros(3, np.uint64), np.zeros(3, np.uint64))
    assert empty.dtype == bool and empty.tolist() == [False] * 3


def test_local_scope_and_external():
    policy = parse_policy('[site]\ntimezone = "UTC"')
    cases = {
        "255.255.255.255": (True, False),
        "224.0.0.251": (True, False),
        "169.254.10.1": (True, False),
        "127.0.0.1": (True, False),
        "0.0.0.0": (True, False),
        "::": (True, False),
        "::1": (True, False),
        "fe80::1": (True, False),
        "ff02::fb": (True, False),
        "10.1.2.3": (False, False),
        "172.31.255.255": (False, False),
        "172.32.0.0": (False, True),
        "192.168.0.1": (False, False),
        "fd12:3456::1": (False, False),
        "8.8.8.8": (False, True),
        "::ffff:8.8.8.8": (False, True),
        "2001:db8::1": (False, True),
        "239.255.255.255": (True, False),
        "223.255.255.255": (False, True),
    }
    hi, lo = arrays(list(cases))
    assert LOCAL_SCOPE.contains(hi, lo).tolist() == [v[0] for v in cases.values()]
    assert policy.is_external(hi, lo).tolist() == [v[1] for v in cases.values()]


# --- business hours and offsets in the site's zone ----------------------------


def test_business_time_is_local_not_utc(sample):
    # Asia/Taipei is UTC+8 all year; business hours Mon–Fri 08:30–17:30 local.
    cases = {
        # The incident: Wednesday 2026-02-04 02:13 local (Tuesday 18:13 UTC).
        "2026-02-03T18:13": False,
        # Wednesday 20:00 local: off-hours, though 12:00 UTC is inside 09–18 UTC.
        "2026-02-04T12:00": False,
        # Wednesday 10:00 local: business, though 02:00 UTC is outside 09–18 UTC.
        "2026-02-04T02:00": True,
        # Saturday 2026-02-07 01:00 local is Friday 17:00 UTC.
        "2026-02-06T17:00": False,
        # Friday 2026-02-06 08:45 local is Thursday 00:45 UTC.
        "2026-02-06T00:45": True,
        # Saturday 10:00 local.
        "2026-02-07T02:00": False,
        # The edges: 08:30 is in, a nanosecond earlier is not; 17:30 is out.
        "2026-02-04T00:30:00": True,
        "2026-02-04T00:29:59.999999999": False,
        "2026-02-04T09:29:59.999999999": True,
        "2026-02-04T09:30:00": False,
        # New Year's Day (a Thursday) 10:00 local is off; Friday 2 January is not.
        "2026-01-01T02:00": False,
        "2026-01-02T02:00": True,
        # Lunar New Year Monday 2026-02-16 and Friday 2026-02-20; back on Monday 23rd.
        "2026-02-16T02:00": False,
        "2026-02-20T09:00": False,
        "2026-02-23T02:00": True,
    }
    got = sample.is_business_time(utc_ns(*cases))
    assert dict(zip(cases, got.tolist(), strict=True)) == cases
    assert (sample.utc_offset_ns(utc_ns(*cases)) == 8 * HOUR_NS).all()


def test_holidays_are_local_dates():
    # Open all day, every day, except New Year's Day in Taipei (UTC+8).
    policy = parse_policy(
        '[site]\ntimezone = "Asia/Taipei"\n[business_hours]\nstart = "00:00"\nend = "24:00"\n'
        'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\nholidays = ["2026-01-01"]'
    )
    got = policy.is_business_time(
        utc_ns("2025-12-31T15:59:59", "2025-12-31T16:00", "2026-01-01T15:59:59", "2026-01-01T16:00")
    )
    # 23:59:59 on 31 December, 00:00 and 23:59:59 on 1 January, 00:00 on 2 January (local):
    # by UTC dates the first would be the holiday and the last not.
    assert got.tolist() == [True, False, False, True]


def every_day_policy(timezone: str):
    return parse_policy(
        f'[site]\ntimezone = "{timezone}"\n[business_hours]\n'
        'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\nstart = "08:00"\nend = "18:00"'
    )


DST_CASES = {
    # zone: [(UTC instant, offset in hours, business 08:00–18:00 local)]
    "Europe/Berlin": [
        ("2026-03-28T06:30", 1, False),  # 07:30 CET
        ("2026-03-29T00:59:59", 1, False),  # the last second of CET
        ("2026-03-29T01:00:00", 2, False),  # 03:00 CEST: clocks went forward
        ("2026-03-29T06:30", 2, True),  # 08:30 CEST (a fixed UTC+1 would say 07:30)
        ("2026-03-29T16:30", 2, False),  # 18:30 CEST (UTC+1 would say 17:30)
        ("2026-10-24T06:30", 2, True),  # 08:30 CEST
        ("2026-10-25T00:59:59", 2, False),  # 02:59:59 CEST
        ("2026-10-25T01:00:00", 1, False),  # 02:00 CET again: clocks went back
        ("2026-10-25T06:30", 1, False),  # 07:30 CET
        ("2026-10-25T16:30", 1, True),  # 17:30 CET (UTC+2 would say 18:30)
    ],
    "America/New_York": [
        ("2026-03-07T12:30", -5, False),  # 07:30 EST
        ("2026-03-08T06:59:59", -5, False),  # 01:59:59 EST
        ("2026-03-08T07:00:00", -4, False),  # 03:00 EDT
        ("2026-03-08T12:30", -4, True),  # 08:30 EDT
        ("2026-03-08T22:30", -4, False),  # 18:30 EDT
        ("2026-10-31T12:30", -4, True),  # 08:30 EDT
        ("2026-11-01T05:59:59", -4, False),  # 01:59:59 EDT
        ("2026-11-01T06:00:00", -5, False),  # 01:00 EST, the second time
        ("2026-11-01T12:30", -5, False),  # 07:30 EST
        ("2026-11-01T22:30", -5, True),  # 17:30 EST
    ],
    "Australia/Lord_Howe": [  # a 30-minute shift: +11:00 in summer, +10:30 in winter
        ("2026-04-04T14:59:59", 11, False),  # 01:59:59 LHDT, Sunday 5 April
        ("2026-04-04T15:00:00", 10.5, False),  # 01:30 LHST
        ("2026-04-04T21:15", 10.5, False),  # 07:45 LHST (at +11 it would be 08:15)
        ("2026-04-05T07:15", 10.5, True),  # 17:45 LHST (at +11 it would be 18:15)
        ("2026-10-03T15:29:59", 10.5, False),  # 01:59:59 LHST, Sunday 4 October
        ("2026-10-03T15:30:00", 11, False),  # 02:30 LHDT
        ("2026-10-03T21:15", 11, True),  # 08:15 LHDT
    ],
}


@pytest.mark.parametrize("timezone", list(DST_CASES))
def test_dst_change_days(timezone):
    policy = every_day_policy(timezone)
    stamps = [c[0] for c in DST_CASES[timezone]]
    offsets = policy.utc_offset_ns(utc_ns(*stamps))
    assert offsets.dtype == np.int64
    assert offsets.tolist() == [int(c[1] * HOUR_NS) for c in DST_CASES[timezone]]
    assert policy.is_business_time(utc_ns(*stamps)).tolist() == [c[2] for c in DST_CASES[timezone]]


@pytest.mark.parametrize(
    "timezone",
    [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Taipei",
        "America/Sao_Paulo",
    ],
)
def test_offsets_match_pandas(timezone):
    rng = np.random.default_rng(42)
    # Every minute across each 2026 change, plus instants scattered over 1950–2100.
    minutes = np.arange(utc_ns("2026-01-01")[0], utc_ns("2027-01-01")[0], 17 * MINUTE_NS)
    ts = np.concatenate(
        [minutes, rng.integers(-(20 * 365 * 86400 * 10**9), 4_102_444_800 * 10**9, 3000)]
    )
    policy = every_day_policy(timezone)
    local = pd.DatetimeIndex(ts.view("M8[ns]"), tz="UTC").tz_convert(policy.zone).tz_localize(None)
    assert (policy.utc_offset_ns(ts) == local.asi8 - ts).all()
    expected = local.hour * 60 + local.minute
    assert (policy.is_business_time(ts) == ((expected >= 480) & (expected < 1080))).all()


def test_not_a_time_and_datetime64_input(sample):
    nat = np.iinfo(np.int64).min
    ts = np.array([nat, utc_ns("2026-02-04T02:00")[0]], dtype=np.int64)
    assert sample.utc_offset_ns(ts).tolist() == [0, 8 * HOUR_NS]
    assert sample.is_business_time(ts).tolist() == [False, True]
    as_datetime = np.array(["2026-02-04T02:00", "NaT"], dtype="datetime64[s]")
    assert sample.is_business_time(as_datetime).tolist() == [True, False]
    assert sample.is_business_time(np.array([], dtype=np.int64)).tolist() == []
    assert sample.utc_offset_ns(np.array([nat])).tolist() == [0]


# --- fingerprint -------------------------------------------------------------

FINGERPRINT_TEXT = """
# comment
[site]
name = "x"
timezone = "Europe/Berlin"
[networks]
internal = ["10.0.0.0/8", "192.168.0.0/16"]
[rules.offhours-bulk-egress]
min_bytes = 50_000_000
severity = "high"
"""

REORDERED_TEXT = """
[rules.offhours-bulk-egress]
severity = 3            # the same severity, as a number
min_bytes = 50000000
[networks]
internal = ["192.168.0.0/17", "192.168.128.0/17", "10.0.0.0/8"]   # same addresses
[site]
timezone = "Europe/Berlin"
name = "x"
"""


def test_fingerprint_ignores_form_not_content():
    first = parse_policy(FINGERPRINT_TEXT, "a.toml")
    assert re.fullmatch(r"[0-9a-f]{64}", first.fingerprint())
    assert parse_policy(REORDERED_TEXT, "b.toml").fingerprint() == first.fingerprint()
    changed = FINGERPRINT_TEXT.replace("50_000_000", "50_000_001")
    assert parse_policy(changed).fingerprint() != first.fingerprint()
    disabled = FINGERPRINT_TEXT + "enabled = false\n"
    assert parse_policy(disabled).fingerprint() != first.fingerprint()
    other_zone = FINGERPRINT_TEXT.replace("Europe/Berlin", "Europe/Paris")
    assert parse_policy(other_zone).fingerprint() != first.fingerprint()


def test_fingerprint_of_sample_is_stable(sample):
    assert load_policy(SAMPLE).fingerprint() == sample.fingerprint()
    settings = sample.settings()
    assert settings["business_hours"]["holidays"][0] == "2026-01-01"
    assert settings["rules"]["mail-egress"]["ports"] == [25, 465, 587]


# --- no policy ---------------------------------------------------------------


def test_default_policy(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    policy = default_policy()
    assert policy.source is None
    assert policy.timezone == "America/New_York"
    assert policy.internal.canonical() == [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    assert (policy.business_days, policy.business_start, policy.business_end) == (
        frozenset(range(5)),
        480,
        1080,
    )
    assert policy.warnings == (
        "no --policy given: using the defaults (internal 10.0.0.0/8, 172.16.0.0/12, "
        "192.168.0.0/16, fc00::/7; no isolated networks, no allowlist; business hours "
        "Mon–Fri 08:00–18:00) in this machine's time zone America/New_York",
    )
    assert (
        policy.describe().splitlines()[0]
        == "site site, time zone America/New_York; default policy (no --policy)"
    )
    # Monday 2026-03-09 08:30 EDT is 12:30 UTC; 07:59 EDT is 11:59 UTC.
    assert policy.is_business_time(utc_ns("2026-03-09T12:30", "2026-03-09T11:59")).tolist() == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("Europe/Paris", "Europe/Paris"),
        (":America/New_York", "America/New_York"),
        ("/usr/share/zoneinfo/Asia/Tokyo", "Asia/Tokyo"),
    ],
)
def test_machine_timezone_from_tz(monkeypatch, tz, expected):
    if zoneinfo.ZoneInfo(expected) is None:  # pragma: no cover
        pytest.skip("no zone data")
    monkeypatch.setenv("TZ", tz)
    assert machine_timezone() == expected


@pytest.mark.parametrize("tz", ["Not/AZone", "CET-1CEST", "", "/etc/localtime"])
def test_machine_timezone_falls_back(monkeypatch, tz):
    monkeypatch.setenv("TZ", tz)
    name = machine_timezone()
    assert name != tz and zoneinfo.ZoneInfo(name) is not None


def test_sensor_suppressions_and_report_words_are_read():
    """[site] sensor, [[suppress]] (an address is one host; a name is lower-cased
    without its final dot; a date as a string too) and [report]; none of them
    changes the fingerprint (they change what outputs say, not what is detected)."""
    base = '[site]\nname = "x"\ntimezone = "UTC"\n'
    plain = parse_policy(base)
    assert (plain.sensor, plain.suppressions, dict(plain.report_why), plain.recurring_days) == (
        None, (), {}, 30)  # fmt: skip
    policy = parse_policy(base.replace('name = "x"', 'name = "x"\nsensor = " span-1 "') + """
[report]
recurring_days = 7
[report.why]
p2p = "  Our words.  "
[[suppress]]
rule = "p2p"
host = "10.8.10.5"
destination = "Tracker.Example.NET."
until = "2099-12-31"
reason = " ticket 9 "
[[suppress]]
rule = "im-app"
host = "10.8.20.0/24"
destination = "2001:db8::/32"
until = 2099-01-01
reason = "approved"
""")
    assert policy.sensor == "span-1"
    assert policy.recurring_days == 7 and dict(policy.report_why) == {"p2p": "Our words."}
    first, second = policy.suppressions
    assert (first.rule, str(first.host), first.destination_name, first.destination_network,
            first.until, first.reason) == ("p2p", "10.8.10.5/32", "tracker.example.net", None,
                                           dt.date(2099, 12, 31), "ticket 9")  # fmt: skip
    assert (str(second.host), str(second.destination_network), second.destination) == (
        "10.8.20.0/24", "2001:db8::/32", "2001:db8::/32")  # fmt: skip
    assert policy.warnings == ()
    assert policy.fingerprint() == parse_policy(base).fingerprint()
