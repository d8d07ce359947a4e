//! The API key check the identify stage is handed: a presented key against the record the
//! placement snapshot holds for its id, or, for an id the snapshot lacks, one coalesced and
//! rate-capped registry read first (a key created a moment ago works at once; a flood of
//! random ids costs at most the miss cap in reads, and each miss is cached negatively).
//!
//! Past the miss cap, an id the snapshot lacks is refused 401 with its own reason
//! (`unchecked`), not 503: the registry is fine, the client is guessing.
//!
//! The secret is compared in constant time ([`KeyView::check`]); the snapshot guard is held
//! only while the record is read, never across an await.

use super::Placer;
use crate::apikey::{KeyRefusal, ParsedKey};
use crate::auth::unix_now;
use crate::identify::{KeyCheck, KeyFailure, KeyGrant};
use crate::placement::KeyView;
use crate::placement::lookup::LookupOutcome;
use crate::tenant::TenantId;

/// The grant of `key` as `view` records it.
fn grant(view: &KeyView<'_>, key: &ParsedKey<'_>) -> Result<KeyGrant, KeyFailure> {
    view.check(key, unix_now()).map_err(KeyFailure::Refused)?;
    // Validated when the record was read; a record that fails now is refused, never guessed.
    let tenant =
        TenantId::parse(view.tenant()).map_err(|_| KeyFailure::Refused(KeyRefusal::Unknown))?;
    Ok(KeyGrant::new(key, tenant, view.scopes().cloned()))
}

impl KeyCheck for Placer<'_> {
    async fn check(&self, key: ParsedKey<'_>) -> Result<KeyGrant, KeyFailure> {
        {
            let snap = self.snapshot.load();
            if let Some(view) = snap.api_key(key.id) {
                return grant(&view, &key);
            }
            if !self.lookup_unknown {
                return Err(KeyFailure::Refused(KeyRefusal::Unknown));
            }
        }
        match self.lookup.resolve_key(key.id).await {
            LookupOutcome::Found => {
                let snap = self.snapshot.load();
                match snap.api_key(key.id) {
                    Some(view) => grant(&view, &key),
                    None => Err(KeyFailure::Refused(KeyRefusal::Unknown)),
                }
            }
            LookupOutcome::Absent => Err(KeyFailure::Refused(KeyRefusal::Unknown)),
            // Past the miss cap an id the snapshot lacks is, almost surely, a guess: refused as
            // one (401, counted apart), so a flood of junk keys does not read as an outage.
            LookupOutcome::Limited => Err(KeyFailure::Refused(KeyRefusal::Unchecked)),
            LookupOutcome::Unavailable => Err(KeyFailure::Unavailable),
        }
    }
}
