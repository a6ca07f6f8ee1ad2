"Property tests for robust_nb.linear (Sec. 4.4 / App. 4.D): partitions, risks, dynamics."
import math
import numpy as np, pytest
from hypothesis import given, settings, assume, strategies as st
from robust_nb.linear import (LinearFreqTask, simulate, optimizer_step, gd_closed_form, signgd_step_416, signgd_table,
                              partition_R, partition_P, risk_ratio_bounds, risk_ratio_interval, R_LABELS, P_LABELS, _min_shift,
                              _P_masks)
from robust_nb.appendix_4d import SignGDTrials, STATEMENTS, verify_appendix_4d

unit = st.floats(-1, 1, allow_nan=False)
ratio = st.floats(0.02, 3.0)
scale = st.floats(1e-3, 10.0)

def _generic(A, B, s0, s1, eta, tol=1e-6):
    "Away from the probability-zero boundaries of the partitions (R32's and R33's lattice boundaries included)."
    u, a, b = s0 * eta, abs(A), abs(B)
    even, odd = _min_shift(B, s1 * eta, 0), _min_shift(B, s1 * eta, 1)
    return min(abs(a - b), a, b, abs(a - u / 3), abs(a - 2 * u / 3), abs(a - u), abs(b - u),
               abs(b - 3 * s1 / s0 * a + (3 * s1 - s0) * eta), abs(a - even), abs(a + odd - u / 3),
               abs(abs(A + u) - b), abs(abs(A - u) - b)) > tol * u

@settings(max_examples=300, deadline=None)
@given(unit, st.floats(-3, 3), ratio, scale, scale)
def test_R_defined_exactly_where_P1(a, b, r, s0, eta):
    "partition_R covers {|A| < s0 eta} = P1 and nothing else: the two partitions agree."
    u = s0 * eta; A, B, s1 = a * 1.5 * u, b * u, r * s0
    assume(_generic(A, B, s0, s1, eta) and abs(r - 1/3) > 1e-6)
    assert (partition_R(A, B, s0, s1, eta) is not None) == (partition_P(A, B, s0, s1, eta) == 'P1')

@settings(max_examples=300, deadline=None)
@given(unit, st.floats(-3, 3), ratio, scale, scale)
def test_R_scale_invariant_and_overlaps_only_below_one_third(a, b, r, s0, eta):
    "Labels depend on (A, B)/(s0 eta) and s1/s0 only; overlaps happen only for s1/s0 < 1/3."
    u = s0 * eta; A, B = a * u, b * u
    assume(_generic(A, B, s0, r * s0, eta))
    all_ = partition_R(A, B, s0, r * s0, eta, all_matches=True)
    assert all_ == partition_R(a, b, 1.0, r, 1.0, all_matches=True)
    assert partition_R(A, B, s0, r * s0, eta) == (all_[0] if all_ else None)
    if r > 1/3: assert len(all_) <= 1

@settings(max_examples=300, deadline=None)
@given(st.floats(-40, 40), st.floats(-40, 40), ratio, scale, scale)
def test_P_regimes(a, b, r, s0, eta):
    "P3/P4 only when s1/s0 > 1/3, P5/P6 only below; every generic point has a label."
    u = s0 * eta; A, B, s1 = a * u, b * u, r * s0
    assume(_generic(A, B, s0, s1, eta) and abs(r - 1/3) > 1e-6)
    lab = partition_P(A, B, s0, s1, eta)
    assert lab is not None
    if lab in ('P3', 'P4'): assert r > 1/3
    if lab in ('P5', 'P6'): assert r < 1/3
    if lab == 'P5': assert abs(A) < abs(B)
    if lab == 'P6': assert abs(A) > abs(B)

@settings(max_examples=300, deadline=None)
@given(st.floats(0.34, 0.999), st.booleans(), st.floats(-3, 3), ratio)
def test_transient_reaches_stationary_within_3_steps(a, neg, b, r):
    "Prop. 4.D.4, transient part (R11, R12, R21, R23 = R1 and R2 without R22), with the (4.16) update."
    a = -a if neg else a
    assume(_generic(a, b, 1.0, r, 1.0) and partition_R(a, b, 1.0, r, 1.0) != 'R22')
    e = np.array([math.sqrt(3) * a, math.sqrt(2) * b / r, 0.0])
    for step in range(1, 4):
        e = signgd_step_416(e, 1.0, r, 1.0)
        if partition_R(e[0] / math.sqrt(3), r * e[1] / math.sqrt(2), 1.0, r, 1.0) in ('R22', 'R31', 'R32', 'R33', 'R34'): return
    raise AssertionError(f"no stationary subpartition within 3 steps from ({a}, {b}, r={r})")

@settings(max_examples=60, deadline=None)
@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.floats(1e-3, 0.5), st.lists(st.floats(-10, 10), min_size=6, max_size=6))
def test_signgd_416_matches_spatial_update(s0, s1, eta, v):
    "(4.16) equals one spatial-domain signGD step (4.14) of `simulate`."
    task = LinearFreqTask([s0, s1, 0], [v[0], v[1], 0]); w0 = np.array(v[3:])
    e = w0 - task.w_star
    A, B = s0 * e[0] / math.sqrt(3), s1 * e[1] / math.sqrt(2)
    assume(min(abs(abs(A) - abs(B)), abs(A), abs(B)) > 1e-9 * (1 + abs(A) + abs(B)))     # ties: rounding decides the sign
    direct = simulate(task, w0, lr=eta, steps=1, opt='signgd')[1] - task.w_star
    np.testing.assert_allclose(signgd_step_416(e, s0, s1, eta), direct, atol=1e-10)

@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1.0), min_size=3, max_size=3), st.floats(1e-3, 1.5), st.integers(1, 300))
def test_gd_closed_form(sig, lr, steps):
    "(4.12) against simulated population GD; irrelevant weights never move."
    sig[2] = 0.0
    task = LinearFreqTask(sig, [1.0, -2.0, 0.0]); w0 = np.array([0.3, 0.1, -0.7])
    W = simulate(task, w0, lr=lr, steps=steps, opt='gd')
    np.testing.assert_allclose(W, gd_closed_form(task, w0, lr=lr, t=np.arange(steps + 1)), rtol=1e-8, atol=1e-8)
    # exact up to rounding: each step's DCT round trip may move the weight by an ulp, so allow steps ulps
    np.testing.assert_allclose(W[:, 2], w0[2], rtol=0, atol=(steps + 1) * np.finfo(float).eps * abs(w0[2]) * 4)

def test_risks_vs_monte_carlo():
    "Standard risk and (4.9) against Monte Carlo with the inner maximiser (4.8)."
    task = LinearFreqTask([0.5, 0.2, 0.0, 0.1], [1.0, -2.0, 0.0, 0.5]); w = np.array([1.5, -1.0, 0.7, 0.2]); eps = 0.3
    rng = np.random.default_rng(0); Xt = rng.standard_normal((400_000, 4)) * np.sqrt(task.sigma2)
    z = Xt @ (w - task.w_star)
    loss = 0.5 * (z + eps * np.sign(z) * np.linalg.norm(w))**2
    assert abs(loss.mean() - task.adv_risk(w, eps)) < 0.01 * task.adv_risk(w, eps)
    assert abs((0.5 * z**2).mean() - task.std_risk(w)) < 0.01 * task.std_risk(w)
    X, y = task.sample(1000, generator=1)
    np.testing.assert_allclose(X @ task.to_spatial(task.w_star), y, atol=1e-10)

def test_minibatch_samplers_agree():
    """Wishart-drawn minibatch moments vs drawing the points: the same law of minibatch GD's iterate. The mean alone
    would not test the sampler (independent batches give full-batch GD in expectation for any unbiased moments);
    the spread across seeds depends on the moments' second-order law, which is what the Wishart draw must get right."""
    task = LinearFreqTask([0.5, 0.2, 0.0], [1.0, 2.0, 0.0])
    run = lambda sampler, batch=20: np.array([simulate(task, [0, 0, 0.3], lr=0.2, steps=20, batch=batch, seed=s, sampler=sampler)[-1]
                                              for s in range(400)])
    w, p = run('wishart'), run('points')
    full = simulate(task, [0, 0, 0.3], lr=0.2, steps=20)[-1]
    for r in (w, p):
        np.testing.assert_allclose(r.mean(0), full, atol=0.02)       # standard error of the mean about 0.003
        np.testing.assert_allclose(r[:, 2], 0.3, atol=1e-9)          # a zero-variance frequency never moves
    np.testing.assert_allclose(w.std(0)[:2], p.std(0)[:2], rtol=0.2)  # spreads about 0.04 and 0.055, standard error 3.5 %
    assert np.all(run('wishart', batch=80).std(0)[:2] < 0.7 * w.std(0)[:2])   # the spread does see the batch size (1/2 here)

def test_table_and_bounds():
    t = signgd_table()
    assert len(t) == 27 and t.valid.sum() == 13
    lo, hi = risk_ratio_bounds(LinearFreqTask([0.01, 0.0025, 0], [5, 10, 0]), [0.01, -0.01, 0.02])
    assert (round(lo, 4), round(hi, 4)) == (1.0375, 1.15)

def test_verify_appendix_4d_small():
    df = verify_appendix_4d(n_trials=30, seed=1)
    assert list(df.columns[:4]) == ['statement', 'holds', 'trials', 'counterexample']
    holds = dict(zip(df.statement, df.holds))
    assert holds['Lemma 4.D.2: |x(t)| <= Delta_max eventually and forever']
    assert holds['Prop 4.D.4 transient: from R_t, R_s is reached within 3 iterations']
    assert not holds["Prop 4.D.4 stationary: |A(t')| <= 2 s0 eta/3"]
    assert all((c is None) == h for c, h in zip(df.counterexample, df.holds))

def test_verify_appendix_4d_old_import_path():
    "The harness moved to robust_nb.appendix_4d; the old import from robust_nb.linear still works."
    from robust_nb.linear import verify_appendix_4d as old
    assert old is verify_appendix_4d
    import robust_nb.linear
    with pytest.raises(AttributeError, match='no_such_name'): robust_nb.linear.no_such_name

def test_statements_table():
    "One record per statement, unique claims, every start partition a real label."
    assert len(STATEMENTS) == 35 and len({s.claim for s in STATEMENTS}) == 35
    bad = {l for s in STATEMENTS for l in s.start_in} - set(R_LABELS) - set(P_LABELS)
    assert not bad, f"unknown partition labels {bad}"

@settings(max_examples=100, deadline=None)
@given(st.floats(-40, 40), st.floats(-40, 40), ratio, scale, scale)
def test_P_masks_disjoint(a, b, r, s0, eta):
    "The P1..P6 masks never overlap, so a start's first-match label (what starts_in uses) says which masks hold."
    A, B = a * s0 * eta, b * s0 * eta
    M = _P_masks(np.array(A), np.array(B), s0, r * s0, eta)
    held = [k for k in P_LABELS if M[k]]
    assert len(held) <= 1, f"{held} all hold at A={A}, B={B}, s1/s0={r}"
    assert partition_P(A, B, s0, r * s0, eta) == (held[0] if held else None)

@settings(max_examples=40, deadline=None)
@given(st.floats(-3, 3), st.floats(-3, 3), ratio, scale, scale, st.floats(-5, 5))
def test_signgd_trials_scale_free(a, b, r, s0, eta, e2):
    "Prop.: the dynamics of (A, B)/(s0 eta) depend only on s1/s0; `normalised` and `run` agree with that."
    t = SignGDTrials(*(np.array([x]) for x in (s0, r * s0, eta, a * s0 * eta, b * s0 * eta, e2 * eta)))
    assume(t.is_generic()[0])                     # a tie: rounding, not the dynamics, decides the sign
    n = t.normalised()
    np.testing.assert_allclose([n.A0[0], n.B0[0], n.sigma1_sq[0], n.e2_0[0]], [a, b, r, e2], rtol=1e-9, atol=1e-12)
    P, Q = t.run(cap=200), n.run(cap=200)
    np.testing.assert_allclose(P['A'] / (s0 * eta), Q['A'], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(P['e2'] / eta, Q['e2'], rtol=1e-6, atol=1e-9)

def test_risk_ratio_interval_matches_bounds():
    "The vectorised interval and the one-task `risk_ratio_bounds` agree (Fig. 4.7's task)."
    lo, hi = risk_ratio_interval(np.array([5.]), np.array([10.]), 0.01, 0.0025, np.array([False]))
    assert (lo[0], hi[0]) == risk_ratio_bounds(LinearFreqTask([0.01, 0.0025, 0], [5, 10, 0]), [0.01, -0.01, 0.02])

@pytest.mark.parametrize('call, word', [
    (lambda: LinearFreqTask([1, -1, 0], [1, 1, 0]), 'sigma2'),
    (lambda: LinearFreqTask([1, 1, 0], [1, np.nan, 0]), 'w_star'),
    (lambda: simulate(LinearFreqTask([1, 1, 0], [1, 1, 0]), [0, 0, 0], lr=0.1, steps=5, opt='sgd'), 'opt'),
    (lambda: optimizer_step('sgd', np.zeros(3), np.ones(3), 0, 0, 0, lr=0.1), 'opt'),
    (lambda: simulate(LinearFreqTask([1, 1, 0], [1, 1, 0]), [0, 0], lr=0.1, steps=5), 'w0'),
    (lambda: simulate(LinearFreqTask([1, 1, 0], [1, 1, 0]), [0, 0, 0], lr=-0.1, steps=5), 'lr'),
    (lambda: partition_R(0.1, 0.1, 1.0, 0.0, 1.0), 's1'),
    (lambda: partition_P(0.1, 0.1, 1.0, 1.0, -1.0), 'eta'),
    (lambda: risk_ratio_bounds(LinearFreqTask([1, 1, 0], [1, 1, 0]), [0, 0, 0]), '1/3'),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word): call()


# ---------------------------------------------------------------- Chapter 4's experiment (Section 4.3): its old import path
def test_optimizers_old_names_come_from_the_experiment():
    "`table_4_3` and the Fashion-MNIST jobs moved to robust_nb.experiments.optimizers; `from robust_nb.optimizers import ...` (tools/table_4_3_jobs.py, older checkouts) still gets the same objects, and importing the library imports no experiment."
    import subprocess, sys
    code = ("import sys, robust_nb.optimizers as api\n"
            "assert 'robust_nb.experiments.optimizers' not in sys.modules, 'the library imported its experiment'\n"
            "import robust_nb.experiments.optimizers as ex\n"
            "moved = [getattr(api, n) is getattr(ex, n) for n in api._MOVED]\n"
            "assert all(moved) and len(moved) == 9, (api._MOVED, moved)\n"
            "from robust_nb.optimizers import run_missing_jobs, FashionMnistProtocol, table_4_3\n"
            "assert (run_missing_jobs, FashionMnistProtocol, table_4_3) == (ex.run_missing_jobs, ex.FashionMnistProtocol, ex.table_4_3)\n"
            "try: api.no_such_name\n"
            "except AttributeError as e: assert 'no_such_name' in str(e), e\n"
            "else: raise AssertionError('robust_nb.optimizers.no_such_name did not raise AttributeError')\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
