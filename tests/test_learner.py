"The learner's callbacks where the notebook does not show them: progress off and on a terminal, an epoch cut short by a callback"
import contextlib, io
from pathlib import Path
import pytest, torch
from torch.utils.data import TensorDataset
from aeft.config import TrainConfig, build_model
from aeft.learner import Learner, Callback, CancelEpochException, read_log
pytestmark = pytest.mark.usefixtures('one_thread')

g = torch.Generator().manual_seed(0)
TOY = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), (torch.rand(32, 6, generator=g) < 0.3).float())
CFG = TrainConfig.synthetic(epochs=2, warmup=2, image_size=32, width=4, batch_size=8, device='cpu')

class TTY(io.StringIO):
    def isatty(self): return True

def printed(out, stdout):
    with contextlib.redirect_stdout(stdout):
        learn = Learner(build_model(CFG), TOY, CFG, out).fit()            # progress=True: ProgressCB() chooses
    return learn, stdout.getvalue()

def test_progress_off_a_terminal_prints_one_line_per_epoch(tmp_path):
    "Written to a file (not a TTY), the default progress is the epoch rows only: no bar, no carriage returns"
    _, text = printed(tmp_path, io.StringIO())
    assert '\r' not in text and [l.split()[:4] for l in text.splitlines()] == [['epoch', '0', 'step', '4'], ['epoch', '1', 'step', '8']], text

def test_progress_on_a_terminal_draws_bars(tmp_path):
    "On a TTY the default progress draws fastprogress's bars (carriage returns) and still prints the epoch rows"
    _, text = printed(tmp_path, TTY())
    assert '\r' in text and 'epoch 1 step 8 phase warmup time' in text

def test_an_epoch_cut_short_is_logged_and_saved(tmp_path):
    "CancelEpochException after 2 of 4 batches: each epoch's row holds the means of its 2 steps, and the checkpoint follows"
    class Half(Callback):
        def after_batch(self, learn):
            if learn.i == 1: raise CancelEpochException()
    learn = Learner(build_model(CFG), TOY, CFG, tmp_path, cbs=[Half()], progress=False).fit()
    rows = read_log(Path(tmp_path)/'log.jsonl')
    steps = [r for r in rows if r['kind'] == 'step']
    epochs = [r for r in rows if r['kind'] == 'epoch']
    assert learn.step == 4 and [r['step'] for r in epochs] == [2, 4]
    assert abs(epochs[1]['loss'] - (steps[2]['loss'] + steps[3]['loss'])/2) < 1e-12
    assert torch.load(Path(tmp_path)/'last.pt', weights_only=False)['epoch'] == 2
