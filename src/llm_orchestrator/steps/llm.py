"""`llm`: one chat completion, with fallback chains, JSON-schema outputs, usage and cost.

Outputs: `output[0]` is the text (or the parsed object when `output_schema` is set),
`output[1]` the metadata: model, provider, usage, finish_reason, latency_ms.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, ClassVar, Literal

import jsonschema
from pydantic import Field

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledTemplate
from llm_orchestrator.engine.usage import Usage
from llm_orchestrator.exceptions import (
    CircuitOpenError,
    OrchestratorError,
    OutputSchemaError,
    ProviderBadRequestError,
    ProviderError,
)
from llm_orchestrator.providers.base import ChatRequest, ChatResponse, Message
from llm_orchestrator.steps.base import Services, StepKind
from llm_orchestrator.workflow.spec import OneOrMany, StepSpec


class LLMSpec(StepSpec):
    type: Literal["llm"]
    #: provider instance name; default: the configured default provider
    provider: str | None = None
    #: model name; default: the provider's default model
    model: str | None = None
    prompt: str
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: OneOrMany | None = None
    #: stream tokens to observers (the CLI shows them); the stored output is the full text
    stream: bool = False
    #: JSON Schema the reply must match; the parsed object becomes output[0]
    output_schema: dict[str, Any] | None = None
    #: tried in order when the provider fails or its circuit is open: "provider" or
    #: "provider:model"
    fallback: OneOrMany = Field(default_factory=list)

    default_outputs: ClassVar[tuple[str, ...]] = ("text", "metadata")
    positional_outputs: ClassVar[int] = 2

    def template_fields(self) -> dict[str, str]:
        fields = {"prompt": self.prompt}
        if self.system is not None:
            fields["system"] = self.system
        return fields


def _split_target(entry: str) -> tuple[str, str | None]:
    provider, _, model = entry.partition(":")
    return provider.strip(), (model.strip() or None)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_reply(text: str) -> Any:
    """The JSON value in a reply, tolerating a ``` fence or prose around one object."""
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    last: json.JSONDecodeError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            last = exc
    raise ValueError(f"reply is not JSON ({last.msg if last else 'empty'})")


class LLMStepKind(StepKind[LLMSpec]):
    type_name: ClassVar[str] = "llm"
    spec_model: ClassVar[type[StepSpec]] = LLMSpec

    def __init__(self, spec: LLMSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._prompt = CompiledTemplate(spec.prompt)
        self._system = CompiledTemplate(spec.system) if spec.system is not None else None
        primary = spec.provider or services.settings.default_provider_name()
        self._targets = [(primary, spec.model), *(_split_target(f) for f in spec.fallback)]
        self._validator = (
            jsonschema.validators.validator_for(spec.output_schema)(spec.output_schema)
            if spec.output_schema is not None
            else None
        )

    @classmethod
    def check(cls, spec: LLMSpec, services: Services) -> list[tuple[str, str | None, str | None]]:
        problems: list[tuple[str, str | None, str | None]] = []
        primary = spec.provider or services.settings.default_provider_name()
        field_name = "provider" if spec.provider else None
        message = services.providers.check(primary)
        if message:
            problems.append((message, field_name, None))
        config = services.providers.config(primary)
        if spec.temperature is not None and config is not None and config.type == "anthropic":
            problems.append(
                (
                    f"provider '{primary}' (anthropic) does not accept temperature: the "
                    "current Messages API rejects it",
                    "temperature",
                    "remove `temperature` from this step",
                )
            )
        for index, entry in enumerate(spec.fallback):
            name, _model = _split_target(entry)
            message = services.providers.check(name)
            if message:
                problems.append((message, f"fallback.{index}", None))
        if spec.output_schema is not None:
            try:
                jsonschema.validators.validator_for(spec.output_schema).check_schema(
                    spec.output_schema
                )
            except jsonschema.SchemaError as exc:
                problems.append(
                    (
                        f"output_schema is not a valid JSON Schema: {exc.message}",
                        "output_schema",
                        "fix the schema (see json-schema.org)",
                    )
                )
        return problems

    async def run(self, ctx: StepContext) -> StepOutput:
        vars_ = ctx.vars
        messages: list[Message] = []
        if self._system is not None:
            messages.append(Message("system", self._system.render_str(vars_)))
        messages.append(Message("user", self._prompt.render_str(vars_)))
        failures: list[dict[str, str]] = []
        last_error: OrchestratorError | None = None
        for index, (provider_name, model) in enumerate(self._targets):
            is_last = index == len(self._targets) - 1
            ctx.check_budget()
            try:
                return await self._call(ctx, provider_name, model, messages, failures)
            except ProviderBadRequestError:
                raise  # the request itself is wrong: another provider will not fix it
            except (ProviderError, CircuitOpenError) as exc:
                if is_last:
                    raise
                failures.append({"provider": provider_name, "error": str(exc)})
                last_error = exc
        raise AssertionError(f"unreachable: no provider target ({last_error})")

    async def _call(
        self,
        ctx: StepContext,
        provider_name: str,
        model: str | None,
        messages: list[Message],
        failures: list[dict[str, str]],
    ) -> StepOutput:
        spec = self.spec
        provider = await self.services.providers.aget(provider_name)
        request = ChatRequest(
            model=model or provider.default_model,
            messages=tuple(messages),
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            stop=spec.stop,
            json_schema=spec.output_schema,
            on_token=ctx.emit_token if spec.stream else None,
        )
        started = time.perf_counter()
        response = await provider.complete(request)
        usage = self._usage(response)
        ctx.record_usage(usage)
        value: Any = response.text
        if self._validator is not None:
            value, response, extra = await self._conform(ctx, provider, request, response)
            usage = usage + extra
        latency_ms = (time.perf_counter() - started) * 1000
        metadata = {
            "provider": provider_name,
            "model": response.model or request.model,
            "usage": ctx.usage.to_dict(),
            "finish_reason": response.finish_reason,
            "latency_ms": round(latency_ms, 3),
        }
        info: dict[str, Any] = {"provider": provider_name, "model": metadata["model"]}
        if failures:
            info["fallback_from"] = list(failures)
        raw = {"text": response.text, "metadata": metadata}
        if self._validator is not None:
            raw["parsed"] = value
        return StepOutput(values=(value, metadata), raw=raw, usage=usage, info=info)

    def _usage(self, response: ChatResponse) -> Usage:
        cost = self.services.prices.cost(
            response.model, response.input_tokens, response.output_tokens
        )
        return Usage(response.input_tokens, response.output_tokens, cost)

    async def _conform(
        self, ctx: StepContext, provider: Any, request: ChatRequest, response: ChatResponse
    ) -> tuple[Any, ChatResponse, Usage]:
        """Parse and validate against output_schema; one retry with the error fed back."""
        assert self._validator is not None
        problem = self._schema_problem(response.text)
        if problem is None:
            return parse_json_reply(response.text), response, Usage()
        retry = ChatRequest(
            model=request.model,
            messages=(
                *request.messages,
                Message("assistant", response.text),
                Message(
                    "user",
                    f"Your reply did not match the required JSON schema: {problem}. "
                    "Reply again with only the corrected JSON.",
                ),
            ),
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            stop=request.stop,
            json_schema=request.json_schema,
        )
        ctx.check_budget()
        second = await provider.complete(retry)
        extra = self._usage(second)
        ctx.record_usage(extra)
        problem = self._schema_problem(second.text)
        if problem is not None:
            raise OutputSchemaError(
                f"step '{ctx.step_id}': the reply does not match output_schema after one "
                f"corrective retry: {problem}",
                step_id=ctx.step_id,
            )
        return parse_json_reply(second.text), second, extra

    def _schema_problem(self, text: str) -> str | None:
        assert self._validator is not None
        try:
            value = parse_json_reply(text)
        except ValueError as exc:
            return str(exc)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"at {where}: {error.message}"
