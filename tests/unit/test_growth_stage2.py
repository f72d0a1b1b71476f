"""Stage 2 of the two-stage growth fit against exact answers (no service, no database).

The conditional posterior of one student's (intercept, slope) given one population
draw is computed here independently, by brute force on a 2-D grid, and compared with
the vectorised stage-2 draws. Tolerances are Monte Carlo standard errors (4,000 draws:
SE of a posterior mean = posterior sd / sqrt(ESS)), and every check is paired with a
deliberately wrong input (another prior) that must fail it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from learning_analytics.growth_stage2 import Population, Students, conditional_posteriors, predictive_goal_probability
from learning_analytics.pipelines.growth import p_null_reasons, stage1_sample

N_DRAWS = 4000


def population(family, mu_a, mu_b, sd_a, sd_b, cor, sigma=np.nan, n_draws=N_DRAWS) -> Population:
    """The same population parameters repeated ``n_draws`` times."""

    def repeat(value: float) -> np.ndarray:
        return np.full(n_draws, value)

    return Population(family, repeat(mu_a), repeat(mu_b), repeat(sd_a), repeat(sd_b), repeat(cor), repeat(sigma), 0.004)


def one_student(weeks: np.ndarray, n_attempts: np.ndarray, n_correct: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": 7,
            "week": weeks,
            "accuracy": n_correct / n_attempts,
            "n_attempts": n_attempts,
            "n_correct": n_correct,
            "goal": 0.7,
            "target_week": 11,
            "usual_attempts": 40,
        }
    )


def grid_posterior(log_density, a_range, b_range, size=401):
    """Posterior means of (a, b) and the predictive P by quadrature on a grid."""
    a, b = np.meshgrid(np.linspace(*a_range, size), np.linspace(*b_range, size), indexing="ij")
    log_p = log_density(a, b)
    weights = np.exp(log_p - log_p.max())
    weights /= weights.sum()
    return a, b, weights


def log_prior(a, b, pop):
    cov = np.array([[pop.sd_intercept[0] ** 2, pop.cor[0] * pop.sd_intercept[0] * pop.sd_slope[0]],
                    [pop.cor[0] * pop.sd_intercept[0] * pop.sd_slope[0], pop.sd_slope[0] ** 2]])  # fmt: skip
    return stats.multivariate_normal(mean=[pop.intercept[0], pop.slope[0]], cov=cov).logpdf(np.stack([a, b], -1))


@pytest.fixture
def student() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    weeks = np.array([0, 1, 2, 4, 5, 7, 8, 10])
    attempts = rng.integers(20, 60, size=len(weeks))
    correct = rng.binomial(attempts, special.expit(-0.2 + 0.08 * weeks))
    return one_student(weeks, attempts, correct)


def test_binomial_laplace_with_importance_weights_matches_quadrature(student: pd.DataFrame) -> None:
    pop = population("binomial", 0.0, 0.05, 0.6, 0.08, -0.2)
    x, n, k = (student[c].to_numpy(float) for c in ("week", "n_attempts", "n_correct"))

    def log_post(a, b, pop=pop):
        eta = a[..., None] + b[..., None] * x
        return (k * eta - n * np.logaddexp(0, eta)).sum(-1) + log_prior(a, b, pop)

    a, b, w = grid_posterior(log_post, (-1.5, 1.5), (-0.2, 0.35))
    exact_slope = (w * b).sum()
    exact_sd = np.sqrt((w * (b - exact_slope) ** 2).sum())
    expected = special.expit(a + 11 * b)
    exact_p = (w * stats.binom.sf(np.ceil(0.7 * 40 - 1e-9) - 1, 40, expected)).sum()

    result = conditional_posteriors(student, pop, (0, 11), seed=3).iloc[0]
    tolerance = 4 * exact_sd / np.sqrt(N_DRAWS)
    students = Students.from_frame(student)
    draws_mean_b = _weighted_logit_slope(students, pop)
    assert abs(draws_mean_b - exact_slope) < tolerance, (draws_mean_b, exact_slope)
    assert abs(result["p_goal"] - exact_p) < 0.01, (result["p_goal"], exact_p)

    # Negative control: the same check against the posterior under another prior
    # (population slope 0.15 instead of 0.05) must fail.
    wrong = population("binomial", 0.0, 0.15, 0.6, 0.08, -0.2)
    _, bw, ww = grid_posterior(lambda a, b: log_post(a, b, wrong), (-1.5, 1.5), (-0.2, 0.35))
    assert abs(draws_mean_b - (ww * bw).sum()) > tolerance


def _weighted_logit_slope(students: Students, pop: Population) -> float:
    from learning_analytics.growth_stage2 import binomial_draws

    _, b, weights = binomial_draws(students, pop, np.random.default_rng(11))
    return float((weights * b).sum())


def test_binomial_mode_found_where_plain_newton_from_the_population_mean_overshoots() -> None:
    """A student and a population draw seen in a real run (issue 11 validation test):
    eight plain Newton steps from the population mean went to a = 231 (expected accuracy
    1, slope 0, P = 1) while the full brms fit gave P = 0.02. The fallback must find the
    mode (gradient ~0), and the mode must sit where the data say (accuracy ~0.5)."""
    from learning_analytics import growth_stage2 as stage2

    student = one_student(
        np.arange(8), np.array([149, 28, 65, 90, 50, 116, 78, 117]), np.array([60, 16, 37, 45, 32, 62, 39, 67])
    )
    pop = population("binomial", 1.30820243608606, 0.203328376137442, 0.704998428528073, 0.102357539979724,
                     0.52077860782209, n_draws=1)  # fmt: skip
    students = Students.from_frame(student)
    terms = stage2._BinomialTerms(
        students.week[:, None, :], students.n_correct[:, None, :], students.n_attempts[:, None, :],
        students.mask[:, None, :], pop.intercept, pop.slope, *pop.prior_precision(),
    )  # fmt: skip
    # Negative control: plain Newton from the population mean does not converge here.
    a, b = pop.intercept[None, :].copy(), pop.slope[None, :].copy()
    for _ in range(stage2.NEWTON_STEPS):
        step_a, step_b, _ = stage2._newton_step(terms, a, b)
        a, b = a + step_a, b + step_b
    assert not stage2._newton_step(terms, a, b)[2][0, 0] < stage2.NEWTON_TOLERANCE

    a, b, weights = stage2.binomial_draws(students, pop, np.random.default_rng(1))
    result = conditional_posteriors(student, pop, (0, 7), seed=1).iloc[0]
    assert abs(special.expit(a[0, 0] + 3.5 * b[0, 0]) - 0.5) < 0.15
    assert 0 < result["slope"] < 0.05 and result["p_goal"] < 0.5


def test_gaussian_closed_form_matches_quadrature(student: pd.DataFrame) -> None:
    pop = population("gaussian", 0.45, 0.02, 0.1, 0.015, 0.3, sigma=0.06)
    x, y = student["week"].to_numpy(float), student["accuracy"].to_numpy(float)

    def log_post(a, b, pop=pop):
        return stats.norm.logpdf(y, a[..., None] + b[..., None] * x, pop.sigma[0]).sum(-1) + log_prior(a, b, pop)

    a, b, w = grid_posterior(log_post, (0.1, 0.8), (-0.05, 0.1))
    exact_slope = (w * b).sum()
    exact_sd = np.sqrt((w * (b - exact_slope) ** 2).sum())
    result = conditional_posteriors(student, pop, (0, 11), seed=3).iloc[0]
    tolerance = 4 * exact_sd / np.sqrt(N_DRAWS)
    assert abs(result["slope"] - exact_slope) < tolerance
    inside = (w * ((b >= result["slope_lower"]) & (b <= result["slope_upper"]))).sum()
    assert inside == pytest.approx(0.95, abs=0.015)

    wrong = population("gaussian", 0.45, 0.06, 0.1, 0.015, 0.3, sigma=0.06)
    _, bw, ww = grid_posterior(lambda a, b: log_post(a, b, wrong), (0.1, 0.8), (-0.05, 0.1))
    assert abs(result["slope"] - (ww * bw).sum()) > tolerance


def test_goal_probability_is_about_an_observed_bounded_accuracy() -> None:
    binomial = population("binomial", 0, 0, 1, 1, 0, n_draws=2)
    expected = np.array([[0.5, 0.9]])
    p = predictive_goal_probability(expected, np.array([0.7]), np.array([10.0]), binomial)
    # P(K >= 7) for K ~ Binomial(10, p): observation noise included, not P(p >= 0.7).
    assert p[0] == pytest.approx([stats.binom.sf(6, 10, 0.5), stats.binom.sf(6, 10, 0.9)])
    gaussian = population("gaussian", 0, 0, 1, 1, 0, sigma=0.08, n_draws=2)
    # The expected accuracy is clamped: a trend at 1.4 predicts like one at 1.
    clamped = predictive_goal_probability(np.array([[1.0, 0.6]]), np.array([0.9]), np.array([40.0]), gaussian)
    assert 0 < clamped[0, 1] < 0.5 < clamped[0, 0] < 1
    fewer_attempts = predictive_goal_probability(np.array([[1.0, 0.6]]), np.array([0.9]), np.array([5.0]), gaussian)
    # Fewer attempts, noisier observed accuracy: a student below the goal has more luck.
    assert fewer_attempts[0, 1] > clamped[0, 1]


def test_stage1_sample_is_stratified_and_everyone_when_too_large() -> None:
    rng = np.random.default_rng(1)
    rows = [
        {"user_id": user, "week": week, "accuracy": accuracy}
        for user, weeks, accuracy in zip(range(1000), rng.integers(2, 13, 1000), rng.random(1000), strict=True)
        for week in range(weeks)
    ]
    observations = pd.DataFrame(rows)
    sample = stage1_sample(observations, 100, seed=3)
    assert sample["user_id"].nunique() == 100
    weeks_all = observations.groupby("user_id").size()
    weeks_sample = sample.groupby("user_id").size()
    # Proportional: the sample's distribution of weeks observed matches the population's
    # to within one student per decile (a simple random sample is off by ~3).
    deciles = np.quantile(weeks_all, np.linspace(0.1, 0.9, 9))
    assert np.abs(np.quantile(weeks_sample, np.linspace(0.1, 0.9, 9)) - deciles).max() <= 1
    assert stage1_sample(observations, 1000, seed=3) is observations


def test_no_p_for_inactive_students_weeks_without_attempts_or_failed_diagnostics() -> None:
    users = pd.DataFrame(
        {
            "last_attempt_date": ["2026-11-22", "2026-11-08", "2026-11-13", "2026-11-09"],
            "last_week_attempts": [12, 0, 0, 0],
        }
    )
    end = pd.Timestamp("2026-11-23").date()
    assert p_null_reasons(users, end, converged=True).tolist() == [
        None, "inactive_14_days", "no_attempts_in_week", "no_attempts_in_week",
    ]  # fmt: skip
    assert set(p_null_reasons(users, end, converged=False)) == {"diagnostics_failed"}
