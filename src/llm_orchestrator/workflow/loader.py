"""Read a workflow file (YAML or JSON) into spec models, reporting every problem at once with
its file and line."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llm_orchestrator.exceptions import ValidationProblem, WorkflowValidationError
from llm_orchestrator.workflow.spec import StepSpec, WorkflowHeader

Loc = tuple[str | int, ...]
StepModels = Mapping[str, type[StepSpec]]


@dataclass(frozen=True)
class Workflow:
    """A parsed workflow: the header fields, the steps as spec models, where it came from."""

    header: WorkflowHeader
    steps: tuple[StepSpec, ...]
    source: str | None = None
    #: the raw document (what a run stores to resume with the exact definition)
    document: dict[str, Any] = field(default_factory=dict, compare=False)
    lines: dict[Loc, int] = field(default_factory=dict, compare=False, repr=False)
    #: ids of steps that failed validation (so other checks don't report them as unknown)
    invalid_step_ids: frozenset[str] = frozenset()
    #: where each of `steps` stands in the document's `steps:` list (None: in order); they
    #: differ when invalid steps were left out, and locations must name the real lines
    step_positions: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def step_loc(self, index: int) -> Loc:
        """The location of `steps[index]` in the document."""
        position = self.step_positions[index] if self.step_positions is not None else index
        return ("steps", position)

    @property
    def name(self) -> str:
        return self.header.name

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest located parent."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None


def field_loc(path: str) -> Loc:
    """`"inputs.0"` -> `("inputs", 0)`: dotted field paths as line-map locations."""
    return tuple(int(part) if part.isdigit() else part for part in path.split(".") if part)


def _line_map(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*loc, key_node.value)
                _line_map(value_node, child, out)
                out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*loc, index), out)


def read_document(text: str, source: str | None) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML (JSON is read by json for exactness); raise with the line on syntax errors."""
    where = source or "<workflow>"
    is_json = bool(source and source.endswith(".json"))
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise WorkflowValidationError(
            [
                ValidationProblem(
                    f"invalid JSON: {exc.msg}", file=where, line=exc.lineno, fix="fix the syntax"
                )
            ]
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowValidationError(
            [
                ValidationProblem(
                    f"invalid YAML: {problem}",
                    file=where,
                    line=mark.line + 1 if mark is not None else None,
                    fix="fix the YAML syntax (indentation, a missing ':' or an unclosed quote)",
                )
            ]
        ) from exc
    lines: dict[Loc, int] = {}
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        node = None  # JSON that YAML cannot read: no line numbers, still valid
    if node is not None:
        _line_map(node, (), lines)
    return data, lines


class _Collector:
    def __init__(self, source: str | None, lines: dict[Loc, int]) -> None:
        self.source = source or "<workflow>"
        self.lines = lines
        self.problems: list[ValidationProblem] = []

    def line_of(self, loc: Loc) -> int | None:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def add(
        self,
        message: str,
        loc: Loc,
        *,
        step_id: str | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problems.append(
            ValidationProblem(
                message,
                file=self.source,
                line=self.line_of(loc),
                step_id=step_id,
                field=field,
                fix=fix,
            )
        )

    def pydantic_errors(
        self,
        exc: ValidationError,
        model: type[BaseModel],
        base: Loc,
        step_id: str | None,
        *,
        skip_steps: bool = False,
    ) -> None:
        for err in exc.errors():
            if skip_steps and len(err["loc"]) >= 2 and err["loc"][0] == "steps":
                continue
            loc: Loc = (*base, *err["loc"])
            field_path = ".".join(str(p) for p in err["loc"])
            kind = err["type"]
            fix: str | None = None
            if kind == "extra_forbidden":
                key = str(err["loc"][-1])
                known = _known_fields(model, err["loc"][:-1])
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                message = f"unknown key '{key}'"
                if close:
                    fix = f"did you mean '{close[0]}'?"
                else:
                    fix = "remove it; allowed keys: " + ", ".join(sorted(known))
            elif kind == "missing":
                message = f"missing required field '{err['loc'][-1]}'"
                fix = "add it"
            else:
                message = err["msg"]
                got = err.get("input")
                if not isinstance(got, dict | list):
                    message += f" (got {got!r})"
            self.add(message, loc, step_id=step_id, field=field_path or None, fix=fix)


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) of the model at `loc` inside `model`, best effort."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        current = _model_in(info.annotation)
    if current is None or not hasattr(current, "model_fields"):
        return []
    names: list[str] = []
    for name, info in current.model_fields.items():
        names.append(name)
        if info.alias:
            names.append(info.alias)
    return names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _parse_step(raw: Any, loc: Loc, step_models: StepModels, out: _Collector) -> StepSpec | None:
    if not isinstance(raw, dict):
        out.add("a step must be a mapping of fields", loc, fix="write `- id: ...` then `type: ...`")
        return None
    step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    kind = raw.get("type")
    if kind is None:
        out.add(
            "missing required field 'type'",
            loc,
            step_id=step_id,
            field="type",
            fix="add `type:`, one of " + ", ".join(sorted(step_models)),
        )
        return None
    model = step_models.get(str(kind))
    if model is None:
        close = difflib.get_close_matches(str(kind), list(step_models), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        out.add(
            f"unknown step type '{kind}'",
            (*loc, "type"),
            step_id=step_id,
            field="type",
            fix=hint + "known types: " + ", ".join(sorted(step_models)),
        )
        return None
    data = dict(raw)
    nested_ok = True
    for name in getattr(model, "nested_step_fields", ()):
        value = data.get(name)
        if isinstance(value, list):
            parsed = [
                _parse_step(item, (*loc, name, i), step_models, out) for i, item in enumerate(value)
            ]
            nested_ok &= all(p is not None for p in parsed)
            data[name] = parsed
        elif isinstance(value, dict):
            groups: dict[Any, list[StepSpec | None]] = {}
            for key, items in value.items():
                if not isinstance(items, list):
                    out.add(
                        f"'{name}.{key}' must be a list of steps",
                        (*loc, name, key),
                        step_id=step_id,
                        field=f"{name}.{key}",
                    )
                    nested_ok = False
                    continue
                groups[key] = [
                    _parse_step(item, (*loc, name, key, i), step_models, out)
                    for i, item in enumerate(items)
                ]
                nested_ok &= all(p is not None for p in groups[key])
            data[name] = groups
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        out.pydantic_errors(exc, model, loc, step_id)
        return None
    return spec if nested_ok else None


def parse_document(
    data: Any,
    step_models: StepModels,
    *,
    source: str | None = None,
    lines: dict[Loc, int] | None = None,
) -> tuple[Workflow | None, list[ValidationProblem]]:
    """Validate the document's shape and every step. Returns the workflow built from the
    valid steps (so later checks can still run) and every problem found."""
    out = _Collector(source, lines or {})
    if not isinstance(data, dict):
        out.add(
            "the top level must be a mapping with `name` and `steps`",
            (),
            fix="start the file with `name: my-workflow` and a `steps:` list",
        )
        return None, out.problems
    raw_steps = data.get("steps")
    steps: list[StepSpec | None] = []
    if isinstance(raw_steps, list):
        steps = [
            _parse_step(item, ("steps", i), step_models, out) for i, item in enumerate(raw_steps)
        ]
    try:
        header = WorkflowHeader.model_validate(data)
    except ValidationError as exc:
        # a step that is not a mapping was already reported by _parse_step
        out.pydantic_errors(exc, WorkflowHeader, (), None, skip_steps=True)
        header = WorkflowHeader.model_construct(name=str(data.get("name") or "<unnamed>"), steps=[])
    invalid = frozenset(_raw_ids(raw_steps)) - _spec_ids(_valid(steps))
    positions = tuple(i for i, step in enumerate(steps) if step is not None)
    workflow = Workflow(
        header=header,
        steps=tuple(_valid(steps)),
        source=source,
        document=data,
        lines=lines or {},
        invalid_step_ids=invalid,
        step_positions=positions,
    )
    return workflow, out.problems


def _valid(steps: list[StepSpec | None]) -> list[StepSpec]:
    return [s for s in steps if s is not None]


def _spec_ids(steps: list[StepSpec]) -> set[str]:
    ids: set[str] = set()
    for step in steps:
        ids.add(step.id)
        for nested in step.child_groups().values():
            ids |= _spec_ids(nested)
    return ids


def _raw_ids(raw: Any) -> list[str]:
    """Every step id written in the document, nested ones included."""
    found: list[str] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                if isinstance(item.get("id"), str):
                    found.append(item["id"])
                for value in item.values():
                    if isinstance(value, list):
                        found.extend(_raw_ids(value))
                    elif isinstance(value, dict):
                        for nested in value.values():
                            found.extend(_raw_ids(nested))
    return found


def parse_workflow(
    data: Any,
    step_models: StepModels,
    *,
    source: str | None = None,
    lines: dict[Loc, int] | None = None,
) -> Workflow:
    """Like `parse_document`, but raise every problem at once."""
    workflow, problems = parse_document(data, step_models, source=source, lines=lines)
    if problems or workflow is None:
        raise WorkflowValidationError(problems)
    return workflow


def read_workflow_file(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise WorkflowValidationError(
            [ValidationProblem("file not found", file=str(path), fix="check the path")]
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowValidationError(
            [ValidationProblem(f"cannot read the file: {exc}", file=str(path))]
        ) from exc
    return read_document(text, str(path))


def load_workflow_file(path: str | Path, step_models: StepModels) -> Workflow:
    data, lines = read_workflow_file(path)
    return parse_workflow(data, step_models, source=str(path), lines=lines)


def load_workflow_text(
    text: str, step_models: StepModels, *, source: str | None = None, is_json: bool = False
) -> Workflow:
    name = source or ("<workflow>.json" if is_json else "<workflow>")
    data, lines = read_document(text, name)
    return parse_workflow(data, step_models, source=source, lines=lines)
