"""Templates and conditions: a Jinja2 sandbox, compiled once per workflow, rendered per run.

The render context of a step exposes:
  inputs / input           the run's inputs
  steps.<id>.<output>      any completed upstream step's declared outputs
  outputs.<id>             that step's first output
  <output name>            every declared output at top level (Rust LLM-Orchestrator style)

A template that is exactly one expression (`"{{ steps.a.items }}"`) evaluates to the native
value (a list stays a list); anything else renders to a string. Conditions are expressions;
the older `"{{ outputs.moderate }} == 'safe'"` form is rewritten to `(outputs.moderate) == 'safe'`
and evaluated as one expression, never by rendering text and re-parsing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llm_orchestrator.exceptions import TemplateRenderError


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _make_env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["tojson"] = _tojson
    env.filters["json"] = _tojson
    env.globals["fromjson"] = json.loads
    env.filters["legacy_text"] = _legacy_text
    return env


def _legacy_text(value: Any) -> Any:
    """Older conditions compared rendered text: strip the whitespace an LLM reply carries."""
    return value.strip() if isinstance(value, str) else value


ENV = _make_env()

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
_EXPR_BLOCK = re.compile(r"\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}", re.DOTALL)
#: names that are always defined in a render context
CONTEXT_ROOTS = frozenset({"inputs", "input", "steps", "outputs"})


@dataclass(frozen=True, slots=True)
class Reference:
    """A `steps.<step>.<output>` or `outputs.<step>` reference found in a template."""

    step_id: str
    output: str | None  # None for `outputs.<id>` (first output) or a bare `steps.<id>`


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    step_refs: tuple[Reference, ...]
    #: top-level names other than the context roots (declared output names, loop variables)
    names: frozenset[str]
    #: names read from `inputs.X` / `input.X`
    input_refs: frozenset[str] = frozenset()


class CompiledTemplate:
    """A template string compiled once; `render(ctx)` per run."""

    __slots__ = ("source", "_render", "is_constant")

    def __init__(self, source: str) -> None:
        self.source = source
        self.is_constant = "{{" not in source and "{%" not in source
        if self.is_constant:
            self._render: Callable[[Mapping[str, Any]], Any] = lambda _ctx: source
            return
        single = _SINGLE_EXPR.match(source)
        if single is not None and "{%" not in source:
            expr = ENV.compile_expression(single.group("expr").strip(), undefined_to_none=False)
            self._render = lambda ctx: expr(**ctx)
        else:
            template = ENV.from_string(source)
            self._render = template.render

    def render(self, ctx: Mapping[str, Any]) -> Any:
        if self.is_constant:
            return self.source
        try:
            return self._render(ctx)
        except (UndefinedError, SecurityError, TypeError, ValueError, KeyError) as exc:
            raise TemplateRenderError(f"template {self.source!r} failed: {exc}") from exc

    def render_str(self, ctx: Mapping[str, Any]) -> str:
        value = self.render(ctx)
        if isinstance(value, str):
            return value
        if isinstance(value, dict | list):
            return _tojson(value)
        return str(value)


def _legacy_condition_to_expression(source: str) -> str:
    if "{{" not in source:
        return source
    return _EXPR_BLOCK.sub(lambda m: f"(({m.group('expr').strip()}) | legacy_text)", source).strip()


_FALSY_STRINGS = frozenset({"", "false", "no", "0", "none", "null", "off"})


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY_STRINGS
    return bool(value)


class CompiledCondition:
    __slots__ = ("source", "expression", "_eval")

    def __init__(self, source: str) -> None:
        self.source = source
        self.expression = _legacy_condition_to_expression(source)
        self._eval = ENV.compile_expression(self.expression, undefined_to_none=False)

    def value(self, ctx: Mapping[str, Any]) -> Any:
        try:
            return self._eval(**ctx)
        except (UndefinedError, SecurityError, TypeError, ValueError, KeyError) as exc:
            raise TemplateRenderError(f"condition {self.source!r} failed: {exc}") from exc

    def evaluate(self, ctx: Mapping[str, Any]) -> bool:
        return truthy(self.value(ctx))


def check_syntax(source: str, *, condition: bool = False) -> str | None:
    """Return a syntax error message, or None when the template compiles."""
    try:
        if condition:
            CompiledCondition(source)
        else:
            CompiledTemplate(source)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None


def inspect_template(source: str, *, condition: bool = False) -> TemplateInfo:
    """Find what a template refers to (for validation before anything runs)."""
    text = _legacy_condition_to_expression(source) if condition else source
    if condition:
        ast: nodes.Node = ENV.parse("{{ " + text + " }}")
    else:
        ast = ENV.parse(text)
    parents: dict[int, nodes.Node] = {}
    for node in _walk(ast):
        for child in node.iter_child_nodes():
            parents[id(child)] = node
    refs: list[Reference] = []
    inputs: set[str] = set()
    for node in _walk(ast):
        if (
            isinstance(node, nodes.Getattr | nodes.Getitem)
            and isinstance(node.node, nodes.Name)
            and node.node.name in ("inputs", "input")
        ):
            input_name = _attr_name(node)
            if input_name is not None:
                inputs.add(input_name)
        ref = _as_reference(node)
        if ref is not None:
            refs.append(ref)
        elif _is_bare_steps_ref(node, parents.get(id(node))):
            step = _attr_name(node)
            if step is not None:
                refs.append(Reference(step_id=step, output=None))
    names = frozenset(meta.find_undeclared_variables(ast)) - CONTEXT_ROOTS  # type: ignore[arg-type]
    return TemplateInfo(
        step_refs=tuple(dict.fromkeys(refs)), names=names, input_refs=frozenset(inputs)
    )


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _attr_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        value = node.arg.value
        return value if isinstance(value, str) else None
    return None


def _is_bare_steps_ref(node: nodes.Node, parent: nodes.Node | None) -> bool:
    """`steps.X` not followed by `.output` (e.g. `steps.X | tojson`)."""
    if not (
        isinstance(node, nodes.Getattr | nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "steps"
    ):
        return False
    return not (isinstance(parent, nodes.Getattr | nodes.Getitem) and parent.node is node)


def _as_reference(node: nodes.Node) -> Reference | None:
    """`steps.X.Y`, `steps.X` or `outputs.X`, written with dots or constant subscripts."""
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None
    inner = node.node
    name = _attr_name(node)
    if name is None:
        return None
    # outputs.X / steps.X : inner is the root Name
    if isinstance(inner, nodes.Name):
        if inner.name == "outputs":
            return Reference(step_id=name, output=None)
        return None
    # steps.X.Y : inner is Getattr(Name(steps), X)
    if (
        isinstance(inner, nodes.Getattr | nodes.Getitem)
        and isinstance(inner.node, nodes.Name)
        and inner.node.name == "steps"
    ):
        step = _attr_name(inner)
        if step is not None:
            return Reference(step_id=step, output=name)
    return None
