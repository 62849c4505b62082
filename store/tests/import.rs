//! The store's import through its library interface, for what the command line cannot ask yet.

use rkt_store::{ImportOptions, Store, StoreError};

fn tar_with(content: &[u8]) -> Vec<u8> {
    // A tiny ACI written by hand: manifest, rootfs/, one file, end marker.
    fn header(name: &str, kind: u8, size: usize) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..108].copy_from_slice(b"0000644\0");
        b[108..116].copy_from_slice(b"0000000\0");
        b[116..124].copy_from_slice(b"0000000\0");
        b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        b[136..148].copy_from_slice(b"00000000000\0");
        b[156] = kind;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }
    let manifest = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x"}"#;
    let mut out = Vec::new();
    for (name, kind, data) in [("manifest", b'0', &manifest[..]), ("rootfs", b'5', b""), ("rootfs/f", b'0', content)] {
        out.extend_from_slice(&header(name, kind, data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn an_image_that_does_not_hash_to_the_requested_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wanted = rt().block_on(store.import(&tar_with(b"one")[..], &ImportOptions::default())).unwrap().id;
    store.remove_image(&wanted).unwrap();
    let options = ImportOptions { expected: Some(wanted.clone()), latest: false };
    let err = rt().block_on(store.import(&tar_with(b"two")[..], &options)).unwrap_err();
    assert!(matches!(err, StoreError::IdMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&wanted.to_string()));
    assert!(store.images().unwrap().is_empty());
    assert!(!store.blob_path(&wanted).exists());
    assert_eq!(std::fs::read_dir(dir.path().join("cas/tmp")).unwrap().count(), 0);
    let ok = rt().block_on(store.import(&tar_with(b"one")[..], &options)).unwrap();
    assert_eq!(ok.id, wanted);
}

#[test]
fn lookup_by_name_prefers_latest_then_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = rt()
        .block_on(store.import(&tar_with(b"1")[..], &ImportOptions { latest: true, ..Default::default() }))
        .unwrap();
    let second = rt().block_on(store.import(&tar_with(b"2")[..], &ImportOptions::default())).unwrap();
    let app = rkt_store::appc::AppString::parse("example.com/x").unwrap();
    assert_eq!(store.find(&app).unwrap(), Some(first.id.clone()));
    assert_ne!(first.id, second.id);
    store.remove_image(&first.id).unwrap();
    assert_eq!(store.find(&app).unwrap(), Some(second.id));
    let none = rkt_store::appc::AppString::parse("example.com/x,os=linux").unwrap();
    assert_eq!(store.find(&none).unwrap(), None);
}
