"Label caches the tests make go to a throw-away folder (aeft.voc.cache_dir reads AEFT_CACHE), unless the caller chose one"
import os, pytest

@pytest.fixture(autouse=True, scope='session')
def label_cache(tmp_path_factory):
    if 'AEFT_CACHE' not in os.environ: os.environ['AEFT_CACHE'] = str(tmp_path_factory.mktemp('aeft-cache'))
    yield
