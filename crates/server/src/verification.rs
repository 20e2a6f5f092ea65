//! The verification flow on the Kratos public API: API flow init and the submit of either
//! flow type (browser init goes through `browser`).

use crate::browser::{self, see_other};
use crate::error::{submit_error_json, ApiError, ApiResult, EdgeError};
use crate::extract::{request_url, wants_json, CallerCtx, Query, SubmitBody};
use crate::public::{flow_id, refused_body, FlowInitQuery, SubmitQuery};
use crate::AppState;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::selfservice::SubmitError;
use serde_json::Value;

pub fn router(config: &portcullis_core::config::Config) -> Router<AppState> {
    let submit_limit = DefaultBodyLimit::max(
        usize::try_from(config.serve.max_submit_size.0).unwrap_or(usize::MAX),
    );
    Router::new()
        .route("/self-service/verification/api", get(init_api))
        .route(
            "/self-service/verification",
            post(submit).get(show).layer(submit_limit),
        )
}

async fn init_api(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<FlowInitQuery>,
    CallerCtx(caller): CallerCtx,
) -> ApiResult<Json<Value>> {
    let core = &st.core;
    let flow = core
        .create_verification_flow(
            FlowType::Api,
            request_url(core.public_url(), &uri),
            q.return_to,
            &caller,
            core.now(),
        )
        .await?;
    Ok(Json(core.flow_response(&flow, None)))
}

async fn submit(
    State(st): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    CallerCtx(caller): CallerCtx,
    submitted: Result<SubmitBody, EdgeError>,
) -> Response {
    let json = wants_json(&headers);
    let submitted = match submitted {
        Ok(s) => s,
        Err(e) => return refused_body(&st, &headers, e).await,
    };
    let core = &st.core;
    let outcome = async {
        let id = flow_id(q.flow, "flow").map_err(|ApiError(e)| SubmitError::Refused(e))?;
        core.submit_verification(id, submitted.address(), &caller, core.now())
            .await
    }
    .await;
    match outcome {
        Ok(flow) if json || flow.flow_type == FlowType::Api => {
            Json(core.flow_response(&flow, None)).into_response()
        }
        Ok(flow) => see_other(&core.flow_page_url(FlowKind::Verification, flow.id)),
        Err(e) if json => submit_error_json(core, e),
        Err(e) => browser::html_error(&st, FlowKind::Verification, browser::Step::Submit, e).await,
    }
}

/// `GET /self-service/verification?flow=`: the flow's page.
async fn show(State(st): State<AppState>, Query(q): Query<SubmitQuery>) -> ApiResult<Response> {
    let id = flow_id(q.flow, "flow")?;
    Ok(see_other(
        &st.core.flow_page_url(FlowKind::Verification, id),
    ))
}
