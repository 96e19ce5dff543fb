"""The same capture gives the same alerts, word for word, in every process:
str hashes differ from run to run (PYTHONHASHSEED), so nothing an alert says
may follow a set's order. dns-tunnel's example name did: of equally long
names, whichever the set gave first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "captures" / "sample-policy.toml"


def test_dns_tunnel_names_the_same_example_whatever_the_hash_seed(tmp_path):
    capture = tmp_path / "names.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_flood.py"), str(capture),
                    "--packets", "3000", "--kind", "dns"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    messages = []
    for seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-m", "detector", "scan", "-q", "--policy",
                              str(POLICY), "--format", "jsonl", str(capture)],
                             capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed})  # fmt: skip
        assert out.returncode == 1, out.stderr
        docs = [json.loads(line) for line in out.stdout.splitlines()]
        tunnels = [d["message"] for d in docs if d["rule"]["id"] == "dns-tunnel"]
        assert len(tunnels) == 4  # the four asking hosts, names of 32 characters each
        messages.append(tunnels)
    assert messages[0] == messages[1] == messages[2]
