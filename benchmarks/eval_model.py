"""Labelled evaluation of the isolation-forest model against simple baselines.

A small office (Asia/Taipei, Mon–Fri 08:30–17:30) of 20 hosts is generated at
the per-minute activity level (the columns of detector.flows.activity), with
numpy: 16 workstations with their own daily rhythms (arrival, lunch, leaving,
some left on at night with background chatter, web browsing to a popular pool
and new sites, file uploads to cloud services, video calls, weekly OS updates,
file-server traffic), a backup server uploading 0.3–0.8 GB every night to an
allowlisted destination, a file server, an update server downloading every
night and a printer.

Baseline: ``--baseline-weeks`` (4) weeks, to train on. Test: ``--test-weeks``
(8) further weeks, each scanned on its own (as a weekly scan would be), with
incidents injected on workstation host-days:

* ``offhours-exfil``: the modelled incident, 20 / 50 / 200 MB to a new outside
  address in 5–15 minutes between 00:30 and 05:00;
* ``drip``: 5 MB a night for five nights (Mon–Fri nights) to one new address,
  each in 3–8 minutes between 22:00 and 05:00 (counted per night);
* ``burst-new-dest``: 20 / 50 / 200 MB in 5–20 minutes during business hours to
  a new outside address;
* ``new-host``: a host not in the baseline, an ordinary workstation day plus a
  20 / 100 MB business-hours upload to a new address.

Every scan runs the real path: ``host_traffic`` → ``host_windows`` → rules (with
the model's known destinations) → ``score_scan`` → ``model_alerts``. An incident
is detected when an alert of the detector names its host and overlaps its time
(± one window). Every other alert is false; false alerts are counted per
1,000 benign host-days (host-days with traffic and no incident).

    python benchmarks/eval_model.py                 # about 2 minutes
    python benchmarks/eval_model.py --test-weeks 16 --seed 2
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from detector.detect.model import (
    EgressModel,
    ModelVerdict,
    baseline_users,
    destinations_of,
    known_pairs,
    model_alerts,
    score_scan,
    with_novelty,
)
from detector.detect.rules import ScanContext, run_rules
from detector.features.hosts import host_traffic, host_windows
from detector.flows.activity import ACTIVITY_COLUMNS
from detector.policy import parse_policy

NS = 1_000_000_000
MIN = 60 * NS
DAY_MIN = 1440
MB = 1_000_000
TZ_OFFSET_MIN = 8 * 60  # Asia/Taipei, no daylight saving time
EPOCH_MONDAY = np.datetime64("2026-01-05")  # a Monday (local)
EPOCH_NS = int(EPOCH_MONDAY.astype("datetime64[ns]").astype(np.int64))
V4 = np.uint64(0x0000FFFF00000000)

POLICY = """
[site]
name = "eval-office"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]

[allowlist]
destinations = ["198.51.100.25/32"]
"""

BACKUP_DEST = (198 << 24) | (51 << 16) | (100 << 8) | 25
N_WORKSTATIONS = 16
BACKUP, FILESERVER, WSUS, PRINTER = 16, 17, 18, 19
N_HOSTS = 20


def host_ip(i: int) -> int:
    return (10 << 24) | (8 << 16) | (10 << 8) | (1 + i)


@dataclass
class Site:
    """What stays the same week to week: hosts' traits and destination pools."""

    rng: np.random.Generator
    popular: np.ndarray = field(init=False)
    personal: np.ndarray = field(init=False)
    cloud: np.ndarray = field(init=False)
    meeting: np.ndarray = field(init=False)
    updates: np.ndarray = field(init=False)
    telemetry: np.ndarray = field(init=False)
    arrive: np.ndarray = field(init=False)
    leave: np.ndarray = field(init=False)
    left_on: np.ndarray = field(init=False)
    busy: np.ndarray = field(init=False)
    uploads: np.ndarray = field(init=False)
    calls: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        r = self.rng
        self.popular = self.outside(400)
        self.personal = self.outside(N_HOSTS * 30).reshape(N_HOSTS, 30)
        self.cloud = self.outside(40)  # a storage service answers from many addresses
        self.meeting = self.outside(4)
        self.updates = self.outside(6)
        self.telemetry = self.outside(N_HOSTS * 4).reshape(N_HOSTS, 4)
        self.arrive = r.normal(8 * 60 + 40, 20, N_HOSTS)  # local minute of day
        self.leave = r.normal(17 * 60 + 50, 30, N_HOSTS)
        self.left_on = r.random(N_HOSTS) < 0.35
        self.busy = r.uniform(0.3, 0.7, N_HOSTS)  # share of present minutes with browsing
        self.uploads = r.uniform(0.2, 1.5, N_HOSTS)  # cloud uploads a day
        self.calls = r.uniform(0.0, 0.5, N_HOSTS)  # chance of a video call a day

    def outside(self, n: int) -> np.ndarray:
        # 1.0.0.0–99.255.255.255 without 10/8: all external under the policy.
        ips = self.rng.integers(1 << 24, 100 << 24, n)
        return np.where((ips >> 24) == 10, ips + (1 << 24), ips).astype(np.int64)


class Rows:
    """Per-minute conversation rows, appended in chunks."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(
        self,
        host: np.ndarray | int,
        peer: np.ndarray | int,
        minute: np.ndarray,
        out: np.ndarray,
        back: np.ndarray,
        port: np.ndarray | int = 443,
        proto: int = 6,
        rng: np.random.Generator | None = None,
    ) -> None:
        n = len(minute)
        if n == 0:
            return
        r = rng or np.random.default_rng(0)
        out = np.maximum(np.asarray(out, dtype=np.int64), 60)
        back = np.maximum(np.asarray(back, dtype=np.int64), 60)
        self.parts.append(
            {
                "host": np.broadcast_to(np.asarray(host, dtype=np.int64), (n,)).copy(),
                "peer": np.broadcast_to(np.asarray(peer, dtype=np.int64), (n,)).copy(),
                "host_port": r.integers(49152, 65535, n),
                "peer_port": np.broadcast_to(np.asarray(port, dtype=np.int64), (n,)).copy(),
                "proto": np.full(n, proto, dtype=np.int64),
                "minute": np.asarray(minute, dtype=np.int64),
                "bytes_out": out,
                "bytes_in": back,
            }
        )

    def activity(self) -> dict[str, np.ndarray]:
        cols = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        n = len(cols["minute"])
        start = (cols["minute"] - TZ_OFFSET_MIN) * MIN + EPOCH_NS
        packets_out = cols["bytes_out"] // 1200 + 1
        packets_in = cols["bytes_in"] // 1200 + 1
        zeros = np.zeros(n, dtype=np.uint64)
        activity = {
            "a_hi": zeros,
            "a_lo": V4 | cols["host"].astype(np.uint64),
            "b_hi": zeros,
            "b_lo": V4 | cols["peer"].astype(np.uint64),
            "a_port": cols["host_port"].astype(np.uint16),
            "b_port": cols["peer_port"].astype(np.uint16),
            "proto": cols["proto"].astype(np.uint8),
            "vlan": np.zeros(n, dtype=np.uint16),
            "bin_start_ns": start,
            "packets_ab": packets_out.astype(np.uint64),
            "bytes_ab": cols["bytes_out"].astype(np.uint64),
            "packets_ba": packets_in.astype(np.uint64),
            "bytes_ba": cols["bytes_in"].astype(np.uint64),
            "first_ns": start + 1 * NS,
            "last_ns": start + 59 * NS,
        }
        assert tuple(activity) == ACTIVITY_COLUMNS
        return activity


def transfer(
    rows: Rows,
    rng: np.random.Generator,
    host: int,
    peer: int,
    start: int,
    minutes: int,
    total: float,
    port: int = 443,
    proto: int = 6,
    back_share: float = 0.02,
) -> None:
    """``total`` bytes out spread over ``minutes`` minutes from local minute ``start``."""
    m = start + np.arange(max(minutes, 1))
    weights = rng.uniform(0.7, 1.3, len(m))
    out = np.ceil(total * weights / weights.sum())  # at least ``total`` in all
    rows.add(host, peer, m, out, out * back_share, port, proto, rng)
    rows.parts[-1]["host_port"][:] = rng.integers(49152, 65535)  # one conversation


def workstation_day(
    rows: Rows,
    site: Site,
    rng: np.random.Generator,
    h: int,
    day: int,
    ip: int | None = None,
    present: bool | None = None,
) -> None:
    ip = host_ip(h) if ip is None else ip
    base = day * DAY_MIN
    weekday = day % 7 < 5
    if present is None:
        present = rng.random() < (0.93 if weekday else 0.05)
    on_at_night = site.left_on[h] and rng.random() < 0.8
    if on_at_night:  # background chatter all night: telemetry, keepalives
        m = base + np.flatnonzero(rng.random(DAY_MIN) < 0.12)
        peers = site.telemetry[h][rng.integers(0, 4, len(m))]
        rows.add(
            ip,
            peers,
            m,
            rng.lognormal(np.log(1500), 0.8, len(m)),
            rng.lognormal(np.log(3000), 0.8, len(m)),
            443,
            6,
            rng,
        )
    if not present:
        return
    arrive = int(site.arrive[h] + rng.normal(0, 15)) if weekday else int(rng.uniform(600, 840))
    leave = (
        int(site.leave[h] + rng.normal(0, 25)) if weekday else arrive + int(rng.uniform(60, 240))
    )
    span = np.arange(arrive, leave)
    lunch = (span >= 720) & (span < 780)
    p = np.where(lunch, site.busy[h] * 0.3, site.busy[h])
    active = span[rng.random(len(span)) < p]
    k = rng.integers(1, 4, len(active))
    m = np.repeat(active, k)
    n = len(m)
    which = rng.random(n)
    zipf = np.minimum(rng.zipf(1.3, n) - 1, len(site.popular) - 1)
    peers = np.where(
        which < 0.85,
        site.popular[zipf],
        np.where(which < 0.96, site.personal[h][rng.integers(0, 30, n)], site.outside(n)),
    )
    back = rng.lognormal(np.log(120_000), 1.4, n)
    out = back * rng.lognormal(np.log(0.06), 0.8, n) + 800
    rows.add(ip, peers, base + m, out, back, 443, 6, rng)
    # File server: internal traffic, both directions.
    fs = active[rng.random(len(active)) < 0.15]
    rows.add(
        ip,
        host_ip(FILESERVER),
        base + fs,
        rng.lognormal(np.log(200_000), 1.5, len(fs)),
        rng.lognormal(np.log(600_000), 1.5, len(fs)),
        445,
        6,
        rng,
    )
    # Uploads to cloud storage (mail attachments, shared documents).
    for _ in range(rng.poisson(site.uploads[h])):
        size = min(rng.lognormal(np.log(2 * MB), 1.1), 60 * MB)
        rate = rng.uniform(2e6, 10e6) / 8  # bytes per second
        minutes = int(np.ceil(size / rate / 60))
        transfer(
            rows,
            rng,
            ip,
            int(site.cloud[rng.integers(0, len(site.cloud))]),
            base + int(rng.integers(arrive, max(leave - minutes, arrive + 1))),
            minutes,
            size,
        )
    # Video calls: steady upload and download to a meeting service over UDP.
    if rng.random() < site.calls[h]:
        minutes = int(rng.uniform(20, 60))
        start = base + int(rng.integers(arrive, max(leave - minutes, arrive + 1)))
        up = rng.uniform(0.3e6, 1.0e6) / 8 * 60  # bytes per minute
        transfer(
            rows,
            rng,
            ip,
            int(site.meeting[rng.integers(0, 4)]),
            start,
            minutes,
            up * minutes,
            3478,
            17,
            back_share=1.5,
        )
    # Weekly OS update: a big download.
    if rng.random() < 1 / 7:
        size = rng.uniform(50, 500) * MB
        start = base + int(rng.integers(arrive, leave))
        transfer(
            rows,
            rng,
            ip,
            int(site.updates[rng.integers(0, 6)]),
            start,
            10,
            size * 0.01,
            back_share=100,
        )


def server_day(rows: Rows, site: Site, rng: np.random.Generator, day: int) -> None:
    base = day * DAY_MIN
    # Backup: 0.3–0.8 GB a night from about 01:00 to the allowlisted service.
    size = rng.uniform(300, 800) * MB
    transfer(
        rows,
        rng,
        host_ip(BACKUP),
        BACKUP_DEST,
        base + 60 + int(rng.integers(0, 15)),
        int(rng.uniform(30, 60)),
        size,
    )
    m = base + np.flatnonzero(rng.random(DAY_MIN) < 0.05)
    rows.add(
        host_ip(BACKUP),
        site.telemetry[BACKUP][0],
        m,
        rng.lognormal(7, 0.5, len(m)),
        rng.lognormal(7.5, 0.5, len(m)),
        443,
        6,
        rng,
    )
    # File server: a little outside traffic (time, updates), all day.
    m = base + np.flatnonzero(rng.random(DAY_MIN) < 0.08)
    rows.add(
        host_ip(FILESERVER),
        site.telemetry[FILESERVER][rng.integers(0, 4, len(m))],
        m,
        rng.lognormal(7, 0.6, len(m)),
        rng.lognormal(8, 0.6, len(m)),
        123,
        17,
        rng,
    )
    # Update server: nightly downloads at 02:00, small requests all day.
    transfer(
        rows,
        rng,
        host_ip(WSUS),
        int(site.updates[rng.integers(0, 6)]),
        base + 120,
        int(rng.uniform(10, 40)),
        rng.uniform(1, 10) * MB,
        back_share=rng.uniform(20, 100),
    )
    m = base + np.flatnonzero(rng.random(DAY_MIN) < 0.1)
    rows.add(
        host_ip(WSUS),
        site.updates[rng.integers(0, 6, len(m))],
        m,
        rng.lognormal(8, 0.5, len(m)),
        rng.lognormal(9, 0.8, len(m)),
        443,
        6,
        rng,
    )
    # Printer: a status ping to its vendor now and then, jobs from the file server.
    m = base + np.flatnonzero(rng.random(DAY_MIN) < 0.01)
    rows.add(
        host_ip(PRINTER),
        site.telemetry[PRINTER][0],
        m,
        rng.lognormal(6, 0.3, len(m)),
        rng.lognormal(6, 0.3, len(m)),
        443,
        6,
        rng,
    )


def week(site: Site, seed: int, first_day: int, days: int = 7) -> Rows:
    rng = np.random.default_rng(seed)
    rows = Rows()
    for day in range(first_day, first_day + days):
        for h in range(N_WORKSTATIONS):
            workstation_day(rows, site, rng, h, day)
        server_day(rows, site, rng, day)
    return rows


@dataclass
class Incident:
    kind: str
    size_mb: float
    host: int  # an ip
    spans: list[tuple[int, int]]  # local minutes since EPOCH_MONDAY, [start, end)
    days: set[int]


def inject(
    rows: Rows, site: Site, rng: np.random.Generator, first_day: int, reps: int
) -> list[Incident]:
    """Incidents on distinct workstation weekdays of one test week."""
    slots = [(h, first_day + d) for h in range(N_WORKSTATIONS) for d in range(5)]
    order = rng.permutation(len(slots))
    taken: set[int] = set()
    incidents: list[Incident] = []

    def slot() -> tuple[int, int]:
        for i in order:
            if slots[i][0] not in taken:
                h, day = slots[int(i)]
                taken.add(h)
                return h, day
        raise RuntimeError("not enough host slots for the incidents")

    for _ in range(reps):
        for size in (20, 50, 200):
            h, day = slot()
            start = day * DAY_MIN + int(rng.uniform(30, 300))
            minutes = int(rng.uniform(5, 15))
            transfer(rows, rng, host_ip(h), int(site.outside(1)[0]), start, minutes, size * MB)
            incidents.append(
                Incident("offhours-exfil", size, host_ip(h), [(start, start + minutes)], {day})
            )
        for size in (20, 50, 200):
            h, day = slot()
            start = day * DAY_MIN + int(rng.uniform(9.5 * 60, 16.5 * 60))
            minutes = int(rng.uniform(5, 20))
            transfer(rows, rng, host_ip(h), int(site.outside(1)[0]), start, minutes, size * MB)
            incidents.append(
                Incident("burst-new-dest", size, host_ip(h), [(start, start + minutes)], {day})
            )
        h, _ = slot()
        dest = int(site.outside(1)[0])
        for night in range(5):
            day = first_day + night
            start = day * DAY_MIN + 22 * 60 + int(rng.uniform(0, 7 * 60))
            minutes = int(rng.uniform(3, 8))
            transfer(rows, rng, host_ip(h), dest, start, minutes, 5 * MB)
            local_day = start // DAY_MIN
            incidents.append(
                Incident("drip", 5, host_ip(h), [(start, start + minutes)], {local_day})
            )
        for size in (20, 100):
            day = first_day + int(rng.integers(0, 5))
            ip = host_ip(200 + len(incidents))
            template = int(rng.integers(0, N_WORKSTATIONS))
            workstation_day(rows, site, rng, template, day, ip=ip, present=True)
            start = day * DAY_MIN + int(rng.uniform(9.5 * 60, 16.5 * 60))
            minutes = int(rng.uniform(5, 20))
            transfer(rows, rng, ip, int(site.outside(1)[0]), start, minutes, size * MB)
            incidents.append(Incident("new-host", size, ip, [(start, start + minutes)], {day}))
    return incidents


# -- detectors ----------------------------------------------------------------------


def ip_text(ip: int) -> str:
    return ".".join(str((ip >> s) & 255) for s in (24, 16, 8, 0))


def local_minutes(ts: pd.Series) -> np.ndarray:
    ns = pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8
    return (ns - EPOCH_NS) // MIN + TZ_OFFSET_MIN


def merged(host: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[tuple[str, int, int]]:
    """Flagged windows of one host closer than one window → one alert."""
    out: list[tuple[str, int, int]] = []
    for i in np.lexsort((start, host)):
        if out and out[-1][0] == host[i] and start[i] <= out[-1][2] + 10:
            out[-1] = (out[-1][0], out[-1][1], max(out[-1][2], int(end[i])))
        else:
            out.append((str(host[i]), int(start[i]), int(end[i])))
    return out


def tally(
    alerts: list[tuple[str, int, int]], incidents: list[Incident]
) -> tuple[dict[tuple[str, float], list[int]], int]:
    """Per (kind, size): 1/0 for each incident caught; and the alerts that match none."""
    hits: dict[tuple[str, float], list[int]] = {}
    matched = [False] * len(alerts)
    for inc in incidents:
        caught = 0
        for j, (host, s, e) in enumerate(alerts):
            if host != ip_text(inc.host):
                continue
            if any(s < b + 10 and e > a - 10 for a, b in inc.spans):
                caught = 1
                matched[j] = True
        hits.setdefault((inc.kind, inc.size_mb), []).append(caught)
    return hits, sum(1 for m in matched if not m)


def busy_week(offices: int, seed: int, first_day: int) -> dict[str, np.ndarray]:
    """One week of ``offices`` × 20 hosts, each office its own /24, as activity."""
    parts = []
    for k in range(offices):
        site = Site(np.random.default_rng(seed + k))
        rows = week(site, seed * 1000 + 7000 + 100 * first_day + k, first_day)
        for part in rows.parts:
            for column in ("host", "peer"):  # hosts and the file server move to 10.8.(10 + k)
                inside = (part[column] >> 8) == ((10 << 16) | (8 << 8) | 10)
                part[column] = np.where(inside, part[column] + (k << 8), part[column])
        parts.extend(rows.parts)
    rows = Rows()
    rows.parts = parts
    return rows.activity()


def time_busy_site(policy, offices: int, seed: int) -> None:
    """Training on one week of a busy site, then scanning the next week."""
    activity = busy_week(offices, seed, 0)
    t0 = time.perf_counter()
    traffic = host_traffic(activity, policy)
    features = with_novelty(
        host_windows(traffic, policy), traffic, policy, settle_ns=DAY_MIN * MIN, baseline=True
    )
    t1 = time.perf_counter()
    model = EgressModel(random_state=seed).fit(features, destinations=destinations_of(traffic))
    t2 = time.perf_counter()
    print(
        f"busy site: {offices * N_HOSTS} hosts, 1 week, {len(activity['a_lo']):,} activity rows "
        f"→ {len(features):,} host windows in {t1 - t0:.1f} s; fit {t2 - t1:.1f} s "
        f"({model.n_hosts_} hosts, {len(model.history_.known_peer_lo):,} known destinations)"
    )
    activity = busy_week(offices, seed, 7)
    traffic = host_traffic(activity, policy)
    features = host_windows(traffic, policy)
    t3 = time.perf_counter()
    verdict = score_scan(model, features, traffic, policy)
    t4 = time.perf_counter()
    alerts = model_alerts(model, verdict, traffic, policy, [])
    t5 = time.perf_counter()
    days = len(
        set(zip(features["host"], local_minutes(features["window_start"]) // DAY_MIN, strict=True))
    )
    print(
        f"next week (no incidents): {len(features):,} windows scored in {t4 - t3:.1f} s; "
        f"{int(verdict.flagged.sum())} flagged → {len(alerts)} model alerts in {t5 - t4:.1f} s "
        f"({1000 * len(alerts) / days:.1f} per 1,000 of {days:,} host-days)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-weeks", type=int, default=4)
    ap.add_argument("--test-weeks", type=int, default=8)
    ap.add_argument(
        "--reps", type=int, default=2, help="incidents of each kind and size per test week"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--percentiles", default="99.5,99.9,99.97")
    ap.add_argument(
        "--fixed-mb", type=float, default=20.0, help="fixed threshold: MB out per window"
    )
    ap.add_argument("--z", type=float, default=4.0, help="per-host z-score threshold")
    ap.add_argument(
        "--show-false",
        action="store_true",
        help="print the false alerts of the model at the first percentile",
    )
    ap.add_argument(
        "--busy-offices",
        type=int,
        default=0,
        help="only time training on one week of this many 20-host offices",
    )
    args = ap.parse_args()
    policy = parse_policy(POLICY, "eval-policy.toml")
    if args.busy_offices:
        time_busy_site(policy, args.busy_offices, args.seed)
        return
    site = Site(np.random.default_rng(args.seed))

    t0 = time.perf_counter()
    base = week(site, args.seed * 1000, 0, 7 * args.baseline_weeks)
    traffic = host_traffic(base.activity(), policy)
    features = with_novelty(
        host_windows(traffic, policy), traffic, policy, settle_ns=DAY_MIN * MIN, baseline=True
    )
    t1 = time.perf_counter()
    model = EgressModel(percentile=99.5, random_state=args.seed).fit(
        features, destinations=destinations_of(traffic)
    )
    t2 = time.perf_counter()
    print(
        f"baseline: {len(features):,} host windows, {model.n_hosts_} hosts, "
        f"{model.n_host_days_} host-days; generated + featured in {t1 - t0:.1f} s, "
        f"model fitted in {t2 - t1:.2f} s",
        file=sys.stderr,
    )
    thresholds = ", ".join(f"p{float(p):g} {model.threshold_at(float(p)):.4f}"
                           for p in args.percentiles.split(","))  # fmt: skip
    print(
        f"forest threshold (out-of-sample score, among the {model.n_calibration_days_} of "
        f"{model.n_host_days_} baseline host-days above usual): {thresholds}"
    )
    log_out = np.log1p(features["bytes_out"].to_numpy(dtype=float))
    zstats = (
        pd.DataFrame({"host": features["host"], "v": log_out})
        .groupby("host")["v"]
        .agg(["mean", "std"])
    )

    percentiles = [float(p) for p in args.percentiles.split(",")]
    alone = "pre-condition alone"
    detectors = [f"model p{p:g}" for p in percentiles] + [
        alone,
        "rules",
        f"fixed {args.fixed_mb:g} MB",
        f"z-score ≥ {args.z:g}",
    ]
    hits: dict[str, dict[tuple[str, float], list[int]]] = {d: {} for d in detectors}
    false: dict[str, int] = dict.fromkeys(detectors, 0)
    benign_days = 0
    score_time = 0.0
    # What the forest's threshold does: candidate windows outside the
    # incidents and how many of them each percentile's threshold let through.
    benign_candidates = 0
    let_through = dict.fromkeys(percentiles, 0)
    for w in range(args.test_weeks):
        first_day = 7 * (args.baseline_weeks + w)
        rng = np.random.default_rng(args.seed * 1000 + 1 + w)
        rows = week(site, args.seed * 1000 + 500 + w, first_day)
        incidents = inject(rows, site, rng, first_day, args.reps)
        traffic = host_traffic(rows.activity(), policy)
        feats = host_windows(traffic, policy)
        days = local_minutes(feats["window_start"]) // DAY_MIN
        host_days = set(zip(feats["host"], days, strict=True))
        bad = {(ip_text(i.host), d) for i in incidents for d in i.days}
        benign = len(host_days - bad)
        benign_days += benign
        start = local_minutes(feats["window_start"])
        host = feats["host"].to_numpy(dtype=str)
        t = time.perf_counter()
        known = known_pairs(model, traffic)
        rules = [
            a
            for a in run_rules(ScanContext(policy, traffic, 10, known_destinations=known,
                                           baseline_users=baseline_users(model, traffic)))
            if a.rule_id != "always-on"
        ]
        verdict = score_scan(model, feats, traffic, policy, known)
        score_time += time.perf_counter() - t

        def as_tuple(a) -> tuple[str, int, int]:
            return (
                a.source_ip,
                int((a.start_ns - EPOCH_NS) // MIN + TZ_OFFSET_MIN),
                int((a.end_ns - EPOCH_NS) // MIN + TZ_OFFSET_MIN) + 1,
            )

        runs: dict[str, list[tuple[str, int, int]]] = {}
        candidate = verdict.candidate
        assert candidate is not None
        gates = dict.fromkeys(percentiles, candidate)
        # Windows that are not part of an incident (its host, its span ± one
        # window; a drip past midnight included): what false alerts come from.
        benign_window = np.ones(len(host), dtype=bool)
        for inc in incidents:
            for a, b in inc.spans:
                benign_window &= ~(
                    (host == ip_text(inc.host)) & (start < b + 10) & (start > a - 20)
                )
        benign_candidates += int((candidate & benign_window).sum())
        for p in percentiles:
            let_through[p] += int(
                (candidate & benign_window & (verdict.scores > model.threshold_at(p))).sum()
            )
        # The pre-condition alone, no forest: every candidate window flagged.
        only = ModelVerdict(verdict.features, verdict.scores, verdict.percentiles, candidate, 0.0)
        runs[alone] = [as_tuple(a) for a in model_alerts(model, only, traffic, policy, [])]
        for p in percentiles:
            # A candidate with a score beyond this percentile (as score_scan
            # flags), then the real alert path: episodes, allowlist, destinations.
            threshold = model.threshold_at(p)
            at_p = ModelVerdict(
                verdict.features,
                verdict.scores,
                verdict.percentiles,
                (verdict.scores > threshold) & candidate,
                threshold,
                candidate,
            )
            found = model_alerts(model, at_p, traffic, policy, [])
            runs[f"model p{p:g}"] = [as_tuple(a) for a in found]
            if args.show_false and p == percentiles[0]:
                _, wrong = tally(runs[f"model p{p:g}"], incidents)
                for a in found:
                    unmatched = tally([as_tuple(a)], incidents)[1]
                    if unmatched:
                        print(f"false (week {w}): {a.message}", file=sys.stderr)
                for inc in incidents:
                    if tally(runs[f"model p{p:g}"], [inc])[0][(inc.kind, inc.size_mb)][0]:
                        continue
                    a, b = inc.spans[0]
                    near = np.flatnonzero(
                        (host == ip_text(inc.host)) & (start < b) & (start + 10 > a)
                    )
                    for i in near:
                        print(
                            f"missed (week {w}) {inc.kind} {inc.size_mb:g} MB: score "
                            f"{verdict.scores[i]:.3f} (threshold {threshold:.3f}) candidate "
                            f"{gates[p][i]} "
                            f"out {feats['bytes_out'].iloc[i] / MB:.1f} MB unseen "
                            f"{verdict.features['unseen_destination_bytes'].iloc[i] / MB:.1f} MB "
                            f"hour {feats['hour_of_week'].iloc[i] % 24}",
                            file=sys.stderr,
                        )
        runs["rules"] = [as_tuple(a) for a in rules]
        fixed = feats["bytes_out"].to_numpy() >= args.fixed_mb * MB
        runs[f"fixed {args.fixed_mb:g} MB"] = merged(host[fixed], start[fixed], start[fixed] + 10)
        mean = zstats["mean"].reindex(host).to_numpy()
        std = zstats["std"].reindex(host).to_numpy()
        z = (np.log1p(feats["bytes_out"].to_numpy(dtype=float)) - mean) / np.maximum(std, 0.5)
        zflag = np.where(np.isnan(z), True, z >= args.z)  # unknown host: always flagged
        runs[f"z-score ≥ {args.z:g}"] = merged(host[zflag], start[zflag], start[zflag] + 10)
        for d in detectors:
            caught, wrong = tally(runs[d], incidents)
            for key, vals in caught.items():
                hits[d].setdefault(key, []).extend(vals)
            false[d] += wrong

    keys = sorted(next(iter(hits.values())), key=lambda k: (k[0], k[1]))
    width = max(14, *(len(d) + 2 for d in detectors))
    print(
        f"\n{len(keys)} incident kinds × sizes over {args.test_weeks} test weeks "
        f"({benign_days:,} benign host-days); detected / injected\n"
    )
    print(f"{'incident':<26}" + "".join(f"{d:>{width}}" for d in detectors))
    for key in keys:
        row = f"{key[0] + ' ' + format(key[1], 'g') + ' MB':<26}"
        for d in detectors:
            v = hits[d][key]
            row += f"{f'{sum(v)}/{len(v)}':>{width}}"
        print(row)
    print(f"{'false alerts':<26}" + "".join(f"{false[d]:>{width}}" for d in detectors))
    print(
        f"{'  per 1,000 host-days':<26}"
        + "".join(f"{1000 * false[d] / benign_days:>{width}.1f}" for d in detectors)
    )
    print(
        f"\nforest at work: {benign_candidates:,} candidate windows outside the incidents "
        f"(host sent over twice its usual and broke its record); the score threshold"
    )
    for p in percentiles:
        rejected = benign_candidates - let_through[p]
        share = 100 * rejected / max(benign_candidates, 1)
        print(
            f"  p{p:g} (threshold {model.threshold_at(p):.4f}) rejected {rejected:,} of them "
            f"({share:.1f} %), let {let_through[p]:,} through"
        )
    print(
        f"\nscoring + rules: {score_time / args.test_weeks:.2f} s per test week "
        f"({len(feats):,} windows)"
    )


if __name__ == "__main__":
    main()
