"""Adblock Plus rule lists on Brave's Rust adblock engine (`adblock` from PyPI), under dolma
1.2.1's names: `oisd_small_abp_v1`, `oisd_big_abp_v1`, `oisd_nsfw_abp_v1`, `brave_core_abp_v1`,
`brave_nsfw_abp_v1`, plus `abp_blocklist_v1` for any other list.

Field `url`: one document span `[0, len(text), 1]` when the engine blocks the document's
`metadata.url`; no field otherwise.

Option `blocklist_path`: a path or a list of paths (plain or .gz) in Adblock Plus syntax
(`||host^`, `|https://...`, `/path/*`, `$third-party`, `$~third-party`, `$image`, exceptions
`@@...`, `$important`, ...). Nothing is downloaded: for dolma's names, point it at the
file(s) dolma would fetch (e.g. oisd_small_abp.txt.gz; brave_core_abp_v1 reads two lists).

As dolma: every line not starting with `!` is stripped and kept, duplicates removed and the
rules sorted, then compiled by the engine (standard format, all rule types, optimised). The
URL is reduced to `host[:port]/path` (no scheme, query or trailing slash, lowercased, the
key the other URL taggers compare), prefixed with `http://`, and checked as a request of no
type from no source page, which dolma's engine counts as third-party: `$third-party` rules
apply, `$~third-party` (first-party only) rules never do, type options such as `$image` or
`$document` never match (a request without a type is `other`), nor do `$domain=` rules
(there is no source domain). The URL's own scheme plays no part: `|https://` rules never
match, `|http://` rules match https URLs too.

Deviations: a URL whose key urllib3 reads as having a scheme (`http://localhost:8080/x` gives
`localhost:8080/x`) makes dolma's engine raise, which stops its whole file; here it is not
blocked. A URL that urllib3 2 cannot parse (e.g. a host with a space; dolma's venv pins
urllib3 1.26, which accepts some) gets no field, as with the other URL taggers.
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterable

from .registry import Document, Spans, Tagger, register
from .urls import url_key


def _parse_url(url: str):
    from urllib3.util import parse_url

    return parse_url(url)


def read_rules(paths: Iterable[str]) -> list[str]:
    rules: set[str] = set()
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            rules.update(line.strip() for line in f if not line.startswith("!"))
    return sorted(rules)


class AdblockList(Tagger):
    output_fields = ("url",)

    def __init__(self, blocklist_path: str | list[str] | None = None, **options):
        super().__init__(blocklist_path=blocklist_path, **options)
        paths = [blocklist_path] if isinstance(blocklist_path, (str, os.PathLike)) else list(blocklist_path or [])
        if not paths:
            raise ValueError(f"tagger {self.name!r} needs a local Adblock Plus list: pass blocklist_path=/path/to/list.txt "
                             "(or a list of paths); lists are never downloaded")
        paths = [os.fspath(p) for p in paths]
        for p in paths:
            if not os.path.isfile(p):
                raise ValueError(f"tagger {self.name!r}: blocklist_path {p!r} does not exist")
        try:
            import adblock
        except ImportError as e:  # pragma: no cover - a project dependency
            raise ImportError(f"tagger {self.name!r} needs the adblock engine: pip install adblock") from e
        self.rules = read_rules(paths)
        filter_set = adblock.FilterSet()
        filter_set.add_filters(self.rules, format="standard")
        self.engine = adblock.Engine(filter_set, optimize=True)

    def blocked(self, url: str) -> bool:
        key = url_key(url)
        if key is None:
            return False
        try:
            parsed = _parse_url(key)
            if parsed.scheme is not None:  # keys like `localhost:8080/x`: dolma's engine raises on them
                return False
            host = parsed.host or ""
            # dolma's engine (adblock 0.8) takes a request without a source page as third-party
            # (source domain "" differs from the URL's); older engines, like the one in the
            # `adblock` wheel, would leave it undecided and let `$~third-party` rules match too
            return bool(self.engine.check_network_urls_with_hostnames(f"http://{key}", host, "", "", True).matched)
        except Exception:  # noqa: BLE001 a URL the engine cannot parse (dolma raises): not blocked
            return False

    def predict(self, doc: Document) -> dict[str, Spans]:
        url = (doc.metadata or {}).get("url") or ""
        if isinstance(url, str) and self.blocked(url):
            return {"url": [[0, len(doc.text), 1.0]]}
        return {}


for _name in ("abp_blocklist_v1", "oisd_small_abp_v1", "oisd_big_abp_v1", "oisd_nsfw_abp_v1",
              "brave_core_abp_v1", "brave_nsfw_abp_v1"):
    register(_name)(type("".join(p.title() for p in _name.split("_")), (AdblockList,), {}))
