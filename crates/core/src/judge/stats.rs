//! Descriptive statistics of a sample: the figures reported beside each metric, the R-7
//! percentiles the outlier fences use, and ranks with ties averaged.

use serde::{Deserialize, Serialize};

/// Count, mean, median, min, max and standard deviation of one side of a metric, after NaN and
/// outlier handling. Reported only; the classification does not use them (except the mean,
/// for the mean ratio). All zero for an empty sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Sample standard deviation (n − 1 in the denominator; 0 for one point).
    pub std: f64,
}

impl Summary {
    /// The summary of `values` (finite values expected).
    pub fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mean = mean(values);
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Summary {
            count: values.len(),
            mean,
            median: percentile_sorted(&sorted, 50.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            std: var.sqrt(),
        }
    }
}

/// Arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The `p`th percentile (0–100) of sorted values, by R's default definition (type 7: linear
/// interpolation between the order statistics at `(n − 1)·p/100`). NaN for no values.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * p / 100.0;
            let lo = h.floor();
            let i = lo as usize;
            if i + 1 >= n {
                return sorted[n - 1];
            }
            sorted[i] + (h - lo) * (sorted[i + 1] - sorted[i])
        }
    }
}

/// Ranks of `values` in ascending order (1-based), ties given the average of their positions,
/// and the sizes of the groups of tied values (groups of one included).
pub fn average_ranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start+1 ..= end share their average.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        ties.push(end - start);
        start = end;
    }
    (ranks, ties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_r_type_7() {
        // R: quantile(c(1, 2, 3, 4, 10), c(.01, .25, .5, .75, .99), type = 7)
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        let expect = [
            (1.0, 1.04),
            (25.0, 2.0),
            (50.0, 3.0),
            (75.0, 4.0),
            (99.0, 9.76),
        ];
        for (p, q) in expect {
            assert!((percentile_sorted(&v, p) - q).abs() < 1e-12, "p{p}");
        }
        assert!(percentile_sorted(&[], 50.0).is_nan());
        assert_eq!(percentile_sorted(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn ties_share_the_average_rank() {
        let (ranks, ties) = average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]);
        assert_eq!(ranks, vec![4.0, 1.0, 4.0, 2.0, 4.0]);
        assert_eq!(ties, vec![1, 1, 3]);
    }

    #[test]
    fn summary_reports_sample_figures() {
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(
            (s.count, s.mean, s.median, s.min, s.max),
            (8, 5.0, 4.5, 2.0, 9.0)
        );
        assert!((s.std - 2.138_089_935_299_395).abs() < 1e-12);
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[3.0]).std, 0.0);
    }
}
