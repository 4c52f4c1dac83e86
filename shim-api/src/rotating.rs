//! A file that is never allowed to grow past a bound: when the next write would take it over
//! `max_file_bytes`, it is renamed to `NAME.1` (replacing the one before) and a new one is
//! started. What the guest can make the host store through it is at most twice the bound.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The previous file of `path`: `path` with `.1` appended.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".1");
    PathBuf::from(name)
}

#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    max_file_bytes: u64,
}

impl RotatingFile {
    /// Appends to `path` (continuing what is there); at least 4 KiB per file.
    pub fn new(path: PathBuf, max_file_bytes: u64) -> Self {
        Self {
            path,
            file: None,
            written: 0,
            max_file_bytes: max_file_bytes.max(4096),
        }
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// Writes `record` whole into one file: rotates first when it would not fit. A record
    /// longer than the bound is cut.
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        let record = &record[..record.len().min(self.max_file_bytes as usize)];
        self.file_with_room(record.len() as u64)?
            .write_all(record)?;
        self.written += record.len() as u64;
        Ok(())
    }

    /// Writes a stream's bytes, rotating wherever the bound falls.
    pub fn write_stream(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let room = self.max_file_bytes.saturating_sub(self.written).max(1) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.write_record(now)?;
            data = rest;
        }
        Ok(())
    }

    fn file_with_room(&mut self, size: u64) -> std::io::Result<&mut File> {
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        };
        if self.file.is_none() {
            let file = open(&self.path)?;
            self.written = file.metadata()?.len();
            self.file = Some(file);
        }
        if self.written > 0 && self.written + size > self.max_file_bytes {
            self.file = None;
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = Some(open(&self.path)?);
            self.written = 0;
        }
        Ok(self.file.as_mut().expect("opened above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_any_length_keeps_at_most_two_files_of_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, b"from an earlier boot\n").unwrap();
        let mut file = RotatingFile::new(path.clone(), 4096);
        for i in 0..10_000u32 {
            file.write_stream(format!("line {i}\n").as_bytes()).unwrap();
        }
        let now = std::fs::read_to_string(&path).unwrap();
        let before = std::fs::read_to_string(rotated(&path)).unwrap();
        assert!(now.len() <= 4096 && before.len() <= 4096);
        assert!(now.ends_with("line 9999\n"));
        // Nothing lost between the two files: they join up.
        let joined = before + &now;
        let start = joined.find("line ").unwrap();
        let numbers: Vec<u32> = joined[start..]
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }
}
