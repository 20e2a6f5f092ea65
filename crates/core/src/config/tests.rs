//! Loading as a whole: sources, overlay, derived defaults and the checks across sections.

use super::*;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn browser_defaults_point_at_the_hosted_ui_and_are_checked() {
    let c = Config::load(None, env(&[("PORTCULLIS_SERVE_PUBLIC_PORT", "4455")]), true).unwrap();
    assert_eq!(c.ui_url(FlowKind::Login), "http://127.0.0.1:4455/ui/login");
    assert_eq!(c.error_ui_url(), "http://127.0.0.1:4455/ui/error");
    assert_eq!(c.after_logout_url(), "http://127.0.0.1:4455/ui/welcome");
    assert_eq!(c.csrf_cookie_name().len(), "csrf_token_".len() + 64);
    assert!(!c.secure_cookies(), "dev mode on plain http");
    let c = Config::load(
        None,
        env(&[
            (
                "PORTCULLIS_SELFSERVICE_FLOWS_LOGIN_AFTER_DEFAULT_BROWSER_RETURN_URL",
                "https://app.example.com/home",
            ),
            (
                "PORTCULLIS_SERVE_PUBLIC_CORS_ALLOWED_ORIGINS",
                r#"["https://app.example.com","https://*.example.org"]"#,
            ),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(c.after_url(FlowKind::Login), "https://app.example.com/home");
    assert_eq!(
        c.after_url(FlowKind::Registration),
        c.selfservice.default_browser_return_url
    );
    for (key, value, complaint) in [
        (
            "PORTCULLIS_UI_ENABLED",
            "false",
            "selfservice.flows.login.ui_url: required",
        ),
        (
            "PORTCULLIS_SERVE_PUBLIC_CORS_ALLOWED_ORIGINS",
            r#"["https://app.example.com/path"]"#,
            "is not an origin",
        ),
        (
            "PORTCULLIS_SELFSERVICE_FLOWS_SETTINGS_UI_URL",
            "/relative",
            "not an absolute http(s) URL",
        ),
        (
            "PORTCULLIS_UI_THEME_COLORS",
            r#"{"primary":"red;} body{display:none"}"#,
            "ui.theme.colors.primary",
        ),
        (
            "PORTCULLIS_SERVE_PUBLIC_CORS_ALLOWED_ORIGINS",
            r#"["*"]"#,
            "cannot be combined with allow_credentials",
        ),
        (
            "PORTCULLIS_SERVE_ADMIN_CORS_ALLOWED_HEADERS",
            r#"["*"]"#,
            "serve.admin.cors.allowed_headers",
        ),
        (
            "PORTCULLIS_SESSION_COOKIE_SAME_SITE",
            "None",
            "None needs an https public URL",
        ),
        (
            "PORTCULLIS_TOKENS_COOKIES_SAME_SITE",
            "Loose",
            "expected Lax, Strict or None",
        ),
    ] {
        let err = Config::load(None, env(&[(key, value)]), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains(complaint), "{key}={value}: {err}");
    }
}

#[test]
fn env_overrides_scalars_and_arrays_as_json() {
    let cfg = Config::load(
        None,
        env(&[
            ("PORTCULLIS_SERVE_PUBLIC_PORT", "5000"),
            ("PORTCULLIS_DSN", "sqlite::memory:"),
            (
                "PORTCULLIS_IDENTITY_SCHEMAS",
                r#"[{"id":"x","url":"file:///tmp/x.json"}]"#,
            ),
            ("PORTCULLIS_SESSION_LIFESPAN", "2h"),
            ("PORTCULLIS_TEST_POSTGRES_URL", "ignored"),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(cfg.serve.public.port, 5000);
    assert_eq!(cfg.identity.schemas[0].id, "x");
    assert_eq!(cfg.session.lifespan.0, Duration::from_secs(7200));
    assert_eq!(cfg.serve.public.base_url, "http://127.0.0.1:5000/");
}

#[test]
fn unknown_env_key_is_an_error_naming_it() {
    let err = Config::load(None, env(&[("PORTCULLIS_SERVE_PUBLIK_PORT", "1")]), true).unwrap_err();
    assert!(
        err.to_string().contains("PORTCULLIS_SERVE_PUBLIK_PORT"),
        "{err}"
    );
}

#[test]
fn unknown_file_key_and_bad_value_name_the_path() {
    let dir = std::env::temp_dir().join(format!("pc-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("a.yml");
    std::fs::write(&f, "serve:\n  public:\n    prot: 1\n").unwrap();
    let err = Config::load(Some(f.to_str().unwrap()), vec![], true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("serve.public.prot"), "{err}");
    std::fs::write(&f, "session:\n  lifespan: forever\n").unwrap();
    let err = Config::load(Some(f.to_str().unwrap()), vec![], true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("session.lifespan") && err.contains("24h"),
        "{err}"
    );
    std::fs::write(&f, "serve:\n  admin:\n    port: high\n").unwrap();
    let err = Config::load(Some(f.to_str().unwrap()), vec![], true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("serve.admin.port"), "{err}");
}

#[test]
fn production_mode_requires_secrets_and_https() {
    let err = Config::load(None, env(&[("PORTCULLIS_DSN", "sqlite::memory:")]), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("serve.public.base_url"), "{err}");
    let err = Config::load(
        None,
        env(&[
            ("PORTCULLIS_DSN", "sqlite::memory:"),
            (
                "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
                "https://id.example.com/",
            ),
        ]),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("secrets.default"), "{err}");
}

#[test]
fn token_settings_are_checked_and_the_shared_secret_redacted() {
    let err = Config::load(None, env(&[("PORTCULLIS_TOKENS_ALGORITHM", "HS256")]), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokens.hs256_secret"), "{err}");
    let err = Config::load(None, env(&[("PORTCULLIS_TOKENS_ALGORITHM", "none")]), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokens.algorithm"), "{err}");
    for claim in ["token_type", "aud", "user_id", "sub"] {
        let tpl =
            format!(r#"{{"api":{{"ttl":"1m","claims":{{"{claim}":"identity.traits.email"}}}}}}"#);
        let err = Config::load(
            None,
            env(&[("PORTCULLIS_SESSION_WHOAMI_TOKENIZER_TEMPLATES", &tpl)]),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(&format!("claims.{claim}")), "{err}");
    }
    let secret = "a shared secret of more than 32 chars";
    let cfg = Config::load(
        None,
        env(&[
            ("PORTCULLIS_TOKENS_ALGORITHM", "HS256"),
            ("PORTCULLIS_TOKENS_HS256_SECRET", secret),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(cfg.tokens.issuer, "http://127.0.0.1:4433");
    assert!(!cfg.redacted_yaml().contains(secret));
}

#[test]
fn dev_mode_defaults_to_an_embedded_sqlite_file() {
    let cfg = Config::load(None, vec![], true).unwrap();
    assert_eq!(cfg.dsn, "sqlite://portcullis.sqlite");
    assert_eq!(cfg.serve.public.port, 4433);
    assert_eq!(cfg.serve.admin.port, 4434);
}

#[test]
fn choices_are_refused_with_the_key_and_the_allowed_values() {
    for (key, value, complaint) in [
        (
            "PORTCULLIS_HASHERS_ALGORITHM",
            "scrypt",
            "hashers.algorithm: \"scrypt\" is not supported: expected \"argon2\" or \"bcrypt\"",
        ),
        (
            "PORTCULLIS_LOG_FORMAT",
            "xml",
            "log.format: \"xml\": expected \"text\" or \"json\"",
        ),
        (
            "PORTCULLIS_LOG_LEVEL",
            "loud",
            "log.level: \"loud\" is not a level",
        ),
        (
            "PORTCULLIS_TOKENS_ALGORITHM",
            "es256",
            "tokens.algorithm: \"es256\" is not supported: expected ES256, EdDSA, RS256 or HS256",
        ),
        (
            "PORTCULLIS_WEBHOOKS_ENDPOINTS",
            r#"[{"id":"ep_a","url":"https://h.example/","secret":"whsec_AAAA","format":"svix"}]"#,
            "format: \"svix\": expected \"clerk\" or \"native\"",
        ),
    ] {
        let err = Config::load(None, env(&[(key, value)]), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains(complaint), "{key}={value}: {err}");
    }
    let c = Config::load(
        None,
        env(&[
            ("PORTCULLIS_SESSION_COOKIE_SAME_SITE", "strict"),
            ("PORTCULLIS_LOG_LEVEL", "DEBUG"),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(c.session.cookie.same_site, SameSite::Strict);
    assert_eq!(c.log.level, LogLevel::Debug);
}

#[test]
fn secrets_come_from_the_environment_and_print_redacted() {
    let key = "sk_test_0123456789abcdefghij";
    let default = "0123456789abcdef0123456789abcdef-default";
    let hook = "whsec_c2VjcmV0IHNpZ25pbmcga2V5";
    let c = Config::load(
        None,
        env(&[
            ("PORTCULLIS_CLERK_SECRET_KEYS", &format!(r#"["{key}"]"#)),
            ("PORTCULLIS_SECRETS_DEFAULT", &format!(r#"["{default}"]"#)),
            (
                "PORTCULLIS_WEBHOOKS_ENDPOINTS",
                &format!(r#"[{{"id":"ep_a","url":"https://h.example/","secret":"{hook}"}}]"#),
            ),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(c.clerk.secret_keys[0].expose(), key);
    assert_eq!(c.secrets.default[0].expose(), default);
    assert_eq!(c.webhooks.endpoints[0].secret.expose(), hook);
    let printed = format!("{}\n{c:?}", c.redacted_yaml());
    for secret in [key, default, hook] {
        assert!(!printed.contains(secret), "{secret} leaked");
    }
    assert!(printed.contains("<redacted>"));
}

#[test]
fn dev_mode_comes_only_from_the_flag() {
    let dir = std::env::temp_dir().join(format!("pc-cfg-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("dev.yml");
    std::fs::write(&f, "dev: true\n").unwrap();
    for dev_flag in [false, true] {
        let err = Config::load(Some(f.to_str().unwrap()), vec![], dev_flag)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dev:") && err.contains("--dev flag"), "{err}");
    }
    let err = Config::load(None, env(&[("PORTCULLIS_DEV", "true")]), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PORTCULLIS_DEV") && err.contains("--dev flag"),
        "{err}"
    );
    let cfg = Config::load(None, vec![], true).unwrap();
    assert!(cfg.dev);
    assert!(
        !cfg.redacted_yaml().contains("dev:"),
        "not printed as if it were a key"
    );
}

#[test]
fn config_check_output_hides_dsn_and_webhook_url_credentials() {
    let c = Config::load(
        None,
        env(&[
            (
                "PORTCULLIS_DSN",
                "postgres://u:userinfo-pw@db.example/app?password=query-pw&sslpassword=ssl-pw&sslkey=/k/client.key",
            ),
            (
                "PORTCULLIS_WEBHOOKS_ENDPOINTS",
                r#"[{"id":"ep_a","url":"https://alice:url-pw@h.example/in?token=url-token","secret":"whsec_AAAA"}]"#,
            ),
        ]),
        true,
    )
    .unwrap();
    let printed = c.redacted_yaml();
    for secret in [
        "userinfo-pw",
        "query-pw",
        "ssl-pw",
        "client.key",
        "alice",
        "url-pw",
        "url-token",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(printed.contains("db.example/app") && printed.contains("h.example/in"));
    assert!(
        c.dsn.contains("query-pw"),
        "the loaded value itself is intact"
    );
}

#[test]
fn account_enumeration_mitigation_needs_sign_up_to_wait_for_verification() {
    let on = ("PORTCULLIS_SECURITY_ACCOUNT_ENUMERATION_MITIGATE", "true");
    // With the default hooks registration signs in at once: refused, naming the keys.
    let err = Config::load(None, env(&[on]), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("security.account_enumeration.mitigate")
            && err.contains("selfservice.flows.registration.after.password.hooks"),
        "{err}"
    );
    let no_session = (
        "PORTCULLIS_SELFSERVICE_FLOWS_REGISTRATION_AFTER_PASSWORD_HOOKS",
        "[]",
    );
    let err = Config::load(None, env(&[on, no_session]), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("require_verified_address"), "{err}");
    let login_waits = (
        "PORTCULLIS_SELFSERVICE_FLOWS_LOGIN_AFTER_PASSWORD_HOOKS",
        r#"[{"hook":"require_verified_address"}]"#,
    );
    assert!(Config::load(None, env(&[on, no_session, login_waits]), true).is_ok());
    // Without verification there is nothing for sign-up to wait for.
    let no_verification = ("PORTCULLIS_SELFSERVICE_FLOWS_VERIFICATION_ENABLED", "false");
    let err = Config::load(
        None,
        env(&[on, no_session, login_waits, no_verification]),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("selfservice.flows.verification.enabled"),
        "{err}"
    );
    let off = ("PORTCULLIS_SECURITY_ACCOUNT_ENUMERATION_MITIGATE", "false");
    assert!(Config::load(None, env(&[off]), true).is_ok());
}

#[test]
fn cookies_get_the_host_prefix_only_where_browsers_keep_it() {
    let https = (
        "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
        "https://auth.example.com/",
    );
    let c = Config::load(None, env(&[https]), true).unwrap();
    assert!(c.csrf_cookie_name().starts_with("__Host-csrf_token_"));
    // A cookie shared with subdomains cannot be a __Host- cookie; plain http cannot either.
    let shared = ("PORTCULLIS_SESSION_COOKIE_DOMAIN", "example.com");
    let c = Config::load(None, env(&[https, shared]), true).unwrap();
    assert!(c.csrf_cookie_name().starts_with("csrf_token_"));
    let c = Config::load(None, env(&[]), true).unwrap();
    assert!(c.csrf_cookie_name().starts_with("csrf_token_"));
    // The session cookie's name is the operator's; a prefixed name browsers would drop is refused.
    let host = ("PORTCULLIS_SESSION_COOKIE_NAME", "__Host-session");
    assert!(Config::load(None, env(&[https, host]), true).is_ok());
    for bad in [vec![host], vec![https, host, shared]] {
        let err = Config::load(None, env(&bad), true).unwrap_err().to_string();
        assert!(err.contains("session.cookie.name"), "{err}");
    }
    let secure = ("PORTCULLIS_SESSION_COOKIE_NAME", "__Secure-session");
    assert!(Config::load(None, env(&[https, secure, shared]), true).is_ok());
    assert!(Config::load(None, env(&[secure]), true).is_err());
}

#[test]
fn admin_api_keys_come_from_the_environment_as_hashes_and_print_as_hashes() {
    let hash = crate::admin_keys::KeyHash::of("pc_admin_example").to_string();
    let c = Config::load(
        None,
        env(&[(
            "PORTCULLIS_SERVE_ADMIN_API_KEYS",
            &format!(r#"[{{"id":"ops","hash":"{hash}"}}]"#),
        )]),
        true,
    )
    .unwrap();
    assert_eq!(c.serve.admin.api_keys[0].id, "ops");
    assert_eq!(c.serve.admin.api_keys[0].hash.to_string(), hash);
    // A hash of a 256-bit random key is no secret: printed as configured, so an operator can
    // tell which keys a server accepts.
    let printed = c.redacted_yaml();
    assert!(
        printed.contains("id: ops") && printed.contains(&hash),
        "{printed}"
    );
    assert!(Config::load(None, vec![], true)
        .unwrap()
        .redacted_yaml()
        .contains("api_keys: []"));
    for (value, needle) in [
        (
            r#"[{"id":"ops","hash":"ba7816bf"}]"#,
            "serve.admin.api_keys[0].hash",
        ),
        (r#"[{"id":"ops","hash":"pc_admin_example"}]"#, "sha256:"),
        (
            &format!(r#"[{{"id":"ops","hash":"{hash}","key":"x"}}]"#),
            "unknown field",
        ),
        (
            &format!(r#"[{{"id":"has space","hash":"{hash}"}}]"#),
            "serve.admin.api_keys.0.id",
        ),
        (
            &format!(
                r#"[{{"id":"a","hash":"{hash}"}},{{"id":"a","hash":"{}"}}]"#,
                crate::admin_keys::KeyHash::of("other")
            ),
            "listed twice",
        ),
        (
            &format!(r#"[{{"id":"a","hash":"{hash}"}},{{"id":"b","hash":"{hash}"}}]"#),
            "same key",
        ),
    ] {
        let err = Config::load(
            None,
            env(&[("PORTCULLIS_SERVE_ADMIN_API_KEYS", value)]),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{value}: {err}");
    }
    // The public port has no keys.
    let err = Config::load(
        None,
        env(&[("PORTCULLIS_SERVE_PUBLIC_API_KEYS", "[]")]),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("PORTCULLIS_SERVE_PUBLIC_API_KEYS"), "{err}");
}

#[test]
fn webauthn_relying_parties_default_to_the_public_host_and_must_fit_their_origins() {
    let c = Config::load(
        None,
        env(&[
            (
                "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
                "https://id.example.com/",
            ),
            ("PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_ENABLED", "true"),
            (
                "PORTCULLIS_SELFSERVICE_FLOWS_LOGIN_UI_URL",
                "https://app.example.com/login",
            ),
        ]),
        true,
    )
    .unwrap();
    let rp = &c.selfservice.methods.passkey.config.rp;
    assert_eq!(rp.id, "id.example.com");
    assert_eq!(rp.display_name, "id.example.com");
    // The public origin; a page on another host only with a parent domain as the RP id.
    assert_eq!(rp.origins, vec!["https://id.example.com".to_string()]);
    let c = Config::load(
        None,
        env(&[
            (
                "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
                "https://id.example.com/",
            ),
            ("PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_ENABLED", "true"),
            (
                "PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_CONFIG_RP_ID",
                "example.com",
            ),
            (
                "PORTCULLIS_SELFSERVICE_FLOWS_LOGIN_UI_URL",
                "https://app.example.com/login",
            ),
        ]),
        true,
    )
    .unwrap();
    let rp = &c.selfservice.methods.passkey.config.rp;
    assert_eq!(
        rp.origins,
        vec![
            "https://id.example.com".to_string(),
            "https://app.example.com".to_string()
        ]
    );
    let err = Config::load(
        None,
        env(&[
            (
                "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
                "https://id.example.com/",
            ),
            ("PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_ENABLED", "true"),
            (
                "PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_CONFIG_RP_ID",
                "id.example.com",
            ),
            (
                "PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_CONFIG_RP_ORIGINS",
                "[\"https://app.example.com\"]",
            ),
        ]),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("selfservice.methods.passkey.config.rp.origins: \"https://app.example.com\" is not on the relying party \"id.example.com\""),
        "{err}"
    );
    let ok = Config::load(
        None,
        env(&[
            (
                "PORTCULLIS_SERVE_PUBLIC_BASE_URL",
                "https://id.example.com/",
            ),
            ("PORTCULLIS_SELFSERVICE_METHODS_WEBAUTHN_ENABLED", "true"),
            (
                "PORTCULLIS_SELFSERVICE_METHODS_WEBAUTHN_CONFIG_RP_ID",
                "example.com",
            ),
            (
                "PORTCULLIS_SELFSERVICE_METHODS_WEBAUTHN_CONFIG_RP_ORIGIN",
                "https://app.example.com",
            ),
        ]),
        true,
    )
    .unwrap();
    assert_eq!(
        ok.selfservice.methods.webauthn.config.rp.origins,
        vec!["https://app.example.com".to_string()],
        "Kratos's older single origin"
    );
}

#[test]
fn mitigated_enumeration_keeps_every_sign_up_method_from_signing_in_at_once() {
    // The mitigation needs verification and no session after a password sign-up; a passkey
    // sign-up is held to the same rule.
    let base = [
        ("PORTCULLIS_SECURITY_ACCOUNT_ENUMERATION_MITIGATE", "true"),
        ("PORTCULLIS_SELFSERVICE_FLOWS_VERIFICATION_ENABLED", "true"),
        (
            "PORTCULLIS_SELFSERVICE_FLOWS_REGISTRATION_AFTER_PASSWORD_HOOKS",
            "[]",
        ),
        (
            "PORTCULLIS_SELFSERVICE_FLOWS_LOGIN_AFTER_PASSWORD_HOOKS",
            "[{\"hook\": \"require_verified_address\"}]",
        ),
    ];
    assert!(Config::load(None, env(&base), true).is_ok());
    let mut with_passkeys = base.to_vec();
    with_passkeys.push(("PORTCULLIS_SELFSERVICE_METHODS_PASSKEY_ENABLED", "true"));
    let err = Config::load(None, env(&with_passkeys), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("selfservice.flows.registration.after.passkey.hooks without `session`"),
        "{err}"
    );
    with_passkeys.push((
        "PORTCULLIS_SELFSERVICE_FLOWS_REGISTRATION_AFTER_PASSKEY_HOOKS",
        "[]",
    ));
    assert!(Config::load(None, env(&with_passkeys), true).is_ok());
}

#[test]
fn session_claims_cannot_replace_the_claims_every_token_has() {
    let load = |claims: &str| {
        Config::load(
            None,
            env(&[("PORTCULLIS_CLERK_SESSION_CLAIMS", claims)]),
            true,
        )
    };
    let ok = load(r#"{"role": "{{user.public_metadata.role}}"}"#).unwrap();
    assert_eq!(
        ok.clerk.session_claims["role"],
        "{{user.public_metadata.role}}"
    );
    let err = load(r#"{"sub": "{{user.external_id}}"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clerk.session_claims.sub: a claim every session token has"),
        "{err}"
    );
}

#[test]
fn social_providers_portcullis_does_not_speak_are_refused_only_while_the_method_is_on() {
    let provider = |kind: &str, issuer: &str| {
        format!(
            r#"[{{"id":"p","provider":"{kind}","client_id":"c","mapper_url":"base64://e30=","issuer_url":"{issuer}"}}]"#
        )
    };
    let load = |enabled: &str, providers: String| {
        Config::load(
            None,
            env(&[
                ("PORTCULLIS_SELFSERVICE_METHODS_OIDC_ENABLED", enabled),
                (
                    "PORTCULLIS_SELFSERVICE_METHODS_OIDC_CONFIG_PROVIDERS",
                    &providers,
                ),
            ]),
            true,
        )
    };
    let err = load("true", provider("microsoft", ""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("providers[0].microsoft_tenant: required for the microsoft provider"),
        "{err}"
    );
    let err = load("true", provider("gitlab", ""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("providers[0].provider: \"gitlab\" is not supported by Portcullis yet (supported: generic, google, github, apple, kakao, naver)"),
        "{err}"
    );
    // Off, it parses (a file that lists it still loads).
    assert!(load("false", provider("gitlab", "")).is_ok());
    // Apple signs its client secrets with the team's key: the key must be there, and be one.
    let err = load("true", provider("apple", "")).unwrap_err().to_string();
    assert!(
        err.contains("providers[0].apple_team_id: required for the apple provider"),
        "{err}"
    );
    let apple = |key: &str| {
        format!(
            r#"[{{"id":"apple","provider":"apple","client_id":"com.example.web","mapper_url":"base64://e30=","apple_team_id":"T","apple_private_key_id":"K","apple_private_key":{key:?}}}]"#
        )
    };
    let err = load("true", apple("not a key")).unwrap_err().to_string();
    assert!(
        err.contains("providers[0].apple_private_key: not a PEM P-256 private key"),
        "{err}"
    );
    assert!(load("true", apple(&apple_test_key(false))).is_ok());
    // A key on another curve cannot sign ES256.
    let err = load("true", apple(&apple_test_key(true)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a PEM P-256 private key"), "{err}");
    for kind in ["github", "kakao", "naver"] {
        assert!(load("true", provider(kind, "")).is_ok(), "{kind}");
    }
    let err = load("true", provider("generic", ""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("providers[0].issuer_url: required for the generic provider"),
        "{err}"
    );
    assert!(load("true", provider("generic", "https://idp.example")).is_ok());
    assert!(load("true", provider("google", "")).is_ok());
}

/// A P-256 key in Apple's `.p8` form (PKCS#8 PEM), made for the test (P-384 with `other_curve`).
fn apple_test_key(other_curve: bool) -> String {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    use base64::Engine;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let alg = if other_curve {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let der = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}
