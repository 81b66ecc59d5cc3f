"VOC + SBD data on disk: split arithmetic, image labels from XML or masks and their caches, the training augmentation's released defaults, the clear errors, and the one VOC-format writer (the fixture aeft.voc.write_tiny_voc and the shapes export aeft.voc.to_voc)"
import json, shutil, warnings, xml.etree.ElementTree as ET
import numpy as np, pytest, torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
import aeft.voc as voc_mod
from aeft.shapes import class_names, ignore_band, make_shapes, shapes_split
from aeft.voc import (write_tiny_voc, voc_root, voc_splits, image_labels, labels_from_xml, labels_from_mask, label_differences,
                      label_cache, VOCDataset, voc_train_dataset, train_transform, RandomLongSide, normalize, load_mask, find_sbd, save_mask,
                      write_voc_image, to_voc, VOC_CLASSES)

pytestmark = pytest.mark.filterwarnings('ignore:VOC split')  # the fixture's sizes are not VOC's

def _ids(r): return [f'2026_{i:06d}' for i in r]
def _copy(src, dst): return shutil.copytree(src, dst)
OMITS = '2026_000019'   # SBD only; its SBD mask leaves out class 3 (boat), which its XML lists

@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    "Each test's label caches in a folder of its own"
    d = tmp_path_factory.mktemp('cache'); monkeypatch.setenv('AEFT_CACHE', str(d)); return d

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

def test_labels_from_xml_by_default(roots, tmp_path, capsys):
    root = _copy(roots['mat'], tmp_path/'d')
    sbd, voc, ids = root/'benchmark_RELEASE', voc_root(root), _ids(range(24))
    labels = image_labels(root, ids, sbd, progress=False)
    assert labels == {i: labels_from_xml(voc/'Annotations'/f'{i}.xml') for i in ids}
    assert labels[OMITS] == [1, 2, 3]                             # the class the SBD mask leaves out is there
    cache = json.loads(label_cache(root, 'xml', sbd).read_text())
    assert cache['labels'] == 'xml' and {v['source'] for v in cache['images'].values()} == {'xml'}
    assert capsys.readouterr().out == ''                          # every image has its XML: no fallback to report
    assert image_labels(roots['png'], ids, progress=False) == labels

def test_labels_from_masks(roots, tmp_path, capsys):
    root = _copy(roots['mat'], tmp_path/'d')
    sbd, voc, ids = root/'benchmark_RELEASE', voc_root(root), _ids(range(24))
    labels = image_labels(root, ids, sbd, labels='masks', progress=False)
    assert labels[OMITS] == [1, 2] == labels_from_mask(load_mask(voc, OMITS, find_sbd(voc, sbd))[0])
    assert labels['2026_000003'] == labels_from_mask(Image.open(voc/'SegmentationClass'/'2026_000003.png'))
    src = {k: v['source'] for k, v in json.loads(label_cache(root, 'masks', sbd).read_text())['images'].items()}
    assert [src[i] for i in _ids([0, 13, 14, 21, 22, 23])] == ['SegmentationClass']*2 + ['SBD']*2 + ['xml']*2
    assert "labels='masks': 2 of 24 images have no mask; their labels come from their XML annotations" in capsys.readouterr().out
    assert image_labels(roots['png'], ids, labels='masks', progress=False) == labels
    # the two sources differ on that image only
    xml = image_labels(root, ids, sbd, progress=False)
    assert [i for i in ids if xml[i] != labels[i]] == [OMITS]

def test_mask_fallback_counted_when_xml_missing(roots, tmp_path, capsys):
    root = _copy(roots['png'], tmp_path/'d')
    voc, ids = voc_root(root), _ids(range(24))
    for i in ('2026_000003', OMITS): (voc/'Annotations'/f'{i}.xml').unlink()
    labels = image_labels(root, ids, progress=False)
    assert "labels='xml': 2 of 24 images have no XML annotation; their labels come from their masks" in capsys.readouterr().out
    assert labels[OMITS] == [1, 2] and labels['2026_000003'] == [2, 3]
    image_labels(root, ids, progress=False)                       # from the cache: counted again
    assert '2 of 24 images have no XML annotation' in capsys.readouterr().out
    (voc/'Annotations'/'2026_000023.xml').unlink()                # no XML and no mask: its cached labels are not used
    with pytest.raises(FileNotFoundError, match=r"image '2026_000023' has no annotation .*2026_000023.xml and no mask"):
        image_labels(root, ['2026_000023'], progress=False)

def test_xml_fallback_when_mask_missing(roots, tmp_path):
    root = _copy(roots['mat'], tmp_path/'d')
    sbd = find_sbd(voc_root(root), root/'benchmark_RELEASE')
    (sbd/'cls'/'2026_000016.mat').unlink()
    assert load_mask(voc_root(root), '2026_000016', sbd) == (None, None)
    labels = image_labels(root, ['2026_000016'], root/'benchmark_RELEASE', labels='masks', progress=False)
    assert labels['2026_000016'] == labels_from_xml(voc_root(root)/'Annotations'/'2026_000016.xml')

def test_label_cache_reused_keyed_and_atomic(roots, tmp_path, cache, monkeypatch):
    root = _copy(roots['png'], tmp_path/'d')
    voc, ids = voc_root(root), _ids(range(24))
    first = image_labels(root, ids, progress=False)
    path = label_cache(root)
    assert path.parent == cache and path.is_file() and not list(cache.glob('.*.tmp'))
    assert not list(voc.rglob('aeft_labels_*')) and not list(voc.rglob('.*.tmp'))   # nothing written into the data
    # reused: nothing is read while the files are unchanged ...
    reads = []
    real = voc_mod.labels_from_xml
    monkeypatch.setattr(voc_mod, 'labels_from_xml', lambda p: reads.append(p.stem) or real(p))
    mtime = path.stat().st_mtime_ns
    assert image_labels(root, ids, progress=False) == first and reads == [] and path.stat().st_mtime_ns == mtime
    # ... and an edited annotation is read again, alone
    (voc/'Annotations'/'2026_000000.xml').write_text('<annotation><object><name>tvmonitor</name></object></annotation>')
    assert image_labels(root, ids, progress=False)['2026_000000'] == [19] and reads == ['2026_000000']
    monkeypatch.undo(); monkeypatch.setenv('AEFT_CACHE', str(cache))
    # the masks' labels are cached apart and never read from the XML cache
    masks = image_labels(root, ids, labels='masks', progress=False)
    assert label_cache(root, 'masks').is_file() and masks['2026_000000'] == first['2026_000000']
    with pytest.raises(ValueError, match=r"label cache .*aeft_labels_xml_\w+.json holds labels from 'xml', expected labels from 'masks'"):
        image_labels(root, ids, labels='masks', cache=path.name, progress=False)
    # keyed by the folder: a copy has its own cache, and another folder's cache is refused
    other = _copy(root, tmp_path/'e')
    assert label_cache(other) != path and label_cache(other).parent == cache
    with pytest.raises(ValueError, match=r"holds the labels of VOC folder .*/d/VOCdevkit/VOC2012 with SBD .*, expected .*/e/VOCdevkit/VOC2012"):
        image_labels(other, ids, cache=path, progress=False)
    # a removed cache is rebuilt; new ids are added to an existing cache
    path.unlink()
    assert image_labels(root, ids[:1], progress=False) == {ids[0]: [19]}
    assert len(json.loads(path.read_text())['images']) == 1
    image_labels(root, ids, progress=False)
    assert len(json.loads(path.read_text())['images']) == 24
    # a cache that does not say where its labels come from, or holds what are not class indices, is refused
    (cache/'old.json').write_text(json.dumps({ids[0]: dict(labels=[0], source='SegmentationClass')}))
    with pytest.raises(ValueError, match='holds no record of its label source'): image_labels(root, ids, cache='old.json')
    c = json.loads(path.read_text()); c['images'][ids[1]]['labels'] = [127, 191, 223]; (cache/'wrong.json').write_text(json.dumps(c))
    with pytest.raises(ValueError, match=r"wrong.json holds .*127, 191, 223.* for image '2026_000001'; expected class indices 0–19"):
        image_labels(root, ids, cache='wrong.json')
    (cache/'broken.json').write_text('{"labels": ')
    with pytest.raises(ValueError, match=r'label cache .*broken.json is not valid JSON'): image_labels(root, ids, cache='broken.json')
    with pytest.raises(ValueError, match="`labels` must be one of"): image_labels(root, ids, labels='tags')

def test_label_differences(roots):
    d = label_differences(roots['mat'], _ids(range(24)), roots['mat']/'benchmark_RELEASE', progress=False)
    assert d['ids'] == [OMITS] and d['xml_only'] == {'boat': 1} and d['mask_only'] == {}

def test_dataset_labels_switch(roots):
    ds = VOCDataset(roots['png'], 'train_aug')
    j = ds.ids.index(OMITS)
    assert ds.target(j).nonzero().flatten().tolist() == [1, 2, 3]
    assert VOCDataset(roots['png'], 'train_aug', labels='masks').target(j).nonzero().flatten().tolist() == [1, 2]
    assert voc_train_dataset(roots['png'], size=64).label_source == 'xml'
    assert voc_train_dataset(roots['png'], size=64, labels='masks').labels[OMITS] == [1, 2]

def test_dataset_and_augmentation(roots):
    ds = VOCDataset(roots['png'], 'train_aug', transform=train_transform(64, long_side=(64, 96)), masks=True)
    x, y, m = ds[0]
    assert x.shape == (3, 64, 64) and m.shape == (64, 64) and y.shape == (20,)
    assert set(y.nonzero().flatten().tolist()) >= set((m[(m > 0) & (m < 255)] - 1).unique().tolist())

def test_colour_jitter_with_probability_08():
    "The released augmentation (KAIST-vilab/AEFT voc12/data.py) jitters colours with RandomApply(p=0.8): the whole pipeline, run on an image it leaves geometrically unchanged, changes the colours of about 80% of draws"
    img = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    plain = [normalize()(img), normalize()(np.ascontiguousarray(img[:, ::-1]))]   # not jittered: as is, or flipped
    same = lambda x: any(torch.equal(x, p) for p in plain)
    threads = torch.get_num_threads(); torch.set_num_threads(1)                  # tiny images: threads only add overhead
    try:
        torch.manual_seed(0)
        n, tf = 2000, train_transform(size=(8, 12), long_side=(12, 12))
        share = sum(not same(tf(img)) for _ in range(n))/n
        assert abs(share - 0.8) < 3*(0.8*0.2/n)**0.5, share
        assert all(same(train_transform((8, 12), (12, 12), p_jitter=0.)(img)) for _ in range(50))
        assert not any(same(train_transform((8, 12), (12, 12), p_jitter=1.)(img)) for _ in range(50))
    finally: torch.set_num_threads(threads)
    with pytest.raises(ValueError, match='`p_jitter`'): train_transform(p_jitter=1.5)

def test_long_side_resize_is_bicubic():
    "The released long-side resize (tools/imutils.py random_resize) is PIL's bicubic; masks stay nearest"
    yy, xx = np.mgrid[:50, :80]
    img = np.stack([(np.sin(xx/3)*100 + 128), (xx*yy) % 256, (xx*7 + yy*13) % 256], -1).astype(np.uint8)
    mask = np.zeros((50, 80), np.uint8); mask[10:30, 20:60] = 3; mask[10:30, 20] = 255
    x, m = RandomLongSide(120, 120)(tv_tensors.Image(torch.from_numpy(img).permute(2, 0, 1)), tv_tensors.Mask(torch.from_numpy(mask)))
    assert tuple(x.shape) == (3, 75, 120) and tuple(m.shape) == (75, 120)
    pil = lambda k: torch.from_numpy(np.array(Image.fromarray(img).resize((120, 75), k))).permute(2, 0, 1).int()
    assert (x.int() - pil(Image.BICUBIC)).abs().max() <= 1
    assert (x.int() - pil(Image.BILINEAR)).abs().max() > 10
    assert set(m.unique().tolist()) == {0, 3, 255}
    x2 = RandomLongSide(40, 40)(Image.fromarray(img))                             # a PIL input goes through PIL's bicubic
    assert np.array_equal(np.array(x2), np.array(Image.fromarray(img).resize((40, 25), Image.BICUBIC)))

def test_errors(roots, tmp_path):
    with pytest.raises(FileNotFoundError, match='VOC root not found.*\n.*expected layout'): voc_root(tmp_path/'nowhere')
    root = _copy(roots['png'], tmp_path/'d')
    voc = voc_root(root)
    (voc/'ImageSets/Segmentation/train.txt').write_text('2026_000000\n2026_777777\n')
    with pytest.raises(FileNotFoundError, match="image id '2026_777777' of the split has no file .*2026_777777.jpg"):
        VOCDataset(root, 'train')
    (voc/'JPEGImages'/'2026_000000.jpg').write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(ValueError, match='cannot read image .*2026_000000.jpg'): VOCDataset(root, ['2026_000000'])[0]
    (voc/'Annotations'/'2026_000001.xml').write_text('<annotation><object><name>red</name></object></annotation>')
    with pytest.raises(ValueError, match=r"annotation .*2026_000001.xml names an object 'red'; expected one of the VOC classes"):
        image_labels(root, ['2026_000001'], progress=False)
    (voc/'Annotations'/'2026_000002.xml').write_text('<annotation><obj')
    with pytest.raises(ValueError, match=r'cannot read annotation .*2026_000002.xml'): labels_from_xml(voc/'Annotations'/'2026_000002.xml')
    (voc/'ImageSets/Segmentation/val.txt').unlink()
    with pytest.raises(FileNotFoundError, match='split list not found: .*val.txt'): voc_splits(root)
    shutil.rmtree(voc/'JPEGImages')
    with pytest.raises(FileNotFoundError, match='JPEGImages folder not found'): voc_root(root)

# ---- the VOC-format writer

def test_write_voc_image(tmp_path):
    m = np.zeros((5, 7), np.uint8); m[1:4, 2:6] = 8
    write_voc_image(tmp_path, 'x', np.full((5, 7, 3), 200, np.uint8), [('chair', (3, 2, 6, 4)), ('sofa', None)], m)
    assert np.array_equal(np.array(Image.open(tmp_path/'SegmentationClass'/'x.png')), m)
    ann = ET.parse(tmp_path/'Annotations'/'x.xml').getroot()
    assert [ann.findtext(k) for k in ('filename', 'size/width', 'size/height', 'size/depth', 'segmented')] == ['x.jpg', '7', '5', '3', '1']
    assert [o.findtext('name') for o in ann.iter('object')] == ['chair', 'sofa'] and ann.find('object[2]/bndbox') is None
    assert labels_from_xml(tmp_path/'Annotations'/'x.xml') == [8, 17]
    with pytest.raises(ValueError, match=r"image 'y': box \(3, 2, 8, 4\) of object 'chair' is not inside the 7×5 image"):
        write_voc_image(tmp_path, 'y', np.zeros((5, 7, 3), np.uint8), [('chair', (3, 2, 8, 4))])
    with pytest.raises(ValueError, match=r"image 'y': expected a mask of shape \(5, 7\)"):
        write_voc_image(tmp_path, 'y', np.zeros((5, 7, 3), np.uint8), [], np.zeros((7, 5)))
    with pytest.raises(ValueError, match=r"image 'y': expected an \(h, w, 3\) uint8 array, got shape \(5, 7, 3\) and dtype float64"):
        write_voc_image(tmp_path, 'y', np.zeros((5, 7, 3)), [])
    assert not (tmp_path/'JPEGImages'/'y.jpg').exists()

def test_fixture_boxes_and_omitted_class(roots):
    voc = voc_root(roots['mat'])
    for id in _ids(range(14)):                                    # each box lies on pixels of its class in the VOC mask
        m = np.array(Image.open(voc/'SegmentationClass'/f'{id}.png'))
        for o in ET.parse(voc/'Annotations'/f'{id}.xml').getroot().iter('object'):
            x0, y0, x1, y1 = (int(o.findtext(f'bndbox/{k}')) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
            assert (m[y0-1:y1, x0-1:x1] == VOC_CLASSES.index(o.findtext('name')) + 1).any()
    sbd = find_sbd(voc, roots['mat']/'benchmark_RELEASE')
    from scipy.io import loadmat
    assert loadmat(sbd/'cls'/f'{OMITS}.mat')['GTcls']['CategoriesPresent'][0, 0].ravel().tolist() == [2, 3]
    aug = np.array(Image.open(voc_root(roots['png'])/'SegmentationClassAug'/f'{OMITS}.png'))
    assert np.array_equal(aug, load_mask(voc, OMITS, sbd)[0]) and labels_from_mask(aug) == [1, 2]
    assert labels_from_xml(voc/'Annotations'/f'{OMITS}.xml') == [1, 2, 3]

def test_fixture_written_atomically(tmp_path, monkeypatch):
    real, calls = voc_mod.write_voc_image, []
    def flaky(*a, **k):
        calls.append(1); real(*a, **k)
        if len(calls) == 5: raise OSError('disk full (injected)')
    monkeypatch.setattr(voc_mod, 'write_voc_image', flaky)
    with pytest.raises(OSError, match='injected'): write_tiny_voc(tmp_path/'data')
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_tiny_voc(tmp_path/'data')
    with pytest.raises(FileExistsError, match='overwrite=True'): write_tiny_voc(tmp_path/'data')
    write_tiny_voc(tmp_path/'data', sbd='png', overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data'] and not (tmp_path/'data'/'benchmark_RELEASE').exists()

@pytest.fixture(scope='module')
def splits(): return {s: shapes_split(s, n, seed=2, boundary=0) for s, n in (('train', 16), ('val', 8))}

def test_shapes_voc_round_trip(tmp_path, splits):
    voc = to_voc({'train': splits['train'], 'val': splits['val']}, tmp_path, boundary=1)
    names = VOC_CLASSES[:splits['train'].cfg.num_classes]          # the default names: VOC's, by class index
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
            assert labels_from_xml(voc/'Annotations'/f'{name}.xml') == labels_from_mask(mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['VOCdevkit']     # no temporary folder left behind
    hue = class_names(splits['val'].cfg.num_classes)
    to_voc({'val': splits['val']}, tmp_path, overwrite=True, names=hue)
    assert {o.findtext('name') for o in ET.parse(voc/'Annotations'/'val_00000.xml').getroot().iter('object')} <= set(hue)

def test_shapes_failed_write_leaves_no_tree(tmp_path, splits, monkeypatch):
    real, calls = voc_mod.write_voc_image, []
    def flaky(*a, **k):
        calls.append(1); real(*a, **k)
        if len(calls) == 20: raise OSError('disk full (injected)')  # in the second split
    monkeypatch.setattr(voc_mod, 'write_voc_image', flaky)
    with pytest.raises(OSError, match='injected'): to_voc({'train': splits['train'], 'val': splits['val']}, tmp_path)
    assert list(tmp_path.iterdir()) == []

def test_shapes_failed_overwrite_keeps_the_old_tree(tmp_path, splits, monkeypatch):
    voc = to_voc({'train': splits['train']}, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    def broken(*args): raise KeyboardInterrupt
    monkeypatch.setattr(voc_mod, 'write_voc_image', broken)
    with pytest.raises(KeyboardInterrupt): to_voc({'val': splits['val']}, tmp_path, overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before
    monkeypatch.undo()
    to_voc({'val': splits['val']}, tmp_path, overwrite=True)
    assert sorted(p.name for p in (voc/'ImageSets/Segmentation').iterdir()) == ['val.txt']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['VOCdevkit']

def test_shapes_export_refuses_bad_input(tmp_path, splits):
    with pytest.raises(ValueError, match='`splits`'): to_voc({}, tmp_path)
    with pytest.raises(ValueError, match='`splits`'): to_voc({'train': make_shapes(2)}, tmp_path)
    with pytest.raises(ValueError, match='identifiers'): to_voc({'my split': splits['train']}, tmp_path)
    with pytest.raises(ValueError, match='`names`'): to_voc({'train': splits['train']}, tmp_path, names=['a', 'b'])
    to_voc({'train': splits['train']}, tmp_path)
    with pytest.raises(FileExistsError, match='overwrite=True'): to_voc({'train': splits['train']}, tmp_path)

@pytest.mark.parametrize('labels', ['xml', 'masks'])
def test_the_voc_reader_reads_the_shapes_export(tmp_path, splits, labels):
    "VOCDataset reads the exported tree: same masks (with the band) and labels, from the XML or the masks alike"
    to_voc({'train': splits['train'], 'val': splits['val']}, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')              # the split sizes are not VOC's
        ds = VOCDataset(tmp_path, split='val', masks=True, labels=labels)
    assert len(ds) == len(splits['val'])
    K = splits['val'].cfg.num_classes
    for i in range(len(ds)):
        x, y, m = ds[i]
        assert torch.equal(y[:K], splits['val'].labels[i]) and y[K:].sum() == 0
        assert torch.equal(m.as_subclass(torch.Tensor), ignore_band(splits['val'].masks[i:i+1], 1)[0])
