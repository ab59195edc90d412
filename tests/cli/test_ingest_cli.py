"""`llm-orchestrator ingest` and `index list|stats|delete` through the real CLI (in-process),
on the embedded default Chroma store under LLMO_HOME with the real local embedder."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from llm_orchestrator.cli.main import app
from llm_orchestrator.vectordb.registry import close_all_vector_stores
from tests.support.modules import require_module

require_module("chromadb")
require_module("onnxruntime")

runner = CliRunner()

PARAGRAPHS = [
    "Rivers carry water from the mountains to the sea over long distances.",
    "Glaciers move slowly and carve wide valleys into the rock beneath them.",
]


@pytest.fixture(autouse=True)
async def _fresh_stores() -> AsyncIterator[None]:
    await close_all_vector_stores()
    yield
    await close_all_vector_stores()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "water.md").write_text("# Water\n\n" + "\n\n".join(PARAGRAPHS), encoding="utf-8")
    (root / "sub" / "notes.txt").write_text("Notes about the weather and the wind.", "utf-8")
    return root


def cli(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def count_row(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", output)
    assert match, output
    return int(match.group(1))


def assert_clean_error(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output, result.output


def test_ingest_twice_then_list_stats_and_delete(corpus: Path) -> None:
    first = cli(
        "ingest", str(corpus), "--index", "notes", "--chunk-size", "100", "--chunk-overlap", "0"
    )
    assert first.exit_code == 0, first.output
    assert count_row(first.output, "files") == 2
    written = count_row(first.output, "chunks written")
    assert written == count_row(first.output, "embedded") == 3  # two paragraphs + one note

    second = cli(
        "ingest", str(corpus), "--index", "notes", "--chunk-size", "100", "--chunk-overlap", "0"
    )
    assert second.exit_code == 0, second.output
    assert count_row(second.output, "unchanged") == 2
    assert count_row(second.output, "chunks written") == 0
    assert count_row(second.output, "embedded") == 0

    listed = cli("index", "list")
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"notes\s*│\s*{written}\s*│\s*384\s*│\s*cosine\s*│\s*local", listed.output)

    stats = cli("index", "stats", "notes")
    assert stats.exit_code == 0, stats.output
    assert "all-MiniLM-L6-v2" in stats.output
    assert re.search(r"sources \(namespace ''\)\s*│\s*2", stats.output)

    by_source = cli("index", "delete", "notes", "--source", "sub/notes.txt", "--yes")
    assert by_source.exit_code == 0, by_source.output
    assert "sub/notes.txt: 1 chunks deleted" in by_source.output
    assert re.search(r"notes\s*│\s*2\s*│", cli("index", "list").output)

    refused = cli("index", "delete", "notes", input="n\n")
    assert refused.exit_code == 1
    assert "nothing deleted" in refused.output
    assert "notes" in cli("index", "list").output

    gone = cli("index", "delete", "notes", input="y\n")
    assert gone.exit_code == 0, gone.output
    assert "│ notes" not in cli("index", "list").output


def test_prune_flag_removes_chunks_of_deleted_files(corpus: Path) -> None:
    assert cli("ingest", str(corpus), "--index", "notes").exit_code == 0
    (corpus / "sub" / "notes.txt").unlink()
    kept = cli("ingest", str(corpus), "--index", "notes")
    assert count_row(kept.output, "pruned") == 0
    pruned = cli("ingest", str(corpus), "--index", "notes", "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert count_row(pruned.output, "pruned") == 1
    assert count_row(pruned.output, "chunks deleted") == 1


def test_a_bad_jsonl_line_fails_that_file_only(corpus: Path) -> None:
    (corpus / "bad.jsonl").write_text('{"text": "ok"}\nnot json at all\n', encoding="utf-8")
    result = cli("ingest", str(corpus), "--index", "notes")
    assert_clean_error(result, 1, "bad.jsonl", "1 file failed")
    assert count_row(result.output, "documents") == 2
    assert count_row(result.output, "chunks written") >= 2
    assert "bad.jsonl: line 2" in result.output
    assert "bad.jsonl: bad.jsonl" not in result.output  # the file is named once


def test_text_and_id_fields_of_json_records(tmp_path: Path) -> None:
    data = tmp_path / "kb.jsonl"
    data.write_text(
        '{"key": "a", "body": "Rivers carry water to the sea."}\n'
        '{"key": "b", "body": "Glaciers carve valleys."}\n',
        encoding="utf-8",
    )
    result = cli(
        "ingest", str(data), "--index", "keyed", "--text-field", "body", "--id-field", "key"
    )
    assert result.exit_code == 0, result.output
    assert count_row(result.output, "chunks written") == 2
    # the records' sources are named by their `key`
    deleted = cli("index", "delete", "keyed", "--source", "kb.jsonl#a", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert count_row(cli("index", "stats", "keyed").output, "count") == 1


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--store", "nope"], ["--store nope", "unknown vector store 'nope'"]),
        (["--embedder", "nope"], ["--embedder nope", "unknown embedding provider"]),
        (["--chunker", "tokens"], ["--chunker", "fixed, sentence, paragraph, semantic"]),
        (["--chunk-size", "100", "--chunk-overlap", "100"], ["overlap"]),
        (["--chunk-size", "10"], ["size"]),
    ],
)
def test_bad_options_exit_2_with_one_line(
    corpus: Path, args: list[str], needles: list[str]
) -> None:
    result = cli("ingest", str(corpus), "--index", "notes", *args)
    assert_clean_error(result, 2, *needles)
    assert "│ notes" not in cli("index", "list").output


def test_missing_path_exits_2(corpus: Path) -> None:
    result = cli("ingest", str(corpus / "nowhere"), "--index", "notes")
    assert_clean_error(result, 2, "nowhere", "does not exist")


def test_an_index_of_another_embedder_exits_2_naming_both(corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "llm-orchestrator.yaml"
    config.write_text(
        "embedders:\n  other:\n    type: openai_compatible\n    base_url: http://127.0.0.1:9/v1\n",
        encoding="utf-8",
    )
    assert cli("ingest", str(corpus), "--index", "notes").exit_code == 0
    result = cli(
        "--config", str(config), "ingest", str(corpus), "--index", "notes", "--embedder", "other"
    )
    assert_clean_error(result, 2, "'local'", "'other'", "--embedder local")
    # without --embedder the recorded one is used
    again = cli("--config", str(config), "ingest", str(corpus), "--index", "notes")
    assert again.exit_code == 0, again.output


def test_index_commands_on_unknown_things_exit_2() -> None:
    assert_clean_error(cli("index", "stats", "nope"), 2, "nope", "index list")
    assert_clean_error(cli("index", "list", "--store", "nope"), 2, "--store nope")
    assert_clean_error(cli("index", "delete", "nope", "--yes"), 2, "nope")
