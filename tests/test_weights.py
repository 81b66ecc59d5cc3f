"The released checkpoint layout end to end, and MXNet files written byte by byte from the format."
import os, struct, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch, torch.nn.functional as F
from aeft.backbones import resnet38d_cam
from aeft.weights import (load_official_checkpoint, official_state_dict, load_mxnet_params, save_mxnet_params,
                          mxnet_state_dict, LoadReport, atomic_write)

ROOT = Path(__file__).resolve().parents[1]
TSV = ROOT/'nbs/reference/official_resnet38d_gpp_state_dict.tsv'
BIN = Path(sys.executable).parent

def released_shapes():
    rows = [l.split('\t') for l in TSV.read_text().splitlines() if not l.startswith('#')]
    return {k: tuple(eval(s)) for k, s, _ in rows}

def random_released_checkpoint(seed=0):
    "A random state dict in the released key layout, scaled so that activations stay finite through 38 layers"
    g, sd = torch.Generator().manual_seed(seed), {}
    for k, shape in released_shapes().items():
        if k.endswith('num_batches_tracked'): sd[k] = torch.tensor(7)
        elif k.endswith('running_var'): sd[k] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 4: sd[k] = torch.randn(shape, generator=g) * (2/(shape[1]*shape[2]*shape[3]))**0.5
        else: sd[k] = torch.randn(shape, generator=g) * 0.1 + (1. if k.endswith('.weight') else 0.)
    return sd

# --- an independent forward pass of the released network, written from the architecture description only ---
def _bn(sd, x, p): return F.batch_norm(x, sd[p+'.running_mean'], sd[p+'.running_var'], sd[p+'.weight'], sd[p+'.bias'], False, 0., 1e-5)
def _conv(sd, x, p, stride=1, dil=1):
    w = sd[p+'.weight']; return F.conv2d(x, w, None, stride, dil*(w.shape[-1]//2), dil)

BLOCKS = ([('b2', 2, 1, 1), ('b2_1', 1, 1, 1), ('b2_2', 1, 1, 1), ('b3', 2, 1, 1), ('b3_1', 1, 1, 1), ('b3_2', 1, 1, 1), ('b4', 2, 1, 1)]
          + [(f'b4_{i}', 1, 1, 1) for i in range(1, 6)] + [('b5', 1, 1, 2), ('b5_1', 1, 2, 2), ('b5_2', 1, 2, 2), ('b6', 1, 4, 4), ('b7', 1, 4, 4)])

def reference_trunk(sd, x):
    "The trunk's output before bn7 and {block: its BN-ReLU'd input} (PSA's `forward_as_dict` taps conv4, conv5 at b5, b6)"
    x, taps = _conv(sd, x, 'conv1a'), {}
    for b, stride, d1, d in BLOCKS:
        a = taps[b] = F.relu(_bn(sd, x, b+'.bn_branch2a'))
        short = _conv(sd, a, b+'.conv_branch1', stride) if b+'.conv_branch1.weight' in sd else x
        if b+'.conv_branch2b2.weight' in sd:  # bottleneck: 1x1, dilated 3x3, 1x1
            h = _conv(sd, F.relu(_bn(sd, _conv(sd, a, b+'.conv_branch2a'), b+'.bn_branch2b1')), b+'.conv_branch2b1', 1, d)
            h = _conv(sd, F.relu(_bn(sd, h, b+'.bn_branch2b2')), b+'.conv_branch2b2')
        else: h = _conv(sd, F.relu(_bn(sd, _conv(sd, a, b+'.conv_branch2a', stride, d1), b+'.bn_branch2b1')), b+'.conv_branch2b1', 1, d)
        x = short + h
    return x, taps

def reference_forward(sd, x):
    x, _ = reference_trunk(sd, x)
    cam = _conv(sd, F.relu(_conv(sd, F.relu(_bn(sd, x, 'bn7')), 'fc8')), 'fc9')
    size = cam.shape[-2:]
    P = [F.interpolate(F.adaptive_avg_pool2d(cam, r), size=size, mode='bilinear', align_corners=False) for r in (2, 4, 8, 16)]
    def gate(i, x, y):
        pos, neg = [F.relu(x), F.relu(y)], [F.relu(-x), F.relu(-y)]
        a = torch.sigmoid(F.conv2d(torch.cat(pos, 1), sd[f'gconv{i}.att_p.0.weight'], padding=1))
        b = torch.sigmoid(F.conv2d(torch.cat(neg, 1), sd[f'gconv{i}.att_n.0.weight'], padding=1))
        return (pos[0]*a[:, :1] + pos[1]*a[:, 1:])/2 - (neg[0]*b[:, :1] + neg[1]*b[:, 1:])/2
    phat = gate(3, gate(2, gate(1, P[0], P[1]), P[2]), P[3])
    logits = (F.relu(cam)*F.relu(phat)).mean((2, 3)) - (F.relu(-cam)*F.relu(-phat)).mean((2, 3))
    return cam, logits, phat

@pytest.fixture(scope='module')
def released(tmp_path_factory):
    sd = random_released_checkpoint()
    path = tmp_path_factory.mktemp('ck')/'released.pth'
    torch.save({'module.' + k: v for k, v in sd.items()}, path)  # as saved from DataParallel
    return sd, path

def empty_model():
    with torch.device('meta'): m = resnet38d_cam(20)
    return m.to_empty(device='cpu').eval()

def test_random_released_checkpoint_round_trips_and_computes_the_released_forward(released):
    sd, path = released
    model = empty_model()
    assert load_official_checkpoint(model, path) == LoadReport([], [], [])
    back = official_state_dict(model)
    assert list(back) == list(sd)  # same keys, same order as the released file
    for k in sd: assert torch.equal(back[k], sd[k]), k
    x = torch.randn(2, 3, 40, 48)
    with torch.no_grad(): ours, ref = model(x), reference_forward(sd, x)
    assert ours[0].shape == (2, 20, 5, 6)
    for name, a, b in zip(('cam', 'logits', 'phat'), ours, ref): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)

def test_wrapped_and_unprefixed_checkpoints_load(released, tmp_path):
    sd, _ = released
    small = {k: v for k, v in sd.items() if k.startswith(('fc', 'gconv', 'conv1a'))}
    torch.save({'state_dict': small}, tmp_path/'w.pth')
    model = empty_model()
    r = load_official_checkpoint(model, tmp_path/'w.pth', strict=False)
    assert r.unexpected == [] and r.mismatched == [] and 'b7.conv_branch1.weight' in r.missing and 'fc8.weight' not in r.missing
    assert torch.equal(model.classifier.fc9.weight, sd['fc9.weight']) and torch.equal(model.gpp.gconv3.att_n[0].weight, sd['gconv3.att_n.0.weight'])
    with pytest.raises(ValueError, match=r"does not fit the model: \d+ missing \(b2.bn_branch2a.weight"): load_official_checkpoint(model, tmp_path/'w.pth')

def test_unreadable_checkpoints_are_refused_by_name(tmp_path):
    model = resnet38d_cam(3)
    (tmp_path/'bad.pth').write_bytes(b'\x00garbage')
    with pytest.raises(ValueError, match="cannot read .*bad.pth.* as a torch checkpoint"): load_official_checkpoint(model, tmp_path/'bad.pth')
    torch.save([1, 2], tmp_path/'list.pth')
    with pytest.raises(ValueError, match="does not hold a state dict"): load_official_checkpoint(model, tmp_path/'list.pth')
    with pytest.raises(FileNotFoundError, match="nope.pth"): load_official_checkpoint(model, tmp_path/'nope.pth')

# --- MXNet files, byte by byte -----------------------------------------------------------------------------
def header(n): return struct.pack('<QQQ', 0x112, 0, n)
def names(*ns): return struct.pack('<Q', len(ns)) + b''.join(struct.pack('<Q', len(n)) + n.encode() for n in ns)
def v2(shape, flag, data, stype=0): return struct.pack('<IiI', 0xF993FAC9, stype, len(shape)) + struct.pack(f'<{len(shape)}q', *shape) + struct.pack('<iii', 1, 0, flag) + data
def v1(shape, flag, data): return struct.pack('<II', 0xF993FAC8, len(shape)) + struct.pack(f'<{len(shape)}q', *shape) + struct.pack('<iii', 1, 0, flag) + data
def legacy(shape, flag, data): return struct.pack(f'<I{len(shape)}I', len(shape), *shape) + struct.pack('<iii', 2, 1, flag) + data

def write(tmp_path, b, name='f.params'):
    p = tmp_path/name; p.write_bytes(b); return p

def test_v2_v1_legacy_and_dtypes(tmp_path):
    f32 = struct.pack('<4f', 1, 2, 3, 4)
    f16 = np.array([0.5, -1.5, 65504], '<f2').tobytes()
    body = (header(5) + v2((2, 2), 0, f32) + v1((3,), 2, f16) + legacy((1, 2), 4, struct.pack('<2i', -7, 9))
            + v2((1,), 1, struct.pack('<d', 0.25)) + legacy((2,), 5, struct.pack('<2b', -1, 3))
            + names('arg:conv1a_weight', 'aux:bn7_moving_var', 'x', 'arg:y', 'z'))
    p = load_mxnet_params(write(tmp_path, body))
    assert list(p) == ['arg:conv1a_weight', 'aux:bn7_moving_var', 'x', 'arg:y', 'z']
    np.testing.assert_array_equal(p['arg:conv1a_weight'], np.float32([[1, 2], [3, 4]]))
    assert p['aux:bn7_moving_var'].dtype == np.float16 and p['aux:bn7_moving_var'].tolist() == [0.5, -1.5, 65504]
    assert p['x'].dtype == np.int32 and p['x'].tolist() == [[-7, 9]]
    assert p['arg:y'].dtype == np.float64 and p['z'].tolist() == [-1, 3]
    assert p['z'].flags.writeable  # copies, not views of the file buffer

def test_unnamed_list_and_uint8_int64(tmp_path):
    body = header(2) + v2((2,), 3, bytes([250, 7])) + v1((1,), 6, struct.pack('<q', -2**40)) + struct.pack('<Q', 0)
    p = load_mxnet_params(write(tmp_path, body))
    assert list(p) == [0, 1] and p[0].tolist() == [250, 7] and p[1].tolist() == [-2**40]

def test_prefixed_and_unprefixed_names_map_the_same(tmp_path):
    w = np.arange(64*27, dtype=np.float32).reshape(64, 3, 3, 3)
    for n in ('arg:conv1a_weight', 'conv1a_weight'):
        save_mxnet_params(tmp_path/'a.params', {n: w, 'aux:linear1000_bias' if ':' in n else 'linear1000_bias': np.zeros(1000, np.float32)})
        sd = mxnet_state_dict(load_mxnet_params(tmp_path/'a.params'))
        assert list(sd) == ['conv1a.weight'] and torch.equal(sd['conv1a.weight'], torch.from_numpy(w))

@pytest.mark.parametrize('cut', [5, 24, 30, 50, 60, 70, 80])
def test_truncated_files_name_the_part(tmp_path, cut):
    body = header(1) + v2((2,), 0, struct.pack('<2f', 1, 2)) + names('arg:w')  # header 24, array 40, names 8 + 8 + 5 bytes
    where = 'the header' if cut < 24 else 'array 0 of 1' if cut < 64 else 'the name list' if cut < 72 else 'name 0 of 1'
    with pytest.raises(ValueError, match=f"{where}.*file truncated"): load_mxnet_params(write(tmp_path, body[:cut]))

def test_bad_magics_storage_types_dtypes_and_name_counts(tmp_path):
    good = v2((1,), 0, struct.pack('<f', 1))
    with pytest.raises(ValueError, match="bad magic 0x113: not an MXNet NDArray file"):
        load_mxnet_params(write(tmp_path, struct.pack('<QQQ', 0x113, 0, 1) + good + names('w')))
    with pytest.raises(ValueError, match="array 1 of 2 .*bad magic 0xF993FACA"):
        load_mxnet_params(write(tmp_path, header(2) + good + struct.pack('<I', 0xF993FACA) + good[4:] + names('a', 'b')))
    for stype, kind in ((1, 'row_sparse'), (2, 'csr')):
        with pytest.raises(ValueError, match=f"array 0 of 1 .*storage type {stype} \\({kind}\\) is not dense"):
            load_mxnet_params(write(tmp_path, header(1) + v2((1,), 0, b'\0'*4, stype=stype) + names('w')))
    with pytest.raises(ValueError, match="unsupported dtype flag 12"):
        load_mxnet_params(write(tmp_path, header(1) + v2((1,), 12, b'\0\0') + names('w')))
    with pytest.raises(ValueError, match="3 names for 1 arrays"):
        load_mxnet_params(write(tmp_path, header(1) + good + names('a', 'b', 'c')))

def test_shape_mismatch_names_the_array(tmp_path):
    save_mxnet_params(tmp_path/'s.params', {'arg:res7a_branch2b2_weight': np.zeros((4096, 1024, 1, 1), np.float16)})
    with pytest.raises(ValueError, match="'arg:res7a_branch2b2_weight' has shape \\(4096, 1024, 1, 1\\), but b7.conv_branch2b2.weight"):
        mxnet_state_dict(load_mxnet_params(tmp_path/'s.params'))

# --- the converter command ----------------------------------------------------------------------------------
def convert(src, dst):
    return subprocess.run([str(BIN/'aeft_convert_mxnet'), str(src), str(dst)], capture_output=True, text=True)

def test_converter_end_to_end_and_atomic(tmp_path):
    arrs = {'arg:conv1a_weight': np.random.rand(64, 3, 3, 3).astype(np.float32),
            'arg:bn3b1_branch2b1_gamma': np.random.rand(256).astype(np.float16),
            'aux:bn3b1_branch2b1_moving_mean': np.random.rand(256).astype(np.float64),
            'arg:linear1000_weight': np.zeros((1000, 4096), np.float32)}
    save_mxnet_params(tmp_path/'r.params', arrs, 'legacy')
    r = convert(tmp_path/'r.params', tmp_path/'r.pth')
    assert r.returncode == 0, r.stderr
    assert 'wrote 3 tensors' in r.stdout
    sd = torch.load(tmp_path/'r.pth', weights_only=True)
    assert sorted(sd) == ['b3_1.bn_branch2b1.running_mean', 'b3_1.bn_branch2b1.weight', 'conv1a.weight']
    assert all(v.dtype == torch.float32 for v in sd.values())
    np.testing.assert_allclose(sd['b3_1.bn_branch2b1.weight'].numpy(), arrs['arg:bn3b1_branch2b1_gamma'].astype(np.float32))
    before = (tmp_path/'r.pth').read_bytes()
    (tmp_path/'bad.params').write_bytes((tmp_path/'r.params').read_bytes()[:-100])
    r = convert(tmp_path/'bad.params', tmp_path/'r.pth')
    assert r.returncode == 1 and 'aeft_convert_mxnet:' in r.stderr and 'truncated' in r.stderr
    assert (tmp_path/'r.pth').read_bytes() == before  # the old output survives a failed conversion
    r = convert(tmp_path/'r.params', tmp_path/'no_such_dir'/'r.pth')
    assert r.returncode == 1 and 'does not exist' in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.params', 'r.params', 'r.pth']  # no temporary files left

# --- the one atomic writer ------------------------------------------------------------------------------------
@pytest.mark.parametrize('interrupt', [RuntimeError('disk full'), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_previous_file_and_no_temporary(tmp_path, interrupt):
    atomic_write(tmp_path/'ck.pt', lambda f: torch.save({'step': 1}, f))
    def torn(f):
        f.write(b'\x80\x02 the first bytes of a pickle'); f.flush()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.ck.pt.')]   # the bytes go to a temporary beside it
        raise interrupt
    with pytest.raises(type(interrupt)): atomic_write(tmp_path/'ck.pt', torn)
    assert torch.load(tmp_path/'ck.pt') == {'step': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['ck.pt']

def test_sigkill_while_writing_keeps_the_previous_file(tmp_path):
    "A process killed outright cannot clean up: the previous file survives intact, and only a hidden temporary is left"
    atomic_write(tmp_path/'big.bin', lambda f: f.write(b'old'))
    code = ("import time, sys; from aeft.weights import atomic_write\n"
            "def slow(f):\n    f.write(b'new' * 1000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
            f"atomic_write({str(tmp_path/'big.bin')!r}, slow)")
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'writing'
    p.kill(); p.wait()
    assert (tmp_path/'big.bin').read_bytes() == b'old'
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left[-1] == 'big.bin' and all(n.startswith('.big.bin.') and n.endswith('.tmp') for n in left[:-1]) and len(left) == 2

def test_atomic_write_refuses_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'): atomic_write(tmp_path/'no'/'f.json', lambda f: f.write(b'{}'))
