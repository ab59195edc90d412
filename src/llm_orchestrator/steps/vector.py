"""`vector_search`, `upsert` and `delete`: read and write vector stores from a workflow.

    - id: ingest
      type: upsert
      database: default              # a store name (see vectordb/registry.py); default: default
      index: faq
      records: "{{ steps.chunks.result }}"   # a list of {id, vector, text?, metadata?}
      embedder: local                # recorded with a new index, so text queries can use it
    - id: search
      type: vector_search
      index: faq
      query: "{{ inputs.vector }}"   # a vector, or text embedded with the index's embedder
      top_k: 5
      filter: {source: faq, year: {$gte: 2020}}

`vector_search` outputs a list of {id, score, text, metadata} (higher score is closer).
Only `mode: vector` works today; keyword and hybrid are reported at validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm_orchestrator.embeddings.base import EmbeddingRequest
from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledTemplate
from llm_orchestrator.exceptions import StepFailedError
from llm_orchestrator.steps.base import (
    Services,
    StepKind,
    compile_templates,
    render_value,
    template_fields_of,
)
from llm_orchestrator.steps.params import Problem, has_template, is_template
from llm_orchestrator.vectordb.base import (
    IndexNotFoundError,
    MetadataValue,
    Metric,
    VectorRecord,
    VectorStore,
)
from llm_orchestrator.vectordb.filters import parse_filter, validate_for
from llm_orchestrator.vectordb.registry import DEFAULT_STORE, VectorStoreRegistry
from llm_orchestrator.workflow.spec import StepSpec

_INDEX_EMBEDDER, _INDEX_MODEL = "embedder", "embedding_model"


class _VectorSpec(StepSpec):
    #: a vector store name: `default` (embedded Chroma under LLMO_HOME) or a configured one
    database: str = DEFAULT_STORE
    index: str = Field(min_length=1)
    namespace: str = ""

    def _fields(self, **extra: Any) -> dict[str, str]:
        values = {"index": self.index, "namespace": self.namespace, **extra}
        return {k: v for k, v in template_fields_of(values, "").items() if is_template(v)}


def _check_common(spec: _VectorSpec, services: Services, filter_: Any) -> list[Problem]:
    registry = VectorStoreRegistry.from_settings(services.settings)
    problem = registry.check(spec.database)
    if problem is not None:
        return [(problem, "database", None)]
    kind = registry.kind(spec.database)
    if filter_ is not None and not has_template(filter_):
        try:
            validate_for(kind or "", filter_)
        except ValueError as exc:
            return [(str(exc), "filter", "operators: $eq $ne $gt $gte $lt $lte $in $nin $and $or")]
    return []


class _Bound:
    """What every vector step shares at run time: its store and rendered names."""

    def __init__(self, spec: _VectorSpec, services: Services) -> None:
        self.registry = VectorStoreRegistry.from_settings(services.settings)
        self.index = CompiledTemplate(spec.index)
        self.namespace = CompiledTemplate(spec.namespace)

    def store(self, database: str) -> VectorStore:
        return self.registry.get(database)


def _render_filter(compiled: Any, ctx: StepContext) -> dict[str, Any] | None:
    if compiled is None:
        return None
    value = render_value(compiled, ctx.vars)
    try:
        parse_filter(value)
    except ValueError as exc:
        raise StepFailedError(f"step '{ctx.step_id}': {exc}", step_id=ctx.step_id) from exc
    return dict(value)


# -- vector_search ------------------------------------------------------------------------


class VectorSearchSpec(_VectorSpec):
    type: Literal["vector_search"]
    #: a list of numbers, or text (embedded with the embedder recorded for the index);
    #: templates rendering to either are fine
    query: str | list[float]
    top_k: int = Field(default=5, ge=1, le=10_000)
    #: portable metadata filter, e.g. {source: faq, year: {$gte: 2020}}
    filter: dict[str, Any] | None = None
    include_metadata: bool = True
    include_vectors: bool = False
    mode: Literal["vector", "keyword", "hybrid"] = "vector"

    default_outputs: ClassVar[tuple[str, ...]] = ("results",)
    positional_outputs: ClassVar[int] = 1

    def template_fields(self) -> dict[str, str]:
        extra: dict[str, Any] = {"filter": self.filter or {}}
        if isinstance(self.query, str):
            extra["query"] = self.query
        return self._fields(**extra)


class VectorSearchStepKind(StepKind[VectorSearchSpec]):
    type_name: ClassVar[str] = "vector_search"
    spec_model: ClassVar[type[StepSpec]] = VectorSearchSpec

    def __init__(self, spec: VectorSearchSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._bound = _Bound(spec, services)
        self._query = CompiledTemplate(spec.query) if isinstance(spec.query, str) else spec.query
        self._filter = compile_templates(spec.filter) if spec.filter is not None else None

    @classmethod
    def check(cls, spec: VectorSearchSpec, services: Services) -> list[Problem]:
        problems = _check_common(spec, services, spec.filter)
        if spec.mode != "vector":
            problems.append(
                (
                    f"mode '{spec.mode}' is not supported yet; only vector search is",
                    "mode",
                    "use mode: vector (the default)",
                )
            )
        return problems

    async def run(self, ctx: StepContext) -> StepOutput:
        spec = self.spec
        store = self._bound.store(spec.database)
        index = self._bound.index.render_str(ctx.vars)
        namespace = self._bound.namespace.render_str(ctx.vars)
        query = render_value(self._query, ctx.vars)
        vector = await self._vector(ctx, store, index, query)
        hits = await store.search(
            index,
            vector,
            top_k=spec.top_k,
            where=_render_filter(self._filter, ctx),
            namespace=namespace,
            include_vectors=spec.include_vectors,
        )
        results = [
            h.to_dict(include_metadata=spec.include_metadata, include_vector=spec.include_vectors)
            for h in hits
        ]
        info = {"database": spec.database, "index": index, "hits": len(results)}
        return StepOutput(values=(results,), raw={"results": results}, info=info)

    async def _vector(
        self, ctx: StepContext, store: VectorStore, index: str, query: Any
    ) -> list[float]:
        if isinstance(query, list | tuple):
            if not query or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in query
            ):
                raise StepFailedError(
                    f"step '{ctx.step_id}': query must be a non-empty list of numbers or text",
                    step_id=ctx.step_id,
                )
            return [float(x) for x in query]
        if not isinstance(query, str) or not query.strip():
            raise StepFailedError(
                f"step '{ctx.step_id}': query rendered to {type(query).__name__}; give a list "
                "of numbers or non-empty text",
                step_id=ctx.step_id,
            )
        return await self._embed(ctx, store, index, query)

    async def _embed(
        self, ctx: StepContext, store: VectorStore, index: str, text: str
    ) -> list[float]:
        try:
            meta = await store.index_metadata(index)
        except IndexNotFoundError as exc:
            raise StepFailedError(f"step '{ctx.step_id}': {exc}", step_id=ctx.step_id) from exc
        name = meta.get(_INDEX_EMBEDDER)
        if not isinstance(name, str):
            raise StepFailedError(
                f"step '{ctx.step_id}': a text query needs an embedder, and index '{index}' "
                "has none recorded; give the query as a vector, or ingest with an `upsert` "
                "step that names `embedder:`",
                step_id=ctx.step_id,
            )
        embedder = await self.services.embedders.aget(name)
        model = meta.get(_INDEX_MODEL)
        response = await embedder.embed(
            EmbeddingRequest(
                model=model if isinstance(model, str) else embedder.default_model, texts=(text,)
            )
        )
        return [float(x) for x in response.vectors[0]]


# -- upsert ------------------------------------------------------------------------------


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | int
    vector: list[float] = Field(min_length=1)
    text: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class UpsertSpec(_VectorSpec):
    type: Literal["upsert"]
    #: a list of {id, vector, text?, metadata?}, or a template rendering to one
    records: str | list[dict[str, Any]]
    #: create a missing index, sized by the first record's vector
    create_index: bool = True
    metric: Metric = "cosine"
    #: recorded with a new index: the embedder (and model) its vectors came from, so text
    #: queries are embedded the same way
    embedder: str | None = None
    embedding_model: str | None = None

    default_outputs: ClassVar[tuple[str, ...]] = ("result",)
    positional_outputs: ClassVar[int] = 1

    def template_fields(self) -> dict[str, str]:
        return self._fields(records=self.records)


class UpsertStepKind(StepKind[UpsertSpec]):
    type_name: ClassVar[str] = "upsert"
    spec_model: ClassVar[type[StepSpec]] = UpsertSpec

    def __init__(self, spec: UpsertSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._bound = _Bound(spec, services)
        self._records = (
            CompiledTemplate(spec.records)
            if isinstance(spec.records, str)
            else compile_templates({"r": spec.records})["r"]
        )

    @classmethod
    def check(cls, spec: UpsertSpec, services: Services) -> list[Problem]:
        problems = _check_common(spec, services, None)
        if isinstance(spec.records, str) and not is_template(spec.records):
            problems.append(
                ("records must be a list or a template rendering to one", "records", None)
            )
        if spec.embedder is not None:
            message = services.embedders.check(spec.embedder)
            if message:
                problems.append((message, "embedder", None))
        return problems

    async def run(self, ctx: StepContext) -> StepOutput:
        spec = self.spec
        records = _records(render_value(self._records, ctx.vars), ctx.step_id)
        store = self._bound.store(spec.database)
        index = self._bound.index.render_str(ctx.vars)
        namespace = self._bound.namespace.render_str(ctx.vars)
        created = False
        if records:
            try:
                await store.stats(index)
            except IndexNotFoundError:
                if not spec.create_index:
                    raise
                meta: dict[str, Any] = {}
                if spec.embedder is not None:
                    meta[_INDEX_EMBEDDER] = spec.embedder
                if spec.embedding_model is not None:
                    meta[_INDEX_MODEL] = spec.embedding_model
                await store.create_index(index, len(records[0].vector), spec.metric, meta)
                created = True
        count = await store.upsert(index, records, namespace=namespace)
        result = {"index": index, "namespace": namespace, "upserted": count, "created": created}
        return StepOutput(values=(result,), raw=result, info={"database": spec.database})


def _records(value: Any, step_id: str) -> list[VectorRecord]:
    if not isinstance(value, list):
        raise StepFailedError(
            f"step '{step_id}': records rendered to {type(value).__name__}, not a list of "
            "{id, vector, text, metadata}",
            step_id=step_id,
        )
    out: list[VectorRecord] = []
    for i, item in enumerate(value):
        try:
            rec = RecordIn.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}"
                for e in exc.errors()
            )
            raise StepFailedError(
                f"step '{step_id}': records[{i}] is invalid: {problems}", step_id=step_id
            ) from exc
        out.append(VectorRecord(str(rec.id), rec.vector, rec.text, rec.metadata))
    return out


# -- delete ------------------------------------------------------------------------------


class DeleteSpec(_VectorSpec):
    type: Literal["delete"]
    #: record ids (or a template rendering to a list of them)
    ids: str | list[str] | None = None
    #: portable metadata filter; with `ids`, only those ids that also match
    filter: dict[str, Any] | None = None

    default_outputs: ClassVar[tuple[str, ...]] = ("result",)
    positional_outputs: ClassVar[int] = 1

    @model_validator(mode="after")
    def _something_to_delete(self) -> DeleteSpec:
        if self.ids is None and self.filter is None:
            raise ValueError("give `ids`, `filter`, or both")
        return self

    def template_fields(self) -> dict[str, str]:
        extra: dict[str, Any] = {"filter": self.filter or {}}
        if self.ids is not None:
            extra["ids"] = self.ids
        return self._fields(**extra)


class DeleteStepKind(StepKind[DeleteSpec]):
    type_name: ClassVar[str] = "delete"
    spec_model: ClassVar[type[StepSpec]] = DeleteSpec

    def __init__(self, spec: DeleteSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._bound = _Bound(spec, services)
        self._ids = (
            None
            if spec.ids is None
            else CompiledTemplate(spec.ids)
            if isinstance(spec.ids, str)
            else compile_templates({"i": spec.ids})["i"]
        )
        self._filter = compile_templates(spec.filter) if spec.filter is not None else None

    @classmethod
    def check(cls, spec: DeleteSpec, services: Services) -> list[Problem]:
        return _check_common(spec, services, spec.filter)

    async def run(self, ctx: StepContext) -> StepOutput:
        spec = self.spec
        ids: list[str] | None = None
        if self._ids is not None:
            raw = render_value(self._ids, ctx.vars)
            if isinstance(raw, str | int):
                raw = [raw]
            if not isinstance(raw, list):
                raise StepFailedError(
                    f"step '{ctx.step_id}': ids rendered to {type(raw).__name__}, not a list",
                    step_id=ctx.step_id,
                )
            ids = [str(i) for i in raw]
        where = _render_filter(self._filter, ctx)
        store = self._bound.store(spec.database)
        index = self._bound.index.render_str(ctx.vars)
        namespace = self._bound.namespace.render_str(ctx.vars)
        await store.delete(index, ids=ids, where=where, namespace=namespace)
        result: Mapping[str, Any] = {
            "index": index,
            "namespace": namespace,
            "ids": ids,
            "filter": where,
        }
        return StepOutput(
            values=(dict(result),), raw=dict(result), info={"database": spec.database}
        )
