"Label caches the tests make go to a throw-away folder (aeft.voc.cache_dir reads AEFT_CACHE), unless the caller chose one"
import os, pytest, torch

@pytest.fixture(autouse=True, scope='session')
def label_cache(tmp_path_factory):
    if 'AEFT_CACHE' not in os.environ: os.environ['AEFT_CACHE'] = str(tmp_path_factory.mktemp('aeft-cache'))
    yield

@pytest.fixture
def one_thread():
    "In-process work on one thread: with other work on the 2 cores, 2 threads are much slower (`pytestmark = pytest.mark.usefixtures('one_thread')`)"
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)
