"Backbone switches and layouts that the notebook shows once, checked across the options."
from pathlib import Path
import pytest, torch, torch.nn as nn
from aeft.backbones import ResNet38d, ResNet50, resnet38d_cam, resnet50_cam, ours_to_official

TSV = Path(__file__).resolve().parents[1]/'nbs/reference/official_resnet38d_gpp_state_dict.tsv'

@pytest.mark.parametrize('head', ['gpp', 'gap'])
def test_every_released_key_and_shape_exists(head):
    rows = [l.split('\t') for l in TSV.read_text().splitlines() if not l.startswith('#')]
    with torch.device('meta'): m = resnet38d_cam(20, head)
    ours = {ours_to_official(k): tuple(v.shape) for k, v in m.state_dict().items()}
    missing = [k for k, s, _ in rows if ours.get(k) != tuple(eval(s))]
    assert missing == ([] if head == 'gpp' else [k for k, _, _ in rows if k.startswith('gconv')])

def grads_after_step(model, size=32):
    model.train()
    model(torch.randn(2, 3, size, size))[1].sum().backward()
    return {n: p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()}

def test_resnet50_freezing_switches():
    m = resnet50_cam(4, 'gpp', output_stride=8, freeze_bn=True, frozen=('conv1', 'layer1'))
    g = grads_after_step(m)
    assert not any(v for n, v in g.items() if n.startswith(('backbone.conv1', 'backbone.layer1')) or '.bn' in n)
    assert g['backbone.layer2.0.conv1.weight'] and g['backbone.layer4.2.conv3.weight'] and g['classifier.weight']
    assert all(not b.training for b in m.backbone.bns())
    bn = m.backbone.layer3[0].bn1; before = bn.running_mean.clone()
    m(torch.randn(2, 3, 32, 32)); assert torch.equal(bn.running_mean, before)  # frozen statistics do not move

def test_unfrozen_resnet38d_trains_everything_and_updates_statistics():
    net = ResNet38d(freeze_bn=False, frozen=(), dropout=(0., 0.)).train()
    assert all(p.requires_grad for p in net.parameters())
    assert net.b6.dropout_2b1.p == 0 and net.b7.dropout_2b2.p == 0
    before = net.b2.bn_branch2a.running_mean.clone()
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert not torch.equal(net.b2.bn_branch2a.running_mean, before)
    assert net.conv1a.weight.grad is not None and net.bn7.weight.grad is not None

def test_released_dropout_is_channelwise_in_b6_b7_only():
    net = ResNet38d()
    drops = {n: m.p for n, m in net.named_modules() if isinstance(m, nn.Dropout2d)}
    assert drops == {'b6.dropout_2b1': 0.2, 'b6.dropout_2b2': 0.2, 'b7.dropout_2b1': 0.2, 'b7.dropout_2b2': 0.2}   # Net_gpp of the released networks/resnet38d.py
    x = torch.randn(1, 3, 32, 32)
    net.eval()
    with torch.no_grad(): assert torch.equal(net(x), net(x))  # no dropout at inference
