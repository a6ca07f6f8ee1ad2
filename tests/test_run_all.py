"""Every notebook runs top to bottom the way JupyterLab's *Run All* does it: a fresh Jupyter kernel per notebook, every cell
(no `#| slow`/`#| cuda`/`#| eval: false` skipping: the cells gate themselves), on the CPU, in the tiny preset."""
import multiprocessing as mp, os, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
NOTEBOOKS = sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))

def _run_all(name:str, results:str) -> tuple[str, float, str | None]:
    "Execute nbs/`name` in a fresh kernel, every cell in order; (name, seconds, None or the error)."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    os.environ.update(ROBUST_NB_PRESET='tiny', ROBUST_NB_DEVICE='cpu', CUDA_VISIBLE_DEVICES='', ROBUST_NB_RESULTS=results,
                      OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    for v in ('ROBUST_NB_SLOW', 'IN_TEST'): os.environ.pop(v, None)      # a student's kernel has neither
    nb = nbformat.read(NBS / name, as_version=4)
    t0 = time.time()
    try: NotebookClient(nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute()
    except CellExecutionError as e: return name, time.time() - t0, str(e)[-3000:]
    return name, time.time() - t0, None

def test_every_notebook_runs_all_in_a_fresh_kernel_on_cpu():
    pytest.importorskip('nbclient'); pytest.importorskip('ipykernel')
    with tempfile.TemporaryDirectory() as results, \
         ProcessPoolExecutor(min(2, os.cpu_count() or 1), mp_context=mp.get_context('spawn')) as ex:
        done = list(ex.map(_run_all, NOTEBOOKS, [results] * len(NOTEBOOKS)))
    failed = {n: err for n, _, err in done if err}
    assert not failed, '\n\n'.join(f"===== {n} (Run All in a fresh kernel) =====\n{err}" for n, err in failed.items())
