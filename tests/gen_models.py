"""Hostile model files, each crafted from a good one, for the loader's refusals
(tests/test_model_files.py).

Each case breaks one thing: a forest array (a child or feature index out of
range, a cycle, a NaN threshold, a node count short of the nodes), meta.json (an
unknown key or parameter, a missing key, deep nesting, a list where a mapping
belongs, wrong types, NaN), history.npz (wrong shapes, types, a missing array),
devices.npz (wrong type, shape, order, range, count, an extra array, missing
from a format 6 file) or the zip itself (decompression bombs, an extra, duplicated or oversized
member, another compression method, a lying size). Edits to history.npz,
devices.npz and forest.skops come with their checksum in meta.json updated, as anyone who
edits the file would do (with_meta_hash): the checksums are not what refuses
them.

    python tests/gen_models.py OUT_DIR   # good.model and one <case>.model per case

The good model is trained on synthetic host windows under
captures/sample-policy.toml (a small forest: a second or two), so a scan of the
bundled sample accepts it.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_POLICY = ROOT / "captures" / "sample-policy.toml"
ZONE = "Asia/Taipei"
GIB = 1 << 30
# The cards the bundled sample shows on its isolated segment: the good model's
# device baseline (a scan of the sample with it finds no new device).
SAMPLE_CARDS = ("02:08:0a:08:28:05", "02:08:0a:08:28:1f", "02:08:0a:08:28:20")

Members = dict[str, bytes]


# -- the good model ----------------------------------------------------------------------


def windows(days: int = 7, hosts: int = 4, seed: int = 0) -> pd.DataFrame:
    """Host windows of a quiet office (as tests/test_model.py's office, smaller)."""
    from detector.features import FEATURE_NAMES

    rng = np.random.default_rng(seed)
    starts = pd.date_range("2026-01-05", periods=days * 144, freq="10min", tz=ZONE)
    hour = starts.hour.to_numpy()
    day = (starts.day_of_week.to_numpy() < 5) & (hour >= 9) & (hour < 17)
    frames = []
    for h in range(hosts):
        n = len(starts)
        out = rng.lognormal(np.where(day, np.log(1e5), np.log(5e3)), 0.8).astype(np.int64)
        inn = out * rng.integers(2, 20, n)
        frame = pd.DataFrame({"host": f"10.8.10.{h + 1}", "window_start": starts})
        frame["window_end"] = frame["window_start"] + pd.Timedelta(minutes=10)
        frame = frame.assign(
            bytes_out=out, packets_out=out // 1000 + 1, bytes_in=inn, packets_in=inn // 1200 + 1,
            flows=rng.integers(1, 6, n), external_destinations=rng.integers(1, 4, n),
            external_ports=1, new_destinations=0, largest_upload=out // 2,
            upload_download_ratio=out / inn, internal_bytes=rng.integers(0, 100_000, n),
            internal_packets=rng.integers(0, 100, n), off_hours=(~day).astype(np.int64),
            hour_of_week=starts.day_of_week.to_numpy() * 24 + hour,
        )  # fmt: skip
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[["host", "window_start", "window_end",
                                                 *FEATURE_NAMES]]  # fmt: skip


def good_model(path: Path, policy_file: Path = SAMPLE_POLICY) -> Path:
    """Train a small model under ``policy_file`` and write it to ``path``."""
    from detector.detect.model import EgressModel, save_model
    from detector.policy import load_policy

    # Two outside addresses each host used: the history knows some destinations.
    pairs = pd.DataFrame({
        "host_hi": np.full(8, 0xFFFF, dtype=np.uint64),
        "host_lo": np.repeat(np.arange(0x0A080A01, 0x0A080A05, dtype=np.uint64), 2),
        "peer_hi": np.full(8, 0xFFFF, dtype=np.uint64),
        "peer_lo": np.tile(np.array([0xC6336419, 0xCB00710A], dtype=np.uint64), 4),
    })  # fmt: skip
    model = EgressModel(n_estimators=10, max_samples=256, random_state=1)
    model.fit(windows(), destinations=pairs, devices=SAMPLE_CARDS)
    save_model(model, path, load_policy(policy_file))
    return path


def read_members(path: Path) -> Members:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path: Path, members: Members) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


# -- a zip written by hand: sizes and methods as the attacker likes ----------------------


@dataclass
class Entry:
    name: str
    raw: bytes  # as stored (compressed with ``method``)
    method: int
    crc: int
    size: int  # the size written in the headers (the real one, unless it lies)


def stored(name: str, data: bytes) -> Entry:
    return Entry(name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data))


def deflated(name: str, data: bytes) -> Entry:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Entry(name, c.compress(data) + c.flush(), zipfile.ZIP_DEFLATED, zlib.crc32(data),
                 len(data))  # fmt: skip


ZERO_CHUNK = 1 << 24  # 16 MiB of zeros: the piece a zip bomb repeats


def _gf2_times(matrix: list[int], vector: int) -> int:
    """A 32x32 matrix over GF(2) (an int a column) times a 32-bit vector."""
    total, column = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[column]
        vector >>= 1
        column += 1
    return total


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """crc32(A + B) from crc1 = crc32(A), crc2 = crc32(B) and len(B): zlib's
    crc32_combine (crc32.c, the matrix version), which Python's zlib lacks. crc1
    goes past length2 zero bytes by squaring the one-zero-bit operator; then
    crc2 is added. Checked against zlib.crc32 in tests/test_model_files.py."""
    if length2 <= 0:
        return crc1
    zeros = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit (reflected polynomial)
    for _ in range(2):  # two zero bits, then four
        zeros = [_gf2_times(zeros, c) for c in zeros]
    while length2:  # one zero byte, then each round twice the last
        zeros = [_gf2_times(zeros, c) for c in zeros]
        if length2 & 1:
            crc1 = _gf2_times(zeros, crc1)
        length2 >>= 1
    return crc1 ^ crc2


def crc32_of_zeros(zeros: int, crc: int = 0) -> int:
    """zlib.crc32(bytes(zeros), crc) without reading the zeros (the hostile
    models' 4.2 GiB of them took 5.8 s): one 16 MiB piece's CRC, doubled."""
    pieces, rest = divmod(zeros, ZERO_CHUNK)
    piece_crc, piece_length = zlib.crc32(bytes(ZERO_CHUNK)), ZERO_CHUNK
    while pieces:
        if pieces & 1:
            crc = crc32_combine(crc, piece_crc, piece_length)
        pieces >>= 1
        if pieces:
            piece_crc = crc32_combine(piece_crc, piece_crc, piece_length)
            piece_length *= 2
    return zlib.crc32(bytes(rest), crc)


@functools.cache
def _zero_segment() -> bytes:
    """ZERO_CHUNK zero bytes deflated, ending with a full flush (so it stands alone)."""
    whole = zlib.compressobj(9, zlib.DEFLATED, -15)
    return whole.compress(bytes(ZERO_CHUNK)) + whole.flush(zlib.Z_FULL_FLUSH)


def zeros_deflated(name: str, zeros: int, prefix: bytes = b"") -> Entry:
    """``prefix`` and ``zeros`` zero bytes as one deflate stream, in well under
    a second for a GiB: one block of 16 MiB of zeros is compressed once and
    repeated (each ends with a full flush, so it stands alone)."""
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)]
    parts += [_zero_segment()] * (zeros // ZERO_CHUNK)
    rest = zeros % ZERO_CHUNK
    if rest:
        tail = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append(tail.compress(bytes(rest)) + tail.flush(zlib.Z_FULL_FLUSH))
    parts.append(b"\x03\x00")  # a final, empty block
    crc = crc32_of_zeros(zeros, zlib.crc32(prefix))
    return Entry(name, b"".join(parts), zipfile.ZIP_DEFLATED, crc, len(prefix) + zeros)


def zip_bytes(entries: list[Entry]) -> bytes:
    """A zip of ``entries`` exactly as given (no zip64: every size under 4 GiB)."""
    out = io.BytesIO()
    central = []
    for e in entries:
        name = e.name.encode()
        offset = out.tell()
        out.write(struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, e.method, 0, 0x21,
                              e.crc, len(e.raw), e.size, len(name), 0))  # fmt: skip
        out.write(name)
        out.write(e.raw)
        central.append(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, e.method,
                                   0, 0x21, e.crc, len(e.raw), e.size, len(name), 0, 0, 0, 0,
                                   0o644 << 16, offset) + name)  # fmt: skip
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                          out.tell() - start, start, 0))  # fmt: skip
    return out.getvalue()


def with_meta_hash(members: Members, name: str, data: bytes) -> Members:
    """``members`` with ``data`` as ``name`` and its SHA-256 in meta.json."""
    meta = json.loads(members["meta.json"])
    meta["sha256"][name] = sha256(data).hexdigest()
    return {**members, name: data, "meta.json": json.dumps(meta, indent=1).encode()}


# -- edits -------------------------------------------------------------------------------


def edit_meta(change: Callable[[dict[str, Any]], object]) -> Callable[[Members], Members]:
    def craft(members: Members) -> Members:
        meta = json.loads(members["meta.json"])
        change(meta)
        return {**members, "meta.json": json.dumps(meta, indent=1).encode()}

    return craft


def edit_history(change: Callable[[dict[str, np.ndarray]], object]) -> Callable[[Members], Members]:
    def craft(members: Members) -> Members:
        with np.load(io.BytesIO(members["history.npz"])) as arrays:
            history = {key: arrays[key] for key in arrays.files}
        change(history)
        buffer = io.BytesIO()
        np.savez(buffer, **history)  # type: ignore[arg-type]
        return with_meta_hash(members, "history.npz", buffer.getvalue())

    return craft


def edit_devices(change: Callable[[dict[str, np.ndarray]], object]) -> Callable[[Members], Members]:
    def craft(members: Members) -> Members:
        with np.load(io.BytesIO(members["devices.npz"])) as arrays:
            devices = {key: arrays[key] for key in arrays.files}
        change(devices)
        buffer = io.BytesIO()
        np.savez(buffer, **devices)  # type: ignore[arg-type]
        return with_meta_hash(members, "devices.npz", buffer.getvalue())

    return craft


def as_format_5(members: Members) -> Members:
    """A model file as format 5 wrote it (before the device baseline): no
    devices.npz, no ``training.devices`` or its checksum in meta.json."""
    meta = json.loads(members["meta.json"])
    meta["format"] = 5
    del meta["training"]["devices"], meta["sha256"]["devices.npz"]
    kept = {n: d for n, d in members.items() if n != "devices.npz"}
    return {**kept, "meta.json": json.dumps(meta, indent=1).encode()}


def _forest(members: Members) -> Any:
    import skops.io as sio

    from detector.detect.model import TRUSTED_TYPES

    return sio.loads(members["forest.skops"], trusted=list(TRUSTED_TYPES))


def edit_tree(change: Callable[[np.ndarray, np.ndarray], object]) -> Callable[[Members], Members]:
    """Change the node array (and values) of the first tree, as the file would hold them."""

    def craft(members: Members) -> Members:
        import skops.io as sio
        from sklearn.tree._tree import Tree

        forest = _forest(members)
        estimator = forest.estimators_[0]
        old = estimator.tree_
        state = old.__getstate__()
        nodes, values = state["nodes"].copy(), state["values"].copy()
        change(nodes, values)
        tree = Tree(old.n_features, old.n_classes, old.n_outputs)
        tree.__setstate__({**state, "nodes": nodes, "values": values})
        estimator.tree_ = tree
        return with_meta_hash(members, "forest.skops", sio.dumps(forest))

    return craft


def edit_forest(change: Callable[[Any], object]) -> Callable[[Members], Members]:
    def craft(members: Members) -> Members:
        import skops.io as sio

        forest = _forest(members)
        change(forest)
        return with_meta_hash(members, "forest.skops", sio.dumps(forest))

    return craft


def edit_skops_schema(change: Callable[[dict[str, Any]], object]) -> Callable[[Members], Members]:
    """Change forest.skops's schema.json (for what no live object can hold, such
    as a tree whose node count is not the number of its nodes)."""

    def craft(members: Members) -> Members:
        with zipfile.ZipFile(io.BytesIO(members["forest.skops"])) as inner:
            files = {name: inner.read(name) for name in inner.namelist()}
        schema = json.loads(files["schema.json"])
        change(schema)
        files["schema.json"] = json.dumps(schema).encode()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as inner:
            for name, data in files.items():
                inner.writestr(name, data)
        return with_meta_hash(members, "forest.skops", buffer.getvalue())

    return craft


def _first_split(nodes: np.ndarray, below_root: bool = False) -> int:
    split = np.flatnonzero(nodes["left_child"] != -1)
    return int(split[1] if below_root else split[0])


def _child_out_of_range(nodes: np.ndarray, values: np.ndarray) -> None:
    nodes["left_child"][0] = 1_000_000_000  # 64 GB past the nodes


def _feature_out_of_range(nodes: np.ndarray, values: np.ndarray) -> None:
    nodes["feature"][0] = 1_000_000_000


def _cycle(nodes: np.ndarray, values: np.ndarray) -> None:
    # A split node below the root leads back to the root: apply() would loop.
    nodes["left_child"][_first_split(nodes, below_root=True)] = 0


def _half_leaf(nodes: np.ndarray, values: np.ndarray) -> None:
    leaf = int(np.flatnonzero(nodes["left_child"] == -1)[0])
    nodes["right_child"][leaf] = 1


def _nan_threshold(nodes: np.ndarray, values: np.ndarray) -> None:
    nodes["threshold"][0] = np.nan


def _node_count_below_nodes(schema: dict[str, Any]) -> None:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if "node_count" in node and isinstance(node["node_count"], dict):
                # (A count beyond the nodes, scikit-learn lowers to theirs.)
                node["node_count"]["content"] = "3"
                node["node_count"]["__id__"] = 1  # its own: skops shares values by id
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    assert walk(schema), "no tree in forest.skops"


def _many_values(schema: dict[str, Any]) -> None:
    # 600,000 empty lists: 1.2 MB of JSON, some 40 MB once parsed.
    schema["padding"] = [[]] * 300_000


def _short_path_lengths(forest: Any) -> None:
    lengths = list(forest._decision_path_lengths)
    lengths[0] = lengths[0][:3]
    forest._decision_path_lengths = tuple(lengths)


def _deep_nesting(members: Members) -> Members:
    text = members["meta.json"].decode()
    deep = "[" * 100_000 + "]" * 100_000
    site = json.loads(text)["policy_site"]
    return {**members, "meta.json": text.replace(json.dumps(site), deep, 1).encode()}


def _oversized_meta(members: Members) -> Members:
    # Valid JSON, honest sizes: 5 MiB of white space after it.
    return {**members, "meta.json": members["meta.json"] + b" " * (5 << 20)}


def _extra_member(members: Members) -> Members:
    return {**members, "run.py": b"import os\nos.system('id')\n"}


def _devices_bomb(members: Members) -> bytes:
    """devices.npz: 64 MiB of zeros (at most 1 MiB is a device list), sized honestly."""
    return zip_bytes([deflated(n, d) for n, d in members.items() if n != "devices.npz"]
                     + [zeros_deflated("devices.npz", 64 << 20)])  # fmt: skip


def _devices_unordered(devices: dict[str, np.ndarray]) -> None:
    devices["macs"] = devices["macs"][::-1].copy()


def _hosts_as_numbers(history: dict[str, np.ndarray]) -> None:
    history["hosts"] = np.arange(len(history["hosts"]), dtype=np.int64)


# Raw zips: what zipfile would never write.


def _devices_entry(members: Members) -> Entry:
    return deflated("devices.npz", members["devices.npz"])


def _bomb(members: Members) -> bytes:
    """forest.skops: 1 GiB of zeros in about 1 MB, its size written honestly and
    within the old limit (1 GiB): the old loader read all of it (2.3 GB peak)."""
    return zip_bytes([deflated("meta.json", members["meta.json"]),
                      deflated("history.npz", members["history.npz"]),
                      zeros_deflated("forest.skops", GIB), _devices_entry(members)])  # fmt: skip


def _bomb_at_the_cap(members: Members) -> bytes:
    """forest.skops: as many zeros as a member may hold, its checksum in
    meta.json: read in full (through the capped stream), then refused."""
    from detector.detect.model import MEMBER_BYTES

    size = MEMBER_BYTES["forest.skops"]
    digest = sha256()
    for _ in range(size >> 24):
        digest.update(bytes(1 << 24))
    meta = json.loads(members["meta.json"])
    meta["sha256"]["forest.skops"] = digest.hexdigest()
    return zip_bytes([deflated("meta.json", json.dumps(meta, indent=1).encode()),
                      deflated("history.npz", members["history.npz"]),
                      zeros_deflated("forest.skops", size), _devices_entry(members)])  # fmt: skip


def _lying_size(members: Members) -> bytes:
    """forest.skops: 1 GiB of zeros whose headers say 200 kB."""
    bomb = zeros_deflated("forest.skops", GIB)
    bomb.size = 200_000
    return zip_bytes([deflated("meta.json", members["meta.json"]),
                      deflated("history.npz", members["history.npz"]), bomb,
                      _devices_entry(members)])  # fmt: skip


def _bomb_inside_history(members: Members) -> bytes:
    """history.npz (itself a zip): hosts.npy says 16 M host names, 1 GiB of zeros."""
    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<U16", "fortran_order": False,
                                        "shape": (GIB // 64,)})  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(members["history.npz"])) as inner:
        others = [stored(n, inner.read(n)) for n in inner.namelist() if n != "hosts.npy"]
    history = zip_bytes([zeros_deflated("hosts.npy", GIB, header.getvalue()), *others])
    members = with_meta_hash(members, "history.npz", history)
    return zip_bytes([deflated("meta.json", members["meta.json"]),
                      stored("history.npz", history),
                      deflated("forest.skops", members["forest.skops"]),
                      _devices_entry(members)])  # fmt: skip


def _bomb_inside_forest(members: Members) -> bytes:
    """forest.skops (itself a zip): one of its arrays 1 GiB of zeros."""
    with zipfile.ZipFile(io.BytesIO(members["forest.skops"])) as inner:
        names = inner.namelist()
        files = {n: inner.read(n) for n in names}
    target = max((n for n in names if n.endswith(".npy")), key=lambda n: len(files[n]))
    entries = [zeros_deflated(n, GIB, files[n][:128]) if n == target else stored(n, files[n])
               for n in names]  # fmt: skip
    forest = zip_bytes(entries)
    members = with_meta_hash(members, "forest.skops", forest)
    return zip_bytes([deflated("meta.json", members["meta.json"]),
                      deflated("history.npz", members["history.npz"]),
                      stored("forest.skops", forest), _devices_entry(members)])  # fmt: skip


def _bzip2_member(members: Members) -> bytes:
    import bz2

    data = members["history.npz"]
    entry = Entry("history.npz", bz2.compress(data), zipfile.ZIP_BZIP2, zlib.crc32(data), len(data))
    return zip_bytes([deflated("meta.json", members["meta.json"]), entry,
                      deflated("forest.skops", members["forest.skops"]),
                      _devices_entry(members)])  # fmt: skip


def _duplicate_member(members: Members) -> bytes:
    return zip_bytes([deflated("meta.json", members["meta.json"]),
                      deflated("history.npz", members["history.npz"]),
                      deflated("forest.skops", members["forest.skops"]),
                      _devices_entry(members), deflated("meta.json", members["meta.json"])])  # fmt: skip


def _many_members(members: Members) -> bytes:
    extra = [stored(f"x/{i}", b"") for i in range(5000)]
    return zip_bytes([deflated(n, d) for n, d in members.items()] + extra)


@dataclass
class Case:
    craft: Callable[[Members], Members | bytes]
    member: str  # what the one-line refusal must name besides the file
    why: str


def _meta(change: Callable[[dict[str, Any]], object]) -> Callable[[Members], Members]:
    return edit_meta(change)


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        for key in path[:-1]:
            meta = meta[key]
        meta[path[-1]] = value

    return change


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta.pop(key)


CASES: dict[str, Case] = {
    # forest.skops: arrays sklearn indexes without bounds checks
    "child-index": Case(edit_tree(_child_out_of_range), "forest.skops",
                        "the root's left child 10^9 (segmentation fault in apply)"),
    "feature-index": Case(edit_tree(_feature_out_of_range), "forest.skops",
                          "the root splits on feature 10^9 of 5 (segmentation fault)"),
    "cycle": Case(edit_tree(_cycle), "forest.skops",
                  "a split node's left child is the root (apply loops forever)"),
    "half-leaf": Case(edit_tree(_half_leaf), "forest.skops", "a leaf with one child"),
    "nan-threshold": Case(edit_tree(_nan_threshold), "forest.skops", "the root's threshold NaN"),
    "node-count": Case(edit_skops_schema(_node_count_below_nodes), "forest.skops",
                       "a tree of 3 nodes whose children are past them"),
    "skops-values": Case(edit_skops_schema(_many_values), "forest.skops",
                         "600,000 values in schema.json, parsed before any check"),
    "path-lengths": Case(edit_forest(_short_path_lengths), "forest.skops",
                         "a tree's decision path lengths shorter than its nodes"),
    # meta.json: the schema
    "unknown-key": Case(_meta(_set(("evil",), 1)), "meta.json", "a key this version never wrote"),
    "unknown-param": Case(_meta(_set(("params", "trees"), 3)), "meta.json",
                          "an unknown estimator parameter (TypeError)"),
    "missing-key": Case(_meta(_delete("threshold")), "meta.json", "no threshold (KeyError)"),
    "deep-nesting": Case(_deep_nesting, "meta.json", "100,000 nested lists (RecursionError)"),
    "list-for-mapping": Case(_meta(_set(("training",), [1, 2, 3])), "meta.json",
                             "a list where the training mapping belongs (TypeError)"),
    "policy-list": Case(_meta(_set(("policy_settings",), ["site.timezone"])), "meta.json",
                        "a list where policy_settings belongs (AttributeError)"),
    "wrong-type": Case(_meta(_set(("threshold",), "high")), "meta.json",
                       "a threshold that is text (ValueError)"),
    "wrong-int": Case(_meta(_set(("training", "window_minutes"), 7.5)), "meta.json",
                      "a window length that is not a whole number"),
    "nan-quantile": Case(_meta(_set(("baseline_quantiles",), [float("nan")] * 10_001)),
                         "meta.json", "NaN baseline quantiles"),
    "short-quantiles": Case(_meta(_set(("baseline_quantiles",), [0.5, 0.6])), "meta.json",
                            "2 baseline quantiles, not 10,001"),
    # history.npz: shapes and types
    "history-shape": Case(edit_history(lambda h: h.update(host_hour=h["host_hour"][:, :23])),
                          "history.npz", "23 hours a day (IndexError)"),
    "history-missing": Case(edit_history(lambda h: h.pop("site_hour")), "history.npz",
                            "no site_hour array"),
    "history-types": Case(edit_history(_hosts_as_numbers), "history.npz", "hosts as numbers"),
    "history-lengths": Case(edit_history(lambda h: h.update(known_peer_lo=h["known_peer_lo"][:1])),
                            "history.npz", "known pairs of unequal lengths"),
    # devices.npz: the device baseline (format 6)
    "devices-type": Case(edit_devices(lambda d: d.update(macs=d["macs"].astype(np.int64))),
                         "devices.npz", "MAC addresses as int64"),
    "devices-shape": Case(edit_devices(lambda d: d.update(macs=d["macs"].reshape(1, -1))),
                          "devices.npz", "a 1 × 3 array of MAC addresses"),
    "devices-order": Case(edit_devices(_devices_unordered), "devices.npz",
                          "MAC addresses out of order"),
    "devices-range": Case(edit_devices(lambda d: d.update(macs=d["macs"] | np.uint64(1 << 60))),
                          "devices.npz", "MAC addresses of 61 bits"),
    "devices-extra": Case(edit_devices(lambda d: d.update(run=np.zeros(1))), "devices.npz",
                          "an array besides macs"),
    "devices-count": Case(_meta(_set(("training", "devices"), 2)), "devices.npz",
                          "meta.json counts 2 devices, devices.npz holds 3"),
    "devices-missing": Case(lambda m: {n: d for n, d in m.items() if n != "devices.npz"},
                            "devices.npz", "a format 6 file without devices.npz"),
    "devices-bomb": Case(_devices_bomb, "devices.npz", "64 MiB of zeros, sized honestly"),
    # the zip
    "bomb": Case(_bomb, "forest.skops", "1 GiB of zeros in 1 MB, sized honestly"),
    "bomb-at-cap": Case(_bomb_at_the_cap, "forest.skops",
                        "128 MiB of zeros, the most a member may hold, checksum matching"),
    "lying-size": Case(_lying_size, "forest.skops", "1 GiB of zeros whose headers say 200 kB"),
    "bomb-in-history": Case(_bomb_inside_history, "history.npz", "a 1 GiB array inside"),
    "bomb-in-forest": Case(_bomb_inside_forest, "forest.skops", "a 1 GiB array inside"),
    "oversized-member": Case(_oversized_meta, "meta.json", "5 MiB of meta.json"),
    "extra-member": Case(_extra_member, "run.py", "a fifth member"),
    "duplicate-member": Case(_duplicate_member, "meta.json", "meta.json twice"),
    "many-members": Case(_many_members, "5,004 members", "5,004 members"),
    "bzip2-member": Case(_bzip2_member, "history.npz", "compressed with bzip2"),
}


def write_case(name: str, good: Path, path: Path) -> Path:
    """Write the hostile file ``name`` of CASES, crafted from ``good``, to ``path``."""
    crafted = CASES[name].craft(read_members(good))
    if isinstance(crafted, bytes):
        path.write_bytes(crafted)
    else:
        write_members(path, crafted)
    return path


def write_all(folder: Path) -> dict[str, Path]:
    """good.model and every case in ``folder``: {case: path} (and "good")."""
    folder.mkdir(parents=True, exist_ok=True)
    good = good_model(folder / "good.model")
    return {"good": good, **{n: write_case(n, good, folder / f"{n}.model") for n in CASES}}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for case, where in write_all(Path(sys.argv[1])).items():
        print(f"{case:18} {where.stat().st_size:>10,} bytes  {CASES[case].why if case in CASES else ''}")
