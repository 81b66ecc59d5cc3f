"Predictions: the evaluator against an independent count, the server format round trip, fusion invariants, aeft_predict end to end on the VOC-format fixture, on the genuine VOC sample and on the COCO-format fixture (81 classes), and its errors"
import hashlib, json, os, shutil, signal, subprocess, sys, tarfile, time
from dataclasses import asdict
from pathlib import Path
import numpy as np, pytest, torch
from torch import nn
from PIL import Image
from aeft.core import voc_palette
from aeft.cam import to_input
from aeft.voc import write_tiny_voc, write_voc_image, read_ids, read_mask, save_mask
from aeft.coco import COCO_NAMES
from aeft.segment import SegmentConfig, build_segmenter
from aeft.crf import dense_crf
from aeft.predict import (segment_scores, fused_mask, SplitImages, predict_split, score_predictions,
                          server_folder, write_archive, check_archive, aeft_predict, PredictStage, MANIFEST, FUSIONS, CRF_SETTINGS, DEEPLAB_MSC,
                          crf_probs)
from aeft.cli import options

pytestmark = [pytest.mark.filterwarnings('ignore:VOC split'), pytest.mark.filterwarnings('ignore:COCO split')]
BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).parent/'data'/'voc-sample'

def save_segmenter(path, **kw):
    "A checkpoint of an untrained tiny segmentation network, as aeft_segment stores one"
    cfg = SegmentConfig(**{**dict(backbone='tiny', width=4, device='cpu'), **kw})
    torch.save(dict(model=build_segmenter(cfg).state_dict(), config=asdict(cfg)), path)
    return path

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    t = tmp_path_factory.mktemp('predict')
    return t, write_tiny_voc(t/'data', sbd=None), save_segmenter(t/'seg.pt')

def message(ckpt, *args):
    "The one line aeft_predict exits with, given the checkpoint and the flags `args`"
    with pytest.raises(SystemExit) as e: aeft_predict([str(ckpt), '--progress', 'False', *map(str, args)])
    return str(e.value)

def hand_voc(root, items):
    "A VOC2012 folder under `root` with the images of `items` ({id: (gt mask, split)}), their masks and split lists"
    voc = root/'VOCdevkit'/'VOC2012'
    for id, (gt, _) in items.items(): write_voc_image(voc, id, np.full((*gt.shape, 3), 128, np.uint8), mask=gt)
    (voc/'ImageSets'/'Segmentation').mkdir(parents=True)
    for split in ('train', 'val'):
        (voc/'ImageSets'/'Segmentation'/f'{split}.txt').write_text(''.join(f'{i}\n' for i, (_, s) in items.items() if s == split))
    return voc

def test_scores_equal_an_independent_confusion_count(tmp_path):
    # two val images; 255 in the ground truth (its prediction, 5, is not counted), class 5 in no counted pixel, classes 4 and 6-20 nowhere
    gts = {'A': np.array([[0, 1, 1], [255, 2, 0]]), 'B': np.array([[3, 3]])}
    preds = {'A': np.array([[0, 1, 2], [5, 2, 2]]), 'B': np.array([[3, 0]])}
    hand_voc(tmp_path, {k: (v, 'val') for k, v in gts.items()})
    out = tmp_path/'pred'; out.mkdir()
    for k, p in preds.items(): save_mask(p, out/f'{k}.png')
    res = score_predictions(out, tmp_path, 'val', progress=False)
    cm = np.zeros((21, 21), np.int64)                      # counted here without aeft.metrics
    for k in gts:
        for g, p in zip(gts[k].ravel(), preds[k].ravel()):
            if g != 255: cm[g, p] += 1
    assert np.array_equal(np.array(res['confusion']), cm)
    assert cm[:4, :4].tolist() == [[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 1]] and cm.sum() == 7
    assert res['iou'][:4] == pytest.approx([1/3, 1/2, 1/3, 1/2])              # TP / (row + column - TP)
    assert res['precision'][:4] == pytest.approx([1/2, 1, 1/3, 1]) and res['recall'][:4] == pytest.approx([1/2, 1/2, 1, 1/2])
    assert all(v is None for v in res['iou'][4:])                              # absent classes: no IoU, not 0
    assert res['miou'] == pytest.approx(5/12) and res['images'] == 2
    assert json.loads((out/'scores.json').read_text())['confusion'] == cm.tolist() and (out/'confusion.png').is_file()

def test_server_archive_round_trip(tmp_path):
    voc = tmp_path/'VOC2012test'/'VOCdevkit'/'VOC2012'
    rng, sizes = np.random.default_rng(0), {'2008_000001': (37, 50), '2008_000007': (41, 29), '2009_000002': (12, 80)}
    for id, (h, w) in sizes.items(): write_voc_image(voc, id, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (voc/'ImageSets'/'Segmentation').mkdir(parents=True)
    (voc/'ImageSets'/'Segmentation'/'test.txt').write_text(''.join(f'{i}\n' for i in sizes))
    ds = SplitImages(tmp_path/'VOC2012test', 'test')
    out, masks = tmp_path/'sub', {id: rng.integers(0, 21, hw).astype(np.uint8) for id, hw in sizes.items()}
    folder = server_folder(out, 'comp6'); folder.mkdir(parents=True)
    for id, m in masks.items(): save_mask(m, folder/f'{id}.png')
    (folder/'.2008_000001.png.1234abcd.tmp').write_bytes(b'half a PNG')         # what a killed writer leaves: never packed
    arc = write_archive(out, ds.ids)
    assert arc == out/'results.tar.gz' and check_archive(arc, ds) == 3
    rel = 'results/VOC2012/Segmentation/comp6_test_cls'
    with tarfile.open(arc, 'r:gz') as tar:
        assert tar.getnames() == ['results', 'results/VOC2012', 'results/VOC2012/Segmentation', rel] + [f'{rel}/{i}.png' for i in sorted(sizes)]
        for id, m in masks.items():
            f = tar.getmember(f'{rel}/{id}.png')
            assert f.isfile() and (f.uname, f.gname, f.uid) == ('', '', 0)
            im = Image.open(tar.extractfile(f))
            assert im.mode == 'P' and im.getpalette()[:63] == voc_palette()[:63] and im.size == sizes[id][::-1]
            assert np.array_equal(np.asarray(im), m)
    # the check refuses what the server would not score
    save_mask(np.full(sizes['2008_000007'], 255), folder/'2008_000007.png')
    with pytest.raises(ValueError, match='holds the label 255'): check_archive(write_archive(out, ds.ids), ds)
    save_mask(masks['2008_000001'][:5], folder/'2008_000007.png')
    with pytest.raises(ValueError, match='but its image'): check_archive(write_archive(out, ds.ids), ds)
    (folder/'2008_000007.png').unlink()
    with pytest.raises(FileNotFoundError, match='1 of the 3 masks to pack are not in'): write_archive(out, ds.ids)
    save_mask(masks['2008_000007'], folder/'2008_000007.png')
    with pytest.raises(ValueError, match="missing: \\['results/VOC2012/Segmentation/comp5_test_cls/"): check_archive(write_archive(out, ds.ids), ds, 'comp5')
    extra = write_archive(out, ds.ids[:2])
    with pytest.raises(ValueError, match='holds 2 files for 3 listed images'): check_archive(extra, ds)

class Symmetric(nn.Module):
    "A 3×3 convolution whose kernels are mirror-symmetric left to right, then a 2×2 average pool: logits at stride 2 that commute with a flip"
    def __init__(self, C=4):
        super().__init__(); torch.manual_seed(0)
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        with torch.no_grad(): self.conv.weight.copy_((self.conv.weight + self.conv.weight.flip(-1))/2)
    def forward(self, x): return nn.functional.avg_pool2d(self.conv(x), 2)

def test_flip_and_scale_invariants():
    net, rng = Symmetric(), np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, hw + (3,), dtype=np.uint8)) for hw in [(20, 31), (20, 30), (17, 9)]]
    x = torch.randn(1, 3, 20, 30)
    torch.testing.assert_close(net(x.flip(-1)), net(x).flip(-1))               # the network commutes with a flip (even width)
    one = segment_scores(net, imgs[1:2])[0]
    torch.testing.assert_close(segment_scores(net, imgs[1:2], flip=True)[0], one, atol=1e-5, rtol=0)   # so flipping adds nothing
    for fuse in FUSIONS:    # a one-colour image: every scale and flip gives the single-scale scores (away from the zero padding)
        flat = Image.new('RGB', (24, 16), (10, 200, 90))
        s = segment_scores(net, [flat])[0]
        m = segment_scores(net, [flat], scales=(0.5, 0.75, 1.0, 1.25, 1.5), flip=True, fuse=fuse)[0]
        torch.testing.assert_close(m[:, 6:-6, 6:-6], (s.softmax(0) if fuse == 'probs' else s)[:, 6:-6, 6:-6], atol=1e-5, rtol=0)
    a = segment_scores(net, imgs, scales=(0.5, 1.0, 1.5), flip=True, max_batch=1)
    b = segment_scores(net, imgs, scales=(0.5, 1.0, 1.5), flip=True, max_batch=16)
    for u, v, im in zip(a, b, imgs):                                           # batching changes nothing; scores at the image size
        assert u.shape == (4, im.height, im.width)
        torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-5)
    s = torch.tensor([[[0., 3.]], [[0., 3.]], [[1., -1.]]])                    # ties go to the lower class
    assert fused_mask(s).tolist() == [[2, 0]]

def test_scores_are_logits_upsampled_bilinearly():
    net, rng = Symmetric(), np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (21, 31, 3), dtype=np.uint8))
    with torch.no_grad(): z = net(to_input(img)[None])                       # stride 2: 10 x 15 logits
    assert z.shape[-2:] == (10, 15)
    up = nn.functional.interpolate(z, size=(21, 31), mode='bilinear', align_corners=False)[0]   # main.py test of kazuto1011/deeplab-pytorch
    torch.testing.assert_close(segment_scores(net, [img])[0], up)
    assert np.array_equal(fused_mask(segment_scores(net, [img])[0]), up.argmax(0).numpy())

def test_crf_settings_and_default():
    assert options(PredictStage)['crf_settings'].default is None            # main.py test of kazuto1011/deeplab-pytorch: no CRF
    assert CRF_SETTINGS['deeplab'] == dict(t=10, gaussian=dict(sxy=1, compat=3), bilateral=dict(sxy=67, srgb=3, compat=4))   # configs/voc12.yaml CRF
    assert CRF_SETTINGS['released'] == dict(t=10, gaussian=dict(sxy=3, compat=3), bilateral=dict(sxy=80, srgb=13, compat=10))
    assert CRF_SETTINGS['seam'] == dict(t=1, gaussian=dict(sxy=3, compat=3), bilateral=dict(sxy=32, srgb=13, compat=10))
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    p = torch.randn(3, 23, 31).softmax(0).numpy()
    assert np.array_equal(crf_probs(img, p, 'released'), dense_crf(img, p, 10))   # the released setting is the pseudo-mask stage's CRF
    q = crf_probs(img, p, 'deeplab')
    assert q.shape == p.shape and np.allclose(q.sum(0), 1, atol=1e-5) and not np.allclose(q, dense_crf(img, p, 10))
    with pytest.raises(ValueError, match='must be a uint8'): crf_probs(img[:5].astype(np.float32), p, 'deeplab')

def test_aeft_predict_val_end_to_end(setup, capsys):
    t, root, ckpt = setup
    summary = PredictStage(ckpt=str(ckpt), root=str(root), out=str(t/'run'), progress=False).run()   # the console script itself runs in test_sigkill_then_resume
    printed = capsys.readouterr().out
    assert 'aeft_predict: 6 masks written' in printed and 'mIoU' in printed
    ds, out = SplitImages(root, 'val'), t/'run'/'val'
    for id in ds.ids:
        m = read_mask(out/f'{id}.png', ds.file(id))                           # palette PNG of VOC's colours, the image's size
        assert m.max() <= 20
    res = json.loads((out/'scores.json').read_text())
    assert res['images'] == 6 and res['evaluated_on'] == 'val' and len(res['confusion']) == 21
    assert {k: summary[k] for k in ('out', 'split', 'images', 'written', 'miou', 'scores')} == \
           dict(out=str(out), split='val', images=6, written=6, miou=res['miou'], scores=str(out/'scores.json')) and summary['seconds'] > 0
    assert res['settings'] == json.loads((out/MANIFEST).read_text())
    assert DEEPLAB_MSC == dict(scales=(0.5, 0.75, 1.0), flip=False, fuse='max')      # MSC of kazuto1011/deeplab-pytorch: scales 1, 0.5, 0.75, max, no flip
    assert (res['settings']['scales'], res['settings']['flip'], res['settings']['fuse'], res['settings']['crf']) == ([0.5, 0.75, 1.0], False, 'max', None)
    assert (out/'confusion.png').is_file() and not [p for p in out.iterdir() if p.name.startswith('.')]
    # resumed: nothing to redo; a lost mask is written again, identical
    first = (out/f'{ds.ids[3]}.png').read_bytes()
    (out/f'{ds.ids[3]}.png').unlink()
    (out/f'.{ds.ids[1]}.png.deadbeef.tmp').write_bytes(b'')                   # left by a killed run
    assert aeft_predict([str(ckpt), '--root', str(root), '--out', str(t/'run'), '--progress', 'False'])['written'] == 1
    assert (out/f'{ds.ids[3]}.png').read_bytes() == first
    assert message(ckpt, '--root', root, '--out', t/'run', '--scales', '1.0').startswith(f"aeft_predict: {out} holds predictions made with scales")

def test_aeft_predict_on_the_voc_sample(tmp_path):
    data = tmp_path/'voc-sample'; shutil.copytree(SAMPLE, data)
    ckpt = save_segmenter(tmp_path/'seg.pt')
    PredictStage(ckpt=str(ckpt), root=str(data), out=str(tmp_path/'run'), scales=(1.0,), flip=True, fuse='logits', crf_settings='released', progress=False).run()
    res = json.loads((tmp_path/'run'/'val'/'scores.json').read_text())
    assert res['images'] == 4 and res['settings']['crf'] == 'released'
    # the 4 val photos listed as a test split, without their masks: the server's layout and archive
    seg = data/'VOC2012'/'ImageSets'/'Segmentation'
    (seg/'test.txt').write_text((seg/'val.txt').read_text())
    shutil.rmtree(data/'VOC2012'/'SegmentationClass'); shutil.rmtree(data/'VOC2012'/'SegmentationClassAug')
    summary = aeft_predict([str(ckpt), '--root', str(data), '--split', 'test', '--out', str(tmp_path/'run'), '--scales', '1.0', '--progress', 'False'])
    assert summary['archive'] == str(tmp_path/'run'/'test'/'results.tar.gz') and 'miou' not in summary
    ds = SplitImages(data, 'test')
    assert check_archive(tmp_path/'run'/'test'/'results.tar.gz', ds) == 4
    for id in ds.ids:
        with Image.open(server_folder(tmp_path/'run'/'test')/f'{id}.png') as im, Image.open(ds.file(id)) as photo: assert im.size == photo.size

def test_errors(setup, tmp_path):
    t, root, ckpt = setup
    base = ('--root', root, '--out', tmp_path/'o')
    three = str(save_segmenter(tmp_path/'seg3.pt', num_classes=3))                 # the fixture's images hold classes 0 to 3: a network of 7 would be taken (a VOC-format copy)
    assert message(three, *base) == f"aeft_predict: {three} holds a network of 3 classes, but --data voc has 21 (the background and 20 classes)"
    voc = root/'VOCdevkit'/'VOC2012'
    (voc/'ImageSets'/'Segmentation'/'gone.txt').write_text('2026_000008\n2026_009999\n')
    assert '1 of the 2 images listed in' in message(ckpt, *base, '--split', 'gone') and '2026_009999.jpg' in message(ckpt, *base, '--split', 'gone')
    assert 'The test images and their list come in the VOC2012 test download' in message(ckpt, *base, '--split', 'test')
    assert f"checkpoint {tmp_path/'none.pt'} does not exist" in message(tmp_path/'none.pt', *base)
    assert message(ckpt, *base, '--fuse', 'mean') == "aeft_predict: --fuse must be one of logits, probs, max, got 'mean'"
    assert message(ckpt, *base, '--scales', '1,x') == "aeft_predict: --scales must be values separated by commas, e.g. 2,4,8, got '1,x'"
    assert message(ckpt, *base, '--scales', '0') == "aeft_predict: --scales must be values > 0 each, got 0"
    assert message(ckpt, *base, '--crf_settings', 'dense') == "aeft_predict: --crf_settings must be one of released, deeplab, seam, got 'dense'"
    assert message(ckpt, *base, '--split', 'test', '--comp', 'comp3') == "aeft_predict: --comp must be one of comp5, comp6, got 'comp3'"
    assert "`comp` must be one of ('comp5', 'comp6')" in str(pytest.raises(ValueError, PredictStage(ckpt=str(ckpt), root=str(root), split='test', comp='comp3').run).value)
    assert message(ckpt, *base, '--ids', tmp_path/'ids.txt', '--split', 'test').startswith('aeft_predict: --ids lists images to predict and score; --split test')
    with pytest.raises(SystemExit, match='give the segmentation checkpoint'): aeft_predict(['--root', str(root)])
    assert not (tmp_path/'o').exists()
    # a folder of another checkpoint's predictions, and PNGs nobody accounts for
    aeft_predict([str(ckpt), *map(str, base), '--scales', '1.0', '--progress', 'False'])
    other = save_segmenter(tmp_path/'other.pt', width=8)
    assert 'holds predictions made with checkpoint_sha256=' in message(other, *base, '--scales', '1.0')
    (tmp_path/'o'/'val'/MANIFEST).unlink()
    assert 'but no manifest.json' in message(ckpt, *base, '--scales', '1.0')

def test_ckpt_run_folder(setup, tmp_path, capsys):
    "--ckpt (the flag or the positional argument) takes aeft_segment's run folder: its last.pt; a folder without one is refused naming it"
    t, root, ckpt = setup
    run_dir = tmp_path/'segment'; run_dir.mkdir()
    assert message(run_dir, '--root', root) == f"aeft_predict: checkpoint folder {run_dir} holds neither best.pt nor last.pt (what aeft_train, aeft_affinity and aeft_segment write)"
    shutil.copy(ckpt, run_dir/'last.pt')
    (tmp_path/'ids.txt').write_text(SplitImages(root, 'val').ids[0] + '\n')
    res = aeft_predict(['--ckpt', str(run_dir), '--root', str(root), '--ids', str(tmp_path/'ids.txt'), '--out', str(tmp_path/'o'), '--scales', '1.0', '--progress', 'False'])
    assert res['written'] == 1 and f"aeft_predict: --ckpt {run_dir} reads {run_dir/'last.pt'}" in capsys.readouterr().out
    assert json.loads((tmp_path/'o'/'ids'/MANIFEST).read_text())['checkpoint_sha256'] == hashlib.sha256(ckpt.read_bytes()).hexdigest()

def test_old_spellings_and_ids(setup, tmp_path, capsys):
    "--crf and --voc_root, the old spellings of --crf_settings and --root, still work and say so; --ids predicts and scores the listed images"
    t, root, ckpt = setup
    assert message(ckpt, '--voc_root', root, '--crf', 'dense') == "aeft_predict: --crf_settings must be one of released, deeplab, seam, got 'dense'"
    assert capsys.readouterr().err.splitlines() == ['aeft_predict: --voc_root is now --root', 'aeft_predict: --crf is now --crf_settings']
    ids = SplitImages(root, 'val').ids[:2]
    (tmp_path/'two.txt').write_text('\n'.join(ids) + '\n')
    summary = aeft_predict([str(ckpt), '--voc_root', str(root), '--ids', str(tmp_path/'two.txt'), '--out', str(tmp_path/'run'), '--scales', '1.0',
                            '--crf', 'seam', '--progress', 'False'])
    assert 'aeft_predict: --voc_root is now --root' in capsys.readouterr().err
    out = tmp_path/'run'/'two'
    assert (summary['out'], summary['split'], summary['images']) == (str(out), 'two', 2)
    assert sorted(p.name for p in out.glob('20*.png')) == sorted(f'{i}.png' for i in ids)
    res = json.loads((out/'scores.json').read_text())
    assert (res['images'], res['evaluated_on'], res['settings']['crf'], summary['miou']) == (2, '2 listed ids', 'seam', res['miou'])

def test_sigkill_then_resume(tmp_path):
    data = tmp_path/'voc-sample'; shutil.copytree(SAMPLE, data)
    ckpt, out = save_segmenter(tmp_path/'seg.pt'), tmp_path/'run'
    args = ['--scales', '1.0', '--crf_settings', 'seam']
    cmd = [str(BIN/'aeft_predict'), str(ckpt), '--root', str(data), '--split', 'trainval', '--out', str(out), '--images_per_batch', '1',
           '--progress', 'False'] + args
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS='1'))
    folder, t0 = out/'trainval', time.time()
    while p.poll() is None and not list(folder.glob('*.png')) and time.time() - t0 < 120: time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    done = sorted(folder.glob('*.png'))
    assert 1 <= len(done) < 8, f'the kill came at {len(done)} of 8 masks'
    for f in done: assert read_mask(f, data/'VOC2012'/'JPEGImages'/f'{f.stem}.jpg').max() <= 20   # whole masks only
    aeft_predict([str(ckpt), '--root', str(data), '--split', 'trainval', '--out', str(out), '--progress', 'False', *args])             # resumed
    aeft_predict([str(ckpt), '--root', str(data), '--split', 'trainval', '--out', str(tmp_path/'whole'), '--progress', 'False', *args])  # in one go
    ids = read_ids(data/'VOC2012'/'ImageSets'/'Segmentation'/'trainval.txt')
    assert [(folder/f'{i}.png').read_bytes() for i in ids] == [(tmp_path/'whole'/'trainval'/f'{i}.png').read_bytes() for i in ids]
    assert json.loads((folder/'scores.json').read_text())['images'] == 8

@pytest.fixture(scope='module')
def coco(coco_data, tmp_path_factory):
    "The COCO-format fixture, its GroundTruth, and untrained tiny networks of COCO's 81 and VOC's 21 classes"
    t, (root, truth) = tmp_path_factory.mktemp('predict-coco'), coco_data
    return t, root, truth, save_segmenter(t/'seg81.pt', num_classes=81), save_segmenter(t/'seg21.pt')

def test_aeft_predict_on_coco(coco, tmp_path):
    "--data coco: the annotated val2014 images predicted with an 81-class network (the default split), scored against COCO's masks with 81 classes"
    t, root, truth, ckpt, _ = coco
    r = subprocess.run([str(BIN/'aeft_predict'), str(ckpt), '--data', 'coco', '--root', str(root), '--out', str(tmp_path/'run'), '--progress', 'False'],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr
    ids, out = truth.ids('val'), tmp_path/'run'/'val'
    assert len(ids) == 6 and f'aeft_predict: 6 masks written to {out}' in r.stdout and 'mIoU' in r.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, 'confusion.png', 'scores.json'] + [f'{i}.png' for i in ids])
    cm = np.zeros((81, 81), np.int64)                                          # counted here without aeft.metrics
    for id in ids:
        with Image.open(truth.image(id)) as im, Image.open(out/f'{id}.png') as p:
            assert p.mode == 'P' and p.size == im.size
            pred = np.asarray(p).astype(np.int64)
        assert pred.max() <= 80
        np.add.at(cm, (truth.mask(id).astype(np.int64).ravel(), pred.ravel()), 1)
    res = json.loads((out/'scores.json').read_text())
    assert (res['classes'], res['images'], res['evaluated_on']) == (list(COCO_NAMES), 6, 'val')
    assert np.array_equal(np.array(res['confusion']), cm) and res['settings']['checkpoint_sha256'] == json.loads((out/MANIFEST).read_text())['checkpoint_sha256']

def test_coco_errors(coco, tmp_path):
    t, root, _, ckpt81, ckpt21 = coco
    base = ('--data', 'coco', '--root', root, '--out', tmp_path/'o')
    assert message(ckpt21, *base) == (f"aeft_predict: {ckpt21} holds a network of 21 classes, but --data coco has 81 (the background and 80 classes); "
                                      "it is a network for --data voc")
    assert message(ckpt81, *base, '--data', 'voc', '--root', t) == (f"aeft_predict: {ckpt81} holds a network of 81 classes, but --data voc has 21 (the background and 20 classes); "
                                                                   "it is a network for --data coco")
    assert message(ckpt81, *base, '--split', 'test') == ("aeft_predict: --split test is VOC 2012's evaluation-server split; COCO 2014 has none here: "
                                                         "with --data coco predict val (its annotated val2014 images, scored) or train")
    assert message(ckpt81, *base, '--data', 'cityscapes') == "aeft_predict: --data must be one of voc, coco, shapes, folder, cocofile, got 'cityscapes'"
    assert message(ckpt81, *base, '--data', 'shapes') == "aeft_predict: --data must be 'voc', 'coco', 'folder' or 'cocofile', got 'shapes'"
    assert message(ckpt81, *base, '--out', root/'pred') == f"aeft_predict: --out {root/'pred'} is inside the data folder {root}; write the outputs elsewhere"
    copy = tmp_path/'copy'; shutil.copytree(root, copy)                        # a val image of the annotations missing on disk
    gone = copy/'val2014'/'COCO_val2014_000000000101.jpg'; gone.unlink()
    assert message(ckpt81, *base, '--root', copy) == f"aeft_predict: 1 of the 6 images of split 'val' of {copy} are missing: {gone}"
    assert not (tmp_path/'o').exists() and not (root/'pred').exists()
