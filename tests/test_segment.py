"The segmentation network: SIGKILL then resume, aeft_segment end to end on the VOC-format fixture, on the VOC sample and on the COCO-format fixture (81 classes), its errors, the ASPP head and the learning-rate groups, torchvision's ImageNet weights from its cache"
import json, os, random, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch, torchvision
from PIL import Image
from aeft.voc import write_tiny_voc, save_mask
from aeft.segment import (ASPP, SegmentConfig, SegmentStage, TV_WEIGHTS, build_segmenter, segment_optimizer, load_segmenter, aeft_segment, PseudoMaskDataset)
import test_train
from test_train import assert_same, weights, steps, ENV

pytestmark = [pytest.mark.filterwarnings('ignore:VOC split'), pytest.mark.filterwarnings('ignore:COCO split'),   # the small datasets' sizes are not VOC's or COCO's
              pytest.mark.usefixtures('one_thread')]
BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).parent/'data'/'voc-sample'
def flags(**kw): return [x for k, v in kw.items() for x in (f'--{k}', str(v))]
OPTS = flags(crop_size=48, batch_size=4, iterations=24, width=8)   # 16 train_aug images: 4 steps an epoch, 6 epochs

@pytest.fixture(scope='module')
def fixture(tmp_path_factory):
    "The VOC-format fixture and a folder with its ground-truth masks (VOC train and SBD's PNGs: one for every train_aug id) standing in for pseudo masks"
    t = tmp_path_factory.mktemp('segment')
    root = write_tiny_voc(t/'data', sbd='png')
    masks = t/'masks'; masks.mkdir()
    for sub in ('SegmentationClass', 'SegmentationClassAug'):
        for p in (root/'VOCdevkit'/'VOC2012'/sub).glob('*.png'): shutil.copy(p, masks)
    return root, masks

def args(root, masks, out, opts=OPTS):
    return [str(masks), '--root', str(root), '--backbone', 'tiny', '--out', str(out), '--progress', 'False', *opts]

def message(masks, **kw):
    "The one-line error of aeft_segment called in this process: the tiny network, OPTS, and the options `kw` (given last, so they win)"
    with pytest.raises(SystemExit) as e: aeft_segment([masks, '--backbone', 'tiny', '--progress', 'False', *OPTS, *flags(**kw)])
    return str(e.value)

def test_sigkill_at_a_random_moment_then_resume_gives_the_same_weights(fixture, tmp_path, monkeypatch):
    "test_train's kill_after driving the command: killed twice at random steps, resumed to the end, equal to an uninterrupted run (in this process)"
    root, masks = fixture
    def drive(out, popen=False):
        cmd = [str(BIN/'aeft_segment'), *args(root, masks, out), '--resume', 'True']
        if popen: return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
    monkeypatch.setattr(test_train, 'drive', drive)
    keys = ('epoch', 'step', 'lr', 'loss')
    aeft_segment(args(root, masks, tmp_path/'a'))
    n = len(steps(tmp_path/'a', keys))
    assert n == 24
    k1 = random.randint(1, n//2); k2 = random.randint(k1 + 1, n - 2)   # at least two steps left: the run cannot end before the kill
    test_train.kill_after(tmp_path/'b', k1)
    test_train.kill_after(tmp_path/'b', k2)
    drive(tmp_path/'b')
    assert_same(weights(tmp_path/'a'), weights(tmp_path/'b'))
    assert steps(tmp_path/'a', keys) == steps(tmp_path/'b', keys), (k1, k2)
    # the run's outputs, and its checkpoint as the prediction stage loads it
    assert sorted(p.name for p in (tmp_path/'a').iterdir()) == ['config.json', 'curves.png', 'last.pt', 'log.jsonl']
    net, cfg = load_segmenter(tmp_path/'a'/'last.pt', backbone='tiny', num_classes=21)
    assert (cfg.epochs, cfg.crop_size, cfg.width) == (6, 48, 8) and not net.training
    with torch.no_grad(): assert net(torch.zeros(1, 3, 40, 56)).shape == (1, 21, 10, 14)
    with pytest.raises(ValueError, match="holds a network made with num_classes=21, not num_classes=7"):
        load_segmenter(tmp_path/'a'/'last.pt', num_classes=7)
    m = message(str(masks), root=str(root), out=str(tmp_path/'a'), resume=True, num_labels=7)
    assert "last.pt was written with another config" in m and "'num_classes': (7, 21)" in m     # resuming for another class count

def test_aeft_segment_on_the_voc_sample(tmp_path):
    "The 8 VOC photographs (copied: the data folder is only read) with their official masks as pseudo masks, VOC train, one epoch"
    root = Path(shutil.copytree(SAMPLE, tmp_path/'voc-sample'))
    before = sorted(p.relative_to(root) for p in root.rglob('*'))
    r = subprocess.run([str(BIN/'aeft_segment'), *args(root, root/'VOC2012'/'SegmentationClass', tmp_path/'run', flags(crop_size=64, batch_size=2, iterations=2, width=4)),
                        '--split', 'train'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert 'aeft_segment: 4 images of train with the masks of' in r.stdout and '1 epoch of 2 steps' in r.stdout
    log = [json.loads(l) for l in (tmp_path/'run'/'log.jsonl').read_text().splitlines()]
    assert [r['kind'] for r in log] == ['step', 'step', 'epoch'] and all(np.isfinite(r['loss']) for r in log)
    assert sorted(p.relative_to(root) for p in root.rglob('*')) == before                        # nothing written into the data

def test_errors(fixture, tmp_path):
    root, masks = fixture
    r = subprocess.run([str(BIN/'aeft_segment'), *args(root, tmp_path/'none', tmp_path/'o')], capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == f'aeft_segment: pseudo-mask folder not found: {tmp_path/"none"}'
    assert not (tmp_path/'o').exists()
    kw = dict(root=str(root), out=str(tmp_path/'o'))
    # pseudo masks missing for listed ids: how many, and some of them
    some = tmp_path/'some'; shutil.copytree(masks, some)
    gone = sorted(some.glob('*.png'))[:7]
    for p in gone: p.unlink()
    m = message(str(some), **kw)
    assert m.startswith(f'aeft_segment: 7 of the 16 ids of train_aug have no pseudo masks in {some}: ') and m.endswith(' and 2 more')
    assert all(p.stem in m for p in gone[:5])
    for p in gone: shutil.copy(masks/p.name, some)
    # a mask of the wrong size: the file, both sizes
    w, h = Image.open(some/gone[0].name).size
    save_mask(np.zeros((h, w + 3), np.uint8), some/gone[0].name)
    m = message(str(some), **kw)
    assert f'pseudo mask {some/gone[0].name} is {w + 3}×{h} but its image ' in m and f'is {w}×{h}' in m and '1 of the 16 masks differ' in m
    # values: not a class index at all, or a class beyond the network's
    save_mask(np.full((h, w), 21, np.uint8), some/gone[0].name)
    assert f'mask {some/gone[0].name} holds values 21 that are not class indices' in message(str(some), **kw)
    shutil.copy(masks/gone[0].name, some)
    m = message(str(some), num_labels=2, **kw)
    assert 'holds class' in m and 'but the network has 2 classes (values 0–1, and 255 ignored)' in m
    # options and init
    assert "`opts` item 'colour=red' is not name=value" in message(str(masks), opts='colour=red', **kw)
    assert 'SegmentConfig.backbone must be one of' in message(str(masks), backbone='vgg16', **kw)
    assert message(str(masks), train_scales='0,1', **kw) == 'aeft_segment: --train_scales must be values > 0 each, got 0,1'
    assert "`init` 'w.pth': the tiny backbone has no pretrained weights" in message(str(masks), init='w.pth', **kw)
    assert f"checkpoint file '{tmp_path/'w.pth'}' does not exist" in message(str(masks), backbone='resnet38d', init=str(tmp_path/'w.pth'),
                                                                            **{**kw, 'out': str(tmp_path/'o2')})
    with pytest.raises(ValueError, match='is not a checkpoint of aeft_segment'):
        torch.save(dict(model={}, config=dict(image_size=320, aeft_options={})), tmp_path/'clf.pt'); load_segmenter(tmp_path/'clf.pt')

def test_old_spellings_still_work(fixture, tmp_path, capsys):
    "--voc_root, --network, --coco_root and --opts of earlier versions: the same options, each with a note naming the new one; run's summary"
    root, masks = fixture
    res = aeft_segment([str(masks), '--voc_root', str(root), '--network', 'tiny', '--out', str(tmp_path/'run'), '--progress', 'False',
                        '--opts', 'crop_size=32 batch_size=4 iterations=4 width=4'])
    err = capsys.readouterr().err
    assert 'aeft_segment: --voc_root is now --root' in err and 'aeft_segment: --network is now --backbone' in err, err
    assert 'aeft_segment: --opts is read as the options it names' in err
    assert {k: v for k, v in res.items() if k != 'seconds'} == dict(out=str(tmp_path/'run'), images=16, epochs=1, steps=4)
    cfg = json.loads((tmp_path/'run'/'config.json').read_text())
    assert (cfg['backbone'], cfg['crop_size'], cfg['width'], cfg['iterations']) == ('tiny', 32, 4, 4)
    assert 'COCO root not found' in message(str(masks), data='coco', coco_root=str(tmp_path/'nowhere'))
    assert 'aeft_segment: --coco_root is now --root' in capsys.readouterr().err

def test_aspp_shape_and_learning_rate_groups():
    x = torch.randn(2, 8, 13, 17)
    aspp = ASPP(8, 5)
    assert aspp(x).shape == (2, 5, 13, 17) and aspp.rates == (6, 12, 18, 24)
    assert all(c.dilation == (r, r) and c.padding == (r, r) for c, r in zip(aspp.convs, aspp.rates))
    for b in ('tiny', 'resnet50'):
        cfg = SegmentConfig(backbone=b)
        net = build_segmenter(cfg)
        g = {p['name']: p for p in segment_optimizer(net, cfg, 100)[0].param_groups}
        convs = [m for m in net.head.modules() if isinstance(m, torch.nn.Conv2d)]
        assert {id(p) for p in g['new_weights']['params']} == {id(c.weight) for c in convs}
        assert {id(p) for p in g['new_biases']['params']} == {id(c.bias) for c in convs if c.bias is not None}
        assert (g['new_weights']['lr'], g['new_biases']['lr'], g['new_biases']['weight_decay']) == (10*cfg.lr, 20*cfg.lr, 0.)
        assert not {id(p) for p in net.head.parameters()} & {id(p) for p in g['pretrained_weights']['params']}
    off = SegmentConfig.synthetic()                                   # new_head=False: the head at the base rate
    g = {p['name']: p for p in segment_optimizer(build_segmenter(off), off, 100)[0].param_groups}
    assert not g['new_weights']['params'] and len(g['pretrained_weights']['params']) == 6 + 4

def test_torchvision_imagenet_weights_come_from_its_cache(tmp_path, monkeypatch):
    "init='imagenet' goes through torchvision's weights API, which reads a file copied into its cache (no download here)"
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    cfg = SegmentConfig(backbone='resnet50')
    w = TV_WEIGHTS['resnet50']
    ref = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in torchvision.models.resnet50().state_dict().items()}
    (tmp_path/'hub'/'checkpoints').mkdir(parents=True)
    torch.save(ref, tmp_path/'hub'/'checkpoints'/Path(w.url).name)
    net = build_segmenter(cfg, 'imagenet')
    sd = net.backbone.state_dict()
    assert set(sd) == set(ref) - {'fc.weight', 'fc.bias'} and all(torch.equal(sd[k], ref[k]) for k in sd)

@pytest.fixture(scope='module')
def coco(coco_data, tmp_path_factory):
    "The COCO-format fixture and a folder with the ground-truth masks of its 13 annotated train images standing in for pseudo masks (labels up to 80)"
    t, (root, truth) = tmp_path_factory.mktemp('segment-coco'), coco_data
    masks = t/'masks'; masks.mkdir()
    for id in truth.ids('train'): save_mask(truth.mask(id), masks/f'{id}.png')
    return root, truth, masks

COCO_OPTS = flags(crop_size=32, batch_size=4, iterations=6, width=4)   # 13 images: 3 steps an epoch, 2 epochs

def test_aeft_segment_on_coco(coco, tmp_path):
    "--data coco: COCO's annotated train images (split train by default), SegmentConfig.coco's 81 classes, masks with labels beyond VOC's 20"
    root, truth, masks = coco
    ds = PseudoMaskDataset(truth, masks, 'train', num_classes=81)
    assert ds.ids == truth.ids('train') and len(ds) == 13 and ds.num_labels == 81
    assert set().union(*(np.unique(ds.mask(i)).tolist() for i in range(len(ds)))) == {0, 1, 12, 17, 57, 80}   # person, stop sign, dog, chair, toothbrush
    r = subprocess.run([str(BIN/'aeft_segment'), str(masks), '--data', 'coco', '--root', str(root), '--backbone', 'tiny', '--out', str(tmp_path/'run'),
                        '--progress', 'False', *COCO_OPTS], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr
    assert f'aeft_segment: 13 images of train with the masks of {masks}; 2 epochs of 3 steps (6 steps, 6 asked)' in r.stdout
    cfg = json.loads((tmp_path/'run'/'config.json').read_text())
    ref = SegmentConfig.coco()
    assert (cfg['num_classes'], cfg['iterations'], cfg['epochs']) == (81, 6, 2)
    assert (cfg['lr'], cfg['crop_size'], cfg['batch_size'], ref.iterations, ref.num_classes) == (2.5e-4, 32, 4, 100000, 81)
    log = [json.loads(l) for l in (tmp_path/'run'/'log.jsonl').read_text().splitlines()]
    assert sum(r['kind'] == 'step' for r in log) == 6 and all(np.isfinite(r['loss']) for r in log)
    net, c = load_segmenter(tmp_path/'run'/'last.pt', num_classes=81, backbone='tiny')
    with torch.no_grad(): assert net(torch.zeros(1, 3, 32, 48)).shape == (1, 81, 8, 12)

def test_coco_errors(coco, tmp_path):
    root, truth, masks = coco
    kw = dict(data='coco', root=str(root), out=str(tmp_path/'o'), crop_size=32, batch_size=4, iterations=6, width=4)
    ids = truth.ids('train')
    # a COCO image missing on disk: its file named
    copy = tmp_path/'copy'; shutil.copytree(root, copy)
    gone = copy/'train2014'/f'{ids[4]}.jpg'; gone.unlink()
    assert message(str(masks), **dict(kw, root=str(copy))) == f'aeft_segment: 1 of the 13 ids of train have no image file: {gone}'
    # a pseudo mask of label 81: the file named
    bad = tmp_path/'bad'; shutil.copytree(masks, bad)
    h, w = truth.mask(ids[0]).shape
    save_mask(np.full((h, w), 81, np.uint8), bad/f'{ids[0]}.png')
    m = message(str(bad), **kw)
    assert m.startswith(f"aeft_segment: mask {bad/f'{ids[0]}.png'} has values up to 81; expected a palette or 8-bit PNG of COCO's labels 0-80 and 255 (ignored)"), m
    # a network of VOC's 21 classes on COCO's labels
    m = message(str(masks), **dict(kw, num_labels=21))
    assert 'holds class' in m and 'but the network has 21 classes (values 0–20, and 255 ignored)' in m
    # no output inside the data; no split of VOC's names
    assert message(str(masks), **dict(kw, out=str(root/'run'))) == f"aeft_segment: --out {root/'run'} is inside the data folder {root}; write the outputs elsewhere"
    assert "split 'train_aug' is neither a split of the data nor a file of ids (COCO split must be one of ('train', 'val')" in message(str(masks), split='train_aug', **kw)
    assert message(str(masks), **dict(kw, data='cityscapes')) == "aeft_segment: --data must be one of voc, coco, shapes, folder, cocofile, got 'cityscapes'"
    assert message(str(masks), **dict(kw, data='shapes')).startswith("aeft_segment: --data must be 'voc', 'coco', 'folder' or 'cocofile', got 'shapes'")
    assert not (root/'run').exists()                                          # nothing written into the data
