"aeft_train's --init: converted ImageNet weights go into the ResNet-38d backbone exactly; weights that do not fit stop it"
import pytest, torch
from aeft.config import make_config, build_model
from aeft.weights import official_state_dict
from aeft.train import init_backbone

def test_init_backbone_loads_every_tensor(tmp_path):
    cfg = make_config('voc')
    src, dst = build_model(cfg), build_model(make_config('voc', seed=1))
    sd = official_state_dict(src.backbone)
    torch.save(sd, tmp_path/'w.pth')
    assert not torch.equal(official_state_dict(dst.backbone)['conv1a.weight'], sd['conv1a.weight'])
    assert not any(init_backbone(dst, cfg, tmp_path/'w.pth'))
    got = official_state_dict(dst.backbone)
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    convs = lambda m: [p for p in m.classifier.parameters() if p.dim() > 1]
    assert not any(torch.equal(a, b) for a, b in zip(convs(dst), convs(src)))   # only the backbone is loaded
    torch.save({k: v for k, v in sd.items() if 'b7' not in k}, tmp_path/'part.pth')
    with pytest.raises(ValueError, match='does not fit the model: .* missing'): init_backbone(dst, cfg, tmp_path/'part.pth')
