//! JWT verification: which issuer signed a token, for which tenant, and is it still good.
//!
//! Called by the *identify* stage. A token is checked against the `[[auth.issuers]]` entry its
//! `iss` names (read with the header before any key is chosen, [`head`]; multi-issuer
//! tenancy): the issuer's algorithm allow-list, keys bound to their algorithm family
//! ([`keys`]), static keys and/or a JWKS refreshed in the background ([`jwks`]), `exp` always,
//! `nbf`/`iat` when present, `iss` and `aud` required, an optional `typ`, required claims, and
//! the tenant claim ([`claims`]). Keys never come from the token (`jku`, `x5u`, `jwk`, `x5c`
//! are ignored) and a `kid` is charset-checked before any lookup. A verified token is cached by
//! its hash until its `exp` ([`cache`]; the verifier itself is in `verifier.rs`), so a client that sends the same token again pays for a
//! hash and a lookup, not a signature check. Errors carry a fixed [`Reason`], never the token
//! or its claims, so nothing secret reaches a log line.

mod bearer;
mod cache;
pub mod claims;
pub mod crypto;
pub mod fetch;
pub mod head;
mod issuer;
pub mod jwks;
pub mod keys;
mod reasons;
mod settings;
mod verifier;

pub use bearer::bearer_token;
pub use cache::{TokenCache, TokenMemo, token_key, unix_now};
pub use claims::{ClaimPath, ForcedArms, ForwardClaim};
pub use head::{TokenHead, read_head};
pub use issuer::{Issuer, IssuerPolicy};
pub use jwks::{Jwks, JwksConfig};
pub use keys::{AlgSet, FileKey, KeySet, VerificationKey, load_key, valid_kid};
pub use reasons::{AuthError, Reason};
pub use settings::{AuthConfig, IssuerConfig};
pub use verifier::{AuthSetupError, MAX_KIDLESS_KEYS, VerifiedToken, Verifier};

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
