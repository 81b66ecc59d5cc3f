"VOC + SBD data on disk: split arithmetic, label derivation and its cache, and the clear errors (fixtures written by aeft.voc.write_tiny_voc)"
import json, shutil, warnings
import numpy as np, pytest, torch
from PIL import Image
from aeft.voc import (write_tiny_voc, voc_root, voc_splits, image_labels, labels_from_xml, VOCDataset, train_transform,
                      load_mask, find_sbd, save_mask)

pytestmark = pytest.mark.filterwarnings('ignore:VOC split')  # the fixture's sizes are not VOC's

def _ids(r): return [f'2026_{i:06d}' for i in r]

@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    t = tmp_path_factory.mktemp('voc')
    return {k: write_tiny_voc(t/str(k), sbd=k) for k in ('mat', 'png', None)}

def test_splits_by_hand(roots):
    # VOC train 0-7, val 8-13, SBD train 4-19, SBD val 12-21: train_aug = ({4..21} | {0..7}) - {8..13}
    s = voc_splits(roots['mat'], roots['mat']/'benchmark_RELEASE', verbose=False)
    assert s['train'] == _ids(range(8)) and s['val'] == _ids(range(8, 14))
    assert s['train_aug'] == _ids(list(range(8)) + list(range(14, 22)))
    assert voc_splits(roots['png'], verbose=False) == s          # SegmentationClassAug found on its own
    with pytest.warns(UserWarning, match='no SBD found'):
        assert voc_splits(roots[None], verbose=False)['train_aug'] == _ids(range(8))

def test_counts_printed_and_checked(roots, capsys):
    with pytest.warns(UserWarning, match="'train_aug' has 16 images, the standard one 10,582"):
        voc_splits(roots['png'])
    assert 'train_aug: 16 images' in capsys.readouterr().out

def test_labels_match_xml_and_sources(roots, tmp_path):
    root = shutil.copytree(roots['mat'], tmp_path/'d')
    sbd = root/'benchmark_RELEASE'
    ids = _ids(range(24))
    labels = image_labels(root, ids, sbd, progress=False)
    voc = voc_root(root)
    assert labels == {i: labels_from_xml(voc/'Annotations'/f'{i}.xml') for i in ids}
    src = {k: v['source'] for k, v in json.loads((voc/'aeft_labels.json').read_text()).items()}
    assert [src[i] for i in _ids([0, 13, 14, 21, 22, 23])] == ['SegmentationClass']*2 + ['SBD']*2 + ['xml']*2
    # the PNG conversion gives the same labels
    assert image_labels(roots['png'], ids, progress=False) == labels

def test_label_cache_reused_and_atomic(roots, tmp_path):
    root = shutil.copytree(roots['png'], tmp_path/'d')
    voc, ids = voc_root(root), _ids(range(24))
    first = image_labels(root, ids, progress=False)
    cache = voc/'aeft_labels.json'
    assert cache.is_file() and not list(voc.glob('.*.tmp'))
    # change a mask on disk: the cache is reused, so the labels do not change ...
    m = np.asarray(Image.open(voc/'SegmentationClass'/'2026_000000.png')).copy(); m[:] = 20
    save_mask(m, voc/'SegmentationClass'/'2026_000000.png')
    mtime = cache.stat().st_mtime_ns
    assert image_labels(root, ids, progress=False) == first and cache.stat().st_mtime_ns == mtime
    # ... until the cache is removed; new ids are added to an existing cache
    cache.unlink()
    assert image_labels(root, ids[:1], progress=False) == {ids[0]: [19]}
    assert len(json.loads(cache.read_text())) == 1
    image_labels(root, ids, progress=False)
    assert len(json.loads(cache.read_text())) == 24

def test_xml_fallback_when_mask_missing(roots, tmp_path):
    root = shutil.copytree(roots['mat'], tmp_path/'d')
    sbd = find_sbd(voc_root(root), root/'benchmark_RELEASE')
    (sbd/'cls'/'2026_000016.mat').unlink()
    assert load_mask(voc_root(root), '2026_000016', sbd) == (None, None)
    labels = image_labels(root, ['2026_000016'], root/'benchmark_RELEASE', progress=False)
    assert labels['2026_000016'] == labels_from_xml(voc_root(root)/'Annotations'/'2026_000016.xml')

def test_dataset_and_augmentation(roots):
    ds = VOCDataset(roots['png'], 'train_aug', transform=train_transform(64, long_side=(64, 96)), masks=True)
    x, y, m = ds[0]
    assert x.shape == (3, 64, 64) and m.shape == (64, 64) and y.shape == (20,)
    assert set(y.nonzero().flatten().tolist()) >= set((m[(m > 0) & (m < 255)] - 1).unique().tolist())

def test_errors(roots, tmp_path):
    with pytest.raises(FileNotFoundError, match='VOC root not found.*\n.*expected layout'): voc_root(tmp_path/'nowhere')
    root = shutil.copytree(roots['png'], tmp_path/'d')
    voc = voc_root(root)
    (voc/'ImageSets/Segmentation/train.txt').write_text('2026_000000\n2026_777777\n')
    with pytest.raises(FileNotFoundError, match="image id '2026_777777' of the split has no file .*2026_777777.jpg"):
        VOCDataset(root, 'train')
    (voc/'JPEGImages'/'2026_000000.jpg').write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(ValueError, match='cannot read image .*2026_000000.jpg'): VOCDataset(root, ['2026_000000'])[0]
    (voc/'ImageSets/Segmentation/val.txt').unlink()
    with pytest.raises(FileNotFoundError, match='split list not found: .*val.txt'): voc_splits(root)
    shutil.rmtree(voc/'JPEGImages')
    with pytest.raises(FileNotFoundError, match='JPEGImages folder not found'): voc_root(root)
