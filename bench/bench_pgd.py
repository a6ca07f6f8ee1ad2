"""Benchmark: `robust_nb.attacks.pgd` vs torchattacks' PGD (PGDL2 for l2), foolbox's LinfPGD/L2PGD (when installed:
`make bench` installs it) and the floor `steps x (forward + input-backward)`.

All three run on the same model and batch, interleaved (the order rotates every repeat), and we report medians and
their RATIOS, measured side by side in one run, to bench/results/pgd.md. Goals: pgd / torchattacks <= 1 and
pgd / floor <= 1.15.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_pgd.py [--device cpu] [--repeats 7] [--quick]
"""
import argparse, platform, statistics, time
from pathlib import Path
import torch
import torch.nn.functional as F
import torchattacks
try: import foolbox
except ImportError: foolbox = None     # `pip install -e '.[bench]'` (make bench does)
from robust_nb.core import get_device, set_seed
from robust_nb.attacks import pgd
from robust_nb.models import cnn6, MLP, MnistCNN

def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def floor_fn(model, x, y, steps):
    "The unavoidable work of PGD: `steps` forward passes and input-gradient backward passes, nothing else."
    for p in model.parameters(): p.requires_grad_(False)
    try:
        xa = x.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction='sum'), xa)
            xa = xa.detach()
        return xa
    finally:
        for p in model.parameters(): p.requires_grad_(True)

def run_case(name, model, x, y, *, eps, alpha, steps, repeats, dev, norm='linf'):
    model = model.to(dev).eval(); x, y = x.to(dev), y.to(dev)
    ta = (torchattacks.PGD if norm == 'linf' else torchattacks.PGDL2)(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    fns = {'robust_nb.pgd': lambda: pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm),
           'torchattacks.PGD': lambda: ta(x, y),
           'floor': lambda: floor_fn(model, x, y, steps)}
    if foolbox is not None:
        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=dev)
        fb_atk = (foolbox.attacks.LinfPGD if norm == 'linf' else foolbox.attacks.L2PGD)(abs_stepsize=alpha, steps=steps, random_start=True)
        fns['foolbox.PGD'] = lambda: fb_atk(fmodel, x, y, epsilons=eps)
    for f in fns.values(): f()                   # warm-up
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:   # rotate the order: no method always runs first
            _sync(dev); t0, c0 = time.perf_counter(), time.process_time(); fns[k](); _sync(dev)
            wall[k].append(time.perf_counter() - t0); cpu[k].append(time.process_time() - c0)
    row = dict(case=name)
    for label, times in (('wall', wall), ('cpu', cpu)):
        med = {k: statistics.median(v) for k, v in times.items()}
        row |= {f'{label}_ours_ms': 1e3 * med['robust_nb.pgd'], f'{label}_ta_ms': 1e3 * med['torchattacks.PGD'],
                f'{label}_floor_ms': 1e3 * med['floor'],
                f'{label}_ours_vs_ta': med['robust_nb.pgd'] / med['torchattacks.PGD'],
                f'{label}_ours_vs_floor': med['robust_nb.pgd'] / med['floor'],
                f'{label}_ta_vs_floor': med['torchattacks.PGD'] / med['floor'],
                f'{label}_fb_ms': 1e3 * med.get('foolbox.PGD', float('nan')),
                f'{label}_ours_vs_fb': med['robust_nb.pgd'] / med.get('foolbox.PGD', float('nan'))}
    return row

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--device', default=None); ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--quick', action='store_true', help='smaller batches (a smoke test)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'pgd.md'))
    a = ap.parse_args()
    dev = get_device(a.device)
    set_seed(0)
    big = dev.type != 'cpu'
    n = 8 if a.quick else (256 if big else 16)
    small_cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                                    torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(32 * 64, 10))
    cases = [  # (name, model, inputs, attack settings, repeats relative to --repeats)
        ('CNN6 (BN) on 3x32x32, linf PGD10', cnn6(10, 3), torch.rand(n, 3, 32, 32), dict(eps=8/255, alpha=2/255, steps=10), 1),
        ('small CNN (BN) on 1x8x8 digits, linf PGD20', small_cnn, torch.rand(4 * n, 1, 8, 8), dict(eps=0.1, alpha=0.025, steps=20), 3),
        ('MLP(256, 256) on 1x8x8 digits, linf PGD20', MLP((1, 8, 8), (256, 256), 10), torch.rand(8 * n, 1, 8, 8),
         dict(eps=0.1, alpha=0.025, steps=20), 3),
        ('small CNN (BN) on 1x8x8 digits, l2 PGD20 (torchattacks.PGDL2)', small_cnn, torch.rand(4 * n, 1, 8, 8),
         dict(eps=0.5, alpha=0.1, steps=20, norm='l2'), 3),
        ('Table 4.2 MnistCNN on 1x28x28, linf PGD10', MnistCNN(), torch.rand(n, 1, 28, 28), dict(eps=0.03, alpha=0.0075, steps=10), 1),
    ]
    rows = []
    for name, model, x, kw, rep in cases:
        y = torch.randint(0, 10, (x.shape[0],))
        rows.append(run_case(f'{name}, batch {x.shape[0]}', model, x, y, repeats=a.repeats * rep, dev=dev, **kw))
        print(rows[-1])
    clocks = ['wall'] + (['cpu'] if dev.type == 'cpu' else [])
    lines = ['# PGD benchmark', '',
             f'`bench/bench_pgd.py`: device {dev} ({platform.processor() or platform.machine()}), torch {torch.__version__}, '
             f'torch threads {torch.get_num_threads()}, medians of {a.repeats} (CNN6, MnistCNN) or {3 * a.repeats} (small models) '
             'interleaved repeats (the order of the methods rotates every repeat). '
             'floor = steps x (forward + input-gradient backward) of the same model and batch, nothing else. '
             'Goals: ours/torchattacks <= 1, ours/floor <= 1.15. '
             'On CPU both wall-clock and process CPU time are reported: on a shared machine the wall clock includes time '
             'the process waited for a core, the CPU time (1 thread) does not.', '',
             f"foolbox {foolbox.__version__ if foolbox else '(not installed)'}: its LinfPGD/L2PGD with the same step size, steps and random start. "
             'Goals follow each ratio.', '',
             '| case | clock | robust_nb.pgd (ms) | torchattacks.PGD (ms) | foolbox.PGD (ms) | floor (ms) | ours / torchattacks | goal | ours / foolbox | goal | ours / floor | goal | torchattacks / floor |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        for c in clocks:
            lines.append(f"| {r['case']} | {c} | {r[c + '_ours_ms']:.1f} | {r[c + '_ta_ms']:.1f} | {r[c + '_fb_ms']:.1f} | {r[c + '_floor_ms']:.1f} | "
                         f"{r[c + '_ours_vs_ta']:.3f} | <= 1 | {r[c + '_ours_vs_fb']:.3f} | <= 1 | {r[c + '_ours_vs_floor']:.3f} | <= 1.15 | "
                         f"{r[c + '_ta_vs_floor']:.3f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
