"Contract, reference and property tests for `robust_nb.alignment` and `robust_nb.transfer` (notebooks 06a_transfer, 06_alignment)."
import copy, math, os, sys, subprocess, textwrap
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from hypothesis import given, settings, strategies as st

from robust_nb.core import set_seed, eval_guard, input_grad
from robust_nb.models import MLP, MnistCNN
from robust_nb import alignment, transfer
from robust_nb.alignment import (alignment_loss, align, kl_divergence, prediction_agreement, input_grad_cosine,
                                 input_grad_norm, hessian_max_eig, loss_surface, transfer_error)
from robust_nb.transfer import (mi_fgsm, ni_fgsm, vmi_fgsm, vni_fgsm, sini_fgsm, ti_fgsm, di_fgsm, ensemble,
                                linbp, bpa, BitDepthReduction, JPEGCompression, RandomizedSmoothing)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
ATTACKS = [mi_fgsm, ni_fgsm, vmi_fgsm, vni_fgsm, sini_fgsm, ti_fgsm, di_fgsm]


def test_contract_names():
    for n in ('alignment_loss', 'align', 'prediction_agreement', 'kl_divergence', 'input_grad_cosine',
              'input_grad_norm', 'hessian_max_eig', 'loss_surface', 'transfer_error'):
        assert n in alignment.__all__, n
    for n in ('mi_fgsm', 'ni_fgsm', 'vmi_fgsm', 'vni_fgsm', 'sini_fgsm', 'ti_fgsm', 'di_fgsm', 'ensemble'):
        assert n in transfer.__all__, n


def _cnn(c=3, seed=0):
    set_seed(seed)
    m = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(128, 10))
    with torch.no_grad(): m.train(); m(torch.rand(32, c, 8, 8))
    return m


@pytest.fixture(scope='module')
def toy():
    m = _cnn()
    set_seed(1)
    return m, torch.rand(12, 3, 8, 8), torch.randint(0, 10, (12,))


def _snapshot(m):
    return ({k: v.clone() for k, v in m.state_dict().items()}, [x.training for x in m.modules()],
            [p.requires_grad for p in m.parameters()], [None if p.grad is None else p.grad.clone() for p in m.parameters()])


def _same(m, snap):
    s, modes, flags, grads = snap
    return (all(torch.equal(v, s[k]) for k, v in m.state_dict().items()) and [x.training for x in m.modules()] == modes
            and [p.requires_grad for p in m.parameters()] == flags
            and all((g is None and p.grad is None) or (g is not None and p.grad is not None and torch.equal(g, p.grad))
                    for p, g in zip(m.parameters(), grads)))


# ---------------------------------------------------------------- transfer attacks
@pytest.mark.parametrize('attack', ATTACKS)
@pytest.mark.parametrize('targeted', [False, True])
def test_attack_contract(toy, attack, targeted):
    m, x, y = toy
    m.train(); m[0].weight.requires_grad_(False)           # odd state must survive
    snap = _snapshot(m)
    eps = 0.05
    xa = attack(m, x, y, eps=eps, steps=3, targeted=targeted)
    assert _same(m, snap)
    m[0].weight.requires_grad_(True)
    assert xa.shape == x.shape and xa.dtype == x.dtype and not xa.requires_grad
    assert (xa - x).abs().max() <= eps + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    # batched: each example's result does not depend on the rest of the batch (deterministic attacks)
    if attack in (mi_fgsm, ni_fgsm, sini_fgsm, ti_fgsm):
        xb = attack(m, x[:5], y[:5], eps=eps, steps=3, targeted=targeted)
        assert torch.allclose(xa[:5], xb, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(eps=st.floats(0, 0.5), steps=st.integers(1, 4), seed=st.integers(0, 10))
def test_attack_ball_property(eps, steps, seed):
    m = _cnn(c=1, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(4, 1, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g)
    for attack in (mi_fgsm, vni_fgsm, di_fgsm, ti_fgsm):
        xa = attack(m, x, y, eps=eps, steps=steps)
        assert (xa - x).abs().max() <= eps + 1e-6 and xa.min() >= 0 and xa.max() <= 1


REFS = {  # ours, torchattacks class, kwargs for both, seed (None: deterministic)
    'MI': (mi_fgsm, 'MIFGSM', {}, {}), 'NI': (ni_fgsm, 'NIFGSM', {}, {}),
    'VMI': (vmi_fgsm, 'VMIFGSM', dict(n=5), dict(N=5)), 'VNI': (vni_fgsm, 'VNIFGSM', dict(n=3, beta=1.0), dict(N=3, beta=1.0)),
    'SINI': (sini_fgsm, 'SINIFGSM', dict(m=3), dict(m=3)),
    'TI': (ti_fgsm, 'TIFGSM', dict(kernel_size=5, nsig=2.0), dict(len_kernel=5, nsig=2.0, diversity_prob=0.0)),
    'TI-DIM': (ti_fgsm, 'TIFGSM', dict(diversity_prob=0.5, decay=1.0), dict(diversity_prob=0.5, decay=1.0)),
    'DI': (di_fgsm, 'DIFGSM', dict(diversity_prob=0.7), dict(diversity_prob=0.7)),
    'M-DI': (di_fgsm, 'DIFGSM', dict(decay=1.0, resize_rate=1.2), dict(decay=1.0, resize_rate=1.2)),
}


@pytest.mark.parametrize('name', list(REFS))
@pytest.mark.parametrize('targeted', [False, True])
def test_matches_torchattacks(toy, name, targeted):
    import torchattacks
    m, x, y = toy
    ours, cls, kw, tkw = REFS[name]
    eps, steps = 8 / 255, 6
    if name == 'M-DI':   # enlarging resize needs a model that accepts larger inputs
        m = nn.Sequential(*list(m)[:-2], nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    for seed in (0, 7):
        atk = getattr(torchattacks, cls)(m, eps=eps, alpha=eps / steps, steps=steps, **tkw)
        yt = (y + 1) % 10 if targeted else y
        if targeted: atk.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
        set_seed(seed); ref = atk(x, y)
        set_seed(seed); got = ours(m, x, yt, eps=eps, steps=steps, targeted=targeted, **kw)
        assert torch.allclose(got, ref, atol=1e-6), (name, (got - ref).abs().max())


@pytest.mark.parametrize('attack', ATTACKS)
def test_attack_validation(toy, attack):
    m, x, y = toy
    with pytest.raises(ValueError, match='eps'): attack(m, x, y, eps=float('nan'))
    with pytest.raises(ValueError, match='eps'): attack(m, x, y, eps=-1)
    with pytest.raises(ValueError, match=r'\[0, 1\]'): attack(m, x + 1, y, eps=0.1)
    with pytest.raises(ValueError, match='NaN'): attack(m, x * float('nan'), y, eps=0.1)
    with pytest.raises(ValueError, match='y got shape'): attack(m, x, y[:2], eps=0.1)
    with pytest.raises(ValueError, match='y got dtype'): attack(m, x, y.float(), eps=0.1)
    with pytest.raises(ValueError, match='steps'): attack(m, x, y, eps=0.1, steps=0)
    with pytest.raises(ValueError, match='alpha'): attack(m, x, y, eps=0.1, alpha=-1)
    with pytest.raises(ValueError, match='targeted'): attack(m, x, y, eps=0.1, targeted=1)
    with pytest.raises(ValueError, match='model'): attack(lambda z: z, x, y, eps=0.1)
    with pytest.raises(ValueError, match='N, C, H, W'): attack(m, x.flatten(1), y, eps=0.1)


def test_specific_validation(toy):
    m, x, y = toy
    with pytest.raises(ValueError, match='diversity_prob'): di_fgsm(m, x, y, eps=0.1, diversity_prob=2)
    with pytest.raises(ValueError, match='n got'): vmi_fgsm(m, x, y, eps=0.1, n=0)
    with pytest.raises(ValueError, match='m got'): sini_fgsm(m, x, y, eps=0.1, m=0)
    with pytest.raises(ValueError, match='size got'): ti_fgsm(m, x, y, eps=0.1, kernel_size=0)


def test_ensemble(toy):
    m, x, y = toy
    a, b = _cnn(seed=3).eval(), _cnn(seed=4).train()
    e = ensemble([a, b], weights=[2, 2])
    with torch.no_grad(), eval_guard(e): assert torch.allclose(e(x), 0.5 * (a(x) + b(x.clone())), atol=1e-5)
    assert b.training and not a.training
    xa = vmi_fgsm(e, x, y, eps=0.03, steps=2, n=2)
    assert b.training and (xa - x).abs().max() <= 0.03 + 1e-6
    with pytest.raises(ValueError, match='weights'): ensemble([a, b], weights=[1])
    with pytest.raises(ValueError, match='models'): ensemble([a, 'b'])


# ---------------------------------------------------------------- LinBP and BPA
def _hooks(m): return sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.modules())


@pytest.mark.parametrize('ctx', [lambda m: linbp(m), lambda m: linbp(m, start=0), lambda m: bpa(m),
                                 lambda m: bpa(m, start='0'), lambda m: bpa(m, maxpool=False, start=-1)])
def test_backward_swaps_restore(toy, ctx):
    m, x, y = toy
    m.eval()
    with torch.no_grad(): out0 = m(x)
    g0 = input_grad(m, x, y)[1]
    state = copy.deepcopy(m.state_dict())
    with ctx(m):
        with torch.no_grad(): assert torch.equal(m(x), out0)          # forward unchanged
        assert not torch.allclose(input_grad(m, x, y)[1], g0)         # backward changed
    assert torch.equal(input_grad(m, x, y)[1], g0) and _hooks(m) == 0
    with pytest.raises(KeyError):
        with ctx(m): raise KeyError('inside')
    assert torch.equal(input_grad(m, x, y)[1], g0) and _hooks(m) == 0
    assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())


def test_linbp_is_linear_network_gradient():
    set_seed(0)
    net = MLP(48, hidden=(16, 16))
    x, y = torch.rand(5, 3, 4, 4), torch.randint(0, 10, (5,))
    lin = nn.Sequential(nn.Flatten(), *[l for l in net.net if isinstance(l, nn.Linear)])
    with torch.no_grad(): p = torch.softmax(net(x), 1)
    xr = x.clone().requires_grad_(True)
    ref, = torch.autograd.grad((lin(xr) * (p - F.one_hot(y, 10))).sum(), xr)
    with linbp(net, start=0): assert torch.allclose(input_grad(net, x, y)[1], ref, atol=1e-6)
    with linbp(net, start=1):   # only the second ReLU is linear: not the fully linear gradient
        assert not torch.allclose(input_grad(net, x, y)[1], ref, atol=1e-6)


def test_backward_swap_validation():
    with pytest.raises(ValueError, match='no nn.ReLU'):
        with linbp(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))): pass
    with pytest.raises(ValueError, match='start got 5'):
        with bpa(MLP(4, hidden=(3,)), start=5): pass
    with pytest.raises(ValueError, match='temperature'):
        with bpa(MLP(4, hidden=(3,)), temperature=-1): pass
    with pytest.raises(ValueError, match='model got'):
        with linbp('net'): pass


def test_defense_wrappers(toy):
    m, x, y = toy
    m.eval()
    with torch.no_grad():
        b = BitDepthReduction(nn.Identity(), bits=1)(x)
        assert set(torch.unique(b).tolist()) <= {0.0, 1.0}
        j = JPEGCompression(nn.Identity(), quality=100)(x[:, :1])      # grayscale: no chroma subsampling
        assert j.shape == x[:, :1].shape and (j - x[:, :1]).abs().max() < 0.05
        set_seed(0); r1 = RandomizedSmoothing(m, sigma=0.2, n=8)(x)
        assert r1.shape == (12, 10) and torch.allclose(r1.exp().sum(1), torch.ones(12), atol=1e-5)
    with pytest.raises(ValueError, match='JPEG expects'): JPEGCompression(nn.Identity())(torch.rand(2, 2, 8, 8))


# ---------------------------------------------------------------- alignment
@pytest.fixture(scope='module')
def digits_pair():
    from robust_nb.data import digits, loaders
    from robust_nb.train import fit
    tr, te = digits('train'), digits('test')
    set_seed(0); src = MLP((1, 8, 8), hidden=(32,))
    fit(src, loaders(tr, batch_size=64, seed=0), epochs=6, lr=0.05, opt='sgd_momentum', progress=False)
    set_seed(1); wit = MnistCNN(input_size=8)
    fit(wit, loaders(tr, batch_size=64, seed=1), epochs=3, lr=0.05, opt='sgd_momentum', progress=False)
    return src, wit, tr, te


def test_align_untouched_and_lowers_heldout_kl(digits_pair):
    from robust_nb.data import loaders
    src, wit, tr, te = digits_pair
    src.train(); wit.train()
    wit.features[0].weight.requires_grad_(False)
    s0, w0 = _snapshot(src), _snapshot(wit)
    before = kl_divergence(wit, src, te.x)
    a = align(src, wit, loaders(tr, batch_size=64, seed=3), epochs=2, lr=0.05, grad_clip=5.0)
    assert _same(src, s0) and _same(wit, w0)
    assert a is not src and a.training and all(p.grad is None for p in a.parameters())
    after = kl_divergence(wit, a, te.x)
    assert after < 0.85 * before, (before, after)
    wit.features[0].weight.requires_grad_(True); wit.eval(); src.eval()


@pytest.mark.parametrize('method', ['hint', 'rkd', 'nce'])
def test_align_embedding_methods(digits_pair, method):
    src, wit, tr, te = digits_pair
    s0, w0 = _snapshot(src), _snapshot(wit)
    batches = [tr.x[i:i + 64] for i in range(0, 320, 64)]
    a = align(src, [wit, wit], batches, epochs=1, lr=0.01, method=method)
    assert _same(src, s0) and _same(wit, w0)
    assert not torch.equal(a.net[0].weight, src.net[0].weight)
    # an explicit layer pair: source's hidden ReLU output, witness's flattened conv features
    a2 = align(src, wit, batches, epochs=1, lr=0.01, method=method, layer=('net.1', 'features.4'))
    assert not torch.equal(a2.net[0].weight, src.net[0].weight)


def test_align_validation(digits_pair):
    src, wit, tr, _ = digits_pair
    b = [tr.x[:16]]
    for kw, msg in ((dict(lr=0), 'lr'), (dict(lr=0.1, T=0), 'T got'), (dict(lr=0.1, method='ega'), 'method'),
                    (dict(lr=0.1, epochs=0), 'epochs'), (dict(lr=0.1, momentum=1.5), 'momentum'),
                    (dict(lr=0.1, grad_clip=0), 'grad_clip'), (dict(lr=0.1, layer='net.0'), 'layer is only'),
                    (dict(lr=0.1, method='hint', layer='zzz'), "layer got 'zzz'")):
        with pytest.raises(ValueError, match=msg): align(src, wit, b, **kw)
    with pytest.raises(ValueError, match='witnesses'): align(src, [], b, lr=0.1)
    with pytest.raises(ValueError, match='source got'): align('src', wit, b, lr=0.1)
    with pytest.raises(ValueError, match='no batches'): align(src, wit, [], lr=0.1)
    with pytest.raises(ValueError, match='loader got'): align(src, wit, tr.x, lr=0.1)
    with pytest.raises(TypeError): align(src, wit, b)          # lr is required


def test_alignment_loss_reference():
    set_seed(0)
    s, w = torch.randn(6, 5), torch.randn(6, 5)
    for T in (0.5, 1.0, 3.0):
        ps, pw = torch.softmax(s / T, 1), torch.softmax(w / T, 1)
        ref = torch.distributions.kl_divergence(torch.distributions.Categorical(pw), torch.distributions.Categorical(ps)).mean()
        assert torch.allclose(alignment_loss(s, w, T=T), T ** 2 * ref, atol=1e-6)
    with pytest.raises(ValueError, match='same batch'): alignment_loss(s, w[:2])
    with pytest.raises(ValueError, match='method'): alignment_loss(s, w, method='x')
    with pytest.raises(ValueError, match='source_out'): alignment_loss(s[0], w)


# ---------------------------------------------------------------- metrics
def test_similarity_metrics():
    set_seed(0)
    a, b = MLP(16, hidden=(8,)), MLP(16, hidden=(8,))
    x, y = torch.rand(20, 1, 4, 4), torch.randint(0, 10, (20,))
    assert abs(kl_divergence(a, a, x)) < 1e-6 and kl_divergence(a, b, x) > 0
    assert prediction_agreement(a, a, x) == 1.0
    assert abs(input_grad_cosine(a, a, x, y) - 1) < 1e-5
    def grads(m):
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(m(xg), y, reduction='sum'), xg)[0].flatten(1)
    ga, gb = grads(a), grads(b)
    assert abs(input_grad_cosine(a, b, x, y) - F.cosine_similarity(ga, gb, dim=1).mean().item()) < 1e-6
    assert torch.allclose(input_grad_norm(a, x, y), ga.norm(dim=1), atol=1e-6)
    with torch.no_grad(): assert torch.allclose(input_grad_norm(a, x, y), ga.norm(dim=1), atol=1e-6)   # works under no_grad
    with pytest.raises(ValueError, match='T got'): kl_divergence(a, b, x, T=0)
    with pytest.raises(ValueError, match=r'\[0, 1\]'): prediction_agreement(a, b, x + 2)


def test_metrics_run_in_eval_mode_in_batches_and_leave_the_models_untouched(toy):
    "KL, agreement and gradient norm use the running batch-norm statistics (eval mode), any batch size, and restore the models."
    _, x, y = toy
    a, b = _cnn(seed=3).train(), _cnn(seed=4).train()
    sa, sb = _snapshot(a), _snapshot(b)
    with torch.no_grad(), eval_guard(a), eval_guard(b): pa, pb = F.log_softmax(a(x), 1), F.log_softmax(b(x), 1)
    xg = x.clone().requires_grad_(True)
    with eval_guard(a): ga, = torch.autograd.grad(F.cross_entropy(a(xg), y, reduction='sum'), xg)
    kl, ref = kl_divergence(a, b, x, batch_size=5), (pa.exp() * (pa - pb)).sum(1).mean().item()
    assert math.isclose(kl, ref, rel_tol=1e-5), (kl, ref)
    agree, ref = prediction_agreement(a, b, x, batch_size=5), (pa.argmax(1) == pb.argmax(1)).double().mean().item()
    assert agree == ref, (agree, ref)
    assert torch.allclose(input_grad_norm(a, x, y), ga.flatten(1).norm(dim=1), atol=1e-6)
    assert _same(a, sa) and _same(b, sb)


@pytest.mark.parametrize('act', [nn.Tanh, nn.ReLU, nn.Softplus])
def test_hessian_max_eig_matches_dense(act):
    set_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), act(), nn.Linear(12, 5)).double()
    x, y = torch.rand(5, 1, 4, 4, dtype=torch.float64), torch.randint(0, 5, (5,))
    dense = torch.stack([torch.linalg.eigvalsh(torch.autograd.functional.hessian(
        lambda z: F.cross_entropy(net(z.view(1, 1, 4, 4)), y[i:i + 1]), x[i].flatten())).max() for i in range(5)])
    lam = hessian_max_eig(net, x, y, iters=400)
    assert torch.allclose(lam, dense, rtol=1e-3, atol=1e-8), (lam, dense)
    net.train(); snap = _snapshot(net); hessian_max_eig(net, x, y, iters=2); assert _same(net, snap)


def _dense_top_eig(net, x, y):
    "Per-example largest eigenvalue of the dense float64 input Hessian of the cross-entropy, and the smallest one."
    ev = torch.stack([torch.linalg.eigvalsh(torch.autograd.functional.hessian(
        lambda z: F.cross_entropy(net(z.view(1, *x.shape[1:])), y[i:i + 1]), x[i].flatten())) for i in range(len(x))])
    return ev[:, -1], ev[:, 0]

def _tanh_mlp(seed):
    set_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double().eval()

def _gelu_cnn(seed):
    set_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.GELU(), nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.GELU(),
                         nn.Flatten(), nn.Linear(6 * 16, 10)).double().eval()

@pytest.mark.parametrize('make', [_tanh_mlp, _gelu_cnn])
@pytest.mark.parametrize('seed', [0, 1])
def test_hessian_max_eig_converges_at_defaults_on_indefinite_hessians(make, seed):
    "Smooth models have indefinite input Hessians; at its defaults the estimate must match the dense lambda_max."
    net = make(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (6,), generator=g)
    top, bottom = _dense_top_eig(net, x, y)
    assert (bottom < 0).all() and (top > 0).all(), (bottom, top)        # the case the issue is about: indefinite
    lam = hessian_max_eig(net, x, y)
    err = ((lam - top).abs() / top.abs()).max().item()
    assert err < 1e-5, f"relative error {err:.2e}: {lam.tolist()} vs dense {top.tolist()}"
    assert (lam <= top + 1e-9 * top.abs()).all(), (lam, top)          # Ritz values approach lambda_max from below

def test_hessian_negative_dominant_uses_shift():
    "A 'model' whose loss has a negative dominant curvature: the estimate must be lambda_max, not the dominant eigenvalue."
    class Quad(nn.Module):   # logits (0, q) with q = -x^T A x / 2: near x = 0 the input Hessian of CE(y=0) is -A/2
        def __init__(self, A): super().__init__(); self.register_buffer('A', A)
        def forward(self, x):
            f = x.flatten(1)
            q = -0.5 * ((f @ self.A) * f).sum(1)
            return torch.stack([torch.zeros_like(q), q], 1)
    A = torch.diag(torch.tensor([5.0, -0.5, -1.0, 0.2], dtype=torch.float64))   # H ~ diag(-2.5, .25, .5, -.1)
    m = Quad(A)
    x, y = torch.tensor([[[[1e-3, 1e-3], [1e-3, 1e-3]]]], dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    dense = torch.linalg.eigvalsh(torch.autograd.functional.hessian(
        lambda z: F.cross_entropy(m(z.view(1, 1, 2, 2)), y), x.flatten())).max()
    assert dense < 0.6 and torch.allclose(hessian_max_eig(m, x, y, iters=300), dense.view(1), rtol=1e-3)


def test_loss_surface_and_transfer_error():
    set_seed(0)
    a, b = MLP(16, hidden=(8,)), MLP(16, hidden=(8,))
    x, y = torch.rand(30, 1, 4, 4), torch.randint(0, 10, (30,))
    d1 = 0.1 * torch.randn_like(x[:2])
    s = loss_surface(a, x[:2], y[:2], d1, n=3, span=1.0)
    with torch.no_grad(): ref = F.cross_entropy(a(x[:2] - d1), y[:2], reduction='none')
    assert s.shape == (2, 3, 3) and torch.allclose(s[:, 0, 1], ref, atol=1e-6)
    from robust_nb.attacks import pgd
    # two linear models that agree on most inputs: a non-empty evaluation set with an error strictly inside (0, 1)
    set_seed(0)
    a = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters(): p.add_(p.std() * torch.randn_like(p))
    x = torch.rand(100, 1, 4, 4)
    with torch.no_grad(): y = a(x).argmax(1)
    xs, xt = (pgd(m, x, y, eps=0.05, steps=5) for m in (a, b))
    e, k = transfer_error(a, b, x, y, pgd, x_adv=xs, x_adv_target=xt, return_count=True)
    # by hand (6.5.1): right on both models, adversarial on each own model; error of b on a's perturbations
    with torch.no_grad():
        keep = (a(x).argmax(1) == y) & (b(x).argmax(1) == y) & (a(xs).argmax(1) != y) & (b(xt).argmax(1) != y)
        expect = (b(xs[keep]).argmax(1) != y[keep]).double().mean().item()
    assert k == int(keep.sum()) >= 5, (k, int(keep.sum()))
    assert 0 < expect < 1 and e == pytest.approx(expect), (e, expect)
    e_self, k_self = transfer_error(a, a, x, y, pgd, eps=0.05, steps=5, return_count=True)
    assert k_self > 0 and e_self == 1.0, (e_self, k_self)     # a model is its own perfect target
    # an empty evaluation set (the source is never fooled): NaN, and a count of 0
    e0, k0 = transfer_error(a, b, x, y, pgd, x_adv=x, x_adv_target=xt, return_count=True)
    assert k0 == 0 and math.isnan(e0), (e0, k0)
    with pytest.raises(ValueError, match='attack got'): transfer_error(a, b, x, y, None)
    with pytest.raises(ValueError, match='x_adv got shape'): transfer_error(a, b, x, y, pgd, x_adv=x[:3], eps=0.1)


# ---------------------------------------------------------------- torchrun
DDP_SCRIPT = textwrap.dedent('''
    import os, sys, torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from robust_nb.alignment import align
    torch.set_num_threads(1)
    out = sys.argv[1]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 1, 4, 4, generator=g)
    torch.manual_seed(0); src = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    torch.manual_seed(1); wit = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    a = align(src, wit, DataLoader(TensorDataset(x), batch_size=32), epochs=2, lr=0.5, warmup=0, device='cpu')
    rank = int(os.environ.get('RANK', 0))
    torch.save(a.state_dict(), f"{out}/aligned{rank}_{os.environ.get('WORLD_SIZE', 1)}.pt")
''')


def test_align_under_torchrun(tmp_path):
    (tmp_path / 'script.py').write_text(DDP_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    p = subprocess.run([sys.executable, str(tmp_path / 'script.py'), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path / 'script.py'), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    one = torch.load(tmp_path / 'aligned0_1.pt', weights_only=True)
    r0, r1 = (torch.load(tmp_path / f'aligned{r}_2.pt', weights_only=True) for r in (0, 1))
    for k in one:
        assert torch.equal(r0[k], r1[k]), k                             # every process ends with the same model
        assert torch.allclose(r0[k], one[k], atol=1e-5), k              # = the one-process run on the same global batches

def test_transfer_attacks_work_under_no_grad():
    "Like Chapter 2's attacks, the transfer attacks turn input gradients on themselves."
    set_seed(0)
    m, x, y = MLP(16, hidden=(8,)), torch.rand(6, 1, 4, 4), torch.randint(0, 10, (6,))
    ref = transfer.mi_fgsm(m, x, y, eps=0.1)
    with torch.no_grad(): got = transfer.mi_fgsm(m, x, y, eps=0.1)
    assert torch.equal(ref, got)


def test_strided_cnn_shapes():
    "The small zoo's CNN works at every preset's image size and channel count; bn adds batch norm."
    from robust_nb.alignment import strided_cnn
    for c, s in ((1, 8), (1, 28), (3, 32)):
        for bn in (False, True):
            m = strided_cnn(c, s, bn=bn).eval()
            assert m(torch.rand(2, c, s, s)).shape == (2, 10)
            assert any(isinstance(l, nn.BatchNorm2d) for l in m) == bn


def test_transfer_rows_error_and_paired_se():
    "transfer_rows against the protocol of 6.5.1 written out by hand, and the SE of the paired difference."
    from robust_nb.experiments.alignment import TransferStudy
    from robust_nb.attacks import pgd, predict
    st_ = TransferStudy('tiny')
    x, y = st_.attack_data()
    assert len(y) == len(st_.test) and st_.test.x.shape[-1] == 8          # tiny: all 360 digits of 8x8
    set_seed(0); a, b, t = (MLP((1, 8, 8), hidden=(16,)).eval() for _ in range(3))
    with torch.no_grad(): y = predict(a, x)                                  # labels every model partly agrees with
    st_._attack_data[None] = (x, y)
    kw = dict(eps=0.3, alpha=0.1, steps=5)
    rows = st_.transfer_rows(0, 'blk', {'a': a, 'b': b}, {'t': (('t', 0), t)}, attack_kw=kw)
    adv = {}
    for k, m in (('a', a), ('b', b), ('t', t)):
        set_seed(0); adv[k] = pgd(m, x, y, **kw)
    keep = (predict(t, x) == y) & (predict(t, adv['t']) != y)
    for k, m in (('a', a), ('b', b)): keep &= (predict(m, x) == y) & (predict(m, adv[k]) != y)
    fa, fb = ((predict(t, adv[k][keep]) != y[keep]).double() * 100 for k in ('a', 'b'))
    n = int(keep.sum()); assert n > 10, n
    r = {row['variant']: row for row in rows}
    assert r['a']['n'] == r['b']['n'] == n
    assert math.isclose(r['a']['error'], fa.mean().item()) and math.isclose(r['b']['error'], fb.mean().item())
    assert math.isclose(r['a']['se'], (fa.std() / n ** 0.5).item())
    assert math.isclose(r['b']['se'], ((fb - fa).std() / n ** 0.5).item())


def test_changes_formats_means_and_se():
    "changes: mean over seeds, first variant absolute, the others as changes, with sqrt(sum se^2)/S."
    import pandas as pd
    from robust_nb.experiments.alignment import changes
    df = pd.DataFrame([dict(seed=s, block='B', variant=v, target='T', error=e, se=se)
                       for s, v, e, se in ((0, 'n/a', 50, 3), (1, 'n/a', 60, 4), (0, 'w', 52, 1), (1, 'w', 66, 1))])
    out = changes(df)
    assert out.loc[('B', 'n/a'), 'T'] == '55.0 ± 2.5'
    assert out.loc[('B', 'w'), 'T'] == f"+4.0 ± {math.sqrt(2) / 2:.1f}"
    assert changes(df.drop(columns='se')).loc[('B', 'w'), 'T'] == '+4.0'


def test_transfer_rows_empty_evaluation_set_gives_nan():
    "A source no attack can fool leaves no example: every row has n = 0 and NaN error and se (no empty batch is predicted)."
    from robust_nb.experiments.alignment import TransferStudy
    const = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad(): const[1].weight.zero_(); const[1].bias.zero_()      # predicts class 0 whatever the input
    st_ = TransferStudy('tiny', device='cpu')
    set_seed(0); t = MLP((1, 8, 8), hidden=(16,)).eval()
    rows = st_.transfer_rows(0, 'blk', {'c': const.eval()}, {'t': (('t', 0), t)}, attack_kw=dict(eps=0.1, steps=2),
                             target_protocol=False)
    assert [(r['n'], math.isnan(r['error']), math.isnan(r['se'])) for r in rows] == [(0, True, True)], rows


def test_transfer_config_keeps_the_study_settings():
    "TransferConfig per preset: the values TransferStudy used to set itself (eps, PGD-20 with eps/4, alignment, seeds, sizes)."
    from robust_nb.experiments.alignment import TransferConfig
    old = {'tiny':  (0.1, 64, dict(epochs=3, lr=0.05, T=1.0), (0, 1), (0, 1, 2), None, None, (20, 20, 20, 10, 5)),
           'small': (0.1, 128, dict(epochs=1, lr=0.05, T=1.0), (0, 1, 2), (0,), 20000, 1000, (5, 5, 3, 3, 3)),
           'paper': (4 / 255, 128, dict(epochs=1, lr=1e-3, T=1.0), (0, 1, 2), (0, 1, 2), None, 1000, (20,) * 5)}
    for p, (eps, bs, akw, seeds, slow, n_train, n_attack, ep) in old.items():
        c = TransferConfig.for_preset(p)
        got = (c.eps, c.batch_size, c.align_kw, c.seeds, c.slow_seeds, c.n_train, c.n_attack, tuple(c.zoo_epochs.values()))
        assert got == (eps, bs, akw, seeds, slow, n_train, n_attack, ep), (p, got)
        assert c.pgd_kw == dict(eps=eps, alpha=eps / 4, steps=20), (p, c.pgd_kw)
        assert list(c.zoo_epochs) == ['MLP-S', 'MLP-M', 'MLP-L', 'CNN', 'CNN-BN'] and c.zoo_lr == 0.05
    with pytest.raises(ValueError, match="overrides got"): TransferConfig.for_preset('tiny', eps_=0.2)


def test_study_old_attribute_names():
    "The study's old attributes read the config; overrides reach the zoo."
    from robust_nb.experiments.alignment import TransferStudy
    st_ = TransferStudy('tiny', device='cpu', eps=0.2, zoo_epochs={'MLP-S': 1, 'MLP-M': 2, 'MLP-L': 3, 'CNN': 4, 'CNN-BN': 5})
    assert (st_.eps, st_.pgd_kw, st_.seeds, st_.slow_seeds) == (0.2, dict(eps=0.2, alpha=0.05, steps=20), (0, 1), (0, 1, 2))
    assert (st_.batch_size, st_.align_kw, st_.n_attack, st_.img) == (64, dict(epochs=3, lr=0.05, T=1.0), None, 8)
    assert [e for _, e, _ in st_.zoo.values()] == [1, 2, 3, 4, 5]
    assert isinstance(st_.zoo['CNN'][0](), MnistCNN) and len(st_.train) == 1437 and len(st_.test) == 360
    with pytest.raises(AttributeError): st_.eps = 0.3                   # read-only: change the config instead


def test_old_names_import_lazily_from_the_chapter_module():
    "`robust_nb.alignment` still offers TransferStudy, changes, table_6_3, without importing the experiments layer on load."
    import robust_nb.experiments.alignment as ea
    from robust_nb.alignment import TransferStudy, changes, table_6_3
    assert (TransferStudy, changes, table_6_3) == (ea.TransferStudy, ea.changes, ea.table_6_3)
    with pytest.raises(AttributeError, match='no attribute'): alignment.no_such_name
    code = "import sys, robust_nb.alignment; print(sorted(m for m in sys.modules if m.startswith('robust_nb.experiments')))"
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == '[]', (p.stdout, p.stderr[-2000:])
