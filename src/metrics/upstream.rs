//! Metric handles for the failure-domain machinery: target groups (canary arms), endpoint
//! health, DNS discovery and retries.
//!
//! Group handles are cached per (cell, group, version) and resolved once per registry
//! generation (see [`crate::placement::group::Group::metrics`]), so recording a routed request
//! against its arm is two relaxed atomic adds. Endpoint, DNS and retry counters change on
//! transitions or on retries only, so they look their label set up when they fire. Labels are
//! bounded by the registry: cell ids, group names and versions, target URLs and their
//! resolved addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::STATUS_CLASSES;
use super::{Label, LatencyHistogram, counter_name, names as n};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabels {
    cell: Label,
    group: Label,
    version: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupStatusLabels {
    cell: Label,
    group: Label,
    version: Label,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    target: Label,
    address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetLabels {
    target: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetResultLabels {
    target: Label,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CellResultLabels {
    cell: Label,
    result: &'static str,
}

/// One target group's handles.
#[derive(Debug)]
pub struct GroupMetrics {
    labels: GroupLabels,
    requests: [OnceLock<Counter>; 5],
    pub duration: LatencyHistogram,
}

/// The upstream families; cloned handles share the same series.
#[derive(Debug, Clone, Default)]
pub struct UpstreamMetrics {
    group_requests: Family<GroupStatusLabels, Counter>,
    group_duration: Family<GroupLabels, LatencyHistogram>,
    groups: Arc<Mutex<HashMap<GroupLabels, Arc<GroupMetrics>>>>,
    healthy: Family<EndpointLabels, Gauge>,
    ejections: Family<EndpointLabels, Counter>,
    checks: Family<TargetResultLabels, Counter>,
    addresses: Family<TargetLabels, Gauge>,
    dns: Family<TargetResultLabels, Counter>,
    retries: Family<CellResultLabels, Counter>,
}

fn label(s: &Arc<str>) -> Label {
    Label(Arc::clone(s))
}

impl UpstreamMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            counter_name(n::GROUP_REQUESTS_TOTAL),
            "Routed requests by cell, target group, version and status class",
            self.group_requests.clone(),
        );
        r.register(
            n::GROUP_REQUEST_DURATION_SECONDS,
            "Time from request head to response head of routed requests, by cell, target group and version",
            self.group_duration.clone(),
        );
        r.register(
            n::ENDPOINT_HEALTHY,
            "1 when a target address is in rotation, 0 when failing health checks or ejected",
            self.healthy.clone(),
        );
        r.register(
            counter_name(n::ENDPOINT_EJECTIONS_TOTAL),
            "Passive ejections of a target address after consecutive gateway failures",
            self.ejections.clone(),
        );
        r.register(
            counter_name(n::HEALTH_CHECKS_TOTAL),
            "Active health checks, by target and result (pass, fail)",
            self.checks.clone(),
        );
        r.register(
            n::TARGET_ADDRESSES,
            "Addresses a target resolves to now",
            self.addresses.clone(),
        );
        r.register(
            counter_name(n::DNS_RESOLUTIONS_TOTAL),
            "DNS resolutions of targets named by host, by target and result (ok, error)",
            self.dns.clone(),
        );
        r.register(
            counter_name(n::RETRIES_TOTAL),
            "Retries to another target of the same cell, by cell and result (sent, budget_exhausted)",
            self.retries.clone(),
        );
    }

    /// The handles of one target group (created on first use, then shared).
    #[must_use]
    pub fn group(
        &self,
        cell: &Arc<str>,
        group: &Arc<str>,
        version: &Arc<str>,
    ) -> Arc<GroupMetrics> {
        let labels = GroupLabels {
            cell: label(cell),
            group: label(group),
            version: label(version),
        };
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = groups.get(&labels) {
            return Arc::clone(g);
        }
        let g = Arc::new(GroupMetrics {
            duration: self.group_duration.get_or_create_owned(&labels),
            requests: Default::default(),
            labels: labels.clone(),
        });
        groups.insert(labels, Arc::clone(&g));
        g
    }

    /// Records one answered request of a group.
    pub fn group_request(&self, g: &GroupMetrics, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        g.requests[class]
            .get_or_init(|| {
                self.group_requests.get_or_create_owned(&GroupStatusLabels {
                    cell: g.labels.cell.clone(),
                    group: g.labels.group.clone(),
                    version: g.labels.version.clone(),
                    status_class: STATUS_CLASSES[class],
                })
            })
            .inc();
        g.duration.observe(elapsed);
    }

    fn endpoint(target: &Arc<str>, addr: SocketAddr) -> EndpointLabels {
        EndpointLabels {
            target: label(target),
            address: addr.to_string(),
        }
    }

    pub fn set_up(&self, target: &Arc<str>, addr: SocketAddr, up: bool) {
        self.healthy
            .get_or_create(&Self::endpoint(target, addr))
            .set(i64::from(up));
    }

    /// The address left its target: its series go.
    pub fn removed(&self, target: &Arc<str>, addr: SocketAddr) {
        let l = Self::endpoint(target, addr);
        self.healthy.remove(&l);
        self.ejections.remove(&l);
    }

    pub fn ejected(&self, target: &Arc<str>, addr: SocketAddr) {
        let l = Self::endpoint(target, addr);
        self.ejections.get_or_create(&l).inc();
        self.healthy.get_or_create(&l).set(0);
    }

    pub fn checked(&self, target: &Arc<str>, pass: bool) {
        self.checks
            .get_or_create(&TargetResultLabels {
                target: label(target),
                result: if pass { "pass" } else { "fail" },
            })
            .inc();
    }

    pub fn resolved(&self, target: &Arc<str>, addresses: Option<usize>) {
        self.dns
            .get_or_create(&TargetResultLabels {
                target: label(target),
                result: if addresses.is_some() { "ok" } else { "error" },
            })
            .inc();
        if let Some(n) = addresses {
            self.addresses
                .get_or_create(&TargetLabels {
                    target: label(target),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The target left the registry.
    pub fn target_removed(&self, target: &Arc<str>) {
        self.addresses.remove(&TargetLabels {
            target: label(target),
        });
    }

    pub fn retry(&self, cell: &Arc<str>, sent: bool) {
        self.retries
            .get_or_create(&CellResultLabels {
                cell: label(cell),
                result: if sent { "sent" } else { "budget_exhausted" },
            })
            .inc();
    }
}
