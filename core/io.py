"""The one import for files: storage, documents, attribute files and intermediate tables.

`from dolma_prep.core import io` gives every stage, dedup kind and tagger runner the same
reader and atomic writer for local paths and fsspec URLs. Each idea lives in its own module
(`storage`, `documents`, `attributes`, `tables`); this module only gathers their public names.
"""
from __future__ import annotations

from .errors import (  # noqa: F401
    InputError,
)
from .storage import (  # noqa: F401
    DOC_SUFFIXES,
    GZIP_LEVEL,
    dumps,
    is_remote,
    join,
    relpath,
    expand_globs,
    open_binary,
    UnsafeWriteError,
    WritePolicy,
    normalize_path,
    set_write_policy,
    write_policy,
    current_write_policy,
    check_write,
    begin_task_writes,
    end_task_writes,
    AtomicWriter,
    move,
    remove,
    exists,
    write_text_atomic,
    read_text,
    file_size,
    list_files,
    fs_of,
    write_bytes_atomic,
    read_bytes,
    open_random,
    glob,
    total_size,
    rmtree,
    write_json,
    read_json,
    local_copy,
)
from .documents import (  # noqa: F401
    MAX_REJECT_PREVIEW,
    SURROGATE,
    Record,
    FileStats,
    iter_lines,
    replace_lone_surrogates,
    parse_document,
    parse_document_checked,
    validate_document,
    iter_parquet,
    HF_PREFIX,
    hf_shards,
    iter_hf,
    read_documents,
    read_jsonl,
    iter_documents,
)
from .attributes import (  # noqa: F401
    format_score,
    spans_json,
    json_value,
    attribute_line,
    span_list,
    whole_span,
    AttributeWriter,
)
from .tables import (  # noqa: F401
    save_npy,
    load_npy,
    save_npz,
    load_npz,
    write_parquet,
    read_parquet,
    parquet_file,
)

__all__ = ['InputError', 'DOC_SUFFIXES', 'GZIP_LEVEL', 'dumps', 'is_remote', 'join', 'relpath', 'expand_globs', 'open_binary', 'UnsafeWriteError', 'WritePolicy', 'normalize_path', 'set_write_policy', 'write_policy', 'current_write_policy', 'check_write', 'begin_task_writes', 'end_task_writes', 'AtomicWriter', 'move', 'remove', 'exists', 'write_text_atomic', 'read_text', 'file_size', 'list_files', 'fs_of', 'write_bytes_atomic', 'read_bytes', 'open_random', 'glob', 'total_size', 'rmtree', 'write_json', 'read_json', 'local_copy', 'MAX_REJECT_PREVIEW', 'SURROGATE', 'Record', 'FileStats', 'iter_lines', 'replace_lone_surrogates', 'parse_document', 'parse_document_checked', 'validate_document', 'iter_parquet', 'HF_PREFIX', 'hf_shards', 'iter_hf', 'read_documents', 'read_jsonl', 'iter_documents', 'format_score', 'spans_json', 'json_value', 'attribute_line', 'span_list', 'whole_span', 'AttributeWriter', 'save_npy', 'load_npy', 'save_npz', 'load_npz', 'write_parquet', 'read_parquet', 'parquet_file']
