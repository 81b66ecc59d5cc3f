"The synthetic dataset on disk and across processes: VOC export round trip, atomic writes, determinism per seed."
import hashlib, subprocess, sys, xml.etree.ElementTree as ET
import numpy as np, pytest, torch
from PIL import Image
import aeft.shapes as shapes
from aeft.shapes import Shapes, class_names, ignore_band, make_shapes, shapes_split, to_voc

DIGEST = """
import hashlib, sys
from aeft.shapes import make_shapes, ShapesConfig
d = make_shapes(200, seed=int(sys.argv[1]), cfg=ShapesConfig(num_classes=5))
h = hashlib.sha256()
for k in sorted(d): h.update(k.encode()); h.update(d[k].contiguous().numpy().tobytes())
print(h.hexdigest())
"""

def digest_in_subprocess(seed):
    r = subprocess.run([sys.executable, '-c', DIGEST, str(seed)], capture_output=True, text=True, check=True)
    return r.stdout.strip()

def test_same_seed_same_data_across_processes():
    a, b, c = digest_in_subprocess(7), digest_in_subprocess(7), digest_in_subprocess(8)
    assert a == b and a != c

def test_splits_are_reproducible_one_by_one():
    val, test = shapes_split('val', 10, seed=4), shapes_split('test', 10, seed=4)
    again = shapes_split('val', 10, seed=4)
    assert torch.equal(val.images, again.images) and torch.equal(val.masks, again.masks)
    assert not torch.equal(val.images, test.images)

@pytest.fixture(scope='module')
def splits(): return {s: shapes_split(s, n, seed=2, boundary=0) for s, n in (('train', 16), ('val', 8))}

def test_voc_round_trip(tmp_path, splits):
    voc = to_voc({'train': splits['train'], 'val': splits['val']}, tmp_path, boundary=1)
    names = class_names(splits['train'].cfg.num_classes)
    for split in ('train', 'val'):
        ds, ids = splits[split], (voc/'ImageSets/Segmentation'/f'{split}.txt').read_text().split()
        assert ids == [f'{split}_{i:05d}' for i in range(len(ds))]
        banded = ignore_band(ds.masks, 1)
        for i, name in enumerate(ids):
            png = Image.open(voc/'SegmentationClass'/f'{name}.png')
            assert png.mode == 'P' and png.getpalette()[255*3:256*3] == [224, 224, 192]
            mask = np.array(png)
            assert np.array_equal(mask, banded[i].numpy()) and (mask == 255).any()
            jpg = np.array(Image.open(voc/'JPEGImages'/f'{name}.jpg'))
            assert jpg.shape == (64, 64, 3) and np.abs(jpg.astype(float) - ds.images[i].permute(1, 2, 0).numpy()).mean() < 10
            ann = ET.parse(voc/'Annotations'/f'{name}.xml').getroot()
            assert ann.findtext('filename') == f'{name}.jpg' and ann.find('size').findtext('width') == '64'
            in_png = {names[k - 1] for k in np.unique(mask) if 0 < k < 255}
            assert {o.findtext('name') for o in ann.iter('object')} == in_png
            assert len(list(ann.iter('object'))) == int((ds.obj_class[i] >= 0).sum())
    assert sorted(p.name for p in tmp_path.iterdir()) == ['VOCdevkit']     # no temporary folder left behind

def test_failed_write_leaves_no_tree(tmp_path, splits, monkeypatch):
    real, calls = shapes._write_split, []
    def flaky(ds, split, *args):
        calls.append(split); real(ds, split, *args)
        if len(calls) == 2: raise OSError('disk full (injected)')
    monkeypatch.setattr(shapes, '_write_split', flaky)
    with pytest.raises(OSError, match='injected'): to_voc({'train': splits['train'], 'val': splits['val']}, tmp_path)
    assert list(tmp_path.iterdir()) == []

def test_failed_overwrite_keeps_the_old_tree(tmp_path, splits, monkeypatch):
    voc = to_voc({'train': splits['train']}, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    def broken(*args): raise KeyboardInterrupt
    monkeypatch.setattr(shapes, '_write_split', broken)
    with pytest.raises(KeyboardInterrupt): to_voc({'val': splits['val']}, tmp_path, overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before
    monkeypatch.undo()
    to_voc({'val': splits['val']}, tmp_path, overwrite=True)
    assert sorted(p.name for p in (voc/'ImageSets/Segmentation').iterdir()) == ['val.txt']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['VOCdevkit']

def test_refuses_bad_input(tmp_path, splits):
    with pytest.raises(ValueError, match='`splits`'): to_voc({}, tmp_path)
    with pytest.raises(ValueError, match='`splits`'): to_voc({'train': make_shapes(2)}, tmp_path)
    to_voc({'train': splits['train']}, tmp_path)
    with pytest.raises(FileExistsError, match='overwrite=True'): to_voc({'train': splits['train']}, tmp_path)

def test_the_voc_reader_reads_the_export(tmp_path, splits):
    "aeft.voc's VOCDataset reads the exported tree: same masks (with the band) and labels"
    import warnings
    voc_mod = pytest.importorskip('aeft.voc')
    to_voc({'train': splits['train'], 'val': splits['val']}, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')              # the split sizes are not VOC's
        ds = voc_mod.VOCDataset(tmp_path, split='val', masks=True)
    assert len(ds) == len(splits['val'])
    for i in range(len(ds)):
        x, y, m = ds[i]
        K = splits['val'].cfg.num_classes
        assert torch.equal(y[:K], splits['val'].labels[i]) and y[K:].sum() == 0
        assert torch.equal(m.as_subclass(torch.Tensor), ignore_band(splits['val'].masks[i:i+1], 1)[0])
