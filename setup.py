"""Build hook: a built package ships its numba kernels compiled.

Everything else about the package is declared in pyproject.toml. When a wheel
is built (``pip install .``, ``pip wheel .``, ``python -m build``), the kernels
are compiled for numba's portable CPU by ``python -m detector._jit_build`` into
``detector/_jitcache/`` of the wheel, so the first run after an install loads
them instead of compiling them for a minute (detector/_jit.py; figures in
benchmarks/README.md, "The first run from a built package").

The step never fails the build: if it cannot run (no numba where the wheel is
built, a compile error), the wheel is made without the cache and its first run
compiles, as before. ``EGRESS_DETECTOR_SHIP_KERNELS=0`` skips it; editable
installs (``pip install -e .``) skip it too, their kernels compile into the user's
cache on first use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithKernels(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("EGRESS_DETECTOR_SHIP_KERNELS") == "0":
            return
        build_lib = Path(self.build_lib).resolve()
        target = build_lib / "detector" / "_jitcache"
        shutil.rmtree(target, ignore_errors=True)
        # The build's own modules first, then every path this process sees: pip's
        # isolated build environment (where numba and the other build requirements
        # are) is reached through sys.path, and replacing PYTHONPATH lost it (a fresh
        # venv's install then shipped no kernels).
        search = [str(build_lib), *(p for p in sys.path if p)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(search))
        for name in ("EGRESS_DETECTOR_CACHE_DIR", "NUMBA_CACHE_DIR", "EGRESS_DETECTOR_BOUNDSCHECK",
                     "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_DISABLE_JIT"):  # fmt: skip
            env.pop(name, None)
        print("egress-detector: compiling the packet kernels to ship in the package "
              "(EGRESS_DETECTOR_SHIP_KERNELS=0 skips this)", file=sys.stderr, flush=True)  # fmt: skip
        start = time.monotonic()
        try:
            subprocess.run([sys.executable, "-m", "detector._jit_build", str(target)],
                           env=env, cwd=build_lib, check=True, timeout=3600)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            print(f"egress-detector: the kernels were not compiled into the package ({exc}); "
                  "they will compile on the first run", file=sys.stderr, flush=True)  # fmt: skip
            return
        print(f"egress-detector: kernels compiled in {time.monotonic() - start:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip


setup(cmdclass={"build_py": BuildPyWithKernels})
