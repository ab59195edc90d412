"""An execution plan: the workflow's steps as scheduler nodes, compiled once, run many times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_orchestrator.engine.context import Runnable
from llm_orchestrator.engine.retry import RetryPolicy
from llm_orchestrator.engine.templates import CompiledCondition
from llm_orchestrator.engine.usage import Budget


@dataclass(frozen=True, slots=True)
class OutputPath:
    name: str
    path: str
    #: compiled JSON path (jsonpath_ng expression)
    compiled: Any


@dataclass(frozen=True, slots=True)
class PlanNode:
    id: str
    type: str
    runnable: Runnable
    #: a skipped or failed hard dependency skips this node
    deps: tuple[str, ...] = ()
    #: soft dependencies are waited for, but their skip or failure does not propagate
    soft_deps: tuple[str, ...] = ()
    condition: CompiledCondition | None = None
    output_names: tuple[str, ...] = ("result",)
    #: default names of the positional values (what `raw` is keyed by when a step gives none)
    default_outputs: tuple[str, ...] = ("result",)
    output_paths: tuple[OutputPath, ...] = ()
    #: declared output names, also visible at the top level of later templates
    exports: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    continue_on_error: bool = False
    #: concurrency group (a parallel step's tasks share their parent's limit)
    group: str | None = None


@dataclass(frozen=True)
class ExecutionPlan:
    name: str
    nodes: Mapping[str, PlanNode]
    #: node ids in a topological order
    order: tuple[str, ...]
    #: node id -> ids of the nodes that depend on it (hard or soft)
    dependents: Mapping[str, tuple[str, ...]]
    timeout: float = 3600.0
    max_concurrency: int = 16
    group_limits: Mapping[str, int] = field(default_factory=dict)
    budget: Budget | None = None
    #: input name -> default value, for inputs the caller may omit
    input_defaults: Mapping[str, Any] = field(default_factory=dict)

    def layers(self) -> list[list[str]]:
        """Topological layers: every node in a layer depends only on earlier layers."""
        depth: dict[str, int] = {}
        for node_id in self.order:
            node = self.nodes[node_id]
            parents = (*node.deps, *node.soft_deps)
            depth[node_id] = 1 + max((depth[p] for p in parents), default=-1)
        layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for node_id in self.order:
            layers[depth[node_id]].append(node_id)
        return layers
