"""The checks the readers share: YAML without duplicate keys, finite numbers, ids of a TREC line."""
import math

import pytest
import yaml

from routehead_pyserini.data.checks import id_problem, int_problem, load_yaml, number_problem, yaml_error


def test_load_yaml_is_safe_load_without_duplicate_keys():
    text = "a: 1\nb: {c: [1, 2], d: .nan}\nlist:\n  - {x: 1}\n  - {x: 2}\n"
    assert load_yaml(text)["b"]["c"] == yaml.safe_load(text)["b"]["c"]
    assert math.isnan(load_yaml(text)["b"]["d"])
    for text, line, key, first in (("a: 1\nb: 2\na: 3\n", 3, "a", 1),
                                   ("s:\n  - id: x\n    with: {k: 1, k: 2}\n", 3, "k", 3),
                                   ("m: {1: a, 1: b}\n", 1, 1, 1)):
        with pytest.raises(yaml.YAMLError) as err:
            load_yaml(text)
        assert yaml_error(err.value) == f" at line {line}: duplicate key {key!r} (first at line {first})"
    with pytest.raises(yaml.constructor.ConstructorError):
        load_yaml("!!python/object:os.system x\n")  # still a safe loader


def test_merge_keys_may_be_overridden():
    text = "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  x: 3\n"
    assert load_yaml(text)["derived"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("value, problem", [
    (1, None), (-2.5, None), (0.0, None),
    (float("nan"), "NaN"), (float("inf"), "infinite (inf)"), (float("-inf"), "infinite (-inf)"),
    (True, "True, not a number"), ("0.5", "'0.5', not a number"), (None, "None, not a number"),
])
def test_number_problem(value, problem):
    assert number_problem(value) == problem


def test_int_problem():
    assert int_problem(3) is None and int_problem(0, 0) is None
    assert int_problem(2.0) == "2.0, not an integer"
    assert int_problem(True) == "True, not an integer"
    assert int_problem(0, 1) == "0, below 1"


@pytest.mark.parametrize("value, problem", [
    ("q1", None), ("CACM-0115", None), ("", "is empty"),
    ("a b", "contains whitespace"), ("a\tb", "contains whitespace"), ("a\nb", "contains whitespace"),
    ("a\u00a0b", "contains whitespace"),
])
def test_id_problem(value, problem):
    assert (id_problem(value) or "").startswith(problem or "")
    assert (id_problem(value) is None) == (problem is None)
