"""The course site: built by its one command in strict mode, then opened in a real headless browser.

A probe page served beside the site loads each page in a same-origin frame and reports what the
browser rendered: the notebook's cells and outputs, figures actually decoded (naturalWidth > 0),
maths typeset by MathJax, and the language switch's links. Slow (about a minute on 2 cores).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "build" / "site"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")]
pytest.importorskip("mkdocs_jupyter", reason="the site tools are not installed (mkdocs-material, mkdocs-jupyter)")

PROBE = """<!doctype html><meta charset="utf-8"><pre id="out">waiting</pre>
<iframe id="f" src="%s" style="width:1200px;height:900px"></iframe>
<script>
const f = document.getElementById("f");
let click = "%s";  // a language to switch to first, through the page's own switch
f.addEventListener("load", () => setTimeout(() => {
  const d = f.contentDocument;
  if (click) { d.querySelector(`a.md-select__link[hreflang="${click}"]`).click(); click = ""; return; }
  // images of this site (figures, notebook outputs); a badge from another host cannot load offline
  const imgs = [...d.querySelectorAll("article img")].filter(i => i.src.startsWith("data:") || i.src.startsWith(location.origin));
  document.getElementById("out").textContent = JSON.stringify({
    lang: d.documentElement.lang,
    path: f.contentWindow.location.pathname,
    title: d.title,
    text: d.querySelector("article") ? d.querySelector("article").innerText.slice(0, 20000) : "",
    code_cells: d.querySelectorAll(".jp-CodeCell, .jp-Cell.jp-CodeCell").length,
    output_images: d.querySelectorAll(".jp-OutputArea-output img").length,
    images: imgs.length,
    images_decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    maths: d.querySelectorAll(".MathJax").length,  // elements MathJax typeset
    switch: [...d.querySelectorAll("a.md-select__link")].map(a => [a.hreflang, a.getAttribute("href")]),
  });
}, 4000));
</script>"""


@pytest.fixture(scope="module")
def site_url():
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the browser's requests are not test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SITE)))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # built for this address: the language switch finds the same page through the sitemaps' URLs
    env = {**os.environ, "SITE_URL": f"{url}/en/", "SITE_URL_ZH": f"{url}/zh/"}
    built = subprocess.run([sys.executable, "-m", "tools.site"], cwd=ROOT, capture_output=True, text=True,
                           timeout=900, env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()


def render(site_url: str, page: str, switch_to: str = "") -> dict:
    """What the browser shows of ``page`` (a path under the site root), through the probe page;
    with ``switch_to``, after clicking that language in the page's language switch."""
    probe = SITE / "_probe.html"
    probe.write_text(PROBE % (page, switch_to), encoding="utf-8")
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--virtual-time-budget=30000", "--dump-dom", f"{site_url}/_probe.html"],
                         capture_output=True, text=True, timeout=180)
    start, end = out.stdout.find('<pre id="out">') + len('<pre id="out">'), out.stdout.find("</pre>")
    text = out.stdout[start:end].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert text.startswith("{"), f"the probe got no page: {out.stdout[:500]} {out.stderr[-500:]}"
    return json.loads(text)


def test_english_notebook_page_renders_cells_figures_maths_and_switch(site_url):
    page = render(site_url, "/en/notebooks/05_loss.html")  # the course's displayed formula is in 05
    assert page["lang"] == "en" and "norm_pix_loss" in page["text"]
    assert page["code_cells"] >= 10 and page["output_images"] >= 1
    assert page["images_decoded"] == page["images"] >= 1
    assert page["maths"] >= 1, "MathJax typeset nothing"
    assert "\\operatorname" not in page["text"], "the formula is still raw TeX"
    assert ["zh", "/zh/"] in page["switch"] and ["en", "/en/"] in page["switch"]


def test_chinese_notebook_page_is_the_translation_with_the_same_outputs(site_url):
    zh = render(site_url, "/zh/notebooks/05_loss.html")
    en = render(site_url, "/en/notebooks/05_loss.html")
    assert zh["lang"].startswith("zh") and "图像块" in zh["text"]
    assert (zh["code_cells"], zh["output_images"]) == (en["code_cells"], en["output_images"])
    assert zh["images_decoded"] == zh["images"] >= 1 and zh["maths"] >= 1
    assert ["en", "/en/"] in zh["switch"]


def test_guides_render_in_both_languages(site_url):
    home = render(site_url, "/zh/index.html")
    assert "快速上手" in home["text"] and "PIP_INDEX_URL" in home["text"]
    assert home["images_decoded"] == home["images"] >= 1  # the fine-tuning curve and the sweep figure
    faq = render(site_url, "/en/docs/faq.html")
    assert "Questions people ask" in faq["text"]


def test_language_switch_keeps_the_page(site_url):
    zh = render(site_url, "/en/notebooks/03_encoder.html", switch_to="zh")
    assert (zh["path"], zh["lang"][:2]) == ("/zh/notebooks/03_encoder.html", "zh") and "编码器" in zh["text"]
    en = render(site_url, "/zh/docs/faq.html", switch_to="en")
    assert (en["path"], en["lang"]) == ("/en/docs/faq.html", "en")


def test_search_indexes_both_languages(site_url):
    en = json.loads((SITE / "en" / "search" / "search_index.json").read_text(encoding="utf-8"))
    zh = json.loads((SITE / "zh" / "search" / "search_index.json").read_text(encoding="utf-8"))
    assert any("patchify" in doc["text"] for doc in en["docs"])
    assert any("掩码率" in doc["text"] for doc in zh["docs"])
