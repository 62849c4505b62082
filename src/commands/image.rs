//! `rkt image …`: list, inspect, export, extract, render, remove, collect and verify images.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rkt_store::{ImageCheck, ImageId, ImageRecord, Store};
use serde::Serialize;

use crate::cli::{ExtractArgs, ImageCommand, ListArgs};
use crate::commands::Context;
use crate::output::{full_time, human_bytes, human_time, print_json, tab_table};
use crate::{CliError, CliResult};

pub async fn run(ctx: &Context, command: ImageCommand) -> CliResult {
    let store = ctx.open_store()?;
    match command {
        ImageCommand::List(args) => list(&store, &args),
        ImageCommand::Rm { images } => rm(&store, &images, &crate::commands::pods::images_in_use(ctx)),
        ImageCommand::Gc { grace_period } => gc(&store, grace_period, &crate::commands::pods::images_in_use(ctx)),
        ImageCommand::Export { image, output, overwrite } => {
            let id = resolve(&store, &image)?;
            Ok(store.export_squashed(&id, &output, overwrite).await?)
        }
        ImageCommand::Extract(args) => extract(&store, &args, false).await,
        ImageCommand::Render(args) => extract(&store, &args, true).await,
        ImageCommand::CatManifest { image, pretty_print } => {
            let id = resolve(&store, &image)?;
            // Re-encoded from the parsed manifest, as rkt does: the appc field order.
            let manifest = store.manifest(&id)?;
            Ok(print_json(&manifest, pretty_print)?)
        }
        ImageCommand::Verify { images } => verify(&store, &images).await,
        ImageCommand::Fetch(_) => unreachable!("dispatched as fetch"),
    }
}

/// An image as the image commands take it: an ID prefix, a name with labels, or the
/// `docker://…` reference it was fetched by, however spelled (as `rkt run` finds it).
fn resolve(store: &Store, image: &str) -> Result<ImageId, CliError> {
    if image.starts_with("docker:") {
        let fetched = rkt_fetch::registry::stored_fetches(store, image)?;
        return match fetched.into_iter().find(|r| store.image(&r.image_id).is_ok()) {
            Some(remote) => Ok(remote.image_id),
            None => Err(CliError::msg(format!(
                "no image fetched as {image:?} is in the store (`rkt image list` shows what is)"
            ))),
        };
    }
    Ok(store.resolve(image)?)
}

#[derive(Serialize)]
struct ImageJson<'a> {
    id: String,
    name: &'a str,
    import_time: i64,
    last_used_time: i64,
    size: u64,
}

fn list_fields(spec: &str, allowed: &[&str]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for field in spec.split(',').map(|f| f.trim().to_ascii_lowercase()) {
        if !allowed.contains(&field.as_str()) {
            return Err(CliError::msg(format!("unknown field {field:?} (accepted: {})", allowed.join(", "))));
        }
        if out.contains(&field) {
            return Err(CliError::msg(format!("duplicated field {field:?}")));
        }
        out.push(field);
    }
    Ok(out)
}

fn name_with_version(record: &ImageRecord) -> String {
    let version = serde_json::from_str::<rkt_store::appc::ImageManifest>(&record.manifest)
        .ok()
        .and_then(|m| m.label("version").map(str::to_string));
    match version {
        Some(v) => format!("{}:{v}", record.name),
        None => record.name.clone(),
    }
}

/// The images `image list` shows, each with the size it shows. Without `all`, the layers of
/// Docker images are left out, and counted in the size of each image made of them (as rkt
/// listed such an image squashed, and podman lists images without their layers); layers no
/// image is made of (a pull killed midway leaves them) are shown all the same, as their
/// topmost.
fn listed_images(store: &Store, all: bool) -> Result<Vec<ImageRecord>, CliError> {
    let images = store.images()?;
    if all {
        return Ok(images);
    }
    let by_id: HashMap<ImageId, &ImageRecord> = images.iter().map(|r| (r.id.clone(), r)).collect();
    let is_layer = |r: &ImageRecord| rkt_fetch::oci::is_docker_layer(&r.name);
    let layers_of = |image: &ImageRecord| -> Vec<ImageId> {
        let mut made_of = store.with_dependencies(vec![image.id.clone()]);
        made_of.remove(&image.id);
        made_of.into_iter().filter(|id| by_id.get(id).is_some_and(|r| is_layer(r))).collect()
    };
    // The images first, then the layers none of them is made of: each walk of dependencies is
    // a query per layer, and a store holds many more layers than images.
    let mut made_of: HashMap<&ImageId, Vec<ImageId>> = HashMap::new();
    let mut part_of_another: HashSet<ImageId> = HashSet::new();
    for r in images.iter().filter(|r| !is_layer(r)).chain(images.iter().filter(|r| is_layer(r))) {
        if !part_of_another.contains(&r.id) {
            let layers = layers_of(r);
            part_of_another.extend(layers.iter().cloned());
            made_of.insert(&r.id, layers);
        }
    }
    let listed = images.iter().filter(|r| !part_of_another.contains(&r.id)).map(|r| {
        let size = r.size + made_of[&r.id].iter().map(|id| by_id[id].size).sum::<u64>();
        ImageRecord { size, ..r.clone() }
    });
    Ok(listed.collect())
}

fn list(store: &Store, args: &ListArgs) -> CliResult {
    let fields = list_fields(&args.fields, &["id", "name", "size", "importtime", "lastused"])?;
    let sort = list_fields(&args.sort, &["name", "importtime", "lastused", "size"])?;
    let mut images = listed_images(store, args.all)?;
    images.sort_by(|a, b| {
        let mut ord = std::cmp::Ordering::Equal;
        for key in &sort {
            ord = ord.then(match key.as_str() {
                "name" => a.name.cmp(&b.name),
                "importtime" => a.import_time.cmp(&b.import_time),
                "lastused" => a.last_used.cmp(&b.last_used),
                _ => a.size.cmp(&b.size),
            });
        }
        ord
    });
    if args.order == "desc" {
        images.reverse();
    }
    if let Some(format) = &args.format {
        let json: Vec<ImageJson> = images
            .iter()
            .map(|r| ImageJson {
                id: r.id.to_string(),
                name: &r.name,
                import_time: r.import_time,
                last_used_time: r.last_used,
                size: r.size,
            })
            .collect();
        print_json(&json, format == "json-pretty")?;
        return Ok(());
    }
    let mut rows = Vec::new();
    if !args.no_legend {
        rows.push(
            fields
                .iter()
                .map(|f| match f.as_str() {
                    "id" => "ID",
                    "name" => "NAME",
                    "size" => "SIZE",
                    "importtime" => "IMPORT TIME",
                    _ => "LAST USED",
                })
                .map(String::from)
                .collect(),
        );
    }
    let time = |ns| if args.full { full_time(ns) } else { human_time(ns) };
    for r in &images {
        rows.push(
            fields
                .iter()
                .map(|f| match f.as_str() {
                    "id" => {
                        if args.full {
                            r.id.to_string()
                        } else {
                            r.id.short(12)
                        }
                    }
                    "name" => name_with_version(r),
                    "size" => {
                        if args.full {
                            r.size.to_string()
                        } else {
                            human_bytes(r.size)
                        }
                    }
                    "importtime" => time(r.import_time),
                    _ => time(r.last_used),
                })
                .collect(),
        );
    }
    print!("{}", tab_table(&rows));
    Ok(())
}

/// Removes images, but those that prepared or running pods use, directly or as dependencies:
/// their trees are those pods' root filesystems.
fn rm(store: &Store, images: &[String], in_use: &[ImageId]) -> CliResult {
    let needed = store.with_dependencies(in_use.to_vec());
    let mut ids: Vec<ImageId> = Vec::new();
    let mut failed = 0;
    for image in images {
        match resolve(store, image) {
            Ok(id) if needed.contains(&id) => {
                eprintln!("image rm: {image}: in use by a prepared or running pod (remove the pod first)");
                failed += 1;
            }
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(e) => {
                eprintln!("image rm: {image}: {}", e.message.unwrap_or_default());
                failed += 1;
            }
        }
    }
    failed += keep_what_others_need(store, &mut ids)?;
    // The Docker layers an image removed is made of go with it, but for those that images
    // staying in the store or pods are made of too (decided once the store is ours).
    let mut layers: Vec<ImageId> = Vec::new();
    for id in &ids {
        for layer in store.with_dependencies(vec![id.clone()]) {
            let is_layer = store.image(&layer).is_ok_and(|r| rkt_fetch::oci::is_docker_layer(&r.name));
            if is_layer && !ids.contains(&layer) && !layers.contains(&layer) {
                layers.push(layer);
            }
        }
    }
    if !ids.is_empty() {
        say_if_waiting(store, "image rm")?;
    }
    let mut removed = 0;
    for id in &ids {
        match store.remove_image(id) {
            Ok(_) => {
                println!("successfully removed aci for image: {:?}", id.to_string());
                removed += 1;
            }
            Err(e) => {
                eprintln!("image rm: {id}: {e}");
                failed += 1;
            }
        }
    }
    if removed > 0 {
        eprintln!("image rm: {removed} image(s) successfully removed");
    }
    if !layers.is_empty() {
        match store.remove_unneeded(&layers, &needed) {
            Ok(gone) if !gone.is_empty() => {
                eprintln!("image rm: {} Docker layer(s) no other image is made of removed too", gone.len())
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("image rm: removing the layers of the removed image(s): {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::msg(format!("{failed} image(s) could not be removed")));
    }
    Ok(())
}

/// Leaves out of `ids` (saying why) each image that images staying in the store depend on: a
/// Docker image's layer removed alone would leave its image unable to render, with nowhere to
/// fetch the layer from by name. Returns how many were left out.
fn keep_what_others_need(store: &Store, ids: &mut Vec<ImageId>) -> Result<usize, CliError> {
    let mut dependents = Vec::new();
    for id in ids.iter() {
        dependents.push((id.clone(), store.dependents(id)?));
    }
    let mut kept = 0;
    // Until nothing changes: an image kept keeps what it depends on.
    while let Some((id, others)) = dependents.iter().find_map(|(id, of)| {
        let others: Vec<&ImageId> = of.iter().filter(|d| !ids.contains(d)).collect();
        (ids.contains(id) && !others.is_empty()).then_some((id, others))
    }) {
        let name = store.image(others[0]).map(|r| r.name).unwrap_or_default();
        let more = if others.len() > 1 { format!(" and {} more", others.len() - 1) } else { String::new() };
        eprintln!("image rm: {id}: {name} ({}){more} depends on it: remove them too", others[0].short(12));
        let id = id.clone();
        ids.retain(|i| *i != id);
        kept += 1;
    }
    Ok(kept)
}

/// Removals wait for the fetches and renders under way, which may take a while: say so.
fn say_if_waiting(store: &Store, command: &str) -> CliResult {
    if store.is_busy()? {
        eprintln!("{command}: waiting for the rkt commands using the store to finish");
    }
    Ok(())
}

fn gc(store: &Store, grace: std::time::Duration, in_use: &[ImageId]) -> CliResult {
    say_if_waiting(store, "image gc")?;
    let report = store.gc(grace, in_use)?;
    for tree in &report.removed_trees {
        eprintln!("image gc: removed treestore {tree:?}");
    }
    for id in &report.removed_images {
        println!("successfully removed aci for image: {:?}", id.to_string());
    }
    if report.removed_orphan_blobs > 0 {
        eprintln!("image gc: removed {} blob(s) the index did not know", report.removed_orphan_blobs);
    }
    eprintln!("image gc: {} image(s) successfully removed", report.removed_images.len());
    Ok(())
}

async fn extract(store: &Store, args: &ExtractArgs, with_dependencies: bool) -> CliResult {
    let id = resolve(store, &args.image)?;
    let out = &args.output;
    if out.canonicalize().is_ok_and(|p| p == Path::new("/")) {
        return Err(CliError::msg("refusing to write into /"));
    }
    if out.symlink_metadata().is_ok() {
        if !args.overwrite {
            return Err(CliError::msg(format!("output directory {} exists (use --overwrite)", out.display())));
        }
        std::fs::remove_dir_all(out).map_err(|e| CliError::msg(format!("removing {}: {e}", out.display())))?;
    }
    let layers = if with_dependencies { store.dependency_layers(&id)? } else { vec![store.single_layer(&id)?] };
    std::fs::create_dir_all(out).map_err(|e| CliError::msg(format!("creating {}: {e}", out.display())))?;
    if let Err(e) = store.render_layers(&layers, out, args.rootfs_only, false).await {
        let _ = std::fs::remove_dir_all(out);
        return Err(e.into());
    }
    // A Docker image's files are in its layers, which `extract` leaves out, as appc says.
    let rootfs = if args.rootfs_only { out.clone() } else { out.join("rootfs") };
    let empty = std::fs::read_dir(&rootfs).is_ok_and(|mut entries| entries.next().is_none());
    if !with_dependencies && empty && !store.manifest(&id)?.dependencies.is_empty() {
        eprintln!("note: {} holds no files of its own; `rkt image render` writes its dependencies' too", args.image);
    }
    Ok(())
}

async fn verify(store: &Store, images: &[String]) -> CliResult {
    let only = if images.is_empty() {
        None
    } else {
        Some(images.iter().map(|i| resolve(store, i)).collect::<Result<Vec<_>, _>>()?)
    };
    let report = store.verify(only).await?;
    let mut bad = 0;
    for (id, check) in &report.images {
        match check {
            ImageCheck::Ok { trees_checked, trees_repaired } => {
                for tree in trees_repaired {
                    eprintln!("image verify: tree {tree} did not match its hash and was rendered again");
                }
                println!("{id}: ok ({trees_checked} tree(s) checked)");
            }
            ImageCheck::Corrupt { actual } => {
                bad += 1;
                println!("{id}: CORRUPT (data hashes to {actual})");
            }
            ImageCheck::MissingBlob => {
                bad += 1;
                println!("{id}: MISSING (its blob is gone)");
            }
        }
    }
    for id in &report.reindexed {
        println!("{id}: indexed again from its blob");
    }
    for id in &report.dropped {
        println!("{id}: dropped from the index (its blob is gone)");
    }
    if bad > 0 {
        return Err(CliError::msg(format!("{bad} image(s) failed verification")));
    }
    Ok(())
}
