"The docs site, built as `make docs` builds it and opened page by page in headless Chromium at desktop and phone widths."
import configparser, functools, html, http.server, importlib.util, re, subprocess, sys, threading, time
from pathlib import Path
from urllib.parse import urlparse
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT/'_docs'
SHOTS = SITE/'screenshots'
WIDTHS = {'desktop': 1400, 'phone': 420}
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-quic']

@pytest.fixture(scope='module')
def build_log():
    "Build the site with the documented command; its messages"
    res = subprocess.run([sys.executable, 'scripts/build_docs.py'], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, f'the docs build failed:\n{res.stdout}\n{res.stderr}'
    return res.stdout + res.stderr

@pytest.fixture(scope='module')
def site(build_log):
    "Serve the built site on localhost, yield its base URL"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(SITE)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_port}/'
    srv.shutdown()

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = '/usr/bin/chromium'
    for f in FLAGS + [f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']: opts.add_argument(f)
    drv = webdriver.Chrome(options=opts, service=Service('/usr/bin/chromedriver'))
    yield drv
    drv.quit()

def open_page(drv, url, width=WIDTHS['desktop']):
    "Load `url` in a window `width` px wide and wait until MathJax (on pages with formulas) has typeset it"
    if drv.get_window_size()['width'] != width: drv.set_window_size(width, 1000)
    drv.get(url)
    for _ in range(400):
        if drv.execute_script("return document.readyState == 'complete' && (!document.querySelector('script[src*=MathJax]') || "
                              "(window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending == 0 && MathJax.Hub.queue.running == 0))"):
            return
        time.sleep(0.05)
    raise AssertionError(f'MathJax did not finish on {url}')

def pages():
    "The site's content pages (Sphinx's own search and index pages left out)"
    return sorted(p.name for p in SITE.glob('*.html') if p.name not in ('search.html', 'genindex.html'))

def settings():
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    return cfg['DEFAULT']

def squeezed(drv):
    "Figures drawn at another aspect ratio than their own: (width, height, natural width, natural height)"
    shapes = drv.execute_script("return [...document.images].filter(i => i.width > 0).map(i => [i.width, i.height, i.naturalWidth, i.naturalHeight])")
    return [s for s in shapes if abs(s[0]/s[1] - s[2]/s[3]) > 0.02*s[2]/s[3] + 1/s[1]]

def page_scrolls_sideways(drv):
    return drv.execute_script("return document.documentElement.scrollWidth > document.documentElement.clientWidth")

def test_every_page_at_desktop_width(site, browser):
    "Links and anchors resolve, images load with alt text at their own proportions, formulas typeset, a contents list, no sideways scroll"
    names = pages()
    assert {'index.html', 'gpp.html', 'benchmark.html'} <= set(names)
    ids, links = {}, []
    for name in names:
        open_page(browser, site + name)
        imgs = browser.execute_script("return [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0, i.alt])")
        assert all(ok for _, ok, _ in imgs), f'{name}: broken images {[s[:80] for s, ok, _ in imgs if not ok]}'
        no_alt = [s[-40:] for s, _, alt in imgs if not alt.strip() or alt.startswith(('<Figure', 'No description'))]
        assert not no_alt, f'{name}: figures without a description (alt text): {no_alt}'
        assert not (bad := squeezed(browser)), f'{name}: figures drawn at the wrong aspect ratio (width, height, natural width, natural height): {bad}'
        assert not browser.find_elements('css selector', '.MathJax_Error, merror'), f'{name}: MathJax error'
        assert not page_scrolls_sideways(browser), f'{name}: the page scrolls sideways at 1400 px'
        toc = browser.execute_script("return [...document.querySelectorAll('#pst-page-toc-nav a')].filter(a => a.offsetParent).map(a => a.textContent.trim())")
        assert toc, f'{name}: no visible contents list ("Contents") of the page'
        ids[name] = set(browser.execute_script("return [...document.querySelectorAll('[id]')].map(e => e.id)"))
        links += [(name, h) for h in browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")]
    for name, href in links:
        u = urlparse(href)
        if u.netloc != urlparse(site).netloc: continue
        target = u.path.lstrip('/') or 'index.html'
        if target.startswith('_') or target in ('search.html', 'genindex.html'): continue
        assert target in ids, f'{name}: broken link {href}'
        assert not u.fragment or u.fragment in ids[target], f'{name}: link {href} points to a missing anchor'

def test_every_page_at_phone_width(site, browser):
    "At 420 px: no sideways scroll, figures at their own proportions, the sidebar folded away, the text using the screen"
    for name in pages():
        open_page(browser, site + name, WIDTHS['phone'])
        assert not page_scrolls_sideways(browser), f'{name}: the page scrolls sideways at 420 px'
        assert not (bad := squeezed(browser)), f'{name}: figures drawn at the wrong aspect ratio at 420 px: {bad}'
        side, text = browser.execute_script("""const vis = e => { if (!e || !e.offsetParent) return 0;
            const r = e.getBoundingClientRect(); return Math.max(0, Math.min(r.right, innerWidth) - Math.max(r.left, 0)); };
            return [vis(document.querySelector('.bd-sidebar-primary')), vis(document.querySelector('.bd-article'))]""")
        assert side < 0.6*WIDTHS['phone'], f'{name}: the sidebar takes {side} px of a 420 px screen'
        assert text > 0.8*browser.execute_script('return document.documentElement.clientWidth'), f'{name}: the text is only {text} px wide'

def test_source_links_point_into_the_repository(site, build_log):
    "Every API entry's [source] link is the repository of settings.ini at the line that defines the name; signatures read as written"
    s = settings()
    prefix = f"{s['git_url']}/blob/{s['branch']}/{s['lib_path']}/"
    seen = 0
    for name in pages():
        text = (SITE/name).read_text()
        assert 'NoneType' not in text, f'{name}: a signature shows the type of a None default'
        assert 'Call self as a function' not in text, f'{name}: an API entry without its own docstring'
        for entry, url in re.findall(r'<h\d>([^<]+)<a class="headerlink"[^>]*>[^<]*</a></h\d>\s*<p><a class="[^"]*api-source[^"]*" href="([^"]+)"', text):
            assert url.startswith(prefix), f'{name}: source link {url} is not in {prefix}'
            path, line = url[len(s['git_url'] + '/blob/' + s['branch'] + '/'):].split('#L')
            assert (ROOT/path).is_file(), f'{name}: {url} names a file the repository does not have'
            src = (ROOT/path).read_text().splitlines()[int(line) - 1]
            assert re.match(rf'\s*(async def|def|class) {re.escape(entry.split(".")[-1])}\b', src), f'{name}: {entry} links to {url}, which holds {src!r}'
            seen += 1
    assert seen > 100, f'only {seen} source links'

def test_build_names_cells_instead_of_printing_them(build_log):
    "nbdev's warning about cells mixing imports and code prints each whole cell: the build says it in one line per cell"
    assert 'Found cells containing imports' not in build_log

def test_search_finds_the_gpp_chapter(site, browser):
    open_page(browser, site + 'search.html?q=sign-preserving')
    for _ in range(200):
        hits = browser.execute_script("return [...document.querySelectorAll('#search-results li a')].map(a => a.getAttribute('href'))")
        if hits: break
        time.sleep(0.05)
    assert any(h.startswith('gpp.html') for h in hits), f'search for "sign-preserving" gave {hits}'

def test_pages_speak_of_the_method_only(site):
    "The rendered text of every page (scripts, styles and tags removed) has no words about how the project is run"
    words = re.compile(r'\b(goals?|issues?|sessions?|lent to)\b', re.I)
    found = {}
    for name in pages():
        text = html.unescape(re.sub(r'<[^>]+>', ' ', re.sub(r'<(script|style)\b.*?</\1>', ' ', (SITE/name).read_text(), flags=re.S)))
        if hits := [' '.join(text[max(0, m.start() - 40):m.end() + 20].split()) for m in words.finditer(text)]: found[name] = hits
    assert not found, found

def names_at_the_top(drv):
    "How many times the site's name is shown in the top 300 px of the window"
    return drv.execute_script("""return [...document.querySelectorAll('body *')].filter(e =>
        [...e.childNodes].filter(n => n.nodeType == 3).map(n => n.textContent).join('').trim() == 'aeft' && e.offsetParent && (r => r.height > 0 && r.top < 300 && r.left >= 0 && r.right <= innerWidth)(e.getBoundingClientRect())).length""")

def test_home_gpp_and_benchmark_pages_with_screenshots(site, browser):
    SHOTS.mkdir(exist_ok=True)
    for kind, width in WIDTHS.items():
        suffix = '' if kind == 'desktop' else '-phone'
        open_page(browser, site + 'index.html', width)
        assert browser.execute_script("return [...document.images].some(i => i.src.endsWith('demo_cams.png') && i.naturalWidth > 0)"), \
            'the home page must open with the demo figure'
        assert names_at_the_top(browser) == 1, f'the name "aeft" is shown {names_at_the_top(browser)} times at the top at {width} px'
        browser.save_screenshot(str(SHOTS/f'index{suffix}.png'))
        open_page(browser, site + 'gpp.html', width)
        n = browser.execute_script("return document.querySelectorAll('.MathJax_CHTML').length")
        assert n >= 40, f'only {n} typeset formulas on the GPP chapter'
        prose = browser.execute_script("return [...document.querySelectorAll('article p, article li')].filter(e => !e.closest('.cell')).map(e => e.innerText).join(' ')")
        assert 'coarse-to-fine' in prose.lower() and '$$' not in prose and r'\hat P' not in prose   # no raw TeX in the prose
        assert browser.execute_script("return [...document.images].length") >= 4     # the chapter's figures
        browser.save_screenshot(str(SHOTS/f'gpp{suffix}.png'))
        open_page(browser, site + 'benchmark.html', width)
        browser.save_screenshot(str(SHOTS/f'benchmark{suffix}.png'))
    assert all(p.stat().st_size > 10_000 for p in SHOTS.glob('*.png')) and len(list(SHOTS.glob('*.png'))) >= 6

def test_light_and_dark_themes(site, browser):
    "The colour-mode menu switches the page between light and dark (a screenshot of the dark GPP chapter is kept)"
    open_page(browser, site + 'gpp.html')
    def mode(m):
        browser.execute_script(f"document.querySelector('.theme-change-button[data-mode={m}]').click()")
        return browser.execute_script("return document.documentElement.dataset.theme")
    assert mode('dark') == 'dark'
    SHOTS.mkdir(exist_ok=True); browser.save_screenshot(str(SHOTS/'gpp-dark.png'))
    assert mode('light') == 'light'
    mode('auto')

def build_docs():
    "scripts/build_docs.py as a module"
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'scripts/build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

BOOK = ['Ground floor', "GAP's failure modes", 'Gated Pyramid Pooling', 'Backbones and weights', 'Erasing', 'Triplet', 'Data',
        'Training', 'CAMs and metrics', 'Commands', 'Pseudo masks', 'Segmentation', 'The whole recipe', 'The benchmark study',
        'The VOC pipeline', 'The COCO pipeline', 'Your own data', 'Fidelity to the released code', 'Speed', 'Extending aeft']

def test_sidebar_lists_every_notebook_in_book_order():
    "nbs/sidebar.yml holds every notebook once, numbered in reading order, in the story's sections"
    toc = build_docs().sidebar(ROOT/'nbs/sidebar.yml')
    names = [n for _, n in toc]
    assert sorted(names) == sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb')), 'nbs/sidebar.yml must list every notebook once'
    assert names[0] == 'index.ipynb' and names[1:] == sorted(names[1:]), 'notebook numbers must follow the sidebar order'
    assert list(dict.fromkeys(s for s, _ in toc if s)) == BOOK

def test_sidebar_shows_the_book(site, browser):
    "The pages' sidebar: the sections in book order; a one-page section is one entry named after it, not a title under a title"
    open_page(browser, site + 'benchmark.html')
    sections = browser.execute_script("""return [...document.querySelectorAll('.bd-docs-nav .bd-sidenav')].flatMap(ul => {
        const p = ul.previousElementSibling, entries = [...ul.children].map(li => li.querySelector('a').textContent.trim());
        return p && p.matches('p.caption') ? [[p.textContent.trim(), entries]] : entries.map(e => [e, []]); })""")
    assert [s for s, _ in sections] == BOOK
    assert not [s for s, entries in sections if s in entries], 'a section repeats its page title'
    assert browser.execute_script("return document.querySelector('.bd-sidenav li.current > a').textContent.trim()") == 'The benchmark study'

def test_readme_is_the_home_page(monkeypatch):
    "README.md is what `make readme` writes from nbs/index.ipynb, so the two cannot drift apart"
    monkeypatch.chdir(ROOT)
    assert (ROOT/'README.md').read_text() == build_docs().readme_text(), 'README.md differs from nbs/index.ipynb: run `make readme`'
