//! `GET /metrics` on its own listener (`serve --metrics-listen ADDR`): the Prometheus text
//! exposition, with the database-backed gauges refreshed first.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::operations::Gauges;
use crate::telemetry::metrics::CONTENT_TYPE;

/// The metrics listener's only route.
pub fn metrics_router(gauges: Arc<Gauges>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(gauges)
}

async fn scrape(State(gauges): State<Arc<Gauges>>) -> Response {
    let mut response = gauges.scrape().await.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
