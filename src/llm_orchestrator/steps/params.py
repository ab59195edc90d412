"""Step kinds whose function parameters may sit at step level (Rust LLM-Orchestrator style)
or under `params:`, and the checking of those parameters against a pydantic model.

Shared by `transform` and `action`.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from llm_orchestrator.steps.base import template_fields_of
from llm_orchestrator.workflow.spec import StepSpec

Problem = tuple[str, str | None, str | None]


def is_template(source: str) -> bool:
    return "{{" in source or "{%" in source


def has_template(value: Any) -> bool:
    """True when `value` holds a template string anywhere (nested dicts and lists too)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


class FlatParamsSpec(StepSpec):
    """A step whose parameters sit at step level (unknown keys land in `model_extra`) or
    under `params:`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    params: dict[str, Any] = Field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        """Every parameter, from both places."""
        return {**(self.model_extra or {}), **self.params}

    def parameter_field(self, name: str) -> str:
        """Where a parameter was written: `params.<name>` or `<name>`."""
        return f"params.{name}" if name in self.params else name

    def duplicated_parameters(self) -> list[str]:
        return sorted(set(self.model_extra or {}) & set(self.params))

    def parameter_template_fields(self, skip: frozenset[str] = frozenset()) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.parameters().items():
            if key in skip:
                continue
            prefix = "params" if key in self.params else ""
            for path, source in template_fields_of({key: value}, prefix).items():
                if is_template(source):
                    out[path] = source
        return out


def accepted_names(model: type[BaseModel]) -> dict[str, str]:
    """Accepted parameter name (field name or alias) -> field name."""
    names: dict[str, str] = {}
    for field_name, info in model.model_fields.items():
        names[field_name] = field_name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names[choice] = field_name
        elif isinstance(alias, str):
            names[alias] = field_name
    return names


def pydantic_message(message: str) -> str:
    return message.removeprefix("Value error, ")


def describe_errors(exc: ValidationError) -> str:
    """`field: problem; field: problem` for a parameter model's validation error."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {pydantic_message(err['msg'])}"
        for err in exc.errors()
    )


def check_params(
    model: type[BaseModel],
    spec: FlatParamsSpec,
    label: str,
    *,
    raw: frozenset[str] = frozenset(),
    hint: str | None = None,
) -> list[Problem]:
    """Validate a step's parameters against `model` before running.

    Values that are templates are only checked for their name (they are known at run time);
    `raw` names are never templates. `label` reads like "transform 'join'"; `hint` is added to
    the fix of missing and whole-model errors.
    """
    problems: list[Problem] = []
    given = spec.parameters()
    field_of = spec.parameter_field
    for key in spec.duplicated_parameters():
        problems.append(
            (
                f"parameter '{key}' is given both at step level and under params",
                f"params.{key}",
                "keep only one of them",
            )
        )
    names = accepted_names(model)
    listed = ", ".join(model.model_fields) or "none"
    for key in given:
        if key in names:
            continue
        close = difflib.get_close_matches(key, [*names, *StepSpec.model_fields], n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'? " if close else ""
        problems.append(
            (f"{label} has no parameter '{key}'", field_of(key), fix + f"parameters: {listed}")
        )
    by_field: dict[str, list[str]] = {}
    for key in given:
        if key in names:
            by_field.setdefault(names[key], []).append(key)
    for spelled in by_field.values():
        if len(spelled) > 1:
            problems.append(
                (
                    f"{label}: give only one of {', '.join(repr(s) for s in spelled)}",
                    field_of(spelled[-1]),
                    "they are names of the same parameter",
                )
            )
    deferred = {k for k, v in given.items() if k not in raw and has_template(v)}
    deferred_fields = {names[k] for k in deferred if k in names}
    data = {k: v for k, v in given.items() if k in names and k not in deferred}
    try:
        model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            kind = err["type"]
            name = str(loc[0]) if loc else None
            if kind == "extra_forbidden":
                continue  # reported above
            if name is None:
                if not deferred:
                    problems.append((f"{label}: {pydantic_message(err['msg'])}", None, hint))
                continue
            if name in deferred_fields:
                continue
            if kind == "missing":
                fix = f"add `{name}: ...` to the step (or under params:)"
                problems.append(
                    (f"{label} needs parameter '{name}'", name, fix + (f"; {hint}" if hint else ""))
                )
                continue
            written = next((k for k in by_field.get(name, []) if k in given), name)
            problems.append(
                (
                    f"{label}: invalid value for parameter '{name}': "
                    f"{pydantic_message(err['msg'])}",
                    field_of(written),
                    None,
                )
            )
    return problems


def shadow_hint(model: type[BaseModel], spec: StepSpec) -> str | None:
    """A hint when a parameter shares its name with a step field set at step level."""
    shadowed = [
        name
        for name in model.model_fields
        if name in StepSpec.model_fields and name in spec.model_fields_set
    ]
    if not shadowed:
        return None
    name = shadowed[0]
    return (
        f"the step-level `{name}` is the step's own field; "
        f"give the function's under params: {{{name}: ...}}"
    )
