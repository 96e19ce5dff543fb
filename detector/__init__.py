"""egress-detector: find network egress that should not happen.

The package reads the way packets flow: ``capture`` (bytes from files or a mirror
port) → ``_kernels`` (numba: decode, flow table) → ``flows`` → ``cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("egress-detector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
