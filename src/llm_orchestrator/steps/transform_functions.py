"""Transform functions: the built-ins, plus plug-ins from the entry point group
`llm_orchestrator.transforms`.

A function gets the step's rendered inputs (a list), its parameters validated by its parameter
model, and the step's render context. It returns the step's result, or raises
`TransformDataError` when the data cannot be handled (the step turns that into a failure).

A plug-in entry point names either a `TransformFunction` (its parameters are validated before
the run) or a plain callable `fn(inputs: list, **params)`, sync or async, whose parameters are
passed as given. A plug-in cannot replace a built-in of the same name.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Generic, Literal, TypeVar

from jinja2 import Template, TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from llm_orchestrator.engine.templates import ENV, truthy

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "llm_orchestrator.transforms"

P = TypeVar("P")


class TransformDataError(ValueError):
    """A transform function was given data it cannot handle (the step fails, no retry)."""


class TransformParams(BaseModel):
    """Base of the parameter models: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class TransformFunction(Generic[P]):
    """A named function a `transform` step calls.

    `run(inputs, params, vars)` may return a value or an awaitable. With `params_model` None the
    parameters arrive as a plain dict and are not validated.
    """

    name: str
    run: Callable[[list[Any], P, Mapping[str, Any]], Any]
    params_model: type[BaseModel] | None = None
    #: how many inputs the function takes (max None: no upper bound)
    min_inputs: int = 1
    max_inputs: int | None = 1
    #: parameters handed over unrendered: the function compiles them itself (they see `item`)
    raw_params: frozenset[str] = frozenset()

    def validate(self, params: Mapping[str, Any]) -> P:
        """Validate parameters; raises pydantic's ValidationError."""
        if self.params_model is None:
            return dict(params)  # type: ignore[return-value]
        return self.params_model.model_validate(dict(params))  # type: ignore[return-value]

    async def call(self, inputs: list[Any], params: P, vars: Mapping[str, Any]) -> Any:
        result = self.run(inputs, params, vars)
        if inspect.isawaitable(result):
            result = await result
        return result

    def arity_problem(self, count: int) -> str | None:
        """Why `count` inputs do not fit, or None when they do."""
        low, high = self.min_inputs, self.max_inputs
        if low <= count and (high is None or count <= high):
            return None
        if high is None:
            want = f"at least {low} input{'s' if low != 1 else ''}"
        elif low == high:
            want = f"exactly {low} input{'s' if low != 1 else ''}"
        else:
            want = f"{low} to {high} inputs"
        return f"transform '{self.name}' takes {want}, got {count}"


# -- shared helpers ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def compile_jsonpath(path: str) -> Any:
    """Parse a JSON path (jsonpath-ng extended syntax); raises ValueError when invalid."""
    from jsonpath_ng.ext.parser import parse

    try:
        return parse(path)
    except Exception as exc:  # jsonpath-ng raises several unrelated exception types
        raise ValueError(f"invalid JSON path {path!r}: {exc}") from exc


@lru_cache(maxsize=256)
def _expression(source: str) -> Callable[..., Any]:
    try:
        return ENV.compile_expression(source, undefined_to_none=False)
    except TemplateError as exc:
        raise ValueError(f"invalid expression {source!r}: {exc}") from exc


@lru_cache(maxsize=256)
def _template(source: str) -> Template:
    try:
        return ENV.from_string(source)
    except TemplateError as exc:
        raise ValueError(f"invalid template {source!r}: {exc}") from exc


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _matches(path: Any, value: Any) -> list[Any]:
    return [match.value for match in path.find(value)]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _preview(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _one_of(model: BaseModel, names: tuple[str, str]) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of '{names[0]}' or '{names[1]}'")


# -- merge ------------------------------------------------------------------------------------


class MergeParams(TransformParams):
    deep: bool = True


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def merge(inputs: list[Any], params: MergeParams, vars: Mapping[str, Any]) -> dict[str, Any]:
    """Merge mappings left to right; later inputs win.

    A single input that is a list merges its items.
    deep (true): merge nested mappings key by key; false replaces them whole.
    """
    values = inputs[0] if len(inputs) == 1 and isinstance(inputs[0], list) else inputs
    result: dict[str, Any] = {}
    for index, value in enumerate(values, start=1):
        if not isinstance(value, dict):
            raise TransformDataError(f"item {index} is {_type_name(value)}, expected a mapping")
        result = _deep_merge(result, value) if params.deep else {**result, **value}
    return result


# -- concat -----------------------------------------------------------------------------------


class ConcatParams(TransformParams):
    separator: str = ""


def concat(inputs: list[Any], params: ConcatParams, vars: Mapping[str, Any]) -> Any:
    """Concatenate inputs: when all are lists, one list; otherwise text.

    Text: strings as they are, null as "", mappings and lists as JSON, other values via str().
    separator (""): put between the texts (not used for lists).
    """
    if all(isinstance(value, list) for value in inputs):
        return [item for value in inputs for item in value]
    return params.separator.join(_as_text(value) for value in inputs)


# -- filter -----------------------------------------------------------------------------------


class FilterParams(TransformParams):
    condition: str | None = None
    path: str | None = None

    @field_validator("condition")
    @classmethod
    def _compile_condition(cls, value: str | None) -> str | None:
        if value is not None:
            _expression(value)
        return value

    @field_validator("path")
    @classmethod
    def _compile_path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_jsonpath(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> FilterParams:
        _one_of(self, ("condition", "path"))
        return self


def _require_list(value: Any, what: str = "the input") -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise TransformDataError(f"{what} is {_type_name(value)}, expected a list")


def _require_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TransformDataError(f"the input is {_type_name(value)}, expected a string")


def _item_vars(vars: Mapping[str, Any], item: Any, index: int) -> dict[str, Any]:
    return {**vars, "item": item, "index": index}


def filter_items(inputs: list[Any], params: FilterParams, vars: Mapping[str, Any]) -> list[Any]:
    """Keep the items of a list that pass a test. Give exactly one of:

    condition: a Jinja expression evaluated per item, with `item` (and `index`) bound next to
        the step's variables, e.g. `item.score > 0.5`; the item is kept when it is truthy.
    path: a JSON path evaluated per item; the item is kept when it matches something
        (`$.email`: items with an email). A filter over the list, `$[?(@.score > 0.5)]`, works
        too: a path starting with `$[?` is evaluated on `[item]`.
    """
    items = _require_list(inputs[0])
    kept: list[Any] = []
    if params.condition is not None:
        expr = _expression(params.condition)
        for index, item in enumerate(items):
            try:
                value = expr(**_item_vars(vars, item, index))
            except (TemplateError, TypeError, ValueError, KeyError) as exc:
                raise TransformDataError(
                    f"condition {params.condition!r} failed on item {index}: {exc}"
                ) from exc
            if truthy(value):
                kept.append(item)
        return kept
    assert params.path is not None
    path = compile_jsonpath(params.path)
    list_filter = params.path.replace(" ", "").startswith("$[?")
    return [item for item in items if _matches(path, [item] if list_filter else item)]


# -- map / select -----------------------------------------------------------------------------


class MapParams(TransformParams):
    path: str | None = None
    template: str | None = None

    @field_validator("path")
    @classmethod
    def _compile_path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_jsonpath(value)
        return value

    @field_validator("template")
    @classmethod
    def _compile_template(cls, value: str | None) -> str | None:
        if value is not None:
            _template(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> MapParams:
        _one_of(self, ("path", "template"))
        return self


def _path_value(matches: list[Any]) -> Any:
    if not matches:
        return None
    return matches[0] if len(matches) == 1 else matches


def map_items(inputs: list[Any], params: MapParams, vars: Mapping[str, Any]) -> list[Any]:
    """Turn every item of a list into a new value. Give exactly one of:

    path: a JSON path applied to each item; the value is the match (null when nothing
        matches, a list when several do).
    template: a Jinja template rendered per item to a string, with `item` (and `index`) bound
        next to the step's variables, e.g. "{{ item.name }} <{{ item.email }}>".
    """
    items = _require_list(inputs[0])
    if params.path is not None:
        path = compile_jsonpath(params.path)
        return [_path_value(_matches(path, item)) for item in items]
    assert params.template is not None
    template = _template(params.template)
    out: list[Any] = []
    for index, item in enumerate(items):
        try:
            out.append(template.render(_item_vars(vars, item, index)))
        except (TemplateError, TypeError, ValueError, KeyError) as exc:
            raise TransformDataError(
                f"template {params.template!r} failed on item {index}: {exc}"
            ) from exc
    return out


class SelectParams(TransformParams):
    path: str
    all: bool = False
    required: bool = False

    @field_validator("path")
    @classmethod
    def _compile_path(cls, value: str) -> str:
        compile_jsonpath(value)
        return value


def select(inputs: list[Any], params: SelectParams, vars: Mapping[str, Any]) -> Any:
    """Pick values out of the input with a JSON path, e.g. `$.choices[0].text`.

    path (required): the JSON path.
    all (false): always return a list of every match; otherwise the single match (or a list
        when several match, null when none does).
    required (false): fail the step when nothing matches.
    """
    found = _matches(compile_jsonpath(params.path), inputs[0])
    if not found and params.required:
        raise TransformDataError(f"JSON path {params.path!r} matched nothing")
    if params.all:
        return found
    return _path_value(found)


# -- json_parse -------------------------------------------------------------------------------


class JsonParseParams(TransformParams):
    strict: bool = False


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n(.*?)```", re.DOTALL)
_VALUE_START = re.compile(r"[\[{]")


def _embedded_json(text: str) -> Any:
    for block in _FENCE.finditer(text):
        try:
            return json.loads(block.group(1))
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    end = len(text.rstrip())
    for start in _VALUE_START.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, start.start())
        except json.JSONDecodeError as exc:
            if exc.pos >= end or exc.msg.startswith("Unterminated string"):
                raise TransformDataError(
                    f"the JSON value starting at character {start.start()} is cut off "
                    f"({exc.msg}); was the reply truncated (max_tokens)?"
                ) from exc
            continue
        return value
    raise TransformDataError(f"no JSON object or array found in the text {_preview(text)}")


def json_parse(inputs: list[Any], params: JsonParseParams, vars: Mapping[str, Any]) -> Any:
    """Parse text as JSON. Values that are already parsed (not strings) pass through.

    LLM replies often wrap JSON in a ```json fence or in prose: unless strict, the first
    complete JSON object or array in the text is used.
    strict (false): the whole text must be JSON.
    """
    text = inputs[0]
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if params.strict:
            raise TransformDataError(
                f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}) "
                f"in {_preview(text)}"
            ) from exc
    return _embedded_json(text)


# -- template ---------------------------------------------------------------------------------


class TemplateParams(TransformParams):
    template: str

    @field_validator("template")
    @classmethod
    def _compile(cls, value: str) -> str:
        _template(value)
        return value


def render_template(inputs: list[Any], params: TemplateParams, vars: Mapping[str, Any]) -> str:
    """Render a Jinja template (sandboxed) to a string.

    template (required): sees the step's variables plus `inputs_list` (alias `items`), the
        rendered inputs, e.g. "{% for x in items %}- {{ x }}\\n{% endfor %}".
    """
    try:
        return _template(params.template).render({**vars, "inputs_list": inputs, "items": inputs})
    except (TemplateError, TypeError, ValueError, KeyError) as exc:
        raise TransformDataError(f"template failed: {exc}") from exc


# -- split / join -----------------------------------------------------------------------------


class SplitParams(TransformParams):
    separator: str = Field(default="\n", min_length=1)
    maxsplit: int = Field(default=-1, ge=-1)
    strip: bool = True
    drop_empty: bool = True


def split(inputs: list[Any], params: SplitParams, vars: Mapping[str, Any]) -> list[str]:
    """Split a string into a list.

    separator ("\\n"): where to split.
    maxsplit (-1): split at most this many times; -1 means no limit.
    strip (true): strip whitespace around each part.
    drop_empty (true): leave out empty parts (after stripping).
    """
    parts = _require_str(inputs[0]).split(params.separator, params.maxsplit)
    if params.strip:
        parts = [part.strip() for part in parts]
    if params.drop_empty:
        parts = [part for part in parts if part]
    return parts


class JoinParams(TransformParams):
    separator: str = "\n"


def join(inputs: list[Any], params: JoinParams, vars: Mapping[str, Any]) -> str:
    """Join a list into a string; items are converted with str().

    separator ("\\n"): put between the items.
    """
    return params.separator.join(str(item) for item in _require_list(inputs[0]))


# -- regex_extract ----------------------------------------------------------------------------

RegexFlag = Literal["IGNORECASE", "MULTILINE", "DOTALL"]


def _flags(names: Sequence[str]) -> re.RegexFlag:
    flags = re.RegexFlag(0)
    for name in names:
        flags |= getattr(re, name)
    return flags


class RegexExtractParams(TransformParams):
    pattern: str
    flags: list[RegexFlag] = Field(default_factory=list)
    group: int | str = 0
    all: bool = False
    required: bool = False

    @field_validator("pattern")
    @classmethod
    def _compile(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    @field_validator("group", mode="before")
    @classmethod
    def _digits_as_index(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @field_validator("group")
    @classmethod
    def _group_exists(cls, value: int | str, info: ValidationInfo) -> int | str:
        pattern = info.data.get("pattern")
        if pattern is None:  # the pattern itself was invalid
            return value
        compiled = re.compile(pattern, _flags(info.data.get("flags", [])))
        if isinstance(value, int) and not 0 <= value <= compiled.groups:
            raise ValueError(f"the pattern has no group {value} (it has {compiled.groups})")
        if isinstance(value, str) and value not in compiled.groupindex:
            names = ", ".join(compiled.groupindex) or "none"
            raise ValueError(f"the pattern has no group named {value!r} (named groups: {names})")
        return value


def regex_extract(inputs: list[Any], params: RegexExtractParams, vars: Mapping[str, Any]) -> Any:
    """Extract text with a Python regular expression.

    pattern (required): the regular expression (Python `re` syntax).
    group (0): the group to return, by number or name; 0 is the whole match.
    all (false): return a list with the group of every match instead of the first.
    flags ([]): any of IGNORECASE, MULTILINE, DOTALL.
    required (false): fail the step when nothing matches; otherwise the result is null ([]).
    """
    text = _require_str(inputs[0])
    compiled = re.compile(params.pattern, _flags(params.flags))
    if params.all:
        found = [m.group(params.group) for m in compiled.finditer(text)]
        if not found and params.required:
            raise TransformDataError(f"pattern {params.pattern!r} matched nothing")
        return found
    match = compiled.search(text)
    if match is None:
        if params.required:
            raise TransformDataError(
                f"pattern {params.pattern!r} did not match the text {_preview(text)}"
            )
        return None
    return match.group(params.group)


# -- context ----------------------------------------------------------------------------------


class ContextParams(TransformParams):
    max_tokens: int = Field(default=2000, ge=1)
    order: Literal["score", "input"] = "score"
    citation: str = "[{n}]"
    separator: str = "\n\n"

    @field_validator("citation")
    @classmethod
    def _has_number(cls, value: str) -> str:
        if "{n}" not in value:
            raise ValueError("citation must contain {n}, the passage number")
        return value


def estimate_tokens(text: str) -> int:
    """About 4 characters per token, the usual rule of thumb for English text."""
    return max(1, -(-len(text) // 4))


def _passage(hit: Any, position: int) -> tuple[str, str, float, Any]:
    if isinstance(hit, str):
        return hit, hit, 0.0, {}
    if not isinstance(hit, Mapping) or not isinstance(hit.get("text"), str):
        raise TransformDataError(
            f"passage {position} is {_type_name(hit)}; expected text or {{id, text, score,"
            " metadata}} (a vector_search result)"
        )
    score = hit.get("score")
    return (
        str(hit.get("id", hit["text"])),
        hit["text"],
        float(score) if isinstance(score, int | float) else 0.0,
        hit.get("metadata") or {},
    )


def context(inputs: list[Any], params: ContextParams, vars: Mapping[str, Any]) -> Any:
    """Retrieved passages as prompt context: duplicates dropped, ordered, cut to a token
    budget, each marked with a citation number. Inputs are lists of passages (strings or
    vector_search results, several lists are merged).

    max_tokens (2000): the budget (estimated at 4 characters per token); passages that do
      not fit whole are left out, never cut mid-way.
    order ("score"): "score" puts the best first; "input" keeps the given order.
    citation ("[{n}]"): the marker put before each passage.
    separator ("\n\n"): between passages.
    Result: {text, citations: [{n, id, metadata}], used_tokens, dropped}.
    """
    passages: list[tuple[str, str, float, Any]] = []
    seen: set[str] = set()
    position = 0
    for value in inputs:
        for hit in _require_list(value, "each input"):
            position += 1
            passage = _passage(hit, position)
            key = " ".join(passage[1].split()).lower()
            if key in seen:
                continue
            seen.add(key)
            passages.append(passage)
    if params.order == "score":
        passages.sort(key=lambda p: p[2], reverse=True)
    parts: list[str] = []
    citations: list[dict[str, Any]] = []
    used = 0
    dropped = 0
    for passage_id, text, _score, metadata in passages:
        block = f"{params.citation.format(n=len(citations) + 1)} {text.strip()}"
        cost = estimate_tokens(block + params.separator)
        if used + cost > params.max_tokens:
            dropped += 1
            continue
        used += cost
        parts.append(block)
        citations.append({"n": len(citations) + 1, "id": passage_id, "metadata": metadata})
    return {
        "text": params.separator.join(parts),
        "citations": citations,
        "used_tokens": used,
        "dropped": dropped,
    }


# -- registry ---------------------------------------------------------------------------------

_BUILTIN_LIST: list[TransformFunction[Any]] = [
    TransformFunction("merge", merge, MergeParams, min_inputs=1, max_inputs=None),
    TransformFunction("concat", concat, ConcatParams, min_inputs=1, max_inputs=None),
    TransformFunction("filter", filter_items, FilterParams, raw_params=frozenset({"condition"})),
    TransformFunction("map", map_items, MapParams, raw_params=frozenset({"template"})),
    TransformFunction("select", select, SelectParams),
    TransformFunction("json_parse", json_parse, JsonParseParams),
    TransformFunction(
        "template",
        render_template,
        TemplateParams,
        min_inputs=0,
        max_inputs=None,
        raw_params=frozenset({"template"}),
    ),
    TransformFunction("split", split, SplitParams),
    TransformFunction("join", join, JoinParams),
    TransformFunction("regex_extract", regex_extract, RegexExtractParams),
    TransformFunction("context", context, ContextParams, min_inputs=1, max_inputs=None),
]
BUILTINS: dict[str, TransformFunction[Any]] = {f.name: f for f in _BUILTIN_LIST}


@dataclass(frozen=True)
class _Loaded:
    functions: dict[str, TransformFunction[Any]]
    #: plug-in name -> why it could not be loaded
    broken: dict[str, str]


def _plain(name: str, fn: Callable[..., Any]) -> TransformFunction[Any]:
    def run(inputs: list[Any], params: dict[str, Any], vars: Mapping[str, Any]) -> Any:
        return fn(inputs, **params)

    return TransformFunction(name, run, None, min_inputs=0, max_inputs=None)


@cache
def _load() -> _Loaded:
    functions = dict(BUILTINS)
    broken: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
            logger.warning(
                "transform plug-in %r (%s) has the name of a built-in function; the built-in "
                "is used",
                ep.name,
                ep.value,
            )
            continue
        if ep.name in functions:
            logger.warning(
                "transform plug-in %r is registered twice; %s ignored", ep.name, ep.value
            )
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in is reported where a workflow uses it
            logger.exception("transform plug-in %r (%s) failed to load", ep.name, ep.value)
            broken[ep.name] = (
                f"entry point {ep.value!r} failed to load: {type(exc).__name__}: {exc}"
            )
            continue
        if isinstance(obj, TransformFunction):
            functions[ep.name] = (
                obj if obj.name == ep.name else dataclasses.replace(obj, name=ep.name)
            )
        elif callable(obj):
            functions[ep.name] = _plain(ep.name, obj)
        else:
            broken[ep.name] = (
                f"entry point {ep.value!r} is a {type(obj).__name__}, not a TransformFunction "
                "or a callable"
            )
            logger.error("transform plug-in %r: %s", ep.name, broken[ep.name])
    return _Loaded(functions, broken)


def get_function(name: str) -> TransformFunction[Any] | None:
    """The function registered under `name` (built-in or plug-in), or None."""
    return _load().functions.get(name)


def function_names() -> list[str]:
    """Every available function name, sorted."""
    return sorted(_load().functions)


def load_error(name: str) -> str | None:
    """Why the plug-in `name` could not be loaded, or None."""
    return _load().broken.get(name)


def reload_functions() -> None:
    """Forget the loaded plug-ins; the next lookup reads the entry points again."""
    _load.cache_clear()


def unknown_function_hint(name: str) -> str:
    """A fix for an unknown function name: "did you mean ...? available: ..."."""
    names = function_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + "available: " + ", ".join(names)
