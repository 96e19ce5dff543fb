"""Compile the kernels once, for the portable CPU, into a cache a package ships.

    python -m detector._jit_build DIR      # DIR/manifest.json and numba's cache files

``setup.py`` runs this when a wheel is built, so ``pip install`` of the package
brings its kernels compiled and the first run loads them (``detector/_jit.py``
says when the shipped cache fits and how it falls back when it does not).

Numba compiles a kernel once per argument types, whatever the data, so the
commands are run here on a few made-up packets, written as each capture format
the readers take: every kernel a command reads its input with (and each type it
is called with) lands in the cache. A kernel only an unusual input needs (a
capture format not written here) still compiles on the user's machine, with the
compile note, the first time it is needed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tempfile
from pathlib import Path


def _frames() -> list[tuple[int, bytes]]:
    """A few TCP and UDP packets between an inside host and documentation addresses."""
    from .capture.live import sample_frame

    start = 1_770_000_000 * 1_000_000_000  # 2026-02-02, a Monday
    items = []
    for i in range(60):
        frame = sample_frame(src="10.0.0.5", dst="203.0.113.7", sport=40000 + i % 6,
                             dport=443, payload=100 * (i % 4))  # fmt: skip
        items.append((start + i * 7_000_000_000, frame))
    return items


def write_pcap(path: Path, items: list[tuple[int, bytes]], compress: bool = False) -> None:
    out = io.BytesIO()
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ns, frame in items:
        seconds, rest = divmod(ns, 1_000_000_000)
        out.write(struct.pack("<IIII", seconds, rest // 1000, len(frame), len(frame)) + frame)
    data = out.getvalue()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_pcapng(path: Path, items: list[tuple[int, bytes]]) -> None:
    def block(kind: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        size = len(body) + 12
        return struct.pack("<II", kind, size) + body + struct.pack("<I", size)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out.append(block(1, struct.pack("<HHI", 1, 0, 65535)))  # Ethernet, microseconds
    for ns, frame in items:
        micros = ns // 1000
        body = struct.pack("<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF, len(frame), len(frame))
        out.append(block(6, body + frame))
    path.write_bytes(b"".join(out))


def exercise(work: Path) -> None:
    """Run each command over each capture format (errors and alerts are expected
    and ignored: the kernels ran by then)."""
    from .cli.main import main

    items = _frames()
    pcap, gz, ng = work / "a.pcap", work / "a.pcap.gz", work / "a.pcapng"
    write_pcap(pcap, items)
    write_pcap(gz, items, compress=True)
    write_pcapng(ng, items)
    # With isolated networks, scan and live also run the link-layer pass.
    policy = work / "isolated.toml"
    policy.write_text('[site]\ntimezone = "UTC"\n[networks]\ninternal = ["10.0.0.0/8"]\n'
                      'isolated = ["10.0.0.0/24"]\n')  # fmt: skip
    runs = [
        ["scan", "-q", str(pcap), str(gz), str(ng), "--format", "jsonl", "-o", str(work / "s")],
        ["scan", "-q", "--policy", str(policy), str(pcap), str(gz), str(ng), "--format", "jsonl",
         "-o", str(work / "i")],
        ["flows", "-q", str(pcap), "-o", str(work / "f.parquet")],
        ["flows", "-q", str(ng), "--format", "csv", "-o", str(work / "f.csv")],
        ["flows", "-q", "--bpf", "tcp port 443", str(pcap), "-o", str(work / "b.parquet")],
        ["train", "-q", str(pcap), "-o", str(work / "m.model")],
        ["live", "-q", "-r", str(pcap), "--format", "jsonl", "-o", str(work / "l.jsonl")],
        ["live", "-q", "-r", str(ng), "--format", "jsonl", "-o", str(work / "n.jsonl")],
        ["live", "-q", "--policy", str(policy), "-r", str(pcap), "--format", "jsonl", "-o",
         str(work / "li.jsonl")],
        ["carve", "-q", "--host", "10.0.0.5", "-o", str(work / "c.pcap"), str(pcap)],
    ]  # fmt: skip
    for argv in runs:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main(argv)
            except SystemExit:
                pass
            except Exception as exc:  # a command's failure must not stop the others
                print(f"_jit_build: {argv[0]}: {exc!r}", file=sys.__stderr__)


def ship(into: Path) -> int:
    """Copy the kernels this process has compiled into its cache (for the portable
    CPU: EGRESS_DETECTOR_BUILD_CACHE=1) to ``into``, with the manifest
    ``detector/_jit.py`` checks; the number of cache files."""
    from . import _jit

    portable_cpu = _jit.PORTABLE_CPU[0]
    if portable_cpu != _jit.CPU_NAME:
        raise SystemExit("_jit_build: the kernels were compiled for this machine's CPU only")
    files = sorted(p for p in _jit.KERNEL_CACHE_DIR.iterdir() if p.suffix in (".nbi", ".nbc"))
    into.mkdir(parents=True, exist_ok=True)
    digests = {}
    for path in files:
        blob = path.read_bytes()
        (into / path.name).write_bytes(blob)
        digests[path.name] = hashlib.sha256(blob).hexdigest()
    manifest = {
        "fingerprint": _jit.FINGERPRINT,
        "numba": _jit.numba.__version__,
        "cpu_name": _jit.PORTABLE_CPU[0],
        "cpu_features": _jit.PORTABLE_CPU[1],
        **_jit._platform(),
        "files": digests,
    }
    (into / _jit.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return len(files)


def build(into: Path) -> int:
    """Compile into a fresh cache, then ship its files to ``into``."""
    with tempfile.TemporaryDirectory(prefix="egress-jit-build-") as tmp:
        os.environ["EGRESS_DETECTOR_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["EGRESS_DETECTOR_BUILD_CACHE"] = "1"
        os.environ["EGRESS_DETECTOR_SHIPPED_CACHE"] = str(Path(tmp) / "none")
        from . import _jit

        if _jit.BOUNDSCHECK or not _jit.CACHE:
            raise SystemExit("_jit_build: the kernel cache is off (EGRESS_DETECTOR_BOUNDSCHECK?)")
        work = Path(tmp) / "work"
        work.mkdir()
        exercise(work)
        return ship(into)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m detector._jit_build DIR")
    count = build(Path(sys.argv[1]))
    print(f"_jit_build: {count} cache files in {sys.argv[1]}")
