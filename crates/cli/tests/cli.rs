//! The binary's command line: configuration errors stop it before any port is bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails by panicking

use std::process::Command;

fn portcullis() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") {
            c.env_remove(k);
        }
    }
    c
}

fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pc-cli-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_string_lossy().to_string()
}

// The wall time here only makes names unique across runs; no rule reads it.
#[allow(clippy::disallowed_methods)]
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn version_prints_the_version() {
    let out = portcullis().arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("portcullis v"));
}

#[test]
fn config_check_names_unknown_keys_and_bad_values() {
    let f = temp_file("bad.yml", "serve:\n  public:\n    prot: 4433\n");
    let out = portcullis()
        .args(["config", "check", &f, "--dev"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve.public.prot"));
    let f = temp_file("ok.yml", "dsn: \"sqlite::memory:\"\nsecrets:\n  default: [\"0123456789abcdef0123456789abcdef\"]\nserve:\n  public:\n    base_url: https://id.example.com/\n");
    let out = portcullis().args(["config", "check", &f]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("<redacted>") && !printed.contains("0123456789abcdef"),
        "secrets are redacted"
    );
}

#[test]
fn serve_refuses_bad_environment_before_binding() {
    let out = portcullis()
        .args(["serve", "--dev"])
        .env("PORTCULLIS_SERVE_PUBLIC_PORT", "high")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serve.public.port"), "{err}");
    let out = portcullis()
        .args(["serve"])
        .env("PORTCULLIS_DSN", "sqlite::memory:")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve.public.base_url"));
    let out = portcullis()
        .args(["serve", "--dev"])
        .env(
            "PORTCULLIS_IDENTITY_SCHEMAS",
            r#"[{"id":"default","url":"file:///does/not/exist.json"}]"#,
        )
        .env("PORTCULLIS_DSN", "sqlite::memory:")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/does/not/exist.json"));
}

#[test]
fn migrate_creates_the_schema() {
    let db = std::env::temp_dir().join(format!("pc-cli-{}.sqlite", uuid_like()));
    let out = portcullis()
        .args(["migrate", "--dev"])
        .env("PORTCULLIS_DSN", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
}

#[test]
fn keys_rotate_replaces_the_signing_key() {
    let db = std::env::temp_dir().join(format!("pc-cli-keys-{}.sqlite", uuid_like()));
    let dsn = format!("sqlite://{}", db.display());
    let rotate = || {
        let out = portcullis()
            .args(["keys", "rotate", "--dev"])
            .env("PORTCULLIS_DSN", &dsn)
            .env("PORTCULLIS_HASHERS_ARGON2_MEMORY", "64KiB")
            .env("PORTCULLIS_HASHERS_ARGON2_ITERATIONS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let first = rotate();
    let second = rotate();
    assert!(
        first.starts_with("es256-") && second.starts_with("es256-"),
        "{first} {second}"
    );
    assert_ne!(first, second);
}

#[test]
fn dev_mode_cannot_come_from_the_environment_or_the_file() {
    let out = portcullis()
        .args(["config", "check", "/dev/null"])
        .env("PORTCULLIS_DEV", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PORTCULLIS_DEV") && err.contains("--dev"),
        "{err}"
    );
    let f = temp_file("dev.yml", "dev: true\n");
    let out = portcullis().args(["config", "check", &f]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dev:") && err.contains("--dev"), "{err}");
}

#[test]
fn keys_admin_create_prints_a_key_and_the_entry_that_holds_its_hash() {
    let out = portcullis()
        .args(["keys", "admin", "create", "--id", "ops"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let [key, entry] = lines[..] else {
        panic!("two lines expected: {stdout}");
    };
    assert!(key.starts_with("pc_admin_") && key.len() == 9 + 64, "{key}");
    let hash = portcullis_core::admin_keys::KeyHash::of(key).to_string();
    assert_eq!(entry, format!(r#"{{"id":"ops","hash":"{hash}"}}"#));
    // The entry is the configuration as it is, and `config check` shows the hash, not the key.
    let f = temp_file(
        "admin-key.yml",
        &format!("serve:\n  admin:\n    api_keys:\n      - {entry}\n"),
    );
    let out = portcullis()
        .args(["config", "check", &f, "--dev"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&hash) && !printed.contains(key),
        "{printed}"
    );
    let out = portcullis()
        .args(["keys", "admin", "create", "--id", "not ok"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
