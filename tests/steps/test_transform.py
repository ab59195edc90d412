"""The `transform` step kind: spec, inputs, parameters, check() and plug-in functions."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llm_orchestrator.engine.context import StepContext
from llm_orchestrator.engine.events import EventBus
from llm_orchestrator.engine.usage import PriceTable, RunAccounting
from llm_orchestrator.exceptions import ConfigurationError, StepFailedError, TemplateRenderError
from llm_orchestrator.providers.registry import ProviderRegistry
from llm_orchestrator.settings import Settings
from llm_orchestrator.steps import transform_functions
from llm_orchestrator.steps.base import Services
from llm_orchestrator.steps.transform import TransformSpec, TransformStepKind

VARS: dict[str, Any] = {
    "inputs": {"words": ["a", "b"], "sep": "+", "extra": "z"},
    "input": {"words": ["a", "b"], "sep": "+", "extra": "z"},
    "steps": {"split": {"result": ["x", "y"], "meta": {"n": 2}}},
    "outputs": {"split": ["x", "y"]},
    "greeting": "hello",
}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(home=tmp_path)
    svc = Services(settings, ProviderRegistry(settings), PriceTable())
    yield svc
    await svc.aclose()


def make(**fields: Any) -> TransformSpec:
    return TransformSpec.model_validate({"id": "tidy", "type": "transform", **fields})


async def run(services: Services, s: TransformSpec, vars: dict[str, Any] | None = None) -> Any:
    kind = TransformStepKind(s, services)
    ctx = StepContext("run-1", s.id, 1, vars or VARS, RunAccounting(None), EventBus())
    out = await kind.run(ctx)
    assert len(out.values) == 1
    return out.values[0]


# -- spec -------------------------------------------------------------------------------------


def test_spec_fields_and_outputs() -> None:
    s = make(function="join", inputs="steps.split.result", separator=", ")
    assert s.inputs == ["steps.split.result"]
    assert s.params == {}
    assert s.model_extra == {"separator": ", "}
    assert s.parameters() == {"separator": ", "}
    assert TransformSpec.default_outputs == ("result",)
    assert TransformSpec.positional_outputs == 1
    assert s.output_names() == ["result"]


def test_spec_requires_function() -> None:
    with pytest.raises(ValidationError, match="function"):
        TransformSpec.model_validate({"id": "t", "type": "transform", "inputs": []})


def test_template_and_condition_fields() -> None:
    s = make(
        function="join",
        inputs=["steps.split.result", "{{ inputs.extra }}", "plain text {{ greeting }}"],
        separator="{{ inputs.sep }}",
        params={"other": {"deep": ["{{ steps.split.meta }}", "constant"]}},
    )
    assert s.template_fields() == {
        "inputs.1": "{{ inputs.extra }}",
        "inputs.2": "plain text {{ greeting }}",
        "separator": "{{ inputs.sep }}",
        "params.other.deep.0": "{{ steps.split.meta }}",
    }
    assert s.condition_fields() == {"inputs.0": "steps.split.result"}


def test_raw_parameters_are_not_template_fields() -> None:
    s = make(function="map", inputs="steps.split.result", template="{{ item.name }}")
    assert s.template_fields() == {}
    f = make(function="filter", inputs="x", params={"condition": "item > 1"})
    assert f.template_fields() == {}


# -- inputs -----------------------------------------------------------------------------------


async def test_inputs_templates_and_bare_expressions(services: Services) -> None:
    s = make(
        function="concat",
        inputs=["{{ steps.split.result }}", "outputs.split", "inputs.words"],
    )
    assert await run(services, s) == ["x", "y", "x", "y", "a", "b"]


async def test_bare_top_level_output_name_and_text_template(services: Services) -> None:
    s = make(function="concat", inputs=["greeting", "' '", "{{ inputs.extra }}!{{ 1 }}"])
    assert await run(services, s) == "hello z!1"


async def test_input_render_error_names_step_and_input(services: Services) -> None:
    s = make(function="join", inputs="steps.nothing.result")
    with pytest.raises(TemplateRenderError, match=r"step 'tidy': inputs\.0: ") as info:
        await run(services, s)
    assert info.value.step_id == "tidy"


# -- parameters -------------------------------------------------------------------------------


async def test_flattened_and_nested_params_are_equivalent(services: Services) -> None:
    flat = make(function="join", inputs="inputs.words", separator=", ")
    nested = make(function="join", inputs="inputs.words", params={"separator": ", "})
    assert TransformStepKind.check(flat, services) == []
    assert TransformStepKind.check(nested, services) == []
    assert await run(services, flat) == await run(services, nested) == "a, b"


async def test_templated_params_render_per_run(services: Services) -> None:
    s = make(function="join", inputs="inputs.words", separator="{{ inputs.sep }}")
    kind = TransformStepKind(s, services)
    for sep in ("+", "/"):
        vars = {**VARS, "inputs": {**VARS["inputs"], "sep": sep}}
        ctx = StepContext("r", "tidy", 1, vars, RunAccounting(None), EventBus())
        assert (await kind.run(ctx)).values == (f"a{sep}b",)


async def test_native_param_from_single_expression(services: Services) -> None:
    vars = {**VARS, "inputs": {"n": 1, "text": "a,b,c"}}
    s = make(function="split", inputs="inputs.text", separator=",", maxsplit="{{ inputs.n }}")
    assert TransformStepKind.check(s, services) == []
    assert await run(services, s, vars) == ["a", "b,c"]


async def test_param_invalid_after_rendering(services: Services) -> None:
    vars = {**VARS, "inputs": {"n": "lots", "text": "a"}}
    s = make(function="split", inputs="inputs.text", maxsplit="{{ inputs.n }}")
    with pytest.raises(StepFailedError, match="invalid parameters after rendering: maxsplit"):
        await run(services, s, vars)


# -- check ------------------------------------------------------------------------------------


def test_check_unknown_function(services: Services) -> None:
    (problem,) = TransformStepKind.check(make(function="joinn", inputs="x"), services)
    message, field, fix = problem
    assert (message, field) == ("unknown transform function 'joinn'", "function")
    assert fix is not None and fix.startswith("did you mean 'join'? available: ")
    assert "regex_extract" in fix


def test_check_unknown_param_with_suggestion(services: Services) -> None:
    (problem,) = TransformStepKind.check(make(function="join", inputs="x", separater=","), services)
    assert problem == (
        "transform 'join' has no parameter 'separater'",
        "separater",
        "did you mean 'separator'? parameters: separator",
    )
    (nested,) = TransformStepKind.check(
        make(function="merge", inputs="x", params={"deeep": True}), services
    )
    assert nested[1] == "params.deeep"
    assert nested[2] is not None and nested[2].startswith("did you mean 'deep'?")


def test_check_typo_of_step_field_is_suggested(services: Services) -> None:
    (problem,) = TransformStepKind.check(
        make(function="join", inputs="x", depends_onn=["a"]), services
    )
    assert problem[2] is not None and problem[2].startswith("did you mean 'depends_on'?")


def test_check_same_param_twice(services: Services) -> None:
    s = make(function="join", inputs="x", separator=",", params={"separator": ";"})
    assert TransformStepKind.check(s, services) == [
        (
            "parameter 'separator' is given both at step level and under params",
            "params.separator",
            "keep only one of them",
        )
    ]


def test_check_missing_param(services: Services) -> None:
    (problem,) = TransformStepKind.check(make(function="template", inputs=[]), services)
    assert problem[:2] == ("transform 'template' needs parameter 'template'", "template")


def test_check_invalid_value(services: Services) -> None:
    (problem,) = TransformStepKind.check(
        make(function="merge", inputs="x", deep="sometimes"), services
    )
    assert problem[0].startswith("transform 'merge': invalid value for parameter 'deep'")
    assert problem[1] == "deep"


@pytest.mark.parametrize(
    ("function", "inputs", "expected"),
    [
        ("join", [], "transform 'join' takes exactly 1 input, got 0"),
        ("select", ["a", "b"], "transform 'select' takes exactly 1 input, got 2"),
        ("merge", [], "transform 'merge' takes at least 1 input, got 0"),
    ],
)
def test_check_input_count(
    services: Services, function: str, inputs: list[str], expected: str
) -> None:
    extra = {"path": "$.a"} if function == "select" else {}
    problems = TransformStepKind.check(make(function=function, inputs=inputs, **extra), services)
    assert problems == [(expected, "inputs", "list the values to transform under `inputs:`")]


def test_unknown_function_cannot_be_built(services: Services) -> None:
    with pytest.raises(ConfigurationError, match="unknown transform function 'nope'"):
        TransformStepKind(make(function="nope", inputs="x"), services)


def test_registry_lookups() -> None:
    names = transform_functions.function_names()
    assert {"merge", "concat", "filter", "map", "select", "json_parse"} <= set(names)
    assert {"template", "split", "join", "regex_extract"} <= set(names)
    join = transform_functions.get_function("join")
    assert join is not None and join.params_model is transform_functions.JoinParams
    assert transform_functions.get_function("nope") is None


# -- plug-ins ---------------------------------------------------------------------------------

PLUGIN_MODULE = """
from typing import Any
from llm_orchestrator.steps.transform_functions import TransformFunction, TransformParams


class RepeatParams(TransformParams):
    times: int = 2


def _repeat(inputs: list[Any], params: RepeatParams, vars: Any) -> Any:
    return [inputs[0]] * params.times


repeat = TransformFunction("ignored-name", _repeat, RepeatParams)


def shout(inputs, suffix="!"):
    return " ".join(str(i).upper() for i in inputs) + suffix


async def slow_len(inputs, **params):
    return sum(len(i) for i in inputs)


def explode(inputs, **params):
    raise KeyError("boom")


NOT_A_FUNCTION = 42
"""

ENTRY_POINTS = """
[llm_orchestrator.transforms]
repeat = llmo_test_transforms:repeat
shout = llmo_test_transforms:shout
slow_len = llmo_test_transforms:slow_len
explode = llmo_test_transforms:explode
join = llmo_test_transforms:shout
broken = llmo_test_transforms_missing:thing
weird = llmo_test_transforms:NOT_A_FUNCTION
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real installed distribution (dist-info on sys.path) declaring transform plug-ins."""
    root = tmp_path / "site"
    dist = root / "llmo_test_transforms-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / "llmo_test_transforms.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llmo-test-transforms\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(root))
    transform_functions.reload_functions()
    yield
    transform_functions.reload_functions()
    sys.modules.pop("llmo_test_transforms", None)


async def test_plugin_transform_function(services: Services, plugins: None) -> None:
    s = make(function="repeat", inputs="greeting", times=3)
    assert TransformStepKind.check(s, services) == []
    assert await run(services, s) == ["hello"] * 3
    repeat = transform_functions.get_function("repeat")
    assert repeat is not None and repeat.name == "repeat"
    (bad,) = TransformStepKind.check(make(function="repeat", inputs="x", tims=3), services)
    assert bad[0] == "transform 'repeat' has no parameter 'tims'"


async def test_plain_callable_plugins(services: Services, plugins: None) -> None:
    s = make(function="shout", inputs=["greeting", "inputs.extra"], suffix="?")
    assert TransformStepKind.check(s, services) == []
    assert await run(services, s) == "HELLO Z?"
    assert await run(services, make(function="slow_len", inputs=["greeting", "'ab'"])) == 7


async def test_plugin_error_becomes_step_failure(services: Services, plugins: None) -> None:
    with pytest.raises(StepFailedError) as info:
        await run(services, make(function="explode", inputs=[]))
    assert str(info.value) == "step 'tidy': transform 'explode' failed: KeyError: 'boom'"
    assert isinstance(info.value.__cause__, KeyError)


async def test_builtin_wins_over_plugin(
    services: Services, plugins: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=transform_functions.__name__):
        transform_functions.reload_functions()
        join = transform_functions.get_function("join")
    assert join is transform_functions.BUILTINS["join"]
    assert any("the built-in is used" in r.getMessage() for r in caplog.records)


def test_broken_plugins_are_reported_by_check(services: Services, plugins: None) -> None:
    (problem,) = TransformStepKind.check(make(function="broken", inputs="x"), services)
    assert problem[0].startswith("transform function 'broken' (a plug-in) entry point")
    assert "ModuleNotFoundError" in problem[0]
    (weird,) = TransformStepKind.check(make(function="weird", inputs="x"), services)
    assert "not a TransformFunction or a callable" in weird[0]
    assert "broken" not in transform_functions.function_names()
