"The main job's CLI end to end on tiny settings: every output, resuming a finished demo, and bad options."
import json, os, re, subprocess, sys
import pytest
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
TINY = ['--epochs', '2', '--n_train', '64', '--n_eval', '32', '--size', '32', '--progress', 'False']

def demo(*args): return subprocess.run([str(BIN/'aeft_demo'), *args], capture_output=True, text=True, env=ENV)

def test_demo_end_to_end_then_resume(tmp_path):
    r = demo('--out', str(tmp_path), *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[-5].split()[:4] == ['method', 'seeds', 'test', 'mIoU'] and [l.split()[0] for l in lines[-4:-1]] == ['GAP', 'GPP', 'GPP']
    assert str(tmp_path) in lines[-1]
    res = json.loads((tmp_path/'results.json').read_text())['results']
    assert [(x['method'], x['seed'], x['chosen_on'], x['evaluated_on']) for x in res] == \
           [(m, 5137, 'val', 'test') for m in ('GAP', 'GPP', 'GPP + AEFT')]
    assert all(0 <= x['miou'] <= 1 and 0.01 <= x['threshold'] <= 0.8 for x in res)
    for f in ['cams.png', 'curves.png', *(f'{k}_seed5137/{g}' for k in ('gap', 'gpp', 'aeft') for g in ('last.pt', 'log.jsonl', 'curves.png'))]:
        assert (tmp_path/f).stat().st_size > 0, f
    aeft_log = [json.loads(l) for l in (tmp_path/'aeft_seed5137/log.jsonl').read_text().splitlines()]
    assert [r['phase'] for r in aeft_log if r['kind'] == 'epoch'] == ['warmup', 'aeft'] and 'repel' in aeft_log[-1]
    r2 = demo('--out', str(tmp_path), *TINY)              # finished runs resume to the same models and scores
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads((tmp_path/'results.json').read_text())['results'] == res

def test_bad_options_stop_with_the_field_named(tmp_path):
    from aeft.demo import aeft_demo
    from aeft.train import aeft_train
    def train(out, **kw): aeft_train(['--out', out, *[x for k, v in kw.items() for x in (f'--{k}', str(v))]])
    for f, kw, msg in [(aeft_demo, dict(methods='gap,cam'), "`methods` must be a comma-separated subset of ['gap', 'gpp', 'aeft'], got 'gap,cam'"),
                       (aeft_demo, dict(epochs=0), 'TrainConfig.epochs must be at least 1'),
                       (train, dict(bins='4,2'), 'TrainConfig.bins must be at least two strictly increasing'),
                       (train, dict(data='city'), "aeft_train: --data must be one of voc, coco, shapes, folder, cocofile, got 'city'"),
                       (train, dict(data='voc', root=str(tmp_path/'none')), 'VOC root not found'),
                       (train, dict(init='w.pth'), "`init` needs backbone='resnet38d'")]:
        with pytest.raises(SystemExit, match=re.escape(msg)): f(out=str(tmp_path), **kw)
    assert not list(tmp_path.iterdir())                    # nothing written
    r = subprocess.run([str(BIN/'aeft_train'), '--out', str(tmp_path), '--lr', '-1'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and 'aeft_train: --lr must be > 0, got -1.0' in r.stderr
