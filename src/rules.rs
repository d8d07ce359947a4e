//! What a valid name or number is, wherever it is read: cell ids, group and version labels,
//! tier names, rates, and the bounds on tiers, route classes and weights; and the
//! [`FieldError`] a broken one is reported as. Config, the registry sources, the operator CLI
//! and the metrics all check against these, so a value one accepts the others accept too. It
//! imports nothing of ours.

/// A value that failed validation: which key, what value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(
        key: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The cell label of requests that reached no cell; no cell may take it as its id.
pub const NO_CELL: &str = "none";

/// What [`valid_cell_id`] accepts, for error messages.
pub const CELL_ID_RULE: &str = "cell ids are 1-63 characters of A-Z a-z 0-9 . _ -, and not `none` (it labels requests that reached no cell)";

/// A valid cell id: 1..=63 bytes of `[A-Za-z0-9._-]`, other than [`NO_CELL`].
#[must_use]
pub fn valid_cell_id(id: &str) -> bool {
    id != NO_CELL
        && !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What [`valid_label`] accepts, for error messages.
pub const LABEL_RULE: &str = "1-64 characters of A-Z a-z 0-9 . _ -";

/// Group and version names: 1-64 characters of `A-Z a-z 0-9 . _ -`.
#[must_use]
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What [`valid_entitlement`] accepts, for error messages.
pub const ENTITLEMENT_RULE: &str = "1-64 characters of A-Z a-z 0-9 . _ - :";

/// Most entitlements one tenant record, or scopes one API key, may name.
pub const MAX_ENTITLEMENTS: usize = 64;

/// Entitlement and scope names (`billing`, `reports:read`): 1-64 characters of
/// `A-Z a-z 0-9 . _ - :`.
#[must_use]
pub fn valid_entitlement(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Largest weight of one group (weights are relative: 95/5 and 9500/500 are the same split).
pub const MAX_WEIGHT: u32 = 10_000;

/// Whether `tier` is 1-32 characters of `A-Z a-z 0-9 _ -`.
#[must_use]
pub fn valid_tier(tier: &str) -> bool {
    !tier.is_empty()
        && tier.len() <= 32
        && tier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What [`valid_tag`] accepts, for error messages.
pub const TAG_RULE: &str = "tags are 1-64 characters of a-z 0-9 . _ - : = /, starting with a letter or digit (e.g. `pci`, `region=eu-west-1`)";

/// Most tags one cell may carry.
pub const MAX_TAGS: usize = 32;

/// A cell's placement label (`pci`, `eu-only`, `region=eu-west-1`): 1-64 characters of
/// `a-z 0-9 . _ - : = /`, starting with a letter or digit. Lower case only, so `PCI` and
/// `pci` can never be two labels for one thing.
#[must_use]
pub fn valid_tag(tag: &str) -> bool {
    tag.len() <= 64
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && tag.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'-' | b':' | b'=' | b'/')
        })
}

/// The largest capacity (in units) a cell may declare.
pub const MAX_CAPACITY: u64 = 1_000_000_000;
/// The most units one tenant of a tier may weigh (`tier_units`).
pub const MAX_TIER_UNITS: u64 = 1_000_000;
/// Most entries in one cell's `tier_units`.
pub const MAX_TIER_UNIT_ENTRIES: usize = 32;

/// Most tiers a config may define (metric handles are cached per cell and tier).
pub const MAX_TIERS: usize = 16;
/// Most route classes a config may define.
pub const MAX_ROUTE_CLASSES: usize = 32;

/// The slowest rate accepted anywhere: one request per 1000 s.
pub const MIN_RATE: f64 = 0.001;
/// The fastest rate a tenant record may set, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// The default burst for a rate with none given: one second's worth (at least 1).
#[must_use]
pub fn default_burst(rate: f64) -> u32 {
    rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}
