"""Coursework round trip on the real chapters: every notebook with exercises passes as it is (that is `make test`'s
notebook run), and its student copy — solutions replaced by stubs — fails, on the stub, in a check cell."""
import contextlib, io, os
from pathlib import Path
import pytest
from robust_nb.cli import exercise_cells, make_student_copy

ROOT = Path(__file__).resolve().parents[1]
WITH_EXERCISES = sorted(p.name for p in (ROOT / 'nbs').glob('*.ipynb') if exercise_cells(p))

def test_chapters_have_exercises():
    assert len(WITH_EXERCISES) >= 4, f'exercise notebooks: {WITH_EXERCISES}'

@pytest.mark.parametrize('name', WITH_EXERCISES)
def test_student_copy_fails_on_its_stub(name, tmp_path, monkeypatch):
    from nbdev.test import test_nb
    monkeypatch.setenv('ROBUST_NB_RESULTS', str(tmp_path / 'results'))   # keep the book's claims untouched
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setenv('IN_TEST', '1')   # test_nb sets it in os.environ; monkeypatch removes it afterwards
    # the copy sits next to the chapters (same relative paths), under a name nbdev_test would never pick up
    dest = ROOT / 'nbs' / f'_student_{name}'
    try:
        make_student_copy(ROOT / 'nbs' / name, dest)
        err = io.StringIO()
        with contextlib.redirect_stderr(err): ok, _ = test_nb(dest, skip_flags=['slow', 'cuda'])
    finally: dest.unlink(missing_ok=True)
    assert not ok, f'the student copy of {name} passes: its checks do not test the exercise'
    assert 'NotImplementedError' in err.getvalue(), f'{name} failed, but not on the exercise stub:\n{err.getvalue()[-2000:]}'

def test_every_exercise_is_in_its_chapter_with_a_check_cell(tmp_path):
    "Each registered exercise: its chapter defines the name inside a solution block, a later cell calls its check, and the student copy holds the stub."
    from robust_nb.exercises import EXERCISES, exercises_in
    import nbformat
    pending = set()                                          # chapters without check cells yet
    for key, ex in EXERCISES.items():
        nb = nbformat.read(ROOT / 'nbs' / ex.notebook, as_version=4)
        where = exercises_in(ROOT / 'nbs' / ex.notebook)
        assert key in where, f'{ex.notebook} defines no {ex.name} for exercise {key}'
        assert where[key] in exercise_cells(nb), f'{ex.notebook}: the cell defining {ex.name} has no solution block'
        calls = [i for i, c in enumerate(nb.cells) if f"check_exercise({key!r}" in ''.join(c.source)]
        if ex.notebook not in pending: assert calls and calls[0] > where[key], f'{ex.notebook}: no check_exercise({key!r}, ...) after the exercise'
        copy = make_student_copy(ROOT / 'nbs' / ex.notebook, tmp_path / ex.notebook)
        src = ''.join(nbformat.read(copy, as_version=4).cells[where[key]].source)
        assert 'NotImplementedError' in src and 'BEGIN SOLUTION' not in src, f'student copy of {key}: {src[:300]}'
