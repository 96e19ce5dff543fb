"""The device baseline: the network cards the baseline saw on isolated
segments (format 6's ``devices.npz``), which ``new-device-isolated`` and
``rogue-router`` then know, as the nightly knows the cards of earlier days.

One array, ``macs``: the cards' 48-bit MAC addresses as little-endian uint64,
in increasing order, each once (a sorted array is also what a file written
twice from one baseline holds byte for byte).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ...oui import mac_text, parse_mac

DEVICE_ARRAYS = ("macs",)
MAC_LIMIT = 1 << 48  # IEEE 802 MAC addresses are 48 bits


def device_values(macs: Iterable[str | int]) -> np.ndarray:
    """MAC addresses (text or 48-bit integers) as the sorted uint64 array a model holds."""
    values = {parse_mac(m) if isinstance(m, str) else int(m) for m in macs}
    values.discard(None)
    if any(not 0 <= v < MAC_LIMIT for v in values):  # type: ignore[operator]
        raise ValueError("a MAC address is 48 bits")
    return np.array(sorted(values), dtype="<u8")  # type: ignore[type-var]


def device_arrays(values: np.ndarray) -> dict[str, np.ndarray]:
    """What ``devices.npz`` holds for the cards ``values`` (:func:`device_values`)."""
    return {"macs": np.asarray(values, dtype="<u8")}


def devices_from_arrays(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The cards of arrays read from a file, checked to be what
    :func:`device_arrays` makes: ValueError saying what is not."""
    macs = arrays["macs"]
    if macs.dtype != np.dtype("<u8") or macs.ndim != 1:
        raise ValueError(f"macs is {macs.dtype} {macs.shape}, not a list of uint64 MAC addresses")
    if len(macs) and int(macs.max()) >= MAC_LIMIT:
        raise ValueError(f"macs holds {int(macs.max()):#x}, over 48 bits: not a MAC address")
    if len(macs) > 1 and not (macs[1:] > macs[:-1]).all():
        raise ValueError("macs are not in order, each once")
    return macs


def device_names(values: np.ndarray) -> frozenset[str]:
    """The cards as the rules take them (``ScanContext.learned_devices``)."""
    return frozenset(mac_text(int(v)) for v in values)
