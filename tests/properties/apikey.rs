//! API keys as a client sends them (`Authorization: ApiKey …`, `x-api-key`): any text parses
//! or is refused without a panic; what parses is exactly `cgk_` + 12 + `_` + 26 base32
//! characters; and a key verifies against its own hash only.

use cellgate::apikey::{self, KEY_LEN, KeyHash};
use proptest::prelude::*;

use super::cases;

proptest! {
    #![proptest_config(cases(2_000))]

    #[test]
    fn any_text_parses_or_is_refused_and_what_parses_has_the_shape(s in "\\PC{0,60}") {
        if let Ok(k) = apikey::parse(&s) {
            prop_assert_eq!(s.len(), KEY_LEN);
            prop_assert!(s.starts_with("cgk_"));
            prop_assert!(apikey::valid_id(k.id));
        }
    }

    #[test]
    fn near_keys_are_refused(id in "[a-z2-7]{12}", secret in "[a-z2-7]{26}", cut in 0usize..43, c in "[A-Z0189_.-]") {
        let key = format!("cgk_{id}_{secret}");
        let k = apikey::parse(&key).unwrap();
        prop_assert!(KeyHash::of(&id, &secret).verifies(&k));
        // One character replaced by one outside the alphabet (or a misplaced `_`): refused.
        let mut chars: Vec<char> = key.chars().collect();
        let at = 4 + cut % 39;
        if chars[at] != '_' {
            chars[at] = c.chars().next().unwrap();
            let near: String = chars.into_iter().collect();
            prop_assert!(apikey::parse(&near).is_err(), "{}", near);
        }
    }
}
