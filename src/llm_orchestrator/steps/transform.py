"""`transform`: reshape data between steps with a named function, no LLM call.

    - id: tidy
      type: transform
      function: join                  # see transform_functions.py, or a plug-in
      inputs: ["steps.split.result"]  # bare expressions or templates ({{ }})
      separator: ", "                 # parameters at step level (Rust LLM-Orchestrator style)
      params: {separator: ", "}       # ... or nested under `params` (not both for one key)

An input written as `{{ expr }}` keeps the native value (a list stays a list); other templates
render to text; a bare input (`steps.a.text`, `greeting`) is evaluated as an expression.
A parameter that is also a step field (`condition`) must go under `params:` to reach the
function: at step level it keeps its step meaning.

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledTemplate
from llm_orchestrator.exceptions import (
    ConfigurationError,
    OrchestratorError,
    StepFailedError,
    TemplateRenderError,
)
from llm_orchestrator.steps.base import (
    Services,
    StepKind,
    compile_reference,
    compile_templates,
    render_value,
)
from llm_orchestrator.steps.params import (
    FlatParamsSpec,
    Problem,
    check_params,
    describe_errors,
    has_template,
    is_template,
    shadow_hint,
)
from llm_orchestrator.steps.transform_functions import (
    TransformDataError,
    TransformFunction,
    get_function,
    load_error,
    unknown_function_hint,
)
from llm_orchestrator.workflow.spec import StepSpec


class TransformSpec(FlatParamsSpec):
    type: Literal["transform"]
    function: str = Field(min_length=1)
    inputs: list[str] = Field(default_factory=list)

    default_outputs: ClassVar[tuple[str, ...]] = ("result",)
    positional_outputs: ClassVar[int] = 1

    @field_validator("inputs", mode="before")
    @classmethod
    def _single_input(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def raw_parameters(self) -> frozenset[str]:
        function = get_function(self.function)
        return function.raw_params if function is not None else frozenset()

    def template_fields(self) -> dict[str, str]:
        fields = {f"inputs.{i}": s for i, s in enumerate(self.inputs) if is_template(s)}
        fields.update(self.parameter_template_fields(self.raw_parameters()))
        return fields

    def condition_fields(self) -> dict[str, str]:
        return {f"inputs.{i}": s for i, s in enumerate(self.inputs) if not is_template(s)}


_UNSET: Any = object()


class TransformStepKind(StepKind[TransformSpec]):
    type_name: ClassVar[str] = "transform"
    spec_model: ClassVar[type[StepSpec]] = TransformSpec

    def __init__(self, spec: TransformSpec, services: Services) -> None:
        super().__init__(spec, services)
        function = get_function(spec.function)
        if function is None:
            raise ConfigurationError(
                f"step '{spec.id}': unknown transform function '{spec.function}'"
            )
        self.function: TransformFunction[Any] = function
        self._inputs = [compile_reference(source) for source in spec.inputs]
        params = spec.parameters()
        self._raw = {k: v for k, v in params.items() if k in function.raw_params}
        self._templates = compile_templates(
            {k: v for k, v in params.items() if k not in function.raw_params}
        )
        self._constant = not any(
            has_template(v) for k, v in params.items() if k not in function.raw_params
        )
        self._validated: Any = _UNSET

    @classmethod
    def check(cls, spec: TransformSpec, services: Services) -> list[Problem]:
        function = get_function(spec.function)
        if function is None:
            broken = load_error(spec.function)
            if broken is not None:
                return [
                    (
                        f"transform function '{spec.function}' (a plug-in) {broken}",
                        "function",
                        "fix or reinstall the package that provides it",
                    )
                ]
            return [
                (
                    f"unknown transform function '{spec.function}'",
                    "function",
                    unknown_function_hint(spec.function),
                )
            ]
        problems: list[Problem] = []
        arity = function.arity_problem(len(spec.inputs))
        if arity is not None:
            problems.append((arity, "inputs", "list the values to transform under `inputs:`"))
        label = f"transform '{spec.function}'"
        if function.params_model is not None:
            problems += check_params(
                function.params_model,
                spec,
                label,
                raw=function.raw_params,
                hint=shadow_hint(function.params_model, spec),
            )
        else:
            problems += [
                (
                    f"parameter '{k}' is given both at step level and under params",
                    f"params.{k}",
                    None,
                )
                for k in spec.duplicated_parameters()
            ]
        return problems

    def _render_inputs(self, vars: Mapping[str, Any]) -> list[Any]:
        values: list[Any] = []
        for index, ref in enumerate(self._inputs):
            try:
                if isinstance(ref, CompiledTemplate):
                    values.append(ref.render(vars))
                else:
                    values.append(ref.value(vars))
            except TemplateRenderError as exc:
                raise TemplateRenderError(
                    f"step '{self.spec.id}': inputs.{index}: {exc}", step_id=self.spec.id
                ) from exc
        return values

    def _params(self, vars: Mapping[str, Any]) -> Any:
        if self._validated is not _UNSET:
            return self._validated
        rendered: dict[str, Any] = {**render_value(self._templates, vars), **self._raw}
        try:
            params = self.function.validate(rendered)
        except ValidationError as exc:
            raise StepFailedError(
                f"step '{self.spec.id}': transform '{self.function.name}': invalid parameters "
                f"after rendering: {describe_errors(exc)}",
                step_id=self.spec.id,
            ) from exc
        if self._constant:
            self._validated = params
        return params

    async def run(self, ctx: StepContext) -> StepOutput:
        inputs = self._render_inputs(ctx.vars)
        params = self._params(ctx.vars)
        try:
            result = await self.function.call(inputs, params, ctx.vars)
        except OrchestratorError:
            raise
        except Exception as exc:  # translated, chained, never swallowed
            why = (
                str(exc) if isinstance(exc, TransformDataError) else f"{type(exc).__name__}: {exc}"
            )
            raise StepFailedError(
                f"step '{self.spec.id}': transform '{self.function.name}' failed: {why}",
                step_id=self.spec.id,
            ) from exc
        return StepOutput(values=(result,))


__all__ = [
    "TransformSpec",
    "TransformStepKind",
]
