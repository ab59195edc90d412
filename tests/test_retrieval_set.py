"""The labelled retrieval set stays valid as docs/ changes: every answer phrase occurs once,
in its source page (benchmarks/retrieval/check_questions.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parents[1]
SET = ROOT / "benchmarks" / "retrieval"


def load_checker():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_questions", SET / "check_questions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_labelled_set_matches_the_corpus() -> None:
    problems, per_page = load_checker().check(SET / "questions.jsonl", ROOT / "docs")
    assert problems == []
    assert sum(per_page.values()) >= 50


def test_the_checker_catches_a_phrase_that_is_not_in_its_page(tmp_path: Path) -> None:
    lines = (SET / "questions.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["answer"] = "words that appear nowhere in the corpus at all"
    (tmp_path / "q.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    problems, _ = load_checker().check(tmp_path / "q.jsonl", ROOT / "docs")
    assert any(first["id"] in p for p in problems)
