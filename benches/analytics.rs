//! Criterion benchmark of the lifetime-value fit on the real CDNOW master file (23,570
//! customers, 69,659 purchases).
//!
//! - `bgnbd_likelihood`: one evaluation of the BG/NBD log-likelihood at the published
//!   parameters, ours (the compressed form: distinct `x`, `t_x` and `T` values stored once,
//!   rows with multiplicities, as the fit uses it) beside the naive textbook sum over
//!   customers, in the same run. A fit evaluates the likelihood hundreds of times.
//! - `bgnbd_fit`: the whole maximum-likelihood fit (Nelder–Mead with restarts).
//! - `calibration_summary`: purchases → `(x, t_x, T)` per customer.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shequn::analytics::model::bgnbd::{self, BgNbdParams, Observation};
use shequn::analytics::model::special::ln_gamma;
use shequn::analytics::model::summary::{self, Day, Purchase, TimeUnit};
use shequn::orders::import::parse_amount;

fn master() -> Vec<Purchase<u64>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/cdnow/CDNOW_master.txt"
    );
    let text = std::fs::read_to_string(path).expect("CDNOW master file beside the repository");
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [customer, date, _, dollars] = cols.as_slice() else {
                return None;
            };
            Some(Purchase {
                customer: customer.parse().ok()?,
                day: Day::parse(date).ok()?,
                amount_cents: parse_amount(dollars).ok()?,
            })
        })
        .collect()
}

/// The textbook per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6).
fn naive_log_likelihood(p: &BgNbdParams, data: &[Observation]) -> f64 {
    let ln_beta = |a: f64, b: f64| ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
    data.iter()
        .map(|o| {
            let x = f64::from(o.frequency);
            let a1 = ln_gamma(p.r + x) - ln_gamma(p.r) + p.r * p.alpha.ln();
            let a2 = ln_beta(p.a, p.b + x) - ln_beta(p.a, p.b);
            let a3 = -(p.r + x) * (p.alpha + o.t).ln();
            let a4 = if o.frequency > 0 {
                (p.a / (p.b + x - 1.0)).ln() - (p.r + x) * (p.alpha + o.recency).ln()
            } else {
                f64::NEG_INFINITY
            };
            a1 + a2 + a3 + (a4 - a3).exp().ln_1p()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let purchases = master();
    let end = Day::from_ymd(1997, 9, 30).expect("date");
    let summaries = summary::calibration_summary(&purchases, end, TimeUnit::Week).expect("summary");
    let observations: Vec<Observation> = summaries.iter().map(|s| s.observation()).collect();
    let published = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    let ours = bgnbd::log_likelihood(&published, &observations).expect("ll");
    let naive = naive_log_likelihood(&published, &observations);
    assert!(
        (ours - naive).abs() < 1e-6 * naive.abs(),
        "both ways agree: {ours} vs {naive}"
    );

    let mut group = c.benchmark_group("bgnbd_likelihood");
    group.throughput(Throughput::Elements(observations.len() as u64));
    group.bench_function("ours_compressed", |b| {
        b.iter(|| bgnbd::log_likelihood(&published, &observations))
    });
    group.bench_function("naive_per_customer", |b| {
        b.iter(|| naive_log_likelihood(&published, &observations))
    });
    group.finish();

    let mut group = c.benchmark_group("analytics_fit");
    group.sample_size(10);
    group.bench_function("bgnbd_fit_master", |b| b.iter(|| bgnbd::fit(&observations)));
    group.bench_function("calibration_summary_master", |b| {
        b.iter(|| summary::calibration_summary(&purchases, end, TimeUnit::Week))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
