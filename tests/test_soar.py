"Fast tests of robust_nb.soar: exact and finite-difference HVPs, the SOAR/FOAR regularisers, soar_loss, validation."
import itertools, math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from robust_nb.soar import hvp, hvp_fd, foar_regularizer, soar_regularizer, soar_loss, foar_loss, soar_objective, GRAD_METHODS

torch.set_num_threads(1)

def smooth_model(d=5, c=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, c)).to(dtype)

@pytest.fixture
def setup():
    m = smooth_model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    return m, x, y

def ce(m, y): return lambda z: F.cross_entropy(m(z), y, reduction='none')

def dense_hessians(m, x, y):
    return torch.stack([torch.autograd.functional.hessian(lambda z: F.cross_entropy(m(z[None]), y[i:i + 1]), x[i])
                        for i in range(x.shape[0])])

def test_hvp_matches_dense_hessian(setup):
    m, x, y = setup
    v = torch.randn_like(x)
    torch.testing.assert_close(hvp(ce(m, y), x, v), torch.einsum('nij,nj->ni', dense_hessians(m, x, y), v), rtol=1e-10, atol=1e-12)

def test_hvp_is_linear_and_symmetric(setup):
    m, x, y = setup
    u, v = torch.randn_like(x), torch.randn_like(x)
    f = ce(m, y)
    torch.testing.assert_close(hvp(f, x, 2 * u - 3 * v), 2 * hvp(f, x, u) - 3 * hvp(f, x, v))
    torch.testing.assert_close((u * hvp(f, x, v)).sum(1), (v * hvp(f, x, u)).sum(1))

def test_hvp_of_a_linear_loss_is_zero():
    w = torch.randn(5, dtype=torch.float64)
    x = torch.rand(3, 5, dtype=torch.float64)
    assert torch.equal(hvp(lambda z: z @ w, x, torch.randn_like(x)), torch.zeros_like(x))

def test_hvp_fd_converges_to_hvp(setup):
    m, x, y = setup
    v = torch.randn_like(x)
    exact = hvp(ce(m, y), x, v)
    err = [((hvp_fd(ce(m, y), x, v, h) - exact).norm() / exact.norm()).item() for h in (1e-1, 1e-2, 1e-3, 1e-6)]
    assert err[0] > err[1] > err[2] > err[3]
    assert 5 < err[1] / err[2] < 20          # first-order truncation error: O(h)
    assert err[3] < 1e-4

def test_hvp_fd_is_formula_3_11(setup):
    m, x, y = setup
    v, h = torch.randn_like(x), 0.05
    nv = v.norm(dim=1, keepdim=True)
    gx = lambda z: torch.autograd.grad(ce(m, y)(z.requires_grad_()).sum(), z)[0]
    torch.testing.assert_close(hvp_fd(ce(m, y), x, v, h), nv * (gx(x + h * v / nv) - gx(x.clone())) / h)

def test_foar_regularizer_is_max_of_linearised_loss(setup):
    m, x, y = setup
    eps = 0.05
    xr = x.clone().requires_grad_()
    g, = torch.autograd.grad(ce(m, y)(xr).sum(), xr)
    verts = eps * torch.tensor(list(itertools.product([-1., 1.], repeat=5)), dtype=torch.float64)
    torch.testing.assert_close(foar_regularizer(m, x, y, eps=eps), (g @ verts.T).amax(1))
    torch.testing.assert_close(foar_regularizer(m, x, y, eps=eps, norm='l2'), eps * g.norm(dim=1))

def augmented(g, A):
    N, d = g.shape
    return torch.cat([torch.cat([A, g[:, :, None]], 2), torch.cat([g[:, None], torch.ones(N, 1, 1, dtype=g.dtype)], 2)], 1)

def test_soar_regularizer_matches_dense_H(setup):
    m, x, y = setup
    eps, d = 0.1, 5
    xr = x.clone().requires_grad_()
    g, = torch.autograd.grad(ce(m, y)(xr).sum(), xr)
    H = augmented(g, dense_hessians(m, x, y))
    fac = (d * eps**2 + 1) / 2
    torch.manual_seed(3); R = soar_regularizer(m, x, y, eps=eps, h=1e-5)
    torch.manual_seed(3); zd, z1 = torch.randn((1, *x.shape), dtype=x.dtype), torch.randn((1, 6), dtype=x.dtype)
    z = torch.cat([zd[0], z1[0][:, None]], 1)
    torch.testing.assert_close(R, fac * (H @ z[..., None]).squeeze(-1).norm(dim=1), rtol=1e-4, atol=1e-8)
    torch.manual_seed(4); R_rms = soar_regularizer(m, x, y, eps=eps, h=1e-5, n_samples=5000, estimator='rms')
    torch.manual_seed(4); R_mean = soar_regularizer(m, x, y, eps=eps, h=1e-5, n_samples=5000, estimator='mean')
    torch.testing.assert_close(R_rms, fac * torch.linalg.matrix_norm(H), rtol=0.05, atol=0)
    assert (R_mean < R_rms).all() and (R_mean > math.sqrt(2 / math.pi) * R_rms * 0.97).all()

def test_regularizers_keep_dtype(setup):
    m, x, y = setup
    assert soar_regularizer(m, x, y, eps=0.1).dtype == torch.float64
    assert foar_regularizer(m.float(), x.float(), y, eps=0.1).dtype == torch.float32

def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))

@pytest.mark.parametrize('grad_method', GRAD_METHODS)
@pytest.mark.parametrize('init', ['pgd1', 'rand', 'zero'])
@pytest.mark.parametrize('training', [True, False])
def test_soar_loss_differentiable_and_state_restored(init, training, grad_method):
    net = bn_net().train(training)
    x, y = torch.rand(8, 1, 6, 6), torch.randint(0, 3, (8,))
    flags = [p.requires_grad for p in net.parameters()]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = soar_loss(net, x, y, eps=0.1, init=init, grad_method=grad_method)
    assert out.shape == (8,) and torch.isfinite(out).all()
    out.mean().backward()
    assert net.training == training
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    tracked = net[1].num_batches_tracked.item() - before['1.num_batches_tracked'].item()
    assert tracked == (1 if training else 0)
    if not training: assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())

@pytest.mark.parametrize('grad_method', GRAD_METHODS)
def test_soar_loss_gradient_matches_finite_difference(setup, grad_method):
    m, x, y = setup
    dirs = [torch.randn_like(p) for p in m.parameters()]
    def val(t):
        with torch.no_grad():
            for p, dv in zip(m.parameters(), dirs): p.add_(t * dv)
            torch.manual_seed(11); v = soar_loss(m, x, y, eps=0.1, init='zero', h=1e-4).sum()
            for p, dv in zip(m.parameters(), dirs): p.sub_(t * dv)
        return v
    m.zero_grad(); torch.manual_seed(11); soar_loss(m, x, y, eps=0.1, init='zero', h=1e-4, grad_method=grad_method).sum().backward()
    analytic = sum((p.grad * dv).sum() for p, dv in zip(m.parameters(), dirs))
    torch.testing.assert_close(analytic, (val(1e-5) - val(-1e-5)) / 2e-5, rtol=1e-5, atol=1e-8)

def test_clip_caps_value_keeps_direction(setup):
    m, x, y = setup
    torch.manual_seed(2); full = soar_loss(m, x, y, eps=0.5, init='zero', clip=None)
    torch.manual_seed(2); capped = soar_loss(m, x, y, eps=0.5, init='zero', clip=0.01)
    loss = F.cross_entropy(m(x), y, reduction='none')
    torch.testing.assert_close(capped, loss + 0.01)
    assert (full > capped).all()

def test_soar_objective_for_fit(setup):
    m, x, y = setup
    torch.manual_seed(0); a = soar_objective(eps=0.1, init='zero')(m, x, y)
    torch.manual_seed(0); b = soar_loss(m, x, y, eps=0.1, init='zero').mean()
    assert a.dim() == 0; torch.testing.assert_close(a, b)

@pytest.mark.parametrize('kw,match', [
    (dict(eps=-0.1), 'eps'), (dict(eps=float('nan')), 'eps'), (dict(eps=0.1, h=0), 'h'), (dict(eps=0.1, h=float('inf')), 'h'),
    (dict(eps=0.1, n_samples=0), 'n_samples'), (dict(eps=0.1, estimator='median'), 'estimator'),
    (dict(eps=0.1, init='fgsm'), 'init'), (dict(eps=0.1, clip=-1), 'clip'), (dict(eps=0.1, norm='l1'), 'norm'),
    (dict(eps=0.1, grad_method='fd'), 'grad_method')])
def test_soar_loss_rejects_bad_options(setup, kw, match):
    m, x, y = setup
    with pytest.raises(ValueError, match=match): soar_loss(m, x, y, **kw)

@pytest.mark.parametrize('fn', [soar_loss, foar_loss, soar_regularizer, foar_regularizer])
def test_bad_inputs(setup, fn):
    m, x, y = setup
    with pytest.raises(ValueError, match=r'\[0, 1\]'): fn(m, x + 2, y, eps=0.1)
    with pytest.raises(ValueError, match='NaN'): fn(m, x.masked_fill(x > 0.5, float('nan')), y, eps=0.1)
    with pytest.raises(ValueError, match='y got shape'): fn(m, x, y[:2], eps=0.1)
    with pytest.raises(ValueError, match='model'): fn(lambda z: z, x, y, eps=0.1)

def test_hvp_validation(setup):
    m, x, y = setup
    with pytest.raises(ValueError, match='shape'): hvp(ce(m, y), x, x[:2])
    with pytest.raises(ValueError, match='h got -1.0; expected a finite number > 0'): hvp_fd(ce(m, y), x, x, -1.0)
    with pytest.raises(ValueError, match='NaN'): hvp_fd(ce(m, y), x, torch.full_like(x, float('nan')))


# --- one home per helper (issue 14): the input gradients are robust_nb.core.input_grad's, no private imports

def test_input_gradients_are_core_input_grad(setup):
    from robust_nb.core import input_grad
    m, x, y = setup
    _, g = input_grad(m, x, y)
    torch.testing.assert_close(foar_regularizer(m, x, y, eps=0.1, norm='l2'), 0.1 * g.norm(dim=1), rtol=0, atol=0)
    v = torch.randn_like(x)
    nv = v.norm(dim=1, keepdim=True)
    fd = lambda h: nv * (input_grad(m, x + h * v / nv, y)[1] - g) / h
    torch.testing.assert_close(hvp_fd(ce(m, y), x, v, 0.01), fd(0.01), rtol=0, atol=0)
    assert foar_regularizer(m, x, y, eps=0.1).requires_grad, "grad mode on: the graph is kept (double backprop)"
    with torch.no_grad(): r = foar_regularizer(m, x, y, eps=0.1)
    assert not r.requires_grad, f"under no_grad the regulariser should carry no graph; got requires_grad={r.requires_grad}"

def test_soar_imports_no_private_names():
    import ast, robust_nb.soar as mod
    tree = ast.parse(open(mod.__file__).read())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.level or (n.module or '').startswith('robust_nb'))
               for a in n.names if a.name.startswith('_')]
    assert private == [], f"robust_nb.soar imports private names of other modules: {private}"


# --- the jvp (forward-over-reverse) parameter gradient equals the double-backprop one (issue 16) -----------------------

def soar_param_grad(net, x, y, grad_method, seed=7, **kw):
    "Flat parameter gradient of the summed SOAR objective and the state dict afterwards, from a fixed random state."
    net.zero_grad(); torch.manual_seed(seed)
    soar_loss(net, x, y, grad_method=grad_method, **kw).sum().backward()
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]), {k: v.clone() for k, v in net.state_dict().items()}

NETS = {
    'mlp': lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.Tanh(), nn.Linear(24, 3)),
    'cnn': lambda: nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(8 * 9, 3)),
    'bn_train': lambda: bn_net().train(),
    'bn_eval': lambda: bn_net().eval(),
    'dropout_train': lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.Tanh(), nn.Dropout(0.3), nn.Linear(24, 3)).train(),
}

@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize('name', list(NETS))
@pytest.mark.parametrize('init', ['pgd1', 'zero'])
def test_jvp_gradient_equals_double_backprop(name, dtype, tol, init):
    torch.manual_seed(0)
    net = NETS[name]().to(dtype)
    x, y = torch.rand(8, 1, 6, 6, dtype=dtype), torch.randint(0, 3, (8,))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ref, state_ref = soar_param_grad(net, x, y, 'double_backprop', eps=0.1, init=init, n_samples=2, estimator='rms')
    net.load_state_dict(start)
    new, state_new = soar_param_grad(net, x, y, 'jvp', eps=0.1, init=init, n_samples=2, estimator='rms')
    rel = ((new - ref).norm() / ref.norm()).item()
    cos = F.cosine_similarity(new, ref, dim=0).item()
    assert rel < tol, f"{name} {dtype}: relative error {rel:.2e} of the jvp gradient; expected < {tol}"
    assert abs(cos - 1) < tol, f"{name} {dtype}: cosine {cos:.15f} between the gradients; expected 1 within {tol}"
    assert [k for k, v in state_ref.items() if not torch.equal(v, state_new[k])] == []   # BN statistics moved once, the same way

def test_jvp_values_equal_and_work_without_grad(setup):
    m, x, y = setup
    for ctx in (torch.enable_grad, torch.no_grad):
        with ctx():
            torch.manual_seed(2); a = soar_loss(m, x, y, eps=0.1)
            torch.manual_seed(2); b = soar_loss(m, x, y, eps=0.1, grad_method='jvp')
            tracked = torch.is_grad_enabled()
        torch.testing.assert_close(b, a, rtol=1e-14, atol=0)
        assert b.requires_grad == a.requires_grad == tracked, f"requires_grad {b.requires_grad} (jvp), {a.requires_grad} (reference), grad mode {tracked}"

def test_jvp_regularizer_gradient_and_frozen_parameters(setup):
    m, x, y = setup
    m[0].weight.requires_grad_(False)
    grads = {}
    for gm in GRAD_METHODS:
        m.zero_grad(); torch.manual_seed(4)
        soar_regularizer(m, x, y, eps=0.1, grad_method=gm).sum().backward()
        grads[gm] = [None if p.grad is None else p.grad.clone() for p in m.parameters()]
    assert grads['jvp'][0] is None and m[0].weight.requires_grad is False
    for a, b in zip(grads['jvp'][1:], grads['double_backprop'][1:]): torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)

def test_jvp_leaves_the_random_stream_and_modes_alone():
    net = NETS['dropout_train']()
    x, y = torch.rand(8, 1, 6, 6), torch.randint(0, 3, (8,))
    after = {}
    for gm in GRAD_METHODS:
        torch.manual_seed(5); soar_loss(net, x, y, eps=0.1, grad_method=gm).sum().backward()
        after[gm] = torch.rand(4)
    torch.testing.assert_close(after['jvp'], after['double_backprop'], rtol=0, atol=0)
    assert net.training and all(m.training for m in net.modules())

# --- Section 3.4's experiment (robust_nb.experiments.soar): one code path per preset, the white-box row per example

def test_soar_config_per_preset():
    from robust_nb.experiments.soar import SoarConfig
    tiny, small = SoarConfig.for_preset('tiny'), SoarConfig.for_preset('small')
    assert (tiny['eps'], tiny['n_train'], tiny['n_attack'], tiny['ft_epochs']) == (0.2, None, None, 25)   # tiny unchanged
    assert small['n_train'] and small['n_attack'] and small['alpha'] == small['eps'] / 4
    assert small['n_attack'] >= 1000, f"small attacks {small['n_attack']} test images; a difference of a few points needs ~1000"

def test_soar_config_alpha_follows_eps_unless_given():
    from robust_nb.experiments.soar import SoarConfig
    assert SoarConfig.for_preset('paper', eps=0.1).alpha == 0.1 / 4
    assert SoarConfig.for_preset('paper', eps=0.1, alpha=0.01).alpha == 0.01
    with pytest.raises(ValueError, match=r"overrides got \['epochs'\]"): SoarConfig.for_preset('tiny', epochs=3)

def test_soar_models_for_new_architectures():
    from robust_nb.core import get_preset
    from robust_nb.experiments.soar import _soar_model
    P = get_preset('small')
    sizes = {a: sum(p.numel() for p in _soar_model(P, a, (1, 28, 28), 'cpu').parameters()) for a in ('mlp_64', 'default', 'mlp_512')}
    assert sizes['mlp_64'] < sizes['default'] < sizes['mlp_512'], f"capacity sequence of Table 3.10 in small: {sizes}"

def test_white_box_per_example_matches_fractions():
    from robust_nb.core import set_seed
    from robust_nb.experiments.soar import SoarExperiment
    ex = SoarExperiment('tiny', device='cpu', n_attack=20)
    assert ex.C is ex.config and ex.C['eps'] == ex.config.eps == 0.2
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    set_seed(0); frac = ex.white_box(m)
    set_seed(0); per = ex.white_box(m, per_example=True)
    assert list(per) == list(frac) == ['Clean', 'FGSM', 'PGD20', 'PGD100', 'PGD20-5']
    assert all(v.dtype == torch.bool and v.shape == (20,) for v in per.values())
    assert {k: v.double().mean().item() for k, v in per.items()} == frac

def test_old_names_import_lazily_from_the_api_module():
    "`from robust_nb.soar import SoarExperiment, table_3_2` still works, without robust_nb.soar importing the experiments layer."
    import subprocess, sys
    code = ("import sys, robust_nb.soar as s; assert 'robust_nb.experiments.soar' not in sys.modules, 'imported at load'; "
            "import robust_nb.experiments.soar as e; "
            "print([n for n in ('SoarExperiment', 'SoarConfig', 'SOAR_METHODS', 'table_3_2') if getattr(s, n) is not getattr(e, n)])")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == '[]', f"rc {out.returncode}, stdout {out.stdout!r}, stderr {out.stderr[-500:]!r}"
    import robust_nb.soar as s
    with pytest.raises(AttributeError, match='no attribute'): s.SoarSetup

def test_experiment_imports_no_private_names():
    import ast, robust_nb.experiments.soar as mod
    tree = ast.parse(open(mod.__file__).read())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.level or (n.module or '').startswith('robust_nb'))
               for a in n.names if a.name.startswith('_')]
    assert private == [], f"robust_nb.experiments.soar imports private names of other modules: {private}"
