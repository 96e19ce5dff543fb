"""Each detection is declared once (detector/detect/rules/): the docs are written
from the declarations, the policy reader checks settings by their declared
kinds, rule ids live in one file each, and the package has no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from detector.detect import docs
from detector.detect.declare import MODEL, PAYLOAD, SENSOR, TRAFFIC
from detector.detect.rules import BY_ID, DETECTIONS, POLICY_RULES
from detector.errors import PolicyError
from detector.policy import RULE_DEFAULTS, RULE_IDS, parse_policy

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "detector"


def test_docs_are_written_from_the_declarations():
    """docs/rules.md and docs/policy.md's rule settings say what the declarations
    say; after changing a rule, run: python -m detector.detect.docs"""
    assert (ROOT / "docs" / "rules.md").read_text(encoding="utf-8") == docs.rules_page()
    policy_md = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    assert policy_md == docs.policy_page(policy_md)


def test_the_docs_name_every_declared_setting():
    policy_md = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    rules_md = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    for detection in DETECTIONS:
        assert f"## `{detection.rule_id}`" in rules_md
        assert detection.why_it_matters in rules_md
        for setting in detection.settings:
            assert f"| `{setting.key}` |" in policy_md, (detection.rule_id, setting.key)


def test_catalogue():
    ids = [d.rule_id for d in DETECTIONS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule_id) for rule_id in ids)
    assert {d.stage for d in DETECTIONS} == {TRAFFIC, PAYLOAD, MODEL, SENSOR}
    # A rule a scan runs has a check; the model's and the sensor's are raised elsewhere.
    for detection in DETECTIONS:
        assert (detection.check is not None) == (detection.stage in (TRAFFIC, PAYLOAD))
        assert 1 <= detection.severity <= 4
        assert detection.title and detection.catches and detection.why_it_matters
    # The policy's rules are exactly the declared ones with a [rules.<id>] table.
    assert set(RULE_IDS) == set(POLICY_RULES) == {d.rule_id for d in DETECTIONS if d.in_policy}
    assert RULE_DEFAULTS["offhours-bulk-egress"] == {
        "enabled": True, "severity": 3, "min_bytes": 50_000_000, "span_minutes": 60,
        "two_way_percent": 50, "shared_by_hosts": 3,
    }  # fmt: skip
    assert BY_ID["sensor-blind"].severity == 3


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@pytest.mark.parametrize("rule_id", sorted(POLICY_RULES))
def test_every_declared_default_reads_back_as_itself(rule_id):
    """Writing each default explicitly in a policy gives the same settings: the
    declared kinds accept their own defaults and normalise them to themselves."""
    detection = POLICY_RULES[rule_id]
    lines = [f"[rules.{rule_id}]"]
    lines += [f"{key} = {_toml(value)}" for key, value in detection.defaults().items()]
    policy = parse_policy("\n".join(lines) + '\n[site]\ntimezone = "UTC"\n')
    given = policy.rule(rule_id)
    default = parse_policy('[site]\ntimezone = "UTC"\n').rule(rule_id)
    assert given == default
    assert given.severity == detection.severity
    assert dict(given.params) == {s.key: s.default for s in detection.settings}


@pytest.mark.parametrize(
    ("rule_id", "key", "value", "message"),
    [
        ("beacon", "min_score", "101", "rules.beacon.min_score: 101 is too large (at most 100)"),
        ("mail-egress", "ports", "[25, 25]", "rules.mail-egress.ports[1]: 25 is listed twice"),
        ("im-app", "ignore", '["icq"]', "rules.im-app.ignore[0]: unknown app 'icq' (known: "),
        ("always-on", "exempt", '["10.0.0.1/8"]', "rules.always-on.exempt[0]: '10.0.0.1/8' has host"),
        ("always-on", "night_end", '"00:00"', "rules.always-on.night_end: 00:00 is the same time as"),
        ("dns-tunnel", "min_label_length", "0", "rules.dns-tunnel.min_label_length: 0 is too small"),
        ("isolated-egress", "internal_severity", '"severe"', "'severe' is not a severity"),
    ],
)
def test_declared_kinds_check_the_policy(rule_id, key, value, message):
    with pytest.raises(PolicyError) as error:
        parse_policy(f"[rules.{rule_id}]\n{key} = {value}\n", "site.toml")
    assert str(error.value).startswith("site.toml: ") and message in str(error.value)


def _sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py")}


def test_each_rule_id_is_written_in_one_source_file():
    """Other code refers to the declaration (``DETECTION.rule_id``), so renaming or
    removing a rule cannot leave a stale copy of its id behind."""
    sources = _sources()
    for detection in DETECTIONS:
        quoted = re.compile(rf"[\"']{re.escape(detection.rule_id)}[\"']")
        holders = sorted(str(p.relative_to(ROOT)) for p, text in sources.items() if quoted.search(text))
        assert len(holders) == 1, (detection.rule_id, holders)
        assert holders[0].startswith("detector/detect/rules/"), holders


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The detector modules ``path`` imports when it runs (any depth, functions
    included), leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules)
    found.discard(name)
    return found


def test_no_import_cycles():
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _runtime_imports(p, modules) for p in paths}
    for name, targets in graph.items():
        # A package's __init__ importing its own submodules is how it re-exports
        # them; importing any module first imports its packages, so that edge counts.
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
        parent = name.rpartition(".")[0]
        if parent in graph:
            graph[name].add(parent)
    for start in sorted(graph):
        # Depth-first from each module: reaching it again is a cycle.
        path = {start: [start]}
        todo = [start]
        while todo:
            node = todo.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    pytest.fail("import cycle: " + " -> ".join([*path[node], start]))
                if nxt not in path:
                    path[nxt] = [*path[node], nxt]
                    todo.append(nxt)


def test_only_capture_and_flows_reach_into_the_kernels():
    """The kernels' layouts (column numbers, status codes) stay behind capture/ and
    flows/, which give the rest of the detector named columns and errors."""
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    reaching = sorted(
        _module_name(path)
        for path in paths
        if not _module_name(path).startswith(
            ("detector._kernels", "detector.capture", "detector.flows", "detector._jit")
        )
        and any(m.startswith("detector._kernels") for m in _runtime_imports(path, modules))
    )
    assert reaching == []
