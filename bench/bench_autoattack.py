"""Cost of AutoAttack on 1,000 Fashion-MNIST test images for the Table 4.2 CNN (issue 16, item 3), per component and
per radius: each component on every point ("alone", Table 3.4's way) against AutoAttack's own way ("cumulative":
each component, in the standard order APGD-CE, APGD-T, FAB-T, Square, only on the points still robust after the
earlier ones, in batches; `autoattack_components(..., cumulative=True)`).

The model is `robust_nb.models.MnistCNN` (28x28 inputs) trained here for `--epochs` epochs with Adam (lr 5e-4), or
loaded from `--ckpt` (a state_dict). Radii are Table 4.3's for Fashion-MNIST: linf 0.01/0.03/0.05, l2 0.1/0.5/0.7.
A CPU cannot run the standard budget (100 steps, 9 targets, 5,000 queries) for both modes and six radii in ten
minutes, so the bench runs a reduced budget (`--steps`, `--n-target`, `--n-queries`) and also reports each time
scaled to the standard budget: APGD-CE x (100 / steps), APGD-T and FAB-T x (100 / steps) x (9 / n_target) (both
run a fixed number of iterations per target on the points not yet broken), Square x (5000 / n_queries) (an upper
bound: Square stops early on the points it breaks). The scaled numbers are estimates, the measured ones are not.
"alone" runs on `--alone-eps` only (the costly mode), each component right after its cumulative run, so the two are
measured side by side; we report wall-clock and process CPU time (one thread: the CPU time ignores the time spent
waiting for a core on a shared machine, and the estimates use it). Note that torchattacks' components already skip
the points misclassified when they start (and APGD-T/FAB-T the points broken by an earlier target), so "alone"
wastes only the work on points an *earlier component* broke: the saving grows with the fraction APGD-CE breaks. The per-component cumulative loop below is the library's (`tests/test_attacks.py` checks that it
gives `autoattack_components(cumulative=True)`'s answer). Writes bench/results/autoattack.md and autoattack.json.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_autoattack.py [--n 1000] [--steps 5] [--ckpt model.pt]
"""
import argparse, json, platform, time
from pathlib import Path
import torch
from robust_nb.core import get_device, set_seed
from robust_nb.attacks import AUTOATTACK_COMPONENTS, autoattack_component, predict
from robust_nb.models import MnistCNN
from robust_nb.train import fit

RADII = {'linf': (0.01, 0.03, 0.05), 'l2': (0.1, 0.5, 0.7)}          # Table 4.3, Fashion-MNIST
STANDARD = dict(steps=100, n_target=9, n_queries=5000)                 # AutoAttack's standard version


def fashion_mnist_arrays(split:str):
    "Fashion-MNIST (x in [0, 1] as (N, 1, 28, 28), y) from robust_nb.data, or from Debian's IDX files directly."
    try:
        from robust_nb.data import fashion_mnist
        ds = fashion_mnist(split)
        return ds.x, ds.y
    except ImportError:
        import gzip, numpy as np
        root, pre = Path('/usr/share/datasets/fashion-mnist'), 'train' if split == 'train' else 't10k'
        with gzip.open(root / f'{pre}-images-idx3-ubyte.gz') as f: x = np.frombuffer(f.read(), np.uint8, offset=16)
        with gzip.open(root / f'{pre}-labels-idx1-ubyte.gz') as f: y = np.frombuffer(f.read(), np.uint8, offset=8)
        return torch.from_numpy(x.copy()).view(-1, 1, 28, 28).float() / 255, torch.from_numpy(y.astype('int64'))


def scale(name:str, a) -> float:
    "Factor from the bench's budget to the standard one for component `name`."
    s = STANDARD['steps'] / a.steps
    return {'APGD-CE': s, 'APGD-T': s * STANDARD['n_target'] / a.n_target, 'FAB-T': s * STANDARD['n_target'] / a.n_target,
            'Square': STANDARD['n_queries'] / a.n_queries}[name]


def timed(f):
    "`f()`, its wall-clock seconds and its process CPU seconds (the latter ignores time spent waiting for a core)."
    t0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - t0, time.process_time() - c0


def run(model, x, y, eps, norm, a, alone:bool) -> dict:
    """Per component, cumulative (on the points still robust) and, if `alone`, right after it the same component on every
    point: seconds (wall, cpu), points attacked, accuracy after it (cumulative: after all so far; alone: under it)."""
    kw = dict(eps=eps, norm=norm, steps=a.steps, n_queries=a.n_queries, n_target_classes=a.n_target, seed=0,
              batch_size=a.batch_size)
    clean = predict(model, x) == y
    left, worst = clean.clone(), clean.clone()    # still robust (cumulative); robust to every component so far (alone)
    out = {'clean': clean.double().mean().item(), 'cumulative': {}, 'alone': {}}
    for name in AUTOATTACK_COMPONENTS:
        modes = [('cumulative', left.nonzero().squeeze(1))] + ([('alone', torch.arange(len(x)))] if alone else [])
        for mode, idx in modes:
            ok, wall, cpu = timed(lambda: autoattack_component(model, x[idx], y[idx], name, **kw) if idx.numel()
                                  else torch.zeros(0, dtype=torch.bool))
            if mode == 'cumulative': left[idx] = ok; acc = left.double().mean().item()
            else: worst &= ok; acc = ok.double().mean().item()
            pts = int(idx.numel()) if mode == 'cumulative' else int(clean.sum())   # torchattacks skips clean errors itself
            out[mode][name] = dict(seconds=wall, cpu_seconds=cpu, points=pts, acc=acc,
                                   standard_seconds_est=cpu * scale(name, a))
    for mode, mask in (('cumulative', left), ('alone', worst)):
        if not out[mode]: del out[mode]; continue
        r = out[mode]
        r.update(robust=mask.double().mean().item(), total_seconds=sum(r[c]['seconds'] for c in AUTOATTACK_COMPONENTS),
                 total_cpu_seconds=sum(r[c]['cpu_seconds'] for c in AUTOATTACK_COMPONENTS),
                 total_standard_seconds_est=sum(r[c]['standard_seconds_est'] for c in AUTOATTACK_COMPONENTS))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=1000, help='test images (the first n)')
    ap.add_argument('--epochs', type=int, default=1); ap.add_argument('--ckpt', default=None, help='a MnistCNN state_dict')
    ap.add_argument('--steps', type=int, default=5); ap.add_argument('--n-target', type=int, default=3)
    ap.add_argument('--n-queries', type=int, default=50); ap.add_argument('--batch-size', type=int, default=500)
    ap.add_argument('--alone-eps', nargs='*', default=['linf:0.03', 'l2:0.5'], help="norm:eps pairs also run 'alone'")
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--device', default=None)
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'autoattack.md'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = get_device(a.device)
    set_seed(0)
    model = MnistCNN().to(dev)
    t0 = time.perf_counter()
    if a.ckpt: model.load_state_dict(torch.load(a.ckpt, map_location=dev)); how = f'loaded from {a.ckpt}'
    else:
        xtr, ytr = fashion_mnist_arrays('train')
        dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=128, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
        fit(model, dl, epochs=a.epochs, lr=5e-4, opt='adam', progress=False, device=dev, distributed=False)
        how = f'trained here: {a.epochs} epoch(s) of Adam, lr 5e-4, batch 128'
    train_s = time.perf_counter() - t0
    model.eval()
    xte, yte = fashion_mnist_arrays('test')
    x, y = xte[:a.n].to(dev), yte[:a.n].to(dev)
    alone_set = {(s.split(':')[0], float(s.split(':')[1])) for s in a.alone_eps}
    res = []
    for norm, radii in RADII.items():
        for eps in radii:
            row = dict(norm=norm, eps=eps, **run(model, x, y, eps, norm, a, (norm, eps) in alone_set))
            res.append(row); print(json.dumps(row), flush=True)
    budget = f"steps {a.steps}, {a.n_target} targets, {a.n_queries} Square queries, batches of {a.batch_size}"
    lines = ['# AutoAttack cost: Table 4.2 CNN on Fashion-MNIST', '',
             f'`bench/bench_autoattack.py`: {a.n} test images, MnistCNN ({how}; clean accuracy '
             f"{res[0]['clean']:.1%}, {train_s:.0f} s), device {dev} ({platform.processor() or platform.machine()}), "
             f'torch {torch.__version__}, {torch.get_num_threads()} thread(s). Budget run: {budget}. '
             '"est. standard" scales each component to AutoAttack\'s standard budget (100 steps, 9 targets, 5,000 queries; '
             'see the script\'s docstring: an estimate, Square\'s an upper bound). Cumulative = AutoAttack\'s way '
             '(`autoattack_components(cumulative=True)`); alone = every component on every point.', '',
             '## Cumulative, per radius', '',
             '| norm | eps | robust acc. | ' + ' | '.join(f'{c} s (points)' for c in AUTOATTACK_COMPONENTS) +
             ' | total s (cpu s) | est. standard cpu s | est. standard cpu s, APGD-CE + APGD-T |', '|' + '---|' * 10]
    for r in res:
        c = r['cumulative']
        lines.append(f"| {r['norm']} | {r['eps']} | {c['robust']:.3f} | " +
                     ' | '.join(f"{c[k]['seconds']:.1f} ({c[k]['points']})" for k in AUTOATTACK_COMPONENTS) +
                     f" | {c['total_seconds']:.1f} ({c['total_cpu_seconds']:.1f}) | {c['total_standard_seconds_est']:.0f} | "
                     f"{c['APGD-CE']['standard_seconds_est'] + c['APGD-T']['standard_seconds_est']:.0f} |")
    lines += ['', '## Cumulative against alone (same process, same budget, each component run in both modes back to back)', '',
              '| case | clock | robust acc. cumulative | worst case alone | points attacked cumulative / alone | '
              'cumulative s | alone s | cumulative / alone |', '|---|---|---|---|---|---|---|---|']
    for r in res:
        if 'alone' not in r: continue
        c, al = r['cumulative'], r['alone']
        pts = sum(c[k]['points'] for k in AUTOATTACK_COMPONENTS) / sum(al[k]['points'] for k in AUTOATTACK_COMPONENTS)
        for clock, key in (('cpu', 'total_cpu_seconds'), ('wall', 'total_seconds')):
            lines.append(f"| {r['norm']} eps {r['eps']} | {clock} | {c['robust']:.3f} | {al['robust']:.3f} | {pts:.3f} | "
                         f"{c[key]:.1f} | {al[key]:.1f} | {c[key] / al[key]:.3f} |")
    lines += ['', '## Per component (cpu seconds)', '',
              '| case | component | acc. after it, cumulative | acc. under it, alone | points cumulative | points alone | '
              'cumulative s | alone s | cumulative ÷ alone |', '|---|---|---|---|---|---|---|---|---|']
    for r in res:
        if 'alone' not in r: continue
        c, al = r['cumulative'], r['alone']
        for k in AUTOATTACK_COMPONENTS:
            lines.append(f"| {r['norm']} eps {r['eps']} | {k} | {c[k]['acc']:.3f} | {al[k]['acc']:.3f} | {c[k]['points']} | "
                         f"{al[k]['points']} | {c[k]['cpu_seconds']:.1f} | {al[k]['cpu_seconds']:.1f} | "
                         f"{c[k]['cpu_seconds'] / max(al[k]['cpu_seconds'], 1e-9):.3f} |")
    tot = sum(r['cumulative']['total_standard_seconds_est'] for r in res)
    sub = sum(r['cumulative']['APGD-CE']['standard_seconds_est'] + r['cumulative']['APGD-T']['standard_seconds_est'] for r in res)
    lines += ['', f'Estimated cost of one model at the standard budget, six radii, cumulative: **{tot / 60:.0f} min** '
              f'(all four components), **{sub / 60:.0f} min** (APGD-CE and APGD-T only), on this device and thread count.']
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('\n'.join(lines) + '\n')
    out.with_suffix('.json').write_text(json.dumps(dict(args=vars(a), model=how, train_seconds=train_s, results=res), indent=1))
    print('\n'.join(lines))

if __name__ == '__main__': main()
