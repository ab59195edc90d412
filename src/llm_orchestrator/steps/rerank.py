"""`rerank`: reorder retrieved passages by how well they answer the query, with an LLM judge.

    - id: rerank
      type: rerank
      query: "{{ inputs.question }}"
      documents: "{{ steps.search.results }}"   # search results ({text, ...}) or strings
      top_n: 3                                   # keep the best 3 (default: all)
      provider: local                            # any LLM provider; default: the default one
      max_concurrency: 4

Each passage is judged on its own (pointwise): the provider is asked for
`{"score": 0..10}` under a JSON schema (OpenAI/Anthropic JSON mode, a sampling grammar on the
local model), and a reply that is not JSON falls back to its first integer. Passages are
ordered by that score, ties (and passages the judge could not score) keeping their retrieval
order. Each result is the input item with `relevance` (the judge's score, or null) added;
strings become `{"text": ..., "relevance": ...}`.

No cross-encoder ships offline for this project (none is installable from PyPI without a
model download), so the LLM judge is the only method; `method: llm` is accepted for
forward compatibility.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, ClassVar, Literal

from pydantic import Field

from llm_orchestrator.aio import gather
from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledTemplate
from llm_orchestrator.engine.usage import Usage
from llm_orchestrator.exceptions import StepFailedError
from llm_orchestrator.providers.base import ChatRequest, Message
from llm_orchestrator.steps.base import Services, StepKind, render_value
from llm_orchestrator.steps.llm import parse_json_reply
from llm_orchestrator.steps.params import Problem, is_template
from llm_orchestrator.workflow.spec import StepSpec

SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    # an enum, not minimum/maximum: sampling grammars (llama.cpp) enforce enums only
    "properties": {"score": {"type": "integer", "enum": list(range(11))}},
    "required": ["score"],
    "additionalProperties": False,
}

JUDGE_SYSTEM = (
    "You grade search results. Given a question and one passage, rate how well the passage "
    "answers the question from 0 (unrelated) to 10 (answers it completely). "
    'Reply with JSON only: {"score": <integer 0-10>}.'
)
_INTEGER = re.compile(r"\b(10|[0-9])\b")


class RerankSpec(StepSpec):
    type: Literal["rerank"]
    query: str
    #: a list of search results ({text, ...}) or of strings, usually a template
    documents: str | list[Any]
    #: how many to keep; default: all
    top_n: int | None = Field(default=None, ge=1)
    method: Literal["llm"] = "llm"
    provider: str | None = None
    model: str | None = None
    max_concurrency: int = Field(default=4, ge=1, le=64)
    #: characters of each passage shown to the judge
    max_passage_chars: int = Field(default=2000, ge=100)

    default_outputs: ClassVar[tuple[str, ...]] = ("results",)
    positional_outputs: ClassVar[int] = 1

    def template_fields(self) -> dict[str, str]:
        fields = {"query": self.query}
        if isinstance(self.documents, str):
            fields["documents"] = self.documents
        return fields


class RerankStepKind(StepKind[RerankSpec]):
    type_name: ClassVar[str] = "rerank"
    spec_model: ClassVar[type[StepSpec]] = RerankSpec

    def __init__(self, spec: RerankSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._query = CompiledTemplate(spec.query)
        self._documents = (
            CompiledTemplate(spec.documents) if isinstance(spec.documents, str) else None
        )
        self._provider = spec.provider or services.settings.default_provider_name()

    @classmethod
    def check(cls, spec: RerankSpec, services: Services) -> list[Problem]:
        problems: list[Problem] = []
        provider = spec.provider or services.settings.default_provider_name()
        message = services.providers.check(provider)
        if message:
            problems.append((message, "provider" if spec.provider else None, None))
        if isinstance(spec.documents, str) and not is_template(spec.documents):
            problems.append(
                (
                    "documents must be a list or a template rendering to one",
                    "documents",
                    'e.g. documents: "{{ steps.search.results }}"',
                )
            )
        return problems

    async def run(self, ctx: StepContext) -> StepOutput:
        spec = self.spec
        query = self._query.render_str(ctx.vars)
        raw = (
            render_value(self._documents, ctx.vars)
            if self._documents is not None
            else spec.documents
        )
        items = self._items(raw, ctx.step_id)
        provider = await self.services.providers.aget(self._provider)
        model = spec.model or provider.default_model
        limiter = asyncio.Semaphore(spec.max_concurrency)

        async def judge(text: str) -> int | None:
            async with limiter:
                ctx.check_budget()
                response = await provider.complete(
                    ChatRequest(
                        model=model,
                        messages=(
                            Message("system", JUDGE_SYSTEM),
                            Message(
                                "user",
                                f"Question: {query}\n\nPassage: "
                                f"{text[: spec.max_passage_chars]}\n\nScore:",
                            ),
                        ),
                        max_tokens=16,
                        json_schema=SCORE_SCHEMA,
                    )
                )
            cost = self.services.prices.cost(
                response.model or model, response.input_tokens, response.output_tokens
            )
            ctx.record_usage(Usage(response.input_tokens, response.output_tokens, cost))
            return parse_score(response.text)

        scores = await gather([judge(text) for text, _item in items])
        # best score first; ties and unscored passages keep their retrieval order
        order = sorted(range(len(items)), key=lambda i: (-_or_minus_one(scores[i]), i))
        if spec.top_n is not None:
            order = order[: spec.top_n]
        results = [{**items[i][1], "relevance": scores[i]} for i in order]
        info = {
            "provider": self._provider,
            "model": model,
            "judged": len(items),
            "unscored": sum(1 for s in scores if s is None),
        }
        return StepOutput(values=(results,), raw={"results": results}, usage=ctx.usage, info=info)

    @staticmethod
    def _items(raw: Any, step_id: str) -> list[tuple[str, dict[str, Any]]]:
        if not isinstance(raw, list):
            raise StepFailedError(
                f"step '{step_id}': documents rendered to {type(raw).__name__}, not a list",
                step_id=step_id,
            )
        items: list[tuple[str, dict[str, Any]]] = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                items.append((item, {"text": item}))
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                items.append((item["text"], dict(item)))
            else:
                raise StepFailedError(
                    f"step '{step_id}': documents[{i}] has no text; give strings or search "
                    "results with a `text` field",
                    step_id=step_id,
                )
        return items


def _or_minus_one(score: int | None) -> int:
    return -1 if score is None else score


def parse_score(text: str) -> int | None:
    """The judge's 0-10 score: the JSON `score`, else the first integer 0-10, else None."""
    try:
        value = parse_json_reply(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        score = value.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 10:
            return int(round(score))
    match = _INTEGER.search(text)
    return int(match.group(1)) if match else None
