"""`embed`: text to vectors, batched and sent with bounded concurrency.

Outputs: `output[0]` is the vector when `input` renders to a string, else the list of
vectors (input order kept); `output[1]` the metadata: model, provider, dimensions, count,
usage.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from llm_orchestrator.embeddings.base import EmbeddingResponse
from llm_orchestrator.embeddings.batching import embed_batched
from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledTemplate
from llm_orchestrator.engine.usage import Usage
from llm_orchestrator.exceptions import StepFailedError
from llm_orchestrator.steps.base import Services, StepKind
from llm_orchestrator.workflow.spec import StepSpec

#: the size of the local model's vectors (checked before running)
_LOCAL_DIMENSIONS = 384


class EmbedSpec(StepSpec):
    type: Literal["embed"]
    #: embedder name: local, openai, cohere, or a configured openai_compatible provider
    provider: str = "local"
    #: model name; default: the embedder's default model
    model: str | None = None
    #: template rendering to a string or a list of strings
    input: str
    #: requested vector size (OpenAI text-embedding-3 and Cohere embed-v4 can shorten)
    dimensions: int | None = Field(default=None, ge=1)
    #: texts per request; the embedder's own limit applies when it is lower
    batch_size: int = Field(default=100, ge=1)
    #: requests of this step in flight at once
    max_concurrency: int = Field(default=4, ge=1)

    default_outputs: ClassVar[tuple[str, ...]] = ("embedding", "metadata")
    positional_outputs: ClassVar[int] = 2

    def template_fields(self) -> dict[str, str]:
        return {"input": self.input}


class EmbedStepKind(StepKind[EmbedSpec]):
    type_name: ClassVar[str] = "embed"
    spec_model: ClassVar[type[StepSpec]] = EmbedSpec

    def __init__(self, spec: EmbedSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._input = CompiledTemplate(spec.input)

    @classmethod
    def check(cls, spec: EmbedSpec, services: Services) -> list[tuple[str, str | None, str | None]]:
        problems: list[tuple[str, str | None, str | None]] = []
        registry = services.embedders
        message = registry.check(spec.provider)
        if message:
            problems.append((message, "provider", None))
            return problems
        cfg = registry.config(spec.provider)
        if (
            cfg is not None
            and cfg.type == "local"
            and spec.dimensions not in (None, _LOCAL_DIMENSIONS)
        ):
            problems.append(
                (
                    f"the local embedder makes {_LOCAL_DIMENSIONS}-dimensional vectors, "
                    f"not {spec.dimensions}",
                    "dimensions",
                    f"remove `dimensions` or set it to {_LOCAL_DIMENSIONS}",
                )
            )
        return problems

    async def run(self, ctx: StepContext) -> StepOutput:
        spec = self.spec
        rendered = self._input.render(ctx.vars)
        single = isinstance(rendered, str)
        texts = self._texts(ctx, rendered)
        embedder = await self.services.embedders.aget(spec.provider)
        model = spec.model or embedder.default_model
        results = await embed_batched(
            embedder,
            texts,
            model=model,
            dimensions=spec.dimensions,
            batch_size=spec.batch_size,
            max_concurrency=spec.max_concurrency,
            before_request=ctx.check_budget,
            on_response=lambda response: ctx.record_usage(self._usage(response)),
        )

        vectors: list[list[float]] = []
        reported = model
        for response in results:
            vectors.extend(response.vectors)
            reported = response.model or reported
        dimensions = len(vectors[0]) if vectors else spec.dimensions
        metadata = {
            "provider": spec.provider,
            "model": reported,
            "dimensions": dimensions,
            "count": len(vectors),
            "usage": ctx.usage.to_dict(),
        }
        value: Any = vectors[0] if single else vectors
        info = {"provider": spec.provider, "model": reported, "requests": len(results)}
        return StepOutput(
            values=(value, metadata),
            raw={"embedding": value, "metadata": metadata},
            usage=ctx.usage,
            info=info,
        )

    def _texts(self, ctx: StepContext, rendered: Any) -> list[str]:
        if isinstance(rendered, str):
            return [rendered]
        if isinstance(rendered, list | tuple):
            bad = [i for i, item in enumerate(rendered) if not isinstance(item, str)]
            if not bad:
                return list(rendered)
            first = bad[0]
            raise StepFailedError(
                f"step '{ctx.step_id}': input item {first} is "
                f"{type(rendered[first]).__name__}, not a string; make `input` render to a "
                "string or a list of strings (e.g. map items with a transform step first)",
                step_id=ctx.step_id,
            )
        raise StepFailedError(
            f"step '{ctx.step_id}': input rendered to {type(rendered).__name__}, not a string "
            "or a list of strings; fix the `input` template",
            step_id=ctx.step_id,
        )

    def _usage(self, response: EmbeddingResponse) -> Usage:
        cost = self.services.prices.cost(response.model, response.input_tokens, 0)
        return Usage(response.input_tokens, 0, cost)
