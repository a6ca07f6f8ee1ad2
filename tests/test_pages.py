"""The built book's pages are clean (issue 15): no warnings, no numpy reprs, no carriage-return progress junk.

Scans what a reader sees: the outputs of `_book/executed/*.ipynb`, the output areas of `_book/*.html`, and every CSV and
results JSON under `_book/`. Source code is not scanned (a check may well call `np.int64(3)`). Build the book first
(`make book`, or `python tools/build_book.py`); without one the page tests skip. `ROBUST_NB_BOOK` points at another build.
"""
import json, os, re
from html.parser import HTMLParser
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = Path(os.environ.get('ROBUST_NB_BOOK') or ROOT / '_book')

WARNING = re.compile(r'Warning:|FutureWarning|DeprecationWarning|UserWarning')
NUMPY_REPR = re.compile(r'np\.(?:float|int|uint|bool|str|complex)\w*\(')
BAR_STATE = re.compile(r'\d+\.\d+% \[\d+/\d+')        # one state of a fastprogress bar: '43.48% [10/23 00:01<00:01'


def junk(text:str, *, warnings:bool=True) -> list[str]:
    "What a reader should not see in `text`: warnings, numpy reprs, carriage returns, more than one state of a progress bar."
    found = []
    def ctx(m): return repr(text[max(0, m.start() - 60):m.end() + 60])
    if warnings: found += [f"a warning: {ctx(m)}" for m in WARNING.finditer(text)]
    found += [f"a numpy repr: {ctx(m)}" for m in NUMPY_REPR.finditer(text)]
    if '\r' in text: found.append(f"carriage returns ({text.count(chr(13))}): {text[:120]!r}")
    states = BAR_STATE.findall(text)
    if len(states) > 1: found.append(f"{len(states)} states of a progress bar: {states[:3]}")
    return found


def _outputs(cell) -> list[str]:
    "The texts a reader sees of one executed cell: streams and every text-like representation."
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o.get('text', '')))
        for mime, v in (o.get('data') or {}).items():
            if mime.startswith('text/'): out.append(''.join(v) if isinstance(v, list) else str(v))
    return out


class _OutputAreas(HTMLParser):
    "The text inside nbconvert's output areas (`jp-OutputArea-output`) of an HTML page; the code cells' source is skipped."
    def __init__(self):
        super().__init__(convert_charrefs=True); self.depth, self.texts = 0, []
    def handle_starttag(self, tag, attrs):
        if self.depth: self.depth += tag == 'div'
        elif tag == 'div' and 'jp-OutputArea-output' in (dict(attrs).get('class') or ''): self.depth = 1
    def handle_endtag(self, tag):
        if self.depth and tag == 'div': self.depth -= 1
    def handle_data(self, data):
        if self.depth: self.texts.append(data)


def html_outputs(page:str) -> list[str]:
    p = _OutputAreas(); p.feed(page); p.close()
    return p.texts


# ---------------------------------------------------------------- the scanner itself (always runs)

def test_the_scanner_finds_each_kind_of_junk():
    bar = ''.join(f'\rEpoch 1/2 : |{"█" * i}| {100 * i / 4:.2f}% [{i}/4 00:00<00:00]' for i in range(5))
    cases = {
        "/x/soar.py:13: FutureWarning: `torch.jit.script` is deprecated.": 'a warning',
        "UserWarning: resume=True but checkpoint 'a.pt' does not exist yet": 'a warning',
        "{'ratio': np.float64(1.7320508075688772)}": 'a numpy repr',
        "n = np.int64(3)": 'a numpy repr',
        bar: 'carriage returns',
        '43.48% [10/23 00:01<00:01]\n86.96% [20/23 00:02<00:00]': 'states of a progress bar',
    }
    for text, kind in cases.items():
        assert any(kind in j for j in junk(text)), (text, junk(text))
    clean = "epoch  train_loss\n1      0.5\ndone: 15/15 in 00:02\nratio 1.732 (eps=8/255)\n{'ratio': 1.7320508075688772}"
    assert junk(clean) == []


def test_html_outputs_skip_the_source():
    page = ('<div class="jp-Cell"><div class="jp-InputArea"><pre>warnings.warn("UserWarning: x"); np.int64(3)</pre></div>'
            '<div class="jp-OutputArea-output jp-RenderedText"><pre>np.float64(2.5)<div>inner</div> tail</pre></div>'
            '<div>after</div></div>')
    texts = html_outputs(page)
    assert ''.join(texts) == 'np.float64(2.5)inner tail', texts


# ---------------------------------------------------------------- the built book

def _book_files():
    if not BOOK.is_dir(): return []
    return sorted([*BOOK.glob('*.html'), *(BOOK / 'executed').glob('*.ipynb'), *BOOK.rglob('*.csv'), *(BOOK / 'results').glob('*.json')])


FILES = _book_files()


def _problems(f:Path) -> list[str]:
    if f.suffix == '.ipynb':
        nb = json.loads(f.read_text())
        return [f"cell {i}: {j}" for i, c in enumerate(nb['cells']) if c.get('cell_type') == 'code'
                for t in _outputs(c) for j in junk(t)]
    if f.suffix == '.html': return [j for t in html_outputs(f.read_text()) for j in junk(t)]
    return junk(f.read_text(errors='replace'), warnings=False)    # CSV and JSON tables: numbers, not prose


@pytest.mark.skipif(not FILES, reason=f'no built book under {BOOK} (run `make book` or tools/build_book.py first)')
@pytest.mark.parametrize('f', FILES, ids=lambda f: str(f.relative_to(BOOK)))
def test_built_page_is_clean(f):
    problems = _problems(f)
    assert not problems, f"{f.relative_to(BOOK)} shows readers:\n" + '\n'.join(problems[:20])

def test_index_shows_this_builds_claims():
    "The index's replication table reads the claims the chapters of this build recorded (a build whose index read an empty folder showed 'tiny: 0 of 0')."
    idx, timings = BOOK / 'executed' / 'index.ipynb', BOOK / 'timings.json'
    if not idx.exists() or not timings.exists(): pytest.skip(f'no built index under {BOOK}')
    from robust_nb.book import record_sites
    ran = {Path(n).stem for n, t in json.loads(timings.read_text())['notebooks'].items() if t['ok']}
    recording = set(record_sites().notebook) & ran
    if not recording: pytest.skip('this build ran no chapter that records claims')
    text = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in json.loads(idx.read_text())['cells']
                   for o in c.get('outputs', []))
    m = re.search(r"`(\w+)`: (\d+) of (\d+) recorded claims hold", text)
    assert m, f"the index's replication summary is missing from {idx}"
    assert int(m.group(3)) > 0, (f"the index shows `{m.group(1)}`: {m.group(2)} of {m.group(3)} claims although this build ran "
                                 f"{sorted(recording)}, which record claims")
