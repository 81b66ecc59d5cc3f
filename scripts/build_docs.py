#!/usr/bin/env python
"""The docs site: nbdev processes the notebooks, Sphinx (MyST-NB, sphinx-book-theme) renders them, offline.

nbdev's own processors (`nbdev.serve.proc_nbs`, as `nbdev_docs` runs them) render the API entries (`show_doc`), link
backticked names to their entries and drop hidden cells; this script turns the Quarto cell options they leave into
MyST-NB's (`output: asis` → markdown, `echo: false` → tag remove-input, `fig-alt` → the image's alt text), lays the
pages out in the order of nbs/sidebar.yml and runs Sphinx with docs/conf.py. MathJax comes from Debian's libjs-mathjax.
Quarto's `nbdev_docs` (nbs/_quarto.yml) still works where Quarto is installed.
Usage: python scripts/build_docs.py [DEST] [--sidebar YML]   (DEST: the `doc_path` of settings.ini, i.e. _docs/)
       python scripts/build_docs.py --readme   (write README.md from nbs/index.ipynb, as `nbdev_readme` would)
"""
import os, re, shutil, subprocess, sys, warnings
from pathlib import Path
import nbformat, yaml
from execnb.nbio import read_nb
from nbdev.process import NBProcessor
from nbdev.processors import _do_eval
from nbdev.config import get_config
from nbdev.doclinks import _build_modidx
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = Path('/usr/share/javascript/mathjax')
MATHJAX_PARTS = ['MathJax.js', 'config/TeX-AMS_CHTML.js', 'jax/input/TeX', 'jax/output/CommonHTML', 'jax/element',
                 'extensions', 'fonts/HTML-CSS/TeX/woff']

_directive = re.compile(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$')

def directives(src):
    "The `#| key: value` lines at the top of a cell, and the source without them"
    lines, opts = src.splitlines(), {}
    while lines and (m := _directive.match(lines[0])): opts[m[1]] = m[2].strip().strip('"\''); lines.pop(0)
    return opts, '\n'.join(lines)

def sidebar(path):
    "The pages of the hand-written sidebar.yml at `path` in reading order, each as (section or None, notebook)"
    out = []
    for item in yaml.safe_load(Path(path).read_text())['website']['sidebar']['contents']:
        out += [(item['section'], n) for n in item['contents']] if isinstance(item, dict) else [(None, item)]
    return out

def frontmatter(nb, pop=False):
    "nbdev's raw frontmatter cell of `nb` (title, description, output-file), taken off the notebook if `pop`"
    if not (nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.startswith('---')): return {}
    return yaml.safe_load((nb.cells.pop(0) if pop else nb.cells[0]).source.strip().strip('-')) or {}

def plain(md):
    "Markdown to plain text for an alt attribute: links, code, emphasis and TeX delimiters dropped"
    md = re.sub(r'!?\[([^\]]*)\]\([^)]*\)(\{[^}]*\})?', r'\1', md)
    md = re.sub(r'\\(hat|tilde|mathrm|text|operatorname)\{([^}]*)\}', r'\2', md)
    md = md.replace(r'\times', '×').replace(r'\,', ' ')
    return ' '.join(re.sub(r'[`*$]|\\(?=[a-zA-Z])', '', md).split())

def signature(md):
    "Tidy nbdev's rendering of a signature: no type inferred from a `None` default, class defaults by their names"
    md = re.sub(r'(\w+):NoneType=None', r'\1=None', md)
    return re.sub(r"<class '([\w.]+)'>", r'\1', md)

class Links:
    "nbdev's doc links (site URL or notebook name, Quarto's anchors) to the notebooks Sphinx resolves (`ext='html'`: to pages)"
    def __init__(self, site_url, pages):
        self.site_url, self.pages = site_url, pages                # pages: notebook name → page stem
        self.by_page = {stem: name for name, stem in pages.items()}
    def target(self, m, ext='ipynb'):
        url, frag = m[2], m[3] or ''
        if url.startswith(self.site_url):
            stem = url[len(self.site_url):].removesuffix('.html') or 'index'
            if stem not in self.by_page: return m[0]
        elif url in self.pages: stem = self.pages[url]
        else: return m[0]
        return f'{m[1]}({stem}.{ext}{frag})'
    def __call__(self, md, ext='ipynb'):
        md = re.sub(r'(\]\([^)\s]*\))\{[^}]*target=[^}]*\}', r'\1', md)   # pandoc attributes of links: {target="_blank" ...}
        return re.sub(r'(\])\(([^)#\s]*)(#[^)\s]*)?\)', lambda m: self.target(m, ext), md)

def source_links(md):
    "show_doc's [source](url) link put under the entry's heading (so it belongs to the entry), with a class to style it"
    return re.sub(r'^\[source\]\(([^)]*)\)\{[^}]*\}\s*\n(#+ .*)\n', r'\2\n\n[source](\1){.api-source}\n', md, flags=re.M)

def convert(nb, links, alt_missing, name, home=False):
    "A processed notebook in MyST-NB's terms; figures without `fig-alt` get their introducing prose as alt text"
    front = frontmatter(nb, pop=True)
    title = front.get('title', Path(name).stem)
    desc = links(front.get('description', ''))
    cells = [nbformat.v4.new_markdown_cell(('{.site-title}\n' if home else '') + f"# {title}\n\n" + (f"{{.description}}\n{desc}\n" if desc else ''))]
    prose = ''
    for c in nb.cells:
        if c.cell_type == 'markdown':
            if 'AUTOGENERATED' in c.source and c.source.lstrip().startswith('<!--'): continue
            c.source = links(c.source); prose = c.source; cells.append(c); continue
        if c.cell_type != 'code': cells.append(c); continue
        opts, c.source = directives(c.source)
        if opts.get('include') == 'false': continue
        if opts.get('output') == 'asis':           # show_doc: its markdown is part of the page, as Quarto inserts it
            md = '\n\n'.join(o.data['text/markdown'] for o in c.outputs if 'text/markdown' in o.get('data', {}))
            md = source_links(re.sub(r'^---\n', '', signature(md)))
            md = re.sub(r'^(#+ )', r'{.api}\n\1', md, count=1, flags=re.M)     # the entry's section, for the stylesheet
            cells.append(nbformat.v4.new_markdown_cell(links(md))); continue
        tags = c.metadata.setdefault('tags', [])
        if opts.get('echo') == 'false': tags.append('remove-input')
        if opts.get('output') == 'false': tags.append('remove-output')
        for o in c.outputs:
            if 'text/markdown' in o.get('data', {}): o.data['text/markdown'] = links(o.data['text/markdown'], 'html')   # outputs: plain links
        if any(k.startswith('image/') for o in c.outputs for k in o.get('data', {})):
            alt = opts.get('fig-alt')
            if not alt:
                paras = [p for p in prose.split('\n\n') if p.strip() and not p.startswith(('#', '$$', '```'))]
                alt = plain(paras[-1]) if paras else title
                alt_missing.append(f'{name}: {c.source.splitlines()[0][:60]}')
            c.metadata['mystnb'] = {'image': {'alt': alt}}
        cells.append(c)
    nb.cells = cells
    return title

def toctrees(toc, pages, titles):
    "The sidebar as Sphinx toctrees: one per section; a one-page section is a single entry named after the section"
    groups = {}
    for section, name in toc[1:]: groups.setdefault(section, []).append(name)
    out = []
    for section, names in groups.items():
        head = ['```{toctree}', ':hidden:']
        if len(names) == 1: out += head + ['', f'{section} <{pages[names[0]]}>', '```', '']
        else: out += head + [f':caption: {section}', ''] + [f'{titles[n]} <{pages[n]}>' for n in names] + ['```', '']
    return '\n'.join(out)

def mixed_import_cells(path):
    "Cells of notebook `path` that mix imports with other code: nbdev runs them while processing and prints each whole"
    nb = read_nb(path); NBProcessor(nb=nb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        return [f'{Path(path).name} cell {c.idx_}: {c.source.splitlines()[0][:60]}' for c in nb.cells
                if c.cell_type == 'code' and (caught.clear() or _do_eval(c) and caught)]

def build(dest=None, sidebar_yml=None):
    "Build the site into `dest` and return its folder"
    cfg = get_config()
    dest = Path(dest or cfg.config_path/cfg.doc_path)
    toc = sidebar(sidebar_yml or cfg.nbs_path/'sidebar.yml')
    names = [n for _, n in toc]
    if missing := [n for n in names if not (cfg.nbs_path/n).exists()]:
        sys.exit(f'nbs/sidebar.yml lists notebooks that do not exist: {missing}')
    skip = '^[_.]'                               # nbdev's default
    if unlisted := sorted({p.name for p in cfg.nbs_path.glob('*.ipynb')} - set(names)):
        print(f'warning: notebooks not in the sidebar, left out of the site: {unlisted}', file=sys.stderr)
        skip = f"^([_.]|({'|'.join(map(re.escape, unlisted))})$)"
    if mixed := [m for n in names for m in mixed_import_cells(cfg.nbs_path/n)]:
        print('cells that mix imports with other code (nbdev runs them to render the API entries; '
              'put the imports in a cell of their own):\n  ' + '\n  '.join(mixed), file=sys.stderr)
    os.environ['PYTHONWARNINGS'] = 'ignore:Found cells containing imports'   # said above in one line each
    refresh_quarto_yml(); _build_modidx()
    proc = proc_nbs(force=True, skip_file_re=skip)                  # nbdev's processors: show_doc, doc links, hidden cells

    nbs = {n: nbformat.read(proc/n, as_version=4) for n in names}
    pages = {n: Path(frontmatter(nbs[n]).get('output-file', Path(n).stem + '.html')).stem for n in names}
    links, alt_missing = Links(f"{cfg.doc_host}{cfg.doc_baseurl}/", pages), []
    src = cfg.config_path/'build'/'docs-src'
    shutil.rmtree(src, ignore_errors=True); src.mkdir(parents=True)
    titles = {n: convert(nbs[n], links, alt_missing, n, home=n == cfg.readme_nb) for n in names}
    nbs[cfg.readme_nb].cells.append(nbformat.v4.new_markdown_cell(toctrees(toc, pages, titles)))
    for n in names: nbformat.write(nbs[n], src/f'{pages[n]}.ipynb')
    for d in ('images',): shutil.copytree(proc/d, src/d)
    if alt_missing: print('figures without `#| fig-alt:`, described by the prose before them:\n  ' + '\n  '.join(alt_missing), file=sys.stderr)

    tmp = cfg.config_path/'build'/'docs-html'           # the site is moved into place only once it is complete
    shutil.rmtree(tmp, ignore_errors=True)
    res = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-W', '--keep-going', '-c', str(ROOT/'docs'),
                          '-E', '-d', str(cfg.config_path/'build'/'docs-doctrees'), str(src), str(tmp)], capture_output=True, text=True)
    if res.returncode: sys.exit(f'sphinx-build failed:\n{res.stderr}')
    for part in MATHJAX_PARTS:                   # docs/conf.py's mathjax_path: _static/mathjax/MathJax.js
        s, d = MATHJAX/part, tmp/'_static'/'mathjax'/part
        if not s.exists(): sys.exit(f"MathJax not found at {s}: install Debian's libjs-mathjax (make docs does it)")
        shutil.copytree(s, d) if s.is_dir() else (d.parent.mkdir(parents=True, exist_ok=True), shutil.copy2(s, d))
    shutil.rmtree(dest, ignore_errors=True); tmp.rename(dest)
    return dest

def readme_text():
    "README.md as it follows from the home-page notebook: its markdown, and its code cells as Python blocks"
    cfg = get_config()
    parts = []
    for c in nbformat.read(cfg.nbs_path/cfg.readme_nb, as_version=4).cells:
        opts, src = directives(c.source) if c.cell_type == 'code' else ({}, c.source)
        if 'hide' in opts or 'false' in (opts.get('include'), opts.get('echo')) or not src.strip(): continue   # README has no outputs
        md = src.strip().replace('](images/', f'](' + f'{cfg.nbs_path.name}/images/')   # README sits one folder up
        parts.append(md if c.cell_type == 'markdown' else f"```python\n{src.strip()}\n```")
    return '\n\n'.join(parts).replace('\n```\n\n```python\n', '\n\n') + '\n'   # consecutive code cells: one block

if __name__ == '__main__':
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('dest', nargs='?', help="the site's folder (default: settings.ini's doc_path)")
    p.add_argument('--sidebar', help='another sidebar.yml (default: nbs/sidebar.yml)')
    p.add_argument('--readme', action='store_true', help='write README.md from nbs/index.ipynb instead')
    a = p.parse_args()
    if a.readme: (get_config().config_path/'README.md').write_text(readme_text()); print('README.md written')
    else: print(f'docs written to {build(a.dest, a.sidebar)}/index.html')
