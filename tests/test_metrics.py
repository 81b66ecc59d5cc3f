"Metrics beyond the notebook's examples: the one-pass sweep against a per-threshold loop over many random cases."
import json, math
import pytest, torch
from aeft.metrics import ConfusionMeter, ThresholdSweep, cam_to_pred, choose_threshold, confusion, default_thresholds, iou, miou

def loop_cms(cams, gt, labels, thresholds, C):
    return torch.stack([confusion(cam_to_pred(cams, t, labels), gt, C) for t in thresholds.tolist()])

@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('dtype', [torch.float16, torch.float32, torch.float64])
def test_sweep_equals_the_loop(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    B, K = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 6, (1,), generator=g))
    h, w = (int(x) for x in torch.randint(1, 9, (2,), generator=g))
    thr = torch.sort(torch.randperm(50, generator=g)[:int(torch.randint(1, 12, (1,), generator=g))]).values.double()/40
    cams = (torch.randint(-2, 45, (B, K, h, w), generator=g)/40).to(dtype)   # values below, at and above the thresholds
    gt = torch.randint(0, K + 1, (B, h, w), generator=g); gt[torch.rand(B, h, w, generator=g) < 0.2] = 255
    labels = torch.rand(B, K, generator=g) < 0.6
    sweep = ThresholdSweep(K + 1, thr)
    for i in range(B): sweep.update(cams[i:i+1], gt[i:i+1], labels[i:i+1])
    assert torch.equal(sweep.cms, loop_cms(cams, gt, labels, thr, K + 1))

@pytest.mark.parametrize('seed', range(4))
def test_per_image_maps_of_the_gt_classes(seed):
    "Maps stored per image for its GT classes only (`update_image`) give the matrices of full CAMs with labels, and of the loop"
    g = torch.Generator().manual_seed(seed)
    B, K, h, w = 4, 5, 7, 6
    cams = (torch.randint(0, 30, (B, K, h, w), generator=g)/20).float()          # ties between classes and at thresholds
    gt = torch.randint(0, K + 1, (B, h, w), generator=g).to(torch.uint8); gt[torch.rand(B, h, w, generator=g) < 0.2] = 255
    labels = torch.rand(B, K, generator=g) < 0.5; labels[0] = False; labels[1] = True
    thr = torch.arange(1, 16, dtype=torch.float64)/16
    full, per_image = ThresholdSweep(K + 1, thr).update(cams, gt, labels), ThresholdSweep(K + 1, thr)
    for i in range(B):
        cls = labels[i].nonzero()[:, 0]
        per_image.update_image(cls, cams[i, cls], gt[i])
    assert torch.equal(full.cms, per_image.cms)
    assert torch.equal(per_image.cms, loop_cms(cams, gt, labels, thr, K + 1))
    assert (per_image.cms.sum((1, 2)) == int((gt != 255).sum())).all()

def test_update_image_by_hand():
    "One 1x4 image, classes 3 and 1 given in that order (ties go to the first given), a 255 pixel, labels = class + 1"
    maps = torch.tensor([[[0.2, 0.7, 0.9, 0.5]],     # class 3 (label 4)
                         [[0.6, 0.7, 0.1, 0.4]]])    # class 1 (label 2)
    gt = torch.tensor([[2, 4, 255, 0]])
    sw = ThresholdSweep(5, [0.5]).update_image([3, 1], maps, gt)
    # largest: 0.6 → 2, 0.7 (tie) → 4, ignored, 0.5 → background (not above 0.5)
    expect = torch.zeros(5, 5, dtype=torch.long); expect[2, 2] = expect[4, 4] = expect[0, 0] = 1
    assert torch.equal(sw.cms[0], expect)
    with pytest.raises(ValueError, match='`gt` holds labels outside 0..4 and 255: \\[9\\]'): sw.update_image([3, 1], maps, gt.clamp(max=9))

def test_streaming_equals_one_shot_and_absent_classes_are_nan():
    g = torch.Generator().manual_seed(1)
    pred, gt = torch.randint(0, 3, (10, 5, 5), generator=g), torch.randint(0, 3, (10, 5, 5), generator=g)
    gt[gt == 2] = 255                                 # class 2 never in the GT, but predicted: IoU 0, not NaN
    meter = ConfusionMeter(4)
    for i in range(0, 10, 3): meter.update(pred[i:i+3], gt[i:i+3])
    cm = confusion(pred, gt, 4)
    assert torch.equal(meter.cm, cm)
    assert iou(cm)[2] == 0 and math.isnan(iou(cm)[3]) and math.isclose(miou(cm), iou(cm)[:3].mean().item())
    assert meter.scores()['iou'][3] is None

def test_choose_threshold_result_is_json_and_names_its_splits():
    g = torch.Generator().manual_seed(2)
    mk = lambda: ThresholdSweep(3).update(torch.rand(4, 2, 8, 8, generator=g), torch.randint(0, 3, (4, 8, 8), generator=g))
    res = json.loads(json.dumps(choose_threshold(mk(), mk(), chosen_on='val', evaluated_on='test')))
    assert (res['chosen_on'], res['evaluated_on']) == ('val', 'test')
    assert set(res) >= {'threshold', 'miou', 'iou', 'precision', 'recall', 'fg_precision', 'fg_recall', 'oracle_threshold', 'oracle_miou'}

def argmax_pred(classes, maps, t):
    "The peers' mask (IRN eval_cam, PSA, the released evaluation.py): argmax over [t, maps] in float32, ties to the first (background)"
    i = torch.cat([torch.full((1, *maps.shape[1:]), t, dtype=torch.float32), maps.float()]).argmax(0)
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.as_tensor(classes) + 1])[i]

def test_ties_by_hand():
    "Seeds k/255: 51/255 and 0.2 (also 102/255 and 0.4) are one float32 number, so those seeds are background there"
    maps = torch.tensor([[[51., 52., 102., 103.]]])/255
    sw = ThresholdSweep(3, [0.2, 0.4]).update_image([1], maps, torch.tensor([[2, 2, 2, 2]]))
    assert sw.cms[0, 2].tolist() == [1, 0, 3] and sw.cms[1, 2].tolist() == [3, 0, 1]
    half = torch.tensor([[[0.1, 0.3]]]).half()                 # 0.0999756 and 0.3000488 in float16
    sw = ThresholdSweep(2, [0.1, 0.3]).update_image([0], half, torch.tensor([[1, 1]]))
    assert sw.cms[0, 1].tolist() == [1, 1] and sw.cms[1, 1].tolist() == [1, 1]   # the first is not above 0.1, the second is above 0.3
    assert cam_to_pred(half[None], 0.1).tolist() == [[[0, 1]]]

@pytest.mark.parametrize('seeds', ['k/255', 'float16'])
def test_ties_match_argmax_over_threshold_and_maps(seeds):
    "Every default threshold, seeds with many exact ties (k/255 in float32, or float16 values): sweep, dense update, cam_to_pred = argmax(cat([full(t), maps]))"
    g = torch.Generator().manual_seed(0)
    K, h, w, n_img = 5, 9, 11, 6
    thr = default_thresholds()
    sweep, dense = ThresholdSweep(K + 1), ThresholdSweep(K + 1)
    ref = torch.zeros(len(thr), K + 1, K + 1, dtype=torch.long)
    ties = 0
    for img in range(n_img):
        classes = torch.randperm(K, generator=g)[:1 + img % 3].sort().values
        if seeds == 'k/255': maps = torch.randint(0, 256, (len(classes), h, w), generator=g)/255.
        else: maps = (torch.randint(0, 82, (len(classes), h, w), generator=g)/100.).half()   # near-threshold values, rounded to float16
        gt = torch.randint(0, K + 1, (h, w), generator=g); gt[0] = 255
        sweep.update_image(classes, maps, gt)
        cams = torch.full((1, K, h, w), 7., dtype=maps.dtype); cams[0, classes] = maps
        labels = torch.zeros(1, K, dtype=torch.bool); labels[0, classes] = True
        dense.update(cams, gt[None], labels)
        for j, t in enumerate(thr.tolist()):
            pred = argmax_pred(classes, maps, t)
            assert torch.equal(cam_to_pred(cams, t, labels)[0], pred)
            ref[j] += confusion(pred, gt, K + 1)
            ties += int((maps.float().amax(0) == torch.tensor(t, dtype=torch.float32)).sum())
    assert ties > 0                                            # the case being tested does occur
    assert torch.equal(sweep.cms, ref) and torch.equal(dense.cms, ref)
