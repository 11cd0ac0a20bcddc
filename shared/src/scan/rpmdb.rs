//! rpm's package database, as Red Hat-family images carry it: every installed package is one
//! rpm *header* (an index of tagged values and a data store), kept as a row of an SQLite table
//! (`rpmdb.sqlite`, RHEL 9, Rocky/Alma 9, Amazon Linux 2023, Fedora) or as a value of a Berkeley
//! DB hash file (`Packages`, RHEL/Rocky/Alma 8, Amazon Linux 2, CentOS 7).
//!
//! Both files come from the image, so both are read as hostile: the SQLite file is opened
//! read-only and immutable, in defensive mode, with its schema checked and a bound on the work a
//! query may do; the Berkeley DB file is read a page at a time, every page number and length
//! checked, never following a chain past the file. Neither is held in memory whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::inventory::{Package, MAX_LAYER_PACKAGES};
use super::version::Ecosystem;

/// The largest header accepted (rpm's own limit on a header's data is 256 MiB; real ones are a
/// few hundred KiB).
const MAX_HEADER: usize = 16 * 1024 * 1024;

/// The longest text field read from a header (real names, versions and source rpm file names
/// are well under 256 bytes): a longer one is refused, so a small header cannot become a huge
/// package record (or a huge SBOM).
pub const MAX_FIELD: usize = 1024;

/// The most package text (names, versions) one database may yield: thousands of real packages
/// are a few hundred KiB.
pub const MAX_DATABASE_TEXT: usize = 16 * 1024 * 1024;

/// How many SQLite virtual-machine steps (in thousands) reading the package table may take: a
/// real database of thousands of packages needs a few thousand; a crafted one is stopped.
const MAX_SQLITE_STEPS_K: u64 = 200_000;

/// Why an rpm database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RpmDbError {
    /// The file is not the database it claims to be, or is damaged.
    #[error("{0}")]
    Invalid(String),
    /// The scratch copy of the file could not be read back.
    #[error("reading the scratch copy: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(why: impl Into<String>) -> RpmDbError {
    RpmDbError::Invalid(why.into())
}

// --- headers ---------------------------------------------------------------------------------

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;
const TAG_MODULARITYLABEL: u32 = 5096;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The fields of one header the scanner needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// `NAME`
    pub name: String,
    /// `EPOCH`, when set
    pub epoch: Option<u32>,
    /// `VERSION`
    pub version: String,
    /// `RELEASE`
    pub release: String,
    /// `ARCH`
    pub arch: String,
    /// `SOURCERPM` (`openssl-3.0.7-24.el9.src.rpm`); empty for pseudo-packages
    pub source_rpm: String,
    /// `MODULARITYLABEL` (`nodejs:18:8090020230810123456:a75119d5`); empty when not modular
    pub modularity_label: String,
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses a header blob: `il` and `dl` (big-endian counts), `il` index entries of tag, type,
/// offset and count, then `dl` bytes of data.
pub fn parse_header(blob: &[u8]) -> Result<Header, RpmDbError> {
    let (Some(il), Some(dl)) = (be32(blob, 0), be32(blob, 4)) else {
        return Err(invalid("a package header is shorter than its preamble"));
    };
    let (il, dl) = (il as usize, dl as usize);
    if il == 0 || il > 0xffff || dl > MAX_HEADER {
        return Err(invalid(format!("a package header claims {il} entries and {dl} data bytes")));
    }
    let store_at = 8 + il * 16;
    let store = blob
        .get(store_at..store_at + dl)
        .ok_or_else(|| invalid(format!("a package header of {} bytes is shorter than it claims", blob.len())))?;
    let mut header = Header::default();
    let mut seen = [false; 7];
    for i in 0..il {
        let at = 8 + i * 16;
        let (Some(tag), Some(kind), Some(offset)) = (be32(blob, at), be32(blob, at + 4), be32(blob, at + 8)) else {
            return Err(invalid("a package header's index is cut short"));
        };
        let offset = offset as usize;
        // each wanted tag is read once: a header repeating one is refused, so its cost is
        // bounded by the index's length, not by its length times its strings'
        let slot = [TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH, TAG_SOURCERPM, TAG_MODULARITYLABEL]
            .iter()
            .position(|t| *t == tag);
        if let Some(slot) = slot {
            if std::mem::replace(&mut seen[slot], true) {
                return Err(invalid(format!("a package header repeats tag {tag}")));
            }
        }
        let string = || -> Result<String, RpmDbError> {
            if !matches!(kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
                return Err(invalid(format!("tag {tag} of a package header is not a string")));
            }
            let rest = store.get(offset..).ok_or_else(|| invalid(format!("tag {tag} points past the header")))?;
            let end = rest
                .iter()
                .take(MAX_FIELD + 1)
                .position(|b| *b == 0)
                .ok_or_else(|| invalid(format!("tag {tag} is unterminated or longer than {MAX_FIELD} bytes")))?;
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match tag {
            TAG_NAME => header.name = string()?,
            TAG_VERSION => header.version = string()?,
            TAG_RELEASE => header.release = string()?,
            TAG_ARCH => header.arch = string()?,
            TAG_SOURCERPM => header.source_rpm = string()?,
            TAG_MODULARITYLABEL => header.modularity_label = string()?,
            TAG_EPOCH if kind == TYPE_INT32 => {
                header.epoch = Some(be32(store, offset).ok_or_else(|| invalid("the epoch points past the header"))?)
            }
            _ => {}
        }
    }
    if header.name.is_empty() || header.version.is_empty() {
        return Err(invalid("a package header has no name or version"));
    }
    Ok(header)
}

/// `name-version-release.src.rpm` → (name, version, release).
fn split_source_rpm(file: &str) -> Option<(&str, &str, &str)> {
    let stem = file.strip_suffix(".src.rpm").or_else(|| file.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = stem.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    (!name.is_empty() && !version.is_empty() && !release.is_empty()).then_some((name, version, release))
}

impl Header {
    /// The installed package, or `None` for rpm's pseudo-packages (imported signing keys).
    pub fn package(&self) -> Option<Package> {
        if self.name == "gpg-pubkey" {
            return None;
        }
        let evr = |version: &str, release: &str| {
            let vr = if release.is_empty() { version.to_string() } else { format!("{version}-{release}") };
            match self.epoch {
                Some(e) if e > 0 => format!("{e}:{vr}"),
                _ => vr,
            }
        };
        let version = evr(&self.version, &self.release);
        // the source package keeps the binary's epoch, as the distributions' advisories do
        let (source, source_version) = match split_source_rpm(&self.source_rpm) {
            Some((name, v, r)) => (name.to_string(), evr(v, r)),
            None => (self.name.clone(), version.clone()),
        };
        // `name:stream:version:context` → `name:stream` (Trivy's rule: at least two colons)
        let parts: Vec<&str> = self.modularity_label.split(':').collect();
        let module = if parts.len() >= 3 { parts[..2].to_vec() } else { Vec::new() };
        Some(Package {
            ecosystem: Ecosystem::Rpm,
            name: self.name.clone(),
            version,
            source,
            source_version,
            module: if module.len() == 2 { module.join(":") } else { String::new() },
            distribution_managed: false,
        })
    }
}

/// The packages read so far, and their text.
#[derive(Default)]
struct Collected {
    packages: Vec<Package>,
    text: usize,
}

impl Collected {
    /// Adds the package of `blob`, refusing a database of more than a layer may list.
    fn add(&mut self, blob: &[u8]) -> Result<(), RpmDbError> {
        if let Some(p) = parse_header(blob)?.package() {
            self.text += p.text_len();
            self.packages.push(p);
            if self.packages.len() > MAX_LAYER_PACKAGES {
                return Err(invalid(format!("the database lists more than {MAX_LAYER_PACKAGES} packages")));
            }
            if self.text > MAX_DATABASE_TEXT {
                return Err(invalid(format!(
                    "the database's packages hold more than {MAX_DATABASE_TEXT} bytes of text"
                )));
            }
        }
        Ok(())
    }
}

// --- SQLite ------------------------------------------------------------------------------------

/// The packages of an `rpmdb.sqlite` file.
pub fn read_sqlite(path: &Path) -> Result<Vec<Package>, RpmDbError> {
    use rusqlite::{Connection, OpenFlags};
    let sqlite = |e: rusqlite::Error| invalid(format!("not a readable rpm SQLite database: {e}"));
    // a URI path: `%`, `?` and `#` would be read as escapes, a query and a fragment
    let escaped: String = path
        .display()
        .to_string()
        .chars()
        .map(|c| match c {
            '%' | '?' | '#' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    let uri = format!("file:{escaped}?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags).map_err(sqlite)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true).map_err(sqlite)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false).map_err(sqlite)?;
    conn.pragma_update(None, "cell_size_check", true).map_err(sqlite)?;
    let steps = std::sync::atomic::AtomicU64::new(0);
    conn.progress_handler(
        1000,
        Some(move || steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= MAX_SQLITE_STEPS_K),
    );
    // `Packages` must be a plain table: a view could make the query below do anything
    let kind: Option<String> = conn
        .query_row("SELECT type FROM sqlite_master WHERE name = 'Packages'", [], |r| r.get(0))
        .map_or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) }, |k| Ok(Some(k)))
        .map_err(sqlite)?;
    if kind.as_deref() != Some("table") {
        return Err(invalid("the rpm SQLite database has no Packages table"));
    }
    // an ordinary table: not virtual, and `blob` stored, not computed by a generated column
    let sql: String =
        conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'Packages'", [], |r| r.get(0)).map_err(sqlite)?;
    if sql.trim_start().to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
        return Err(invalid("the rpm SQLite database's Packages is a virtual table"));
    }
    let mut columns = conn.prepare("SELECT name, hidden FROM pragma_table_xinfo('Packages')").map_err(sqlite)?;
    let plain_blob = columns
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sqlite)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite)?
        .iter()
        .any(|(name, hidden)| name == "blob" && *hidden == 0);
    if !plain_blob {
        return Err(invalid("the rpm SQLite database's Packages has no stored blob column"));
    }
    // `length` of a column reads no content, so an oversized row is refused before it is loaded
    let mut statement = conn
        .prepare("SELECT length(blob), CASE WHEN length(blob) <= ?1 THEN blob END FROM Packages")
        .map_err(sqlite)?;
    let mut rows = statement.query([MAX_HEADER as i64]).map_err(sqlite)?;
    let mut packages = Collected::default();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let length: i64 = row.get(0).map_err(sqlite)?;
        let rusqlite::types::ValueRef::Blob(blob) = row.get_ref(1).map_err(sqlite)? else {
            return Err(invalid(format!(
                "a row of the rpm SQLite database holds no header of at most {MAX_HEADER} bytes ({length})"
            )));
        };
        packages.add(blob)?;
    }
    Ok(packages.packages)
}

// --- Berkeley DB hash --------------------------------------------------------------------------

const HASH_MAGIC: u32 = 0x0006_1561;
const PAGE_HEADER: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// A Berkeley DB file read a page at a time.
struct Bdb {
    file: File,
    page_size: usize,
    last_page: u32,
    swapped: bool,
    /// overflow bytes still allowed: a real database reads each overflow page once, so chains
    /// that share pages (to make a small file cost a lot of reading) run out
    overflow_budget: u64,
}

impl Bdb {
    fn open(path: &Path) -> Result<Self, RpmDbError> {
        let mut file = File::open(path)?;
        let mut meta = [0u8; 72];
        file.read_exact(&mut meta).map_err(|_| invalid("too short for a Berkeley DB file"))?;
        let le = |at: usize| u32::from_le_bytes([meta[at], meta[at + 1], meta[at + 2], meta[at + 3]]);
        let swapped = match le(12) {
            HASH_MAGIC => false,
            m if m.swap_bytes() == HASH_MAGIC => true,
            _ => return Err(invalid("not a Berkeley DB hash database")),
        };
        let word = |at: usize| if swapped { le(at).swap_bytes() } else { le(at) };
        if meta[24] != 0 {
            return Err(invalid("the Berkeley DB database is encrypted"));
        }
        let page_size = word(20) as usize;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(invalid(format!("a Berkeley DB page size of {page_size}")));
        }
        let length = file.metadata()?.len();
        let pages = length / page_size as u64;
        let last_page = word(32);
        if u64::from(last_page) >= pages {
            return Err(invalid(format!("the last page {last_page} lies past the file's {pages} pages")));
        }
        Ok(Self { file, page_size, last_page, swapped, overflow_budget: length })
    }

    fn page(&mut self, number: u32) -> Result<Vec<u8>, RpmDbError> {
        if number > self.last_page {
            return Err(invalid(format!("page {number} lies past the last page {}", self.last_page)));
        }
        let mut page = vec![0u8; self.page_size];
        self.file.seek(SeekFrom::Start(u64::from(number) * self.page_size as u64))?;
        self.file.read_exact(&mut page)?;
        Ok(page)
    }

    fn u16_at(&self, page: &[u8], at: usize) -> usize {
        let v = u16::from_le_bytes([page[at], page[at + 1]]);
        usize::from(if self.swapped { v.swap_bytes() } else { v })
    }

    fn u32_at(&self, page: &[u8], at: usize) -> u32 {
        let v = u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]]);
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    /// The value an off-page item points to: `length` bytes along a chain of overflow pages.
    fn overflow(&mut self, first: u32, length: usize) -> Result<Vec<u8>, RpmDbError> {
        if length > MAX_HEADER {
            return Err(invalid(format!("a value of {length} bytes")));
        }
        let mut value = Vec::with_capacity(length);
        let mut next = first;
        while value.len() < length {
            if next == 0 {
                return Err(invalid("an overflow chain ends early"));
            }
            self.overflow_budget = self
                .overflow_budget
                .checked_sub(self.page_size as u64)
                .ok_or_else(|| invalid("overflow chains loop or share pages"))?;
            let page = self.page(next)?;
            if page[25] != P_OVERFLOW {
                return Err(invalid(format!("page {next} is not an overflow page")));
            }
            let used = self.u16_at(&page, 22);
            let bytes = page
                .get(PAGE_HEADER..PAGE_HEADER + used)
                .ok_or_else(|| invalid(format!("overflow page {next} claims {used} bytes")))?;
            // every page of a chain but its last is full, so a chain cannot trickle a byte a page
            if used == 0 || (value.len() + used < length && used < self.page_size - PAGE_HEADER) {
                return Err(invalid(format!("overflow page {next} holds {used} bytes")));
            }
            value.extend_from_slice(&bytes[..used.min(length - value.len())]);
            next = self.u32_at(&page, 16);
        }
        Ok(value)
    }
}

/// The packages of a Berkeley DB `Packages` file: every data item of every hash page.
pub fn read_bdb(path: &Path) -> Result<Vec<Package>, RpmDbError> {
    let mut db = Bdb::open(path)?;
    let mut packages = Collected::default();
    for number in 1..=db.last_page {
        let page = db.page(number)?;
        if !matches!(page[25], P_HASH | P_HASH_UNSORTED) {
            continue;
        }
        let entries = db.u16_at(&page, 20);
        if PAGE_HEADER + entries * 2 > db.page_size {
            return Err(invalid(format!("hash page {number} claims {entries} items")));
        }
        let offsets: Vec<usize> = (0..entries).map(|i| db.u16_at(&page, PAGE_HEADER + i * 2)).collect();
        // items pair up: key, data; an item runs from its offset to the previous item's
        for i in (1..entries).step_by(2) {
            let (start, end) = (offsets[i], offsets[i - 1]);
            let item = page
                .get(start..end)
                .filter(|item| !item.is_empty())
                .ok_or_else(|| invalid(format!("hash page {number} has a damaged item {i}")))?;
            let blob = match item[0] {
                H_KEYDATA => item[1..].to_vec(),
                H_OFFPAGE if item.len() >= 12 => {
                    let first = db.u32_at(item, 4);
                    let length = db.u32_at(item, 8) as usize;
                    db.overflow(first, length)?
                }
                other => return Err(invalid(format!("hash page {number} has an item of type {other}"))),
            };
            // rpm's record 0 holds a counter, not a header
            if blob.len() >= 8 {
                packages.add(&blob)?;
            }
        }
    }
    Ok(packages.packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header blob as rpm writes one (entries in tag order, strings NUL-terminated).
    fn header(fields: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store = Vec::new();
        let mut entries: Vec<(u32, u32, Vec<u8>)> =
            fields.iter().map(|(tag, text)| (*tag, TYPE_STRING, [text.as_bytes(), &[0]].concat())).collect();
        if let Some(e) = epoch {
            entries.push((TAG_EPOCH, TYPE_INT32, e.to_be_bytes().to_vec()));
        }
        entries.sort_by_key(|e| e.0);
        for (tag, kind, data) in &entries {
            while *kind == TYPE_INT32 && store.len() % 4 != 0 {
                store.push(0);
            }
            for v in [*tag, *kind, store.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            store.extend_from_slice(data);
        }
        let mut blob = (entries.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(&(store.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(store);
        blob
    }

    #[test]
    fn a_header_yields_the_binary_and_source_package() {
        let blob = header(
            &[
                (TAG_NAME, "openssl-libs"),
                (TAG_VERSION, "3.0.7"),
                (TAG_RELEASE, "24.el9"),
                (TAG_ARCH, "x86_64"),
                (TAG_SOURCERPM, "openssl-3.0.7-24.el9.src.rpm"),
            ],
            Some(1),
        );
        let p = parse_header(&blob).unwrap().package().unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.source.as_str(), p.source_version.as_str()),
            ("openssl-libs", "1:3.0.7-24.el9", "openssl", "1:3.0.7-24.el9")
        );
        assert_eq!(p.ecosystem, Ecosystem::Rpm);
        let modular = header(
            &[
                (TAG_NAME, "nodejs"),
                (TAG_VERSION, "18.19.0"),
                (TAG_RELEASE, "1.module+el8.9.0+1"),
                (TAG_MODULARITYLABEL, "nodejs:18:8090020231201:a75119d5"),
            ],
            None,
        );
        let p = parse_header(&modular).unwrap().package().unwrap();
        assert_eq!((p.module.as_str(), p.source.as_str()), ("nodejs:18", "nodejs"));
        let key = header(&[(TAG_NAME, "gpg-pubkey"), (TAG_VERSION, "8483c65d"), (TAG_RELEASE, "5ccc5b19")], None);
        assert_eq!(parse_header(&key).unwrap().package(), None);
    }

    #[test]
    fn damaged_headers_are_refused_not_trusted() {
        let good = header(&[(TAG_NAME, "bash"), (TAG_VERSION, "5.1.8"), (TAG_RELEASE, "6.el9")], None);
        // cut short, an offset past the store, an absurd count, no terminator
        assert!(parse_header(&good[..good.len() - 3]).is_err());
        let mut past = good.clone();
        past[8 + 8..8 + 12].copy_from_slice(&9999u32.to_be_bytes());
        assert!(parse_header(&past).is_err());
        let mut many = good.clone();
        many[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_header(&many).is_err());
        let mut open = good.clone();
        let last = open.len() - 1;
        open[last] = b'x';
        assert!(parse_header(&open).is_err());
        assert!(parse_header(&[0, 0, 0]).is_err());
        // a repeated tag (its string scanned again and again) and an over-long field
        let twice = header(&[(TAG_NAME, "a"), (TAG_NAME, "b"), (TAG_VERSION, "1")], None);
        assert!(parse_header(&twice).unwrap_err().to_string().contains("repeats tag 1000"));
        let long = "x".repeat(MAX_FIELD + 1);
        let huge = header(&[(TAG_NAME, &long), (TAG_VERSION, "1")], None);
        assert!(parse_header(&huge).unwrap_err().to_string().contains("longer than"));
    }

    #[test]
    fn an_sqlite_database_is_read_and_a_view_in_place_of_the_table_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
            .unwrap();
        for (name, version) in [("bash", "5.1.8"), ("zlib", "1.2.11")] {
            let blob = header(&[(TAG_NAME, name), (TAG_VERSION, version), (TAG_RELEASE, "1.el9")], None);
            conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob]).unwrap();
        }
        drop(conn);
        let names: Vec<_> = read_sqlite(&path).unwrap().into_iter().map(|p| p.version).collect();
        assert_eq!(names, ["5.1.8-1.el9", "1.2.11-1.el9"]);
        // a row too large to be a header is refused before it is loaded
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("INSERT INTO Packages (blob) VALUES (zeroblob(?1))", [MAX_HEADER as i64 + 1]).unwrap();
        drop(conn);
        assert!(read_sqlite(&path).unwrap_err().to_string().contains("no header of at most"));

        let view = dir.path().join("view.sqlite");
        let conn = rusqlite::Connection::open(&view).unwrap();
        conn.execute_batch(
            "CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT zeroblob(8) AS blob FROM c",
        )
        .unwrap();
        drop(conn);
        assert!(read_sqlite(&view).unwrap_err().to_string().contains("no Packages table"));
        // a table whose blob is computed (any size from a tiny file) is not rpm's table
        let generated = dir.path().join("generated.sqlite");
        let conn = rusqlite::Connection::open(&generated).unwrap();
        conn.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, seed INTEGER, \
             blob BLOB GENERATED ALWAYS AS (zeroblob(1000)) VIRTUAL); INSERT INTO Packages (seed) VALUES (1)",
        )
        .unwrap();
        drop(conn);
        assert!(read_sqlite(&generated).unwrap_err().to_string().contains("no stored blob column"));
        std::fs::write(dir.path().join("junk"), b"not sqlite at all, just text").unwrap();
        assert!(read_sqlite(&dir.path().join("junk")).is_err());
    }

    #[test]
    fn a_berkeley_db_file_that_lies_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Packages");
        let mut meta = vec![0u8; 4096];
        meta[12..16].copy_from_slice(&HASH_MAGIC.to_le_bytes());
        meta[20..24].copy_from_slice(&4096u32.to_le_bytes());
        meta[32..36].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&path, &meta).unwrap();
        assert!(read_bdb(&path).unwrap_err().to_string().contains("past the file"));
        // a hash page whose only data item points to an overflow chain that loops on itself
        let mut page = vec![0u8; 4096];
        page[25] = P_HASH;
        page[20..22].copy_from_slice(&2u16.to_le_bytes());
        page[26..28].copy_from_slice(&4000u16.to_le_bytes());
        page[28..30].copy_from_slice(&3980u16.to_le_bytes());
        page[3980] = H_OFFPAGE;
        page[3984..3988].copy_from_slice(&2u32.to_le_bytes());
        page[3988..3992].copy_from_slice(&100_000u32.to_le_bytes());
        let mut overflow = vec![0u8; 4096];
        overflow[25] = P_OVERFLOW;
        overflow[16..20].copy_from_slice(&2u32.to_le_bytes());
        overflow[22..24].copy_from_slice(&10u16.to_le_bytes());
        meta[32..36].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&path, [meta.clone(), page.clone(), overflow.clone()].concat()).unwrap();
        let err = read_bdb(&path).unwrap_err().to_string();
        assert!(err.contains("holds 10 bytes"), "{err}");
        // full pages that loop on themselves run out of the file's length
        overflow[22..24].copy_from_slice(&(4096u16 - 26).to_le_bytes());
        std::fs::write(&path, [meta.clone(), page.clone(), overflow.clone()].concat()).unwrap();
        let err = read_bdb(&path).unwrap_err().to_string();
        assert!(err.contains("loop"), "{err}");
        std::fs::write(&path, b"short").unwrap();
        assert!(read_bdb(&path).is_err());
    }
}
