"""Run Table 4.3's Fashion-MNIST jobs (one per optimizer and seed) that have no result yet, one after another.

    python tools/table_4_3_jobs.py [--seeds 0 1 2] [--opts sgd adam rmsprop] [--out results/small/table_4_3]

Each job writes OUT/{opt}_seed{seed}.json when it finishes (robust_nb.experiments.optimizers.run_missing_jobs); jobs whose file
exists are skipped, so the row accumulates across sessions, and several workers can share the list: each claims a job
with a non-blocking flock on a lock file in /tmp (robust_nb.experiments.optimizers.claim_job), held while the job runs, so a worker
that dies or is killed releases its claim and a later worker takes the job. Commit the JSON files as they appear."""
import argparse, tempfile
from pathlib import Path
from robust_nb.experiments.optimizers import run_missing_jobs, FashionMnistProtocol

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
p.add_argument('--opts', nargs='+', default=['sgd', 'adam', 'rmsprop'])
p.add_argument('--epochs', type=int, default=FashionMnistProtocol.epochs)
p.add_argument('--out', default=str(Path(__file__).resolve().parents[1] / 'results' / 'small' / 'table_4_3'))
a = p.parse_args()
run_missing_jobs(a.out, seeds=a.seeds, opts=a.opts, protocol=FashionMnistProtocol(epochs=a.epochs), lock_dir=tempfile.gettempdir(),
                 log=lambda m: print(m, flush=True))
