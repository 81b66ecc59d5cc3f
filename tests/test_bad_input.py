"Files of the kinds that break WSSS pipelines, read through aeft.voc: masks that are not class indices, bad SBD .mat files, a read-only data folder, odd and broken images. Each is refused with the file named, or read correctly; nothing wrong is cached and nothing is written into the data folder"
import json, os, shutil, stat, struct, subprocess, sys, zlib
from dataclasses import asdict
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from scipy.io import loadmat, savemat
from torchvision.datasets import SBDataset
import aeft.voc as voc_mod
from aeft.voc import (write_tiny_voc, voc_root, find_sbd, voc_splits, read_mask, load_mask, save_mask, load_image, image_labels,
                      label_cache, label_differences, labels_from_mask, cache_dir, VOCDataset, VOC_CLASSES)
from aeft.cam import save_seeds
from aeft.evaluate import seed_sweep

pytestmark = pytest.mark.filterwarnings('ignore:VOC split')   # the fixture's sizes are not VOC's
BIN = Path(sys.executable).parent
EXPECTED = "expected a palette ('P') or 8-bit ('L') PNG of class indices 0–20 and 255, as VOC's SegmentationClass"
ID, SBD_ID = '2026_000000', '2026_000016'      # in VOC train (SegmentationClass); in SBD only

@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp('cache'); monkeypatch.setenv('AEFT_CACHE', str(d)); return d

@pytest.fixture(scope='module')
def fixtures(tmp_path_factory):
    t = tmp_path_factory.mktemp('bad')
    return {k: write_tiny_voc(t/str(k), sbd=k) for k in ('mat', 'png')}

def _copy(fixtures, kind, tmp_path): return Path(shutil.copytree(fixtures[kind], tmp_path/kind))

def _png(path, values, depth, colour_type=0):
    "Write `values` as a PNG of bit depth `depth` by hand (PIL writes no 2- or 4-bit greyscale)"
    h, w = values.shape
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    rows = b''.join(b'\0' + np.packbits(np.unpackbits(r.astype(np.uint8)[:, None], axis=1)[:, 8 - depth:].ravel()).tobytes() for r in values)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, colour_type, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))

# ---- masks that are not class indices

def _rewrite(kind, path):
    "Replace the palette mask PNG `path` by a file of `kind`"
    p = Image.open(path); p.load(); m = np.array(p)
    if kind == 'rgb': p.convert('RGB').save(path)
    elif kind == 'rgba': p.convert('RGBA').save(path)
    elif kind == 'grey+alpha': p.convert('LA').save(path)
    elif kind == '1-bit': Image.fromarray(m > 0).save(path)
    elif kind == '16-bit': Image.fromarray(m.astype(np.uint16)).save(path)
    elif kind == '4-bit grey': _png(path, m % 16, 4)
    elif kind == 'jpeg': p.convert('RGB').save(path, format='JPEG')
    elif kind == 'grey conversion': p.convert('L').save(path)
    elif kind == 'requantized': p.convert('RGB').quantize(8).save(path)
    elif kind == 'value 21': save_mask(np.where(m == m.max(where=m < 255, initial=0), 21, m), path)
    elif kind == 'smaller': save_mask(m[:-1, :-1], path)
    elif kind == 'truncated': path.write_bytes(path.read_bytes()[:300])
    elif kind == 'text': path.write_text('not a PNG')
    else: raise ValueError(kind)

REFUSED = {'rgb': "is an RGB image (mode 'RGB'); " + EXPECTED, 'rgba': "is an RGBA image (mode 'RGBA')",
           'grey+alpha': "is a greyscale image with alpha (mode 'LA')", '1-bit': "is a 1-bit image (mode '1')",
           '16-bit': "is a 16-bit greyscale image (mode 'I;16')", '4-bit grey': "is a 4-bit greyscale PNG",
           'jpeg': "is a JPEG file, not a PNG", 'grey conversion': "that are not class indices (they are grey levels of VOC's class colours",
           'requantized': "is a palette PNG whose colours are not VOC's", 'value 21': "holds values 21 that are not class indices",
           'smaller': "but its image", 'truncated': "(truncated, corrupt or not an image)", 'text': "(truncated, corrupt or not an image)"}

@pytest.mark.parametrize('kind', REFUSED)
def test_mask_refused_everywhere_it_is_read(fixtures, tmp_path, cache, kind):
    "A VOC mask of each kind is refused, naming it, by every reader of masks; no label cache is written from it"
    root = _copy(fixtures, 'png', tmp_path); voc = voc_root(root)
    f = voc/'SegmentationClass'/f'{ID}.png'
    _rewrite(kind, f)
    msg = f"{f}"
    def refused(call):
        with pytest.raises(ValueError) as e: call()
        assert msg in str(e.value) and REFUSED[kind] in str(e.value) and '\n' not in str(e.value), str(e.value)
    refused(lambda: read_mask(f, voc/'JPEGImages'/f'{ID}.jpg'))
    refused(lambda: load_mask(voc, ID))
    refused(lambda: image_labels(root, [ID, '2026_000001'], labels='masks', progress=False))    # labels derived from masks
    refused(lambda: VOCDataset(root, 'train', labels='masks'))                                  # training on mask labels
    refused(lambda: VOCDataset(root, 'train', masks=True)[0])                                   # masks in training and epoch selection
    seeds = tmp_path/'seeds'; seeds.mkdir()
    save_seeds({0: np.zeros(np.array(Image.open(voc/'JPEGImages'/f'{ID}.jpg')).shape[:2], np.float32)}, seeds/f'{ID}.npy')
    refused(lambda: seed_sweep(seeds, root, [ID], progress=False))                              # evaluation
    assert not label_cache(root, 'masks').exists()                                               # no labels from masks cached

def test_rgb_mask_gave_colour_components_as_labels(fixtures, tmp_path):
    "The failure this prevents: an RGB mask's colour components read as class indices 127, 191, 223"
    root = _copy(fixtures, 'png', tmp_path); f = voc_root(root)/'SegmentationClass'/f'{ID}.png'
    _rewrite('rgb', f)
    rgb = np.array(Image.open(f))
    assert rgb.ndim == 3 and {int(v) - 1 for v in np.unique(rgb) if 0 < v < 255} - set(range(20))   # not class indices
    with pytest.raises(ValueError, match='not class indices'): labels_from_mask(rgb)

def test_refused_segmentation_class_aug_png(fixtures, tmp_path, cache):
    root = _copy(fixtures, 'png', tmp_path); voc = voc_root(root)
    f = voc/'SegmentationClassAug'/f'{SBD_ID}.png'
    _rewrite('rgb', f)
    with pytest.raises(ValueError, match=f"mask {f} is an RGB image"): load_mask(voc, SBD_ID, find_sbd(voc))
    with pytest.raises(ValueError, match=f"mask {f} is an RGB image"): image_labels(root, [SBD_ID], labels='masks', progress=False)
    assert not list(cache.iterdir())

def test_accepted_masks(fixtures, tmp_path):
    "Class indices as an 8-bit greyscale PNG (SegmentationClassAug conversions) or a palette PNG with grey colours are read as they are"
    root = _copy(fixtures, 'png', tmp_path); voc = voc_root(root)
    f = voc/'SegmentationClass'/f'{ID}.png'
    m = read_mask(f, voc/'JPEGImages'/f'{ID}.jpg')
    assert set(np.unique(m).tolist()) - {0, 255} and 255 in m
    for im in (Image.fromarray(m), Image.fromarray(m).convert('P')):
        im.save(f)
        assert np.array_equal(load_mask(voc, ID)[0], m)
    aug = voc/'SegmentationClassAug'/f'{SBD_ID}.png'
    a = np.array(Image.open(aug)); Image.fromarray(a).save(aug)
    assert Image.open(aug).mode == 'L' and np.array_equal(load_mask(voc, SBD_ID, find_sbd(voc))[0], a)

def test_a_cache_is_kept_as_it_was_when_a_mask_is_refused(fixtures, tmp_path, cache):
    root = _copy(fixtures, 'png', tmp_path); voc = voc_root(root)
    ids = voc_splits(root, verbose=False)['train']
    image_labels(root, ids[1:4], labels='masks', progress=False)
    before = label_cache(root, 'masks').read_bytes()
    _rewrite('grey conversion', voc/'SegmentationClass'/f'{ID}.png')
    with pytest.raises(ValueError, match='grey levels'): image_labels(root, ids, labels='masks', progress=False)
    assert label_cache(root, 'masks').read_bytes() == before

def test_mask_labels_command_exits_naming_the_mask(fixtures, tmp_path):
    "aeft_train with labels from masks on a tree with an RGB mask: a one-line exit naming the file, before any training"
    root = _copy(fixtures, 'png', tmp_path); f = voc_root(root)/'SegmentationClass'/f'{ID}.png'
    _rewrite('rgb', f)
    r = subprocess.run([str(BIN/'aeft_train'), '--data', 'voc', '--root', str(root), '--out', str(tmp_path/'run'), '--progress', 'False',
                        '--labels', 'masks', '--backbone', 'tiny', '--width', '8', '--image_size', '64', '--batch_size', '4', '--device', 'cpu'],
                       capture_output=True, text=True, env={**os.environ, 'AEFT_CACHE': str(tmp_path/'cache')})
    assert r.returncode != 0 and f"aeft_train: mask {f} is an RGB image (mode 'RGB')" in r.stderr, r.stderr
    assert not (tmp_path/'run'/'last.pt').exists()

# ---- SBD's .mat files

def _mat(kind, path):
    "Replace SBD's .mat `path` by a file of `kind`"
    data = path.read_bytes(); seg = loadmat(path)['GTcls'][0, 0]['Segmentation']
    if kind == 'no GTcls': savemat(path, {'Segmentation': seg})
    elif kind == 'GTcls not a struct': savemat(path, {'GTcls': seg})
    elif kind == 'no Segmentation': savemat(path, {'GTcls': {'Boundaries': seg}})
    elif kind.startswith('truncated'): path.write_bytes(data[:int(kind.split()[1])])
    elif kind == 'empty': path.write_bytes(b'')
    elif kind == 'text': path.write_text('Segmentation = [0 1; 1 0]\n' * 10)
    elif kind == 'v7.3': path.write_bytes(b'MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .'.ljust(116) + bytes(8) + b'\x00\x02IM'
                                          + b'\x89HDF\r\n\x1a\n' + bytes(400))
    elif kind == 'value 40': savemat(path, {'GTcls': {'Segmentation': np.where(seg > 0, 40, 0).astype(np.uint8)}})
    elif kind == 'fractions': savemat(path, {'GTcls': {'Segmentation': seg + 0.5}})
    elif kind == '3-D': savemat(path, {'GTcls': {'Segmentation': np.stack([seg]*3, -1)}})
    elif kind == 'transposed': savemat(path, {'GTcls': {'Segmentation': np.ascontiguousarray(seg.T)}})
    else: raise ValueError(kind)

MAT_REFUSED = {'no GTcls': "has no 'GTcls' struct (it holds Segmentation); expected SBD's cls/<id>.mat",
               'GTcls not a struct': "has a 'GTcls' that is not a struct with a 'Segmentation' field",
               'no Segmentation': "has a 'GTcls' that is not a struct with a 'Segmentation' field",
               'truncated 60': "truncated or not a MATLAB file", 'truncated 128': "has no 'GTcls' struct (it holds no variables: truncated?)",
               'truncated 400': "truncated or not a MATLAB file", 'empty': "truncated or not a MATLAB file", 'text': "truncated or not a MATLAB file",
               'v7.3': "is a MATLAB v7.3 (HDF5) file, which scipy cannot read; expected SBD's cls/<id>.mat (MATLAB v5), with the class indices 0–20 in GTcls.Segmentation: re-save it in MATLAB with save(..., '-v7') or use SegmentationClassAug PNGs",
               'value 40': "(GTcls.Segmentation) holds values 40 that are not class indices",
               'fractions': "(GTcls.Segmentation) holds values 0.5", '3-D': "GTcls.Segmentation that is a uint8 array of shape",
               'transposed': "but its image"}

@pytest.mark.parametrize('kind', MAT_REFUSED)
def test_sbd_mat_refused(fixtures, tmp_path, cache, kind):
    root = _copy(fixtures, 'mat', tmp_path); voc = voc_root(root); sbd = find_sbd(voc, root/'benchmark_RELEASE')
    f = sbd/'cls'/f'{SBD_ID}.mat'
    _mat(kind, f)
    for call in (lambda: load_mask(voc, SBD_ID, sbd), lambda: image_labels(root, [SBD_ID], sbd, labels='masks', progress=False),
                 lambda: VOCDataset(root, [SBD_ID], sbd, masks=True)[0]):
        with pytest.raises(ValueError) as e: call()
        assert str(f) in str(e.value) and MAT_REFUSED[kind] in str(e.value) and '\n' not in str(e.value), str(e.value)
    assert not label_cache(root, 'masks', root/'benchmark_RELEASE').exists()

def test_sbd_mat_read_as_torchvision_reads_it(fixtures):
    root = fixtures['mat']; voc = voc_root(root); sbd = find_sbd(voc, root/'benchmark_RELEASE')
    tv = SBDataset.__new__(SBDataset); tv._loadmat = loadmat
    mats = sorted((sbd/'cls').glob('*.mat'))
    assert len(mats) == 18
    for f in mats:
        m, src = load_mask(voc, f.stem, sbd)
        if src == 'SBD': assert np.array_equal(m, np.array(tv._get_segmentation_target(str(f))))

# ---- a read-only data folder

def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode)) for p in root.rglob('*'))

def _chmod(root, writable):
    for p in [root, *root.rglob('*')]:
        mode = p.stat().st_mode
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

@pytest.fixture
def read_only(fixtures, tmp_path, request):
    "A read-only copy of fixture `request.param` and its SBD argument; on exit, its files are checked unchanged (as root, where the mode bits do not stop writes, the comparison is what tests it)"
    root = _copy(fixtures, request.param, tmp_path); sbd = root/'benchmark_RELEASE' if request.param == 'mat' else None
    _chmod(root, False)
    before = _snapshot(root)
    try:
        yield root, sbd
        assert _snapshot(root) == before
    finally: _chmod(root, True)

@pytest.mark.parametrize('read_only', ['png', 'mat'], indirect=True)
def test_read_only_data_folder_readers(read_only, cache):
    "Every reader of aeft.voc on a read-only copy: nothing under it changes, the label caches are in $AEFT_CACHE"
    root, sbd = read_only
    splits = voc_splits(root, sbd, verbose=False)
    ids = sorted(set(splits['train_aug']) | set(splits['val']))
    xml = image_labels(root, ids, sbd, progress=False)
    masks = image_labels(root, ids, sbd, labels='masks', progress=False)
    assert label_differences(root, ids, sbd, progress=False)['ids'] == [i for i in ids if xml[i] != masks[i]] != []
    ds = VOCDataset(root, 'val', sbd, masks=True)
    assert all(ds[i][2].shape == ds[i][0].shape[1:] for i in range(len(ds)))
    assert sorted(p.name for p in cache.iterdir()) == sorted(label_cache(root, s, sbd).name for s in ('xml', 'masks'))

@pytest.mark.parametrize('read_only', ['png'], indirect=True)
def test_read_only_data_folder_commands(read_only, tmp_path):
    "aeft_train (with epoch selection on VOC train, which reads masks) and aeft_cam on a read-only copy: both run, the label cache goes to $AEFT_CACHE"
    root, _ = read_only
    env = {**os.environ, 'AEFT_CACHE': str(tmp_path/'cmd-cache')}
    r = subprocess.run([str(BIN/'aeft_train'), '--data', 'voc', '--root', str(root), '--out', str(tmp_path/'run'), '--epochs', '1',
                        '--warmup', '1', '--progress', 'False', '--backbone', 'tiny', '--width', '8', '--image_size', '64', '--batch_size', '4', '--device', 'cpu'],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(BIN/'aeft_cam'), '--root', str(root), '--split', 'val', '--ckpt', str(tmp_path/'run'/'last.pt'),
                        '--out', str(tmp_path/'seeds'), '--scales', '1.0', '--progress', 'False'], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path/'seeds').glob('*.npy'))) == 6
    assert [p.name for p in (tmp_path/'cmd-cache').iterdir()] == [label_cache(root).name]

def test_cache_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('AEFT_CACHE', str(tmp_path/'a'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    monkeypatch.setenv('HOME', str(tmp_path/'home'))
    assert cache_dir() == tmp_path/'a'
    monkeypatch.delenv('AEFT_CACHE')
    assert cache_dir() == tmp_path/'xdg'/'aeft'
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert cache_dir() == tmp_path/'home'/'.cache'/'aeft'

def test_two_roots_never_share_a_cache(fixtures, tmp_path, cache):
    a, b = (_copy(fixtures, 'png', tmp_path/k) for k in 'ab')
    (voc_root(b)/'Annotations'/f'{ID}.xml').write_text('<annotation><object><name>sofa</name></object></annotation>')
    la, lb = image_labels(a, [ID], progress=False), image_labels(b, [ID], progress=False)
    assert lb[ID] == [VOC_CLASSES.index('sofa')] and la[ID] != lb[ID]
    assert label_cache(a) != label_cache(b)
    assert [json.loads(label_cache(r).read_text())['voc'] for r in (a, b)] == [str(voc_root(r).resolve()) for r in (a, b)]
    (tmp_path/'link').symlink_to(a)                                 # the same folder by another path: the same cache
    assert label_cache(tmp_path/'link') == label_cache(a)
    m = fixtures['mat']                                             # the SBD folder is part of the key
    assert label_cache(m, 'masks') != label_cache(m, 'masks', m/'benchmark_RELEASE')

def test_unwritable_cache_folder_warns_and_reads(fixtures, tmp_path, monkeypatch):
    (tmp_path/'file').write_text('')
    monkeypatch.setenv('AEFT_CACHE', str(tmp_path/'file'))                         # a file where the folder should be
    with pytest.warns(UserWarning, match=r"label cache .*file/aeft_labels_xml_\w+\.json cannot be written .*set AEFT_CACHE to a writable folder"):
        labels = image_labels(fixtures['png'], [ID], progress=False)
    assert labels == {ID: voc_mod.labels_from_xml(voc_root(fixtures['png'])/'Annotations'/f'{ID}.xml')}

# ---- images

@pytest.mark.parametrize('mode, ext', [('CMYK', 'jpg'), ('L', 'jpg'), ('RGBA', 'png'), ('LA', 'png'), ('P', 'png'), ('1', 'png')])
def test_image_modes_read_as_rgb(fixtures, tmp_path, mode, ext):
    rgb = load_image(voc_root(fixtures['png'])/'JPEGImages'/f'{ID}.jpg')
    f = tmp_path/f'x.{ext}'; rgb.convert(mode).save(f, quality=95)
    x = load_image(f)
    assert (x.mode, x.size) == ('RGB', rgb.size)
    expect = np.array(rgb.convert(mode).convert('RGB')).astype(int)
    assert np.abs(np.array(x).astype(int) - expect).mean() < 2                  # only a JPEG's compression differs

def test_images_refused_with_the_file_named(fixtures, tmp_path):
    jpg = voc_root(fixtures['png'])/'JPEGImages'/f'{ID}.jpg'
    grey = np.array(Image.open(jpg).convert('L'))
    Image.fromarray(grey.astype(np.uint16)*257).save(tmp_path/'16.png')
    with pytest.raises(ValueError, match=rf"image {tmp_path/'16.png'} is a 16-bit greyscale image \(mode 'I;16'\); expected an 8-bit"):
        load_image(tmp_path/'16.png')
    data = jpg.read_bytes()
    for n in (0, 40, len(data)//2):
        (tmp_path/'cut.jpg').write_bytes(data[:n])
        with pytest.raises(ValueError, match=f"cannot read image {tmp_path/'cut.jpg'}") as e: load_image(tmp_path/'cut.jpg')
        assert '\n' not in str(e.value)
    with pytest.raises(FileNotFoundError) as e: load_image(tmp_path/'none.jpg')
    assert str(e.value) == f"image not found: {tmp_path/'none.jpg'}"

def test_split_listing_a_missing_image(fixtures, tmp_path):
    root = _copy(fixtures, 'png', tmp_path); voc = voc_root(root)
    (voc/'JPEGImages'/'2026_000003.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=f"image id '2026_000003' of the split has no file {voc/'JPEGImages'/'2026_000003.jpg'}"):
        VOCDataset(root, 'train')

def test_unreadable_mask_file_says_why(fixtures, monkeypatch):
    "A file the system refuses to read (as root, permissions do not stop reads, so the refusal is simulated) is reported as such, not as a corrupt file"
    voc = voc_root(fixtures['mat']); sbd = find_sbd(voc, fixtures['mat']/'benchmark_RELEASE')
    def denied(*a, **k): raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(voc_mod.Image, 'open', denied)
    f = voc/'SegmentationClass'/f'{ID}.png'
    with pytest.raises(ValueError, match=f"^cannot read mask {f}: Permission denied$"): load_mask(voc, ID)
    monkeypatch.undo()
    import scipy.io
    monkeypatch.setattr(scipy.io, 'loadmat', denied)
    with pytest.raises(ValueError, match=f"^cannot read SBD mask {sbd/'cls'/SBD_ID}.mat: Permission denied$"): read_mask(sbd/'cls'/f'{SBD_ID}.mat')

# ---- faults of the later stages, one test per kind, through the commands

def _segmenter(path, broken=False):
    "A tiny segmentation checkpoint at `path`; `broken`: its first weight tensor all NaN (that tensor's name returned too)"
    from aeft.segment import SegmentConfig, build_segmenter
    cfg = SegmentConfig(backbone='tiny', width=4, device='cpu'); sd = build_segmenter(cfg).state_dict()
    k = next(k for k, v in sd.items() if v.is_floating_point())
    if broken: sd[k] = torch.full_like(sd[k], float('nan'))
    torch.save(dict(model=sd, config=asdict(cfg)), path); return path, k

def _affinity(path):
    "A tiny AffinityNet checkpoint at `path`"
    from aeft.affinity import AffinityConfig, build_affinity_model
    cfg = AffinityConfig.synthetic(device='cpu'); torch.save(dict(model=build_affinity_model(cfg).state_dict(), config=asdict(cfg)), path); return path

def _exits(cmd, argv):
    "The one line a command ends with on bad input"
    with pytest.raises(SystemExit) as e: cmd([str(a) for a in argv])
    return str(e.value)

def _limited(size):
    "A context in which no file may grow beyond `size` bytes (`ulimit -f`: what a full disk does to a write, without filling one)"
    import contextlib, resource
    @contextlib.contextmanager
    def limit():
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        try: yield
        finally: resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return limit()

def test_write_failure_names_the_file_and_folder(fixtures, tmp_path):
    "A file-size limit (as a full disk would): aeft_crf stops with one line naming the file and its folder, no output file half written"
    from aeft.crf import aeft_crf
    root = fixtures['png']; voc = voc_root(root); (tmp_path/'seeds').mkdir()
    for id in voc_splits(root, verbose=False)['train']: save_seeds({0: np.full(load_mask(voc, id)[0].shape, 0.5, np.float32)}, tmp_path/'seeds'/f'{id}.npy')
    with _limited(2048):                                                             # a manifest fits, a CRF output does not
        line = _exits(aeft_crf, [tmp_path/'seeds', '--root', root, '--split', 'train', '--out', tmp_path/'crf', '--crf_iters', '1', '--processes', '1', '--progress', 'False'])
    folder = tmp_path/'crf'/'02'
    assert line.startswith(f"aeft_crf: cannot write {folder}/") and f"the largest file size allowed in {folder}" in line, line
    assert not list(folder.glob('*.npy')) and not list(folder.glob('.*.tmp'))

def test_checkpoint_write_failure_keeps_the_last_one(tmp_path):
    "last.pt that cannot be written: one error naming it (torch.save's own error does not say why), and the previous last.pt is kept whole"
    from torch.utils.data import TensorDataset
    from aeft.config import TrainConfig, build_model
    from aeft.learner import Learner, StepLimitCB
    toy = TensorDataset(torch.randn(16, 3, 32, 32), (torch.rand(16, 6) < 0.3).float())
    cfg = TrainConfig.synthetic(epochs=2, warmup=2, image_size=32, width=4, batch_size=8)
    Learner(build_model(cfg), toy, cfg, tmp_path, progress=False, cbs=[StepLimitCB(2)]).fit()   # epoch 0 of 2 steps, saved
    first = torch.load(tmp_path/'last.pt', weights_only=False)
    with _limited(os.path.getsize(tmp_path/'last.pt')//2), \
         pytest.raises(OSError, match=f"^cannot write {tmp_path/'last.pt'}: the file would exceed the largest file size allowed in {tmp_path} "):
        Learner(build_model(cfg), toy, cfg, tmp_path, progress=False).fit(resume=True)
    assert torch.load(tmp_path/'last.pt', weights_only=False)['epoch'] == first['epoch'] == 1
    assert not list(tmp_path.glob('.*.tmp'))

def test_every_numeric_option_is_bounded():
    "Each numeric option of every stage command has its interval in aeft.cli.BOUNDS (a tuple of names is the only exception)"
    import typing
    from aeft.cli import BOUNDS
    from aeft.pipeline import all_options
    numeric = {k for opts in all_options().values() for k, o in opts.items() if o.tp in (int, float, tuple) or typing.get_origin(o.tp) is tuple}
    assert numeric - set(BOUNDS) == {'frozen'} and set(BOUNDS) <= numeric

@pytest.mark.parametrize('command, args, line', [
    ('aeft_predict', ['--images_per_batch', '0'], "aeft_predict: --images_per_batch must be >= 1, got 0"),
    ('aeft_predict', ['--scales', '1.0,-1'], "aeft_predict: --scales must be values > 0 each, got 1.0,-1"),
    ('aeft_pseudo', ['--radius', '0'], "aeft_pseudo: --radius must be >= 1, got 0"),
    ('aeft_pseudo', ['--bg_power', '-1'], "aeft_pseudo: --bg_power must be > 0, got -1"),
    ('aeft_segment', ['--iterations', '0'], "aeft_segment: --iterations must be >= 1, got 0"),
    ('aeft_affinity', ['--lr', 'nan'], "aeft_affinity: --lr must be > 0, got nan"),
    ('aeft_eval', ['--t_max', '1.5'], "aeft_eval: --t_max must be >= 0 and <= 1, got 1.5"),
    ('aeft_crf', ['--alphas', '2,-1'], "aeft_crf: --alphas must be values >= 0 each, got 2,-1")])
def test_numeric_options_checked_before_any_work(tmp_path, command, args, line):
    "Refused on the command line, before anything is read or written"
    import importlib
    module = dict(aeft_eval='aeft.evaluate').get(command, f'aeft.{command[5:]}')
    assert _exits(getattr(importlib.import_module(module), command), [*args, '--out', tmp_path/'out']) == line
    assert not (tmp_path/'out').exists()

def test_checkpoint_with_weights_that_are_not_finite(fixtures, tmp_path):
    "A segmentation network whose weights hold NaN: refused naming the checkpoint, before any mask is written"
    from aeft.predict import aeft_predict
    _, k = _segmenter(tmp_path/'nan.pt', broken=True)
    line = _exits(aeft_predict, [tmp_path/'nan.pt', '--root', fixtures['png'], '--out', tmp_path/'pred', '--scales', '1.0', '--progress', 'False'])
    assert line.startswith(f"aeft_predict: checkpoint {tmp_path/'nan.pt'} holds weights that are not finite (NaN or inf) in 1 tensor ({k})")
    assert not (tmp_path/'pred').exists()

def test_an_empty_id_list_is_refused_by_every_stage(fixtures, tmp_path):
    "aeft_eval, aeft_crf and aeft_pseudo read the --ids file through DataOptions.listed_ids: an empty one is refused before any work"
    from aeft.evaluate import aeft_eval
    from aeft.crf import aeft_crf
    from aeft.pseudo import aeft_pseudo
    (tmp_path/'ids.txt').write_text('\n'); (tmp_path/'seeds').mkdir()
    want = f"--ids {tmp_path/'ids.txt'} lists no image ids; expected one id per line"
    common = ['--root', fixtures['png'], '--ids', tmp_path/'ids.txt', '--out', tmp_path/'out', '--progress', 'False']
    assert _exits(aeft_eval, [tmp_path/'seeds', *common]) == f"aeft_eval: {want}"
    assert _exits(aeft_crf, [tmp_path/'seeds', *common]) == f"aeft_crf: {want}"
    assert _exits(aeft_pseudo, [tmp_path/'seeds', _affinity(tmp_path/'aff.pt'), *common]) == f"aeft_pseudo: {want}"
    assert not (tmp_path/'out').exists()

def _masks(fixtures, folder, relabel=None):
    "The fixture's ground-truth masks of train_aug copied into `folder` as pseudo masks (`relabel`: a function of each mask)"
    voc = voc_root(fixtures['png']); folder.mkdir()
    for sub in ('SegmentationClass', 'SegmentationClassAug'):
        for p in (voc/sub).glob('*.png'): save_mask(relabel(read_mask(p)) if relabel else read_mask(p), folder/p.name)
    return folder

def test_resume_on_other_training_data_is_refused(fixtures, tmp_path):
    "aeft_segment records the masks it trains on in last.pt; --resume with another folder of masks is refused naming it"
    from aeft.segment import aeft_segment
    a = _masks(fixtures, tmp_path/'a'); b = _masks(fixtures, tmp_path/'b', lambda m: np.where(m == 255, 255, 0).astype(np.uint8))
    run = lambda m: aeft_segment([str(m), '--root', str(fixtures['png']), '--backbone', 'tiny', '--width', '4', '--crop_size', '32', '--batch_size', '8',
                                  '--iterations', '2', '--device', 'cpu', '--out', str(tmp_path/'run'), '--resume', 'True', '--progress', 'False'])
    run(a)
    assert torch.load(tmp_path/'run'/'last.pt', weights_only=False)['trained_on']['masks'] == str(a.resolve())
    with pytest.raises(SystemExit, match=f"aeft_segment: {tmp_path/'run'/'last.pt'} was trained on other inputs: masks {a.resolve()}, not {b.resolve()}; "):
        run(b)

def test_predict_refuses_an_out_inside_the_test_download(tmp_path):
    "--split test reads VOC's test download, which has no ground truth: an --out inside it is refused as for every other split"
    from aeft.predict import aeft_predict
    voc = tmp_path/'VOC2012test'/'VOCdevkit'/'VOC2012'; (voc/'JPEGImages').mkdir(parents=True); (voc/'ImageSets'/'Segmentation').mkdir(parents=True)
    Image.new('RGB', (20, 16)).save(voc/'JPEGImages'/'2008_000001.jpg'); (voc/'ImageSets'/'Segmentation'/'test.txt').write_text('2008_000001\n')
    ck, _ = _segmenter(tmp_path/'seg.pt')
    line = _exits(aeft_predict, [ck, '--root', tmp_path/'VOC2012test', '--split', 'test', '--out', voc/'pred', '--scales', '1.0', '--progress', 'False'])
    assert line == f"aeft_predict: --out {voc/'pred'} is inside the data folder {tmp_path/'VOC2012test'}; write the outputs elsewhere"
    assert not (voc/'pred').exists()

def test_a_mask_of_a_turned_photo_suggests_the_rotation(fixtures, tmp_path):
    "A photo stored sideways with an EXIF orientation, its mask drawn on the view: the size error says so, with sizes as width×height"
    m = read_mask(voc_root(fixtures['png'])/'SegmentationClass'/f'{ID}.png'); h, w = m.shape
    ex = Image.Exif(); ex[0x0112] = 6
    Image.new('RGB', (h, w)).save(tmp_path/'photo.jpg', exif=ex)                   # its pixels w×h turned: h wide, w high
    save_mask(m, tmp_path/'photo.png')
    with pytest.raises(ValueError, match=rf"mask {tmp_path/'photo.png'} is {w}×{h} but its image {tmp_path/'photo.jpg'} is {h}×{w}; .*EXIF orientation 6, turned by 90°"):
        read_mask(tmp_path/'photo.png', tmp_path/'photo.jpg')

def test_coco_ground_truth_is_keyed_by_content_and_made_for_the_ids_asked(coco_data, tmp_path, cache):
    "aeft_eval --data coco --ids with 2 images makes those 2 masks only; the same data copied again (new file times) finds them valid"
    from aeft.coco import coco_index, coco_split, mask_folder
    from aeft.evaluate import aeft_eval
    src, _ = coco_data; root = Path(shutil.copytree(src, tmp_path/'coco')); (tmp_path/'seeds').mkdir()
    idx, ids = coco_index(root, 'train', progress=False), coco_split(root, 'train', verbose=False)[:2]
    for id in ids: save_seeds({0: np.zeros((idx[id]['height'], idx[id]['width']), np.float32)}, tmp_path/'seeds'/f'{id}.npy')
    (tmp_path/'ids.txt').write_text('\n'.join(ids) + '\n')
    ev = lambda out: aeft_eval([str(tmp_path/'seeds'), '--data', 'coco', '--root', str(root), '--ids', str(tmp_path/'ids.txt'), '--out', str(out), '--progress', 'False'])
    first = ev(tmp_path/'e1')
    assert sorted(p.stem for p in mask_folder(root, 'train').glob('*.png')) == ids
    shutil.rmtree(root); shutil.copytree(src, root, copy_function=shutil.copyfile)          # the same bytes, new times
    assert ev(tmp_path/'e2')['miou'] == first['miou']
