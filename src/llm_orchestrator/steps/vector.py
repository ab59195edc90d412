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

      mode: hybrid                   # vector (default) | keyword (BM25) | hybrid (both, RRF)

`vector_search` outputs a list of {id, score, text, metadata, index} (higher score is
better; hybrid scores are fused RRF scores). `index:` may list several indexes: they are
searched in parallel, each list's scores normalised to [0, 1], duplicates merged (each result
then also has `indexes`, every index it was found in). See `vectordb/fusion.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm_orchestrator.aio import gather
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
    INDEX_EMBEDDER,
    INDEX_MODEL,
    IndexNotFoundError,
    KeywordSearcher,
    MetadataValue,
    Metric,
    SearchHit,
    VectorRecord,
    VectorStore,
)
from llm_orchestrator.vectordb.filters import parse_filter, validate_for
from llm_orchestrator.vectordb.fusion import RRF_K, MergedHit, merge_indexes, reciprocal_rank_fusion
from llm_orchestrator.vectordb.registry import DEFAULT_STORE, VectorStoreRegistry
from llm_orchestrator.workflow.spec import StepSpec


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
    """What every vector step shares at run time: its store registry and namespace (the
    index is each kind's own: vector_search may name several)."""

    def __init__(self, spec: _VectorSpec, services: Services) -> None:
        self.registry = VectorStoreRegistry.from_settings(services.settings)
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


class HybridSpec(BaseModel):
    """Weighted Reciprocal Rank Fusion of the vector and keyword result lists."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=RRF_K, ge=1)
    vector_weight: float = Field(default=1.0, ge=0)
    keyword_weight: float = Field(default=1.0, ge=0)
    #: results taken from each side before fusing; default max(top_k, 10). Deeper lists let
    #: passages ranked low on both sides outscore the best of one side (RRF with k=60 barely
    #: separates rank 1 from rank 30): on the labelled set, depth 10 beat depth 40 with every
    #: chunker (benchmarks/retrieval_benchmark.py --candidates)
    candidates: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _some_weight(self) -> HybridSpec:
        if self.vector_weight == 0 and self.keyword_weight == 0:
            raise ValueError("vector_weight and keyword_weight cannot both be 0")
        return self


class VectorSearchSpec(_VectorSpec):
    type: Literal["vector_search"]
    #: one index, or several searched in parallel (scores normalised, duplicates merged)
    index: str | list[str]  # type: ignore[assignment]
    #: a list of numbers, or text (embedded with the embedder recorded for the index);
    #: templates rendering to either are fine. keyword and hybrid modes need text.
    query: str | list[float]
    top_k: int = Field(default=5, ge=1, le=10_000)
    #: portable metadata filter, e.g. {source: faq, year: {$gte: 2020}}
    filter: dict[str, Any] | None = None
    include_metadata: bool = True
    include_vectors: bool = False
    #: vector (embedding similarity), keyword (BM25 full-text) or hybrid (both, fused by RRF)
    mode: Literal["vector", "keyword", "hybrid"] = "vector"
    hybrid: HybridSpec = Field(default_factory=HybridSpec)

    default_outputs: ClassVar[tuple[str, ...]] = ("results",)
    positional_outputs: ClassVar[int] = 1

    @model_validator(mode="after")
    def _indexes(self) -> VectorSearchSpec:
        names = [self.index] if isinstance(self.index, str) else self.index
        if not names or any(not n for n in names):
            raise ValueError("index: give an index name or a non-empty list of names")
        if len(set(names)) != len(names):
            raise ValueError("index: the same index is listed twice")
        return self

    def index_names(self) -> list[str]:
        return [self.index] if isinstance(self.index, str) else list(self.index)

    def template_fields(self) -> dict[str, str]:
        extra: dict[str, Any] = {"filter": self.filter or {}, "index": self.index}
        if isinstance(self.query, str):
            extra["query"] = self.query
        return self._fields(**extra)


class VectorSearchStepKind(StepKind[VectorSearchSpec]):
    type_name: ClassVar[str] = "vector_search"
    spec_model: ClassVar[type[StepSpec]] = VectorSearchSpec

    def __init__(self, spec: VectorSearchSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._bound = _Bound(spec, services)
        self._indexes = [CompiledTemplate(name) for name in spec.index_names()]
        self._query = CompiledTemplate(spec.query) if isinstance(spec.query, str) else spec.query
        self._filter = compile_templates(spec.filter) if spec.filter is not None else None

    @classmethod
    def check(cls, spec: VectorSearchSpec, services: Services) -> list[Problem]:
        problems = _check_common(spec, services, spec.filter)
        if spec.mode != "vector" and not isinstance(spec.query, str):
            problems.append(
                (
                    f"mode '{spec.mode}' needs a text query, not a vector",
                    "query",
                    "give the question as text, or use mode: vector",
                )
            )
        if "hybrid" in spec.model_fields_set and spec.mode != "hybrid":
            problems.append(
                (
                    f"hybrid settings have no effect with mode '{spec.mode}'",
                    "hybrid",
                    "set mode: hybrid, or remove the hybrid block",
                )
            )
        return problems

    async def run(self, ctx: StepContext) -> StepOutput:
        spec = self.spec
        store = self._bound.store(spec.database)
        indexes = [t.render_str(ctx.vars) for t in self._indexes]
        namespace = self._bound.namespace.render_str(ctx.vars)
        query = render_value(self._query, ctx.vars)
        where = _render_filter(self._filter, ctx)
        search = _Search(self, ctx, store, query, where, namespace)
        found = await gather([search.one(index) for index in indexes])
        per_index = list(zip(indexes, found, strict=True))
        if len(per_index) == 1:
            index, hits = per_index[0]
            merged = [MergedHit(hit, [index]) for hit in hits]
        else:
            merged = merge_indexes(per_index)[: spec.top_k]
        results = []
        for item in merged:
            out = item.hit.to_dict(
                include_metadata=spec.include_metadata, include_vector=spec.include_vectors
            )
            out["index"] = item.indexes[0]
            if len(indexes) > 1:
                out["indexes"] = item.indexes
            results.append(out)
        info = {
            "database": spec.database,
            "index": indexes[0] if len(indexes) == 1 else indexes,
            "mode": spec.mode,
            "hits": len(results),
        }
        return StepOutput(values=(results,), raw={"results": results}, info=info)


class _Search:
    """One run of a vector_search step: per-index search in the step's mode."""

    def __init__(
        self,
        kind: VectorSearchStepKind,
        ctx: StepContext,
        store: VectorStore,
        query: Any,
        where: dict[str, Any] | None,
        namespace: str,
    ) -> None:
        self.kind, self.spec, self.ctx, self.store = kind, kind.spec, ctx, store
        self.query, self.where, self.namespace = query, where, namespace
        #: (embedder, model) -> query vector, so indexes sharing an embedder embed once
        self._vectors: dict[tuple[str, str], asyncio.Future[list[float]]] = {}

    def _fail(self, message: str) -> StepFailedError:
        return StepFailedError(f"step '{self.ctx.step_id}': {message}", step_id=self.ctx.step_id)

    async def one(self, index: str) -> list[SearchHit]:
        spec = self.spec
        try:
            if spec.mode == "vector":
                return await self._vector_hits(index, spec.top_k)
            if spec.mode == "keyword":
                return await self._keyword_hits(index, spec.top_k)
            depth = spec.hybrid.candidates or max(spec.top_k, 10)
            by_vector, by_keyword = await gather(
                [self._vector_hits(index, depth), self._keyword_hits(index, depth)]
            )
            fused = reciprocal_rank_fusion(
                [by_vector, by_keyword],
                [spec.hybrid.vector_weight, spec.hybrid.keyword_weight],
                k=spec.hybrid.k,
            )
            return fused[: spec.top_k]
        except IndexNotFoundError as exc:
            raise self._fail(str(exc)) from exc

    async def _keyword_hits(self, index: str, top_k: int) -> list[SearchHit]:
        text = self._text()
        if not isinstance(self.store, KeywordSearcher):  # the registry mirrors every store
            raise self._fail(f"store '{self.spec.database}' has no keyword search")
        return await self.store.keyword_search(index, text, top_k, self.where, self.namespace)

    async def _vector_hits(self, index: str, top_k: int) -> list[SearchHit]:
        vector = await self._vector(index)
        return await self.store.search(
            index,
            vector,
            top_k=top_k,
            where=self.where,
            namespace=self.namespace,
            include_vectors=self.spec.include_vectors,
        )

    def _text(self) -> str:
        if not isinstance(self.query, str) or not self.query.strip():
            raise self._fail(
                f"query rendered to {type(self.query).__name__}; mode '{self.spec.mode}' "
                "needs non-empty text"
            )
        return self.query

    async def _vector(self, index: str) -> list[float]:
        query = self.query
        if isinstance(query, list | tuple):
            if not query or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in query
            ):
                raise self._fail("query must be a non-empty list of numbers or text")
            return [float(x) for x in query]
        if not isinstance(query, str) or not query.strip():
            raise self._fail(
                f"query rendered to {type(query).__name__}; give a list of numbers or "
                "non-empty text"
            )
        meta = await self.store.index_metadata(index)
        name = meta.get(INDEX_EMBEDDER)
        if not isinstance(name, str):
            raise self._fail(
                f"a text query needs an embedder, and index '{index}' has none recorded; "
                "give the query as a vector, or write the index with `llm-orchestrator ingest` "
                "or an `upsert` step that names `embedder:`"
            )
        model = meta.get(INDEX_MODEL)
        key = (name, model if isinstance(model, str) else "")
        pending = self._vectors.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._embed(name, key[1] or None, query))
            self._vectors[key] = pending
        return await asyncio.shield(pending)

    async def _embed(self, name: str, model: str | None, text: str) -> list[float]:
        embedder = await self.kind.services.embedders.aget(name)
        response = await embedder.embed(
            EmbeddingRequest(model=model or embedder.default_model, texts=(text,))
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
        self._index = CompiledTemplate(spec.index)
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
        index = self._index.render_str(ctx.vars)
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
                    meta[INDEX_EMBEDDER] = spec.embedder
                if spec.embedding_model is not None:
                    meta[INDEX_MODEL] = spec.embedding_model
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
        self._index = CompiledTemplate(spec.index)
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
        index = self._index.render_str(ctx.vars)
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
