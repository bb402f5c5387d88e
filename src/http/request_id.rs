//! The id of the HTTP request being handled, as a task-local: the edge middleware sets it, error
//! bodies and log spans read it, work spawned off a request carries it along. A leaf of `http/`.

use axum::http::HeaderName;

/// The request id header, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being handled, when called inside one.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// `work` with this request's id as its current one (for work spawned off the request's task).
pub fn in_request_scope<F: std::future::Future>(work: F) -> impl std::future::Future<Output = F::Output> {
    let id = current_request_id();
    async move {
        match id {
            Some(id) => CURRENT_REQUEST_ID.scope(id, work).await,
            None => work.await,
        }
    }
}

/// Runs `work` with `id` as the current request's id.
pub(crate) async fn with_request_id<F: std::future::Future>(id: String, work: F) -> F::Output {
    CURRENT_REQUEST_ID.scope(id, work).await
}
