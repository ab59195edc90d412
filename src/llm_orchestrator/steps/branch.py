"""`branch`: pick one list of nested steps by the value of an expression.

    - id: route
      type: branch
      on: "outputs.classify | trim | lower"   # or `condition:` (Rust LLM-Orchestrator style)
      branches:
        positive: [ ...steps... ]
        negative: [ ...steps... ]
      default: [ ...steps... ]                # optional: when no key matches

Nested steps run after the branch decides; the untaken sides are skipped. A step that depends
on the branch waits for whichever side ran. With `on:` present, `condition:` keeps its usual
meaning (skip the whole branch when false).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledCondition
from llm_orchestrator.steps.base import Services, StepKind
from llm_orchestrator.workflow.spec import StepSpec


class BranchSpec(StepSpec):
    type: Literal["branch"]
    on: str | None = None
    branches: dict[str, list[StepSpec]] = Field(default_factory=dict)
    default: list[StepSpec] = Field(default_factory=list)

    nested_step_fields: ClassVar[tuple[str, ...]] = ("branches", "default")
    default_outputs: ClassVar[tuple[str, ...]] = ("branch", "taken")
    positional_outputs: ClassVar[int] = 2

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # YAML 1.1 reads the key `on` as the boolean true
        if True in data and "on" not in data:
            data["on"] = data.pop(True)
        # ... and `true:` / `1:` branch keys as bool / int: match them as text
        if isinstance(data.get("branches"), dict):
            data["branches"] = {_key_text(k): v for k, v in data["branches"].items()}
        return data

    @model_validator(mode="after")
    def _has_selector(self) -> BranchSpec:
        if self.on is None and self.condition is None:
            raise ValueError("a branch needs `on:` (or `condition:`) to choose a branch")
        if not self.branches and not self.default:
            raise ValueError("a branch needs `branches:` (and/or `default:`) with steps")
        return self

    def selector(self) -> str:
        return self.on if self.on is not None else self.condition  # type: ignore[return-value]

    def gate_condition(self) -> str | None:
        """The skip condition: only when `on` selects and `condition` gates."""
        return self.condition if self.on is not None else None

    def child_groups(self) -> dict[tuple[str, ...], list[StepSpec]]:
        groups: dict[tuple[str, ...], list[StepSpec]] = {
            ("branches", key): steps for key, steps in self.branches.items()
        }
        if self.default:
            groups[("default",)] = self.default
        return groups

    def condition_fields(self) -> dict[str, str]:
        return {"on": self.on} if self.on is not None else {}


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key).strip()


def _all_ids(steps: list[StepSpec]) -> set[str]:
    ids: set[str] = set()
    for step in steps:
        ids.add(step.id)
        for nested in step.child_groups().values():
            ids |= _all_ids(nested)
    return ids


class BranchStepKind(StepKind[BranchSpec]):
    type_name: ClassVar[str] = "branch"
    spec_model: ClassVar[type[StepSpec]] = BranchSpec

    def __init__(self, spec: BranchSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._selector = CompiledCondition(spec.selector())
        self._sides = {key: _all_ids(steps) for key, steps in spec.branches.items()}
        self._default = _all_ids(spec.default)
        self._everything = set().union(*self._sides.values(), self._default)

    def choose(self, value: Any) -> str | None:
        key = _key_text(value)
        if key in self._sides:
            return key
        lowered = key.lower()
        for candidate in self._sides:
            if candidate.lower() == lowered:
                return candidate
        return None

    async def run(self, ctx: StepContext) -> StepOutput:
        value = self._selector.value(ctx.vars)
        key = self.choose(value)
        taken = self._sides[key] if key is not None else self._default
        chosen = key if key is not None else ("default" if self._default else None)
        return StepOutput(
            values=(chosen, sorted(taken)),
            raw={"branch": chosen, "taken": sorted(taken), "value": value},
            skip=frozenset(self._everything - taken),
        )
