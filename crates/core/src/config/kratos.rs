//! Kratos compatibility: what happens to the keys of Kratos's `kratos.yml` that Portcullis's
//! own configuration does not parse.
//!
//! A team switching from Kratos brings its file as it is. Every key of Kratos's configuration
//! schema is therefore one of three things:
//! - **implemented**: a field of [`super::Config`], parsed and honoured;
//! - **accepted**: listed in [`RULES`] as informational (it changes nothing Portcullis does, like
//!   `version`) or as accepted with the one value that says what Portcullis does anyway
//!   (`selfservice.flows.login.style: unified`), and dropped before deserialising;
//! - **refused**: listed in [`RULES`], and an error that names the key and says Portcullis does
//!   not support it yet, so a feature the file turns on is never silently missing.
//!
//! The rules run over the raw tree (file and environment) before it is deserialised, all at
//! once, so a file with several unsupported settings gets one error listing all of them. A key
//! that is neither in [`RULES`] nor a field stays an "unknown field" error naming its path. A
//! test walks Kratos's schema (`testdata/kratos-config.schema.json`) and checks that every path
//! in it is a field or covered by a rule, and that no rule shadows a field.

use super::ConfigError;
use serde_json::Value;

/// What Portcullis does with a Kratos key that is not one of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// Accepted and dropped: it changes nothing Portcullis does (the note says why).
    Informational,
    /// Accepted only with one of these values (JSON), which say what Portcullis does anyway.
    OnlyValues(&'static [&'static str]),
    /// Refused when it sets anything (a value other than `false`, `""`, `[]`, `{}` or null,
    /// or an object or list of those).
    Unsupported,
    /// A method or feature: refused when its `enabled` is `true`, accepted (and dropped) when off.
    WhenEnabled,
    /// Refused for good; the note is the whole message.
    Never,
    /// A Kratos section that Portcullis has no fields in: its keys have rules of their own,
    /// and it is dropped once they leave nothing behind. A key in it without a rule is unknown.
    Section,
}

use Treatment::*;

/// One Kratos key (with its subtree). `path` is dotted; `*` stands for any key and `name[]`
/// for any element of the list `name`.
#[derive(Debug)]
pub(crate) struct Rule {
    pub path: &'static str,
    pub treatment: Treatment,
    /// Why it is accepted, or what Portcullis does instead; part of the message and the docs.
    pub note: &'static str,
}

const fn rule(path: &'static str, treatment: Treatment, note: &'static str) -> Rule {
    Rule {
        path,
        treatment,
        note,
    }
}

const FALSE: &[&str] = &["false"];
const EMPTY: &[&str] = &["[]"];

/// Every Kratos key Portcullis does not parse, and what it does with it. Sorted by path; one
/// rule a line, so the table reads as the list it is.
#[rustfmt::skip]
pub(crate) const RULES: &[Rule] = &[
    rule("ciphers", Informational, "Portcullis always encrypts what it keeps sealed (signing keys, social providers' tokens) with AES-256-GCM under secrets.cipher"),
    rule("clients", Section, "Kratos's outbound clients"),
    rule("clients.http", Section, "Kratos's outbound HTTP client"),
    rule("clients.http.disallow_private_ip_ranges", Informational, "webhook endpoints registered through the API and social sign-in providers never reach private addresses unless webhooks.allow_private_networks is set; flow web hooks, whose URLs are the configuration's own, may"),
    rule("clients.http.private_ip_exception_urls", OnlyValues(EMPTY), "allow private webhook receivers with webhooks.allow_private_networks"),
    rule("clients.smtp", Section, "Kratos's SMTP client"),
    rule("clients.smtp.disallow_private_ip_ranges", OnlyValues(FALSE), "the SMTP server may be on any address"),
    rule("clients.web_hook", Section, "Kratos's web hook client"),
    rule("clients.web_hook.header_allowlist", Unsupported, "web hooks see Kratos's default allow-list of request headers (Accept, Accept-Language, Content-Type, Origin, Referer, Sec-*, User-Agent, …)"),
    rule("config", Informational, "a Kratos command-line flag that Kratos too ignores in the file; pass the file with --config"),
    rule("cookies", Section, "the cookies other than the session cookie"),
    rule("cookies.domain", Unsupported, "set session.cookie.domain, which the CSRF cookie shares"),
    rule("cookies.path", OnlyValues(&["\"/\""]), "the CSRF cookie is always on /; the session cookie's path is session.cookie.path"),
    rule("cookies.same_site", OnlyValues(&["\"Lax\""]), "set session.cookie.same_site, which the CSRF cookie shares"),
    rule("cookies.secure", Unsupported, "cookies carry Secure whenever serve.public.base_url is https"),
    rule("courier.channels", Unsupported, "messages are sent by e-mail over SMTP only (no SMS or HTTP channels)"),
    rule("courier.delivery_strategy", OnlyValues(&["\"smtp\""]), "messages are sent over SMTP"),
    rule("courier.http", Unsupported, "messages are sent over SMTP only"),
    rule("courier.smtp.client_cert_path", Unsupported, "no SMTP client certificates"),
    rule("courier.smtp.client_key_path", Unsupported, "no SMTP client certificates"),
    rule("courier.smtp.local_name", Unsupported, "the SMTP client announces its default name"),
    rule("courier.templates", Unsupported, "replace the message templates with courier.template_override_path"),
    rule("database", Informational, "settings of `kratos cleanup sql`; Portcullis's housekeeping deletes expired rows every minute"),
    rule("dev", Never, "dev mode is not a configuration key; it is turned on only by the --dev flag"),
    rule("enterprise", Unsupported, "Ory's enterprise features"),
    rule("expose-metrics-port", Informational, "a Kratos command-line flag that Kratos too ignores in the file"),
    rule("feature_flags", Section, "switches between Kratos behaviours"),
    rule("feature_flags.cacheable_sessions", Informational, "only effective in the Ory Network"),
    rule("feature_flags.cacheable_sessions_max_age", Informational, "only effective in the Ory Network"),
    rule("feature_flags.choose_recovery_address", OnlyValues(FALSE), "recovery sends its code to the address entered"),
    rule("feature_flags.faster_session_extend", Informational, "only changes how Kratos looks a session up when extending it"),
    rule("feature_flags.legacy_allow_insecure_origins", Informational, "only effective in the Ory Network"),
    rule("feature_flags.legacy_continue_with_verification_ui", OnlyValues(&["false"]), "a browser flow lists a started verification flow in continue_with only with the show_verification_ui hook (API flows always do), as Kratos v1.3 does"),
    rule("feature_flags.legacy_oidc_registration_node_group", OnlyValues(FALSE), "profile fields are in the default node group"),
    rule("feature_flags.legacy_require_verified_login_error", OnlyValues(FALSE), "require_verified_address answers with continue_with show_verification_ui"),
    rule("feature_flags.password_profile_registration_node_group", OnlyValues(&["\"default\""]), "profile fields are in the default node group"),
    rule("feature_flags.refresh_login_choose_address", OnlyValues(FALSE), "a refresh login asks for the password"),
    rule("feature_flags.use_continue_with_transitions", OnlyValues(FALSE), "flows end as Kratos's do by default"),
    rule("hashers.argon2.expected_deviation", Informational, "only feeds Kratos's warning about slow hashing"),
    rule("hashers.argon2.expected_duration", Informational, "only feeds Kratos's warning about slow hashing"),
    rule("hashers.argon2.key_length", OnlyValues(&["32"]), "Argon2 hashes are 32 bytes"),
    rule("hashers.argon2.salt_length", OnlyValues(&["16"]), "Argon2 salts are 16 bytes"),
    rule("help", Informational, "a Kratos command-line flag"),
    rule("identity.schemas[].selfservice_selectable", OnlyValues(FALSE), "self-service registration uses identity.default_schema_id"),
    rule("log.leak_sensitive_values", Informational, "Portcullis has no such switch: what it logs does not depend on it"),
    rule("log.redaction_text", Informational, "Portcullis has no such switch: what it logs does not depend on it"),
    rule("oauth2_provider", Unsupported, "no Ory Hydra login and consent integration"),
    rule("organizations", Unsupported, "no organizations"),
    rule("preview", Section, "Kratos's preview features"),
    rule("preview.default_read_consistency_level", Informational, "only effective in the Ory Network; Portcullis always reads consistently"),
    rule("revision", Informational, "a label for Kratos's /health/config"),
    rule("secrets.pagination", Informational, "page tokens hold no secret (they name the last item of a page)"),
    rule("security.disallow_ref_in_identity_schemas", Informational, "identity schemas never resolve $ref to files or URLs"),
    rule("selfservice.flows.login.style", OnlyValues(&["\"unified\""]), "the login form asks for the identifier and the password together"),
    rule("selfservice.flows.logout.clear_browser_data", OnlyValues(FALSE), "logout sends no Clear-Site-Data header"),
    rule("selfservice.flows.registration.enable_legacy_one_step", OnlyValues(&["true"]), "registration is one step"),
    rule("selfservice.flows.registration.login_hints", OnlyValues(FALSE), "a duplicate registration gets no hints about how to sign in"),
    rule("selfservice.flows.registration.style", OnlyValues(&["\"unified\""]), "the registration form asks for the traits and the password together"),
    rule("selfservice.methods.b2b", Unsupported, "no B2B single sign-on"),
    rule("selfservice.methods.code.config.missing_credential_fallback_enabled", OnlyValues(FALSE), "no sign-in by code"),
    rule("selfservice.methods.link.config.base_url", Unsupported, "links are built on serve.public.base_url"),
    rule("selfservice.methods.passkey.config.attestation", Unsupported, "passkeys are registered without attestation"),
    rule("selfservice.methods.passkey.config.authenticator_selection", Unsupported, "passkeys are discoverable, on any authenticator, with user verification required"),
    rule("selfservice.methods.passkey.config.timeouts", Unsupported, "a ceremony may take five minutes"),
    rule("selfservice.methods.password.config.haveibeenpwned_enabled", OnlyValues(FALSE), "Portcullis does not query Have I Been Pwned; it checks passwords against a bundled list of common ones (common_password_check_enabled)"),
    rule("selfservice.methods.password.config.haveibeenpwned_host", Informational, "only used by the Have I Been Pwned check, which Portcullis does not make"),
    rule("selfservice.methods.password.config.ignore_network_errors", Informational, "only used by the Have I Been Pwned check, which Portcullis does not make"),
    rule("selfservice.methods.password.config.max_breaches", Informational, "only used by the Have I Been Pwned check, which Portcullis does not make"),
    rule("selfservice.methods.password.config.migrate_hook", WhenEnabled, "no password migration hook; import password hashes through the admin API"),
    rule("serve.*.request_log", Informational, "only shapes Kratos's request log"),
    rule("serve.*.socket", Unsupported, "Portcullis listens on TCP (host and port) only"),
    rule("serve.*.tls", Unsupported, "terminate TLS at a proxy in front of Portcullis"),
    rule("serve.public.cors.debug", Informational, "only adds CORS log lines in Kratos"),
    rule("serve.public.cors.options_passthrough", OnlyValues(FALSE), "the CORS layer answers preflight requests itself"),
    rule("session.cookie.secure", Unsupported, "cookies carry Secure whenever serve.public.base_url is https"),
    rule("session.whoami.tokenizer.templates.*.claims_mapper_url", Unsupported, "list the claims under claims (claim name → session path) instead of a Jsonnet mapper"),
    rule("session.whoami.tokenizer.templates.*.jwks_url", Unsupported, "tokenized sessions are signed with Portcullis's own keys, published at /.well-known/jwks.json"),
    rule("session.whoami.tokenizer.templates.*.subject_source", OnlyValues(&["\"id\""]), "the subject is the identity id"),
    rule("sqa-opt-out", Informational, "Portcullis sends no usage statistics"),
    rule("tracing", Unsupported, "no trace export; use log.format: json for a log collector"),
    rule("version", Informational, "the Kratos version the file was written for"),
    rule("watch-courier", Informational, "Portcullis's courier always runs inside serve"),
];

/// One step of a path in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path as the errors write it (and as serde_path_to_error does): `a.b[0].c`.
pub(crate) fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// One step of a rule's pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pat<'a> {
    Key(&'a str),
    AnyKey,
    AnyIndex,
}

pub(crate) fn pattern(path: &str) -> Vec<Pat<'_>> {
    let mut out = vec![];
    for seg in path.split('.') {
        match seg.strip_suffix("[]") {
            Some(name) => {
                out.push(Pat::Key(name));
                out.push(Pat::AnyIndex);
            }
            None if seg == "*" => out.push(Pat::AnyKey),
            None => out.push(Pat::Key(seg)),
        }
    }
    out
}

fn matches(pat: &[Pat<'_>], path: &[Seg]) -> bool {
    pat.len() == path.len()
        && pat.iter().zip(path).all(|(p, s)| match (p, s) {
            (Pat::Key(k), Seg::Key(s)) => k == s,
            (Pat::AnyKey, Seg::Key(_)) | (Pat::AnyIndex, Seg::Index(_)) => true,
            _ => false,
        })
}

/// The rule for `path`, if any.
fn rule_for(path: &[Seg]) -> Option<&'static Rule> {
    RULES.iter().find(|r| matches(&pattern(r.path), path))
}

/// Whether `v` sets nothing: null, `false`, `""`, or lists and objects of only those.
fn inert(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(inert),
        Value::Object(m) => m.values().all(inert),
        _ => false,
    }
}

/// Applies [`RULES`] to the tree: accepted keys are removed, refused ones are reported, all
/// of them in one error (one line each).
pub(super) fn apply(tree: &mut Value) -> Result<(), ConfigError> {
    let mut refused = vec![];
    walk(tree, &mut vec![], &mut refused);
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(refused.join("\n")))
    }
}

fn walk(v: &mut Value, path: &mut Vec<Seg>, refused: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let mut drop = vec![];
            for (k, child) in m.iter_mut() {
                path.push(Seg::Key(k.clone()));
                if judge(child, path, refused) {
                    drop.push(k.clone());
                }
                path.pop();
            }
            for k in drop {
                m.remove(&k);
            }
        }
        Value::Array(a) => {
            // No rule names a whole element (a test checks), so elements are never dropped:
            // only keys inside them are.
            for (i, child) in a.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                judge(child, path, refused);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Judges the node at `path`: true when it is to be dropped; refusals go to `refused`.
fn judge(v: &mut Value, path: &mut Vec<Seg>, refused: &mut Vec<String>) -> bool {
    let Some(rule) = rule_for(path) else {
        walk(v, path, refused);
        return false;
    };
    let key = display(path);
    let problem = match rule.treatment {
        Informational => None,
        OnlyValues(allowed) => {
            let ok = allowed
                .iter()
                .any(|a| serde_json::from_str::<Value>(a).is_ok_and(|a| a == *v));
            (!ok).then(|| {
                format!(
                    "{key}: {v} is not supported by Portcullis yet (accepted: {}; {})",
                    allowed.join(" or "),
                    rule.note
                )
            })
        }
        Unsupported => {
            (!inert(v)).then(|| format!("{key}: not supported by Portcullis yet ({})", rule.note))
        }
        WhenEnabled => (v.get("enabled") == Some(&Value::Bool(true))).then(|| {
            format!(
                "{key}: not supported by Portcullis yet ({}); remove it or set enabled: false",
                rule.note
            )
        }),
        Never => Some(format!("{key}: {}", rule.note)),
        Section => {
            walk(v, path, refused);
            match v.as_object() {
                Some(m) => {
                    for k in m.keys() {
                        refused.push(format!("{key}.{k}: unknown field `{k}`"));
                    }
                    None
                }
                None if v.is_null() => None,
                None => Some(format!("{key}: expected a mapping")),
            }
        }
    };
    if let Some(p) = problem {
        refused.push(p);
    }
    true
}

/// Notes about values that look unfinished: a string that is exactly a `${NAME}` placeholder,
/// which neither Kratos nor Portcullis expands, so it would be used as it is written.
pub(super) fn placeholder_notes(tree: &Value) -> Vec<String> {
    fn is_placeholder(s: &str) -> bool {
        s.strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    }
    fn go(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<String>) {
        match v {
            Value::String(s) if is_placeholder(s) => {
                let var: Vec<String> = path
                    .iter()
                    .map(|seg| match seg {
                        Seg::Key(k) => k.to_uppercase(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect();
                out.push(format!(
                    "{}: {s} is a placeholder, which is not expanded: the value is used as it is written. \
                     Set it with {}{}",
                    display(path),
                    super::ENV_PREFIX,
                    var.join("_")
                ));
            }
            Value::Object(m) => {
                for (k, c) in m {
                    path.push(Seg::Key(k.clone()));
                    go(c, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    go(c, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = vec![];
    go(tree, &mut vec![], &mut out);
    out
}
