//! Reading a tar stream from an untrusted peer, one member at a time, in bounded memory.
//!
//! The `tar` crate reads GNU long-name / long-link and PAX headers whole into memory before its
//! caller sees them, whatever size they claim; so headers are read here, and an extension
//! header is refused from its size field, before a byte of its contents is read. Only
//! `tar::Header`'s field parsers are borrowed from the crate.

use std::io::{self, Read, Write};

use crate::{CopyError, UnpackOptions};

const BLOCK: usize = 512;
/// After the end-of-archive marker, at most this much trailing padding is read (and dropped),
/// so that a peer still writing its last zero blocks does not see a broken pipe.
const TRAILER_DRAIN: u64 = 1 << 20;

/// What a member is, from its type flag (and, for old archives, a trailing `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One member, its extension headers already folded in.
#[derive(Debug)]
pub(crate) struct Member {
    /// Raw path bytes as the archive spells them.
    pub path: Vec<u8>,
    /// Raw link target (symlinks and hard links).
    pub link: Option<Vec<u8>>,
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub major: u32,
    pub minor: u32,
    /// `SCHILY.xattr.*` PAX records: (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Member {
    /// The path for messages (lossy UTF-8).
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// What the PAX headers before a member override.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// GNU's PAX-encoded sparse formats: refused, like the old GNU sparse type.
    sparse: bool,
}

pub(crate) struct Reader<R> {
    inner: R,
    max_entries: u64,
    max_extension_bytes: u64,
    max_path_bytes: usize,
    members: u64,
    /// Unread contents of the current member, then its padding to the next block.
    remaining: u64,
    padding: u64,
    done: bool,
    buf: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> CopyError {
    CopyError::Malformed(what.into())
}

/// The bytes up to the first NUL (GNU long names end with one).
fn until_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|b| *b == 0) {
        bytes.truncate(end);
    }
    bytes
}

fn parse_decimal<T: std::str::FromStr>(key: &str, value: &[u8]) -> Result<T, CopyError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            malformed(format!(
                "the PAX record {key}={:?} is not a number",
                String::from_utf8_lossy(value)
            ))
        })
}

/// Folds PAX records (`"<len> <key>=<value>\n"`, the length counting the whole record) into
/// `pax`.
fn parse_pax(mut data: &[u8], pax: &mut Pax) -> Result<(), CopyError> {
    while !data.is_empty() {
        if data.iter().all(|b| *b == 0) {
            break; // NUL padding some writers leave after the last record
        }
        let space = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| malformed("a PAX record has no length"))?;
        let len: usize = parse_decimal("length", &data[..space])?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(malformed(
                "a PAX record's length does not match its contents",
            ));
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| malformed("a PAX record has no `=`"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            // An empty value cancels the keyword; the header's own field then applies.
            _ if value.is_empty() => {}
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.link = Some(value.to_vec()),
            b"size" => pax.size = Some(parse_decimal("size", value)?),
            b"uid" => pax.uid = Some(parse_decimal("uid", value)?),
            b"gid" => pax.gid = Some(parse_decimal("gid", value)?),
            b"mtime" => {
                // Seconds, maybe with a fraction: whole seconds are kept, as for the header.
                let whole = value.split(|b| *b == b'.').next().unwrap_or(value);
                pax.mtime = Some(parse_decimal("mtime", whole)?);
            }
            _ if key.starts_with(b"SCHILY.xattr.") => {
                let name = key[b"SCHILY.xattr.".len()..].to_vec();
                pax.xattrs.push((name, value.to_vec()));
            }
            _ if key.starts_with(b"GNU.sparse.") => pax.sparse = true,
            // atime, ctime, uname, gname, comment, charset, vendor records: not used.
            _ => {}
        }
    }
    Ok(())
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R, options: &UnpackOptions) -> Self {
        Reader {
            inner,
            max_entries: options.max_entries,
            max_extension_bytes: options.max_extension_bytes,
            max_path_bytes: options.max_path_bytes,
            members: 0,
            remaining: 0,
            padding: 0,
            done: false,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of stream before the first.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<bool, CopyError> {
        let mut read = 0;
        while read < buf.len() {
            match self.inner.read(&mut buf[read..]) {
                Ok(0) if read == 0 => return Ok(false),
                Ok(0) => return Err(malformed(format!("the archive ends inside {what}"))),
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
        Ok(true)
    }

    /// Reads and drops `n` bytes of the stream.
    fn skip(&mut self, mut n: u64, what: &str) -> Result<(), CopyError> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            while n > 0 {
                let chunk = n.min(buf.len() as u64) as usize;
                if !self.fill(&mut buf[..chunk], what)? {
                    return Err(malformed(format!("the archive ends inside {what}")));
                }
                n -= chunk as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        result
    }

    /// The whole contents of an extension header, refused unread past the limit.
    fn extension(&mut self, header: &tar::Header, what: &str) -> Result<Vec<u8>, CopyError> {
        let size = header
            .entry_size()
            .map_err(|e| malformed(format!("the size of {what}: {e}")))?;
        if size > self.max_extension_bytes {
            return Err(CopyError::LimitExceeded {
                limit: "max_extension_bytes",
                value: self.max_extension_bytes,
            });
        }
        let mut data = vec![0u8; size as usize];
        if !self.fill(&mut data, what)? && size > 0 {
            return Err(malformed(format!("the archive ends inside {what}")));
        }
        self.skip(padding(size), what)?;
        Ok(data)
    }

    fn check_path(&self, bytes: &[u8]) -> Result<(), CopyError> {
        if bytes.len() > self.max_path_bytes {
            return Err(CopyError::LimitExceeded {
                limit: "max_path_bytes",
                value: self.max_path_bytes as u64,
            });
        }
        Ok(())
    }

    /// The next member, after skipping what is left of the current one; `None` at the end.
    pub fn next(&mut self) -> Result<Option<Member>, CopyError> {
        if self.done {
            return Ok(None);
        }
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest, "an entry's contents")?;

        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        loop {
            let mut header = tar::Header::new_old();
            if !self.fill(header.as_mut_bytes(), "a header")? {
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(malformed("the archive ends after an extension header"));
                }
                self.done = true;
                return Ok(None);
            }
            if header.as_bytes().iter().all(|b| *b == 0) {
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(malformed("the archive ends after an extension header"));
                }
                self.done = true;
                self.drain_trailer();
                return Ok(None);
            }
            verify_checksum(&header)?;
            let flag = header.entry_type().as_byte();
            match flag {
                b'L' | b'K' | b'x' => {
                    let what = match flag {
                        b'L' => "a GNU long-name header",
                        b'K' => "a GNU long-link header",
                        _ => "a PAX header",
                    };
                    let data = self.extension(&header, what)?;
                    let twice = || malformed(format!("two of {what} describe one entry"));
                    match flag {
                        b'L' if long_name.is_some() => return Err(twice()),
                        b'K' if long_link.is_some() => return Err(twice()),
                        b'x' if pax.is_some() => return Err(twice()),
                        b'L' => long_name = Some(until_nul(data)),
                        b'K' => long_link = Some(until_nul(data)),
                        _ => {
                            let mut records = Pax::default();
                            parse_pax(&data, &mut records)?;
                            pax = Some(records);
                        }
                    }
                    continue;
                }
                _ => {}
            }
            self.members += 1;
            if self.members > self.max_entries {
                return Err(CopyError::LimitExceeded {
                    limit: "max_entries",
                    value: self.max_entries,
                });
            }
            if flag == b'g' {
                // PAX global headers carry nothing extraction uses (as Docker ignores them).
                self.extension(&header, "a PAX global header")?;
                continue;
            }
            let pax = pax.unwrap_or_default();
            let path = match (pax.path, long_name) {
                (Some(path), _) | (None, Some(path)) => path,
                (None, None) => header.path_bytes().into_owned(),
            };
            self.check_path(&path)?;
            let link = match (pax.link, long_link) {
                (Some(link), _) | (None, Some(link)) => Some(link),
                (None, None) => header.link_name_bytes().map(|l| l.into_owned()),
            };
            if let Some(link) = &link {
                self.check_path(link)?;
            }
            let entry = String::from_utf8_lossy(&path).into_owned();
            if pax.sparse {
                return Err(CopyError::Unsupported {
                    entry,
                    what: "GNU sparse file (PAX format)".to_string(),
                });
            }
            let kind = match flag {
                b'0' | b'\0' if path.ends_with(b"/") => Kind::Directory,
                b'0' | b'\0' | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'5' => Kind::Directory,
                b'6' => Kind::Fifo,
                b'S' => {
                    return Err(CopyError::Unsupported {
                        entry,
                        what: "GNU sparse file".to_string(),
                    })
                }
                other => {
                    return Err(CopyError::Unsupported {
                        entry,
                        what: format!("member of unknown type {:?}", other as char),
                    })
                }
            };
            let size = match pax.size {
                Some(size) => size,
                None => header
                    .entry_size()
                    .map_err(|e| malformed(format!("the size of {entry:?}: {e}")))?,
            };
            let mode = header
                .mode()
                .map_err(|e| malformed(format!("the mode of {entry:?}: {e}")))?;
            let member = Member {
                link,
                kind,
                size,
                mode,
                // Blank owner fields read as root, as Go's archive/tar (and so Docker) reads
                // them.
                uid: pax.uid.unwrap_or_else(|| header.uid().unwrap_or(0)),
                gid: pax.gid.unwrap_or_else(|| header.gid().unwrap_or(0)),
                mtime: pax
                    .mtime
                    .unwrap_or_else(|| header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64),
                major: header.device_major().ok().flatten().unwrap_or(0),
                minor: header.device_minor().ok().flatten().unwrap_or(0),
                xattrs: pax.xattrs,
                path,
            };
            self.remaining = size;
            self.padding = padding(size);
            return Ok(Some(member));
        }
    }

    /// Copies the current member's contents to `out` (`Err` from `out` is the caller's).
    pub fn copy_to(&mut self, out: &mut impl Write) -> Result<Result<(), io::Error>, CopyError> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            while self.remaining > 0 {
                let chunk = self.remaining.min(buf.len() as u64) as usize;
                if !self.fill(&mut buf[..chunk], "an entry's contents")? {
                    return Err(malformed("the archive ends inside an entry's contents"));
                }
                self.remaining -= chunk as u64;
                if let Err(e) = out.write_all(&buf[..chunk]) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        })();
        self.buf = buf;
        result
    }

    /// Reads (a bounded amount of) what follows the end-of-archive marker, ignoring errors.
    fn drain_trailer(&mut self) {
        let _ = io::copy(&mut (&mut self.inner).take(TRAILER_DRAIN), &mut io::sink());
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn verify_checksum(header: &tar::Header) -> Result<(), CopyError> {
    let bytes = header.as_bytes();
    let sum: u32 = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    let stored = header
        .cksum()
        .map_err(|e| malformed(format!("a header checksum: {e}")))?;
    if sum != stored {
        return Err(malformed("a header's checksum does not match"));
    }
    Ok(())
}
