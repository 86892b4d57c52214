"""The built site (_build/html) as a reader sees it, in headless Debian Chromium with the network blocked.

`make test` builds the book first; after a build, run these alone with
`.venv/bin/python -m pytest tests/test_site.py`. The site is served on 127.0.0.1 by a thread in
the test process and the browser cannot resolve any other host, so a page that needs the network
shows up as a failed request or a console error. Chromium and chromedriver come from Debian
(tools/install_browser.sh installs them when missing).
"""

from __future__ import annotations

import fcntl
import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from conftest import BOOK_ROOT, REPO, load_book_config

pytestmark = pytest.mark.browser

SITE = BOOK_ROOT / "_build" / "html"
SCREENSHOTS = BOOK_ROOT / "_build" / "screenshots"
HOST = "127.0.0.1"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {HOST}", "--window-size=1280,900",
               "--disable-dev-shm-usage"]
# raw TeX that MathJax should have replaced (outside code blocks)
RAW_TEX = re.compile(r"\\frac|\\begin\{|\\\(|\\\[|\$\$")


def site_pages() -> list[str]:
    """Every page of the site (not the theme's or Sphinx's support files), relative to SITE."""
    if not SITE.is_dir():
        return []
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(SITE).parts))


PAGES = site_pages()
CHAPTER_PAGES = [p for p in PAGES if re.fullmatch(r"chapters/\d+[^/]*\.html", p)]


# --- static parsing -----------------------------------------------------------------------

class PageParser(HTMLParser):
    """Collects the URLs a page references and the ids it defines."""

    RESOURCE = {("img", "src"), ("script", "src"), ("iframe", "src"), ("source", "src"),
                ("video", "src"), ("audio", "src"), ("embed", "src"), ("link", "href")}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (kind, url): kind "a" or "resource"
        self.ids: set[str] = set()
        self.anchors: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.links.append(("a", a["href"]))
            self.anchors.append(a)
        for t, attr in self.RESOURCE:
            if tag == t and a.get(attr):
                if tag == "link" and "canonical" in (a.get("rel") or ""):
                    continue
                self.links.append(("resource", a[attr]))


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> PageParser:
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_site_is_built():
    assert (SITE / "intro.html").is_file(), f"no built site at {SITE}: run `make book` first"
    assert CHAPTER_PAGES, "the site has no chapter pages"


@pytest.mark.parametrize("page", PAGES)
def test_internal_links_and_images_resolve(page):
    """Every relative link, image, script and stylesheet exists; every #fragment exists in its target."""
    src = SITE / page
    broken = []
    for kind, url in parse(src).links:
        u = urlparse(url)
        if url.startswith("//") or u.scheme in ("http", "https"):
            if kind == "resource":  # loaded with the page, not a link the reader may click
                broken.append(f"off-site resource {url}")
            continue
        if u.scheme:  # mailto:, data:, javascript:
            continue
        target = src if not u.path else (src.parent / unquote(u.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() or SITE.resolve() not in target.resolve().parents:
            broken.append(f"{url} (no file {target})")
            continue
        if u.fragment and target.suffix == ".html" and unquote(u.fragment) not in parse(target).ids:
            broken.append(f"{url} (no id #{unquote(u.fragment)} in {target.relative_to(SITE)})")
    assert not broken, f"{page}: " + "; ".join(broken)


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_launch_buttons_open_the_reader_notebook(page):
    """Binder and Colab open this chapter's reader notebook (tools/reader_notebooks.py) on
    launch_buttons.notebooks_branch of repository.url; a third button downloads it from the site."""
    cfg = load_book_config()
    repo_url = cfg["repository"]["url"].rstrip("/")
    org_repo = urlparse(repo_url).path.strip("/")
    launch = cfg["launch_buttons"]
    branch = launch["notebooks_branch"]
    hrefs = [h for k, h in parse(SITE / page).links if k == "a"]
    expected = page.removesuffix(".html") + ".ipynb"
    binder = [h for h in hrefs if h.startswith(launch["binderhub_url"].rstrip("/") + "/")]
    colab = [h for h in hrefs if h.startswith(launch["colab_url"].rstrip("/") + "/")]
    assert len(binder) == 1 and len(colab) == 1, f"{page}: expected one Binder and one Colab link"
    m = re.fullmatch(r"https://[^/]+/v2/gh/(.+)/([^/?]+)\?urlpath=(?:lab/)?tree/(.+)", binder[0])
    assert m and m.group(1) == org_repo and m.group(2) == branch, binder[0]
    assert m.group(3) == expected, f"Binder opens {m.group(3)}, not {expected}"
    assert colab[0].endswith(f"/github/{org_repo}/blob/{branch}/{expected}"), colab[0]
    published = BOOK_ROOT / "_build" / "colab" / expected  # what CI pushes to the notebooks branch
    assert published.is_file(), f"{expected} (opened by the launch buttons) was not generated"
    download = f"_reader/{expected}"
    assert download in {urljoin(page, h) for h in hrefs}, f"{page}: no download of the reader notebook"
    assert (SITE / download).read_bytes() == published.read_bytes()


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_chapter_offers_the_source_and_one_notebook_the_reader_notebook(page):
    """The download menu: the MyST source and one .ipynb, the reader notebook that Colab opens."""
    stem = page.removesuffix(".html")
    hrefs = [urljoin(page, h) for k, h in parse(SITE / page).links if k == "a"]
    assert f"_sources/{stem}.md" in hrefs and (SITE / f"_sources/{stem}.md").is_file()
    notebooks = sorted({h for h in hrefs if h.endswith(".ipynb")
                        and not h.startswith(("http://", "https://"))})
    assert notebooks == [f"_reader/{stem}.ipynb"], f"{page}: notebook downloads {notebooks}"
    nb = json.loads((SITE / notebooks[0]).read_text())
    first = nb["cells"][0]["source"]
    assert "".join(first).startswith("#@title Install the book's library")


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_numbered_equations_and_figures(page):
    """Labelled equations carry a number; every numbered figure has a caption number (numfig)."""
    text = (SITE / page).read_text()
    for m in re.finditer(r'<div class="math[^"]*" id="(equation-[^"]+)">(.*?)</div>', text, re.S):
        assert 'class="eqno"' in m.group(2), f"{page}: {m.group(1)} has no equation number"
    for m in re.finditer(r'<figure class="[^"]*" id="([^"]+)">(.*?)</figure>', text, re.S):
        if "<figcaption" in m.group(2):
            assert 'class="caption-number"' in m.group(2), f"{page}: figure {m.group(1)} is not numbered"


def article(text: str) -> str:
    """The page's own content (not the sidebar, which lists the other chapters)."""
    return re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', text, re.S).group(1)


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_chapter_numbers_are_the_books(page):
    """chapters/NN_x.html is chapter NN: title, heading, sections, figures, equations, sidebar."""
    n = int(re.match(r"chapters/(\d+)_", page).group(1))
    text = (SITE / page).read_text()
    title = html.unescape(re.search(r"<title>(.*?)</title>", text, re.S).group(1))
    assert title.startswith(f"{n}. "), f"{page}: page title {title!r} does not start with {n}."
    body = article(text)
    assert re.search(rf'<h1><span class="section-number">{n}\. </span>', body), f"{page}: heading not numbered {n}"
    numbers = (re.findall(r'<span class="section-number">([\d.]+) </span>', body)
               + re.findall(r'class="caption-number">\w+\. ([\d.]+) ', body)
               + re.findall(r'class="eqno">\(([\d.]+)\)', body))
    wrong = [x for x in numbers if x.split(".")[0] != str(n)]
    assert not wrong, f"{page}: numbers of another chapter: {wrong}"
    # every other chapter in the sidebar carries its own file's number
    links = re.findall(r'href="(?:\.\./chapters/)?(\d+)_[\w]+\.html">\s*(\d+)\. ', text)
    assert links and all(int(a) == int(b) for a, b in links), f"{page}: sidebar numbers {links}"


def test_index_redirect_names_the_favicon():
    """A bare redirect page makes the browser ask for /favicon.ico (a 404 and a console error)."""
    text = (SITE / "index.html").read_text()
    if "Refresh" in text:
        assert re.search(r'<link rel="icon" href="_static/[^"]+"', text), "index.html redirects without a favicon"


def test_bibliography_lists_the_cited_works():
    text = (SITE / "appendix" / "bibliography.html").read_text()
    entries = re.findall(r'<div class="citation" id="[^"]+" role="doc-biblioentry">', text)
    assert entries, "the bibliography page lists no work"
    # the works the book rests on (cited by the chapters and the glossary)
    for author in ("Srivastava", "Krizhevsky", "Kaiming He", "Zhang", "Loshchilov", "Battaglia", "Russakovsky"):
        assert author in text, f"the bibliography does not list {author}"


def test_glossary_page_defines_terms():
    page = SITE / "appendix" / "glossary.html"
    assert page.is_file(), "appendix/glossary is not in the site (add it to _toc.yml)"
    terms = re.findall(r'<dt id="term-[^"]+"', page.read_text())
    assert len(terms) >= 20, f"only {len(terms)} glossary terms"


def test_figures_are_opaque_for_dark_mode():
    """Figures keep their white background in the theme's dark mode: no transparent PNG pixels."""
    from PIL import Image

    transparent = []
    for png in sorted((SITE / "_images").glob("*.png")):
        with Image.open(png) as im:
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                if im.convert("RGBA").getchannel("A").getextrema()[0] < 255:
                    transparent.append(png.name)
    assert not transparent, f"figures with transparent pixels (unreadable in dark mode): {transparent}"


# --- in the browser -----------------------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def site_url():
    """Serve SITE on 127.0.0.1 from a thread; the base URL ends with a slash."""
    server = http.server.ThreadingHTTPServer((HOST, 0), functools.partial(QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def ensure_chromium() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver, installing them once if missing (xdist-safe)."""
    def found():
        return shutil.which("chromium"), shutil.which("chromedriver")

    if not all(found()):
        with open("/tmp/dlbook-install-browser.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not all(found()):
                r = subprocess.run(["bash", str(REPO / "tools" / "install_browser.sh")],
                                   capture_output=True, text=True)
                assert r.returncode == 0, f"tools/install_browser.sh failed:\n{r.stdout}\n{r.stderr}"
    chromium, driver = found()
    assert chromium and driver, "chromium and chromedriver are needed: run tools/install_browser.sh"
    return chromium, driver


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const images = () => Promise.all([...document.images].map(img => {
  img.loading = "eager";
  return img.complete ? null : new Promise(r => { img.onload = img.onerror = r; });
}));
const math = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise : Promise.resolve();
images().then(math).then(() => done(true), e => done(String(e)));
"""

PAGE_STATE = """
const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let text = "";
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (el && !el.closest(skip)) text += walker.currentNode.textContent + " ";
}
const math = [...document.querySelectorAll(".math")];
return {
  text: text,
  math: math.length,
  untypeset: math.filter(e => !e.querySelector("mjx-container")).map(e => e.textContent.slice(0, 80)),
  mathErrors: [...document.querySelectorAll("mjx-merror")].map(e => e.getAttribute("data-mjx-error")),
  brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
};
"""


def load(driver, url: str) -> dict:
    """Open url, wait for images and MathJax; return console errors, off-site requests, page state."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what earlier pages left
    driver.get(url)
    assert driver.execute_async_script(WAIT_FOR_PAGE) is True
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    offsite = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            req = urlparse(msg["params"]["request"]["url"])
            if req.scheme not in ("data", "blob", "about") and req.hostname != HOST:
                offsite.append(req.geturl())
    return {"errors": errors, "offsite": offsite, **driver.execute_script(PAGE_STATE)}


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(page, browser, site_url):
    """No console error, nothing fetched off-site, every image loaded, all math typeset by MathJax."""
    state = load(browser, site_url + page)
    assert not state["errors"], f"{page}: console errors {state['errors']}"
    assert not state["offsite"], f"{page}: off-site requests {state['offsite']}"
    assert not state["brokenImages"], f"{page}: images that did not load {state['brokenImages']}"
    assert not state["untypeset"], f"{page}: math MathJax did not typeset {state['untypeset']}"
    assert not state["mathErrors"], f"{page}: MathJax errors {state['mathErrors']}"
    raw = RAW_TEX.findall(state["text"])
    assert not raw, f"{page}: raw TeX left in the page text: {sorted(set(raw))}"
    if 'class="math' in (SITE / page).read_text():
        assert state["math"] > 0 and browser.find_elements("css selector", "mjx-container")


def search_index() -> dict:
    text = (SITE / "searchindex.js").read_text()
    return json.loads(text[text.index("(") + 1:text.rindex(")")])


def search_words(page: str) -> list[str]:
    """Two words a reader might search for: the longest of the chapter's title, and the word of its
    body text that the fewest other pages contain (ties: the more frequent in the chapter)."""
    text = (SITE / page).read_text()
    title = html.unescape(re.search(r"<title>(.*?)</title>", text, re.S).group(1)).split(" \u2014 ")[0]
    title_word = max(re.findall(r"[A-Za-z]{4,}", title), key=len)
    import snowballstemmer  # what Sphinx's English search index uses

    stem = snowballstemmer.stemmer("porter").stemWord
    index = search_index()
    doc = index["docnames"].index(page.removesuffix(".html"))
    main = re.search(r'<main[^>]*>(.*)</main>', text, re.S).group(1)
    main = re.sub(r"<(pre|script|style)\b.*?</\1>", " ", main, flags=re.S)
    words = re.findall(r"[a-z]{6,}", html.unescape(re.sub(r"<[^>]+>", " ", main)).lower())
    candidates = []
    for w in set(words) - {title_word.lower()}:
        docs = index["terms"].get(stem(w))
        docs = [docs] if isinstance(docs, int) else (docs or [])
        if doc in docs:
            candidates.append((len(docs), -words.count(w), w))
    return [title_word] + [min(candidates)[2]] if candidates else [title_word]


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_search_finds_the_chapter(page, browser, site_url):
    from selenium.webdriver.support.ui import WebDriverWait

    for word in search_words(page):
        browser.get(f"{site_url}search.html?q={word}")
        WebDriverWait(browser, 20).until(
            lambda d: d.execute_script("const s = document.querySelector('#search-results .search-summary');"
                                       "return s && s.textContent.trim().length > 0;"))
        hits = browser.execute_script(
            "return [...document.querySelectorAll('#search-results ul.search li a')].map(a => a.href);")
        assert any(urlparse(h).path.endswith("/" + page) for h in hits), (
            f"searching {word!r} did not return {page}: {hits}")


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_exercises_have_collapsed_solutions(page, browser, site_url):
    """Every chapter ends with exercises; each solution is hidden until the reader opens it."""
    from selenium.webdriver.common.by import By

    load(browser, site_url + page)
    exercises = browser.find_elements(By.CSS_SELECTOR, "div.exercise")
    solutions = browser.find_elements(By.CSS_SELECTOR, "div.solution")
    assert exercises, f"{page} has no exercise"
    assert solutions, f"{page} has no solution"
    for sol in solutions:
        body = [e for e in sol.find_elements(By.XPATH, "./*") if "admonition-title" not in e.get_attribute("class")]
        assert "toggle-hidden" in sol.get_attribute("class") or not any(e.is_displayed() for e in body), (
            f"{page}: solution {sol.get_attribute('id')} is not collapsed")
    first = solutions[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", first)
    first.find_element(By.CSS_SELECTOR, "button.toggle-button").click()
    browser.implicitly_wait(0)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5).until(lambda d: "toggle-hidden" not in first.get_attribute("class"))


VISIBLE_SEARCH = """
return [...document.querySelectorAll('input[type=search], .search-button-field, form.bd-search')]
  .filter(e => { const r = e.getBoundingClientRect();
                 return e.offsetParent !== null && r.width > 0 && r.height > 0; }).length;
"""


@pytest.mark.parametrize("page", ["intro.html"] + CHAPTER_PAGES[:1])
def test_one_search_box(page, browser, site_url):
    """The page shows one search field (the sidebar's), not a second one in a header bar."""
    load(browser, site_url + page)
    assert browser.execute_script(VISIBLE_SEARCH) == 1


DATA_PAGES = [p for p in CHAPTER_PAGES if "Data source: <strong>" in (SITE / p).read_text()]


def test_some_chapter_says_which_data_it_ran_on():
    assert DATA_PAGES, "no chapter page shows a data admonition (display(data.admonition()) after loading)"


@pytest.mark.parametrize("page", DATA_PAGES)
def test_data_note_reads_properly(page, browser, site_url):
    """The data note is a block quote (plain Markdown, so Colab shows it too) that starts with a
    bold "Data." and names the book's data set, never a fallback."""
    from selenium.webdriver.common.by import By

    load(browser, site_url + page)
    boxes = [b for b in browser.find_elements(By.CSS_SELECTOR, "blockquote") if "Data source:" in b.text]
    assert boxes, f"{page}: no data note"
    for box in boxes:
        assert box.text.startswith("Data. Data source: "), f"{page}: data note starts {box.text[:60]!r}"
        assert box.find_element(By.CSS_SELECTOR, "strong").text == "Data."
        assert "fallback" not in box.text and "could not be downloaded" not in box.text


def pick_equation_page() -> str:
    """The first chapter with a numbered equation (else with any math; else any page with math)."""
    for pattern in ('class="eqno"', 'class="math'):
        for page in CHAPTER_PAGES + PAGES:
            if pattern in (SITE / page).read_text():
                return page
    pytest.fail("no page of the site contains math")


def test_screenshots(browser, site_url):
    """Home page, a chapter with a typeset equation (light and dark mode) under _build/screenshots/."""
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    load(browser, site_url + "intro.html")
    assert browser.save_screenshot(str(SCREENSHOTS / "home.png"))

    page = pick_equation_page()
    name = Path(page).stem
    for mode in ("light", "dark"):
        browser.get(site_url + "intro.html")
        browser.execute_script(f"localStorage.setItem('mode', '{mode}'); localStorage.setItem('theme', '{mode}');")
        state = load(browser, site_url + page)
        assert not state["errors"], state["errors"]
        assert browser.execute_script("return document.documentElement.dataset.theme") == mode
        eq = (browser.find_elements(By.CSS_SELECTOR, "div.math mjx-container")  # a numbered display equation
              or browser.find_elements(By.CSS_SELECTOR, ".math mjx-container"))
        assert eq, f"{page}: no typeset equation to show"
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", eq[0])
        suffix = "" if mode == "light" else "-dark"
        assert browser.save_screenshot(str(SCREENSHOTS / f"{name}{suffix}.png"))
        figures = browser.find_elements(By.CSS_SELECTOR, ".cell_output img, figure img")
        if mode == "dark" and figures:  # figures keep a white background in dark mode
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", figures[0])
            assert browser.save_screenshot(str(SCREENSHOTS / f"{name}-dark-figure.png"))
    browser.execute_script("localStorage.clear();")


# --- site polish: what a reader sees at 1280 px ---------------------------------------------

LAYOUT = """
const art = document.querySelector("article.bd-article");
const probe = document.createElement("span");
probe.style.fontSize = "small"; probe.textContent = "x"; art.appendChild(probe);
const small = parseFloat(getComputedStyle(probe).fontSize); probe.remove();
const wide = e => e.scrollWidth > e.clientWidth + 1;
const scrolls = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX) && wide(e);
const label = e => e.tagName.toLowerCase() + "." + [...e.classList].join(".");
const code = [...art.querySelectorAll("pre")].filter(e => wide(e) || wide(e.parentElement))
  .map(e => e.textContent.split("\\n").reduce((a, b) => a.length > b.length ? a : b).slice(0, 100));
const eqs = [...art.querySelectorAll('mjx-container[display="true"]')].filter(e => {
  const inner = e.firstElementChild;
  return inner && (inner.getBoundingClientRect().width > e.clientWidth + 1 || wide(e));
}).map(e => (e.closest(".math") || e).id || e.textContent.slice(0, 60));
const scrollers = [...art.querySelectorAll("*")].filter(e => scrolls(e) && !e.closest("pre")
  && !e.matches("pre, mjx-container")).map(e => label(e) + ": " + e.textContent.trim().slice(0, 60));
const images = [...art.querySelectorAll("img")].map(i => ({
  src: new URL(i.src).pathname, natural: i.naturalWidth, shown: i.getBoundingClientRect().width}));
let text = "";
const skip = "div.cell_input, .highlight-python, .highlight-ipython3, mjx-container, script, style, .math";
const walker = document.createTreeWalker(art, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (el && !el.closest(skip)) text += walker.currentNode.textContent + " ";
}
return {small, code, eqs, scrollers, images, text};
"""

RAW_FLOAT = re.compile(r"(?<![\w.])\d+\.\d{8,}")
BARE_INT = re.compile(r"(?<![\w.,])\d{5,}(?![\w,]|\.\d)")


def bib_keys() -> list[str]:
    return re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", (REPO / "references.bib").read_text())


def png_min_font_px(path: Path) -> float | None:
    """The smallest text height written into a figure by dlbook.plots.png (None: no record)."""
    from PIL import Image

    with Image.open(path) as im:
        value = im.info.get("dlbook:min-font-px")
    return float(value) if value else None


def plots_min_pt() -> int:
    from dlbook import plots

    return plots.MIN_FONT_PT


def plots_max_width() -> float:
    from dlbook import plots

    return plots.MAX_WIDTH


def polish_problems(state: dict, prose: str, root: Path = SITE) -> list[str]:
    """Everything item 6 of the site polish forbids, found in one page's layout state."""
    problems = []
    problems += [f"code line overflows the column: {line!r}" for line in state["code"]]
    problems += [f"equation clipped or scrolling: {eq}" for eq in state["eqs"]]
    problems += [f"scrolls sideways: {s}" for s in state["scrollers"]]
    for n, img in enumerate(state["images"], 1):
        path = root / unquote(img["src"]).lstrip("/")
        if not path.is_file() or path.suffix != ".png":
            continue
        px = png_min_font_px(path)
        if px is None:
            problems.append(f"image {n} of the page ({path.name}): drawn without dlbook.plots.use_style "
                            "(no text size record)")
            continue
        shown = px * img["shown"] / img["natural"] if img["natural"] else 0
        if shown < state["small"] - 0.05:
            problems.append(f"image {n} of the page ({path.name}): smallest text {shown:.1f} px tall, under "
                            f"the page's small print ({state['small']:.0f} px): a font size under "
                            f"{plots_min_pt()} pt, or a figure wider than {plots_max_width()} in")
    text = state["text"]
    problems += [f"raw float {m}" for m in sorted(set(RAW_FLOAT.findall(text)))]
    problems += [f"integer without thousands separators {m}" for m in sorted(set(BARE_INT.findall(prose)))]
    problems += [f"BibTeX key as text: {k}" for k in bib_keys() if re.search(rf"(?<![\w/#-]){re.escape(k)}(?![\w-])", text)]
    return problems


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_page_fits_the_column_and_reads_cleanly(page, browser, site_url):
    """At 1280 px: no code line or output overflows the column, no equation is clipped, no table
    or output block scrolls sideways, figure text is at least the page's small print, and the
    text has no raw float (8+ decimals), no bare integer of 5+ digits in the prose, no BibTeX key."""
    load(browser, site_url + page)
    state = browser.execute_script(LAYOUT)
    problems = polish_problems(state, browser.execute_script(PAGE_STATE)["text"])
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


def test_the_polish_checks_can_fail(tmp_path):
    """Each check fires on its own defect (a clean state passes)."""
    clean = {"small": 13.0, "code": [], "eqs": [], "scrollers": [], "images": [], "text": "acc 0.9712, 43,648 steps"}
    assert polish_problems(clean, clean["text"]) == []
    for key, value, prose in [("code", ["x" * 100], ""), ("eqs", ["equation-c14-x"], ""),
                              ("scrollers", ["div.output: a wide table"], ""),
                              ("text", "error 96.17145669800213 %", ""), ("text", "", "43648 steps"),
                              ("text", f"see {bib_keys()[0]} for this", "")]:
        state = dict(clean, **{key: value})
        assert polish_problems(state, prose), (key, value, prose)
    import matplotlib

    matplotlib.use("Agg")
    from dlbook import plots

    plots.use_style()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlabel("x")
    (tmp_path / "f.png").write_bytes(plots.png(fig))
    plt.close(fig)
    natural = 640
    fits = dict(clean, images=[{"src": "/f.png", "natural": natural, "shown": natural}])
    shrunk = dict(clean, images=[{"src": "/f.png", "natural": natural, "shown": natural * 0.58}])
    assert polish_problems(fits, "", tmp_path) == []
    assert polish_problems(shrunk, "", tmp_path)


def test_a_legend_outside_the_axes_does_not_widen_the_png_past_the_column():
    """`plots.png` narrows a figure whose tight box (an outside legend included) is wider than
    MAX_WIDTH, so the page never shrinks it; a figure that fits is saved as it is."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from dlbook import plots

    plots.use_style()
    fig, ax = plt.subplots(figsize=(6.4, 3))
    for k in range(4):
        ax.plot([0, 1], [k, k + 1], label=f"a rather long legend entry {k}")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    width = Image.open(io.BytesIO(plots.png(fig))).size[0]
    assert width <= plots.MAX_WIDTH * fig.dpi + 1, width
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    before = fig.get_size_inches().copy()
    plots.png(fig)
    assert (fig.get_size_inches() == before).all()
    plt.close(fig)


def test_a_title_wider_than_the_column_leaves_the_figure_as_it_was():
    """Narrowing cannot shorten a long suptitle: `png` keeps the figure's size (the page check
    then reports its shrunken text) instead of crushing the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlbook import plots

    plots.use_style()
    fig, ax = plt.subplots(figsize=(6.4, 3))
    fig.suptitle("a title far wider than the column of the page, " * 3)
    plots.png(fig)
    assert tuple(fig.get_size_inches()) == (6.4, 3)
    plt.close(fig)
