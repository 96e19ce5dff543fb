"""Reading zips an attacker may have written: the model file and the two zips
inside it (history.npz, forest.skops).

A zip's sizes are its writer's word. A zip whose end record lists more entries
than any we write is refused before its central directory is parsed; a member
whose recorded size is over the cap is refused before a byte of it is
decompressed; any other is read through a stream that stops at its recorded
size (zipfile's, checked again here), into a buffer of that size, and hashed
as it is read. Only stored and deflated members are read: one bzip2 or LZMA
call may expand without a bound. Arrays are parsed from .npy headers checked
against the bytes present before numpy allocates anything."""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
import zlib
from collections.abc import Iterable
from typing import IO, Any

import numpy as np

CHUNK = 1 << 20
METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# What zipfile, zlib and numpy raise on a damaged member or header.
DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


class Refusal(Exception):
    """A model file (``member`` None) or one of its members is not what this
    version writes: ``what`` says how, in a few words."""

    def __init__(self, member: str | None, what: str) -> None:
        super().__init__(f"{member}: {what}" if member else what)
        self.member = member
        self.what = what


def size_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


class ViewFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, read without copying the buffer."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), len(self._view) - self._at))
        buffer[:n] = self._view[self._at : self._at + n]
        self._at += n
        return n


def check_entry_count(fp: IO[bytes] | ViewFile, member: str | None, most: int) -> None:
    """Refuse a zip whose end record lists more than ``most`` entries (or a
    central directory larger than they could take) before zipfile parses it.
    zipfile's own reading of the end record, so both agree on which it is; a
    file without one is left to zipfile to call "not a zip"."""
    fp.seek(0)
    end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
    fp.seek(0)
    if end is None:
        return
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > most or size > most * 1024:
        raise Refusal(
            member,
            f"a zip of {entries:,} members ({size_text(size)} of directory); "
            f"this version writes at most {most}",
        )


def check_entry(info: zipfile.ZipInfo, member: str, cap: int) -> None:
    """Refuse what this version never writes (encrypted, or compressed other
    than deflate) and a recorded size over ``cap``, before reading a byte."""
    if info.flag_bits & 0x1:
        raise Refusal(member, "encrypted; this version writes plain members")
    if info.compress_type not in METHODS:
        raise Refusal(
            member, f"compressed with method {info.compress_type}; this version writes deflate"
        )
    if info.file_size > cap:
        raise Refusal(
            member,
            f"{size_text(info.file_size)} uncompressed, over the "
            f"{size_text(cap)} a model member may be; not read",
        )


def read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, cap: int
) -> tuple[bytearray, str]:
    """``info``'s bytes and their SHA-256, read through a stream that stops at
    its recorded size (at most ``cap``)."""
    check_entry(info, member, cap)
    buffer = bytearray(info.file_size)
    view = memoryview(buffer)
    digest = hashlib.sha256()
    got = 0
    try:
        with archive.open(info) as stream:
            while got < len(buffer):
                chunk = stream.read(min(CHUNK, len(buffer) - got))
                if not chunk:
                    break
                view[got : got + len(chunk)] = chunk
                digest.update(chunk)
                got += len(chunk)
            longer = bool(stream.read(1))
    except DAMAGE as exc:
        raise Refusal(member, f"damaged ({exc})") from None
    finally:
        view.release()
    if got != len(buffer) or longer:
        raise Refusal(member, f"damaged (not the {info.file_size:,} bytes it records)")
    return buffer, digest.hexdigest()


def open_inner(data: bytearray, member: str, cap: int, most: int) -> zipfile.ZipFile:
    """The zip ``data`` (a member that is itself a zip), its entries checked:
    at most ``most``, each one this version could write, ``cap`` bytes in all."""
    file = ViewFile(data)
    check_entry_count(file, member, most)
    try:
        inner = zipfile.ZipFile(file)
    except DAMAGE as exc:
        raise Refusal(member, f"not a zip ({exc})") from None
    total = 0
    for info in inner.infolist():
        check_entry(info, member, cap)
        total += info.file_size
    if total > cap:
        inner.close()
        raise Refusal(
            member,
            f"holds {size_text(total)} uncompressed, over the "
            f"{size_text(cap)} a model member may be; not read",
        )
    return inner


def read_npz(data: bytearray, member: str, names: Iterable[str], cap: int) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, exactly ``names`` (each ``name.npy``), read
    without pickle and without trusting a header's shape."""
    wanted = sorted(f"{name}.npy" for name in names)
    with open_inner(data, member, cap, len(wanted)) as inner:
        held = sorted(info.filename for info in inner.infolist())
        if held != wanted:
            gone = [n for n in wanted if n not in held]
            extra = [n for n in held if n not in wanted]
            raise Refusal(
                member,
                "; ".join(
                    part
                    for part in (
                        f"lacks {', '.join(gone)}" if gone else "",
                        f"holds {', '.join(extra)}" if extra else "",
                        f"holds {', '.join(held)} (twice)" if not gone and not extra else "",
                    )
                    if part
                )
                + " (not what this version writes)",
            )
        arrays = {}
        for info in inner.infolist():
            raw = stored_view(data, info, member)
            if raw is None:  # deflated (np.savez_compressed): read it out
                raw = memoryview(read_entry(inner, info, member, cap)[0])
            arrays[info.filename[:-4]] = parse_npy(raw, member, info.filename)
        return arrays


def stored_view(data: bytearray, info: zipfile.ZipInfo, member: str) -> memoryview | None:
    """The bytes of a stored (uncompressed) entry of the zip ``data``, where they
    lie in it: no copy (np.savez stores its arrays). None for a compressed one."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    view = memoryview(data)
    at = info.header_offset
    header = bytes(view[at : at + 30])
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise Refusal(member, f"{info.filename}: damaged (no local header)")
    start = (
        at + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    )
    end = start + info.compress_size
    if info.compress_size != info.file_size or end > len(data):
        raise Refusal(
            member, f"{info.filename}: damaged (not the {info.file_size:,} bytes it records)"
        )
    raw = view[start:end]
    if zlib.crc32(raw) != info.CRC:
        raise Refusal(member, f"{info.filename}: damaged (bad CRC-32)")
    return raw


def parse_npy(raw: bytearray | memoryview, member: str, name: str) -> np.ndarray:
    """A plain array from .npy bytes: numbers or text (no Python objects), its
    header's shape and type matching the bytes that follow it."""
    from numpy.lib import format as npy

    file = ViewFile(raw)
    try:
        version = npy.read_magic(file)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(file)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise Refusal(member, f"{name} is not a plain array ({exc})") from None
    if dtype.hasobject or dtype.kind not in "biufU":
        what = "Python objects" if dtype.hasobject else f"values of type {dtype}"
        raise Refusal(member, f"{name} holds {what}; this version writes numbers and text")
    if any(d < 0 for d in shape):
        raise Refusal(member, f"{name} has a negative length in its shape {shape}")
    count = math.prod(shape)
    start = file.tell()
    if count * dtype.itemsize != len(raw) - start:
        raise Refusal(
            member,
            f"{name}: its header says {count:,} values of {dtype.itemsize} "
            f"bytes, {len(raw) - start:,} bytes follow",
        )
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
    return array.reshape(shape, order="F" if fortran else "C")


def file_sha256(path: str) -> str:
    """The SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
