"""Hostile policy files: whatever a policy holds, the command ends with exit 2 and
one line naming the file and what was wrong, never a traceback or exit 4; long
lists load and match in one vectorised pass, checked against a naive reference."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import numpy as np
import pytest

from detector.cli.main import main
from detector.networks import NetworkSet, network_triple
from detector.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"

DEEP = 5000  # far beyond Python's recursion limit (1000)

HOSTILE = {
    "wrong type": ('[rules.offhours-bulk-egress]\nmin_bytes = "50 MB"\n',
                   "rules.offhours-bulk-egress.min_bytes: expected an integer, got string '50 MB'"),
    "unknown key": ("[rules.beacon]\nmin_conections = 3\n",
                    "rules.beacon: unknown key 'min_conections' (allowed: enabled, severity, "
                    "min_connections, min_hours, min_score, ignore_ports, habits)"),
    "unknown rule": ("[rules.exfil]\nenabled = true\n", "rules.exfil: unknown rule (known: "),
    "unknown section": ("[sites]\nname = 'x'\n", "sites: unknown section"),
    "list for a table": ("rules = [1, 2]\n", "rules: expected a table, got array"),
    "table for a list": ("[networks.internal]\na = 1\n", "networks.internal: expected an array"),
    "nested arrays": ("[allowlist]\ndestinations = " + "[" * DEEP + "]" * DEEP + "\n",
                      "arrays or tables nested too deeply"),
    "nested inline tables": ("x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n",
                             "arrays or tables nested too deeply"),
    "huge integer": ("[rules.beacon]\nmin_connections = 99999999999999999999\n",
                     "rules.beacon.min_connections: 99999999999999999999 is too large"),
    "float for an integer": ("[rules.beacon]\nmin_hours = 1.5\n",
                             "rules.beacon.min_hours: expected an integer, got float 1.5"),
    "network with host bits": ('[networks]\nisolated = ["10.8.40.31/24"]\n',
                               "networks.isolated[0]: '10.8.40.31/24' has host bits set"),
    "control characters": ('[site]\nname = "a\\u001b]0;owned\\u0007"\n',
                           "site.name: must be one line of printable text"),
    "sensor with control characters": ('[site]\nsensor = "span\\u001b[2J"\n',
                                       "site.sensor: must be one line of printable text"),
    "suppress as one table": ('[suppress]\nrule = "p2p"\n',
                              "suppress: expected an array of tables ([[suppress]]), got table"),
    "suppress without a reason": ('[[suppress]]\nrule = "p2p"\nhost = "10.8.10.5"\n'
                                  "until = 2026-03-31\n", "suppress[0]: 'reason' is missing"),
    "suppress of an unknown rule": ('[[suppress]]\nrule = "p2pp"\nhost = "10.8.10.5"\n'
                                    'until = 2026-03-31\nreason = "x"\n',
                                    "suppress[0].rule: unknown rule 'p2pp' (known: "),
    "suppress with a bad date": ('[[suppress]]\nrule = "p2p"\nhost = "10.8.10.5"\n'
                                 'until = "31/03/2026"\nreason = "x"\n',
                                 "suppress[0].until: '31/03/2026' is not a date (use YYYY-MM-DD)"),
    "suppress with host bits": ('[[suppress]]\nrule = "p2p"\nhost = "10.8.10.5/24"\n'
                                'until = 2026-03-31\nreason = "x"\n',
                                "suppress[0].host: '10.8.10.5/24' has host bits set "
                                "(did you mean 10.8.10.0/24? use the network address, or /32 "
                                "for one host)"),
    "suppress of a bad name": ('[[suppress]]\nrule = "p2p"\nhost = "10.8.10.5"\n'
                               'destination = "a b"\nuntil = 2026-03-31\nreason = "x"\n',
                               "suppress[1].destination: 'a b' is not an address, a network or "
                               "a DNS name"),
    "suppress with an empty reason": ('[[suppress]]\nrule = "p2p"\nhost = "10.8.10.5"\n'
                                      'until = 2026-03-31\nreason = " "\n',
                                      "suppress[0].reason: must say why"),
    "report words of an unknown rule": ('[report.why]\nexfil = "x"\n',
                                        "report.why.exfil: unknown rule (known: "),
    "report words not text": ("[report.why]\np2p = 3\n",
                              "report.why.p2p: expected a string, got integer 3"),
    "report days zero": ("[report]\nrecurring_days = 0\n",
                         "report.recurring_days: 0 is too small (at least 1 day)"),
}  # fmt: skip
# The bad name is the second suppression: the index names which one.
HOSTILE["suppress of a bad name"] = (
    '[[suppress]]\nrule = "p2p"\nhost = "10.8.10.5"\nuntil = 2026-03-31\nreason = "ok"\n'
    + HOSTILE["suppress of a bad name"][0],
    HOSTILE["suppress of a bad name"][1],
)


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> tuple[int, list[str]]:
    policy = tmp_path / "site.toml"
    policy.write_bytes(data)
    code = main(["scan", "-q", "--policy", str(policy), str(SAMPLE)])
    err = capsys.readouterr().err
    return code, err.splitlines()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_policy_is_one_line_and_exit_2(tmp_path, capsys, case):
    text, wanted = HOSTILE[case]
    code, lines = run(tmp_path, capsys, text.encode())
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"egress-detector: error: {tmp_path / 'site.toml'}: "), lines
    assert wanted in lines[0]
    assert "Traceback" not in lines[0]


@pytest.mark.parametrize(
    ("case", "data", "wanted"),
    [
        ("binary", bytes(range(256)) * 64, "not UTF-8 text (byte 128)"),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(100), "not UTF-8 text (byte 0)"),
        ("nul bytes", b"[site]\nname = 'a'\n\x00\x00\n", "not valid TOML"),
        ("utf-16", "[site]\nname = 'x'\n".encode("utf-16"), "not UTF-8 text (byte 0)"),
    ],
)
def test_a_binary_policy_is_one_line_and_exit_2(tmp_path, capsys, case, data, wanted):
    code, lines = run(tmp_path, capsys, data)
    assert code == 2 and len(lines) == 1 and wanted in lines[0], lines


def test_a_policy_larger_than_the_cap_is_refused_before_reading_it_all(
    tmp_path, capsys, monkeypatch
):
    from detector.policy import reader

    monkeypatch.setattr(reader, "MAX_POLICY_BYTES", 1000)
    code, lines = run(tmp_path, capsys, b"# " + b"x" * 2000 + b"\n")
    assert code == 2 and len(lines) == 1 and "larger than 0 MiB: not a policy file" in lines[0]


def test_a_directory_is_not_a_policy(tmp_path, capsys):
    code = main(["scan", "-q", "--policy", str(tmp_path), str(SAMPLE)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1 and "cannot read the policy file" in lines[0]


def test_a_long_allowlist_loads_and_a_repeat_is_named_by_its_index(tmp_path):
    rng = random.Random(7)
    addresses = rng.sample(range(1 << 32), 200_000)
    entries = [f'"{ipaddress.IPv4Address(a)}/32"' for a in addresses]
    policy = tmp_path / "site.toml"
    policy.write_text(
        '[site]\ntimezone = "UTC"\n[allowlist]\ndestinations = [' + ", ".join(entries) + "]\n"
    )
    loaded = load_policy(policy)
    assert len(loaded.allowlist_destinations) == 200_000
    hi = np.zeros(4, dtype=np.uint64)
    lo = np.array([addresses[0], addresses[-1], (addresses[0] + 1) % (1 << 32), 0], dtype=np.uint64)
    lo |= np.uint64(0xFFFF_0000_0000)
    expected = [True, True, (addresses[0] + 1) % (1 << 32) in set(addresses), 0 in set(addresses)]
    assert loaded.allowlist_destinations.contains(hi, lo).tolist() == expected

    entries.append(entries[1234])
    policy.write_text("[allowlist]\ndestinations = [" + ", ".join(entries) + "]\n")
    from detector.errors import PolicyError

    with pytest.raises(PolicyError) as error:
        load_policy(policy)
    assert str(error.value) == (
        f"{policy}: allowlist.destinations[200000]: "
        f"'{ipaddress.IPv4Address(addresses[1234])}/32' is listed twice"
    )


# -- NetworkSet against a naive reference ------------------------------------------------


def _random_network(rng: random.Random) -> str:
    if rng.random() < 0.5:
        prefix = rng.choice([0, 8, 12, 16, 20, 24, 25, 28, 30, 31, 32])
        value = rng.getrandbits(32) & ~((1 << (32 - prefix)) - 1)
        return f"{ipaddress.IPv4Address(value)}/{prefix}"
    prefix = rng.choice([0, 16, 32, 48, 64, 96, 100, 112, 127, 128])
    value = rng.getrandbits(128)
    if rng.random() < 0.3:  # IPv4-mapped space, where the two families meet
        value = (0xFFFF << 32) | rng.getrandbits(32)
        prefix = rng.choice([96, 104, 120, 128])
    return f"{ipaddress.IPv6Address(value & ~((1 << (128 - prefix)) - 1))}/{prefix}"


def _naive_contains(networks: list[str], hi: int, lo: int) -> bool:
    value = (hi << 64) | lo
    nets = [ipaddress.ip_network(n) for n in networks]
    if any(n.version == 6 and ipaddress.IPv6Address(value) in n for n in nets):
        return True
    if hi == 0 and lo >> 32 == 0xFFFF:
        v4 = ipaddress.IPv4Address(lo & 0xFFFF_FFFF)
        return any(n.version == 4 and v4 in n for n in nets)
    return False


@pytest.mark.parametrize("seed", range(40))
def test_network_set_matches_a_naive_reference(seed):
    rng = random.Random(seed)
    networks = [_random_network(rng) for _ in range(rng.randint(0, 40))]
    networks += networks[: rng.randint(0, 3)]  # repeats
    queries: list[tuple[int, int]] = []
    for text in networks:  # each network's edges and the addresses just outside
        net = ipaddress.ip_network(text)
        top = 1 << net.max_prefixlen
        for value in (int(net.network_address) - 1, int(net.network_address),
                      int(net.broadcast_address), int(net.broadcast_address) + 1):  # fmt: skip
            value %= top
            queries.append(
                (0, (0xFFFF << 32) | value) if net.version == 4 else divmod(value, 1 << 64)
            )
    for _ in range(200):
        if rng.random() < 0.5:
            queries.append((0, (0xFFFF << 32) | rng.getrandbits(32)))
        else:
            queries.append((rng.getrandbits(64), rng.getrandbits(64)))
    hi = np.array([q[0] for q in queries], dtype=np.uint64)
    lo = np.array([q[1] for q in queries], dtype=np.uint64)
    found = NetworkSet(networks).contains(hi, lo).tolist()
    assert found == [_naive_contains(networks, h, low) for h, low in queries]
    # canonical() is what ipaddress.collapse_addresses makes of each family.
    v4 = [ipaddress.ip_network(n) for n in networks if ipaddress.ip_network(n).version == 4]
    v6 = [ipaddress.ip_network(n) for n in networks if ipaddress.ip_network(n).version == 6]
    collapsed = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    assert NetworkSet(networks).canonical() == [str(n) for n in collapsed]
    assert NetworkSet(networks) == NetworkSet(list(reversed(networks)))


@pytest.mark.parametrize(
    "text",
    ["10.0.0.1/8", "10.0.0.0/33", "1.2.3", "01.2.3.4/32", "::1/129", "2001:DB8::/32", "10.0.0.0/08",
     "10.0.0.0/ 8", "10.0.0.0/255.0.0.0", "::ffff:1.2.3.0/120", "10.0.0.0/+8", "١٠.0.0.0/8",
     "10.0.0.0/٨", "10.0.0.0/", "10.0.0.0", "0.0.0.0/0", "10.0.0.0/32x", "1.2.3.4 "],
)  # fmt: skip
def test_network_text_is_read_as_ipaddress_reads_it(text):
    try:
        expected: object = ipaddress.ip_network(text)
        expected = (expected.version, int(expected.network_address), expected.prefixlen)  # type: ignore[union-attr]
    except ValueError:
        expected = ValueError
    try:
        got: object = network_triple(text)
    except ValueError:
        got = ValueError
    assert got == expected
