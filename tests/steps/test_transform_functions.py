"""Every built-in transform function, driven through the `transform` step kind."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llm_orchestrator.engine.context import StepContext
from llm_orchestrator.engine.events import EventBus
from llm_orchestrator.engine.usage import PriceTable, RunAccounting
from llm_orchestrator.exceptions import StepFailedError
from llm_orchestrator.providers.registry import ProviderRegistry
from llm_orchestrator.settings import Settings
from llm_orchestrator.steps.base import Services
from llm_orchestrator.steps.transform import TransformSpec, TransformStepKind

ITEMS = [
    {"name": "ada", "score": 0.9, "tags": ["urgent"], "email": "ada@example.org"},
    {"name": "bob", "score": 0.2, "tags": []},
    {"name": "cy", "score": 0.6, "tags": ["later"]},
]
VARS: dict[str, Any] = {
    "inputs": {"threshold": 0.5, "sep": " | ", "pattern": r"(\d+)"},
    "input": {"threshold": 0.5},
    "steps": {"fetch": {"result": ITEMS}},
    "outputs": {"fetch": ITEMS},
}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(home=tmp_path)
    svc = Services(settings, ProviderRegistry(settings), PriceTable())
    yield svc
    await svc.aclose()


def spec(function: str, inputs: Any, **params: Any) -> TransformSpec:
    return TransformSpec.model_validate(
        {"id": "t", "type": "transform", "function": function, "inputs": inputs, **params}
    )


async def run(
    services: Services, function: str, inputs: Any, vars: dict[str, Any] | None = None, **p: Any
) -> Any:
    s = spec(function, inputs, **p)
    assert TransformStepKind.check(s, services) == []
    kind = TransformStepKind(s, services)
    ctx = StepContext("run-1", "t", 1, vars or VARS, RunAccounting(None), EventBus())
    out = await kind.run(ctx)
    return out.values[0]


def problems(services: Services, function: str, inputs: Any, **params: Any) -> list[Any]:
    return TransformStepKind.check(spec(function, inputs, **params), services)


async def fails(services: Services, function: str, inputs: Any, **params: Any) -> str:
    with pytest.raises(StepFailedError) as info:
        await run(services, function, inputs, **params)
    assert info.value.retryable is False
    assert info.value.step_id == "t"
    message = str(info.value)
    assert f"step 't': transform '{function}' failed" in message
    return message


# -- merge ------------------------------------------------------------------------------------


async def test_merge_is_deep_and_later_wins(services: Services) -> None:
    a = {"a": {"x": 1, "y": 1}, "k": 1}
    b = {"a": {"y": 2}, "k": 2}
    frozen = copy.deepcopy((a, b))
    vars = {**VARS, "inputs": {"a": a, "b": b}}
    result = await run(services, "merge", ["inputs.a", "inputs.b"], vars)
    assert result == {"a": {"x": 1, "y": 2}, "k": 2}
    assert (a, b) == frozen  # inputs are never mutated


async def test_merge_shallow(services: Services) -> None:
    vars = {**VARS, "inputs": {"a": {"a": {"x": 1}}, "b": {"a": {"y": 2}}}}
    result = await run(services, "merge", ["inputs.a", "inputs.b"], vars, deep=False)
    assert result == {"a": {"y": 2}}


async def test_merge_of_one_list_merges_its_items(services: Services) -> None:
    vars = {**VARS, "inputs": {"parts": [{"a": 1}, {"b": 2}, {"a": 3}]}}
    assert await run(services, "merge", "inputs.parts", vars) == {"a": 3, "b": 2}


async def test_merge_rejects_non_mappings(services: Services) -> None:
    message = await fails(services, "merge", ["inputs", "'text'"])
    assert "item 2 is str, expected a mapping" in message


# -- concat -----------------------------------------------------------------------------------


async def test_concat_lists(services: Services) -> None:
    assert await run(services, "concat", ["[1, 2]", "[3]"]) == [1, 2, 3]


async def test_concat_text_with_separator(services: Services) -> None:
    result = await run(
        services, "concat", ["'a'", "{{ 1 + 1 }}", "none", "{'k': 1}"], separator="-"
    )
    assert result == 'a-2--{"k": 1}'


# -- filter -----------------------------------------------------------------------------------


async def test_filter_condition_sees_item_and_vars(services: Services) -> None:
    result = await run(
        services,
        "filter",
        "steps.fetch.result",
        params={"condition": "item.score > inputs.threshold"},
    )
    assert [i["name"] for i in result] == ["ada", "cy"]


async def test_filter_condition_uses_truthiness(services: Services) -> None:
    vars = {**VARS, "inputs": {"flags": ["yes", "no", "0", "x", ""]}}
    result = await run(services, "filter", "inputs.flags", vars, params={"condition": "item"})
    assert result == ["yes", "x"]


async def test_filter_by_path_existence(services: Services) -> None:
    result = await run(services, "filter", "steps.fetch.result", path="$.email")
    assert [i["name"] for i in result] == ["ada"]


async def test_filter_by_list_filter_path(services: Services) -> None:
    result = await run(services, "filter", "steps.fetch.result", path="$[?(@.score > 0.5)]")
    assert [i["name"] for i in result] == ["ada", "cy"]


async def test_filter_needs_exactly_one_of_condition_or_path(services: Services) -> None:
    both = problems(services, "filter", "x", path="$.a", params={"condition": "item"})
    assert both == [("transform 'filter': give exactly one of 'condition' or 'path'", None, None)]
    neither = problems(services, "filter", "x")
    assert len(neither) == 1 and "exactly one of" in neither[0][0]


async def test_filter_step_level_condition_gets_a_hint(services: Services) -> None:
    (problem,) = problems(services, "filter", "x", condition="item.score > 1")
    assert "exactly one of" in problem[0]
    assert problem[2] is not None and "under params: {condition: ...}" in problem[2]


async def test_filter_invalid_path_and_condition_are_check_errors(services: Services) -> None:
    (bad_path,) = problems(services, "filter", "x", path="$[?(@.a >")
    assert bad_path[1] == "path" and "invalid JSON path" in bad_path[0]
    (bad_cond,) = problems(services, "filter", "x", params={"condition": "item.score >"})
    assert bad_cond[1] == "params.condition" and "invalid expression" in bad_cond[0]


async def test_filter_errors_at_run_time(services: Services) -> None:
    message = await fails(services, "filter", "'text'", path="$.a")
    assert "the input is str, expected a list" in message
    message = await fails(
        services, "filter", "steps.fetch.result", params={"condition": "item.missing.deeper"}
    )
    assert "failed on item 0" in message


# -- map / select -----------------------------------------------------------------------------


async def test_map_with_path(services: Services) -> None:
    result = await run(services, "map", "steps.fetch.result", path="$.tags[*]")
    assert result == ["urgent", None, "later"]
    assert await run(services, "map", "steps.fetch.result", path="$.name") == ["ada", "bob", "cy"]


async def test_map_with_template(services: Services) -> None:
    result = await run(
        services, "map", "steps.fetch.result", template="{{ index }}:{{ item.name | upper }}"
    )
    assert result == ["0:ADA", "1:BOB", "2:CY"]


async def test_map_errors(services: Services) -> None:
    assert "exactly one of" in problems(services, "map", "x")[0][0]
    (bad,) = problems(services, "map", "x", template="{{ item.name ")
    assert bad[1] == "template" and "invalid template" in bad[0]
    message = await fails(services, "map", "inputs", path="$.a")
    assert "the input is dict, expected a list" in message
    message = await fails(services, "map", "steps.fetch.result", template="{{ item.x.y }}")
    assert "failed on item 0" in message


async def test_select(services: Services) -> None:
    assert await run(services, "select", "steps.fetch.result", path="$[0].name") == "ada"
    assert await run(services, "select", "steps.fetch.result", path="$[*].name") == [
        "ada",
        "bob",
        "cy",
    ]
    assert await run(services, "select", "steps.fetch", path="$.result[0].name", all=True) == [
        "ada"
    ]
    assert await run(services, "select", "steps.fetch", path="$.nothing") is None
    assert await run(services, "select", "steps.fetch", path="$.nothing", all=True) == []


async def test_select_required_and_invalid_path(services: Services) -> None:
    message = await fails(services, "select", "steps.fetch", path="$.nothing", required=True)
    assert "JSON path '$.nothing' matched nothing" in message
    (missing,) = problems(services, "select", "x")
    assert missing[:2] == ("transform 'select' needs parameter 'path'", "path")
    (bad,) = problems(services, "select", "x", path="$$..[")
    assert bad[1] == "path"


# -- json_parse -------------------------------------------------------------------------------


async def test_json_parse_plain_and_passthrough(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": ' {"a": [1, 2]} ', "done": {"a": 1}}}
    assert await run(services, "json_parse", "inputs.text", vars) == {"a": [1, 2]}
    assert await run(services, "json_parse", "inputs.done", vars) == {"a": 1}


@pytest.mark.parametrize(
    "text",
    [
        'Sure! Here it is:\n```json\n{"a": 1, "b": [true, null]}\n```\nAnything else?',
        'Sure! Here it is:\n```\n{"a": 1, "b": [true, null]}\n```',
        'The answer [see below] is {"a": 1, "b": [true, null]} as requested. {"c": 2}',
    ],
)
async def test_json_parse_extracts_from_llm_prose(services: Services, text: str) -> None:
    vars = {**VARS, "inputs": {"text": text}}
    assert await run(services, "json_parse", "inputs.text", vars) == {"a": 1, "b": [True, None]}


async def test_json_parse_array_in_prose(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": "Items: [1, 2, 3]. Done."}}
    assert await run(services, "json_parse", "inputs.text", vars) == [1, 2, 3]


async def test_json_parse_strict_refuses_prose(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": 'Here: {"a": 1}'}}
    s = spec("json_parse", "inputs.text", strict=True)
    kind = TransformStepKind(s, services)
    ctx = StepContext("r", "t", 1, vars, RunAccounting(None), EventBus())
    with pytest.raises(StepFailedError, match=r"not valid JSON: Expecting value \(line 1"):
        await kind.run(ctx)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no json here at all", "no JSON object or array found"),
        ('Result: {"a": [1, 2', "is cut off"),
        ('Result: {"a": "unfinished', "is cut off"),
    ],
)
async def test_json_parse_failures(services: Services, text: str, expected: str) -> None:
    vars = {**VARS, "inputs": {"text": text}}
    s = spec("json_parse", "inputs.text")
    kind = TransformStepKind(s, services)
    ctx = StepContext("r", "t", 1, vars, RunAccounting(None), EventBus())
    with pytest.raises(StepFailedError, match=expected) as info:
        await kind.run(ctx)
    assert "step 't': transform 'json_parse' failed" in str(info.value)
    assert info.value.__cause__ is not None


# -- template ---------------------------------------------------------------------------------


async def test_template_sees_vars_and_inputs(services: Services) -> None:
    result = await run(
        services,
        "template",
        ["steps.fetch.result[0].name", "{{ inputs.threshold }}"],
        template="{% for x in items %}[{{ x }}]{% endfor %} {{ inputs_list | length }} "
        "{{ inputs.sep }}",
    )
    assert result == "[ada][0.5] 2  | "


async def test_template_needs_no_inputs_and_reports_errors(services: Services) -> None:
    assert await run(services, "template", [], template="{{ 6 * 7 }}") == "42"
    (bad,) = problems(services, "template", [], template="{% for %}")
    assert bad[1] == "template"
    message = await fails(services, "template", [], template="{{ nothing.here }}")
    assert "template failed" in message


# -- split / join -----------------------------------------------------------------------------


async def test_split_defaults(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": " a \n\n b\n c \n"}}
    assert await run(services, "split", "inputs.text", vars) == ["a", "b", "c"]


async def test_split_options(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": "a, b,, c"}}
    assert await run(services, "split", "inputs.text", vars, separator=",", maxsplit=2) == [
        "a",
        "b",
        ", c",
    ]
    assert await run(
        services, "split", "inputs.text", vars, separator=",", strip=False, drop_empty=False
    ) == ["a", " b", "", " c"]


async def test_split_errors(services: Services) -> None:
    message = await fails(services, "split", "[1]")
    assert "the input is list, expected a string" in message
    (bad,) = problems(services, "split", "x", separator="")
    assert bad[1] == "separator"


async def test_join(services: Services) -> None:
    assert await run(services, "join", "[1, 'a', none]") == "1\na\nNone"
    assert await run(services, "join", "['a', 'b']", separator=", ") == "a, b"
    message = await fails(services, "join", "'text'")
    assert "the input is str, expected a list" in message


# -- regex_extract ----------------------------------------------------------------------------


async def test_regex_extract_first_match_and_groups(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": "order 12 and order 34"}}
    assert await run(services, "regex_extract", "inputs.text", vars, pattern=r"\d+") == "12"
    assert (
        await run(services, "regex_extract", "inputs.text", vars, pattern=r"order (\d+)", group=1)
        == "12"
    )
    assert (
        await run(services, "regex_extract", "inputs.text", vars, pattern=r"(?P<n>\d+)", group="n")
        == "12"
    )


async def test_regex_extract_all_and_flags(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": "Order 12\norder 34"}}
    result = await run(
        services,
        "regex_extract",
        "inputs.text",
        vars,
        pattern=r"^order (\d+)$",
        group=1,
        all=True,
        flags=["IGNORECASE", "MULTILINE"],
    )
    assert result == ["12", "34"]


async def test_regex_extract_no_match(services: Services) -> None:
    vars = {**VARS, "inputs": {"text": "nothing"}}
    assert await run(services, "regex_extract", "inputs.text", vars, pattern=r"\d+") is None
    assert await run(services, "regex_extract", "inputs.text", vars, pattern=r"\d+", all=True) == []
    with pytest.raises(StepFailedError, match="did not match the text 'nothing'"):
        await run(services, "regex_extract", "inputs.text", vars, pattern=r"\d+", required=True)


async def test_regex_extract_check_errors(services: Services) -> None:
    (bad,) = problems(services, "regex_extract", "x", pattern="(unclosed")
    assert bad[1] == "pattern" and "invalid regular expression '(unclosed'" in bad[0]
    (group,) = problems(services, "regex_extract", "x", pattern=r"(\d)", group=2)
    assert group[1] == "group" and "has no group 2" in group[0]
    (named,) = problems(services, "regex_extract", "x", pattern=r"(?P<n>\d)", group="m")
    assert "no group named 'm'" in named[0]
    (flag,) = problems(services, "regex_extract", "x", pattern="a", flags=["VERBOSE"])
    assert flag[1] == "flags"
    (missing,) = problems(services, "regex_extract", "x")
    assert missing[:2] == ("transform 'regex_extract' needs parameter 'pattern'", "pattern")


async def test_regex_extract_templated_pattern_checked_at_run(services: Services) -> None:
    assert problems(services, "regex_extract", "x", pattern="{{ inputs.pattern }}") == []
    vars = {**VARS, "inputs": {"pattern": r"(\d+)", "text": "n=42"}}
    result = await run(
        services, "regex_extract", "inputs.text", vars, pattern="{{ inputs.pattern }}", group=1
    )
    assert result == "42"
    vars = {**VARS, "inputs": {"pattern": "(", "text": "n=42"}}
    with pytest.raises(StepFailedError, match="invalid parameters after rendering: pattern"):
        await run(services, "regex_extract", "inputs.text", vars, pattern="{{ inputs.pattern }}")


# -- context --------------------------------------------------------------------------------

HITS = [
    {"id": "a", "score": 0.4, "text": "Apples are red.", "metadata": {"source": "fruit.md"}},
    {"id": "b", "score": 0.9, "text": "Bananas are yellow.", "metadata": {"source": "fruit.md"}},
    {"id": "a2", "score": 0.3, "text": "apples   are RED.", "metadata": {}},
    {"id": "c", "score": 0.7, "text": "Cherries " + "are small " * 40, "metadata": {}},
]


async def test_context_dedupes_orders_and_cites(services: Services) -> None:
    out = await run(services, "context", ["{{ inputs.hits }}"], {"inputs": {"hits": HITS}})
    assert [c["id"] for c in out["citations"]] == ["b", "c", "a"]
    assert out["text"].startswith("[1] Bananas are yellow.\n\n[2] Cherries")
    assert "[3] Apples are red." in out["text"] and "a2" not in str(out["citations"])
    assert out["citations"][0] == {"n": 1, "id": "b", "metadata": {"source": "fruit.md"}}
    assert out["dropped"] == 0


async def test_context_keeps_whole_passages_within_the_budget(services: Services) -> None:
    out = await run(
        services,
        "context",
        ["{{ inputs.hits }}", "{{ inputs.more }}"],
        {"inputs": {"hits": HITS, "more": ["Dates are sweet."]}},
        max_tokens=20,
        order="input",
        citation="<{n}>",
    )
    # the long cherry passage does not fit: left out whole, the ones after it still fit
    assert [c["id"] for c in out["citations"]] == ["a", "b", "Dates are sweet."]
    assert out["text"] == "<1> Apples are red.\n\n<2> Bananas are yellow.\n\n<3> Dates are sweet."
    assert out["used_tokens"] <= 20 and out["dropped"] == 1


async def test_context_rejects_what_is_not_a_passage(services: Services) -> None:
    message = await fails(
        services, "context", ["{{ inputs.hits }}"], vars={"inputs": {"hits": [{"id": 1}]}}
    )
    assert "passage 1" in message
    assert problems(services, "context", ["inputs.hits"], citation="no number")
