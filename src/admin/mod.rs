//! The admin listener: health, readiness, metrics and what this node believes.
//!
//! Served on its own address (localhost by default) on the control-plane runtime, never on the
//! proxy listeners. Endpoints are read-only, but for `POST /admin/tenants/{id}/invalidate`
//! (a forced re-read of one tenant), which accepts loopback clients only.
//!
//! With `admin.proxy_protocol`, a connection from `server.trusted_hops` starts with a PROXY
//! protocol header (an AWS NLB's health checks send a v2 `LOCAL` one), read and refused exactly
//! as on a traffic listener ([`crate::proxy::accept::proxied_client`]); anyone else is served
//! as they come. The header's client is who the admin code sees, but it never makes a caller
//! local: a POST needs the socket's peer and that client both on loopback.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::placement::lookup::LookupOutcome;
use crate::proxy::Shared;
use crate::proxy::accept::proxied_client;
use crate::proxy::client_addr;
use crate::shutdown::{Stop, stopped};

/// Serves admin requests until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: Stop) {
    let proxy_protocol = shared.config.admin.proxy_protocol;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let read_header =
            proxy_protocol && client_addr::trusted(&shared.config.server.trusted_hops, peer.ip());
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let client = if read_header {
                let Some(client) = proxied_client(&stream, peer, &shared).await else {
                    return;
                };
                client
            } else {
                peer.ip()
            };
            let local = operator(peer.ip(), client);
            let svc = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move {
                    if req.method() == Method::POST {
                        return Ok::<_, Infallible>(post(&shared, &req, local).await);
                    }
                    Ok(route(&shared, &req))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(client = %client, hop = %peer, error = %e, "admin connection error");
            }
        });
    }
}

/// Whether a connection may change state: its socket peer and the client a PROXY header named
/// (the peer itself without one) both on loopback. A hop's header alone never makes a remote
/// caller local, whatever address it names.
fn operator(peer: IpAddr, client: IpAddr) -> bool {
    peer.to_canonical().is_loopback() && client.to_canonical().is_loopback()
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", v.to_string())
}

/// Routes one admin request.
pub fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method_not_allowed"}),
        );
    }
    match path {
        "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        "/readyz" => {
            let snap = shared.snapshot.load();
            let waiting: Vec<&str> = shared
                .verifier
                .issuers()
                .iter()
                .filter(|i| i.jwks.as_ref().is_some_and(|j| !j.ready()))
                .map(|i| &*i.policy.name)
                .collect();
            if snap.generation == 0 {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "reason": "no placement snapshot loaded yet"}),
                )
            } else if !waiting.is_empty() {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "reason": "JWKS not loaded yet", "issuers": waiting}),
                )
            } else {
                json_response(
                    StatusCode::OK,
                    &json!({"ready": true, "generation": snap.generation}),
                )
            }
        }
        "/admin/auth" => json_response(StatusCode::OK, &auth_status(&shared.verifier)),
        "/admin/registry" => {
            let snap = shared.snapshot.load();
            let st = shared.snapshot.status();
            let time = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
            json_response(
                StatusCode::OK,
                &json!({
                    "source": st.source,
                    "generation": snap.generation,
                    "loaded_at": (snap.generation > 0).then(|| time(snap.loaded_at)),
                    "age_seconds": shared.snapshot.age().as_secs_f64(),
                    "tenants": snap.tenant_count(),
                    "api_keys": snap.key_count(),
                    "cells": snap.cell_count(),
                    "dangling_tenants": snap.dangling_tenants(),
                    "cell_tenants": snap
                        .cell_tenants()
                        .into_iter()
                        .map(|(id, n, defined)| json!({"cell": &**id, "tenants": n, "defined": defined}))
                        .collect::<Vec<_>>(),
                    "refresh_failures": st.failures,
                    "last_error": st.last_error,
                    "last_error_at": st.last_error_at.map(time),
                }),
            )
        }
        "/metrics" => {
            let m = &shared.metrics;
            m.placement
                .age_seconds
                .set(shared.snapshot.age().as_secs_f64());
            m.set_token_cache_entries(shared.verifier.cache_entries());
            m.ratelimit_tracked
                .set(i64::try_from(shared.limiter.tracked()).unwrap_or(i64::MAX));
            for j in shared.verifier.jwks() {
                j.update_age_gauge();
            }
            match m.encode() {
                Ok(text) => respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "metrics_encoding_failed"}),
                ),
            }
        }
        "/admin/limits" => json_response(
            StatusCode::OK,
            &json!({
                "tracked_keys": shared.limiter.tracked(),
                "tiers": shared.config.limits.tiers.iter().map(|t| json!({
                    "tier": t.name,
                    "rate": t.rate,
                    "burst": t.burst,
                    "concurrency": t.concurrency,
                })).collect::<Vec<_>>(),
                "fleet": shared.limiter.fleet(),
            }),
        ),
        "/admin/cells" => {
            let snap = shared.snapshot.load();
            let cells: Vec<_> = snap
                .cells()
                .into_iter()
                .map(|c| cell_json(shared, c))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"generation": snap.generation, "cells": cells}),
            )
        }
        p if p.starts_with("/admin/tenants/") => tenant(shared, &p["/admin/tenants/".len()..]),
        p if p.starts_with("/admin/apikeys/") => api_key(shared, &p["/admin/apikeys/".len()..]),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}

/// One cell for `GET /admin/cells`: state, caps, and per group its weight, share of tenants
/// and healthy addresses; per target its addresses, their health and the DNS status.
fn cell_json(shared: &Shared, c: &crate::placement::Cell) -> serde_json::Value {
    let up = &*shared.upstreams;
    let total: u32 = c
        .groups
        .iter()
        .filter(|g| !g.targets.is_empty())
        .map(|g| g.weight)
        .sum();
    let groups: Vec<_> = c
        .groups
        .iter()
        .map(|g| {
            let share = if total == 0 || g.targets.is_empty() {
                0.0
            } else {
                f64::from(g.weight) * 100.0 / f64::from(total)
            };
            json!({
                "name": &*g.name,
                "version": &*g.version,
                "weight": g.weight,
                "share_percent": (share * 100.0).round() / 100.0,
                "healthy_addresses": crate::upstream::endpoint::usable(&c.targets[g.targets.clone()], up),
                "targets": c.targets[g.targets.clone()].iter().map(|t| &*t.url).collect::<Vec<_>>(),
            })
        })
        .collect();
    let targets: Vec<_> = c
        .targets
        .iter()
        .map(|t| {
            let st = t.state(up);
            let addresses: Vec<_> = st
                .endpoints()
                .iter()
                .map(|e| {
                    json!({
                        "address": e.addr.to_string(),
                        "healthy": e.usable(),
                        "failing_checks": e.health.active_down(),
                        "ejected": e.health.ejected(),
                    })
                })
                .collect();
            let dns = st.host.as_ref().map(|_| {
                let d = st.dns_status();
                json!({
                    "resolved_at": d.resolved_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    "ttl_secs": d.ttl_secs,
                    "last_error": d.last_error,
                    "failures": d.failures,
                })
            });
            json!({"url": &*t.url, "addresses": addresses, "dns": dns})
        })
        .collect();
    let healthy = c
        .groups
        .iter()
        .filter(|g| g.weight > 0)
        .any(|g| crate::upstream::endpoint::usable(&c.targets[g.targets.clone()], up) > 0);
    json!({
        "cell": &*c.id,
        "state": c.state.as_str(),
        "healthy": healthy,
        "targets": targets,
        "groups": groups,
        "preserve_host": c.preserve_host,
        "protocol": c.protocol.as_str(),
        "max_in_flight": c.max_in_flight,
        "wave": c.wave,
        "in_flight": c.metrics(&shared.metrics).in_flight.get(),
    })
}

/// State-changing endpoints: loopback clients only (`local`, see [`operator`]; the admin
/// listener may be exposed to a scraper or an NLB on another host, an operator action may not).
async fn post(shared: &Shared, req: &Request<Incoming>, local: bool) -> Response<Full<Bytes>> {
    if !local {
        return json_response(StatusCode::FORBIDDEN, &json!({"error": "loopback_only"}));
    }
    let path = req.uri().path();
    let Some(id) = path
        .strip_prefix("/admin/tenants/")
        .and_then(|p| p.strip_suffix("/invalidate"))
    else {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"}));
    };
    if crate::tenant::TenantId::parse(id).is_err() {
        return json_response(StatusCode::BAD_REQUEST, &json!({"error": "invalid_tenant"}));
    }
    let outcome = shared.lookup.invalidate(id).await;
    let snap = shared.snapshot.load();
    let body = json!({
        "tenant": id,
        "result": match outcome {
            LookupOutcome::Found => "found",
            LookupOutcome::Absent => "absent",
            LookupOutcome::Unavailable | LookupOutcome::Limited => "registry_unavailable",
        },
        "version": snap.tenant(id).map(|p| p.version()),
        "cell": snap.tenant(id).map(|p| p.cell_id().to_string()),
        "generation": snap.generation,
    });
    let status = if matches!(outcome, LookupOutcome::Unavailable | LookupOutcome::Limited) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(status, &body)
}

/// Issuers, their keys and JWKS state (never key material).
fn auth_status(v: &crate::auth::Verifier) -> serde_json::Value {
    let rfc3339 = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let issuers: Vec<_> = v
        .issuers()
        .iter()
        .map(|i| {
            let jwks = i.jwks.as_ref().map(|j| {
                let st = j.status();
                json!({
                    "url": j.config().url.to_string(),
                    "ready": j.ready(),
                    "kids": j.keys().kids(),
                    "keys": j.keys().len(),
                    "fetches": st.fetches,
                    "last_success": st.last_success.map(rfc3339),
                    "last_error": st.last_error,
                    "refresh_seconds": j.config().refresh.as_secs(),
                    "cooldown_seconds": j.config().cooldown.as_secs(),
                })
            });
            json!({
                "name": &*i.policy.name,
                "issuer": &*i.policy.iss,
                "algorithms": i.algorithms.names(),
                "tenants": i.policy.tenants.as_ref().map(|t| t.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>()),
                "static_kids": i.static_keys.kids(),
                "jwks": jwks,
            })
        })
        .collect();
    json!({
        "required": v.required(),
        "cache_entries": v.cache_entries(),
        "issuers": issuers,
    })
}

fn tenant(shared: &Shared, id: &str) -> Response<Full<Bytes>> {
    let snap = shared.snapshot.load();
    let Some(p) = snap.tenant(id) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown_tenant", "generation": snap.generation}),
        );
    };
    json_response(
        StatusCode::OK,
        &json!({
            "tenant": id,
            "cell": &**p.cell_id(),
            "cell_defined": p.cell().is_some(),
            "cell_state": p.cell().map(|c| c.state.as_str()),
            "status": p.status().as_str(),
            "tier": &**p.tier(),
            "version": p.version(),
            "issuers": p.issuers().map(|l| l.iter().map(|i| &**i).collect::<Vec<_>>()),
            "entitlements": p.entitlements().map(|l| l.iter().map(|e| &**e).collect::<Vec<_>>()),
            "limits": shared.limiter.effective(p.tier(), p.limits()).map(|e| json!({
                "tier": &**e.tier,
                "rate": e.rate.map(|g| g.rate()),
                "burst": e.rate.map(|g| g.burst()),
                "concurrency": e.concurrency,
                "overrides": {
                    "rate": p.limits().rate,
                    "burst": p.limits().burst,
                    "concurrency": p.limits().concurrency,
                },
            })),
            "generation": snap.generation,
            "loaded_at": humantime::format_rfc3339_millis(snap.loaded_at).to_string(),
        }),
    )
}

/// `GET /admin/apikeys/{id}`: what this node holds for an API key id: its tenant, status,
/// expiry and scopes (never its hash); 404 when the snapshot has no such id (no registry read).
fn api_key(shared: &Shared, id: &str) -> Response<Full<Bytes>> {
    let snap = shared.snapshot.load();
    let Some(k) = crate::apikey::valid_id(id)
        .then(|| snap.api_key(id))
        .flatten()
    else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown_api_key", "generation": snap.generation}),
        );
    };
    let mut fields = k.record(id).public_fields();
    fields.insert("generation".to_owned(), json!(snap.generation));
    json_response(StatusCode::OK, &serde_json::Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::operator;

    #[test]
    fn only_loopback_on_both_ends_may_post() {
        let ip = |s: &str| s.parse().unwrap();
        assert!(operator(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(operator(ip("::1"), ip("::ffff:127.0.0.1")));
        // A remote hop naming a loopback client (a forged or relayed header) stays remote.
        assert!(!operator(ip("10.0.1.5"), ip("127.0.0.1")));
        // A local hop relaying a remote client stays remote.
        assert!(!operator(ip("127.0.0.1"), ip("203.0.113.7")));
        assert!(!operator(ip("10.0.1.5"), ip("10.0.1.5")));
    }
}
