"The benchmark's chain where a notebook cannot show it: killed by SIGKILL in two stages, then resumed to the same row as an uninterrupted chain."
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from aeft.benchmark import spec_config, chain_one
from aeft.config import build_model, datasets
from aeft.learner import Learner
pytestmark = pytest.mark.usefixtures('one_thread')

TINY, SMALL = dict(n_train=32, n_eval=8, epochs=1, warmup=1), dict(n_images=16, aff_epochs=2, seg_iterations=2)
DRIVER = '''
import sys, torch
from aeft.benchmark import chain_one
torch.set_num_threads(1)
chain_one('GPP', 0, sys.argv[1], sys.argv[2], eval(sys.argv[3]), eval(sys.argv[4]))
'''
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def chain(root, runs, popen=False):
    "Run `chain_one` of GPP seed 0 at the toy budget in a fresh process"
    cmd = [sys.executable, '-c', DRIVER, str(root), str(runs), repr(TINY), repr(SMALL)]
    if popen: return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]

def kill_when(root, runs, ready, timeout=180):
    "Start a chain and SIGKILL it as soon as `ready()` holds"
    p, t = chain(root, runs, popen=True), time.time()
    while not ready():
        assert p.poll() is None and time.time() - t < timeout, 'the chain ended or stalled first'
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.05)); p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL

def test_chain_killed_twice_then_resumed_gives_the_same_row(tmp_path):
    cfg = spec_config('GPP', 0, TINY)
    Learner(build_model(cfg), datasets(cfg)[0], cfg, tmp_path/'runs'/'GPP_seed0', progress=False).fit()
    whole = chain_one('GPP', 0, tmp_path/'a', tmp_path/'runs', TINY, SMALL)
    run = tmp_path/'b'/'GPP_seed0'
    aff_steps = lambda: (run/'affinity'/'log.jsonl').exists() and (run/'affinity'/'log.jsonl').read_text().count('"kind": "step"') >= 5
    kill_when(tmp_path/'b', tmp_path/'runs', aff_steps)                                    # inside AffinityNet's second epoch
    assert not (run/'pseudo').exists()
    kill_when(tmp_path/'b', tmp_path/'runs', lambda: len(list((run/'pseudo').glob('*.png'))) >= 5)   # part way through the random walk
    assert not (run/'row.json').exists()
    chain(tmp_path/'b', tmp_path/'runs')
    resumed = json.loads((run/'row.json').read_text())
    assert {k: v for k, v in resumed.items() if k not in ('seconds', 'report')} == {k: v for k, v in whole.items() if k not in ('seconds', 'report')}

def test_chain_refuses_a_classifier_that_has_not_finished(tmp_path):
    cfg = spec_config('GPP', 0, TINY)
    Learner(build_model(cfg), datasets(cfg)[0], cfg, tmp_path/'runs'/'GPP_seed0', progress=False).fit()   # 1 epoch, of a budget of 2
    with pytest.raises(ValueError, match='has trained 1 of its 2 epochs; let it finish first'):
        chain_one('GPP', 0, tmp_path/'chain', tmp_path/'runs', {**TINY, 'epochs': 2}, SMALL)
