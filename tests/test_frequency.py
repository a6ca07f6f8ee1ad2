"Property tests for robust_nb.frequency: DCT vs SciPy, band partitions, and the Lipschitz bound vs observed ratios."
import math
from fractions import Fraction
import numpy as np
import pytest
import scipy.fft
import torch
from torch import nn
from hypothesis import given, settings, strategies as st

from robust_nb.frequency import (dct_matrix, dct2, idct2, freq_bands, band_noise, filter_energy, filter_freq, freq_mask,
                                 lipschitz_upper_bound)

FAST = settings(max_examples=25, deadline=None)
shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 17), st.integers(1, 17))


@FAST
@given(d=st.integers(1, 40))
def test_dct_matrix_orthogonal_and_matches_scipy(d):
    C = dct_matrix(d, dtype=torch.float64)
    torch.testing.assert_close(C @ C.T, torch.eye(d, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(C, torch.from_numpy(scipy.fft.dct(np.eye(d), norm='ortho', axis=0)), atol=1e-12, rtol=0)


@FAST
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_dct2_scipy_inverse_parseval(shape, seed):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    xt = dct2(x)
    ref = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm='ortho')
    torch.testing.assert_close(xt, torch.from_numpy(ref), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(idct2(xt), x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(xt.pow(2).sum((-2, -1)), x.pow(2).sum((-2, -1)), atol=1e-9, rtol=1e-9)


def test_dct2_keeps_dtype_and_validates():
    x = torch.rand(2, 3, 5, 4)
    assert dct2(x).dtype == torch.float32 and dct2(x).shape == x.shape
    with pytest.raises(ValueError, match='floating-point'): dct2(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='NaN'): dct2(torch.full((3, 3), float('nan')))


@FAST
@given(h=st.integers(1, 20), w=st.integers(1, 20), data=st.data())
def test_freq_bands_partition_equal_sizes_ordered(h, w, data):
    n_bands = data.draw(st.integers(1, h * w))
    B = freq_bands((h, w), n_bands)
    assert B.shape == (n_bands, h, w)
    assert torch.equal(B.sum(0), torch.ones(h, w, dtype=torch.long))          # each basis in exactly one band
    n = h * w
    sizes = [n // n_bands + (b < n % n_bands) for b in range(n_bands)]      # equal, or the first n % n_bands one larger
    assert B.flatten(1).sum(1).tolist() == sizes, f'band sizes {B.flatten(1).sum(1).tolist()}; expected {sizes}'
    # brute force: rank the bases with Python's sort by (distance to DC, row-major position), cut into those sizes
    order, edges = sorted(range(n), key=lambda k: ((k // w) ** 2 + (k % w) ** 2, k)), np.cumsum([0] + sizes)
    want = torch.zeros(n_bands, n, dtype=torch.bool)
    for b in range(n_bands): want[b, order[edges[b]:edges[b + 1]]] = True
    diff = (B != want.view(n_bands, h, w)).nonzero().tolist()
    assert not diff, f'freq_bands({(h, w)}, {n_bands}) differs from the brute-force bands at (band, i, j) {diff[:5]}'


def test_band_noise_expected_norm_and_support():
    g = torch.Generator().manual_seed(0)
    B = freq_bands(10, 10)
    norms = torch.stack([band_noise((2000, 10, 10), B[b], 0.5, g, dtype=torch.float64).pow(2).sum((-2, -1)).mean() for b in range(10)])
    torch.testing.assert_close(norms, torch.full((10,), 0.25 * 10, dtype=torch.float64), rtol=0.08, atol=0)
    for b in range(10):
        z = dct2(band_noise((3, 10, 10), b, 1.0, g, n_bands=10))
        outside = (z.abs() * ~B[b]).amax().item()
        assert outside < 1e-5, f'band {b}: noise reaches {outside:.2e} outside its band; expected 0'


@FAST
@given(k=st.integers(0, 1000), seed=st.integers(0, 1000))
def test_filters_remove_p_percent(k, seed):
    p = k / 10          # a grid of percentages, so that no float lands a hair below an interpolation knot
    x = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    _, m = filter_freq(x, p, return_mask=True)
    assert int((~m).sum()) == round(p / 100 * 81), f'p={p}: filter_freq removed {int((~m).sum())} of 81 bases'
    _, m = filter_energy(x, p, return_mask=True)
    a = dct2(x).abs().numpy()
    want = a > np.percentile(a.reshape(3, 2, -1), p, axis=-1)[..., None, None]    # numpy's percentile, independently
    assert np.array_equal(m.numpy(), want), f'p={p}: the mask differs from numpy.percentile\'s at {np.argwhere(m.numpy() != want)[:5].tolist()}'
    removed = (~m).flatten(-2).sum(-1)
    n_low = math.floor(Fraction(k, 1000) * 80) + 1    # distinct values: all up to the floor(p/100 (n-1))-th smallest
    assert (removed == n_low).all(), f'p={p}: removed {removed.unique().tolist()} bases per plane; expected {n_low}'
    assert torch.equal(freq_mask(9, p=p), freq_mask(9, 9, p))


def _random_pairs_ratio(net, shape, n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.rand((n,) + shape, generator=g, dtype=torch.float64), torch.rand((n,) + shape, generator=g, dtype=torch.float64)
    x3 = x1 + 1e-4 * torch.randn(x1.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        r1 = (net(x1) - net(x2)).flatten(1).norm(dim=1) / (x1 - x2).flatten(1).norm(dim=1)
        r2 = (net(x1) - net(x3)).flatten(1).norm(dim=1) / (x1 - x3).flatten(1).norm(dim=1)
    return max(r1.max().item(), r2.max().item())


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.pool, self.fc = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1), nn.AvgPool2d(2), nn.Linear(3 * 16, 4)
    def forward(self, x):
        h = torch.relu(self.c1(x))
        return self.fc(self.pool(h + self.c2(h)).flatten(1))


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('make', [
    lambda: nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 1), nn.Flatten(), nn.Linear(16, 5)),
    lambda: _Residual(),
])
def test_lipschitz_bound_dominates_observed_ratios(make, seed):
    torch.manual_seed(seed)
    net = make().double()
    shape = (12,) if isinstance(net[0] if isinstance(net, nn.Sequential) else None, nn.Linear) else (1, 8, 8)
    # scale weights up so the network is far from trivially contractive
    with torch.no_grad():
        for p in net.parameters(): p.mul_(3)
    bound = lipschitz_upper_bound(net, shape)
    assert _random_pairs_ratio(net, shape, seed=seed) <= bound * (1 + 1e-9)


def test_lipschitz_conv_matches_dense_svd():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    J = torch.autograd.functional.jacobian(lambda v: conv._conv_forward(v, conv.weight, None), torch.zeros(1, 2, 6, 6, dtype=torch.float64))
    exact = torch.linalg.matrix_norm(J.reshape(-1, 72), 2).item()
    assert math.isclose(lipschitz_upper_bound(nn.Sequential(conv), (2, 6, 6)), exact, rel_tol=1e-6)


def test_lipschitz_refuses_unknown_layers():
    with pytest.raises(ValueError, match='Softplus'): lipschitz_upper_bound(nn.Sequential(nn.Linear(3, 3), nn.Softplus()), (3,))
    with pytest.raises(ValueError, match='input_shape'): lipschitz_upper_bound(nn.Linear(3, 3), (0,))


@pytest.mark.parametrize('name', ['filter_energy', 'band_noise', 'band_accuracy_drop', 'lipschitz_upper_bound'])
def test_help_shows_the_parameter_comments(name):
    import pydoc, robust_nb.frequency as fr
    from fastcore.docments import docments
    fn = getattr(fr, name)
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    missing = {p: d for p, d in docments(fn).items() if d and p != 'return' and d not in text}
    assert not missing, f'help({name}) lacks the comments of {sorted(missing)}, e.g. {next(iter(missing.items()))}'


def test_filtering_study_seeds_and_kept_models():
    from robust_nb.data import ImageTensorDataset
    from robust_nb.frequency import filtering_study
    g = torch.Generator().manual_seed(0)
    tr = ImageTensorDataset(torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 4)
    te = ImageTensorDataset(torch.rand(20, 1, 8, 8, generator=g), torch.arange(20) % 4)
    make = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    kept = {}
    fs = filtering_study(tr, te, make_model=make, ps=(50,), seeds=(0, 1), epochs=1, batch_size=8, device='cpu', keep_models=kept)
    want = [(f, p, s) for f, p in (('original', 0.0), ('energy', 50.0), ('frequency', 50.0)) for s in (0, 1)]
    assert list(zip(fs['filter'], fs.p, fs.seed)) == want, f'rows {list(zip(fs["filter"], fs.p, fs.seed))}; expected {want}'
    assert sorted(kept) == sorted(want), f'kept models {sorted(kept)}; expected one per row {sorted(want)}'
    again = filtering_study(tr, te, make_model=make, ps=(50,), seed=1, epochs=1, batch_size=8, device='cpu')
    assert list(again.test_acc) == list(fs.test_acc[fs.seed == 1]), 'seed=1 alone differs from seed 1 in seeds=(0, 1)'
    with pytest.raises(ValueError, match='seeds'): filtering_study(tr, te, make_model=make, seeds=(), epochs=1)
