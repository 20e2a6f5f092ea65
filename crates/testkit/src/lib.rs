//! A real Portcullis [`Core`] for tests of its rules without HTTP: an in-memory SQLite
//! [`SqlStore`] (migrated, so the production SQL runs), a [`ManualClock`] the test sets and
//! moves, cheap password hashing, and a [`CallerBuilder`] for the callers a face passes in (a
//! native app or a browser, signed in or not). A flow rule tested here takes milliseconds;
//! how the same rule answers on the wire stays tested in `crates/server/tests/api`.
//!
//! ```no_run
//! # async fn example() {
//! use portcullis_core::flow::{FlowKind, FlowType};
//! use portcullis_testkit::{CallerBuilder, Kit};
//!
//! let kit = Kit::new().await;
//! let caller = CallerBuilder::api().build();
//! let url = kit.request_url(FlowKind::Login, FlowType::Api);
//! let flow = kit.core.create_login_flow(FlowType::Api, url, false, None, None, &caller, kit.now()).await;
//! kit.clock.advance(std::time::Duration::from_secs(3600)); // the flow has now expired
//! # }
//! ```
//!
//! Test-only (`publish = false`): no production crate depends on it, so the manual clock never
//! reaches a release build. The API tests use the same [`ManualClock`].

// A kit fails the test that uses it by panicking, saying what did not hold.
#![allow(clippy::expect_used, clippy::panic)]

use portcullis_core::config::{ByteSize, Config, Secret};
use portcullis_core::error::{Error, SubmitError, SubmitResult};
use portcullis_core::flow::{Flow, FlowKind, FlowType};
use portcullis_core::identity::Identity;
use portcullis_core::password::Hasher;
use portcullis_core::schema::IdentitySchema;
use portcullis_core::selfservice::{RegistrationMethod, RegistrationSubmit};
use portcullis_core::service::{Authenticated, Caller, Clock, Core};
use portcullis_core::session::Session;
use portcullis_store::SqlStore;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

/// A clock that stands still until the test moves it, so expiry is exact: no sleeping.
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> ManualClock {
        ManualClock(Mutex::new(start))
    }

    pub fn set(&self, to: OffsetDateTime) {
        *self.time() = to;
    }

    pub fn advance(&self, by: Duration) {
        *self.time() += by;
    }

    fn time(&self) -> MutexGuard<'_, OffsetDateTime> {
        // A test that panicked while holding the lock left a valid time behind.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.time()
    }
}

/// Where a kit's clock starts: a fixed instant, so every run sees the same times.
pub const START: OffsetDateTime = time::macros::datetime!(2030-01-01 09:00 UTC);

/// The password [`Kit::register`] gives every account (the default policy accepts it).
pub const PASSWORD: &str = "tangerine violin sleepy";

/// A core on its own in-memory database, with the clock that drives it.
pub struct Kit {
    pub core: Core,
    pub clock: Arc<ManualClock>,
    /// The core's own store, for a test that must change a row behind the use cases' back
    /// (a race the use cases close, say).
    pub store: Arc<SqlStore>,
}

impl Kit {
    /// A kit with the dev-mode configuration.
    pub async fn new() -> Kit {
        Kit::with_config(|_| {}).await
    }

    /// A kit whose dev-mode configuration `tweak` changes first.
    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> Kit {
        let env = [("PORTCULLIS_DSN".to_string(), "sqlite::memory:".to_string())];
        let mut config = Config::load(None, env, true).expect("the dev-mode configuration loads");
        // Cheap hashing keeps a test in milliseconds.
        config.hashers.argon2.memory = ByteSize(256 * 1024);
        config.hashers.argon2.iterations = 1;
        config.secrets.default = vec![Secret::new("the test kit's secret, 32 characters or more")];
        tweak(&mut config);
        let store = SqlStore::connect(&config.dsn)
            .await
            .expect("in-memory SQLite opens");
        store.migrate().await.expect("the SQLite migrations apply");
        let mut schema = IdentitySchema::default_schema().expect("the bundled schema loads");
        schema.id = config.identity.default_schema_id.clone();
        let schemas = HashMap::from([(schema.id.clone(), schema)]);
        let hasher = Hasher::new(&config.hashers).expect("the hasher settings are valid");
        let clock = Arc::new(ManualClock::new(START));
        let store = Arc::new(store);
        let core = Core::new(config, store.clone(), hasher, schemas, clock.clone());
        Kit { core, clock, store }
    }

    /// The kit's time, which only moves when the test moves it.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The URL a face would record as the flow's `request_url`.
    pub fn request_url(&self, kind: FlowKind, flow_type: FlowType) -> String {
        let ty = match flow_type {
            FlowType::Api => "api",
            FlowType::Browser => "browser",
        };
        format!(
            "{}self-service/{}/{ty}",
            self.core.public_url(),
            kind.as_str()
        )
    }

    /// Registers `email` (with [`PASSWORD`]) through a native registration flow, now.
    pub async fn register(&self, email: &str) -> Authenticated {
        let caller = CallerBuilder::api().build();
        let url = self.request_url(FlowKind::Registration, FlowType::Api);
        let flow = self
            .core
            .create_registration_flow(FlowType::Api, url, None, &caller, self.now())
            .await
            .expect("a registration flow starts");
        let submit = RegistrationSubmit {
            method: RegistrationMethod::Password {
                password: PASSWORD.into(),
            },
            traits: json!({ "email": email, "name": { "first": "Ada", "last": "Lovelace" } }),
            form: false,
            csrf_token: None,
        };
        match self
            .core
            .submit_registration(flow.id, submit, &caller, self.now())
            .await
        {
            Ok(done) => done,
            Err(e) => panic!("registering {email}: {e:?}"),
        }
    }

    /// The session of `token` as a face resolves it for a request now.
    pub async fn session(&self, token: &str) -> (Session, Identity) {
        self.core
            .authenticate(token, self.now())
            .await
            .expect("the session token is valid")
    }
}

/// The [`Caller`] a face would pass to the core.
pub struct CallerBuilder(Caller);

impl CallerBuilder {
    /// A native app: no cookies, no `Origin`, no anti-CSRF secret.
    pub fn api() -> CallerBuilder {
        CallerBuilder(Caller::default())
    }

    /// A browser holding an anti-CSRF cookie (a fresh secret) and sending cookies and
    /// `Origin`, as a browser's form post does.
    pub fn browser() -> CallerBuilder {
        CallerBuilder(Caller {
            has_cookies: true,
            has_origin: true,
            csrf_secret: Some(portcullis_core::csrf::new_secret()),
            ..Caller::default()
        })
    }

    /// Signed in with this session (see [`Kit::session`]).
    pub fn signed_in(mut self, (session, identity): (Session, Identity)) -> CallerBuilder {
        self.0.session = Some((session, identity));
        self
    }

    pub fn build(self) -> Caller {
        self.0
    }
}

/// The flow a submit handed back with messages for the user (bad input, a completed flow …);
/// panics on any other outcome.
#[track_caller]
pub fn invalid<T>(result: SubmitResult<T>) -> Flow {
    match result {
        Err(SubmitError::FlowInvalid { flow, .. }) => *flow,
        Err(SubmitError::Refused(e)) => panic!("refused ({e:?}), not handed back"),
        Ok(_) => panic!("the submit succeeded"),
    }
}

/// The error a submit was refused with; panics on any other outcome.
#[track_caller]
pub fn refused<T>(result: SubmitResult<T>) -> Error {
    match result {
        Err(SubmitError::Refused(e)) => e,
        Err(SubmitError::FlowInvalid { flow, .. }) => {
            panic!("handed back with {:?}, not refused", message_ids(&flow))
        }
        Ok(_) => panic!("the submit succeeded"),
    }
}

/// The ids of the flow's own messages (`ui.messages`).
pub fn message_ids(flow: &Flow) -> Vec<u32> {
    flow.ui.messages.iter().map(|m| m.id).collect()
}
