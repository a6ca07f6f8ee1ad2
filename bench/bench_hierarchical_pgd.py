"""Benchmark: batched hierarchical PGD vs the literal per-example Algorithm 5.1 (robust_nb.hierarchy.hierarchical_pgd).

Same model, same batch of 64 test digits, worst case (Alg. 5.1), PGD20 per candidate. Variants: `batched` (the
default, `targets_per_round='auto'`), `batched` with one target per round, and the reference. They run interleaved
(the order rotates every repeat) with two more timings that bound what any batching can give: one targeted PGD20 run
on the whole batch, and the same runs one example at a time (their ratio, the *ceiling*, is the speed-up batching
buys per PGD run; the reference is that many runs of one example plus its checks). We report median wall-clock and
process CPU times, the median of the per-repeat RATIOS reference / batched for both clocks, the ceiling, success
rates, the PGD runs Alg. 5.1 needs per example and how many the batched version performs (its speculative waste),
and peak memory of one run of each variant (CPU: peak resident-set growth of a forked child, sampled every
millisecond, minus that of a child that runs nothing; CUDA: torch's peak allocation).
Models: a standard and a PGD10-trained MLP (the robust one makes the worst case try many targets) and a small CNN.
Writes bench/results/hierarchical_pgd.md. Goal: batched >= 10x faster than the reference on a CPU batch of 64.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_hierarchical_pgd.py [--device cpu] [--repeats 5] [--batch 64]
"""
import argparse, os, platform, statistics, threading, time
from contextlib import contextmanager
from pathlib import Path
import torch
from torch import nn
from robust_nb.core import get_device, set_seed
from robust_nb.data import digits, loaders, DIGITS_HIERARCHY as H
from robust_nb.models import MLP
from robust_nb.train import fit
from robust_nb.defenses import pgd_at_loss
from robust_nb.attacks import pgd
import robust_nb.hierarchy as hier
from robust_nb.hierarchy import hierarchical_pgd

EPS, ALPHA, STEPS = 0.15, 0.0375, 20

def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))

def trained(make, loss, dev, epochs=8):
    set_seed(0); m = make()
    fit(m, loaders(digits('train'), batch_size=64, seed=0), epochs=epochs, lr=0.05, opt='sgd_momentum', loss=loss,
        progress=False, device=dev)
    return m.eval()

def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def _rss_bytes() -> int:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

def peak_mem_mb(fn, dev) -> float:
    "Peak memory growth of one call of `fn`, in MiB (CUDA: allocator peak; CPU: RSS of a forked child)."
    if dev.type == 'cuda':
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev); base = torch.cuda.memory_allocated(dev)
        fn(); _sync(dev)
        return (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    if not os.path.exists('/proc/self/statm'): return float('nan')
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # child: run once while a thread samples the RSS
        os.close(r)
        base, peak, done = _rss_bytes(), [0], threading.Event()
        def sample():
            while not done.is_set(): peak[0] = max(peak[0], _rss_bytes()); time.sleep(0.001)
        t = threading.Thread(target=sample); t.start()
        try: fn()
        finally:
            done.set(); t.join()
            os.write(w, str(max(peak[0], _rss_bytes()) - base).encode()); os._exit(0)
    os.close(w)
    out = os.read(r, 64).decode(); os.waitpid(pid, 0); os.close(r)
    return int(out) / 2**20 if out else float('nan')

@contextmanager
def counting_pgd_runs():
    "Count the examples `robust_nb.hierarchy` hands to `pgd` (one per PGD run of Alg. 5.1) while the block runs."
    n, orig = [0], hier.pgd
    def counted(model, x, *a, **k): n[0] += len(x); return orig(model, x, *a, **k)
    hier.pgd = counted
    try: yield n
    finally: hier.pgd = orig

def run_case(name, model, x, y, *, repeats, dev):
    model, x, y = model.to(dev), x.to(dev), y.to(dev)
    kw = dict(eps=EPS, alpha=ALPHA, steps=STEPS, return_tries=True)
    t = (y + 1) % 10                                                 # any leaf: a run's cost does not depend on its target
    one_run = lambda xs, ts: pgd(model, xs, ts, eps=EPS, alpha=ALPHA, steps=STEPS, targeted=True)
    fns = {'batched': lambda: hierarchical_pgd(model, x, y, H, batched=True, **kw),
           'batched, 1 target/round': lambda: hierarchical_pgd(model, x, y, H, batched=True, targets_per_round=1, **kw),
           'reference': lambda: hierarchical_pgd(model, x, y, H, batched=False, **kw),
           'PGD run, whole batch': lambda: one_run(x, t),
           'PGD run, one example at a time': lambda: [one_run(x[i:i + 1], t[i:i + 1]) for i in range(len(x))]}
    names, results = list(fns), {k: [] for k in fns}
    times = {c: {k: [] for k in fns} for c in ('wall', 'cpu')}
    for f in fns.values(): f()                                      # warm-up
    for rep in range(repeats):
        for k in names[rep % len(names):] + names[:rep % len(names)]:   # rotate: no variant always runs first
            set_seed(rep); _sync(dev); t0, c0 = time.perf_counter(), time.process_time(); out = fns[k](); _sync(dev)
            times['wall'][k].append(time.perf_counter() - t0); times['cpu'][k].append(time.process_time() - c0)
            results[k].append(out)
    def ratio(c, a, b): return statistics.median(p / q for p, q in zip(times[c][a], times[c][b]))
    succ = {k: statistics.mean(o[1].float().mean().item() for o in results[k]) for k in ('batched', 'reference')}
    needed = statistics.mean(o[2].float().mean().item() for o in results['batched'])
    set_seed(0)
    with counting_pgd_runs() as n: _, _, tries = fns['batched']()
    base = peak_mem_mb(lambda: None, dev) if dev.type != 'cuda' else 0.0   # what forking and sampling alone cost
    mem = {k: max(0.0, peak_mem_mb(fns[k], dev) - base) for k in ('batched', 'batched, 1 target/round', 'reference')}
    row = dict(case=name, batch=len(x), success_batched=succ['batched'], success_reference=succ['reference'],
               runs_per_example=needed, performed_vs_needed=n[0] / tries.sum().item(),
               mem_batched_mb=mem['batched'], mem_batched1_mb=mem['batched, 1 target/round'], mem_reference_mb=mem['reference'])
    for c in ('wall', 'cpu'):
        med = {k: statistics.median(v) for k, v in times[c].items()}
        row[c] = dict(batched_ms=1e3 * med['batched'], batched1_ms=1e3 * med['batched, 1 target/round'],
                      reference_ms=1e3 * med['reference'], speedup=ratio(c, 'reference', 'batched'),
                      speedup1=ratio(c, 'reference', 'batched, 1 target/round'),
                      ceiling=ratio(c, 'PGD run, one example at a time', 'PGD run, whole batch'))
    return row

def to_markdown(rows, dev, args) -> str:
    clocks = ['wall'] + (['cpu'] if dev.type == 'cpu' else [])
    head = (f"# Hierarchical PGD: batched vs per-example reference (Algorithm 5.1)\n\n"
            f"Measured side by side in one run by `bench/bench_hierarchical_pgd.py` on {dev.type} "
            f"({_cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Worst case, PGD{STEPS} per candidate target, "
            f"linf eps={EPS}, alpha={ALPHA}, digits test batch of {args.batch}, DIGITS_HIERARCHY (7 candidates per example at "
            f"most); `batched` is the default (targets_per_round='auto'), `1/round` attacks one candidate per example per round; "
            f"{args.repeats} interleaved repeats; times are medians, speed-ups the median of per-repeat ratios "
            f"reference / batched, for the wall clock and (on CPU) the process CPU time, which leaves out the time a process "
            f"waits for a core on a shared machine. **Goal: speed-up >= 10x.** *Ceiling speed-up*: one targeted PGD{STEPS} run per "
            f"example done one example at a time / the same runs as one batch, timed in the same loop; it bounds what "
            f"batching can buy per PGD run, and the reference is exactly such per-example runs (plus a forward pass per "
            f"run to check it). *Runs performed / needed*: PGD runs the batched version performs (it may attack later "
            f"candidates of an example speculatively) over the runs Alg. 5.1 needs. Peak memory: growth of one call "
            f"({'CUDA allocator peak' if dev.type == 'cuda' else 'RSS of a forked child, sampled every 1 ms, minus that of a child running nothing'}).\n\n")
    cols = ['case', 'clock', 'batch', 'success (batched / ref.)', 'PGD runs / example', 'runs performed / needed', 'batched ms',
            'batched 1/round ms', 'reference ms', 'speed-up', 'goal', 'speed-up 1/round', 'ceiling speed-up', 'peak MiB (batched / 1/round / ref.)']
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        for c in clocks:
            t = r[c]
            lines.append(f"| {r['case']} | {c} | {r['batch']} | {r['success_batched']:.3f} / {r['success_reference']:.3f} | "
                         f"{r['runs_per_example']:.2f} | {r['performed_vs_needed']:.3f} | {t['batched_ms']:.1f} | {t['batched1_ms']:.1f} | "
                         f"{t['reference_ms']:.1f} | **{t['speedup']:.1f}x** | >= 10x | {t['speedup1']:.1f}x | {t['ceiling']:.1f}x | "
                         f"{r['mem_batched_mb']:.1f} / {r['mem_batched1_mb']:.1f} / {r['mem_reference_mb']:.1f} |")
    note = ('' if dev.type == 'cuda' else
            "\nOn CPU the memory figures are dominated by the forked child's copy-on-write of the allocator's heap and are the "
            "same for every variant; the tensors themselves are tiny (the batch is 16 KiB), so the variants do not differ "
            "measurably in memory here. The batched version performs within a few per cent of the PGD runs Alg. 5.1 needs and "
            "spends almost all its time inside them, so its speed-up is bounded by the ceiling times the share of the "
            "reference's time that is PGD: large for the MLPs, whose per-example runs are dominated by per-call overhead, "
            "small for the CNN, whose batched runs are compute-bound on one thread. Since the variants are interleaved, "
            "load on a shared machine affects them alike.\n")
    return head + '\n'.join(lines) + '\n' + note

def _cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.lower().startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default=None); ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--batch', type=int, default=64); ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'hierarchical_pgd.md'))
    args = ap.parse_args()
    dev = get_device(args.device)
    te = digits('test')
    x, y = te.x[:args.batch], te.y[:args.batch]
    cases = [('MLP 256-256, standard', trained(lambda: MLP(64, (256, 256), 10), None, dev)),
             ('MLP 256-256, PGD10-trained', trained(lambda: MLP(64, (256, 256), 10), pgd_at_loss(eps=EPS, alpha=ALPHA, steps=10), dev)),
             ('small CNN, standard', trained(small_cnn, None, dev))]
    rows = []
    for name, m in cases:
        rows.append(run_case(name, m, x, y, repeats=args.repeats, dev=dev))
        r = rows[-1]
        print(f"{name}: " + '; '.join(f"{c}: batched {r[c]['batched_ms']:.1f} ms, reference {r[c]['reference_ms']:.1f} ms, "
              f"speed-up {r[c]['speedup']:.1f}x (1/round {r[c]['speedup1']:.1f}x, ceiling {r[c]['ceiling']:.1f}x)"
              for c in ('wall', 'cpu') if c in r) + f"; runs performed / needed {r['performed_vs_needed']:.3f}", flush=True)
    md = to_markdown(rows, dev, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True); Path(args.out).write_text(md)
    print(md)

if __name__ == '__main__': main()
