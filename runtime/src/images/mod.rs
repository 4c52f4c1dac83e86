//! Images on disk: the content-addressed blob store, OCI image layouts as a source, layer
//! application, one ext4 base per image and a qcow2 disk per box backed by it.
//!
//! Layout under `<home>/images/`: `blobs/sha256/<hex>` (verified blobs, shared by all images),
//! `bases/<manifest hex>.ext4` (+ `.json`, what a box needs from the image config), `tmp/`
//! (downloads and unpacking in progress, never read as results), `locks/` (per-image locks).

pub mod blobs;
mod db;
pub mod qcow2;
pub mod registry;
pub mod spec;
pub mod unpack;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use blobs::{sha256_hex, BlobError, BlobStore};
use spec::{digest, is_index, is_linux_amd64, ref_name, Descriptor, ImageConfig, Index, Manifest};

/// How long one process waits for another that is building the same image's base.
const BASE_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// Free space given to a box on top of its image's content.
const BASE_HEADROOM_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("image layout {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("image layout {path} has no image tagged {tag:?} (tags: {available})")]
    UnknownTag {
        path: PathBuf,
        tag: String,
        available: String,
    },
    #[error("image {image} has no linux/amd64 variant (platforms: {available})")]
    NoPlatform { image: String, available: String },
    #[error("{what} of image {image} is not valid JSON: {source}")]
    Json {
        image: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("applying layer {layer} of image {image}: {source}")]
    Unpack {
        image: String,
        layer: String,
        source: unpack::UnpackError,
    },
    #[error("{command} failed: {stderr}")]
    Tool { command: String, stderr: String },
    #[error("image store I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] boxlite_lockfile::LockError),
    #[error("{reference:?} is not a valid image reference: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("image {reference:?} not found or not reachable (tried {tried})")]
    NotFound { reference: String, tried: String },
    #[error(
        "pulling {reference}: {what} is {size} bytes, over the limit of {limit} \
         (PullLimits::{field}); raise it if this image is trusted"
    )]
    TooLarge {
        reference: String,
        what: String,
        size: u64,
        limit: u64,
        field: &'static str,
    },
    #[error("pulling {reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("image database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("no image named {0:?}; pull it first (boxlite pull)")]
    UnknownImage(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a box needs from its image's configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRunConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// An image whose manifest, config and layers are all in the blob store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredImage {
    /// What the user called it (a reference, or a layout path and tag).
    pub reference: String,
    pub manifest_digest: String,
    pub layers: Vec<String>,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// Every blob the image needs: indexes, manifest, config, layers.
    pub blobs: Vec<String>,
    pub run: ImageRunConfig,
}

#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    /// Where image root filesystems are unpacked while a base is built (`BOXLITE_TMPDIR`);
    /// `None`: `images/tmp/`. Only the finished base must be on the home's file system.
    scratch: Option<PathBuf>,
    db_path: PathBuf,
    db: crate::sqlite::SharedConnection,
    blobs: BlobStore,
}

pub use db::ImageInfo;
pub use registry::{ProgressFn, PullLimits, PullOptions, PullOutcome, PullProgress};

impl ImageStore {
    /// The store of the home `home`: `<home>/images/` and `<home>/db/images.db`.
    /// Removes what crashed writers left in `tmp/` if nobody writes there now (see
    /// [`blobs::sweep_tmp`]); how many entries went.
    pub fn sweep_tmp(&self) -> usize {
        blobs::sweep_tmp(&self.root)
    }

    pub fn open(home: &Path) -> Self {
        let root = home.join("images");
        Self {
            blobs: BlobStore::new(&root),
            db_path: home.join("db").join("images.db"),
            db: crate::sqlite::SharedConnection::default(),
            root,
            scratch: None,
        }
    }

    /// Unpacks image root filesystems under `scratch` (which must exist) while building
    /// bases, instead of under `images/tmp/`.
    pub fn with_scratch(mut self, scratch: Option<PathBuf>) -> Self {
        self.scratch = scratch;
        self
    }

    fn base_path(&self, manifest_digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("bases")
            .join(format!("{}.ext4", sha256_hex(manifest_digest)?)))
    }

    fn remove_base(&self, manifest_digest: &str) -> Result<(), ImageError> {
        let base = self.base_path(manifest_digest)?;
        for path in [base.with_extension("json"), base] {
            if let Err(source) = fs::remove_file(&path) {
                if source.kind() != io::ErrorKind::NotFound {
                    return Err(ImageError::Io { path, source });
                }
            }
        }
        Ok(())
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Imports the image tagged `tag` (or the only image) from an OCI image layout directory,
    /// verifying every blob it copies.
    pub fn import_layout(
        &self,
        layout: &Path,
        tag: Option<&str>,
    ) -> Result<StoredImage, ImageError> {
        let layout_err = |reason: String| ImageError::Layout {
            path: layout.to_path_buf(),
            reason,
        };
        let index_path = layout.join("index.json");
        let index_bytes = fs::read(&index_path)
            .map_err(|e| layout_err(format!("cannot read index.json: {e}")))?;
        let reference = format!("{}:{}", layout.display(), tag.unwrap_or("(only image)"));
        let index: Index =
            serde_json::from_slice(&index_bytes).map_err(|source| ImageError::Json {
                image: reference.clone(),
                what: "index.json",
                source,
            })?;
        let tagged: Vec<&Descriptor> = match tag {
            Some(tag) => index
                .manifests()
                .iter()
                .filter(|d| ref_name(d) == Some(tag))
                .collect(),
            None => index.manifests().iter().collect(),
        };
        let descriptor = match tagged.as_slice() {
            [one] => (*one).clone(),
            [] if tag.is_some() => {
                let available: Vec<&str> = index.manifests().iter().filter_map(ref_name).collect();
                return Err(ImageError::UnknownTag {
                    path: layout.to_path_buf(),
                    tag: tag.unwrap_or_default().to_string(),
                    available: available.join(", "),
                });
            }
            _ => {
                return Err(layout_err(format!(
                    "{} images in index.json; name one by tag",
                    tagged.len()
                )))
            }
        };
        let fetch = |d: &Descriptor| -> Result<(), ImageError> {
            let digest = digest(d);
            let hex = sha256_hex(&digest)?;
            let path = layout.join("blobs").join("sha256").join(hex);
            let file = fs::File::open(&path)
                .map_err(|e| layout_err(format!("missing blob {digest}: {e}")))?;
            self.blobs.put(&digest, Some(d.size()), file)?;
            Ok(())
        };
        let image = self.store_image(&reference, descriptor, &fetch)?;
        self.record(&image)?;
        Ok(image)
    }

    /// Resolves `descriptor` (an index or a manifest) to the linux/amd64 manifest, fetching
    /// every blob it needs through `fetch` into the blob store, and records what a box needs.
    pub fn store_image(
        &self,
        reference: &str,
        mut descriptor: Descriptor,
        fetch: &dyn Fn(&Descriptor) -> Result<(), ImageError>,
    ) -> Result<StoredImage, ImageError> {
        let mut blobs = Vec::new();
        // Multi-arch images: an index names one manifest per platform.
        for _ in 0..2 {
            if !is_index(&descriptor) {
                break;
            }
            fetch(&descriptor)?;
            blobs.push(digest(&descriptor));
            let index: Index = self.json(reference, "image index", &digest(&descriptor))?;
            descriptor = select_linux_amd64(&index, reference)?;
        }
        fetch(&descriptor)?;
        let manifest: Manifest = self.json(reference, "manifest", &digest(&descriptor))?;
        fetch(manifest.config())?;
        let config: ImageConfig =
            self.json(reference, "image config", &digest(manifest.config()))?;
        for layer in manifest.layers() {
            fetch(layer)?;
        }
        let layers: Vec<String> = manifest.layers().iter().map(digest).collect();
        blobs.push(digest(&descriptor));
        blobs.push(digest(manifest.config()));
        blobs.extend(layers.iter().cloned());
        let run = config.config().clone().unwrap_or_default();
        Ok(StoredImage {
            reference: reference.to_string(),
            manifest_digest: digest(&descriptor),
            layers,
            size: manifest.layers().iter().map(|l| l.size()).sum(),
            blobs,
            run: ImageRunConfig {
                env: run.env().clone().unwrap_or_default(),
                entrypoint: run.entrypoint().clone().unwrap_or_default(),
                cmd: run.cmd().clone().unwrap_or_default(),
                working_dir: run.working_dir().clone().unwrap_or_default(),
                user: run.user().clone().unwrap_or_default(),
            },
        })
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        image: &str,
        what: &'static str,
        digest: &str,
    ) -> Result<T, ImageError> {
        let bytes = self.blobs.read(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            image: image.to_string(),
            what,
            source,
        })
    }

    /// The ext4 base of `image`, built once (per manifest digest) from its layers. Processes
    /// building the same base take turns on a per-image lock; the second finds it done.
    pub fn ensure_base(&self, image: &StoredImage) -> Result<PathBuf, ImageError> {
        let hex = sha256_hex(&image.manifest_digest)?.to_string();
        let base = self.base_path(&image.manifest_digest)?;
        let bases = base.parent().expect("base has a parent").to_path_buf();
        if base.is_file() {
            return Ok(base);
        }
        let locks = self.root.join("locks");
        fs::create_dir_all(&locks).map_err(io_err(&locks))?;
        fs::create_dir_all(&bases).map_err(io_err(&bases))?;
        let _guard = boxlite_lockfile::lock(
            &locks.join(format!("{hex}.lock")),
            boxlite_lockfile::LockMode::Exclusive,
            Some(BASE_LOCK_TIMEOUT),
        )?;
        if base.is_file() {
            return Ok(base);
        }

        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        // Declared before `work`, so dropped after it: the work directory is gone first.
        let _tmp_share = blobs::hold_tmp(&self.root)?;
        let work = tempfile::Builder::new()
            .prefix("base-")
            .tempdir_in(&tmp)
            .map_err(io_err(&tmp))?;
        // The unpacked tree may be large and is thrown away: it goes to the scratch
        // directory when there is one.
        let scratch_parent = self.scratch.as_deref().unwrap_or(work.path());
        let scratch = tempfile::Builder::new()
            .prefix("boxlite-rootfs-")
            .tempdir_in(scratch_parent)
            .map_err(io_err(scratch_parent))?;
        let rootfs = scratch.path().join("rootfs");
        fs::create_dir(&rootfs).map_err(io_err(&rootfs))?;
        for layer in &image.layers {
            let blob = self.blobs.open(layer)?;
            let reader = unpack::decompress(blob).map_err(|e| ImageError::Unpack {
                image: image.reference.clone(),
                layer: layer.clone(),
                source: unpack::UnpackError::Read(e),
            })?;
            unpack::apply_layer(&rootfs, reader).map_err(|source| ImageError::Unpack {
                image: image.reference.clone(),
                layer: layer.clone(),
                source,
            })?;
        }

        let partial = work.path().join("base.ext4");
        build_ext4(&rootfs, &partial)?;
        fs::write(
            bases.join(format!("{hex}.json")),
            serde_json::to_vec_pretty(image).expect("image serializes"),
        )
        .map_err(io_err(&bases))?;
        fs::rename(&partial, &base).map_err(io_err(&base))?;
        Ok(base)
    }
}

/// An ext4 image of the directory `rootfs`, sized for its contents plus room to write.
pub fn build_ext4(rootfs: &Path, out: &Path) -> Result<(), ImageError> {
    let content = disk_usage(rootfs).map_err(io_err(rootfs))?;
    let size_mib = (content + content / 4 + BASE_HEADROOM_BYTES).div_ceil(1 << 20);
    run_tool(
        Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-i",
                "8192",
                "-E",
                "root_owner=0:0",
                "-L",
                "boxlite-root",
                "-d",
            ])
            .arg(rootfs)
            .arg(out)
            .arg(format!("{size_mib}M")),
    )
}

impl StoredImage {
    /// What a box made from a prepared root filesystem directory records as its image: the
    /// path, and no image configuration (commands name their program).
    pub fn from_rootfs_path(path: &str) -> Self {
        Self {
            reference: path.to_string(),
            manifest_digest: String::new(),
            layers: Vec::new(),
            size: 0,
            blobs: Vec::new(),
            run: ImageRunConfig::default(),
        }
    }
}

/// The linux/amd64 entry of a multi-platform index.
pub(crate) fn select_linux_amd64(index: &Index, image: &str) -> Result<Descriptor, ImageError> {
    if let Some(d) = index.manifests().iter().find(|d| is_linux_amd64(d)) {
        return Ok(d.clone());
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| {
            d.platform()
                .as_ref()
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
        })
        .collect();
    Err(ImageError::NoPlatform {
        image: image.to_string(),
        available: available.join(", "),
    })
}

/// Creates a box's disk: a qcow2 overlay whose backing file is the image's ext4 base. Takes
/// the same time whatever the image's size: nothing of the base is copied.
pub fn create_box_disk(base: &Path, disk: &Path) -> Result<(), ImageError> {
    qcow2::create_overlay(base, disk).map_err(io_err(disk))
}

fn run_tool(command: &mut Command) -> Result<(), ImageError> {
    let output = command.output().map_err(|e| ImageError::Tool {
        command: format!("{command:?}"),
        stderr: format!("cannot run it: {e} (scripts/setup.sh installs e2fsprogs and qemu-utils)"),
    })?;
    if !output.status.success() {
        return Err(ImageError::Tool {
            command: format!("{command:?}"),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Bytes the tree occupies (allocated blocks), plus a block per entry for its inode.
fn disk_usage(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total += meta.blocks() * 512 + 4096;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}
