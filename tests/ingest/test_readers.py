"""Readers against real files in tests/ingest/data (and a few written to tmp_path)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pypdf
import pytest

from llm_orchestrator.ingest.readers import (
    SUPPORTED_SUFFIXES,
    Document,
    ReaderError,
    Section,
    discover,
    normalise_text,
    read_file,
)

DATA = Path(__file__).parent / "data"


def read_one(name: str, **options: str) -> Document:
    documents = read_file(DATA / name, DATA, **options)
    assert len(documents) == 1
    return documents[0]


def all_text(document: Document) -> str:
    return "\n\n".join(section.text for section in document.sections)


# --------------------------------------------------------------------------- markdown


def test_markdown_front_matter_headings_and_code_fence() -> None:
    document = read_one("guide.md")
    assert document.source == "guide.md"
    assert document.title == "Ingestion guide"  # from the front matter
    assert [(s.headings, s.text.split("\n")[0]) for s in document.sections] == [
        ((), "Intro text before any heading."),
        (("Getting started",), "Install the package first."),
        (("Getting started", "Configuration"), "Set the options in the config file."),
        (("Getting started", "Configuration", "Advanced options"), "Tune the chunk size."),
        (("Deployment notes",), "Deploy with the container image."),  # setext ===
        (("Deployment notes", "Scaling"), "Add more workers."),  # setext ---
    ]
    configuration = document.sections[2].text
    # the code fence is kept as text; its "# ..." line is no heading
    assert "```python\n# this is a comment, not a heading\nvalue = 1\n```" in configuration
    assert "tags:" not in all_text(document) and "rag" not in all_text(document)
    assert all(s.page is None for s in document.sections)


def test_markdown_title_falls_back_to_first_h1_and_tilde_fences(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "Some intro.\n\n# Real title\n\n~~~~\n## not a heading\n~~~\nstill code\n~~~~\n\n"
        "## Sub #\n\ntext\n",
        encoding="utf-8",
    )
    (document,) = read_file(tmp_path / "a.md", tmp_path)
    assert document.title == "Real title"
    assert [s.headings for s in document.sections] == [(), ("Real title",), ("Real title", "Sub")]
    assert "## not a heading\n~~~\nstill code" in document.sections[1].text


def test_markdown_thematic_break_at_top_is_not_front_matter(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("---\n\nJust text.\n\n---\n\nMore text.\n", encoding="utf-8")
    (document,) = read_file(tmp_path / "b.md", tmp_path)
    assert document.title is None
    assert "Just text." in all_text(document) and "More text." in all_text(document)


def test_markdown_broken_front_matter_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "c.md").write_text('---\ntitle: "open\nx: [1,\n---\nbody\n', encoding="utf-8")
    with pytest.raises(ReaderError, match=r"c\.md: line \d+ the front matter .* not valid YAML"):
        read_file(tmp_path / "c.md", tmp_path)


# --------------------------------------------------------------------------- HTML


def test_html_drops_noise_and_keeps_heading_trail_and_breaks() -> None:
    document = read_one("page.html")
    assert document.title == "Vector stores & you"
    text = all_text(document)
    for noise in ("SCRIPTNOISE", "MORESCRIPT", "NAVNOISE", "FOOTERNOISE", "COMMENTNOISE", "color"):
        assert noise not in text
    assert [(s.headings, s.text) for s in document.sections] == [
        (("Vector stores",), "Stores keep vectors and metadata.\n\nEach store has an index."),
        (("Vector stores", "Chroma"), "Chroma runs embedded.\n\nFirst item\nSecond item"),
        (("Vector stores", "Chroma", "Server mode"), "Run it as a server."),
        (("Vector stores", "Qdrant"), "Qdrant runs locally.\n\nqdrant serve\n--port 6333"),
    ]


# --------------------------------------------------------------------------- PDF


def test_pdf_one_section_per_page() -> None:
    # the fixture is a hand-written PDF; pypdf's strict parser accepts it
    assert len(pypdf.PdfReader(DATA / "two_pages.pdf", strict=True).pages) == 2
    document = read_one("two_pages.pdf")
    assert document.title == "Two page sample"
    assert [(s.page, s.headings) for s in document.sections] == [(1, ()), (2, ())]
    assert document.sections[0].text == (
        "Chapter one: the ingestion pipeline.\nReaders turn files into documents with sections."
    )
    assert "Semantic chunks follow topic changes." in document.sections[1].text


def test_pdf_without_text_has_no_sections(tmp_path: Path) -> None:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    (tmp_path / "scan.pdf").write_bytes(buffer.getvalue())
    (document,) = read_file(tmp_path / "scan.pdf", tmp_path)
    assert document.sections == ()
    assert document.source == "scan.pdf"


def test_damaged_pdf_is_a_reader_error(tmp_path: Path) -> None:
    (tmp_path / "broken.pdf").write_bytes((DATA / "two_pages.pdf").read_bytes()[:300])
    with pytest.raises(ReaderError, match=r"broken\.pdf: .*cannot read the PDF") as caught:
        read_file(tmp_path / "broken.pdf", tmp_path)
    assert caught.value.__cause__ is not None  # chained, the pypdf type is not leaked


# --------------------------------------------------------------------------- JSON / JSONL


def test_json_array_records() -> None:
    first, second, third = read_file(DATA / "records.json", DATA)
    assert first.source == "records.json#faq-1"
    assert first.sections == (Section("How do I install it? Use pip."),)
    # scalars kept (ids too), nested values and nulls dropped, the text field not repeated
    assert dict(first.metadata) == {
        "id": "faq-1",
        "lang": "en",
        "votes": 12,
        "score": 0.5,
        "draft": False,
    }
    assert second.source == "records.json#7"
    assert third.source == "records.json#3"  # no id: the 1-based index
    assert third.title == "Untitled record"


def test_json_other_text_and_id_fields(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(
        '{"slug": "one", "body": "Body text.", "text": "not this"}', encoding="utf-8"
    )
    (document,) = read_file(tmp_path / "r.json", tmp_path, text_field="body", id_field="slug")
    assert document.source == "r.json#one"
    assert document.sections[0].text == "Body text."
    assert document.metadata["text"] == "not this"


def test_json_missing_text_field_names_file_record_and_option(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('[{"text": "ok"}, {"body": "x", "id": 2}]', encoding="utf-8")
    with pytest.raises(ReaderError) as caught:
        read_file(tmp_path / "r.json", tmp_path)
    message = str(caught.value)
    assert "r.json: record 2" in message
    assert "'text'" in message and "body, id" in message and "--text-field" in message


def test_jsonl_bad_line_names_the_line() -> None:
    with pytest.raises(ReaderError, match=r"bad\.jsonl: line 4 column \d+: not valid JSON"):
        read_file(DATA / "bad.jsonl", DATA)


def test_jsonl_records_blank_lines_and_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a"}\n\n{"id": "x", "text": "b"}\n', encoding="utf-8")
    assert [d.source for d in read_file(path, tmp_path)] == ["r.jsonl#1", "r.jsonl#x"]
    path.write_text('{"text": "a"}\n{"content": "b"}\n', encoding="utf-8")
    with pytest.raises(ReaderError, match=r"r\.jsonl: line 2: no field 'text'.*--text-field"):
        read_file(path, tmp_path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ReaderError, match=r"line 1: expected a JSON object .* got list"):
        read_file(path, tmp_path)


def test_duplicate_record_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', encoding="utf-8")
    with pytest.raises(ReaderError, match=r"d\.jsonl: line 2 has the same 'id' as line 1"):
        read_file(path, tmp_path)


# --------------------------------------------------------------------------- text, decoding


def test_txt_with_bom_and_crlf_is_normalised() -> None:
    document = read_one("bom.txt")
    assert document.title is None
    assert document.sections == (Section("Hello world.\nSecond line.\n\nNew paragraph."),)
    expected = document.content_hash
    assert len(expected) == 64 and expected == read_one("bom.txt").content_hash


def test_undecodable_file_names_the_file() -> None:
    with pytest.raises(
        ReaderError, match=r"latin1\.txt: not valid UTF-8 \(byte 0xe9 at offset 3\)"
    ):
        read_file(DATA / "latin1.txt", DATA)


def test_empty_file_gives_a_document_without_sections(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("\n  \n", encoding="utf-8")
    (document,) = read_file(tmp_path / "empty.md", tmp_path)
    assert document.sections == ()


def test_content_hash_follows_text_headings_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "h.md"
    path.write_text("# A\n\nbody\n", encoding="utf-8")
    (first,) = read_file(path, tmp_path)
    path.write_text("# A\n\nbody   \n\n\n", encoding="utf-8")  # same after normalising
    (same,) = read_file(path, tmp_path)
    path.write_text("# B\n\nbody\n", encoding="utf-8")  # another heading trail
    (renamed,) = read_file(path, tmp_path)
    assert first.content_hash == same.content_hash != renamed.content_hash
    assert first.content_hash != hashlib.sha256(b"").hexdigest()


def test_normalise_text() -> None:
    assert normalise_text("  a \t b\u00a0c \r\n\r\n\r\n d\x00 \n e  ") == "a b c\n\nd\ne"


# --------------------------------------------------------------------------- discover


def test_discover_sorts_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    for name in (
        "b.md",
        "a.txt",
        "sub/c.html",
        "sub/z.PDF",
        ".hidden.md",
        ".git/config.md",
        "sub/.cache/x.txt",
        "notes.docx",
        "image.png",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    found = discover([tmp_path])
    assert [(f.relative_to(tmp_path).as_posix(), r) for f, r in found] == [
        ("a.txt", tmp_path),
        ("b.md", tmp_path),
        ("sub/c.html", tmp_path),
        ("sub/z.PDF", tmp_path),
    ]
    # a file's root is its parent; a file reached twice is listed once
    single = discover([tmp_path / "sub" / "c.html", tmp_path])
    assert (tmp_path / "sub" / "c.html", tmp_path / "sub") in single
    assert len(single) == 4
    assert [d.source for d in read_file(*single[0])] == ["a.txt"]
    assert read_file(tmp_path / "sub" / "c.html", tmp_path)[0].source == "sub/c.html"


def test_discover_missing_and_unsupported_paths(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match=r"nope: no such file or directory"):
        discover([tmp_path / "nope"])
    (tmp_path / "doc.docx").write_text("x", encoding="utf-8")
    with pytest.raises(ReaderError, match=r"unsupported file type '\.docx'; supported: "):
        discover([tmp_path / "doc.docx"])


def test_discover_the_fixture_directory_covers_every_reader(tmp_path: Path) -> None:
    shutil.copytree(DATA, tmp_path / "data")
    suffixes = {f.suffix for f, _ in discover([tmp_path / "data"])}
    assert suffixes == {".md", ".html", ".pdf", ".json", ".jsonl", ".txt"}
    assert suffixes <= SUPPORTED_SUFFIXES


def test_markdown_setext_takes_the_whole_paragraph_but_not_a_list(tmp_path: Path) -> None:
    (tmp_path / "s.md").write_text(
        "Intro para.\n\nA multi\nline heading\n---\n\n- item\n---\n\ntext\n", encoding="utf-8"
    )
    (document,) = read_file(tmp_path / "s.md", tmp_path)
    assert [(s.headings, s.text) for s in document.sections] == [
        ((), "Intro para."),
        (("A multi line heading",), "- item\n---\n\ntext"),
    ]
