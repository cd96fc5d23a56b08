"""Property: any document is either a valid sweep or a SweepFileError naming a key.

Random and mutated documents go through the whole validation path; nothing
else may escape (no TypeError, KeyError or pydantic internals), and the
message always starts with the file name.
"""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lrtune.spec import SweepFileError, SweepSpec, apply_overrides, parse_spec, parse_yaml

VALID = {
    "name": "fuzz",
    "data": {"dataset": "cifar10", "classes": ["cat", "dog"], "validation": "test"},
    "model": "seed-tiny",
    "epochs": 5,
    "batch_size": 32,
    "repeats": 2,
    "space": [
        {
            "optimizer": "sgd",
            "schedule": "step",
            "lr": {"loguniform": [0.001, 0.3]},
            "drop": {"grid": [0.25, 0.5]},
            "epochs_drop": {"choice": [5, 10]},
            "momentum": 0.9,
        },
        {"optimizer": "adam", "lr": {"uniform": [0.0001, 0.01]}},
        {
            "optimizer": "muon",
            "schedule": "wsd",
            "lr": {"loguniform": [0.0001, 0.01]},
            "decay_fraction": {"grid": [0.1, 0.2]},
            "decay_shape": "1-sqrt",
        },
        {"optimizer": "schedule_free_adamw", "lr": 0.0025, "warmup_epochs": 1},
        {"optimizer": "sgd", "schedule": "linear_to_zero", "lr": 0.1, "momentum": 0.9},
    ],
    "scheduler": {"asha": {"grace_period": 2, "reduction_factor": 3}},
    "search": "random",
    "num_samples": 3,
    "resources": {"cpu": 1, "gpu": 0.5},
}

KEYS = st.sampled_from(
    [
        "name",
        "data",
        "model",
        "epochs",
        "batch_size",
        "space",
        "scheduler",
        "search",
        "lr",
        "drop",
        "momentum",
        "optimizer",
        "schedule",
        "grid",
        "choice",
        "uniform",
        "loguniform",
        "asha",
        "pbt",
        "mutations",
        "cpu",
        "gpu",
        "classes",
        "bogus",
        "0",
        "epochs_drop",
        "decay",
        "k",
        "metric",
        "mode",
        "repeats",
        "num_samples",
        "resources",
        "decay_fraction",
        "decay_shape",
        "warmup_epochs",
        "beta_1",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(
        [
            "sgd",
            "adam",
            "muon",
            "schedule_free_adamw",
            "step",
            "time",
            "wsd",
            "linear_to_zero",
            "1-sqrt",
            "cifar10",
            "seed-tiny",
            "1e-3",
            "asha",
        ]
    ),  # fmt: skip
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=12,
)


def check(document) -> None:
    try:
        spec = parse_spec(document, "fuzz.yaml")
    except SweepFileError as e:
        message = str(e)
        assert message.startswith("fuzz.yaml"), message
        assert len(message) < 4000
        return
    assert isinstance(spec, SweepSpec)
    assert spec.trial_count() >= 1
    spec.pbt_mutations()  # checked with the spec: PBT's mutations never fail after it


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_random_documents_are_accepted_or_rejected_cleanly(document):
    check(document)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


ALL_PATHS = [p for p in paths(VALID) if p]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ALL_PATHS), st.sampled_from(["delete", "replace", "add"]), VALUES, KEYS)
@example(
    ("data", "dataset"), "replace", [None], "name"
)  # found by a fresh draw: a TypeError, not a clean error
def test_mutations_of_a_valid_file_are_accepted_or_rejected_cleanly(path, action, value, key):
    document = copy.deepcopy(VALID)
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif isinstance(parent[last], dict):
        parent[last][key] = value
    check(document)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.=0123456789[]{},:- ", max_size=30))
def test_random_overrides_are_applied_or_rejected_cleanly(override):
    try:
        document = apply_overrides(VALID, [override], "fuzz.yaml")
    except SweepFileError:
        return
    check(document)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_random_text_is_yaml_or_a_clean_error(text):
    try:
        document = parse_yaml(text, "fuzz.yaml")
    except SweepFileError as e:
        assert str(e).startswith("fuzz.yaml: not valid YAML")
        return
    check(document)


def test_the_valid_document_is_valid():
    spec = parse_spec(yaml.safe_load(yaml.safe_dump(VALID)), "fuzz.yaml")
    # arms: step (2 grid points), adam, muon/wsd (2), schedule-free, linear-to-zero; 3 samples, 2 repeats
    assert spec.trial_count() == (2 + 1 + 2 + 1 + 1) * 3 * 2
