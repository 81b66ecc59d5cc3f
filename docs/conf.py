"Sphinx settings of the docs site: MyST-NB reads the notebooks nbdev has processed, sphinx-book-theme lays them out."
import sys
from pathlib import Path
from nbdev.config import get_config
sys.path.insert(0, str(Path(__file__).parent))

cfg = get_config()
project, author, copyright = cfg.title, cfg.author, cfg.copyright
html_title = cfg.title

extensions = ['myst_nb']
nb_execution_mode = 'off'                 # the notebooks ran under nbdev_test; their stored outputs are shown
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'attrs_inline', 'attrs_block']
myst_heading_anchors = 4

myst_heading_slug_func = 'aeft_slugs.pandoc_slug'   # ids as Quarto makes them, so nbdev's doc links find them
suppress_warnings = ['myst.header']       # an API entry (level 3) may follow the page's title directly, as in Quarto

# MathJax 2 served with the site (copied from Debian's libjs-mathjax by scripts/build_docs.py): no network needed
mathjax_path = 'mathjax/MathJax.js?config=TeX-AMS_CHTML'
mathjax2_config = {'tex2jax': {'inlineMath': [['\\(', '\\)']], 'displayMath': [['\\[', '\\]']],
                               'processEscapes': False, 'processEnvironments': False},
                   'CommonHTML': {'linebreaks': {'automatic': True}}, 'menuSettings': {'zoom': 'Click'}}
myst_update_mathjax = False

html_theme = 'sphinx_book_theme'
html_static_path = ['_static']
html_css_files = ['aeft.css']
templates_path = ['_templates']
html_theme_options = {
    'show_toc_level': 2,                   # the "Contents" list of each page: sections and the API entries under them
    'home_page_in_toc': False,
    'use_download_button': False,
    'use_fullscreen_button': False,
    'navigation_with_keys': False,
    'navbar_persistent': [],               # the search box is in the sidebar (and the article's header on a phone)
}
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None

def _tagged_multiline_math(app, doctree):
    "Sphinx wraps display math holding `\\\\` in `split`, where MathJax refuses `\\tag`: such formulas go to MathJax as written"
    from docutils import nodes
    for node in doctree.findall(nodes.math_block):
        tex = node.astext()
        if r'\tag' in tex and r'\\' in tex: node.children = [nodes.Text(rf'\[{tex}\]')]; node['nowrap'] = True

def setup(app): app.connect('doctree-read', _tagged_multiline_math)
