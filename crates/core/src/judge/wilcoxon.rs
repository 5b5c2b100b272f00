//! The two-sample Wilcoxon rank-sum (Mann-Whitney) test with its confidence interval for the
//! location shift, as R's `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)`
//! computes it (R 4.x), and as Kayenta's judge uses it with x = canary, y = primary.
//!
//! For a candidate shift `d`, rank the pooled sample `(x − d) ∪ y` (ties averaged) and let
//! `dz = Σ ranks of x − nx(nx+1)/2 − nx·ny/2` and
//! `σ = √(nx·ny/12 · ((nx+ny+1) − Σ(t³−t)/((nx+ny)(nx+ny−1))))` over the tie groups. The
//! interval ends are the roots of `(dz − sign(dz)/2)/σ ∓ z` (continuity-corrected), the
//! estimate the root of `dz/σ` (R computes it without the correction; Kayenta's own port keeps
//! it: the two differ by at most one step of the rank statistic). Roots are searched in
//! `[min x − max y, max x − min y]` by Brent's method ([`super::zeroin`]); an interval end
//! that the search range cannot bracket is the range end itself. The p-value is the normal
//! approximation at `d = 0`, with the same tie and continuity corrections. The exact
//! small-sample distribution is never used.

use serde::{Deserialize, Serialize};

use super::normal;
use super::zeroin::zeroin;

/// R's `tol.root` default and Kayenta's Brent tolerance: an absolute 1e-4.
pub const R_ROOT_TOLERANCE: f64 = 1e-4;
/// R's `uniroot` iteration limit.
const MAX_ITER: u32 = 1000;

/// How precisely the interval ends and the estimate are located.
///
/// The function whose roots are sought is a step function of the shift; its steps sit at the
/// pairwise differences `xᵢ − yⱼ`. Any point within the tolerance of the step is returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RootTolerance {
    /// R's and Kayenta's absolute 1e-4 whatever the data's scale.
    R,
    /// 1e-4 × min(1, width of the search range): R's tolerance for data spanning one unit or
    /// more, proportionally finer below, so latencies in seconds and error ratios are located
    /// as precisely as latencies in milliseconds (with R's 1e-4, a shift of 0.0003 in an error
    /// ratio would be known only to ±30%).
    #[default]
    Scaled,
}

impl RootTolerance {
    /// The absolute tolerance for a search over `[lo, hi]`.
    pub fn absolute(self, lo: f64, hi: f64) -> f64 {
        match self {
            RootTolerance::R => R_ROOT_TOLERANCE,
            RootTolerance::Scaled => R_ROOT_TOLERANCE * (hi - lo).clamp(f64::MIN_POSITIVE, 1.0),
        }
    }
}

/// The test's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wilcoxon {
    /// R's `W`: the rank sum of x minus its minimum nx(nx+1)/2.
    pub statistic: f64,
    /// Two-sided p-value for "no shift" (normal approximation, tie and continuity corrected).
    pub p_value: f64,
    /// The estimated shift x − y (a Hodges-Lehmann-like median of pairwise differences).
    pub estimate: f64,
    /// Lower end of the confidence interval of the shift.
    pub lower: f64,
    /// Upper end of the confidence interval of the shift.
    pub upper: f64,
    /// The interval's confidence level (0.98 in the judge).
    pub confidence_level: f64,
    /// The absolute tolerance the roots were located to (0 for the exact interval).
    pub root_tolerance: f64,
    /// From the exact distribution of the statistic ([`wilcoxon_exact`]) rather than the
    /// normal approximation.
    #[serde(default)]
    pub exact: bool,
}

/// Why the test cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WilcoxonError {
    #[error("one of the samples is empty")]
    Empty,
    #[error("a sample holds a value that is not a finite number")]
    NotFinite,
    #[error("every value of both samples is the same number, so no interval can be computed")]
    AllTied,
    #[error("the confidence level must lie strictly between 0 and 1")]
    BadLevel,
}

/// Both samples sorted once; evaluations of the rank statistic merge them in linear time.
struct Pooled {
    x: Vec<f64>,
    y: Vec<f64>,
    nx: f64,
    ny: f64,
}

impl Pooled {
    fn new(x: &[f64], y: &[f64]) -> Pooled {
        let mut xs = x.to_vec();
        let mut ys = y.to_vec();
        xs.sort_by(f64::total_cmp);
        ys.sort_by(f64::total_cmp);
        Pooled {
            nx: xs.len() as f64,
            ny: ys.len() as f64,
            x: xs,
            y: ys,
        }
    }

    /// `(dz, σ)` for the shift `d`, with `dz` centred at 0 (R's `dz`).
    fn rank_statistic(&self, d: f64) -> (f64, f64) {
        let (mut i, mut j) = (0, 0);
        let mut position = 0usize; // values ranked so far
        let mut x_rank_sum = 0.0;
        let mut tie_sum = 0.0; // Σ (t³ − t)
        while i < self.x.len() || j < self.y.len() {
            let xv = self.x.get(i).map(|v| v - d);
            let yv = self.y.get(j).copied();
            let v = match (xv, yv) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            let mut in_x = 0usize;
            while i < self.x.len() && self.x[i] - d == v {
                i += 1;
                in_x += 1;
            }
            let mut in_y = 0usize;
            while j < self.y.len() && self.y[j] == v {
                j += 1;
                in_y += 1;
            }
            let t = in_x + in_y;
            // Positions position+1 ..= position+t share their average rank.
            let rank = (2 * position + t + 1) as f64 / 2.0;
            x_rank_sum += in_x as f64 * rank;
            let tf = t as f64;
            tie_sum += tf * tf * tf - tf;
            position += t;
        }
        let (nx, ny) = (self.nx, self.ny);
        let dz = x_rank_sum - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
        let sigma =
            ((nx * ny / 12.0) * ((nx + ny + 1.0) - tie_sum / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
        (dz, sigma)
    }

    /// The standardized statistic, continuity-corrected or not.
    fn z(&self, d: f64, corrected: bool) -> f64 {
        let (dz, sigma) = self.rank_statistic(d);
        let correction = if corrected { sign(dz) * 0.5 } else { 0.0 };
        (dz - correction) / sigma
    }
}

/// R's `sign`: −1, 0 or 1.
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Runs the test of x against y (x = canary, y = primary in the judge).
pub fn wilcoxon(
    x: &[f64],
    y: &[f64],
    confidence_level: f64,
    tolerance: RootTolerance,
) -> Result<Wilcoxon, WilcoxonError> {
    if x.is_empty() || y.is_empty() {
        return Err(WilcoxonError::Empty);
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(WilcoxonError::NotFinite);
    }
    if !(confidence_level > 0.0 && confidence_level < 1.0) {
        return Err(WilcoxonError::BadLevel);
    }
    let pooled = Pooled::new(x, y);
    let lo = pooled.x[0] - pooled.y[pooled.y.len() - 1];
    let hi = pooled.x[pooled.x.len() - 1] - pooled.y[0];
    if lo >= hi {
        // Only when both samples are constant: every pooled value ties at the shift lo.
        return Err(WilcoxonError::AllTied);
    }

    // The test at shift 0.
    let (dz0, sigma0) = pooled.rank_statistic(0.0);
    if sigma0 == 0.0 {
        return Err(WilcoxonError::AllTied);
    }
    let statistic = dz0 + pooled.nx * pooled.ny / 2.0;
    let p_value = normal::two_sided_p((dz0 - sign(dz0) * 0.5) / sigma0);

    let tol = tolerance.absolute(lo, hi);
    let g_lo = pooled.z(lo, true);
    let g_hi = pooled.z(hi, true);
    if !g_lo.is_finite() || !g_hi.is_finite() {
        return Err(WilcoxonError::AllTied);
    }
    let root = |zq: f64| -> f64 {
        let f_lo = g_lo - zq;
        if f_lo <= 0.0 {
            return lo;
        }
        let f_hi = g_hi - zq;
        if f_hi >= 0.0 {
            return hi;
        }
        zeroin(lo, hi, f_lo, f_hi, tol, MAX_ITER, |d| {
            pooled.z(d, true) - zq
        })
        .x
    };
    let alpha = 1.0 - confidence_level;
    let z_half = normal::quantile(alpha / 2.0); // negative
    let lower = root(-z_half);
    let upper = root(z_half);

    let e_lo = pooled.z(lo, false);
    let e_hi = pooled.z(hi, false);
    let estimate = zeroin(lo, hi, e_lo, e_hi, tol, MAX_ITER, |d| pooled.z(d, false)).x;

    Ok(Wilcoxon {
        statistic,
        p_value,
        estimate,
        lower,
        upper,
        confidence_level,
        root_tolerance: tol,
        exact: false,
    })
}

/// R uses the exact distribution by default below this many points on each side.
pub const EXACT_BELOW: usize = 50;

/// The exact test, as R's `wilcox.test(x, y, conf.int = TRUE)` computes it by default for
/// fewer than 50 points a side without ties: the interval ends are order statistics of the
/// pairwise differences `xᵢ − yⱼ` picked by quantiles of the exact distribution of `W`, the
/// estimate is their median, the p-value exact. `None` when R would not use it (ties, a side
/// of 50 points or more, or a side empty). When the level cannot be reached with so few
/// points, the interval is the widest there is and `confidence_level` is the level achieved,
/// as in R.
pub fn wilcoxon_exact(x: &[f64], y: &[f64], confidence_level: f64) -> Option<Wilcoxon> {
    let (nx, ny) = (x.len(), y.len());
    if nx == 0 || ny == 0 || nx >= EXACT_BELOW || ny >= EXACT_BELOW {
        return None;
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) || !(0.0..1.0).contains(&confidence_level) {
        return None;
    }
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, ties) = super::stats::average_ranks(&pooled);
    if ties.iter().any(|&t| t > 1) {
        return None;
    }
    let (mf, nf) = (nx as f64, ny as f64);
    let statistic = ranks[..nx].iter().sum::<f64>() - mf * (mf + 1.0) / 2.0;
    let dist = WilcoxonDistribution::new(nx, ny);
    let q = statistic as usize;
    let p = if statistic > mf * nf / 2.0 {
        dist.upper(q - 1)
    } else {
        dist.lower(q)
    };
    let p_value = (2.0 * p).min(1.0);

    let mut diffs: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    diffs.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence_level;
    let qu = dist.quantile(alpha / 2.0).max(1);
    let ql = nx * ny - qu;
    let achieved = 2.0 * dist.lower(qu - 1);
    let level = if achieved - alpha > alpha / 2.0 {
        1.0 - achieved
    } else {
        confidence_level
    };
    Some(Wilcoxon {
        statistic,
        p_value,
        estimate: super::stats::percentile_sorted(&diffs, 50.0),
        lower: diffs[qu - 1],
        upper: diffs[ql],
        confidence_level: level,
        root_tolerance: 0.0,
        exact: true,
    })
}

/// The exact null distribution of `W` for `m` and `n` points: the number of orderings of the
/// pooled sample giving each value, from the recurrence
/// `N(k; i, j) = N(k − j; i − 1, j) + N(k; i, j − 1)` (the largest point is an x, beating every
/// y, or a y). Additions only, so no cancellation; counts are f64 as in R.
struct WilcoxonDistribution {
    counts: Vec<f64>,
    total: f64,
}

impl WilcoxonDistribution {
    fn new(m: usize, n: usize) -> WilcoxonDistribution {
        // row[j] = distribution for (i, j); start with i = 0: one ordering, W = 0.
        let mut row: Vec<Vec<f64>> = vec![vec![1.0]; n + 1];
        for i in 1..=m {
            let mut next: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
            next.push(vec![1.0]);
            for j in 1..=n {
                let mut d = vec![0.0; i * j + 1];
                for (k, c) in row[j].iter().enumerate() {
                    d[k + j] += c;
                }
                for (k, c) in next[j - 1].iter().enumerate() {
                    d[k] += c;
                }
                next.push(d);
            }
            row = next;
        }
        let counts = row.swap_remove(n);
        let total = counts.iter().sum();
        WilcoxonDistribution { counts, total }
    }

    /// P(W ≤ q), summed term by term as R's `pwilcox`.
    fn lower(&self, q: usize) -> f64 {
        let q = q.min(self.counts.len() - 1);
        self.counts[..=q].iter().map(|c| c / self.total).sum()
    }

    /// P(W > q), R's `pwilcox(q, lower.tail = FALSE)`.
    fn upper(&self, q: usize) -> f64 {
        let mn = self.counts.len() - 1;
        if 2 * q <= mn {
            0.5 - self.lower(q) + 0.5
        } else {
            // By symmetry, P(W > q) = P(W < mn − q).
            self.counts[..mn - q].iter().map(|c| c / self.total).sum()
        }
    }

    /// R's `qwilcox(p)` for p ≤ 0.5: the smallest q with P(W ≤ q) ≥ p (less a few ulps).
    fn quantile(&self, p: f64) -> usize {
        let target = p - 10.0 * f64::EPSILON;
        let mut acc = 0.0;
        for (q, c) in self.counts.iter().enumerate() {
            acc += c / self.total;
            if acc >= target {
                return q;
            }
        }
        self.counts.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_statistic_matches_the_direct_definition() {
        let x = [1.0, 3.0, 3.0, 7.5, 2.0];
        let y = [3.0, 0.5, 2.0, 9.0];
        let pooled = Pooled::new(&x, &y);
        for d in [-10.0, 0.0, 1.0, 1.5, 5.0, 10.0] {
            let values: Vec<f64> = x.iter().map(|v| v - d).chain(y.iter().copied()).collect();
            let (ranks, ties) = super::super::stats::average_ranks(&values);
            let (nx, ny) = (5.0, 4.0);
            let dz = ranks[..5].iter().sum::<f64>() - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
            let t: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
            let sigma =
                ((nx * ny / 12.0) * ((nx + ny + 1.0) - t / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
            assert_eq!(pooled.rank_statistic(d), (dz, sigma), "d={d}");
        }
    }

    #[test]
    fn the_exact_distribution_counts_orderings() {
        // m = 2, n = 2: C(4, 2) = 6 orderings, W = 0, 1, 2, 2, 3, 4.
        let d = WilcoxonDistribution::new(2, 2);
        assert_eq!(d.counts, vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        assert_eq!(d.total, 6.0);
        let d = WilcoxonDistribution::new(3, 5);
        assert_eq!(d.total, 56.0);
        let mirrored: Vec<f64> = d.counts.iter().rev().copied().collect();
        assert_eq!(d.counts, mirrored, "symmetric");
        assert!(
            wilcoxon_exact(&[1.0, 2.0], &[2.0, 3.0], 0.98).is_none(),
            "ties"
        );
        assert!(
            wilcoxon_exact(&[0.5; 50], &[1.0], 0.98).is_none(),
            "too many points"
        );
    }

    #[test]
    fn refuses_what_it_cannot_test() {
        let r = RootTolerance::R;
        assert_eq!(wilcoxon(&[], &[1.0], 0.98, r), Err(WilcoxonError::Empty));
        assert_eq!(
            wilcoxon(&[f64::NAN], &[1.0], 0.98, r),
            Err(WilcoxonError::NotFinite)
        );
        assert_eq!(
            wilcoxon(&[2.0, 2.0], &[1.0], 0.98, r),
            Err(WilcoxonError::AllTied)
        );
        assert_eq!(
            wilcoxon(&[2.0, 3.0], &[1.0], 1.0, r),
            Err(WilcoxonError::BadLevel)
        );
    }

    #[test]
    fn scaled_tolerance_is_r_s_for_wide_data_and_finer_for_narrow() {
        assert_eq!(RootTolerance::Scaled.absolute(-3.0, 40.0), 1e-4);
        assert!((RootTolerance::Scaled.absolute(0.001, 0.003) - 2e-7).abs() < 1e-20);
        assert_eq!(RootTolerance::R.absolute(0.001, 0.003), 1e-4);
    }
}
