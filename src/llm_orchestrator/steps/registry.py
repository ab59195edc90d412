"""Step kinds by `type:` name: the built-ins plus plug-ins from the entry point group
`llm_orchestrator.steps` (a plug-in may not replace a built-in)."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from llm_orchestrator.steps.base import StepKind
from llm_orchestrator.workflow.spec import StepSpec

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "llm_orchestrator.steps"


def _builtin() -> dict[str, type[StepKind[Any]]]:
    from llm_orchestrator.steps.action import ActionStepKind
    from llm_orchestrator.steps.branch import BranchStepKind
    from llm_orchestrator.steps.embed import EmbedStepKind
    from llm_orchestrator.steps.llm import LLMStepKind
    from llm_orchestrator.steps.parallel import ParallelStepKind
    from llm_orchestrator.steps.rerank import RerankStepKind
    from llm_orchestrator.steps.transform import TransformStepKind
    from llm_orchestrator.steps.vector import (
        DeleteStepKind,
        UpsertStepKind,
        VectorSearchStepKind,
    )

    kinds: list[type[StepKind[Any]]] = [
        LLMStepKind,
        TransformStepKind,
        ActionStepKind,
        BranchStepKind,
        ParallelStepKind,
        EmbedStepKind,
        VectorSearchStepKind,
        UpsertStepKind,
        DeleteStepKind,
        RerankStepKind,
    ]
    return {k.type_name: k for k in kinds}


@cache
def step_kinds() -> dict[str, type[StepKind[Any]]]:
    kinds = _builtin()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in kinds:
            continue  # the built-ins register themselves this way too
        try:
            kind = ep.load()
        except Exception:
            logger.exception("step plug-in %r (%s) failed to load; skipped", ep.name, ep.value)
            continue
        if not (isinstance(kind, type) and issubclass(kind, StepKind)):
            logger.error("step plug-in %r is not a StepKind subclass; skipped", ep.name)
            continue
        kinds[ep.name] = kind
    return kinds


def spec_models() -> dict[str, type[StepSpec]]:
    return {name: kind.spec_model for name, kind in step_kinds().items()}


def register_step_kind(kind: type[StepKind[Any]]) -> None:
    """Register a kind in-process (tests, embedding applications)."""
    step_kinds()[kind.type_name] = kind
