"""Flow records: raw flow-table rows → documented columns (numpy only).

pandas is imported only by ``columns_to_frame``: the command line writes flows
without it, which keeps a warm start of ``egress-detector flows`` near one second.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import community as ck
from .._kernels import flowrows as fr
from .._kernels import flowtable as fk
from .._kernels import timefmt
from .community_id import community_id_v1
from .naming import FlowNames

if TYPE_CHECKING:
    import pandas as pd

# IANA protocol keywords, lower case (the names Zeek and ECS use for the common ones).
TRANSPORT_NAMES = {
    0: "hopopt",
    1: "icmp",
    2: "igmp",
    4: "ipv4",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    43: "ipv6-route",
    44: "ipv6-frag",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    59: "ipv6-nonxt",
    60: "ipv6-opts",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    132: "sctp",
    136: "udplite",
}

FLOW_COLUMNS_DOC: dict[str, str] = {
    "first_seen": "first packet (UTC)",
    "last_seen": "last packet (UTC)",
    "src_ip": "initiator address",
    "src_port": "initiator port (ICMP: type)",
    "dst_ip": "responder address",
    "dst_port": "responder port (ICMP: counterpart type or code)",
    "protocol": "IP protocol number",
    "transport": "protocol name (tcp, udp, icmp, ipv6-icmp, ...)",
    "ip_version": "4 or 6",
    "vlan_id": "outermost VLAN id, -1 when untagged",
    "src2dst_packets": "packets initiator → responder",
    "src2dst_bytes": "bytes on the wire initiator → responder",
    "dst2src_packets": "packets responder → initiator",
    "dst2src_bytes": "bytes on the wire responder → initiator",
    "bidirectional_packets": "both directions",
    "bidirectional_bytes": "both directions",
    "src2dst_first_seen": "first packet initiator → responder (NaT if none)",
    "src2dst_last_seen": "last packet initiator → responder",
    "dst2src_first_seen": "first packet responder → initiator (NaT if none)",
    "dst2src_last_seen": "last packet responder → initiator",
    "src2dst_tcp_flags": "OR of TCP flags initiator → responder",
    "dst2src_tcp_flags": "OR of TCP flags responder → initiator",
    "duration_ms": "last_seen - first_seen in milliseconds",
    "expiry_reason": "idle, active, end (input ended), evicted (table full); fin or rst for a "
    "TCP connection closed by both sides or reset, closed idle or at the end",
    "community_id": "Community ID v1 hash (seed 0)",
    "src2dst_payload_bytes": "transport payload bytes initiator → responder",
    "dst2src_payload_bytes": "transport payload bytes responder → initiator",
    "conn_state": "Zeek's conn_state (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, "
    "SHR, OTH)",
    "history": "Zeek's history letters (upper case: initiator)",
    "service": "protocols the payload showed (dns, http, tls, smtp, bittorrent, ...)",
    "server_name": "TLS SNI, HTTP Host, DNS question, or the DNS name of the responder",
}


TIMESTAMP_COLUMNS = [
    "first_seen", "last_seen", "src2dst_first_seen", "src2dst_last_seen",
    "dst2src_first_seen", "dst2src_last_seen",
]  # fmt: skip
CATEGORY_COLUMNS = ["transport", "expiry_reason", "conn_state"]


def _address_texts(hi: np.ndarray, lo: np.ndarray, is_v4: np.ndarray, arrow: bool = False) -> Any:
    """Text of 128-bit addresses (an object array, or a pyarrow string array when
    ``arrow``). IPv4 flows print dotted quads; an IPv6 flow prints IPv6 text even
    for an IPv4-mapped address (``::ffff:a00:1``), as Python's ``ipaddress`` does."""
    fixed = np.empty((len(hi), timefmt.ADDRESS_WIDTH), dtype=np.uint8)
    lengths = np.empty(len(hi), dtype=np.int64)
    timefmt.address_texts(hi, lo, is_v4, fixed, lengths)
    if arrow:
        return _arrow_strings(fixed, lengths)
    return fixed.view(f"S{timefmt.ADDRESS_WIDTH}").ravel().astype(str).astype(object)


def _arrow_strings(fixed: np.ndarray, lengths: np.ndarray) -> Any:
    """A pyarrow string array over fixed-width ASCII rows, without Python strings."""
    import pyarrow as pa

    offsets = np.empty(len(fixed) + 1, dtype=np.int32)
    data = np.empty(max(int(lengths.sum()), 1), dtype=np.uint8)
    timefmt.pack_texts(fixed, lengths, offsets, data)
    return pa.StringArray.from_buffers(len(fixed), pa.py_buffer(offsets), pa.py_buffer(data))


def _arrow_texts(values: np.ndarray) -> Any:
    """A pyarrow string array of Python strings (``pa.array`` would import pandas)."""
    import pyarrow as pa

    encoded = [v.encode("utf-8") for v in values.tolist()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = b"".join(encoded) or b"\0"
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), pa.py_buffer(data))


def _community_ids(
    src_hi: np.ndarray, src_lo: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray,
    protocol: np.ndarray, src_port: np.ndarray, dst_port: np.ndarray, is_v4: np.ndarray,
    arrow: bool = False,
) -> Any:  # fmt: skip
    # The kernel hashes IPv4-mapped addresses as 4 bytes: give IPv6 flows with
    # such addresses to the one-flow version (they are rare).
    mapped = (src_hi == 0) & ((src_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    odd = np.flatnonzero(~is_v4 & mapped)
    icmp = (protocol == 1) | (protocol == 58)
    pairs = np.where(protocol == 1, ICMP4_COUNTERPART[src_port & 0xFF],
                     ICMP6_COUNTERPART[src_port & 0xFF])  # fmt: skip
    one_way = icmp & (pairs < 0)
    out = np.empty((len(src_hi), ck.ID_CHARS), dtype=np.uint8)
    ports = (src_port.astype(np.int64), dst_port.astype(np.int64))
    ck.community_ids(src_hi, src_lo, dst_hi, dst_lo, protocol.astype(np.int64), *ports, one_way,
                     0, out)  # fmt: skip
    for i in odd.tolist():
        text = community_id_v1(
            ((int(src_hi[i]) << 64) | int(src_lo[i])).to_bytes(16, "big"),
            ((int(dst_hi[i]) << 64) | int(dst_lo[i])).to_bytes(16, "big"),
            int(protocol[i]), int(src_port[i]), int(dst_port[i]),
        )  # fmt: skip
        out[i] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    if arrow:
        return _arrow_strings(out, np.full(len(out), ck.ID_CHARS, dtype=np.int64))
    return out.view(f"S{ck.ID_CHARS}").ravel().astype(str).astype(object)


ICMP4_COUNTERPART = fk.icmp_counterparts()[0]
ICMP6_COUNTERPART = fk.icmp_counterparts()[1]


def endpoint_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Flow records (export rows) by their two ends as the table keeps them: A,
    the end with the smaller (address, port), and B. ``a_hi``/``a_lo``/``b_hi``/
    ``b_lo`` (uint64 address halves), ``first_ns``, ``last_ns``, ``a_bytes`` and
    ``b_bytes`` (the frame bytes each end sent) and ``a_started`` (1 when A
    started the flow, else 0). Views of ``rows``, no copies: for finding a
    host's flows among a day's million without making their columns."""
    u = rows.view(np.uint64)
    return {
        "a_hi": u[:, fk.C_A_HI],
        "a_lo": u[:, fk.C_A_LO],
        "b_hi": u[:, fk.C_B_HI],
        "b_lo": u[:, fk.C_B_LO],
        "first_ns": rows[:, fk.C_FIRST],
        "last_ns": rows[:, fk.C_LAST],
        "a_bytes": rows[:, fk.C_DIR + fk.D_BYTES],
        "b_bytes": rows[:, fk.C_DIR + fk.DIR_WIDTH + fk.D_BYTES],
        "a_started": rows[:, fk.C_INIT_IS_A],
    }


def initiator_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Flow records (export rows) seen from the side that started each flow:
    ``src_*``/``dst_*`` addresses, ``dst_port``, ``first_ns`` and ``sent`` (the
    initiator's frame bytes). For rules that judge connections, not packets."""
    ends = endpoint_columns(rows)
    init_a = ends["a_started"] == 1
    meta = rows.view(np.uint64)[:, fk.C_META]
    a_port = (meta >> np.uint64(48)) & np.uint64(0xFFFF)
    b_port = (meta >> np.uint64(32)) & np.uint64(0xFFFF)
    return {
        "src_hi": np.where(init_a, ends["a_hi"], ends["b_hi"]),
        "src_lo": np.where(init_a, ends["a_lo"], ends["b_lo"]),
        "dst_hi": np.where(init_a, ends["b_hi"], ends["a_hi"]),
        "dst_lo": np.where(init_a, ends["b_lo"], ends["a_lo"]),
        "dst_port": np.where(init_a, b_port, a_port).astype(np.int64),
        "first_ns": ends["first_ns"],
        "sent": np.where(init_a, ends["a_bytes"], ends["b_bytes"]),
    }


def largest_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` flows with the most bytes (both directions), largest first,
    chosen on the raw rows before any text is made."""
    size = rows[:, fk.C_DIR + fk.D_BYTES] + rows[:, fk.C_DIR + fk.DIR_WIDTH + fk.D_BYTES]
    return rows[np.argsort(-size, kind="stable")[: max(n, 0)]]


def iter_flow_columns(
    rows: np.ndarray,
    *,
    slice_flows: int = 1 << 17,
    community_id: bool = True,
    arrow_text: bool = False,
    flow_names: FlowNames | None = None,
) -> Iterator[dict[str, Any]]:
    """``flow_columns`` of all rows in order of first packet, ``slice_flows`` flows
    at a time (a million flows as columns and strings take far more memory than
    their rows)."""
    order = np.argsort(rows[:, fk.C_FIRST], kind="stable")
    for start in range(0, max(len(order), 1), slice_flows):
        yield flow_columns(
            rows[order[start : start + slice_flows]],
            community_id=community_id,
            presorted=True,
            arrow_text=arrow_text,
            flow_names=flow_names,
        )


def row_slices(
    blocks: Iterable[np.ndarray],
    *,
    slice_flows: int = 1 << 17,
    community_id: bool = True,
    arrow_text: bool = False,
    flow_names: FlowNames | None = None,
) -> Iterator[dict[str, Any]]:
    """``flow_columns`` of rows that come in blocks already in order of first
    packet (``FlowTable.sorted_row_blocks``), cut into the same slices of
    ``slice_flows`` flows as ``iter_flow_columns`` cuts (a table, a CSV header,
    a Parquet row group: the output does not depend on the blocks)."""
    held: list[np.ndarray] = []
    n_held = 0
    made = False
    for block in blocks:
        held.append(block)
        n_held += len(block)
        while n_held >= slice_flows:
            rows = held[0] if len(held) == 1 else np.concatenate(held)
            held, n_held = [rows[slice_flows:]], n_held - slice_flows
            made = True
            yield flow_columns(rows[:slice_flows], community_id=community_id, presorted=True,
                               arrow_text=arrow_text, flow_names=flow_names)  # fmt: skip
    if n_held or not made:
        rows = np.concatenate(held) if held else np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64)
        yield flow_columns(rows, community_id=community_id, presorted=True, arrow_text=arrow_text,
                           flow_names=flow_names)  # fmt: skip


def flow_columns(
    rows: np.ndarray,
    *,
    community_id: bool = True,
    presorted: bool = False,
    arrow_text: bool = False,
    flow_names: FlowNames | None = None,
) -> dict[str, Any]:
    """Turn raw flow rows into the documented flow columns, ordered by first packet.

    Text columns (addresses, Community ID) are object arrays of ``str``, or
    pyarrow string arrays when ``arrow_text`` (for the Arrow-based writers: a
    million flows then make no Python strings at all). ``flow_names``: the payload
    facts' service and server name of each flow (empty without)."""
    if not presorted and len(rows):
        rows = rows[np.argsort(rows[:, fk.C_FIRST], kind="stable")]
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    n = len(rows)
    addresses = np.empty((4, n), dtype=np.uint64)
    ports = np.empty((4, n), dtype=np.uint16)
    small = np.empty((2, n), dtype=np.uint8)
    vlan_id = np.empty(n, dtype=np.int32)
    numeric = np.empty((fr.N_COLUMNS, n), dtype=np.int64)
    duration_ms = np.empty(n, dtype=np.float64)
    history = np.zeros((n, fr.HISTORY_WIDTH), dtype=np.uint8)
    history_len = np.empty(n, dtype=np.int64)
    fr.split_rows(rows, addresses, ports, small, vlan_id, numeric, duration_ms, history,
                  history_len)  # fmt: skip
    src_hi, src_lo, dst_hi, dst_lo = addresses
    src_port, dst_port = ports[0], ports[1]
    protocol, ip_version = small[0], small[1]
    is_v4 = ip_version == 4
    reason_codes = numeric[fr.N_REASON]

    def stamp(column: int) -> np.ndarray:
        # Times may be negative (before 1970): only "no packet" (NAT) is missing.
        return numeric[column].view("M8[ns]")

    src_text = _address_texts(src_hi, src_lo, is_v4, arrow_text)
    dst_text = _address_texts(dst_hi, dst_lo, is_v4, arrow_text)
    reasons = np.asarray(fk.REASON_NAMES, dtype=object)
    names = np.asarray([TRANSPORT_NAMES.get(p, str(p)) for p in range(256)], dtype=object)
    frame: dict[str, Any] = {
        "first_seen": stamp(fr.N_FIRST),
        "last_seen": stamp(fr.N_LAST),
        "src_ip": src_text,
        "src_port": src_port,
        "dst_ip": dst_text,
        "dst_port": dst_port,
        "protocol": protocol,
        "transport": names[protocol] if not arrow_text else None,
        "ip_version": ip_version,
        "vlan_id": vlan_id,
        "src2dst_packets": numeric[fr.N_FWD_PACKETS],
        "src2dst_bytes": numeric[fr.N_FWD_BYTES],
        "dst2src_packets": numeric[fr.N_REV_PACKETS],
        "dst2src_bytes": numeric[fr.N_REV_BYTES],
        "bidirectional_packets": numeric[fr.N_BI_PACKETS],
        "bidirectional_bytes": numeric[fr.N_BI_BYTES],
        "src2dst_first_seen": stamp(fr.N_FWD_FIRST),
        "src2dst_last_seen": stamp(fr.N_FWD_LAST),
        "dst2src_first_seen": stamp(fr.N_REV_FIRST),
        "dst2src_last_seen": stamp(fr.N_REV_LAST),
        "src2dst_tcp_flags": ports[2],
        "dst2src_tcp_flags": ports[3],
        "duration_ms": duration_ms,
        "expiry_reason": reasons[reason_codes] if not arrow_text else None,
    }
    if arrow_text:
        import pyarrow as pa

        from .write import dictionary_array

        frame["transport"] = dictionary_array(protocol, names.tolist(), pa.int16())
        frame["expiry_reason"] = dictionary_array(reason_codes, fk.REASON_NAMES, pa.int8())
    if community_id:
        frame["community_id"] = _community_ids(
            src_hi, src_lo, dst_hi, dst_lo, protocol, src_port, dst_port, is_v4, arrow_text
        )
    frame["src2dst_payload_bytes"] = numeric[fr.N_FWD_PAYLOAD]
    frame["dst2src_payload_bytes"] = numeric[fr.N_REV_PAYLOAD]
    state_codes = numeric[fr.N_CONN_STATE]
    if arrow_text:
        frame["conn_state"] = dictionary_array(state_codes, fr.CONN_STATE_NAMES, pa.int8())
        frame["history"] = _arrow_strings(history, history_len)
    else:
        frame["conn_state"] = np.asarray(fr.CONN_STATE_NAMES, dtype=object)[state_codes]
        frame["history"] = history.view(f"S{fr.HISTORY_WIDTH}").ravel().astype(str).astype(object)
    if flow_names is not None:
        service, server_name = flow_names.columns(rows)
    else:
        service = server_name = np.full(n, "", dtype=object)
    if arrow_text:
        service, server_name = _arrow_texts(service), _arrow_texts(server_name)
    frame["service"] = service
    frame["server_name"] = server_name
    return frame


def columns_to_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The flow columns as a pandas DataFrame: UTC-aware timestamps, categories."""
    import pandas as pd

    frame = pd.DataFrame(columns)
    for name in TIMESTAMP_COLUMNS:
        frame[name] = frame[name].dt.tz_localize("UTC")
    for name in CATEGORY_COLUMNS:
        frame[name] = frame[name].astype("category")
    frame["expiry_reason"] = frame["expiry_reason"].cat.set_categories(list(fk.REASON_NAMES))
    frame["conn_state"] = frame["conn_state"].cat.set_categories(list(fr.CONN_STATE_NAMES))
    return frame
