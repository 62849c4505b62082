//! The SQLite index of the store. It is only an index: every row can be rebuilt from the blobs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::image_id::ImageId;

/// Each step takes the schema from version `i` to `i + 1`; a store is never migrated down.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    manifest TEXT NOT NULL,
    size INTEGER NOT NULL,
    import_time INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    latest INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX images_by_name ON images(name);
CREATE TABLE remotes (
    url TEXT PRIMARY KEY,
    sig_url TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '',
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    cache_max_age INTEGER NOT NULL DEFAULT 0,
    download_time INTEGER NOT NULL
);
CREATE INDEX remotes_by_image ON remotes(image_id);
CREATE TABLE trees (
    id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    rendered_time INTEGER NOT NULL
);
CREATE TABLE tree_images (
    tree_id TEXT NOT NULL REFERENCES trees(id) ON DELETE CASCADE,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (tree_id, image_id)
);
CREATE INDEX tree_images_by_image ON tree_images(image_id);
"#,
    r#"
ALTER TABLE images ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
UPDATE images SET labels = COALESCE(json_extract(manifest, '$.labels'), '[]');
"#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// One image's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: ImageId,
    pub name: String,
    pub manifest: String,
    pub size: u64,
    /// Nanoseconds since the Unix epoch, as rkt's JSON prints them.
    pub import_time: i64,
    pub last_used: i64,
    pub latest: bool,
}

/// What the store remembers of a download: rkt's `remote` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecord {
    pub url: String,
    pub sig_url: String,
    /// The HTTP ETag, or for Docker images the manifest digest.
    pub etag: String,
    pub image_id: ImageId,
    /// Seconds the download stays fresh (Cache-Control max-age).
    pub cache_max_age: i64,
    pub download_time: i64,
}

/// One rendered tree's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRecord {
    pub id: String,
    pub image_id: ImageId,
    pub hash: String,
    pub size: u64,
    pub images: Vec<ImageId>,
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn image_from_row(row: &rusqlite::Row) -> rusqlite::Result<ImageRecord> {
    let id: String = row.get(0)?;
    let id = ImageId::parse_full(&id)
        .ok_or_else(|| rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Text))?;
    Ok(ImageRecord {
        id,
        name: row.get(1)?,
        manifest: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        import_time: row.get(4)?,
        last_used: row.get(5)?,
        latest: row.get(6)?,
    })
}

const IMAGE_COLUMNS: &str = "id, name, manifest, size, import_time, last_used, latest";

/// Runs `f` again while SQLite answers BUSY, for up to a minute. Two connections that turn a
/// new database to WAL at once (the first rkt commands of parallel CI jobs on a fresh store)
/// get BUSY at once, without the busy handler: one in 80 such starts failed with "database is
/// locked".
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

impl Index {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| db(path, e))?;
        // Parallel CI jobs share one store: wait for each other instead of failing.
        conn.busy_timeout(Duration::from_secs(60)).map_err(|e| db(path, e))?;
        retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(|e| db(path, e))?;
        // NORMAL is crash-safe with WAL (a power loss may drop the last commits, never corrupt);
        // what such a loss can leave, a blob without its row, `image verify` indexes again.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| db(path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| db(path, e))?;
        let mut index = Index { conn, path: path.to_path_buf() };
        index.migrate()?;
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        // Most opens find the schema current: a plain read, no write lock.
        let current: i64 = retry_busy(|| self.conn.pragma_query_value(None, "user_version", |r| r.get(0)))
            .map_err(|e| db(&path, e))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db(&path, e))?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| db(&path, e))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::IndexTooNew { path, found, known: SCHEMA_VERSION });
        }
        for step in &MIGRATIONS[found as usize..] {
            tx.execute_batch(step).map_err(|e| db(&path, e))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| db(&path, e))?;
        tx.commit().map_err(|e| db(&path, e))
    }

    /// Runs `f` in a write transaction taken at once (`BEGIN IMMEDIATE`), so that two writers
    /// never both read a stale snapshot.
    pub fn write<T>(&mut self, f: impl FnOnce(&Transaction) -> rusqlite::Result<T>) -> Result<T> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db(&path, e))?;
        let value = f(&tx).map_err(|e| db(&path, e))?;
        tx.commit().map_err(|e| db(&path, e))?;
        Ok(value)
    }

    /// As `write`, for work beside the rows that no other store user may see half done (a blob
    /// named and indexed): `f` runs under the write lock, and its rows commit only if it succeeds.
    /// It is given the index's path, for its errors.
    pub fn write_with<T>(&mut self, f: impl FnOnce(&Transaction, &Path) -> Result<T>) -> Result<T> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db(&path, e))?;
        let value = f(&tx, &path)?;
        tx.commit().map_err(|e| db(&path, e))?;
        Ok(value)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        f(&self.conn).map_err(|e| db(&self.path, e))
    }

    pub fn insert_image(&mut self, record: &ImageRecord) -> Result<()> {
        self.write(|tx| insert_image_row(tx, record))
    }

    pub fn image(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        self.read(|c| image_row(c, id))
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images ORDER BY import_time, id"))?;
            let rows = stmt.query_map([], image_from_row)?;
            rows.collect()
        })
    }

    /// The images named `name` whose labels include every one of `labels`.
    pub fn images_labelled(&self, name: &str, labels: &[(String, String)]) -> Result<Vec<ImageRecord>> {
        let wanted = serde_json::to_string(labels).expect("labels serialize");
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?1 AND NOT EXISTS (
                     SELECT 1 FROM json_each(?2) AS want WHERE NOT EXISTS (
                         SELECT 1 FROM json_each(images.labels) AS have
                         WHERE json_extract(have.value, '$.name') = json_extract(want.value, '$[0]')
                           AND json_extract(have.value, '$.value') = json_extract(want.value, '$[1]')))"
            ))?;
            let rows = stmt.query_map(params![name, wanted], image_from_row)?;
            rows.collect()
        })
    }

    /// IDs that start with the hex digits `prefix`.
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<ImageId>> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM images WHERE substr(id, 1, ?1) = ?2 LIMIT 2")?;
            let wanted = format!("sha512-{prefix}");
            let rows = stmt.query_map(params![wanted.len() as i64, wanted], |r| r.get::<_, String>(0))?;
            rows.map(|r| r.map(|s| ImageId::parse_full(&s).expect("ids in the index are valid"))).collect()
        })
    }

    /// Records a use of the images `ids` (rkt's `lastused`), in one transaction.
    pub fn touch(&mut self, ids: &[ImageId]) -> Result<()> {
        let now = now_ns();
        self.write(|tx| {
            for id in ids {
                tx.execute("UPDATE images SET last_used = ?1 WHERE id = ?2", params![now, id.to_string()])?;
            }
            Ok(())
        })
    }

    /// Removes an image's row with its remotes and the rows of every tree built from it; returns
    /// those trees' IDs, whose directories the caller removes.
    pub fn remove_image(&mut self, id: &ImageId) -> Result<Vec<String>> {
        self.write(|tx| {
            let trees: Vec<String> = {
                let mut stmt = tx.prepare("SELECT tree_id FROM tree_images WHERE image_id = ?1")?;
                let rows = stmt.query_map([id.to_string()], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for tree in &trees {
                tx.execute("DELETE FROM trees WHERE id = ?1", [tree])?;
            }
            tx.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])?;
            Ok(trees)
        })
    }

    /// An image whose name starts with `name_prefix` and whose manifest has the annotation
    /// `key` = `value`.
    pub fn image_annotated(&self, name_prefix: &str, key: &str, value: &str) -> Result<Option<ImageId>> {
        self.read(|c| {
            c.query_row(
                "SELECT images.id FROM images, json_each(images.manifest, '$.annotations') AS a
                     WHERE substr(images.name, 1, length(?1)) = ?1
                       AND json_extract(a.value, '$.name') = ?2 AND json_extract(a.value, '$.value') = ?3
                     ORDER BY images.import_time LIMIT 1",
                params![name_prefix, key, value],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|id| id.map(|s| ImageId::parse_full(&s).expect("ids in the index are valid")))
        })
    }

    /// The images other than `id` that list `name`, or `id` itself, among their dependencies.
    pub fn naming_as_dependency(&self, name: &str, id: &ImageId) -> Result<Vec<ImageId>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT DISTINCT images.id FROM images, json_each(images.manifest, '$.dependencies') AS dep
                     WHERE images.id != ?2 AND (json_extract(dep.value, '$.imageName') = ?1
                                                OR json_extract(dep.value, '$.imageID') = ?2)",
            )?;
            let rows = stmt.query_map(params![name, id.to_string()], |r| r.get::<_, String>(0))?;
            rows.map(|r| r.map(|s| ImageId::parse_full(&s).expect("ids in the index are valid"))).collect()
        })
    }

    pub fn set_remote(&mut self, remote: &RemoteRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO remotes (url, sig_url, etag, image_id, cache_max_age, download_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(url) DO UPDATE SET sig_url = excluded.sig_url, etag = excluded.etag, image_id = excluded.image_id,
                     cache_max_age = excluded.cache_max_age, download_time = excluded.download_time",
                params![
                    remote.url,
                    remote.sig_url,
                    remote.etag,
                    remote.image_id.to_string(),
                    remote.cache_max_age,
                    remote.download_time
                ],
            )
            .map(drop)
        })
    }

    pub fn remove_remote(&mut self, url: &str) -> Result<()> {
        self.write(|tx| tx.execute("DELETE FROM remotes WHERE url = ?1", [url]).map(drop))
    }

    pub fn remote(&self, url: &str) -> Result<Option<RemoteRecord>> {
        self.read(|c| {
            c.query_row(
                "SELECT url, sig_url, etag, image_id, cache_max_age, download_time FROM remotes WHERE url = ?1",
                [url],
                remote_row,
            )
            .optional()
        })
    }

    /// The downloads recorded from URLs that start with `prefix`.
    pub fn remotes_starting(&self, prefix: &str) -> Result<Vec<RemoteRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT url, sig_url, etag, image_id, cache_max_age, download_time FROM remotes
                     WHERE substr(url, 1, length(?1)) = ?1",
            )?;
            let rows = stmt.query_map([prefix], remote_row)?;
            rows.collect()
        })
    }

    pub fn insert_tree(&mut self, tree: &TreeRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM trees WHERE id = ?1", [&tree.id])?;
            tx.execute(
                "INSERT INTO trees (id, image_id, hash, size, rendered_time) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tree.id, tree.image_id.to_string(), tree.hash, tree.size as i64, now_ns()],
            )?;
            for image in &tree.images {
                tx.execute(
                    "INSERT OR IGNORE INTO tree_images (tree_id, image_id) VALUES (?1, ?2)",
                    params![tree.id, image.to_string()],
                )?;
            }
            Ok(())
        })
    }

    pub fn tree(&self, id: &str) -> Result<Option<TreeRecord>> {
        let row = self.read(|c| {
            c.query_row("SELECT id, image_id, hash, size FROM trees WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            })
            .optional()
        })?;
        let Some((id, image, hash, size)) = row else { return Ok(None) };
        let images = self.read(|c| {
            let mut stmt = c.prepare("SELECT image_id FROM tree_images WHERE tree_id = ?1")?;
            let rows = stmt.query_map([&id], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })?;
        Ok(Some(TreeRecord {
            id,
            image_id: ImageId::parse_full(&image).expect("ids in the index are valid"),
            hash,
            size: size as u64,
            images: images.iter().filter_map(|s| ImageId::parse_full(s)).collect(),
        }))
    }

    pub fn trees(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM trees ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    pub fn trees_of(&self, image: &ImageId) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM trees WHERE image_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([image.to_string()], |r| r.get(0))?;
            rows.collect()
        })
    }

    pub fn remove_tree(&mut self, id: &str) -> Result<()> {
        self.write(|tx| tx.execute("DELETE FROM trees WHERE id = ?1", [id]).map(drop))
    }
}

fn remote_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RemoteRecord> {
    let id: String = r.get(3)?;
    Ok(RemoteRecord {
        url: r.get(0)?,
        sig_url: r.get(1)?,
        etag: r.get(2)?,
        image_id: ImageId::parse_full(&id).expect("ids in the index are valid"),
        cache_max_age: r.get(4)?,
        download_time: r.get(5)?,
    })
}

/// An image's row, read in a transaction or outside one.
pub(crate) fn image_row(c: &Connection, id: &ImageId) -> rusqlite::Result<Option<ImageRecord>> {
    c.query_row(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"), [id.to_string()], image_from_row)
        .optional()
}

/// Writes an image's row. An image stored again keeps its row, with the new import time; with
/// `latest`, it becomes the only `latest` image of its name.
pub(crate) fn insert_image_row(tx: &Transaction, record: &ImageRecord) -> rusqlite::Result<()> {
    if record.latest {
        tx.execute(
            "UPDATE images SET latest = 0 WHERE name = ?1 AND id != ?2",
            params![record.name, record.id.to_string()],
        )?;
    }
    tx.execute(
        "INSERT INTO images (id, name, manifest, size, import_time, last_used, latest, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(json_extract(?3, '$.labels'), '[]'))
         ON CONFLICT(id) DO UPDATE SET import_time = excluded.import_time,
             latest = MAX(images.latest, excluded.latest)",
        params![
            record.id.to_string(),
            record.name,
            record.manifest,
            record.size as i64,
            record.import_time,
            record.last_used,
            record.latest
        ],
    )?;
    Ok(())
}

pub(crate) fn db(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Index { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str =
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","labels":[{"name":"version","value":"1"}]}"#;

    #[test]
    fn a_version_one_index_is_migrated_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO images (id, name, manifest, size, import_time, last_used, latest) VALUES (?1, 'a', ?2, 1, 1, 1, 0)",
                params![format!("sha512-{}", "a".repeat(64)), MANIFEST],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let index = Index::open(&path).unwrap();
        let found = index.images_labelled("a", &[("version".into(), "1".into())]).unwrap();
        assert_eq!(found.len(), 1);
        assert!(index.images_labelled("a", &[("version".into(), "2".into())]).unwrap().is_empty());
        assert_eq!(index.images_labelled("a", &[]).unwrap().len(), 1);
        let version: i64 = index.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn an_index_from_a_newer_rkt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = Index::open(&path).err().expect("must refuse");
        assert!(err.to_string().contains("newer than this rkt"), "{err}");
    }
}
