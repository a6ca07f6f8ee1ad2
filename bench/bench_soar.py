"""Cost of one SOAR training step against one PGD10 adversarial-training step and one standard step (Table 3.5),
for each way of computing SOAR's parameter gradient (`soar_loss(grad_method=...)`).

Models: the CIFAR-shaped three-convolution CNN of issue 16 (3x32x32 inputs, batch 128), the CNN6 and CNN8 of
Table 3.10 exactly as Chapter 3 builds them (`SoarExperiment.make_model`, no BatchNorm, the preset's inputs, batch,
and radius), and the digits MLP of Section 3.4. Same model and batch for every step, interleaved repeats (the order
rotates every repeat); a step = zero_grad + loss + backward + SGD step. Ratios are medians of the per-repeat ratios
(the machine is shared and noisy), next to the goals of issue 16: SOAR step <= 0.6x a PGD10-AT step and <= 4.5x a
standard step. Forward passes (in batches of N) and backward sweeps per step are counted with hooks.
Writes bench/results/soar.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_soar.py [--models cifar_cnn3 cnn6] [--repeats 9]
"""
import argparse, platform, statistics, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn
from robust_nb.core import get_device, get_preset, set_seed
from robust_nb.attacks import pgd
from robust_nb.models import MLP
from robust_nb.soar import soar_loss, GRAD_METHODS
from robust_nb.experiments.soar import SoarExperiment

GOAL_PGD10, GOAL_STANDARD = 0.6, 4.5
LABEL = {'double_backprop': 'double backprop', 'jvp': 'jvp (forward over reverse)'}

def cifar_cnn3(c=3, n=10):
    "Three 3x3 convolutions (32-64-128, ReLU, 2x2 max-pooling after each) and a linear head, for 3x32x32 inputs."
    return nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(128 * 4 * 4, n))

def chapter_model(arch):
    "Chapter 3's model `arch`, its test inputs, the preset's batch size and radius."
    ex = SoarExperiment()
    n = ex.P.batch_size
    return ex.make_model(arch), ex.x_te[:n], ex.y_te[:n], ex.C['eps']

def random_batch(make, shape, batch, eps, dev):
    set_seed(0)
    model = make().to(dev)
    return model, torch.rand(batch, *shape, device=dev), torch.randint(0, 10, (batch,), device=dev), eps

CASES = {  # name -> () -> (model, x, y, eps)
    'cifar_cnn3': lambda dev: random_batch(cifar_cnn3, (3, 32, 32), 128, 8 / 255, dev),
    'cnn6': lambda dev: chapter_model('cnn6'),
    'cnn8': lambda dev: chapter_model('cnn8'),
    'mlp': lambda dev: random_batch(lambda: MLP((1, 8, 8), hidden=(256, 256)), (1, 8, 8), 64, 0.1, dev),
}

def make_steps(model, x, y, eps):
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    def run(loss_fn):
        def step():
            model.train(); opt.zero_grad(set_to_none=True)
            loss_fn().backward(); opt.step()
        return step
    steps = {'standard': run(lambda: F.cross_entropy(model(x), y)),
             'pgd10': run(lambda: F.cross_entropy(model(pgd(model, x, y, eps=eps, alpha=eps / 4, steps=10)), y))}
    for gm in GRAD_METHODS: steps[gm] = run(lambda gm=gm: soar_loss(model, x, y, eps=eps, grad_method=gm).mean())
    return steps

def count_passes(model, step, N):
    "Forward passes (in batches of N) and backward sweeps through the model output during `step()`."
    c = {'fwd': 0.0, 'bwd': 0}
    def on_fwd(m, inp, out):
        c['fwd'] += inp[0].shape[0] / N
        if out.requires_grad: out.register_hook(lambda g: c.__setitem__('bwd', c['bwd'] + 1))
    h = model.register_forward_hook(on_fwd)
    try: step()
    finally: h.remove()
    return c['fwd'], c['bwd']

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def bench(name, repeats, dev, min_seconds=3.0):
    model, x, y, eps = CASES[name](dev)
    steps = make_steps(model, x, y, eps)
    passes = {k: count_passes(model, s, x.shape[0]) for k, s in steps.items()}
    t = time.perf_counter()
    for s in steps.values(): s(); s()                       # warm-up
    repeats = max(repeats, min(200, int(2 * min_seconds / (time.perf_counter() - t))))   # small models: more repeats
    keys, times = list(steps), {k: [] for k in steps}
    for r in range(repeats):                                # interleaved, the order rotating
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            sync(dev); t = time.perf_counter(); steps[k](); sync(dev); times[k].append(time.perf_counter() - t)
    ratio = lambda a, b: statistics.median(ta / tb for ta, tb in zip(times[a], times[b]))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for gm in GRAD_METHODS:
        r_pgd, r_std = ratio(gm, 'pgd10'), ratio(gm, 'standard')
        met = 'yes' if r_pgd <= GOAL_PGD10 and r_std <= GOAL_STANDARD else 'no'
        rows.append(f"| {name}, {LABEL[gm]} | {x.shape[0]} | {repeats} | {1e3 * med['standard']:.1f} | {1e3 * med['pgd10']:.1f} | {1e3 * med[gm]:.1f} | "
                    f"**{r_pgd:.2f}** | {GOAL_PGD10} | **{r_std:.2f}** | {GOAL_STANDARD} | {met} | {ratio(gm, 'double_backprop'):.2f} | "
                    f"{passes[gm][0]:g} / {passes[gm][1]} | {passes['pgd10'][0]:g} / {passes['pgd10'][1]} |")
    return rows

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', nargs='+', default=list(CASES), choices=list(CASES))
    ap.add_argument('--repeats', type=int, default=9, help='interleaved repeats at least (small models get more)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'soar.md'))
    a = ap.parse_args()
    dev = get_device()
    desc = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"
    t0 = time.time()
    lines = ["# SOAR step cost (bench/bench_soar.py)", "",
             f"Device: {desc}; torch {torch.__version__}; preset {get_preset().name} (for cnn6/cnn8); at least {a.repeats} interleaved repeats (more for small models, so that each is timed for >= 3 s); "
             "a step = zero_grad + loss + backward + SGD step. Ratios are medians of per-repeat ratios; goals from issue 16.", "",
             "| model, SOAR gradient | batch | repeats | standard (ms) | PGD10-AT (ms) | SOAR (ms) | SOAR / PGD10-AT | goal (PGD10-AT) | "
             "SOAR / standard | goal (standard) | goals met | SOAR / double-backprop SOAR | SOAR passes fwd / bwd sweeps | PGD10-AT passes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in a.models:
        rows = bench(n, a.repeats, dev)
        lines += rows
        print('\n'.join(rows), flush=True)
    lines += ["", "Models: `cifar_cnn3` = Conv(3,32)-ReLU-MaxPool-Conv(32,64)-ReLU-MaxPool-Conv(64,128)-ReLU-MaxPool-Linear(2048,10) on random "
              "3x32x32 inputs (radius 8/255); `cnn6`/`cnn8` = `SoarExperiment().make_model(...)` on the preset's test images with its batch "
              "size and radius; `mlp` = the 2x256 digits MLP (radius 0.1). SOAR uses its defaults (PGD1 start, one z, h = 0.01, clip 10). "
              "The thesis counts 3 forward and 4 backward passes for SOAR and 11/11 for PGD10-AT (Table 3.5); with double backprop "
              "SOAR's 4 backward passes run as 3 sweeps, the last through the recorded graph of the input gradients; with jvp the last "
              "sweep is a backward on dual numbers after a dual forward over the 2N points.",
              "", f"Total time of this benchmark: {time.time() - t0:.0f} s."]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
