"The offline docs site, opened page by page in headless Chromium: links, images, typeset math, screenshots."
import functools, http.server, importlib.util, subprocess, sys, threading, time
from pathlib import Path
from urllib.parse import urljoin, urlparse
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT/'_docs'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-quic', '--window-size=1400,1000']

@pytest.fixture(scope='module')
def site():
    "Build the site with the documented command, serve it on localhost, yield its base URL"
    subprocess.run([sys.executable, 'scripts/build_docs.py'], cwd=ROOT, check=True, capture_output=True)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(SITE))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
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

def open_page(drv, url):
    "Load `url` and wait until MathJax has finished typesetting it"
    drv.get(url)
    for _ in range(200):
        if drv.execute_script("return window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending == 0 && "
                              "MathJax.Hub.queue.running == 0"): return
        time.sleep(0.05)
    raise AssertionError(f'MathJax did not finish on {url}')

def pages(): return sorted(p.name for p in SITE.glob('*.html'))

def test_every_page_has_working_links_and_images(site, browser):
    names = pages()
    assert {'index.html', 'gpp.html'} <= set(names)
    ids, links = {}, []
    for name in names:                                   # one visit per page: images, MathJax errors, ids, links
        open_page(browser, site + name)
        imgs = browser.execute_script("return [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0])")
        assert all(ok for _, ok in imgs), f'{name}: broken images {[s[:80] for s, ok in imgs if not ok]}'
        shapes = browser.execute_script("return [...document.images].filter(i => i.width > 0).map(i => [i.width, i.height, i.naturalWidth, i.naturalHeight])")
        squeezed = [s for s in shapes if abs(s[0]/s[1] - s[2]/s[3]) > 0.02*s[2]/s[3] + 1/s[1]]   # drawn at another aspect ratio
        assert not squeezed, f'{name}: figures drawn at the wrong aspect ratio (width, height, natural width, natural height): {squeezed}'
        assert not browser.find_elements('css selector', '.MathJax_Error, merror'), f'{name}: MathJax error'
        ids[name] = set(browser.execute_script("return [...document.querySelectorAll('[id]')].map(e => e.id)"))
        links += [(name, h) for h in browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")]
    for name, href in links:
        u = urlparse(href)
        if u.netloc != urlparse(site).netloc: continue
        target = u.path.lstrip('/') or 'index.html'
        assert target in ids, f'{name}: broken link {href}'
        assert not u.fragment or u.fragment in ids[target], f'{name}: link {href} points to a missing anchor'

def test_pages_speak_of_the_method_only(site):
    "The rendered text of every page (scripts, styles and tags removed) has no words about how the project is run"
    import html, re
    words = re.compile(r'\b(goals?|issues?|sessions?|lent to)\b', re.I)
    found = {}
    for page in SITE.glob('*.html'):
        text = html.unescape(re.sub(r'<[^>]+>', ' ', re.sub(r'<(script|style)\b.*?</\1>', ' ', page.read_text(), flags=re.S)))
        if hits := [' '.join(text[max(0, m.start() - 40):m.end() + 20].split()) for m in words.finditer(text)]: found[page.name] = hits
    assert not found, found

def test_gpp_equations_are_typeset_and_screenshots_saved(site, browser):
    shots = SITE/'screenshots'; shots.mkdir(exist_ok=True)
    open_page(browser, site + 'index.html')
    assert browser.execute_script("return [...document.images].some(i => i.src.endsWith('images/demo_cams.png') && i.naturalWidth > 0)"), \
        'the home page must open with the demo figure'
    browser.save_screenshot(str(shots/'index.png'))
    open_page(browser, site + 'gpp.html')
    n = browser.execute_script("return document.querySelectorAll('.MathJax_CHTML').length")
    assert n >= 40, f'only {n} typeset formulas on the GPP chapter'
    prose = browser.execute_script("return [...document.querySelectorAll('.text_cell_render')].map(e => e.innerText).join(' ')")
    assert 'coarse-to-fine' in prose.lower() and '$$' not in prose and r'\hat P' not in prose   # no raw TeX in the prose
    assert browser.execute_script("return [...document.images].length") >= 4     # the chapter's figures
    browser.save_screenshot(str(shots/'gpp.png'))
    assert (shots/'index.png').stat().st_size > 10_000 and (shots/'gpp.png').stat().st_size > 10_000

def build_docs():
    "scripts/build_docs.py as a module"
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'scripts/build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

BOOK = ['Ground floor', "GAP's failure modes", 'Gated Pyramid Pooling', 'Backbones and weights', 'Erasing', 'Triplet', 'Data',
        'Training', 'CAMs and metrics', 'Commands', 'Pseudo masks', 'Segmentation', 'The benchmark study', 'The VOC pipeline',
        'The COCO pipeline',
        'Fidelity to the released code', 'Speed']

def test_sidebar_reads_as_the_book(site, browser):
    "nbs/sidebar.yml holds every notebook once, numbered in reading order, in the story's sections, and the pages show them"
    toc = build_docs().sidebar(ROOT/'nbs/sidebar.yml')
    names = [n for _, n in toc]
    assert sorted(names) == sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb')), 'nbs/sidebar.yml must list every notebook once'
    assert names[0] == 'index.ipynb' and names[1:] == sorted(names[1:]), 'notebook numbers must follow the sidebar order'
    assert list(dict.fromkeys(s for s, _ in toc if s)) == BOOK
    open_page(browser, site + 'benchmark.html')
    shown = browser.execute_script("return [...document.querySelectorAll('.sidebar li.section')].map(e => e.textContent)")
    assert shown == BOOK
    assert browser.execute_script("return document.querySelector('.sidebar li.current').textContent") == 'The benchmark study'

def test_readme_is_the_home_page(monkeypatch):
    "README.md is what `make readme` writes from nbs/index.ipynb, so the two cannot drift apart"
    monkeypatch.chdir(ROOT)
    assert (ROOT/'README.md').read_text() == build_docs().readme_text(), 'README.md differs from nbs/index.ipynb: run `make readme`'
