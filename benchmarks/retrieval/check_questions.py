"""Validate the labelled retrieval set against the sample corpus in docs/.

A question is judged relevant-to-a-chunk when the chunk comes from the question's `source` and
contains its `answer` phrase (whitespace-normalised, case-insensitive). That judgement is only
sound if every phrase is unambiguous, so this script checks, for each line of
questions.jsonl:

- the fields `id`, `question`, `source`, `answer` are present, non-empty strings, and ids are
  unique;
- `source` names an existing file under docs/;
- the answer is 3-10 words long and carries no markdown markup (backticks, `*`, `|`, `#`,
  links);
- the answer occurs exactly once in the whole corpus, and that occurrence is in `source`;
- the occurrence lies inside one block: it does not span a heading or a blank line, so any
  chunker that splits on headings and paragraphs keeps it whole;
- at least half of the questions are paraphrases: they share no content word (four letters or
  more, stop words aside) with the sentence that holds their answer. A crude lexical test,
  but it catches a set that keyword search would win by construction.

It also prints how many questions each page has. Exit status 0 when every check passes, 1
otherwise (each problem is printed with the question id).

    python benchmarks/retrieval/check_questions.py [--questions FILE] [--docs DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("id", "question", "source", "answer")
MARKUP = re.compile(r"[`*|#]|\]\(|^\s*[-+>]\s|__")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
MIN_WORDS, MAX_WORDS = 3, 10
MIN_PER_PAGE = 4
MIN_PARAPHRASED = 0.5
STOP_WORDS = frozenset(
    [
        "about",
        "after",
        "also",
        "before",
        "being",
        "been",
        "could",
        "does",
        "each",
        "every",
        "from",
        "have",
        "into",
        "just",
        "like",
        "make",
        "made",
        "more",
        "most",
        "need",
        "once",
        "only",
        "other",
        "same",
        "should",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "they",
        "this",
        "want",
        "what",
        "when",
        "where",
        "which",
        "will",
        "with",
        "would",
        "your",
    ]
)


def normalise(text: str) -> str:
    """Lower-case, every run of whitespace collapsed to one space."""
    return " ".join(text.split()).lower()


def blocks(markdown: str) -> list[str]:
    """The text split at blank lines and around heading lines, each block normalised."""
    out: list[str] = []
    current: list[str] = []
    for line in markdown.splitlines():
        if not line.strip() or HEADING.match(line):
            if current:
                out.append(normalise("\n".join(current)))
                current = []
            if line.strip():
                out.append(normalise(line))
            continue
        current.append(line)
    if current:
        out.append(normalise("\n".join(current)))
    return out


def content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9_.-]+", text.lower())
    return {w.strip(".-") for w in words if len(w.strip(".-")) > 3} - STOP_WORDS


def answer_sentence(block: str, needle: str) -> str:
    """The sentence (or clause ended by ; or :) of `block` that holds `needle`."""
    for sentence in re.split(r"(?<=[.;:])\s", block):
        if needle in sentence:
            return sentence
    return block


def check(questions_path: Path, docs_dir: Path) -> tuple[list[str], Counter[str]]:
    pages = {
        path.relative_to(docs_dir.parent).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(docs_dir.glob("*.md"))
    }
    whole = {name: normalise(text) for name, text in pages.items()}
    split = {name: blocks(text) for name, text in pages.items()}
    problems: list[str] = []
    seen: set[str] = set()
    per_page: Counter[str] = Counter()
    paraphrased = judged = 0
    lines = questions_path.read_text(encoding="utf-8").splitlines()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            problems.append(f"line {number}: empty line")
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON: {exc}")
            continue
        if not isinstance(item, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        where = f"line {number} ({item.get('id', '?')})"
        missing = [k for k in REQUIRED if not isinstance(item.get(k), str) or not item[k].strip()]
        if missing:
            problems.append(f"{where}: missing or empty field(s): {', '.join(missing)}")
            continue
        extra = sorted(set(item) - set(REQUIRED))
        if extra:
            problems.append(f"{where}: unexpected field(s): {', '.join(extra)}")
        if item["id"] in seen:
            problems.append(f"{where}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        source, answer = item["source"], item["answer"]
        if source not in pages:
            problems.append(f"{where}: source {source!r} is not a page under {docs_dir}")
            continue
        per_page[source] += 1
        words = len(answer.split())
        if not MIN_WORDS <= words <= MAX_WORDS:
            problems.append(f"{where}: answer has {words} words, want {MIN_WORDS}-{MAX_WORDS}")
        if MARKUP.search(answer):
            problems.append(f"{where}: answer contains markdown markup: {answer!r}")
        needle = normalise(answer)
        total = sum(text.count(needle) for text in whole.values())
        if total != 1:
            found_in = [name for name, text in whole.items() if needle in text]
            problems.append(
                f"{where}: answer {answer!r} occurs {total} times in the corpus "
                f"(pages: {', '.join(found_in) or 'none'}); it must occur exactly once"
            )
            continue
        if needle not in whole[source]:
            problems.append(f"{where}: answer {answer!r} is not in {source}")
            continue
        block = next((b for b in split[source] if needle in b), None)
        if block is None:
            problems.append(f"{where}: answer {answer!r} spans a heading or a blank line")
            continue
        judged += 1
        if not content_words(item["question"]) & content_words(answer_sentence(block, needle)):
            paraphrased += 1
    print(f"{paraphrased} of {judged} questions share no content word with their answer sentence")
    if judged and paraphrased < MIN_PARAPHRASED * judged:
        problems.append(
            f"only {paraphrased} of {judged} questions are paraphrased; want at least "
            f"{MIN_PARAPHRASED:.0%}"
        )
    for name in pages:
        if per_page[name] < MIN_PER_PAGE:
            problems.append(f"{name}: {per_page[name]} questions, want at least {MIN_PER_PAGE}")
    return problems, per_page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--questions", type=Path, default=ROOT / "benchmarks/retrieval/questions.jsonl"
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    problems, per_page = check(args.questions, args.docs)
    for name, count in sorted(per_page.items()):
        print(f"{count:3d}  {name}")
    print(f"{sum(per_page.values()):3d}  questions")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("ok: every answer occurs exactly once, in its source, inside one block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
