//! The appc image format and rkt's image store: content-addressed blobs indexed in SQLite, and
//! a tree store of rendered root filesystems.

pub mod aci;
mod aci_builder;
pub mod appc;
mod blob;
mod blob_hasher;
mod depth_first;
mod error;
pub mod go_tar;
mod growing_blob;
pub mod image_id;
pub mod index;
mod keyed_hash;
mod maintenance;
mod path_tree;
mod render;
mod repeats;
mod space;
mod squash;
mod store;
mod tar_entry;
pub mod tar_out;
mod tmp_area;
pub mod tree;
pub mod tree_hash;
pub mod tree_writer;

pub use aci_builder::{AciBuilder, CopyError, EntryError};
pub use blob::ScratchFile;
pub use error::{Result, StoreError};
pub use growing_blob::{BlobStopper, GrowingBlob};
pub use image_id::{ImageHasher, ImageId};
pub use index::{now_ns, ImageRecord, RemoteRecord, TreeRecord};
pub use keyed_hash::{HashedMap, KeyedHash};
pub use maintenance::{GcReport, ImageCheck, VerifyReport};
pub use render::{Layer, MAX_LAYERS};
pub use space::SpaceGuard;
pub use store::{read_manifest, BroughtIn, ImportOptions, Imported, Store, StoreLock};
pub use tmp_area::lock_exclusive_waiting;
pub use tree::Tree;
