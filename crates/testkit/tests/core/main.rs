//! The core's rules on a real core without HTTP: an in-memory database and a manual clock
//! (`portcullis-testkit`), so each test takes milliseconds and expiry is exact. How the same
//! rules answer on the wire is tested in `crates/server/tests/api`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails by panicking

mod clerk;
mod courier;
mod flows;
mod settings;
mod tokens;

use portcullis_core::selfservice::{
    LoginMethod, LoginSubmit, RegistrationMethod, RegistrationSubmit,
};
use portcullis_testkit::PASSWORD;
use serde_json::json;

/// A password login as `identifier`, with the browser's anti-CSRF token if it has one.
pub fn password_login(identifier: &str, csrf_token: Option<String>) -> LoginSubmit {
    LoginSubmit {
        method: LoginMethod::Password {
            identifier: identifier.into(),
            password: PASSWORD.into(),
        },
        csrf_token,
    }
}

/// A password registration of `email`, with the browser's anti-CSRF token if it has one.
pub fn password_registration(email: &str, csrf_token: Option<String>) -> RegistrationSubmit {
    RegistrationSubmit {
        method: RegistrationMethod::Password {
            password: PASSWORD.into(),
        },
        traits: json!({ "email": email, "name": { "first": "Grace", "last": "Hopper" } }),
        form: false,
        csrf_token,
    }
}
