"""The built book in a real browser (headless Chromium): pages load without JavaScript errors, figures are
loaded images, math is typeset, the replication table is on the index page. Screenshots go to _book/.

Needs `_book/` (made by `make book`, and by `make test` before pytest runs) and Chromium (`make test` installs
Debian's `chromium` with apt-get when it can). Where either is missing the test skips and says why."""
import json, os, re, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = Path(os.environ.get('ROBUST_NB_BOOK', ROOT / '_book'))
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')

pytestmark = [
    pytest.mark.skipif(not (BOOK / 'index.html').exists(), reason=f'no built book at {BOOK} (run `make book`)'),
    pytest.mark.skipif(CHROMIUM is None, reason='no Chromium on PATH (Debian: apt-get install chromium)'),
]

@pytest.fixture(scope='module')
def browser():
    pw = pytest.importorskip('playwright.sync_api', reason='playwright (dev dependency) is not installed')
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--no-first-run', '--disable-quic'])
        yield b
        b.close()

def _open(browser, page_name):
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    errors = []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.goto((BOOK / page_name).as_uri(), wait_until='load')
    page.wait_for_timeout(300)
    return page, errors

def test_index_page(browser):
    page, errors = _open(browser, 'index.html')
    assert not errors, f'JavaScript errors on index.html: {errors}'
    assert page.locator('#rnb-nav a').count() >= 2, 'the chapter list is missing'
    assert 'preset' in page.locator('#rnb-footer').inner_text()
    heading = page.locator('h2', has_text='Replication table')
    assert heading.count() == 1, 'no replication table section on the index page'
    # the generated table is the first table after the heading, with the columns replication_table() makes
    cols = page.evaluate('''() => { const h = [...document.querySelectorAll('h2')].find(e => e.textContent.includes('Replication table'));
        const all = [...document.querySelectorAll('table')]; const t = all.find(t => h.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING);
        return t ? [...t.querySelectorAll('thead th')].map(th => th.textContent.trim()) : null; }''')
    assert cols and {'claim', 'thesis', 'tiny', 'tiny verdict', 'small', 'small verdict'} <= set(cols), f'replication table columns: {cols}'
    page.screenshot(path=str(BOOK / 'screenshot_index.png'), full_page=False)

CHAPTERS = sorted(p.name for p in BOOK.glob('*.html') if p.name != 'index.html')

def _cells(name):
    nb = BOOK / 'executed' / (Path(name).stem + '.ipynb')
    return json.loads(nb.read_text())['cells'] if nb.exists() else []

def _has_figures(name):
    return any('image/png' in o.get('data', {}) for c in _cells(name) for o in c.get('outputs', []))

def _has_math(name):
    return any(c['cell_type'] == 'markdown' and '$' in ''.join(c['source']) for c in _cells(name))

@pytest.mark.parametrize('name', CHAPTERS or ['(no chapter pages)'])
def test_chapter_page(browser, name):
    "Every chapter page: no JavaScript errors, every figure a loaded image, math typeset, the chapter list."
    if not CHAPTERS: pytest.skip('no chapter pages in this build')
    page, errors = _open(browser, name)
    assert not errors, f'JavaScript errors on {name}: {errors}'
    assert page.locator('#rnb-nav a').count() >= 2, f'no chapter list on {name}'
    sizes = page.eval_on_selector_all('img', 'els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])')
    if _has_figures(name): assert sizes, f'{name} has figures in its notebook but none on the page'
    assert all(c and w > 0 and h > 0 for c, w, h in sizes), f'figures that did not load on {name}: {sizes}'
    if (BOOK / 'mathjax' / 'MathJax.js').exists() and _has_math(name):
        page.wait_for_function('() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0', timeout=20000)
        assert page.locator('.MathJax_CHTML').count() > 0, f'no typeset math on {name}'
    page.screenshot(path=str(BOOK / f'screenshot_{Path(name).stem}.png'), full_page=False)

def _documented(name):
    "Names a chapter documents with `show_doc(name)` cells, in order."
    return [m.group(1) for c in _cells(name) if c['cell_type'] == 'code'
            for m in [re.fullmatch(r'\s*show_doc\(([\w.]+)\)\s*', ''.join(c['source']))] if m]

@pytest.mark.parametrize('name', CHAPTERS or ['(no chapter pages)'])
def test_api_reference_renders(browser, name):
    "Every `show_doc(f)` cell of a chapter shows, on its page, a heading `f` followed by f's signature and docstring."
    names = _documented(name) if CHAPTERS else []
    if not names: pytest.skip(f'{name} has no show_doc cells')
    page, _ = _open(browser, name)
    for nm in names:
        short = nm.rsplit('.', 1)[-1]
        got = page.evaluate('''nm => { const h = [...document.querySelectorAll('h3')].find(e => e.id === nm);
            if (!h) return null; let e = h.parentElement, txt = '';
            while (e && txt.length < 4000) { txt += e.innerText + '\\n'; e = e.nextElementSibling; } return txt; }''', short)
        assert got is not None, f'{name}: no API heading for {nm} (show_doc output missing or not rendered as Markdown)'
        assert f'def {short}(' in got, f'{name}: the heading for {nm} is not followed by its signature: {got[:300]!r}'
