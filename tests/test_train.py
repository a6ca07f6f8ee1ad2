"Tests of robust_nb.train: optimizer defaults, bit-identical resume, safe checkpoints, evaluate, progress output."
import pickle
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robust_nb.core import set_seed
from robust_nb.train import (fit, make_optimizer, evaluate, save_checkpoint, load_checkpoint, lr_factor,
                             cross_entropy_loss, OPTIMIZERS, read_checkpoint, prepare_out_dir, progress_bars, progress_mode)



def _data(n=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    w = torch.randn(64, 4, generator=g)
    return x, (x.flatten(1) @ w).argmax(1)


def _dl(n=192, bs=32, shuffle=True):
    return DataLoader(TensorDataset(*_data(n)), batch_size=bs, shuffle=shuffle)


def _net(seed=0):
    "A small model with every kind of state fit must restore: BN buffers, dropout (RNG), several parameters."
    set_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.2), nn.Linear(4 * 36, 4))


def _assert_same(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa: assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------- public API and optimizers


@pytest.mark.parametrize('name, expected', [
    ('sgd', dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)),
    ('sgd_momentum', dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False)),
    ('adam', dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)),
    ('rmsprop', dict(alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0)),
])
def test_optimizer_defaults_are_app_4A(name, expected):
    o = make_optimizer(name, [nn.Parameter(torch.zeros(2))], 0.01)
    assert {k: o.param_groups[0][k] for k in expected} == expected
    assert o.param_groups[0]['lr'] == 0.01


def test_optimizer_bad_input():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="opt got 'adagrad'"): make_optimizer('adagrad', p, 0.1)
    with pytest.raises(ValueError, match='lr got 0'): make_optimizer('sgd', p, 0)
    with pytest.raises(ValueError, match='lr got nan'): make_optimizer('sgd', p, float('nan'))
    with pytest.raises(ValueError, match='betas'): make_optimizer('sgd', p, 0.1, betas=(0.9, 0.99))


def test_optimizer_override():
    o = make_optimizer('sgd_momentum', [nn.Parameter(torch.zeros(2))], 0.1, weight_decay=2e-4, nesterov=True)
    assert o.param_groups[0]['weight_decay'] == 2e-4 and o.param_groups[0]['nesterov'] is True


def test_schedules_closed_form():
    f = lr_factor({'name': 'step', 'milestones': [100, 150], 'gamma': 0.1}, epochs=200, steps_per_epoch=3)
    assert [f(i) for i in (0, 299, 300, 449, 450, 599)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    c = lr_factor({'name': 'cosine', 'warmup': 5}, epochs=90, steps_per_epoch=10)
    assert c(0) == pytest.approx(1 / 50) and c(49) == pytest.approx(1.0)
    assert c(50 + 425) == pytest.approx(0.5) and 0 < c(899) < 1e-4
    assert lr_factor(None, epochs=1, steps_per_epoch=1)(7) == 1.0
    with pytest.raises(ValueError, match="sched got 'cosine'"): lr_factor('cosine', epochs=3, steps_per_epoch=2)
    with pytest.raises(ValueError, match='gamma'): lr_factor({'name': 'step', 'milestones': [1], 'gamma': -1}, epochs=3, steps_per_epoch=2)


# ---------------------------------------------------------------- fit

def test_fit_trains_and_returns_history():
    dl = _dl(); m = _net()
    h = fit(m, dl, epochs=4, lr=0.1, opt='sgd_momentum', valid_dl=_dl(shuffle=False), progress=False, device='cpu')
    assert list(h.columns) == ['epoch', 'train_loss', 'train_acc', 'valid_acc', 'lr', 'time']
    assert h.epoch.tolist() == [1, 2, 3, 4]
    assert h.train_loss.iloc[-1] < h.train_loss.iloc[0]
    assert h.train_acc.between(0, 1).all() and h.valid_acc.between(0, 1).all()
    assert h.valid_acc.iloc[-1] == pytest.approx(evaluate(m, _dl(shuffle=False)))
    assert m.training  # fit leaves the model in train mode


def test_fit_same_seed_same_result_other_seed_differs():
    runs = []
    for seed in (3, 3, 4):
        m = _net()
        fit(m, _dl(), epochs=2, lr=0.05, seed=seed, progress=False, device='cpu')
        runs.append(m)
    _assert_same(runs[0], runs[1])
    assert not torch.equal(runs[0][-1].weight, runs[2][-1].weight)


@pytest.mark.parametrize('opt, sched', [
    ('sgd', {'name': 'step', 'milestones': [1, 2], 'gamma': 0.5}),
    ('sgd_momentum', None),
    ('adam', {'name': 'cosine', 'warmup': 1}),
    ('rmsprop', {'name': 'cosine', 'warmup': 0.5}),
])
def test_resume_after_crash_is_bit_identical(tmp_path, opt, sched):
    "3 epochs straight == killed in epoch 3 and resumed from the epoch-2 checkpoint (into a fresh model)."
    cfg = dict(epochs=3, lr=0.01 if opt in ('adam', 'rmsprop') else 0.1, opt=opt, sched=sched, seed=11,
               valid_dl=_dl(64, shuffle=False), progress=False, device='cpu')
    dl = _dl()
    straight = _net(); h1 = fit(straight, dl, ckpt_path=tmp_path / 'a.pt', **cfg)
    n = {'calls': 0}
    def crash(model, x, y):
        n['calls'] += 1
        if n['calls'] > 2 * len(dl) + 2: raise KeyboardInterrupt  # like a killed job
        return cross_entropy_loss(model, x, y)
    with pytest.raises(KeyboardInterrupt): fit(_net(), dl, loss=crash, ckpt_path=tmp_path / 'b.pt', **cfg)
    assert torch.load(tmp_path / 'b.pt', weights_only=True)['epoch'] == 2
    resumed = _net(seed=99)  # other initial weights: everything must come from the checkpoint
    h2 = fit(resumed, dl, ckpt_path=tmp_path / 'b.pt', resume=True, **cfg)
    _assert_same(straight, resumed)
    cols = ['epoch', 'train_loss', 'train_acc', 'valid_acc', 'lr']
    assert h1[cols].equals(h2[cols])
    # the generators also end where an uninterrupted run leaves them
    after_resume = torch.rand(4)
    fit(_net(), dl, ckpt_path=tmp_path / 'c.pt', **cfg); assert torch.equal(torch.rand(4), after_resume)


def test_resume_with_a_loader_that_has_its_own_generator(tmp_path):
    "robust_nb.data.loaders shuffles with a private torch.Generator: fit must re-seed it per epoch too."
    from robust_nb.data import loaders
    def dl(): return loaders(TensorDataset(*_data()), batch_size=32, seed=0)
    cfg = dict(epochs=3, lr=0.1, opt='sgd_momentum', seed=2, progress=False, device='cpu')
    straight = _net(); fit(straight, dl(), **cfg)
    m = _net(); fit(m, dl(), ckpt_path=tmp_path / 'g.pt', **{**cfg, 'epochs': 1})
    fit(m, dl(), ckpt_path=tmp_path / 'g.pt', resume=True, **cfg)  # a fresh loader, its generator back at seed 0
    _assert_same(straight, m)
    other = _net(); fit(other, dl(), **{**cfg, 'seed': 3})
    assert not torch.equal(other[-1].weight, straight[-1].weight)


def test_resume_two_epochs_then_one_more(tmp_path):
    "The literal recipe: fit 2 epochs, then fit(epochs=3, resume=True) == fit 3 epochs (schedule that ignores the total)."
    cfg = dict(lr=0.1, opt='sgd_momentum', sched={'name': 'step', 'milestones': [2]}, seed=5, progress=False, device='cpu')
    straight = _net(); fit(straight, _dl(), epochs=3, **cfg)
    m = _net(); fit(m, _dl(), epochs=2, ckpt_path=tmp_path / 'r.pt', **cfg)
    h = fit(m, _dl(), epochs=3, ckpt_path=tmp_path / 'r.pt', resume=True, **cfg)
    _assert_same(straight, m)
    assert h.epoch.tolist() == [1, 2, 3]
    # resuming a finished run changes nothing
    fit(m, _dl(), epochs=3, ckpt_path=tmp_path / 'r.pt', resume=True, **cfg)
    _assert_same(straight, m)


def test_resume_without_checkpoint_warns_and_trains(tmp_path):
    m = _net()
    with pytest.warns(UserWarning, match='does not exist yet'):
        h = fit(m, _dl(), epochs=1, lr=0.1, ckpt_path=tmp_path / 'new.pt', resume=True, progress=False, device='cpu')
    assert len(h) == 1 and (tmp_path / 'new.pt').is_file()


def test_checkpoint_contents_are_weights_only(tmp_path):
    m = _net()
    fit(m, _dl(), epochs=2, lr=0.1, opt='adam', ckpt_path=tmp_path / 'c.pt', progress=False, device='cpu')
    ck = torch.load(tmp_path / 'c.pt', weights_only=True)
    assert ck['epoch'] == 2 and len(ck['history']) == 2
    assert {'model', 'optimizer', 'scheduler', 'rng', 'history', 'config'} <= set(ck)
    assert isinstance(ck['rng']['torch'], torch.Tensor) and isinstance(ck['rng']['numpy'], torch.Tensor)
    assert [p.name for p in tmp_path.iterdir()] == ['c.pt']


def test_fit_loss_contract():
    vec = lambda model, x, y: F.cross_entropy(model(x), y, reduction='none')
    h = fit(_net(), _dl(), epochs=1, lr=0.1, loss=vec, progress=False, device='cpu')
    assert h.train_acc.between(0, 1).all() and h.train_loss.notna().all()   # no logits: clean-batch accuracy, never NaN
    with pytest.raises(ValueError, match='loss returned a sequence of 3'):
        fit(_net(), _dl(), epochs=1, lr=0.1, loss=lambda m, x, y: (1, 2, 3), progress=False, device='cpu')
    with pytest.raises(FloatingPointError, match='training loss became nan'):
        fit(_net(), _dl(), epochs=1, lr=0.1, loss=lambda m, x, y: m(x).sum() * float('nan'), progress=False, device='cpu')


def test_fit_bad_input(tmp_path):
    m, dl = _net(), _dl()
    with pytest.raises(ValueError, match='epochs got -1'): fit(m, dl, epochs=-1, lr=0.1)
    with pytest.raises(ValueError, match='lr got -0.1'): fit(m, dl, epochs=1, lr=-0.1)
    with pytest.raises(ValueError, match="opt got 'sgdm'"): fit(m, dl, epochs=1, lr=0.1, opt='sgdm')
    with pytest.raises(ValueError, match='seed got -2'): fit(m, dl, epochs=1, lr=0.1, seed=-2)
    with pytest.raises(ValueError, match='ckpt_path'): fit(m, dl, epochs=1, lr=0.1, resume=True)
    with pytest.raises(ValueError, match='model got'): fit('resnet', dl, epochs=1, lr=0.1)
    with pytest.raises(ValueError, match='loss got'): fit(m, dl, epochs=1, lr=0.1, loss='ce')
    with pytest.raises(ValueError, match="sched\\['name'\\] got 'exp'"): fit(m, dl, epochs=1, lr=0.1, sched={'name': 'exp'})
    save_checkpoint(tmp_path / 'plain.pt', m)
    with pytest.raises(ValueError, match='has no optimizer state'):
        fit(m, dl, epochs=1, lr=0.1, ckpt_path=tmp_path / 'plain.pt', resume=True, progress=False)


def test_progress_output(capsys):
    fit(_net(), _dl(), epochs=2, lr=0.1, progress=True, device='cpu')
    out = capsys.readouterr().out
    assert 'train_loss' in out and 'valid_acc' in out
    fit(_net(), _dl(), epochs=2, lr=0.1, progress=False, device='cpu')
    assert capsys.readouterr().out == ''
    # pytest captures stdout (no terminal, no Jupyter): the bars print only a final line, no carriage returns
    assert '\r' not in out and '%' not in out, out
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1].startswith('done: 2/2 in '), lines


# ---------------------------------------------------------------- checkpoints

class _Exploit:
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
def test_checkpoint_with_code_is_refused_and_never_run(tmp_path, writer):
    marker, path = tmp_path / 'marker', tmp_path / 'evil.pt'
    payload = {'model': _net().state_dict(), 'extra': _Exploit(marker)}
    if writer == 'torch.save': torch.save(payload, path)
    else:
        with open(path, 'wb') as f: pickle.dump(payload, f, protocol=2)
    # sanity: the payload really runs when unpickled without protection
    if writer == 'torch.save': torch.load(path, weights_only=False)
    else:
        with open(path, 'rb') as f: pickle.load(f)
    assert marker.exists(); marker.unlink()
    with pytest.raises(ValueError, match='was refused'): load_checkpoint(path, _net())
    with pytest.raises(ValueError, match='was refused'):
        fit(_net(), _dl(), epochs=1, lr=0.1, ckpt_path=path, resume=True, progress=False)
    assert not marker.exists()


def test_checkpoint_round_trip(tmp_path):
    m = _net(); o = make_optimizer('rmsprop', m.parameters(), 1e-3)
    F.cross_entropy(m(_data()[0]), _data()[1]).backward(); o.step()
    p = save_checkpoint(tmp_path / 'sub' / 'x.pt', m, o, epoch=4, history=[{'a': 1.0}], rng=torch.get_rng_state())
    assert p == tmp_path / 'sub' / 'x.pt'
    m2 = _net(seed=1); o2 = make_optimizer('rmsprop', m2.parameters(), 1e-3)
    ck = load_checkpoint(p, m2, o2)
    _assert_same(m, m2)
    assert torch.equal(o.state_dict()['state'][0]['square_avg'], o2.state_dict()['state'][0]['square_avg'])
    assert ck['epoch'] == 4 and ck['history'] == [{'a': 1.0}]


def test_checkpoint_other_architecture(tmp_path):
    save_checkpoint(tmp_path / 'm.pt', _net())
    wider = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 36, 4))
    with pytest.raises(ValueError) as e: load_checkpoint(tmp_path / 'm.pt', wider)
    msg = str(e.value)
    assert 'shape-mismatched keys' in msg and '0.weight: checkpoint (4, 1, 3, 3) vs model (8, 1, 3, 3)' in msg
    assert '1.running_mean' in msg and 'm.pt' in msg
    deeper = nn.Sequential(*_net(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match='missing keys: 6.weight, 6.bias'): load_checkpoint(tmp_path / 'm.pt', deeper)
    with pytest.raises(ValueError, match='unexpected keys: 5.weight, 5.bias'):
        load_checkpoint(tmp_path / 'm.pt', nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))


def test_checkpoint_missing_file_and_junk(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pt'): load_checkpoint(tmp_path / 'nowhere.pt', _net())
    (tmp_path / 'junk.pt').write_text('hello')
    with pytest.raises(ValueError, match='junk.pt'): load_checkpoint(tmp_path / 'junk.pt', _net())
    torch.save([1, 2, 3], tmp_path / 'list.pt')
    with pytest.raises(ValueError, match="without a 'model' state dict"): load_checkpoint(tmp_path / 'list.pt', _net())


def test_checkpoint_refuses_unloadable_extras(tmp_path):
    import numpy as np
    with pytest.raises(ValueError, match=r"extra\['meta'\]\['arr'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / 'x.pt', _net(), meta={'arr': np.zeros(2)})
    with pytest.raises(ValueError, match='reserved'): save_checkpoint(tmp_path / 'x.pt', _net(), format=1)
    assert not any(tmp_path.iterdir())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    m = _net(); path = save_checkpoint(tmp_path / 'c.pt', m, epoch=1)
    before = path.read_bytes()
    real_save = torch.save
    def dying_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, 'r+b') as fh: fh.truncate(10)  # a half-written file ...
        raise OSError('disk full')                     # ... and the process dies
    monkeypatch.setattr(torch, 'save', dying_save)
    with pytest.raises(OSError, match='disk full'): save_checkpoint(path, _net(seed=3), epoch=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ['c.pt']
    monkeypatch.setattr(torch, 'save', real_save)
    assert load_checkpoint(path, _net())['epoch'] == 1


def test_checkpoint_optimizer_mismatch(tmp_path):
    m = _net(); save_checkpoint(tmp_path / 'c.pt', m, make_optimizer('adam', m.parameters(), 1e-3))
    with pytest.raises(ValueError, match='Adam optimizer; got a SGD'):
        load_checkpoint(tmp_path / 'c.pt', m, make_optimizer('sgd', m.parameters(), 0.1))
    with pytest.raises(ValueError, match='does not fit the optimizer'):
        load_checkpoint(tmp_path / 'c.pt', m, make_optimizer('adam', list(m.parameters())[:2], 1e-3))


# ---------------------------------------------------------------- evaluate

def test_evaluate_clean_and_attacked():
    x, y = _data(100)
    m = _net().eval()
    direct = (m(x).argmax(1) == y).float().mean().item()
    m.train()
    assert evaluate(m, (x, y), batch_size=7) == pytest.approx(direct)
    assert evaluate(m, DataLoader(TensorDataset(x, y), batch_size=33)) == pytest.approx(direct)
    assert m.training and all(p.requires_grad for p in m.parameters())
    seen = {}
    def attack(model, xb, yb, *, eps):
        seen['eps'] = eps; seen['training'] = model.training; seen['grad'] = torch.is_grad_enabled()
        return (xb + eps).clamp(0, 1)
    m.eval()
    acc = evaluate(m, (x, y), attack, eps=1.0)
    assert seen == {'eps': 1.0, 'training': False, 'grad': True}
    assert acc == pytest.approx((m(torch.ones_like(x)).argmax(1) == y).float().mean().item())
    assert not m.training  # an eval-mode model stays in eval mode


def test_evaluate_bad_input():
    x, y = _data(10)
    with pytest.raises(ValueError, match='y got shape'): evaluate(_net(), (x, y[:5]))
    with pytest.raises(ValueError, match='expected images in \\[0, 1\\]'): evaluate(_net(), (x + 1, y))
    with pytest.raises(ValueError, match='empty'): evaluate(_net(), [])
    with pytest.raises(ValueError, match='data got Tensor'): evaluate(_net(), x)
    with pytest.raises(ValueError, match='no attack'): evaluate(_net(), (x, y), eps=0.1)


# ---------------------------------------------------------------- the rough edges of issue 15

def test_truncated_checkpoint_is_named_first(tmp_path):
    save_checkpoint(tmp_path / 'ok.pt', _net())
    data = (tmp_path / 'ok.pt').read_bytes()
    for n in (10, len(data) // 2, len(data) - 50):
        (tmp_path / 'cut.pt').write_bytes(data[:n])
        for load in (lambda: read_checkpoint(tmp_path / 'cut.pt'), lambda: load_checkpoint(tmp_path / 'cut.pt', _net())):
            with pytest.raises(ValueError, match=f"checkpoint '.*cut.pt' \\({n} bytes\\) is not a readable torch checkpoint: truncated"):
                load()


def test_eval_load_model_names_a_truncated_checkpoint_before_asking_for_model_and_data(tmp_path):
    from robust_nb.evaluation import load_model
    save_checkpoint(tmp_path / 'ok.pt', _net())
    (tmp_path / 'cut.pt').write_bytes((tmp_path / 'ok.pt').read_bytes()[:300])
    for kw in ({}, dict(model='mlp', data='digits')):
        with pytest.raises(ValueError, match='cut.pt.*not a readable torch checkpoint') as e: load_model(tmp_path / 'cut.pt', **kw)
        assert 'carries no model' not in str(e.value)


def test_fit_names_train_dl_when_given_a_dataset():
    ds = TensorDataset(*_data(64))
    with pytest.raises(ValueError, match='train_dl got TensorDataset, a Dataset of single examples; expected a DataLoader'):
        fit(_net(), ds, epochs=1, lr=0.1, progress=False, device='cpu')
    with pytest.raises(ValueError, match='valid_dl got TensorDataset'):
        fit(_net(), _dl(), epochs=1, lr=0.1, valid_dl=ds, progress=False, device='cpu')


@pytest.mark.parametrize('shift, says', [(4, r"train_dl's y has labels in \[4, 7\]; expected class indices in \[0, 3\] for 4 classes"),
                                         (-4, r"train_dl's y has labels in \[-4, -1\]; expected class indices in \[0, 3\]")])
def test_fit_names_the_label_range(shift, says):
    x, _ = _data(64)
    dl = DataLoader(TensorDataset(x, torch.arange(64) % 4 + shift), batch_size=32)
    with pytest.raises(ValueError, match=says): fit(_net(), dl, epochs=1, lr=0.1, progress=False, device='cpu')


def test_train_acc_for_every_objective():
    "Losses with logits (standard, PGD-AT) and without (SOAR, a plain scalar) all report an accuracy in [0, 1]."
    from robust_nb.defenses import pgd_at_loss
    from robust_nb.soar import soar_objective
    losses = {'standard': None, 'pgd_at': pgd_at_loss(eps=0.05, alpha=0.02, steps=2, with_logits=True),
              'pgd_at_no_logits': pgd_at_loss(eps=0.05, alpha=0.02, steps=2),
              'soar': soar_objective(eps=0.05), 'scalar': lambda m, x, y: F.cross_entropy(m(x), y)}
    for name, loss in losses.items():
        h = fit(_net(), _dl(96), epochs=1, lr=0.05, loss=loss, progress=False, device='cpu')
        assert h.train_acc.notna().all() and h.train_acc.between(0, 1).all(), (name, h.train_acc.tolist())


def test_clean_train_acc_leaves_training_unchanged():
    "The extra forward pass for a loss without logits changes no weight: same weights as the loss that returns them."
    pair = lambda m, x, y: (lambda z: (F.cross_entropy(z, y), z))(m(x))
    only = lambda m, x, y: F.cross_entropy(m(x), y)
    a, b = _net(), _net()
    fit(a, _dl(), epochs=2, lr=0.1, loss=pair, progress=False, device='cpu', seed=3)
    fit(b, _dl(), epochs=2, lr=0.1, loss=only, progress=False, device='cpu', seed=3)
    _assert_same(a, b)


def test_prepare_out_dir(tmp_path):
    run = tmp_path / 'run'
    assert prepare_out_dir(run) == run and run.is_dir()
    save_checkpoint(run / 'checkpoint.pt', _net()); (run / 'eval').mkdir(); (run / 'eval' / 'eval.csv').write_text('old')
    with pytest.raises(ValueError, match=r"--out got '.*run', which already holds checkpoint.pt, eval/; .*pass --resume .* --overwrite"):
        prepare_out_dir(run, names=('--out', '--resume', '--overwrite'))
    prepare_out_dir(run, resume=True)
    assert sorted(p.name for p in run.iterdir()) == ['checkpoint.pt', 'eval']
    prepare_out_dir(run, overwrite=True)
    assert list(run.iterdir()) == []
    other = tmp_path / 'notes'; other.mkdir(); (other / 'a.txt').write_text('keep')
    with pytest.raises(ValueError, match='not a training run'): prepare_out_dir(other, overwrite=True)
    assert (other / 'a.txt').read_text() == 'keep'
    with pytest.raises(ValueError, match='at most one'): prepare_out_dir(run, resume=True, overwrite=True)
    (tmp_path / 'f').write_text('')
    with pytest.raises(ValueError, match='which is a file'): prepare_out_dir(tmp_path / 'f')


def test_progress_modes(capsys):
    assert progress_mode() == 'final'          # pytest captures stdout: not a terminal, not a Jupyter kernel
    with pytest.raises(ValueError, match="mode got 'html'"): progress_bars('html')
    mb_cls, _ = progress_bars('final')
    mb = mb_cls(range(2))
    for _ in mb:
        for _ in mb.progress(range(100), leave=False): pass
    assert capsys.readouterr().out.splitlines()[-1].startswith('done: 2/2 in ')
