"The synthetic dataset across processes: determinism per seed, splits drawn one by one (its VOC export is tested in test_voc.py)."
import subprocess, sys
import torch
from aeft.shapes import shapes_split

DIGEST = """
import hashlib, sys
from aeft.shapes import make_shapes, ShapesConfig
d = make_shapes(200, seed=int(sys.argv[1]), cfg=ShapesConfig(num_classes=5))
h = hashlib.sha256()
for k in sorted(d): h.update(k.encode()); h.update(d[k].contiguous().numpy().tobytes())
print(h.hexdigest())
"""

def digest_in_subprocess(seed):
    r = subprocess.run([sys.executable, '-c', DIGEST, str(seed)], capture_output=True, text=True, check=True)
    return r.stdout.strip()

def test_same_seed_same_data_across_processes():
    a, b, c = digest_in_subprocess(7), digest_in_subprocess(7), digest_in_subprocess(8)
    assert a == b and a != c

def test_splits_are_reproducible_one_by_one():
    val, test = shapes_split('val', 10, seed=4), shapes_split('test', 10, seed=4)
    again = shapes_split('val', 10, seed=4)
    assert torch.equal(val.images, again.images) and torch.equal(val.masks, again.masks)
    assert not torch.equal(val.images, test.images)
