"""The book's records (robust_nb.book): concurrent writers keep every record, and the committed `small` results
cover every claim the code records in `small` (stale or missing results fail).

Which claims the code records is read from the chapters themselves (`record_sites`: every `record_claim` call in
nbs/*.ipynb, by Python's parser). A call without `preset=` records in the build's preset, so a `small` build records
it; a call with `preset='small'` (04b's Fashion-MNIST row) records it in any build. Either way, a `make book
ROBUST_NB_PRESET=small` whose `results/small/` was committed must hold it."""
import json, multiprocessing as mp, os
from pathlib import Path
import pytest
from robust_nb.book import record_sites, recorded_claims, committed_results, chapter_page

SITES = record_sites('record_claim')
SMALL = SITES[SITES.preset.isna() | (SITES.preset == 'small')]          # what a `small` build records
COMMITTED = recorded_claims(committed_results('small'))
COMMITTED = COMMITTED[COMMITTED.preset == 'small']

def _upsert_many(args):
    f, tag, n = args
    from robust_nb.book import upsert_record
    for i in range(n): upsert_record(f, dict(key=f'{tag}{i}'))

def test_concurrent_writers_keep_every_record(tmp_path):
    "Two processes writing into one chapter's file (as 04c and 04d do, in parallel) lose nothing (without the lock ~30 % are lost)."
    f = str(tmp_path / 'claims_9.json')
    with mp.get_context('spawn').Pool(2) as pool: pool.map(_upsert_many, [(f, 'a', 300), (f, 'b', 300)])
    keys = sorted(r['key'] for r in json.loads(Path(f).read_text()))
    assert keys == sorted([f'a{i}' for i in range(300)] + [f'b{i}' for i in range(300)]), f"{600 - len(keys)} of 600 records lost"

def test_record_sites_are_literal_and_unique():
    "Every record_claim call names its chapter and key literally, once, so the coverage check below can find it."
    assert len(SITES) >= 10, f'only {len(SITES)} record_claim calls found in nbs/'
    bad = SITES[SITES.chapter.isna() | SITES.key.isna()]
    assert bad.empty, f'record_claim calls with a non-literal chapter or key:\n{bad}'
    dup = SITES[SITES.duplicated(['chapter', 'key', 'preset'], keep=False)]
    assert dup.empty, f'the same claim recorded in two places:\n{dup}'

def test_errata_sites_link_to_a_page():
    "Every record_erratum call names literally a chapter whose notebook exists (its anchor is checked when it runs)."
    sites = record_sites('record_erratum')
    assert len(sites) >= 3, f'only {len(sites)} record_erratum calls found in nbs/'
    bad = [(s.notebook, s.cell, s.chapter) for s in sites.itertuples() if s.chapter is None or chapter_page(s.chapter) != s.notebook]
    assert not bad, f'record_erratum calls whose chapter has no page: {bad}'

@pytest.mark.parametrize('chapter', sorted(set(SMALL.chapter)))
def test_committed_small_results_cover_every_claim(chapter):
    "results/small/ holds every claim a `small` build records for `chapter`, and nothing the code no longer records."
    want = SMALL[SMALL.chapter == chapter]
    have = COMMITTED[COMMITTED.chapter == chapter]
    if have.empty:   # every chapter has been run in small and committed: a new chapter must be too
        pytest.fail(f"Chapter {chapter} ({', '.join(sorted(set(want.notebook)))}) has never been run in the small preset: "
                     f"{committed_results('small')} holds no claims_{chapter}.json with small records. Run it with "
                     f"ROBUST_NB_PRESET=small and commit the records; claims it will record: {sorted(want.key)}")
    missing = sorted(set(want.key) - set(have.key))
    assert not missing, (f"stale small results: the code records {missing} for chapter {chapter} "
                         f"({sorted(set(want.notebook))}) but results/small/claims_{chapter}.json does not; rerun in small and commit")
    orphans = sorted(set(have.key) - set(want.key))
    assert not orphans, f"stale small results: results/small/claims_{chapter}.json holds {orphans}, which no chapter records any more"
    unstamped = have[have.commit.isna() | have.date.isna()]
    assert unstamped.empty, f"committed small records without commit or date: {list(unstamped.key)}"

RUNS_FILE = committed_results('small') / 'runs.json'
RUNS = json.loads(RUNS_FILE.read_text()) if RUNS_FILE.is_file() else []
CHAPTER_BUDGET_S, BOOK_BUDGET_S = 20 * 60, 75 * 60     # issue 13: no chapter over 20 min, the book within 75 min, on 2 CPU cores

def test_committed_small_runs_are_stamped_and_within_budget():
    "Every committed small run names its commit, date and machine, and kept to the CPU budget (per chapter and in all)."
    for r in RUNS:
        missing = [k for k in ('notebook', 'seconds', 'commit', 'date', 'machine', 'device', 'cpu_count') if r.get(k) is None]
        assert not missing, f"results/small/runs.json: the run of {r.get('notebook')} lacks {missing}"
        if r['device'] == 'cpu':
            assert r['seconds'] <= CHAPTER_BUDGET_S, f"{r['notebook']} took {r['seconds']:.0f} s in small; the budget is {CHAPTER_BUDGET_S} s"
    cpu = sum(r['seconds'] for r in RUNS if r['device'] == 'cpu')
    assert cpu <= BOOK_BUDGET_S, f"the committed small runs on a CPU add up to {cpu:.0f} s; the book's budget is {BOOK_BUDGET_S} s"

def test_every_notebook_with_small_claims_has_a_committed_run():
    "A notebook whose small claims are committed also has its run (wall time, provenance) in results/small/runs.json."
    ran = {r['notebook'] for r in RUNS}
    have = set(COMMITTED.chapter)
    nbs = sorted({s.notebook + '.ipynb' for s in SMALL.itertuples() if s.chapter in have and not isinstance(s.preset, str)})
    assert not [n for n in nbs if n not in ran], f"small claims committed without a recorded run for {[n for n in nbs if n not in ran]}"

def test_headline_claims_are_recorded_by_the_chapters():
    "Each of the book's headline claims (index page) names a claim some chapter records, so none silently shows 'not run'."
    from robust_nb.book import HEADLINE_CLAIMS
    recorded = set(zip(SITES.chapter, SITES.key))
    assert not [(c, k) for c, k, _ in HEADLINE_CLAIMS if (c, k) not in recorded], \
        f"headline claims no chapter records: {[(c, k) for c, k, _ in HEADLINE_CLAIMS if (c, k) not in recorded]}"

def test_saving_a_page_that_reads_the_merged_results(tmp_path):
    """errata and index run on the build's merged results folder, not one of their own: saving their run (small/paper)
    must still stamp runs.json (a fresh clone's `make book ROBUST_NB_PRESET=small` crashed here after every chapter ran)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_book', Path(__file__).resolve().parents[1] / 'tools' / 'build_book.py')
    bb = importlib.util.module_from_spec(spec); spec.loader.exec_module(bb)
    dst = tmp_path / 'results' / 'small'; dst.mkdir(parents=True)
    bb.save_results(bb.NBS / 'errata.ipynb', tmp_path / 'no_folder_of_its_own', dst, 'small', 2.5, ['slow'])
    runs = json.loads((dst / 'runs.json').read_text())
    assert [(r['notebook'], r['seconds']) for r in runs] == [('errata.ipynb', 2.5)], runs
    written = sorted(p.name for p in dst.iterdir() if not p.name.endswith('.lock'))
    assert written == ['runs.json'], written
