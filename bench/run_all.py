"""`make bench`: run every `bench/bench_*.py`, then write ONE Markdown table of their ratios to bench/results/SUMMARY.md.

Each benchmark runs in its own process and writes `bench/results/<name>.md` (`bench_pgd.py` -> `pgd.md`) with one or
more Markdown tables; this script collects every column that holds a ratio (a header with ` / `, `speed-up` or
`ratio`, and a single number in the cell) into one table, adds the book's execution time per chapter from
`_book/timings.json` (written by `make book`/`make test`) when it exists, and heads it with the machine, the device,
torch's version and the preset. A benchmark that fails, times out or writes no fresh results is a row marked FAILED,
the others still run, and the script exits with status 1 at the end.

    .venv/bin/python bench/run_all.py [--only pgd soar] [--timeout 1800] [--out bench/results/SUMMARY.md]

`OMP_NUM_THREADS` defaults to 1 (the timings of the chapters are single-threaded CPU timings); set it to override.
"""
import argparse, datetime, json, os, platform, re, subprocess, sys, time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUDGET_S = 120       # every chapter must run in < 2 minutes in the tiny preset (DESIGN.md)


def machine() -> dict:
    "CPU model and cores, device, torch version, preset: what the numbers were measured on."
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.lower().startswith('model name'): cpu = line.split(':', 1)[1].strip(); break
    except OSError: pass
    info = dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), os=f"{platform.system()} {platform.release()}",
                preset=os.environ.get('ROBUST_NB_PRESET') or 'tiny', threads=os.environ.get('OMP_NUM_THREADS', 'unset'))
    try:
        import torch
        from robust_nb.core import get_device
        dev = get_device()
        info.update(torch=torch.__version__, device=str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == 'cuda' else ''))
    except Exception as e:   # the summary must still be written
        info.update(torch='?', device=f'? ({type(e).__name__}: {e})')
    return info


_NUM = re.compile(r'^\*{0,2}\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*x?\s*\*{0,2}$')

def number(cell:str):
    "The single number in a table cell such as `1.035`, `**0.93**` or `15.5x`; None otherwise."
    m = _NUM.match(cell.strip())
    return float(m.group(1)) if m else None

def is_ratio(header:str) -> bool:
    h = header.lower()
    return ' / ' in h or 'speed-up' in h or 'speedup' in h or 'ratio' in h

def md_tables(text:str) -> list[tuple[list[str], list[list[str]]]]:
    "The Markdown tables of `text` as (header, rows)."
    def cells(line): return [c.strip() for c in re.split(r'(?<!\\)\|', line.strip().strip('|'))]
    tables, lines, i = [], text.splitlines(), 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith('|') and re.match(r'^\s*\|?\s*:?-{3,}', lines[i + 1]):
            header, rows, i = cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith('|'): rows.append(cells(lines[i])); i += 1
            tables.append((header, rows))
        else: i += 1
    return tables

def ratio_rows(name:str, text:str) -> list[dict]:
    "One summary row per ratio cell of the benchmark's tables."
    out = []
    for header, rows in md_tables(text):
        clock = next((j for j, h in enumerate(header) if h.lower() == 'clock'), None)
        for r in rows:
            case = r[0] + (f" [{r[clock]}]" if clock is not None and clock < len(r) else '')
            for j, h in enumerate(header[1:], 1):
                if j < len(r) and is_ratio(h) and number(r[j]) is not None:
                    # a benchmark states the goal of a ratio in the column right after it, headed `goal...`
                    goal = r[j + 1] if j + 1 < len(r) and j + 1 < len(header) and header[j + 1].lower().startswith('goal') else ''
                    out.append(dict(benchmark=name, case=case, measure=h.replace('*', ''), value=f"{number(r[j]):g}",
                                    goal=goal, status='ok'))
    return out


def run_one(path:Path, timeout:float, env:dict) -> tuple[list[dict], str | None]:
    "Run one benchmark; its ratio rows, or an error message."
    name = path.stem.removeprefix('bench_')
    md = BENCH / 'results' / f'{name}.md'
    t0 = time.time()
    print(f"== {path.name}", flush=True)
    try:
        r = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, timeout=timeout, text=True,
                           stdout=sys.stdout, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    if r.stderr: sys.stderr.write(r.stderr[-4000:])
    if r.returncode != 0:
        last = next((l for l in reversed(r.stderr.strip().splitlines()) if l.strip()), '')
        return [], f"exit {r.returncode}: {last[:200]}"
    if not md.is_file() or md.stat().st_mtime < t0 - 1:
        return [], f"wrote no fresh {md.relative_to(ROOT)}"
    rows = ratio_rows(name, md.read_text())
    if not rows: return [], f"{md.relative_to(ROOT)} has no ratio column"
    for row in rows: row['took'] = f"{time.time() - t0:.0f} s"
    return rows, None


def book_rows(path:Path) -> list[dict]:
    "The book's execution time per chapter, from `_book/timings.json`."
    try: t = json.loads(path.read_text())
    except (OSError, ValueError): return []
    rows = []
    for nb, v in sorted(t.get('notebooks', {}).items()):
        s = float(v.get('seconds', float('nan')))
        rows.append(dict(benchmark='book', case=nb, measure=f"execution seconds / {BUDGET_S} s budget (preset {t.get('preset', '?')}, {t.get('device', '?')})",
                         value=f"{s:.1f} s / {s / BUDGET_S:.2f}", status='ok' if v.get('ok', True) else 'FAILED (notebook error)', took=''))
    return rows


def summary(info:dict, rows:list[dict]) -> str:
    cols = ['benchmark', 'case', 'measure', 'value', 'goal', 'status', 'took']
    esc = lambda s: str(s).replace('|', '\\|')
    head = (f"# Benchmark summary\n\nWritten by `bench/run_all.py` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC) on "
            f"**{info['cpu']}**, {info['cores']} cores, {info['os']}; device **{info['device']}**; torch {info['torch']}; "
            f"Python {info['python']}; preset **{info['preset']}**; OMP_NUM_THREADS={info['threads']}. Every value is a ratio "
            f"measured side by side in one run (see each benchmark's own table in `bench/results/` for the absolute times), "
            f"except the book rows, which give each chapter's execution time and its fraction of the {BUDGET_S} s budget.\n\n")
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    lines += ['| ' + ' | '.join(esc(r.get(c, '')) for c in cols) + ' |' for r in rows]
    return head + '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--only', nargs='*', default=None, help='run only these benchmarks (names without bench_ and .py)')
    ap.add_argument('--timeout', type=float, default=1800, help='seconds each benchmark may run')
    ap.add_argument('--timings', default=str(ROOT / '_book' / 'timings.json'), help="the book's timings (skipped if missing)")
    ap.add_argument('--out', default=str(BENCH / 'results' / 'SUMMARY.md'), help='where the summary goes')
    a = ap.parse_args(argv)
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    os.environ['OMP_NUM_THREADS'] = env['OMP_NUM_THREADS']
    paths = sorted(BENCH.glob('bench_*.py'))
    if a.only is not None: paths = [p for p in paths if p.stem.removeprefix('bench_') in a.only]
    if not paths: print('run_all: no benchmarks to run', file=sys.stderr)
    rows, failed = [], []
    for p in paths:
        got, err = run_one(p, a.timeout, env)
        if err:
            failed.append(p.name)
            got = [dict(benchmark=p.stem.removeprefix('bench_'), case='-', measure='-', value='-', status=f'FAILED ({err})', took='')]
        rows += got
    rows += book_rows(Path(a.timings))
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    text = summary(machine(), rows)
    out.write_text(text)
    print(text); print(f"run_all: wrote {out}")
    if failed: print(f"run_all: FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
