"""URL and domain blocklists read from local files (`url_blocklist_v1`, `domain_blocklist_v1`,
and dolma 1.2.1's list taggers under their own names, e.g. `domain_blocklist_utp_v1`,
`blocklist_project_nsfw_v1`, `blocklist_firebog_*_v1`, `link_blocklist_phishing_v1`).

Field `url`: one document-level span `[0, len(text), 1]` when the document's `metadata.url`
is on the list; no field otherwise.

Options: `blocklist_path` (a path or a list of paths, plain or .gz; required: lists are
never downloaded; for dolma's names, point it at the file dolma would download).

List files, as dolma reads them: one entry a line, lowercased; blank lines and lines starting
with `#`, `;` or `!` are skipped; a hosts-file line `IP host` adds both the IP and the host;
`||host^` (Adblock Plus) adds the host; any other line is a URL or host name. Lines that
parse as none of these are skipped.

Matching: URL taggers compare `host[:port]/path` (no scheme, query or trailing slash,
lowercased); domain taggers compare the host, with and without a leading `www.`.

Deviations from dolma, both fixes:
- dolma removes a leading "www." with `str.lstrip("www.")`, which strips any run of `w` and
  `.` characters (`web.de` becomes `eb.de`, so blocking `web.de` also blocks `eb.de`); we
  remove exactly the prefix `www.`.
- dolma means to skip the localhost addresses of hosts files (127.0.0.1, 0.0.0.0, ::1) but
  its pattern never matches (a missing f-string), so every `0.0.0.0 host` line also blocks
  the URL `0.0.0.0`; we skip them.
Link lists (`link_blocklist_phishing_v1`) take each line verbatim, as dolma does.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterator

from dolma_prep.core import io

from .registry import Document, Spans, Tagger, register

log = logging.getLogger(__name__)

# dolma's host pattern is (?:[a-z0-9\-_]+\.?){2,}: at least two name characters, no leading or
# doubled dot. Written without nested repetition, it cannot backtrack exponentially (dolma's
# can, on a long `||name` line without the closing `^`).
_HOST = r"[a-z0-9\-_](?:\.?[a-z0-9\-_])+\.?|localhost|localdomain"
_IP_AND_HOST = re.compile(rf"([0-9a-f.:]+)\s+({_HOST})")
_ONLY_HOST = re.compile(rf"^(?:{_HOST})")
_ADBLOCK = re.compile(rf"\|+({_HOST})\^")
_LOCAL_IPS = {"127.0.0.1", "0.0.0.0", "::1"}


def _parse_url(url: str):
    try:
        from urllib3.util import parse_url
    except ImportError:  # pragma: no cover - urllib3 comes with requests, fsspec and ray
        from urllib.parse import urlsplit

        parts = urlsplit(url if "://" in url else "//" + url)
        return parts.hostname, parts.port, parts.path
    u = parse_url(url)
    return u.host, u.port, u.path


def url_key(url: str) -> str | None:
    """`host[:port]/path`, lowercased, without trailing slashes; None if it does not parse."""
    if not url or not url.strip():
        return None
    try:
        host, port, path = _parse_url(url)
    except Exception:  # noqa: BLE001 a URL urllib3 cannot parse matches no list entry
        return None
    return f"{host}{f':{port}' if port else ''}{path or ''}".rstrip("/").lower()


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


class Blocklist(Tagger):
    output_fields = ("url",)
    domain_mode = False
    verbatim_lines = False

    def __init__(self, blocklist_path: str | list[str] | None = None, **options):
        super().__init__(blocklist_path=blocklist_path, **options)
        paths = [blocklist_path] if isinstance(blocklist_path, (str, os.PathLike)) else list(blocklist_path or [])
        if not paths:
            raise ValueError(f"tagger {self.name!r} needs a local list: pass blocklist_path=/path/to/list (or a list of paths)")
        self.blocklist: set[str] = set()
        for path in paths:
            path = os.fspath(path)
            if not io.exists(path):
                raise ValueError(f"tagger {self.name!r}: blocklist_path {path!r} does not exist")
            with io.open_binary(path) as f:  # local or any fsspec URL, plain, .gz or .zst
                for line in f:
                    self.blocklist.update(self.parse_line(line.decode("utf-8", "replace")))
        if not self.blocklist:
            raise ValueError(f"tagger {self.name!r}: no entries in {paths}")

    def parse_line(self, line: str) -> Iterator[str]:
        line = line.strip().lower()
        if self.verbatim_lines:
            if line and not line.startswith("#"):
                yield line
            return
        if not line or line.startswith(("#", ";", "!")):
            return
        m = _IP_AND_HOST.match(line)
        if m:
            ip, host = m.group(1), m.group(2)
            if not _is_ip(ip):
                log.debug("blocklist: bad IP in %r", line)
                return
            if ip not in _LOCAL_IPS:
                yield ip
            if host not in ("localhost", "localdomain"):
                yield from self.keys(host)
        elif _ONLY_HOST.match(line):
            yield from self.keys(line)
        else:
            m = _ADBLOCK.match(line)
            if m:
                yield m.group(1)
            else:
                log.debug("blocklist: cannot parse %r", line)

    def keys(self, url: str) -> Iterator[str]:
        key = url_key(url)
        if key is None:
            return
        if not self.domain_mode:
            yield key
            return
        try:
            host = _parse_url(key)[0]
        except Exception:  # noqa: BLE001 a list entry urllib3 cannot parse has no host
            host = None
        if not host:
            return
        host = host.lower().removeprefix("www.")
        yield host
        yield f"www.{host}"

    def predict(self, doc: Document) -> dict[str, Spans]:
        url = (doc.metadata or {}).get("url") or ""
        if isinstance(url, str):
            for key in self.keys(url):
                if key in self.blocklist:
                    return {"url": [[0, len(doc.text), 1.0]]}
        return {}


class DomainBlocklist(Blocklist):
    domain_mode = True


register("url_blocklist_v1")(type("UrlBlocklistV1", (Blocklist,), {"__doc__": "URL list (host/path match)."}))
register("domain_blocklist_v1")(type("DomainBlocklistV1", (DomainBlocklist,), {"__doc__": "Domain list (host match)."}))
register("link_blocklist_phishing_v1")(type("LinkBlocklistPhishingV1", (Blocklist,), {"verbatim_lines": True}))

# dolma's domain-list taggers: same behaviour, the list is given with blocklist_path
for _name in (
    "domain_blocklist_utp_v1", "domain_blocklist_phishing_v1",
    "blocklist_project_nsfw_v1", "blocklist_project_social_v1", "blocklist_project_crime_v1",
    "blocklist_project_vice_v1", "blocklist_project_ads_v1",
    "blocklist_firebog_ads_v1", "blocklist_firebog_crypto_v1", "blocklist_firebog_malicious_v1",
    "blocklist_firebog_nsfw_v1", "blocklist_firebog_social_v1", "blocklist_firebog_suspicious_v1",
    "blocklist_firebog_trackers_v1", "blocklist_hosts_adware_malware_v1", "blocklist_hosts_fakenews_v1",
):
    register(_name)(type("".join(p.title() for p in _name.split("_")), (DomainBlocklist,), {}))
