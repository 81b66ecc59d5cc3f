"On a CUDA device (every test skipped without one; `pytest -m gpu`, or scripts/gpu_check.py with `make speed`): every stage of the tiny VOC recipe through aeft_run in float32, in bfloat16 + channels-last and through torch.compile; CAMs, affinities and the walk on CUDA against the CPU; the AEFT step under DDP with NCCL on two GPUs"
import math, socket, warnings
import numpy as np, pytest, torch, torch.distributed as dist, torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP
from aeft.pipeline import STAGES, dump_recipe, aeft_run
from aeft.voc import write_tiny_voc
from aeft.gpp import CAMNet, TinyBackbone
from aeft.cam import multiscale_cams
from aeft.affinity import radius_pairs, affinities
from aeft.pseudo import random_walk
from aeft.step import AEFTConfig, aeft_step
from test_run import _tiny_voc_recipe

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device'),
              pytest.mark.filterwarnings('ignore:VOC split')]

NETS = ('train', 'affinity', 'segment')   # the stages that train a network: they take --bf16, --channels_last and --compile
MODES = dict(fp32={}, bf16_cl=dict(bf16=True, channels_last=True), compiled=dict(bf16=True, channels_last=True, compile=True))

@pytest.mark.parametrize('mode', MODES)
def test_every_stage_on_cuda(tmp_path, mode):
    "aeft_run on the VOC-format fixture with every network on CUDA: each stage runs, the report holds every stage and finite scores"
    root = write_tiny_voc(tmp_path/'voc')
    r = _tiny_voc_recipe(root)
    for s in ('train', 'cam', 'affinity', 'pseudo', 'segment', 'predict'): r[s]['device'] = 'cuda'
    for s in NETS: r[s].update(MODES[mode])
    if mode != 'fp32': r['cam'].update(bf16=True, channels_last=True)
    (tmp_path/'r.toml').write_text(dump_recipe(r))
    torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rows = aeft_run([str(tmp_path/'r.toml'), '--out', str(tmp_path/'run'), '--progress', 'False'])
    assert [row['stage'] for row in rows] == [s for s in STAGES if s != 'data']          # VOC data: no data stage
    assert torch.cuda.max_memory_allocated() > 0                     # the networks ran on the GPU
    scores = [v for row in rows for v in row['scores'].values() if isinstance(v, (int, float))]
    assert scores and all(math.isfinite(v) and 0 <= v <= 100 for v in scores), rows

def test_cams_on_cuda_equal_the_cpu():
    "Multi-scale CAMs of one network on CUDA (float32) equal the CPU's to float rounding; bfloat16 + channels-last stays close"
    torch.manual_seed(0)
    net = CAMNet(TinyBackbone(8), 20).eval()
    imgs = [torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    cpu, lc = multiscale_cams(net, imgs, scales=(0.5, 1.0, 1.5))
    gpu, lg = multiscale_cams(net.cuda(), imgs, scales=(0.5, 1.0, 1.5))
    for a, b in zip(cpu, gpu): torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(lg, lc, atol=1e-3, rtol=1e-3)
    half, _ = multiscale_cams(net, imgs, scales=(0.5, 1.0, 1.5), bf16=True, channels_last=True)
    for a, b in zip(cpu, half): assert (b - a).abs().max() <= 0.05*a.abs().max() + 1e-3

def test_affinities_and_walk_on_cuda():
    "The affinities in chunks equal them at once on CUDA and the CPU's; the sparse and dense walks agree on CUDA and with the CPU"
    g = torch.Generator().manual_seed(0)
    f, pairs, s = torch.rand(1, 448, 23, 31, generator=g), radius_pairs(23, 31), torch.rand(21, 23*31, generator=g)
    a = affinities(f.cuda(), pairs)
    assert torch.equal(affinities(f.cuda(), pairs, chunk=1000), a)
    torch.testing.assert_close(a.cpu(), affinities(f, pairs), atol=1e-6, rtol=1e-5)
    sparse, dense = (random_walk(s.cuda(), a[0], pairs, walk=w) for w in ('sparse', 'dense'))
    assert (sparse - dense).abs().max() <= 1e-4
    torch.testing.assert_close(sparse.cpu(), random_walk(s, a[0].cpu(), pairs), atol=1e-5, rtol=1e-4)

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _nccl_worker(rank, world, port, out):
    torch.cuda.set_device(rank)
    dist.init_process_group('nccl', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    torch.manual_seed(0)
    net = DDP(CAMNet(TinyBackbone(4), 4).cuda(), device_ids=[rank])
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(8, 3, 32, 32, generator=g).cuda(), (torch.rand(8, 4, generator=g) < 0.4).float().cuda()
    loss, _ = aeft_step(net, (x, y), AEFTConfig(min_triplets=1), torch.Generator().manual_seed(rank))
    loss.backward()
    out[rank] = dict(grad=net.module.gpp.gconv1.att_p[0].weight.grad.cpu().clone(), finite=bool(torch.isfinite(loss)))
    dist.destroy_process_group()

@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='DDP with NCCL needs two GPUs')
def test_aeft_step_under_ddp_nccl():
    "The AEFT step on two GPUs under DDP with NCCL: finite losses, gradients all-reduced to the same values on both ranks"
    out = mp.Manager().dict()
    mp.spawn(_nccl_worker, args=(2, _free_port(), out), nprocs=2)
    assert out[0]['finite'] and out[1]['finite']
    assert torch.equal(out[0]['grad'], out[1]['grad'])
