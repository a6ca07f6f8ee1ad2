"API contract, validation and property tests for `robust_nb.models` (notebook 01b_models)."
import io, inspect, pickle
import pytest, torch
from torch import nn
from hypothesis import given, settings, strategies as st
from robust_nb.core import eval_guard, get_device, set_seed
from robust_nb import models
from robust_nb.models import MLP, cnn6, cnn8, MnistCNN, PreActResNet18, resnet10, resnet18, resnet50, count_params

torch.set_num_threads(1)

CONV = {'cnn6': cnn6, 'cnn8': cnn8, 'PreActResNet18': PreActResNet18, 'resnet10': resnet10, 'resnet18': resnet18,
        'resnet50': resnet50, 'MnistCNN': lambda num_classes=10, in_channels=1, **kw: MnistCNN(num_classes, in_channels, input_size=8, **kw)}
ALL = {**CONV, 'MLP': lambda num_classes=10, in_channels=1, **kw: MLP(num_classes=num_classes, in_channels=in_channels, input_size=8, **kw)}

def test_contract_names():
    for name in ('MLP', 'cnn6', 'cnn8', 'MnistCNN', 'PreActResNet18', 'resnet10', 'resnet18', 'resnet50', 'count_params'):
        assert name in models.__all__
    for f in (cnn6, cnn8, MnistCNN, PreActResNet18, resnet10, resnet18, resnet50, MLP):
        params = inspect.signature(f).parameters
        assert 'num_classes' in params and 'in_channels' in params, f
    assert list(inspect.signature(PreActResNet18).parameters)[:3] == ['num_classes', 'in_channels', 'bn']

@pytest.mark.parametrize('name', list(ALL))
@pytest.mark.parametrize('C', [1, 3])
def test_logit_shapes(name, C):
    set_seed(0)
    m = ALL[name](num_classes=7, in_channels=C).eval()
    out = m(torch.rand(2, C, 8, 8))
    assert out.shape == (2, 7) and out.dtype == torch.float32
    assert not torch.allclose(out.sum(1), torch.ones(2))   # logits, not probabilities

@pytest.mark.parametrize('name', list(ALL))
@pytest.mark.parametrize('bad', [0, -1, 2.5, True, '10', None])
def test_bad_num_classes_and_channels(name, bad):
    with pytest.raises(ValueError, match='num_classes got'): ALL[name](num_classes=bad)
    with pytest.raises(ValueError, match='in_channels got'): ALL[name](in_channels=bad)

@pytest.mark.parametrize('f', [cnn6, cnn8, PreActResNet18, resnet10, resnet18, resnet50])
def test_bad_bn(f):
    with pytest.raises(ValueError, match='bn got'): f(10, in_channels=3, bn='off')

@pytest.mark.parametrize('f', [cnn6, cnn8, PreActResNet18, resnet10, resnet18, resnet50])
def test_bn_off_has_no_norm_layers_or_stats(f):
    m = f(10, in_channels=3, bn=False)
    assert not any(isinstance(l, nn.modules.batchnorm._NormBase) for l in m.modules())
    assert len(list(m.buffers())) == 0
    x = torch.rand(3, 3, 8, 8)
    assert torch.allclose(m.train()(x), m.eval()(x), atol=1e-6)   # nothing mode-dependent left

def test_mnist_cnn_table_4_2():
    m = MnistCNN()
    assert m.classifier[0].in_features == 21632 and m.classifier[0].out_features == 100
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in m.modules() if isinstance(c, nn.Conv2d)] == \
           [(1, 16, (4, 4), (1, 1)), (16, 32, (4, 4), (1, 1))]
    with pytest.raises(ValueError, match=r'expected \(N, C, 28, 28\)'): m(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match='input_size got'): MnistCNN(input_size=0)

@pytest.mark.parametrize('s', [8, 9, 15, 28, 32])
def test_any_input_side_from_8(s):
    for f in (cnn6, cnn8, resnet10, PreActResNet18):
        assert f(4, in_channels=1).eval()(torch.rand(1, 1, s, s)).shape == (1, 4)

@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=0, max_size=3), st.integers(1, 30), st.integers(1, 12))
def test_mlp_param_count_closed_form(hidden, in_features, K):
    dims = [in_features, *hidden, K]
    m = MLP(in_features, hidden=hidden, num_classes=K)
    assert count_params(m) == sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
    assert m(torch.rand(2, in_features)).shape == (2, K)

def test_mlp_input_validation():
    assert MLP((3, 4, 4), num_classes=2).in_features == 48
    with pytest.raises(ValueError, match='expected in_features=48'): MLP((3, 4, 4), num_classes=2)(torch.rand(1, 3, 5, 5))
    with pytest.raises(ValueError, match='in_features got'): MLP((3, 0, 4))
    with pytest.raises(ValueError, match='hidden got'): MLP(4, hidden=[4, 0])

@pytest.mark.parametrize('name', list(ALL))
def test_state_dict_roundtrip_and_pickle(name):
    set_seed(0); a = ALL[name](in_channels=1)
    set_seed(1); b = ALL[name](in_channels=1)
    buf = io.BytesIO(); torch.save(a.state_dict(), buf); buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(a.eval()(x), b.eval()(x))
    c = pickle.loads(pickle.dumps(a))   # whole models pickle (multiprocessing, DDP spawn)
    assert torch.equal(c.eval()(x), a(x))

@pytest.mark.parametrize('name', list(ALL))
def test_attack_style_use_on_device(name):
    "An attack's access pattern: input gradients under eval_guard on get_device(), model left as found."
    dev = get_device()
    set_seed(0); m = ALL[name](in_channels=1).to(dev).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.rand(2, 1, 8, 8, device=dev, requires_grad=True)
    with eval_guard(m):
        g, = torch.autograd.grad(nn.functional.cross_entropy(m(x), torch.tensor([0, 1], device=dev)), x)
    assert g.shape == x.shape and g.abs().sum() > 0 and g.device.type == dev.type
    assert m.training and all(p.requires_grad for p in m.parameters()) and all(p.grad is None for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize('name', ['preact_resnet18', 'resnet50', 'mnist_cnn', 'mlp'])
def test_build_model_by_name(name):
    "The registry builds the same network as the constructor it names (the big ones the notebook skips)."
    from robust_nb.models import MODELS, build_model
    side = 28 if name == 'mnist_cnn' else 8
    set_seed(0); m = build_model(name, num_classes=5, in_channels=3, img_size=side)
    set_seed(0); ref = MODELS[name](5, 3, side)
    assert type(m) is type(ref) and count_params(m) == count_params(ref)
    for k, v in ref.state_dict().items(): assert torch.equal(m.state_dict()[k], v), k
    assert m.eval()(torch.rand(2, 3, side, side)).shape == (2, 5)
    with pytest.raises(ValueError, match='img_size got 0'): build_model(name, num_classes=5, in_channels=3, img_size=0)
