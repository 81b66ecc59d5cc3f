"""One aeft_crf process against two shares (--shard 1/2 and 2/2) run at the same time into one folder, on the genuine VOC photos of
tests/data/voc-sample (seeds made from their masks, blurred): prints the wall time of each and whether the outputs are the same bytes.
Run: OMP_NUM_THREADS=1 python scripts/shard_benchmark.py [--repeat N]"""
import argparse, filecmp, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from scipy.ndimage import gaussian_filter
from aeft.voc import voc_root, load_mask, read_ids
from aeft.artefacts import save_seeds

SAMPLE = Path(__file__).resolve().parents[1]/'tests'/'data'/'voc-sample'
BIN = Path(sys.executable).parent

def same_files(a, b):
    "Whether the folders `a` and `b` hold the same files with the same bytes"
    names = [sorted(str(p.relative_to(d)) for p in Path(d).rglob('*') if p.is_file()) for d in (a, b)]
    return names[0] == names[1] and filecmp.cmpfiles(a, b, names[0], shallow=False)[0] == names[0]

def seeds(folder, ids):
    "Seeds {class: map} of each image from its mask: each class's region blurred (sigma 8) and max-normalised"
    voc = voc_root(SAMPLE); folder.mkdir()
    for id in ids:
        m = load_mask(voc, id)[0]
        maps = {int(v) - 1: gaussian_filter((m == v).astype(np.float32), 8) for v in np.unique(m) if 0 < v < 255}
        save_seeds({k: (x/(x.max() + 1e-5)).astype(np.float32) for k, x in maps.items()}, folder/f'{id}.npy')

def crf(seeds, out, *extra):
    return subprocess.Popen([str(BIN/'aeft_crf'), str(seeds), '--root', str(SAMPLE), '--ids', str(seeds.parent/'ids.txt'), '--out', str(out), '--processes', '1',
                             '--progress', 'False', *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def timed(*ps):
    "Wall seconds until every process of `ps` (started just before) has ended; each must succeed"
    t = time.perf_counter()
    for p in ps:
        _, err = p.communicate()
        if p.returncode: raise SystemExit(err)
    return time.perf_counter() - t

if __name__ == '__main__':
    a = argparse.ArgumentParser(description=__doc__.split('\n')[0]); a.add_argument('--repeat', type=int, default=1); n = a.parse_args().repeat
    ids = read_ids(SAMPLE/'VOC2012'/'ImageSets'/'Segmentation'/'trainval.txt')
    for r in range(n):
        t = Path(tempfile.mkdtemp(prefix='shards-')); seeds(t/'seeds', ids); (t/'ids.txt').write_text('\n'.join(ids) + '\n')
        one = timed(crf(t/'seeds', t/'one'))
        two = timed(crf(t/'seeds', t/'two', '--shard', '1/2'), crf(t/'seeds', t/'two', '--shard', '2/2'))
        same = same_files(t/'one', t/'two')
        print(f"aeft_crf on {len(ids)} VOC photos, alphas 2 and 21: one process {one:.1f}s; --shard 1/2 + 2/2 at once {two:.1f}s "
              f"({one/two:.2f}x); outputs byte-identical: {same}; {len(os.sched_getaffinity(0))} CPUs for this process")
        shutil.rmtree(t)
