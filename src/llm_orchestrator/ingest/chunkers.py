"""Chunkers: a `Document` -> `Chunk`s of at most `size` characters, cut at word boundaries.

Every chunker works inside one section at a time, so each chunk carries exactly one heading
trail (and PDF page); positions run 0..n-1 over the whole document. A chunk is a slice of the
section's text between two word boundaries, so no word is ever cut: the only chunk longer
than `size` is a single word longer than `size` (a long URL), which stands alone. No chunk is
empty, and the same document always gives the same chunks.

- `fixed`: windows of up to `size` characters over the words. The next window starts at the
  first word that begins at or after `end - overlap` (always at least one word further on).
- `sentence`: whole sentences packed up to `size`. A new chunk opens with the trailing
  sentences of the previous one that fit in `overlap` characters (as many as still leave room
  for the next sentence). A sentence longer than `size` is cut like `fixed`.
- `paragraph`: whole paragraphs (blank-line separated) packed up to `size`; a paragraph longer
  than `size` is packed by sentences instead. With `overlap > 0` a chunk opens with trailing
  sentences of the previous chunk, as for `sentence`; with `overlap = 0` chunks do not overlap.
- `semantic`: see `SemanticChunker`.

Sentences come from `split_sentences`, a regex splitter: a sentence ends at `.`, `!` or `?`
(optionally followed by closing quotes or brackets) when whitespace and then a capital letter,
digit, quote or bracket follow, or at the end of a line. A `.` after a known abbreviation
("e.g.", "i.e.", "Mr.", "Dr.", "etc.", "vs.", ...), an initial ("J.", "U.S.") or a list
number opening a line ("2.") does not end a sentence; "3.14" and "file.txt" never split
because no space follows the dot. A paragraph break always ends a sentence, and a line that
starts a list item ("- ", "* ", "1. ") starts one.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from llm_orchestrator.ingest.readers import Document, Section

__all__ = [
    "CHUNKERS",
    "Chunk",
    "Chunker",
    "EmbedFn",
    "FixedChunker",
    "ParagraphChunker",
    "SemanticChunker",
    "SentenceChunker",
    "make_chunker",
    "split_sentences",
]

CHUNKERS = ("fixed", "sentence", "paragraph", "semantic")
MIN_SIZE = 50


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    #: 0-based index within the document
    position: int
    headings: tuple[str, ...]
    page: int | None = None


#: texts -> unit-normalised vectors, one per text, in order
EmbedFn = Callable[[Sequence[str]], Awaitable[list[list[float]]]]


class Chunker(Protocol):
    name: str

    async def split(self, document: Document) -> list[Chunk]: ...


#: a [start, end) slice of a section's text
Span = tuple[int, int]


# --------------------------------------------------------------------------- splitting

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")  # a blank line (and what follows it)
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_LIST_LINE = re.compile(r"\n[ \t]*(?:[-*+•]|\d{1,9}[.)])[ \t]")
_OPENERS = "\"'“‘([«"
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")
ABBREVIATIONS = frozenset(
    {
        "e.g", "i.e", "etc", "vs", "cf", "al", "approx", "ca", "mr", "mrs", "ms", "dr", "prof",
        "sr", "jr", "st", "mt", "fig", "figs", "eq", "eqs", "no", "nos", "vol", "vols", "pp",
        "p", "ch", "sec", "dept", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr",
        "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "gen", "col", "lt", "sgt",
        "rev", "hon", "est", "min", "max", "incl", "resp", "viz",
    }
)  # fmt: skip


def _words(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    stop = len(text) if end is None else end
    return [m.span() for m in _WORD.finditer(text, start, stop)]


def _trim(text: str, start: int, end: int) -> Span | None:
    words = _words(text, start, end)
    return (words[0][0], words[-1][1]) if words else None


def _paragraphs(text: str) -> list[Span]:
    """Spans of the blank-line separated paragraphs, whitespace trimmed."""
    spans: list[Span] = []
    begin = 0
    for match in [*_PARAGRAPH_BREAK.finditer(text), None]:
        stop = match.start() if match is not None else len(text)
        span = _trim(text, begin, stop)
        if span is not None:
            spans.append(span)
        if match is not None:
            begin = match.end()
    return spans


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the word ending just before `text[dot] == "."` is an abbreviation or initial."""
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot].lstrip(_OPENERS)
    if not word:
        return False
    if word.isdigit() and (start == 0 or text[start - 1] == "\n"):
        return True  # "2." opening a line is a list number
    return word.lower() in ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def _sentence_cuts(text: str, start: int, end: int) -> list[int]:
    """Positions inside text[start:end] where a sentence ends (exclusive end offsets)."""
    cuts: set[int] = set()
    for match in _SENTENCE_END.finditer(text, start, end):
        after = match.end()
        gap_end = after
        while gap_end < end and text[gap_end].isspace():
            gap_end += 1
        if gap_end >= end:
            continue  # the paragraph's end anyway
        gap = text[after:gap_end]
        punctuation = match.group().rstrip("\"'”’)]")
        if punctuation == "." and _is_abbreviation(text, match.start()):
            continue
        nxt = text[gap_end]
        if "\n" in gap or nxt.isupper() or nxt.isdigit() or nxt in _OPENERS:
            cuts.add(after)
    for match in _LIST_LINE.finditer(text, start, end):
        cuts.add(match.start())
    return sorted(cuts)


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of `text` (whitespace trimmed), never crossing a paragraph break."""
    spans: list[Span] = []
    for p_start, p_end in _paragraphs(text):
        begin = p_start
        for cut in [*_sentence_cuts(text, p_start, p_end), p_end]:
            span = _trim(text, begin, cut)
            if span is not None:
                spans.append(span)
            begin = cut
    return spans


# --------------------------------------------------------------------------- packing


def _windows(words: Sequence[Span], size: int, overlap: int) -> list[Span]:
    """Fixed windows over word spans: each at most `size` characters (or one long word)."""
    out: list[Span] = []
    first = 0
    while first < len(words):
        last = first
        while last + 1 < len(words) and words[last + 1][1] - words[first][0] <= size:
            last += 1
        out.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
        # the next window repeats the words that start within the last `overlap` characters,
        # as many as still let it reach the next new word
        limit = words[last][1] - overlap
        reach = words[last + 1][1]
        first = next(
            (
                i
                for i in range(first + 1, last + 1)
                if overlap > 0 and words[i][0] >= limit and reach - words[i][0] <= size
            ),
            last + 1,
        )
    return out


def _pack(
    text: str, units: Sequence[Span], sentences: Sequence[Span], size: int, overlap: int
) -> list[Span]:
    """Pack consecutive units (sentences or paragraphs) into chunks of at most `size`.

    A unit longer than `size` is cut into fixed word windows. A chunk after a packed chunk opens
    with the trailing sentences of that chunk that fit in `overlap` characters (dropping the
    earliest of them while the next unit would not fit).
    """
    chunks: list[Span] = []
    current: Span | None = None
    previous: Span | None = None  # the last chunk, for the overlap of the next one

    starts = [s for s, _ in sentences]

    def overlap_starts(chunk: Span) -> list[int]:
        """Starts of the chunk's sentences (not its first) within `overlap` of its end."""
        if overlap <= 0:
            return []
        low = bisect.bisect_right(starts, max(chunk[0], chunk[1] - overlap - 1))
        high = bisect.bisect_left(starts, chunk[1])
        return [
            s
            for s, e in sentences[low:high]
            if chunk[0] < s and e <= chunk[1] and chunk[1] - s <= overlap
        ]

    for unit in units:
        if current is not None and unit[1] - current[0] <= size:
            current = (current[0], unit[1])
            continue
        if current is not None:
            chunks.append(current)
            previous = current
            current = None
        if unit[1] - unit[0] > size:
            chunks.extend(_windows(_words(text, *unit), size, overlap))
            previous = None
            continue
        start = unit[0]
        if previous is not None:
            start = next((s for s in overlap_starts(previous) if unit[1] - s <= size), start)
        current = (start, unit[1])
    if current is not None:
        chunks.append(current)
    return chunks


def _chunks(pieces: Sequence[tuple[Section, Sequence[Span]]]) -> list[Chunk]:
    out: list[Chunk] = []
    for section, spans in pieces:
        for start, end in spans:
            text = section.text[start:end].strip()
            if text:
                out.append(Chunk(text, len(out), section.headings, section.page))
    return out


class FixedChunker:
    def __init__(self, size: int, overlap: int) -> None:
        self.name = "fixed"
        self.size = size
        self.overlap = overlap

    async def split(self, document: Document) -> list[Chunk]:
        return _chunks(
            [(s, _windows(_words(s.text), self.size, self.overlap)) for s in document.sections]
        )


class SentenceChunker:
    def __init__(self, size: int, overlap: int) -> None:
        self.name = "sentence"
        self.size = size
        self.overlap = overlap

    async def split(self, document: Document) -> list[Chunk]:
        pieces = []
        for section in document.sections:
            sentences = split_sentences(section.text)
            pieces.append(
                (section, _pack(section.text, sentences, sentences, self.size, self.overlap))
            )
        return _chunks(pieces)


class ParagraphChunker:
    def __init__(self, size: int, overlap: int) -> None:
        self.name = "paragraph"
        self.size = size
        self.overlap = overlap

    async def split(self, document: Document) -> list[Chunk]:
        pieces = []
        for section in document.sections:
            sentences = split_sentences(section.text)
            units: list[Span] = []
            starts = [s for s, _ in sentences]
            for paragraph in _paragraphs(section.text):
                if paragraph[1] - paragraph[0] <= self.size:
                    units.append(paragraph)
                else:
                    low = bisect.bisect_left(starts, paragraph[0])
                    high = bisect.bisect_left(starts, paragraph[1])
                    units.extend(sentences[low:high])
            pieces.append((section, _pack(section.text, units, sentences, self.size, self.overlap)))
        return _chunks(pieces)


# --------------------------------------------------------------------------- semantic


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class SemanticChunker:
    """Split where the meaning of neighbouring sentences changes.

    The exact rule, per document:

    1. Each section is split into sentences (`split_sentences`); a sentence longer than `size`
       is first cut into fixed word windows without overlap. These are the units.
    2. All units of the document are embedded in ONE call to `embed` (none when no section
       has two units, as there is nothing to compare).
    3. For neighbouring units of the same section, s_i = cosine(unit_i, unit_i+1).
    4. The breakpoint is `threshold` if given, otherwise the `percentile`-th (default 20th)
       percentile of all s_i of the document, linearly interpolated.
    5. Walking the units in order, a new group starts before unit i+1 when s_i < breakpoint
       (a semantic break) or when adding unit i+1 would make the group's text longer than
       `size` (a size break). Section boundaries always separate groups.
    6. Groups shorter than `size // 5` characters are merged, smallest first (earliest on a
       tie), into the neighbouring group of the same section with the higher boundary
       similarity (the previous one on a tie), if the merged text fits in `size`; a group
       with no neighbour it fits into stays as it is.
    7. After a size break (s_i >= breakpoint: the topic goes on) the chunk opens with the
       trailing sentences of the previous group that fit in `overlap` characters, if the chunk
       still fits in `size`; after a semantic break there is no overlap, so a chunk never
       mixes two topics.
    """

    def __init__(
        self,
        size: int,
        overlap: int,
        embed: EmbedFn,
        *,
        threshold: float | None = None,
        percentile: float = 20.0,
    ) -> None:
        self.name = "semantic"
        self.size = size
        self.overlap = overlap
        self.embed = embed
        self.threshold = threshold
        self.percentile = percentile

    async def split(self, document: Document) -> list[Chunk]:
        sections = document.sections
        units: list[list[Span]] = []
        for section in sections:
            section_units: list[Span] = []
            for sentence in split_sentences(section.text):
                if sentence[1] - sentence[0] <= self.size:
                    section_units.append(sentence)
                else:
                    section_units.extend(_windows(_words(section.text, *sentence), self.size, 0))
            units.append(section_units)

        similarities: list[list[float]] = [[] for _ in sections]
        if any(len(u) > 1 for u in units):
            texts = [s.text[a:b] for s, us in zip(sections, units, strict=True) for a, b in us]
            vectors = await self.embed(texts)
            if len(vectors) != len(texts):
                raise ValueError(
                    f"semantic chunker: the embedder returned {len(vectors)} vectors "
                    f"for {len(texts)} sentences of {document.source}"
                )
            offset = 0
            for index, section_units in enumerate(units):
                own = vectors[offset : offset + len(section_units)]
                similarities[index] = [_cosine(a, b) for a, b in zip(own, own[1:], strict=False)]
                offset += len(section_units)
        every = [s for sims in similarities for s in sims]
        if self.threshold is not None:
            cut_below = self.threshold
        else:
            cut_below = _percentile(every, self.percentile) if every else 0.0

        pieces = []
        for section, section_units, sims in zip(sections, units, similarities, strict=True):
            spans = self._section_spans(section.text, section_units, sims, cut_below)
            pieces.append((section, spans))
        return _chunks(pieces)

    def _section_spans(
        self, text: str, units: Sequence[Span], sims: Sequence[float], cut_below: float
    ) -> list[Span]:
        if not units:
            return []
        # groups as [first unit, last unit] indices
        groups: list[list[int]] = [[0, 0]]
        for i in range(1, len(units)):
            first = groups[-1][0]
            if sims[i - 1] < cut_below or units[i][1] - units[first][0] > self.size:
                groups.append([i, i])
            else:
                groups[-1][1] = i

        def length(group: list[int]) -> int:
            return units[group[1]][1] - units[group[0]][0]

        minimum = self.size // 5
        while True:
            candidates = []
            for index, group in enumerate(groups):
                if length(group) >= minimum:
                    continue
                options = []
                if index > 0 and units[group[1]][1] - units[groups[index - 1][0]][0] <= self.size:
                    options.append((sims[group[0] - 1], 1, index - 1))
                if (
                    index + 1 < len(groups)
                    and units[groups[index + 1][1]][1] - units[group[0]][0] <= self.size
                ):
                    options.append((sims[group[1]], 0, index + 1))
                if options:
                    candidates.append((length(group), index, max(options)[2]))
            if not candidates:
                break
            _, index, neighbour = min(candidates)
            low, high = sorted((index, neighbour))
            groups[low : high + 1] = [[groups[low][0], groups[high][1]]]

        spans: list[Span] = []
        for index, (first, last) in enumerate(groups):
            start = units[first][0]
            if index > 0 and self.overlap > 0 and sims[first - 1] >= cut_below:
                before = groups[index - 1]
                for unit in units[before[0] + 1 : before[1] + 1]:
                    if units[first - 1][1] - unit[0] <= self.overlap and (
                        units[last][1] - unit[0] <= self.size
                    ):
                        start = unit[0]
                        break
            spans.append((start, units[last][1]))
        return spans


# --------------------------------------------------------------------------- factory


def make_chunker(
    kind: str,
    *,
    size: int = 1000,
    overlap: int = 150,
    embed: EmbedFn | None = None,
    threshold: float | None = None,
) -> Chunker:
    """size/overlap in characters. ValueError naming the option for bad values (overlap >= size,
    size < 50, unknown kind, semantic without embed).

    `embed` is used by `semantic` only; `threshold` (an absolute cosine similarity below which
    the semantic chunker splits, instead of the 20th percentile) is valid for `semantic` only.
    """
    if kind not in CHUNKERS:
        raise ValueError(
            f"--chunker: unknown chunker {kind!r}; choose one of {', '.join(CHUNKERS)}"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(
            f"--chunk-size must be a whole number of at least {MIN_SIZE} characters, got {size!r}"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(
            f"--chunk-overlap must be a whole number of characters >= 0, got {overlap!r}"
        )
    if overlap >= size:
        raise ValueError(f"--chunk-overlap ({overlap}) must be smaller than --chunk-size ({size})")
    if threshold is not None and kind != "semantic":
        raise ValueError(f"threshold applies to the semantic chunker only, not to {kind!r}")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity between -1 and 1, got {threshold!r}")
    if kind == "fixed":
        return FixedChunker(size, overlap)
    if kind == "sentence":
        return SentenceChunker(size, overlap)
    if kind == "paragraph":
        return ParagraphChunker(size, overlap)
    if embed is None:
        raise ValueError(
            "--chunker semantic needs an embedder to compare sentences; pass `embed` "
            "(the CLI uses the index's embedder)"
        )
    return SemanticChunker(size, overlap, embed, threshold=threshold)
