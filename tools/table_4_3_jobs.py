"""Run Table 4.3's Fashion-MNIST jobs (one per optimizer and seed) that have no result yet, one after another.

    python tools/table_4_3_jobs.py [--seeds 0 1 2] [--opts sgd adam rmsprop] [--out results/small/table_4_3]

Each job writes OUT/{opt}_seed{seed}.json when it finishes (robust_nb.optimizers.fashion_mnist_job); jobs whose file
exists are skipped, so the row accumulates across sessions. Commit the JSON files as they appear."""
import argparse, os, sys, time
from pathlib import Path
from robust_nb.optimizers import fashion_mnist_job, FashionMnistProtocol

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
p.add_argument('--opts', nargs='+', default=['sgd', 'adam', 'rmsprop'])
p.add_argument('--epochs', type=int, default=FashionMnistProtocol.epochs)
p.add_argument('--out', default=str(Path(__file__).resolve().parents[1] / 'results' / 'small' / 'table_4_3'))
a = p.parse_args()
for seed in a.seeds:
    for opt in a.opts:
        f = Path(a.out) / f'{opt}_seed{seed}.json'
        if f.exists(): print(f'{f} exists: skipped', flush=True); continue
        lock = Path('/tmp') / f'robust_nb_t43_{opt}_seed{seed}.lock'     # several workers share the list
        try: os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        except FileExistsError: print(f'{opt} seed {seed}: another worker has it', flush=True); continue
        t0 = time.time()
        r = fashion_mnist_job(opt, seed, a.out, FashionMnistProtocol(epochs=a.epochs), progress=False)
        print(f"{opt} seed {seed}: {time.time() - t0:.0f} s, " + ', '.join(f'{k} {v:.4f}' for k, v in r['accuracy'].items()), flush=True)
