"""The portable filter: parsing, errors, and the Chroma and Qdrant translations."""

from __future__ import annotations

from typing import Any

import pytest

from llm_orchestrator.vectordb.filters import (
    And,
    Condition,
    Or,
    chroma_where,
    parse_filter,
    to_chroma,
    validate_for,
)
from tests.support.modules import require_module


def test_bare_values_and_implicit_and() -> None:
    node = parse_filter({"source": "faq", "year": {"$gte": 2020, "$lt": 2024}})
    assert node == And(
        (
            Condition("source", "$eq", "faq"),
            Condition("year", "$gte", 2020),
            Condition("year", "$lt", 2024),
        )
    )
    assert parse_filter({"ok": True}) == Condition("ok", "$eq", True)


def test_logical_operators_nest() -> None:
    node = parse_filter({"$or": [{"a": 1}, {"$and": [{"b": {"$in": ["x", "y"]}}, {"c": 2.5}]}]})
    assert node == Or(
        (
            Condition("a", "$eq", 1),
            And((Condition("b", "$in", ("x", "y")), Condition("c", "$eq", 2.5))),
        )
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"a": {"$regex": "x"}},
            r"filter\.a: unknown operator '\$regex'; allowed on a field: \$eq",
        ),
        ({"$not": [{"a": 1}]}, r"unknown operator '\$not'; allowed: .*\$and, \$or"),
        ({"$and": []}, r"filter\.\$and: takes a non-empty list"),
        ({"$or": {"a": 1}}, r"takes a non-empty list"),
        ({"a": {"$in": []}}, r"filter\.a\.\$in: takes a non-empty list"),
        ({"a": {"$nin": "x"}}, r"takes a non-empty list"),
        ({"a": {"$gt": "2020"}}, r"filter\.a\.\$gt: compares numbers"),
        ({"a": {"$lte": True}}, r"compares numbers"),
        ({"a": [1, 2]}, r"values are strings, numbers or booleans"),
        ({"a": None}, r"values are strings, numbers or booleans"),
        ({"a": {}}, r"empty operator mapping"),
        ({}, r"the filter is empty"),
        ({"$and": [{"a": {"$foo": 1}}]}, r"filter\.\$and\[0\]\.a: unknown operator '\$foo'"),
    ],
)
def test_errors_name_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filter(raw)


def test_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="a filter is a mapping"):
        parse_filter(["a"])  # type: ignore[arg-type]


def test_chroma_translation() -> None:
    assert to_chroma(parse_filter({"source": "faq"})) == {"source": {"$eq": "faq"}}
    assert to_chroma(parse_filter({"source": "faq", "year": {"$in": [1, 2]}})) == {
        "$and": [{"source": {"$eq": "faq"}}, {"year": {"$in": [1, 2]}}]
    }
    # Chroma wants two or more children under $and/$or: a single child is unwrapped
    assert to_chroma(parse_filter({"$or": [{"a": {"$ne": 1}}]})) == {"a": {"$ne": 1}}
    assert chroma_where(None, "_ns", "t") == {"_ns": {"$eq": "t"}}
    assert chroma_where({"a": 1}, "_ns", "") == {"$and": [{"_ns": {"$eq": ""}}, {"a": {"$eq": 1}}]}


def test_qdrant_translation() -> None:
    require_module("qdrant_client")
    from qdrant_client import models as m

    from llm_orchestrator.vectordb.filters import qdrant_filter, to_qdrant

    f = to_qdrant(parse_filter({"source": "faq", "year": {"$gte": 2020}}))
    assert f == m.Filter(
        must=[
            m.Filter(must=[m.FieldCondition(key="source", match=m.MatchValue(value="faq"))]),
            m.Filter(must=[m.FieldCondition(key="year", range=m.Range(gte=2020))]),
        ]
    )
    ne = to_qdrant(parse_filter({"a": {"$ne": 1.5}}))
    assert ne == m.Filter(must_not=[m.FieldCondition(key="a", range=m.Range(gte=1.5, lte=1.5))])
    nin = to_qdrant(parse_filter({"a": {"$nin": ["x"]}}))
    assert nin.must[0].match == m.MatchExcept(**{"except": ["x"]})
    either = to_qdrant(parse_filter({"$or": [{"a": 1}, {"b": 2}]}))
    assert either.should is not None and len(either.should) == 2
    scoped = qdrant_filter(None, "_ns", "t")
    assert scoped == m.Filter(must=[m.FieldCondition(key="_ns", match=m.MatchValue(value="t"))])


def test_store_specific_limits_are_validation_errors() -> None:
    require_module("qdrant_client")
    validate_for("chroma", {"a": {"$in": [1.5, "x"]}})
    with pytest.raises(ValueError, match=r"qdrant supports \$in only over all-string"):
        validate_for("qdrant", {"a": {"$in": [1.5, 2.5]}})
    with pytest.raises(ValueError, match=r"\$nin"):
        validate_for("qdrant", {"a": {"$nin": ["x", 1]}})
    with pytest.raises(ValueError, match="unknown operator"):
        validate_for("chroma", {"a": {"$like": "x"}})
