#!/usr/bin/env python3
"""Regenerate tests/data/payload_names.json from tshark, on purpose only.

For every corpus capture: the TLS server names (SNI) of ClientHellos and the
DNS question names of standard queries over port 53, as tshark decodes them.
The payload tests compare the inspector's facts with these sets, so tests need
no tshark.

    python tests/data/make_payload_names.py [CORPUS]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fields(path: Path, display_filter: str, field: str) -> list[str]:
    proc = subprocess.run(
        ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", field],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    names: set[str] = set()
    for line in proc.stdout.splitlines():
        names.update(name.lower() for name in line.split(",") if name)
    return sorted(names)


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "corpus"
    truth = {}
    for path in sorted((corpus / "pcaps").iterdir()):
        sni = fields(path, "tls.handshake.type == 1", "tls.handshake.extensions_server_name")
        dns = fields(
            path,
            "dns && dns.flags.opcode == 0 && (udp.port == 53 || tcp.port == 53)",
            "dns.qry.name",
        )
        if sni or dns:
            truth[path.name] = {"sni": sni, "dns": dns}
    out = HERE / "payload_names.json"
    out.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(truth)} captures")


if __name__ == "__main__":
    main()
