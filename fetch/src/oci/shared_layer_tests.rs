//! Two pulls that share a layer or a whole image, at the same time: the one that fails must not
//! take back what the other found stored and built on, or stored again for itself.

use std::time::Duration;

use rkt_store::appc::AppString;
use rkt_store::Store;
use tokio::io::AsyncWriteExt;

use super::{layer_name, sha256_hex, store_image, ImageConfigFile, Plan};
use crate::oci::container::{LayerBlob, Reader, Reopen};
use crate::oci::OciError;

async fn layer(file: &str) -> Vec<u8> {
    let mut builder = tokio_tar::Builder::new(Vec::new());
    let data = file.repeat(4096).into_bytes();
    let mut header = tokio_tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, file, data.as_slice()).await.unwrap();
    builder.into_inner().await.unwrap()
}

fn diff_id(tar: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(tar))
}

fn plan(name: &str, diff_ids: &[String]) -> Plan {
    let config: ImageConfigFile = serde_json::from_value(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    Plan {
        name: name.into(),
        version: "v1".into(),
        config_digest: format!("sha256:{}", sha256_hex(name.as_bytes())),
        manifest_digest: None,
        config,
        layers: Vec::new(),
        original: String::new(),
    }
}

fn bytes(data: Vec<u8>) -> LayerBlob {
    let again = data.clone();
    let reopen: Reopen = Box::new(move |_| {
        let again = again.clone();
        Box::pin(async move { Ok(Box::pin(std::io::Cursor::new(again)) as Reader) })
    });
    LayerBlob { reader: Box::pin(std::io::Cursor::new(data)), digest: None, reopen }
}

/// A stream that can be read once.
fn once(reader: Reader) -> LayerBlob {
    let reopen: Reopen = Box::new(|_| Box::pin(async { Err(OciError::Io("read once".into())) }));
    LayerBlob { reader, digest: None, reopen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_pull_keeps_the_layer_a_pull_beside_it_builds_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (base, a_top, b_top) = (layer("base").await, layer("a").await, layer("b").await);
    let base_name = AppString { name: layer_name(&diff_id(&base)), labels: Vec::new() };

    // A's config lies about its top layer: A fails once that layer has been read.
    let lie = format!("sha256:{}", "0".repeat(64));
    let (mut a_feed, a_stream) = tokio::io::duplex(1 << 20);
    let (a_store, a_plan, a_base) = (Store::open(dir.path()).unwrap(), plan("a", &[diff_id(&base), lie]), base.clone());
    let a = tokio::spawn(async move {
        store_image(&a_store, &a_plan, vec![bytes(a_base), once(Box::pin(a_stream))], true).await
    });
    for _ in 0..200 {
        if store.find(&base_name).unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if store.find(&base_name).unwrap().is_none() {
        drop(a_feed);
        panic!("A did not store the base layer: {:?}", a.await.unwrap().err());
    }

    // B finds the base layer stored and waits for its own top layer.
    let (mut b_feed, b_stream) = tokio::io::duplex(1 << 20);
    let (b_store, b_plan) = (Store::open(dir.path()).unwrap(), plan("b", &[diff_id(&base), diff_id(&b_top)]));
    let b =
        tokio::spawn(
            async move { store_image(&b_store, &b_plan, vec![bytes(base), once(Box::pin(b_stream))], true).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;

    a_feed.write_all(&a_top).await.unwrap();
    drop(a_feed);
    // Time for A to fail and take back what it stored, were it free to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    b_feed.write_all(&b_top).await.unwrap();
    drop(b_feed);

    let b_id = b.await.unwrap().expect("B's pull").id;
    assert!(a.await.unwrap().is_err(), "A's lie was not found");
    assert!(store.find(&base_name).unwrap().is_some(), "the base layer B builds on was taken back");
    let tree = store.render_tree(&b_id).await.expect("B's image renders");
    assert!(tree.path.join("rootfs/base").is_file());
    assert!(tree.path.join("rootfs/b").is_file());
}

/// Two pulls of the same image, the first refused after both stored it (its tree could not be
/// rendered, say): the first's undo leaves what the second stored and the row it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pull_leaves_the_image_and_row_a_second_pull_of_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (base, top) = (layer("base").await, layer("top").await);
    let (plan, old_plan) = (plan("same", &[diff_id(&base), diff_id(&top)]), plan("old", &[diff_id(&base)]));
    let pull = || store_image(&store, &plan, vec![bytes(base.clone()), bytes(top.clone())], false);
    let row = |image_id: &rkt_store::ImageId, download_time: i64| rkt_store::RemoteRecord {
        url: "docker://example.com/same:v1".into(),
        sig_url: String::new(),
        etag: "sha256:m".into(),
        image_id: image_id.clone(),
        cache_max_age: 0,
        download_time,
    };
    let first = pull().await.unwrap();
    let first_row = row(&first.id, 1);
    store.set_remote(&first_row).unwrap();
    let first_undo = first.undo.with_remote(first_row, None);
    let second = pull().await.unwrap();
    assert_eq!(second.id, first.id);
    let second_row = row(&second.id, 2);
    store.set_remote(&second_row).unwrap();

    first_undo.undo(&store).unwrap();
    assert!(store.image(&second.id).is_ok(), "the image the second pull stored was taken back");
    assert_eq!(store.remote(&second_row.url).unwrap(), Some(second_row.clone()));
    store.render_tree(&second.id).await.expect("its layers are there");

    // Had no pull come second, the first's undo takes back all it brought in.
    let alone = tempfile::tempdir().unwrap();
    let store = Store::open(alone.path()).unwrap();
    let old = store_image(&store, &old_plan, vec![bytes(base.clone())], false).await.unwrap();
    let old_row = row(&old.id, 3);
    store.set_remote(&old_row).unwrap();
    let stored_before = store.images().unwrap().len();
    let only = store_image(&store, &plan, vec![bytes(base), bytes(top)], false).await.unwrap();
    let only_row = row(&only.id, 4);
    store.set_remote(&only_row).unwrap();
    only.undo.with_remote(only_row.clone(), Some(old_row.clone())).undo(&store).unwrap();
    assert_eq!(store.images().unwrap().len(), stored_before);
    assert_eq!(store.remote(&only_row.url).unwrap(), Some(old_row), "the tag's row before the pull");
}
