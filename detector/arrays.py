"""Small numpy helpers the whole detector shares (this module imports numpy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def sorted_unique(values: ArrayLike) -> np.ndarray:
    """``np.unique(values)``: the distinct values, flattened, sorted, same dtype
    (all NaNs, or NaTs, count as one, last), by one sort and a comparison of
    neighbours."""
    # numpy 2.4's np.unique without return_* hashes integers and strings: 1.9-2.2 s for
    # a million distinct int64/uint64/int32 against 0.02-0.05 s for this (2026-12-06).
    ordered = np.sort(np.asarray(values), axis=None)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    keep[1:] = ordered[1:] != ordered[:-1]
    if len(ordered) and ordered.dtype.kind in "cfmM" and np.isnan(ordered[-1]):
        # NaNs sort last and never equal themselves: keep only the first of them.
        first_nan = int(np.argmax(np.isnan(ordered)))
        keep[first_nan] = True
        keep[first_nan + 1 :] = False
    return ordered[keep]
