"MS-COCO 2014 (aeft.coco): labels and masks of a hand-made COCO-format fixture checked by hand, the caches (outside the data, resumed after SIGKILL), aeft_train/aeft_cam/aeft_eval with --data coco end to end, and the errors a user meets"
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from aeft.coco import (write_tiny_coco, read_instances, annotation_file, semantic_mask, coco_index, coco_split, coco_masks, mask_folder,
                       coco_ground_truth, COCODataset, COCO_NAMES)
from aeft.cam import aeft_cam, load_seeds
from aeft.evaluate import aeft_eval
from aeft.config import build_model, make_config
import torch
from dataclasses import asdict

pytestmark = [pytest.mark.filterwarnings('ignore:COCO split'),
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")]   # pycocotools under NumPy 2
BIN = Path(sys.executable).parent
ID = 'COCO_train2014_{:012d}'.format

def run(*args, env=None):
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env=env)

@pytest.fixture(scope='module')
def coco(coco_data): return coco_data[0]

def test_masks_and_labels_by_hand(coco):
    train, val = (read_instances(annotation_file(coco, s)) for s in ('train', 'val'))
    m = np.zeros((13, 19), np.uint8)
    m[1:8, 2:9] = 1                      # person (category 1 -> label 1), a polygon
    m[5:11, 6:14] = 17                   # dog (category 18 -> class 16 -> label 17), an RLE listed after it: covers it
    assert (semantic_mask(train, 1) == m).all()                        # the crowd person (rows 9-12, columns 0-4) stays 0
    assert not semantic_mask(train, 2).any() and not semantic_mask(train, 3).any()   # crowd only; no annotation
    m = np.zeros((12, 15), np.uint8); m[1:5, 1:5] = 12; m[6:11, 9:14] = 12            # stop sign (13 -> 11 -> 12), two polygons
    assert (semantic_mask(train, 4) == m).all()
    m = np.zeros((9, 16), np.uint8); m[:, :10] = 17; m[2:7, 5:13] = 1                # val: the dog, then the person over it
    assert (semantic_mask(val, 101) == m).all()
    idx = coco_index(coco, 'train', progress=False)
    assert [idx[ID(i)]['labels'] for i in (1, 2, 3, 4)] == [[0, 16], [79], [], [11]]   # the crowd toothbrush is a label
    ids = coco_split(coco, 'train', verbose=False)
    assert len(ids) == 13 and ID(3) not in ids and ids == sorted(ids)
    assert coco_split(coco, 'val', verbose=False)[0] == 'COCO_val2014_000000000101' and len(coco_split(coco, 'val', verbose=False)) == 6
    gt, names = coco_ground_truth(coco, 'train', progress=False)
    assert names == COCO_NAMES and len(names) == 81
    for i in ids: assert (gt(i) == semantic_mask(train, idx[i]['image_id'])).all()
    with pytest.warns(UserWarning, match="has 6 images with annotations, the paper's 40,137"): coco_split(coco, 'val', verbose=False)

def test_caches_outside_the_data_and_resumed_after_sigkill(coco, tmp_path, monkeypatch):
    monkeypatch.setenv('AEFT_CACHE', str(tmp_path/'cache'))
    listing = lambda d: sorted((str(p.relative_to(d)), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(d).rglob('*'))
    before = listing(coco)
    slow = ("import time, aeft.coco as c; w = c._write_png\n"
            "def slow(m, p): time.sleep(0.4); w(m, p)\n"
            f"c._write_png = slow; c.coco_masks({str(coco)!r}, 'train', progress=False)")
    p = subprocess.Popen([sys.executable, '-c', slow], env=os.environ.copy())
    folder, t0 = mask_folder(coco, 'train'), time.time()
    while len(list(folder.glob('*.png'))) < 3 and p.poll() is None and time.time() - t0 < 120: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = sorted(folder.glob('*.png'))
    assert 3 <= len(done) < 13, len(done)
    train, idx = read_instances(annotation_file(coco, 'train')), coco_index(coco, 'train', progress=False)
    for f in done: assert (np.array(Image.open(f)) == semantic_mask(train, idx[f.stem]['image_id'])).all()   # whole files only
    coco_masks(coco, 'train', progress=False)                                                               # resumed
    assert len(list(folder.glob('*.png'))) == 13
    for i in coco_split(coco, 'train', verbose=False):
        assert (np.array(Image.open(folder/f'{i}.png')) == semantic_mask(train, idx[i]['image_id'])).all()
    assert listing(coco) == before and folder.parent == tmp_path/'cache'                                    # the data folder is only read

def test_commands_end_to_end(coco, tmp_path):
    small = '--backbone tiny --width 8 --image_size 64 --batch_size 4 --aeft_batch_size 8 --freeze_bn False --device cpu'.split()
    r = run('aeft_train', '--data', 'coco', '--root', coco, '--out', tmp_path/'run', '--epochs', 2, '--warmup', 1, *small, '--progress', 'False')
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path/'run'/'config.json').read_text())
    assert (cfg['data'], cfg['num_classes'], cfg['labels']) == ('coco', 80, 'annotations')
    env = dict(os.environ, AEFT_COCO_ROOT=str(coco))                                 # the root from the environment variable
    r = run('aeft_cam', '--data', 'coco', '--ckpt', tmp_path/'run'/'last.pt', '--out', tmp_path/'seeds', '--scales', '1.0,0.5', '--progress', 'False', env=env)
    assert r.returncode == 0, r.stderr
    assert 'aeft_cam: 13 seed files written' in r.stdout
    ds = COCODataset(coco, 'train')
    for i, id in enumerate(ds.ids):
        sd = load_seeds(tmp_path/'seeds'/f'{id}.npy', 80)
        assert sorted(sd) == ds.labels[id] and all(v.shape == (ds.index[id]['height'], ds.index[id]['width']) for v in sd.values())
    r = run('aeft_eval', tmp_path/'seeds', '--data', 'coco', '--root', coco, '--out', tmp_path/'eval', '--progress', 'False')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'eval'/'seed_eval.json').read_text())
    assert (res['evaluated_on'], res['classes'][1], len(res['classes']), len(res['iou'])) == ('train', 'person', 81, 81)
    assert 0 <= res['miou'] <= 1 and (tmp_path/'eval'/'miou_vs_threshold.png').is_file()

def test_errors(coco, tmp_path):
    cfg = make_config('coco', backbone='tiny', width=4, opts='device=cpu')
    torch.save(dict(model=build_model(cfg).state_dict(), config=asdict(cfg)), tmp_path/'coco.pt')
    def message(*args):
        with pytest.raises(SystemExit) as e: aeft_cam(['--out', str(tmp_path/'o'), '--data', 'coco', '--ckpt', str(tmp_path/'coco.pt'), '--progress', 'False', *map(str, args)])
        return str(e.value)
    broken = tmp_path/'broken'
    write_tiny_coco(broken, n_random=(2, 1))
    (broken/'annotations'/'instances_val2014.json').unlink()                         # a missing annotation file
    with pytest.raises(FileNotFoundError, match='annotation file not found: .*instances_val2014.json'): COCODataset(broken, 'val')
    (broken/'train2014'/f'{ID(4)}.jpg').unlink()                                     # an image listed but absent
    with pytest.raises(FileNotFoundError, match=f"image '{ID(4)}' listed in .*instances_train2014.json has no file .*{ID(4)}.jpg"): COCODataset(broken, 'train')
    f = broken/'annotations'/'instances_train2014.json'
    d = json.loads(f.read_text()); d['annotations'][1]['category_id'] = 91; f.write_text(json.dumps(d, indent=0))   # a category outside the 80
    with pytest.raises(ValueError, match="1 malformed annotation found \\(annotation 2 of image 1 with category_id 91; expected one of COCO.s 80 object categories"):
        coco_index(broken, 'train', progress=False, strict=True)
    with pytest.warns(UserWarning, match="1 malformed annotation skipped \\(annotation 2 of image 1 with category_id 91"):
        assert coco_index(broken, 'train', progress=False)[ID(1)]['annotations'] == 2   # skipped without --strict
    assert 'COCO root not found' in message('--root', tmp_path/'nowhere')
    assert message('--root', broken, '--split', 'val').startswith(f"aeft_cam: annotation file not found: {broken/'annotations'/'instances_val2014.json'}")
    r = run('aeft_eval', tmp_path, '--data', 'coco', '--coco_root', broken, '--out', tmp_path/'e', '--progress', 'False', '--strict')   # through a command, by the old spelling of --root
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines[0] == 'aeft_eval: --coco_root is now --root' and lines[-1].startswith('aeft_eval: annotation file ') and 'category_id 91' in lines[-1]
    with pytest.raises(SystemExit, match="aeft_eval: --data must be one of voc, coco, shapes, folder, cocofile, got 'city'"): aeft_eval([str(tmp_path), '--data', 'city'])
    with pytest.raises(SystemExit, match="aeft_eval: --data must be 'voc', 'coco', 'folder' or 'cocofile', got 'shapes'"): aeft_eval([str(tmp_path), '--data', 'shapes'])
    d['annotations'][1]['category_id'] = 18; d['annotations'][0]['segmentation'] = [[1, 1, 5, 5, 3, float('nan')]]   # a polygon pycocotools would crash on
    f.write_text(json.dumps(d))
    r = run('aeft_cam', '--data', 'coco', '--root', broken, '--ckpt', tmp_path/'coco.pt', '--out', tmp_path/'s', '--progress', 'False', '--strict')
    assert r.returncode == 1 and r.stderr.startswith(f'aeft_cam: annotation file {f}: 1 malformed annotation found (annotation 1 of image 1 with a polygon whose point (3, nan) is not finite')
    assert message('--root', f).startswith(f'aeft_cam: COCO root {f} is a file, not a folder')
    r = run('aeft_train', '--data', 'coco', '--root', coco, '--out', coco/'runs', '--backbone', 'tiny', '--width', '4', '--device', 'cpu', '--progress', 'False')
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (1, f"aeft_train: --out {coco/'runs'} is inside the data folder {coco}; write the outputs elsewhere")
    assert not (coco/'runs').exists()
    with pytest.raises(SystemExit, match=f"aeft_cam: --out {coco/'train2014'} is inside the data folder {coco}"):
        aeft_cam(['--out', str(coco/'train2014'), '--data', 'coco', '--root', str(coco), '--ckpt', str(tmp_path/'coco.pt'), '--progress', 'False'])
