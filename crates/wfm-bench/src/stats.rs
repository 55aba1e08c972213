//! Medians with their spread: every macro figure is the median of several runs, shown with
//! the smallest and largest run.

use serde::{Deserialize, Serialize};

/// The median of some runs, and their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest run.
    pub min: f64,
    /// The largest run.
    pub max: f64,
    /// How many runs.
    pub runs: usize,
}

impl Spread {
    /// The spread of `samples`; all zero when there are none.
    pub fn of(samples: &[f64]) -> Spread {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let runs = sorted.len();
        if runs == 0 {
            return Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
                runs: 0,
            };
        }
        let median = if runs % 2 == 1 {
            sorted[runs / 2]
        } else {
            (sorted[runs / 2 - 1] + sorted[runs / 2]) / 2.0
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[runs - 1],
            runs,
        }
    }

    /// The same figures scaled by `factor` (e.g. µs to ms).
    pub fn scaled(self, factor: f64) -> Spread {
        Spread {
            median: self.median * factor,
            min: self.min * factor,
            max: self.max * factor,
            ..self
        }
    }

    /// `median (min–max)` with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// `a / b`, or infinity when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::INFINITY } else { a / b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(Spread::of(&[]).runs, 0);
        assert_eq!(Spread::of(&[1.0, 2.0, 30.0]).show(1), "2.0 (1.0–30.0)");
    }
}
