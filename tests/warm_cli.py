"""The command, run many times in forks of one warm process.

Each ``python -m detector`` a test starts pays the interpreter's start-up and
the imports (numpy, pandas, numba, pyarrow; scikit-learn and skops for a model:
1.5 to 4 s of CPU) before the command does anything; a test file that runs the
command forty times pays that forty times. :class:`WarmCli` starts one process
that imports what the commands import and then, for each run, forks a copy of
itself: the copy's file descriptors 0, 1 and 2 are the run's files, it runs the
console script's entry point (``detector.cli.main.run``: ``main`` over its
argv, flush, ``os._exit`` with the code) and the copy's exit status and peak
resident memory (``wait4``'s rusage: the copy's own) come back. A test reads
what it read of a subprocess: the exit code, the bytes written on standard
output and error, the files.

What a fork does not do, so each command keeps tests that start it for real
(tests/test_cli.py, test_scan_cli.py, test_model_files.py's good model and
nightly and live refusals, test_live_stream.py, test_nightly.py ...): start the
interpreter, and import. What importing writes would be in every command's
stderr: the warm process's own stderr must stay empty (checked at start and at
each run).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The warm process. argv: request fd, reply fd, then modules to import. A request
# is one JSON line {"argv", "stdin", "stdout", "stderr", "cwd"}; the replies are
# {"pid"} when the copy starts and {"code", "peak_kb"} when it has ended.
SERVER = r"""
import importlib, json, os, sys

requests, replies = os.fdopen(int(sys.argv[1]), "rb", 0), int(sys.argv[2])
for name in sys.argv[3:]:
    importlib.import_module(name)
import detector.cli.main as cli

MAIN = os.path.join(os.path.dirname(cli.__file__), "..", "__main__.py")


def reply(doc):
    os.write(replies, (json.dumps(doc) + "\n").encode())


reply({"ready": True})
while line := requests.readline():
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the copy: the command, as `python -m detector ARGS` runs it
        code = 1
        try:
            requests.close()
            os.close(replies)
            for fd, path, mode in ((0, job["stdin"] or os.devnull, os.O_RDONLY),
                                   (1, job["stdout"], os.O_WRONLY), (2, job["stderr"], os.O_WRONLY)):
                opened = os.open(path, mode)
                os.dup2(opened, fd)
                os.close(opened)
            if job["cwd"]:
                os.chdir(job["cwd"])
            sys.argv = [os.path.realpath(MAIN), *job["argv"]]
            cli.run()  # exits
        except SystemExit as exc:  # what the interpreter does with one
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass
            os._exit(code)
    reply({"pid": pid})
    _, status, usage = os.wait4(pid, 0)
    reply({"code": os.waitstatus_to_exitcode(status), "peak_kb": usage.ru_maxrss})
"""


@dataclass
class Run:
    """What a run of the command left: as subprocess.CompletedProcess, in bytes."""

    returncode: int
    stdout: bytes
    stderr: bytes
    peak_mb: float


class WarmCli:
    """One warm process importing ``modules``; :meth:`run` runs the command in a
    fork of it. Use as a context manager (one per test module)."""

    def __init__(self, modules: tuple[str, ...] = ("detector.pipelines.scan",)) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="warm-cli-")
        self._log = Path(self._dir.name) / "server-stderr"
        request_read, self._requests = os.pipe()
        self._replies, reply_write = os.pipe()
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(request_read), str(reply_write), *modules],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
                pass_fds=(request_read, reply_write),
            )  # fmt: skip
        os.close(request_read)
        os.close(reply_write)
        self._pending = b""
        self._count = 0
        assert self._reply(timeout=300) == {"ready": True}, self._log.read_text()
        self._check_quiet()

    def _check_quiet(self) -> None:
        said = self._log.read_bytes()
        assert said == b"", f"the warm process wrote on stderr: {said[-3000:]!r}"

    def _reply(self, timeout: float) -> dict:
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._replies], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no reply from the warm command in {timeout} s")
            chunk = os.read(self._replies, 65536)
            if not chunk:
                raise RuntimeError(f"the warm process ended: {self._log.read_text()[-3000:]}")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    def run(self, args: list[str], *, stdin: Path | None = None, cwd: Path | None = ROOT,
            timeout: float = 300) -> Run:  # fmt: skip
        """``python -m detector ARGS`` with ``stdin`` (a file; else /dev/null)."""
        self._count += 1
        out = Path(self._dir.name) / f"{self._count}.out"
        err = Path(self._dir.name) / f"{self._count}.err"
        out.touch()
        err.touch()
        job = {"argv": [str(a) for a in args], "stdin": str(stdin) if stdin else None,
               "stdout": str(out), "stderr": str(err), "cwd": str(cwd) if cwd else None}  # fmt: skip
        os.write(self._requests, (json.dumps(job) + "\n").encode())
        pid = self._reply(timeout=60)["pid"]
        try:
            done = self._reply(timeout=timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._reply(timeout=60)
            raise
        self._check_quiet()
        result = Run(done["code"], out.read_bytes(), err.read_bytes(), done["peak_kb"] / 1024)
        out.unlink()
        err.unlink()
        return result

    def completed(self, args: list[str], *, stdin: Path | None = None, cwd: Path | None = ROOT,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """:meth:`run` as ``subprocess.run(..., capture_output=True, text=True)`` gives it."""
        ran = self.run(args, stdin=stdin, cwd=cwd, timeout=timeout)
        return subprocess.CompletedProcess(args, ran.returncode, ran.stdout.decode(),
                                           ran.stderr.decode())  # fmt: skip

    def close(self) -> None:
        os.close(self._requests)
        try:
            self._proc.wait(timeout=60)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            os.close(self._replies)
            self._dir.cleanup()

    def __enter__(self) -> WarmCli:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
