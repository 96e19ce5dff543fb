"""names.domain_owners (every messaging app's domains at once, one walk up
each name: im-app over a flood of names took 7 s for 400,000 of them, a walk
per name per app) against domain_matcher, one owner at a time."""

from __future__ import annotations

import numpy as np

from detector.detect.names import domain_matcher, domain_owners


def test_domain_owners_equal_one_matcher_per_owner():
    rng = np.random.default_rng(11)
    labels = ["a", "b", "chat", "example", "com", "org", "t", "web", "whatsapp", "net", ""]
    names = [".".join(rng.choice(labels, rng.integers(1, 6))) for _ in range(3000)]
    names += ["", ".", "com", "chat.example.com", "x.chat.example.com", "example.com.evil"]
    owners = [("example.com",), ("chat.example.com", "whatsapp.net"), (), ("com", "org"),
              ("t.web.org", "a.b")]  # fmt: skip
    got = domain_owners(names, owners)
    for k, domains in enumerate(owners):
        under = domain_matcher(domains)
        assert got[:, k].tolist() == [under(n) for n in names], (k, domains)
    assert got.shape == (len(names), len(owners)) and got.any()
    assert domain_owners(names, []).shape == (len(names), 0)
