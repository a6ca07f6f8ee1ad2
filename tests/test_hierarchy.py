"Tests of robust_nb.hierarchy (Chapter 5) and its experiment robust_nb.experiments.hierarchy: batched vs reference hierarchical PGD, HAR's Bayes identity, validation, state."
import copy, os, socket, subprocess, sys, textwrap
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_nb.core import set_seed
from robust_nb.data import digits, loaders, DIGITS_HIERARCHY, Hierarchy
from robust_nb.models import MLP
from robust_nb.train import fit
from robust_nb.attacks import pgd
from robust_nb.hierarchy import (hierarchical_pgd, is_hierarchical_adversarial, HAR, meta_accuracy,
                                 p_meta_given_wrong_leaf, pgd_meta, train_har)
from robust_nb.experiments.hierarchy import HierConfig, HierSetup, HierExperiment, HIERARCHIES

H = DIGITS_HIERARCHY
EPS, ALPHA = 0.15, 0.0375

@pytest.fixture(scope='module')
def data():
    tr, te = digits('train'), digits('test')
    return tr, te.x[:64], te.y[:64]

@pytest.fixture(scope='module')
def model(data):
    "A flat MLP trained briefly on the digits: hierarchical PGD succeeds on some inputs and fails on others."
    set_seed(0); m = MLP(64, (64,), 10)
    fit(m, loaders(data[0], batch_size=64, seed=0), epochs=4, lr=0.05, opt='sgd_momentum', progress=False, device='cpu')
    return m.eval()

def _rate(s): return s.float().mean().item()

@pytest.fixture(scope='module')
def cnn(data):
    "A small CNN with max-pooling (the benchmark's architecture, narrower), trained briefly on the digits."
    set_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    fit(m, loaders(data[0], batch_size=64, seed=0), epochs=3, lr=0.05, opt='sgd_momentum', progress=False, device='cpu')
    return m.eval()

def _assert_same(out_b, out_r, what):
    "Batched and reference outputs `(x_adv, success, tries)` agree example by example; the message lists where they do not."
    (xb, sb, tb), (xr, sr, tr) = out_b, out_r
    bad = ((sb != sr) | (tb != tr)).nonzero().squeeze(1).tolist()
    assert not bad, f"{what}: examples {bad} differ: success {sb[bad].tolist()} vs {sr[bad].tolist()}, tries {tb[bad].tolist()} vs {tr[bad].tolist()}"
    torch.testing.assert_close(xb, xr, atol=1e-9, rtol=0, msg=lambda m: f"{what}: x_adv differs\n{m}")

def _assert_not_vacuous(y, success, tries):
    "The comparison exercises every path of Alg. 5.1: first-try successes, later successes, and failures after all of S."
    size_S = (H.meta_of[None, :] != H.meta_of[y][:, None]).sum(1)                 # |S|: leaves outside the true meta-class
    first, later, failed = int((success & (tries == 1)).sum()), int((success & (tries > 1)).sum()), int((~success).sum())
    exhausted = int((~success & (tries == size_S)).sum())
    assert first > 0 and later > 0 and exhausted > 0, (f"the comparison needs successes at the first candidate ({first}), "
        f"successes at a later one ({later}) and failures that tried all of S ({exhausted} of {failed} failures)")

@pytest.mark.parametrize('until', ['meta', 'target'])
@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_batched_equals_reference_deterministic(model, data, until, norm):
    "Without random starts (float64), the batched attack reproduces the literal Alg. 5.1 example by example."
    _, x, y = data
    m, x = copy.deepcopy(model).double(), x[:40].double()
    eps, alpha = (EPS, ALPHA) if norm == 'linf' else (1.0, 0.25)     # l2: a budget with all three outcomes
    kw = dict(eps=eps, alpha=alpha, steps=10, norm=norm, until=until, random_start=False, return_tries=True)
    ref = hierarchical_pgd(m, x, y[:40], H, batched=False, **kw)
    _assert_not_vacuous(y[:40], ref[1], ref[2])
    _assert_same(hierarchical_pgd(m, x, y[:40], H, batched=True, **kw), ref, 'auto')
    for p in (1, 4):
        _assert_same(hierarchical_pgd(m, x, y[:40], H, batched=True, targets_per_round=p, **kw), ref, f'{p} per round')

def test_batched_equals_reference_cnn(cnn, data):
    "The same on a CNN with max-pooling, the benchmark's case (a different code path for batched convolutions)."
    _, x, y = data
    m, x = copy.deepcopy(cnn).double(), x[:48].double()
    kw = dict(eps=EPS, alpha=ALPHA, steps=10, random_start=False, return_tries=True)
    ref = hierarchical_pgd(m, x, y[:48], H, batched=False, **kw)
    _assert_not_vacuous(y[:48], ref[1], ref[2])
    for p in ('auto', 1, 3):
        _assert_same(hierarchical_pgd(m, x, y[:48], H, targets_per_round=p, **kw), ref, f'{p} per round')

def test_batched_equals_reference_average_and_max_targets(model, data):
    _, x, y = data
    m, x = copy.deepcopy(model).double(), x[:40].double()
    kw = dict(eps=EPS, alpha=ALPHA, steps=10, random_start=False)
    for extra in (dict(strategy='average'), dict(max_targets=2), dict(order='index')):
        sb = hierarchical_pgd(m, x, y[:40], H, generator=torch.Generator().manual_seed(5), **kw, **extra)[1]
        sr = hierarchical_pgd(m, x, y[:40], H, generator=torch.Generator().manual_seed(5), batched=False, **kw, **extra)[1]
        assert torch.equal(sb, sr), extra

def test_batched_equals_reference_random_start(model, data):
    "With random starts the draws differ, but the success rates agree (batch of 64, float32)."
    _, x, y = data
    set_seed(1); rb = _rate(hierarchical_pgd(model, x, y, H, eps=EPS, alpha=ALPHA, steps=10)[1])
    set_seed(2); rr = _rate(hierarchical_pgd(model, x, y, H, eps=EPS, alpha=ALPHA, steps=10, batched=False)[1])
    assert abs(rb - rr) <= 0.1, (rb, rr)

def test_success_is_hierarchical_adversarial(model, data):
    _, x, y = data
    set_seed(0)
    xa, s = hierarchical_pgd(model, x, y, H, eps=EPS, alpha=ALPHA, steps=10)
    assert (xa - x).abs().amax() <= EPS + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    with torch.no_grad(): pred, pred_a = model(x).argmax(1), model(xa).argmax(1)
    assert torch.equal(s, H.meta_of[pred_a] != H.meta_of[y])
    ok = pred == y
    assert torch.equal(is_hierarchical_adversarial(model, x, xa, y, H, eps=EPS)[ok], s[ok])
    assert abs((1 - _rate(s)) - meta_accuracy(model, xa, y, H)) < 1e-6
    # worst case is at least as strong as the average case and as untargeted PGD at the meta level
    sa = hierarchical_pgd(model, x, y, H, eps=EPS, alpha=ALPHA, steps=10, strategy='average',
                          generator=torch.Generator().manual_seed(0))[1]
    assert _rate(s) >= _rate(sa)
    assert 1 - _rate(s) <= meta_accuracy(model, pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=10), y, H)

def _shuffled_hierarchy():
    "A hierarchy whose leaf order differs from the class order (to test that HAR returns class order)."
    return Hierarchy({'a': ['7', '0', '3'], 'b': ['9', '1'], 'c': ['2', '8', '4', '6', '5']}, [str(i) for i in range(10)])

def _har(h, seed=0):
    set_seed(seed)
    return HAR(MLP(64, (16,), h.n_meta), [MLP(64, (16,), len(i)) for i in h.leaf_index], h)

@pytest.mark.parametrize('h', [DIGITS_HIERARCHY, _shuffled_hierarchy()])
def test_har_bayes_identity(data, h):
    _, x, _ = data
    har = _har(h)
    with torch.no_grad():
        out = har(x)
        torch.testing.assert_close(out.exp().sum(1), torch.ones(len(x)))
        log_m = F.log_softmax(har.meta(x), 1)
        for c in range(10):
            i = int(h.meta_of[c]); j = h.leaf_index[i].tolist().index(c)
            expect = log_m[:, i] + F.log_softmax(har.leaves[i](x), 1)[:, j]          # log M + log L, class by class
            torch.testing.assert_close(out[:, c], expect)
        big = copy.deepcopy(har); big.meta.net[-1].weight.data *= 1e5; big.leaves[0].net[-1].weight.data *= 1e5
        assert torch.isfinite(big(x)).all()

def test_har_works_with_attacks(data):
    _, x, y = data
    har = _har(_shuffled_hierarchy())
    h = har.hierarchy
    xa = pgd(har, x, y, eps=EPS, alpha=ALPHA, steps=5)
    assert (xa - x).abs().amax() <= EPS + 1e-6
    with torch.no_grad(): assert F.nll_loss(har(xa), y) > F.nll_loss(har(x), y)
    xh, s = hierarchical_pgd(har, x, y, h, eps=EPS, alpha=ALPHA, steps=5)
    with torch.no_grad(): assert torch.equal(s, h.meta_of[har(xh).argmax(1)] != h.meta_of[y])
    xm = pgd_meta(har, x, y, h, eps=EPS, steps=5)
    z = h.meta_of[y]
    with torch.no_grad(): assert F.cross_entropy(har.meta(xm), z) > F.cross_entropy(har.meta(x), z)
    with torch.no_grad(): expect = (h.meta_of[har(xh).argmax(1)] == h.meta_of[y]).float().mean().item()
    assert abs(meta_accuracy(har, xh, y, h) - expect) < 1e-12

def _state(m): return {k: v.clone() for k, v in m.state_dict().items()}

def test_model_state_untouched(data):
    _, x, y = data
    bn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).train()
    har = HAR(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(128, 3)),
              [MLP(64, (8,), len(i)) for i in H.leaf_index], H).train()
    for m, f in [(bn, lambda m: hierarchical_pgd(m, x[:16], y[:16], H, eps=EPS, steps=3)),
                 (bn, lambda m: hierarchical_pgd(m, x[:16], y[:16], H, eps=EPS, steps=3, batched=False)),
                 (bn, lambda m: is_hierarchical_adversarial(m, x, x, y, H)),
                 (bn, lambda m: p_meta_given_wrong_leaf(m, x, y, H)),
                 (har, lambda m: hierarchical_pgd(m, x[:16], y[:16], H, eps=EPS, steps=3)),
                 (har, lambda m: pgd_meta(m, x[:16], y[:16], H, eps=EPS, steps=3))]:
        before = _state(m)
        f(m)
        assert all(mm.training for mm in m.modules())
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
        assert all(p.grad is None and p.requires_grad for p in m.parameters())

@pytest.mark.parametrize('call, msg', [
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=-0.1), 'eps'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=float('nan')), 'eps'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, norm='l1'), 'norm'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, strategy='best'), 'strategy'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, order='random'), 'order'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, until='leaf'), 'until'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, steps=0), 'steps'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, max_targets=0), 'max_targets'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, targets_per_round='all'), 'targets_per_round'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, batched='yes'), 'batched'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, H, eps=EPS, generator=0), 'generator'),
    (lambda m, x, y: hierarchical_pgd(m, x, y[:3], H, eps=EPS), 'y got shape'),
    (lambda m, x, y: hierarchical_pgd(m, x, y + 10, H, eps=EPS), 'leaf classes'),
    (lambda m, x, y: hierarchical_pgd(m, x * 2, y, H, eps=EPS), '[0, 1]'),
    (lambda m, x, y: hierarchical_pgd(m, x.clone().fill_(float('nan')), y, H, eps=EPS), 'NaN'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, 'digits', eps=EPS), 'Hierarchy'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, Hierarchy({'a': list('01234'), 'b': list('56789'), 'c': ['x']}, list('0123456789x')), eps=EPS), '11 leaf classes'),
    (lambda m, x, y: hierarchical_pgd(m, x, y, Hierarchy({'all': list('0123456789')}, list('0123456789')), eps=EPS), 'at least 2'),
    (lambda m, x, y: hierarchical_pgd('model', x, y, H, eps=EPS), 'model'),
    (lambda m, x, y: is_hierarchical_adversarial(m, x, x[:2], y, H), 'x_adv'),
    (lambda m, x, y: is_hierarchical_adversarial(m, x, x, y, H, eps=-1), 'eps'),
    (lambda m, x, y: meta_accuracy(m, x, y.float(), H), 'dtype'),
    (lambda m, x, y: pgd_meta(m, x, y, H, eps=EPS), 'HAR'),
    (lambda m, x, y: HAR(MLP(64, (4,), 3), [MLP(64, (4,), 3)] * 2, H), 'one per meta-class'),
    (lambda m, x, y: HAR(MLP(64, (4,), 3), [None, MLP(64, (4,), 4), MLP(64, (4,), 3)], H), 'None'),
    (lambda m, x, y: HAR(MLP(64, (4,), 3), [MLP(64, (4,), 2)] * 3, H)(x), 'leaf_models[0]'),
    (lambda m, x, y: HAR(MLP(64, (4,), 4), [MLP(64, (4,), len(i)) for i in H.leaf_index], H)(x), 'meta_model'),
    (lambda m, x, y: train_har(m, digits('train'), epochs=1, lr=0.1), 'HAR'),
])
def test_validation(model, data, call, msg):
    _, x, y = data
    with pytest.raises(ValueError, match=None) as e: call(model, x, y)
    assert msg in str(e.value), str(e.value)

def test_experiment_kinds_and_cache():
    "HierSetup trains flat models only; HierExperiment adds HAR; a cached model is returned, not trained again."
    setup, ex = HierSetup('tiny', device='cpu'), HierExperiment('tiny', device='cpu')
    with pytest.raises(ValueError, match=r"kind got 'HAR'; expected one of \('Flat',\)"): setup.model('HAR', 'Standard')
    with pytest.raises(ValueError, match="kind got 'MLP'"): ex.model('MLP', 'Standard')
    with pytest.raises(ValueError, match="defense got 'PGD7'"): ex.defense_loss('PGD7')
    assert ex.CFG == setup.CFG and torch.equal(ex.x_ev, setup.x_ev) and ex.hier is setup.hier
    cached = nn.Identity(); ex.models[('HAR', 'Standard', 0, 'linf')] = cached
    assert ex.model('HAR', 'Standard') is cached

def test_train_har_components_independent(data):
    "train_har == fitting each component by hand on its own subset (meta labels / positions within the group)."
    tr = data[0]
    har = _har(H, seed=1); init = copy.deepcopy(har)
    kw = dict(epochs=1, lr=0.05, opt='sgd_momentum', progress=False, device='cpu')
    hist = train_har(har, tr, batch_size=32, seed=4, **kw)
    assert len(hist) == 4 and all(h is not None for h in hist)
    pos = torch.empty(10, dtype=torch.long)
    for idx in H.leaf_index: pos[idx] = torch.arange(len(idx))
    z = H.meta_of[tr.y]
    sets = [(init.meta, tr.x, z)] + [(init.leaves[i], tr.x[z == i], pos[tr.y[z == i]]) for i in range(H.n_meta)]
    for (m, xc, yc), trained in zip(sets, [har.meta, *har.leaves]):
        fit(m, loaders(torch.utils.data.TensorDataset(xc, yc), batch_size=32, seed=4), seed=4, **kw)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), trained.state_dict().values()))

_DDP_SCRIPT = textwrap.dedent('''
    import os, sys, torch
    from robust_nb.core import set_seed
    from robust_nb.data import digits, DIGITS_HIERARCHY as H
    from robust_nb.models import MLP
    from robust_nb.hierarchy import HAR, train_har
    set_seed(1)
    har = HAR(MLP(64, (16,), 3), [MLP(64, (16,), len(i)) for i in H.leaf_index], H)
    hist = train_har(har, digits('train'), epochs=1, lr=0.05, opt='sgd_momentum', batch_size=32, seed=4, progress=False, device='cpu')
    torch.save({'state': har.state_dict(), 'trained': [h is not None for h in hist]}, sys.argv[1] + f"/rank{os.environ['RANK']}.pt")
''')

@pytest.mark.skipif(sys.platform == 'win32', reason='torchrun with gloo on CPU is exercised on Linux/macOS')
def test_train_har_torchrun_two_ranks(tmp_path):
    "Under torchrun (2 CPU processes, gloo) components are split over ranks and every rank ends with the single-process result."
    script = tmp_path / 'train.py'; script.write_text(_DDP_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    with socket.socket() as sk: sk.bind(('127.0.0.1', 0)); port = sk.getsockname()[1]       # a free port
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}']
    subprocess.run(torchrun + [str(script), str(tmp_path)], check=True, env=env, timeout=180)
    set_seed(1)
    har = HAR(MLP(64, (16,), 3), [MLP(64, (16,), len(i)) for i in H.leaf_index], H)   # the single-process run, in-process
    train_har(har, digits('train'), epochs=1, lr=0.05, opt='sgd_momentum', batch_size=32, seed=4, progress=False, device='cpu')
    single = {'state': har.state_dict()}
    r0, r1 = torch.load(tmp_path / 'rank0.pt'), torch.load(tmp_path / 'rank1.pt')
    assert r0['trained'] == [True, False, True, False] and r1['trained'] == [False, True, False, True]   # i % 2 == rank
    for r in (r0, r1):
        assert all(torch.equal(single['state'][k], v) for k, v in r['state'].items())

def test_paired_difference_and_har_vs_flat():
    "Known answer: HAR right on one more of four examples than flat in seed 0, on two more in seed 1."
    from robust_nb.experiments.hierarchy import paired_difference, har_vs_flat, summarize_outcomes
    T = torch.tensor([True] * 4)
    oc = {('Flat', 'PGD10', 0): {'m': torch.tensor([False, True, True, True])}, ('HAR', 'PGD10', 0): {'m': T},
          ('Flat', 'PGD10', 1): {'m': torch.tensor([False, False, True, True])}, ('HAR', 'PGD10', 1): {'m': T}}
    d = paired_difference(oc, ('HAR', 'PGD10', 'm'), ('Flat', 'PGD10', 'm'))
    assert d['seeds'] == 2 and d['per seed'] == '+25.0, +50.0', d
    assert abs(d['difference'] - 37.5) < 1e-4 and abs(d['SE (seeds)'] - 12.5) < 1e-4, d
    se_ex = 100 * torch.tensor([1, 0.5, 0, 0]).std().item() / 2
    assert abs(d['SE (examples)'] - se_ex) < 1e-4 and abs(d['SE'] - (12.5 ** 2 + se_ex ** 2) ** 0.5) < 1e-4, d
    t = har_vs_flat(oc, 'm', defenses=('PGD10',))
    assert abs(t.loc['PGD10', 'HAR - flat'] - 37.5) < 1e-4, t
    s = summarize_outcomes(oc)
    assert (s.loc[('Flat', 'PGD10'), 'm'], s.loc[('HAR', 'PGD10'), 'm']) == (62.5, 100.0), s
    one = paired_difference({k: v for k, v in oc.items() if k[2] == 0}, ('HAR', 'PGD10', 'm'), ('Flat', 'PGD10', 'm'))
    assert one['seeds'] == 1 and one['SE'] == one['SE (examples)'] and one['SE (seeds)'] != one['SE (seeds)'], one   # nan: unknown

def test_hier_row_is_mean_of_outcomes(model, data):
    "`hier_row` is the mean of `hier_outcomes`; 'Clean' is the meta-class accuracy; hierarchical PGD success is the complement."
    from robust_nb.hierarchy import hier_outcomes
    _, x, y = data
    set_seed(0); out = hier_outcomes(model, x, y, H, eps=EPS, alpha=ALPHA, steps=(5,))
    assert list(out) == ['Clean', 'PGD5', 'Hier. PGD5'] and all(v.shape == y.shape and v.dtype == torch.bool for v in out.values())
    assert abs(out['Clean'].float().mean().item() - meta_accuracy(model, x, y, H)) < 1e-6
    ex = HierExperiment('tiny', device='cpu')
    set_seed(0); row = ex.hier_row(model, x, y, steps=(5,))
    assert row == {c: v.float().mean().item() for c, v in out.items()}, (row, out)

def test_small_preset_is_fashion_mnist():
    "The small configuration runs Chapter 5 on a class-balanced subset of real Fashion-MNIST with its hierarchy."
    from robust_nb.data import FASHION_MNIST_HIERARCHY
    CFG = HierConfig.for_preset('small')
    assert CFG['dataset'] == 'fashion_mnist' and HIERARCHIES['fashion_mnist'] is FASHION_MNIST_HIERARCHY, CFG
    try: setup = HierSetup(config=CFG, device='cpu')
    except FileNotFoundError as e: pytest.skip(f"Fashion-MNIST not installed: {e}")
    tr, te, h = setup.train_ds, setup.test_ds, setup.hier
    assert h is FASHION_MNIST_HIERARCHY and len(tr) == CFG['n_train'] and len(te) == 10_000, (len(tr), len(te))
    assert tuple(tr.x.shape[1:]) == (1, 28, 28) and 0 <= tr.x.min() and tr.x.max() <= 1
    counts = torch.bincount(tr.y, minlength=10)
    assert counts.max() - counts.min() <= 1, f"class counts {counts.tolist()}; expected a class-balanced subset"

@pytest.mark.parametrize('name', ['robust_nb.hierarchy', 'robust_nb.experiments.hierarchy'])
def test_hierarchy_imports_no_private_names(name):
    "One home per concept: `hierarchy` and its experiment use the public helpers of the modules below them (e.g. `core.batched_forward`)."
    import ast, importlib
    tree = ast.parse(open(importlib.import_module(name).__file__).read())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.level or (n.module or '').startswith('robust_nb'))
               for a in n.names if a.name.startswith('_')]
    assert private == [], f"{name} imports private names of other modules: {private}"

def test_old_names_still_import_from_hierarchy():
    "Section 5.6's experiment moved to robust_nb.experiments.hierarchy; the old import paths give the same objects (lazily)."
    import robust_nb.hierarchy as old, robust_nb.experiments.hierarchy as new
    from robust_nb.hierarchy import HierExperiment as he, table_5_3 as t53
    assert (he, t53) == (new.HierExperiment, new.table_5_3), (he, t53)
    moved = ('HIERARCHIES', 'FLAT_DEFENSES', 'HAR_DEFENSES', 'summarize_outcomes', 'paired_difference', 'har_vs_flat', 'HierSetup')
    assert [n for n in moved if getattr(old, n) is not getattr(new, n)] == []
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"): old.no_such_name
    from robust_nb.tables import table_function
    assert table_function('5.3') is new.table_5_3, table_function('5.3')

def test_config_and_overrides():
    "`CFG` is the experiment's config (read-only, indexable as before); `dataset=` and the other settings are overrides of it."
    from robust_nb.experiments.base import Experiment
    setup = HierSetup('tiny', device='cpu', n_train=100)
    assert setup.CFG is setup.config and setup.CFG == HierConfig.for_preset('tiny', n_train=100), setup.CFG
    assert (setup.CFG['eps'], setup.CFG['alpha'], len(setup.train_ds)) == (EPS, ALPHA, 100), setup.CFG
    with pytest.raises(AttributeError): setup.CFG = {}
    with pytest.raises(ValueError, match="dataset got 'mnist'"): HierSetup('tiny', device='cpu', dataset='mnist')
    with pytest.raises(ValueError, match=r"overrides got \['epoch'\]"): HierExperiment('tiny', device='cpu', epoch=1)
    assert issubclass(HierExperiment, Experiment) and HierExperiment.tables == ('table_5_3',)

def test_run_is_table_5_3():
    "`run()` returns Table 5.3 with its seven rows; the module's `table_5_3` is the same table (same seeds) with the thesis's columns."
    from robust_nb.experiments.hierarchy import table_5_3, FLAT_DEFENSES, HAR_DEFENSES
    quick = dict(n_train=100, epochs=1, n_eval=8, steps=(1,))
    t = HierExperiment('tiny', device='cpu', **quick).run()['table_5_3']
    rows = [('Flat', d) for d in FLAT_DEFENSES] + [('HAR', d) for d in HAR_DEFENSES]
    assert (list(t.index), list(t.columns)) == (rows, ['Clean', 'PGD1', 'Hier. PGD1']), t
    r = table_5_3('tiny', device='cpu', **quick)
    assert list(r.columns) == ['Model', 'Method', 'Clean', 'Untargeted PGD1', 'Hierarchical PGD1'], r
    assert r.iloc[:, 2:].values.tolist() == t.values.tolist(), (r, t)

def test_predictions_leave_the_model_as_found(model, data):
    "The metrics score with `core.batched_forward`: eval mode and no gradients inside, the caller's mode and flags restored."
    from robust_nb.core import predict
    from robust_nb.hierarchy import leaf_accuracy
    _, x, y = data
    m = copy.deepcopy(model).train()
    m.net[-1].weight.requires_grad_(False)
    flags = [p.requires_grad for p in m.parameters()]
    acc = leaf_accuracy(m, x, y, H)
    assert m.training and [p.requires_grad for p in m.parameters()] == flags, (m.training, flags)
    assert all(p.grad is None for p in m.parameters())
    expect = (predict(model, x) == y).float().mean().item()
    assert acc == expect, f"leaf accuracy {acc} vs core.predict's {expect}"
