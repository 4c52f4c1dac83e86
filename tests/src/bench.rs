//! What the benchmarks share: samples, summaries, and the JSON + table report.

use std::time::Duration;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Samples of one metric.
pub struct Series {
    pub name: &'static str,
    pub unit: &'static str,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(name: &'static str, unit: &'static str) -> Self {
        Self {
            name,
            unit,
            values: Vec::new(),
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// Prints one JSON object (`context` is its leading fields, already formatted) and a table.
pub fn report(context: &str, all: &[&Series]) {
    let metrics: Vec<String> = all
        .iter()
        .map(|s| {
            format!(
                "\"{}\":{{\"unit\":\"{}\",\"n\":{},\"min\":{:.3},\"median\":{:.3},\"max\":{:.3}}}",
                s.name,
                s.unit,
                s.values.len(),
                s.min(),
                s.median(),
                s.max()
            )
        })
        .collect();
    println!("{{{context},{}}}", metrics.join(","));
    println!();
    println!(
        "{:<28} {:>6} {:>4} {:>10} {:>10} {:>10}",
        "metric", "unit", "n", "min", "median", "max"
    );
    for s in all {
        println!(
            "{:<28} {:>6} {:>4} {:>10.2} {:>10.2} {:>10.2}",
            s.name,
            s.unit,
            s.values.len(),
            s.min(),
            s.median(),
            s.max()
        );
    }
}
