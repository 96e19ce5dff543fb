"""numba kernels: pure functions over numpy arrays. They import numpy and numba
only, never raise on bad data (they return status codes), and each one is
compared against a slow reference in tests/naive.py."""

# Before any kernel module imports numba: _jit starts numba with SciPy hidden
# (0.3-0.45 s of every command's start). A module here that imported numba
# first, as isort orders it, loaded SciPy through numba's version check and then
# scipy.linalg through its BLAS check.
from .. import _jit  # noqa: F401, E402  # isort: skip
