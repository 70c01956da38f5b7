//! The HTTP routes of `ssm ams-server` (axum): they parse the URL, find the token, call
//! [`super::state`] and write its answers and errors as the real server does.
//!
//! Every API route takes an [`Authorized`] call: the route table, the token and the checks of
//! [`State::authorize`](super::state::State::authorize) are made once, there, for all of them.
//!
//! Guarantees: every answer is `application/json; charset=utf-8` with the real server's bytes
//! (pretty-printed, [`wire::to_pretty`]); `modifyAckDeadline` answers 200 with an empty body and
//! `acknowledge` with `{}` as the real one; a path the real router does not know gets its
//! `404 page not found` text. The state lock is never held across an await.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::state::{ApiError, Role};
use super::{PeerCert, Shared};
use crate::transport::ams::wire::{self, AuthnErrorAnswer, TokenAnswer};

type Ctx = State<Arc<Shared>>;

/// The AMS API routes.
pub(crate) fn api(shared: Arc<Shared>, max_request_bytes: usize) -> Router {
    Router::new()
        .route(
            "/v1/projects/{project}/topics/{action}",
            post(topic_post).get(topic_get),
        )
        .route(
            "/v1/projects/{project}/subscriptions/{action}",
            post(subscription_post).get(subscription_get),
        )
        .fallback(not_found_page)
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), faults))
        .with_state(shared)
}

/// The authentication-service route.
pub(crate) fn authn(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1/service-types/{service_type}/hosts/{action}",
            get(authx509),
        )
        .fallback(not_found_page)
        .with_state(shared)
}

/// HAProxy's answer when no backend is up: what clients of the real service meet in storms.
const BALANCER_503: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";

async fn faults(
    State(shared): Ctx,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let every = shared.fault_503_every;
    if every > 0 {
        let n = shared
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % every == every - 1 {
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, BALANCER_503).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return r;
        }
    }
    next.run(req).await
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, wire::to_pretty(&e))
}

async fn not_found_page() -> Response {
    // gorilla/mux's answer for a path no route matches.
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// The token: the `x-api-key` header, else the `key` URL parameter (the real default).
fn token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "key")
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name:action` → (name, action), splitting at the last colon as the real router's pattern.
fn split_action(segment: &str) -> Option<(&str, &str)> {
    segment.rsplit_once(':')
}

/// The kind of resource a route is about: which URL key names it, the role its calls need,
/// and the actions the real router has for it.
pub(crate) trait Resource {
    /// The key of its name in the checks' order (`topic`, `subscription`).
    const KEY: &'static str;
    /// The role its calls need.
    const ROLE: Role;
    /// Whether the real router has `method` on `…/{name}` (`action` `None`) or
    /// `…/{name}:{action}`.
    fn routes(method: &Method, action: Option<&str>) -> bool;
}

/// `/v1/projects/{p}/topics/{t}…`.
pub(crate) struct Topics;

impl Resource for Topics {
    const KEY: &'static str = "topic";
    const ROLE: Role = Role::Publisher;
    fn routes(method: &Method, action: Option<&str>) -> bool {
        matches!(
            (method.as_str(), action),
            ("POST", Some("publish")) | ("GET", None)
        )
    }
}

/// `/v1/projects/{p}/subscriptions/{s}…`.
pub(crate) struct Subscriptions;

impl Resource for Subscriptions {
    const KEY: &'static str = "subscription";
    const ROLE: Role = Role::Consumer;
    fn routes(method: &Method, action: Option<&str>) -> bool {
        matches!(
            (method.as_str(), action),
            ("POST", Some("pull" | "acknowledge" | "modifyAckDeadline"))
                | ("GET", Some("offsets") | None)
        )
    }
}

/// A call that passed the checks every API route makes, in the real server's order (a route
/// it does not have: its 404 page; then [`State::authorize`](super::state::State::authorize):
/// names, token, project, role). Handlers get the resource's name and the action.
pub(crate) struct Authorized<R> {
    name: String,
    action: Option<String>,
    _resource: PhantomData<R>,
}

impl<R: Resource> FromRequestParts<Arc<Shared>> for Authorized<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let Ok(Path((project, segment))) =
            Path::<(String, String)>::from_request_parts(parts, shared).await
        else {
            return Err(not_found_page().await);
        };
        let (name, action) = match split_action(&segment) {
            Some((name, action)) => (name, Some(action)),
            None => (segment.as_str(), None),
        };
        if !R::routes(&parts.method, action) {
            return Err(not_found_page().await);
        }
        let tok = token(&parts.headers, &parts.uri);
        shared
            .state()
            .authorize(&project, &[(R::KEY, name)], tok.as_deref(), R::ROLE)
            .map_err(error)?;
        Ok(Authorized {
            name: name.to_string(),
            action: action.map(str::to_string),
            _resource: PhantomData,
        })
    }
}

async fn topic_post(State(shared): Ctx, call: Authorized<Topics>, body: Bytes) -> Response {
    let name = call.name.as_str();
    let mut st = shared.state();
    match st.publish(name, &body, SystemTime::now()) {
        Ok((answer, max)) => {
            drop(st);
            if let Some(w) = shared.wakers.get(name) {
                w.send_replace(max);
            }
            json(StatusCode::OK, wire::to_pretty(&answer))
        }
        Err(e) => {
            // Messages before a too-large one were published: wake the pulls for them.
            let max = st.topic_max(name);
            drop(st);
            if let (Some(w), Some(max)) = (shared.wakers.get(name), max) {
                w.send_if_modified(|cur| std::mem::replace(cur, max) != max);
            }
            error(e)
        }
    }
}

async fn topic_get(State(shared): Ctx, call: Authorized<Topics>) -> Response {
    match shared.state().topic_info(&call.name, &shared.created_on) {
        Ok(info) => json(StatusCode::OK, wire::to_pretty(&info)),
        Err(e) => error(e),
    }
}

async fn subscription_get(State(shared): Ctx, call: Authorized<Subscriptions>) -> Response {
    let mut st = shared.state();
    let answer = match call.action.as_deref() {
        Some(_) => st.offsets(&call.name).map(|o| wire::to_pretty(&o)),
        None => st
            .subscription_info(&call.name, &shared.created_on)
            .map(|i| wire::to_pretty(&i)),
    };
    match answer {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(e),
    }
}

async fn subscription_post(
    State(shared): Ctx,
    call: Authorized<Subscriptions>,
    body: Bytes,
) -> Response {
    let name = call.name.as_str();
    match call.action.as_deref() {
        Some("pull") => pull(&shared, name, &body).await,
        Some("acknowledge") => match shared.state().acknowledge(name, &body, Instant::now()) {
            Ok(()) => json(StatusCode::OK, b"{}".to_vec()),
            Err(e) => error(e),
        },
        _ => match shared.state().modify_ack_deadline(name, &body) {
            Ok(()) => json(StatusCode::OK, Vec::new()),
            Err(e) => error(e),
        },
    }
}

async fn pull(shared: &Arc<Shared>, name: &str, body: &[u8]) -> Response {
    let plan = match shared.state().plan_pull(name, body) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    // Watch the topic before looking, so a publish in between is not missed.
    let mut rx = shared.wakers.get(&plan.topic).map(|w| w.subscribe());
    let waiting = shared.state().available(&plan);
    if waiting > 0 && waiting < plan.max && !plan.return_immediately {
        // Like the real server's consumer: collect until maxMessages, or until the wait ends.
        let until = tokio::time::Instant::now() + shared.pull_wait;
        while let Some(rx) = rx.as_mut() {
            if shared.state().available(&plan) >= plan.max {
                break;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
    let answer = shared.state().complete_pull(&plan, Instant::now());
    json(StatusCode::OK, wire::to_pretty(&answer))
}

fn authn_error(code: u16, message: &str, status: &str) -> Response {
    let status_code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status_code,
        wire::to_pretty_authn(&AuthnErrorAnswer::new(code, message, status)),
    )
}

async fn authx509(
    State(shared): Ctx,
    Path((service_type, segment)): Path<(String, String)>,
    peer: Option<Extension<PeerCert>>,
) -> Response {
    let Some((_host, "authx509")) = split_action(&segment) else {
        return not_found_page().await;
    };
    let Some(Extension(peer)) = peer else {
        return authn_error(
            500,
            "Internal Error: no TLS information",
            "INTERNAL SERVER ERROR",
        );
    };
    // The real service's order of checks (handlers/certificate_handlers.go).
    let Some(dn) = peer.dn else {
        return authn_error(400, "No certificate provided", "BAD REQUEST");
    };
    if peer.revoked {
        return authn_error(403, "Your certificate has been revoked", "ACCESS_FORBIDDEN");
    }
    if service_type != "ams" {
        return authn_error(404, "Service-type was not found", "NOT FOUND");
    }
    if let Some(dns) = &shared.dns {
        if !dns.contains(&dn) {
            tracing::info!(%dn, "ams-server: no binding for this DN");
            return authn_error(404, "Binding was not found", "NOT FOUND");
        }
    }
    tracing::info!(%dn, "ams-server: token handed out for a client certificate");
    json(
        StatusCode::OK,
        wire::to_pretty_authn(&TokenAnswer {
            token: shared.authn_token.clone(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parameter_is_decoded_and_header_wins() {
        let uri: Uri = "/v1/x?a=1&key=ab%2Bc".parse().unwrap();
        assert_eq!(token(&HeaderMap::new(), &uri).as_deref(), Some("ab+c"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("hdr"));
        assert_eq!(token(&h, &uri).as_deref(), Some("hdr"));
        let uri: Uri = "/v1/x?key=%zz%4".parse().unwrap();
        assert_eq!(token(&HeaderMap::new(), &uri).as_deref(), Some("%zz%4"));
        assert_eq!(
            split_action("gLite-APEL:publish"),
            Some(("gLite-APEL", "publish"))
        );
    }
}
