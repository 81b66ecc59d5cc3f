"The AEFT step under DistributedDataParallel (2 CPU processes, gloo): two forwards per backward, BN stats kept."
import socket
import pytest, torch, torch.distributed as dist, torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP
from aeft.gpp import CAMNet, TinyBackbone
from aeft.step import AEFTConfig, aeft_step

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def worker(rank, world, port, broadcast_buffers, out):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    torch.manual_seed(0)
    net, ref = (DDP(CAMNet(TinyBackbone(4), 4), broadcast_buffers=broadcast_buffers) for _ in range(2))
    ref.load_state_dict(net.state_dict())
    g = torch.Generator().manual_seed(rank)
    for _ in range(2):
        x, y = torch.randn(8, 3, 32, 32, generator=g), (torch.rand(8, 4, generator=g) < 0.4).float()
        loss, _ = aeft_step(net, (x, y), AEFTConfig(min_triplets=1), g)
        loss.backward()
        ref(x)[1].sum().backward()                                   # the anchor pass alone
    bufs = {k: v for k, v in net.module.state_dict().items() if 'running' in k or 'num_batches' in k}
    out[rank] = {'bn_equal': all(torch.equal(v, ref.module.state_dict()[k]) for k, v in bufs.items()),
                 'grad': net.module.gpp.gconv1.att_p[0].weight.grad.clone(), 'finite': bool(torch.isfinite(loss))}
    dist.destroy_process_group()

@pytest.mark.parametrize('broadcast_buffers', [True, False])
def test_step_under_ddp(broadcast_buffers):
    out = mp.Manager().dict()
    mp.spawn(worker, args=(2, free_port(), broadcast_buffers, out), nprocs=2)
    assert out[0]['finite'] and out[1]['finite']
    assert out[0]['bn_equal'] and out[1]['bn_equal']                  # the positive pass changed no BN statistic
    assert torch.equal(out[0]['grad'], out[1]['grad'])                # gradients were all-reduced across ranks
