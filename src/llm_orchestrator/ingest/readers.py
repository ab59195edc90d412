"""Readers: files on disk -> `Document`s of normalised text in sections with heading trails.

One reader per format, chosen by the file suffix (`SUPPORTED_SUFFIXES`):

- `.txt`: the whole file is one section.
- `.md` / `.markdown`: ATX (`#` .. `######`) and setext (`===` / `---` underline) headings
  open sections; the trail of enclosing headings rides on each section. Fenced code blocks
  (```` ``` ```` or `~~~`) are kept as text, and a `#` inside them is not a heading. A YAML
  front matter block (`---` on the first line, up to the next `---` or `...`) is dropped;
  its `title` becomes `Document.title` (otherwise the first level-1 heading does).
- `.html` / `.htm`: parsed with BeautifulSoup on the stdlib `html.parser`. `script`, `style`,
  `noscript`, `template`, `nav`, `footer` and `head` are dropped; `h1`-`h6` open sections;
  block elements (`p`, `div`, `li`, `pre`, `table` rows, ...) keep their breaks. The title
  is `<title>`, otherwise the first `h1`.
- `.pdf`: pypdf's text per page, one section per page (`Section.page`, 1-based). Pages
  without extractable text are left out, so a scanned PDF gives a document with no sections.
- `.json` (an array of records, or one record) and `.jsonl` (one record per line): each record
  is a document. `text_field` holds the text; the other scalar fields become
  `Document.metadata` (nested values and nulls are dropped); `id_field`, when present, names
  the record in the source id, otherwise its 1-based line (JSONL) or index (JSON).

Text files are decoded as UTF-8 (a byte-order mark is dropped); anything else is a
`ReaderError` naming the file. All text is normalised the same way: runs of spaces and tabs
become one space, lines are stripped, a paragraph break is exactly one blank line ("\\n\\n"),
single line breaks are kept (the sentence splitter needs them for list items).

`Document.content_hash` is the sha256 of everything that ends up in the chunks: the title, the
metadata and each section's text, heading trail and page, so a change to any of them means
"re-index this document".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llm_orchestrator.exceptions import MissingDependencyError, OrchestratorError
from llm_orchestrator.vectordb.base import RESERVED_METADATA_KEYS, MetadataValue

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Document",
    "MetadataValue",
    "ReaderError",
    "Section",
    "discover",
    "normalise_text",
    "read_file",
]

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".json", ".jsonl"}
)


class ReaderError(OrchestratorError, ValueError):
    """A file cannot be read as a document; the message names the file (line, page) and the fix."""

    code = "reader_error"


@dataclass(frozen=True, slots=True)
class Section:
    text: str
    #: heading trail, outermost first
    headings: tuple[str, ...] = ()
    #: 1-based PDF page
    page: int | None = None


@dataclass(frozen=True, slots=True)
class Document:
    #: stable id: the file path relative to its root, posix ("guide/intro.md"); JSON/JSONL
    #: records: f"{path}#{record id or 1-based line}"
    source: str
    title: str | None
    sections: tuple[Section, ...]
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    #: sha256 hex of the title, metadata and sections (text, heading trail, page)
    content_hash: str = ""


# --------------------------------------------------------------------------- normalising

_HSPACE = re.compile(r"[^\S\n]+")  # whitespace other than newlines (incl. NBSP, tabs, \r)
_BLANK_LINES = re.compile(r"\n{2,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters but \t \n


def normalise_text(text: str) -> str:
    """Collapse spaces, strip lines, keep paragraph breaks as exactly one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _content_hash(
    title: str | None, metadata: Mapping[str, MetadataValue], sections: Sequence[Section]
) -> str:
    payload = {
        "title": title,
        "metadata": sorted(metadata.items()),
        "sections": [[s.text, list(s.headings), s.page] for s in sections],
    }
    canonical = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _document(
    source: str,
    title: str | None,
    sections: Sequence[Section],
    metadata: Mapping[str, MetadataValue] | None = None,
) -> Document:
    kept = tuple(s for s in sections if s.text)
    meta = dict(metadata or {})
    clean_title = normalise_text(title).replace("\n", " ") if title else ""
    final_title = clean_title or None
    return Document(
        source=source,
        title=final_title,
        sections=kept,
        metadata=meta,
        content_hash=_content_hash(final_title, meta, kept),
    )


#: break marks the HTML reader leaves between elements; a run of them (and the whitespace
#: around) becomes one paragraph break if it holds a paragraph mark, else one line break
_PARAGRAPH_MARK = "\x1e"
_LINE_MARK = "\x1d"
_MARKS = re.compile(r"\s*[\x1d\x1e][\s\x1d\x1e]*")


def _resolve_marks(match: re.Match[str]) -> str:
    return "\n\n" if _PARAGRAPH_MARK in match.group() else "\n"


class _Sections:
    """Collects text under the current heading trail and cuts a section at every heading."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._trail: list[tuple[int, str]] = []
        self._parts: list[str] = []

    def add(self, text: str) -> None:
        self._parts.append(text)

    def retract(self, count: int) -> None:
        """Take back the last `count` added parts (a setext heading's text lines)."""
        del self._parts[len(self._parts) - count :]

    def heading(self, level: int, text: str) -> None:
        self.flush()
        while self._trail and self._trail[-1][0] >= level:
            self._trail.pop()
        title = normalise_text(text).replace("\n", " ")
        if title:
            self._trail.append((level, title))

    def flush(self) -> None:
        text = _MARKS.sub(_resolve_marks, "".join(self._parts))
        text = normalise_text(text)
        self._parts = []
        if text:
            self.sections.append(Section(text, tuple(t for _, t in self._trail)))


# --------------------------------------------------------------------------- discovery


def _hidden(name: str) -> bool:
    return name.startswith(".")


def discover(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(file, root) for every supported file under the given files/dirs, sorted, hidden files/dirs
    skipped; a directory is its own root, a file's root is its parent. Missing path -> ReaderError.

    A file named explicitly is taken even if hidden, but must have a supported suffix. Symlinked
    directories are not followed (no cycles). A file reached twice (named, and inside a named
    directory) is listed once, with the root it was first reached under.
    """
    found: dict[Path, tuple[Path, Path]] = {}
    for path in paths:
        if not path.exists():
            raise ReaderError(f"{path}: no such file or directory; check the path to ingest")
        if path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise ReaderError(
                    f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                    f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
                )
            found.setdefault(path.resolve(), (path, path.parent))
            continue
        if not path.is_dir():
            raise ReaderError(f"{path}: not a regular file or directory")
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            for name in filenames:
                file = Path(dirpath) / name
                if _hidden(name) or file.suffix.lower() not in SUPPORTED_SUFFIXES:
                    continue
                if file.is_file():
                    found.setdefault(file.resolve(), (file, path))
    return sorted(found.values(), key=lambda pair: (pair[0].as_posix(), pair[1].as_posix()))


# --------------------------------------------------------------------------- reading


def read_file(
    path: Path, root: Path, *, text_field: str = "text", id_field: str = "id"
) -> list[Document]:
    """One Document per file (JSON array / JSONL: one per record). Empty documents are returned
    with no sections (the pipeline skips them)."""
    source = _source_id(path, root)
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return [_read_pdf(path, source)]
    if suffix not in SUPPORTED_SUFFIXES:
        raise ReaderError(
            f"{source}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    text = _CONTROL.sub("", _decode(_read_bytes(path, source), source))
    if suffix == ".txt":
        return [_document(source, None, [Section(normalise_text(text))])]
    if suffix in (".md", ".markdown"):
        return [_read_markdown(text, source)]
    if suffix in (".html", ".htm"):
        return [_read_html(text, source)]
    if suffix == ".json":
        return _read_json(text, source, text_field, id_field)
    return _read_jsonl(text, source, text_field, id_field)


def _source_id(path: Path, root: Path) -> str:
    for candidate, base in ((path, root), (path.resolve(), root.resolve())):
        try:
            relative = candidate.relative_to(base)
        except ValueError:
            continue
        if relative.parts:
            return relative.as_posix()
    if root == path or root.resolve() == path.resolve():
        return path.name
    raise ReaderError(f"{path}: not inside its root {root}; pass the file or its directory")


def _read_bytes(path: Path, source: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReaderError(f"{source}: cannot read the file: {exc.strerror or exc}") from exc


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReaderError(
            f"{source}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from exc


# --------------------------------------------------------------------------- markdown

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$")


def _front_matter(text: str, source: str) -> tuple[str | None, str]:
    """(title, text without the front matter)."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None, text
    for index in range(1, len(lines)):
        if _FRONT_MATTER_END.match(lines[index]):
            break
    else:
        return None, text
    block = "\n".join(lines[1:index])
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 2}" if mark is not None else ""
        raise ReaderError(
            f"{source}:{where} the front matter (the --- block at the top) is not valid YAML: "
            f"{getattr(exc, 'problem', None) or exc}; fix it or remove the block"
        ) from exc
    if not isinstance(data, dict):
        return None, text  # a thematic break, not front matter
    title = data.get("title")
    rest = "\n".join(lines[index + 1 :])
    return (str(title) if isinstance(title, str | int | float) else None), rest


def _read_markdown(text: str, source: str) -> Document:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    title, body = _front_matter(text, source)
    sections = _Sections()
    first_h1: str | None = None
    paragraph: list[str] = []  # lines of the paragraph a setext underline would turn into a heading
    fence: str | None = None

    def heading(level: int, heading_text: str) -> None:
        nonlocal first_h1
        if level == 1 and first_h1 is None:
            first_h1 = heading_text.strip()
        sections.heading(level, heading_text)

    for line in body.split("\n"):
        if fence is not None:
            sections.add(line + "\n")
            closing = _FENCE.match(line)
            if (
                closing
                and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence)
                and not line.strip()[len(closing.group(1)) :].strip()
            ):
                fence = None
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group(1)
            paragraph = []
            sections.add(line + "\n")
            continue
        atx = _ATX.match(line)
        if atx:
            paragraph = []
            heading(len(atx.group(1)), atx.group(2) or "")
            continue
        setext = _SETEXT.match(line)
        if setext and paragraph and not _LIST_ITEM.match(paragraph[0]):
            # the pending paragraph was already added as text; take it back as a heading
            sections.retract(len(paragraph))
            heading(1 if setext.group(1)[0] == "=" else 2, " ".join(p.strip() for p in paragraph))
            paragraph = []
            continue
        if line.strip():
            paragraph.append(line)
        else:
            paragraph = []
        sections.add(line + "\n")
    sections.flush()
    return _document(source, title or first_h1, sections.sections)


# --------------------------------------------------------------------------- HTML

_DROPPED_TAGS = ("script", "style", "noscript", "template", "nav", "footer", "head")
_HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
_LINE_TAGS = frozenset({"br", "li", "tr", "dt", "dd", "option", "caption", "figcaption"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "dialog",
        "div", "dl", "fieldset", "figure", "form", "header", "hr", "html", "main", "menu", "ol",
        "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "ul",
    }
)  # fmt: skip
_SPACE_RUN = re.compile(r"\s+")


def _read_html(text: str, source: str) -> Document:
    try:
        from bs4 import BeautifulSoup
        from bs4.element import NavigableString, PreformattedString, Tag
    except ImportError as exc:
        raise MissingDependencyError("beautifulsoup4", "rag", "reading HTML files") from exc

    soup = BeautifulSoup(text, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag is not None else None
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    first_h1 = soup.find("h1")
    if not title and first_h1 is not None:
        title = first_h1.get_text(" ", strip=True)

    sections = _Sections()

    def walk(node: Tag, pre: bool) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                # PreformattedString: comments, CDATA, doctype, declarations
                if not isinstance(child, PreformattedString):
                    raw = _CONTROL.sub("", str(child))
                    lines = raw.replace("\r", "").split("\n") if pre else [raw]  # <pre> keeps lines
                    sections.add(_LINE_MARK.join(_SPACE_RUN.sub(" ", line) for line in lines))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            level = _HEADING_TAGS.get(name)
            if level is not None:
                sections.heading(level, child.get_text(" ", strip=True))
                continue
            brk = (
                _PARAGRAPH_MARK if name in _BLOCK_TAGS else _LINE_MARK if name in _LINE_TAGS else ""
            )
            if name in ("td", "th"):
                sections.add(" ")
            sections.add(brk)
            walk(child, pre or name in ("pre", "textarea"))
            sections.add(brk)

    walk(soup, False)
    sections.flush()
    return _document(source, title, sections.sections)


# --------------------------------------------------------------------------- PDF


def _read_pdf(path: Path, source: str) -> Document:
    try:
        import pypdf
    except ImportError as exc:
        raise MissingDependencyError("pypdf", "rag", "reading PDF files") from exc
    import io

    data = _read_bytes(path, source)
    page_number = 0
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ReaderError(
                f"{source}: the PDF is encrypted with a password; decrypt it first "
                "(e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)"
            )
        sections = []
        for page_number, page in enumerate(reader.pages, start=1):
            text = normalise_text(page.extract_text() or "")
            if text:
                sections.append(Section(text, (), page_number))
        info = reader.metadata
        title = info.title if info is not None else None
    except ReaderError:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files; translate them all
        where = f" page {page_number}:" if page_number else ""
        raise ReaderError(
            f"{source}:{where} cannot read the PDF ({type(exc).__name__}: {exc}); "
            "check that the file is a complete, undamaged PDF"
        ) from exc
    return _document(source, title if isinstance(title, str) else None, sections)


# --------------------------------------------------------------------------- JSON / JSONL


def _scalar(value: Any) -> MetadataValue | None:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _record_document(
    record: Any,
    path_source: str,
    where: str,
    fallback_id: int,
    text_field: str,
    id_field: str,
) -> Document:
    if not isinstance(record, dict):
        raise ReaderError(
            f"{path_source}: {where}: expected a JSON object with a {text_field!r} field, "
            f"got {type(record).__name__}"
        )
    if text_field not in record:
        fields = ", ".join(sorted(map(str, record))) or "none"
        raise ReaderError(
            f"{path_source}: {where}: no field {text_field!r} in the record (fields: {fields}); "
            "name the field holding the text with --text-field"
        )
    text = record[text_field]
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ReaderError(
            f"{path_source}: {where}: field {text_field!r} is a {type(text).__name__}, "
            "not a string; name the field holding the text with --text-field"
        )
    raw_id = record.get(id_field)
    record_id = (
        str(raw_id)
        if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id)
        else str(fallback_id)
    )
    metadata: dict[str, MetadataValue] = {}
    for key, value in record.items():
        if key == text_field or key in RESERVED_METADATA_KEYS:
            continue
        scalar = _scalar(value)
        if scalar is not None:
            metadata[str(key)] = scalar
    title = record.get("title")
    return _document(
        f"{path_source}#{record_id}",
        title if isinstance(title, str) else None,
        [Section(normalise_text(text))],
        metadata,
    )


def _unique(documents: list[Document], lines: list[str], source: str, id_field: str) -> None:
    seen: dict[str, str] = {}
    for document, where in zip(documents, lines, strict=True):
        if document.source in seen:
            raise ReaderError(
                f"{source}: {where} has the same {id_field!r} as {seen[document.source]} "
                f"({document.source}); ids must be unique within a file (or pass --id-field)"
            )
        seen[document.source] = where


def _read_json(text: str, source: str, text_field: str, id_field: str) -> list[Document]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReaderError(
            f"{source}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg}); "
            "fix the file (for one record per line, name it .jsonl)"
        ) from exc
    records = data if isinstance(data, list) else [data]
    wheres = [f"record {index}" for index in range(1, len(records) + 1)]
    documents = [
        _record_document(record, source, where, index, text_field, id_field)
        for index, (record, where) in enumerate(zip(records, wheres, strict=True), start=1)
    ]
    _unique(documents, wheres, source, id_field)
    return documents


def _read_jsonl(text: str, source: str, text_field: str, id_field: str) -> list[Document]:
    documents: list[Document] = []
    wheres: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReaderError(
                f"{source}: {where} column {exc.colno}: not valid JSON ({exc.msg}); "
                "each line of a .jsonl file must be one JSON object"
            ) from exc
        documents.append(_record_document(record, source, where, number, text_field, id_field))
        wheres.append(where)
    _unique(documents, wheres, source, id_field)
    return documents
