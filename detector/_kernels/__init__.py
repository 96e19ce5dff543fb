"""numba kernels: pure functions over numpy arrays. They import numpy and numba
only, never raise on bad data (they return status codes), and each one is
compared against a slow reference in tests/naive.py."""
