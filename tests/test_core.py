"Tests of robust_nb.core's boundary checks: device messages name their source, labels, unbatched images, 0-255 radii; record_claim displays nothing."
import importlib, math, warnings
import pytest
import torch

from robust_nb.core import get_device, check_inputs, check_labels


def test_get_device_names_its_source(monkeypatch):
    monkeypatch.delenv('ROBUST_NB_DEVICE', raising=False)
    with pytest.raises(ValueError, match="^--device got 'tpu'"): get_device('tpu', name='--device')
    with pytest.raises(ValueError, match="^device got 'tpu'"): get_device('tpu')
    monkeypatch.setenv('ROBUST_NB_DEVICE', 'tpu')
    with pytest.raises(ValueError, match="^ROBUST_NB_DEVICE got 'tpu'"): get_device()
    monkeypatch.setenv('ROBUST_NB_DEVICE', 'cpu')
    assert get_device('cpu', name='--device') == torch.device('cpu')    # the flag wins over the variable


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_missing_cuda_blames_the_flag_not_the_variable(monkeypatch):
    monkeypatch.setenv('ROBUST_NB_DEVICE', 'cpu')
    with pytest.raises(ValueError) as e: get_device('cuda', name='--device')
    assert "--device got 'cuda' but CUDA is not available" in str(e.value) and 'ROBUST_NB_DEVICE' not in str(e.value)
    assert 'pass --device cpu' in str(e.value)
    monkeypatch.setenv('ROBUST_NB_DEVICE', 'cuda')
    with pytest.raises(ValueError, match='ROBUST_NB_DEVICE=cpu or unset it'): get_device()


def test_labels_out_of_range():
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r'y has labels in \[-1, 2\]; expected class indices >= 0'): check_inputs(x, y - 1)
    with pytest.raises(ValueError, match=r'y has labels in \[0, 3\]; expected class indices in \[0, 2\] for 3 classes'):
        check_inputs(x, y, num_classes=3)
    assert check_labels(y, 4) is y


@pytest.mark.parametrize('shape', [(3, 32, 32), (1, 28, 28), (3, 8, 8)])
def test_unbatched_image_is_refused(shape):
    with pytest.raises(ValueError, match=r'one unbatched image \(C, H, W\); expected a batch \(N, C, H, W\): pass x\[None\]'):
        check_inputs(torch.rand(*shape))
    check_inputs(torch.rand(*shape)[None], torch.tensor([0]))


@pytest.mark.parametrize('eps, norm, warns', [(8, 'linf', True), (8, None, True), (1.0, 'linf', False), (8 / 255, 'linf', False),
                                              (1.5, 'l2', False), (8.0, 'l2', False), (8.5, 'l2', True)])
def test_eps_on_the_0_255_scale_warns(eps, norm, warns):
    "8x8 images: the l2 diameter of [0, 1]^64 is 8, so an l2 radius up to 8 is legitimate; linf above 1 never is."
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert check_inputs(x, y, eps=eps, norm=norm) == (float(eps), norm)
    assert len(w) == int(warns), [str(m.message) for m in w]
    if warns: assert f'eps={eps:g} exceeds' in str(w[0].message)


def test_attacks_warn_about_eps_8():
    from torch import nn
    from robust_nb.attacks import fgsm
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.warns(UserWarning, match='0-255 scale'): fgsm(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), eps=8)


@pytest.mark.parametrize('module', ['robust_nb.core', 'robust_nb.book'])
def test_record_claim_returns_nothing_to_display(module, tmp_path, monkeypatch):
    import importlib
    monkeypatch.setenv('ROBUST_NB_RESULTS', str(tmp_path))
    rc = importlib.import_module(module).record_claim
    assert rc('9', 'k', claim='c', thesis='1', ours='2', reproduces=True) is None
    assert list(tmp_path.glob('claims_9.json'))


MODULES = ['core', 'book', 'data', 'models', 'train', 'attacks', 'defenses', 'soar', 'frequency', 'optimizers', 'linear',
           'appendix_4d', 'hierarchy', 'alignment', 'transfer', 'evaluation', 'tables', 'exercises', 'cli',
           'experiments.base', 'experiments.soar', 'experiments.optimizers', 'experiments.hierarchy', 'experiments.alignment']

@pytest.mark.parametrize('module', MODULES)
def test_help_shows_every_documented_parameter(module):
    "The docments comments of every public function reach __doc__ (add_param_docs), so help() shows them: written once."
    import inspect
    from fastcore.docments import docments
    mod = importlib.import_module(f'robust_nb.{module}')
    missing = {}
    for nm in mod.__all__:
        o = getattr(mod, nm)
        if not inspect.isfunction(o) or o.__module__ != mod.__name__: continue
        try: dm = docments(o)
        except (TypeError, OSError): continue
        lost = [p for p, d in dm.items() if d and p != 'return' and d not in (o.__doc__ or '')]
        if lost: missing[nm] = lost
    assert not missing, f"robust_nb.{module}: help() lacks the parameter comments of {missing}"
