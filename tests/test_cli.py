"""The command line as an administrator uses it: help, exit codes, standard
input, output formats."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

from test_bad_input import pcap_bytes


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "detector", *args], input=stdin,
                          capture_output=True, timeout=180)  # fmt: skip


def test_no_command_prints_help_and_exits_2():
    proc = run()
    assert proc.returncode == 2 and b"flows" in proc.stderr


def test_flows_help_teaches():
    proc = run("flows", "--help")
    text = proc.stdout.decode()
    assert proc.returncode == 0
    for needle in ("examples:", "exit codes:", "--idle-timeout", "Parquet", "docs/flows.md"):
        assert needle in text


def test_parquet_needs_a_file(tmp_path):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(3))
    proc = run("flows", str(capture), "--format", "parquet")
    assert proc.returncode == 2 and b"-o FILE.parquet" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_standard_input_plain_and_gzip(tmp_path):
    data = pcap_bytes(5)
    for stdin in (data, gzip.compress(data, mtime=0)):
        proc = run("flows", "-", "--format", "jsonl", "-q", stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        flows = [json.loads(line) for line in proc.stdout.splitlines()]
        assert sorted(f["src_port"] for f in flows) == [40000, 40001, 40002, 40003, 40004]
        assert all(f["dst_ip"] == "198.51.100.7" and f["src2dst_bytes"] == 60 for f in flows)


def test_top_orders_by_bytes(tmp_path):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(4))
    proc = run("flows", str(capture), "--top", "2", "-q")
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and len(lines) == 3 and lines[0].startswith("first packet")


def test_flows_to_parquet_and_csv_do_not_import_pandas(tmp_path):
    """pandas costs about a second of start-up; the flows command writes through
    pyarrow and numpy alone (a warm start of the command is meant to take ≤ 1.5 s)."""
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(6))
    script = (
        "import sys\n"
        "from detector.cli.main import main\n"
        f"assert main(['flows', {str(capture)!r}, '-q', '-o', {str(tmp_path / 'f.parquet')!r}]) == 0\n"
        f"assert main(['flows', {str(capture)!r}, '-q', '-o', {str(tmp_path / 'f.csv')!r}]) == 0\n"
        "print('pandas' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == b"False"
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "f.parquet")
    assert table.num_rows == 6 and table.column("dst_ip").to_pylist() == ["198.51.100.7"] * 6


def test_flows_does_not_import_scipy_linalg(tmp_path):
    """numba checks for BLAS by importing scipy.linalg (0.3-0.45 s) unless
    detector._jit starts it first with SciPy hidden: every kernel module is
    imported after it (detector/_kernels/__init__.py)."""
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(3))
    script = (
        "import sys\n"
        "from detector.cli.main import main\n"
        f"assert main(['flows', {str(capture)!r}, '-q', '-o', {str(tmp_path / 'f.parquet')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.linalg')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == b"[]"


def test_unwritable_output_fails_before_reading(tmp_path):
    """An -o path that cannot be written is reported first, not after reading a
    capture that may take minutes; the message names the path."""
    missing = tmp_path / "no-such-dir" / "f.parquet"
    proc = run("flows", str(tmp_path / "not-read.pcap"), "-o", str(missing))
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        f"egress-detector: error: cannot write {missing}: No such file or directory; "
        "choose a writable path"
    ]


def test_failed_run_leaves_the_earlier_output(tmp_path, monkeypatch, capsys):
    """Interrupted while writing: the earlier output keeps its content and
    permissions, and no partial file is left beside it."""
    from detector.cli import main as cli
    from detector.flows import write as flow_write

    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(3))
    output = tmp_path / "f.csv"
    assert cli.main(["flows", str(capture), "-q", "-o", str(output)]) == 0
    before = output.read_bytes()
    assert before.count(b"\n") == 4  # header and three flows
    output.chmod(0o600)

    def interrupted(slices, fmt, path, **kwargs):
        with open(path, "wb") as half_written:
            half_written.write(b"first_seen,")
        raise KeyboardInterrupt

    monkeypatch.setattr(flow_write, "write_flows", interrupted)
    assert cli.main(["flows", str(capture), "-q", "-o", str(output)]) == 130
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pcap", "f.csv"]
    monkeypatch.undo()

    # A run that completes replaces it, keeping its permissions.
    capture.write_bytes(pcap_bytes(5))
    assert cli.main(["flows", str(capture), "-q", "-o", str(output)]) == 0
    assert output.read_bytes().count(b"\n") == 6
    assert output.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pcap", "f.csv"]


def test_output_to_a_device_is_written_in_place(tmp_path):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(2))
    proc = run("flows", str(capture), "-q", "--format", "csv", "-o", "/dev/null")
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.glob(".*partial"))


def test_file_in_a_directory_we_cannot_add_to_is_written_in_place(tmp_path, monkeypatch):
    """An administrator made the output file for us in a directory we may not
    create files in: no partial file is possible, so the file is written in
    place; a new file there is an error naming it."""
    import builtins

    from detector import outputs
    from detector.cli import main as cli

    real_open = builtins.open

    def no_new_files(path, *args, **kwargs):
        if str(path).endswith(".partial"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(outputs, "open", no_new_files, raising=False)
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(2))
    given = tmp_path / "given.csv"
    given.write_text("")
    assert cli.main(["flows", str(capture), "-q", "-o", str(given)]) == 0
    assert given.read_bytes().count(b"\n") == 3
    assert cli.main(["flows", str(capture), "-q", "-o", str(tmp_path / "new.csv")]) == 2
    assert not (tmp_path / "new.csv").exists()
