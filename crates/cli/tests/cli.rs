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

/// The seed deployment (a production Kratos project's `kratos.yml`, copied verbatim), with
/// what its README says a deployment overrides: the DSN, the schema path, the mapper path and
/// the Google client credentials.
fn seed(dsn: &str) -> (String, Vec<(String, String)>) {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed-deployment"
    );
    let env = [
        ("PORTCULLIS_DSN", dsn.to_string()),
        (
            "PORTCULLIS_IDENTITY_SCHEMAS_0_URL",
            format!("file://{dir}/user.schema.json"),
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_MAPPER_URL",
            format!("file://{dir}/oidc.google.jsonnet"),
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_CLIENT_ID",
            "1234-seed.apps.googleusercontent.com".to_string(),
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_CLIENT_SECRET",
            "GOCSPX-seed-secret-value".to_string(),
        ),
    ];
    (
        format!("{dir}/kratos.yml"),
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    )
}

#[test]
fn config_check_loads_the_seed_deployment_with_nothing_to_note() {
    let (file, env) = seed("postgres://kratos:secret@127.0.0.1:5432/kratos?sslmode=disable");
    let out = portcullis()
        .args(["config", "check", &file, "--dev"])
        .envs(env)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.ends_with("configuration OK\n"), "{stderr}");
    // Social sign-in and TOTP are active: nothing to note.
    assert!(!stderr.contains("note:"), "{stderr}");
    assert!(!stderr.contains("placeholder"), "{stderr}");
    assert!(
        stdout.contains("base_url: http://localhost:3000/.ory/")
            && stdout.contains("client_id: 1234-seed.apps.googleusercontent.com")
            && stdout.contains("issuer: ImpRun"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("GOCSPX") && !stdout.contains(":secret@"),
        "secrets are redacted: {stdout}"
    );
}

#[test]
fn config_check_refuses_what_portcullis_does_not_support_and_accepts_version() {
    let f = temp_file(
        "unsupported.yml",
        "version: v1.1.0\nserve:\n  public:\n    tls:\n      cert:\n        path: /etc/tls.crt\n\
         selfservice:\n  methods:\n    passkey:\n      config:\n        timeouts:\n          login: 5m\n",
    );
    let out = portcullis()
        .args(["config", "check", &f, "--dev"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serve.public.tls: not supported by Portcullis yet")
            && err.contains(
                "selfservice.methods.passkey.config.timeouts: not supported by Portcullis yet"
            ),
        "{err}"
    );
    assert!(!err.contains("version"), "version is accepted: {err}");
    let f = temp_file("version.yml", "version: v1.1.0\n");
    let out = portcullis()
        .args(["config", "check", &f, "--dev"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_starts_the_seed_deployment_without_warnings_about_its_methods() {
    use std::io::BufRead;
    let db = std::env::temp_dir().join(format!("pc-cli-seed-{}.sqlite", uuid_like()));
    let (file, env) = seed(&format!("sqlite://{}", db.display()));
    let mut child = portcullis()
        .args(["serve", "-c", &file, "--dev"])
        .envs(env)
        .env("PORTCULLIS_SERVE_PUBLIC_PORT", "0")
        .env("PORTCULLIS_SERVE_ADMIN_PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    let ready = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => {
                let done = line.contains("portcullis is ready");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let log = seen.join("\n");
    assert!(ready, "the server did not start:\n{log}");
    // Every method the seed turns on (TOTP, social sign-in) is active: no warning about them.
    assert!(!log.contains("selfservice.methods"), "{log}");
}

#[test]
fn keys_clerk_publishable_names_the_public_host() {
    let run = |base: &str, extra: &[&str]| {
        let mut c = portcullis();
        c.args(["keys", "clerk", "publishable", "--dev"])
            .args(extra)
            .env("PORTCULLIS_SERVE_PUBLIC_BASE_URL", base);
        c.output().unwrap()
    };
    let out = run("https://auth.example.com/", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pk_live_YXV0aC5leGFtcGxlLmNvbSQ"
    );
    let out = run("http://127.0.0.1:4433/", &["--test"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pk_test_MTI3LjAuMC4xOjQ0MzMk"
    );
    // clerk-js would refuse a key for a host without a dot.
    let out = run("http://localhost:4433/", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a dot"));
}
