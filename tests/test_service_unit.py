"""The example unit and logrotate files of docs/ as an administrator installs
them: the unit parses (``systemd-analyze verify``, silent), asks for what
issue 22 says (an unprivileged user with CAP_NET_RAW and CAP_NET_ADMIN only,
``Type=notify`` with a watchdog, restart on failure, hardening) and its
command line is one the CLI takes; logrotate run on the example rotates a
live sensor's alert file without losing an alert; and as root, a sensor in a
network namespace captures as an unprivileged user with only those two
capabilities, as the unit runs it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_service import POLICY, documents, finish, incident, listening, live, raised, read_until

from detector.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "docs" / "systemd" / "egress-detector-live.service"
LOGROTATE = ROOT / "docs" / "logrotate" / "egress-detector"
INSTALLED = "/usr/local/bin/egress-detector"


def unit_settings(text: str) -> dict[str, list[str]]:
    """KEY → values of the unit's [Service] section (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", text)
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            settings.setdefault(key, []).append(value)
    return settings


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``text`` with ExecStart pointing at a
    program that exists here (verify checks that it is executable)."""
    unit = tmp_path / "egress-detector-live.service"
    unit.write_text(text.replace(INSTALLED, shutil.which("egress-detector") or sys.executable))
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd)",
)


@needs_systemd_analyze
def test_the_unit_parses_without_a_word_from_systemd_analyze(tmp_path):
    done = verify(tmp_path, UNIT.read_text())
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    # verify says what it ignores (and exits 0): silence is what a good file gets.
    broken = verify(tmp_path, UNIT.read_text().replace("ProtectSystem=", "ProtectSystm="))
    assert "Unknown key 'ProtectSystm'" in broken.stderr


def test_the_unit_asks_for_what_a_months_long_sensor_needs_and_no_more():
    settings = unit_settings(UNIT.read_text())

    def one(key: str) -> str:
        assert len(settings[key]) == 1, (key, settings[key])
        return settings[key][0]

    assert one("Type") == "notify"
    assert 60 <= int(one("WatchdogSec")) <= 600  # minutes, not seconds: a window's analysis
    assert int(one("TimeoutStartSec")) >= 300  # the first start compiles the kernels
    assert one("Restart") == "on-failure"
    assert one("User") not in ("", "root", "0")
    wanted = {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert set(one("AmbientCapabilities").split()) == wanted
    assert set(one("CapabilityBoundingSet").split()) == wanted
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes")):  # fmt: skip
        assert one(key) == value, key
    assert "AF_PACKET" in one("RestrictAddressFamilies").split()
    assert settings["SystemCallFilter"][0] == "@system-service"
    assert re.fullmatch(r"\d+[KMG]", one("MemoryMax"))
    assert "MemoryDenyWriteExecute" not in settings  # numba's JIT needs W then X
    # The command line is one live takes, and what it writes is writable there.
    argv = shlex.split(one("ExecStart"))
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert args.command == "live" and args.interface and args.user is None
    writable = one("ReadWritePaths").split()
    for path in (args.output, args.flows_out, args.jsonl, args.spool_dir):
        if path:
            assert any(path.startswith(where + "/") for where in writable), path
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"


@needs_systemd_analyze
def test_the_units_exposure_is_low(tmp_path):
    unit = tmp_path / "egress-detector-live.service"
    unit.write_text(UNIT.read_text())
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if "--offline" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert level is not None, done.stdout + done.stderr
    # 0 is locked down, 10 is exposed; a packet socket and the JIT cost what they cost.
    assert float(level.group(1)) <= 2.5, done.stdout


@pytest.mark.skipif(shutil.which("logrotate") is None,
                    reason="logrotate is not installed (Debian: apt-get install logrotate)")  # fmt: skip
def test_logrotate_with_the_example_loses_no_alert(tmp_path):
    data = incident(tmp_path).read_bytes()
    logs = tmp_path / "logs"
    logs.mkdir()
    alerts = logs / "alerts.jsonl"
    proc = live("--policy", str(POLICY), "--report-every", "1", "-o", str(alerts))
    assert proc.stdin is not None
    read_until(proc, "capturing on standard input")
    # The example, with this test's directory, owner and process.
    config = LOGROTATE.read_text()
    config = config.replace("/var/log/egress-detector", str(logs))
    config = re.sub(r"create (\d+) \S+ \S+", r"create \1", config)
    config = config.replace("systemctl kill -s HUP egress-detector-live.service",
                            f"kill -HUP {proc.pid}")  # fmt: skip
    assert f"kill -HUP {proc.pid}" in config and str(logs) in config
    (tmp_path / "logrotate.conf").write_text(config)
    third = len(data) // 3
    proc.stdin.write(data[:third])
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not alerts.exists() or not alerts.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "no alert before the rotation"
        time.sleep(0.1)
    rotate = subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "state"), str(tmp_path / "logrotate.conf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rotate.returncode == 0, rotate.stderr
    read_until(proc, "SIGHUP: reopened")
    proc.stdin.write(data[third:])
    err = finish(proc)
    assert proc.returncode == 1, err
    rotated = [p for p in logs.iterdir() if p.name.startswith("alerts.jsonl-")]
    assert len(rotated) == 1 and not rotated[0].name.endswith(".gz")  # delaycompress
    old, new = documents(rotated[0]), documents(alerts)
    assert old and new
    whole = tmp_path / "whole.jsonl"
    reference = live("--policy", str(POLICY), "-o", str(whole))
    reference.communicate(data, timeout=120)
    assert raised(old + new) == raised(documents(whole))


# -- as the unit runs it: not root, two capabilities -------------------------------------

NS = f"ed-svc-{os.getpid()}"
UNPRIVILEGED = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs"]
TWO_CAPS = "-all,+net_raw,+net_admin"
# uid 0 without CAP_DAC_OVERRIDE and the rest: a file it does not own is as closed to it
# as to anyone.
AS_ROOT = ["--clear-groups", "--no-new-privs"]


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def nobody_can_run_this_python() -> bool:
    """Whether user nobody can import the packages this interpreter runs with.

    A virtual environment under root's own home (mode 700, as a CI runner makes it) is
    unreadable to nobody; the test then runs the sensor as uid 0 with the same two
    capabilities and nothing else, which still proves the unit asks for enough.
    """
    probe = sh("setpriv", *UNPRIVILEGED, sys.executable, "-c", "import numpy, detector",
               check=False)  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)")
@pytest.mark.skipif(shutil.which("ip") is None or shutil.which("setpriv") is None,
                    reason="needs `ip netns` and setpriv (util-linux)")  # fmt: skip
def test_an_unprivileged_sensor_with_two_capabilities_captures_and_notifies():
    import tempfile

    from detector import _jit

    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    # pytest's tmp_path is root's alone: the user's own directory, as StateDirectory= makes.
    home = Path(tempfile.mkdtemp(prefix="ed-svc-"))
    try:
        ns = ["ip", "netns", "exec", NS]
        for key in ("all", "default"):
            sh(*ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        # v0 is the host's side (10.8.40.31, a route out through 10.8.40.1); the
        # mirror port v1 sees every frame v0 sends.
        sh("ip", "-n", NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        sh("ip", "-n", NS, "addr", "add", "10.8.40.31/24", "dev", "v0")
        for dev in ("v0", "v1", "lo"):
            sh("ip", "-n", NS, "link", "set", dev, "up")
        sh("ip", "-n", NS, "neigh", "add", "10.8.40.1", "lladdr", "02:00:00:00:00:01", "dev", "v0")
        sh("ip", "-n", NS, "route", "add", "default", "via", "10.8.40.1")
        # The user cannot write root's kernel cache: a copy of it (no compiling).
        cache = home / "cache"
        if _jit.CACHE_DIR.is_dir():
            shutil.copytree(_jit.CACHE_DIR, cache / _jit.CACHE_DIR.name)
        cache.mkdir(exist_ok=True)
        as_nobody = nobody_can_run_this_python()
        uid = 65534 if as_nobody else 0
        for path in [home, *home.rglob("*")]:
            os.chown(path, uid, uid)
        os.chmod(home, 0o755)
        address = str(home / "notify")
        server = listening(address)
        os.chmod(address, 0o777)
        alerts = home / "alerts.jsonl"
        proc = subprocess.Popen(
            [*ns, "setpriv", *(UNPRIVILEGED if as_nobody else AS_ROOT), f"--inh-caps={TWO_CAPS}",
             f"--ambient-caps={TWO_CAPS}", f"--bounding-set={TWO_CAPS}",
             sys.executable, "-m", "detector", "live", "-i", "v1", "--bpf", "udp port 9999",
             "--format", "jsonl", "-o", str(alerts), "--max-packets", "40"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000",
                 "EGRESS_DETECTOR_CACHE_DIR": str(cache), "HOME": "/nonexistent"},
        )  # fmt: skip
        messages = []
        while not messages or not messages[-1].startswith("READY=1"):
            try:
                messages.append(server.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, proc.communicate()[1].decode()
        # Whose the process is, as the kernel says.
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
        caps = int(re.search(r"^CapEff:\s+(\w+)", status, re.M).group(1), 16)  # type: ignore[union-attr]
        assert caps == (1 << 13) | (1 << 12)  # CAP_NET_RAW (13) and CAP_NET_ADMIN (12)
        sender = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  "for i in range(40): s.sendto(b'x' * 100, ('198.51.100.7', 9999))\n")  # fmt: skip
        sh(*ns, sys.executable, "-c", sender)
        _out, err = proc.communicate(timeout=120)
        text = err.decode()
        assert proc.returncode == 0, text
        assert "40 packets in" in text, text
    finally:
        if "proc" in locals() and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        sh("ip", "netns", "del", NS, check=False)
        shutil.rmtree(home, ignore_errors=True)
