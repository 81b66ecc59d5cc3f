"Dense CRF: a hand-made image whose answer is known; aeft_crf end to end on a VOC-format fixture, on the genuine VOC sample and on a COCO-format fixture, resume, and its errors"
import hashlib, inspect, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from aeft.voc import write_tiny_voc, voc_root, find_sbd, load_mask, voc_splits
from aeft.cam import save_seeds, load_seeds
from aeft.crf import dense_crf, crf_seeds, crf_folder, load_crf, aeft_crf, CRFStage, run_crf, MANIFEST, GAUSSIAN, BILATERAL
from aeft.evaluate import DATA, scores_to_mask, evaluate_masks, EvalStage
from aeft.cli import options

pytestmark = [pytest.mark.filterwarnings('ignore:VOC split'), pytest.mark.filterwarnings('ignore:COCO split')]
BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).parent/'data'/'voc-sample'

def run(*args): return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True)

def argv(*positional, **kw):
    "A command line: the `positional` arguments, then --name value for each of `kw`"
    return [*map(str, positional), *[x for k, v in kw.items() for x in (f'--{k}', str(v))]]

def soft_seeds(mask, sigma=2.0):
    "Seeds {class: map} from a label mask: each class's region blurred and max-normalised (a seed that spills over the borders)"
    maps = {int(v) - 1: gaussian_filter((mask == v).astype(np.float32), sigma) for v in np.unique(mask) if 0 < v < 255}
    return {k: (m/(m.max() + 1e-5)).astype(np.float32) for k, m in maps.items()}

def write_seeds(root, ids, folder, layout='psa'):
    voc = voc_root(root); sbd = find_sbd(voc)
    folder.mkdir(parents=True, exist_ok=True)
    for id in ids: save_seeds(soft_seeds(load_mask(voc, id, sbd)[0]), folder/f"{id}{'.npz' if layout == 'npz' else '.npy'}", layout)
    return folder

def coco_seeds(truth, ids, folder):
    "`soft_seeds` of the COCO images `ids` from the masks of `truth` (class keys 0..79)"
    folder.mkdir(parents=True, exist_ok=True)
    for id in ids: save_seeds(soft_seeds(truth.mask(id)), folder/f'{id}.npy')
    return folder

def tree_digest(folder):
    "sha256 of every file's path and bytes under `folder`"
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob('*')):
        if p.is_file(): h.update(str(p.relative_to(folder)).encode()); h.update(p.read_bytes())
    return h.hexdigest()

@pytest.fixture(scope='module')
def fixture(tmp_path_factory):
    t = tmp_path_factory.mktemp('crf')
    root = write_tiny_voc(t/'data', sbd='png')
    ids = voc_splits(root, verbose=False)['train_aug']
    return root, ids, write_seeds(root, ids, t/'seeds')

def test_crf_follows_the_regions_of_a_hand_made_image():
    "A red square on a blue ground; the seed is the square blurred (spilling over its border) with uniform noise ±0.3: the CRF's labels are the square"
    rng = np.random.default_rng(0)
    img = np.zeros((48, 64, 3), np.uint8); img[...] = (40, 60, 190)
    truth = np.zeros((48, 64), np.uint8); truth[12:36, 16:48] = 8           # VOC label 8: cat, class 7
    img[truth > 0] = (200, 40, 40)
    seed = np.clip(gaussian_filter((truth > 0).astype(np.float32), 2) + rng.uniform(-0.3, 0.3, truth.shape), 0, 1).astype(np.float32)
    seed /= seed.max() + 1e-5
    assert (np.where(seed > 0.5, 8, 0) != truth).sum() > 50                 # the seed alone is visibly wrong
    for alpha in (2, 4):
        out = crf_seeds(img, {7: seed}, alpha)
        assert sorted(out) == [0, 8] and all(v.dtype == np.float32 and v.shape == truth.shape for v in out.values())
        np.testing.assert_allclose(out[0] + out[8], 1, atol=1e-5)
        np.testing.assert_array_equal(scores_to_mask(out), truth)
    high = scores_to_mask(crf_seeds(img, {7: seed}, 21))                  # a background of (1 - seed)^21 loses wherever the seed is not ~0
    assert (high[truth > 0] == 8).all() and (high[truth == 0] == 8).sum() > 0

def test_more_iterations_only_from_the_same_start():
    "t = 0 is the normalised unary; each call is deterministic"
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    p = rng.random((3, 20, 30)).astype(np.float32)
    np.testing.assert_allclose(dense_crf(img, p, t=0), p/p.sum(0), rtol=1e-5)
    np.testing.assert_array_equal(dense_crf(img, p, t=5), dense_crf(img, p, t=5))

def test_aeft_crf_end_to_end(fixture, tmp_path):
    root, ids, seeds = fixture
    r = run('aeft_crf', seeds, '--root', root, '--out', tmp_path/'crf', '--processes', 2, '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert f'aeft_crf: {len(ids)} images run at alphas 2, 21' in r.stdout and '2 processes' in r.stdout
    for a in (2, 21):
        folder = crf_folder(tmp_path/'crf', a)
        assert folder == tmp_path/'crf'/f'{a:02d}'
        m = json.loads((folder/MANIFEST).read_text())
        assert (m['alpha'], m['t'], m['gaussian'], m['bilateral'], m['layout'], m['num_classes']) == (a, 10, GAUSSIAN, BILATERAL, 'psa', 20)
        assert m['seeds'] == str(seeds.resolve())
        assert sorted(p.stem for p in folder.glob('*.npy')) == sorted(ids) and not [p for p in folder.iterdir() if p.name.startswith('.')]
        for id in ids:
            sd, c = load_seeds(seeds/f'{id}.npy'), load_crf(folder, id)
            assert sorted(c) == [0] + [k + 1 for k in sorted(sd)]
            assert all(v.dtype == np.float32 and v.shape == sd[min(sd)].shape for v in c.values())
            np.testing.assert_allclose(sum(c.values()), 1, atol=1e-5)
    # one process writes the same files as two
    assert run_crf(seeds, root, tmp_path/'one', ids, workers=1, progress=False) == len(ids)
    for a in (2, 21):
        for id in ids: assert (tmp_path/'one'/f'{a:02d}'/f'{id}.npy').read_bytes() == (tmp_path/'crf'/f'{a:02d}'/f'{id}.npy').read_bytes()
    # a higher alpha gives the background less: its foreground contains the low alpha's
    fg = lambda a, id: scores_to_mask(load_crf(tmp_path/'crf'/f'{a:02d}', id)) > 0
    assert all((fg(2, id) <= fg(21, id)).all() for id in ids) and sum((fg(2, id) < fg(21, id)).sum() for id in ids) > 0

def test_crf_outputs_scored_by_aeft_eval(fixture, tmp_path, capsys):
    root, ids, seeds = fixture
    train = voc_splits(root, verbose=False)['train']
    run_crf(seeds, root, tmp_path/'crf', train, alphas=[21], progress=False)
    EvalStage(masks=str(tmp_path/'crf'/'21'), root=str(root), out=str(tmp_path/'eval'), progress=False).run()
    res = json.loads((tmp_path/'eval'/'mask_eval.json').read_text())
    assert (res['evaluated_on'], res['images'], res['kind']) == ('train', 8, 'CRF outputs (argmax)') and res['miou'] > 0.5
    out = capsys.readouterr().out
    assert 'CRF outputs (argmax) in' in out and '8 images of train' in out

def test_resume_skips_what_exists(fixture, tmp_path):
    root, ids, seeds = fixture
    assert run_crf(seeds, root, tmp_path/'crf', ids[:3], progress=False) == 3
    keep = tmp_path/'crf'/'02'/f'{ids[0]}.npy'
    os.utime(keep, ns=(0, 0))
    (tmp_path/'crf'/'21'/f'{ids[1]}.npy').unlink()
    assert run_crf(seeds, root, tmp_path/'crf', ids[:4], progress=False) == 2    # ids[1] (alpha 21 only) and ids[3]
    assert keep.stat().st_mtime_ns == 0
    assert all((tmp_path/'crf'/f'{a:02d}'/f'{id}.npy').is_file() for a in (2, 21) for id in ids[:4])

def test_resume_after_sigkill(tmp_path):
    "The genuine VOC sample (copied; the copy in the repository is never written): killed after its first output, a second run completes the rest"
    root = tmp_path/'sample'; shutil.copytree(SAMPLE, root)
    before = tree_digest(SAMPLE)
    ids = voc_splits(root, verbose=False)['train'][:2]
    seeds = write_seeds(root, ids, tmp_path/'seeds')
    p = subprocess.Popen([str(BIN/'aeft_crf'), seeds, '--root', root, '--ids', _ids_file(tmp_path, ids), '--out', tmp_path/'crf', '--processes', '1', '--progress', 'False'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list((tmp_path/'crf').glob('*/*.npy')) and time.time() - t0 < 60 and p.poll() is None: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = list((tmp_path/'crf').glob('*/*.npy'))
    assert 0 < len(done) < 2*len(ids)
    for f in done: load_crf(f.parent, f.stem)                                # every file there is whole
    whole = {f.stem for f in done if (tmp_path/'crf'/'02'/f.name).exists() and (tmp_path/'crf'/'21'/f.name).exists()}
    assert run_crf(seeds, root, tmp_path/'crf', ids, workers=2, progress=False) == len(ids) - len(whole)
    assert all(sorted(p.stem for p in (tmp_path/'crf'/a).glob('*.npy')) == sorted(ids) for a in ('02', '21'))
    res = evaluate_masks(tmp_path/'crf'/'21', root, ids, progress=False)
    assert res['images'] == 2 and res['miou'] > 0.5
    assert tree_digest(SAMPLE) == before and tree_digest(root/'VOC2012') == tree_digest(SAMPLE/'VOC2012')   # the data is only read

def test_errors(fixture, tmp_path):
    root, ids, seeds = fixture
    def message(seeds=seeds, **kw):
        kw = dict(dict(out=str(tmp_path/'crf'), root=str(root), progress=False), **kw)
        with pytest.raises(SystemExit) as e: aeft_crf(argv(seeds, **kw))
        return str(e.value)
    # through the command once: one line, no traceback
    r = run('aeft_crf', tmp_path/'none', '--root', root, '--out', tmp_path/'o')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f'aeft_crf: seed folder {tmp_path/"none"} does not exist (write it with aeft_cam)'
    # no seeds for an id: the id and the folder
    part = tmp_path/'part'; shutil.copytree(seeds, part); (part/f'{ids[5]}.npy').unlink()
    assert f"aeft_crf: no seed file for image {ids[5]!r} in {part}" in message(part)
    assert not (tmp_path/'crf').exists()                                   # refused before anything was written
    # seeds of another layout: one .npz among .npy files, or a folder of CRF outputs
    mixed = tmp_path/'mixed'; shutil.copytree(seeds, mixed); (mixed/f'{ids[3]}.npy').unlink()
    save_seeds(load_seeds(seeds/f'{ids[3]}.npy'), mixed/f'{ids[3]}.npz', 'npz')
    assert f"seed file {mixed/(ids[3] + '.npz')} is of layout 'npz', the other seeds of this run (and its manifest) 'psa'" in message(mixed, out=str(tmp_path/'m'))
    assert run_crf(seeds, root, tmp_path/'c1', ids[:1], progress=False) == 1
    assert f"{tmp_path/'c1'/'02'} holds CRF outputs (its manifest.json), not seeds" in message(tmp_path/'c1'/'02')
    # seeds of another class count: a class key 25 is no VOC class; a run with another class count than the folder's
    big = tmp_path/'big'; shutil.copytree(seeds, big)
    save_seeds({25: np.zeros(load_seeds(seeds/f'{ids[0]}.npy')[min(load_seeds(seeds/f'{ids[0]}.npy'))].shape, np.float32)}, big/f'{ids[0]}.npy')
    assert f"seed file {big/(ids[0] + '.npy')} has class keys [25]; expected class indices 0..19" in message(big, out=str(tmp_path/'b'))
    assert "holds CRF outputs made with num_classes=20, not num_classes=80" in message(out=str(tmp_path/'c1'), num_classes=80)
    assert "holds CRF outputs made with crf_iters=10, not crf_iters=5 (" in message(out=str(tmp_path/'c1'), crf_iters=5)   # named as the option
    # an output folder of another alpha or of another seed folder
    (tmp_path/'c1'/'02').rename(tmp_path/'c1'/'05')
    assert f"{tmp_path/'c1'/'05'} holds CRF outputs made with alpha=2, not alpha=5 ({tmp_path/'c1'/'05'/'manifest.json'}); choose another --out" in message(out=str(tmp_path/'c1'), alphas='5')
    assert f"holds CRF outputs made with seeds={str(seeds.resolve())!r}, not seeds={str(part.resolve())!r}" in message(part, out=str(tmp_path/'c1'), ids=str(_ids_file(tmp_path, ids[:1])))
    with pytest.raises(ValueError, match='records alpha 2, not 5'): crf_folder(tmp_path/'c1', 5)
    # a folder someone else wrote
    (tmp_path/'theirs'/'02').mkdir(parents=True); (tmp_path/'theirs'/'02'/'x.npy').write_bytes(b'')
    assert 'holds files (*) but no manifest.json saying how they were made' in message(out=str(tmp_path/'theirs'))
    # never into the data: an output root inside the VOC root or the seed folder
    assert f"--out {voc_root(root)/'crf'} is inside the data folder {voc_root(root)}" in message(out=str(voc_root(root)/'crf'))
    assert 'is inside the seed folder' in message(out=str(seeds/'crf'))
    assert not (voc_root(root)/'crf').exists() and not (seeds/'crf').exists()
    # seeds of another size than their image, bad arguments
    small = tmp_path/'small'; shutil.copytree(seeds, small); save_seeds({0: np.zeros((3, 4), np.float32)}, small/f'{ids[0]}.npy')
    assert f"seed file {small/(ids[0] + '.npy')} holds maps of 4×3 but image" in message(small, out=str(tmp_path/'s'), processes=2)
    assert '--alphas must be values >= 0 each, got -1' in message(alphas='-1')
    assert "--alphas must be values separated by commas, e.g. 2,4,8, got 'low'" in message(alphas='low')
    assert "--alphas must be non-negative integers separated by commas, got '2,2.5'" in message(alphas='2,2.5')
    assert "--crf_iters must be at least 1, got 0" in message(crf_iters=0)
    assert "split 'test' must be one of" in message(split='test')

def _ids_file(tmp_path, ids):
    f = tmp_path/'ids.txt'; f.write_text(''.join(f'{i}\n' for i in ids)); return f

def released_steps(img, cam_dict, alpha, t=10):
    "The released CRF on seeds, step by step with pydensecrf and literal numbers: (1 - max)^alpha in front of the maps as they are, kernels 3/3 and 80/13/10, keys 0 and k + 1"
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
    v = np.array(list(cam_dict.values()))
    probs = np.concatenate([np.power(1 - np.max(v, axis=0, keepdims=True), alpha), v])
    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, len(probs))
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.copy(img), compat=10)
    q = np.array(d.inference(t)).reshape(len(probs), h, w)
    return {0: q[0], **{k + 1: q[i + 1] for i, k in enumerate(cam_dict)}}

def test_released_crf_on_seeds():
    "On a crop of a genuine VOC photograph: the background score, the unnormalised stack, the kernels, 10 iterations and the keys are the released ones, bit for bit"
    img = np.asarray(Image.open(SAMPLE/'VOC2012'/'JPEGImages'/'2007_001763.jpg').convert('RGB'))[100:250, 150:350]
    seeds = {k: v[100:250, 150:350] for k, v in soft_seeds(np.asarray(Image.open(SAMPLE/'VOC2012'/'SegmentationClass'/'2007_001763.png')), 12).items()}
    assert len(seeds) >= 3
    for alpha in (2, 21):
        ours, ref = crf_seeds(img, seeds, alpha), released_steps(img, seeds, alpha)
        assert list(ours) == list(ref) == [0] + [k + 1 for k in sorted(seeds)]
        for k in ref: np.testing.assert_array_equal(ours[k], ref[k].astype(np.float32))
    assert (GAUSSIAN, BILATERAL) == (dict(sxy=3, compat=3), dict(sxy=80, srgb=13, compat=10))

def test_stage_run_and_old_spellings(fixture, tmp_path, capsys):
    "CRFStage.run returns its summary; the old --t, --workers and --voc_root still work, each with a note naming the new option"
    root, ids, seeds = fixture
    res = CRFStage(seeds=str(seeds), out=str(tmp_path/'crf'), root=str(root), split='train', crf_iters=2, processes=1, progress=False).run()
    assert (res['out'], res['images'], res['run'], res['alphas'], res['processes']) == (str(tmp_path/'crf'), 8, 8, (2, 21), 1) and res['seconds'] >= 0
    assert capsys.readouterr().out.startswith('aeft_crf: 8 images run at alphas 2, 21')
    assert json.loads((tmp_path/'crf'/'02'/MANIFEST).read_text())['t'] == 2                  # the manifest keeps its keys
    r = run('aeft_crf', seeds, '--voc_root', root, '--split', 'train', '--t', 2, '--workers', 1, '--out', tmp_path/'crf', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert [l for l in r.stderr.splitlines() if ' is now ' in l] == ['aeft_crf: --voc_root is now --root', 'aeft_crf: --t is now --crf_iters', 'aeft_crf: --workers is now --processes']
    assert 'aeft_crf: 0 images run at alphas 2, 21' in r.stdout and '8 already done' in r.stdout   # the same settings: nothing left to run
    with pytest.raises(SystemExit, match=r'aeft_crf: --crf_iters is given twice \(as --crf_iters and as --t\)'): aeft_crf(argv(seeds, t=2, crf_iters=2))

def test_released_defaults_of_the_command():
    "aeft_crf reproduces the released run: alphas 2 and 21 (README.md), 10 iterations (crf_inference_ysh), the train_aug list AffinityNet trains on"
    o = options(CRFStage)
    assert (o['alphas'].default, o['crf_iters'].default, o['split'].default, o['data'].default, DATA['voc']) == ((2, 21), 10, None, 'voc', 'train_aug')
    assert inspect.signature(crf_seeds).parameters['t'].default == inspect.signature(dense_crf).parameters['t'].default == 10

# ---- MS-COCO

@pytest.fixture(scope='module')
def coco(coco_data, tmp_path_factory):
    "The COCO-format fixture (its 13 annotated train images), and seeds of them made from its masks: (root, truth, ids, seeds)"
    root, truth = coco_data
    ids = truth.ids('train')
    return root, truth, ids, coco_seeds(truth, ids, tmp_path_factory.mktemp('crf-coco')/'seeds')

def test_aeft_crf_on_coco(coco, tmp_path):
    "--data coco: COCO's train images found through the annotations, 80 classes; each output's labels are its seeds' (up to 80), its argmax close to the masks they came from"
    root, truth, ids, seeds = coco
    r = run('aeft_crf', seeds, '--data', 'coco', '--root', root, '--out', tmp_path/'crf', '--processes', 1, '--progress', 'False')
    assert r.returncode == 0, r.stderr
    assert f'aeft_crf: {len(ids)} images run at alphas 2, 21' in r.stdout and len(ids) == 13
    assert json.loads((tmp_path/'crf'/'21'/MANIFEST).read_text())['num_classes'] == 80
    labels = set()
    for id in ids:
        c = load_crf(tmp_path/'crf'/'02', id, 81)
        assert sorted(c) == [0] + sorted(k + 1 for k in load_seeds(seeds/f'{id}.npy', 80))
        labels |= set(c)
    assert labels == {0, 1, 12, 17, 57, 80}                                  # background, person, stop sign, dog, chair, toothbrush
    EvalStage(masks=str(tmp_path/'crf'/'02'), data='coco', root=str(root), out=str(tmp_path/'eval'), progress=False).run()
    res = json.loads((tmp_path/'eval'/'mask_eval.json').read_text())
    assert (res['images'], len(res['classes'])) == (13, 81) and res['miou'] > 0.85

def test_coco_errors(coco, tmp_path):
    root, truth, ids, seeds = coco
    def message(**kw):
        kw = dict(dict(out=str(tmp_path/'crf'), data='coco', root=str(root), progress=False), **kw)
        with pytest.raises(SystemExit) as e: aeft_crf(argv(seeds, **kw))
        return str(e.value)
    assert message(data='cityscapes') == "aeft_crf: --data must be one of voc, coco, shapes, folder, cocofile, got 'cityscapes'"
    assert message(data='shapes').startswith("aeft_crf: --data must be 'voc', 'coco', 'folder' or 'cocofile', got 'shapes' (the synthetic shapes: aeft_run synthetic")
    assert message(out=str(root/'crf')) == f"aeft_crf: --out {root/'crf'} is inside the data folder {root}; write the outputs elsewhere"
    copy = tmp_path/'copy'; shutil.copytree(root, copy)                       # an image of the annotations missing on disk
    gone = copy/'train2014'/f'{ids[4]}.jpg'; gone.unlink()
    assert message(root=str(copy)) == f"aeft_crf: image not found: {gone} (1 of {len(ids)} missing)"
    assert not (tmp_path/'crf').exists() and not (root/'crf').exists()       # refused before anything was written
    assert "has class keys [56, 79]; expected class indices 0..19" in message(num_classes=20, ids=str(_ids_file(tmp_path, ids[5:6])))
    assert not (tmp_path/'crf').exists()                                    # refused before a folder is claimed: the corrected run is not blocked

def test_compact_outputs(fixture, tmp_path):
    "--dtype float16 / uint8: the maps stored so and recorded in the manifest, read back as float32 within half a step of the float32 run's, the same argmax but at near ties; a float32 folder's manifest as before, so existing folders resume; another dtype into it is refused"
    from aeft.affinity import AffinityDataset
    root, ids, seeds = fixture
    few = ids[:3]
    assert run_crf(seeds, root, tmp_path/'f32', few, progress=False) == 3
    assert 'dtype' not in json.loads((tmp_path/'f32'/'02'/MANIFEST).read_text())      # the float32 manifest holds what it held before
    for dt, step in (('float16', 1e-3), ('uint8', 1/510 + 1e-6)):
        assert run_crf(seeds, root, tmp_path/dt, few, progress=False, dtype=dt) == 3
        assert json.loads((tmp_path/dt/'21'/MANIFEST).read_text())['dtype'] == dt
        for a in (2, 21):
            for id in few:
                raw, ref, got = (np.load(tmp_path/dt/f'{a:02d}'/f'{id}.npy', allow_pickle=True).item(), load_crf(tmp_path/'f32'/f'{a:02d}', id),
                                 load_crf(tmp_path/dt/f'{a:02d}', id))
                assert {v.dtype for v in raw.values()} == {np.dtype(dt)} and {v.dtype for v in got.values()} == {np.dtype('float32')}
                assert max(np.abs(got[k] - ref[k]).max() for k in ref) <= step
                s = np.sort(np.stack(list(ref.values())), 0)
                near = (s[-1] - s[-2]) <= 2*step if len(ref) > 1 else np.zeros_like(s[0], bool)
                assert (scores_to_mask(got) == scores_to_mask(ref))[~near].all()
        ds = AffinityDataset(root, tmp_path/dt/'02', tmp_path/dt/'21', few, crop=32, stride=4)
        assert ds[0][1].dtype.is_floating_point is False                            # the affinity labels are read from the compact folders
    assert run_crf(seeds, root, tmp_path/'f32', ids[:4], progress=False) == 1          # resumes
    with pytest.raises(SystemExit) as e: aeft_crf(argv(seeds, root=root, out=tmp_path/'f32', dtype='uint8', processes=1, progress=False))
    assert "made with dtype='float32', not dtype='uint8' (" in str(e.value)   # the manifest of a float32 folder has no dtype: it reads as float32
