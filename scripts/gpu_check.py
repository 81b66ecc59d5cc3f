#!/usr/bin/env python
"""The GPU check: the tests marked `gpu` (every stage on the fixtures on CUDA: float32, bfloat16 + channels-last, torch.compile;
DDP with NCCL when there are two GPUs), then `make speed`'s measurement (python -m aeft.speed) on CUDA; every figure goes to one
JSON file. Meant to take under 10 minutes on one GPU. `--dry-run` (no GPU needed): collects the tests and runs the speed
measurement at its smallest setting on the CPU, so that the collection, the parsing and the JSON are checked without a GPU.

    python scripts/gpu_check.py --out gpu_check.json      # on a machine with a CUDA device
    python scripts/gpu_check.py --dry-run                  # anywhere: no GPU figure is produced
"""
import argparse, json, os, re, subprocess, sys, tempfile, time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_SPEED = ['--modes', 'fp32', '--warm_batch', '1', '--aeft_batch', '2', '--image_size', '64', '--steps', '1', '--warmup_steps', '0',
              '--cam_images', '1', '--cam_modes', 'fp32', '--cam_size', '64,64']   # the smallest measurement: checks the parsing, measures nothing of note
RATE = r'(?P<images_per_s>[\d.]+) images/s \((?P<seconds>[\d.]+) s an? (?:step|image)\), peak memory (?P<peak_mib>[\d,]+) MiB'

def run(cmd, timeout, env=None):
    "(return code or 'timed out', output, seconds) of the command `cmd` run in the project's root"
    t = time.time()
    try: p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env); rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e: rc, out = 'timed out', (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
    return rc, out, round(time.time() - t, 1)

def test_outcomes(junit):
    "{test id: 'passed' | 'failed' | 'skipped: reason'} from pytest's JUnit XML file"
    out = {}
    for case in ET.parse(junit).getroot().iter('testcase'):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find('failure') if case.find('failure') is not None else case.find('error')
        skip = case.find('skipped')
        out[name] = 'failed' if bad is not None else f"skipped: {skip.get('message')}" if skip is not None else 'passed'
    return out

def speed_figures(text):
    "The figures of aeft.speed's printout: training rows, projected hours, CAM inference rows"
    rows, hours = [], {}
    for line in text.splitlines():
        if m := re.match(r'train (?P<mode>\S+)\s+(?P<step>warm-up step|AEFT step)\s+batch\s+(?P<batch>\d+) at (?P<size>\d+)px: (?P<rest>.*)', line):
            rows.append(dict(kind='train', mode=m['mode'], step=m['step'], batch=int(m['batch']), size=int(m['size']), **_rate(m['rest'])))
        elif m := re.match(r'CAM inference (?P<mode>\S+)\s+(?P<how>batched|per scale)\s+(?P<size>\S+), [^:]*: (?P<rest>.*)', line):
            rows.append(dict(kind='cam', mode=m['mode'], batched=m['how'] == 'batched', size=m['size'], **_rate(m['rest'])))
        elif m := re.match(r'\s+(?P<mode>\S+)\s+(?P<h>[\d.]+) hours$', line): hours[m['mode']] = float(m['h'])
    return dict(rows=rows, projected_hours=hours)

def _rate(text):
    if m := re.search(RATE, text): return dict(images_per_s=float(m['images_per_s']), seconds=float(m['seconds']), peak_mib=float(m['peak_mib'].replace(',', '')))
    return dict(error=text.strip())

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='gpu_check.json', help='JSON file the figures are written to')
    ap.add_argument('--dry-run', action='store_true', help='no GPU: collect the gpu tests and run the speed measurement at its smallest setting on the CPU')
    ap.add_argument('--test_timeout', type=int, default=360, help='seconds the gpu tests may take')
    ap.add_argument('--speed_timeout', type=int, default=210, help='seconds the speed measurement may take')
    ap.add_argument('--speed', default='', help="more options of python -m aeft.speed (make speed's SPEED), e.g. '--modes fp32,bf16'")
    a = ap.parse_args(argv)
    import torch
    cuda = torch.cuda.is_available()
    if not cuda and not a.dry_run: sys.exit('gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, or with --dry-run')
    t0 = time.time()
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])])}
    res = dict(dry_run=a.dry_run, device=torch.cuda.get_device_name(0) if cuda else 'CPU (dry run: no GPU figures)', gpus=torch.cuda.device_count(),
               torch=torch.__version__, cuda=torch.version.cuda, started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp)/'gpu.xml'
        cmd = [sys.executable, '-m', 'pytest', 'tests/', '-m', 'gpu', '-q', '-p', 'no:cacheprovider', f'--junitxml={junit}'] + (['--collect-only'] if a.dry_run else [])
        rc, log, s = run(cmd, a.test_timeout, env)
        outcomes = test_outcomes(junit) if junit.is_file() and not a.dry_run else {}
        collected = re.findall(r'^(tests/\S+::\S+)$', log, re.M) if a.dry_run else sorted(outcomes)
        res['tests'] = dict(command=' '.join(cmd[1:]), returncode=rc, seconds=s, collected=collected, outcomes=outcomes,
                            **{k: sum(v.startswith(k) for v in outcomes.values()) for k in ('passed', 'failed', 'skipped')}, log_tail=log[-3000:])
    cmd = [sys.executable, '-m', 'aeft.speed', '--device', 'cuda' if cuda and not a.dry_run else 'cpu', *(TINY_SPEED if a.dry_run else []), *a.speed.split()]
    rc, log, s = run(cmd, a.speed_timeout, env)
    res['speed'] = dict(command=' '.join(cmd[1:]), returncode=rc, seconds=s, **speed_figures(log), log=log.splitlines())
    res['seconds'] = round(time.time() - t0, 1)
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    t = res['tests']
    print(f"gpu_check: {res['device']}: tests {len(t['collected'])} collected" + ('' if a.dry_run else f", {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped")
          + f"; speed: {len(res['speed']['rows'])} figures (return code {res['speed']['returncode']}); {res['seconds']} s; written to {a.out}")
    ok = t['returncode'] == 0 and res['speed']['returncode'] == 0 and all('error' not in r for r in res['speed']['rows'])
    return 0 if ok else 1

if __name__ == '__main__': sys.exit(main())
