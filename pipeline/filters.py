"""dolma mixer filters over a document joined with its attributes; never evaluates Python.

An expression starting with `$` is JSONPath (jsonpath-ng, extended syntax): it matches when it
selects anything. Anything else is jq (the `jq` package, a binding of the C jq engine): it
matches when its first output is truthy in jq's sense (anything but `false` and `null`).
This is how the dolma mixer treats its `include`/`exclude` lists, so the filter expressions
of the dolma 1.7 configs run unchanged.

A filter sees the document and nothing else:

- at load, a jq program that names a builtin reaching outside the document (`env`, `$ENV`,
  `input`, `inputs`, `input_filename`, `$__loc__`, `debug`, `stderr`, `halt_error`, module
  `import`/`include`, the clock ...) is refused with the rule and the builtin named
  (`check_jq`); JSONPath has no such functions, and its named operators are limited to
  jsonpath-ng's pure ones (`check_jsonpath`);
- at run time, the rules of a `FilterSet` are evaluated in one helper process per FilterSet
  with an empty environment, no inherited files, `/` as working directory, an address-space
  limit (`memory_mb`) and a per-document time limit (`seconds`). A rule that runs past either
  (`[range(1e12)]`, `[repeat(.)]`, deep recursion, a regex that backtracks for ever) is
  stopped and reported as `FilterLimitError` naming the rule and the document.

A rule that raises on a document (`.text + 1`, `.text | tonumber` on a word, `error("...")`, a
JSONPath operator given the wrong type) has not matched it, as it always has here, but that is
an error of the rule, not an answer: the helper reports which rules raised on each document and
the FilterSet tallies them per rule (`RuleErrors`), so that a broken exclude rule that silently
excludes nothing shows up in the run's counts. Indexing null (`.missing.key`, `null[0][2]`) is
not an error in jq (it gives null), so rules over absent attributes count none.

Why a process: the jq engine runs in C with the GIL held, so nothing in the same process can
interrupt it; in the helper, an interval timer's SIGALRM (default action) ends the process
wherever it is, and RLIMIT_AS makes allocation fail. Cost (bundled sample, general.yaml's
rules, CPU per document on a loaded 2-core machine): in-process evaluation 177 us (attributes
only) / 647 us (rules reading the text); bounded, parent + helper, 20 + 105 us / 74 + 565 us,
since the document is serialised once instead of once per rule. `decide_many` sends a block
of documents per round trip; `decide` one (a round trip per document).
"""
from __future__ import annotations

import json
import mmap
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import jq
from jsonpath_ng import DatumInContext
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as jsonpath_parse
from jsonpath_ng.ext.filter import Filter as _Filter

from ..core.io import InputError

# per-document bounds of one FilterSet's evaluation (all its rules together)
DEFAULT_SECONDS = 10.0
DEFAULT_MEMORY_MB = 2048


class _ObjectFilter(_Filter):
    """dolma's JSONPath engine (jsonpath-rust) applies `[?(...)]` on an object to the object
    itself, which is what `$.attributes[?(@.key[0][2] < 50)]` in dolma configs relies on;
    RFC 9535 (and jsonpath-ng) would test the object's children instead."""

    def find(self, datum):
        datum = DatumInContext.wrap(datum)
        if isinstance(datum.value, dict):
            return [datum] if all(e.find(datum.value) for e in self.expressions) else []
        return super().find(datum)


def _dolma_semantics(node):
    if isinstance(node, _Filter) and not isinstance(node, _ObjectFilter):
        return _ObjectFilter(node.expressions)
    for attr in ("left", "right"):
        if hasattr(node, attr):
            setattr(node, attr, _dolma_semantics(getattr(node, attr)))
    return node


# ----------------------------------------------------------------------------- static checks

# jq builtins and keywords that read or write outside the document, or make the result depend
# on something other than the document (the clock, the time zone)
_JQ_FORBIDDEN = {
    "env": "reads the environment",
    "input": "reads inputs other than the document",
    "inputs": "reads inputs other than the document",
    "input_filename": "reads the host's file name",
    "input_line_number": "reads the host's input position",
    "debug": "writes to the host's stderr",
    "stderr": "writes to the host's stderr",
    "halt": "stops the host process",
    "halt_error": "writes to the host's stderr and stops the process",
    "import": "loads modules from the host's files",
    "include": "loads modules from the host's files",
    "modulemeta": "reads modules from the host's files",
    "get_search_list": "reads the host's module search path",
    "get_prog_origin": "reads the host's file system layout",
    "get_jq_origin": "reads the host's file system layout",
    "now": "reads the clock (outputs must depend only on input, config and seed)",
    "localtime": "reads the host's time zone",
    "strflocaltime": "reads the host's time zone",
    "mktime": None,  # pure; listed so that the table documents it was considered
}
_JQ_FORBIDDEN = {k: v for k, v in _JQ_FORBIDDEN.items() if v}
_JQ_FORBIDDEN_VARS = {
    "ENV": "reads the environment",
    "__loc__": "reads the host's program location",
    "__prog_args": "reads the host's program arguments",
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _jq_tokens(src: str):
    """Yield (kind, text, preceded_by_dot) for the identifiers, variables and module
    separators of a jq program, skipping comments and the literal parts of strings (string
    interpolations `\\(...)` are code and are scanned). Only as much of jq's lexer as the
    check needs; anything it does not understand stays code and is scanned."""
    i, n = 0, len(src)
    stack: list[int] = []  # paren depth at each open string interpolation
    depth = 0

    def string_end(j: int) -> tuple[int, bool]:
        """From inside a string at j: index after the closing quote, or of an interpolation."""
        while j < n:
            c = src[j]
            if c == "\\":
                if j + 1 < n and src[j + 1] == "(":
                    return j + 2, True
                j += 2
                continue
            if c == '"':
                return j + 1, False
            j += 1
        return n, False

    while i < n:
        c = src[i]
        if c == "#":
            j = src.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == '"':
            i, interp = string_end(i + 1)
            if interp:
                stack.append(depth)
                depth += 1
        elif c == "(":
            depth += 1
            i += 1
        elif c == ")":
            depth -= 1
            i += 1
            if stack and depth == stack[-1]:
                stack.pop()  # back inside the string
                i, interp = string_end(i)
                if interp:
                    stack.append(depth)
                    depth += 1
        elif c == "$":
            j = i + 1
            while j < n and src[j] in " \t\r\n":
                j += 1
            m = _IDENT.match(src, j)
            if m:
                yield "var", m.group(), False
                i = m.end()
            else:
                i += 1
        elif c == ":" and src.startswith("::", i):
            yield "module", "::", False
            i += 2
        elif c == "@":
            m = _IDENT.match(src, i + 1)  # a format such as @base64: pure
            i = m.end() if m else i + 1
        elif _IDENT.match(src, i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = _IDENT.match(src, i)
            yield "ident", m.group(), i > 0 and src[i - 1] == "."
            i = m.end()
        else:
            i += 1


def check_jq(src: str) -> str | None:
    """Why the jq program `src` may not run as a filter, or None."""
    for kind, text, field in _jq_tokens(src):
        if kind == "var" and text in _JQ_FORBIDDEN_VARS:
            return f"uses ${text}, which {_JQ_FORBIDDEN_VARS[text]}"
        if kind == "module":
            return "refers to a module (name::...), which loads code from the host's files"
        if kind == "ident" and not field and text in _JQ_FORBIDDEN:
            return f"uses `{text}`, which {_JQ_FORBIDDEN[text]}"
    return None


# jsonpath-ng's named operators (`len`, `sub(...)` ...), written between backticks
_JSONPATH_NAMED = re.compile(r"`\s*([A-Za-z_]+)")
_JSONPATH_ALLOWED = {"this", "len", "sorted", "keys", "str", "split", "sub", "parent"}


def check_jsonpath(src: str) -> str | None:
    for m in _JSONPATH_NAMED.finditer(src):
        if m.group(1) not in _JSONPATH_ALLOWED:
            return f"uses `{m.group(1)}`; JSONPath filters may use only {sorted(_JSONPATH_ALLOWED)}"
    return None


# ----------------------------------------------------------------------------- expressions


def _compile(expr: str):
    if expr.startswith("$"):
        return "jsonpath", _dolma_semantics(jsonpath_parse(expr))
    return "jq", jq.compile(expr)


# characters of a rule's error message kept (jq's messages quote the values involved)
ERROR_MESSAGE_CHARS = 200


def _one_line(msg: str) -> str:
    """Messages end up in one-line places (a log line, a result's list of examples)."""
    return msg.replace("\r", "\\r").replace("\n", "\\n")


def _evaluate(kind: str, compiled: Any, doc: Any, text: str | None = None) -> tuple[bool, str | None]:
    """(matched, why the rule raised or None). A rule that raises has not matched (decisions are
    what they always were); the message tells the caller, instead of passing for "no match"."""
    if kind == "jsonpath":
        try:
            return len(compiled.find(doc)) > 0, None
        except MemoryError:
            raise  # the memory bound, reported as such by the helper
        except Exception as e:  # noqa: BLE001 (jsonpath-ng lets Python's own errors through)
            return False, _one_line(f"{type(e).__name__}: {e}")[:ERROR_MESSAGE_CHARS]
    try:
        out = (compiled.input_text(text) if text is not None else compiled.input_value(doc)).first()
    except StopIteration:
        return False, None  # no output (`empty`, `select(false)`): no match, no error
    except ValueError as e:
        # jq runtime errors (type errors, error(...), tonumber on a word); indexing null is not one
        return False, _one_line(str(e))[:ERROR_MESSAGE_CHARS]
    return out is not None and out is not False, None


def _matches(kind: str, compiled: Any, doc: Any, text: str | None = None) -> bool:
    return _evaluate(kind, compiled, doc, text)[0]


@dataclass
class Expression:
    """One compiled rule. `matches` evaluates it in this process, without bounds: use a
    FilterSet for documents from a run."""

    source: str
    kind: str  # "jq" | "jsonpath"
    _compiled: Any
    where: str = ""

    def matches(self, doc: dict) -> bool:
        return _matches(self.kind, self._compiled, doc)

    @property
    def name(self) -> str:
        """The rule as counts and messages name it: `filters.exclude[0]: .text | tonumber` (its
        source on one line, shortened)."""
        src = " ".join(self.source.split())
        return f"{self.where}: {src if len(src) <= 100 else src[:99] + '…'}"


def compile_expression(expr: str, where: str = "") -> Expression:
    """Check and compile one rule; InputError (naming `where` and the rule) when it is not
    valid jq / JSONPath or reaches outside the document."""
    expr = expr.strip()
    why = check_jsonpath(expr) if expr.startswith("$") else check_jq(expr)
    if why:
        raise InputError(f"{where}: filter {expr!r} {why}; filters see only the document")
    try:
        kind, compiled = _compile(expr)
    except (ValueError, JsonPathLexerError, JsonPathParserError, Exception) as e:  # noqa: BLE001
        raise InputError(f"{where}: cannot compile filter {expr!r}: {e}") from None
    return Expression(expr, kind, compiled, where)


class FilterLimitError(InputError):
    """A rule ran past the per-document time or memory bound."""


class RuleErrors:
    """Rules that raised at run time, by rule name (`Expression.name`): on how many documents,
    and the first such document's id and message. A FilterSet keeps one over its life
    (`FilterSet.rule_errors`); a caller that needs the errors of its own calls only (select, per
    shard, while the FilterSet is shared by the shards of a worker) passes its own to
    `decide_many`."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, tuple[Any, str]] = {}  # rule -> (document id, message)

    def add(self, rule: str, doc_id: Any, message: str) -> None:
        self.counts[rule] = self.counts.get(rule, 0) + 1
        self.first.setdefault(rule, (doc_id, message))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts)

    def by_rule(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def examples(self, limit: int | None = None) -> list[str]:
        """The first error of each rule, "RULE: doc id 'X': message", rules in sorted order."""
        out = [f"{r}: doc id {_one_line(repr(self.first[r][0]))}: {self.first[r][1]}" for r in sorted(self.first)]
        return out if limit is None else out[:limit]


# ----------------------------------------------------------------------------- the helper process

_WORKER = r"""
import json, os, sys
os.environ.clear()  # started with none; also drops what the interpreter set itself (LC_CTYPE)
sys.path[:0] = json.loads(sys.argv[1])
import resource
limit = int(sys.argv[2]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
from dolma_prep.pipeline.filters import _serve
_serve(json.loads(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
"""


def _serve(rules: list[str], seconds: float, progress_fd: int) -> None:
    """Helper loop. A request is a line "N" followed by N JSON documents, one per line; the
    answer is N lines "I E" or "I E ERRORS": the index of the first matching include rule (-1:
    none, -2: no include rules) and of the first matching exclude rule (-1: none; not evaluated
    when no include matched), then, only when rules raised on the document, a JSON list of
    [rule index (includes first, then excludes), message] (one line: JSON escapes newlines). A
    rule that raised has not matched, so the next rule is evaluated. Each document runs under
    an interval timer whose signal (SIGALRM, left at its default action) ends this process, even
    inside the C jq engine; before each rule the document's index in the request and the rule's
    index are stored in `progress`."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # in case the parent ignored it (kept across exec)
    progress = mmap.mmap(progress_fd, 8)
    n_include = int(rules[0])
    compiled = [_compile(r) for r in rules[1:]]
    any_jsonpath = any(k == "jsonpath" for k, _ in compiled)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    pack = struct.Struct("<ii").pack
    while True:
        head = inp.readline()
        if not head:
            return
        replies = []
        for d in range(int(head)):
            line = inp.readline()
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                doc = json.loads(line) if any_jsonpath else None
                text = line.decode("utf-8")
                errors = []
                inc = -1 if n_include else -2
                for i in range(n_include):
                    progress[0:8] = pack(d, i)
                    k, c = compiled[i]
                    hit, err = _evaluate(k, c, doc, text if k == "jq" else None)
                    if err is not None:
                        errors.append((i, err))
                    if hit:
                        inc = i
                        break
                exc = -1
                if inc != -1:
                    for i in range(n_include, len(compiled)):
                        progress[0:8] = pack(d, i)
                        k, c = compiled[i]
                        hit, err = _evaluate(k, c, doc, text if k == "jq" else None)
                        if err is not None:
                            errors.append((i, err))
                        if hit:
                            exc = i - n_include
                            break
            except MemoryError:
                os._exit(3)
            signal.setitimer(signal.ITIMER_REAL, 0)
            if errors:
                replies.append(b"%d %d %s\n" % (inc, exc, json.dumps(errors).encode()))
            else:
                replies.append(b"%d %d\n" % (inc, exc))
        out.write(b"".join(replies))
        out.flush()


class FilterSet:
    """Include/exclude rules; `decide(doc)` returns None to keep or the rule that dropped it,
    `decide_many(docs)` the same for a block of documents in one round trip to the helper.
    Rules that raised on a document count as not matched and are tallied in `rule_errors`
    (every call since the set was made) and in the `errors` a caller passes to `decide_many`.

    Rules are checked and compiled here (InputError at load); documents are evaluated in a
    helper process bounded by `seconds` per document and `memory_mb` of address space."""

    def __init__(self, include: list[str], exclude: list[str], where: str = "filters",
                 seconds: float = DEFAULT_SECONDS, memory_mb: int = DEFAULT_MEMORY_MB):
        self.include = [compile_expression(e, f"{where}.include[{i}]") for i, e in enumerate(include)]
        self.exclude = [compile_expression(e, f"{where}.exclude[{i}]") for i, e in enumerate(exclude)]
        self.where = where
        self.seconds = float(seconds)
        self.memory_mb = int(memory_mb)
        # handing jq a document means serialising it; skip the (large) text when no rule reads it
        self.needs_text = any("text" in e.source for e in self.include + self.exclude)
        self.rule_errors = RuleErrors()
        self._proc: subprocess.Popen | None = None
        self._progress: mmap.mmap | None = None

    # -- helper lifecycle ----------------------------------------------------------------
    def _start(self) -> None:
        tmp = tempfile.TemporaryFile()
        tmp.truncate(8)
        self._progress = mmap.mmap(tmp.fileno(), 8)
        rules = [str(len(self.include))] + [e.source for e in self.include + self.exclude]
        paths = [p for p in sys.path if p]
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER, json.dumps(paths), str(self.memory_mb), json.dumps(rules),
             repr(self.seconds), str(tmp.fileno())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={}, cwd="/", pass_fds=(tmp.fileno(),), close_fds=True,
        )
        tmp.close()  # the helper holds its own descriptor; the mapping keeps the file alive

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass

    def __getstate__(self):
        return {**self.__dict__, "_proc": None, "_progress": None}

    def _fail(self, docs: list[dict]) -> FilterLimitError:
        """The helper died: name the rule and the document it was on, and why."""
        proc = self._proc
        try:
            code = proc.wait(timeout=5) if proc is not None else None
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -signal.SIGKILL
        d, r = struct.unpack("<ii", self._progress[0:8]) if self._progress is not None else (-1, -1)
        self.close()
        rules = self.include + self.exclude
        name = f"{rules[r].where}: filter {rules[r].source!r}" if 0 <= r < len(rules) else f"{self.where}: a filter"
        doc_id = docs[d].get("id") if 0 <= d < len(docs) else None
        if code == -signal.SIGALRM:
            what = f"ran past {self.seconds:g} s"
        elif code in (3, -signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS):
            what = f"went over {self.memory_mb} MB of memory"
        else:
            what = f"stopped its filter process (exit {code})"
        # one line, whatever the rule's `where` or the document's id holds (a log line, a CLI message)
        return FilterLimitError(_one_line(f"{name} {what} on document id {doc_id!r}; a filter may take at most "
                                          f"{self.seconds:g} s and {self.memory_mb} MB per document"))

    def _ask(self, lines: list[bytes], docs: list[dict]) -> list[tuple[int, int, list]]:
        """One round trip: per document (include index, exclude index, [[rule index, message], ...])."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        self._progress[0:8] = struct.pack("<ii", -1, -1)
        proc = self._proc
        try:
            proc.stdin.write(b"%d\n" % len(lines) + b"".join(lines))
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(docs) from None
        fd = proc.stdout.fileno()
        buf = b""
        backstop = time.monotonic() + self.seconds * len(lines) + 30  # the helper's own timer acts first
        while buf.count(b"\n") < len(lines):
            left = backstop - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                proc.send_signal(signal.SIGALRM)
                raise self._fail(docs)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._fail(docs)
            buf += chunk
        out = []
        for x in buf.splitlines():
            a, b, *errors = x.split(b" ", 2)
            out.append((int(a), int(b), json.loads(errors[0]) if errors else []))
        return out

    def decide_many(self, docs: list[dict], block: int = 256, errors: RuleErrors | None = None) -> list[str | None]:
        """Each document's reason to drop it, or None to keep it. Rules that raised are added to
        `self.rule_errors` and, when given, to `errors` (the caller's own tally)."""
        if not self.include and not self.exclude:
            return [None] * len(docs)
        if not self.needs_text:
            docs = [{k: v for k, v in d.items() if k != "text"} if "text" in d else d for d in docs]
        rules = self.include + self.exclude
        out: list[str | None] = []
        for lo in range(0, len(docs), block):
            part = docs[lo: lo + block]
            for doc, (inc, exc, raised) in zip(part, self._ask([json.dumps(d).encode() + b"\n" for d in part], part)):
                for r, msg in raised:
                    for tally in (self.rule_errors, errors):
                        if tally is not None:
                            tally.add(rules[r].name, doc.get("id"), msg)
                if inc == -1:
                    out.append("include: no rule matched")
                elif exc >= 0:
                    out.append(f"exclude: {self.exclude[exc].source}")
                else:
                    out.append(None)
        return out

    def decide(self, doc: dict) -> str | None:
        return self.decide_many([doc])[0]
