"""`action`: do something outside the run (log a message, call a webhook, a plug-in action).

    - id: notify
      type: action
      action: webhook                     # see action_handlers.py, or a plug-in
      url: "https://hooks.example.com/{{ inputs.channel }}"
      payload: {summary: "{{ steps.summarize.text }}"}
      params: {method: PUT}               # parameters may also be nested (not both for one key)

Every string parameter is a template. A handler parameter named like a step field
(`timeout_seconds`) takes the step's value unless given under `params:`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.exceptions import ActionError, ConfigurationError, OrchestratorError
from llm_orchestrator.steps.action_handlers import (
    ActionContext,
    ActionHandler,
    get_action,
    idempotency_key,
    load_error,
    unknown_action_hint,
)
from llm_orchestrator.steps.base import Services, StepKind, compile_templates, render_value
from llm_orchestrator.steps.params import (
    FlatParamsSpec,
    Problem,
    check_params,
    describe_errors,
    has_template,
)
from llm_orchestrator.workflow.spec import StepSpec

#: step fields a handler parameter of the same name inherits when not given under `params:`
_INHERITED_STEP_FIELDS = ("timeout_seconds",)


class ActionSpec(FlatParamsSpec):
    type: Literal["action"]
    action: str = Field(min_length=1)

    default_outputs: ClassVar[tuple[str, ...]] = ("result",)
    positional_outputs: ClassVar[int] = 1

    def template_fields(self) -> dict[str, str]:
        return self.parameter_template_fields()


_UNSET: Any = object()


class ActionStepKind(StepKind[ActionSpec]):
    type_name: ClassVar[str] = "action"
    spec_model: ClassVar[type[StepSpec]] = ActionSpec

    def __init__(self, spec: ActionSpec, services: Services) -> None:
        super().__init__(spec, services)
        handler = get_action(spec.action)
        if handler is None:
            raise ConfigurationError(f"step '{spec.id}': unknown action '{spec.action}'")
        self.handler: ActionHandler[Any] = handler
        params = spec.parameters()
        self._templates = compile_templates(params)
        # plain-callable handlers get a dict they may change: never reuse it
        self._constant = handler.params_model is not None and not has_template(params)
        self._inherited = self._inherited_fields(handler, spec)
        self._validated: Any = _UNSET

    @property
    def side_effects(self) -> bool:
        """Whether the action changes something outside the run."""
        return self.handler.side_effects

    @staticmethod
    def _inherited_fields(handler: ActionHandler[Any], spec: ActionSpec) -> dict[str, Any]:
        model = handler.params_model
        if model is None:
            return {}
        given = spec.parameters()
        return {
            name: getattr(spec, name)
            for name in _INHERITED_STEP_FIELDS
            if name in model.model_fields and name not in given and getattr(spec, name) is not None
        }

    @classmethod
    def check(cls, spec: ActionSpec, services: Services) -> list[Problem]:
        handler = get_action(spec.action)
        if handler is None:
            broken = load_error(spec.action)
            if broken is not None:
                return [
                    (
                        f"action '{spec.action}' (a plug-in) {broken}",
                        "action",
                        "fix or reinstall the package that provides it",
                    )
                ]
            return [(f"unknown action '{spec.action}'", "action", unknown_action_hint(spec.action))]
        if handler.params_model is None:
            return [
                (
                    f"parameter '{k}' is given both at step level and under params",
                    f"params.{k}",
                    None,
                )
                for k in spec.duplicated_parameters()
            ]
        return check_params(handler.params_model, spec, f"action '{spec.action}'")

    def _params(self, vars: Mapping[str, Any]) -> Any:
        if self._validated is not _UNSET:
            return self._validated
        rendered = {**self._inherited, **render_value(self._templates, vars)}
        try:
            params = self.handler.validate(rendered)
        except ValidationError as exc:
            raise ActionError(
                f"step '{self.spec.id}': action '{self.spec.action}': invalid parameters after "
                f"rendering: {describe_errors(exc)}",
                step_id=self.spec.id,
            ) from exc
        if self._constant:
            self._validated = params
        return params

    async def run(self, ctx: StepContext) -> StepOutput:
        params = self._params(ctx.vars)
        key = idempotency_key(ctx.run_id, ctx.step_id, self.handler.idempotency_material(params))
        action_ctx = ActionContext(
            run_id=ctx.run_id,
            step_id=ctx.step_id,
            attempt=ctx.attempt,
            idempotency_key=key,
            http=self.services.http,
        )
        ledger = ctx.ledger if self.handler.side_effects else None
        if ledger is not None:
            # durable runs: a claim before acting, a receipt after; an action whose receipt
            # exists already ran (before a crash) and is not run again
            earlier = await ledger.claim(ctx.run_id, ctx.step_id, key)
            if earlier is not None:
                return StepOutput(
                    values=(earlier.get("result"),),
                    info={"idempotency_key": key, "from_receipt": True},
                )
        try:
            result = await self.handler.run(params, action_ctx)
        except OrchestratorError:
            raise
        except Exception as exc:  # translated, chained, never swallowed
            raise ActionError(
                f"step '{self.spec.id}': action '{self.spec.action}' raised "
                f"{type(exc).__name__}: {exc}",
                step_id=self.spec.id,
            ) from exc
        if ledger is not None:
            await ledger.receipt(ctx.run_id, ctx.step_id, key, {"result": result})
        return StepOutput(values=(result,), info={"idempotency_key": key})


__all__ = ["ActionSpec", "ActionStepKind"]
