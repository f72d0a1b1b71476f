"""Stage 2 of the two-stage growth fit: every student's posterior given the population.

Stage 1 (brms on a stratified sample of students) gives posterior draws of the
population parameters of ``accuracy ~ 1 + week + (1 + week | user_id)``: the mean
intercept and slope ``mu``, their group sds and correlation (``Sigma``) and, for the
gaussian family, the residual sd ``sigma``. Given one population draw, a student's
``theta = (a, b)`` has the conditional posterior ``p(theta | y_i, mu, Sigma, sigma)``,
which depends on that student's data only. Drawing ``theta`` from it for every
population draw gives draws from the student's marginal posterior (the student's
own weight in the population posterior is negligible once the sample has hundreds of
students). Both families are vectorised over students x draws:

* gaussian: conjugate. Prior precision ``Sigma^-1``, data precision
  ``X'X / sigma^2``; one exact draw per population draw (equal weights).
* binomial (logit link): the conditional posterior is not closed form. Newton's
  method finds its mode and Hessian ``H`` (Laplace approximation), ``theta`` is
  drawn from ``N(mode, H^-1)`` and weighted by the importance ratio
  ``exp(l(theta) - l(mode) + (theta - mode)' H (theta - mode) / 2)`` (exact
  log posterior minus its quadratic approximation); the Laplace normalising
  constants cancel in that ratio. Summaries are weighted over the draws.

Goal probabilities use the same posterior predictive formulas as the service's
``/growth/predict`` (r-services/r-brms-plumber/R/growth_predict.R), computed
exactly per draw and averaged. Memory is bounded by ``block_size`` students at a time
(arrays of block_size x draws x weeks), never all students x all draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

#: Newton steps for the binomial mode; the logistic log posterior is concave and the
#: start (the population mean) is close, so 8 steps reach machine precision.
NEWTON_STEPS = 8
#: A (student, draw) whose log-posterior gradient is larger after NEWTON_STEPS did not
#: converge (the gradient is in counts of correct answers: 1e-6 is far below noise).
NEWTON_TOLERANCE = 1e-6
#: The damped fallback: steps and halvings per step (2^-40: no move at all).
DAMPED_NEWTON_STEPS = 50
MAX_HALVINGS = 40
#: Students per vectorised block: arrays are block x draws x weeks doubles
#: (500 x 400 x 12 x 8 bytes = 19 MB each).
BLOCK_STUDENTS = 500


@dataclass(frozen=True)
class Population:
    """Posterior draws of the population parameters (link scale), one entry per draw."""

    family: str
    intercept: np.ndarray
    slope: np.ndarray
    sd_intercept: np.ndarray
    sd_slope: np.ndarray
    cor: np.ndarray
    sigma: np.ndarray
    #: Mean binomial variance of the stage-1 weeks (gaussian; see growth_predict.R).
    binomial_variance_mean: float | None

    @classmethod
    def from_fit(
        cls, family: str, draws: Mapping[str, Sequence[float | None]], binomial_variance_mean: Any
    ) -> Population:
        def column(name: str) -> np.ndarray:
            return np.array([np.nan if value is None else value for value in draws[name]], dtype=float)

        return cls(
            family=family,
            intercept=column("intercept"),
            slope=column("slope"),
            sd_intercept=column("sd_intercept"),
            sd_slope=column("sd_slope"),
            cor=column("cor"),
            sigma=column("sigma"),
            binomial_variance_mean=None if binomial_variance_mean is None else float(binomial_variance_mean),
        )

    def thinned(self, n_draws: int) -> Population:
        """At most ``n_draws`` draws, evenly spaced (keeps the chains' mixture)."""
        total = len(self.intercept)
        if n_draws >= total:
            return self
        keep = np.linspace(0, total - 1, n_draws).round().astype(int)
        return Population(
            self.family,
            *(
                values[keep]
                for values in (self.intercept, self.slope, self.sd_intercept, self.sd_slope, self.cor, self.sigma)
            ),
            binomial_variance_mean=self.binomial_variance_mean,
        )

    def prior_precision(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries (11, 12, 22) of ``Sigma^-1`` per draw."""
        var_a, var_b = self.sd_intercept**2, self.sd_slope**2
        cov = self.cor * self.sd_intercept * self.sd_slope
        det = var_a * var_b - cov**2
        return var_b / det, -cov / det, var_a / det


@dataclass(frozen=True)
class Students:
    """Students' weekly data padded to ``(n_students, n_weeks)`` with a mask."""

    user_id: np.ndarray
    week: np.ndarray
    mask: np.ndarray
    accuracy: np.ndarray
    n_attempts: np.ndarray
    n_correct: np.ndarray
    target_week: np.ndarray
    goal: np.ndarray
    usual_attempts: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Students:
        """From extract rows: user_id, week, accuracy, n_attempts, n_correct, goal,
        target_week, usual_attempts (one row per student-week)."""
        frame = frame.sort_values(["user_id", "week"])
        position = frame.groupby("user_id").cumcount().to_numpy()
        users, row = np.unique(frame["user_id"].to_numpy(), return_inverse=True)
        shape = (len(users), int(position.max()) + 1 if len(frame) else 0)

        def padded(column: str) -> np.ndarray:
            out = np.zeros(shape)
            out[row, position] = frame[column].to_numpy(dtype=float)
            return out

        mask = np.zeros(shape, dtype=bool)
        mask[row, position] = True
        first = frame.groupby("user_id", sort=True).first()
        return cls(
            user_id=users,
            week=padded("week"),
            mask=mask,
            accuracy=padded("accuracy"),
            n_attempts=padded("n_attempts"),
            n_correct=padded("n_correct"),
            target_week=first["target_week"].to_numpy(dtype=float),
            goal=first["goal"].to_numpy(dtype=float),
            usual_attempts=first["usual_attempts"].to_numpy(dtype=float),
        )

    def block(self, rows: slice) -> Students:
        return Students(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))


def _cholesky_draw(
    c11: np.ndarray, c12: np.ndarray, c22: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One draw from N(0, C) per entry, C = [[c11, c12], [c12, c22]] elementwise."""
    l11 = np.sqrt(c11)
    l21 = c12 / l11
    l22 = np.sqrt(np.maximum(c22 - l21**2, 0.0))
    z1, z2 = rng.standard_normal(c11.shape), rng.standard_normal(c11.shape)
    return l11 * z1, l21 * z1 + l22 * z2


def _inverse_2x2(h11: np.ndarray, h12: np.ndarray, h22: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    det = h11 * h22 - h12**2
    return h22 / det, -h12 / det, h11 / det


def gaussian_draws(
    block: Students, population: Population, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact conditional draws ``(a, b)`` of shape (students, draws) and equal weights."""
    p11, p12, p22 = population.prior_precision()
    mu_a, mu_b = population.intercept, population.slope
    inv_var = 1.0 / population.sigma**2
    x, y, m = block.week, block.accuracy, block.mask
    n, sx, sxx = m.sum(1)[:, None], (x * m).sum(1)[:, None], (x * x * m).sum(1)[:, None]
    sy, sxy = (y * m).sum(1)[:, None], (x * y * m).sum(1)[:, None]
    h11, h12, h22 = p11 + n * inv_var, p12 + sx * inv_var, p22 + sxx * inv_var
    r1 = p11 * mu_a + p12 * mu_b + sy * inv_var
    r2 = p12 * mu_a + p22 * mu_b + sxy * inv_var
    c11, c12, c22 = _inverse_2x2(h11, h12, h22)
    d1, d2 = _cholesky_draw(c11, c12, c22, rng)
    a = c11 * r1 + c12 * r2 + d1
    b = c12 * r1 + c22 * r2 + d2
    return a, b, np.full(a.shape, 1.0 / a.shape[1])


@dataclass(frozen=True)
class _BinomialTerms:
    """One student's weekly counts against one population draw's prior, for a batch of
    (student, draw) pairs: ``x``, ``k``, ``n``, ``m`` broadcast against ``a[..., None]``
    (weeks last), the prior mean and precision against ``a``."""

    x: np.ndarray
    k: np.ndarray
    n: np.ndarray
    m: np.ndarray
    mu_a: np.ndarray
    mu_b: np.ndarray
    p11: np.ndarray
    p12: np.ndarray
    p22: np.ndarray

    def log_posterior(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        eta = a[..., None] + b[..., None] * self.x
        loglik = (self.m * (self.k * eta - self.n * np.logaddexp(0.0, eta))).sum(-1)
        da, db = a - self.mu_a, b - self.mu_b
        return loglik - 0.5 * (self.p11 * da * da + 2 * self.p12 * da * db + self.p22 * db * db)

    def gradient_hessian(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        """Gradient (g1, g2) and negative Hessian (h11, h12, h22) of the log posterior."""
        p = special.expit(a[..., None] + b[..., None] * self.x)
        residual = self.m * (self.k - self.n * p)
        info = self.m * self.n * p * (1 - p)
        da, db = a - self.mu_a, b - self.mu_b
        g1 = residual.sum(-1) - (self.p11 * da + self.p12 * db)
        g2 = (residual * self.x).sum(-1) - (self.p12 * da + self.p22 * db)
        h11 = info.sum(-1) + self.p11
        h12 = (info * self.x).sum(-1) + self.p12
        h22 = (info * self.x * self.x).sum(-1) + self.p22
        return g1, g2, h11, h12, h22

    def pairs(self, students: np.ndarray, draws: np.ndarray) -> _BinomialTerms:
        """The terms of the given (student, draw) pairs, as a flat batch."""
        return _BinomialTerms(
            *(v[students, 0] for v in (self.x, self.k, self.n, self.m)),
            *(v[draws] for v in (self.mu_a, self.mu_b, self.p11, self.p12, self.p22)),
        )


def _newton_step(terms: _BinomialTerms, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g1, g2, h11, h12, h22 = terms.gradient_hessian(a, b)
    c11, c12, c22 = _inverse_2x2(h11, h12, h22)
    return c11 * g1 + c12 * g2, c12 * g1 + c22 * g2, np.hypot(g1, g2)


def _damped_newton(terms: _BinomialTerms, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Newton with step halving (the log posterior never decreases): converges from any
    start, at a few extra evaluations per step; used for the rare pairs where plain
    Newton from the population mean overshoots."""
    current = terms.log_posterior(a, b)
    for _ in range(DAMPED_NEWTON_STEPS):
        step_a, step_b, _ = _newton_step(terms, a, b)
        scale = np.ones_like(a)
        for _ in range(MAX_HALVINGS):
            candidate = terms.log_posterior(a + scale * step_a, b + scale * step_b)
            worse = ~(candidate >= current)  # NaN counts as worse
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        scale = np.where(worse, 0.0, scale)
        a, b = a + scale * step_a, b + scale * step_b
        current = terms.log_posterior(a, b)
    return a, b


def binomial_draws(
    block: Students, population: Population, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Laplace draws ``(a, b)`` (students, draws) with self-normalised importance weights."""
    terms = _BinomialTerms(
        block.week[:, None, :],
        block.n_correct[:, None, :],
        block.n_attempts[:, None, :],
        block.mask[:, None, :],
        population.intercept,
        population.slope,
        *population.prior_precision(),
    )
    shape = (len(block.user_id), len(population.intercept))
    a, b = np.broadcast_to(terms.mu_a, shape).copy(), np.broadcast_to(terms.mu_b, shape).copy()
    # Plain Newton from the population mean: converges in a few steps for almost every
    # (student, draw); the pairs whose gradient is not ~0 afterwards (an overshoot, seen
    # for 1 of 400 draws of a student) are found again with the damped method.
    for _ in range(NEWTON_STEPS):
        step_a, step_b, _ = _newton_step(terms, a, b)
        a, b = a + step_a, b + step_b
    *_, gradient_norm = _newton_step(terms, a, b)
    unconverged = ~(gradient_norm < NEWTON_TOLERANCE)
    if unconverged.any():
        students, draws = np.nonzero(unconverged)
        start = np.broadcast_to(terms.mu_a, shape)[unconverged], np.broadcast_to(terms.mu_b, shape)[unconverged]
        a[unconverged], b[unconverged] = _damped_newton(terms.pairs(students, draws), *start)
    g1, g2, h11, h12, h22 = terms.gradient_hessian(a, b)
    d1, d2 = _cholesky_draw(*_inverse_2x2(h11, h12, h22), rng)
    log_ratio = (
        terms.log_posterior(a + d1, b + d2)
        - terms.log_posterior(a, b)
        + 0.5 * (h11 * d1 * d1 + 2 * h12 * d1 * d2 + h22 * d2 * d2)
    )
    weights = np.exp(log_ratio - log_ratio.max(axis=1, keepdims=True))
    return a + d1, b + d2, weights / weights.sum(axis=1, keepdims=True)


def expected_accuracy(eta: np.ndarray, family: str) -> np.ndarray:
    """The expected accuracy at linear predictor ``eta`` (always within [0, 1])."""
    return special.expit(eta) if family == "binomial" else np.clip(eta, 0.0, 1.0)


def predictive_goal_probability(
    expected: np.ndarray, goal: np.ndarray, attempts: np.ndarray, population: Population
) -> np.ndarray:
    """P(observed accuracy at ``attempts`` >= goal | draw), as growth_predict.R computes it."""
    goal, attempts = goal[:, None], attempts[:, None]
    if population.family == "binomial":
        needed = np.ceil(goal * attempts - 1e-9)
        return stats.binom.sf(needed - 1, attempts, expected)
    sigma2 = population.sigma**2
    if population.binomial_variance_mean is None:
        variance = np.broadcast_to(sigma2, expected.shape)
    else:
        variance = np.maximum(sigma2 - population.binomial_variance_mean, 0.0) + expected * (1 - expected) / attempts
    return stats.norm.sf(goal, loc=expected, scale=np.maximum(np.sqrt(variance), 1e-9))


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, probs: Sequence[float]) -> list[np.ndarray]:
    order = np.argsort(values, axis=1)
    sorted_values = np.take_along_axis(values, order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
    last = values.shape[1] - 1
    return [sorted_values[np.arange(len(values)), np.minimum((cumulative < q).sum(axis=1), last)] for q in probs]


def summarise_block(
    block: Students, population: Population, week_range: tuple[float, float], rng: np.random.Generator
) -> pd.DataFrame:
    """Per-student posterior summaries and goal probability for one block."""
    draw = binomial_draws if population.family == "binomial" else gaussian_draws
    a, b, weights = draw(block, population, rng)
    family = population.family
    if family == "binomial":
        start = special.expit(a + b * week_range[0])
        end = special.expit(a + b * week_range[1])
        slope = (end - start) / (week_range[1] - week_range[0])
        intercept = special.expit(a)
    else:
        slope, intercept = b, a
    expected = expected_accuracy(a + b * block.target_week[:, None], family)
    p_goal = predictive_goal_probability(expected, block.goal, block.usual_attempts, population)
    slope_lower, slope_upper = _weighted_quantiles(slope, weights, (0.025, 0.975))
    lower, upper = _weighted_quantiles(expected, weights, (0.025, 0.975))
    summary = {
        "user_id": block.user_id,
        "intercept": (weights * intercept).sum(1),
        "slope": (weights * slope).sum(1),
        "slope_lower": slope_lower,
        "slope_upper": slope_upper,
        # A weighted mean of probabilities that are all ~1 can round past 1.
        "p_goal": np.clip((weights * p_goal).sum(1), 0.0, 1.0),
        "mean": (weights * expected).sum(1),
        "lower": lower,
        "upper": upper,
        # Effective number of draws: how much the importance correction had to do.
        "ess": 1.0 / (weights**2).sum(1),
    }
    return pd.DataFrame(summary)


def conditional_posteriors(
    frame: pd.DataFrame,
    population: Population,
    week_range: tuple[float, float],
    seed: int,
    block_students: int = BLOCK_STUDENTS,
) -> pd.DataFrame:
    """Stage 2 for the students of ``frame`` (see :meth:`Students.from_frame`)."""
    students = Students.from_frame(frame)
    rng = np.random.default_rng(seed)
    blocks = [
        summarise_block(students.block(slice(start, start + block_students)), population, week_range, rng)
        for start in range(0, len(students.user_id), block_students)
    ]
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()
