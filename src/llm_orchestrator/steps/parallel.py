"""`parallel`: a group of nested steps that run concurrently, at most `max_concurrency` at once.

    - id: fan_out
      type: parallel
      max_concurrency: 4
      tasks: [ ...steps... ]

Tasks start together once the group's dependencies are met (a task may still depend on a
sibling). A step that depends on the group waits for all of its tasks.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.steps.base import StepKind
from llm_orchestrator.workflow.spec import StepSpec


class ParallelSpec(StepSpec):
    type: Literal["parallel"]
    tasks: list[StepSpec] = Field(min_length=1)
    max_concurrency: int | None = Field(default=None, ge=1)

    nested_step_fields: ClassVar[tuple[str, ...]] = ("tasks",)
    default_outputs: ClassVar[tuple[str, ...]] = ("tasks",)

    def child_groups(self) -> dict[tuple[str, ...], list[StepSpec]]:
        return {("tasks",): self.tasks}

    def children_max_concurrency(self) -> int | None:
        return self.max_concurrency


class ParallelStepKind(StepKind[ParallelSpec]):
    type_name: ClassVar[str] = "parallel"
    spec_model: ClassVar[type[StepSpec]] = ParallelSpec

    async def run(self, ctx: StepContext) -> StepOutput:
        ids = [task.id for task in self.spec.tasks]
        return StepOutput(values=(ids,), raw={"tasks": ids})
