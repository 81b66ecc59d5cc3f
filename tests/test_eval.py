"Seed evaluation on disk: aeft_train on a VOC-format fixture, aeft_cam, aeft_eval; the JSON, the plot, the protocol line and the errors"
import json, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from aeft.voc import write_tiny_voc, voc_root, save_mask
from aeft.cam import save_seeds
from aeft.evaluate import aeft_eval, EvalStage, seed_sweep, evaluate_masks
from aeft.metrics import confusion, default_thresholds

pytestmark = pytest.mark.filterwarnings('ignore:VOC split')
BIN = Path(sys.executable).parent

def run(*args): return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True)

@pytest.fixture(scope='module')
def root(tmp_path_factory): return write_tiny_voc(tmp_path_factory.mktemp('eval')/'data', sbd='png')

def test_train_cam_eval_end_to_end(root, tmp_path):
    r = run('aeft_train', '--preset', 'voc', '--voc_root', root, '--out', tmp_path/'run', '--epochs', '2', '--warmup', '1', '--progress', 'False',
            '--opts', 'backbone=tiny width=8 image_size=64 batch_size=4 aeft_batch_size=8 freeze_bn=False device=cpu')
    assert r.returncode == 0, r.stderr
    assert all((tmp_path/'run'/f).stat().st_size > 0 for f in ('last.pt', 'log.jsonl', 'config.json', 'curves.png'))
    log = [json.loads(l) for l in (tmp_path/'run'/'log.jsonl').read_text().splitlines()]
    assert [r['phase'] for r in log if r['kind'] == 'epoch'] == ['warmup', 'aeft']
    assert len([r for r in log if r['kind'] == 'step']) == 16//4 + 16//8     # train_aug of the fixture: 16 images
    r = run('aeft_cam', '--root', root, '--split', 'train_aug', '--ckpt', tmp_path/'run'/'last.pt', '--out', tmp_path/'seeds',
            '--scales', '0.5,1.0', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    r = run('aeft_eval', tmp_path/'seeds', '--root', root, '--out', tmp_path/'eval', '--choose_on', 'train_aug-train',
            '--t_min', '0.05', '--t_max', '0.6', '--t_step', '0.05', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'eval'/'seed_eval.json').read_text())
    assert (res['chosen_on'], res['evaluated_on']) == ('train_aug-train', 'train')
    assert 'chosen on train_aug-train; reported on train' in r.stdout
    np.testing.assert_allclose(res['thresholds'], np.arange(1, 13)*0.05)
    assert set(res['curves']) == {'train', 'train_aug-train'} and len(res['iou']) == 21
    assert 0 <= res['miou'] <= 1 and res['threshold'] in res['thresholds']
    assert (tmp_path/'eval'/'miou_vs_threshold.png').is_file()
    assert len(list((tmp_path/'seeds').glob('*.npy'))) == 16

def test_perfect_seeds_score_one(root, tmp_path):
    voc = voc_root(root)
    ids = (voc/'ImageSets/Segmentation/train.txt').read_text().split()
    for id in ids:
        m = np.asarray(Image.open(voc/'SegmentationClass'/f'{id}.png'))
        save_seeds({int(k) - 1: (m == k).astype(np.float32) for k in np.unique(m) if 0 < k < 255}, tmp_path/f'{id}.npy')
    r = run('aeft_eval', tmp_path, '--root', root, '--out', tmp_path/'eval', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'eval'/'seed_eval.json').read_text())
    np.testing.assert_allclose(json.loads((tmp_path/'eval'/'seed_eval.json').read_text())['curves']['train'], 1.0)
    assert res['chosen_on'] == res['evaluated_on'] == 'train' and 'the split reported: optimistic' in r.stdout

def test_errors(root, tmp_path):
    r = run('aeft_eval', tmp_path/'none', '--root', root, '--out', tmp_path/'o')   # through the command once: one line, no traceback
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f'aeft_eval: seed folder {tmp_path/"none"} does not exist (write it with aeft_cam)'
    r = run('aeft_eval', tmp_path/'none', '--root', root, '--out', tmp_path/'o', '--debug')
    assert r.returncode == 1 and 'Traceback' in r.stderr and 'FileNotFoundError: seed folder' in r.stderr
    (tmp_path/'s').mkdir()
    def message(*args):
        with pytest.raises(SystemExit) as e: aeft_eval([str(tmp_path/'s'), '--root', str(root), '--out', str(tmp_path/'o'), '--progress', 'False', *map(str, args)])
        return str(e.value)
    assert f"no seed file for image '2026_000000' in {tmp_path/'s'}" in message()
    np.save(tmp_path/'s'/'2026_000000.npy', {20: np.zeros((2, 2), np.float32)})           # a 1-based class key: the file is named
    assert f"seed file {tmp_path/'s'/'2026_000000.npy'} has class keys [20]" in message()
    assert "split 'test' must be one of" in message('--split', 'test')
    assert 'need t_min <= t_max' in message('--t_min', 0.5, '--t_max', 0.1)
    assert message('--t_min', 'low') == "aeft_eval: --t_min must be a number, got 'low'"

def test_old_spelling_and_summary(root, tmp_path, capsys):
    "--voc_root, the old spelling of --root, still works and says so; the command returns run()'s summary"
    voc = voc_root(root)
    for id in (voc/'ImageSets/Segmentation/train.txt').read_text().split():
        m = np.asarray(Image.open(voc/'SegmentationClass'/f'{id}.png'))
        save_seeds({int(k) - 1: (m == k).astype(np.float32) for k in np.unique(m) if 0 < k < 255}, tmp_path/f'{id}.npy')
    summary = aeft_eval([str(tmp_path), '--voc_root', str(root), '--out', str(tmp_path/'eval'), '--progress', 'False'])
    out, err = capsys.readouterr()
    assert err.splitlines() == ['aeft_eval: --voc_root is now --root'] and out.splitlines()[-1].startswith('aeft_eval: swept 80 thresholds')
    res = json.loads((tmp_path/'eval'/'seed_eval.json').read_text())
    assert {k: summary[k] for k in ('out', 'images', 'miou', 'threshold', 'chosen_on', 'evaluated_on')} == \
           dict(out=str(tmp_path/'eval'), images=8, miou=1.0, threshold=res['threshold'], chosen_on='train', evaluated_on='train')
    assert res['images'] == 8 and summary['seconds'] == res['seconds']

def train_masks(root):
    voc = voc_root(root)
    ids = (voc/'ImageSets/Segmentation/train.txt').read_text().split()
    return {id: np.asarray(Image.open(voc/'SegmentationClass'/f'{id}.png')) for id in ids}

@pytest.mark.parametrize('kind', ['k/255', 'float16'])
def test_seed_files_with_ties_match_argmax_over_threshold_and_maps(root, tmp_path, kind):
    "Seeds quantised to k/255 (float32) or stored in float16: the sweep's matrices at all 80 thresholds = argmax(cat([full(t), maps])) in float32"
    rng, thr = np.random.default_rng(0), default_thresholds()
    ref, ties = torch.zeros(len(thr), 21, 21, dtype=torch.long), 0
    for id, m in train_masks(root).items():
        classes = sorted({int(k) - 1 for k in np.unique(m) if 0 < k < 255} | {int(rng.integers(20))})
        if kind == 'k/255': maps = rng.integers(0, 256, (len(classes), *m.shape)).astype(np.float32)/np.float32(255)
        else: maps = (rng.integers(0, 82, (len(classes), *m.shape))/100).astype(np.float16)      # values on the threshold grid, rounded
        save_seeds(dict(zip(classes, maps)), tmp_path/f'{id}.npy')
        maps, gt = torch.from_numpy(maps), torch.from_numpy(m.astype(np.int64))
        for j, t in enumerate(thr.tolist()):
            i = torch.cat([torch.full((1, *gt.shape), t, dtype=torch.float32), maps.float()]).argmax(0)   # argmax over [t, maps]
            ref[j] += confusion(torch.tensor([0] + [c + 1 for c in classes])[i], gt, 21)
            ties += int((maps.float().amax(0) == torch.tensor(t, dtype=torch.float32)).sum())
    assert ties > 0                                  # pixels equal to a threshold occur
    assert torch.equal(seed_sweep(tmp_path, root, 'train', progress=False).cms, ref)

def test_best_in_the_released_range(root, tmp_path):
    "Seeds 0.9 on each GT object and 0.05 elsewhere: a pixel at 0.05 is not above t = 0.05, so every t from 0.05 to 0.80 is perfect"
    for id, m in train_masks(root).items():
        save_seeds({int(k) - 1: np.where(m == k, 0.9, 0.05).astype(np.float32) for k in np.unique(m) if 0 < k < 255}, tmp_path/f'{id}.npy')
    r = run('aeft_eval', tmp_path, '--root', root, '--out', tmp_path/'eval', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'eval'/'seed_eval.json').read_text())
    curve = np.array(res['curves']['train'])
    assert (curve[:4] < 1).all() and np.allclose(curve[4:], 1.0)      # 0.01-0.04: the 0.05 background is foreground
    assert (res['threshold'], res['miou']) == (0.05, 1.0)
    assert res['released_range'] == [0.1, 0.34] and res['released_range_swept'] == 25
    assert (res['released_range_threshold'], res['released_range_miou']) == (0.1, 1.0)
    assert 'best on train in the released evaluation.py range 0.10–0.34: 0.10 → 100.0 (25 thresholds swept there)' in r.stdout

def released_counts(preds, gts, num_cls=21):
    "Per class TP, predicted and true pixel counts over pixels whose truth is not 255, and IoU = TP/(T + P - TP), as the released evaluation.py counts them"
    tp, p, t = np.zeros(num_cls), np.zeros(num_cls), np.zeros(num_cls)
    for pred, gt in zip(preds, gts):
        cal = gt < 255
        for i in range(num_cls):
            p[i] += ((pred == i) & cal).sum(); t[i] += ((gt == i) & cal).sum(); tp[i] += ((gt == i) & (pred == i) & cal).sum()
    return tp, p, t

def test_evaluate_masks_against_an_independent_count(root, tmp_path):
    "Random label masks (PNG) and CRF outputs (their argmax) on the fixture's train images: IoU, precision, recall and mIoU from plain per-class counts"
    rng, masks = np.random.default_rng(3), train_masks(root)
    (tmp_path/'png').mkdir(); (tmp_path/'crf').mkdir()
    preds, gts = [], []
    for id, gt in masks.items():
        labels = np.array([0, 3, 5, 12])                                   # 12 never occurs in the truth; most truth classes never predicted
        pred = labels[rng.integers(0, 4, gt.shape)]
        save_mask(pred, tmp_path/'png'/f'{id}.png')
        maps = {int(k): rng.random(gt.shape).astype(np.float32)*0.5 for k in labels}
        for k in labels: maps[int(k)][pred == k] += 0.5                      # the argmax of the maps is `pred`
        np.save(tmp_path/'crf'/f'{id}.npy', maps)
        preds.append(pred); gts.append(gt)
    assert any((g == 255).any() for g in gts)
    tp, p, t = released_counts(preds, gts)
    present = (p + t) > 0
    for folder, kind in (('png', 'label masks'), ('crf', 'CRF outputs (argmax)')):
        res = evaluate_masks(tmp_path/folder, root, progress=False)
        assert (res['kind'], res['evaluated_on'], res['images']) == (kind, 'train', len(masks))
        iou = [tp[i]/(t[i] + p[i] - tp[i]) if present[i] else None for i in range(21)]
        assert [r is None for r in res['iou']] == [i is None for i in iou]
        np.testing.assert_allclose([r for r in res['iou'] if r is not None], [i for i in iou if i is not None], rtol=1e-12)
        np.testing.assert_allclose(res['miou'], np.mean([i for i in iou if i is not None]), rtol=1e-12)
        np.testing.assert_allclose([res['precision'][i] for i in (0, 3, 5, 12)], [tp[i]/p[i] for i in (0, 3, 5, 12)], rtol=1e-12)
        assert res['recall'][12] is None and res['iou'][12] == 0.0           # predicted, never true
        assert res['pixels'] == int(t.sum()) and np.array(res['confusion']).sum() == int(t.sum())

def test_masks_through_the_command(root, tmp_path):
    (tmp_path/'m').mkdir()
    for id, gt in train_masks(root).items(): save_mask(np.where(gt == 255, 0, gt), tmp_path/'m'/f'{id}.png')
    r = run('aeft_eval', '--masks', tmp_path/'m', '--root', root, '--out', tmp_path/'eval', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'eval'/'mask_eval.json').read_text())
    assert res['miou'] == 1.0 and res['evaluated_on'] == 'train' and 'label masks in' in r.stdout and 'images of train' in r.stdout
    assert not (tmp_path/'eval'/'seed_eval.json').exists()
    def message(*args):
        with pytest.raises(SystemExit) as e: aeft_eval(['--root', str(root), '--out', str(tmp_path/'o'), '--progress', 'False', *map(str, args)])
        return str(e.value)
    assert message() == 'aeft_eval: give exactly one of a seed folder (the positional argument or --seeds) and --masks'
    assert message(tmp_path/'m', '--masks', tmp_path/'m').startswith('aeft_eval: give exactly one of')
    assert 'masks have none' in message('--masks', tmp_path/'m', '--choose_on', 'train_aug-train')
    assert f"aeft_eval: no mask for image" in message('--masks', tmp_path/'m', '--split', 'val')
    assert f"aeft_eval: mask folder {tmp_path/'x'} does not exist" == message('--masks', tmp_path/'x')
