"""Ingestion: read files, split them into chunks, embed (with a cache) and index them.

`readers` turns files into `Document`s (with sections and heading trails), `chunkers` splits
documents into `Chunk`s, `cache` keeps embeddings by model and text, and `pipeline` brings an
index in line with a set of files, idempotently. The CLI front end is
`llm-orchestrator ingest` / `llm-orchestrator index` (`cli/ingest.py`).
"""

from llm_orchestrator.ingest.cache import CachedEmbed as CachedEmbed
from llm_orchestrator.ingest.cache import EmbeddingCache as EmbeddingCache
from llm_orchestrator.ingest.cache import model_key as model_key
from llm_orchestrator.ingest.chunkers import CHUNKERS as CHUNKERS
from llm_orchestrator.ingest.chunkers import Chunk as Chunk
from llm_orchestrator.ingest.chunkers import Chunker as Chunker
from llm_orchestrator.ingest.chunkers import make_chunker as make_chunker
from llm_orchestrator.ingest.pipeline import FileError as FileError
from llm_orchestrator.ingest.pipeline import IngestReport as IngestReport
from llm_orchestrator.ingest.pipeline import delete_document as delete_document
from llm_orchestrator.ingest.pipeline import ingest as ingest
from llm_orchestrator.ingest.pipeline import update as update
from llm_orchestrator.ingest.readers import SUPPORTED_SUFFIXES as SUPPORTED_SUFFIXES
from llm_orchestrator.ingest.readers import Document as Document
from llm_orchestrator.ingest.readers import ReaderError as ReaderError
from llm_orchestrator.ingest.readers import Section as Section
from llm_orchestrator.ingest.readers import discover as discover
from llm_orchestrator.ingest.readers import read_file as read_file

__all__ = [
    "CHUNKERS",
    "SUPPORTED_SUFFIXES",
    "CachedEmbed",
    "Chunk",
    "Chunker",
    "Document",
    "EmbeddingCache",
    "FileError",
    "IngestReport",
    "ReaderError",
    "Section",
    "delete_document",
    "discover",
    "ingest",
    "make_chunker",
    "model_key",
    "read_file",
    "update",
]
