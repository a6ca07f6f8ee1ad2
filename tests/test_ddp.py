"fit under torchrun: 2 CPU processes with gloo, checked against each other and against a one-process run."
import os, sys, signal, subprocess, textwrap
from pathlib import Path
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robust_nb.train import fit, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason='needs torch.distributed with gloo')

# Runs on every rank. Data and model are built identically on both ranks from fixed seeds; a spy on
# save_checkpoint records which ranks write; each rank's stdout goes to its own file.
SCRIPT = textwrap.dedent('''
    import os, sys, torch, torch.nn.functional as F
    from contextlib import redirect_stdout
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    import robust_nb.train as T
    from robust_nb.core import eval_guard

    out, rank = sys.argv[1], int(os.environ['RANK'])
    calls, _save = [], T.save_checkpoint
    def spy(path, *a, **k):
        calls.append(str(path)); return _save(path, *a, **k)
    T.save_checkpoint = spy

    def data():
        g = torch.Generator().manual_seed(0)
        x = torch.rand(256, 1, 8, 8, generator=g); w = torch.randn(64, 4, generator=g)
        return x, (x.flatten(1) @ w).argmax(1)
    x, y = data()

    # 1. standard training; in-order loader so that a one-process run sees the same global batches
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with open(f'{out}/stdout{rank}.txt', 'w') as f, redirect_stdout(f):
        hist = T.fit(model, DataLoader(TensorDataset(x, y), batch_size=32), epochs=4, lr=0.5,
                     ckpt_path=f'{out}/ckpt.pt', device='cpu')
    res = dict(params=model.state_dict(), init=init, loss=hist.train_loss.tolist(), calls=calls,
               cls=type(model).__name__, pg_alive=torch.distributed.is_initialized())

    # 2. an adversarial-training-style loss (input gradients under eval_guard, several forwards per step),
    #    a BatchNorm model and a shuffled loader: DDP must cope, and every rank must end with the same model;
    #    this second fit also reuses the process group that the first one initialised
    def fgsm_at(model, x, y):
        with eval_guard(model):
            xr = x.clone().requires_grad_(True)
            gx, = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
        return F.cross_entropy(model((x + 0.03 * gx.sign()).clamp(0, 1)), y, reduction='none')
    torch.manual_seed(1)
    adv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 4))
    h2 = T.fit(adv, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), epochs=3, lr=0.1,
               opt='sgd_momentum', loss=fgsm_at, progress=False, device='cpu')
    res.update(adv=adv.state_dict(), adv_loss=h2.train_loss.tolist())

    # 3. the evaluation helpers of robust_nb.train: sharding, sums and means over the two processes
    res.update(rank_world=list(T.rank_world()), shard=T.shard_indices(5), total=T.all_sum(torch.tensor([rank + 1.0])).item(),
               mean=T.shard_mean([float(rank)], 3))
    torch.save(res, f'{out}/rank{rank}.pt')
''')


@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ddp')
    (tmp / 'script.py').write_text(SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(tmp / 'script.py'), str(tmp)]
    # own session, so that on a hang the launcher *and* its workers can be killed together
    p = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try: out, _ = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); out, _ = p.communicate()
        pytest.fail(f"torchrun did not finish in 180 s:\n{out[-3000:]}")
    assert p.returncode == 0, f"torchrun failed:\n{out[-5000:]}"
    ranks = [torch.load(tmp / f'rank{r}.pt', weights_only=True) for r in (0, 1)]
    return tmp, ranks


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 8, 8, generator=g); w = torch.randn(64, 4, generator=g)
    return x, (x.flatten(1) @ w).argmax(1)


def test_ranks_end_identical(ddp_run):
    _, (r0, r1) = ddp_run
    for key in ('params', 'adv'):  # parameters *and* BN buffers
        assert list(r0[key]) == list(r1[key])
        for k in r0[key]: assert torch.equal(r0[key][k], r1[key][k]), (key, k)
    assert r0['loss'] == r1['loss']  # the reported loss is summed over both shards


def test_model_trained_in_place_and_loss_decreased(ddp_run):
    _, (r0, _) = ddp_run
    assert r0['cls'] == 'Sequential'  # the caller's module, not the DDP wrapper
    assert any(not torch.equal(r0['params'][k], r0['init'][k]) for k in r0['params'])
    assert r0['loss'][-1] < 0.9 * r0['loss'][0]
    assert r0['adv_loss'][-1] < r0['adv_loss'][0]
    assert r0['pg_alive'] is True  # fit initialised the group and leaves it up (the second fit reused it)


def test_only_rank0_writes_and_prints(ddp_run):
    tmp, (r0, r1) = ddp_run
    assert r0['calls'] == [str(tmp / 'ckpt.pt')] * 4 and r1['calls'] == []
    assert (tmp / 'stdout1.txt').read_text() == ''
    assert 'train_loss' in (tmp / 'stdout0.txt').read_text()
    assert not [p.name for p in tmp.iterdir() if 'tmp' in p.name]
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    ck = load_checkpoint(tmp / 'ckpt.pt', m)
    assert ck['epoch'] == 4 and ck['config']['world_size'] == 2
    for k, v in m.state_dict().items(): assert torch.equal(v, r0['params'][k])


def test_evaluation_helpers_gather_over_processes(ddp_run):
    _, (r0, r1) = ddp_run
    assert (r0['rank_world'], r1['rank_world']) == ([0, 2], [1, 2])
    assert (r0['shard'], r1['shard']) == ([0, 2, 4], [1, 3])              # strided shards cover 0..4 once
    assert r0['total'] == r1['total'] == 3.0                              # 1 + 2 on both ranks
    assert r0['mean'] == r1['mean'] == [0.5]                              # mean of 0 and 1 over equal shards


def test_matches_one_process_run(ddp_run):
    "2 processes x batch 16 with averaged gradients == 1 process x batch 32 on the same global batches."
    _, (r0, _) = ddp_run
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    h = fit(m, DataLoader(TensorDataset(*_data()), batch_size=32), epochs=4, lr=0.5, progress=False, device='cpu')
    for k, v in m.state_dict().items(): torch.testing.assert_close(v, r0['params'][k], rtol=1e-5, atol=1e-5)
    assert h.train_loss.tolist() == pytest.approx(r0['loss'], rel=1e-5)
    assert not (dist.is_available() and dist.is_initialized())
