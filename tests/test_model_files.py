"""Model files an attacker may have written (tests/gen_models.py) are refused by
scan, nightly and live at start: exit 2, one line on stderr naming the file and
the member, no traceback, no crash or hang inside scikit-learn, and little
memory (a decompression bomb is refused before it is decompressed). And
--model-sha256 pins the model an administrator trusts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gen_models import CASES, crc32_combine, crc32_of_zeros, write_all
from warm_cli import WarmCli

from detector.detect.model import file_sha256, load_model
from detector.detect.model.meta import nesting_depth, parse_meta
from detector.errors import ModelError
from detector.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = str(ROOT / "captures" / "sample-incident.pcap.gz")
POLICY = str(ROOT / "captures" / "sample-policy.toml")
PEAK_MB = 600
# Runs its arguments and writes their peak resident memory (kB) to argv[1]: a
# fresh process, so nothing but the command is measured.
MEASURE = """import resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc if rc >= 0 else 128 - rc)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all(tmp_path_factory.mktemp("models"))


def egress_detector() -> list[str]:
    script = Path(sys.executable).with_name("egress-detector")
    return [str(script)] if script.exists() else [sys.executable, "-m", "detector"]


def run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """The command's result and its peak memory in MB."""
    peak = tmp_path / "peak"
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(peak), *egress_detector(), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    return proc, int(peak.read_text()) / 1024


def refused(proc: subprocess.CompletedProcess[str], path: Path, member: str) -> str:
    """The one line of a refusal (exit 2) naming ``path`` and ``member``."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert f"model {path}" in lines[0] and member in lines[0], lines[0]
    return lines[0]


# The device baseline's cases are refused in this process (the command's
# one-line handling of a ModelError is the same for every member; a process each
# would cost the suite some 2 s a case).
BY_COMMAND = sorted(c for c in CASES if not c.startswith("devices-"))
IN_PROCESS = sorted(c for c in CASES if c.startswith("devices-"))


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmCli]:
    """The scan command in forks of one process that has imported it and
    scikit-learn and skops (tests/warm_cli.py): each run costs the refusal, not
    2 to 4 s of start-up. The copy's peak memory is its own, as the command's.
    test_the_good_model_scans_and_can_be_pinned starts scan for real."""
    with WarmCli(("detector.pipelines.scan", "detector.detect.model.file", "skops.io",
                  "sklearn.ensemble", "sklearn.tree")) as cli:  # fmt: skip
        yield cli


def warm_run(warm: WarmCli, args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """As run(), in a fork of the warm process: the result and the peak memory in MB."""
    ran = warm.run(args)
    proc = subprocess.CompletedProcess(args, ran.returncode, ran.stdout.decode(),
                                       ran.stderr.decode())  # fmt: skip
    return proc, ran.peak_mb


@pytest.mark.parametrize("case", BY_COMMAND)
def test_scan_refuses_a_hostile_model_file(models, case, warm):
    path = models[case]
    proc, peak = warm_run(warm, ["scan", "--policy", POLICY, "--model", str(path), SAMPLE])
    line = refused(proc, path, CASES[case].member)
    assert line.startswith("egress-detector: error: model ")
    assert peak < PEAK_MB, f"{case}: {peak:.0f} MB while refusing"


@pytest.mark.parametrize("case", IN_PROCESS)
def test_a_hostile_device_baseline_is_refused_in_one_line(models, case):
    path = models[case]
    with pytest.raises(ModelError) as caught:
        load_model(path, load_policy(POLICY))
    line = str(caught.value)
    assert "\n" not in line and f"model {path}" in line and CASES[case].member in line, line


def test_the_good_model_scans_and_can_be_pinned(models, tmp_path, warm):
    good = models["good"]
    digest = file_sha256(good)
    proc, _ = run(["scan", "--policy", POLICY, "--model", str(good), "--model-sha256",
                   digest.upper(), "--format", "jsonl", SAMPLE], tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the sample's alerts
    assert '"model"' in proc.stdout  # the model's verdict joined the rule alerts
    # Another file where the pinned one was: refused before it is parsed.
    other = models["unknown-key"]
    proc, _ = warm_run(warm, ["scan", "--policy", POLICY, "--model", str(other), "--model-sha256",
                              digest, SAMPLE])  # fmt: skip
    line = refused(proc, other, "SHA-256")
    assert f"not the pinned {digest} (--model-sha256)" in line
    # Not a SHA-256; a pin without a model: usage errors.
    proc, _ = warm_run(warm, ["scan", "--model", str(good), "--model-sha256", "abc", SAMPLE])
    assert proc.returncode == 2 and "is not a SHA-256 (64 hexadecimal digits)" in proc.stderr
    proc, _ = warm_run(warm, ["scan", "--model-sha256", digest, SAMPLE])
    assert proc.returncode == 2 and "give it with --model FILE" in proc.stderr


def test_nightly_refuses_a_hostile_model_at_start(models, tmp_path):
    path = models["child-index"]  # a segmentation fault in sklearn's apply, once
    captures = tmp_path / "captures"
    captures.mkdir()
    base = ["nightly", "--captures", str(captures), "--policy", POLICY,
            "--state", str(tmp_path / "state.db"), "--report-dir", str(tmp_path / "reports")]  # fmt: skip
    proc, _ = run([*base, "--model", str(path)], tmp_path)
    assert "tree 0, node 0: left child 1,000,000,000 is outside" in refused(proc, path,
                                                                            "forest.skops")  # fmt: skip
    assert not (tmp_path / "state.db").exists() and not (tmp_path / "reports").exists()
    # --learn rewrites the model file: it cannot be pinned.
    proc, _ = run([*base, "--model", str(models["good"]), "--learn", "--model-sha256",
                   file_sha256(models["good"])], tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "which --learn rewrites" in proc.stderr


def test_live_refuses_a_hostile_model_at_start(models, tmp_path):
    path = models["cycle"]  # sklearn's apply would loop for ever
    proc, _ = run(["live", "-r", "-", "--policy", POLICY, "--model", str(path)], tmp_path)
    assert "left child 0 is not a later node (a loop)" in refused(proc, path, "forest.skops")


# -- the pieces -------------------------------------------------------------------------


def test_nesting_is_measured_without_recursion_and_strings_do_not_count():
    assert nesting_depth(b'{"a": [1, {"b": "[[[[{{"}], "c": "\\"]"}') == 3
    assert nesting_depth(b"[" * 1_000_000) == 1_000_000
    # An unclosed string runs to the end; escaped quotes in it do not restart it
    # (2 MB of them: a quadratic scan would show in --durations, not a timed assert).
    assert nesting_depth(b'["' + b'\\"' * 1_000_000) == 1
    with pytest.raises(Exception, match="nested 40 levels deep"):
        parse_meta(b"[" * 40 + b"]" * 40)
    with pytest.raises(Exception, match="key 'a' twice"):
        parse_meta(b'{"a": 1, "a": 2}')


def test_the_bombs_checksums_are_zlibs():
    """The zip bombs' CRC-32s are worked out, not read off the zeros
    (gen_models.crc32_of_zeros): zlib's own over the bytes for lengths short of,
    at and past the 16 MiB piece, and after a prefix."""
    import zlib

    for zeros, crc in [(0, 0), (1, 0), (5, 123), (1 << 24, 7), ((1 << 24) + 3, 0xFFFFFFFF),
                       ((5 << 24) + 12_345, zlib.crc32(b"\x93NUMPY"))]:  # fmt: skip
        assert crc32_of_zeros(zeros, crc) == zlib.crc32(bytes(zeros), crc), (zeros, crc)
    for a, b in [(b"", b"x"), (b"hello", b" world"), (b"x" * 1000, bytes(range(256)) * 300)]:
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_a_refusal_is_one_line_whatever_the_file_says(models, tmp_path):
    import zipfile

    from gen_models import read_members, write_members

    members = read_members(models["good"])
    members["forest.skops\nsecond line"] = b""
    path = tmp_path / "odd.model"
    write_members(path, members)
    with pytest.raises(ModelError) as caught:
        load_model(path)
    assert "\n" not in str(caught.value) and "forest.skops\\x0asecond line" in str(caught.value)
    with zipfile.ZipFile(models["good"]) as archive:
        assert sorted(archive.namelist()) == [
            "devices.npz", "forest.skops", "history.npz", "meta.json"
        ]  # fmt: skip
