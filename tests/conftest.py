"Label caches the tests make go to a throw-away folder (aeft.voc.cache_dir reads AEFT_CACHE), unless the caller chose one"
import os, shutil, tempfile, pytest, torch
from aeft.coco import write_tiny_coco
from aeft.evaluate import coco_truth

_cache = None

def pytest_configure(config):
    "Set AEFT_CACHE before the test modules are imported: some copy os.environ for the commands they start"
    global _cache
    if 'AEFT_CACHE' not in os.environ: _cache = os.environ['AEFT_CACHE'] = tempfile.mkdtemp(prefix='aeft-cache-')

def pytest_unconfigure(config):
    if _cache: shutil.rmtree(_cache, ignore_errors=True)

@pytest.fixture
def one_thread():
    "In-process work on one thread: with other work on the 2 cores, 2 threads are much slower (`pytestmark = pytest.mark.usefixtures('one_thread')`)"
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)

@pytest.fixture(scope='session')
def coco_data(tmp_path_factory):
    "The COCO-format fixture of aeft.coco, written once and only read by the tests (copy it to break it): (root, its GroundTruth)"
    root = write_tiny_coco(tmp_path_factory.mktemp('coco')/'data')
    return root, coco_truth(root, progress=False)
