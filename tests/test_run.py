"aeft_run and the stage commands' options: one name, one meaning; --root everywhere; AEFT_SBD seen by every stage; a run killed by SIGKILL and started again gives the same report rows"
import json, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest, torch
from aeft.pipeline import STAGES, all_options, meaning, option_table, named_recipe, dump_recipe, aeft_run
from aeft.voc import write_tiny_voc

NB = Path(__file__).parents[1]/'nbs'/'23a_pipeline.ipynb'

def test_one_name_one_meaning():
    seen = {}
    for cmd, opts in all_options().items():
        for k, o in opts.items():
            assert o.help, f"{cmd} --{k} has no help (a comment after its field)"
            seen.setdefault(k, {})[cmd] = meaning(o.help)
    differ = {k: v for k, v in seen.items() if len(set(v.values())) > 1}
    assert not differ, f"options with several meanings: {json.dumps(differ, indent=1)}"

def test_every_data_command_takes_root():
    for cmd, opts in all_options().items():
        assert {'data', 'root', 'sbd'} <= set(opts), f"{cmd} lacks --data/--root/--sbd"
        assert not {'voc_root', 'coco_root', 'preset', 'network'} & set(opts), f"{cmd} still has an old spelling as an option"

def test_option_table_in_the_chapter_is_the_code():
    cells = json.loads(NB.read_text())['cells']
    assert any(''.join(c['source']).strip() == option_table() for c in cells if c['cell_type'] == 'markdown'), \
        "the option table in nbs/23a_pipeline.ipynb differs from aeft.pipeline.option_table(); paste the new one"

POSITIONAL = [('aeft.crf', 'aeft_crf', 'seeds'), ('aeft.evaluate', 'aeft_eval', 'seeds'), ('aeft.pseudo', 'aeft_pseudo', 'seeds'),
              ('aeft.pseudo', 'aeft_pseudo', 'ckpt'), ('aeft.predict', 'aeft_predict', 'ckpt'), ('aeft.segment', 'aeft_segment', 'masks')]

@pytest.mark.parametrize('module,name,field', POSITIONAL)
def test_positional_argument_is_also_a_flag(module, name, field):
    "Each positional argument is also read as its --flag, and giving it both ways is refused naming the option"
    cmd = getattr(__import__(module, fromlist=[name]), name)
    first = (0 if field != 'ckpt' or name != 'aeft_pseudo' else 1)*['s']   # aeft_pseudo's ckpt is its second positional argument
    with pytest.raises(SystemExit) as e: cmd([*first, 'a', f'--{field}', 'b'])
    assert str(e.value) == f"{name}: --{field} is given twice (as the positional argument a and as --{field} b)"

def test_pseudo_reads_seeds_and_ckpt_as_flags(tmp_path):
    "aeft_pseudo --seeds S --ckpt C reaches the stage, which reads C (here missing) as the checkpoint"
    from aeft.pseudo import aeft_pseudo
    with pytest.raises(SystemExit) as e: aeft_pseudo(['--seeds', str(tmp_path/'seeds'), '--ckpt', str(tmp_path/'nothing'), '--out', str(tmp_path/'out')])
    assert str(tmp_path/'nothing') in str(e.value) and 'unrecognized' not in str(e.value)

def _tiny_voc_recipe(root):
    r = named_recipe('voc')
    r.update(root=str(root))
    r['train'].update(backbone='tiny', image_size=48, epochs=1, warmup=0, batch_size=4, aeft_batch_size=8, device='cpu', select_on='none')
    r['cam'].update(scales=(1.0,), device='cpu')
    r['affinity'].update(backbone='tiny', crop=48, epochs=1, batch_size=4, device='cpu', optimizer='corrected', freeze_bn=False)
    r['pseudo'].update(device='cpu', processes=1)
    r['crf'].update(processes=1)
    r['segment'].update(backbone='tiny', crop_size=48, iterations=4, batch_size=4, device='cpu', new_head=False, lr=0.01)
    r['predict'].update(scales=(1.0,), device='cpu')
    return r

def test_aeft_sbd_reaches_every_stage(tmp_path, monkeypatch):
    "With AEFT_SBD set and no --sbd, every stage on train_aug sees the classifier's images (VOC train + SBD), not VOC train's"
    root = write_tiny_voc(tmp_path/'voc', sbd='mat')
    monkeypatch.setenv('AEFT_SBD', str(root/'benchmark_RELEASE'/'dataset'))
    (tmp_path/'r.toml').write_text(dump_recipe(_tiny_voc_recipe(root)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rows = {r['stage']: r for r in aeft_run([str(tmp_path/'r.toml'), '--out', str(tmp_path/'run'), '--progress', 'False'])}
    n = rows['train']['images']
    assert n > 8, f"the classifier saw {n} images; train_aug with SBD has more than VOC train's 8"
    assert {s: rows[s]['images'] for s in ('cam', 'crf', 'affinity', 'pseudo', 'segment')} == dict.fromkeys(('cam', 'crf', 'affinity', 'pseudo', 'segment'), n)

def _run(args, env):
    return subprocess.Popen([sys.executable, '-c', 'import sys; from aeft.pipeline import aeft_run; aeft_run(sys.argv[1:])', *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

def test_killed_run_resumes_to_the_same_report(tmp_path):
    r = named_recipe('synthetic')
    r['train'].update(n_train=120, n_val=30, epochs=6, warmup=2)
    r['affinity'].update(epochs=1); r['segment'].update(iterations=10)
    (tmp_path/'s.toml').write_text(dump_recipe(r))
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    args = lambda out: [str(tmp_path/'s.toml'), '--out', str(tmp_path/out), '--progress', 'False']
    p = _run(args('whole'), env); out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out
    p = _run(args('killed'), env)
    log = tmp_path/'killed'/'train'/'log.jsonl'
    for _ in range(3000):                      # kill it in the middle of training, once the first epoch is written
        if log.is_file() and log.read_text().count('"epoch"') >= 2 or p.poll() is not None: break
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (tmp_path/'killed'/'run'/'train.json').exists(), "killed after training had finished: the test means to kill it inside a stage"
    p = _run(args('killed'), env); out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out
    def strip(run):   # the run folders differ (whole/, killed/): compare everything else, manifests with the folder named alike
        rows = json.loads((tmp_path/run/'report.json').read_text())['stages']
        same = lambda text: text.replace(str(tmp_path/run), 'RUN')
        return [dict({k: v for k, v in row.items() if k not in ('seconds', 'out', 'inputs', 'settings', 'manifests', 'upstream')},   # upstream: the manifests' hashes
                     settings={k: same(str(v)) for k, v in row['settings'].items()},
                     manifests={f: no_sha(json.loads(same((Path(row['out'])/f).read_text()))) for f in row['manifests']}) for row in rows]
    whole, killed = strip('whole'), strip('killed')
    assert [r['stage'] for r in killed] == list(STAGES) and killed == whole
    for net in ('train', 'affinity', 'segment'):     # checkpoints record where they started from, so compare their weights, not their hashes
        a, b = (torch.load(tmp_path/run/net/'last.pt', map_location='cpu', weights_only=False)['model'] for run in ('whole', 'killed'))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), net

def no_sha(d):
    "A manifest without the SHA-256 of the checkpoints it names"
    return {k: no_sha(v) if isinstance(v, dict) else v for k, v in d.items() if 'sha256' not in k} if isinstance(d, dict) else d

def test_dumped_voc_recipe_on_own_data_is_checked_before_any_stage(tmp_path):
    "A TOML of `aeft_run voc --dump` set to own data: each option that does not fit is refused before the first stage, naming the file, [stage] and option; --out inside the data is refused before it is made; the paper's numbers stay off the report"
    import numpy as np
    from PIL import Image
    from aeft.data import write_folder, write_cocofile
    from aeft.pipeline import report
    img, m = Image.new('RGB', (8, 8)), np.ones((8, 8), np.uint8)
    folder = write_folder(tmp_path/'own', ('cat', 'dog'), [('a', 'train', img, [0, 1], m), ('b', 'val', img, [1], None)])
    export = write_cocofile(tmp_path/'export', ('cat', 'dog'), [('a', img, m, None)])
    toml, run = tmp_path/'r.toml', tmp_path/'run'
    def refused(text, *args):
        toml.write_text(text)
        with pytest.raises(SystemExit) as e: aeft_run([str(toml), '--out', str(run), '--progress', 'False', *args])
        assert not run.exists()
        return str(e.value.code)
    text = dump_recipe(named_recipe('voc')).replace('data = "voc"', f'data = "folder"\nroot = "{folder}"')
    assert refused(text) == f"aeft_run: {toml}: [train] classes names ('cat', 'dog') but num_classes is 20; leave num_classes out, the data gives it"
    text = text.replace('num_classes = 20\n', '', 1)
    assert refused(text).startswith(f"""aeft_run: {toml}: [cam] split = "train_aug": {folder/'labels.csv'} lists no image of split 'train_aug'""")
    text = text.replace('split = "train_aug"\n', '')
    assert refused(text) == f"aeft_run: {toml}: [segment] num_labels is 21 but the data has 2 classes and the background; leave it out"
    text = text.replace('num_labels = 21\n', '')
    assert refused(text.replace('[train]\n', '[train]\nselect_on = "val"\n')) == \
        f"""aeft_run: {toml}: [train] select_on = "val": no image of val has a mask in {folder} to score on; set select_on = "none\""""
    assert refused(text.replace(f'data = "folder"\nroot = "{folder}"', f'data = "cocofile"\nroot = "{export}"')).startswith(
        f'aeft_run: {toml}: [predict] split = "val" (the default): ')
    assert refused(text, '--until', 'crf', '--out', str(folder/'masks'/'x')).endswith(f"is inside the data folder {folder}; write the outputs elsewhere")
    assert not (folder/'masks'/'x').exists()
    rows = [dict(stage='cam', out='seeds', seconds=1.0, scores=dict(seed_miou=50.0))]
    assert '| 56.0 |' in report(dict(recipe='voc', data='voc'), rows, tmp_path)
    assert '| 56.0 |' not in (own := report(dict(recipe='voc', data='folder'), rows, tmp_path)) and 'VOC test' not in own

def test_recipe_files_with_the_old_segment_num_classes(tmp_path, capsys):
    "[segment] num_classes of an older recipe file is read as num_labels with a note; both at once are refused naming the file"
    from aeft.pipeline import read_recipe
    f = tmp_path/'old.toml'
    f.write_text('recipe = "old"\n[segment]\nnum_classes = 7\n')
    assert read_recipe(f)['segment'] == {'num_labels': 7}
    assert f"aeft_run: {f}: [segment] num_classes is now num_labels" in capsys.readouterr().err
    f.write_text('recipe = "old"\n[segment]\nnum_classes = 7\nnum_labels = 7\n')
    with pytest.raises(ValueError, match=r"\[segment\] sets both num_labels and num_classes, its old name"): read_recipe(f)
