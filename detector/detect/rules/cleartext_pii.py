"""cleartext-pii: Taiwan ID numbers sent out unencrypted (bulletin No. 4), shown
only masked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...alerts.record import Alert
from ...flows.payload import PII_KIND
from ...networks import address_text
from ..declare import COUNT, PAYLOAD, Detection, Rule, Setting
from .common import internal_side, over_facts, when

if TYPE_CHECKING:
    import pandas as pd

    from ..context import ScanContext


DETECTION = Detection(
    rule_id="cleartext-pii",
    title="Personal ID numbers sent in the clear",
    severity=3,
    catches="Taiwan national ID / resident certificate numbers sent out unencrypted (shown masked)",
    why_it_matters=(
        "Personal ID numbers left the site unencrypted (bulletin No. 4): anyone on the "
        "path can read them. The numbers are shown masked here."
    ),
    description="""\
Bulletin No. 4: personal data must not leave in the clear. Fires when an
internal host sends Taiwan national ID numbers (a letter, 1 or 2, eight digits,
valid check digit) or resident certificate numbers (a letter, then A–D or 8–9,
eight digits, valid check digit) to an outside address in unencrypted TCP
payload (HTTP, SMTP, FTP, …) that starts as text. Numbers glued to other
letters or digits do not count. **The detector never keeps or writes a full
number**: alerts show `A12*****89` and a count of distinct numbers
(`egress.pii_masked`, `egress.pii_count`). Only the first packets of each flow
are read (`[inspection]`), so numbers deep in a long upload are not seen.""",
    settings=(
        Setting(
            "min_count", COUNT, 1, "Distinct ID numbers one host must send to one outside address."
        ),
    ),  # fmt: skip
)


@DETECTION.checks(over=PAYLOAD)
@over_facts("pii")
def check_cleartext_pii(ctx: ScanContext, rule: Rule, pii: pd.DataFrame) -> list[Alert]:
    policy = ctx.policy
    src_in, _ = internal_side(pii, policy)
    outbound = policy.is_external(pii["dst_hi"].to_numpy(), pii["dst_lo"].to_numpy())
    sent = pii[src_in & outbound]
    alerts: list[Alert] = []
    keys = ["src_hi", "src_lo", "dst_hi", "dst_lo"]
    for (s_hi, s_lo, d_hi, d_lo), rows in sent.groupby(keys, sort=True):
        distinct = rows.drop_duplicates("secret")
        if len(distinct) < int(rule["min_count"]):
            continue
        host = address_text(int(s_hi), int(s_lo))  # type: ignore[call-overload]
        peer = address_text(int(d_hi), int(d_lo))  # type: ignore[call-overload]
        port = int(rows["dport"].value_counts().index[0])
        start, end = int(rows["ts_ns"].min()), int(rows["ts_ns"].max())
        masked = list(distinct["text"].head(5))
        kinds = {int(k) for k in distinct[PII_KIND]}
        what = " and ".join(
            label for k, label in ((1, "national ID"), (2, "resident certificate")) if k in kinds
        )
        alerts.append(
            rule.alert(
                start,
                end,
                host,
                source_packets=len(rows),
                destination_ip=peer,
                destination_port=port,
                transport="tcp",
                direction="egress",
                text=(
                    f"{host} sent {len(distinct)} {what} number(s) unencrypted to "
                    f"{peer}:{port} {when(start, end, policy)}: {', '.join(masked)}"
                    + (" …" if len(distinct) > len(masked) else "")
                    + "; personal data must not leave in the clear"
                ),
                evidence={"pii_count": len(distinct), "pii_masked": masked},
            )
        )
    return alerts
