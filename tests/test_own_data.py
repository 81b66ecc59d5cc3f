"Your own data through aeft_run: a folder dataset, a binary (K = 1) one and a COCO-format export with its own categories, each scored against its masks as a count by hand; every error of the two formats through a command"
import json, warnings
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from aeft.data import write_folder, write_cocofile, ground_truth
from aeft.pipeline import named_recipe, dump_recipe, aeft_run
from aeft.evaluate import aeft_eval
from aeft.cam import aeft_cam

def _items(names, n=8, size=48, seed=0):
    "n hand-made images of `size`: grey noise with up to two rectangles of a class colour each, and their masks"
    rng, out = np.random.default_rng(seed), []
    for i in range(n):
        img, m = rng.normal(110, 10, (size, size, 3)), np.zeros((size, size), np.uint8)
        for k in sorted({(i + j) % len(names) for j in range(1 + i % 2)}) if i % 4 else []:
            y, x = rng.integers(0, size//2, 2)
            m[y:y + size//2, x:x + size//2] = k + 1
            img[y:y + size//2, x:x + size//2] = (60 + 150*(k == 0), 60 + 150*(k == 1), 60 + 150*(k == 2))
        out.append((f'img {i}', Image.fromarray(img.clip(0, 255).astype(np.uint8)), m))
    return out

def _recipe(data, root, predict_split):
    r = named_recipe('voc')
    r.update(recipe='own', data=data, root=str(root))
    r['train'] = dict(backbone='tiny', width=8, image_size=48, epochs=2, warmup=1, batch_size=4, aeft_batch_size=4, device='cpu', select_on='none',
                      lr=0.05, optimizer='corrected', freeze_bn=False)
    r['cam'] = dict(split='train', scales=(1.0,), flip=False, device='cpu')
    r['crf'] = dict(processes=1)
    r['affinity'] = dict(backbone='tiny', width=8, crop=48, epochs=1, batch_size=4, device='cpu', optimizer='corrected', freeze_bn=False)
    r['pseudo'] = dict(device='cpu', processes=1)
    r['segment'] = dict(backbone='tiny', width=8, crop_size=48, iterations=2, batch_size=4, device='cpu', new_head=False, lr=0.01)
    r['predict'] = dict(split=predict_split, scales=(1.0,), device='cpu')
    return r

def _miou(pairs, n):
    "mIoU over the labels 0..n-1 that occur in a prediction or a mask, pixels of 255 in the mask left out, counted with numpy"
    inter, union = np.zeros(n), np.zeros(n)
    for pred, gt in pairs:
        keep = gt != 255
        for c in range(n):
            inter[c] += ((pred == c) & (gt == c) & keep).sum(); union[c] += (((pred == c) | (gt == c)) & keep).sum()
    return (inter[union > 0]/union[union > 0]).mean()

def _run(tmp_path, data, root, split):
    (tmp_path/'r.toml').write_text(dump_recipe(_recipe(data, root, split)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return {r['stage']: r for r in aeft_run([str(tmp_path/'r.toml'), '--out', str(tmp_path/'run'), '--progress', 'False'])}

def _check_scores(rows, tmp_path, masks, split, n, names):
    pred = tmp_path/'run'/'predict'/split
    pairs = [(np.array(Image.open(pred/f'{id}.png')), m) for id, m in masks.items()]
    assert rows['predict']['scores'] == {f'{split}_miou': round(100*_miou(pairs, n), 2)}
    if rows['cam']['scores']: assert {'seed_miou', 'seed_threshold'} <= set(rows['cam']['scores']) and 'pseudo_miou' in rows['pseudo']['scores']
    for stage in ('train', 'segment'): assert json.loads((tmp_path/'run'/stage/'config.json').read_text())['classes'] == list(names)

@pytest.mark.parametrize('names', [('red thing', 'green thing', 'blue thing'), ('object',)], ids=['K3', 'K1'])
def test_folder_end_to_end(tmp_path, names):
    items = _items(names)
    split = lambda i: 'val' if i >= 6 else 'train'
    binary = len(names) == 1   # K = 1: masks of the val images only, so the stages before predict have none to be scored on
    labels = lambda m: sorted({int(k) - 1 for k in np.unique(m) if k})
    root = write_folder(tmp_path/'own', names, [(id, split(i), img, labels(m), None if binary and split(i) == 'train' else m) for i, (id, img, m) in enumerate(items)])
    rows = _run(tmp_path, 'folder', root, 'val')
    assert rows['train']['images'] == 6 and rows['predict']['images'] == 2
    if binary: assert [rows[s]['scores'] for s in ('cam', 'crf', 'pseudo')] == [{}, {}, {}]
    _check_scores(rows, tmp_path, {id: m for i, (id, _, m) in enumerate(items) if split(i) == 'val'}, 'val', len(names) + 1, names)
    other = write_folder(tmp_path/'other', ('cow', 'horse'), [(id, 'train', img, None, (m > 0).astype(np.uint8)) for id, img, m in items])
    with pytest.raises(SystemExit) as e:
        aeft_cam(['--data', 'folder', '--root', str(other), '--ckpt', str(tmp_path/'run'/'train'/'last.pt'), '--out', str(tmp_path/'s2'), '--progress', 'False'])
    assert f"holds a network of the classes {', '.join(names)}, but the data in {other} has the classes cow, horse" in str(e.value.code)

def test_cocofile_end_to_end(tmp_path):
    names = ('apple', 'pear')
    items = _items(names, n=6)
    root = write_cocofile(tmp_path/'export', names, [(id, img, m, None) for id, img, m in items], first_id=40)
    rows = _run(tmp_path, 'cocofile', root, 'train')
    from aeft.data import ground_truth
    truth = ground_truth('cocofile', str(root))
    assert truth.names == ('background', 'apple', 'pear')
    _check_scores(rows, tmp_path, {id: truth.mask(id) for id, _, _ in items}, 'train', 3, names)

def _error(tmp_path, root, data='folder', ids=None):
    "The one-line error of aeft_eval on the data `root`"
    (tmp_path/'seeds').mkdir(exist_ok=True)
    with pytest.raises(SystemExit) as e: aeft_eval([str(tmp_path/'seeds'), '--data', data, '--root', str(root), '--progress', 'False', '--out', str(tmp_path/'eval'),
                                                    *(['--ids', str(ids)] if ids else [])])
    return e.value

def _folder(tmp_path, classes='cat\ndog\n', labels='id,split,labels\na b,train,cat|dog\nc,val,\n', masks=None):
    root = tmp_path/'own'; (root/'images').mkdir(parents=True, exist_ok=True); (root/'masks').mkdir(exist_ok=True)
    (root/'classes.txt').write_text(classes); (root/'labels.csv').write_text(labels)
    for id in ('a b', 'c'): Image.new('RGB', (8, 6)).save(root/'images'/f'{id}.jpg')
    for id, m in (masks or {}).items(): Image.fromarray(m).save(root/'masks'/f'{id}.png')
    return root

def test_mask_of_a_turned_photo_names_the_exif_orientation(tmp_path):
    "A phone photo stored sideways with EXIF orientation 6 and its mask drawn on the upright view: the size refusal suggests the rotation"
    root = _folder(tmp_path, masks={'a b': np.zeros((8, 6), np.uint8)})
    exif = Image.Exif(); exif[0x0112] = 6
    Image.new('RGB', (8, 6)).save(root/'images'/'a b.jpg', exif=exif)
    err = _fails(tmp_path, root, {'a b': np.zeros((8, 6), np.uint8)})
    assert "is 6×8 but its image is 8×6" in err and "carries the EXIF orientation 6, turned by 90°" in err

def test_folder_errors_through_aeft_eval(tmp_path):
    cases = [(dict(labels='id,split,labels\na b,train,cat|cow\n'), "labels.csv line 2 labels image 'a b' 'cow', a class"),
             (dict(labels='id,split,labels\na b,train,cat\nc,val,\na b,val,dog\n'), "labels.csv line 4 repeats the id 'a b' of line 2"),
             (dict(labels='id,split,labels\na b,train,cat\nd,train,dog\n'), "labels.csv line 3 lists image 'd', which has no file"),
             (dict(classes='cat\n\ndog\n'), "classes.txt line 2 is blank"),
             (dict(classes='cat\ndog\ncat\n'), "classes.txt line 3 repeats the class 'cat' of line 1"),
             (dict(masks={'a b': np.full((6, 8), 3, np.uint8)}), "holds the values [3], above the 2 classes"),
             (dict(masks={'a b': np.zeros((5, 8), np.uint8)}), "is 8×5 but its image is 8×6")]
    for i, (kw, message) in enumerate(cases):
        t = tmp_path/str(i); t.mkdir()
        root = _folder(t, **kw)
        np.save(t/'seeds'/'a b.npy', {0: np.zeros((6, 8), np.float32)}) if (t/'seeds').mkdir() is None else None
        (t/'ids.txt').write_text('a b\n')
        with pytest.raises(SystemExit) as e:
            aeft_eval([str(t/'seeds'), '--data', 'folder', '--root', str(root), '--ids', str(t/'ids.txt'), '--progress', 'False', '--out', str(t/'eval')])
        err = str(e.value.code)   # the one line the command exits with (status 1)
        assert err.startswith('aeft_eval: ') and '\n' not in err and message in err, (message, err)
        assert str(root) in err

def test_unreadable_image_empty_split_and_unseen_class(tmp_path):
    root = _folder(tmp_path)
    (root/'images'/'c.jpg').write_bytes(b'not an image')
    with pytest.raises(SystemExit) as e: aeft_eval([str(tmp_path), '--data', 'folder', '--root', str(root), '--progress', 'False', '--out', str(tmp_path/'e')])
    err = str(e.value.code)
    assert 'cannot read image' in err and 'c.jpg' in err and 'labels.csv line 3' in err
    root = _folder(tmp_path/'x', labels='id,split,labels\na b,train,cat\nc,val,\n')
    with pytest.warns(UserWarning, match=r"1 of the 2 classes have no training image \(split train\): dog"):
        with pytest.raises(SystemExit) as e: aeft_eval([str(tmp_path), '--data', 'folder', '--root', str(root), '--split', 'test', '--progress', 'False', '--out', str(tmp_path/'e')])
    err = str(e.value.code)
    assert "labels.csv lists no image of split 'test'; its splits: train (1 images), val (1 images)" in err
    root = _folder(tmp_path/'y', classes='object\n', labels='id,split,labels\na b,train,object\nc,val,\n')   # one class on every training image
    with pytest.warns(UserWarning, match=r"every one of the 1 training images \(split train\) is labelled with object; .* background-only images"):
        ground_truth('folder', str(root))

def test_cocofile_errors(tmp_path):
    root = write_cocofile(tmp_path/'export', ('a', 'b'), [('x', Image.new('RGB', (8, 6)), None, [0, 1])])
    ann = root/'annotations'/'instances_default.json'; d = json.loads(ann.read_text())
    assert ground_truth_of(root).has_mask('x') is False   # boxes only: labels, no mask
    d['annotations'][0]['category_id'] = 99; ann.write_text(json.dumps(d))
    with pytest.raises(SystemExit) as e: aeft_eval([str(tmp_path), '--data', 'cocofile', '--root', str(root), '--progress', 'False', '--out', str(tmp_path/'e')])
    err = str(e.value.code)
    assert str(ann) in err and 'with category 99, which it does not list' in err

def ground_truth_of(root):
    from aeft.data import ground_truth
    return ground_truth('cocofile', str(root))

def test_many_classes_masks_round_trip(tmp_path):
    "K = 120: a prediction PNG in VOC's palette (256 colours) holds labels above COCO's 80 and reads back; a label above K is refused"
    from aeft.artefacts import save_mask, read_prediction
    m = np.arange(121, dtype=np.uint8).reshape(11, 11)
    save_mask(m, tmp_path/'p.png')
    assert (read_prediction(tmp_path/'p.png', 121) == m).all()
    with pytest.raises(ValueError, match='has values up to 120; expected a palette or 8-bit PNG of the labels 0-119'): read_prediction(tmp_path/'p.png', 120)

def test_ids_not_in_the_data(tmp_path):
    "An --ids file naming an image the data does not list: one line naming the file it is missing from"
    root = _folder(tmp_path); (tmp_path/'seeds').mkdir(); (tmp_path/'ids.txt').write_text('a\n')
    with pytest.raises(SystemExit) as e:
        aeft_eval([str(tmp_path/'seeds'), '--data', 'folder', '--root', str(root), '--ids', str(tmp_path/'ids.txt'), '--progress', 'False', '--out', str(tmp_path/'e')])
    assert f"image 'a' is not listed in {root/'labels.csv'}" in str(e.value.code)
    export = write_cocofile(tmp_path/'export', ('a',), [('x', Image.new('RGB', (8, 6)), np.ones((6, 8), np.uint8), None)])
    with pytest.raises(SystemExit) as e:
        aeft_eval([str(tmp_path/'seeds'), '--data', 'cocofile', '--root', str(export), '--ids', str(tmp_path/'ids.txt'), '--progress', 'False', '--out', str(tmp_path/'e')])
    assert "image 'a' is not listed in" in str(e.value.code) and 'instances_default.json' in str(e.value.code)

def _score(tmp_path, root, masks, data='folder', ids=None, extra=()):
    "aeft_eval's mIoU of the prediction PNGs `masks` ({id: mask}) against the data `root` (the ids of `masks`, or the file `ids`)"
    from aeft.artefacts import save_mask
    pred = tmp_path/'pred'; pred.mkdir(exist_ok=True)
    for id, m in masks.items(): save_mask(m, pred/f'{id}.png')
    if ids is None: ids = tmp_path/'ids.txt'; ids.write_text(''.join(f'{id}\n' for id in masks))
    return aeft_eval(['--masks', str(pred), '--data', data, '--root', str(root), '--ids', str(ids), '--progress', 'False', '--out', str(tmp_path/'eval'), *extra])['miou']

def _fails(tmp_path, root, masks, data='folder', ids=None, extra=(), one_line=True):
    "The error aeft_eval exits with on the data `root`: one line unless it shows the expected layout"
    with pytest.raises(SystemExit) as e: _score(tmp_path, root, masks, data, ids, extra)
    err = str(e.value.code); assert err.startswith('aeft_eval: ') and ('\n' not in err or not one_line), err
    return err

def test_binary_masks_mask_suffix_and_unused_files(tmp_path):
    "A 0/255 mask of a labelled image is refused naming the file; a 1-bit mask (saved as .PNG) reads as 0/1 and scores 1 against itself; other files in masks/ are named once"
    m = np.zeros((6, 8), np.uint8); m[1:4, 2:6] = 1
    root = _folder(tmp_path/'k2', masks={'a b': m*255})
    err = _fails(tmp_path/'k2', root, {'a b': m})
    assert str(root/'masks'/'a b.png') in err and 'looks like a 0/255 binary mask: object pixels must hold the class index (1 for the first class)' in err
    root = _folder(tmp_path/'k1', classes='object\n', labels='id,split,labels\na b,train,object\nc,val,\n')
    Image.fromarray(m.astype(bool)).save(root/'masks'/'a b.PNG')
    Image.new('L', (8, 6)).save(root/'masks'/'x.jpg'); Image.new('L', (8, 6)).save(root/'masks'/'zz.png')
    with pytest.warns(UserWarning, match=r"masks: 2 files not used, neither a PNG nor named after an id of labels.csv \(x.jpg, zz.png\)"):
        assert _score(tmp_path/'k1', root, {'a b': m}) == 1
    assert _score(tmp_path/'k1', root, {'a b': m*0}) < 1   # the class pixels of the 1-bit mask count

def test_utf8_bom_and_other_encodings(tmp_path):
    "classes.txt, labels.csv and --ids saved with a byte-order mark are read; Latin-1 and UTF-16 files are refused naming the file"
    m = np.zeros((6, 8), np.uint8); m[1:4, 2:6] = 2
    root = _folder(tmp_path, masks={'a b': m})
    bom = lambda p, text, enc='utf-8-sig': p.write_bytes(text.encode(enc))
    bom(root/'classes.txt', 'café\ndog\n'); bom(root/'labels.csv', 'id,split,labels\r\na b,train,dog\r\nc,val,\r\n'); bom(tmp_path/'ids.txt', 'a b\r\n')
    assert _score(tmp_path, root, {'a b': m}, ids=tmp_path/'ids.txt') == 1
    bom(tmp_path/'ids.txt', 'a b\n', 'latin-1'); bom(tmp_path/'l1.txt', 'é\n', 'latin-1')
    assert f"{tmp_path/'l1.txt'} is not UTF-8 text (byte 0xe9 at position 0); save it as UTF-8" in _fails(tmp_path, root, {'a b': m}, ids=tmp_path/'l1.txt')
    bom(root/'classes.txt', 'café\ndog\n', 'latin-1')
    assert f"{root/'classes.txt'} is not UTF-8 text (byte 0xe9 at position 3); save it as UTF-8" in _fails(tmp_path, root, {'a b': m}, ids=tmp_path/'ids.txt')
    bom(root/'classes.txt', 'cat\ndog\n'); bom(root/'labels.csv', 'id,split,labels\na b,train,dog\n', 'utf-16')
    assert f"{root/'labels.csv'} is not UTF-8 text" in _fails(tmp_path, root, {'a b': m}, ids=tmp_path/'ids.txt')

def test_cocofile_crowd_malformed_polygons_and_two_files(tmp_path):
    "CVAT's export: RLE masks marked crowd are drawn, the keypoint file beside instances_default.json left aside, polygons of < 3 points skipped with a count or refused with --strict"
    m = np.zeros((6, 8), np.uint8); m[1:4, 2:6] = 1
    root = write_cocofile(tmp_path/'export', ('a',), [('x', Image.new('RGB', (8, 6)), m, None)])
    ann = root/'annotations'/'instances_default.json'; d = json.loads(ann.read_text())
    d['annotations'][0]['iscrowd'] = 1
    ann.write_text(json.dumps(d)); (root/'annotations'/'person_keypoints_default.json').write_text(json.dumps(dict(d, annotations=[])))
    assert _score(tmp_path, root, {'x': m}, 'cocofile') == 1
    d['annotations'] += [dict(id=7, image_id=1, category_id=1, iscrowd=0, segmentation=[[1, 1, 3, 3]], bbox=[1, 1, 2, 2]),
                         dict(id=8, image_id=1, category_id=1, iscrowd=0, segmentation=[[]], bbox=[1, 1, 2, 2])]
    ann.write_text(json.dumps(d))
    with pytest.warns(UserWarning, match=r"instances_default.json: 2 malformed annotations skipped \(annotation 7 of image 1 without a segmentation .*; annotation 8 of image 1"):
        assert _score(tmp_path, root, {'x': m}, 'cocofile') == 1
    err = _fails(tmp_path, root, {'x': m}, 'cocofile', extra=['--strict', 'True'])
    assert f"annotation file {ann} has annotation 7 of image 1 without a segmentation (a list of polygons of at least 3 points" in err
    (root/'annotations'/'instances_old.json').write_text('{}')
    assert "holds 3 .json files (instances_default.json, instances_old.json, person_keypoints_default.json); expected one annotation file" in _fails(tmp_path, root, {'x': m}, 'cocofile', one_line=False)
def test_select_on_a_split_without_masks(tmp_path):
    "--select_on val on data whose val images have no mask: refused before any training, naming the option and the split (aeft_train), and before the first walk (aeft_affinity)"
    from aeft.train import aeft_train
    from aeft.affinity import AffinityStage, AffinityConfig
    root = _folder(tmp_path, masks={'a b': np.zeros((6, 8), np.uint8)})   # a mask for the train image only
    with pytest.raises(SystemExit) as e:
        aeft_train(['--data', 'folder', '--root', str(root), '--select_on', 'val', '--backbone', 'tiny', '--device', 'cpu', '--epochs', '1', '--warmup', '0',
                    '--progress', 'False', '--out', str(tmp_path/'train')])
    assert str(e.value.code) == f"aeft_train: --select_on val: no image of split val has a mask in {root} to score the epochs on; give --select_on none"
    assert not list((tmp_path/'train').glob('*.pt'))
    stage = AffinityStage(data='folder', root=str(root), select_on='val', seeds=str(tmp_path/'nowhere'))
    truth = stage.truth(False)
    with pytest.raises(ValueError, match=r"^--select_on val: no image of split val has a mask in .* to score the steps on; give --select_on none$"):
        stage.selection(truth, AffinityConfig(select_start=0), 100)
    with pytest.raises(FileNotFoundError, match=r"has no seed file for 1 of the 1 images of --select_on train \(e.g. a b\)"):   # the split with a mask reaches the seeds' check
        AffinityStage(data='folder', root=str(root), select_on='train', seeds=str(tmp_path/'nowhere')).selection(truth, AffinityConfig(select_start=0), 100)
