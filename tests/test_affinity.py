"AffinityNet: labels and pairs checked by hand, the loss on hand-computed affinities, SIGKILL then resume, aeft_affinity end to end on the VOC-format fixture (seeds → aeft_crf → aeft_affinity) and on a COCO-format one, and its errors; the step chosen by the walk (kept through a resume, read by aeft_pseudo) and PSA's released AffinityNet layout against a re-statement of its forward pass"
import inspect, json, os, random, shutil, subprocess, sys
from dataclasses import asdict
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from aeft.voc import write_tiny_voc, voc_splits
from aeft.evaluate import DATA
from aeft.config import make_config, build_model
from aeft.crf import CRFStage, crf_folder, run_crf
from aeft.cli import options
from torch.utils.data import TensorDataset
from aeft.core import IMAGENET_STATS
from aeft.gpp import TinyBackbone
from aeft.learner import max_steps
from aeft.affinity import (radius_pairs, displacements, confident_labels, pair_labels, affinity_loss, random_crop, AffinityDataset, AffinityNet,
                           AffinityConfig, build_affinity_model, init_affinity, load_affinity_model, train_affinity, aeft_affinity, AffinityStage,
                           WalkSelectCB, walk_miou, best_walk, affinities, PSA_HEAD)
from aeft.learner import Callback, StepLimitCB, read_log
from aeft.pseudo import PseudoStage, aeft_pseudo
from aeft.evaluate import evaluate_masks
from aeft.data import voc_truth
import torch.nn.functional as F
from test_weights import random_released_checkpoint, reference_trunk, _bn, _conv
import test_train
from test_train import assert_same, weights, steps, ENV
from test_crf import write_seeds, coco_seeds

pytestmark = [pytest.mark.filterwarnings('ignore:VOC split'), pytest.mark.filterwarnings('ignore:COCO split'), pytest.mark.usefixtures('one_thread')]
BIN = Path(sys.executable).parent

def run(*args): return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env=ENV)

def argv(**kw):
    "A command line: --name value for each of `kw` that is not None"
    return [x for k, v in kw.items() if v is not None for x in (f'--{k}', str(v))]

@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    "The VOC-format fixture, seeds of its train images, their CRF outputs at alphas 2 and 21 by aeft_crf, and an (untrained) tiny classifier"
    t = tmp_path_factory.mktemp('affinity')
    root = write_tiny_voc(t/'data', sbd='png')
    ids = voc_splits(root, verbose=False)['train']
    write_seeds(root, ids, t/'seeds')
    CRFStage(seeds=str(t/'seeds'), out=str(t/'crf'), root=str(root), split='train', processes=1, progress=False).run()
    cfg = make_config('voc', backbone='tiny', width=8, opts='device=cpu')
    torch.save(dict(model=build_model(cfg).state_dict(), config=asdict(cfg)), t/'clf.pt')
    return t, root, ids

# ---- pairs, labels and loss by hand

@pytest.mark.parametrize('h, w, r', [(9, 13, 5), (6, 20, 3), (2, 3, 2), (56, 56, 5)])
def test_radius_pairs_are_the_half_disc_from_the_sources(h, w, r):
    "Sources: all rows but the last r-1, all columns but the first and last r-1; each pair once, listed displacement by displacement"
    frm, to = radius_pairs(h, w, r)
    src = [y*w + x for y in range(h - r + 1) for x in range(r - 1, w - r + 1)]
    want = [(s, s + dy*w + dx) for dy, dx in displacements(r) for s in src]
    assert list(zip(frm.tolist(), to.tolist())) == want
    assert all((dy, dx) > (0, 0) and dy*dy + dx*dx < r*r for dy, dx in displacements(r))
    assert len(displacements(r)) == sum(1 for dy in range(-r, r + 1) for dx in range(-r, r + 1) if 0 < dy*dy + dx*dx < r*r)//2

def test_radius_pairs_refuses_a_grid_too_small():
    with pytest.raises(ValueError, match='too small for radius 5: it needs at least 5 rows and 9 columns'): radius_pairs(4, 20)
    with pytest.raises(ValueError, match='too small'): radius_pairs(20, 8)
    with pytest.raises(ValueError, match='at least 2'): radius_pairs(20, 20, 1)

def test_pair_labels_by_hand():
    "A 2×5 grid, radius 2 (sources 1, 2, 3): background, one class, another class, unsure"
    lab = torch.tensor([[[0, 0, 3, 3, 255],
                         [0, 4, 3, 0, 0]]], dtype=torch.uint8)
    frm, to = radius_pairs(2, 5, 2)
    assert frm.tolist() == [1, 2, 3]*4 and to.tolist() == [2, 3, 4, 5, 6, 7, 6, 7, 8, 7, 8, 9]
    bg, fg, neg = (t[0].tolist() for t in pair_labels(lab, (frm, to)))
    #       1-2 2-3 3-4 | 1-5 2-6 3-7 | 1-6 2-7 3-8 | 1-7 2-8 3-9
    assert bg  == [0, 0, 0,   1, 0, 0,   0, 0, 0,   0, 0, 0]
    assert fg  == [0, 1, 0,   0, 0, 1,   0, 1, 0,   0, 0, 0]
    assert neg == [1, 0, 0,   0, 1, 0,   1, 0, 1,   1, 1, 1]

def test_confident_labels_by_hand():
    "Keys 0, 1, 8: the low-alpha class wins unless the high-alpha argmax is background; low-alpha background is unsure; no score: 255"
    la = np.zeros((3, 1, 5), np.float32); ha = np.zeros((3, 1, 5), np.float32)
    la[:, 0, 0], ha[:, 0, 0] = (.1, .2, .7), (.1, .2, .7)      # class 7 in both: 8
    la[:, 0, 1], ha[:, 0, 1] = (.1, .7, .2), (.6, .3, .1)      # class 0 at low alpha, background at high alpha: 0
    la[:, 0, 2], ha[:, 0, 2] = (.8, .1, .1), (.1, .1, .8)      # background at low alpha, a class at high alpha: 255
    la[:, 0, 3], ha[:, 0, 3] = (.8, .1, .1), (.8, .1, .1)      # background in both: 0
    assert confident_labels(la, ha, [0, 1, 8]).tolist() == [[8, 0, 255, 0, 255]]

def test_dataset_labels_are_block_means_then_argmax(tmp_path):
    "A 32×32 image, crop 32, stride 8: a 4×4 grid; one block is 3/4 background-leaning pixels and 1/4 sure class pixels, whose mean leans to the class"
    voc = tmp_path/'VOC2012'
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'): (voc/sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(voc/'JPEGImages'/'a.jpg')
    cls = np.zeros((32, 32), np.float32); cls[:16, :16] = 0.9     # class 4 (key 5) in the top-left 2×2 blocks
    cls[16:24, 16:24] = 0.4; cls[16:20, 16:20] = 1.0              # block (2, 2): pixel majority background, mean 0.55 class
    la, ha = {0: 1 - cls, 5: cls}, {0: 1 - cls, 5: cls.copy()}
    ha[0][:, 24:] = 0.05; ha[5][:, 24:] = 0.95                     # last column: high alpha says class, low alpha background: unsure
    for d, s in (('la', la), ('ha', ha)): (tmp_path/d).mkdir(); np.save(tmp_path/d/'a.npy', s)
    want = torch.tensor([[5, 5, 0, 255], [5, 5, 0, 255], [0, 0, 5, 255], [0, 0, 0, 255]], dtype=torch.uint8)
    ds = AffinityDataset(tmp_path, tmp_path/'la', tmp_path/'ha', ['a'], crop=32, stride=8)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        x, lab = ds[0]
        assert x.shape == (3, 32, 32) and lab.dtype == torch.uint8
        assert torch.equal(lab, want) or torch.equal(lab, want.flip(-1))
        seen.add(torch.equal(lab, want))
    assert seen == {True, False}                                    # both flips drawn

def test_crop_pads_black_before_normalisation_and_unscored_blocks_are_ignored(tmp_path):
    "A grey 16×32 image in a 32 crop: the padded rows hold black normalised (the released crop runs on raw pixels); a block row wholly outside the image is 255"
    voc = tmp_path/'VOC2012'
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'): (voc/sub).mkdir(parents=True)
    Image.fromarray(np.full((16, 32, 3), 128, np.uint8)).save(voc/'JPEGImages'/'a.jpg')
    crf = {0: np.full((16, 32), 0.2, np.float32), 1: np.full((16, 32), 0.8, np.float32)}
    for d in ('la', 'ha'): (tmp_path/d).mkdir(); np.save(tmp_path/d/'a.npy', crf)
    ds = AffinityDataset(tmp_path, tmp_path/'la', tmp_path/'ha', ['a'], crop=32, stride=8)
    black = torch.tensor([-m/s for m, s in zip(*IMAGENET_STATS)])[:, None]
    offsets = set()
    for seed in range(12):
        torch.manual_seed(seed)
        x, lab = ds[0]
        pad = torch.tensor([torch.allclose(x[:, r], black.expand(3, 32)) for r in range(32)])
        assert pad.sum() == 16 and not pad[int(pad.long().argmin()):][:16].any()   # 16 consecutive image rows, the rest black
        offsets.add(int(pad.long().argmin()))
        outside = pad.view(4, 8).all(1)
        assert torch.equal(lab == 255, outside[:, None].expand(4, 4)) and (lab[~outside] == 1).all()
    assert len(offsets) > 3

def test_random_crop_pads_and_places_like_the_released_crop():
    torch.manual_seed(0)
    x = torch.arange(1., 13).view(1, 3, 4)
    for _ in range(20):
        c, = random_crop([x], 5)                                    # 3×4 into 5×5: the whole tensor at a random place, zeros around
        (ys, xs) = c[0].nonzero(as_tuple=True)
        assert c.sum() == x.sum() and ys.max() - ys.min() == 2 and xs.max() - xs.min() == 3
        assert torch.equal(c[0, ys.min():ys.min() + 3, xs.min():xs.min() + 4], x[0])

def test_loss_by_hand_and_its_gradient():
    aff = torch.tensor([[0.9, 0.5, 0.2, 0.6, 0.3]], requires_grad=True)
    bg, fg, neg = (torch.tensor([v], dtype=torch.float32) for v in ([1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]))
    loss, terms = affinity_loss(aff, bg, fg, neg)
    e = 1e-5
    hand = dict(bg=-(np.log(0.9 + e) + np.log(0.5 + e))/(2 + e), fg=-np.log(0.2 + e)/(1 + e), neg=-(np.log(0.4 + e) + np.log(0.7 + e))/(2 + e))
    for k, v in hand.items(): assert abs(terms[k].item() - v) < 1e-6, k
    assert abs(loss.item() - (hand['bg']/4 + hand['fg']/4 + hand['neg']/2)) < 1e-6
    loss.backward()                                                 # d/da of -log(a)/n/4 is -1/(4 n a); of -log(1 - a)/n/2 is 1/(2 n (1 - a))
    want = [-1/(4*2*0.9), -1/(4*2*0.5), -1/(4*1*0.2), 1/(2*2*0.4), 1/(2*2*0.7)]
    np.testing.assert_allclose(aff.grad[0].numpy(), want, rtol=1e-3)

# ---- the network, its weights, the recipe

def test_new_layers_start_as_released():
    "f8_3, f8_4, f8_5 Kaiming-normal (std √(2/fan_in)); f9 Xavier-uniform with gain 4 (bound 4√(6/(fan_in + fan_out))): resnet38_aff.py"
    torch.manual_seed(0)
    net = AffinityNet(TinyBackbone(4), None, (512, 1024, 4096))
    for c, (o, i) in zip((net.f8_3, net.f8_4, net.f8_5), [(64, 512), (128, 1024), (256, 4096)]):
        assert c.weight.shape == (o, i, 1, 1) and c.bias is None
        assert abs(c.weight.std().item()/np.sqrt(2/i) - 1) < 0.03 and abs(c.weight.mean().item()) < 0.01*np.sqrt(2/i)
    w, bound = net.f9.weight, 4*np.sqrt(6/(448 + 448))
    assert w.shape == (448, 448, 1, 1) and net.f9.bias is None
    assert 0.99*bound < w.abs().max() <= bound and abs(w.std().item()/(bound/np.sqrt(3)) - 1) < 0.02

def test_released_defaults():
    "train_aff.py: crop 448, batch 8, 8 epochs, lr 0.01, wd 5e-4, poly 0.9, radius 5, ColorJitter(0.3, 0.3, 0.3, 0.1), no resize; README: alphas 2 and 21"
    cfg = AffinityConfig()
    assert (cfg.crop, cfg.batch_size, cfg.epochs, cfg.lr, cfg.weight_decay, cfg.power, cfg.optimizer, cfg.radius) == (448, 8, 8, 0.01, 5e-4, 0.9, 'released', 5)
    assert (cfg.low_alpha, cfg.high_alpha, cfg.jitter, cfg.long_side, cfg.stride) == (2, 21, (0.3, 0.3, 0.3, 0.1), None, 8)
    assert (cfg.backbone, cfg.dropout, cfg.frozen, cfg.freeze_bn) == ('resnet38d', (0.3, 0.5), ('conv1a', 'b2', 'b2_1', 'b2_2'), True)
    assert max_steps(cfg, 10582) == 8*(10582//8)                      # max_step = len(train_dataset) // batch_size * max_epoches
    o = options(AffinityStage)
    assert {k: o[k].default for k in ('low_alpha', 'high_alpha', 'split', 'data', 'backbone', 'bf16', 'epochs', 'lr')} == dict(
        low_alpha=2, high_alpha=21, split=None, data='voc', backbone='resnet38d', bf16=False, epochs=8, lr=0.01)
    assert 'init' not in o and DATA['voc'] == 'train_aug'            # init: derived; --split None: train_aug for VOC, as train_aff.py
    assert (cfg.select_start, cfg.select_every, cfg.select_eval, o['select_on'].default, o['seeds'].default) == (1590, 200, True, None, 'runs/seeds')   # global_step > 1590, % 200; None: 'train' for VOC

def test_released_optimiser_groups(tmp_path):
    "PolyOptimizer of train_aff.py: weight decay 5e-4 in SGD's momentum slot, the four new layers at 10× lr with weight decay, no biases"
    cfg = AffinityConfig(backbone='tiny', width=8, crop=40, batch_size=2, epochs=1, device='cpu')
    model = build_affinity_model(cfg)
    ds = TensorDataset(torch.randn(2, 3, 40, 40), torch.randint(0, 3, (2, 10, 10), dtype=torch.uint8))
    g = {x['name']: x for x in train_affinity(model, ds, cfg, tmp_path, progress=False).opt.param_groups}
    assert [id(p) for p in g['new_weights']['params']] == [id(c.weight) for c in model.new_layers()]
    assert (g['pretrained_weights']['initial_lr'], g['new_weights']['initial_lr']) == (0.01, 0.1)
    assert g['new_weights']['weight_decay'] == g['pretrained_weights']['weight_decay'] == 5e-4
    assert all(x['momentum'] == 5e-4 for x in g.values()) and not g['new_biases']['params'] and 'other' not in g

def test_init_copies_the_classifier_backbone_and_refuses_another(chain):
    t, root, ids = chain
    cfg = AffinityConfig(backbone='tiny', width=8, crop=40, device='cpu')
    model = build_affinity_model(cfg)
    assert init_affinity(model, cfg, ckpt=t/'clf.pt') == f"ckpt {t/'clf.pt'}"
    clf = torch.load(t/'clf.pt', weights_only=False)['model']
    for k, v in model.backbone.state_dict().items(): assert torch.equal(v, clf['backbone.' + k]), k
    with pytest.raises(ValueError, match="holds a network made with width=8, not width=16"):
        init_affinity(build_affinity_model(AffinityConfig(backbone='tiny', crop=40)), AffinityConfig(backbone='tiny', crop=40), ckpt=t/'clf.pt')
    with pytest.raises(ValueError, match='exactly one of'): init_affinity(model, cfg)
    with pytest.raises(ValueError, match='no ImageNet weights'): init_affinity(model, cfg, imagenet='x.pth')

# ---- SIGKILL and resume

def train_run(out, root, crf):
    "A run small enough for seconds: the tiny backbone on the fixture's train images, 3 epochs of 4 steps; resumes `out` if it holds a checkpoint"
    cfg = AffinityConfig.synthetic(crop=40, width=8, epochs=3, batch_size=2, device='cpu')
    ds = AffinityDataset(root, crf_folder(crf, 2), crf_folder(crf, 21), 'train', crop=cfg.crop, stride=cfg.stride)
    train_affinity(build_affinity_model(cfg), ds, cfg, out, resume=True, progress=False)

DRIVER = f'''
import sys, torch
from aeft.affinity import AffinityConfig, AffinityDataset, build_affinity_model, train_affinity
from aeft.crf import crf_folder
torch.set_num_threads(1)
{inspect.getsource(train_run)}
train_run(*sys.argv[1:4])
'''

def test_sigkill_at_a_random_moment_then_resume_gives_the_same_weights(chain, tmp_path, monkeypatch):
    "test_train's kill_after, driving this stage in a process: killed twice at random steps, resumed to the end, equal to an uninterrupted run (in this process)"
    t, root, ids = chain
    def drive(out, popen=False):
        cmd = [sys.executable, '-c', DRIVER, str(out), str(root), str(t/'crf')]
        if popen: return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
    monkeypatch.setattr(test_train, 'drive', drive)
    keys = ('epoch', 'step', 'lr', 'loss', 'bg', 'fg', 'neg')
    train_run(tmp_path/'a', root, t/'crf')
    n = len(steps(tmp_path/'a', keys))
    assert n == 3*(len(ids)//2)
    k1 = random.randint(1, n//2); k2 = random.randint(k1 + 1, n - 1)
    test_train.kill_after(tmp_path/'b', k1)
    test_train.kill_after(tmp_path/'b', k2)
    drive(tmp_path/'b')
    assert_same(weights(tmp_path/'a'), weights(tmp_path/'b'))
    assert steps(tmp_path/'a', keys) == steps(tmp_path/'b', keys), (k1, k2)

# ---- the step chosen by the walk

class StepCB(Callback):
    "The learner's step after each batch, read by a stand-in score (runs before WalkSelectCB: lower order)"
    def after_batch(self, learn): self.step = learn.step

def scored_run(out, scores, limit=None):
    "The tiny network on random data, 3 epochs of 4 steps, each even step scored by `scores[step]`; `limit`: stop after that many steps (an interruption)"
    cfg = AffinityConfig(backbone='tiny', width=8, crop=40, batch_size=2, epochs=3, device='cpu', optimizer='corrected', freeze_bn=False)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(8, 3, 40, 40, generator=g), torch.randint(0, 3, (8, 10, 10), dtype=torch.uint8, generator=g))
    at = StepCB()
    cbs = [at, WalkSelectCB(lambda m: {'walk_miou': scores[at.step]}, start=1, every=2)] + ([StepLimitCB(limit)] if limit else [])
    train_affinity(build_affinity_model(cfg), ds, cfg, out, resume=True, cbs=cbs, progress=False)
    return [(r['step'], r['walk_miou'], r['best']) for r in read_log(out/'log.jsonl') if r['kind'] == 'walk']

def test_walk_selection_keeps_the_best_step_through_a_resume(tmp_path):
    "train_aff.py: the best scored step's weights in best.pt, its row marked; killed after a later step and resumed, the kept score is read back, so a worse later step (10) does not replace it"
    scores = {2: 0.3, 4: 0.7, 6: 0.5, 8: 0.4, 10: 0.6, 12: 0.2}
    want = [(2, 0.3, True), (4, 0.7, True), (6, 0.5, False), (8, 0.4, False), (10, 0.6, False), (12, 0.2, False)]
    assert scored_run(tmp_path/'a', scores) == want
    assert best_walk(tmp_path/'a') == {'best_step': 4, 'walk_miou': 0.7}
    assert scored_run(tmp_path/'b', scores, limit=9) == want[:4]           # stopped in the third epoch: last.pt holds step 8
    assert torch.load(tmp_path/'b'/'last.pt', weights_only=False)['step'] == 8 and best_walk(tmp_path/'b')['best_step'] == 4
    assert scored_run(tmp_path/'b', scores) == want                         # resumed: step 10's 0.6 is below the kept 0.7
    a, b = (torch.load(d/'best.pt', weights_only=True) for d in (tmp_path/'a', tmp_path/'b'))
    assert (b['step'], b['epoch'], b['value'], b['metric']) == (4, 0, 0.7, 'walk_miou')
    for k in a['model']: assert torch.equal(a['model'][k], b['model'][k]), k  # the weights of step 4, not of a later step
    # the kept step itself replayed (stopped after step 6, the best, past last.pt at step 4): marked again, same weights
    best6 = {**scores, 6: 0.9}
    assert scored_run(tmp_path/'c', best6, limit=6)[-1] == (6, 0.9, True)
    assert scored_run(tmp_path/'c', best6) == [(2, 0.3, True), (4, 0.7, True), (6, 0.9, True), (8, 0.4, False), (10, 0.6, False), (12, 0.2, False)]
    with pytest.raises(ValueError, match='need start >= 0 and every >= 1'): WalkSelectCB(None, every=0)

def test_select_on_train_walks_the_fixture_and_pseudo_reads_best_pt(chain, tmp_path, capsys):
    "--select_on train: the real walk of the seeds on VOC train, best.pt's score is the mIoU aeft_pseudo's masks from it get; eval mode kept after the first walk unless --select_eval False; aeft_pseudo reads best.pt from the folder"
    t, root, ids = chain
    kw = dict(epochs=2, batch_size=4, lr=0.1, optimizer='corrected', freeze_bn=False)
    res = call(chain, tmp_path/'sel', select_on='train', seeds=str(t/'seeds'), select_start=1, select_every=1, **kw)
    rows = [r for r in read_log(tmp_path/'sel'/'log.jsonl') if r['kind'] == 'walk']
    assert [r['step'] for r in rows] == [2, 3, 4] and all(0 <= r['walk_miou'] <= 1 for r in rows)   # 2 steps an epoch; past step 1
    best = max(rows, key=lambda r: r['walk_miou'])                         # the first of equal scores
    assert [r['step'] for r in rows if r['best']][-1] == best['step'] and rows[0]['best']
    assert (res['best_step'], res['walk_miou']) == (best['step'], best['walk_miou'])
    assert f"best.pt: step {best['step']}, walk mIoU {100*best['walk_miou']:.2f}" in capsys.readouterr().out
    # the score kept is what aeft_pseudo's masks from best.pt score on VOC train, and the folder gives best.pt
    r = PseudoStage(seeds=str(t/'seeds'), ckpt=str(tmp_path/'sel'), out=str(tmp_path/'pseudo'), root=str(root), split='train', processes=1, progress=False).run()
    assert r['ckpt'] == str(tmp_path/'sel'/'best.pt') and 'AffinityNet ' + r['ckpt'] in capsys.readouterr().out
    assert json.loads((tmp_path/'pseudo'/'manifest.json').read_text())['model']['file'] == 'best.pt'
    assert evaluate_masks(tmp_path/'pseudo', root, 'train', progress=False)['miou'] == pytest.approx(best['walk_miou'], abs=1e-12)
    model, _ = load_affinity_model(tmp_path/'sel'/'best.pt')
    assert walk_miou(voc_truth(root), t/'seeds', ids, 5, 4)(model) == {'walk_miou': best['walk_miou']}
    # train_aff.py leaves the network in eval mode after its first walk (here: BatchNorm on its running statistics from then on);
    # --select_eval False returns it to training mode, and scoring then changes nothing in training (no random draws): last.pt as without selection
    call(chain, tmp_path/'none', select_on='none', **kw)
    call(chain, tmp_path/'back', select_on='train', seeds=str(t/'seeds'), select_start=1, select_every=1, select_eval=False, **kw)
    assert_same(weights(tmp_path/'back'), weights(tmp_path/'none'))
    assert not torch.equal(weights(tmp_path/'sel')['f9.weight'], weights(tmp_path/'none')['f9.weight'])
    assert not (tmp_path/'none'/'best.pt').exists()
    # the released start on a short run: nothing scored, said; no seeds for the images: refused by name; a folder with best.pt not resumed: refused
    call(chain, tmp_path/'short', select_on='train', seeds=str(tmp_path/'nowhere'), batch_size=4, epochs=1)
    assert "the run's 2 steps end before --select_start 1590: no step is scored (--select_on train), last.pt only" in capsys.readouterr().out
    (tmp_path/'empty').mkdir()
    with pytest.raises(SystemExit, match=rf"--seeds .*empty has no seed file for {len(ids)} of the {len(ids)} images of --select_on train \(e.g. {ids[0]}"):
        call(chain, tmp_path/'o', select_on='train', seeds=str(tmp_path/'empty'), select_start=0)
    (tmp_path/'sel'/'last.pt').unlink()
    with pytest.raises(SystemExit, match=r"best.pt exists: resume it \(--resume\) or choose another --out"): call(chain, tmp_path/'sel', **kw)

# ---- PSA's released AffinityNet

def psa_affinity_dict(seed=0):
    "A random state dict in the layout of PSA's res38_aff.pth: the ResNet-38d trunk of the released key list, f8_3, f8_4, f8_5, f9; no num_batches_tracked (older torch)"
    sd = {k: v for k, v in random_released_checkpoint(seed).items() if not k.startswith(('fc8', 'fc9', 'bn8', 'gconv')) and not k.endswith('num_batches_tracked')}
    g = torch.Generator().manual_seed(seed + 1)
    for k, (o, i), c in zip(PSA_HEAD, [(64, 512), (128, 1024), (256, 4096), (448, 448)], (0.02, 0.008, 0.004, 0.3)):   # c: the trunk's random taps are large;
        sd[k] = torch.randn(o, i, 1, 1, generator=g)*c*(2/i)**0.5                                                          # small weights keep affinities away from 0
    return sd

def psa_reference(sd, x, radius=5):
    "(embedding, affinities) of network/resnet38_aff.py `Net.forward` on network/resnet38d.py `forward_as_dict`, re-stated from PSA's released code for checking"
    x, taps = reference_trunk(sd, x)
    conv4, conv5, conv6 = taps['b5'], taps['b6'], F.relu(_bn(sd, x, 'bn7'))
    f = F.elu(_conv(sd, torch.cat([F.elu(_conv(sd, conv4, 'f8_3')), F.elu(_conv(sd, conv5, 'f8_4')), F.elu(_conv(sd, conv6, 'f8_5'))], 1), 'f9'))
    h, w = f.shape[-2:]                                                     # tool/pyutils.py get_indices_of_pairs
    search = [(0, dx) for dx in range(1, radius)] + [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius) if dx*dx + dy*dy < radius*radius]
    r, full = radius - 1, np.arange(h*w).reshape(h, w)
    ind_from = full[:-r, r:-r].reshape(-1)
    ind_to = np.concatenate([full[dy:dy + h - r, r + dx:r + dx + w - 2*r].reshape(-1) for dy, dx in search])
    v = f.view(f.shape[0], f.shape[1], -1)
    ff = v[:, :, torch.from_numpy(ind_from)].unsqueeze(2)
    ft = v[:, :, torch.from_numpy(ind_to)].view(v.shape[0], v.shape[1], -1, ff.shape[3])
    return f, torch.exp(-torch.mean(torch.abs(ft - ff), dim=1)).view(v.shape[0], -1)

def test_psa_released_affinitynet_layout_gives_the_released_embeddings_and_affinities(tmp_path):
    "A random dict in PSA's res38_aff.pth layout, saved with DataParallel's module. prefixes: loaded by its keys, the embedding and every pair's affinity are the released network's"
    sd = psa_affinity_dict()
    torch.save({'module.' + k: v for k, v in sd.items()}, tmp_path/'res38_aff.pth')
    model, cfg = load_affinity_model(tmp_path/'res38_aff.pth', backbone='resnet38d')
    assert (cfg.backbone, cfg.radius, cfg.init, model.training) == ('resnet38d', 5, f"psa {tmp_path/'res38_aff.pth'}", False)
    x = torch.randn(2, 3, 72, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        f, ref_f = model(x), None
        ref_f, ref_aff = psa_reference(sd, x)
        aff = affinities(f, radius_pairs(9, 12))
    assert f.shape == ref_f.shape == (2, 448, 9, 12) and aff.shape == ref_aff.shape == (2, 34*(9 - 4)*(12 - 8))
    torch.testing.assert_close(f, ref_f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(aff, ref_aff, rtol=1e-4, atol=1e-6)
    assert 0.5 < aff.min() and aff.max() < 0.9 and aff.std() > 0.02        # affinities that vary: a real comparison
    # a dict in neither layout, and one in PSA's with a layer of another shape: refused naming the file
    torch.save({k: v for k, v in sd.items() if k not in PSA_HEAD}, tmp_path/'trunk.pth')
    with pytest.raises(ValueError, match=r"trunk.pth is neither an AffinityNet checkpoint of aeft_affinity .* nor PSA's AffinityNet \(res38_aff.pth"):
        load_affinity_model(tmp_path/'trunk.pth')
    torch.save({**sd, 'f9.weight': torch.zeros(448, 447, 1, 1)}, tmp_path/'bad.pth')
    with pytest.raises(ValueError, match=r"bad.pth is not PSA's AffinityNet on ResNet-38d .*0 keys missing .*1 unexpected or of another shape \(f9.weight \(448, 447, 1, 1\), not \(448, 448, 1, 1\)"):
        load_affinity_model(tmp_path/'bad.pth')
    with pytest.raises(SystemExit, match=r"aeft_pseudo: .*trunk.pth is neither"):
        aeft_pseudo([str(tmp_path), str(tmp_path/'trunk.pth'), '--out', str(tmp_path/'o'), '--root', str(tmp_path), '--progress', 'False'])

# ---- the command

def test_aeft_affinity_end_to_end(chain, tmp_path):
    t, root, ids = chain
    out = tmp_path/'run'
    args = ('--crf', t/'crf', '--root', root, '--split', 'train', '--backbone', 'tiny', '--batch_size', 4,
            '--crop', 40, '--width', 8, '--device', 'cpu', '--out', out, '--progress', 'False')
    r = run('aeft_affinity', *args, '--ckpt', t/'clf.pt', '--epochs', 2)
    assert r.returncode == 0, r.stderr
    assert f'aeft_affinity: 2 epochs on {len(ids)} images done' in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'curves.png', 'last.pt', 'log.jsonl']
    cfg = json.loads((out/'config.json').read_text())
    assert (cfg['low_alpha'], cfg['high_alpha'], cfg['radius'], cfg['init']) == (2, 21, 5, f"ckpt {(t/'clf.pt').resolve()}")
    model, c = load_affinity_model(out/'last.pt', backbone='tiny', width=8)
    assert not model.training and model(torch.zeros(1, 3, 40, 40)).shape == (1, 28, 10, 10)
    rows = [json.loads(l) for l in (out/'log.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows if r['kind'] == 'epoch'] == [0, 1]
    assert all(np.isfinite([r[k] for k in ('loss', 'bg', 'fg', 'neg')]).all() for r in rows)
    # --resume without naming the classifier again (a finished run: nothing left to train); a fresh run into the same folder is refused
    before = (out/'log.jsonl').read_text()
    call(chain, out, epochs=2, batch_size=4, resume=True, ckpt=None)
    assert (out/'log.jsonl').read_text() == before
    with pytest.raises(SystemExit, match=r'aeft_affinity: .*last.pt exists: resume it \(--resume\) or choose another --out'): call(chain, out, epochs=2, batch_size=4)

def test_stage_run_and_old_spellings(chain, tmp_path, capsys):
    "AffinityStage.run returns its summary; the old --voc_root and --opts still work, each with a note naming the new options, and train the same run"
    t, root, ids = chain
    cfg = AffinityConfig(backbone='tiny', width=8, crop=40, epochs=1, batch_size=4, device='cpu')
    res = AffinityStage(crf=str(t/'crf'), root=str(root), split='train', ckpt=str(t/'clf.pt'), out=str(tmp_path/'new'), progress=False, config=cfg).run()
    assert (res['out'], res['images'], res['epochs']) == (str(tmp_path/'new'), len(ids), 1) and res['seconds'] > 0
    assert f'aeft_affinity: 1 epoch on {len(ids)} images done' in capsys.readouterr().out
    r = run('aeft_affinity', '--crf', t/'crf', '--voc_root', root, '--split', 'train', '--backbone', 'tiny', '--batch_size', 4, '--epochs', 1,
            '--opts', 'crop=40 width=8 device=cpu', '--ckpt', t/'clf.pt', '--out', tmp_path/'old', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert [l for l in r.stderr.splitlines() if l.startswith('aeft_affinity: --')] == [
        'aeft_affinity: --voc_root is now --root', 'aeft_affinity: --opts is read as the options it names; give each as a flag of its own (e.g. --width 8)']
    assert json.loads((tmp_path/'old'/'config.json').read_text()) == json.loads((tmp_path/'new'/'config.json').read_text())
    with pytest.raises(SystemExit, match=r'aeft_affinity: --width is given twice \(as --width and as --opts\)'): aeft_affinity(['--width', '8', '--opts', 'width=4'])

def call(chain, out, **kw):
    t, root, ids = chain
    kw = {**dict(crf=str(t/'crf'), root=str(root), split='train', backbone='tiny', ckpt=str(t/'clf.pt'), epochs=1,
                 crop=40, width=8, device='cpu', out=str(out), progress=False), **kw}
    return aeft_affinity(argv(**kw))

def test_errors_are_clear(chain, tmp_path):
    t, root, ids = chain
    # a CRF folder of another alpha (its manifest), a missing alpha, a CRF folder that lacks an image
    shutil.copytree(t/'crf'/'02', tmp_path/'crf'/'05'); shutil.copytree(t/'crf'/'21', tmp_path/'crf'/'21')
    with pytest.raises(SystemExit, match=r"aeft_affinity: .*05/manifest.json records alpha 2, not 5"): call(chain, tmp_path/'o', crf=str(tmp_path/'crf'), low_alpha=5)
    with pytest.raises(SystemExit, match=r"no CRF outputs at alpha 3"): call(chain, tmp_path/'o', low_alpha=3)
    (tmp_path/'crf'/'21'/f'{ids[3]}.npy').unlink(); shutil.copytree(t/'crf'/'02', tmp_path/'crf'/'02')
    with pytest.raises(SystemExit, match=rf"CRF folder .*21 has no output for 1 of the {len(ids)} images \(e.g. {ids[3]}\); run aeft_crf"):
        call(chain, tmp_path/'o', crf=str(tmp_path/'crf'))
    # the weights to start from: none, two, a classifier of another backbone
    with pytest.raises(SystemExit, match='give the weights to start from'): call(chain, tmp_path/'o', ckpt=None)
    with pytest.raises(SystemExit, match=r"give one of --ckpt, --official and --imagenet, got \['ckpt', 'imagenet'\]"): call(chain, tmp_path/'o', imagenet='x')
    with pytest.raises(SystemExit, match="holds a network made with width=8, not width=16"): call(chain, tmp_path/'o', width=None)
    (tmp_path/'train').mkdir()   # a classifier's run folder: its best.pt, else its last.pt, else refused naming it
    with pytest.raises(SystemExit, match="checkpoint folder .*train holds neither best.pt nor last.pt"): call(chain, tmp_path/'o', ckpt=str(tmp_path/'train'))
    shutil.copy(t/'clf.pt', tmp_path/'train'/'last.pt')
    with pytest.raises(SystemExit, match="holds a network made with width=8, not width=16"): call(chain, tmp_path/'o', ckpt=str(tmp_path/'train'), width=None)
    with pytest.raises(SystemExit, match=r"AffinityConfig.low_alpha must be at least 0 and below high_alpha"): call(chain, tmp_path/'o', low_alpha=21, high_alpha=2)
    # an AffinityNet checkpoint: resumed or loaded as another backbone; a classifier checkpoint where AffinityNet's is expected
    call(chain, tmp_path/'run')
    with pytest.raises(SystemExit, match=r"last.pt was written with another config; \(now, then\): \{'width': \(4, 8\)"):
        call(chain, tmp_path/'run', resume=True, width=4, ckpt=None)
    with pytest.raises(ValueError, match="holds an AffinityNet made with backbone='tiny', not backbone='resnet38d'"):
        load_affinity_model(tmp_path/'run'/'last.pt', backbone='resnet38d')
    with pytest.raises(ValueError, match=r"clf.pt is not an AffinityNet checkpoint \(it holds a classifier written by aeft_train\)"):
        load_affinity_model(t/'clf.pt')
    with pytest.raises(ValueError, match=r"\['head'\] are not AffinityNet model fields"): load_affinity_model(tmp_path/'run'/'last.pt', head='gpp')

# ---- MS-COCO

@pytest.fixture(scope='module')
def coco_chain(coco_data, tmp_path_factory):
    "The COCO-format fixture, seeds of its 13 annotated train images from its masks, their CRF outputs at alphas 2 and 21: (root, truth, ids, crf)"
    t, (root, truth) = tmp_path_factory.mktemp('affinity-coco'), coco_data
    ids = truth.ids('train')
    run_crf(coco_seeds(truth, ids, t/'seeds'), truth, t/'crf', ids, t=2, progress=False)
    return root, truth, ids, t/'crf'

def test_aeft_affinity_on_coco(chain, coco_chain, tmp_path):
    "--data coco: COCO's train images with their CRF outputs of labels up to 80; the labels of the crops reach beyond VOC's 20"
    t, *_ = chain
    root, truth, ids, crf = coco_chain
    ds = AffinityDataset(truth, crf_folder(crf, 2), crf_folder(crf, 21), 'train', crop=40, stride=4)
    assert (ds.ids, ds.num_labels, ds.images) == (ids, 81, [truth.image(id) for id in ids])
    torch.manual_seed(0)
    seen = set().union(*(ds[i][1].unique().tolist() for i in range(len(ds))))
    assert {57, 80} <= seen <= {0, 1, 12, 17, 57, 80, 255}                   # chair and toothbrush; only the fixture's labels
    r = subprocess.run([str(BIN/'aeft_affinity'), '--data', 'coco', '--root', str(root), '--crf', str(crf), '--backbone', 'tiny', '--batch_size', '4',
                        '--epochs', '1', '--crop', '40', '--width', '8', '--device', 'cpu', '--ckpt', str(t/'clf.pt'), '--out', str(tmp_path/'run'), '--progress', 'False'],
                       capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr
    assert f'aeft_affinity: 1 epoch on {len(ids)} images done' in r.stdout
    rows = [json.loads(l) for l in (tmp_path/'run'/'log.jsonl').read_text().splitlines()]
    steps = [r for r in rows if r['kind'] == 'step']
    assert len(steps) == len(ids)//4 and all(np.isfinite([r[k] for k in ('loss', 'bg', 'fg', 'neg')]).all() for r in steps)

def test_coco_errors(chain, coco_chain, tmp_path):
    t, *_ = chain
    root, truth, ids, crf = coco_chain
    def message(**kw):
        kw = {**dict(crf=str(crf), data='coco', root=str(root), backbone='tiny', ckpt=str(t/'clf.pt'), epochs=1,
                     crop=40, width=8, device='cpu', out=str(tmp_path/'o'), progress=False), **kw}
        with pytest.raises(SystemExit) as e: aeft_affinity(argv(**kw))
        return str(e.value)
    assert message(data='cityscapes') == "aeft_affinity: --data must be one of voc, coco, shapes, folder, cocofile, got 'cityscapes'"
    assert message(out=str(root/'aff')) == f"aeft_affinity: --out {root/'aff'} is inside the data folder {root}; write the outputs elsewhere"
    copy = tmp_path/'copy'; shutil.copytree(root, copy)                       # an image of the annotations missing on disk
    gone = copy/'train2014'/f'{ids[4]}.jpg'; gone.unlink()
    assert message(root=str(copy)) == f"aeft_affinity: image id {ids[4]!r} has no file {gone}"
    assert not (tmp_path/'o').exists() and not (root/'aff').exists()          # refused before anything was written
