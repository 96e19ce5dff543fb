"""The forest as skops rebuilt it, checked before scikit-learn uses it.

skops can only say that a loaded object is of a trusted type, not that its
content is safe: scikit-learn's tree code follows child and feature indices
without bounds checks (an index out of range is a segmentation fault in
``apply``, a loop back to the root never ends; a node count short of the
nodes leaves children past it). So every attribute of the IsolationForest and of each of its
trees must be one a forest fitted by this version has, of its type and range,
with the parameters ``EgressModel`` gives it; and each tree's arrays must form
a tree: every split node's two children are later nodes (scikit-learn numbers
a node after its parent, so no path can loop), every node but the root has
exactly one parent, leaves have no children (-1, -1), split features are
below the feature count, thresholds and values are finite."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from .archive import Refusal
from .constants import MODEL_COLUMNS

MEMBER = "forest.skops"
N_FEATURES = len(MODEL_COLUMNS)
# IsolationForest's own arguments to its trees; these vary per tree or forest.
_PER_TREE = ("random_state", "max_depth")
_PER_FOREST = ("n_estimators", "max_samples", "random_state")


def _refuse(what: str) -> Refusal:
    return Refusal(MEMBER, what)


@functools.cache
def _reference() -> Any:
    """A forest fitted by this scikit-learn the way EgressModel fits one: the
    attributes, parameters and types a good file's forest has."""
    from sklearn.ensemble import IsolationForest

    matrix = np.arange(2.0 * N_FEATURES).reshape(2, N_FEATURES)
    return IsolationForest(n_estimators=1, max_samples=2, random_state=0).fit(matrix)


def _same(value: Any, expected: Any) -> bool:
    return type(value) is type(expected) and bool(value == expected)


def _whole(value: Any, low: int, high: int) -> bool:
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and low <= int(value) <= high
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _same_attributes(obj: Any, reference: Any, where: str) -> None:
    have, want = set(vars(obj)), set(vars(reference))
    if have != want:
        extra, gone = sorted(have - want), sorted(want - have)
        what = f"unknown attribute {extra[0]}" if extra else f"no attribute {gone[0]}"
        raise _refuse(f"{where}: {what} (not what this version writes)")


def check_forest(forest: Any, params: Mapping[str, Any]) -> None:
    """Refuse (a Refusal naming forest.skops) an IsolationForest that is not one
    EgressModel with ``params`` (meta.json's) would have fitted."""
    from sklearn.tree import ExtraTreeRegressor

    reference = _reference()
    _same_attributes(forest, reference, "the forest")
    state = vars(forest)
    for key, expected in vars(reference).items():
        if key.endswith("_") or key.startswith("_") or key in _PER_FOREST:
            continue
        if not _same(state[key], expected):
            raise _refuse(f"parameter {key} is {_shown(state[key])}, not {_shown(expected)}")
    n = params["n_estimators"]
    if not _same(forest.n_estimators, n):
        raise _refuse(f"{_shown(forest.n_estimators)} trees; meta.json says {n}")
    if not _same(forest.random_state, params["random_state"]):
        raise _refuse(
            f"random_state {_shown(forest.random_state)}; meta.json says {params['random_state']}"
        )
    samples = forest.max_samples
    if not (
        _whole(samples, 1, params["max_samples"])
        and forest.max_samples_ == samples
        and forest._max_samples == samples
    ):
        raise _refuse(
            f"max_samples {_shown(samples)}, not a whole number from 1 to "
            f"{params['max_samples']} (meta.json) as max_samples_ and _max_samples"
        )
    if not (_same(forest.n_features_in_, N_FEATURES) and _same(forest._max_features, N_FEATURES)):
        raise _refuse(
            f"{_shown(forest.n_features_in_)} features in, this version's forest has {N_FEATURES}"
        )
    if not _whole(forest._n_samples, samples, 2**62):
        raise _refuse(f"_n_samples {_shown(forest._n_samples)}, not a count of at least {samples}")
    if forest._sample_weight is not None:
        raise _refuse("holds sample weights; this version fits without")
    if not (isinstance(forest.offset_, float) and np.isfinite(forest.offset_)):
        raise _refuse(f"offset_ {_shown(forest.offset_)} is not a finite number")
    if type(forest.estimator_) is not ExtraTreeRegressor:
        raise _refuse(f"estimator_ is a {type(forest.estimator_).__name__}")
    per_tree = {
        "estimators_": forest.estimators_,
        "estimators_features_": forest.estimators_features_,
        "_seeds": forest._seeds,
        "_decision_path_lengths": forest._decision_path_lengths,
        "_average_path_length_per_tree": forest._average_path_length_per_tree,
    }
    for key, value in per_tree.items():
        if not isinstance(value, list | tuple | np.ndarray) or len(value) != n:
            raise _refuse(f"{key} is not one entry for each of the {n} trees")
    depth = int(np.ceil(np.log2(max(samples, 2))))  # what IsolationForest.fit gives its trees
    for i, estimator in enumerate(forest.estimators_):
        nodes = _check_estimator(estimator, i, reference.estimators_[0], depth, samples)
        features = forest.estimators_features_[i]
        if not (
            isinstance(features, np.ndarray)
            and features.dtype.kind in "iu"
            and sorted(features.tolist()) == list(range(N_FEATURES))
        ):
            raise _refuse(f"tree {i}: estimators_features_ is not the {N_FEATURES} features")
        for key in ("_decision_path_lengths", "_average_path_length_per_tree"):
            lengths = per_tree[key][i]
            if not (
                isinstance(lengths, np.ndarray)
                and lengths.dtype.kind in "iuf"
                and lengths.shape == (nodes,)
                and np.isfinite(lengths).all()
                and (lengths >= 0).all()
            ):
                raise _refuse(f"tree {i}: {key} is not {nodes:,} finite numbers, one per node")


def _check_estimator(estimator: Any, i: int, reference: Any, depth: int, samples: int) -> int:
    """One ExtraTreeRegressor as IsolationForest makes them; its node count."""
    from sklearn.tree import ExtraTreeRegressor
    from sklearn.tree._tree import Tree

    if type(estimator) is not ExtraTreeRegressor:
        raise _refuse(f"tree {i} is a {type(estimator).__name__}, not an ExtraTreeRegressor")
    _same_attributes(estimator, reference, f"tree {i}")
    state = vars(estimator)
    for key, expected in vars(reference).items():
        if key.endswith("_") or key in _PER_TREE:
            continue
        if not _same(state[key], expected):
            raise _refuse(
                f"tree {i}: parameter {key} is {_shown(state[key])}, not {_shown(expected)}"
            )
    if not _whole(estimator.random_state, 0, 2**32 - 1):
        raise _refuse(f"tree {i}: random_state {_shown(estimator.random_state)}")
    if not _same(estimator.max_depth, depth):
        raise _refuse(
            f"tree {i}: max_depth {_shown(estimator.max_depth)}, not {depth} (for "
            f"{samples} samples)"
        )
    if not (
        _same(estimator.n_features_in_, N_FEATURES)
        and _same(estimator.n_outputs_, 1)
        and _same(estimator.max_features_, 1)
    ):
        raise _refuse(f"tree {i}: not a tree over {N_FEATURES} features with one output")
    if type(estimator.tree_) is not Tree:
        raise _refuse(f"tree {i}: tree_ is a {type(estimator.tree_).__name__}")
    return check_tree(estimator.tree_, i, samples)


def check_tree(tree: Any, i: int, samples: int) -> int:
    """The arrays of one sklearn Tree (tree ``i`` of a forest of ``samples``
    samples per tree) form a tree scikit-learn can walk safely; its node count."""
    # Scalars first: the array properties trust them (a node count beyond the
    # nodes would make them read past the nodes).
    if not (_same(tree.n_outputs, 1) and _same(tree.n_features, N_FEATURES)):
        raise _refuse(
            f"tree {i}: {tree.n_outputs} outputs over {tree.n_features} features, "
            f"not 1 over {N_FEATURES}"
        )
    count, room = tree.node_count, tree.capacity
    if not 1 <= count <= 2 * samples - 1:
        raise _refuse(
            f"tree {i}: {count:,} nodes; a tree of {samples} samples has 1 to {2 * samples - 1:,}"
        )
    if room != count:
        raise _refuse(f"tree {i}: says {count:,} nodes and holds {room:,}")
    if tree.n_classes.tolist() != [1] or not _whole(tree.max_depth, 0, count):
        raise _refuse(
            f"tree {i}: not a regression tree (classes {tree.n_classes.tolist()}, "
            f"depth {tree.max_depth})"
        )
    left, right = tree.children_left, tree.children_right
    leaf = left == -1
    node = np.arange(count)
    odd = np.flatnonzero(leaf != (right == -1))
    if len(odd):
        raise _refuse(
            f"tree {i}, node {odd[0]}: one child ({left[odd[0]]}, {right[odd[0]]}); a "
            "node has two or none (-1, -1)"
        )
    split = ~leaf
    for side, child in (("left", left), ("right", right)):
        outside = np.flatnonzero(split & ((child < 0) | (child >= count)))
        if len(outside):
            at = outside[0]
            raise _refuse(
                f"tree {i}, node {at}: {side} child {child[at]:,} is outside the "
                f"tree's {count:,} nodes"
            )
        back = np.flatnonzero(split & (child <= node))
        if len(back):
            at = back[0]
            raise _refuse(
                f"tree {i}, node {at}: {side} child {child[at]} is not a later node (a loop)"
            )
    parents = np.bincount(np.concatenate([left[split], right[split]]), minlength=count)
    wrong = np.flatnonzero(parents[1:] != 1)
    if len(wrong):
        at = wrong[0] + 1
        raise _refuse(
            f"tree {i}, node {at}: {parents[at]} parents; every node but the root has one"
        )
    feature = tree.feature
    bad = np.flatnonzero(split & ((feature < 0) | (feature >= N_FEATURES)))
    if len(bad):
        raise _refuse(
            f"tree {i}, node {bad[0]}: splits on feature {feature[bad[0]]:,} of {N_FEATURES}"
        )
    for name in ("threshold", "impurity", "weighted_n_node_samples", "value"):
        values = getattr(tree, name)
        if not np.isfinite(values).all():
            at = int(np.flatnonzero(~np.isfinite(values.reshape(count, -1)).all(axis=1))[0])
            raise _refuse(f"tree {i}, node {at}: {name} is not a finite number")
    if tree.value.shape != (count, 1, 1) or (tree.n_node_samples < 1).any():
        raise _refuse(f"tree {i}: values or sample counts are not one per node")
    return int(count)
