"""The workflow as a validated DAG.

Composite steps (branch, parallel) are flattened: their nested steps become nodes that depend
on the composite, and a step that depends on a composite also waits (softly) for everything
nested in it, so "after the branch" means after whichever side ran.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from jinja2 import TemplateSyntaxError
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from llm_orchestrator.engine.templates import CONTEXT_ROOTS, ENV, inspect_template
from llm_orchestrator.exceptions import ValidationProblem
from llm_orchestrator.settings import Limits
from llm_orchestrator.workflow.loader import Loc, Workflow, field_loc
from llm_orchestrator.workflow.spec import StepSpec

_RESERVED_NAMES = CONTEXT_ROOTS | set(ENV.globals)


@dataclass(frozen=True)
class GraphNode:
    spec: StepSpec
    loc: Loc
    deps: tuple[str, ...]
    soft_deps: tuple[str, ...] = ()
    #: id of the composite step this node is nested in
    parent: str | None = None
    #: id of the parallel step whose concurrency limit applies
    group: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    def output_names(self) -> tuple[str, ...]:
        names = list(self.spec.output_names())
        names += [n for n in self.spec.output_mapping if n not in names]
        return tuple(names)


@dataclass(frozen=True)
class WorkflowGraph:
    workflow: Workflow
    nodes: dict[str, GraphNode]
    order: tuple[str, ...]
    dependents: dict[str, tuple[str, ...]]
    group_limits: dict[str, int] = field(default_factory=dict)

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            node = self.nodes[stack.pop()]
            for dep in (*node.deps, *node.soft_deps):
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen


def workflow_steps(workflow: Workflow) -> Iterator[tuple[StepSpec, Loc, str | None, str | None]]:
    """Every step of the workflow, nested ones included, with its location in the document:
    (spec, loc, parent id, concurrency group)."""
    for index, spec in enumerate(workflow.steps):
        yield from _with_children(spec, workflow.step_loc(index), None, None)


def flatten_steps(
    specs: tuple[StepSpec, ...] | list[StepSpec], base: Loc, parent: str | None, group: str | None
) -> Iterator[tuple[StepSpec, Loc, str | None, str | None]]:
    for index, spec in enumerate(specs):
        yield from _with_children(spec, (*base, index), parent, group)


def _with_children(
    spec: StepSpec, loc: Loc, parent: str | None, group: str | None
) -> Iterator[tuple[StepSpec, Loc, str | None, str | None]]:
    yield spec, loc, parent, group
    children = spec.child_groups()
    if not children:
        return
    limit = spec.children_max_concurrency()
    child_group = spec.id if limit is not None else group
    for key, nested in children.items():
        yield from flatten_steps(nested, (*loc, *key), spec.id, child_group)


def _descendants(spec: StepSpec) -> list[str]:
    out: list[str] = []
    for nested in spec.child_groups().values():
        for child in nested:
            out.append(child.id)
            out.extend(_descendants(child))
    return out


class _Problems:
    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.items: list[ValidationProblem] = []

    def add(
        self,
        message: str,
        loc: Loc,
        *,
        step_id: str | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.items.append(
            ValidationProblem(
                message,
                file=self.workflow.source,
                line=self.workflow.line_of(loc),
                step_id=step_id,
                field=field,
                fix=fix,
            )
        )


def _suggest(name: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def build_graph(
    workflow: Workflow, limits: Limits | None = None
) -> tuple[WorkflowGraph | None, list[ValidationProblem]]:
    """Flatten, check ids, dependencies, cycles, templates and limits; report every problem."""
    limits = limits or Limits()
    problems = _Problems(workflow)
    flat = list(workflow_steps(workflow))

    # ids
    specs: dict[str, tuple[StepSpec, Loc, str | None, str | None]] = {}
    for spec, loc, parent, group in flat:
        if spec.id in specs:
            first_line = workflow.line_of(specs[spec.id][1])
            problems.add(
                f"duplicate step id '{spec.id}' (first defined on line {first_line})",
                (*loc, "id"),
                step_id=spec.id,
                field="id",
                fix="give every step, nested ones included, a unique id",
            )
            continue
        specs[spec.id] = (spec, loc, parent, group)
    if len(specs) > limits.max_steps:
        problems.add(
            f"the workflow has {len(specs)} steps, more than the limit of {limits.max_steps}",
            ("steps",),
            fix="split it into smaller workflows or raise limits.max_steps in the config",
        )

    known = sorted({*specs, *workflow.invalid_step_ids})
    descendants = {sid: _descendants(s) for sid, (s, *_rest) in specs.items()}
    group_limits: dict[str, int] = {}
    nodes: dict[str, GraphNode] = {}
    for sid, (spec, loc, parent, group) in specs.items():
        deps: list[str] = []
        for dep in spec.depends_on:
            if dep == sid:
                problems.add(
                    "a step cannot depend on itself",
                    (*loc, "depends_on"),
                    step_id=sid,
                    field="depends_on",
                    fix=f"remove '{dep}' from depends_on",
                )
            elif dep in workflow.invalid_step_ids:
                continue  # that step's own problems are reported already
            elif dep not in specs:
                hint = _suggest(dep, known)
                problems.add(
                    f"depends on unknown step '{dep}'",
                    (*loc, "depends_on"),
                    step_id=sid,
                    field="depends_on",
                    fix=hint or "known steps: " + ", ".join(known),
                )
            elif dep not in deps:
                deps.append(dep)
        if parent is not None and parent not in deps:
            deps.append(parent)
        soft: list[str] = []
        for dep in deps:
            nested_in_dep = descendants.get(dep, [])
            if sid in nested_in_dep:
                continue  # a step inside a composite only waits for the composite to start
            for nested in nested_in_dep:
                if nested not in soft and nested not in deps:
                    soft.append(nested)
        limit = spec.children_max_concurrency()
        if limit is not None:
            group_limits[sid] = limit
        nodes[sid] = GraphNode(
            spec=spec, loc=loc, deps=tuple(deps), soft_deps=tuple(soft), parent=parent, group=group
        )

    order = _topological_order(nodes, problems)
    dependents: dict[str, list[str]] = {sid: [] for sid in nodes}
    for sid, node in nodes.items():
        for dep in (*node.deps, *node.soft_deps):
            dependents[dep].append(sid)
    graph = WorkflowGraph(
        workflow=workflow,
        nodes=nodes,
        order=tuple(order),
        dependents={k: tuple(v) for k, v in dependents.items()},
        group_limits=group_limits,
    )
    if order:
        _check_outputs(graph, problems)
        _check_templates(graph, problems, limits)
    if problems.items:
        return None, problems.items
    return graph, []


def _topological_order(nodes: dict[str, GraphNode], problems: _Problems) -> list[str]:
    indegree = {sid: 0 for sid in nodes}
    children: dict[str, list[str]] = {sid: [] for sid in nodes}
    for sid, node in nodes.items():
        for dep in (*node.deps, *node.soft_deps):
            if dep in nodes:
                indegree[sid] += 1
                children[dep].append(sid)
    ready = [sid for sid, deg in indegree.items() if deg == 0]
    order: list[str] = []
    while ready:
        sid = ready.pop(0)
        order.append(sid)
        for child in children[sid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) == len(nodes):
        return order
    remaining = {sid for sid in nodes if sid not in order}
    cycle = _find_cycle(nodes, remaining)
    first = nodes[cycle[0]]
    problems.add(
        "dependency cycle: " + " -> ".join(cycle),
        (*first.loc, "depends_on"),
        step_id=cycle[0],
        field="depends_on",
        fix="remove one of these dependencies so the steps form a DAG",
    )
    return []


def _find_cycle(nodes: dict[str, GraphNode], remaining: set[str]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(sid: str) -> list[str] | None:
        state[sid] = 1
        path.append(sid)
        for dep in (*nodes[sid].deps, *nodes[sid].soft_deps):
            if dep not in remaining:
                continue
            if state.get(dep) == 1:
                start = path.index(dep)
                # report in execution order: dependency first
                cyc = path[start:] + [dep]
                return list(reversed(cyc))
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[sid] = 2
        return None

    for sid in sorted(remaining):
        if sid not in state:
            found = visit(sid)
            if found:
                return found
    return sorted(remaining)


def _check_outputs(graph: WorkflowGraph, problems: _Problems) -> None:
    declared_by: dict[str, str] = {}
    for sid, node in graph.nodes.items():
        spec = node.spec
        for name in spec.output:
            if name in _RESERVED_NAMES:
                problems.add(
                    f"output name '{name}' is reserved",
                    (*node.loc, "output"),
                    step_id=sid,
                    field="output",
                    fix="choose another name; reserved: " + ", ".join(sorted(CONTEXT_ROOTS)),
                )
            elif name in declared_by and declared_by[name] != sid:
                problems.add(
                    f"output name '{name}' is also declared by step '{declared_by[name]}'",
                    (*node.loc, "output"),
                    step_id=sid,
                    field="output",
                    fix="output names are visible at the top level of templates: make them unique",
                )
            else:
                declared_by[name] = sid
        positional = spec.positional_outputs
        for index, name in enumerate(spec.output):
            if index >= positional and name not in spec.output_mapping:
                problems.add(
                    f"output '{name}' cannot be filled: a {spec.type} step produces "
                    f"{positional} value(s) ({', '.join(spec.default_outputs)})",
                    (*node.loc, "output"),
                    step_id=sid,
                    field="output",
                    fix=f"add output_mapping: {{{name}: '$.<path>'}} or remove it",
                )
        for name, path in spec.output_mapping.items():
            try:
                parse_jsonpath(path)
            except Exception as exc:  # jsonpath-ng raises several unrelated exception types
                problems.add(
                    f"output_mapping '{name}': invalid JSON path {path!r}: {exc}",
                    (*node.loc, "output_mapping", name),
                    step_id=sid,
                    field=f"output_mapping.{name}",
                    fix="write a JSON path such as '$.metadata.usage.input_tokens'",
                )


def _check_templates(graph: WorkflowGraph, problems: _Problems, limits: Limits) -> None:
    exported: dict[str, str] = {}
    for sid, node in graph.nodes.items():
        for name in node.spec.output:
            exported.setdefault(name, sid)
    for sid, node in graph.nodes.items():
        spec = node.spec
        fields = dict(spec.template_fields())
        conditions = {"condition": spec.condition} if spec.condition else {}
        conditions.update(spec.condition_fields())
        upstream: set[str] | None = None
        for fname, source, is_condition in [
            *((f, s, False) for f, s in fields.items()),
            *((f, s, True) for f, s in conditions.items()),
        ]:
            loc = (*node.loc, *field_loc(fname))
            if fname in ("prompt", "system") and len(source) > limits.max_prompt_chars:
                problems.add(
                    f"{fname} is {len(source)} characters, over the limit of "
                    f"{limits.max_prompt_chars}",
                    loc,
                    step_id=sid,
                    field=fname,
                    fix="shorten it or raise limits.max_prompt_chars in the config",
                )
            try:
                info = inspect_template(source, condition=is_condition)
            except TemplateSyntaxError as exc:
                line = graph.workflow.line_of(loc)
                problems.add(
                    f"template syntax error: {exc.message}",
                    loc,
                    step_id=sid,
                    field=fname,
                    fix="check the {{ }} / {% %} delimiters"
                    + (f" (template line {exc.lineno}, file line ~{line})" if line else ""),
                )
                continue
            if upstream is None:
                upstream = graph.ancestors(sid)
            for ref in info.step_refs:
                target = graph.nodes.get(ref.step_id)
                if ref.step_id in graph.workflow.invalid_step_ids:
                    continue
                if target is None:
                    known = sorted({*graph.nodes, *graph.workflow.invalid_step_ids})
                    hint = _suggest(ref.step_id, known)
                    problems.add(
                        f"template refers to unknown step '{ref.step_id}'",
                        loc,
                        step_id=sid,
                        field=fname,
                        fix=hint or "known steps: " + ", ".join(known),
                    )
                    continue
                if ref.step_id not in upstream:
                    problems.add(
                        f"template refers to step '{ref.step_id}', which is not upstream of "
                        f"'{sid}' and may not have run yet",
                        loc,
                        step_id=sid,
                        field=fname,
                        fix=f"add '{ref.step_id}' to depends_on of '{sid}'",
                    )
                    continue
                outputs = target.output_names()
                if ref.output is not None and ref.output not in outputs:
                    problems.add(
                        f"template refers to steps.{ref.step_id}.{ref.output}, but step "
                        f"'{ref.step_id}' declares outputs [{', '.join(outputs)}]",
                        loc,
                        step_id=sid,
                        field=fname,
                        fix=_suggest(ref.output, list(outputs))
                        or f"use one of: {', '.join(outputs)}",
                    )
            declared_inputs = graph.workflow.header.inputs
            if declared_inputs:  # undeclared inputs are only checked when some are declared
                for name in sorted(info.input_refs - set(declared_inputs)):
                    problems.add(
                        f"template refers to inputs.{name}, but the workflow declares inputs "
                        f"[{', '.join(declared_inputs)}]",
                        loc,
                        step_id=sid,
                        field=fname,
                        fix=_suggest(name, list(declared_inputs))
                        or f"declare '{name}' under `inputs:`",
                    )
            for name in sorted(info.names - _RESERVED_NAMES):
                owner = exported.get(name)
                if owner is None:
                    hint = _suggest(name, [*exported, "inputs"])
                    problems.add(
                        f"template refers to '{name}', which is neither an input root "
                        "(inputs, steps, outputs) nor a declared output of any step",
                        loc,
                        step_id=sid,
                        field=fname,
                        fix=hint or f"write inputs.{name} for a run input",
                    )
                elif owner not in upstream:
                    problems.add(
                        f"template refers to '{name}', an output of step '{owner}', which is "
                        f"not upstream of '{sid}'",
                        loc,
                        step_id=sid,
                        field=fname,
                        fix=f"add '{owner}' to depends_on of '{sid}'",
                    )
