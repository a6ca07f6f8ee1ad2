"Contract, cross-check and property tests of `robust_nb.attacks` and `robust_nb.defenses` (notebooks 02_attacks, 02b_defenses)."
import copy, math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck

from robust_nb.core import set_seed, lp_norm
from robust_nb.attacks import (fgsm, fgm, bim, pgd, cw_l2, simba, autoattack_components, autoattack_component,
                               AUTOATTACK_COMPONENTS, robust_accuracy,
                               nonzero_grad_count, mean_confidence, eps_one_sanity_check, predict)
from robust_nb.defenses import pgd_at_loss, trades_loss, mart_loss, targeted_pgd_at_loss

torch.set_num_threads(1)
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])

# ---------------------------------------------------------------- fixtures
def make_model(kind:str, c:int, h:int, w:int, n_classes:int, seed:int, *, bn=True, drop=True, dtype=torch.float32):
    "A random small model of `kind` ('mlp' or 'cnn') on (c, h, w) images, with batch norm and dropout if asked."
    set_seed(seed)
    if kind == 'mlp':
        layers = [nn.Flatten(), nn.Linear(c * h * w, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.ReLU()]
        layers += ([nn.Dropout(0.3)] if drop else []) + [nn.Linear(16, n_classes)]
    else:
        layers = [nn.Conv2d(c, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if bn else []) + [nn.ReLU(), nn.Flatten()]
        layers += ([nn.Dropout(0.3)] if drop else []) + [nn.Linear(4 * h * w, n_classes)]
    return nn.Sequential(*layers).to(dtype)

def snapshot(model):
    return ([m.training for m in model.modules()], {k: v.clone() for k, v in model.state_dict().items()},
            [p.grad for p in model.parameters()], [p.requires_grad for p in model.parameters()])

def assert_same_state(model, snap):
    modes, sd, grads, flags = snap
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items(): assert torch.equal(v, sd[k]), k
    assert all(p.grad is None for p in model.parameters()) == all(g is None for g in grads)
    assert [p.requires_grad for p in model.parameters()] == flags

def assert_valid_adv(x_adv, x, eps, norm, tol=1e-5):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if eps is not None: assert (lp_norm(x_adv - x, norm) <= eps + tol).all()

@pytest.fixture(scope='module')
def cnn():
    m = make_model('cnn', 1, 8, 8, 10, seed=0).eval()
    set_seed(1)
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad(): y = m(x).argmax(1)
    return m, x, y

# ---------------------------------------------------------------- torchattacks cross-checks
try: import torchattacks
except ImportError: torchattacks = None     # only the cross-checks and AutoAttack need it; the rest still runs
needs_torchattacks = pytest.mark.skipif(torchattacks is None, reason='torchattacks is not installed')

def cross_check(test):
    "A torchattacks cross-check, run on both model kinds and three seeds."
    return needs_torchattacks(pytest.mark.parametrize('seed', [0, 1, 2])(pytest.mark.parametrize('kind', ['mlp', 'cnn'])(test)))

def model_and_batch(kind:str, seed:int):
    "A random eval-mode model of `kind` on (3, 6, 6) images with 5 classes, and a random batch of 16 with random labels."
    m = make_model(kind, 3, 6, 6, 5, seed).eval()
    return m, torch.rand(16, 3, 6, 6), torch.randint(0, 5, (16,))

@cross_check
def test_fgsm_matches_torchattacks(kind, seed):
    m, x, y = model_and_batch(kind, seed)
    for eps in (0.01, 0.1, 0.3):
        torch.testing.assert_close(fgsm(m, x, y, eps=eps), torchattacks.FGSM(m, eps=eps)(x, y), atol=1e-6, rtol=0)

@cross_check
def test_pgd_linf_matches_torchattacks(kind, seed):
    m, x, y = model_and_batch(kind, seed)
    ours = pgd(m, x, y, eps=8/255, alpha=2/255, steps=10, random_start=False)
    ref = torchattacks.PGD(m, eps=8/255, alpha=2/255, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    # targeted: torchattacks maps labels to targets with a function; ours takes the targets themselves
    t = (y + 1) % 5
    atk = torchattacks.PGD(m, eps=8/255, alpha=2/255, steps=10, random_start=False)
    atk.set_mode_targeted_by_function(lambda inputs, labels: (labels + 1) % 5)
    torch.testing.assert_close(pgd(m, x, t, eps=8/255, alpha=2/255, steps=10, random_start=False, targeted=True),
                               atk(x, y), atol=1e-6, rtol=0)

@cross_check
def test_pgd_l2_matches_torchattacks(kind, seed):
    # torchattacks adds 1e-10 to the gradient norm and divides eps by the perturbation norm without a floor:
    # the same step up to those constants, so agreement is tight but not bit-exact.
    m, x, y = model_and_batch(kind, seed)
    ours = pgd(m, x, y, eps=0.5, alpha=0.1, steps=10, norm='l2', random_start=False)
    ref = torchattacks.PGDL2(m, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)

@needs_torchattacks
def test_torchattacks_model_mode_semantics(cnn):
    "Both libraries attack the eval-mode model: equal results from a model left in train mode."
    m, x, y = cnn
    m2 = copy.deepcopy(m).train()
    ours = pgd(m2, x, y, eps=0.1, alpha=0.02, steps=5, random_start=False)
    assert m2.training
    ref = torchattacks.PGD(m2, eps=0.1, alpha=0.02, steps=5, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)

# ---------------------------------------------------------------- property tests (hypothesis)
ATTACKS = {
    'fgsm': lambda m, x, y, eps, norm, steps, tg: (fgsm(m, x, y, eps=eps, targeted=tg), 'linf'),
    'fgm': lambda m, x, y, eps, norm, steps, tg: (fgm(m, x, y, eps=eps, targeted=tg), 'l2'),
    'bim': lambda m, x, y, eps, norm, steps, tg: (bim(m, x, y, eps=eps, steps=steps, targeted=tg), 'linf'),
    'pgd': lambda m, x, y, eps, norm, steps, tg: (pgd(m, x, y, eps=eps, steps=steps, norm=norm, targeted=tg), norm),
    'pgd_restarts': lambda m, x, y, eps, norm, steps, tg: (pgd(m, x, y, eps=eps, steps=steps, norm=norm, restarts=2, targeted=tg), norm),
    'cw_l2': lambda m, x, y, eps, norm, steps, tg: (cw_l2(m, x, y, eps=eps, steps=steps, targeted=tg), 'l2'),
    'simba_pixel': lambda m, x, y, eps, norm, steps, tg: (simba(m, x, y, eps=eps, max_queries=4 * steps, norm=norm, targeted=tg), norm),
    'simba_dct': lambda m, x, y, eps, norm, steps, tg: (simba(m, x, y, eps=eps, max_queries=4 * steps, basis='dct', norm=norm, targeted=tg), norm),
}

@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(attack=st.sampled_from(sorted(ATTACKS)), kind=st.sampled_from(['mlp', 'cnn']),
       n=st.integers(1, 5), c=st.integers(1, 3), h=st.integers(2, 6), w=st.integers(2, 6),
       n_classes=st.integers(2, 5), eps=st.sampled_from([0.0, 1e-3, 0.03, 0.3, 1.0]).map(float) | st.floats(0, 1.5),
       norm=st.sampled_from(['linf', 'l2']), steps=st.integers(1, 4), train=st.booleans(),
       bn=st.booleans(), drop=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]),
       targeted=st.booleans(), seed=st.integers(0, 2**16))
def test_attack_invariants(attack, kind, n, c, h, w, n_classes, eps, norm, steps, train, bn, drop, dtype, targeted, seed):
    "Every attack: detached, same shape/dtype/device, inside the ball and [0, 1], model state untouched (train or eval)."
    if bn and n == 1 and kind == 'mlp': n = 2          # BatchNorm1d cannot run a batch of one in train mode (a torch rule)
    m = make_model(kind, c, h, w, n_classes, seed, bn=bn, drop=drop, dtype=dtype).train(train)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g, dtype=dtype)
    x[0, 0, 0, 0] = 0.0; x[-1, -1, -1, -1] = 1.0       # pixels at the box edges
    y = torch.randint(0, n_classes, (n,), generator=g)
    snap = snapshot(m)
    x_in = x.clone()
    x_adv, ball = ATTACKS[attack](m, x, y, eps, norm, steps, targeted)
    assert torch.equal(x, x_in)                          # the input is not modified in place
    assert_same_state(m, snap)
    assert_valid_adv(x_adv, x, eps, ball, tol=1e-5 if dtype == torch.float32 else 1e-10)

@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), eps=st.floats(0.01, 0.5), steps=st.integers(1, 8), n=st.integers(1, 6))
def test_pgd_monotone_on_convex_model(seed, eps, steps, n):
    "On softmax regression (convex loss in x) the linf PGD iterates never decrease any example's loss."
    set_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(9, 4))
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 1, 3, 3, generator=g), torch.randint(0, 4, (n,), generator=g)
    alpha = eps / 3
    ce = lambda z: F.cross_entropy(m(z), y, reduction='none').detach()
    prev = ce(x)
    for t in range(1, steps + 1):
        cur = ce(pgd(m, x, y, eps=eps, alpha=alpha, steps=t, random_start=False))
        assert (cur >= prev - 1e-5).all()
        prev = cur

@settings(max_examples=20, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), restarts=st.integers(2, 4), norm=st.sampled_from(['linf', 'l2']))
def test_restarts_keep_the_best_run(seed, restarts, norm):
    "Restarts = per example, the best of the same random runs done one at a time (success first, then loss)."
    m = make_model('cnn', 1, 5, 5, 4, seed, bn=False, drop=False).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(12, 1, 5, 5, generator=g)
    with torch.no_grad(): y = m(x).argmax(1)
    eps = 0.3 if norm == 'linf' else 1.0
    set_seed(seed); best = pgd(m, x, y, eps=eps, steps=2, norm=norm, restarts=restarts)
    set_seed(seed); runs = torch.stack([pgd(m, x, y, eps=eps, steps=2, norm=norm) for _ in range(restarts)])
    with torch.no_grad():
        logits = torch.stack([m(r) for r in runs])
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(restarts), reduction='none').view(restarts, -1).double()
        score = loss + 1e6 * (logits.argmax(-1) != y).double()
    torch.testing.assert_close(best, runs[score.argmax(0), torch.arange(12)])

@settings(max_examples=30, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), basis=st.sampled_from(['pixel', 'dct']), q=st.integers(1, 60), targeted=st.booleans())
def test_simba_queries_and_monotonicity(seed, basis, q, targeted):
    "SimBA: p_y moves only in the attack's direction, per-example queries within budget and equal to what the model saw."
    m = make_model('cnn', 2, 4, 4, 5, seed, bn=False, drop=False).eval()
    seen = []
    class Counter(nn.Module):
        def __init__(s): super().__init__(); s.m = m
        def forward(s, z):
            assert not torch.is_grad_enabled(); seen.append(z.shape[0]); return s.m(z)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(6, 2, 4, 4, generator=g), torch.randint(0, 5, (6,), generator=g)
    x_adv, queries = simba(Counter(), x, y, eps=0.2, max_queries=q, basis=basis, targeted=targeted, return_queries=True)
    assert queries.dtype == torch.long and (queries >= 1).all() and (queries <= q).all()
    assert int(queries.sum()) == sum(seen)
    with torch.no_grad():
        p0, p1 = (torch.softmax(m(z), 1).gather(1, y[:, None]).squeeze(1) for z in (x, x_adv))
    assert ((p1 >= p0 - 1e-6) if targeted else (p1 <= p0 + 1e-6)).all()

# ---------------------------------------------------------------- CW: success means margin >= kappa
def _logit_margin(m, x, y, targeted=False):
    "How far the decision is past the boundary: max_{j != y} Z_j - Z_y (untargeted), Z_y - max_{j != y} Z_j (targeted)."
    with torch.no_grad(): z = m(x).double()
    z_y = z.gather(1, y[:, None]).squeeze(1)
    z_other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float('-inf')).amax(1)
    return z_y - z_other if targeted else z_other - z_y

@pytest.mark.parametrize('targeted', [False, True])
def test_cw_success_requires_the_kappa_margin(targeted):
    "Carlini-Wagner (and foolbox): an iterate counts as a success, and steers the search over c, only if margin >= kappa."
    set_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.rand(64, 1, 4, 4)
    with torch.no_grad(): pred = m(x).argmax(1)
    y = (pred + 1) % 4 if targeted else pred
    kappa = 0.1 if targeted else 0.5    # reachable in the box: untargeted margins up to ~1.6, targeted ones less
    x_adv = cw_l2(m, x, y, kappa=kappa, c=0.1, steps=100, lr=0.05, binary_steps=5, targeted=targeted)
    changed = (x_adv != x).flatten(1).any(1)
    margin = _logit_margin(m, x_adv, y, targeted)
    assert changed.float().mean() > 0.5, f"only {changed.sum().item()} of 64 examples reached the margin {kappa}"
    short = changed & (margin < kappa - 1e-4)
    assert not short.any(), f"{short.sum().item()} returned examples have margin below kappa={kappa} (first: {margin[short][:5].tolist()})"
    # kappa = 0 keeps the plain rule: misclassified (resp. classified as the target) counts
    x0 = cw_l2(m, x, y, c=1.0, steps=50, lr=0.05, targeted=targeted)
    done0 = (x0 != x).flatten(1).any(1)
    with torch.no_grad(): p0 = m(x0).argmax(1)
    test = (p0 == y) if targeted else (p0 != y)
    assert torch.equal(done0, test), f"{(done0 != test).sum().item()} examples returned changed but unsuccessful (or the reverse)"

# ---------------------------------------------------------------- devices
@pytest.mark.parametrize('device', DEVICES)
def test_attacks_keep_device(device):
    m = make_model('cnn', 1, 8, 8, 10, 0).to(device).train()
    x, y = torch.rand(8, 1, 8, 8, device=device), torch.randint(0, 10, (8,), device=device)
    snap = snapshot(m)
    for atk in (lambda: fgsm(m, x, y, eps=0.1), lambda: fgm(m, x, y, eps=0.5), lambda: bim(m, x, y, eps=0.1, steps=2),
                lambda: pgd(m, x, y, eps=0.1, steps=2, restarts=2), lambda: pgd(m, x, y, eps=0.5, steps=2, norm='l2'),
                lambda: cw_l2(m, x, y, eps=0.5, steps=3), lambda: simba(m, x, y, eps=0.1, max_queries=10, basis='dct')):
        x_adv = atk()
        assert_valid_adv(x_adv, x, None, 'linf')
        assert_same_state(m, snap)

# ---------------------------------------------------------------- evaluation helpers
def test_robust_accuracy_loader_and_tensors(cnn):
    m, x, y = cnn
    clean = robust_accuracy(m, (x, y))
    assert clean == 1.0
    loader = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    assert robust_accuracy(m, loader, fgsm, eps=0.1) == robust_accuracy(m, (x, y), fgsm, batch_size=8, eps=0.1)
    assert robust_accuracy(m, (x, y), pgd, eps=0.3, steps=10) <= robust_accuracy(m, (x, y), fgsm, eps=0.02)

def test_gradient_masking_diagnostics(cnn):
    m, x, y = cnn
    assert nonzero_grad_count(m, x, y) > 0.5 * 64
    with torch.no_grad(): assert mean_confidence(m, x) == pytest.approx(torch.softmax(m(x), 1).amax(1).mean().item(), abs=1e-6)
    assert eps_one_sanity_check(m, x, y) == 0.0
    lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert nonzero_grad_count(lin, x, y) == 64.0

@needs_torchattacks
def test_autoattack_components_quick(cnn):
    m, x, y = cnn
    res = autoattack_components(m, x[:16], y[:16], eps=0.05, steps=5, n_queries=50, n_target_classes=2)
    assert set(res) == {'clean', 'APGD-CE', 'APGD-T', 'FAB-T', 'Square', 'worst case'}
    assert all(res[k] <= res['clean'] for k in ('APGD-CE', 'APGD-T', 'FAB-T', 'Square'))
    assert res['worst case'] < res['clean']   # the ensemble of attacks finds adversarial examples
    assert not m.training and all(p.grad is None for p in m.parameters())

@needs_torchattacks
def test_autoattack_cumulative_runs_each_component_on_the_survivors(cnn):
    "cumulative=True: each component (standard order) only on the points still robust, in batches: as AutoAttack runs."
    m, x, y = cnn
    y = y.clone(); y[:4] = (y[:4] + 1) % 10                   # a few clean errors, which no component must see
    kw = dict(eps=0.05, steps=5, n_queries=50, n_target_classes=2, batch_size=8)
    snap = snapshot(m)
    res = autoattack_components(m, x, y, cumulative=True, per_example=True, **kw)
    assert_same_state(m, snap)
    assert list(res) == ['clean', *AUTOATTACK_COMPONENTS, 'worst case']
    left = predict(m, x) == y                                  # the same loop, by hand, with the shared component
    for name in AUTOATTACK_COMPONENTS:
        idx = left.nonzero().squeeze(1)
        if idx.numel(): left[idx] = autoattack_component(m, x[idx], y[idx], name, **kw)
        assert torch.equal(res[name], left), name
    assert torch.equal(res['worst case'], left)
    acc = autoattack_components(m, x, y, cumulative=True, components=('APGD-T', 'APGD-CE'), **kw)
    assert list(acc) == ['clean', 'APGD-CE', 'APGD-T', 'worst case']    # a subset, still in the standard order
    assert acc['APGD-CE'] == res['APGD-CE'].double().mean().item() and acc['APGD-T'] == res['APGD-T'].double().mean().item()

@needs_torchattacks
def test_autoattack_component_batches_match_separate_calls(cnn):
    "batch_size splits the input: the same result as calling the component on each slice."
    m, x, y = cnn
    kw = dict(eps=0.05, steps=5, n_target_classes=2)
    whole = autoattack_component(m, x, y, 'APGD-T', batch_size=8, **kw)
    parts = torch.cat([autoattack_component(m, x[i:i + 8], y[i:i + 8], 'APGD-T', **kw) for i in range(0, 32, 8)])
    assert torch.equal(whole, parts)

# ---------------------------------------------------------------- defenses
@pytest.mark.parametrize('make', [pgd_at_loss, trades_loss, mart_loss,
                                  lambda **kw: targeted_pgd_at_loss(torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2]), **kw)])
def test_defense_losses_train(make, cnn):
    m, x, y = cnn
    m = copy.deepcopy(m).train()
    loss_fn = make(eps=0.1, alpha=0.03, steps=2)
    loss = loss_fn(m, x, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert m.training and all(p.grad is not None for p in m.parameters())
    import pickle; pickle.loads(pickle.dumps(loss_fn))      # picklable (DDP workers)
    out = make(eps=0.1, alpha=0.03, steps=2, with_logits=True)(m, x, y)
    assert isinstance(out, tuple) and out[1].shape == (32, 10)

# ---------------------------------------------------------------- bad input
BAD_CALLS = [
    (lambda m, x, y: pgd(m, x, y, eps=-0.1), 'eps'),
    (lambda m, x, y: pgd(m, x, y, eps=float('inf')), 'eps'),
    (lambda m, x, y: pgd(m, x, y, eps=float('nan')), 'eps'),
    (lambda m, x, y: pgd(m, x, y, eps='0.1'), 'eps'),
    (lambda m, x, y: pgd(m, x, y, eps=True), 'eps'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, norm='l1'), 'norm'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, steps=0), 'steps'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, steps=2.5), 'steps'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, restarts=0), 'restarts'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=-1), 'alpha'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, targeted='yes'), 'targeted'),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, random_start=1), 'random_start'),
    (lambda m, x, y: pgd(m, x * 1.5, y, eps=0.1), '[0, 1]'),
    (lambda m, x, y: pgd(m, x - 0.5, y, eps=0.1), '[0, 1]'),
    (lambda m, x, y: pgd(m, torch.full_like(x, float('nan')), y, eps=0.1), 'NaN'),
    (lambda m, x, y: pgd(m, x, y[:-1], eps=0.1), 'y got shape'),
    (lambda m, x, y: pgd(m, x, y.float(), eps=0.1), 'y got dtype'),
    (lambda m, x, y: pgd(m, x.numpy(), y, eps=0.1), 'x got'),
    (lambda m, x, y: pgd(m, (x * 255).long(), y, eps=0.1), 'x got dtype'),
    (lambda m, x, y: pgd(m, x[:0], y[:0], eps=0.1), 'empty'),
    (lambda m, x, y: pgd(lambda z: z, x, y, eps=0.1), 'model'),
    (lambda m, x, y: fgsm(m, x, y, eps=-1), 'eps'),
    (lambda m, x, y: fgm(m, x, y.view(-1, 1), eps=1.0), 'y got shape'),
    (lambda m, x, y: bim(m, x, y, eps=0.1, steps=0), 'steps'),
    (lambda m, x, y: cw_l2(m, x, y, c=-1.0), 'c got'),
    (lambda m, x, y: cw_l2(m, x, y, steps=0), 'steps'),
    (lambda m, x, y: cw_l2(m, x, y, eps=-1.0), 'eps'),
    (lambda m, x, y: simba(m, x, y, eps=0.1, basis='fourier'), 'basis'),
    (lambda m, x, y: simba(m, x, y, eps=0.1, max_queries=0), 'max_queries'),
    (lambda m, x, y: simba(m, x.flatten(1), y, eps=0.1), 'simba expects'),
    (lambda m, x, y: autoattack_components(m, x, y, eps=0.1, components=('APGD-CE', 'DeepFool')), 'components'),
    (lambda m, x, y: autoattack_components(m, x, y, eps=-0.1), 'eps'),
    (lambda m, x, y: autoattack_components(m, x, y, eps=0.1, components=('Square', 'Square')), 'distinct'),
    (lambda m, x, y: autoattack_components(m, x, y, eps=0.1, cumulative='yes'), 'cumulative'),
    (lambda m, x, y: autoattack_components(m, x, y, eps=0.1, batch_size=0), 'batch_size'),
    (lambda m, x, y: autoattack_components(m, x, y, eps=0.1, n_queries=0), 'n_queries'),
    (lambda m, x, y: autoattack_component(m, x, y, 'FAB', eps=0.1), 'name'),
    (lambda m, x, y: cw_l2(m, x, y, kappa=-1.0), 'kappa'),
    (lambda m, x, y: robust_accuracy(m, x, pgd, eps=0.1), 'data got'),
    (lambda m, x, y: robust_accuracy(m, (x, y[:3])), 'y got shape'),
    (lambda m, x, y: robust_accuracy(m, (x, y), 'pgd'), 'attack got'),
    (lambda m, x, y: robust_accuracy(m, [], pgd, eps=0.1), 'empty data'),
    (lambda m, x, y: nonzero_grad_count(m, x, y, tol=-1), 'tol'),
    (lambda m, x, y: mean_confidence(m, x * 2), '[0, 1]'),
    (lambda m, x, y: pgd_at_loss(eps=-0.1), 'eps'),
    (lambda m, x, y: pgd_at_loss(norm='l3'), 'norm'),
    (lambda m, x, y: trades_loss(beta=float('nan')), 'beta'),
    (lambda m, x, y: mart_loss(steps=0), 'steps'),
    (lambda m, x, y: targeted_pgd_at_loss(torch.zeros(10, dtype=torch.long)), 'meta-class'),
    (lambda m, x, y: targeted_pgd_at_loss([0, 1, 1]), 'hierarchy got'),
    (lambda m, x, y: targeted_pgd_at_loss(torch.tensor([0, 1]))(m, x, y), 'y has labels'),
]

@pytest.mark.parametrize('call,msg', BAD_CALLS)
def test_bad_input_raises_valueerror(call, msg, cnn):
    m, x, y = cnn
    snap = snapshot(m)
    with pytest.raises(ValueError, match=None) as e: call(m, x, y)
    assert msg in str(e.value), str(e.value)
    assert_same_state(m, snap)

def test_attacks_work_under_no_grad():
    "Callers often evaluate under torch.no_grad(); the attacks turn input gradients on themselves."
    from robust_nb.attacks import fgsm, fgm, pgd, random_in_ball
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    for atk, kw in ((fgsm, {}), (fgm, {}), (pgd, dict(steps=3, random_start=False))):
        ref = atk(model, x, y, eps=0.1, **kw)
        with torch.no_grad(): got = atk(model, x, y, eps=0.1, **kw)
        assert torch.equal(ref, got), atk.__name__
    r = random_in_ball(x, 0.1, 'l2')
    assert ((r - x).flatten(1).norm(dim=1) <= 0.1 + 1e-6).all()
    with pytest.raises(ValueError, match='norm'): random_in_ball(x, 0.1, 'l1')


# ---------------------------------------------------------------- issue 14: one home per helper
def test_pgd_steps_is_pgd_from_a_given_start():
    "The public PGD-from-a-start (what TRADES needs) equals `pgd` from the same random start, and leaves the model as it was."
    from robust_nb.attacks import pgd_steps, random_in_ball
    m = make_model('cnn', 1, 8, 8, 10, seed=0)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for norm, eps in (('linf', 0.1), ('l2', 0.5)):
        set_seed(4); a = pgd(m, x, y, eps=eps, norm=norm, steps=3)
        set_seed(4); snap = snapshot(m)
        b = pgd_steps(m, x, y, random_in_ball(x, eps, norm), eps=eps, alpha=2.5 * eps / 3, steps=3, norm=norm)
        assert_same_state(m, snap)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match='x0 got shape'): pgd_steps(m, x, y, x[:2], eps=0.1, alpha=0.01, steps=1)


def test_attack_gradients_are_core_input_grad():
    "FGSM's step is the sign of `core.input_grad` (the library's one input gradient), for the default and a custom loss."
    from robust_nb.core import input_grad
    m = make_model('mlp', 1, 4, 4, 5, seed=1, bn=False, drop=False).eval()
    x, y = torch.rand(8, 1, 4, 4) * 0.8 + 0.1, torch.randint(0, 5, (8,))
    for kw in ({}, dict(loss_fn=lambda z, t: -z.gather(1, t[:, None]).squeeze(1), targeted=True)):
        _, g = input_grad(m, x, y, **kw)
        torch.testing.assert_close(fgsm(m, x, y, eps=0.05, **kw), (x + 0.05 * g.sign()).clamp(0, 1), rtol=0, atol=0)
    import inspect, re, robust_nb.attacks as A
    assert not hasattr(A, '_input_grad')                 # the copy is gone: core.input_grad is the one home
    private = re.findall(r'from \.\w+ import \(?[^\n)]*\b(_[a-z]\w*)', inspect.getsource(A))
    assert private == [], f"robust_nb.attacks imports private names of other modules: {private}"
