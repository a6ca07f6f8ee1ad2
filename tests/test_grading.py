"""Mutation tests of the coursework checks: for every exercise, the book's own solution (taken from its chapter) passes,
and at least three plausible wrong answers — each the solution with one mistake — are rejected, with a message that says
what was expected. Then one end-to-end `robust-nb exercises` + `robust-nb grade` run on a class of two fake students."""
import __future__, importlib, json, subprocess, sys
from pathlib import Path
import pytest, nbformat
from robust_nb.exercises import EXERCISES, exercises_in, run_check, make_student_copy, STUB

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
# exercises whose solution is the package's own exported code: run it in a copy of that module's namespace
MODULE_OF = {'fgm': 'robust_nb.attacks', 'foar': 'robust_nb.soar', 'signgd-416': 'robust_nb.linear',
             'har': 'robust_nb.hierarchy', 'align-kl': 'robust_nb.alignment'}
BASE = ('import math, copy\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn, Tensor\n'
        'from typing import Callable\nfrom robust_nb.core import eval_guard, project\n')

# key -> [(what the mistake is, text of the solution, the mistaken text)]
MUTANTS = {
    'fgm': [('the sign step of FGSM (wrong norm)', "steepest_ascent(g, norm)", "steepest_ascent(g, 'linf')"),
            ('ignores targeted', "loss_fn=loss_fn, targeted=targeted)", "loss_fn=loss_fn, targeted=False)"),
            ('forgets eval mode', "with eval_guard(model): _, g =", "_, g ="),
            ('no projection', "return project(x + eps * steepest_ascent(g, norm), x, eps, norm).detach()", "return (x + eps * steepest_ascent(g, norm)).detach()")],
    'trades-kl': [('KL the wrong way round', "(log_p.exp() * (log_p - log_q))", "(log_q.exp() * (log_q - log_p))"),
                  ('a batch mean instead of per example', ".sum(1)", ".sum(1).mean()"),
                  ('cross-entropy instead of KL', "(log_p - log_q)", "(- log_q)"),
                  ('logits instead of log-probabilities', "F.log_softmax(logits_clean, 1), F.log_softmax(logits_adv, 1)", "logits_clean, logits_adv")],
    'adv-train': [('forgets eval mode for the attack', "with eval_guard(model): x_adv = attack(model, x, y)", "x_adv = attack(model, x, y)"),
                  ('loss at the clean input', "model(x_adv.detach())", "model(x)"),
                  ('leaves the model in eval mode', "with eval_guard(model): x_adv = attack(model, x, y)", "model.eval(); x_adv = attack(model, x, y)"),
                  ('sums instead of averaging', "F.cross_entropy(model(x_adv.detach()), y)", "F.cross_entropy(model(x_adv.detach()), y, reduction='sum')"),
                  ('no graph for backward', "    return F.cross_entropy", "    with torch.no_grad(): return F.cross_entropy")],
    'foar': [('wrong dual norm', "p=1 if norm == 'linf' else 2", "p=2 if norm == 'linf' else 1"),
             ('the norm itself, not its dual', "p=1 if norm == 'linf' else 2", "p=float('inf') if norm == 'linf' else 2"),
             ('forgets eps', "return eps * g.flatten(1)", "return g.flatten(1)"),
             ('one norm for the whole batch', ".norm(p=1 if norm == 'linf' else 2, dim=1)", ".norm(p=1 if norm == 'linf' else 2)"),
             ('detached (no double backprop)', "return eps * g.flatten(1)", "return eps * g.detach().flatten(1)")],
    'adv-sq-loss': [('wrong dual norm', "q = 1 if norm == 'linf' else 2", "q = 2 if norm == 'linf' else 1"),
                    ('the norm, not its dual', "q = 1 if norm == 'linf' else 2", "q = float('inf') if norm == 'linf' else 2"),
                    ('wrong sign (no |r|)', "(x @ w - y).abs()", "(x @ w - y)"),
                    ('squares the terms separately', "((x @ w - y).abs() + eps * w.norm(p=q)) ** 2", "(x @ w - y) ** 2 + (eps * w.norm(p=q)) ** 2")],
    'hvp-fd': [('no normalisation of v', "return nv * (grad(x + h * v / nv) - grad(x)) / h", "return (grad(x + h * v) - grad(x)) / h"),
               ('one norm for the whole batch', "v.flatten(1).norm(dim=1).reshape(-1, *[1] * (v.dim() - 1))", "v.norm()"),
               ('wrong sign', "grad(x + h * v / nv) - grad(x)", "grad(x - h * v / nv) - grad(x)"),
               ('forgets to divide by h', "- grad(x)) / h", "- grad(x))")],
    'dct': [('alpha_0 = alpha_k (not orthonormal)', "torch.where(k == 0, math.sqrt(1 / n), math.sqrt(2 / n))", "math.sqrt(2 / n)"),
            ('transposed', "return a * torch.cos(math.pi * (j + 0.5) * k / n)", "return (a * torch.cos(math.pi * (j + 0.5) * k / n)).T"),
            ('j instead of j + 1/2', "(j + 0.5)", "j"),
            ('unnormalised', "return a * torch.cos", "return torch.cos")],
    'lipschitz': [('Frobenius norm', "ord=2", "ord='fro'"),
                  ('sum instead of product', "bound *=", "bound +="),
                  ('the l_inf operator norm', "ord=2", "ord=float('inf')"),
                  ('forgets the last layer', "for m in model:", "for m in list(model)[:-1]:")],
    'signgd-416': [('wrong sign in the drift', "sp / _S6 - 2 * sa / _S6 + sm / _S6", "sp / _S6 + 2 * sa / _S6 + sm / _S6"),
                   ('forgets eta', "return e - eta * u", "return e - u"),
                   ('sign[A] for all three', "np.sign(A + B), np.sign(A), np.sign(A - B)", "np.sign(A), np.sign(A), np.sign(A)"),
                   ('wrong DCT row', "(sp - sm) / _S2", "(sp - sm) / _S3")],
    'gd-closed-form': [('one step too many', "** t *", "** (t + 1) *"),
                       ('the continuous-time exponential', "(1 - lr * np.asarray(sigma2, float)) ** t", "np.exp(-lr * np.asarray(sigma2, float) * t)"),
                       ('factor 2 in the gradient', "(1 - lr *", "(1 - 2 * lr *"),
                       ('forgets sigma2', "(1 - lr * np.asarray(sigma2, float))", "(1 - lr)")],
    'har': [('columns not put back in class order', "return torch.cat(parts, 1)[:, self.inv_order]", "return torch.cat(parts, 1)"),
            ('probabilities instead of log-probabilities', "log_m[:, i:i + 1] + F.log_softmax(out, 1)", "log_m[:, i:i + 1] + F.softmax(out, 1)"),
            ('forgets log M(x)', "parts.append(log_m[:, i:i + 1] + F.log_softmax(out, 1))", "parts.append(F.log_softmax(out, 1))"),
            ('no check of the leaf widths', "if out.shape[1] != len(idx):", "if False:")],
    'hier-adv': [('forgets criterion 1 (clean correct)', "(pred_clean == y) & ", ""),
                 ('any wrong leaf counts', " & (meta_of[pred_adv] != meta_of[y])", ""),
                 ('compares a meta-class with a leaf', "meta_of[pred_adv] != meta_of[y]", "meta_of[pred_adv] != y")],
    'p-meta': [('divides by all examples', "(meta_of[pred[wrong]] == meta_of[y[wrong]]).float().mean()", "(meta_of[pred] == meta_of[y]).float().mean()"),
               ('the complement', "meta_of[pred[wrong]] == meta_of[y[wrong]]", "meta_of[pred[wrong]] != meta_of[y[wrong]]"),
               ('0 instead of nan', "return float('nan')", "return 0.0"),
               ('mistakes over examples', ".float().mean().item()", ".float().sum().item() / len(y)")],
    'align-kl': [('KL the wrong way round', "F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(w / T, 1)", "F.kl_div(F.log_softmax(w / T, 1), F.log_softmax(s / T, 1)"),
                 ('forgets T^2', "log_target=True) * T ** 2", "log_target=True)"),
                 ("reduction='mean' (divides by N x classes)", "reduction='batchmean'", "reduction='mean'"),
                 ('accepts T = 0', """if check_eps(T, 'T') == 0: raise ValueError(f"T got {T!r}; expected a temperature > 0")""", "T = T or 1.0")],
    'mi-step': [('l2 instead of l1 normalisation', "grad.abs().flatten(1).sum(1)", "grad.flatten(1).norm(dim=1)"),
                ('one norm for the whole batch', "l1 = grad.abs().flatten(1).sum(1).reshape(-1, *[1] * (grad.dim() - 1))", "l1 = grad.abs().sum()"),
                ('no projection onto the eps-ball', "project(x_adv + alpha * g.sign(), x, eps, 'linf')", "(x_adv + alpha * g.sign()).clamp(0, 1)"),
                ('decay on the new gradient', "decay * g + grad / l1", "g + decay * grad / l1")],
    'ti-kernel': [('not normalised', "return k / k.sum()", "return k"),
                  ('integer grid', "torch.linspace(-nsig, nsig, size, dtype=torch.float64)", "torch.arange(size, dtype=torch.float64) - size // 2"),
                  ('exp(-t^2) (sigma 1/sqrt 2)', "torch.exp(-t ** 2 / 2), torch.exp(-t ** 2 / 2)", "torch.exp(-t ** 2), torch.exp(-t ** 2)"),
                  ('normalised by the maximum', "return k / k.sum()", "return k / k.max()")],
}

def solution_source(key):
    ex = EXERCISES[key]
    where = exercises_in(NBS / ex.notebook)
    if key not in where: pytest.skip(f'{ex.notebook} has no cell defining {ex.name} yet')
    return ''.join(nbformat.read(NBS / ex.notebook, as_version=4).cells[where[key]].source)

def define(key, src):
    "The object named `EXERCISES[key].name` that cell source `src` defines (a fresh object, never the package's)."
    ns = dict(vars(importlib.import_module(MODULE_OF[key]))) if key in MODULE_OF else {}
    if key not in MODULE_OF: exec(BASE, ns)
    src = '\n'.join(l for l in src.split('\n') if not l.lstrip().startswith('#|'))
    exec(compile(src, f'<{key}>', 'exec', flags=__future__.annotations.compiler_flag, dont_inherit=True), ns)
    return ns[EXERCISES[key].name]

def test_every_exercise_has_three_mutants():
    assert len(EXERCISES) >= 15, f'{len(EXERCISES)} exercises: {sorted(EXERCISES)}'
    chapters = {e.section.split('.')[0] for e in EXERCISES.values()}
    assert chapters == {'2', '3', '4', '5', '6'}, f'chapters with exercises: {sorted(chapters)}'
    few = {k: len(MUTANTS.get(k, [])) for k in EXERCISES if len(MUTANTS.get(k, [])) < 3}
    assert not few, f'exercises with fewer than 3 mutants: {few}'

@pytest.mark.filterwarnings('ignore:reduction')
@pytest.mark.parametrize('key', sorted(EXERCISES))
def test_solution_passes_and_mutants_fail(key):
    src = solution_source(key)
    r = run_check(key, define(key, src))
    assert r['status'] == 'pass', f"the book's solution of {key} fails its check: {r['message']}"
    for what, old, new in MUTANTS[key]:
        assert old in src, f'mutant {what!r} of {key}: the solution no longer contains {old!r}'
        r = run_check(key, define(key, src.replace(old, new)))
        assert r['status'] == 'fail', f"mutant {what!r} of {key} is not rejected: {r}"
        assert 'expected' in r['message'] and 'got' in r['message'], f"mutant {what!r} of {key}: the message does not say expected/got: {r['message']}"

@pytest.mark.parametrize('key', sorted(EXERCISES))
def test_reference_earns_no_credit(key):
    "The package's own function (the object itself, as `from robust_nb... import` would bind it) never passes."
    if key not in MODULE_OF: pytest.skip("the package has no function with this exercise's signature")
    ref = getattr(importlib.import_module(MODULE_OF[key]), EXERCISES[key].name)   # for HAR: the package's class
    assert run_check(key, ref)['status'] == 'reference'

CLASS_NBS = ['02b_defenses.ipynb', '04c_signgd.ipynb']      # the two quickest chapters with exercises

def test_grade_end_to_end(tmp_path):
    "`robust-nb exercises`, then a right student and one with mutants (and a copied reference); `robust-nb grade` scores them."
    cli = [sys.executable, '-m', 'robust_nb.cli']
    book = tmp_path / 'book'; book.mkdir()
    for n in CLASS_NBS: (book / n).write_bytes((NBS / n).read_bytes())
    p = subprocess.run(cli + ['exercises', str(tmp_path / 'student'), '--nbs', str(book)], capture_output=True, text=True, cwd=NBS)
    assert p.returncode == 0, p.stderr
    keys = [k for k, e in EXERCISES.items() if e.notebook in CLASS_NBS]
    for who in ('ann', 'bob'):
        (tmp_path / 'class' / who).mkdir(parents=True)
        for n in CLASS_NBS:
            nb = nbformat.read(tmp_path / 'student' / n, as_version=4)
            for k, i in exercises_in(tmp_path / 'student' / n).items():
                src = solution_source(k)
                if who == 'bob':
                    what, old, new = MUTANTS[k][0]
                    src = src.replace(old, new) if k != 'gd-closed-form' else \
                          'from robust_nb.linear import gd_closed_form, LinearFreqTask\n' + src.replace(
                          "    # BEGIN SOLUTION", "    return gd_closed_form(LinearFreqTask(sigma2, np.zeros_like(sigma2)), e0, lr=lr, t=t)\n    # BEGIN SOLUTION")
                nb.cells[i].source = src
            nbformat.write(nb, tmp_path / 'class' / who / n)
    p = subprocess.run(cli + ['grade', str(tmp_path / 'class'), '--out', str(tmp_path / 'grades'), '--timeout', '300', '--notebooks', *CLASS_NBS],
                       capture_output=True, text=True, cwd=NBS)
    assert p.returncode == 0, p.stderr[-2000:]
    book = json.loads((tmp_path / 'grades.json').read_text())
    assert book['ann']['total'] == book['ann']['max'] == len(keys), (p.stdout, book['ann'])
    assert book['bob']['total'] == 0, book['bob']
    assert book['bob']['exercises']['gd-closed-form']['status'] == 'reference', book['bob']['exercises']['gd-closed-form']
    assert 'ann' in p.stdout and 'total' in p.stdout, p.stdout
    assert (tmp_path / 'grades.csv').read_text().count('\n') == 2 * len(keys) + 1
