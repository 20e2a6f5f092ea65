//! Clerk users: list and count with Clerk's filters, read, create, update (names, metadata,
//! password), delete, ban and lock, verify a password. Every write goes through the core's
//! admin use cases.

use super::{body_object, cerr, identity_id, load, number, pairs, user, values, CResult};
use crate::extract::Acting;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_core::audit::By;
use portcullis_core::clerk::{replace_body, Block};
use portcullis_core::identity::Identity;
use portcullis_core::webhooks::{clerk_user_id, set_trait};
use serde_json::{json, Value};

/// The identities matching Clerk's list filters, in the requested order.
pub(super) async fn filtered(st: &AppState, raw: &Option<String>) -> CResult<Vec<Value>> {
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
        let user_emails: Vec<String> = u
            .get("email_addresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("email_address").and_then(Value::as_str))
                    .map(str::to_lowercase)
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
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        match field.as_str() {
            f @ ("created_at" | "updated_at") => {
                (u.get(f).and_then(Value::as_i64).unwrap_or(0), String::new())
            }
            "email_address" => (0, text(u.pointer("/email_addresses/0/email_address"))),
            f => (0, text(u.get(f))),
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

pub(super) async fn list_users(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> CResult<Json<Value>> {
    let p = pairs(&raw);
    let limit = number(&p, "limit", 10, 500)?.max(1);
    let offset = number(&p, "offset", 0, usize::MAX)?;
    let all = filtered(&st, &raw).await?;
    Ok(Json(Value::Array(
        all.into_iter().skip(offset).take(limit).collect(),
    )))
}

pub(super) async fn count_users(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> CResult<Json<Value>> {
    let n = filtered(&st, &raw).await?.len();
    Ok(Json(json!({ "object": "total_count", "total_count": n })))
}

pub(super) async fn get_user(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> CResult<Json<Value>> {
    Ok(Json(user(&st, &load(&st, &id).await?)))
}

pub(super) async fn create_user(
    State(st): State<AppState>,
    Acting(by): Acting,
    body: axum::body::Bytes,
) -> CResult<Json<Value>> {
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
    let credentials = if let Some(p) = b.get("password").and_then(Value::as_str) {
        if let Some(t) = st.core.password_policy_problem(p, &emails) {
            return Err(cerr(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_password_validation_failed",
                t.text,
            ));
        }
        Some(json!({ "password": { "config": { "password": p } } }))
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
        Some(json!({ "password": { "config": { "hashed_password": digest } } }))
    } else {
        None
    };
    if let (Some(c), Some(o)) = (credentials, identity_body.as_object_mut()) {
        o.insert("credentials".into(), c);
    }
    let identity = st
        .core
        .admin_create_identity(identity_body, st.core.now(), &by)
        .await?;
    Ok(Json(user(&st, &identity)))
}

/// Applies a partial update as a full replace through the core (events, validation).
pub(super) async fn save(
    st: &AppState,
    i: &Identity,
    password: Option<&str>,
    by: &By,
) -> CResult<Identity> {
    let body = replace_body(i, password);
    Ok(st
        .core
        .admin_replace_identity(i.id, body, st.core.now(), by)
        .await?)
}

pub(super) async fn update_user(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
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
    Ok(Json(user(&st, &save(&st, &i, password, &by).await?)))
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

pub(super) async fn merge_metadata(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
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
    Ok(Json(user(&st, &save(&st, &i, None, &by).await?)))
}

pub(super) async fn replace_metadata(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
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
    Ok(Json(user(&st, &save(&st, &i, None, &by).await?)))
}

pub(super) async fn delete_user(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> CResult<Json<Value>> {
    let identity = identity_id(&id)?;
    st.core.admin_delete_identity(identity, &by).await?;
    Ok(Json(
        json!({ "object": "user", "id": clerk_user_id(&identity.to_string()), "deleted": true }),
    ))
}

/// Ban and lock both stop sign-in (the identity goes inactive, its sessions end); the flag
/// says which, so unlocking a banned user keeps them out. The rule is the core's.
pub(super) async fn set_block(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
    block: Block,
    on: bool,
) -> CResult<Json<Value>> {
    let i = load(&st, &id).await?;
    let i = st
        .core
        .set_clerk_block(i, block, on, st.core.now(), &by)
        .await?;
    Ok(Json(user(&st, &i)))
}

pub(super) async fn verify_password(
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
    // The caller is the app's backend on the admin port, not the end user: no client address.
    let origin = portcullis_core::audit::Origin::default();
    let Some(ok) = st
        .core
        .check_identity_password(&i, password, &origin, st.core.now())
        .await?
    else {
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

/// `DELETE /v1/users/{id}/mfa`: removes the user's TOTP and backup codes.
pub(super) async fn disable_mfa(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Acting(by): Acting,
) -> CResult<Json<Value>> {
    let identity = identity_id(&id)?;
    st.core.disable_second_factors(identity, &by).await?;
    Ok(Json(
        json!({ "user_id": clerk_user_id(&identity.to_string()) }),
    ))
}
