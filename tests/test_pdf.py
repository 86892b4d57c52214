"""The book's PDF (_build/latex/book.pdf, `make pdf`) against the site it is built beside.

What a reader of the PDF must find: the 15 numbered chapters in order under their parts, every
number glued on a site page in the same chapter of the PDF, the site's figures, figure and
equation references and exercises with their solutions, no unresolved reference ("??") and no
raw MyST or LaTeX, and no word (code included) past the text width.

Skipped, with the reason, only when the TeX toolchain or poppler-utils is missing
(tools/install_tex.sh installs them; `make test` runs it). With TeX present a missing or stale
PDF fails: run `make pdf`.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

LATEX = ROOT / "_build" / "latex"
PDF = LATEX / "book.pdf"
SITE = ROOT / "_build" / "html"
TOOLS = ("xelatex", "latexmk", "pdftotext", "pdfinfo", "pdfimages")

PT_PER_CM = 72 / 2.54
TOLERANCE_PT = 1.0  # a word may end this far past the margin (rounding of the glyph boxes)


def _missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _require_pdf() -> None:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"TeX toolchain not installed ({', '.join(missing)} missing): "
                    "run `bash tools/install_tex.sh` (make test does), then `make pdf`")
    assert PDF.exists(), f"{PDF.relative_to(ROOT)} missing: run `make pdf`"
    pages = sorted(SITE.glob("chapters/*.html"))
    if pages:
        newest = max(pages, key=lambda p: p.stat().st_mtime)
        assert PDF.stat().st_mtime >= newest.stat().st_mtime, (
            f"the PDF is older than the site ({newest.relative_to(ROOT)}): run `make pdf`")


# --- what the book says it contains (from _toc.yml and the chapter files) -----------------

def _chapter_title(path: Path) -> str:
    """The chapter's `# Title` (outside code cells and front matter), markdown markup removed."""
    fence, lines = None, path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].strip() == "---":  # front matter
        lines = lines[lines.index("---", 1) + 1:]
    for line in lines:
        m = re.match(r"^(`{3,}|~{3,}|:{3,})", line)
        if m:
            fence = None if fence and line.startswith(fence) else (fence or m.group(1))
            continue
        if fence is None and line.startswith("# "):
            return re.sub(r"[`*_]", "", line[2:]).strip()
    raise AssertionError(f"{path} has no '# ' title")


def numbered_chapters() -> list[tuple[int, str, str]]:
    """(number, title, docname) of each numbered chapter, in table-of-contents order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = []
    for part in toc.get("parts", []):
        if not part.get("numbered"):
            continue
        for ch in part["chapters"]:
            doc = ch["file"]
            path = next(ROOT / (doc + s) for s in (".md", ".ipynb") if (ROOT / (doc + s)).exists())
            number = int(re.search(r"(\d+)_[^/]+$", doc).group(1))
            out.append((number, _chapter_title(path), doc))
    return out


def part_captions() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [p["caption"] for p in toc.get("parts", [])]


# --- what the PDF holds -------------------------------------------------------------------

def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=1)
def pdf_pages() -> tuple[str, ...]:
    """The text of each page's text block, in reading order (pdftotext; running head and foot cut off,
    so that a sentence across a page break reads on)."""
    info = subprocess.run(["pdfinfo", str(PDF)], check=True, capture_output=True, text=True).stdout
    page_h = float(re.search(r"^Page size:\s+[\d.]+ x ([\d.]+) pts", info, re.M).group(1))
    top = margins_cm(vertical=True)[0] * PT_PER_CM - 12  # the head sits 27 pt above the text block
    height = page_h - 2 * top
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", "-x", "0", "-y", f"{top:.0f}", "-W", "1000",
                          "-H", f"{height:.0f}", str(PDF), "-"], check=True, capture_output=True,
                         text=True).stdout
    return tuple(out.split("\f"))


@lru_cache(maxsize=1)
def chapter_spans() -> dict[int, tuple[int, int]]:
    """{chapter number: (first page, page after its last)} from the chapter openings and part pages."""
    pages = pdf_pages()
    starts = {}
    for number, title, _ in numbered_chapters():
        pat = re.compile(rf"CHAPTER {number} {re.escape(_squash(title))}")
        hits = [i for i, p in enumerate(pages) if pat.search(_squash(p))]
        assert hits, f"chapter {number} '{title}' has no opening page in the PDF"
        starts[number] = hits[0]
    captions = {_squash(c) for c in part_captions()}
    part_pages = [i for i, p in enumerate(pages) if re.sub(r"\s*\d+\s*$", "", _squash(p)) in captions]
    bounds = sorted(set(starts.values()) | set(part_pages) | {len(pages)})
    return {n: (s, next(b for b in bounds if b > s)) for n, s in starts.items()}


def chapter_text(number: int) -> str:
    a, b = chapter_spans()[number]
    return "\n".join(pdf_pages()[a:b])


def site_text(doc: str) -> str:
    """The visible text of a site page's article (tags stripped, entities decoded)."""
    page = (SITE / (doc + ".html")).read_text(encoding="utf-8")
    m = re.search(r'<article class="bd-article"[^>]*>(.*)</article>', page, re.S)
    body = m.group(1) if m else page
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def site_page(doc: str) -> str:
    path = SITE / (doc + ".html")
    if not path.exists():
        pytest.skip("the site has not been built (make test builds it first)")
    return path.read_text(encoding="utf-8")


def words_past_margin(bbox_html: str, left_cm: float, right_cm: float,
                      tol: float = TOLERANCE_PT) -> list[tuple[int, str, float]]:
    """(page, word, points past the margin) for each word of `pdftotext -bbox` output outside the text width."""
    out = []
    pages = re.split(r"<page ", bbox_html)[1:]
    for i, page in enumerate(pages, start=1):
        width = float(re.search(r'width="([\d.]+)"', page).group(1))
        left, right = left_cm * PT_PER_CM, width - right_cm * PT_PER_CM
        for x0, x1, word in re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>',
                                        page):
            past = max(float(x1) - right, left - float(x0))
            if past > tol:
                out.append((i, html.unescape(word), round(past, 1)))
    return out


def margins_cm(vertical: bool = False) -> tuple[float, float]:
    """The left and right (top and bottom) margins the PDF is set with (tools/dlbook_latex.py's sphinxsetup)."""
    import dlbook_latex

    key = "vmargin" if vertical else "hmargin"
    m = re.search(key + r"=\{([\d.]+)cm,([\d.]+)cm\}", dlbook_latex.LATEX_ELEMENTS["sphinxsetup"])
    return float(m.group(1)), float(m.group(2))


# --- tests --------------------------------------------------------------------------------

def test_margin_check_flags_a_word_past_the_text_width():
    """The width check can fail: a word ending 3 pt past the right margin, or starting left of the left one."""
    right_edge = 595.28 - 2.2 * PT_PER_CM
    page = ('<page width="595.28" height="841.89">'
            f'<word xMin="70.0" yMin="1" xMax="{right_edge - 0.5:.2f}" yMax="2">fits</word>'
            f'<word xMin="300.0" yMin="3" xMax="{right_edge + 3:.2f}" yMax="4">cut_off</word>'
            '<word xMin="55.0" yMin="5" xMax="80.0" yMax="6">outdented</word></page>')
    assert words_past_margin(page, 2.2, 2.2) == [(1, "cut_off", 3.0), (1, "outdented", 7.4)]


@pytest.mark.slow
def test_the_pdf_is_a_book():
    _require_pdf()
    info = subprocess.run(["pdfinfo", str(PDF)], check=True, capture_output=True, text=True).stdout
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    assert re.search(rf"^Title:\s+{re.escape(title)}$", info, re.M), info
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages > 10 * len(numbered_chapters()), f"only {pages} pages"
    front = _squash(" ".join(pdf_pages()[:6]))
    assert title in front and "Contents" in front


@pytest.mark.slow
def test_numbered_chapters_and_parts_in_order():
    """Each numbered chapter opens as "CHAPTER n Title" (the site's number), in the order of _toc.yml, under its part."""
    _require_pdf()
    chapters = numbered_chapters()
    assert [n for n, _, _ in chapters] == list(range(1, len(chapters) + 1)) and len(chapters) == 15
    spans = chapter_spans()
    firsts = [spans[n][0] for n, _, _ in chapters]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts), "chapters out of order"
    text = _squash("\n".join(pdf_pages()))
    positions = [text.find(_squash(c)) for c in part_captions()]
    assert all(p >= 0 for p in positions), f"part missing: {dict(zip(part_captions(), positions))}"
    body = _squash("\n".join(pdf_pages()[firsts[0] - 2:]))  # after the table of contents
    after_toc = [body.find(_squash(c)) for c in part_captions()[1:]]
    assert after_toc == sorted(after_toc) and min(after_toc) >= 0, "parts out of order"


CONTEXT = 8  # letters and digits of the site's text on each side of a glued value


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


def glued_in_context(page_html: str) -> list[tuple[str, str, str]]:
    """(text before, value, text after) of each glued value on a site page, as letters and digits.

    The context stops at math (the site shows TeX source, the PDF its glyphs), at another glued
    value and at a block boundary, so it can be empty.
    """
    m = re.search(r'<article class="bd-article"[^>]*>(.*)</article>', page_html, re.S)
    body = m.group(1) if m else page_html
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r'<span class="pasted-text">([^<]*)</span>', "\x01\\1\x02", body)
    body = re.sub(r"</?(?:p|div|li|td|th|tr|dt|dd|h\d|figcaption|pre|table)\b[^>]*>", "\x03", body)
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    out = []
    for g in re.finditer("\x01([^\x02]*)\x02", text):
        before = re.split(r"[\x01\x02\x03]|\\[()\[\]]|\$", text[:g.start()])[-1]
        after = re.split(r"[\x01\x02\x03]|\\[()\[\]]|\$", text[g.end():])[0]
        out.append((_alnum(before)[-CONTEXT:], g.group(1), _alnum(after)[:CONTEXT]))
    return out


@pytest.mark.slow
def test_every_glued_number_of_a_chapter_is_in_its_pdf_chapter():
    """Each value glued on a chapter's site page is in the same chapter of the PDF, with the words around it."""
    _require_pdf()
    problems, checked = {}, 0
    for number, _, doc in numbered_chapters():
        glued = glued_in_context(site_page(doc))
        assert glued, f"chapter {number}: no glued value on the site page"
        pdf = chapter_text(number)
        flat, letters = re.sub(r"\s+", "", pdf), _alnum(pdf)
        missing = []
        for before, value, after in glued:
            v = _alnum(value)
            if not v:
                continue
            if not (before or after):
                ok = re.sub(r"\s+", "", value) in flat
            else:
                ok = (bool(before) and before + v in letters) or (bool(after) and v + after in letters)
            checked += 1
            if not ok:
                missing.append(f"...{before}[{value}]{after}...")
        if missing:
            problems[number] = missing[:5] + ([f"and {len(missing) - 5} more"] if len(missing) > 5 else [])
    assert checked > 0
    assert not problems, f"glued values not found in their PDF chapter with their context: {problems}"


@pytest.mark.slow
def test_figure_and_equation_references_match_the_site():
    """The chapter's "Fig. n.k" and "Eq. n.k" (captions and references) are the site's: numbered and resolved."""
    _require_pdf()
    pat = re.compile(r"\b(Fig|Eq)\.\s(\d+\.\d+)\b")
    for number, _, doc in numbered_chapters():
        site_page(doc)
        site = set(pat.findall(site_text(doc)))
        pdf = set(pat.findall(chapter_text(number)))
        assert pdf == site, f"chapter {number}: only on the site {site - pdf}, only in the PDF {pdf - site}"


@pytest.mark.slow
def test_exercises_with_their_solutions():
    _require_pdf()
    pat = re.compile(r"Solution to\s+Exercise\s+(\d+\.\d+)")
    for number, _, doc in numbered_chapters():
        site = sorted(set(pat.findall(site_text(doc))))
        text = chapter_text(number)
        assert sorted(set(pat.findall(text))) == site, f"chapter {number}: solutions differ from the site"
        exercises = set(re.findall(r"(?<!to )Exercise\s+(\d+\.\d+)", text))
        assert set(site) <= exercises, f"chapter {number}: exercise without its statement"


@pytest.mark.slow
def test_figure_count_matches_the_site():
    """The PDF shows as many images as the site's chapter and appendix pages (pdfimages)."""
    _require_pdf()
    listing = subprocess.run(["pdfimages", "-list", str(PDF)], check=True, capture_output=True, text=True).stdout
    rows = [ln.split() for ln in listing.splitlines()[2:] if ln.strip()]
    pdf_images = [r for r in rows if r[2] == "image"]
    toc_docs = [d for _, _, d in numbered_chapters()]
    toc_docs += [p.relative_to(ROOT).with_suffix("").as_posix() for p in sorted((ROOT / "appendix").glob("*.md"))]
    site = 0
    for doc in toc_docs:
        page = site_page(doc)
        m = re.search(r'<article class="bd-article"[^>]*>(.*)</article>', page, re.S)
        site += len(re.findall(r'<img\b[^>]*src="[^"]*_images/', m.group(1) if m else page))
    assert site > 0
    assert len(pdf_images) == site, f"{len(pdf_images)} images in the PDF, {site} on the site"


@pytest.mark.slow
def test_no_unresolved_reference_or_raw_markup():
    _require_pdf()
    text = "\n".join(pdf_pages())
    assert "??" not in text, "unresolved reference(s): " + ", ".join(
        _squash(text[max(0, i - 40):i + 10]) for i in [m.start() for m in re.finditer(r"\?\?", text)][:5])
    raw = {
        "MyST role": r"\{(?:glue(?::\w+)?|eq|ref|numref|cite(?::\w+)?|doc|term|download|math)\}`",
        "MyST directive": r"(?:```|:::)\s*\{[\w:-]+\}",
        "MyST label": r"^\s*\([\w-]+\)=\s*$",
        "MyST comment": r"^% claim:",
        "LaTeX command": r"\\(?:begin|end|ref|label|cite|sphinx\w*|DUrole|chapter|section|hyperref)\{",
        "LaTeX error": r"LaTeX Error|Undefined control sequence|Missing \$ inserted",
        "HTML": r"</?(?:div|span|table|img|p)\b[^>]*>",
        "cell prompt": r"\b(?:Show|Hide) code cell (?:source|output|content)\b",
    }
    found = {k: re.findall(p, text, re.M)[:3] for k, p in raw.items() if re.search(p, text, re.M)}
    assert not found, f"raw markup in the PDF: {found}"


@pytest.mark.slow
def test_latex_log_is_clean():
    """No undefined reference or citation, no glyph missing from the fonts, no line wider than the page."""
    _require_pdf()
    log = (LATEX / "book.log").read_text(errors="replace")
    bad = re.findall(r"^(?:LaTeX Warning: (?:Reference|Citation|Hyper reference) .*undefined.*"
                     r"|Missing character: .*)$", log, re.M)
    bad += [m.group(0) for m in re.finditer(r"^Overfull \\hbox \(([\d.]+)pt too wide\).*$", log, re.M)
            if float(m.group(1)) > TOLERANCE_PT]
    assert not bad, "\n".join(bad[:10])


@pytest.mark.slow
def test_no_word_past_the_text_width():
    """Every word of every page, code and tables included, lies within the text width (code wraps, never cut)."""
    _require_pdf()
    bbox = subprocess.run(["pdftotext", "-bbox", str(PDF), "-"], check=True, capture_output=True,
                          text=True).stdout
    left, right = margins_cm()
    past = words_past_margin(bbox, left, right)
    assert not past, f"{len(past)} word(s) outside the text width, (page, word, pt): {past[:10]}"
    # the check looks where the text is: justified body text reaches the right margin
    widths = [float(x) for x in re.findall(r'xMax="([\d.]+)"', bbox)]
    page_w = float(re.search(r'<page width="([\d.]+)"', bbox).group(1))
    assert max(widths) > page_w - right * PT_PER_CM - 3, "no text reaches the right margin: wrong margins?"


@pytest.mark.slow
def test_pdf_build_refuses_to_execute(monkeypatch):
    """`make pdf` never executes a chapter: it refuses when one lacks a cache record made with today's library."""
    import build_pdf
    import libdeps

    if not (ROOT / "_build" / ".jupyter_cache").exists():
        pytest.skip("the book has not been built (make test builds it first)")
    assert build_pdf.uncached_chapters(ROOT) == [], "run `make book`: chapters missing from the cache"
    monkeypatch.setattr(libdeps, "chapter_key", lambda path, root: "a library edited since")
    assert len(build_pdf.uncached_chapters(ROOT)) == len(numbered_chapters())
    with pytest.raises(SystemExit, match="make book"):
        build_pdf.main([str(ROOT)])
