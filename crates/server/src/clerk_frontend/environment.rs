//! `GET /v1/environment`: the instance as clerk-js's components read it, built from the
//! configuration once. Sign-in and sign-up by e-mail address and password, with the address
//! verified by an e-mailed code; everything else (phone numbers, usernames, web3, social
//! buttons, organizations, billing, captchas) off. Every block is sent whole: clerk-js
//! replaces its defaults block by block, and a partial one (such as `commerce_settings`)
//! breaks its parser (FAPI-NOTES §3.3).

use portcullis_core::config::Config;
use serde_json::{json, Value};

/// An attribute of `user_settings.attributes` that is not a way to sign in.
fn attribute(enabled: bool, required: bool) -> Value {
    json!({
        "enabled": enabled, "required": required, "used_for_first_factor": false,
        "first_factors": [], "used_for_second_factor": false, "second_factors": [],
        "verifications": [], "verify_at_sign_up": false, "immutable": false,
    })
}

pub(super) fn environment(config: &Config) -> Value {
    let name = if config.ui.theme.name.is_empty() {
        "Portcullis"
    } else {
        config.ui.theme.name.as_str()
    };
    let home = &config.selfservice.default_browser_return_url;
    let login = config.ui_url(portcullis_core::flow::FlowKind::Login);
    let registration = config.ui_url(portcullis_core::flow::FlowKind::Registration);
    let settings = config.ui_url(portcullis_core::flow::FlowKind::Settings);
    let policy = &config.selfservice.methods.password.config;
    let mut attributes = serde_json::Map::new();
    for key in ["phone_number", "username", "web3_wallet", "passkey"] {
        attributes.insert(key.into(), attribute(false, false));
    }
    // The second factors the Kratos configuration enables: `<UserProfile/>` sets them up
    // (`me_factors.rs`), and each sign-in offers the ones its account has
    // (`supported_second_factors`).
    let methods = &config.selfservice.methods;
    for (key, factor, on) in [
        ("authenticator_app", "totp", methods.totp.is_enabled()),
        (
            "backup_code",
            "backup_code",
            methods.lookup_secret.is_enabled(),
        ),
    ] {
        let second: &[&str] = if on { &[factor] } else { &[] };
        let verifications: &[&str] = if on && factor == "totp" {
            &["totp"]
        } else {
            &[]
        };
        let a = json!({
            "enabled": on, "required": false, "used_for_first_factor": false,
            "first_factors": [], "used_for_second_factor": on, "second_factors": second,
            "verifications": verifications, "verify_at_sign_up": false, "immutable": false,
        });
        attributes.insert(key.into(), a);
    }
    // Signing in by a mailed code is the Kratos code login's (`code.passwordless_enabled`).
    let code_sign_in = config.selfservice.methods.code.passwordless_enabled;
    let first_factors: &[&str] = if code_sign_in { &["email_code"] } else { &[] };
    attributes.insert(
        "email_address".into(),
        json!({
            "enabled": true, "required": true, "used_for_first_factor": true,
            "first_factors": first_factors, "used_for_second_factor": false, "second_factors": [],
            "verifications": ["email_code"], "verify_at_sign_up": true, "immutable": false,
        }),
    );
    for key in ["first_name", "last_name"] {
        attributes.insert(key.into(), attribute(true, false));
    }
    attributes.insert("password".into(), attribute(true, true));
    json!({
        "object": "environment",
        "id": "env_portcullis",
        "auth_config": {
            "object": "auth_config",
            "id": "aac_portcullis",
            "single_session_mode": true,
            "claimed_at": null,
            "reverification": false,
        },
        "display_config": {
            "object": "display_config",
            "id": "display_config_portcullis",
            "instance_environment_type": "production",
            "application_name": name,
            "preferred_sign_in_strategy": "password",
            "branded": false,
            "show_devmode_warning": false,
            "captcha_public_key": null,
            "captcha_public_key_invisible": null,
            "captcha_widget_type": null,
            "captcha_provider": "turnstile",
            "captcha_oauth_bypass": [],
            "captcha_heartbeat": false,
            "home_url": home,
            "sign_in_url": login,
            "sign_up_url": registration,
            "user_profile_url": settings,
            "after_sign_in_url": home,
            "after_sign_up_url": home,
            "after_sign_out_one_url": login,
            "after_sign_out_all_url": login,
            "after_switch_session_url": home,
            "logo_image_url": config.ui.theme.logo_url,
            "favicon_image_url": "",
            "support_email": null,
            "terms_url": null,
            "privacy_policy_url": null,
            "theme": {},
        },
        "user_settings": {
            "attributes": attributes,
            "sign_in": { "second_factor": { "enabled": false, "required": false } },
            "sign_up": {
                "mode": "public", "progressive": true, "captcha_enabled": false,
                "legal_consent_enabled": false, "allowlist_only": false,
                "custom_action_required": false, "mfa": { "required": false },
            },
            "restrictions": {
                "allowlist": { "enabled": false }, "blocklist": { "enabled": false },
                "block_email_subaddresses": { "enabled": false },
                "block_disposable_email_domains": { "enabled": false },
                "ignore_dots_for_gmail_addresses": { "enabled": false },
            },
            "username_settings": { "min_length": 4, "max_length": 64 },
            "social": {},
            "enterprise_sso": { "enabled": false },
            "saml": { "enabled": false },
            "passkey_settings": { "allow_autofill": false, "show_sign_in_button": false },
            "password_settings": {
                "min_length": policy.min_password_length.max(8),
                "max_length": policy.max_password_length.min(72),
                "disable_hibp": true,
                "show_zxcvbn": false,
                "min_zxcvbn_strength": 0,
                "require_special_char": false,
                "require_numbers": false,
                "require_uppercase": false,
                "require_lowercase": false,
                "allowed_special_characters": "",
                "enforce_hibp_on_sign_in": false,
            },
            "actions": { "delete_self": config.clerk.frontend.delete_self, "create_organization": false },
            "attack_protection": {
                "enumeration_protection": { "enabled": config.security.account_enumeration.mitigate },
                "user_lockout": { "enabled": false },
                "pii": { "enabled": false },
                "email_link": { "require_same_client": false },
            },
        },
        "organization_settings": { "enabled": false },
        "api_keys_settings": { "user_api_keys_enabled": false, "orgs_api_keys_enabled": false },
        "protect_config": { "loaders": [] },
        "maintenance_mode": false,
        "client_debug_mode": false,
        "partitioned_cookies": false,
    })
}
