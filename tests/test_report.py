"""`dolma-prep report OUTPUT --html report.html`: one self-contained page, charts checked in Chromium.

The page is opened in headless Chromium (Debian packages chromium + chromium-driver, installed
by scripts/setup_chromium.sh; the browser tests skip when it is absent): a probe script, added
to a copy of the page, writes every chart's and bar's rendered size into the DOM, which
`--dump-dom` returns; a `--screenshot` must show the charts' colours. The numbers in the page
are compared with `stats --json` and with counts made here from the files.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_stats import LENGTH, SOURCES, inspect_run

pytestmark = pytest.mark.slow  # one shared pipeline run on a local Ray (~25 s)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# `make test` sets DOLMA_PREP_REQUIRE_PEERS=1 after installing Chromium: then a missing browser fails
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("DOLMA_PREP_REQUIRE_PEERS"), reason="headless Chromium not installed "
                                                             "(scripts/setup_chromium.sh)")

PROBE = """<script>
(function () {
  var charts = [];
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    var bars = Array.prototype.map.call(svg.querySelectorAll('rect.bar'), function (b) {
      var q = b.getBoundingClientRect();
      return {w: q.width, h: q.height, x: q.left - r.left, value: parseFloat(b.getAttribute('data-value')),
              series: b.getAttribute('data-series'), category: b.getAttribute('data-category')};
    });
    var texts = Array.prototype.map.call(svg.querySelectorAll('text'), function (t) {
      return t.getBBox().width;
    });
    charts.push({cls: svg.getAttribute('class'), w: r.width, h: r.height, bars: bars, texts: texts});
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(charts);
  document.body.appendChild(pre);
})();
</script>"""



@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    return inspect_run(tmp_path_factory)


@pytest.fixture(scope="module")
def report(run_out, tmp_path_factory):
    _, out = run_out
    path = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_cli("report", str(out), "--html", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stats = json.loads(run_cli("stats", str(out), "--json", check=True).stdout)
    return path, path.read_text(), stats


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           f"--user-data-dir={profile}", "--hide-scrollbars", "--force-device-scale-factor=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) to an (h, w, c) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = np.zeros(stride, np.uint8)
    rows = np.empty((h, stride), np.uint8)
    for y in range(h):
        start = y * (stride + 1)
        f = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1)
        if f == 0:
            cur = line.copy()
        elif f == 1:
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif f == 2:
            cur = line + prev
        else:
            cur, p, ln = bytearray(stride), prev.tolist(), line.tolist()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = p[i], (p[i - bpp] if i >= bpp else 0)
                if f == 3:
                    pred = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (ln[i] + pred) & 0xFF
            cur = np.frombuffer(bytes(cur), np.uint8)
        rows[y] = cur
        prev = cur
    return rows.reshape(h, w, bpp)


def test_report_is_self_contained_and_deterministic(run_out, report, tmp_path):
    _, out = run_out
    path, page, _ = report
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 5
    # nothing fetched: no scripts, stylesheets, images or fonts from anywhere; the only URL is the SVG namespace
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    again = tmp_path / "again.html"
    run_cli("report", str(out), "--html", str(again), check=True)
    assert again.read_text() == page


def test_report_numbers_are_the_stats(report):
    _, page, stats = report
    S = stats["sources"]
    bars = re.findall(r'<rect class="bar"[^>]*data-series="([^"]*)" data-category="([^"]*)" data-value="([^"]*)"', page)
    achieved = {c: float(v) for s, c, v in bars if s == "achieved"}
    planned = {c: float(v) for s, c, v in bars if s == "planned"}
    assert achieved == {n: float(S[n]["tokens"]) for n in SOURCES}
    assert planned == pytest.approx({n: S[n]["planned_tokens"] for n in SOURCES}, rel=1e-5)
    # fates: every read document of a source is in exactly one segment
    fates = {}
    for s, c, v in bars:
        if s in ("written", "sampled out", "empty", "filtered", "deduplicated", "rejected"):
            fates.setdefault(c, {})[s] = int(v)
    for n in SOURCES:
        read = {r["stage"]: r for r in S[n]["funnel"]}["read"]["documents_in"]
        assert sum(fates[n].values()) == read, (n, fates[n])
    assert fates["cc_en_tail"]["deduplicated"] == 2 and fates["flan"]["rejected"] == 1
    assert fates["wiki"] == {"written": 10}
    # the length histogram counts every read document once
    section = page.split(f"<h3>{LENGTH}</h3>", 1)[1].split("</svg>", 1)[0]
    hist = [int(v) for _, _, v in re.findall(r'<rect class="bar"[^>]*data-series="([^"]*)" data-category="([^"]*)" '
                                             r'data-value="([^"]*)"', section)]
    reads = sum({r["stage"]: r for r in S[n]["funnel"]}["read"]["documents_out"] for n in SOURCES)
    assert sum(hist) == reads
    assert "(estimate)" in page and html.escape("include: no rule matched") in page


@needs_chromium
def test_charts_render_in_headless_chromium(report, tmp_path):
    path, page, stats = report
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = chromium(tmp_path, "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    charts = json.loads(html.unescape(m.group(1)))
    n_hist = page.count('class="chart histogram"')
    assert len(charts) == 4 + n_hist and n_hist >= 3
    for c in charts:
        assert c["w"] >= 800 and c["h"] >= 100, c["cls"]
        assert c["bars"] and all(b["w"] > 0 and b["h"] > 0 for b in c["bars"]), c["cls"]
        assert max(c["texts"]) > 50, c["cls"]  # text laid out with a real font
    by = {c["cls"].split()[-1]: c for c in charts}
    # bar lengths are proportional to the values they show
    tok = [b for b in by["tokens-per-source"]["bars"]]
    assert len(tok) == 2 * len(SOURCES)
    widest = max(tok, key=lambda b: b["w"])
    for b in tok:
        assert b["w"] == pytest.approx(widest["w"] * b["value"] / widest["value"], abs=1.0)
    # every source's fate bar spans the same 100% width
    totals = {}
    for b in by["fates"]["bars"]:
        totals[b["category"]] = totals.get(b["category"], 0) + b["w"]
    assert set(totals) == set(SOURCES) and max(totals.values()) - min(totals.values()) < 1.0
    # the funnel narrows as documents leave it
    fun = [b["w"] for b in by["funnel-documents"]["bars"]]
    assert fun[0] >= fun[1] >= fun[2] >= fun[3] >= fun[4]


@needs_chromium
def test_screenshot_is_not_blank(report, tmp_path):
    path, _, _ = report
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,1400", path.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    px = png_pixels(shot)[:, :, :3]
    assert px.shape[:2] == (1400, 1000)
    packed = (px[:, :, 0].astype(np.uint32) << 16) | (px[:, :, 1].astype(np.uint32) << 8) | px[:, :, 2]
    colours = np.unique(packed)
    assert len(colours) > 100  # bars in several colours plus antialiased text
    not_white = (px.reshape(-1, 3) < 245).any(axis=1).mean()
    assert 0.03 < not_white < 0.9
    # the planned (grey) and achieved (blue) bars and the fates' green are on screen, not just in the source
    for hexcol in ("#9aa5b1", "#2f6fdf", "#2e9e5b"):
        rgb = np.array([int(hexcol[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(px.reshape(-1, 3).astype(int) - rgb).max(axis=1) <= 3).sum() > 500, hexcol
