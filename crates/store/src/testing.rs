//! Throwaway PostgreSQL for tests.
//!
//! Each test process starts one cluster (initdb + pg_ctl on a temp dir and a free port) the
//! first time it is asked for, and every caller gets a fresh database in it. A watchdog
//! process stops the cluster and removes its directory when the test process exits. Set
//! `PORTCULLIS_TEST_POSTGRES_URL` to use an existing server instead.

// Test support: failing loudly (a panic) is how it fails the calling test.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();

fn pg_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PORTCULLIS_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().ok_or_else(|| {
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin. Install them with \
         `apt-get update && apt-get install -y postgresql`, or set PORTCULLIS_TEST_POSTGRES_URL \
         to a server the tests may create databases on."
            .to_string()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run_as_postgres(bin: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {:?} failed: {}{}",
            bin.display(),
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn start_cluster() -> Result<String, String> {
    if let Ok(url) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let bin = pg_bin()?;
    let dir = std::env::temp_dir().join(format!(
        "portcullis-pg-{}-{}",
        std::process::id(),
        free_port()?
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("chown postgres {} failed", dir.display()));
        }
    }
    let data = dir.join("data");
    let data_s = data.to_string_lossy().to_string();
    run_as_postgres(
        &bin.join("initdb"),
        &[
            "-D",
            &data_s,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    )?;
    let port = free_port()?;
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let log = dir.join("log").to_string_lossy().to_string();
    run_as_postgres(
        &bin.join("pg_ctl"),
        &["-D", &data_s, "-o", &opts, "-l", &log, "-w", "start"],
    )?;
    // Stop the cluster when this process ends, however it ends.
    let pg_ctl = bin.join("pg_ctl");
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- {} -D {data_s} -m immediate stop",
            pg_ctl.display()
        )
    } else {
        format!("{} -D {data_s} -m immediate stop", pg_ctl.display())
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}"))
}

/// A fresh, empty database on the test cluster; returns its URL.
///
/// Panics (failing the test, never skipping it) when PostgreSQL cannot be started.
pub async fn fresh_postgres_database() -> String {
    let base = match CLUSTER.get_or_init(start_cluster) {
        Ok(b) => b.clone(),
        Err(e) => panic!("PostgreSQL for tests: {e}"),
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let mut admin = None;
    for _ in 0..50 {
        match <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await
        {
            Ok(c) => {
                admin = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let Some(mut admin) = admin else {
        panic!("PostgreSQL for tests: cannot connect to {base}")
    };
    if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
    {
        panic!("PostgreSQL for tests: CREATE DATABASE failed: {e}");
    }
    let _ = sqlx::Connection::close(admin).await;
    format!("{base}/{name}")
}
