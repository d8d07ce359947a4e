//! Loading configured keys: errors that name the field, and key material kept out of Debug.

use super::*;

fn file_key(kid: Option<&str>, algorithm: &str, file: &str) -> FileKey {
    FileKey {
        kid: kid.map(str::to_owned),
        algorithm: algorithm.to_owned(),
        public_key_file: Some(file.to_owned()),
        public_key_pem: None,
        secret_env: None,
        secret_file: None,
    }
}

#[test]
fn load_key_errors_name_the_field() {
    let err = |k: FileKey| load_key(&k, Path::new(KEYS), "k[3]").unwrap_err();
    let e = err(file_key(None, "PS999", "rsa.pub.pem"));
    assert_eq!((e.key, e.value), ("k[3].algorithm".into(), "PS999".into()));
    assert_eq!(
        err(file_key(None, "none", "rsa.pub.pem")).reason,
        "\"none\" is never accepted"
    );
    assert_eq!(
        err(file_key(Some("../x"), "RS256", "rsa.pub.pem")).key,
        "k[3].kid"
    );
    let file_field = "k[3].public_key_file";
    assert_eq!(err(file_key(None, "RS256", "nope.pem")).key, file_field);
    // An EC key where an RSA key is expected.
    assert_eq!(err(file_key(None, "RS256", "ec.pub.pem")).key, file_field);
    let mut both = file_key(None, "RS256", "rsa.pub.pem");
    both.public_key_pem = Some(String::from_utf8(read("rsa.pub.pem")).unwrap());
    assert_eq!(err(both).key, file_field);
    let mut secret = file_key(None, "RS256", "rsa.pub.pem");
    secret.secret_env = Some("PATH".to_owned());
    assert_eq!(err(secret).key, "k[3].secret_env");
    let mut bad_inline = file_key(None, "ES256", "x");
    (bad_inline.public_key_file, bad_inline.public_key_pem) = (None, Some("junk".to_owned()));
    let e = err(bad_inline);
    assert_eq!(
        (e.key, e.value),
        ("k[3].public_key_pem".into(), "(inline PEM)".into())
    );
    let mut hmac = file_key(None, "HS256", "x");
    (hmac.public_key_file, hmac.secret_env) = (None, Some("CELLGATE_TEST_UNSET_SECRET".to_owned()));
    assert_eq!(err(hmac).key, "k[3].secret_env");
    let mut short = file_key(None, "HS256", "x");
    (short.public_key_file, short.secret_file) = (None, Some("ec.pub.pem".to_owned()));
    assert!(
        load_key(&short, Path::new(KEYS), "k").is_ok(),
        "a long file is a secret"
    );
    short.secret_file = Some("missing.secret".to_owned());
    assert_eq!(err(short).key, "k[3].secret_file");
}

#[test]
fn debug_output_hides_key_material() {
    let mut k = file_key(Some("inline"), "ES256", "x");
    (k.public_key_file, k.public_key_pem) =
        (None, Some(String::from_utf8(read("ec.pub.pem")).unwrap()));
    let loaded = load_key(&k, Path::new("/nonexistent"), "k[0]").unwrap();
    assert_eq!(loaded.algorithms, AlgSet::ES256);
    let shown = format!("{loaded:?}");
    assert!(
        shown.contains("inline") && !shown.contains("BEGIN"),
        "{shown}"
    );
}
