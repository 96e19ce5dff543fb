"""The careful adversary (issue 20): each behaviour replayed with spread
parameters on top of a benign office, scanned by the rules and by the rules
with a trained model; what is caught, how small and how spaced, in how many
alerts, and the false alerts per 1,000 benign host-days.

The office is benchmarks/eval_model.py's (20 hosts in Asia/Taipei, Mon-Fri
08:30-17:30: workstations with daily rhythms, browsing, cloud uploads, video
calls, weekly updates, some left on at night with background chatter; a
backup server uploading 0.3-0.8 GB every night to an allowlisted address, a
file server, an update server downloading every night, a printer), generated
at the per-minute activity level (the columns of detector.flows.activity)
and run through the real path (host_traffic -> rules -> score_scan ->
model_alerts). This script adds the noise the careful adversary hides in:

* DNS: every workstation asks the site's resolver (10.8.10.250, udp/53) in
  each minute it browses; the resolver forwards to an outside resolver, all
  day and night (it is listed in quiet-protocol-volume's ``exempt``, as a
  site lists its resolver);
* NTP at night: computers left on and the servers ask two outside time
  servers every 64-1,024 s (udp/123);
* a push channel: computers left on keep one connection to a push service
  all night with a heartbeat every 25-30 minutes;
* a big night download: computers left on fetch 50-300 MB of updates at
  night one night in five;
* an isolated segment: three isolated computers (10.8.40.11-13) working with
  their file server 10.8.40.5 (``isolated_peers``) in business hours.

Behaviours, each on its own workstation host-day of a test week, over a grid
of sizes and spacings (times drawn at random):

* ``low-and-slow``: 0.5-3 MB to one new outside address every 30 or 60
  minutes from about 22:00 for 8 hours;
* ``spread``: 5-20 MB split over 4 or 8 new outside addresses (half the time
  in one /24) within 10-20 minutes, by night or by day;
* ``icmp-tunnel``: 0.5-12 MB of ICMP to one outside address between 01:00
  and 05:00 in 20-60 minutes;
* ``dns-volume``: 0.5-5 MB of queries to the site's resolver in 30-120
  minutes at night (the resolver forwards them);
* ``udp443-backup-host``: 5-30 MB over udp/443 to a new outside address from
  the backup server, during or near its allowlisted nightly backup;
* ``pivot``: an isolated computer sends 1-30 MB to a workstation over SMB,
  which sends 80-110 % of it to a new outside address 10-50 minutes later;
* ``long-connection``: one connection to an outside address with a small
  keep-alive every 5 or 14 minutes for 2-8 hours at night;
* ``day-upload``: 10-60 MB in 10-30 minutes to a never-seen address in
  business hours (the model's job; below bulk-upload-new-destination's 100 MB);
* ``echo-upload``: a call's disguise: 60 MB at night, 120 or 300 MB by day in
  20-50 minutes over udp/3478 to a new address that sends 100-150 % of it
  back (the volume rules leave out two-way conversations only with an
  address other hosts of the site use: this one no other host uses).

With ``--pcap DIR`` each test week is also written as a headers-only pcap
(tests/gen_traffic.py; frames of up to 64,000 bytes on the wire, as segments
a host with TCP segmentation offload hands its NIC) and scanned through the
whole path, capture decoding and flow table included (``scan_captures``,
with and without the model): the table is then that path's.

With ``--nightly DIR`` the baseline and test weeks are written as one pcap
per local day and run through ``egress-detector nightly``'s code
(``run_nightly``, rules only): each day is scanned from its file and the hour
either side, with the state of the days before. It runs twice: with the
state's history (who called each outside address, each host's beats and
uploads: detector/nightly/history.py) and without (each day alone). The
baseline weeks fill the state; only the test weeks are scored.

An incident is caught when an alert names its host (for a pivot: either
host) and overlaps one of its spans (+- one window). Every other alert is
false (always-on is left out, as in eval_model.py: it fires on every
computer left on, by design).

    python benchmarks/eval_adversary.py                 # about 3 minutes
    python benchmarks/eval_adversary.py --test-weeks 16 --show-false
    python benchmarks/eval_adversary.py --test-weeks 4 --pcap /tmp/adversary
    python benchmarks/eval_adversary.py --test-weeks 4 --nightly /tmp/adversary-nightly
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from eval_model import (  # noqa: E402
    BACKUP,
    DAY_MIN,
    EPOCH_NS,
    FILESERVER,
    MB,
    MIN,
    N_WORKSTATIONS,
    NS,
    TZ_OFFSET_MIN,
    WSUS,
    Rows,
    Site,
    host_ip,
    ip_text,
    local_minutes,
    server_day,
    transfer,
    workstation_day,
)

from detector.detect.model import (  # noqa: E402
    EgressModel,
    baseline_users,
    destinations_of,
    known_pairs,
    model_alerts,
    score_scan,
    with_novelty,
)
from detector.detect.rules import ScanContext, run_rules  # noqa: E402
from detector.features.hosts import host_traffic, host_windows  # noqa: E402
from detector.nightly.run import NightlyOptions, run_nightly  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import parse_policy  # noqa: E402

RESOLVER = (10 << 24) | (8 << 16) | (10 << 8) | 250
ISOLATED = [(10 << 24) | (8 << 16) | (40 << 8) | k for k in (11, 12, 13)]
ISOLATED_SERVER = (10 << 24) | (8 << 16) | (40 << 8) | 5
UPSTREAM_DNS = (192 << 24) | (0 << 16) | (2 << 8) | 53
NTP_SERVERS = [(192 << 24) | (0 << 16) | (2 << 8) | 123, (192 << 24) | (0 << 16) | (2 << 8) | 124]
PUSH = (203 << 24) | (0 << 16) | (113 << 8) | 200

POLICY = """
[site]
name = "eval-adversary"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
isolated_peers = ["10.8.40.5/32"]

[allowlist]
destinations = ["198.51.100.25/32"]
"""
# Rule settings (TOML values) on top of the defaults: the site's resolver
# forwards everyone's look-ups, so a site lists it (docs/rules.md).
RULE_SETTINGS = {"quiet-protocol-volume": {"exempt": '["10.8.10.250/32"]'}}


# -- the benign office, with the noise of the night ---------------------------------------


def noise_day(rows: Rows, site: Site, rng: np.random.Generator, day: int) -> None:
    """DNS through the resolver, NTP, push channels, night downloads, the isolated segment."""
    base = day * DAY_MIN
    weekday = day % 7 < 5
    forwarded = np.zeros(DAY_MIN)
    for h in range(N_WORKSTATIONS):
        # DNS in the minutes of the working day (a rough share of them).
        if weekday:
            minutes = np.arange(int(site.arrive[h]), int(site.leave[h]))
            asked = minutes[rng.random(len(minutes)) < site.busy[h]]
            sizes = rng.lognormal(np.log(600), 0.7, len(asked))
            rows.add(host_ip(h), RESOLVER, base + asked, sizes, sizes * 2, 53, 17, rng)
            np.add.at(forwarded, asked, sizes * 0.3)  # the rest answered from the cache
        if site.left_on[h]:
            night = np.arange(0, DAY_MIN)
            night = night[(night < 8 * 60) | (night >= 19 * 60)]
            # NTP: one 90-byte question every 64-1,024 s.
            polls = np.unique(night[rng.random(len(night)) < rng.uniform(0.06, 0.9)])
            rows.add(host_ip(h), NTP_SERVERS[h % 2], base + polls, np.full(len(polls), 90),
                     np.full(len(polls), 90), 123, 17, rng)  # fmt: skip
            # A push channel: one connection, a heartbeat every 25-30 minutes.
            beats = np.cumsum(rng.integers(25, 31, 30))
            beats = beats[beats < DAY_MIN]
            _one_connection(rows, rng, host_ip(h), PUSH, base + beats, np.full(len(beats), 200),
                            np.full(len(beats), 300), 443, 6)  # fmt: skip
            if rng.random() < 0.2:  # a big night download
                size = rng.uniform(50, 300) * MB
                start = base + int(rng.uniform(20 * 60, 23 * 60))
                transfer(rows, rng, host_ip(h), int(site.updates[rng.integers(0, 6)]), start,
                         int(rng.uniform(10, 40)), size * 0.01, back_share=100)  # fmt: skip
    # The resolver forwards all day, and asks a little by itself at night.
    forwarded += rng.random(DAY_MIN) < 0.3
    busy = np.flatnonzero(forwarded > 0)
    rows.add(RESOLVER, UPSTREAM_DNS, base + busy, forwarded[busy] + 80, forwarded[busy] * 3,
             53, 17, rng)  # fmt: skip
    for server in (BACKUP, FILESERVER, WSUS):
        polls = np.flatnonzero(rng.random(DAY_MIN) < 0.06)
        rows.add(host_ip(server), NTP_SERVERS[0], base + polls, np.full(len(polls), 90),
                 np.full(len(polls), 90), 123, 17, rng)  # fmt: skip
    # The isolated segment works with its own file server in business hours.
    if weekday:
        for iso in ISOLATED:
            minutes = np.arange(9 * 60, 17 * 60)
            used = minutes[rng.random(len(minutes)) < 0.2]
            rows.add(iso, ISOLATED_SERVER, base + used, rng.lognormal(np.log(100_000), 1.2,
                     len(used)), rng.lognormal(np.log(300_000), 1.2, len(used)), 445, 6, rng)  # fmt: skip


def office(site: Site, seed: int, first_day: int, days: int) -> Rows:
    rng = np.random.default_rng(seed)
    rows = Rows()
    for day in range(first_day, first_day + days):
        for h in range(N_WORKSTATIONS):
            workstation_day(rows, site, rng, h, day)
        server_day(rows, site, rng, day)
        noise_day(rows, site, rng, day)
    return rows


# -- the behaviours -----------------------------------------------------------------------


@dataclass
class Incident:
    kind: str
    label: str  # the grid cell, e.g. "2 MB every 30 min"
    volume: float  # MB sent out in all
    spacing: int  # minutes between transfers (0: one go)
    hosts: tuple[int, ...]  # ips an alert may name
    spans: list[tuple[int, int]]  # local minutes since the epoch Monday, [start, end)
    peers: tuple[int, ...] = ()  # the other sides an alert about it may name


class _Incidents(list[Incident]):
    """Incidents in order; each takes the outside addresses drawn for it."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[int] = []

    def append(self, incident: Incident) -> None:
        incident.peers = (*incident.peers, *self.peers)
        self.peers = []
        super().append(incident)


def _one_connection(rows: Rows, rng: np.random.Generator, host: int, peer: int,
                    minutes: np.ndarray, out: np.ndarray, back: np.ndarray, port: int,
                    proto: int) -> None:  # fmt: skip
    rows.add(host, peer, minutes, out, back, port, proto, rng)
    rows.parts[-1]["host_port"][:] = int(rng.integers(49152, 65535))


def inject(rows: Rows, site: Site, rng: np.random.Generator, first_day: int) -> list[Incident]:
    # Each incident on its own host-day, no host with incidents on two
    # neighbouring days (a night's incident runs into the next day), so each
    # alert can be told to belong to one incident.
    taken: set[tuple[int, int]] = set()
    incidents = _Incidents()

    def slot(weekday: bool = False) -> tuple[int, int]:
        days = 5 if weekday else 7
        for _ in range(10_000):
            h, day = int(rng.integers(0, N_WORKSTATIONS)), first_day + int(rng.integers(0, days))
            if not {(h, day - 1), (h, day), (h, day + 1)} & taken:
                taken.add((h, day))
                return h, day
        raise RuntimeError("no free host-day left for an incident")

    def new_address() -> int:
        address = int(site.outside(1)[0])
        incidents.peers.append(address)
        return address

    for size in (0.5, 1, 2, 3):
        for spacing in (30, 60):
            h, day = slot()
            start = day * DAY_MIN + 22 * 60 + int(rng.uniform(-60, 60))
            dest, spans = new_address(), []
            for k in range(8 * 60 // spacing):
                t = start + k * spacing + int(rng.integers(-3, 4))
                transfer(rows, rng, host_ip(h), dest, t, int(rng.integers(1, 4)), size * MB)
                spans.append((t, t + 4))
            total = size * len(spans)
            incidents.append(Incident("low-and-slow", f"{size:g} MB every {spacing} min",
                                      total, spacing, (host_ip(h),), spans))  # fmt: skip
    for total in (5, 10, 20):
        for count in (4, 8):
            night = rng.random() < 0.5
            h, day = slot(weekday=not night)
            start = day * DAY_MIN + int(rng.uniform(60, 300) if night else rng.uniform(600, 960))
            span = int(rng.uniform(10, 20))
            one_net = rng.random() < 0.5
            first = int(site.outside(1)[0]) & ~0xFF
            for k in range(count):
                dest = first + 1 + k if one_net else new_address()
                incidents.peers.append(dest)
                t = start + int(k * span / count)
                transfer(rows, rng, host_ip(h), dest, t, 2, total * MB / count)
            incidents.append(Incident("spread", f"{total} MB over {count} addresses", total, 0,
                                      (host_ip(h),), [(start, start + span + 2)]))  # fmt: skip
    for total in (0.5, 1, 3, 12):
        h, day = slot()
        start = day * DAY_MIN + int(rng.uniform(60, 240))
        minutes = int(rng.uniform(20, 60))
        transfer(rows, rng, host_ip(h), new_address(), start, minutes, total * MB, port=0,
                 proto=1, back_share=1.0)  # fmt: skip
        incidents.append(Incident("icmp-tunnel", f"{total:g} MB", total, 0, (host_ip(h),),
                                  [(start, start + minutes)]))  # fmt: skip
    for total in (0.5, 1.5, 5):
        h, day = slot()
        start = day * DAY_MIN + int(rng.uniform(60, 240))
        minutes = int(rng.uniform(30, 120))
        transfer(rows, rng, host_ip(h), RESOLVER, start, minutes, total * MB, port=53, proto=17,
                 back_share=0.5)  # fmt: skip
        transfer(rows, rng, RESOLVER, UPSTREAM_DNS, start, minutes, total * MB, port=53,
                 proto=17, back_share=0.5)  # fmt: skip
        incidents.peers += [RESOLVER, UPSTREAM_DNS]
        incidents.append(Incident("dns-volume", f"{total:g} MB", total, 0, (host_ip(h),),
                                  [(start, start + minutes)]))  # fmt: skip
    for k, total in enumerate((5, 10, 15, 30)):
        day = first_day + k
        start = day * DAY_MIN + 60 + int(rng.uniform(0, 60))
        minutes = int(rng.uniform(20, 60))
        transfer(rows, rng, host_ip(BACKUP), new_address(), start, minutes, total * MB, port=443,
                 proto=17, back_share=0.05)  # fmt: skip
        incidents.append(Incident("udp443-backup-host", f"{total} MB", total, 0,
                                  (host_ip(BACKUP),), [(start, start + minutes)]))  # fmt: skip
    for total in (1, 5, 30):
        h, day = slot()
        iso = ISOLATED[int(rng.integers(0, 3))]
        start = day * DAY_MIN + int(rng.uniform(60, 300))
        minutes = int(rng.uniform(5, 10))
        _one_connection(rows, rng, iso, host_ip(h), start + np.arange(minutes),
                        np.full(minutes, total * MB / minutes), np.full(minutes, 20_000), 445,
                        6)  # fmt: skip
        later = start + minutes + int(rng.uniform(10, 50))
        share = rng.uniform(0.8, 1.1)
        transfer(rows, rng, host_ip(h), new_address(), later, minutes, total * MB * share)
        incidents.append(Incident("pivot", f"{total} MB", total, 0, (iso, host_ip(h)),
                                  [(start, start + minutes), (later, later + minutes)]))  # fmt: skip
    for hours in (2, 4, 8):
        for every in (5, 14):
            h, day = slot()
            start = day * DAY_MIN + 22 * 60 + int(rng.uniform(0, 60))
            beats = start + np.arange(0, hours * 60 + 1, every)
            _one_connection(rows, rng, host_ip(h), new_address(), beats,
                            rng.integers(200, 2_000, len(beats)),
                            rng.integers(200, 2_000, len(beats)), 443, 6)  # fmt: skip
            incidents.append(Incident("long-connection", f"{hours} h, every {every} min",
                                      0, every, (host_ip(h),), [(start, int(beats[-1]) + 1)]))  # fmt: skip
    for total in (10, 20, 40, 60):
        h, day = slot(weekday=True)
        start = day * DAY_MIN + int(rng.uniform(9.5 * 60, 16 * 60))
        minutes = int(rng.uniform(10, 30))
        transfer(rows, rng, host_ip(h), new_address(), start, minutes, total * MB)
        incidents.append(Incident("day-upload", f"{total} MB", total, 0, (host_ip(h),),
                                  [(start, start + minutes)]))  # fmt: skip
    # Last, so the draws of everything above stay as they were.
    for total, night in ((60, True), (120, False), (300, False)):
        h, day = slot(weekday=not night)
        start = day * DAY_MIN + int(rng.uniform(60, 240) if night else rng.uniform(600, 900))
        minutes = int(rng.uniform(20, 50))
        transfer(rows, rng, host_ip(h), new_address(), start, minutes, total * MB, port=3478,
                 proto=17, back_share=rng.uniform(1.0, 1.5))  # fmt: skip
        incidents.append(Incident("echo-upload", f"{total} MB {'at night' if night else 'by day'}",
                                  total, 0, (host_ip(h),), [(start, start + minutes)]))  # fmt: skip
    return list(incidents)


# -- the same traffic as a capture -------------------------------------------------------


def write_pcap(rows: Rows, path: Path) -> Path:
    """Each conversation-minute of ``rows`` as frames spread over its minute
    (from second 1 to 59, as the activity rows say), both directions."""
    import gen_traffic

    gen_traffic.MTU_FRAME = 64_000  # headers-only frames of large segments
    cols = {k: np.concatenate([p[k] for p in rows.parts]) for k in rows.parts[0]}
    texts: dict[int, str] = {}

    def text(ip: int) -> str:
        if ip not in texts:
            texts[ip] = ip_text(ip)
        return texts[ip]

    capture = gen_traffic.Capture()
    starts = (cols["minute"] - TZ_OFFSET_MIN) * MIN + EPOCH_NS + NS
    for i in range(len(starts)):
        capture.transfer(
            text(int(cols["host"][i])), text(int(cols["peer"][i])), start=int(starts[i]),
            seconds=58, bytes_out=int(cols["bytes_out"][i]), bytes_in=int(cols["bytes_in"][i]),
            sport=int(cols["host_port"][i]), dport=int(cols["peer_port"][i]),
            proto=int(cols["proto"][i]),
        )  # fmt: skip
    return capture.write(path)


def write_day_pcaps(all_rows: list[Rows], folder: Path) -> int:
    """The conversation-minutes of ``all_rows`` as one pcap per local day
    (``day-NNN.pcap``, NNN the day since the epoch Monday), each file's mtime
    an hour after its day ends (as a rotated capture's); the last day's end."""
    import gen_traffic

    gen_traffic.MTU_FRAME = 64_000
    cols = {k: np.concatenate([p[k] for r in all_rows for p in r.parts])
            for k in all_rows[0].parts[0]}  # fmt: skip
    day_of = cols["minute"] // DAY_MIN
    folder.mkdir(parents=True, exist_ok=True)
    texts: dict[int, str] = {}

    def text(ip: int) -> str:
        if ip not in texts:
            texts[ip] = ip_text(ip)
        return texts[ip]

    last_end = 0
    for day in np.unique(day_of).tolist():
        at = np.flatnonzero(day_of == day)
        capture = gen_traffic.Capture()
        starts = (cols["minute"][at] - TZ_OFFSET_MIN) * MIN + EPOCH_NS + NS
        for k, i in enumerate(at.tolist()):
            capture.transfer(
                text(int(cols["host"][i])), text(int(cols["peer"][i])), start=int(starts[k]),
                seconds=58, bytes_out=int(cols["bytes_out"][i]), bytes_in=int(cols["bytes_in"][i]),
                sport=int(cols["host_port"][i]), dport=int(cols["peer_port"][i]),
                proto=int(cols["proto"][i]),
            )  # fmt: skip
        path = capture.write(folder / f"day-{day:03d}.pcap")
        end = EPOCH_NS + ((day + 1) * DAY_MIN - TZ_OFFSET_MIN) * MIN
        written = end + 60 * MIN
        os.utime(path, ns=(written, written))
        last_end = max(last_end, end)
    return last_end


def nightly_alerts(folder: Path, policy, last_end: int, history: bool, work: Path) -> dict:
    """Each local day's alerts (day since the epoch Monday -> alerts) of a
    nightly run over ``folder`` from a fresh state, rules only."""
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    options = NightlyOptions(captures=str(folder), state=str(work / "state.db"),
                             report_dir=str(work / "reports"), history=history)  # fmt: skip
    t0 = time.perf_counter()
    result = run_nightly(options, policy, now_ns=last_end + 3 * 60 * MIN)
    print(f"nightly ({'with' if history else 'without'} history): {len(result.days)} days in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
    epoch_day = (EPOCH_NS // NS + TZ_OFFSET_MIN * 60) // 86_400
    out = {}
    for done in result.days:
        index = (done.day - dt.date(1970, 1, 1)).days - epoch_day
        out[index] = [a for a in done.alerts if a.rule_id != "always-on"]
    return out


# -- scoring ------------------------------------------------------------------------------


def minutes_of_alert(a) -> tuple[int, int]:
    return (
        int((a.start_ns - EPOCH_NS) // MIN + TZ_OFFSET_MIN),
        int((a.end_ns - EPOCH_NS) // MIN + TZ_OFFSET_MIN) + 1,
    )


def matches(a, inc: Incident) -> bool:
    """An alert about the incident: it names one of its hosts, the other side
    (if it names one) is one of the incident's, and the times overlap."""
    hosts = {ip_text(h) for h in inc.hosts}
    sides = hosts | {ip_text(p) for p in inc.peers}
    if a.source_ip not in hosts and a.destination_ip not in hosts:
        return False
    if a.destination_ip is not None and a.destination_ip not in sides:
        return False
    s, e = minutes_of_alert(a)
    return any(s < b + 10 and e > lo - 10 for lo, b in inc.spans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-weeks", type=int, default=4)
    ap.add_argument("--test-weeks", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show-false", action="store_true", help="print every false alert")
    ap.add_argument("--show-caught", action="store_true", help="print the alerts of incidents")
    ap.add_argument("--pcap", metavar="DIR", type=Path,
                    help="write each test week as a pcap here and scan it (the whole path)")
    ap.add_argument("--nightly", metavar="DIR", type=Path,
                    help="write every day (baseline and test weeks) as a pcap here and run the "
                    "nightly over them, rules only, with and without its history")
    ap.add_argument("--set", action="append", default=[], metavar="RULE.KEY=VALUE",
                    help="a rule setting for this run, e.g. low-and-slow-egress.min_bytes=10000000")
    args = ap.parse_args()
    settings = {rule: dict(keys) for rule, keys in RULE_SETTINGS.items()}
    for item in args.set:
        name, value = item.split("=", 1)
        rule, key = name.split(".", 1)
        settings.setdefault(rule, {})[key] = value
    extra = "".join(
        f"\n[rules.{rule}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
        for rule, keys in settings.items()
    )
    policy = parse_policy(POLICY + extra, "eval-adversary.toml")
    site = Site(np.random.default_rng(args.seed))
    t0 = time.perf_counter()
    base = office(site, args.seed * 1000, 0, 7 * args.baseline_weeks)
    if args.nightly is not None:  # rules only: no model to train
        return nightly_main(args, policy, site, base)
    traffic = host_traffic(base.activity(), policy)
    features = with_novelty(
        host_windows(traffic, policy), traffic, policy, settle_ns=DAY_MIN * MIN, baseline=True
    )
    model = EgressModel(percentile=99.5, random_state=args.seed).fit(
        features, destinations=destinations_of(traffic)
    )
    print(f"baseline: {model.n_host_days_} host-days, trained in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)  # fmt: skip
    found: dict[str, dict[tuple[str, str], list[tuple[int, int, frozenset[str]]]]] = {
        "rules": defaultdict(list), "rules + model": defaultdict(list)}  # fmt: skip
    false: dict[str, Counter[str]] = {"rules": Counter(), "rules + model": Counter()}
    benign_days = 0
    for w in range(args.test_weeks):
        rows, incidents, traffic, feats, benign = test_week(args, site, policy, w)
        benign_days += benign
        if args.pcap is not None:
            args.pcap.mkdir(parents=True, exist_ok=True)
            path = write_pcap(rows, args.pcap / f"week-{w}.pcap")
            # scan_captures alone does not know the baseline's destinations: as
            # `egress-detector scan` without --model.
            rules = [a for a in scan_captures([path], policy).alerts if a.rule_id != "always-on"]
            both = [a for a in scan_captures([path], policy, model=model).alerts
                    if a.rule_id != "always-on"]  # fmt: skip
        else:
            known = known_pairs(model, traffic)
            rules = [a for a in run_rules(ScanContext(policy, traffic, 10,
                                                      known_destinations=known,
                                                      baseline_users=baseline_users(model, traffic)))
                     if a.rule_id != "always-on"]  # fmt: skip
            verdict = score_scan(model, feats, traffic, policy, known)
            both = model_alerts(model, verdict, traffic, policy, rules)
        for name, alerts in (("rules", rules), ("rules + model", both)):
            used = [False] * len(alerts)
            for inc in incidents:
                hit = [k for k, a in enumerate(alerts) if matches(a, inc)]
                for k in hit:
                    used[k] = True
                ids = frozenset(alerts[k].rule_id for k in hit)
                if args.show_caught:
                    for k in hit:
                        print(f"{inc.kind} {inc.label} ({name}): {alerts[k].rule_id}: "
                              f"{alerts[k].message}", file=sys.stderr)  # fmt: skip
                found[name][(inc.kind, inc.label)].append((1 if hit else 0, len(hit), ids))
            for a, u in zip(alerts, used, strict=True):
                if not u:
                    false[name][a.rule_id] += 1
                    if args.show_false:
                        print(f"false ({name}, week {w}): {a.rule_id}: {a.message}",
                              file=sys.stderr)  # fmt: skip
    print(f"\n{args.test_weeks} test weeks, {benign_days:,} benign host-days; caught / injected "
          "(alerts per caught incident; rules that caught it)\n")  # fmt: skip
    print(f"{'behaviour':<22}{'parameters':<26}{'rules':>28}{'rules + model':>34}")
    for key in found["rules"]:
        cells = []
        for name in ("rules", "rules + model"):
            v = found[name][key]
            caught = [x for x in v if x[0]]
            per = f"{np.mean([x[1] for x in caught]):.1f}" if caught else "-"
            ids = ",".join(sorted(set().union(*[x[2] for x in caught]))) if caught else ""
            cells.append(f"{sum(x[0] for x in v)}/{len(v)} ({per}) {ids}")
        print(f"{key[0]:<22}{key[1]:<26}{cells[0]:>28}   {cells[1]}")
    for name in ("rules", "rules + model"):
        total = sum(false[name].values())
        print(f"\nfalse alerts, {name}: {total} ({1000 * total / benign_days:.2f} per 1,000 "
              f"benign host-days) {dict(false[name])}")  # fmt: skip


def test_week(args: argparse.Namespace, site: Site, policy, w: int) -> tuple:
    """Test week ``w``: its office rows with the incidents injected, the
    incidents, its host traffic and host windows, and its benign host-days (host-days without an
    incident, nor the day after one)."""
    first_day = 7 * (args.baseline_weeks + w)
    rng = np.random.default_rng(args.seed * 1000 + 1 + w)
    rows = office(site, args.seed * 1000 + 500 + w, first_day, 7)
    incidents = inject(rows, site, rng, first_day)
    traffic = host_traffic(rows.activity(), policy)
    feats = host_windows(traffic, policy)
    days = local_minutes(feats["window_start"]) // DAY_MIN
    host_days = set(zip(feats["host"], days, strict=True))
    bad = {(ip_text(h), (m // DAY_MIN) + d) for i in incidents for h in i.hosts
           for m, _ in i.spans for d in (0, 1)}  # fmt: skip
    return rows, incidents, traffic, feats, len(host_days - bad)


def nightly_main(args: argparse.Namespace, policy, site: Site, base: Rows) -> None:
    """--nightly: the test weeks as the nightly finishes them, day by day,
    with the state of the days before (history) and without."""
    weeks, all_incidents, benign_days = [base], [], 0
    first_test_day = 7 * args.baseline_weeks
    for w in range(args.test_weeks):
        rows, incidents, _traffic, _feats, benign = test_week(args, site, policy, w)
        benign_days += benign
        weeks.append(rows)
        all_incidents += incidents
    t0 = time.perf_counter()
    last_end = write_day_pcaps(weeks, args.nightly / "captures")
    print(f"{7 * (args.baseline_weeks + args.test_weeks)} day files written in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
    names = ("day alone", "with history")
    found: dict[str, dict[tuple[str, str], list[tuple[int, int, frozenset[str]]]]] = {
        n: defaultdict(list) for n in names}  # fmt: skip
    false: dict[str, Counter[str]] = {n: Counter() for n in names}
    learning: dict[str, int] = {}
    for name in names:
        by_day = nightly_alerts(args.nightly / "captures", policy, last_end,
                                name == "with history", args.nightly / name.replace(" ", "-"))  # fmt: skip
        learning[name] = sum(len(a) for d, a in by_day.items() if d < first_test_day)
        alerts = [a for d, a in sorted(by_day.items()) if d >= first_test_day for a in a]
        used = [False] * len(alerts)
        for inc in all_incidents:
            hit = [k for k, a in enumerate(alerts) if matches(a, inc)]
            for k in hit:
                used[k] = True
                if args.show_caught:
                    print(f"{inc.kind} {inc.label} ({name}): {alerts[k].rule_id}: "
                          f"{alerts[k].message}", file=sys.stderr)  # fmt: skip
            found[name][(inc.kind, inc.label)].append(
                (1 if hit else 0, len(hit), frozenset(alerts[k].rule_id for k in hit)))
        for a, u in zip(alerts, used, strict=True):
            if not u:
                false[name][a.rule_id] += 1
                if args.show_false:
                    print(f"false ({name}): {a.rule_id}: {a.message}", file=sys.stderr)
    print(f"\nnightly, rules only, {args.test_weeks} test weeks after {args.baseline_weeks} "
          f"baseline weeks, {benign_days:,} benign host-days; caught / injected (alerts per "
          "caught incident; rules that caught it)\n")  # fmt: skip
    print(f"{'behaviour':<22}{'parameters':<26}{names[0]:>28}   {names[1]}")
    for key in found[names[0]]:
        cells = []
        for name in names:
            v = found[name][key]
            caught = [x for x in v if x[0]]
            per = f"{np.mean([x[1] for x in caught]):.1f}" if caught else "-"
            ids = ",".join(sorted(set().union(*[x[2] for x in caught]))) if caught else ""
            cells.append(f"{sum(x[0] for x in v)}/{len(v)} ({per}) {ids}")
        print(f"{key[0]:<22}{key[1]:<26}{cells[0]:>28}   {cells[1]}")
    for name in names:
        total = sum(false[name].values())
        print(f"\nfalse alerts, nightly {name}: {total} ({1000 * total / benign_days:.2f} per "
              f"1,000 benign host-days) {dict(false[name])}; in the baseline weeks "
              f"{learning[name]}")  # fmt: skip


if __name__ == "__main__":
    main()
