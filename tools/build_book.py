#!/usr/bin/env python
"""Execute every notebook in `nbs/` the way `nbdev_test` does and write a browsable HTML book.

    python tools/build_book.py [--out _book] [--flags "slow cuda"] [--n_workers 2] [NOTEBOOK ...]

Cells carrying a flag from `settings.ini`'s `tst_flags` (`slow`, `cuda`) are skipped unless the flag is given
(`--flags`); on a CUDA machine `cuda` and `slow` run by default, and `slow` runs by default in the `small` and `paper`
presets. The preset comes from `ROBUST_NB_PRESET`.

Each notebook records its claims, tables and figures (`robust_nb.book`) into a folder of its own, merged into
`OUT/results/` when it finishes. In the `small` and `paper` presets a notebook that succeeds also replaces its records
in the committed `results/<preset>/` (claims_<chapter>.json, <chapter>/*.csv|png) and its line in
`results/<preset>/runs.json` (wall time, flags, commit, date, machine, device), so chapters can be run one at a time
and committed as each finishes (`--no-save-results` leaves `results/` alone).
Writes `OUT/index.html` plus one page per notebook (figures inline, a chapter list on every page, a footer naming
the preset and device), the executed notebooks under `OUT/executed/`, and `OUT/timings.json`.
Exits non-zero, naming the notebook and the failing cell, if any notebook fails.
"""
from __future__ import annotations
import argparse, html, json, os, re, sys, time, traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'

def notebooks(names=()):
    "The book's notebooks, `index.ipynb` first, then in file-name order."
    if names: return [Path(n).resolve() if Path(n).exists() else NBS / n for n in names]
    fns = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
    return sorted(fns, key=lambda p: (p.name != 'index.ipynb', p.name))

def _directives(src):
    "The `#| ...` directives at the top of a cell's source, as a dict of name -> args."
    out = {}
    for line in src.splitlines():
        m = re.match(r'^\s*#\s*\|\s*(\S+)(.*)$', line)
        if m: out[m.group(1).rstrip(':')] = m.group(2).strip()
        elif line.strip(): break
    return out

def _strip_directives(src):
    lines = src.splitlines()
    while lines and re.match(r'^\s*#\s*\|', lines[0]): lines.pop(0)
    return '\n'.join(lines)

def add_api_reference(nb):
    "nbdev's own `add_show_docs` processor: a `show_doc` cell after every exported function and class the page does not document yet."
    from nbdev.process import NBProcessor
    from nbdev.processors import add_show_docs
    NBProcessor(nb=nb, procs=[add_show_docs], rm_directives=False).process()
    mod = next((m.group(1) for c in nb.cells if c.cell_type == 'code'
                for m in [re.search(r'^\s*#\s*\|\s*default_exp\s+(\S+)', c.source, re.M)] if m), None)
    for c in nb.cells:
        if getattr(c, 'has_sd', False):
            c.metadata['rnb_show_doc'] = True                                  # _for_reading shows only its output
            if mod: c.source = c.source.replace('show_doc(', '_rnb_show_doc(', 1).rstrip(')') + f", 'robust_nb.{mod}')"

_SHOW_DOC = """
from nbdev.showdoc import show_doc
def _rnb_show_doc(obj, module):
    "show_doc of `obj`; if the notebook's copy cannot be inspected (string annotations that name what the kernel lacks), the module's."
    try: return show_doc(obj)
    except Exception:
        import importlib, functools
        return show_doc(functools.reduce(getattr, obj.__qualname__.split('.'), importlib.import_module(module)))
"""

def execute(fn:Path, skip_flags:set, res_dir:Path|None=None):
    "Execute `fn` in-process with execnb (as nbdev_test does, plus the API reference cells); returns (ok, seconds, nb-as-dict, error)."
    os.environ.setdefault('IN_TEST', '1')
    if res_dir is not None:                      # the notebook's own results folder (merged by the caller)
        import shutil
        shutil.rmtree(res_dir, ignore_errors=True); res_dir.mkdir(parents=True)
        os.environ['ROBUST_NB_RESULTS'] = str(res_dir)
    from execnb.nbio import read_nb, nb2dict
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    nb = read_nb(fn)
    add_api_reference(nb)
    def _skip(cell):
        if cell.cell_type != 'code': return True
        d = _directives(cell.source)
        if d.get('eval', '').lower() == 'false' or 'nbdev_export(' in cell.source: return True
        flags = skip_flags & set(d)
        if flags: cell.metadata['skipped_flags'] = sorted(flags)
        return bool(flags)
    start, err, ok = time.time(), None, True
    shell = CaptureShell(fn)
    shell.run(_SHOW_DOC)
    try:
        with working_directory(fn.parent): shell.run_all(nb, exc_stop=True, preproc=_skip)
    except BaseException:
        ok, err = False, shell.prettytb(fname=fn) if hasattr(shell, 'prettytb') else traceback.format_exc()
    return ok, time.time() - start, nb2dict(nb), err

def _records(path:Path) -> list:
    return json.loads(path.read_text()) if path.exists() else []

def merge_results(src:Path, dst:Path):
    "Merge one notebook's results folder into the build's: its records replace those with the same key and preset; tables and figures are copied."
    import shutil
    from robust_nb.book import upsert_record
    if not src.is_dir(): return
    for f in src.glob('*.json'):
        for r in _records(f): upsert_record(dst / f.name, r, keys=('key', 'preset'))
    for d in (p for p in src.iterdir() if p.is_dir()):
        shutil.copytree(d, dst / d.name, dirs_exist_ok=True)

def save_results(fn:Path, src:Path, dst:Path, preset:str, seconds:float, flags:list):
    """Replace notebook `fn`'s committed records in `dst` (results/<preset>/) by those of this run: every record of this
    preset whose key `fn` records (or no notebook records any more) is dropped, this run's are added; its tables and
    figures are copied; runs.json gets the notebook's wall time and provenance."""
    import shutil
    from robust_nb.book import record_sites, write_json_atomic, upsert_record, provenance
    sites = record_sites()
    mine, known = set(sites[sites.notebook == fn.stem].key), set(sites.key)
    for f in sorted(set(p.name for p in src.glob('claims_*.json')) | {p.name for p in dst.glob('claims_*.json')}):
        new = [r for r in _records(src / f) if r.get('preset') == preset]
        old = _records(dst / f)         # (only the builder's main process writes here, one notebook at a time)
        keep = [r for r in old if r.get('preset') != preset or (r['key'] not in mine and r['key'] in known)]
        if new or len(keep) != len(old): write_json_atomic(dst / f, keep + new)
    for d in (p for p in (src.iterdir() if src.is_dir() else ()) if p.is_dir()):   # errata/index: no folder of their own
        shutil.copytree(d, dst / d.name, dirs_exist_ok=True)
    # the load average says how busy the machine was (other jobs inflate the wall time on a shared CPU)
    run = dict(notebook=fn.name, seconds=round(seconds, 1), flags=flags, load_avg_5min=round(os.getloadavg()[1], 2), **provenance())
    upsert_record(dst / 'runs.json', run, keys=('notebook',))

def _title(nb):
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            m = re.search(r'^#\s+(.+)$', ''.join(c['source']) if isinstance(c['source'], list) else c['source'], re.M)
            if m: return m.group(1).strip()
    return None

def _for_reading(nbd):
    "Drop hidden cells and directive lines; note skipped cells; keep figures."
    import nbformat
    nb = nbformat.reads(json.dumps(nbd), as_version=4)   # rejoins multi-line sources and outputs
    cells = []
    for c in nb.cells:
        if isinstance(c.source, list): c.source = ''.join(c.source)
        if c.cell_type == 'code':
            d = _directives(c.source)
            if 'hide' in d or 'default_exp' in d: continue
            c.source = _strip_directives(c.source)
            if c.metadata.pop('rnb_show_doc', False) or re.fullmatch(r'show_doc\([\w.]+\)', c.source.strip()):
                c.metadata['transient'] = {'remove_source': True}   # an API reference entry: the output is the documentation
            skipped = c.metadata.pop('skipped_flags', None)
            if skipped:
                c.outputs = [nbformat.v4.new_output('stream', name='stdout',
                             text=f"[not run in this build: cell flagged {', '.join('#| ' + s for s in skipped)}]\n")]
            if not c.source.strip() and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    return nb

NAV_CSS = """
<style>
  body { margin-left: 17rem !important; }
  #rnb-nav { position: fixed; top: 0; left: 0; bottom: 0; width: 16rem; overflow-y: auto; padding: 1rem;
             background: #f6f8fa; border-right: 1px solid #ddd; font: 14px/1.4 system-ui, sans-serif; z-index: 10; }
  #rnb-nav h2 { font-size: 1.1rem; margin: 0 0 .6rem; }
  #rnb-nav a { display: block; padding: .2rem .3rem; color: #0b5394; text-decoration: none; border-radius: 3px; }
  #rnb-nav a.current { background: #dbe9f7; font-weight: 600; }
  #rnb-footer { margin: 2rem 0 1rem; padding-top: .6rem; border-top: 1px solid #ddd; color: #555;
                font: 13px system-ui, sans-serif; }
</style>"""

def _page(body_html, chapters, current, footer):
    links = '\n'.join(f'<a href="{html.escape(f)}"{" class=current" if f == current else ""}>{html.escape(t)}</a>'
                      for f, t in chapters)
    nav = f'<nav id="rnb-nav"><h2>robust-nb</h2>{links}</nav>'
    foot = f'<footer id="rnb-footer">{html.escape(footer)}</footer>'
    body_html = body_html.replace('</head>', NAV_CSS + '\n</head>', 1)
    body_html = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + '\n' + nav, body_html, count=1)
    return body_html.replace('</body>', foot + '\n</body>', 1)

MATHJAX_VERSION = '2.7.9'   # the MathJax 2 that nbconvert's templates configure
MATHJAX_CDN = f'https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe'
MATHJAX_PARTS = ('MathJax.js', 'config/TeX-AMS_CHTML-full.js', 'config/Safe.js', 'extensions', 'jax/input/TeX',
                 'jax/output/CommonHTML', 'jax/element', 'fonts/HTML-CSS/TeX/woff', 'localization/en')

def vendor_mathjax(out:Path) -> str:
    "Copy MathJax into the book so math renders offline; returns the URL pages load it from (CDN as fallback)."
    import shutil, subprocess, tarfile, tempfile
    src = ROOT / '.venv' / 'mathjax' / 'package'
    if not (src / 'MathJax.js').exists() and shutil.which('npm'):
        # an install step, like pip: fetch the npm package once into .venv (never at test time)
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run(['npm', 'pack', f'mathjax@{MATHJAX_VERSION}', '--pack-destination', tmp],
                               capture_output=True, text=True, timeout=300)
            tgz = list(Path(tmp).glob('mathjax-*.tgz'))
            if r.returncode == 0 and tgz:
                with tarfile.open(tgz[0]) as t:
                    t.extractall(src.parent, members=[m for m in t.getmembers()
                        if any(m.name.startswith('package/' + p) for p in MATHJAX_PARTS)], filter='data')
    if not (src / 'MathJax.js').exists():
        print('  (MathJax not available locally: pages load it from a CDN, so math renders only online)')
        return MATHJAX_CDN
    for p in MATHJAX_PARTS:
        s, d = src / p, out / 'mathjax' / p
        if s.is_dir(): shutil.copytree(s, d, dirs_exist_ok=True)
        else: d.parent.mkdir(parents=True, exist_ok=True); shutil.copy(s, d)
    return 'mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe'

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='*', help='notebooks to build (default: all of nbs/)')
    ap.add_argument('--out', default='_book', help='output folder (default: _book)')
    ap.add_argument('--flags', default=None, help="test flags to run (default: 'slow cuda' on CUDA, else none)")
    ap.add_argument('--n_workers', type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument('--no-save-results', action='store_true',
                    help="in the small/paper presets, do not write into the committed results/<preset>/")
    a = ap.parse_args(argv)
    os.environ.setdefault('ROBUST_NB_PRESET', 'tiny')
    import torch
    sys.path.insert(0, str(ROOT))
    from robust_nb.core import get_device, get_preset
    device, preset = get_device(), get_preset().name
    default_flags = 'slow cuda' if device.type == 'cuda' else ('slow' if preset != 'tiny' else '')
    run_flags = set((a.flags if a.flags is not None else default_flags).split())
    from nbdev.config import get_config
    tst_flags = set(get_config().get('tst_flags', '').split())   # the flags nbdev_test skips by default
    skip = tst_flags - run_flags
    if 'slow' in run_flags: os.environ.setdefault('ROBUST_NB_SLOW', '1')   # slow cells gate themselves too (for Run All)
    fns = notebooks(a.notebooks)
    out = (ROOT / a.out) if not Path(a.out).is_absolute() else Path(a.out)
    (out / 'executed').mkdir(parents=True, exist_ok=True)
    if a.n_workers > 1:
        # one torch thread per notebook process, or they fight over the cores
        for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ.setdefault(v, '1')
    busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    if device.type == 'cpu' and busy and torch.get_num_threads() > 1:
        # OpenMP threads spin while they wait: on a CPU that other jobs keep busy, 2 threads run ~3x slower than 1
        print(f'  (the CPU is busy: load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, so one torch thread instead of '
              f'{torch.get_num_threads()})', flush=True)
        torch.set_num_threads(1)
    print(f'Building the book: {len(fns)} notebooks, preset={preset}, device={device}, '
          f'skipping cells flagged {sorted(skip) or "nothing"}', flush=True)
    # chapters record their headline numbers and errata here; the errata page and the index (run last) read them
    res_dir = out / 'results'
    if not a.notebooks and res_dir.exists():
        for pat in ('claims_*.json', 'errata_*.json', '.*.lock'):
            for f in res_dir.glob(pat): f.unlink()
    os.environ['ROBUST_NB_RESULTS'] = str(res_dir)
    save_to = None if (preset == 'tiny' or a.no_save_results) else ROOT / 'results' / preset
    nb_res = lambda fn: res_dir / '.by_notebook' / fn.stem
    results, t0 = {}, time.time()
    def _report(fn):
        ok, secs = results[fn][:2]
        merge_results(nb_res(fn), res_dir)
        if save_to is not None and ok: save_results(fn, nb_res(fn), save_to, preset, secs, sorted(run_flags))
        print(f'  {fn.name}: {"ok" if ok else "FAILED"} ({secs:.1f}s)'
              + (f'; results saved in {save_to.relative_to(ROOT)}/' if save_to is not None and ok else ''), flush=True)
    LAST = ('errata', 'index')    # pages that read what the chapters record: run after every chapter, in this order
    chapters_first = [fn for fn in fns if fn.stem not in LAST]
    if a.n_workers > 1 and len(chapters_first) > 1:
        import multiprocessing as mp
        with ProcessPoolExecutor(a.n_workers, mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
            futs = {fn: ex.submit(execute, fn, skip, nb_res(fn)) for fn in chapters_first}
            for fn, f in futs.items(): results[fn] = f.result(); _report(fn)
    else:
        for fn in chapters_first: results[fn] = execute(fn, skip, nb_res(fn)); _report(fn)
    os.environ['ROBUST_NB_RESULTS'] = str(res_dir)      # the pages that read every chapter's records read the build's folder
    for stem in LAST:
        for fn in fns:
            if fn.stem == stem: results[fn] = execute(fn, skip, None); _report(fn)
    from nbconvert import HTMLExporter
    import nbformat
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True,
                            mathjax_url=vendor_mathjax(out))
    chapters = [(('index' if fn.stem == 'index' else fn.stem) + '.html', _title(results[fn][2]) or fn.stem) for fn in fns]
    footer = (f'Numbers and figures on this page were produced by the code on the page: preset "{preset}", '
              f'device {device} ({torch.__version__}), built {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.')
    for fn, (page, _) in zip(fns, chapters):
        ok, secs, nbd, err = results[fn]
        nbformat.write(nbformat.reads(json.dumps(nbd), as_version=4), out / 'executed' / fn.name)
        body, _ = exporter.from_notebook_node(_for_reading(nbd))
        (out / page).write_text(_page(body, chapters, page, footer))
    timings = {fn.name: {'seconds': round(results[fn][1], 2), 'ok': results[fn][0]} for fn in fns}
    (out / 'timings.json').write_text(json.dumps(dict(preset=preset, device=str(device), flags=sorted(run_flags),
                                                      wall_seconds=round(time.time() - t0, 1), notebooks=timings), indent=1))
    failed = [fn for fn in fns if not results[fn][0]]
    for fn in failed: sys.stderr.write(f'\n===== {fn.name} failed =====\n{results[fn][3]}\n')
    print(f'Wrote {out}/index.html ({len(fns)} pages) in {time.time() - t0:.0f}s'
          + (f'; {len(failed)} notebook(s) FAILED: {", ".join(f.name for f in failed)}' if failed else ''))
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
