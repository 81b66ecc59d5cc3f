"Shares across processes and folders they share: concurrent --shard runs (and torchrun's processes) write the bytes one process writes; a kill during a manifest write leaves a folder the rerun accepts; a second training run on a busy --out is refused naming the first; pool workers die with their parent"
import json, os, shutil, socket, subprocess, sys, time
from dataclasses import asdict
from pathlib import Path
import pytest, torch
from aeft.voc import write_tiny_voc, voc_splits
from aeft.config import build_model, make_config
from aeft.artefacts import MANIFEST, lock_folder, read_manifest
from aeft.predict import aeft_predict
from aeft.crf import aeft_crf
from aeft.cam import aeft_cam
from aeft.core import Shard
from aeft.pipeline import named_recipe, run_stage
from test_crf import write_seeds, tree_digest as digest
from test_predict import save_segmenter

pytestmark = pytest.mark.filterwarnings('ignore:VOC split')
BIN = Path(sys.executable).parent
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')

def start(*args, launcher=()):
    return subprocess.Popen([*launcher, str(BIN/args[0]), *map(str, args[1:])], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def finish(*ps):
    "The last stdout line of each process, which must have succeeded"
    outs = [p.communicate() for p in ps]
    for p, (o, e) in zip(ps, outs): assert p.returncode == 0, e
    return [o.strip().splitlines()[-1] for o, _ in outs]

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "The VOC-format fixture, seeds of its train_aug images made from their masks (16 ids: shares of runs of 4) and a tiny classifier"
    t = tmp_path_factory.mktemp('shards')
    root = write_tiny_voc(t/'data', sbd='png')
    ids = voc_splits(root, verbose=False)['train_aug']
    cfg = make_config('voc', backbone='tiny', width=8, opts='device=cpu')
    torch.save(dict(model=build_model(cfg).state_dict(), config=asdict(cfg)), t/'cls.pt')
    return t, root, ids, write_seeds(root, ids, t/'seeds')

def crf(t, root, out, *extra):
    return ('aeft_crf', t/'seeds', '--root', root, '--out', out, '--alphas', '2', '--crf_iters', '2', '--processes', '1', '--progress', 'False', *extra)

def test_concurrent_crf_shards_equal_one_process(data):
    t, root, ids, _ = data
    assert len(ids) == 16
    aeft_crf(list(map(str, crf(t, root, t/'one')[1:])))
    lines = finish(*[start(*crf(t, root, t/'three', '--shard', f'{k}/3')) for k in (1, 2, 3)])
    assert digest(t/'three') == digest(t/'one')
    assert [l.split('; shard ')[1].split(' images')[0] for l in lines] == ['1/3: 8 of the 16', '2/3: 4 of the 16', '3/3: 4 of the 16']
    assert any(l.endswith('16 of 16 now done (all done)') for l in lines)

def test_torchrun_processes_equal_one_process(data):
    "torchrun --nproc_per_node 2 on the CPU: each process takes the share of its RANK"
    t, root, ids, _ = data
    if not (t/'one').exists(): aeft_crf(list(map(str, crf(t, root, t/'one')[1:])))
    lines = finish(start(*crf(t, root, t/'torchrun'), launcher=(str(BIN/'torchrun'), '--standalone', '--nproc_per_node', '2')))
    assert digest(t/'torchrun') == digest(t/'one'), lines

def test_concurrent_cam_shards_equal_one_process(data):
    "Batches of 4 images, as one process forms them: the seeds are the same bytes"
    t, root, ids, _ = data
    args = lambda out, *extra: ['--root', str(root), '--ckpt', str(t/'cls.pt'), '--split', 'train_aug', '--scales', '1.0', '--out', str(out), '--progress', 'False', *extra]
    cam = lambda *a: start('aeft_cam', *args(*a))
    aeft_cam(args(t/'s1'))
    finish(cam(t/'s2', '--shard', '1/2'), cam(t/'s2', '--shard', '2/2'))
    assert digest(t/'s2') == digest(t/'s1') and len(list((t/'s1').glob('*.npy'))) == 16

def test_predict_shares_are_scored_once_whole(data, capsys):
    t, root, ids, _ = data
    ckpt = save_segmenter(t/'seg.pt')
    args = lambda out, *extra: [str(ckpt), '--root', str(root), '--scales', '1.0', '--out', str(out), '--progress', 'False', *extra]
    whole = aeft_predict(args(t/'p1'))
    first = aeft_predict(args(t/'p2', '--shard', '2/2'))
    assert first['shard'] == '2/2' and first['written'] == 2 and first['present'] == 2 and 'miou' not in first   # val: 6 ids, runs of 4
    assert 'neither scored nor packed' in capsys.readouterr().out and not (t/'p2'/'val'/'scores.json').exists()
    aeft_predict(args(t/'p2', '--shard', '1/2'))
    last = aeft_predict(args(t/'p2'))                                                   # every share done: it only scores
    assert last['written'] == 0 and last['miou'] == whole['miou']
    assert {p.name: p.read_bytes() for p in (t/'p2'/'val').glob('*.png')} == {p.name: p.read_bytes() for p in (t/'p1'/'val').glob('*.png')}

KILLED = '''import os, pathlib, sys, time
from aeft.crf import aeft_crf
def stop(*a, **k): print('writing', flush=True); time.sleep(60)
if sys.argv[1] == 'fsync': os.fsync = stop                     # the manifest's temporary file written, not yet linked
else: pathlib.Path.unlink = stop                                # linked as manifest.json, the temporary file not yet removed
aeft_crf(sys.argv[2:])'''

def test_kill_during_a_manifest_write(data, tmp_path):
    "SIGKILLs during the manifest's write, before and after its link, and a manifest half written: the rerun accepts each folder and removes what the killed writer left"
    t, root, ids, _ = data
    for at in ('fsync', 'unlink'):
        p = subprocess.Popen([sys.executable, '-c', KILLED, at, *map(str, crf(t, root, tmp_path/at)[1:])], env=ENV, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == 'writing\n'
        p.kill(); p.wait()
        left = sorted(f.name for f in (tmp_path/at/'02').iterdir())
        assert left[0].startswith(f'.{MANIFEST}.{p.pid}@') and left[1:] == ([] if at == 'fsync' else [MANIFEST])
        assert (read_manifest(tmp_path/at/'02') is None) == (at == 'fsync')
    (tmp_path/'h'/'02').mkdir(parents=True); (tmp_path/'h'/'02'/f'.{MANIFEST}.f7117e77.tmp').write_text('{\n "stage": "crf",')   # half written
    for out in (tmp_path/'fsync', tmp_path/'unlink', tmp_path/'h'):
        aeft_crf(list(map(str, crf(t, root, out)[1:])))
        assert sorted(f.name for f in (out/'02').iterdir() if not f.name.startswith('.')) == sorted([MANIFEST, *(f'{id}.npy' for id in ids)])
    assert not any((tmp_path/'fsync'/'02').glob('.*.tmp')) and not any((tmp_path/'unlink'/'02').glob('.*.tmp'))   # their writers are gone: cleaned

def test_second_training_run_is_refused(data, tmp_path):
    t, root, ids, _ = data
    holder = subprocess.Popen([sys.executable, '-c', f"from aeft.artefacts import lock_folder; import time\nwith lock_folder({str(tmp_path/'run')!r}, 'aeft_train'): print('held', flush=True); time.sleep(60)"],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'held\n'
    r = subprocess.run([str(BIN/'aeft_train'), '--data', 'shapes', '--n_train', '16', '--n_val', '8', '--epochs', '1', '--warmup', '0', '--out', tmp_path/'run', '--progress', 'False'],
                       env=ENV, capture_output=True, text=True)
    holder.kill(); holder.wait()
    assert r.returncode == 1 and not (tmp_path/'run'/'log.jsonl').exists()
    assert r.stderr.strip().splitlines()[-1].startswith(f"aeft_train: {tmp_path/'run'} is being written by another run (aeft_train, pid {holder.pid} on host {socket.gethostname()}, started ")
    with lock_folder(tmp_path/'run', 'aeft_train'): pass                                # its process ended: the lock is broken and taken

POOL = '''import os, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from aeft.core import exit_with_parent
def pid(_): return os.getpid()
ex = ProcessPoolExecutor(2, mp_context=get_context('fork'), initializer=exit_with_parent, initargs=(os.getpid(), 1))
print(*set(ex.map(pid, range(2))), flush=True)  # two tasks, the workers' pids (one or both workers)
ex.submit(time.sleep, 60); ex.submit(time.sleep, 60); time.sleep(60)'''

def test_killing_the_main_process_leaves_no_worker():
    p = subprocess.Popen([sys.executable, '-c', POOL], env=ENV, stdout=subprocess.PIPE, text=True)
    workers = {int(w) for w in p.stdout.readline().split()}
    p.kill(); p.wait()
    alive = lambda pid: Path(f'/proc/{pid}').exists() and open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] not in 'ZX'
    for _ in range(100):
        if not any(map(alive, workers)): break
        time.sleep(0.05)
    assert workers and not any(map(alive, workers))

def test_aeft_run_records_a_stage_once_its_set_is_complete(data, tmp_path, capsys):
    "Two shares of aeft_run's CRF stage: the first leaves no record; the one that completes the set scores it and writes the record; then every share skips it"
    t, root, ids, _ = data
    r = named_recipe('voc'); r.update(root=str(root), crf=dict(alphas=(2,), crf_iters=2, processes=1))
    shutil.copytree(t/'seeds', tmp_path/'seeds')
    assert run_stage(r, 'crf', tmp_path, progress=False, shard=Shard(2, 2))['partial'] and not (tmp_path/'run'/'crf.json').exists()
    assert 'aeft_run: crf: shard 2/2 done, 8 of 16 images there; the share that completes them records the stage' in capsys.readouterr().out
    row = run_stage(r, 'crf', tmp_path, progress=False, shard=Shard(1, 2))
    assert row['images'] == 16 and 'crf_miou' in row['scores'] and (tmp_path/'run'/'crf.json').is_file()
    assert run_stage(r, 'crf', tmp_path, progress=False, shard=Shard(2, 2))['scores'] == row['scores']
    assert 'crf finished before with these settings' in capsys.readouterr().out

def test_aeft_run_share_stops_before_a_stage_that_runs_once(data, tmp_path, capsys):
    "aeft_run --shard without --until: the share runs its part of the CRF, then stops with status 0 before AffinityNet (trained once), naming the command that runs it"
    from aeft.pipeline import dump_recipe, aeft_run
    t, root, ids, _ = data
    r = named_recipe('voc'); r.update(root=str(root), crf=dict(alphas=(2,), crf_iters=2, processes=1))
    (tmp_path/'r.toml').write_text(dump_recipe(r))
    run = tmp_path/'run'; shutil.copytree(t/'seeds', run/'seeds'); (run/'run').mkdir()
    for s in ('train', 'cam'): (run/'run'/f'{s}.json').write_text(json.dumps(dict(stage=s, manifests={}, scores={}, out=str(run/s), seconds=0)))   # finished before
    rows = aeft_run([str(tmp_path/'r.toml'), '--out', str(run), '--from', 'crf', '--shard', '2/2', '--progress', 'False'])   # returns: status 0
    assert [row['stage'] for row in rows] == ['train', 'cam', 'crf'] and rows[-1]['partial'] and not (run/'affinity').exists()
    assert (f"aeft_run: shard 2/2: done up to crf; affinity runs once, after every share has finished: aeft_run {tmp_path/'r.toml'} --out {run} --from affinity"
            in capsys.readouterr().out)
    with pytest.raises(SystemExit, match="--shard 2/2 runs shares of the stages cam, crf, pseudo, predict; stage affinity has not finished"):   # --until says otherwise
        aeft_run([str(tmp_path/'r.toml'), '--out', str(run), '--from', 'crf', '--until', 'affinity', '--shard', '2/2', '--progress', 'False'])
