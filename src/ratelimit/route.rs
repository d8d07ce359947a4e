//! Route classes: a stricter rate for the requests of a tenant that match a method and/or a
//! path prefix (writes, an expensive export endpoint).
//!
//! Paths are compared as [`crate::paths`] canonicalises them, so `//api/export` or
//! `/api/%65xport` cannot slip past a class for `/api/export`.

use std::sync::Arc;

use http::Method;

use super::gcra::Gcra;
use crate::config::RouteClassConfig;
use crate::paths::{canonical_path, prefix_matches};

#[derive(Debug)]
pub(super) struct RouteClass {
    pub name: Arc<str>,
    methods: Vec<Method>,
    /// Canonical and lower-cased.
    prefix: Option<Box<str>>,
    pub rate: Gcra,
    /// Bit i set: applies to tier i.
    tiers: u32,
}

impl RouteClass {
    pub fn from_config(c: &RouteClassConfig) -> Self {
        Self {
            name: Arc::from(c.name.as_str()),
            methods: c.methods.clone(),
            prefix: c
                .path_prefix
                .as_deref()
                .map(|p| canonical_path(p).to_ascii_lowercase().into_boxed_str()),
            rate: Gcra::new(c.rate, c.burst),
            tiers: if c.tiers.is_empty() {
                u32::MAX
            } else {
                c.tiers.iter().fold(0, |m, &i| m | (1 << i))
            },
        }
    }

    pub fn matches(&self, tier: usize, method: &Method, path: &str) -> bool {
        self.tiers & (1 << tier) != 0 && self.covers(method, path)
    }

    /// Whether the request is on this class's route (its methods and path), whatever its tier.
    pub fn covers(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| prefix_matches(p, &canonical_path(path)))
    }
}
