"The learner's speed switches on the CPU: torch.compile trains the same network (or fails with one clear error), and the speed command's pieces run"
import subprocess, sys, textwrap

def run(code):
    "Run `code` in a fresh process (compiled code and compiler settings stay there); its CompletedProcess"
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=1200)

TRAIN = '''
import tempfile, torch
from dataclasses import replace
from pathlib import Path
from torch.utils.data import TensorDataset
from aeft.config import TrainConfig, build_model
from aeft.learner import Learner, read_log
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
toy = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), (torch.rand(32, 6, generator=g) < 0.3).float())
cfg = TrainConfig.synthetic(epochs=2, warmup=1, batch_size=8, aeft_batch_size=16, width=4, device='cpu')
def losses(c):
    with tempfile.TemporaryDirectory() as d:
        learn = Learner(build_model(c), toy, c, d, progress=False).fit()
        return [r['loss'] for r in read_log(Path(d)/'log.jsonl') if r['kind'] == 'step'], learn
'''

def test_compile_trains_the_same_network():
    "compile=True runs on this CPU build (warm-up step and AEFT step) and gives the losses and weights of the plain run to float tolerance"
    r = run(TRAIN + '''
plain, a = losses(cfg)
comp, b = losses(replace(cfg, compile=True))
assert len(plain) == len(comp) == 6, (plain, comp)
assert max(abs(x - y) for x, y in zip(plain, comp)) < 1e-4, (plain, comp)
assert all(torch.allclose(v, w, atol=1e-4) for v, w in zip(a.model.state_dict().values(), b.model.state_dict().values()))
assert not any(k.startswith('_orig_mod') for k in b.model.state_dict())      # the checkpoint holds the plain network
print('same', max(abs(x - y) for x, y in zip(plain, comp)))
''')
    assert r.returncode == 0 and 'same' in r.stdout, r.stderr[-3000:]

def test_compile_fails_clearly_without_a_compiler():
    "Where torch.compile cannot build code (here: the C++ compiler is made missing), the first step stops with one error naming the switch"
    r = run(TRAIN + '''
import torch._inductor.config as ic
ic.cpp.cxx = ('/nonexistent/c++',)
try: losses(replace(cfg, compile=True))
except RuntimeError as e: print('MESSAGE', e)
''')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'MESSAGE TrainConfig.compile=True, but torch.compile fails on this machine' in r.stdout and 'train without compile=True' in r.stdout, r.stdout[-2000:]

def test_speed_command_runs():
    "python -m aeft.speed prints every line, here on the tiny backbone's sizes through its functions"
    r = run('''
from aeft.speed import train_speed, cam_speed, projected_hours, MODES
for mode in ('fp32', 'bf16', 'bf16+cl'):
    for aeft in (False, True):
        r = train_speed(2, aeft=aeft, mode=mode, image_size=32, steps=1, opts='backbone=tiny width=4')
        assert r['images_per_s'] > 0, r
for batched in (False, True):
    assert cam_speed(batched, 'bf16+cl', images=1, size=(24, 32), opts='backbone=tiny width=4')['images_per_s'] > 0
print('ok')
''')
    assert r.returncode == 0 and 'ok' in r.stdout, r.stderr[-3000:]
