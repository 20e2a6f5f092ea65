//! The table the benchmark prints: one row per scenario, each next to its baseline, then the
//! figures that are not rates of one request (webhook delivery, start-up time, memory).

use crate::load::Stats;

pub struct Row {
    pub name: String,
    pub stats: Stats,
    /// The baseline's label and rate.
    pub baseline: Option<(String, f64)>,
}

/// Webhook delivery, measured around the registration burst with two endpoints.
#[derive(Default)]
pub struct Delivery {
    /// Messages per second while draining a replayed backlog.
    pub rate: f64,
    /// How many messages the replay queued.
    pub queued: u64,
    /// Messages that arrived during (and shortly after) the burst, and how many were due.
    pub arrived: u64,
    pub expected: u64,
    /// Registration p50 with the endpoints minus without, in ms.
    pub p50_added_ms: f64,
}

pub struct Summary {
    pub secs: f64,
    pub argon: f64,
    pub delivery: Delivery,
    pub ready_ms: f64,
    pub idle_rss_kib: Option<u64>,
}

pub fn print(rows: &[Row], s: &Summary) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let secs = s.secs;
    println!();
    println!("Portcullis benchmark — SQLite, {cores} cores shared by servers and load generator, {secs}s per row");
    println!(
        "{:<46} {:>10} {:>9} {:>9} {:>7}  vs baseline",
        "scenario", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    println!("{}", "-".repeat(110));
    for r in rows {
        let vs = match &r.baseline {
            Some((name, base)) if *base > 0.0 => format!(
                "{:.1}% of {name} ({base:.0}/s)",
                100.0 * r.stats.rate / base
            ),
            _ => String::new(),
        };
        println!(
            "{:<46} {:>10.0} {:>9.2} {:>9.2} {:>7}  {vs}",
            r.name, r.stats.rate, r.stats.p50_ms, r.stats.p99_ms, r.stats.errors
        );
    }
    println!(
        "{:<46} {:>10.0}",
        "raw Argon2id hashes/s (all cores)", s.argon
    );
    println!();
    let d = &s.delivery;
    println!(
        "webhook deliveries: {:.0}/s draining a replayed backlog of {} messages to a local receiver (2 endpoints); \
         during the burst {} of {} arrived; registration p50 {:+.2} ms with two endpoints",
        d.rate, d.queued, d.arrived, d.expected, d.p50_added_ms,
    );
    println!(
        "ready in {:.0} ms (process start to /health/ready 200, includes migrations)",
        s.ready_ms
    );
    if let Some(kib) = s.idle_rss_kib {
        println!("idle RSS {:.1} MiB", kib as f64 / 1024.0);
    }
}
