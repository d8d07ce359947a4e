//! HTTP/1 desync mitigation: every request head (and chunked body) is classified from its raw
//! bytes before hyper parses it, as AWS ALB does with its `http_desync_guardian` library, and
//! the class decides what happens under `server.desync_mitigation`.
//!
//! - **compliant**: as RFC 9110/9112 write it;
//! - **acceptable**: not compliant, but every parser reads it the same way (a bare LF line end,
//!   a non-ASCII byte in a value, `Content-Length: 0` on a GET);
//! - **ambiguous**: two implementations could find different request boundaries in it (both
//!   `Content-Length` and `Transfer-Encoding`, a repeated length, a header name that looks like
//!   a framing header, a body on a GET);
//! - **severe**: malformed, or crafted to split requests (differing lengths, a transfer coding
//!   other than one final `chunked`, a bare CR, obs-fold, NUL or control bytes, a bad chunk
//!   size).
//!
//! | class | `monitor` | `defensive` (default) | `strictest` |
//! |---|---|---|---|
//! | compliant | forward | forward | forward |
//! | acceptable | forward | forward | refuse |
//! | ambiguous | forward | forward, then close both connections | refuse |
//! | severe | forward | refuse | refuse |
//!
//! A refusal is a 400 (431 for a head over the limits) and the client connection closes.
//! "Close both" means the answer carries `Connection: close` and the upstream connection the
//! request used is not reused, so whatever a cell might have read as a second request has no
//! connection left to be answered on. Some heads are refused in every mode, `monitor`
//! included ([`Reason::always_refused`]): those hyper cannot parse (so there is nothing to
//! forward) and those whose `Host` is not one value (the host picks the tenant).
//!
//! This module is a leaf: the classifier over bytes ([`head`], [`chunked`]), the stream
//! follower that finds where each head starts ([`tracker`]) and the mode table. The proxy
//! applies it to a connection's bytes (`proxy::guard`).

mod bytes;
pub mod chunked;
pub mod head;
mod reason;
pub mod tracker;

pub use reason::Reason;

/// How far a request strays from the RFCs (ordered: a worse class compares greater).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Compliant,
    Acceptable,
    Ambiguous,
    Severe,
}

impl Class {
    /// The `class` label of `cellgate_desync_total`.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::Acceptable => "acceptable",
            Self::Ambiguous => "ambiguous",
            Self::Severe => "severe",
        }
    }
}

/// `server.desync_mitigation`: what each class gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward everything that can be forwarded; count and log what would be refused.
    Monitor,
    /// Refuse severe requests; forward ambiguous ones, then close both connections.
    #[default]
    Defensive,
    /// Forward compliant requests only.
    Strictest,
}

impl Mode {
    /// Parses the config value.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "monitor" => Some(Self::Monitor),
            "defensive" => Some(Self::Defensive),
            "strictest" => Some(Self::Strictest),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Defensive => "defensive",
            Self::Strictest => "strictest",
        }
    }

    /// What a request of this verdict gets in this mode.
    #[must_use]
    pub fn action(self, reason: Reason) -> Action {
        if reason.always_refused() {
            return Action::Refuse;
        }
        match (self, reason.class()) {
            (_, Class::Compliant) | (Self::Monitor | Self::Defensive, Class::Acceptable) => {
                Action::Forward
            }
            (Self::Monitor, _) => Action::Forward,
            (Self::Defensive, Class::Ambiguous) => Action::ForwardClose,
            (Self::Defensive, Class::Severe) | (Self::Strictest, _) => Action::Refuse,
        }
    }
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Forward, then close the client connection and do not reuse the upstream one.
    ForwardClose,
    /// Answer 400 (or 431) and close; nothing reaches a cell.
    Refuse,
}

impl Action {
    /// The `action` label of `cellgate_desync_total`.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::ForwardClose => "close",
            Self::Refuse => "refuse",
        }
    }
}

/// One decision about one request: why, and what it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    pub action: Action,
    /// The request's place on its connection (0 for the first), as the service counts them.
    pub seq: u32,
}

#[cfg(test)]
mod tests;
