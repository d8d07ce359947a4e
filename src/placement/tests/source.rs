//! The file registry source: noticing changes and reporting a broken file once.

use super::*;
use crate::placement::file::FileSource;

#[tokio::test]
async fn file_source_notices_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, GOOD).unwrap();
    let src = FileSource::new(&path);
    assert_eq!(src.path(), path);
    assert!(src.describe().starts_with("file:"));
    assert!(
        src.changed().await.unwrap(),
        "never loaded counts as changed"
    );

    let data = src.load().await.unwrap();
    assert_eq!(data.tenant_count(), 2);
    assert!(!src.changed().await.unwrap());
    assert!(
        !src.changed().await.unwrap(),
        "polling alone changes nothing"
    );

    std::fs::write(&path, "[[tenants]]\nid = \"acme\"\ncell = \"cell-1\"\n").unwrap();
    assert!(src.changed().await.unwrap());
    let data = src.load().await.unwrap();
    assert_eq!(data.tenant_count(), 1);
    assert!(!src.changed().await.unwrap());
}

#[tokio::test]
async fn broken_or_missing_file_is_reported_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    let src = FileSource::new(&path);
    assert!(matches!(
        src.changed().await,
        Err(RegistryError::Read { .. })
    ));
    assert!(matches!(src.load().await, Err(RegistryError::Read { .. })));

    std::fs::write(&path, "[[tenants]\nbroken").unwrap();
    assert!(matches!(src.load().await, Err(RegistryError::Parse { .. })));
    // The failed attempt is remembered: no retry until the file changes again.
    assert!(!src.changed().await.unwrap());
}
