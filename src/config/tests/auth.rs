//! The auth section: issuers, their keys and JWKS, and the errors that name them.

use super::*;

#[test]
fn issuers_load_keys_from_absolute_and_relative_paths_with_defaults() {
    let text = with_auth(&format!(
        "{ISSUER_HEAD}[[auth.issuers.keys]]\nkid = \"rsa\"\nalgorithm = \"RS256\"\n\
         public_key_file = \"{KEYS}/rsa.pub.pem\"\n\
         [[auth.issuers.keys]]\nalgorithm = \"ES256\"\npublic_key_file = \"ec.pub.pem\"\n"
    ));
    // Relative key paths are anchored to the config file's directory.
    let path = Path::new(KEYS).join("cellgate.toml");
    let cfg = Config::from_toml(&text, &path, &Overrides::default()).unwrap();
    let iss = &cfg.auth.issuers[0];
    assert_eq!(
        (&*iss.name, &*iss.issuer),
        ("https://idp.test", "https://idp.test")
    );
    assert_eq!(iss.keys.len(), 2);
    assert_eq!(iss.keys[0].kid.as_deref(), Some("rsa"));
    assert_eq!(iss.keys[1].algorithms, crate::auth::AlgSet::ES256);
    // Defaults: the keys' own algorithms, tenant claim `tenant` (required), 60 s leeway.
    assert_eq!(iss.algorithms.names(), ["RS256", "ES256"]);
    assert_eq!(iss.tenant_claim.as_str(), "tenant");
    assert!(iss.tenant_claim_required);
    assert_eq!(iss.leeway, Duration::from_secs(60));
    assert!(iss.jwks.is_none() && iss.tenants.is_none());
    // The same relative path from elsewhere does not resolve.
    assert_eq!(
        invalid(&text).key,
        "auth.issuers[0].keys[1].public_key_file"
    );
}

#[test]
fn jwks_issuers_default_to_asymmetric_algorithms_and_need_https() {
    let jwks = |url: &str| {
        with_auth(&format!(
            "{ISSUER_HEAD}[auth.issuers.jwks]\nurl = \"{url}\"\n"
        ))
    };
    let cfg = parse(&jwks("https://idp.test/jwks.json")).unwrap();
    let iss = &cfg.auth.issuers[0];
    assert_eq!(iss.algorithms, crate::auth::AlgSet::ASYMMETRIC);
    let j = iss.jwks.as_ref().unwrap();
    assert_eq!(
        (j.refresh, j.cooldown),
        (Duration::from_secs(600), Duration::from_secs(30))
    );
    assert_eq!((j.max_keys, j.max_bytes), (64, 256 * 1024));
    assert!(parse(&jwks("http://127.0.0.1:8080/jwks")).is_ok());
    for url in ["http://idp.test/jwks", "ftp://idp.test/x", "not a url"] {
        assert_eq!(kv(&invalid(&jwks(url))), ("auth.issuers[0].jwks.url", url));
    }
}

#[test]
fn issuer_errors_name_their_keys() {
    let key = format!(
        "[[auth.issuers.keys]]\nkid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"{KEYS}/rsa.pub.pem\"\n"
    );
    #[rustfmt::skip]
    let cases = [
        (ISSUER_HEAD.to_owned(), "auth.issuers[0].keys"),
        (format!("[[auth.issuers]]\nissuer = \"x\"\n{key}"), "auth.issuers[0].audiences"),
        (format!("{ISSUER_HEAD}algorithms = [\"none\"]\n{key}"), "auth.issuers[0].algorithms[0]"),
        (format!("{ISSUER_HEAD}algorithms = [\"ES256\"]\n{key}"), "auth.issuers[0].keys[0].algorithm"),
        (format!("{ISSUER_HEAD}algorithms = [\"RS256\", \"HS256\"]\n{key}"), "auth.issuers[0].algorithms"),
        (format!("{ISSUER_HEAD}leeway = \"10m\"\n{key}"), "auth.issuers[0].leeway"),
        (format!("{ISSUER_HEAD}tenant_claim = \"\"\n{key}"), "auth.issuers[0].tenant_claim"),
        (format!("{ISSUER_HEAD}tenants = [\"Not Valid\"]\n{key}"), "auth.issuers[0].tenants[0]"),
        (format!("{ISSUER_HEAD}typ = \"\"\n{key}"), "auth.issuers[0].typ"),
        (format!("{ISSUER_HEAD}{key}{key}"), "auth.issuers[0].keys[1].kid"),
        (format!("{ISSUER_HEAD}{key}{ISSUER_HEAD}{key}"), "auth.issuers[1].issuer"),
        (format!("{ISSUER_HEAD}[auth.issuers.jwks]\nurl = \"https://i.test/\"\ncooldown = \"0s\"\n"), "auth.issuers[0].jwks.cooldown"),
        (format!("{ISSUER_HEAD}[auth.issuers.jwks]\nurl = \"https://i.test/\"\nmax_keys = 0\n"), "auth.issuers[0].jwks.max_keys"),
        (format!("[[auth.forward_claims]]\nclaim = \"sub\"\nheader = \"host\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[[auth.forward_claims]]\nclaim = \"org\"\nheader = \"X-Tenant-Id\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[[auth.forward_claims]]\nclaim = \"org\"\nheader = \"x-cell-id\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[[auth.forward_claims]]\nclaim = \"ip\"\nheader = \"x-forwarded-for\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[auth]\ncache_max_ttl = \"2h\"\n{ISSUER_HEAD}{key}"), "auth.cache_max_ttl"),
    ];
    for (auth, want) in cases {
        assert_eq!(invalid(&with_auth(&auth)).key, want, "{auth}");
    }
    // The jwt source with no issuer at all.
    assert_eq!(invalid(&with_auth("")).key, "tenant.sources");
}

#[test]
fn hmac_secret_env_errors_name_the_variable_not_the_secret() {
    // Positive HS256 verification is not tested here: it needs a secret in an environment
    // variable, and setting one from a test needs `unsafe` (forbidden in this crate).
    let hs = |extra: &str| {
        with_auth(&format!(
            "{ISSUER_HEAD}[[auth.issuers.keys]]\nalgorithm = \"HS256\"\n{extra}"
        ))
    };
    let missing = invalid(&hs(""));
    assert_eq!(
        kv(&missing),
        ("auth.issuers[0].keys[0].secret_env", "(missing)")
    );
    let var = "CELLGATE_UNIT_TEST_SECRET_THAT_IS_NEVER_SET_5c1e";
    let unset = invalid(&hs(&format!("secret_env = \"{var}\"\n")));
    assert_eq!(kv(&unset), ("auth.issuers[0].keys[0].secret_env", var));
    let with_pem = invalid(&hs(&format!("public_key_file = \"{KEYS}/rsa.pub.pem\"\n")));
    assert_eq!(with_pem.key, "auth.issuers[0].keys[0].algorithm");
}
