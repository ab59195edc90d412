"""JSON Schema of the workflow format, for editors (`llm-orchestrator schema`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Field, create_model

from llm_orchestrator.workflow.spec import StepSpec, WorkflowHeader


def workflow_json_schema(step_models: Mapping[str, type[StepSpec]]) -> dict[str, Any]:
    models = tuple(step_models.values())
    step_union = Annotated[Union[models], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
    document = create_model(
        "Workflow",
        __base__=WorkflowHeader,
        steps=(list[step_union], Field(min_length=1)),
    )
    schema: dict[str, Any] = document.model_json_schema(mode="validation")
    # nested steps (branch/parallel) are typed with the base StepSpec: make them the union too
    schema.setdefault("$defs", {})["StepSpec"] = schema["properties"]["steps"]["items"]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llm-orchestrator workflow"
    return schema
