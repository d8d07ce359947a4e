//! A cell's placement attributes: how many units it holds (`capacity`), what one tenant of a
//! tier weighs there (`tier_units`; a tier it does not name weighs 1 unit) and its labels
//! (`tags`, e.g. `pci`, `region=eu-west-1`). The proxy never routes by them: `cellgate tenant
//! place` chooses a cell by them. The registry file readers, the DynamoDB cell item and the
//! operator CLI all check them here, so every form accepts exactly the same values.

use std::collections::BTreeMap;

use crate::rules::{
    FieldError, MAX_CAPACITY, MAX_TAGS, MAX_TIER_UNIT_ENTRIES, MAX_TIER_UNITS, TAG_RULE, valid_tag,
    valid_tier,
};

/// What `tenant place` reads of a cell besides its state and region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellCapacity {
    /// Units the cell holds; `None`: `tenant place` never chooses it.
    pub capacity: Option<u64>,
    /// Units one tenant of a tier weighs in this cell (a tier not named: 1).
    pub tier_units: BTreeMap<String, u64>,
    /// Labels, in the order given (no duplicates).
    pub tags: Vec<String>,
}

/// The tag a cell's `region` stands for: `region=<region>`.
#[must_use]
pub fn region_tag(region: &str) -> String {
    format!("region={region}")
}

impl CellCapacity {
    /// Whether every attribute is unset (nothing to write).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.capacity.is_none() && self.tier_units.is_empty() && self.tags.is_empty()
    }

    /// Units one tenant of `tier` weighs in this cell.
    #[must_use]
    pub fn units(&self, tier: &str) -> u64 {
        self.tier_units.get(tier).copied().unwrap_or(1)
    }

    /// Whether the cell carries `tag`; a cell's `region` counts as the tag `region=<region>`.
    #[must_use]
    pub fn has_tag(&self, region: Option<&str>, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
            || region.is_some_and(|r| tag.strip_prefix("region=") == Some(r))
    }

    /// Checks every value; `key` prefixes the field in the error (`cells[2]`, `cell`). A
    /// `region=` tag must agree with the cell's `region` when both are set.
    pub fn check(&self, region: Option<&str>, key: &str) -> Result<(), FieldError> {
        if let Some(c) = self.capacity
            && !(1..=MAX_CAPACITY).contains(&c)
        {
            return Err(FieldError::new(
                format!("{key}.capacity"),
                c,
                format!("units the cell holds: between 1 and {MAX_CAPACITY}"),
            ));
        }
        if self.tier_units.len() > MAX_TIER_UNIT_ENTRIES {
            return Err(FieldError::new(
                format!("{key}.tier_units"),
                self.tier_units.len(),
                format!("at most {MAX_TIER_UNIT_ENTRIES} tiers"),
            ));
        }
        for (tier, &units) in &self.tier_units {
            if !valid_tier(tier) {
                return Err(FieldError::new(
                    format!("{key}.tier_units"),
                    tier,
                    "tiers are 1-32 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if !(1..=MAX_TIER_UNITS).contains(&units) {
                return Err(FieldError::new(
                    format!("{key}.tier_units.{tier}"),
                    units,
                    format!("units of one tenant: between 1 and {MAX_TIER_UNITS}"),
                ));
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(FieldError::new(
                format!("{key}.tags"),
                self.tags.len(),
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            let field = format!("{key}.tags[{i}]");
            if !valid_tag(tag) {
                return Err(FieldError::new(field, tag, TAG_RULE));
            }
            if self.tags[..i].contains(tag) {
                return Err(FieldError::new(field, tag, "given twice"));
            }
            if let (Some(r), Some(other)) = (region, tag.strip_prefix("region="))
                && other != r
            {
                return Err(FieldError::new(
                    field,
                    tag,
                    format!("the cell's region is {r}: a region= tag must agree with it"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(capacity: Option<u64>, units: &[(&str, u64)], tags: &[&str]) -> CellCapacity {
        CellCapacity {
            capacity,
            tier_units: units.iter().map(|&(t, u)| (t.to_owned(), u)).collect(),
            tags: tags.iter().map(|&t| t.to_owned()).collect(),
        }
    }

    fn error(c: &CellCapacity, region: Option<&str>) -> Option<(String, String)> {
        c.check(region, "cell").err().map(|e| (e.key, e.value))
    }

    #[test]
    fn units_default_to_one_per_tenant() {
        let c = cap(Some(10), &[("enterprise", 5)], &[]);
        assert_eq!(c.units("enterprise"), 5);
        assert_eq!(c.units("standard"), 1);
        assert!(CellCapacity::default().is_empty());
        assert!(!c.is_empty());
    }

    #[test]
    fn the_region_counts_as_a_tag() {
        let c = cap(Some(10), &[], &["pci"]);
        assert!(c.has_tag(Some("eu-west-1"), "region=eu-west-1"));
        assert!(!c.has_tag(Some("eu-west-1"), "region=us-east-1"));
        assert!(!c.has_tag(None, "region=eu-west-1"));
        assert!(c.has_tag(None, "pci"));
        let tagged = cap(None, &[], &["region=eu-west-1"]);
        assert!(tagged.has_tag(None, "region=eu-west-1"));
    }

    #[test]
    fn every_value_is_checked_naming_its_field() {
        let ok = cap(
            Some(1),
            &[("enterprise", 10)],
            &["pci", "region=eu-west-1", "a:b/c"],
        );
        assert_eq!(error(&ok, Some("eu-west-1")), None);
        let bad = [
            (cap(Some(0), &[], &[]), "cell.capacity"),
            (cap(Some(MAX_CAPACITY + 1), &[], &[]), "cell.capacity"),
            (cap(None, &[("gold plated", 2)], &[]), "cell.tier_units"),
            (cap(None, &[("gold", 0)], &[]), "cell.tier_units.gold"),
            (cap(None, &[], &["PCI"]), "cell.tags[0]"),
            (cap(None, &[], &["pci", "-x"]), "cell.tags[1]"),
            (cap(None, &[], &["pci", "pci"]), "cell.tags[1]"),
            (cap(None, &[], &[""]), "cell.tags[0]"),
        ];
        for (c, field) in bad {
            assert_eq!(
                error(&c, None).map(|e| e.0),
                Some(field.to_owned()),
                "{c:?}"
            );
        }
        let long = "a".repeat(65);
        assert!(error(&cap(None, &[], &[&long]), None).is_some());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        let many = CellCapacity {
            tags: many,
            ..CellCapacity::default()
        };
        assert_eq!(
            error(&many, None).map(|e| e.0),
            Some("cell.tags".to_owned())
        );
    }

    #[test]
    fn a_region_tag_must_agree_with_the_region() {
        let c = cap(None, &[], &["region=us-east-1"]);
        assert_eq!(error(&c, None), None);
        assert_eq!(
            error(&c, Some("eu-west-1")),
            Some(("cell.tags[0]".to_owned(), "region=us-east-1".to_owned()))
        );
    }
}
