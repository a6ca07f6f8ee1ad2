"""The installed `robust-nb` console script: train/eval round trip, resume, bad arguments, --help, exercises, reproduce.

Cost of the whole file, measured on 2 idle cores: 92 s (145 CPU s, subprocesses included; 18 min on the same cores shared
with a book build). The largest part is the `reproduced` fixture, 43 s: three `robust-nb reproduce` processes and,
while they run, Table 6.3 once more in this process (13 CPU s), the check that the command writes the chapter's numbers."""
import json, os, re, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / 'robust-nb'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'ROBUST_NB_PRESET': 'tiny', 'ROBUST_NB_DEVICE': 'cpu',
       'PYTHONWARNINGS': 'ignore'}


def run(*args, check=True):
    r = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)
    if check: assert r.returncode == 0, f"robust-nb {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-3000:]}"
    return r


def test_console_script_installed():
    assert EXE.is_file(), f"{EXE} is missing: install the package (pip install -e .) to get the console script"


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A PGD-AT MLP on the digits, 2 epochs, through the console script."
    out = tmp_path_factory.mktemp('train')
    run('train', '--method', 'pgd', '--steps', '2', '--eps', '8/255', '--epochs', '2', '--seed', '1', '--sched', 'none', '--out', out, '--no-progress')
    return out


def test_train_writes_checkpoint_and_metrics(trained):
    from robust_nb.cli import load_model, load_dataset
    from robust_nb.train import evaluate
    m = json.loads((trained / 'metrics.json').read_text())
    cfg = m['config']
    assert (cfg['method'], cfg['model'], cfg['data'], cfg['epochs'], cfg['steps']) == ('pgd', 'mlp', 'digits', 2, 2)
    assert abs(cfg['eps'] - 8 / 255) < 1e-12 and [h['epoch'] for h in m['history']] == [1, 2]
    assert torch.load(trained / 'checkpoint.pt', weights_only=True)['cli']['model'] == 'mlp'
    # the reported clean accuracy is the reloaded checkpoint's accuracy on the test split
    model, _ = load_model(trained / 'checkpoint.pt', device='cpu')
    test = load_dataset('digits', train=False, img_size=cfg['img_size'], seed=cfg['seed'])
    assert m['clean_accuracy'] == pytest.approx(evaluate(model, (test.x, test.y)), abs=1e-12)
    assert m['clean_accuracy'] > 0.3      # well above chance (0.1) after 2 epochs


def test_resume_is_identical_to_one_run(trained, tmp_path):
    "1 epoch, then --resume to 2 epochs: the same weights as the 2-epoch run (PGD random starts included).\n\n    With a constant learning rate a 1-epoch run is the first epoch of the 2-epoch run (a schedule spans --epochs)."
    args = ('train', '--method', 'pgd', '--steps', '2', '--eps', '8/255', '--seed', '1', '--sched', 'none', '--out', tmp_path, '--no-progress')
    run(*args, '--epochs', '1')
    run(*args, '--epochs', '2', '--resume')
    a = torch.load(trained / 'checkpoint.pt', weights_only=True)['model']
    b = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)['model']
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert [h['epoch'] for h in json.loads((tmp_path / 'metrics.json').read_text())['history']] == [1, 2]


def test_eval_table_matches_the_library(trained, tmp_path):
    from robust_nb.cli import load_model, load_dataset
    from robust_nb.attacks import robust_accuracy, fgsm
    run('eval', trained / 'checkpoint.pt', '--attack', 'fgsm', 'pgd', 'hierarchical', '--eps', '0.05', '0.1', '--steps', '3',
        '--n-examples', '200', '--out', tmp_path)
    df = pd.read_csv(tmp_path / 'eval.csv')
    js = json.loads((tmp_path / 'eval.json').read_text())
    assert len(js['results']) == len(df) == 7 and (tmp_path / 'eval.png').stat().st_size > 1000
    assert list(df.attack) == ['clean'] + ['fgsm'] * 2 + ['pgd'] * 2 + ['hierarchical'] * 2 and set(df.n) == {200}
    model, cfg = load_model(trained / 'checkpoint.pt', device='cpu')
    test = load_dataset('digits', train=False, img_size=cfg['img_size'], seed=cfg['seed'])
    x, y = test.x[:200], test.y[:200]
    clean = df[df.attack == 'clean'].accuracy.item()
    assert clean == pytest.approx(robust_accuracy(model, (x, y)), abs=1e-12)
    for e in (0.05, 0.1):   # FGSM is deterministic: the CLI's number is the library's number
        assert df[(df.attack == 'fgsm') & (df.eps == e)].accuracy.item() == pytest.approx(robust_accuracy(model, (x, y), fgsm, eps=e), abs=1e-12)
    pgd = df[df.attack == 'pgd'].set_index('eps').accuracy
    assert pgd[0.1] <= pgd[0.05] + 0.02 and pgd[0.1] < clean     # a bigger ball hurts more
    assert 'meta_accuracy' in df and (df.meta_accuracy >= df.accuracy - 1e-12).all()   # right leaf => right meta-class
    hier = df[df.attack == 'hierarchical'].set_index('eps').meta_accuracy
    assert (hier <= df[df.attack == 'clean'].meta_accuracy.item()).all()   # the attack only removes meta-class hits


def _one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in r.stderr and lines[0].startswith('robust-nb'), r.stderr
    return lines[0]


def test_bad_arguments_exit_2_with_one_line(trained, tmp_path):
    "Through the console script (3 cases, in parallel: every process pays for importing torch)."
    cases = {  # argv -> what the line must say
        ('train', '--method', 'fgsm', '--out', tmp_path / 'a'): "invalid choice: 'fgsm'",
        ('train', '--data', 'cifar10', '--data-root', tmp_path, '--out', tmp_path / 'b'): 'missing',
        ('eval', trained / 'checkpoint.pt', '--model', 'cnn6', '--out', tmp_path / 'e'): 'another architecture',
    }
    procs = {k: subprocess.Popen([str(EXE), *map(str, k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for k in cases}
    for k, p in procs.items():
        out, err = p.communicate(timeout=300)
        line = _one_line_error(subprocess.CompletedProcess(k, p.returncode, out, err))
        assert cases[k] in line, (k, line)


@pytest.mark.parametrize('argv, says', [
    (('train', '--data', 'cifar10', '--data-root', '{tmp}/nowhere', '--out', '{tmp}/c'), 'not a directory'),
    (('train', '--data', 'mnist', '--data-root', '{tmp}/nowhere', '--out', '{tmp}/c'), 'nowhere/MNIST/raw'),   # searched like vision_dataset
    (('train', '--data', 'svhn', '--out', '{tmp}/c'), '--data-root'),
    (('train', '--eps', '-0.1', '--out', '{tmp}/d'), "got '-0.1'"),
    (('train', '--epochs', '0', '--out', '{tmp}/d'), "got '0'"),
    (('eval', '{ckpt}', '--eps', '-1', '--out', '{tmp}/f'), "got '-1'"),
    (('eval', '{tmp}/none.pt', '--out', '{tmp}/g'), 'does not exist'),
    (('eval', '{ckpt}', '--data', 'cifar10', '--out', '{tmp}/g'), 'another architecture'),
    (('har', '--data', 'mnist', '--data-root', '{tmp}', '--out', '{tmp}/h'), 'no class hierarchy'),
    (('reproduce', '9.9'), 'available'),
    (('nonsense',), "invalid choice: 'nonsense'"),
])
def test_bad_arguments_in_process(trained, tmp_path, capsys, argv, says, monkeypatch):
    "The same contract through `main` itself (no process start-up per case)."
    from robust_nb.cli import main
    monkeypatch.delenv('ROBUST_NB_DATA', raising=False)
    argv = [a.format(tmp=tmp_path, ckpt=trained / 'checkpoint.pt') for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    line = _one_line_error(subprocess.CompletedProcess(argv, code, '', err))
    assert says in line, line


def test_help_documents_every_option_with_its_default():
    from robust_nb.cli import make_parser, main
    import contextlib, io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): assert main(['train', '--help']) == 0
    assert '--method' in buf.getvalue() and '(default: standard)' in buf.getvalue() and '(default: 0.05)' in buf.getvalue()
    import argparse
    p = make_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        text = sp.format_help()
        for act in sp._actions:
            if act.help in (None, argparse.SUPPRESS) or isinstance(act, argparse._HelpAction): continue
            assert act.help, (name, act.dest)
            if act.option_strings and not act.required and not isinstance(act, argparse._StoreTrueAction):
                assert '%(default)' not in act.help    # the formatter adds "(default: ...)" itself
        assert text.count('(default:') >= sum(1 for a in sp._actions if a.option_strings and not a.required
                                               and not isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction))), name


def test_exercises_round_trip(tmp_path):
    "A notebook with an exercise passes its check; its student copy (written by the CLI) fails it on the stub."
    import nbformat
    from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell
    from nbdev.test import test_nb
    from robust_nb.cli import exercise_cells
    nbs = tmp_path / 'nbs'; nbs.mkdir()
    nb = new_notebook(cells=[
        new_markdown_cell('**Exercise.** Implement `double`.'),
        new_code_cell('def double(x):\n    "Twice x."\n    # BEGIN SOLUTION\n    y = 2 * x\n    return y\n    # END SOLUTION'),
        new_code_cell('assert double(21) == 42')])
    nbformat.write(nb, nbs / 'ex.ipynb')
    assert exercise_cells(nb) == [1]
    assert test_nb(nbs / 'ex.ipynb', showerr=False)[0]                 # the solution passes the check
    run('exercises', tmp_path / 'student', '--nbs', nbs)
    st = nbformat.read(tmp_path / 'student' / 'ex.ipynb', as_version=4)
    src = st.cells[1].source
    assert 'y = 2 * x' not in src and '    raise NotImplementedError("Exercise: see the markdown above")' in src.splitlines()
    assert st.cells[2].source == 'assert double(21) == 42'             # the check is kept
    assert not test_nb(tmp_path / 'student' / 'ex.ipynb', showerr=False)[0]   # ... and fails on the stub
    from robust_nb.cli import main
    assert main(['exercises', str(nbs), '--nbs', str(nbs)]) == 2       # never overwrite the sources


def test_every_attack_runs_through_evaluate_attacks(trained):
    "Each --attack of eval on a few examples (in process): rows, counts and the meta-class column."
    from robust_nb.cli import load_model, load_dataset, evaluate_attacks, ATTACKS
    from robust_nb.data import DIGITS_HIERARCHY
    model, cfg = load_model(trained / 'checkpoint.pt', device='cpu')
    test = load_dataset('digits', train=False, img_size=cfg['img_size'], seed=cfg['seed'])
    df = evaluate_attacks(model, test.x[:24], test.y[:24], attacks=ATTACKS, eps=(0.1,), steps=3, queries=50,
                          hierarchy=DIGITS_HIERARCHY, batch_size=16)
    assert set(df.attack) >= {'clean', 'fgsm', 'pgd', 'cw', 'simba', 'autoattack', 'hierarchical', 'autoattack:APGD-CE'}
    assert (df.n == 24).all() and df.accuracy.between(0, 1).all()
    aa = df.set_index('attack').accuracy
    assert aa['autoattack'] <= min(aa[[k for k in aa.index if k.startswith('autoattack:')]]) + 1e-12   # worst case over components
    with pytest.raises(ValueError, match='hierarchy'):
        evaluate_attacks(model, test.x[:4], test.y[:4], attacks=('hierarchical',), eps=(0.1,), hierarchy=None)


def test_on_disk_datasets_through_main(tmp_path, monkeypatch, capsys):
    "MNIST and CIFAR-10 in torchvision's on-disk formats (tiny files written here) -> train -> eval, in process."
    from test_data import write_mnist, write_cifar10      # the data layer's writers of the real formats
    from robust_nb.cli import main
    monkeypatch.delenv('ROBUST_NB_DATA', raising=False)
    write_mnist(tmp_path / 'data', 'MNIST', n_train=40, n_test=12)
    assert main(['train', '--data', 'mnist', '--data-root', str(tmp_path / 'data'), '--model', 'mnist_cnn', '--epochs', '1',
                 '--batch-size', '16', '--out', str(tmp_path / 'mnist'), '--no-progress']) == 0
    cfg = json.loads((tmp_path / 'mnist' / 'metrics.json').read_text())['config']
    assert (cfg['model'], cfg['img_size'], cfg['in_channels'], cfg['data_root']) == ('mnist_cnn', 28, 1, str(tmp_path / 'data'))
    assert main(['eval', str(tmp_path / 'mnist' / 'checkpoint.pt'), '--attack', 'fgsm', '--eps', '0.1', '--out', str(tmp_path / 'ev')]) == 0
    assert set(pd.read_csv(tmp_path / 'ev' / 'eval.csv').n) == {12}       # the data root came from the checkpoint
    write_cifar10(tmp_path / 'data', n=4)
    capsys.readouterr()
    assert main(['train', '--data', 'cifar10', '--data-root', str(tmp_path / 'data'), '--epochs', '1', '--out', str(tmp_path / 'c')]) == 2
    assert 'verify' in capsys.readouterr().err                           # fake files fail torchvision's MD5 check ...
    assert main(['train', '--data', 'cifar10', '--data-root', str(tmp_path / 'data'), '--no-verify', '--epochs', '1',
                 '--batch-size', '8', '--out', str(tmp_path / 'c'), '--no-progress']) == 0   # ... unless asked not to
    assert main(['eval', str(tmp_path / 'c' / 'checkpoint.pt'), '--attack', 'hierarchical', '--eps', '0.03', '--steps', '2',
                 '--out', str(tmp_path / 'cev')]) == 0
    assert 'meta_accuracy' in pd.read_csv(tmp_path / 'cev' / 'eval.csv')   # CIFAR-10 has Table 5.1's hierarchy
    assert json.loads((tmp_path / 'c' / 'metrics.json').read_text())['config']['augment'] == 'crop-flip'   # the CIFAR default


def test_caltech101_through_main(tmp_path, monkeypatch):
    "Caltech-101's photos of every size, resized by --img-size, flipped in training, through train and eval."
    from test_data import write_caltech101
    from robust_nb.cli import main
    monkeypatch.delenv('ROBUST_NB_DATA', raising=False)
    write_caltech101(tmp_path / 'data')
    assert main(['train', '--data', 'caltech101', '--data-root', str(tmp_path / 'data'), '--img-size', '16', '--model', 'mlp',
                 '--epochs', '1', '--batch-size', '4', '--out', str(tmp_path / 'cal'), '--no-progress']) == 0
    cfg = json.loads((tmp_path / 'cal' / 'metrics.json').read_text())['config']
    assert (cfg['img_size'], cfg['num_classes'], cfg['in_channels'], cfg['augment']) == (16, 101, 3, 'flip')
    assert main(['eval', str(tmp_path / 'cal' / 'checkpoint.pt'), '--attack', 'fgsm', '--eps', '0.03', '--out', str(tmp_path / 'ev')]) == 0
    assert set(pd.read_csv(tmp_path / 'ev' / 'eval.csv').n) == {2}       # the test split: one Faces and one ant photo
    assert main(['train', '--data', 'mnist', '--img-size', '16', '--data-root', str(tmp_path / 'data'), '--epochs', '1',
                 '--out', str(tmp_path / 'm')]) == 2                     # MNIST cannot be resized


# Each chapter table through the console script, for real, in the tiny preset (the chapters' pages compute the same
# tables through the same experiment classes). Rows and columns are compared with the thesis's copy of the table; the
# values of the tables in IN_PROCESS with what the chapter's own function returns, run again in this process.
REPRODUCE_KEYS = {'3.2': ['Method'], '5.3': ['Model', 'Method'], '6.3': ['Source', 'Witness']}
IN_PROCESS = ('6.3',)     # the cheapest of the three to run again: see test_reproduce_chapter_table


def _chapter_table(table:str) -> pd.DataFrame:
    "`table` as its chapter's function (`robust_nb.tables.table_function`) returns it here, with the console script's preset, device and threads."
    from robust_nb.tables import table_function
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        for k in ('ROBUST_NB_PRESET', 'ROBUST_NB_DEVICE'): mp.setenv(k, ENV[k])
        torch.set_num_threads(1)            # as OMP_NUM_THREADS=1 in the subprocess: the same sums in the same order
        try: return table_function(table)(ENV['ROBUST_NB_PRESET'])
        finally: torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
    """Every table of REPRODUCE_KEYS, each by its own console-script process, all started at once (one thread each);
    while they run, the tables of IN_PROCESS by their chapter's function here, written to CSV and read back as the command's are."""
    out = tmp_path_factory.mktemp('reproduce')
    procs = {t: subprocess.Popen([str(EXE), 'reproduce', t, '--out', str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=ENV) for t in REPRODUCE_KEYS}
    direct, done = {}, {}
    try:
        for t in IN_PROCESS:
            _chapter_table(t).to_csv(out / f'direct_{t}.csv', index=False)
            direct[t] = pd.read_csv(out / f'direct_{t}.csv', dtype=str, keep_default_na=False)
    finally:
        for t, p in procs.items():
            stdout, stderr = p.communicate(timeout=900)
            done[t] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out, done, direct


@pytest.mark.parametrize('table', sorted(REPRODUCE_KEYS))
def test_reproduce_chapter_table(table, reproduced):
    """`robust-nb reproduce TABLE` in tiny: the chapter's own numbers, in the thesis's shape, next to the thesis's.

    Values: the CSV the command writes for a table of IN_PROCESS must equal, cell by cell, what the chapter's function
    (`robust_nb.tables.table_function(TABLE)('tiny')`, what `reproduce` calls) returns when run again in this process with
    the subprocess's preset, device and thread count. Neither caller sets a seed: each table function seeds its own
    training and attacks, so a fresh process and this one (whatever earlier tests did to the global generators) agree.
    Running a table again costs what the command costs, so only the cheapest is. Measured (CPU s, one thread, in process,
    idle machine): 6.3 13.0, 5.3 18.4, 3.2 18.9; and all three, each run once in a fresh process and once through the
    command, were equal to the command's CSV. The rerun overlaps the three processes, so with 4 or more cores the fixture
    takes about as long as without it.
    Shape and labels: 3.2 and 5.3 have the thesis's rows in its order, 5.3 its columns exactly, 3.2 its attack columns
    in its order (tiny runs PGD20 with fewer restarts and no PGD200/PGD1000); 6.3, a reduced grid of other models, has
    the thesis's layout: per source an unaligned row ('n/a', the error in %) then one signed change per witness."""
    from robust_nb.cli import thesis_table
    tmp_path, r, direct = reproduced[0], reproduced[1][table], reproduced[2]
    assert r.returncode == 0, f"robust-nb reproduce {table} failed ({r.returncode}):\n{r.stderr[-3000:]}"
    ours = pd.read_csv(tmp_path / f'table_{table}.csv', dtype=str, keep_default_na=False)
    theirs = pd.read_csv(tmp_path / f'table_{table}_thesis.csv', dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(theirs, thesis_table(table))
    md = (tmp_path / f'table_{table}.md').read_text()
    assert "preset `tiny`" in md and "The thesis's numbers" in md, md[:300]
    assert f'table_{table}.md' in r.stdout
    if table in direct: pd.testing.assert_frame_equal(ours, direct[table])      # the chapter's numbers, exactly
    keys = REPRODUCE_KEYS[table]
    assert list(ours.columns[:len(keys)]) == list(theirs.columns[:len(keys)]) == keys, (list(ours.columns), list(theirs.columns))
    value = lambda v: float(v.split(' ± ')[0])         # a cell is 'value' or 'value ± standard error'
    if table == '6.3':    # per source: its error ('n/a', unsigned), then the change after aligning with each witness (signed)
        blocks = {name: b for name, b in ours.groupby('Source', sort=False)}
        thesis_blocks = {name: b for name, b in theirs.groupby('Source', sort=False)}
        assert {len(b) for b in blocks.values()} == {len(b) for b in thesis_blocks.values()}, (ours, theirs)   # 1 + 3 witnesses
        for b in [*blocks.values(), *thesis_blocks.values()]:
            assert b.Witness.iloc[0] == 'n/a' and not b.iloc[0, 2:].str.startswith(('+', '-')).any(), b
            assert b.iloc[1:, 2:].map(lambda v: v[:1] in '+-').all().all(), b
        assert all(b.iloc[0, 2:].map(value).between(0, 100).all() for b in blocks.values()), ours
    else:                 # the thesis's rows; its columns (5.3) or its attack columns, in its order (3.2); accuracies in percent
        assert ours[keys].values.tolist() == theirs[keys].values.tolist(), (ours[keys], theirs[keys])
        shared = [c for c in ours.columns[len(keys):] if c in set(theirs.columns)]
        assert shared == [c for c in theirs.columns if c in shared], (list(ours.columns), list(theirs.columns))   # the thesis's order
        if table == '5.3': assert list(ours.columns) == list(theirs.columns), (list(ours.columns), list(theirs.columns))
        else:             # 3.2: the attacks tiny runs, PGD20 with the preset's restarts (the thesis: PGD20-50)
            assert {'Clean', 'FGSM', 'PGD20', 'PGD100'} <= set(shared), shared
            extra = [c for c in ours.columns[len(keys):] if c not in shared]
            assert len(extra) == 1 and re.fullmatch(r'PGD20-\d+', extra[0]), list(ours.columns)
        assert ours[ours.columns[len(keys):]].map(value).stack().between(0, 100).all(), ours


# ---------------------------------------------------------------- issue 15's rough edges through the command line

def _cli_source():
    import inspect, robust_nb.cli
    return inspect.getsource(robust_nb.cli)


def test_eval_names_a_truncated_checkpoint_first(trained, tmp_path, capsys):
    "A cut checkpoint is named (with its size) before anything asks for --model and --data."
    from robust_nb.cli import main
    cut = tmp_path / 'cut.pt'
    cut.write_bytes((trained / 'checkpoint.pt').read_bytes()[:2000])
    for extra in ([], ['--model', 'mlp', '--data', 'digits']):
        code = main(['eval', str(cut), '--out', str(tmp_path / 'e'), *extra])
        line = _one_line_error(subprocess.CompletedProcess([], code, '', capsys.readouterr().err))
        assert f"checkpoint '{cut}' (2000 bytes) is not a readable torch checkpoint: truncated" in line, line
        assert 'carries no' not in line, line


def test_device_flag_is_blamed_not_the_variable(trained, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available(): pytest.skip('needs a machine without CUDA')
    if "name='--device'" not in _cli_source(): pytest.skip("07_cli does not pass get_device(a.device, name='--device') yet")
    from robust_nb.cli import main
    monkeypatch.setenv('ROBUST_NB_DEVICE', 'cpu')
    code = main(['eval', str(trained / 'checkpoint.pt'), '--device', 'cuda', '--out', str(tmp_path / 'e')])
    line = _one_line_error(subprocess.CompletedProcess([], code, '', capsys.readouterr().err))
    assert "--device got 'cuda' but CUDA is not available" in line and 'ROBUST_NB_DEVICE' not in line, line


def test_train_refuses_a_used_out_folder(trained, tmp_path, capsys):
    from robust_nb.cli import main, make_parser
    if '--overwrite' not in make_parser()._subparsers._group_actions[0].choices['train'].format_help():
        pytest.skip('07_cli has no --overwrite yet (prepare_out_dir is not wired)')
    out = tmp_path / 'run'; out.mkdir(); (out / 'eval').mkdir(); (out / 'eval' / 'eval.csv').write_text('stale')
    (out / 'checkpoint.pt').write_bytes((trained / 'checkpoint.pt').read_bytes())
    args = ['train', '--epochs', '1', '--out', str(out), '--no-progress']
    line = _one_line_error(subprocess.CompletedProcess([], main(args), '', capsys.readouterr().err))
    assert 'already holds checkpoint.pt, eval/' in line and '--resume' in line and '--overwrite' in line, line
    assert main([*args, '--overwrite']) == 0, capsys.readouterr().err
    assert not (out / 'eval').exists() and (out / 'checkpoint.pt').is_file() and (out / 'metrics.json').is_file()


def test_eval_reports_progress(trained, tmp_path, capsys):
    if 'progress=' not in _cli_source().split('def cmd_eval', 1)[1].split('\ndef ', 1)[0]:
        pytest.skip('07_cli does not pass progress to evaluate_attacks yet')
    from robust_nb.cli import main
    assert main(['eval', str(trained / 'checkpoint.pt'), '--attack', 'fgsm', 'pgd', '--eps', '0.05', '0.1', '--steps', '2',
                 '--n-examples', '64', '--batch-size', '32', '--out', str(tmp_path / 'e')]) == 0
    out = capsys.readouterr().out
    assert '\r' not in out, out
    for a in ('fgsm', 'pgd'):
        for e in ('0.05', '0.1'): assert f'{a} eps={e}: accuracy' in out, out


# ---------------------------------------------------------------- issue 13: Table 4.3's protocol in one call

def test_eval_whole_protocol_in_one_call(trained, tmp_path, capsys):
    "Gaussian noise on the whole test split, cumulative AutoAttack on the first N, both norms: one table, one row, one figure."
    from robust_nb.cli import main, load_model, load_dataset
    from robust_nb.attacks import autoattack_components, robust_accuracy
    comps = ('APGD-CE', 'APGD-T')
    assert main(['eval', str(trained / 'checkpoint.pt'), '--attack', 'pgd', 'autoattack', '--components', *comps, '--n-examples', '60',
                 '--gaussian', '0.01', '0.1', '--l2-eps', '0.5', '--linf-eps', '0.05', '0.1', '--steps', '3', '--batch-size', '32',
                 '--out', str(tmp_path)]) == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / 'eval.csv')
    js = json.loads((tmp_path / 'eval.json').read_text())
    assert len(js['results']) == len(df) and (tmp_path / 'eval.png').stat().st_size > 1000
    model, cfg = load_model(trained / 'checkpoint.pt', device='cpu')
    test = load_dataset('digits', train=False, img_size=cfg['img_size'], seed=cfg['seed'])
    # Gaussian rows: the whole split, noise drawn by hand (seed 1234), added, then clamped to [0, 1]
    g = df[df.attack == 'gaussian'].set_index('eps')
    assert list(g.index) == [0.0, 0.01, 0.1] and set(g.n) == {len(test)}
    assert g.accuracy[0.0] == pytest.approx(robust_accuracy(model, (test.x, test.y)), abs=1e-12)
    for v in (0.01, 0.1):
        noise = torch.randn(test.x.shape, generator=torch.Generator().manual_seed(1234)) * v ** 0.5
        with torch.no_grad(): hand = (model((test.x + noise).clamp(0, 1)).argmax(1) == test.y).double().mean().item()
        assert g.accuracy[v] == pytest.approx(hand, abs=1e-12), v
    # AutoAttack rows: the components in order, each on the points the ones before left correct, on the first 60
    for norm, e in (('l2', 0.5), ('linf', 0.05), ('linf', 0.1)):
        ours = df[(df.norm == norm) & (df.eps == e)].set_index('attack')
        aa = autoattack_components(model, test.x[:60], test.y[:60], eps=e, norm=norm, steps=3, components=comps, cumulative=True,
                                   batch_size=32, seed=0)
        assert [ours.accuracy[f'autoattack:{c}'] for c in comps] + [ours.accuracy['autoattack']] == \
               pytest.approx([aa['APGD-CE'], aa['APGD-T'], aa['worst case']], abs=1e-12), (norm, e)
        assert set(ours.n) == {60} and ours.accuracy['autoattack:APGD-T'] <= ours.accuracy['autoattack:APGD-CE']
        # the row in Table 4.3's layout: the worst case over the attacks at this radius, in %
        assert js['row'][f'{norm} eps={e:g}'] == pytest.approx(round(100 * ours.accuracy.min(), 2), abs=1e-9)
    assert list(js['row']) == ['Test', 'Gaussian sigma2=0.01', 'Gaussian sigma2=0.1', 'l2 eps=0.5', 'linf eps=0.05', 'linf eps=0.1']
    assert js['row']['Test'] == pytest.approx(round(100 * g.accuracy[0.0], 2), abs=1e-9)


def test_train_protocol_table_4_3(tmp_path, capsys):
    "`--protocol table-4.3` sets Table 4.3's training settings (those of Chapter 4's FashionMnistProtocol); explicit options win."
    from robust_nb.cli import main, make_parser
    from robust_nb.experiments.optimizers import FashionMnistProtocol
    P = FashionMnistProtocol()
    tr = make_parser('table-4.3')._subparsers._group_actions[0].choices['train']
    assert (tr.get_default('data'), tr.get_default('model'), tr.get_default('epochs'), tr.get_default('batch_size')) == \
           ('fashion_mnist', 'mnist_cnn', P.epochs, P.batch_size)
    for extra, opt, lr in (([], 'sgd', P.lr('sgd')), (['--opt', 'adam'], 'adam', P.lr('adam')), (['--lr', '0.2'], 'sgd', 0.2)):
        out = tmp_path / f'run{len(extra)}{opt}'
        assert main(['train', '--protocol', 'table-4.3', '--data', 'digits', '--model', 'mlp', '--epochs', '1', '--out', str(out),
                     *extra]) == 0, capsys.readouterr().err
        m = json.loads((out / 'metrics.json').read_text())
        c = m['config']
        assert (c['opt'], c['lr'], c['weight_decay'], c['sched'], c['batch_size']) == (opt, lr, 0.0, 'none', P.batch_size), c
        assert 'no validation split' in m['history_note'] and 'no validation split' in capsys.readouterr().out
    help = ' '.join(make_parser()._subparsers._group_actions[0].choices['train'].format_help().split())
    assert 'App. 4.A defaults' not in help and '(default: sgd_momentum)' in help and 'not the thesis' in help, help


def test_reproduce_every_table_from_committed_results(tmp_path, capsys):
    "`reproduce --preset small` without a TABLE: each committed table written as the chapter code gives it, each missing one named."
    import shutil
    from robust_nb.cli import main
    from robust_nb.tables import COMMITTED, thesis_table
    from robust_nb.book import committed_results
    from robust_nb.linear import signgd_table
    from robust_nb.experiments.optimizers import fashion_mnist_table
    res = tmp_path / 'results'; (res / '4c').mkdir(parents=True)
    t49 = signgd_table()                                   # what 04c_signgd's small run saves
    t49.to_csv(res / '4c' / 'table_4_9.csv', index=False)
    jobs = committed_results('small') / 'table_4_3'
    if any(jobs.glob('*_seed*.json')): shutil.copytree(jobs, res / 'table_4_3')
    assert main(['reproduce', '--preset', 'small', '--results', str(res), '--out', str(tmp_path / 'out')]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    missing = ['3.2', '5.3', '6.3'] + ([] if (res / 'table_4_3').is_dir() else ['4.3'])
    for t in missing: assert f"table {t} is MISSING in small: {res / COMMITTED[t][1]}" in out, out
    assert f"missing: {', '.join(sorted(missing))}" in out, out
    ours = pd.read_csv(tmp_path / 'out' / 'table_4.9.csv', dtype=str, keep_default_na=False)
    assert ours.values.tolist() == t49.fillna('').astype(str).values.tolist()
    theirs = thesis_table('4.9')
    assert ours[list(theirs.columns)].values.tolist() == theirs.values.tolist()          # the thesis's 27 rows, exactly
    if '4.3' not in missing:
        t43 = pd.read_csv(tmp_path / 'out' / 'table_4.3.csv')
        pd.testing.assert_frame_equal(t43, fashion_mnist_table(res / 'table_4_3').rename_axis(columns=None), check_dtype=False)
        assert [c for c in t43.columns if c != 'seeds'] == list(thesis_table('4.3', preset='small').columns)
        assert "the committed run: " in (tmp_path / 'out' / 'table_4.3.md').read_text()
