//! The Portcullis load benchmark.
//!
//! Starts the real `portcullis` binary (release build) on a fresh SQLite file and a trivial
//! "hello" axum server as a second process on the same HTTP stack, then drives both from this
//! process over keep-alive HTTP/1.1 connections. Every figure is printed next to a baseline
//! measured in the same run, because the load generator shares the machine's cores with the
//! servers: absolute numbers mean little, ratios travel.
//!
//! The rooms: `scenarios` is the table of rows, `load` the load generator, `setup` the
//! processes, accounts and the steps between rows, `report` the printed table. `run` below is
//! the one loop over the table.
//!
//! Usage: `portcullis-bench [--bin target/release/portcullis] [--seconds 5] [--connections 64]`
//! (`scripts/bench` builds and runs it).

mod idp;
mod load;
mod report;
mod scenarios;
mod setup;

use anyhow::{anyhow, bail, Result};
use load::Stats;
use report::{Row, Summary};
use scenarios::{Baseline, Scenario, Target};
use setup::{free_port, rss_kib, start_server, wait_ready, Bench, Limits, Proc};
use std::process::{Command, Stdio};
use std::time::Instant;

struct Args {
    bin: String,
    seconds: u64,
    connections: usize,
}

fn parse_args() -> Result<(Option<String>, Args)> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        bin: "target/release/portcullis".into(),
        seconds: 5,
        connections: 64,
    };
    let mut mode = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin" => args.bin = it.next().ok_or_else(|| anyhow!("--bin needs a path"))?,
            "--seconds" => {
                args.seconds = it
                    .next()
                    .ok_or_else(|| anyhow!("--seconds needs a number"))?
                    .parse()?
            }
            "--connections" => {
                args.connections = it
                    .next()
                    .ok_or_else(|| anyhow!("--connections needs a number"))?
                    .parse()?
            }
            "hello" => mode = Some(it.next().ok_or_else(|| anyhow!("hello needs a port"))?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok((mode, args))
}

fn main() -> Result<()> {
    let (hello_port, args) = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match hello_port {
        Some(port) => rt.block_on(setup::hello_server(port)),
        None => rt.block_on(run(args)),
    }
}

/// The rates measured so far that later rows are ratios of.
#[derive(Default)]
struct Baselines {
    hello: Option<Stats>,
    registration: Option<Stats>,
}

async fn run(args: Args) -> Result<()> {
    let secs = args.seconds as f64;
    let me = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let hello_port = free_port()?;
    let _hello = Proc(
        Command::new(&me)
            .args(["hello", &hello_port.to_string()])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let hello = format!("http://127.0.0.1:{hello_port}");

    // The social sign-in row's provider; every server started below knows it.
    idp::start().await?;
    let spawn_at = Instant::now();
    let (server, public, admin) = start_server(
        &args.bin,
        &format!("sqlite://{}/bench.sqlite", dir.display()),
        Limits::On,
    )?;
    wait_ready(&public).await?;
    let ready_ms = spawn_at.elapsed().as_secs_f64() * 1000.0;
    wait_ready(&hello).await?;
    let idle_rss_kib = rss_kib(server.0.id());

    let mut bench = Bench::new(
        args.bin.clone(),
        dir.display().to_string(),
        secs,
        hello,
        server,
        public,
        admin,
    );
    bench.seed().await?;

    let mut rows = vec![];
    let mut seen = Baselines::default();
    for scenario in scenarios::table(args.connections, secs) {
        if let Some(step) = scenario.before {
            bench.run(step, None).await?;
        }
        if let Some(line) = &scenario.progress {
            eprintln!("measuring: {line}");
        }
        // A load alongside starts first, so this row is measured under it.
        let alongside = scenario.alongside.as_deref().map(|s| {
            let (base, op) = (base_of(&bench, s.target), (s.op)(&bench.fixtures));
            let (conns, pace) = (s.conns, s.pace);
            tokio::spawn(async move { op.load(&base, conns, secs, pace).await })
        });
        let run_for = |target: Target, make: scenarios::MakeOp, secs: f64| {
            let op = make(&bench.fixtures);
            let base = base_of(&bench, target);
            let (conns, pace) = (scenario.conns, scenario.pace);
            async move { op.load(&base, conns, secs, pace).await }
        };
        let measure = |target: Target, make: scenarios::MakeOp| run_for(target, make, secs);
        let stats = match &scenario.limits_off {
            None => {
                let stats = measure(scenario.target, scenario.op).await?;
                rows.push(row(&scenario, stats, &bench, &seen));
                stats
            }
            Some((off_name, off_op)) => {
                // Both fresh servers warm up unmeasured first (the first run after a start is
                // slower); then off, on, on, off, so a drift of the machine falls on both alike.
                let warm_up = (secs / 4.0).max(0.5);
                run_for(Target::LimitsOff, *off_op, warm_up).await?;
                run_for(scenario.target, scenario.op, warm_up).await?;
                let off1 = measure(Target::LimitsOff, *off_op).await?;
                let on1 = measure(scenario.target, scenario.op).await?;
                let on2 = measure(scenario.target, scenario.op).await?;
                let off2 = measure(Target::LimitsOff, *off_op).await?;
                let (off, on) = (Stats::mean(off1, off2), Stats::mean(on1, on2));
                rows.push(Row {
                    name: off_name.clone(),
                    stats: off,
                    baseline: baseline(scenario.baseline, &bench, &seen),
                });
                rows.push(Row {
                    name: scenario.name.clone(),
                    stats: on,
                    baseline: Some((Baseline::LimitsOff.label().to_string(), off.rate)),
                });
                on
            }
        };
        if let (Some(task), Some(s)) = (alongside, scenario.alongside.as_deref()) {
            let stats = task.await??;
            rows.push(row(s, stats, &bench, &seen));
        }
        if matches!(scenario.target, Target::Hello) {
            seen.hello = Some(stats);
        }
        if scenario.is_registration {
            seen.registration = Some(stats);
        }
        if let Some(step) = scenario.after {
            bench.run(step, Some(stats.rate)).await?;
            if let Some(regs) = seen.registration {
                bench.delivery.p50_added_ms = stats.p50_ms - regs.p50_ms;
            }
        }
    }
    bench.server = None;

    report::print(
        &rows,
        &Summary {
            secs,
            argon: bench.argon,
            delivery: std::mem::take(&mut bench.delivery),
            ready_ms,
            idle_rss_kib,
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn base_of(bench: &Bench, target: Target) -> String {
    match target {
        Target::Hello => bench.hello.clone(),
        Target::Public => bench.public.clone(),
        Target::LimitsOn => bench.limits_on_public.clone(),
        Target::LimitsOff => bench.limits_off_public.clone(),
    }
}

fn row(s: &Scenario, stats: Stats, bench: &Bench, seen: &Baselines) -> Row {
    Row {
        name: s.name.clone(),
        stats,
        baseline: baseline(s.baseline, bench, seen),
    }
}

/// A baseline's label and its rate measured so far.
fn baseline(b: Option<Baseline>, bench: &Bench, seen: &Baselines) -> Option<(String, f64)> {
    let rate = |b: Baseline| match b {
        Baseline::Hello => seen.hello.map_or(0.0, |s| s.rate),
        Baseline::Argon => bench.argon,
        Baseline::Registration => seen.registration.map_or(0.0, |s| s.rate),
        // A pair's own off row; `run` fills it in directly.
        Baseline::LimitsOff => 0.0,
    };
    b.map(|b| (b.label().to_string(), rate(b)))
}
