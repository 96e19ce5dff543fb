"""The kernels a built package ships (detector/_jit.py, detector/_jit_build.py):
used when they fit this process, and when they do not (another numba, other
kernel sources, a damaged file) left alone, the kernels compiling as before."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from detector import _jit

ROOT = Path(__file__).resolve().parent.parent

# A child process: run one small kernel (ISO 8601 text of timestamps) and say
# what it made, whether numba compiled anything, and what _jit decided.
CHILD = r"""
import json, sys
import numpy as np
from numba.core import event

compiled = []


class Listener(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Listener())
from detector import _jit
from detector._kernels.timefmt import iso_utc
from detector.cli.console import say_compiling

say_compiling(5, what="test kernels")

ns = np.array(json.loads(sys.argv[1]), dtype=np.int64)
out = np.zeros((len(ns), 27), dtype=np.uint8)
iso_utc(ns, 6, out)
if len(sys.argv) > 2:  # ship what was compiled
    from detector._jit_build import ship

    ship(__import__("pathlib").Path(sys.argv[2]))
print(json.dumps({"text": [bytes(row).decode() for row in out], "compiled": compiled,
                  "cpu": _jit.CPU_NAME, "shipped": _jit.SHIPPED is not None,
                  "reason": _jit.SHIPPED_REASON}))
"""

# Times from before 1970 to 2262, with their text from numpy as the reference.
TIMES = [-86_400_000_001_000, 0, 1_770_000_000_123_456_789, 9_223_372_036_000_000_000]


def reference(ns: list[int]) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(np.array(ns, dtype="datetime64[ns]"), unit="us")]


def run(cache: Path, shipped: Path, *, build: bool = False, ship_into: Path | None = None) -> dict:
    env = {**os.environ, "EGRESS_DETECTOR_CACHE_DIR": str(cache),
           "EGRESS_DETECTOR_SHIPPED_CACHE": str(shipped), "PYTHONPATH": str(ROOT)}  # fmt: skip
    for name in ("EGRESS_DETECTOR_BOUNDSCHECK", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):
        env.pop(name, None)
    if build:
        env["EGRESS_DETECTOR_BUILD_CACHE"] = "1"
    argv = [sys.executable, "-c", CHILD, json.dumps(TIMES)]
    if ship_into is not None:
        argv.append(str(ship_into))
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout.splitlines()[-1]), "note": proc.stderr}


def manifest_of(shipped: Path) -> dict:
    return json.loads((shipped / _jit.MANIFEST).read_text())


def test_shipped_kernels_load_without_compiling_and_fall_back_when_foreign_or_damaged(tmp_path):
    expected = reference(TIMES)
    assert expected[2] == "2026-02-02T02:40:00.123456Z"  # by hand: 1,770,000,000 s after 1970
    shipped = tmp_path / "shipped"
    built = run(tmp_path / "build-cache", tmp_path / "none", build=True, ship_into=shipped)
    portable = _jit.portable_cpu()[0]  # x86-64-v3 where this machine has AVX2 and BMI2
    assert built["text"] == expected and built["cpu"] == portable
    manifest = manifest_of(shipped)
    assert manifest["numba"] == _jit.numba.__version__ and manifest["fingerprint"] == _jit.FINGERPRINT
    assert any(name.startswith("timefmt.iso_utc-") for name in manifest["files"])

    # A fresh user cache and the shipped one: loaded, nothing compiled.
    fresh = run(tmp_path / "user-cache", shipped)
    assert fresh == {"text": expected, "compiled": [], "cpu": portable, "shipped": True,
                     "reason": "", "note": ""}  # fmt: skip

    # Another numba's cache: not used; compiled for this machine, same text.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for name in manifest["files"]:
        (foreign / name).write_bytes((shipped / name).read_bytes())
    (foreign / _jit.MANIFEST).write_text(json.dumps({**manifest, "numba": "0.0.1"}))
    other = run(tmp_path / "cache-foreign", foreign)
    assert other["text"] == expected and "iso_utc" in other["compiled"]
    assert other["shipped"] is False and other["cpu"] == ""
    assert "numba 0.0.1" in other["reason"], other["reason"]
    assert other["note"].count("egress-detector: compiling the test kernels") == 1
    assert "the kernels shipped with it are not used: the kernels shipped were compiled with " \
        "numba 0.0.1" in other["note"], other["note"]  # fmt: skip

    # A damaged data file (its manifest unchanged): nothing copied, compiled, same text.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in manifest["files"]:
        blob = (shipped / name).read_bytes()
        (damaged / name).write_bytes(blob[:-40] + b"\x00" * 40 if name.endswith(".nbc") else blob)
    (damaged / _jit.MANIFEST).write_text(json.dumps(manifest))
    broken = run(tmp_path / "cache-damaged", damaged)
    assert broken["text"] == expected and "iso_utc" in broken["compiled"]
    assert broken["shipped"] is False and "damaged" in broken["reason"], broken["reason"]
    assert not list((tmp_path / "cache-damaged").rglob(".seeded-*"))  # nothing was copied


def write_manifest(into: Path, files: dict[str, bytes], **fields: str) -> dict:
    into.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (into / name).write_bytes(blob)
    manifest = {
        "fingerprint": _jit.FINGERPRINT, "numba": _jit.numba.__version__,
        "cpu_name": "generic", "cpu_features": "", **_jit._platform(),
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
    }  # fmt: skip
    manifest.update(fields)
    (into / _jit.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_shipped_fit_says_why_a_cache_does_not_fit(tmp_path):
    version = _jit.numba.__version__
    assert _jit.shipped_fit(tmp_path / "absent", _jit.FINGERPRINT, version) == (
        None, "this install has no compiled kernels")  # fmt: skip
    cases = [
        ({"numba": "0.1.0"}, f"compiled with numba 0.1.0, this is numba {version}"),
        ({"fingerprint": "0" * 16}, "compiled from other kernel sources"),
        ({"python": "2.7"}, "compiled for python 2.7, not "),
        ({"machine": "aarch64" if _jit._platform()["machine"] != "aarch64" else "x86_64"},
         "compiled for machine "),
        ({"cpu_name": "znver3"}, "compiled for CPU 'znver3'"),
    ]  # fmt: skip
    for fields, reason in cases:
        write_manifest(tmp_path / "c", {"a.nbi": b"x"}, **fields)
        manifest, why = _jit.shipped_fit(tmp_path / "c", _jit.FINGERPRINT, version)
        assert manifest is None and reason in why, (fields, why)
    assert _jit.cpu_lacks("x86-64-v3", {"avx": True, "avx2": False, "sse3": True}) == [
        "avx2", "bmi", "bmi2", "cx16", "f16c", "fma", "lzcnt", "movbe", "popcnt", "sahf",
        "sse4.1", "sse4.2", "ssse3", "xsave"]  # fmt: skip
    assert _jit.cpu_lacks("generic", {}) == [] and _jit.cpu_lacks("znver3", {}) == ["?"]
    write_manifest(tmp_path / "c", {"a.nbi": b"x"})
    manifest, why = _jit.shipped_fit(tmp_path / "c", _jit.FINGERPRINT, version)
    assert manifest is not None and why == ""
    (tmp_path / "c" / _jit.MANIFEST).write_text("{not json")
    manifest, why = _jit.shipped_fit(tmp_path / "c", _jit.FINGERPRINT, version)
    assert manifest is None and why.startswith(f"{tmp_path / 'c' / _jit.MANIFEST}: unreadable")


def test_seed_cache_copies_once_keeps_what_is_there_and_refuses_damage(tmp_path):
    files = {"k.f-1.py311.nbi": b"index", "k.f-1.py311.1.nbc": b"data"}
    shipped = tmp_path / "shipped"
    manifest = write_manifest(shipped, files)
    into = tmp_path / "cache"
    into.mkdir()
    (into / "k.f-1.py311.nbi").write_bytes(b"the user's own index")
    assert _jit.seed_cache(shipped, manifest, into) == ""
    assert (into / "k.f-1.py311.1.nbc").read_bytes() == b"data"
    assert (into / "k.f-1.py311.nbi").read_bytes() == b"the user's own index"
    (into / "k.f-1.py311.1.nbc").unlink()
    assert _jit.seed_cache(shipped, manifest, into) == ""  # done once: the marker says so
    assert not (into / "k.f-1.py311.1.nbc").exists()

    damaged = tmp_path / "damaged"
    manifest = write_manifest(damaged, files)
    (damaged / "k.f-1.py311.1.nbc").write_bytes(b"dat4")
    empty = tmp_path / "empty"
    why = _jit.seed_cache(damaged, manifest, empty)
    assert why == f"{damaged / 'k.f-1.py311.1.nbc'}: damaged (its hash differs from the manifest's)"
    assert not empty.exists()
    manifest = write_manifest(tmp_path / "odd", {"a.nbi": b"x"})
    manifest["files"] = {"../escape.nbi": manifest["files"]["a.nbi"]}
    assert "is not a cache file name" in _jit.seed_cache(tmp_path / "odd", manifest, empty)
