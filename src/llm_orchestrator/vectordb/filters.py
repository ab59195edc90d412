"""The portable metadata filter, parsed once and translated for each store.

    {"source": "faq", "year": {"$gte": 2020}}           # keys side by side are ANDed
    {"$or": [{"lang": "en"}, {"lang": {"$in": ["de", "fr"]}}]}

Operators: `$eq $ne $gt $gte $lt $lte $in $nin` on a field, `$and $or` over sub-filters; a
bare value means `$eq`. Comparisons take numbers; `$in`/`$nin` a non-empty list of scalars.
Anything else is a `ValueError` naming the operator and the allowed ones. A store that cannot
express part of a valid filter raises `ValueError` from its translator, which validation
calls without touching the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FieldOp = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
FIELD_OPERATORS: tuple[FieldOp, ...] = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
LOGICAL_OPERATORS = ("$and", "$or")
_ALLOWED = ", ".join((*FIELD_OPERATORS, *LOGICAL_OPERATORS))
_FIELD_ALLOWED = ", ".join(FIELD_OPERATORS)

Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: FieldOp
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Condition | And | Or


def parse_filter(raw: Mapping[str, Any], where: str = "filter") -> Node:
    """The AST of a portable filter; `ValueError` says what is wrong and where."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a filter is a mapping, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{where}: the filter is empty; leave it out to match everything")
    parts: list[Node] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: keys are strings, got {key!r}")
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}.{key}: takes a non-empty list of filters")
            children = tuple(
                parse_filter(child, f"{where}.{key}[{i}]") for i, child in enumerate(value)
            )
            parts.append(And(children) if key == "$and" else Or(children))
        elif key.startswith("$"):
            raise ValueError(f"{where}: unknown operator '{key}'; allowed: {_ALLOWED}")
        else:
            parts.extend(_parse_field(key, value, f"{where}.{key}"))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_field(field: str, value: Any, where: str) -> list[Node]:
    if not field:
        raise ValueError(f"{where}: field names cannot be empty")
    if not isinstance(value, Mapping):
        return [Condition(field, "$eq", _scalar(value, where))]
    if not value:
        raise ValueError(f"{where}: an empty operator mapping; write e.g. {{'$eq': value}}")
    out: list[Node] = []
    for op, operand in value.items():
        if op not in FIELD_OPERATORS:
            raise ValueError(
                f"{where}: unknown operator '{op}'; allowed on a field: {_FIELD_ALLOWED}"
            )
        at = f"{where}.{op}"
        if op in ("$in", "$nin"):
            if not isinstance(operand, list | tuple) or not operand:
                raise ValueError(f"{at}: takes a non-empty list of values")
            out.append(Condition(field, op, tuple(_scalar(v, at) for v in operand)))
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            if isinstance(operand, bool) or not isinstance(operand, int | float):
                raise ValueError(f"{at}: compares numbers, got {operand!r}")
            out.append(Condition(field, op, operand))
        else:
            out.append(Condition(field, op, _scalar(operand, at)))
    return out


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"{where}: values are strings, numbers or booleans, got {value!r}")


# -- Chroma ------------------------------------------------------------------------------


def to_chroma(node: Node) -> dict[str, Any]:
    """Chroma's `where` (which has every portable operator; $and/$or need two children)."""
    if isinstance(node, Condition):
        value = list(node.value) if isinstance(node.value, tuple) else node.value
        return {node.field: {node.op: value}}
    key = "$and" if isinstance(node, And) else "$or"
    children = [to_chroma(child) for child in node.children]
    return children[0] if len(children) == 1 else {key: children}


def chroma_where(
    raw: Mapping[str, Any] | None, namespace_key: str, namespace: str
) -> dict[str, Any]:
    ns: dict[str, Any] = {namespace_key: {"$eq": namespace}}
    if raw is None:
        return ns
    return {"$and": [ns, to_chroma(parse_filter(raw))]}


# -- Qdrant ------------------------------------------------------------------------------


def to_qdrant(node: Node) -> Any:
    """A `qdrant_client.models.Filter`. Qdrant matches only strings, integers and booleans
    exactly: `$eq`/`$ne` on a float become a range, and `$in`/`$nin` take strings or
    integers (not a mix, not floats or booleans)."""
    from qdrant_client import models as m

    if isinstance(node, And):
        return m.Filter(must=[to_qdrant(child) for child in node.children])
    if isinstance(node, Or):
        return m.Filter(should=[to_qdrant(child) for child in node.children])
    key, op, value = node.field, node.op, node.value
    if op in ("$eq", "$ne"):
        if isinstance(value, float):
            cond: Any = m.FieldCondition(key=key, range=m.Range(gte=value, lte=value))
        else:
            cond = m.FieldCondition(key=key, match=m.MatchValue(value=value))
        return m.Filter(must=[cond]) if op == "$eq" else m.Filter(must_not=[cond])
    if op in ("$in", "$nin"):
        assert isinstance(value, tuple)
        all_str = all(isinstance(v, str) for v in value)
        all_int = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not (all_str or all_int):
            raise ValueError(
                f"filter field '{key}': qdrant supports {op} only over all-string or "
                f"all-integer lists, got {list(value)!r}"
            )
        values: list[Any] = list(value)
        if op == "$in":
            return m.Filter(must=[m.FieldCondition(key=key, match=m.MatchAny(any=values))])
        return m.Filter(must=[m.FieldCondition(key=key, match=m.MatchExcept(**{"except": values}))])
    bound = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}[op]
    return m.Filter(must=[m.FieldCondition(key=key, range=m.Range(**{bound: value}))])


def qdrant_filter(raw: Mapping[str, Any] | None, namespace_key: str, namespace: str) -> Any:
    from qdrant_client import models as m

    ns = m.FieldCondition(key=namespace_key, match=m.MatchValue(value=namespace))
    if raw is None:
        return m.Filter(must=[ns])
    return m.Filter(must=[ns, to_qdrant(parse_filter(raw))])


def validate_for(kind: str, raw: Mapping[str, Any]) -> None:
    """Parse and translate for a store kind without contacting it (raises ValueError).

    Chroma and Qdrant translate here; another store's adapter module
    (`llm_orchestrator.vectordb.<kind>`, importable without its client package) offers
    `translate_filter(node)`.
    """
    node = parse_filter(raw)
    if kind == "chroma":
        to_chroma(node)
    elif kind == "qdrant":
        to_qdrant(node)
    else:
        import importlib

        module = importlib.import_module(f"llm_orchestrator.vectordb.{kind}")
        module.translate_filter(node)
