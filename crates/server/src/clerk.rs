//! The Clerk Backend API subset under `/v1` on the admin port, so `clerk-backend-api` clients
//! manage the same identities the Kratos APIs show. Users are identities: `user_<uuid hex>`
//! ids, `public_metadata` ↔ `metadata_public`, `private_metadata` ↔ `metadata_admin`. Every
//! write goes through the core's admin use cases, so validation and events are the same.
//!
//! Errors use Clerk's envelope `{errors: [{message, long_message, code}], clerk_trace_id}`.

use crate::AppState;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::clerk::{replace_body, Block};
use portcullis_core::identity::Identity;
use portcullis_core::session::Session;
use portcullis_core::store::SessionQuery;
use portcullis_core::webhooks::{clerk_user, clerk_user_id};
use portcullis_core::Error;
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/count", get(count_users))
        .route(
            "/v1/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route(
            "/v1/users/{id}/metadata",
            axum::routing::patch(merge_metadata).put(replace_metadata),
        )
        .route(
            "/v1/users/{id}/ban",
            post(|s, p| set_block(s, p, Block::Banned, true)),
        )
        .route(
            "/v1/users/{id}/unban",
            post(|s, p| set_block(s, p, Block::Banned, false)),
        )
        .route(
            "/v1/users/{id}/lock",
            post(|s, p| set_block(s, p, Block::Locked, true)),
        )
        .route(
            "/v1/users/{id}/unlock",
            post(|s, p| set_block(s, p, Block::Locked, false)),
        )
        .route("/v1/users/{id}/verify_password", post(verify_password))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{id}/revoke", post(revoke_session))
        .route("/v1/jwks", get(jwks))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_secret_key,
        ))
}

/// A Clerk error response.
pub struct ClerkError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn cerr(status: StatusCode, code: &'static str, message: impl Into<String>) -> ClerkError {
    ClerkError {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for ClerkError {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{ "message": self.message, "long_message": self.message, "code": self.code }],
            "clerk_trace_id": Uuid::new_v4().simple().to_string(),
        });
        (self.status, Json(body)).into_response()
    }
}

/// The one mapping of core errors to Clerk's codes. A taken identifier (a unique value of
/// the store) is Clerk's `form_identifier_exists`; every other refusal is an invalid parameter.
impl From<Error> for ClerkError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => {
                cerr(StatusCode::NOT_FOUND, "resource_not_found", "not found")
            }
            Error::Conflict { reason } => cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_identifier_exists",
                reason,
            ),
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error on the Clerk face");
                cerr(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_clerk_error",
                    "There was an internal error on our servers.",
                )
            }
            e @ Error::Token(_) => cerr(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            e => cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_invalid",
                e.to_string(),
            ),
        }
    }
}

impl From<portcullis_core::store::StoreError> for ClerkError {
    fn from(e: portcullis_core::store::StoreError) -> Self {
        Error::from(e).into()
    }
}

type CResult<T> = Result<T, ClerkError>;

/// `Authorization: Bearer sk_…`: a configured key or one created through the admin API.
async fn require_secret_key(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| k.starts_with("sk_"));
    let Some(presented) = presented else {
        return cerr(
            StatusCode::UNAUTHORIZED,
            "authentication_invalid",
            "Unauthorized request: a secret key (Bearer sk_…) is required.",
        )
        .into_response();
    };
    let ok = match st.core.clerk_key_valid(presented).await {
        Ok(ok) => ok,
        Err(e) => return ClerkError::from(e).into_response(),
    };
    if !ok {
        return cerr(
            StatusCode::UNAUTHORIZED,
            "authentication_invalid",
            "Unauthorized request: the secret key is not valid.",
        )
        .into_response();
    }
    next.run(req).await
}

fn identity_id(user_id: &str) -> CResult<Uuid> {
    user_id
        .strip_prefix("user_")
        .and_then(|hex| Uuid::parse_str(hex).ok())
        .ok_or_else(|| {
            cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                format!("No user was found with id {user_id}."),
            )
        })
}

async fn load(st: &AppState, user_id: &str) -> CResult<Identity> {
    let id = identity_id(user_id)?;
    match st.core.admin_get_identity(id).await {
        Err(Error::NotFound { .. }) => Err(cerr(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            format!("No user was found with id {user_id}."),
        )),
        found => Ok(found?),
    }
}

fn user(st: &AppState, i: &Identity) -> Value {
    clerk_user(i, &st.core.config().webhooks.clerk_mapping)
}

fn pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn values(p: &[(String, String)], key: &str) -> Vec<String> {
    p.iter()
        .filter(|(k, _)| k == key || k == &format!("{key}[]"))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The identities matching Clerk's list filters, in the requested order.
async fn filtered(st: &AppState, raw: &Option<String>) -> CResult<Vec<Value>> {
    let p = pairs(raw);
    let emails: Vec<String> = values(&p, "email_address")
        .iter()
        .map(|e| e.to_lowercase())
        .collect();
    let ids = values(&p, "user_id");
    let external = values(&p, "external_id");
    let usernames = values(&p, "username");
    let query = values(&p, "query")
        .into_iter()
        .next()
        .map(|q| q.to_lowercase());
    let mut out = vec![];
    for i in st.core.all_identities().await? {
        let u = user(st, &i);
        let s = |k: &str| u.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let user_emails: Vec<String> = u["email_addresses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["email_address"].as_str().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        if !emails.is_empty() && !user_emails.iter().any(|e| emails.contains(e)) {
            continue;
        }
        if !ids.is_empty() && !ids.contains(&s("id")) {
            continue;
        }
        if !external.is_empty() && !external.contains(&s("external_id")) {
            continue;
        }
        if !usernames.is_empty() && !usernames.contains(&s("username")) {
            continue;
        }
        if let Some(q) = &query {
            let hay = [
                s("id"),
                s("first_name"),
                s("last_name"),
                s("username"),
                s("external_id"),
            ]
            .join(" ")
            .to_lowercase()
                + " "
                + &user_emails.join(" ");
            if !hay.contains(q.as_str()) {
                continue;
            }
        }
        out.push(u);
    }
    let order = values(&p, "order_by")
        .into_iter()
        .next()
        .unwrap_or_else(|| "-created_at".into());
    let (desc, field) = match order.strip_prefix('-') {
        Some(f) => (true, f.to_string()),
        None => (false, order.trim_start_matches('+').to_string()),
    };
    if ![
        "created_at",
        "updated_at",
        "email_address",
        "first_name",
        "last_name",
        "username",
    ]
    .contains(&field.as_str())
    {
        return Err(cerr(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_value_invalid",
            format!("order_by: unsupported field {field:?}."),
        ));
    }
    let key = |u: &Value| -> (i64, String) {
        match field.as_str() {
            "created_at" | "updated_at" => (u[field.as_str()].as_i64().unwrap_or(0), String::new()),
            "email_address" => (
                0,
                u["email_addresses"][0]["email_address"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ),
            f => (0, u[f].as_str().unwrap_or("").to_string()),
        }
    };
    out.sort_by(|a, b| {
        if desc {
            key(b).cmp(&key(a))
        } else {
            key(a).cmp(&key(b))
        }
    });
    Ok(out)
}

fn number(p: &[(String, String)], key: &str, default: usize, max: usize) -> CResult<usize> {
    match values(p, key).into_iter().next() {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                format!("{key} must be a number up to {max}."),
            )),
        },
    }
}

async fn list_users(State(st): State<AppState>, RawQuery(raw): RawQuery) -> CResult<Json<Value>> {
    let p = pairs(&raw);
    let limit = number(&p, "limit", 10, 500)?.max(1);
    let offset = number(&p, "offset", 0, usize::MAX)?;
    let all = filtered(&st, &raw).await?;
    Ok(Json(Value::Array(
        all.into_iter().skip(offset).take(limit).collect(),
    )))
}

async fn count_users(State(st): State<AppState>, RawQuery(raw): RawQuery) -> CResult<Json<Value>> {
    let n = filtered(&st, &raw).await?.len();
    Ok(Json(json!({ "object": "total_count", "total_count": n })))
}

async fn get_user(State(st): State<AppState>, Path(id): Path<String>) -> CResult<Json<Value>> {
    Ok(Json(user(&st, &load(&st, &id).await?)))
}

fn body_object(body: axum::body::Bytes) -> CResult<Map<String, Value>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(cerr(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "The request body must be a JSON object.",
        )),
    }
}

/// Writes Clerk's name/username fields into traits through the configured mapping.
fn set_trait(traits: &mut Value, path: &str, value: &Value) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = traits;
    for (n, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if n == segs.len() - 1 {
            if value.is_null() || value.as_str() == Some("") {
                obj.remove(*seg);
            } else {
                obj.insert(seg.to_string(), value.clone());
            }
            return;
        }
        cur = obj.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

async fn create_user(State(st): State<AppState>, body: axum::body::Bytes) -> CResult<Json<Value>> {
    let b = body_object(body)?;
    let config = st.core.config();
    let map = &config.webhooks.clerk_mapping;
    let emails: Vec<String> = b
        .get("email_address")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut traits = json!({});
    if let Some(e) = emails.first() {
        set_trait(&mut traits, &map.email, &json!(e));
    }
    for (field, path) in [
        ("first_name", &map.first_name),
        ("last_name", &map.last_name),
        ("username", &map.username),
    ] {
        if let Some(v) = b.get(field) {
            set_trait(&mut traits, path, v);
        }
    }
    let mut identity_body = json!({
        "schema_id": config.identity.default_schema_id,
        "traits": traits,
        "metadata_public": b.get("public_metadata").cloned().unwrap_or(Value::Null),
        "metadata_admin": b.get("private_metadata").cloned().map(without_flags).unwrap_or(Value::Null),
        "external_id": b.get("external_id").cloned().unwrap_or(Value::Null),
        "verifiable_addresses": emails.iter().map(|e| json!({ "value": e, "verified": true, "via": "email" })).collect::<Vec<_>>(),
    });
    if let Some(p) = b.get("password").and_then(Value::as_str) {
        if let Some(t) = st.core.password_policy_problem(p, &emails) {
            return Err(cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_password_validation_failed",
                t.text,
            ));
        }
        identity_body["credentials"] = json!({ "password": { "config": { "password": p } } });
    } else if let Some(digest) = b.get("password_digest").and_then(Value::as_str) {
        match b.get("password_hasher").and_then(Value::as_str) {
            Some("bcrypt" | "argon2i" | "argon2id") => {}
            other => {
                return Err(cerr(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "form_param_value_invalid",
                    format!(
                        "password_hasher {other:?} is not supported (bcrypt, argon2i, argon2id)."
                    ),
                ))
            }
        }
        identity_body["credentials"] =
            json!({ "password": { "config": { "hashed_password": digest } } });
    }
    let identity = st
        .core
        .admin_create_identity(identity_body, st.core.now())
        .await?;
    Ok(Json(user(&st, &identity)))
}

/// Applies a partial update as a full replace through the core (events, validation).
async fn save(st: &AppState, i: &Identity, password: Option<&str>) -> CResult<Identity> {
    let body = replace_body(i, password);
    Ok(st
        .core
        .admin_replace_identity(i.id, body, st.core.now())
        .await?)
}

async fn update_user(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CResult<Json<Value>> {
    let b = body_object(body)?;
    let mut i = load(&st, &id).await?;
    let map = st.core.config().webhooks.clerk_mapping.clone();
    for (field, path) in [
        ("first_name", &map.first_name),
        ("last_name", &map.last_name),
        ("username", &map.username),
    ] {
        if let Some(v) = b.get(field) {
            set_trait(&mut i.traits, path, v);
        }
    }
    if let Some(v) = b.get("external_id") {
        i.external_id = v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    }
    // Accepted on PATCH up to API version 2025-11-10.
    if let Some(v) = b.get("public_metadata") {
        i.metadata_public = Some(v.clone());
    }
    if let Some(v) = b.get("private_metadata") {
        i.metadata_admin = Some(merge_keeping_flags(i.metadata_admin.take(), v.clone()));
    }
    let password = b.get("password").and_then(Value::as_str);
    if let Some(p) = password {
        let ids: Vec<String> = i
            .credentials
            .get("password")
            .map(|c| c.identifiers.clone())
            .unwrap_or_default();
        if let Some(t) = st.core.password_policy_problem(p, &ids) {
            return Err(cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_password_validation_failed",
                t.text,
            ));
        }
    }
    Ok(Json(user(&st, &save(&st, &i, password).await?)))
}

/// Private metadata as sent by a client, minus the key Portcullis keeps its ban/lock flags in.
fn without_flags(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("clerk");
    }
    v
}

/// Keeps Portcullis's own ban/lock flags when private metadata is replaced.
fn merge_keeping_flags(old: Option<Value>, new: Value) -> Value {
    let flags = old.as_ref().and_then(|o| o.get("clerk")).cloned();
    let mut new = if new.is_object() {
        without_flags(new)
    } else {
        json!({})
    };
    if let (Some(f), Some(o)) = (flags, new.as_object_mut()) {
        o.insert("clerk".into(), f);
    }
    new
}

/// Deep merge; `null` deletes a key at any level.
fn deep_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    if let Some(inner) = t.get_mut(k) {
                        deep_merge(inner, v);
                    }
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn merge_metadata(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CResult<Json<Value>> {
    let b = body_object(body)?;
    let mut i = load(&st, &id).await?;
    if let Some(p) = b.get("public_metadata") {
        let mut m = i.metadata_public.take().unwrap_or_else(|| json!({}));
        deep_merge(&mut m, p);
        i.metadata_public = Some(m);
    }
    if let Some(p) = b.get("private_metadata") {
        let mut m = i.metadata_admin.take().unwrap_or_else(|| json!({}));
        let mut patch = p.clone();
        if let Some(o) = patch.as_object_mut() {
            o.remove("clerk");
        }
        deep_merge(&mut m, &patch);
        i.metadata_admin = Some(m);
    }
    Ok(Json(user(&st, &save(&st, &i, None).await?)))
}

async fn replace_metadata(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CResult<Json<Value>> {
    let b = body_object(body)?;
    let mut i = load(&st, &id).await?;
    if let Some(p) = b.get("public_metadata") {
        i.metadata_public = Some(p.clone());
    }
    if let Some(p) = b.get("private_metadata") {
        i.metadata_admin = Some(merge_keeping_flags(i.metadata_admin.take(), p.clone()));
    }
    Ok(Json(user(&st, &save(&st, &i, None).await?)))
}

async fn delete_user(State(st): State<AppState>, Path(id): Path<String>) -> CResult<Json<Value>> {
    let identity = identity_id(&id)?;
    st.core.admin_delete_identity(identity).await?;
    Ok(Json(
        json!({ "object": "user", "id": clerk_user_id(&identity.to_string()), "deleted": true }),
    ))
}

/// Ban and lock both stop sign-in (the identity goes inactive, its sessions end); the flag
/// says which, so unlocking a banned user keeps them out. The rule is the core's.
async fn set_block(
    State(st): State<AppState>,
    Path(id): Path<String>,
    block: Block,
    on: bool,
) -> CResult<Json<Value>> {
    let i = load(&st, &id).await?;
    let i = st.core.set_clerk_block(i, block, on, st.core.now()).await?;
    Ok(Json(user(&st, &i)))
}

async fn verify_password(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CResult<Json<Value>> {
    let b = body_object(body)?;
    let password = b.get("password").and_then(Value::as_str).ok_or_else(|| {
        cerr(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
            "password is missing.",
        )
    })?;
    let i = load(&st, &id).await?;
    let Some(ok) = st.core.check_identity_password(&i, password).await? else {
        return Err(cerr(
            StatusCode::BAD_REQUEST,
            "password_not_set",
            "The user has no password.",
        ));
    };
    if ok {
        Ok(Json(json!({ "verified": true })))
    } else {
        Err(cerr(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incorrect_password",
            "The password is incorrect.",
        ))
    }
}

fn session_json(s: &Session, now: time::OffsetDateTime) -> Value {
    let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let status = if s.active && s.expires_at > now {
        "active"
    } else if s.active {
        "expired"
    } else {
        "revoked"
    };
    json!({
        "object": "session",
        "id": format!("sess_{}", s.id.simple()),
        "user_id": clerk_user_id(&s.identity_id.to_string()),
        "client_id": "client_portcullis",
        "status": status,
        "last_active_at": ms(s.authenticated_at),
        "expire_at": ms(s.expires_at),
        "abandon_at": ms(s.expires_at),
        "updated_at": ms(s.authenticated_at),
        "created_at": ms(s.issued_at),
    })
}

async fn list_sessions(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> CResult<Json<Value>> {
    let p = pairs(&raw);
    let user_id = values(&p, "user_id").into_iter().next().ok_or_else(|| {
        cerr(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_missing",
            "user_id is required.",
        )
    })?;
    let identity = identity_id(&user_id)?;
    let limit = number(&p, "limit", 10, 500)?.max(1) as u32;
    let now = st.core.now();
    let status = values(&p, "status").into_iter().next();
    let q = SessionQuery {
        identity_id: Some(identity),
        active: status.as_deref().map(|s| s == "active"),
        page_size: limit,
        after: None,
        except: None,
    };
    let rows = st.core.list_sessions(&q, now).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|(s, _)| session_json(s, now)).collect(),
    )))
}

async fn revoke_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> CResult<Json<Value>> {
    let sid = id
        .strip_prefix("sess_")
        .and_then(|h| Uuid::parse_str(h).ok())
        .ok_or_else(|| {
            cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                "No session with this id.",
            )
        })?;
    let now = st.core.now();
    let s = match st.core.revoke_session_by_id(sid, now).await {
        Err(Error::NotFound { .. }) => {
            return Err(cerr(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                "No session with this id.",
            ))
        }
        revoked => revoked?,
    };
    Ok(Json(session_json(&s, now)))
}

async fn jwks(State(st): State<AppState>) -> CResult<Json<Value>> {
    Ok(Json(st.core.jwks(st.core.now()).await?))
}

/// Creates a Clerk secret key (returned once; only its hash is stored).
pub async fn create_key(st: &AppState) -> Result<(String, String), Error> {
    st.core.create_clerk_key(st.core.now()).await
}

/// `POST /admin/clerk/keys`, `DELETE /admin/clerk/keys/{id}`.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/clerk/keys", post(admin_create_key))
        .route(
            "/admin/clerk/keys/{id}",
            axum::routing::delete(admin_revoke_key),
        )
}

async fn admin_create_key(State(st): State<AppState>) -> Result<Response, crate::ApiError> {
    let (id, key) = create_key(&st).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "secret_key": key })),
    )
        .into_response())
}

async fn admin_revoke_key(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, crate::ApiError> {
    if st.core.revoke_clerk_key(&id, st.core.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(crate::ApiError(Error::not_found(
            "No active key with this id.",
        )))
    }
}
