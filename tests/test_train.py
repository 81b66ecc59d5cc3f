"The training loop where a notebook cannot show it: SIGKILL at a random moment then resume, NaN fault injection, DDP."
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from torch.utils.data import TensorDataset
from aeft.config import TrainConfig, build_model
from aeft.learner import Learner, NonFiniteLoss, classifier_phases, read_log
from aeft.step import bce_step
pytestmark = pytest.mark.usefixtures('one_thread')

BIN = Path(sys.executable).parent
# A run small enough for seconds on a CPU: random images and labels, fixed by a seed.
DRIVER = '''
import sys, torch
from torch.utils.data import TensorDataset
from aeft.config import TrainConfig, build_model
from aeft.learner import Learner
torch.set_num_threads(1)
out, epochs, kw = sys.argv[1], int(sys.argv[2]), eval(sys.argv[3])
p = kw.pop('p', 0.3)                                   # label density
g = torch.Generator().manual_seed(0)
ds = TensorDataset(torch.randn(128, 3, 32, 32, generator=g), (torch.rand(128, 6, generator=g) < p).float())
cfg = TrainConfig.synthetic(**{**dict(epochs=epochs, warmup=2, image_size=32, width=8, batch_size=8, aeft_batch_size=16), **kw})
Learner(build_model(cfg), ds, cfg, out, progress=False).fit(resume=True)
if torch.distributed.is_initialized(): torch.distributed.destroy_process_group()   # else gloo can abort at exit
'''

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def drive(out, epochs=6, popen=False, **kw):
    "Run DRIVER in a fresh process (resuming `out` if it holds a checkpoint)"
    cmd = [sys.executable, '-c', DRIVER, str(out), str(epochs), repr(kw)]
    if popen: return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]

def weights(out): return torch.load(Path(out)/'last.pt', weights_only=False)['model']

def steps(out, keys=('epoch', 'step', 'lr', 'loss', 'bce')):
    return [{k: r[k] for k in keys if k in r} for r in read_log(Path(out)/'log.jsonl') if r['kind'] == 'step']

def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k

def kill_after(out, n, timeout=120):
    "Start DRIVER on `out`, SIGKILL it once its log holds `n` step lines (plus a random fraction of a step)"
    p, t = drive(out, popen=True), time.time()
    log = Path(out)/'log.jsonl'
    while not (log.exists() and log.read_text().count('"kind": "step"') >= n):
        assert p.poll() is None and time.time() - t < timeout, f'run ended or stalled before step {n}'
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.05)); p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL

def test_sigkill_at_a_random_moment_then_resume_gives_the_same_weights(tmp_path):
    drive(tmp_path/'a')
    n = len(steps(tmp_path/'a'))                          # 2 warm-up epochs of 16 steps, 4 AEFT epochs of 8
    k1 = random.randint(1, n//2); k2 = random.randint(k1 + 1, n - 1)
    kill_after(tmp_path/'b', k1)                          # killed at a random step,
    kill_after(tmp_path/'b', k2)                          # resumed and killed again later,
    drive(tmp_path/'b')                                   # resumed to the end
    assert_same(weights(tmp_path/'a'), weights(tmp_path/'b'))
    assert steps(tmp_path/'a') == steps(tmp_path/'b'), (k1, k2)   # the log too: interrupted epochs were cut off

def test_aeft_train_old_spellings_still_work(tmp_path, capsys):
    "--preset (synthetic: shapes), --voc_root and --opts of earlier versions: the same options, each with a note naming the new one; run's summary"
    from aeft.train import aeft_train
    res = aeft_train(['--preset', 'synthetic', '--out', str(tmp_path/'run'), '--epochs', '1', '--warmup', '1', '--progress', 'False',
                      '--opts', 'n_train=16 n_val=8 width=4 device=cpu'])
    err = capsys.readouterr().err
    assert 'aeft_train: --preset is now --data (synthetic is shapes)' in err and 'aeft_train: --opts is read as the options it names' in err, err
    cfg = json.loads((tmp_path/'run'/'config.json').read_text())
    assert (cfg['data'], cfg['n_train'], cfg['width'], cfg['image_size']) == ('shapes', 16, 4, 64)
    assert (res['out'], res['images'], res['epochs'], res['best_epoch']) == (str(tmp_path/'run'), 16, 1, 0) and 0 <= res['val_miou'] <= 1
    with pytest.raises(SystemExit, match='aeft_train: VOC root not found'):
        aeft_train(['--preset', 'voc', '--voc_root', str(tmp_path/'nowhere'), '--out', str(tmp_path/'r2')])
    assert 'aeft_train: --voc_root is now --root' in capsys.readouterr().err
    with pytest.raises(SystemExit, match='aeft_train: --split and --ids are not read by aeft_train'):
        aeft_train(['--split', 'val', '--out', str(tmp_path/'r3')])
    assert not (tmp_path/'r2').exists() and not (tmp_path/'r3').exists()

def toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), (torch.rand(n, 6, generator=g) < 0.3).float())

def nan_after(n):
    "The warm-up step, except that the loss is NaN from call `n` on"
    calls = [0]
    def step(model, batch, cfg):
        loss, logs = bce_step(model, batch, cfg)
        calls[0] += 1
        if calls[0] >= n: loss = loss*float('nan'); logs = {'bce': loss}
        return loss, logs
    return step

def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = TrainConfig.synthetic(epochs=4, warmup=4, image_size=32, width=4, batch_size=8)
    Learner(build_model(cfg), toy(), cfg, tmp_path/'clean', progress=False).fit()
    bad = nan_after(2*8 + 3)                             # 8 steps per epoch: NaN in the 4th step of epoch 2
    learn = Learner(build_model(cfg), toy(), cfg, tmp_path/'bad', phases=classifier_phases(cfg, (bad, bad)), progress=False)
    with pytest.raises(NonFiniteLoss, match=r'non-finite loss at epoch 2, step 19.*last good checkpoint .*last.pt \(after 2 epochs\)'):
        learn.fit()
    ck = torch.load(tmp_path/'bad/last.pt', weights_only=False)
    assert (ck['epoch'], ck['step']) == (2, 16)
    assert all(torch.isfinite(v).all() for v in ck['model'].values())
    Learner(build_model(cfg), toy(), cfg, tmp_path/'bad', progress=False).fit(resume=True)   # fixed: resume
    assert_same(weights(tmp_path/'clean'), weights(tmp_path/'bad'))

def test_resume_refuses_another_config_and_fresh_run_refuses_to_overwrite(tmp_path):
    cfg = TrainConfig.synthetic(epochs=1, warmup=1, image_size=32, width=4, batch_size=8)
    Learner(build_model(cfg), toy(), cfg, tmp_path, progress=False).fit()
    with pytest.raises(FileExistsError, match='resume'): Learner(build_model(cfg), toy(), cfg, tmp_path, progress=False).fit()
    cfg2 = TrainConfig.synthetic(epochs=1, warmup=1, image_size=32, width=4, batch_size=8, lr=0.1)
    with pytest.raises(ValueError, match=r"another config.*'lr': \(0.1, 0.05\)"):
        Learner(build_model(cfg2), toy(), cfg2, tmp_path, progress=False).fit(resume=True)

def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    """gloo, 2 ranks × 4 (then 8) images = 1 rank × 8 (then 16), through warm-up and the AEFT step in 'attract' mode.
    BatchNorm frozen (eval): train-mode BN would use per-rank statistics. GAP head: on these random images the GPP
    logits stay at 0 (BCE ln 2 throughout), which would hide a wrong share of the BCE between ranks; labels at density
    0.6 keep the CAMs of present classes positive, so attract is not 0. 'attract' and the BCE are means of per-image
    terms, so averaged gradients agree; repel's in-batch negatives would not (each rank draws from its own share)."""
    kw = dict(head='gap', freeze_bn=True, device='cpu', aeft_options=dict(mode='attract', bce_items=8), p=0.6)
    drive(tmp_path/'one', epochs=3, **kw)
    torchrun = (str(BIN/'torchrun'), '--standalone', '--nproc_per_node', '2')
    script = tmp_path/'driver.py'; script.write_text(DRIVER)
    r = subprocess.run([*torchrun, str(script), str(tmp_path/'two'), '3', repr(kw)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = weights(tmp_path/'one'), weights(tmp_path/'two')
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    la, lb = steps(tmp_path/'one', keys=('step', 'loss', 'bce', 'attract')), steps(tmp_path/'two', keys=('step', 'loss', 'bce', 'attract'))
    assert len(la) == len(lb) == 2*128//8 + 128//16 and all(x['attract'] > 0 for x in la[32:])
    for x, y in zip(la, lb):
        for k in x: assert abs(x[k] - y[k]) < 1e-5, (k, x, y)
    assert len(torch.load(tmp_path/'two/last.pt', weights_only=False)['rng']) == 2   # one RNG state per rank
