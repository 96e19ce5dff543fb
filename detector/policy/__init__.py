"""The site policy: networks, isolated hosts, business hours, allowlist, rule settings.

A site writes one TOML file (``docs/policy.md`` documents every key;
``captures/sample-policy.toml`` is a worked example). ``load_policy`` checks it
completely and returns a frozen ``Policy``; any problem is one ``PolicyError``
line naming the file, the key path, what was wrong and what is allowed.
Without a file, ``default_policy`` gives RFC 1918 + fc00::/7 as internal and
Mon–Fri 08:00–18:00 in this machine's time zone, and says so in ``warnings``.

The package by job: ``zones`` (the site's UTC offset at any instant),
``site`` (the ``Policy`` itself and its defaults), ``reader`` (the TOML file).
Addresses and networks are ``detector.networks``; each rule's settings are
declared with the rule (``detector/detect/rules/``).
"""

from ..alerts.record import SEVERITY_NAMES
from ..networks import DEFAULT_INTERNAL, LOCAL_SCOPE, NetworkSet
from .reader import load_policy, parse_policy
from .site import RULE_DEFAULTS, RULE_IDS, Policy, RuleSettings, default_policy
from .zones import machine_timezone

__all__ = [
    "DEFAULT_INTERNAL",
    "LOCAL_SCOPE",
    "RULE_DEFAULTS",
    "RULE_IDS",
    "SEVERITY_NAMES",
    "NetworkSet",
    "Policy",
    "RuleSettings",
    "default_policy",
    "load_policy",
    "machine_timezone",
    "parse_policy",
]
