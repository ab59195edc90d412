"""The library's front door: load, validate, plan and run workflows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonpath_ng.ext.parser import parse as parse_jsonpath

from llm_orchestrator.durable import (
    LeaseKeeper,
    StoreJournal,
    changed_steps,
    finish_run,
    new_owner_id,
    restored_from,
    stored_run,
    to_stored,
    workflow_definition,
)
from llm_orchestrator.durable import now as utc_now
from llm_orchestrator.engine.events import Observer
from llm_orchestrator.engine.executor import Executor, new_run_id
from llm_orchestrator.engine.journal import Restored
from llm_orchestrator.engine.plan import ExecutionPlan, OutputPath, PlanNode
from llm_orchestrator.engine.result import RunResult, StepStatus
from llm_orchestrator.engine.retry import RetryPolicy
from llm_orchestrator.engine.templates import CompiledCondition
from llm_orchestrator.engine.usage import Budget, Price, PriceTable
from llm_orchestrator.exceptions import (
    ConfigurationError,
    InputValidationError,
    ResumeRefusedError,
    RunNotFoundError,
    ValidationProblem,
    WorkflowValidationError,
)
from llm_orchestrator.providers.base import LLMProvider
from llm_orchestrator.providers.registry import ProviderRegistry, close_all_providers
from llm_orchestrator.settings import ProviderSettings, Settings, load_settings
from llm_orchestrator.state.models import RunState, StoredRun, WorkflowDefinition
from llm_orchestrator.state.store import StateStore
from llm_orchestrator.steps.base import Services
from llm_orchestrator.steps.registry import spec_models, step_kinds
from llm_orchestrator.workflow.graph import WorkflowGraph, build_graph, workflow_steps
from llm_orchestrator.workflow.loader import (
    Workflow,
    field_loc,
    load_workflow_file,
    load_workflow_text,
    parse_document,
    parse_workflow,
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
    for spec, step_loc, _parent, _group in workflow_steps(workflow):
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
        store: StateStore | None = None,
    ) -> None:
        """`providers` adds provider objects of your own by instance name (they take
        precedence over configured instances of the same name). With an opened `store`,
        every run is durable: see `resume`, `recover`, `replay`, `restore`."""
        self.settings = settings or load_settings()
        self.executor = Executor(observers)
        self.providers = dict(providers or {})
        self.store = store
        self.owner = new_owner_id()
        self._leases = LeaseKeeper(store, self.owner, self.settings.state) if store else None
        self._plans: dict[int, tuple[Workflow, ExecutionPlan, Services]] = {}
        self._definitions: dict[int, tuple[Workflow, WorkflowDefinition]] = {}
        self._stored_workflows: dict[str, Workflow] = {}

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
        user_id: str | None = None,
    ) -> RunResult:
        if not isinstance(workflow, Workflow):
            workflow = await asyncio.to_thread(self.load, workflow)
        plan = await self._plan_async(workflow)
        values = dict(inputs or {})
        check_inputs(workflow, values, self.settings)
        if self.store is None:
            return await self.executor.run(
                plan, values, run_id=run_id, cancel=cancel, max_concurrency=max_concurrency
            )
        run_id = run_id or new_run_id()
        definition = await self._saved_definition(workflow)
        assert self._leases is not None
        await self.store.create_run(
            stored_run(
                run_id,
                definition,
                values,
                self.owner,
                self._leases.lease_until(),
                user_id=user_id,
            )
        )
        return await self._execute(plan, values, run_id, None, cancel, max_concurrency)

    async def _saved_definition(self, workflow: Workflow) -> WorkflowDefinition:
        """The workflow's stored definition, hashed and saved once per workflow object."""
        known = self._definitions.get(id(workflow))
        if known is not None and known[0] is workflow:
            return known[1]
        definition = workflow_definition(workflow)
        await self._require_store().save_workflow(definition)
        self._definitions[id(workflow)] = (workflow, definition)
        return definition

    async def _plan_async(self, workflow: Workflow) -> ExecutionPlan:
        # compiling reads plug-in metadata from disk: keep it off the event loop
        plan = self._cached_plan(workflow)
        if plan is None:
            plan = await asyncio.to_thread(self.plan, workflow)
        return plan

    def _require_store(self) -> StateStore:
        if self.store is None:
            raise ConfigurationError(
                "this needs a state store: create the Orchestrator with store=..."
            )
        return self.store

    async def _execute(
        self,
        plan: ExecutionPlan,
        inputs: Mapping[str, Any],
        run_id: str,
        restored: Restored | None,
        cancel: asyncio.Event | None,
        max_concurrency: int | None,
    ) -> RunResult:
        store = self._require_store()
        assert self._leases is not None
        journal = StoreJournal(store)
        self._leases.add(run_id)
        try:
            result = await self.executor.run(
                plan,
                inputs,
                run_id=run_id,
                cancel=cancel,
                max_concurrency=max_concurrency,
                journal=journal,
                ledger=journal,
                restored=restored,
            )
        except asyncio.CancelledError:
            # stopped from outside: record it before letting the cancellation through
            await asyncio.shield(
                store.update_run(run_id, status=RunState.CANCELLED, finished_at=utc_now())
            )
            raise
        finally:
            self._leases.discard(run_id)
        await finish_run(store, result)
        return result

    async def _stored_workflow(self, run: StoredRun) -> Workflow:
        """The exact definition the run started with (parsed once per hash, so recovering
        many runs of one workflow compiles its plan once)."""
        parsed = self._stored_workflows.get(run.workflow_hash)
        if parsed is not None:
            return parsed
        store = self._require_store()
        definition = await store.get_workflow(run.workflow_hash)
        if definition is None:
            raise ResumeRefusedError(
                f"run {run.id}: its workflow definition {run.workflow_hash[:12]} is missing"
            )
        parsed = parse_workflow(
            definition.document, spec_models(), source=f"<stored workflow {definition.name}>"
        )
        self._stored_workflows[run.workflow_hash] = parsed
        self._definitions[id(parsed)] = (parsed, definition)
        return parsed

    async def resume(
        self,
        run_id: str,
        workflow: Workflow | None = None,
        *,
        cancel: asyncio.Event | None = None,
        max_concurrency: int | None = None,
        claimed: bool = False,
    ) -> RunResult:
        """Continue a stored run: completed steps are restored, the rest run. A changed
        `workflow` is accepted when every completed step is unchanged."""
        store = self._require_store()
        run = await store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        if run.status is RunState.COMPLETED:
            raise ResumeRefusedError(f"run {run_id} already completed; nothing to resume")
        if (
            not claimed
            and run.status is RunState.RUNNING
            and run.owner not in (None, self.owner)
            and run.lease_expires_at is not None
            and run.lease_expires_at > utc_now()
        ):
            raise ResumeRefusedError(
                f"run {run_id} is running in {run.owner} (lease until "
                f"{run.lease_expires_at.isoformat()}); cancel it or wait for the lease to lapse"
            )
        steps = await store.get_steps(run_id)
        stored_definition = await self._stored_workflow(run)
        new_hash: str | None = None
        if workflow is None:
            workflow = stored_definition
        else:
            done = [s.step_id for s in steps if s.status == StepStatus.COMPLETED.value]
            changed = changed_steps(stored_definition.document, workflow.document, done)
            if changed:
                raise ResumeRefusedError(
                    f"run {run_id}: completed steps changed since the run started: "
                    f"{', '.join(changed)}; replay from the first of them instead "
                    f"(llm-orchestrator runs replay {run_id} --from {changed[0]})"
                )
            # from now on the run is a run of the fixed definition (replay, restore, recover)
            new_hash = (await self._saved_definition(workflow)).hash
        plan = await self._plan_async(workflow)
        assert self._leases is not None
        await store.update_run(
            run_id,
            status=RunState.RUNNING,
            owner=self.owner,
            lease_expires_at=self._leases.lease_until(),
            workflow_hash=new_hash,
        )
        return await self._execute(
            plan, run.inputs, run_id, restored_from(steps), cancel, max_concurrency
        )

    async def recover(self, *, limit: int = 1000) -> list[RunResult]:
        """Resume every interrupted run (owner dead, lease expired), concurrently."""
        store = self._require_store()
        claimed = await store.claim_interrupted(
            self.owner, self.settings.state.lease_seconds, limit
        )
        return list(await asyncio.gather(*(self.resume(run.id, claimed=True) for run in claimed)))

    async def replay(self, run_id: str, from_step: str) -> RunResult:
        """A new run that reuses the outputs upstream of `from_step` and re-executes it and
        everything downstream."""
        store = self._require_store()
        run = await store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        workflow = await self._stored_workflow(run)
        plan = await self._plan_async(workflow)
        if from_step not in plan.nodes:
            raise ResumeRefusedError(
                f"run {run_id}: workflow '{workflow.name}' has no step '{from_step}'"
            )
        rerun = _downstream(plan, from_step)
        keep = {s for s in plan.nodes if s not in rerun}
        steps = await store.get_steps(run_id)
        return await self._start_child(run, workflow, plan, restored_from(steps, keep))

    async def restore(self, checkpoint_id: str) -> RunResult:
        """A new run starting from a checkpoint: the steps completed then are reused."""
        store = self._require_store()
        run, steps = await store.load_checkpoint(checkpoint_id)
        workflow = await self._stored_workflow(run)
        plan = await self._plan_async(workflow)
        return await self._start_child(run, workflow, plan, restored_from(steps))

    async def _start_child(
        self, parent: StoredRun, workflow: Workflow, plan: ExecutionPlan, restored: Restored
    ) -> RunResult:
        store = self._require_store()
        assert self._leases is not None
        run_id = new_run_id()
        await store.create_run(
            stored_run(
                run_id,
                await self._saved_definition(workflow),
                parent.inputs,
                self.owner,
                self._leases.lease_until(),
                user_id=parent.user_id,
                parent_run_id=parent.id,
            )
        )
        # the reused steps belong to the new run too
        for result in restored.completed.values():
            await store.record_step(to_stored(run_id, result), checkpoint=False)
        return await self._execute(plan, parent.inputs, run_id, restored, None, None)

    async def cancel_run(self, run_id: str) -> None:
        """Mark a stored run cancelled (a run of this process is also stopped by the
        `cancel` event given to `run`)."""
        store = self._require_store()
        run = await store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        if run.status.finished:
            raise ResumeRefusedError(f"run {run_id} already ended ({run.status.value})")
        await store.update_run(run_id, status=RunState.CANCELLED, finished_at=utc_now())

    def run_sync(
        self, workflow: Workflow | str | Path, inputs: Mapping[str, Any] | None = None
    ) -> RunResult:
        async def _main() -> RunResult:
            try:
                return await self.run(workflow, inputs)
            finally:
                await self.aclose()
                # provider clients belong to this event loop, which ends here
                await close_shared_clients()

        return asyncio.run(_main())

    async def aclose(self) -> None:
        """Close what this orchestrator opened (not the store: its owner closes it)."""
        if self._leases is not None:
            await self._leases.aclose()
        for _workflow, _plan, services in self._plans.values():
            await services.aclose()
        self._plans.clear()


async def close_shared_clients() -> None:
    """Close the process-wide LLM, embedding and vector-store clients (their connections
    belong to the running event loop): at process exit, or before the loop ends."""
    from llm_orchestrator.embeddings.registry import close_all_embedders
    from llm_orchestrator.vectordb.registry import close_all_vector_stores

    await close_all_providers()
    await close_all_embedders()
    await close_all_vector_stores()


def _downstream(plan: ExecutionPlan, start: str) -> set[str]:
    found = {start}
    stack = [start]
    while stack:
        for dependent in plan.dependents.get(stack.pop(), ()):
            if dependent not in found:
                found.add(dependent)
                stack.append(dependent)
    return found


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
