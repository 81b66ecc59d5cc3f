"The project's own machinery: the sync check catches hand edits and dirty notebooks; metadata agrees."
import configparser, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def settings(): 
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini'); return cfg['DEFAULT']

@pytest.fixture
def copy(tmp_path):
    "A copy of the project (without .venv) in which the sync check can be broken"
    dst = tmp_path/'aeft-copy'
    shutil.copytree(ROOT, dst, symlinks=True, ignore=shutil.ignore_patterns('.venv', '.git', '__pycache__', '_proc', '_docs'))
    return dst

def check_sync(path):
    env = {'PATH': f'{BIN}:/usr/bin:/bin', 'HOME': str(path)}
    return subprocess.run([str(path/'scripts/check_sync.sh'), str(path)], capture_output=True, text=True, env=env)

def test_sync_check_passes_on_the_project(copy):
    r = check_sync(copy)
    assert r.returncode == 0, r.stdout + r.stderr

def test_sync_check_catches_a_hand_edit_of_the_library(copy):
    gpp = copy/'aeft/gpp.py'
    gpp.write_text(gpp.read_text() + '\nHAND_EDIT = 1\n')
    r = check_sync(copy)
    assert r.returncode != 0 and 'nbdev_export' in r.stderr and 'gpp.py' in r.stdout
    assert 'HAND_EDIT' not in gpp.read_text()   # the check leaves the exported library behind

def test_sync_check_catches_an_uncleaned_notebook(copy):
    nb = copy/'nbs/02_gpp.ipynb'
    nb.write_text(nb.read_text().replace('"metadata": {}', '"metadata": {"collapsed": true, "scrolled": true}', 1))
    r = check_sync(copy)
    assert r.returncode != 0 and 'nbdev_clean' in r.stderr and '02_gpp.ipynb' in r.stdout

def test_version_and_pins_agree():
    import aeft
    cfg = settings()
    assert aeft.__version__ == cfg['version']
    lock = (ROOT/'requirements-lock.txt').read_text().split()
    for pin in ['torch==2.14.1', 'torchvision==0.29.1', 'nbdev==2.4.14']: assert pin in lock
    assert any(p.startswith('fastcore==1.') for p in lock) and any(p.startswith('execnb==0.1.') for p in lock)
    assert 'nbdev>=2.4.14,<2.5' in cfg['dev_requirements'].split()

def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci/run').read_text()
    assert 'make test' in readme.split('## Quick start')[1] and 'exec make test' in ci

def test_no_notebook_cell_mixes_imports_with_other_code():
    "nbdev's docs build executes every cell that imports something, so such cells must do nothing else"
    import ast, json
    ok = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    bad = []
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            src = ''.join(c['source'])
            if c['cell_type'] != 'code' or src.startswith('#| export'): continue
            tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!'))))
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)) and \
               any(not isinstance(n, ok) for n in tree.body): bad.append(f'{nb.name} cell {i}')
    assert not bad, f'cells mixing imports with other code: {bad}'
