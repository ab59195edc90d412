"""The library's front door: load, validate, plan and run workflows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonpath_ng.ext.parser import parse as parse_jsonpath

from llm_orchestrator.engine.events import Observer
from llm_orchestrator.engine.executor import Executor
from llm_orchestrator.engine.plan import ExecutionPlan, OutputPath, PlanNode
from llm_orchestrator.engine.result import RunResult
from llm_orchestrator.engine.retry import RetryPolicy
from llm_orchestrator.engine.templates import CompiledCondition
from llm_orchestrator.engine.usage import Budget, Price, PriceTable
from llm_orchestrator.exceptions import (
    InputValidationError,
    ValidationProblem,
    WorkflowValidationError,
)
from llm_orchestrator.providers.base import LLMProvider
from llm_orchestrator.providers.registry import ProviderRegistry, close_all_providers
from llm_orchestrator.settings import ProviderSettings, Settings, load_settings
from llm_orchestrator.steps.base import Services
from llm_orchestrator.steps.registry import spec_models, step_kinds
from llm_orchestrator.workflow.graph import WorkflowGraph, build_graph, flatten_steps
from llm_orchestrator.workflow.loader import (
    Workflow,
    field_loc,
    load_workflow_file,
    load_workflow_text,
    parse_document,
    read_workflow_file,
)
from llm_orchestrator.workflow.spec import RetrySpec


def load_workflow(source: str | Path, *, text: str | None = None) -> Workflow:
    """Parse a workflow file (YAML or JSON), or `text` named `source`; raises
    WorkflowValidationError with every shape problem at once."""
    if text is not None:
        return load_workflow_text(
            text, spec_models(), source=str(source), is_json=str(source).endswith(".json")
        )
    return load_workflow_file(source, spec_models())


def validate_file(path: str | Path, settings: Settings) -> list[ValidationProblem]:
    """Every problem in a workflow file, shape, graph, templates, providers and kinds alike
    (what `llm-orchestrator validate` prints)."""
    try:
        data, lines = read_workflow_file(path)
    except WorkflowValidationError as exc:
        return exc.problems
    workflow, problems = parse_document(data, spec_models(), source=str(path), lines=lines)
    if workflow is not None:
        _graph, more = check_workflow(workflow, settings)
        problems = problems + more
    return problems


def _services_for(
    workflow: Workflow,
    settings: Settings,
    instances: Mapping[str, LLMProvider] | None = None,
) -> Services:
    extra = {
        name: ProviderSettings(
            type=spec.type,
            base_url=spec.base_url,
            default_model=spec.default_model,
            api_key_env=spec.api_key_env,
            timeout_seconds=spec.timeout_seconds,
            rate_limits=spec.rate_limits,
            circuit_breaker=spec.circuit_breaker,
        )
        for name, spec in workflow.header.providers.items()
    }
    prices = PriceTable(
        {m: Price(p.input_per_mtok, p.output_per_mtok) for m, p in settings.prices.items()}
    )
    return Services(
        settings=settings,
        providers=ProviderRegistry(settings, extra, instances),
        prices=prices,
    )


def check_workflow(
    workflow: Workflow,
    settings: Settings,
    services: Services | None = None,
) -> tuple[WorkflowGraph | None, list[ValidationProblem]]:
    """Everything `validate` reports: graph, templates, limits, providers, step kinds."""
    graph, problems = build_graph(workflow, settings.limits)
    services = services or _services_for(workflow, settings)
    kinds = step_kinds()
    for spec, step_loc, _parent, _group in flatten_steps(workflow.steps, ("steps",), None, None):
        for message, field, fix in kinds[spec.type].check(spec, services):
            loc = (*step_loc, *field_loc(field or ""))
            problems.append(
                ValidationProblem(
                    message,
                    file=workflow.source,
                    line=workflow.line_of(loc),
                    step_id=spec.id,
                    field=field,
                    fix=fix,
                )
            )
    return (graph if not problems else None), problems


def _retry_policy(spec: RetrySpec | None) -> RetryPolicy:
    spec = spec or RetrySpec()
    return RetryPolicy(
        max_attempts=spec.max_attempts,
        backoff=spec.backoff,
        initial_delay=spec.initial_delay_ms / 1000,
        max_delay=spec.max_delay_ms / 1000,
        jitter=spec.jitter,
        multiplier=spec.multiplier,
    )


def compile_plan(graph: WorkflowGraph, services: Services) -> ExecutionPlan:
    kinds = step_kinds()
    header = graph.workflow.header
    nodes: dict[str, PlanNode] = {}
    for node_id in graph.order:
        node = graph.nodes[node_id]
        spec = node.spec
        runnable = kinds[spec.type](spec, services)
        gate = spec.gate_condition()
        nodes[node_id] = PlanNode(
            id=node_id,
            type=spec.type,
            runnable=runnable,
            deps=node.deps,
            soft_deps=node.soft_deps,
            condition=CompiledCondition(gate) if gate else None,
            output_names=node.output_names(),
            default_outputs=spec.default_outputs,
            output_paths=tuple(
                OutputPath(name, path, parse_jsonpath(path))
                for name, path in spec.output_mapping.items()
            ),
            exports=tuple(spec.output),
            timeout=spec.timeout_seconds,
            retry=_retry_policy(spec.retry),
            continue_on_error=spec.continue_on_error,
            group=node.group,
        )
    budget = header.budget
    return ExecutionPlan(
        name=header.name,
        nodes=nodes,
        order=graph.order,
        dependents=graph.dependents,
        timeout=header.timeout_seconds,
        max_concurrency=header.max_concurrency or services.settings.max_concurrency,
        group_limits=graph.group_limits,
        budget=Budget(budget.max_tokens, budget.max_cost_usd) if budget else None,
        input_defaults={
            name: spec.default for name, spec in header.inputs.items() if spec.default is not None
        },
    )


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def check_inputs(workflow: Workflow, inputs: Mapping[str, Any], settings: Settings) -> None:
    """Required inputs present, declared types respected, total size within the limit."""
    problems: list[str] = []
    try:
        size = len(json.dumps(inputs, default=str).encode())
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"inputs are not JSON-serialisable: {exc}") from exc
    limit = settings.limits.max_input_bytes
    if size > limit:
        problems.append(
            f"inputs are {size} bytes, over the limit of {limit} (limits.max_input_bytes)"
        )
    for name, spec in workflow.header.inputs.items():
        if name not in inputs:
            if spec.required and spec.default is None:
                problems.append(f"missing required input '{name}' (pass --input {name}=...)")
            continue
        expected = _JSON_TYPES.get(spec.type)
        value = inputs[name]
        if expected is not None and not (
            isinstance(value, expected)
            and not (spec.type in ("number", "integer") and isinstance(value, bool))
        ):
            problems.append(
                f"input '{name}' must be of type {spec.type}, got {type(value).__name__}"
            )
    if problems:
        where = workflow.source or workflow.name
        raise InputValidationError(f"{where}: invalid inputs: " + "; ".join(problems))


class Orchestrator:
    """Loads, validates and runs workflows with one set of settings.

    Plans are cached per workflow object, so running the same workflow many times compiles
    its templates once.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        observers: list[Observer] | None = None,
        providers: Mapping[str, LLMProvider] | None = None,
    ) -> None:
        """`providers` adds provider objects of your own by instance name (they take
        precedence over configured instances of the same name)."""
        self.settings = settings or load_settings()
        self.executor = Executor(observers)
        self.providers = dict(providers or {})
        self._plans: dict[int, tuple[Workflow, ExecutionPlan, Services]] = {}

    def load(self, source: str | Path, *, text: str | None = None) -> Workflow:
        return load_workflow(source, text=text)

    def validate(self, workflow: Workflow) -> list[ValidationProblem]:
        services = _services_for(workflow, self.settings, self.providers)
        _graph, problems = check_workflow(workflow, self.settings, services)
        return problems

    def _cached_plan(self, workflow: Workflow) -> ExecutionPlan | None:
        cached = self._plans.get(id(workflow))
        return cached[1] if cached is not None and cached[0] is workflow else None

    def plan(self, workflow: Workflow) -> ExecutionPlan:
        """The compiled plan of a workflow (validated; compiled once and cached)."""
        cached = self._cached_plan(workflow)
        if cached is not None:
            return cached
        services = _services_for(workflow, self.settings, self.providers)
        graph, problems = check_workflow(workflow, self.settings, services)
        if graph is None:
            raise WorkflowValidationError(problems)
        plan = compile_plan(graph, services)
        self._plans[id(workflow)] = (workflow, plan, services)
        return plan

    async def run(
        self,
        workflow: Workflow | str | Path,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        cancel: asyncio.Event | None = None,
        max_concurrency: int | None = None,
    ) -> RunResult:
        if not isinstance(workflow, Workflow):
            workflow = await asyncio.to_thread(self.load, workflow)
        # compiling reads plug-in metadata from disk: keep it off the event loop
        plan = self._cached_plan(workflow)
        if plan is None:
            plan = await asyncio.to_thread(self.plan, workflow)
        values = dict(inputs or {})
        check_inputs(workflow, values, self.settings)
        return await self.executor.run(
            plan, values, run_id=run_id, cancel=cancel, max_concurrency=max_concurrency
        )

    def run_sync(
        self, workflow: Workflow | str | Path, inputs: Mapping[str, Any] | None = None
    ) -> RunResult:
        async def _main() -> RunResult:
            try:
                return await self.run(workflow, inputs)
            finally:
                await self.aclose()
                # provider clients belong to this event loop, which ends here
                await close_all_providers()

        return asyncio.run(_main())

    async def aclose(self) -> None:
        for _workflow, _plan, services in self._plans.values():
            await services.aclose()
        self._plans.clear()


async def run_workflow(
    workflow: Workflow | str | Path,
    inputs: Mapping[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    observers: list[Observer] | None = None,
) -> RunResult:
    """Load (if given a path), validate and run one workflow."""
    orchestrator = Orchestrator(settings, observers=observers)
    try:
        return await orchestrator.run(workflow, inputs)
    finally:
        await orchestrator.aclose()
