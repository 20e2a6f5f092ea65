//! Kratos compatibility: every key of Kratos's schema is a field or has a rule, the rules do
//! what they say, and the seed deployment (a real production `kratos.yml`) loads.

use super::kratos::{pattern, Pat, Rule, Treatment, RULES};
use super::*;
use serde_json::json;

const SCHEMA: &str = include_str!("../../testdata/kratos-config.schema.json");
const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cli/tests/fixtures/seed-deployment"
);

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One step of a path in Kratos's schema.
#[derive(Clone, Debug, PartialEq)]
enum S {
    Key(String),
    /// Any element of a list (`items`).
    Items,
    /// Any key of a map (`additionalProperties`, `patternProperties`).
    Any,
}

struct SchemaPath {
    segs: Vec<S>,
    /// The schema's `type` at the path, when it gives one.
    ty: Option<String>,
}

impl SchemaPath {
    fn text(&self) -> String {
        let mut s = String::new();
        for seg in &self.segs {
            match seg {
                S::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                S::Items => s.push_str("[]"),
                S::Any => s.push_str(".*"),
            }
        }
        s
    }

    /// The smallest configuration tree that sets this path.
    fn probe_tree(&self) -> Value {
        let mut v = match self.ty.as_deref() {
            Some("string") => json!("x"),
            Some("boolean") => json!(false),
            Some("integer" | "number") => json!(1),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => Value::Null,
        };
        for seg in self.segs.iter().rev() {
            v = match seg {
                S::Key(k) => json!({ k.clone(): v }),
                S::Items => json!([v]),
                S::Any => json!({ "x": v }),
            };
        }
        v
    }
}

/// Every path of Kratos's schema: `$ref`s to its definitions followed, `allOf`/`anyOf`/`oneOf`
/// and `if`/`then`/`else` branches merged.
fn schema_paths() -> Vec<SchemaPath> {
    fn resolve<'a>(root: &'a Value, mut n: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match n.get("$ref").and_then(Value::as_str) {
                Some(r) if r.starts_with("#/definitions/") => {
                    n = &root["definitions"][&r["#/definitions/".len()..]];
                }
                _ => break,
            }
        }
        n
    }
    fn walk(root: &Value, n: &Value, path: &mut Vec<S>, out: &mut Vec<SchemaPath>, depth: u32) {
        let n = resolve(root, n);
        if depth > 20 || !n.is_object() {
            return;
        }
        for k in ["allOf", "anyOf", "oneOf"] {
            for b in n[k].as_array().into_iter().flatten() {
                walk(root, b, path, out, depth + 1);
            }
        }
        for k in ["then", "else"] {
            if let Some(b) = n.get(k) {
                walk(root, b, path, out, depth + 1);
            }
        }
        for (k, child) in n["properties"].as_object().into_iter().flatten() {
            path.push(S::Key(k.clone()));
            let ty = resolve(root, child)["type"].as_str().map(str::to_string);
            if !out.iter().any(|p| p.segs == *path) {
                out.push(SchemaPath {
                    segs: path.clone(),
                    ty,
                });
            }
            walk(root, child, path, out, depth + 1);
            path.pop();
        }
        if let Some(items) = n.get("items") {
            path.push(S::Items);
            walk(root, items, path, out, depth + 1);
            path.pop();
        }
        let maps = n["additionalProperties"]
            .is_object()
            .then(|| &n["additionalProperties"])
            .into_iter()
            .chain(
                n["patternProperties"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values()),
            );
        for m in maps {
            path.push(S::Any);
            walk(root, m, path, out, depth + 1);
            path.pop();
        }
    }
    let root: Value = serde_json::from_str(SCHEMA).unwrap();
    let mut out = vec![];
    walk(&root, &root, &mut vec![], &mut out, 0);
    out
}

/// Whether a rule's pattern covers the schema path (is the path itself or one of its parents).
fn covers(pat: &[Pat<'_>], segs: &[S]) -> bool {
    pat.len() <= segs.len()
        && pat.iter().zip(segs).all(|(p, s)| match (p, s) {
            (Pat::Key(k), S::Key(s)) => k == s,
            (Pat::AnyKey, S::Key(_) | S::Any) | (Pat::AnyIndex, S::Items) => true,
            _ => false,
        })
}

/// Whether the rule takes care of the schema path: a section only of itself (its keys need
/// rules of their own), any other rule of its whole subtree.
fn rule_covers(r: &Rule, segs: &[S]) -> bool {
    let pat = pattern(r.path);
    covers(&pat, segs) && (r.treatment != Treatment::Section || pat.len() == segs.len())
}

/// Whether Portcullis's configuration has a field at the path: deserialising a tree that sets
/// only it fails, if at all, for any reason but an unknown field.
fn is_field(p: &SchemaPath) -> bool {
    match env::deserialize_named(p.probe_tree()) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown field"),
    }
}

#[test]
fn every_kratos_schema_path_is_a_field_or_has_a_rule() {
    let paths = schema_paths();
    assert!(paths.len() > 1000, "the schema walk found {}", paths.len());
    let uncovered: Vec<String> = paths
        .iter()
        .filter(|p| !RULES.iter().any(|r| rule_covers(r, &p.segs)))
        .filter(|p| !is_field(p))
        .map(SchemaPath::text)
        .collect();
    assert!(
        uncovered.is_empty(),
        "Kratos keys with neither a field nor a rule in config/kratos.rs:\n{}",
        uncovered.join("\n")
    );
}

#[test]
fn every_rule_names_a_kratos_key_that_is_not_a_field() {
    let paths = schema_paths();
    for (i, r) in RULES.iter().enumerate() {
        if let Some(prev) = i.checked_sub(1).and_then(|j| RULES.get(j)) {
            assert!(
                prev.path < r.path,
                "RULES are sorted and unique: {}",
                r.path
            );
        }
        let pat = pattern(r.path);
        assert!(
            !matches!(pat.last(), Some(Pat::AnyIndex)),
            "{}: a rule never names a whole list element",
            r.path
        );
        let named: Vec<&SchemaPath> = paths
            .iter()
            .filter(|p| p.segs.len() == pat.len() && covers(&pat, &p.segs))
            .collect();
        assert!(
            !named.is_empty(),
            "{}: not a key of Kratos's schema",
            r.path
        );
        for p in named {
            assert!(
                !is_field(p),
                "{}: is a field of Portcullis's configuration, so the rule would hide it",
                p.text()
            );
        }
        if let Treatment::OnlyValues(values) = r.treatment {
            for v in values {
                assert!(serde_json::from_str::<Value>(v).is_ok(), "{}: {v}", r.path);
            }
        }
    }
}

#[test]
fn every_rule_is_listed_in_the_configuration_docs() {
    let docs = include_str!("../../../../docs/configuration.md");
    let section = docs
        .split("## Kratos compatibility")
        .nth(1)
        .expect("docs/configuration.md has a Kratos compatibility section");
    for r in RULES {
        assert!(
            section.contains(&format!("`{}`", r.path)),
            "{} is missing from the Kratos compatibility section of docs/configuration.md",
            r.path
        );
    }
}

fn load_yaml(yaml: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("pc-kratos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kratos.yml");
    std::fs::write(&file, yaml).unwrap();
    Config::load(Some(file.to_str().unwrap()), vec![], true)
}

#[test]
fn kratos_keys_portcullis_lacks_are_refused_by_name_and_all_at_once() {
    let err = load_yaml(
        "serve:\n  public:\n    tls:\n      cert:\n        path: /etc/tls.crt\n\
         selfservice:\n  methods:\n    password:\n      config:\n        migrate_hook:\n          enabled: true\n  flows:\n    login:\n      style: identifier_first\n\
         tracing:\n  provider: jaeger\n",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "serve.public.tls: not supported by Portcullis yet (terminate TLS at a proxy",
        "selfservice.methods.password.config.migrate_hook: not supported by Portcullis yet (no password migration hook; import password hashes through the admin API); remove it or set enabled: false",
        "selfservice.flows.login.style: \"identifier_first\" is not supported by Portcullis yet (accepted: \"unified\"",
        "tracing: not supported by Portcullis yet",
    ] {
        assert!(err.contains(expected), "{expected}\nin:\n{err}");
    }
    assert_eq!(err.lines().count(), 4, "one line per refused key:\n{err}");
    // A method Portcullis always runs cannot be switched off.
    let err = load_yaml("selfservice:\n  methods:\n    password:\n      enabled: false\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "selfservice.methods.password.enabled: false is not supported by Portcullis yet"
        ),
        "{err}"
    );
    // The dev key keeps its own message.
    let err = load_yaml("dev: true\n").unwrap_err().to_string();
    assert!(err.contains("dev: dev mode is not a configuration key") && err.contains("--dev"));
}

#[test]
fn informational_kratos_keys_and_switched_off_features_load() {
    let c = load_yaml(
        "version: v1.1.0\nrevision: abc\nlog:\n  level: warning\n  leak_sensitive_values: true\n  redaction_text: '***'\n\
         serve:\n  public:\n    request_log:\n      disable_for_health: true\n    cors:\n      debug: true\n      options_passthrough: false\n    tls: {}\n\
         selfservice:\n  methods:\n    webauthn:\n      enabled: false\n      config:\n        rp:\n          id: localhost\n\
         \x20   password:\n      config:\n        haveibeenpwned_enabled: false\n        max_breaches: 3\n\
         \x20 flows:\n    login:\n      style: unified\n    registration:\n      style: unified\n\
         courier:\n  delivery_strategy: smtp\n  channels: []\n  worker:\n    pull_count: 5\n\
         hashers:\n  argon2:\n    salt_length: 16\n    key_length: 32\n    expected_duration: 1s\n\
         database:\n  cleanup:\n    batch_size: 10\n\
         cookies:\n  path: /\n  same_site: Lax\nfeature_flags: {}\nclients:\n  http:\n    disallow_private_ip_ranges: true\n",
    )
    .unwrap();
    assert_eq!(c.log.level.directive(), "warn");
    assert!(c.notes().is_empty(), "{:?}", c.notes());
    // An unknown key that is not Kratos's stays an error naming its path.
    let err = load_yaml("selfservice:\n  methods:\n    pasword:\n      enabled: true\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("selfservice.methods.pasword: unknown field"),
        "{err}"
    );
    let err = load_yaml("cookies:\n  pth: /\n").unwrap_err().to_string();
    assert!(err.contains("cookies.pth: unknown field"), "{err}");
}

#[test]
fn an_element_of_a_list_can_be_set_from_the_environment() {
    let dir = std::env::temp_dir().join(format!("pc-kratos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("k.yml");
    std::fs::write(
        &file,
        "identity:\n  schemas:\n    - id: a\n      url: file:///etc/a.json\n    - id: b\n      url: file:///etc/b.json\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let c = Config::load(
        Some(file),
        env(&[("PORTCULLIS_IDENTITY_SCHEMAS_1_URL", "file:///tmp/b.json")]),
        true,
    )
    .unwrap();
    assert_eq!(c.identity.schemas[0].url, "file:///etc/a.json");
    assert_eq!(c.identity.schemas[1].url, "file:///tmp/b.json");
    assert_eq!(c.identity.schemas[1].id, "b");
    let c = Config::load(
        Some(file),
        env(&[(
            "PORTCULLIS_IDENTITY_SCHEMAS_0",
            r#"{"id":"z","url":"file:///z.json"}"#,
        )]),
        true,
    )
    .unwrap();
    assert_eq!(c.identity.schemas[0].id, "z");
    let err = Config::load(
        Some(file),
        env(&[("PORTCULLIS_IDENTITY_SCHEMAS_2_URL", "file:///c.json")]),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("PORTCULLIS_IDENTITY_SCHEMAS_2_URL")
            && err.contains("no element 2")
            && err.contains("PORTCULLIS_IDENTITY_SCHEMAS"),
        "{err}"
    );
    // A field the element lacks is added; one the schema lacks is an unknown field.
    let err = Config::load(
        Some(file),
        env(&[("PORTCULLIS_IDENTITY_SCHEMAS_0_COLOUR", "red")]),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("identity.schemas[0].colour: unknown field"),
        "{err}"
    );
}

#[test]
fn kratos_in_memory_dsn_is_sqlite_in_memory() {
    let c = Config::load(None, env(&[("PORTCULLIS_DSN", "memory")]), true).unwrap();
    assert_eq!(c.dsn, "sqlite::memory:");
}

/// The seed deployment with what its README says a test overrides: the DSN, the schema path,
/// the mapper path and the Google client credentials.
pub(crate) fn seed_env() -> Vec<(String, String)> {
    env(&[
        ("PORTCULLIS_DSN", "sqlite::memory:"),
        (
            "PORTCULLIS_IDENTITY_SCHEMAS_0_URL",
            &format!("file://{SEED}/user.schema.json"),
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_MAPPER_URL",
            &format!("file://{SEED}/oidc.google.jsonnet"),
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_CLIENT_ID",
            "1234-seed.apps.googleusercontent.com",
        ),
        (
            "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_CLIENT_SECRET",
            "GOCSPX-seed-secret-value",
        ),
    ])
}

#[test]
fn the_seed_deployment_loads_as_it_is() {
    let file = format!("{SEED}/kratos.yml");
    let c = Config::load(Some(&file), seed_env(), true).unwrap();
    assert_eq!(c.public_url(), "http://localhost:3000/.ory/");
    assert_eq!(c.serve.admin.base_url, "http://kratos:4434/");
    let cors = &c.serve.public.cors;
    assert!(cors.enabled && cors.allow_credentials);
    assert_eq!(cors.allowed_origins, ["http://localhost:3000"]);
    assert_eq!(
        cors.allowed_methods,
        ["POST", "GET", "PUT", "PATCH", "DELETE"]
    );
    assert_eq!(
        cors.allowed_headers,
        ["Authorization", "Cookie", "Content-Type"]
    );
    assert_eq!(cors.exposed_headers, ["Content-Type", "Set-Cookie"]);
    assert_eq!(c.session.cookie.same_site, SameSite::Lax);
    assert_eq!(c.session.cookie.path, "/");
    assert_eq!(c.session.lifespan, Dur::hours(24));
    let f = &c.selfservice.flows;
    assert_eq!(f.settings.privileged_session_max_age, Dur::secs(15 * 60));
    assert_eq!(f.login.lifespan, Dur::secs(10 * 60));
    assert_eq!(f.registration.lifespan, Dur::secs(10 * 60));
    assert!(c
        .after(FlowKind::Registration)
        .runs("password", HookName::Session, false));
    assert!(f.recovery.is_enabled() && f.verification.is_enabled());
    assert_eq!(c.ui_url(FlowKind::Login), "http://localhost:3000/login");
    assert_eq!(c.after_logout_url(), "http://localhost:3000/login");
    assert_eq!(c.identity.default_schema_id, "user");
    assert!(c.identity.schemas[0]
        .url
        .ends_with("/seed-deployment/user.schema.json"));
    let m = &c.selfservice.methods;
    assert!(m.totp.is_enabled());
    assert_eq!(m.totp.config.issuer, "ImpRun");
    assert!(m.oidc.enabled);
    let google = &m.oidc.config.providers[0];
    assert_eq!(google.provider, OidcProviderKind::Google);
    assert_eq!(google.client_id, "1234-seed.apps.googleusercontent.com");
    assert_eq!(google.client_secret.expose(), "GOCSPX-seed-secret-value");
    assert_eq!(google.scope, ["email", "profile"]);
    assert_eq!(c.courier.smtp.from_name, "ImpRun Platform");
    // Printed, the client secret is redacted; every method it turns on is active, so nothing
    // is noted.
    let printed = c.redacted_yaml();
    assert!(!printed.contains("GOCSPX"), "{printed}");
    assert_eq!(c.notes(), Vec::<String>::new());
}

#[test]
fn the_seed_deployment_without_its_credentials_notes_the_placeholders() {
    let file = format!("{SEED}/kratos.yml");
    let env: Vec<_> = seed_env()
        .into_iter()
        .filter(|(k, _)| !k.contains("_CLIENT_"))
        .collect();
    let c = Config::load(Some(&file), env, true).unwrap();
    let notes = c.notes();
    assert!(
        notes.iter().any(|n| n.starts_with(
            "selfservice.methods.oidc.config.providers[0].client_id: ${GOOGLE_CLIENT_ID} is a placeholder"
        ) && n.ends_with("PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS_0_CLIENT_ID")),
        "{notes:?}"
    );
    // The two placeholders.
    assert_eq!(notes.len(), 2, "{notes:?}");
}

const WEB_HOOK: &str = "{hook: web_hook, config: {url: 'https://hooks.example/in', method: POST}}";

/// A flow whose `hooks` at `place` (`before`, `after`, `after.password`) are `hooks`.
fn with_hooks(flow: &str, place: &str, hooks: &str) -> Result<Config, ConfigError> {
    let mut nested = format!("hooks: [{hooks}]");
    for part in place.rsplit('.') {
        nested = format!("{part}: {{{nested}}}");
    }
    load_yaml(&format!(
        "selfservice:\n  flows:\n    {flow}: {{{nested}}}\n"
    ))
}

#[test]
fn web_hooks_load_where_kratos_runs_them_and_nothing_else_runs_before_a_flow() {
    for flow in [
        "login",
        "registration",
        "settings",
        "recovery",
        "verification",
    ] {
        let c = with_hooks(flow, "before", WEB_HOOK).unwrap();
        assert_eq!(c.selfservice.web_hooks().len(), 1, "{flow}");
        assert_eq!(c.selfservice.web_hooks()[0].url, "https://hooks.example/in");
    }
    let c = with_hooks(
        "registration",
        "after.password",
        &format!("{WEB_HOOK}, {{hook: session}}"),
    )
    .unwrap();
    assert_eq!(c.selfservice.web_hooks()[0].method, "POST");
    let err = with_hooks("login", "before", "{hook: session}")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("selfservice.flows.login.before.hooks: the session hook cannot run here (allowed: web_hook)"),
        "{err}"
    );
}

#[test]
fn web_hooks_that_cannot_work_are_refused_at_load() {
    let hook = |config: &str| format!("{{hook: web_hook, config: {config}}}");
    for (flow, place, config, expected) in [
        (
            "login",
            "before",
            "{url: 'ftp://h.example/', method: POST}",
            "url: \"ftp://h.example/\" is not an http(s) URL",
        ),
        (
            "login",
            "before",
            "{url: 'https://h.example/', method: TRACE}",
            "method: \"TRACE\" is not one of GET, POST, PUT, PATCH, DELETE",
        ),
        (
            "login",
            "before",
            "{url: 'https://h.example/'}",
            "missing field `method`",
        ),
        (
            "login",
            "before",
            "{url: 'https://h.example/', method: POST, colour: red}",
            "unknown field `colour`",
        ),
        (
            "login",
            "before",
            "{url: 'https://h.example/', method: POST, body: 'https://h.example/body.jsonnet'}",
            "only file:// and base64:// bodies",
        ),
        (
            "login",
            "after",
            "{url: 'https://h.example/', method: POST, response: {ignore: true, parse: true}}",
            "an ignored answer cannot be parsed",
        ),
        (
            "recovery",
            "after",
            "{url: 'https://h.example/', method: POST, response: {parse: true}}",
            "it cannot stop it",
        ),
        (
            "verification",
            "after",
            "{url: 'https://h.example/', method: POST, can_interrupt: true}",
            "it cannot stop it",
        ),
        (
            "login",
            "before",
            "{url: 'https://h.example/', method: POST, auth: {type: oauth, config: {}}}",
            "unknown variant `oauth`",
        ),
    ] {
        let err = with_hooks(flow, place, &hook(config))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{flow}.{place} {config}:\n{err}");
        assert!(
            err.contains(&format!("selfservice.flows.{flow}.{place}.hooks[0].config")),
            "{err}"
        );
    }
    // The same answers parse where the flow has not stored its result yet.
    with_hooks(
        "registration",
        "after",
        &hook("{url: 'https://h.example/', method: POST, response: {parse: true}}"),
    )
    .unwrap();
}

#[test]
fn web_hook_credentials_print_redacted() {
    let c = with_hooks(
        "registration",
        "before",
        "{hook: web_hook, config: {url: 'https://ops:url-pw@h.example/in?token=url-token', method: POST, \
         headers: {X-Signature: header-secret}, auth: {type: api_key, config: {name: X-Key, value: key-secret, in: header}}}}, \
         {hook: web_hook, config: {url: 'https://h.example/b', method: PUT, auth: {type: basic_auth, config: {user: u, password: basic-secret}}}}",
    )
    .unwrap();
    let hooks = c.selfservice.web_hooks();
    assert_eq!(hooks[0].headers["X-Signature"].expose(), "header-secret");
    assert!(
        matches!(&hooks[1].auth, Some(WebHookAuth::BasicAuth { password, .. }) if password.expose() == "basic-secret")
    );
    let printed = format!(
        "{}\n{:?}",
        c.redacted_yaml(),
        c.selfservice.flows.registration.before
    );
    for secret in [
        "url-pw",
        "url-token",
        "header-secret",
        "key-secret",
        "basic-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(
        printed.contains("h.example/in")
            && printed.contains("X-Key")
            && printed.contains("X-Signature")
    );
    // Logs name a hook without an id by its URL, credentials blanked too.
    let name = hooks[0].name();
    assert!(
        !name.contains("url-pw") && !name.contains("url-token") && name.contains("h.example/in"),
        "{name}"
    );
}
