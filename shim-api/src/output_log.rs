//! A box's output log: where the shim writes the output of commands started detached
//! (`boxlite run -d`), so that they never block on output nobody reads, and where
//! `boxlite logs` reads it back.
//!
//! Two files in the box directory, `output.log` and the one it replaced, `output.log.1`:
//! when `output.log` passes [`OutputLog::max_file_bytes`] it becomes `output.log.1` and a new
//! one starts, so a box keeps at most twice that on the host however much a command prints.
//! Each record is one line of one stream, `O ` (stdout) or `E ` (stderr) then the bytes and a
//! newline; a line longer than [`MAX_RECORD`] is cut into several records, and a last line
//! without a newline gets one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::rotating::{rotated, RotatingFile};

/// The log file; the rotated one is this plus `.1`.
pub const OUTPUT_LOG: &str = "output.log";
/// Default size at which `output.log` is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 8 << 20;
/// The longest record: longer lines are cut.
pub const MAX_RECORD: usize = 16 << 10;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    fn tag(self) -> &'static [u8] {
        match self {
            LogStream::Stdout => b"O ",
            LogStream::Stderr => b"E ",
        }
    }
}

/// One line of output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub data: Vec<u8>,
}

/// The writing side, owned by the shim; one per box, shared by its detached commands.
#[derive(Debug)]
pub struct OutputLog {
    file: RotatingFile,
}

impl OutputLog {
    pub fn new(box_dir: &Path, max_file_bytes: u64) -> Self {
        Self {
            file: RotatingFile::new(
                box_dir.join(OUTPUT_LOG),
                max_file_bytes.max(MAX_RECORD as u64 + 3),
            ),
        }
    }

    /// Size at which the current file is rotated.
    pub fn max_file_bytes(&self) -> u64 {
        self.file.max_file_bytes()
    }

    /// Appends whole lines (each without its newline) of one stream.
    pub fn write_line(&mut self, stream: LogStream, line: &[u8]) -> std::io::Result<()> {
        for piece in line
            .chunks(MAX_RECORD)
            .chain(line.is_empty().then_some(&[][..]))
        {
            let mut record = Vec::with_capacity(piece.len() + 3);
            record.extend_from_slice(stream.tag());
            record.extend_from_slice(piece);
            record.push(b'\n');
            self.file.write_record(&record)?;
        }
        Ok(())
    }
}

/// Cuts a stream's bytes into lines, keeping a partial last line until the rest of it
/// arrives or it reaches the longest line allowed ([`MAX_RECORD`] for an [`OutputLog`]):
/// what the guest sends without a newline costs the host a bounded buffer.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max_line: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::with_max_line(MAX_RECORD)
    }
}

impl LineSplitter {
    /// Lines longer than `max_line` bytes come out in pieces of `max_line`.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// The complete lines in `data` (after what was kept from before).
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &byte in data {
            if byte == b'\n' {
                lines.push(std::mem::take(&mut self.partial));
            } else {
                self.partial.push(byte);
                if self.partial.len() == self.max_line {
                    lines.push(std::mem::take(&mut self.partial));
                }
            }
        }
        lines
    }

    /// The last line, if the stream ended without a newline.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

fn parse_records(bytes: &[u8], out: &mut Vec<LogLine>) {
    // A record cut short (the shim was writing it) is left for the next read.
    for record in bytes.split_inclusive(|b| *b == b'\n') {
        let Some(record) = record.strip_suffix(b"\n") else {
            break;
        };
        let stream = match record.get(..2) {
            Some(b"O ") => LogStream::Stdout,
            Some(b"E ") => LogStream::Stderr,
            // Not ours (damaged or written by someone else): skipped rather than trusted.
            _ => continue,
        };
        out.push(LogLine {
            stream,
            data: record[2..].to_vec(),
        });
    }
}

/// Reads a box's output log; `follow` picks up what is written after.
#[derive(Debug)]
pub struct OutputLogReader {
    path: PathBuf,
    /// The current file and how far into it we have read.
    current: Option<(File, u64)>,
}

impl OutputLogReader {
    pub fn new(box_dir: &Path) -> Self {
        Self {
            path: box_dir.join(OUTPUT_LOG),
            current: None,
        }
    }

    /// Everything there is now (rotated file first), or its last `tail` lines.
    pub fn read_all(&mut self, tail: Option<usize>) -> std::io::Result<Vec<LogLine>> {
        let mut lines = Vec::new();
        match std::fs::read(rotated(&self.path)) {
            Ok(bytes) => parse_records(&bytes, &mut lines),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.current = None;
        lines.extend(self.read_new()?);
        if let Some(tail) = tail {
            lines.drain(..lines.len().saturating_sub(tail));
        }
        Ok(lines)
    }

    /// Lines written since the last read (following a rotation to the new file).
    pub fn read_new(&mut self) -> std::io::Result<Vec<LogLine>> {
        let mut lines = Vec::new();
        loop {
            let Some((file, offset)) = self.current.as_mut() else {
                match File::open(&self.path) {
                    Ok(file) => self.current = Some((file, 0)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lines),
                    Err(e) => return Err(e),
                }
                continue;
            };
            file.seek(SeekFrom::Start(*offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            parse_records(&bytes[..complete], &mut lines);
            *offset += complete as u64;
            // Rotated away since we opened it: its end is read; go on in the new file.
            let replaced = match (std::fs::metadata(&self.path), file.metadata()) {
                (Ok(now), Ok(ours)) => {
                    use std::os::unix::fs::MetadataExt;
                    now.ino() != ours.ino() || now.dev() != ours.dev()
                }
                _ => false,
            };
            if !replaced {
                return Ok(lines);
            }
            self.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[LogLine]) -> Vec<(LogStream, String)> {
        lines
            .iter()
            .map(|l| (l.stream, String::from_utf8_lossy(&l.data).into_owned()))
            .collect()
    }

    #[test]
    fn lines_are_split_kept_in_order_and_tailed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = OutputLog::new(dir.path(), DEFAULT_MAX_FILE_BYTES);
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        for line in out.push(b"one\ntw") {
            log.write_line(LogStream::Stdout, &line).unwrap();
        }
        for line in err.push(b"oops\n") {
            log.write_line(LogStream::Stderr, &line).unwrap();
        }
        for line in out.push(b"o\nthree").into_iter().chain(out.finish()) {
            log.write_line(LogStream::Stdout, &line).unwrap();
        }
        let mut reader = OutputLogReader::new(dir.path());
        assert_eq!(
            text(&reader.read_all(None).unwrap()),
            [
                (LogStream::Stdout, "one".to_string()),
                (LogStream::Stderr, "oops".to_string()),
                (LogStream::Stdout, "two".to_string()),
                (LogStream::Stdout, "three".to_string()),
            ]
        );
        assert_eq!(reader.read_new().unwrap(), vec![]);
        log.write_line(LogStream::Stdout, b"four").unwrap();
        assert_eq!(
            text(&reader.read_new().unwrap()),
            [(LogStream::Stdout, "four".to_string())]
        );
        let last = reader.read_all(Some(2)).unwrap();
        assert_eq!(
            text(&last),
            [
                (LogStream::Stdout, "three".to_string()),
                (LogStream::Stdout, "four".to_string())
            ]
        );
    }

    #[test]
    fn the_log_is_bounded_by_rotation_and_followed_across_it() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 << 10;
        let mut log = OutputLog::new(dir.path(), max);
        let mut reader = OutputLogReader::new(dir.path());
        let mut seen = 0;
        for i in 0..20_000u32 {
            log.write_line(LogStream::Stdout, format!("line {i}").as_bytes())
                .unwrap();
            if i % 997 == 0 {
                for line in reader.read_new().unwrap() {
                    assert_eq!(line.data, format!("line {seen}").into_bytes());
                    seen += 1;
                }
            }
        }
        for line in reader.read_new().unwrap() {
            assert_eq!(line.data, format!("line {seen}").into_bytes());
            seen += 1;
        }
        assert_eq!(seen, 20_000, "a follower misses nothing across rotations");
        let on_disk: u64 = ["output.log", "output.log.1"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
            .sum();
        assert!(on_disk <= 2 * max, "{on_disk} bytes kept");
        let last = reader.read_all(Some(1)).unwrap();
        assert_eq!(last[0].data, b"line 19999");
    }

    #[test]
    fn long_lines_are_cut_and_foreign_lines_skipped() {
        let mut splitter = LineSplitter::default();
        let lines = splitter.push(&vec![b'x'; MAX_RECORD * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert_eq!(splitter.finish().unwrap().len(), 5);
        let mut short = LineSplitter::with_max_line(4);
        assert_eq!(
            short.push(b"abcdefghij\nk"),
            [b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
        assert_eq!(short.finish(), Some(b"k".to_vec()));
        let mut parsed = Vec::new();
        parse_records(b"O a\ngarbage\nE b\nO partial", &mut parsed);
        assert_eq!(
            text(&parsed),
            [
                (LogStream::Stdout, "a".to_string()),
                (LogStream::Stderr, "b".to_string())
            ]
        );
    }
}
