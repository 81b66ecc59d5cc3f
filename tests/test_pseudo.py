"Random walk: the sparse walk equals the released dense one, a hand case, the chain on a photograph; aeft_pseudo end to end on a VOC-format fixture, on the genuine VOC sample and on a COCO-format fixture with an AffinityNet trained by aeft.affinity, resume, and its errors"
import hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch, torch.nn.functional as F
from dataclasses import asdict
from PIL import Image
from scipy.ndimage import center_of_mass
from aeft.voc import write_tiny_voc, voc_root, voc_splits, read_mask, load_image
from aeft.cam import save_seeds, load_seeds
from aeft.crf import run_crf, crf_folder
from aeft.affinity import radius_pairs, affinities, AffinityConfig, AffinityDataset, build_affinity_model, train_affinity
from aeft.evaluate import DATA, evaluate_masks, EvalStage, read_prediction
from aeft.cli import options
from test_crf import soft_seeds, write_seeds, coco_seeds, tree_digest
from aeft.pseudo import (walk_dense, walk_sparse, random_walk, transition, grid_scores, walk_radius, walk_image, pseudo_mask,
                         crf_image, run_pseudo, aeft_pseudo, PseudoStage, MANIFEST, BG_POWER)

pytestmark = [pytest.mark.filterwarnings('ignore:VOC split'), pytest.mark.filterwarnings('ignore:COCO split')]
BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).parent/'data'/'voc-sample'

def run(*args): return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True)

def argv(*positional, **kw):
    "A command line: the `positional` arguments, then --name value for each of `kw`"
    return [*map(str, positional), *[x for k, v in kw.items() for x in (f'--{k}', str(v))]]

@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    "The fixture's seeds (from its masks), their CRF outputs (aeft.crf) and a tiny AffinityNet trained one epoch on them (aeft.affinity): (root, ids, seeds, ckpt)"
    t = tmp_path_factory.mktemp('pseudo')
    root = write_tiny_voc(t/'data', sbd='png')
    ids = voc_splits(root, verbose=False)['train_aug']
    seeds = write_seeds(root, ids, t/'seeds')
    run_crf(seeds, root, t/'crf', ids, alphas=(2, 21), t=2, workers=1, progress=False)
    cfg = AffinityConfig.synthetic(epochs=1, device='cpu')
    ds = AffinityDataset(root, crf_folder(t/'crf', 2), crf_folder(t/'crf', 21), ids, crop=cfg.crop, stride=cfg.stride, jitter=cfg.jitter)
    torch.manual_seed(0)
    train_affinity(build_affinity_model(cfg), ds, cfg, t/'aff', progress=False)
    return root, ids, seeds, t/'aff'/'last.pt'

def random_case(h, w, seed, radius=5, D=16):
    g = torch.Generator().manual_seed(seed)
    pairs = radius_pairs(h, w, radius)
    return torch.rand(21, h*w, generator=g), affinities(torch.rand(1, D, h, w, generator=g), pairs)[0], pairs

@pytest.mark.parametrize('h, w, radius, beta, logt', [(12, 12, 5, 8, 6), (11, 23, 5, 8, 6), (23, 9, 4, 8, 6), (47, 13, 5, 8, 8), (9, 15, 2, 3, 4)])
def test_sparse_equals_dense(h, w, radius, beta, logt):
    for seed in range(3):
        s, aff, pairs = random_case(h, w, seed, radius)
        d, sp = walk_dense(s, aff, pairs, beta, logt), walk_sparse(s, aff, pairs, beta, logt)
        assert sp.shape == d.shape == (21, h*w)
        assert (d - sp).abs().max() <= 1e-4
        torch.testing.assert_close(random_walk(s, aff, pairs, beta, logt, 'dense'), d)

def test_one_step_by_hand():
    "logt = 0 is one step S·T; T = A^β over column sums, with A's ones on the diagonal"
    pairs = (torch.tensor([0, 1]), torch.tensor([1, 2]))
    aff, s = torch.tensor([0.5, 1.0]), torch.tensor([[4., 0., 2.]])
    A = torch.tensor([[1, 0.25, 0], [0.25, 1, 1], [0, 1, 1]])                 # β = 2
    T = A/A.sum(0)
    torch.testing.assert_close(transition(aff, pairs, 3, beta=2), T)
    for walk in ('dense', 'sparse'):
        torch.testing.assert_close(random_walk(s, aff, pairs, beta=2, logt=0, walk=walk), torch.tensor([[4/1.25, 1/2.25 + 2/2.25, 2/2]]))
        torch.testing.assert_close(random_walk(s, aff, pairs, beta=2, logt=2, walk=walk), s @ torch.linalg.matrix_power(T, 4))

def test_two_blocks_do_not_mix():
    "Affinity 1 inside each half of a grid, 0 across: each score stays in its half, and a constant half stays constant"
    h, w = 14, 22
    pairs = radius_pairs(h, w)
    left = torch.arange(h*w) % w < 11
    aff = (left[pairs[0]] == left[pairs[1]]).float()
    s = torch.zeros(3, h*w)
    s[0, ~left] = 1.; s[1, 5*w + 3] = 1.; s[2, 7*w + 15] = 0.5
    paired = torch.zeros(h*w, dtype=torch.bool); paired[torch.cat(pairs)] = True
    for walk in ('dense', 'sparse'):
        r = random_walk(s, aff, pairs, walk=walk)
        assert r[0, left].abs().max() == 0 and r[1, ~left].abs().max() == 0 and r[2, left].abs().max() == 0
        torch.testing.assert_close(r[0, ~left], torch.ones(int((~left).sum())))
        assert (r[1, left & paired] > 0).all() and (r[2, ~left & paired] > 0).all()
    assert int((~paired).sum()) == 10                                           # PSA's pair set leaves 10 positions out

def test_grid_scores_and_radius():
    m = np.zeros((17, 9), np.float32); m[:8, :8] = 0.25
    g = grid_scores({4: m}, (17, 9), bg_power=3, stride=8)
    assert g.shape == (21, 3, 2)
    torch.testing.assert_close(g[5], torch.tensor([[0.25, 0], [0, 0], [0, 0]]))
    torch.testing.assert_close(g[0], torch.tensor([[0.75**3, 8/64], [1, 8/64], [8/64, 1/64]]))
    assert [walk_radius(6, 40), walk_radius(40, 10), walk_radius(11, 11)] == [2, 4, 5]
    with pytest.raises(ValueError, match='too small for the random walk'): walk_radius(3, 40)

def test_no_crf_is_the_upsampled_argmax():
    "crf=0 (PSA): the argmax of the walked scores upsampled bilinearly to the padded size, cropped; the CRF sees the padded image"
    from PIL import Image
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8))
    walked = torch.rand(21, 3, 4, generator=torch.Generator().manual_seed(1))
    up = F.interpolate(walked[None], size=(24, 32), mode='bilinear', align_corners=False)[0]
    np.testing.assert_array_equal(pseudo_mask(img, walked, crf=0), up.argmax(0)[:21, :30].numpy())
    assert crf_image(img).shape == (24, 32, 3) and (crf_image(img)[21:] == (123, 116, 103)).all()
    m = pseudo_mask(img, walked)
    assert m.shape == (21, 30) and m.dtype == np.uint8 and m.max() <= 20

class ColourEmbedding(torch.nn.Module):
    "A stand-in for AffinityNet: each 8×8 block's mean normalised colour"
    def forward(self, x): return F.avg_pool2d(x, 8)

def test_walk_on_a_photograph():
    "The chapter's bird: a bump of σ 60 px on its centre walked along colour affinities covers the bird (IoU > 0.9, from 0.26 for the seed)"
    img = load_image(SAMPLE/'VOC2012/JPEGImages/2007_002094.jpg')
    gt = read_mask(SAMPLE/'VOC2012/SegmentationClass/2007_002094.png')
    bird = gt == 3                                                               # class 2 is label 3; 255 (boundaries) ignored
    cy, cx = center_of_mass(bird)
    yy, xx = np.mgrid[:img.height, :img.width]
    seed = np.exp(-((yy - cy)**2 + (xx - cx)**2)/(2*60.**2)).astype(np.float32)
    iou = lambda m: ((m == 3) & bird).sum()/((m == 3) | bird)[gt != 255].sum()
    walked = walk_image(ColourEmbedding(), img, {2: seed/(seed.max() + 1e-5)})
    assert walked.shape == (21, 42, 63)
    m = pseudo_mask(img, walked)
    assert set(np.unique(m)) == {0, 3} and iou(m) > 0.9
    assert iou(np.where(seed > (1 - seed)**BG_POWER, 3, 0)) < 0.3

def test_aeft_pseudo_end_to_end(chain, tmp_path):
    root, ids, seeds, ckpt = chain
    r = run('aeft_pseudo', seeds, ckpt, '--root', root, '--out', tmp_path/'pseudo', '--processes', 2, '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert f'aeft_pseudo: {len(ids)} pseudo masks written' in r.stdout and '2 processes, sparse walk' in r.stdout
    m = json.loads((tmp_path/'pseudo'/MANIFEST).read_text())
    assert (m['stage'], m['beta'], m['logt'], m['bg_power'], m['crf'], m['radius'], m['stride'], m['num_classes']) == ('pseudo', 8, 6, 19, 1, 5, 4, 20)
    assert m['seeds'] == str(seeds.resolve()) and m['model']['sha256'] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    voc = voc_root(root)
    for id in ids:
        f = tmp_path/'pseudo'/f'{id}.png'
        mask, img = read_mask(f), load_image(voc/'JPEGImages'/f'{id}.jpg')
        assert mask.shape == (img.height, img.width)
        assert set(np.unique(mask)) <= {0} | {k + 1 for k in load_seeds(seeds/f'{id}.npy')}   # only the image's classes
    assert not [p for p in (tmp_path/'pseudo').iterdir() if p.name.startswith('.')]
    # one process and the dense walk write the same masks (pixels at near-ties aside)
    assert run_pseudo_cli(seeds, ckpt, root, tmp_path/'dense', walk='dense', processes=1) == len(ids)
    same = [(read_mask(tmp_path/'dense'/f'{id}.png') == read_mask(tmp_path/'pseudo'/f'{id}.png')).mean() for id in ids]
    assert min(same) > 0.999
    # scored by aeft_eval --masks on train
    EvalStage(masks=str(tmp_path/'pseudo'), root=str(root), out=str(tmp_path/'eval'), progress=False).run()
    res = json.loads((tmp_path/'eval'/'mask_eval.json').read_text())
    assert (res['evaluated_on'], res['images']) == ('train', 8) and 0 <= res['miou'] <= 1

def run_pseudo_cli(seeds, ckpt, root, out, **kw):
    "aeft_pseudo in this process; the number of masks it wrote"
    before = len(list(Path(out).glob('*.png')))
    aeft_pseudo(argv(seeds, ckpt, out=out, root=root, progress=False, **kw))
    return len(list(Path(out).glob('*.png'))) - before

def test_resume_after_sigkill_on_the_voc_sample(chain, tmp_path):
    "The genuine VOC sample (copied; the copy in the repository is never written): killed after its first mask, a second run completes the rest"
    _, _, _, ckpt = chain
    root = tmp_path/'sample'; shutil.copytree(SAMPLE, root)
    before = tree_digest(SAMPLE)
    ids = voc_splits(root, verbose=False)['train'][:3]
    seeds = write_seeds(root, ids, tmp_path/'seeds')
    p = subprocess.Popen([str(BIN/'aeft_pseudo'), seeds, ckpt, '--root', root, '--ids', _ids_file(tmp_path, ids), '--out', tmp_path/'pseudo',
                          '--processes', '1', '--progress', 'False'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list((tmp_path/'pseudo').glob('*.png')) and time.time() - t0 < 60 and p.poll() is None: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = list((tmp_path/'pseudo').glob('*.png'))
    assert 0 < len(done) < len(ids)
    for f in done: read_mask(f)                                                  # every mask there is whole
    assert run_pseudo_cli(seeds, ckpt, root, tmp_path/'pseudo', ids=str(_ids_file(tmp_path, ids)), processes=2) == len(ids) - len(done)
    assert sorted(p.stem for p in (tmp_path/'pseudo').glob('*.png')) == sorted(ids)
    res = evaluate_masks(tmp_path/'pseudo', root, ids, progress=False)
    assert res['images'] == 3 and 0 <= res['miou'] <= 1
    assert tree_digest(SAMPLE) == before and tree_digest(root/'VOC2012') == tree_digest(SAMPLE/'VOC2012')   # the data is only read

def test_errors(chain, tmp_path):
    root, ids, seeds, ckpt = chain
    def message(seeds=seeds, ckpt=ckpt, **kw):
        kw = dict(dict(out=str(tmp_path/'pseudo'), root=str(root), processes=1, progress=False), **kw)
        with pytest.raises(SystemExit) as e: aeft_pseudo(argv(seeds, ckpt, **kw))
        return str(e.value)
    # through the command once: one line, no traceback
    r = run('aeft_pseudo', tmp_path/'none', ckpt, '--root', root, '--out', tmp_path/'o')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f'aeft_pseudo: seed folder {tmp_path/"none"} does not exist (aeft_cam writes it)'
    # no seeds for an id
    part = tmp_path/'part'; shutil.copytree(seeds, part); (part/f'{ids[5]}.npy').unlink()
    assert message(part) == f"aeft_pseudo: no seed file for 1 of the {len(ids)} images in {part} (e.g. {ids[5]}); run aeft_cam on the same images"
    assert not (tmp_path/'pseudo').exists()                                      # refused before anything was written
    # seeds of another class count, of another size, or not seeds at all
    big = tmp_path/'big'; shutil.copytree(seeds, big)
    shape = next(iter(load_seeds(seeds/f'{ids[0]}.npy').values())).shape
    save_seeds({25: np.zeros(shape, np.float32)}, big/f'{ids[0]}.npy')
    assert f"seed file {big/(ids[0] + '.npy')} has class keys [25]; expected class indices 0..19" in message(big, out=str(tmp_path/'b'))
    small = tmp_path/'small'; shutil.copytree(seeds, small); save_seeds({0: np.zeros((3, 4), np.float32)}, small/f'{ids[0]}.npy')
    assert f"seed file {small/(ids[0] + '.npy')} holds maps of 4×3 but its image is" in message(small, out=str(tmp_path/'s'))
    run_crf(seeds, root, tmp_path/'crf', ids[:1], alphas=(2,), t=1, progress=False)
    assert f"{tmp_path/'crf'/'02'} holds a manifest.json: it is the output of a later stage" in message(tmp_path/'crf'/'02', out=str(tmp_path/'c'))
    # an AffinityNet checkpoint that cannot be read, or a classifier's
    bad = tmp_path/'bad.pt'; bad.write_bytes(b'not a checkpoint')
    assert f'cannot read {bad} as a torch checkpoint' in message(ckpt=bad)
    clf = tmp_path/'clf.pt'; torch.save(dict(model={}, config=dict(head='gpp')), clf)
    assert f'{clf} is not an AffinityNet checkpoint' in message(ckpt=clf)
    assert f'AffinityNet checkpoint {tmp_path/"nope.pt"} does not exist' in message(ckpt=tmp_path/'nope.pt')
    (tmp_path/'aff_run').mkdir()
    assert f"checkpoint folder {tmp_path/'aff_run'} holds neither best.pt nor last.pt" in message(ckpt=tmp_path/'aff_run')
    # an output folder holding masks of other settings, or PNGs of unknown origin
    assert run_pseudo_cli(seeds, ckpt, root, tmp_path/'done', ids=str(_ids_file(tmp_path, ids[:2]))) == 2
    msg = message(out=str(tmp_path/'done'), ids=str(_ids_file(tmp_path, ids[:2])), bg_power=16, crf_iters=0)
    assert msg == (f"aeft_pseudo: {tmp_path/'done'} holds pseudo masks made with bg_power=19, not bg_power=16; crf_iters=1, not crf_iters=0 "
                   f"({tmp_path/'done'/MANIFEST}); choose another --out or delete that folder")
    assert 'holds pseudo masks made with seeds=' in message(part, out=str(tmp_path/'done'), ids=str(_ids_file(tmp_path, ids[:2])))
    (tmp_path/'theirs').mkdir(); shutil.copy(tmp_path/'done'/f'{ids[0]}.png', tmp_path/'theirs')
    assert 'holds files (*.png) but no manifest.json saying how they were made' in message(out=str(tmp_path/'theirs'))
    # resume: a missing mask is written again, the others are kept
    (tmp_path/'done'/f'{ids[1]}.png').unlink(); os.utime(tmp_path/'done'/f'{ids[0]}.png', ns=(0, 0))
    assert run_pseudo_cli(seeds, ckpt, root, tmp_path/'done', ids=str(_ids_file(tmp_path, ids[:2]))) == 1
    assert (tmp_path/'done'/f'{ids[0]}.png').stat().st_mtime_ns == 0
    # never into the data
    voc = voc_root(root)
    assert f"--out {voc/'pseudo'} is inside the data folder {voc}" in message(out=str(voc/'pseudo'))
    assert 'is inside the seed folder' in message(out=str(seeds/'pseudo'))
    assert not (voc/'pseudo').exists() and not (seeds/'pseudo').exists()
    # bad arguments
    assert message(walk='fast') == "aeft_pseudo: --walk must be one of sparse, dense, got 'fast'"
    assert "split 'test' must be one of" in message(split='test')

def test_stage_run_and_old_spellings(chain, tmp_path, capsys):
    "PseudoStage.run returns its summary; the old --crf, --workers and --voc_root still work, each with a note naming the new option"
    root, ids, seeds, ckpt = chain
    few = str(_ids_file(tmp_path, ids[:2]))
    res = PseudoStage(seeds=str(seeds), ckpt=str(ckpt), out=str(tmp_path/'new'), root=str(root), ids=few, crf_iters=0, processes=1, progress=False).run()
    assert {k: res[k] for k in ('out', 'images', 'written', 'walk', 'processes')} == dict(out=str(tmp_path/'new'), images=2, written=2, walk='sparse', processes=1)
    assert capsys.readouterr().out.startswith('aeft_pseudo: 2 pseudo masks written')
    assert json.loads((tmp_path/'new'/MANIFEST).read_text())['crf'] == 0                     # the manifest keeps its keys
    r = run('aeft_pseudo', seeds, ckpt, '--voc_root', root, '--ids', few, '--crf', 0, '--workers', 1, '--out', tmp_path/'old', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert [l for l in r.stderr.splitlines() if ' is now ' in l] == ['aeft_pseudo: --voc_root is now --root', 'aeft_pseudo: --crf is now --crf_iters', 'aeft_pseudo: --workers is now --processes']
    assert 'aeft_pseudo: 2 pseudo masks written' in r.stdout and f'(1 process, sparse walk, AffinityNet {ckpt})' in r.stdout
    assert all((read_mask(tmp_path/'old'/f'{id}.png') == read_mask(tmp_path/'new'/f'{id}.png')).all() for id in ids[:2])

def _ids_file(tmp_path, ids):
    f = tmp_path/'ids.txt'; f.write_text(''.join(f'{i}\n' for i in ids)); return f

def released_walk(img, cam_dict, embedding, alpha=19):
    "infer_aff.py of KAIST-vilab/AEFT step by step with literal numbers (one image, `embedding` standing in for AffinityNet): (walked scores (21, h, w), the CRF's image, the mask)"
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = np.empty(img.shape, np.float32)
    for c in range(3): x[..., c] = (img[..., c]/255. - mean[c])/std[c]                     # Normalize of networks/resnet38d.py
    x = torch.from_numpy(x.transpose(2, 0, 1))[None]
    H, W = img.shape[:2]
    ph, pw = int(np.ceil(H/8)*8) - H, int(np.ceil(W/8)*8) - W
    x = F.pad(x, (0, pw, 0, ph))
    h, w = x.shape[2]//8, x.shape[3]//8
    f = embedding(x).view(1, -1, h*w)                                                         # networks/resnet38_aff.py, to_dense=True
    m = min(h, w); r = (m - 1)//2 if m < 11 else 5
    dist = [(0, dx) for dx in range(1, r)] + [(dy, dx) for dy in range(1, r) for dx in range(-r + 1, r) if dx*dx + dy*dy < r*r]
    full = np.arange(h*w).reshape(h, w)
    src = full[:-(r - 1), r - 1:-(r - 1)].reshape(-1)
    to = torch.from_numpy(np.concatenate([full[dy:dy + h - r + 1, r - 1 + dx:r - 1 + dx + w - 2*(r - 1)].reshape(-1) for dy, dx in dist]))
    src = torch.from_numpy(src)
    ff, ft = f[:, :, src][:, :, None], f[:, :, to].view(1, f.shape[1], -1, len(src))
    aff = torch.exp(-torch.mean(torch.abs(ft - ff), dim=1)).view(-1)
    src_exp = src[None].expand(len(dist), -1).reshape(-1)
    ii = torch.arange(h*w)
    A = torch.sparse_coo_tensor(torch.cat([torch.stack([src_exp, to]), torch.stack([ii, ii]), torch.stack([to, src_exp])], 1),
                                torch.cat([aff, torch.ones(h*w), aff]), (h*w, h*w), check_invariants=False).to_dense()
    A = torch.pow(A, 8)                                                                        # infer_aff.py
    T = A/torch.sum(A, dim=0, keepdim=True)
    for _ in range(6): T = torch.matmul(T, T)
    cam = np.zeros((21, H, W), np.float32)
    for k, v in cam_dict.items(): cam[k + 1] = v
    cam[0] = (1 - np.max(cam[1:], 0))**alpha
    cam = F.avg_pool2d(torch.from_numpy(np.pad(cam, ((0, 0), (0, ph), (0, pw)))), 8, 8)
    rw = torch.matmul(cam.view(21, -1), T).view(1, 21, h, w)
    up = torch.nn.Upsample((x.shape[2], x.shape[3]), mode='bilinear', align_corners=False)(rw)
    im8 = np.ascontiguousarray(x[0].numpy().transpose(1, 2, 0))
    for c in range(3): im8[:, :, c] = (im8[:, :, c]*std[c] + mean[c])*255
    im8[im8 > 255] = 255; im8[im8 < 0] = 0; im8 = im8.astype(np.uint8)
    d = dcrf.DenseCRF2D(im8.shape[1], im8.shape[0], 21)                                      # crf_inference of afftools/imutils.py, t=1
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(up[0].numpy())))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.copy(im8), compat=10)
    q = np.array(d.inference(1)).reshape(21, im8.shape[0], im8.shape[1])
    return rw[0], im8, np.uint8(np.argmax(q, 0))[:H, :W]

def test_released_walk_step_by_step():
    "On a crop of a genuine VOC photograph (not a multiple of 8) with three classes: background power 19, padding, pooling, the dense matrix with its diagonal, β 8, six squarings, bilinear upsampling, the CRF's image and one CRF step as released"
    from PIL import Image
    img = np.asarray(Image.open(SAMPLE/'VOC2012/JPEGImages/2007_001763.jpg').convert('RGB'))[0:151, 150:347]
    seeds = {k: v[0:151, 150:347] for k, v in soft_seeds(read_mask(SAMPLE/'VOC2012/SegmentationClass/2007_001763.png'), 12).items()}
    assert len(seeds) >= 3 and img.shape == (151, 197, 3)
    ref_walk, ref_img, ref_mask = released_walk(img, seeds, ColourEmbedding())
    pil = Image.fromarray(img)
    for walk in ('dense', 'sparse'):
        ours = walk_image(ColourEmbedding(), pil, seeds, walk=walk)
        assert ours.shape == ref_walk.shape == (21, 19, 25)
        assert (ours - ref_walk).abs().max() < 1e-4
    np.testing.assert_array_equal(crf_image(pil), ref_img)
    mask = pseudo_mask(pil, walk_image(ColourEmbedding(), pil, seeds, walk='dense'))
    assert 0 in ref_mask and len(np.unique(ref_mask)) >= 3 and (mask != ref_mask).mean() < 1e-3

def test_released_defaults_of_the_command():
    "aeft_pseudo reproduces the released run: β 8, 6 squarings, background power 19, one CRF step (infer_aff.py, README.md), on train_aug (README.md); the sparse walk computes it"
    import inspect
    o = options(PseudoStage)
    assert {k: o[k].default for k in ('beta', 'logt', 'bg_power', 'crf_iters', 'split', 'data', 'walk')} == dict(beta=8, logt=6, bg_power=19, crf_iters=1, split=None, data='voc', walk='sparse')
    assert DATA['voc'] == 'train_aug'                                            # --split None: train_aug for VOC, as the README
    for f in (walk_image, run_pseudo):
        q = inspect.signature(f).parameters
        assert (q['beta'].default, q['logt'].default, q['bg_power'].default, q['radius'].default) == (8, 6, 19, 5)
    assert inspect.signature(pseudo_mask).parameters['crf'].default == 1

# ---- MS-COCO

@pytest.fixture(scope='module')
def coco(coco_data, tmp_path_factory):
    "The COCO-format fixture, its drawn train images (29 to 61 pixels a side: the hand-made ones are too small for the walk's grid) and seeds of them from its masks: (root, truth, ids, seeds)"
    t, (root, truth) = tmp_path_factory.mktemp('pseudo-coco'), coco_data
    ids = [id for id in truth.ids('train') if int(id[-12:]) >= 1000][:6]
    return root, truth, ids, coco_seeds(truth, ids, t/'seeds')

def test_aeft_pseudo_on_coco(chain, coco, tmp_path):
    "--data coco: COCO's images found through the annotations, 1 + 80 channels walked; each mask at its image's size holds only its seeds' labels, COCO's beyond 20 among them"
    *_, ckpt = chain
    root, truth, ids, seeds = coco
    r = run('aeft_pseudo', seeds, ckpt, '--data', 'coco', '--root', root, '--ids', _ids_file(tmp_path, ids), '--out', tmp_path/'pseudo',
            '--processes', 1, '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert f'aeft_pseudo: {len(ids)} pseudo masks written' in r.stdout
    assert json.loads((tmp_path/'pseudo'/MANIFEST).read_text())['num_classes'] == 80
    found = set()
    for id in ids:
        m = read_prediction(tmp_path/'pseudo'/f'{id}.png', 81)
        assert m.shape == truth.mask(id).shape
        assert set(np.unique(m)) <= {0} | {k + 1 for k in load_seeds(seeds/f'{id}.npy', 80)}
        found |= set(np.unique(m).tolist())
    assert {57, 80} <= found
    res = evaluate_masks(tmp_path/'pseudo', split=ids, progress=False, truth=truth)
    assert res['images'] == len(ids) and len(res['classes']) == 81 and 0 <= res['miou'] <= 1

def test_coco_errors(chain, coco, tmp_path):
    *_, ckpt = chain
    root, truth, ids, seeds = coco
    def message(**kw):
        kw = dict(dict(out=str(tmp_path/'pseudo'), data='coco', root=str(root), ids=str(_ids_file(tmp_path, ids)), processes=1, progress=False), **kw)
        with pytest.raises(SystemExit) as e: aeft_pseudo(argv(seeds, ckpt, **kw))
        return str(e.value)
    assert message(data='cityscapes') == "aeft_pseudo: --data must be one of voc, coco, shapes, folder, cocofile, got 'cityscapes'"
    assert message(out=str(root/'pseudo')) == f"aeft_pseudo: --out {root/'pseudo'} is inside the data folder {root}; write the outputs elsewhere"
    copy = tmp_path/'copy'; shutil.copytree(root, copy)                           # an image of the annotations missing on disk
    gone = copy/'train2014'/f'{ids[2]}.jpg'; gone.unlink()
    assert message(root=str(copy)) == f"aeft_pseudo: image not found: {gone} (1 of the {len(ids)} images missing)"
    assert not (tmp_path/'pseudo').exists() and not (root/'pseudo').exists()      # refused before anything was written

def test_chunked_affinities_equal_the_whole():
    "The affinities computed a chunk of pairs at a time equal those computed at once, to the last bit, for AffinityNet's 448 channels"
    f, pairs = torch.randn(1, 448, 13, 17, generator=torch.Generator().manual_seed(0)), radius_pairs(13, 17)
    whole = affinities(f, pairs)
    for chunk in (1, 100, 999, len(pairs[0]) - 1, len(pairs[0]), 10**9): assert torch.equal(affinities(f, pairs, chunk), whole)

def test_walk_image_in_chunks(monkeypatch):
    "walk_image with chunks of a few hundred pairs gives the scores of one chunk holding every pair"
    import aeft.pseudo as P
    img = load_image(SAMPLE/'VOC2012'/'JPEGImages'/'2007_002094.jpg')
    net = torch.nn.Sequential(torch.nn.AvgPool2d(8), torch.nn.Conv2d(3, 448, 1)).eval()
    seeds = {2: np.zeros((img.height, img.width), np.float32)}; seeds[2][100:200, 150:300] = 0.9
    whole = walk_image(net, img, seeds)
    monkeypatch.setattr(P, 'CHUNK_BYTES', 12*448*500)
    assert torch.equal(walk_image(net, img, seeds), whole)

def test_memory_need_and_refusal(tmp_path):
    "walk_memory by hand; a run whose largest image needs more than --max_memory is refused before the folder is claimed, in one line naming image, need and option"
    from aeft.pseudo import walk_memory, walk_pairs, check_memory, CHUNK_BYTES
    from aeft.affinity import load_affinity_model
    n, p = 47*63, 43*55*34
    assert walk_pairs(47, 63) == p == len(radius_pairs(47, 63)[0])
    assert walk_memory(47, 63, 448) == 4*448*n + 20*p + min(CHUNK_BYTES, 12*448*p) + 12*21*n + 80*(2*p + n)
    assert walk_memory(47, 63, 448, walk='dense') == 4*448*n + 20*p + min(CHUNK_BYTES, 12*448*p) + 12*21*n + 8*n*n
    root = write_tiny_voc(tmp_path/'data')
    train = voc_splits(root, verbose=False)['train']
    image = lambda id: voc_root(root)/'JPEGImages'/f'{id}.jpg'
    id = max(train[:3], key=lambda i: np.prod(Image.open(image(i)).size))           # the largest of the three is the one checked
    seeds = write_seeds(root, train[:3], tmp_path/'seeds')
    cfg = AffinityConfig.synthetic(device='cpu')
    torch.save(dict(model=build_affinity_model(cfg).state_dict(), config=asdict(cfg)), tmp_path/'aff.pt')
    ids = tmp_path/'ids.txt'; ids.write_text('\n'.join(train[:3]) + '\n')
    def message(**kw):
        with pytest.raises(SystemExit) as e: aeft_pseudo(argv(seeds, tmp_path/'aff.pt', root=root, ids=ids, out=tmp_path/'pseudo', processes=1, progress=False, **kw))
        return str(e.value)
    W, H = Image.open(image(id)).size
    need = check_memory(image(id), load_affinity_model(tmp_path/'aff.pt', 'cpu')[0], 4, walk='dense', max_memory=1e9)   # the tiny backbone: stride 4
    msg = message(walk='dense', max_memory=need/1e9*0.99)
    assert msg.startswith(f"aeft_pseudo: image {image(id)} ({W}×{H}): needs {need/1e9:.1f} GB (AffinityNet ") and ', the dense walk ' in msg
    assert msg.endswith(f"more than --max_memory {need/1e9*0.99:g} GB; use --walk sparse (the same scores to 1e-4, memory linear in the pixels) or raise --max_memory")
    assert message(max_memory=1e-4).endswith('more than --max_memory 0.0001 GB; raise --max_memory')             # below the libraries' own: no --max_pixels fits
    assert not (tmp_path/'pseudo').exists()
    assert run('aeft_pseudo', seeds, tmp_path/'aff.pt', '--root', root, '--ids', ids, '--out', tmp_path/'pseudo', '--walk', 'dense',
               '--processes', '1', '--max_memory', need/1e9*1.01).returncode == 0

def sample_walk(tmp_path):
    "Two genuine photographs of the VOC sample (500×375 at most) copied, their seeds and an untrained tiny AffinityNet saved as aff.pt: (root, ids, seed folder, ids file, the network)"
    from aeft.affinity import load_affinity_model
    root = tmp_path/'sample'; shutil.copytree(SAMPLE, root)
    ids = voc_splits(root, verbose=False)['train'][:2]
    seeds = write_seeds(root, ids, tmp_path/'seeds')
    cfg = AffinityConfig.synthetic(device='cpu')
    torch.save(dict(model=build_affinity_model(cfg).state_dict(), config=asdict(cfg)), tmp_path/'aff.pt')
    idf = tmp_path/'ids.txt'; idf.write_text('\n'.join(ids) + '\n')
    return root, ids, seeds, idf, load_affinity_model(tmp_path/'aff.pt', 'cpu')[0]

def test_max_pixels_walks_downscaled(tmp_path):
    "--max_pixels: a larger image is walked downscaled, its mask written at the image's size and equal to the downscaled walk's mask upsampled; the refusal names a --max_pixels that fits, and it does"
    from aeft.pseudo import check_memory, fit_size, PROCESS_BYTES
    root, ids, seeds, idf, model = sample_walk(tmp_path)                             # genuine photos, larger than the limits below
    image = lambda id: voc_root(root)/'JPEGImages'/f'{id}.jpg'
    common = dict(root=root, ids=idf, processes=1, progress=False)
    PseudoStage(seeds=str(seeds), ckpt=str(tmp_path/'aff.pt'), out=str(tmp_path/'small'), root=str(root), ids=str(idf), processes=1, progress=False, max_pixels=4096).run()
    assert json.loads((tmp_path/'small'/MANIFEST).read_text())['max_pixels'] == 4096
    for id in ids:
        img = load_image(image(id)); size = fit_size(img.width, img.height, 4096)
        assert size[0]*size[1] <= 4096 < img.width*img.height
        m = read_mask(tmp_path/'small'/f'{id}.png')
        small = img.resize(size, Image.BILINEAR)
        sd = {k: F.interpolate(torch.as_tensor(v)[None, None], size=size[::-1], mode='bilinear', align_corners=False)[0, 0].numpy()
              for k, v in load_seeds(seeds/f'{id}.npy').items()}
        want = pseudo_mask(small, walk_image(model, small, sd, stride=4), stride=4)
        assert m.shape == (img.height, img.width) and np.array_equal(m, np.asarray(Image.fromarray(want).resize(img.size, Image.NEAREST)))
    big = max(ids, key=lambda id: np.prod(Image.open(image(id)).size))
    full = check_memory(image(big), model, 4, max_memory=1e9)
    limit = (PROCESS_BYTES + (full - PROCESS_BYTES)*0.6)/1e9
    with pytest.raises(SystemExit) as e: aeft_pseudo(argv(seeds, tmp_path/'aff.pt', out=tmp_path/'p', max_memory=limit, **common))
    n = int(str(e.value).rsplit('--max_pixels ', 1)[1])
    assert str(e.value).startswith(f'aeft_pseudo: image {image(big)} (') and n < np.prod(Image.open(image(big)).size)
    assert check_memory(image(big), model, 4, max_memory=limit, max_pixels=n) <= limit*1e9
    assert run('aeft_pseudo', seeds, tmp_path/'aff.pt', '--root', root, '--ids', idf, '--out', tmp_path/'p', '--processes', 1, '--max_memory', limit, '--max_pixels', n).returncode == 0
    with pytest.raises(SystemExit) as e: aeft_pseudo(argv(seeds, tmp_path/'aff.pt', out=tmp_path/'q', max_pixels=100, **common))
    assert str(e.value) == 'aeft_pseudo: --max_pixels must be at least 4096 (64×64), got 100'

def test_an_image_over_max_memory_runs_in_tiles_then_over_its_own_labels(tmp_path, monkeypatch, capsys):
    "An image that needs more than --max_memory as released runs AffinityNet in tiles (the same masks), then, if still needed, its CRF step over its own labels (the masks nearly the same); the plan is said once, --max_memory is in the manifest"
    import aeft.pseudo as P
    root, ids, seeds, idf, model = sample_walk(tmp_path)
    go = lambda out, **kw: aeft_pseudo(argv(seeds, tmp_path/'aff.pt', root=root, ids=idf, out=tmp_path/out, processes=1, progress=False, **kw))
    masks = lambda out: [read_mask(tmp_path/out/f'{id}.png') for id in ids]
    go('released')
    assert json.loads((tmp_path/'released'/MANIFEST).read_text())['max_memory'] == 4.0
    W, H = max((Image.open(voc_root(root)/'JPEGImages'/f'{id}.jpg').size for id in ids), key=lambda s: s[0]*s[1])
    # AffinityNet's forward pass the largest step (the walk's and the CRF step's needs set aside: the tiny network's pass is small): a limit between the tiles' need and the whole pass's
    with monkeypatch.context() as m:
        m.setattr(P, 'crf_memory', lambda H, W, classes=21: 0); m.setattr(P, 'walk_memory', lambda *a, **kw: 0)
        need, parts, fixed = P._need(model, W, H, 4, 5, 'sparse', 21)
        limit = (fixed + P._need(model, W, H, 4, 5, 'sparse', 21, tile=128)[1]['AffinityNet'])/1e9
        assert fixed + parts['AffinityNet'] > limit*1e9                               # the whole pass does not fit, tiles of 128 pixels do
        _, _, _, tile, k = P.memory_plan(model, W, H, 4, 5, 'sparse', limit, 21, labels=3)
        assert tile is not None and tile % 4 == 0 and tile < max(W, H) and k == 21
        capsys.readouterr(); go('tiled', max_memory=limit)
        assert 'AffinityNet in tiles of ' in capsys.readouterr().out
    assert all((a == b).mean() > 0.999 for a, b in zip(masks('tiled'), masks('released')))
    # the CRF step the largest (the walk's need set aside): a limit below its need over 21 labels, above its need over the image's own
    own = max(1 + len(load_seeds(seeds/f'{id}.npy')) for id in ids)
    monkeypatch.setattr(P, 'walk_memory', lambda *a, **kw: 0)
    _, parts, fixed = P._need(model, W, H, 4, 5, 'sparse', 21)
    limit = (fixed + max(parts['AffinityNet'], P.crf_memory(-(-H//4)*4, -(-W//4)*4, own)))/1e9
    assert fixed + parts['CRF'] > limit*1e9
    capsys.readouterr(); go('own', max_memory=limit)
    out = capsys.readouterr().out
    assert "the CRF step over each image's own labels" in out and 'tiles' not in out
    assert json.loads((tmp_path/'own'/MANIFEST).read_text())['max_memory'] == limit
    for id, a, b in zip(ids, masks('own'), masks('released')):
        assert (a == b).mean() > 0.999 and set(np.unique(a)) <= {0} | {k + 1 for k in load_seeds(seeds/f'{id}.npy')}
    aeft_pseudo(argv(seeds, tmp_path/'aff.pt', root=root, ids=idf, out=tmp_path/'pool', processes=2, progress=False, max_memory=limit))   # a pool: the planned image's CRF step in the main process
    assert all(np.array_equal(a, b) for a, b in zip(masks('pool'), masks('own')))
    with pytest.raises(SystemExit) as e: go('own')
    assert f'max_memory={limit}, not max_memory=4.0' in str(e.value)
