//! `db/images.db`: which references name which stored image. SQLite in WAL mode, so several
//! processes read and write it at once; every write is one short transaction.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use super::{ImageError, ImageStore, StoredImage};
use crate::sqlite::ConnectionGuard;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A row of `list_images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub reference: String,
    pub manifest_digest: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub pulled_at: u64,
}

fn db_err(path: &Path) -> impl FnOnce(rusqlite::Error) -> ImageError + '_ {
    move |source| ImageError::Database {
        path: path.to_path_buf(),
        source,
    }
}

impl ImageStore {
    fn connect(&self) -> Result<ConnectionGuard<'_>, ImageError> {
        self.db.get(|| self.open_db())
    }

    fn open_db(&self) -> Result<Connection, ImageError> {
        let dir = self.db_path.parent().expect("db path has a parent");
        std::fs::create_dir_all(dir).map_err(|source| ImageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = &self.db_path;
        crate::sqlite::open_shared(path, BUSY_TIMEOUT, |conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS images (
                     reference TEXT PRIMARY KEY,
                     manifest_digest TEXT NOT NULL,
                     size INTEGER NOT NULL,
                     pulled_at INTEGER NOT NULL,
                     image_json TEXT NOT NULL
                 );",
            )
        })
        .map_err(db_err(path))
    }

    /// Records (or re-points) a reference at a stored image.
    pub fn record(&self, image: &StoredImage) -> Result<(), ImageError> {
        let conn = self.connect()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let json = serde_json::to_string(image).expect("image serializes");
        conn.execute(
            "INSERT INTO images (reference, manifest_digest, size, pulled_at, image_json) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(reference) DO UPDATE SET manifest_digest = ?2, size = ?3, pulled_at = ?4, image_json = ?5",
            params![image.reference, image.manifest_digest, image.size as i64, now as i64, json],
        )
        .map_err(db_err(&self.db_path))?;
        Ok(())
    }

    /// The image recorded under `reference`.
    pub fn image(&self, reference: &str) -> Result<StoredImage, ImageError> {
        let conn = self.connect()?;
        let json: Option<String> = conn
            .query_row(
                "SELECT image_json FROM images WHERE reference = ?1",
                [reference],
                |row| row.get(0),
            )
            .optional()
            .map_err(db_err(&self.db_path))?;
        let json = json.ok_or_else(|| ImageError::UnknownImage(reference.to_string()))?;
        serde_json::from_str(&json).map_err(|source| ImageError::Json {
            image: reference.to_string(),
            what: "images.db row",
            source,
        })
    }

    pub fn list_images(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let conn = self.connect()?;
        let mut stmt = conn
            .prepare(
                "SELECT reference, manifest_digest, size, pulled_at FROM images ORDER BY reference",
            )
            .map_err(db_err(&self.db_path))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(ImageInfo {
                    reference: row.get(0)?,
                    manifest_digest: row.get(1)?,
                    size: row.get::<_, i64>(2)? as u64,
                    pulled_at: row.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(db_err(&self.db_path))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_err(&self.db_path))
    }

    /// Forgets `reference` and deletes the blobs and base no other recorded image needs.
    /// The caller checks that no box uses the image.
    pub fn remove_image(&self, reference: &str) -> Result<(), ImageError> {
        let image = self.image(reference)?;
        let mut conn = self.connect()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err(&self.db_path))?;
        tx.execute("DELETE FROM images WHERE reference = ?1", [reference])
            .map_err(db_err(&self.db_path))?;
        let mut still_needed = std::collections::HashSet::new();
        {
            let mut stmt = tx
                .prepare("SELECT image_json FROM images")
                .map_err(db_err(&self.db_path))?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(db_err(&self.db_path))?;
            for json in rows {
                let json = json.map_err(db_err(&self.db_path))?;
                if let Ok(other) = serde_json::from_str::<StoredImage>(&json) {
                    still_needed.extend(other.blobs);
                    still_needed.insert(other.manifest_digest);
                }
            }
        }
        tx.commit().map_err(db_err(&self.db_path))?;
        // Files are removed without holding the connection.
        drop(conn);
        for digest in image.blobs.iter().filter(|d| !still_needed.contains(*d)) {
            self.blobs.remove(digest)?;
        }
        if !still_needed.contains(&image.manifest_digest) {
            self.remove_base(&image.manifest_digest)?;
        }
        Ok(())
    }
}
