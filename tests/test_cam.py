"Multi-scale CAMs: batched equals the per-scale loop; aeft_cam end to end on a VOC-format fixture, with files on disk and its errors"
import hashlib, json, os, shutil, subprocess, sys
from dataclasses import asdict
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from aeft.gpp import CAMNet, TinyBackbone
from aeft.config import build_model, make_config
from aeft.voc import write_tiny_voc, VOCDataset
from aeft.cam import multiscale_cams, load_seeds, save_seeds, irn_strided, aeft_cam, CAMStage
from aeft.crf import run_crf
from aeft.evaluate import seed_sweep, as_truth
from aeft.pseudo import _plan as pseudo_inputs

pytestmark = pytest.mark.filterwarnings('ignore:VOC split')
BIN = Path(sys.executable).parent

def run(*args):
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True)

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    t = tmp_path_factory.mktemp('cam')
    root = write_tiny_voc(t/'data', sbd='png')
    cfg = make_config('voc', backbone='tiny', width=8, opts='device=cpu')
    torch.save(dict(model=build_model(cfg).state_dict(), config=asdict(cfg)), t/'last.pt')
    return t, root

@pytest.mark.parametrize('max_batch, max_pixels', [(1, None), (3, None), (16, None), (16, 2*33*47), (16, 10**9)])
def test_batched_equals_loop(max_batch, max_pixels):
    torch.manual_seed(0)
    net = CAMNet(TinyBackbone(8), 20, head='gpp').eval()
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(33, 47), (47, 33), (33, 47), (20, 21)]]
    loop, ll = multiscale_cams(net, imgs, batched=False)
    batch, bl = multiscale_cams(net, imgs, max_batch=max_batch, max_pixels=max_pixels)
    for a, b, im in zip(loop, batch, imgs):
        assert a.shape == b.shape == (20, im.height, im.width)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ll, bl, rtol=1e-5, atol=1e-5)

def test_aeft_cam_end_to_end(setup):
    t, root = setup
    r = run('aeft_cam', '--root', root, '--ckpt', t/'last.pt', '--out', t/'psa', '--overlays', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert 'aeft_cam: 8 seed files written' in r.stdout
    ds = VOCDataset(root, 'train')
    for id in ds.ids:
        sd = load_seeds(t/'psa'/f'{id}.npy')
        h, w = np.asarray(ds.image(ds.ids.index(id))).shape[:2]
        assert sorted(sd) == ds.labels[id] and all(v.shape == (h, w) and v.dtype == np.float32 for v in sd.values())
        assert all(0 <= v.min() and v.max() < 1 for v in sd.values())
        assert (t/'psa'/'overlay'/f'{id}.png').is_file()
    assert not [p for p in (t/'psa').iterdir() if 'tmp' in p.name]
    # a second run writes nothing; the IRN layout holds the same maps
    assert '0 seed files written' in run('aeft_cam', '--root', root, '--ckpt', t/'last.pt', '--out', t/'psa', '--progress', 'False').stdout  # skipped: no model run
    assert run('aeft_cam', '--root', root, '--ckpt', t/'last.pt', '--out', t/'irn', '--layout', 'irn', '--max_pixels', 5000,
               '--scales', '1.0', '--flip', 'False', '--progress', 'False').returncode == 0
    d = np.load(t/'irn'/f'{ds.ids[0]}.npy', allow_pickle=True).item()
    assert sorted(d) == ['cam', 'high_res', 'keys']
    psa = load_seeds(t/'psa'/f'{ds.ids[0]}.npy')
    h, w = psa[d['keys'][0]].shape
    assert d['keys'].tolist() == sorted(psa) and d['high_res'].shape == (len(psa), h, w)
    assert tuple(d['cam'].shape) == (len(psa), -(-h//4), -(-w//4))

def test_unlabelled_folder(setup):
    t, root = setup
    r = run('aeft_cam', '--images', root/'VOCdevkit/VOC2012/JPEGImages', '--ckpt', t/'last.pt', '--out', t/'folder',
            '--scales', '1.0', '--flip', 'False', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert len(list((t/'folder').glob('*.npy'))) == 24
    assert all(len(load_seeds(p)) >= 1 for p in (t/'folder').glob('*.npy'))   # predicted classes: at least the top one

def test_errors(setup, tmp_path):
    t, root = setup
    r = run('aeft_cam', '--root', tmp_path/'none', '--ckpt', t/'last.pt', '--out', tmp_path/'o')   # through the command once
    assert r.returncode != 0 and 'VOC root not found' in r.stderr
    def message(*args):
        with pytest.raises(SystemExit) as e: aeft_cam(['--out', str(tmp_path/'o'), '--progress', 'False', *map(str, args)])
        return str(e.value)
    assert 'exactly one of' in message('--root', root)
    assert message('--layout', 'pickle') == "aeft_cam: --layout must be one of psa, irn, npz, got 'pickle'"
    assert message('--scales', '1,0', '--root', root, '--ckpt', t/'last.pt') == "aeft_cam: --scales must be values > 0 each, got 1,0"
    assert message('--split', 'test', '--root', root, '--ckpt', t/'last.pt').startswith("aeft_cam: split 'test' must be one of")
    assert not (tmp_path/'o').exists()                                # refused before anything was written
    bad = tmp_path/'imgs'; bad.mkdir(); (bad/'broken.jpg').write_bytes(b'\xff\xd8 not really')
    m = message('--images', bad, '--ckpt', t/'last.pt')
    assert 'cannot read image' in m and 'broken.jpg' in m

def test_ckpt_run_folder(setup, tmp_path, capsys):
    "--ckpt takes aeft_train's run folder: its best.pt when there is one, else its last.pt; a folder with neither is refused naming it"
    t, root = setup
    run_dir = tmp_path/'train'; run_dir.mkdir()
    with pytest.raises(SystemExit, match=f"aeft_cam: checkpoint folder {run_dir} holds neither best.pt nor last.pt"):
        aeft_cam(['--root', str(root), '--ckpt', str(run_dir), '--out', str(tmp_path/'x')])
    shutil.copy(t/'last.pt', run_dir/'best.pt'); (run_dir/'last.pt').write_bytes(b'not a checkpoint')
    base = ['--root', str(root), '--ids', str(tmp_path/'ids.txt'), '--scales', '1.0', '--flip', 'False', '--progress', 'False']
    (tmp_path/'ids.txt').write_text(VOCDataset(root, 'train').ids[0] + '\n')
    assert aeft_cam([*base, '--ckpt', str(run_dir), '--out', str(tmp_path/'s')])['written'] == 1
    assert f"aeft_cam: --ckpt {run_dir} reads {run_dir/'best.pt'}" in capsys.readouterr().out
    sha = json.loads((tmp_path/'s'/'manifest.json').read_text())['checkpoint_sha256']
    assert sha == hashlib.sha256((t/'last.pt').read_bytes()).hexdigest()

def test_old_spelling(setup, tmp_path, capsys):
    "--voc_root, the old spelling of --root, still works and says so"
    t, root = setup
    summary = aeft_cam(['--voc_root', str(root), '--ckpt', str(t/'last.pt'), '--out', str(tmp_path/'s'), '--scales', '1.0', '--flip', 'False', '--progress', 'False'])
    out, err = capsys.readouterr()
    assert err.splitlines() == ['aeft_cam: --voc_root is now --root'] and 'aeft_cam: 8 seed files written' in out.splitlines()[-1]
    assert (summary['images'], summary['written'], summary['out']) == (8, 8, str(tmp_path/'s')) and summary['seconds'] > 0

def test_checkpoint_holds_its_own_network(setup, tmp_path):
    "A fine-to-coarse GPP head has the default head's keys: asked for as coarse-to-fine it is refused; from its own description it is rebuilt"
    t, root = setup
    cfg = make_config('voc', backbone='tiny', width=8, opts='device=cpu order=fine_to_coarse')
    net = build_model(cfg).eval()
    torch.save(dict(model=net.state_dict(), config=asdict(cfg)), tmp_path/'f2c.pt')
    r = run('aeft_cam', '--root', root, '--ckpt', tmp_path/'f2c.pt', '--out', tmp_path/'asked', '--model', 'order=coarse_to_fine')
    assert r.returncode == 1 and "holds a network made with order='fine_to_coarse', not order='coarse_to_fine'" in r.stderr
    assert not (tmp_path/'asked').exists()
    r = run('aeft_cam', '--root', root, '--ckpt', tmp_path/'f2c.pt', '--out', tmp_path/'own', '--scales', '1.0', '--flip', 'False', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    ds = VOCDataset(root, 'train')
    img = ds.image(0)
    sums, _ = multiscale_cams(net, [img], scales=(1.0,), flip=False)
    seeds = load_seeds(tmp_path/'own'/f'{ds.ids[0]}.npy')
    for k in ds.labels[ds.ids[0]]: np.testing.assert_allclose(seeds[k], (sums[0][k]/(sums[0][k].max() + 1e-5)).numpy(), atol=1e-6)

@pytest.mark.parametrize('h, w', [(1, 1), (3, 7), (8, 12), (37, 53)])
def test_irn_layout(tmp_path, h, w):
    "IRN's make_cam layout: keys (0-based, sorted), high_res (n, H, W), cam at stride 4 (ceil(H/4), ceil(W/4)), max-normalised"
    rng = np.random.default_rng(h*w)
    seeds = {k: rng.random((h, w), dtype=np.float32) for k in (14, 2, 7)}
    save_seeds(seeds, tmp_path/'a.npy', 'irn')
    d = np.load(tmp_path/'a.npy', allow_pickle=True).item()
    assert sorted(d) == ['cam', 'high_res', 'keys'] and d['keys'].dtype == np.int64 and d['keys'].tolist() == [2, 7, 14]
    assert d['high_res'].shape == (3, h, w) and d['high_res'].dtype == np.float32
    assert isinstance(d['cam'], torch.Tensor) and d['cam'].shape == (3, -(-h//4), -(-w//4))   # a tensor, as IRN's steps read it
    for i, k in enumerate([2, 7, 14]):
        np.testing.assert_array_equal(d['high_res'][i], seeds[k])
        # the strided map by hand: each 4x4 block's mean (edge blocks: the pixels they have), then / (max + 1e-5)
        blocks = np.array([[seeds[k][4*r:4*r + 4, 4*c:4*c + 4].mean() for c in range(-(-w//4))] for r in range(-(-h//4))])
        np.testing.assert_allclose(d['cam'][i].numpy(), blocks/(blocks.max() + 1e-5), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d['cam'], irn_strided(d['high_res']))
    back = load_seeds(tmp_path/'a.npy')
    assert list(back) == [2, 7, 14] and all((back[k] == seeds[k]).all() for k in seeds)
    save_seeds({}, tmp_path/'empty.npy', 'irn')                  # an image without classes round-trips to no seeds
    assert load_seeds(tmp_path/'empty.npy') == {}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []

def test_folder_settings(setup, tmp_path):
    "A seed folder's manifest: the same settings resume (the checkpoint known by its content), another checkpoint is refused, val joins train, overlays are filled in"
    t, root = setup
    seeds, cam = tmp_path/'seeds', lambda *a: run('aeft_cam', '--root', root, '--out', seeds, '--scales', '1.0', '--flip', 'False', '--progress', 'False', *a)
    r = cam('--ckpt', t/'last.pt')
    assert r.returncode == 0 and 'aeft_cam: 8 seed files written' in r.stdout, r.stderr
    m = json.loads((seeds/'manifest.json').read_text())
    assert m == dict(stage='seeds', checkpoint_sha256=hashlib.sha256((t/'last.pt').read_bytes()).hexdigest(), data='voc', classes='xml', num_classes=20,
                     scales=[1.0], flip=False, relu_first=False, bf16=False, layout='psa')
    cfg = make_config('voc', backbone='tiny', width=8, opts='device=cpu seed=1')
    torch.save(dict(model=build_model(cfg).state_dict(), config=asdict(cfg)), tmp_path/'other.pt')
    before = sorted((p.name, p.stat().st_mtime_ns) for p in seeds.iterdir())
    r = cam('--ckpt', tmp_path/'other.pt')
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(f"aeft_cam: {seeds} holds seeds made with checkpoint_sha256={m['checkpoint_sha256']!r}, not checkpoint_sha256=")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in seeds.iterdir()) == before                  # nothing written
    shutil.copy(t/'last.pt', tmp_path/'moved.pt'); (seeds/f'{VOCDataset(root, "train").ids[0]}.npy').unlink()
    r = cam('--ckpt', tmp_path/'moved.pt', '--overlays')          # the same network under another name: resumes, and draws every overlay
    assert r.returncode == 0 and 'aeft_cam: 1 seed files written' in r.stdout, r.stderr
    assert len(list((seeds/'overlay').glob('*.png'))) == 8
    CAMStage(out=str(seeds), root=str(root), ckpt=str(t/'last.pt'), split='val', scales=(1.0,), flip=False, progress=False).run()   # in this process: quicker
    assert len(list(seeds.glob('*.npy'))) == 14 and json.loads((seeds/'manifest.json').read_text()) == m
    ids = VOCDataset(root, 'train').ids
    assert run_crf(seeds, root, tmp_path/'crf', ids, alphas=(2,), progress=False) == 8    # aeft_cam's manifest: still a seed folder
    assert len(pseudo_inputs(seeds, as_truth(root), tmp_path/'pseudo', ids, 20)) == 8                 # for aeft_pseudo too
    with pytest.raises(ValueError, match='the output of a later stage'): pseudo_inputs(tmp_path/'crf'/'02', as_truth(root), tmp_path/'pseudo', ids, 20)
    val = VOCDataset(root, 'val')
    assert seed_sweep(seeds, root, 'val', progress=False).hist.sum() == sum(im.width*im.height for im in map(val.image, range(len(val))))   # every pixel of val

def test_folder_without_manifest(setup, tmp_path):
    "Seed files with no manifest (an older run's, another code base's): refused as aeft_cam's output, read as seeds by aeft_crf"
    t, root = setup
    ds = VOCDataset(root, 'train')
    old = tmp_path/'old'; old.mkdir()
    for id in ds.ids: save_seeds({k: np.full(np.asarray(ds.image(ds.ids.index(id))).shape[:2], 0.5, np.float32) for k in ds.labels[id]}, old/f'{id}.npy')
    before = sorted((p.name, p.stat().st_mtime_ns) for p in old.iterdir())
    r = run('aeft_cam', '--root', root, '--ckpt', t/'last.pt', '--out', old, '--progress', 'False')
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (f"aeft_cam: {old} holds files (*.np[yz]) but no manifest.json saying how they were made; "
                                                       "choose another --out or delete them")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in old.iterdir()) == before
    assert run_crf(old, root, tmp_path/'crf', ds.ids, alphas=(2,), progress=False) == 8
    assert sorted(p.stem for p in (tmp_path/'crf'/'02').glob('*.npy')) == sorted(ds.ids)

def test_compact_seeds(setup, tmp_path):
    "--dtype float16 / uint8: the maps stored so in every layout and recorded in the manifest, read back as float32 within half a step of float32's; a float32 folder's manifest as before; the CRF reads compact seeds"
    t, root = setup
    base = ['--root', root, '--ckpt', t/'last.pt', '--scales', '1.0', '--flip', 'False', '--progress', 'False']
    assert run('aeft_cam', *base, '--out', tmp_path/'f32').returncode == 0
    assert 'dtype' not in json.loads((tmp_path/'f32'/'manifest.json').read_text())
    ids = VOCDataset(root, 'train').ids
    for dt, step, layout in (('float16', 1e-3, 'npz'), ('uint8', 1/510 + 1e-6, 'psa'), ('uint8', 1/510 + 1e-6, 'irn')):
        out = tmp_path/f'{dt}-{layout}'
        r = run('aeft_cam', *base, '--out', out, '--dtype', dt, '--layout', layout)
        assert r.returncode == 0, r.stderr
        assert json.loads((out/'manifest.json').read_text())['dtype'] == dt
        for id in ids:
            f = out/f"{id}{'.npz' if layout == 'npz' else '.npy'}"
            raw = np.load(f) if layout == 'npz' else np.load(f, allow_pickle=True).item()
            maps = raw['high_res'] if layout != 'psa' else np.stack(list(raw.values()))
            assert maps.dtype == np.dtype(dt)
            got, ref = load_seeds(f), load_seeds(tmp_path/'f32'/f'{id}.npy')
            assert sorted(got) == sorted(ref) and all(got[k].dtype == np.float32 and np.abs(got[k] - ref[k]).max() <= step for k in ref)
    assert run_crf(tmp_path/'uint8-psa', root, tmp_path/'crf', ids[:2], alphas=(2,), t=1, progress=False) == 2
