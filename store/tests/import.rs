//! The store's import through its library interface, for what the command line cannot ask yet.

use rkt_store::{ImportOptions, Store, StoreError};

fn tar_with(content: &[u8]) -> Vec<u8> {
    aci(r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x"}"#, &[("rootfs/f", content)])
}

/// A tiny ACI written by hand: manifest, rootfs/, these files, end marker.
fn aci(manifest: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
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
    let mut entries: Vec<(&str, u8, &[u8])> = vec![("manifest", b'0', manifest.as_bytes()), ("rootfs", b'5', b"")];
    entries.extend(files.iter().map(|(name, data)| (*name, b'0', *data)));
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        out.extend_from_slice(&header(name, kind, data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The manifest of an image named `name`, on the image named `dep` if given.
fn manifest_on(name: &str, dep: Option<&str>) -> String {
    let deps = dep.map(|d| format!(r#","dependencies":[{{"imageName":"{d}"}}]"#)).unwrap_or_default();
    format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}"{deps}}}"#)
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

#[test]
fn a_chain_rendered_layer_by_layer_equals_the_ordinary_render() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let base = aci(&manifest_on("example.com/l0", None), &[("rootfs/a", b"base"), ("rootfs/gone", b"x")]);
    let mid =
        aci(&manifest_on("example.com/l1", Some("example.com/l0")), &[("rootfs/a", b"mid"), ("rootfs/.wh.gone", b"")]);
    let top = aci(&manifest_on("example.com/top", Some("example.com/l1")), &[]);
    rt().block_on(async {
        let mut ids = Vec::new();
        for image in [&base, &mid, &top] {
            ids.push(store.import(&image[..], &ImportOptions::default()).await.unwrap().id);
        }
        let mut chain = store.start_chain_render().unwrap();
        store.render_next_layer(&mut chain, &ids[0]).await.unwrap();
        store.render_next_layer(&mut chain, &ids[1]).await.unwrap();
        let tree = store.finish_chain_render(chain, &ids[2]).await.unwrap();
        assert!(store.check_tree(&tree.record).unwrap(), "the recorded hash is what the files hash to");
        assert_eq!(std::fs::read(tree.rootfs().join("a")).unwrap(), b"mid");
        assert!(!tree.rootfs().join("gone").exists(), "the whiteout hid the lower file");
        let hash = tree.record.hash.clone();
        store.remove_tree(&tree.record.id).unwrap();
        assert_eq!(store.render_tree(&ids[2]).await.unwrap().record.hash, hash, "same as the ordinary render");

        // Layers in the wrong order are not the image's: refused, nothing left behind.
        let mut chain = store.start_chain_render().unwrap();
        store.render_next_layer(&mut chain, &ids[1]).await.unwrap();
        store.render_next_layer(&mut chain, &ids[0]).await.unwrap();
        assert!(store.finish_chain_render(chain, &ids[2]).await.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("cas/tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("render-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn a_built_aci_is_the_archive_an_import_of_its_bytes_gives() {
    use rkt_store::tar_out::OutEntry;
    let manifest = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/built"}"#;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let long = format!("rootfs/{}", "d".repeat(150));
    let built = rt()
        .block_on(async {
            let mut aci = store.build_aci(manifest.as_bytes())?;
            aci.entry(&OutEntry::plain(b"rootfs/f", b'0', 0o644, 3), &mut &b"abc"[..]).await.map_err(|e| match e {
                rkt_store::EntryError::Store(e) | rkt_store::EntryError::GivenAgain(e) => e,
                rkt_store::EntryError::Read(e) => StoreError::Stream(e),
            })?;
            let written = aci.entry(&OutEntry::plain(long.as_bytes(), b'0', 0o600, 0), &mut &b""[..]).await;
            assert!(written.is_ok(), "a long name goes in a PAX record");
            aci.finish(false)
        })
        .unwrap();
    // Its bytes, imported into another store as any ACI is, give the same ID.
    let bytes = std::fs::read(store.blob_path(&built.id)).unwrap();
    let other = tempfile::tempdir().unwrap();
    let again =
        rt().block_on(Store::open(other.path()).unwrap().import(&bytes[..], &ImportOptions::default())).unwrap();
    assert_eq!(again.id, built.id);
    assert_eq!(again.manifest.name.to_string(), "example.com/built");

    // An entry the layout rules refuse leaves nothing behind.
    let refused = rt().block_on(async {
        let mut aci = store.build_aci(manifest.as_bytes()).unwrap();
        aci.entry(&OutEntry::plain(b"rootfs/f", b'0', 0o644, 1), &mut &b"x"[..]).await.unwrap();
        aci.entry(&OutEntry::plain(b"rootfs/f/below", b'0', 0o644, 1), &mut &b"y"[..]).await
    });
    assert!(matches!(refused, Err(rkt_store::EntryError::Store(_))));
    assert_eq!(store.images().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(dir.path().join("cas/tmp")).unwrap().count(), 0);
}

/// An entry given again is compared with the blob as written: right after much data, still on
/// its way to the file on the writing thread, the blob must be read whole all the same.
#[test]
fn an_entry_given_again_right_after_much_data_is_compared_with_all_of_it() {
    use rkt_store::tar_out::OutEntry;
    let manifest = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/again"}"#;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut other = big.clone();
    *other.last_mut().unwrap() ^= 1;
    let entry = OutEntry::plain(b"rootfs/big", b'0', 0o644, big.len() as u64);
    let built = rt().block_on(async {
        let mut aci = store.build_aci(manifest.as_bytes()).unwrap();
        aci.entry(&entry, &mut &big[..]).await.unwrap();
        let alike = aci.entry(&entry, &mut &big[..]).await;
        assert!(alike.is_ok(), "the same entry again is left out: {:?}", alike.err());
        let differing = aci.entry(&entry, &mut &other[..]).await;
        assert!(matches!(differing, Err(rkt_store::EntryError::GivenAgain(_))), "{:?}", differing.err());
        aci.finish(false).unwrap()
    });
    let bytes = std::fs::read(store.blob_path(&built.id)).unwrap();
    let again = tempfile::tempdir().unwrap();
    let imported =
        rt().block_on(Store::open(again.path()).unwrap().import(&bytes[..], &ImportOptions::default())).unwrap();
    assert_eq!(imported.id, built.id);
}

#[test]
fn a_follower_reads_the_blob_as_it_is_written_and_fails_if_it_is_abandoned() {
    use rkt_store::tar_out::OutEntry;
    use tokio::io::AsyncReadExt;
    let manifest = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/followed"}"#;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let (read, built) = runtime.block_on(async {
        let mut aci = store.build_aci(manifest.as_bytes()).unwrap();
        let mut follower = aci.follow().unwrap();
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            follower.read_to_end(&mut bytes).await.map(|_| bytes)
        });
        let big = vec![5u8; 1 << 20];
        for name in ["rootfs/a", "rootfs/b", "rootfs/c"] {
            aci.entry(&OutEntry::plain(name.as_bytes(), b'0', 0o644, big.len() as u64), &mut &big[..]).await.unwrap();
            tokio::task::yield_now().await;
        }
        let built = aci.finish(false).unwrap();
        (reader.await.unwrap().unwrap(), built)
    });
    assert_eq!(read, std::fs::read(store.blob_path(&built.id)).unwrap());

    let abandoned = runtime.block_on(async {
        let mut aci = store.build_aci(manifest.as_bytes()).unwrap();
        let mut follower = aci.follow().unwrap();
        let data = vec![1u8; 300 * 1024];
        aci.entry(&OutEntry::plain(b"rootfs/x", b'0', 0o644, data.len() as u64), &mut &data[..]).await.unwrap();
        drop(aci);
        let mut bytes = Vec::new();
        // A follower left waiting would be the bug: fail rather than hang.
        tokio::time::timeout(std::time::Duration::from_secs(10), follower.read_to_end(&mut bytes)).await
    });
    assert!(matches!(abandoned, Ok(Err(_))), "{abandoned:?}");
}

/// A layer stored under another chain is copied entry for entry: every kind of entry, with its
/// mode, owner, times, link, device and extended attributes, renders to the same tree. A donor
/// whose blob no longer hashes to its ID is refused as damaged.
#[test]
fn a_root_filesystem_copied_from_a_stored_image_renders_the_same() {
    use rkt_store::tar_out::OutEntry;
    let is_root = nix::unistd::geteuid().is_root();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let manifest = |name: &str| format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}"}}"#);
    let xattrs = [(b"user.origin".to_vec(), b"donor".to_vec())];
    let entry = |path: &'static [u8], kind: u8, mode: u32, size: u64| OutEntry {
        uid: 7,
        gid: 8,
        mtime: 1_600_000_000,
        ..OutEntry::plain(path, kind, mode, size)
    };
    let donor = rt()
        .block_on(async {
            let mut aci = store.build_aci(manifest("example.com/donor").as_bytes())?;
            let adds: Vec<(OutEntry, &[u8])> = vec![
                (entry(b"rootfs/etc", b'5', 0o750, 0), b""),
                (OutEntry { xattrs: &xattrs, ..entry(b"rootfs/etc/f", b'0', 0o640, 5) }, b"hello"),
                (OutEntry { link: b"f", ..entry(b"rootfs/etc/sym", b'2', 0o777, 0) }, b""),
                (OutEntry { link: b"rootfs/etc/f", ..entry(b"rootfs/etc/hard", b'1', 0o640, 0) }, b""),
                (entry(b"rootfs/etc/pipe", b'6', 0o600, 0), b""),
                (OutEntry { dev: (1, 3), ..entry(b"rootfs/etc/null", b'3', 0o666, 0) }, b""),
            ];
            for (out, mut data) in adds {
                aci.entry(&out, &mut data).await.map_err(|e| match e {
                    rkt_store::EntryError::Store(e) | rkt_store::EntryError::GivenAgain(e) => e,
                    rkt_store::EntryError::Read(e) => StoreError::Stream(e),
                })?;
            }
            aci.finish(false)
        })
        .unwrap()
        .id;
    let copy = |name: &str| {
        rt().block_on(async {
            let mut aci = store.build_aci(manifest(name).as_bytes())?;
            aci.copy_rootfs_of(&donor).await.map_err(|e| match e {
                rkt_store::CopyError::Damaged(e) => e,
                rkt_store::CopyError::Store(e) => panic!("the copy could not be written: {e}"),
            })?;
            aci.finish(false)
        })
    };
    let copied = copy("example.com/copy").unwrap().id;
    assert_ne!(copied, donor);
    if is_root {
        let donor_tree = rt().block_on(store.render_tree(&donor)).unwrap();
        let copied_tree = rt().block_on(store.render_tree(&copied)).unwrap();
        assert_eq!(copied_tree.record.hash, donor_tree.record.hash);
        assert_eq!(std::fs::read(copied_tree.path.join("rootfs/etc/hard")).unwrap(), b"hello");
    } else {
        eprintln!("not root: the trees are not rendered and compared");
    }

    let blob = store.blob_path(&donor);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    std::fs::write(&blob, bytes).unwrap();
    let err = copy("example.com/second-copy").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(store.images().unwrap().len(), 2);
}

/// Images a failed fetch brought in go back whatever order they come in: a base is kept while
/// an image on it is stored, and goes once that image has gone. One that an image the fetch did
/// not bring in depends on stays, as does one that another fetch imported again meanwhile.
#[test]
fn images_taken_back_together_go_dependents_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let import = |name: &str, dep: Option<&str>| {
        let bytes = aci(&manifest_on(name, dep), &[("rootfs/f", name.as_bytes())]);
        rt().block_on(store.import(&bytes[..], &ImportOptions::default())).unwrap()
    };
    let brought = |name: &str, dep: Option<&str>| import(name, dep).brought_in().expect("a new image");
    let base = brought("example.com/base", None);
    let middle = brought("example.com/middle", Some("example.com/base"));
    let top = brought("example.com/top", Some("example.com/middle"));
    let removed = store.take_back_all(&[base.clone(), middle.clone(), top.clone()]).unwrap();
    assert_eq!(removed, vec![top.id, middle.id, base.id]);
    assert!(store.images().unwrap().is_empty());

    let base = brought("example.com/base", None);
    let kept = brought("example.com/kept", Some("example.com/base"));
    let mine = brought("example.com/mine", Some("example.com/base"));
    assert_eq!(store.take_back_all(&[base.clone(), mine.clone()]).unwrap(), vec![mine.id]);
    let left: Vec<_> = store.images().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&base.id) && left.contains(&kept.id));

    let first = brought("example.com/twice", None);
    let again = import("example.com/twice", None);
    assert!(again.already_stored && again.brought_in().is_none());
    assert!(!store.take_back(&first).unwrap(), "imported again by another fetch: theirs too");
    assert!(store.image(&first.id).is_ok());
}

/// Makes every later write of an image row fail, as a full disk fails SQLite, through a second
/// connection to the store's own index file.
fn refuse_image_rows(store_dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(store_dir.join("cas/db/index.sqlite")).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_rows BEFORE INSERT ON images BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
}

/// Every file under the store's blob directory, and the shard directories.
fn blob_entries(store_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let root = store_dir.join("cas/blob/sha512");
    let mut found = Vec::new();
    for shard in std::fs::read_dir(&root).into_iter().flatten() {
        let shard = shard.unwrap().path();
        found.push(shard.clone());
        found.extend(std::fs::read_dir(&shard).unwrap().map(|e| e.unwrap().path()));
    }
    found.sort();
    found
}

/// A blob whose row cannot be written (the disk filled up after the blob was written) is taken
/// back with its name: nothing is left where the blob would have been.
#[test]
fn a_blob_whose_row_cannot_be_written_is_not_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = blob_entries(dir.path());
    refuse_image_rows(dir.path());
    let err = rt().block_on(store.import(&tar_with(b"one")[..], &ImportOptions::default())).unwrap_err();
    assert!(err.to_string().contains("database or disk is full"), "{err}");
    assert!(store.images().unwrap().is_empty());
    assert_eq!(blob_entries(dir.path()), before);
    assert_eq!(std::fs::read_dir(dir.path().join("cas/tmp")).unwrap().count(), 0);
}

/// The same failure for an image already stored leaves the stored image as it was.
#[test]
fn a_failed_import_of_a_stored_image_keeps_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stored = rt().block_on(store.import(&tar_with(b"one")[..], &ImportOptions::default())).unwrap();
    let before = blob_entries(dir.path());
    refuse_image_rows(dir.path());
    rt().block_on(store.import(&tar_with(b"one")[..], &ImportOptions::default())).unwrap_err();
    assert_eq!(blob_entries(dir.path()), before);
    let mut blob = store.open_blob(&stored.id).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut blob, &mut bytes).unwrap();
    assert_eq!(bytes, tar_with(b"one"));
}

/// A rendered tree whose row cannot be written is not left in the tree store.
#[test]
fn a_tree_whose_row_cannot_be_written_is_not_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = rt().block_on(store.import(&tar_with(b"one")[..], &ImportOptions::default())).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("cas/db/index.sqlite")).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_trees BEFORE INSERT ON trees BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let err = rt().block_on(store.render_tree(&image.id)).unwrap_err();
    assert!(err.to_string().contains("database or disk is full"), "{err}");
    let trees = std::fs::read_dir(dir.path().join("cas/tree")).unwrap();
    let left: Vec<_> =
        trees.map(|e| e.unwrap().file_name()).filter(|n| !n.to_string_lossy().ends_with(".lock")).collect();
    assert!(left.is_empty(), "{left:?}");
    conn.execute_batch("DROP TRIGGER refuse_trees;").unwrap();
    let tree = rt().block_on(store.render_tree(&image.id)).unwrap();
    assert_eq!(std::fs::read(tree.rootfs().join("f")).unwrap(), b"one");
}
