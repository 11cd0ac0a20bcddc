//! What is installed in an image, read from its layers' package databases (never from binaries).
//!
//! Each layer is read once, as a stream, into path-keyed [`LayerFacts`] (a parsed `os-release`,
//! dpkg `status` or `status.d/*`, apk `installed`, an rpm database, a Python distribution's
//! `METADATA` or `PKG-INFO`) plus the whiteouts and opaque directories that
//! could hide such a file. Facts are stored per layer digest, so a layer shared by many images, or
//! scanned again after a vulnerability-data update, is never read twice. [`merge`] applies the
//! layers bottom-up as an overlay filesystem would: a later layer's whiteout deletes a lower
//! layer's file, and the last copy of a whole-database file wins.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::rpmdb::{self, RpmDbError};
use super::version::Ecosystem;

/// The largest package-database file read (a Debian `status` with thousands of packages is a few
/// MiB); a larger one is refused rather than held in memory.
pub const MAX_DATABASE_FILE: u64 = 32 * 1024 * 1024;

/// The most package-database bytes one layer may hold, all files together (a layer with many
/// `status.d` files, each under [`MAX_DATABASE_FILE`], must not add up to gigabytes).
pub const MAX_LAYER_DATABASE_BYTES: u64 = 64 * 1024 * 1024;

/// The most package text (names, versions, sources) one layer may yield; real layers hold a few
/// hundred KiB. It bounds the stored layer facts and the SBOM however the databases are shaped.
pub const MAX_LAYER_PACKAGE_TEXT: usize = 16 * 1024 * 1024;

/// The largest rpm database read. It is copied to the scratch disk (SQLite and Berkeley DB are
/// read in place, not in memory), so it may be larger than [`MAX_DATABASE_FILE`].
pub const MAX_RPM_DATABASE_FILE: u64 = 512 * 1024 * 1024;

/// The most rpm-database bytes one layer may hold, all copies together (a tar may repeat a path).
pub const MAX_LAYER_RPM_BYTES: u64 = 1024 * 1024 * 1024;

/// The most packages one layer may list (a real distribution lists a few thousand); parsing
/// stops past it, so a file of millions of tiny stanzas costs no more memory than this.
pub const MAX_LAYER_PACKAGES: usize = 100_000;

/// Why a layer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The layer is not a (gzip-compressed) tar archive, or ended early.
    #[error("the layer is not a readable tar archive: {0}")]
    Unreadable(String),
    /// The layer uses a compression the scanner does not read.
    #[error("the layer's compression is not supported yet: {0}")]
    Unsupported(String),
    /// The layer's package databases together are implausibly large.
    #[error("the layer's package databases hold {what}, more than a layer may ({limit})")]
    TooMuch {
        /// what was counted
        what: String,
        /// the limit
        limit: String,
    },
    /// A package database is not what its format says.
    #[error("{path} is not a readable package database: {why}")]
    Damaged {
        /// the file's path in the layer
        path: String,
        /// what is wrong
        why: String,
    },
    /// The scratch disk failed (full, read-only) while copying a database out; tried again.
    #[error("copying {path} to the scratch disk: {why}")]
    Scratch {
        /// the file's path in the layer
        path: String,
        /// what failed
        why: String,
    },
    /// A package-database file is implausibly large.
    #[error("{path} is {size} bytes, more than the {limit} bytes a package database may have")]
    TooLarge {
        /// the file's path in the layer
        path: String,
        /// its size
        size: u64,
        /// the limit for that kind of file
        limit: u64,
    },
}

/// The operating system an image says it is (`os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    /// `ID` (`debian`, `alpine`, `ubuntu` …)
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`, `22.04` …); empty for rolling releases
    pub version_id: String,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// which package manager installed it (and so whose version ordering applies)
    pub ecosystem: Ecosystem,
    /// the binary package's name
    pub name: String,
    /// its installed version
    pub version: String,
    /// the source package it was built from (dpkg `Source`, apk `o:` origin); advisories name these
    pub source: String,
    /// the source package's version (differs from `version` for binNMUs)
    pub source_version: String,
    /// an rpm module stream (`nodejs:18`) the package came from; empty otherwise
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// a Python distribution the OS's own packages installed (`/usr/lib/python3*`): listed, but
    /// matched through the OS's advisories (which know its backported fixes), not PyPI's
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub distribution_managed: bool,
}

impl Package {
    /// How many bytes of text the record holds (what layer budgets count).
    pub fn text_len(&self) -> usize {
        self.name.len() + self.version.len() + self.source.len() + self.source_version.len() + self.module.len()
    }

    /// The name and version advisories key this package by: Debian and Alpine advise on source
    /// packages; the rpm distributions on binary packages, a module's within its stream
    /// (`nodejs:18::nodejs`), as Trivy's data keys them.
    pub fn advisory_key(&self) -> (String, &str) {
        match self.ecosystem {
            Ecosystem::Rpm if !self.module.is_empty() => (format!("{}::{}", self.module, self.name), &self.version),
            Ecosystem::Rpm => (self.name.clone(), &self.version),
            Ecosystem::Dpkg | Ecosystem::Apk => (self.source.clone(), &self.source_version),
            Ecosystem::Pypi => (python_name(&self.name), &self.version),
        }
    }
}

/// What one file of interest holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFacts {
    /// an `os-release` file
    Os(Os),
    /// a package database (or one `status.d` entry)
    Packages(Vec<Package>),
}

/// What one layer contributes and deletes, by path (no leading `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFacts {
    /// files of interest this layer writes
    pub files: BTreeMap<String, FileFacts>,
    /// paths this layer deletes from the layers below (`.wh.<name>`), where they could hide a file of interest
    pub whiteouts: Vec<String>,
    /// directories whose lower content this layer hides (`.wh..wh..opq`), likewise
    pub opaque_dirs: Vec<String>,
}

/// An image's merged inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// the operating system, if the image names one
    pub os: Option<Os>,
    /// every installed package, sorted
    pub packages: Vec<Package>,
}

const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d/";
const APK_INSTALLED: [&str; 2] = ["lib/apk/db/installed", "usr/lib/apk/db/installed"];
const RPM_SQLITE: [&str; 3] =
    ["var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite", "usr/share/rpm/rpmdb.sqlite"];
const RPM_BDB: [&str; 2] = ["var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages"];

/// PEP 503's normalised project name (`Foo_Bar.baz` → `foo-bar-baz`), as advisories name them.
pub fn python_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// How much of a Python distribution's metadata file is read: its headers come first, and a
/// long description after them is not needed.
const PYTHON_METADATA_HEAD: u64 = 64 * 1024;

/// The most bytes of whiteout paths one layer keeps (each could hide a Python distribution
/// somewhere), each path charged [`ENTRY_OVERHEAD`] more; past it a layer's further deletions
/// are not applied, which can only add findings, never hide one.
const MAX_LAYER_WHITEOUT_BYTES: usize = 8 * 1024 * 1024;

/// What one kept path costs beyond its bytes (a `String` and its place in a collection), so a
/// million empty names are not free.
const ENTRY_OVERHEAD: usize = 64;

/// Whether a Python distribution's metadata at `path` lies where the OS's packages put theirs
/// (`usr/lib/python3*`, `usr/lib64/python3*`; pip installs into `usr/local`, a venv or a
/// user's directory).
fn is_distribution_python(path: &str) -> bool {
    ["usr/lib/python", "usr/lib64/python"].iter().any(|p| path.starts_with(p))
}

/// Whether `path` is a Python distribution's metadata: `*.dist-info/METADATA`,
/// `*.egg-info/PKG-INFO`, or a single-file `*.egg-info`.
fn is_python_metadata(path: &str) -> bool {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (name == "METADATA" && dir.ends_with(".dist-info"))
        || (name == "PKG-INFO" && dir.ends_with(".egg-info"))
        || name.ends_with(".egg-info")
}

/// The files the scanner reads, and how.
enum Kind {
    OsRelease,
    DpkgStatus,
    ApkInstalled,
    RpmSqlite,
    RpmBdb,
    PythonMetadata,
}

fn kind_of(path: &str) -> Option<Kind> {
    if OS_RELEASE.contains(&path) {
        Some(Kind::OsRelease)
    } else if path == DPKG_STATUS {
        Some(Kind::DpkgStatus)
    } else if let Some(name) = path.strip_prefix(DPKG_STATUS_D) {
        // distroless: one stanza file per package; `*.md5sums` lists its files
        (!name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums")).then_some(Kind::DpkgStatus)
    } else if APK_INSTALLED.contains(&path) {
        Some(Kind::ApkInstalled)
    } else if RPM_SQLITE.contains(&path) {
        Some(Kind::RpmSqlite)
    } else if RPM_BDB.contains(&path) {
        Some(Kind::RpmBdb)
    } else if is_python_metadata(path) {
        Some(Kind::PythonMetadata)
    } else {
        None
    }
}

/// Whether deleting `path` (a file or a whole directory) could delete a file of interest: only
/// those whiteouts are kept, so a layer deleting a million files costs no memory.
fn could_hide_interest(path: &str) -> bool {
    const DPKG_DIR: &str = "var/lib/dpkg/status.d";
    let interest = OS_RELEASE
        .iter()
        .chain(APK_INSTALLED.iter())
        .chain(RPM_SQLITE.iter())
        .chain(RPM_BDB.iter())
        .chain([DPKG_STATUS, DPKG_DIR].iter());
    // Python distributions live anywhere, so any deletion could hide one: all are kept (within
    // the layer's budget) but those deep inside a `*-packages` directory, where only a
    // top-level entry (a package, a `*.dist-info`) can hold a distribution's metadata
    let python = || match ["site-packages/", "dist-packages/"].iter().find_map(|d| path.split_once(d)) {
        Some((_, inside)) => !inside.contains('/') || is_python_metadata(path),
        None => true,
    };
    path.is_empty()
        || path.starts_with(DPKG_STATUS_D)
        || interest.into_iter().any(|i| *i == path || i.strip_prefix(path).is_some_and(|rest| rest.starts_with('/')))
        || python()
}

/// `./a/b/` → `a/b`.
fn normalise(path: &str) -> String {
    path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_string()
}

/// Reads one layer (plain or gzip-compressed tar, told apart by its first bytes) as a stream.
pub fn read_layer(reader: impl Read) -> Result<LayerFacts, InventoryError> {
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, reader);
    let head = std::io::BufRead::fill_buf(&mut reader).map_err(|e| InventoryError::Unreadable(e.to_string()))?;
    match head {
        [0x1f, 0x8b, ..] => read_tar(flate2::bufread::MultiGzDecoder::new(reader)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Err(InventoryError::Unsupported("zstd".into())),
        _ => read_tar(reader),
    }
}

fn read_tar(reader: impl Read) -> Result<LayerFacts, InventoryError> {
    let unreadable = |e: std::io::Error| InventoryError::Unreadable(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut facts = LayerFacts::default();
    let (mut database_bytes, mut rpm_bytes, mut packages, mut text) = (0u64, 0u64, 0usize, 0usize);
    let mut whiteout_bytes = 0usize;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (dir.to_string(), name.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            if could_hide_interest(&dir) && whiteout_bytes + dir.len() + ENTRY_OVERHEAD <= MAX_LAYER_WHITEOUT_BYTES {
                whiteout_bytes += dir.len() + ENTRY_OVERHEAD;
                facts.opaque_dirs.push(dir);
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let hidden = if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") };
            // `.wh.` with no name deletes nothing
            if !hidden.is_empty()
                && !hidden.ends_with('/')
                && could_hide_interest(&hidden)
                && whiteout_bytes + hidden.len() + ENTRY_OVERHEAD <= MAX_LAYER_WHITEOUT_BYTES
            {
                whiteout_bytes += hidden.len() + ENTRY_OVERHEAD;
                facts.whiteouts.push(hidden);
            }
            continue;
        }
        // a regular file, or a GNU sparse one (the reader fills its holes)
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_gnu_sparse()) {
            continue;
        }
        let Some(kind) = kind_of(&path) else { continue };
        let size = entry.size();
        let file = match kind {
            Kind::PythonMetadata => {
                // only the head is read (and counted); a long description follows the headers
                let mut head = Vec::new();
                (&mut entry).take(PYTHON_METADATA_HEAD).read_to_end(&mut head).map_err(unreadable)?;
                // only the headers are kept (up to the blank line): only they count
                let headers = head.windows(2).position(|w| w == b"\n\n").unwrap_or(head.len());
                spend(&mut database_bytes, headers as u64, MAX_LAYER_DATABASE_BYTES)?;
                let mut list: Vec<Package> =
                    parse_python_metadata(&String::from_utf8_lossy(&head[..headers])).into_iter().collect();
                for p in &mut list {
                    p.distribution_managed = is_distribution_python(&path);
                }
                FileFacts::Packages(list)
            }
            Kind::RpmSqlite | Kind::RpmBdb => {
                // read from the scratch disk, not memory: a budget of its own
                if size > MAX_RPM_DATABASE_FILE {
                    return Err(InventoryError::TooLarge { path, size, limit: MAX_RPM_DATABASE_FILE });
                }
                spend(&mut rpm_bytes, size, MAX_LAYER_RPM_BYTES)?;
                FileFacts::Packages(read_rpm_database(&mut entry, &path, matches!(kind, Kind::RpmSqlite))?)
            }
            Kind::OsRelease | Kind::DpkgStatus | Kind::ApkInstalled => {
                if size > MAX_DATABASE_FILE {
                    return Err(InventoryError::TooLarge { path, size, limit: MAX_DATABASE_FILE });
                }
                // a sparse entry's holes expand beyond its stored size: the read is bounded too
                let mut bytes = Vec::with_capacity(size as usize);
                (&mut entry).take(MAX_DATABASE_FILE + 1).read_to_end(&mut bytes).map_err(unreadable)?;
                let read = bytes.len() as u64;
                if read > MAX_DATABASE_FILE {
                    return Err(InventoryError::TooLarge { path, size: read, limit: MAX_DATABASE_FILE });
                }
                spend(&mut database_bytes, read, MAX_LAYER_DATABASE_BYTES)?;
                let text = String::from_utf8_lossy(&bytes);
                match kind {
                    Kind::OsRelease => FileFacts::Os(parse_os_release(&text)),
                    Kind::DpkgStatus => FileFacts::Packages(parse_dpkg_status(&text)),
                    _ => FileFacts::Packages(parse_apk_installed(&text)),
                }
            }
        };
        // every kept path counts as text too: a million empty `*.egg-info` files list no
        // package but would still be a million stored paths
        text += path.len() + ENTRY_OVERHEAD;
        if let FileFacts::Packages(list) = &file {
            packages += list.len();
            if packages > MAX_LAYER_PACKAGES {
                return Err(InventoryError::TooMuch {
                    what: format!("more than {MAX_LAYER_PACKAGES} packages"),
                    limit: format!("{MAX_LAYER_PACKAGES} packages"),
                });
            }
            text += list.iter().map(Package::text_len).sum::<usize>();
        }
        if text > MAX_LAYER_PACKAGE_TEXT {
            return Err(InventoryError::TooMuch {
                what: format!("{text} bytes of package names, versions and database paths"),
                limit: format!("{MAX_LAYER_PACKAGE_TEXT} bytes"),
            });
        }
        facts.files.insert(path, file);
    }
    facts.whiteouts.sort();
    facts.whiteouts.dedup();
    facts.opaque_dirs.sort();
    facts.opaque_dirs.dedup();
    Ok(facts)
}

/// Adds `bytes` to a layer's `spent` database bytes, refusing the layer past `limit`.
fn spend(spent: &mut u64, bytes: u64, limit: u64) -> Result<(), InventoryError> {
    *spent += bytes;
    if *spent > limit {
        return Err(InventoryError::TooMuch {
            what: format!("more than {} bytes", *spent),
            limit: format!("{limit} bytes"),
        });
    }
    Ok(())
}

/// The name prefix of an rpm database's scratch copy.
const RPM_SCRATCH_PREFIX: &str = "berth-rpmdb-";

/// Copies an rpm database out of the layer to a scratch file (deleted when read) and reads it.
fn read_rpm_database(entry: &mut impl Read, path: &str, sqlite: bool) -> Result<Vec<Package>, InventoryError> {
    let scratch = |e: std::io::Error| InventoryError::Scratch { path: path.to_string(), why: e.to_string() };
    // copies left by a killed process are removed by the next reader
    super::sweep_stale(&std::env::temp_dir(), RPM_SCRATCH_PREFIX);
    let mut file = tempfile::Builder::new().prefix(RPM_SCRATCH_PREFIX).tempfile().map_err(scratch)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        // a read error is the layer's; a write error is the scratch disk's
        let n = entry.read(&mut buf).map_err(|e| InventoryError::Unreadable(e.to_string()))?;
        if n == 0 {
            break;
        }
        // a sparse entry's holes expand beyond its stored size
        copied += n as u64;
        if copied > MAX_RPM_DATABASE_FILE {
            return Err(InventoryError::TooLarge {
                path: path.to_string(),
                size: copied,
                limit: MAX_RPM_DATABASE_FILE,
            });
        }
        std::io::Write::write_all(&mut file, &buf[..n]).map_err(scratch)?;
    }
    std::io::Write::flush(&mut file).map_err(scratch)?;
    let read = if sqlite { rpmdb::read_sqlite(file.path()) } else { rpmdb::read_bdb(file.path()) };
    read.map_err(|e| match e {
        RpmDbError::Io(e) => scratch(e),
        RpmDbError::Invalid(why) => InventoryError::Damaged { path: path.to_string(), why },
    })
}

/// Applies layers bottom-up (first = base) into one inventory.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a LayerFacts>) -> Inventory {
    let mut files: BTreeMap<String, FileFacts> = BTreeMap::new();
    for layer in layers {
        // each deletion removes a range of the sorted paths: `dir/` up to `dir0` (`0` follows
        // `/`), so many deletions over many files cost a lookup each, not a pass over all
        let remove_under = |files: &mut BTreeMap<String, FileFacts>, dir: &str| {
            let doomed: Vec<String> =
                files.range(format!("{dir}/")..format!("{dir}0")).map(|(path, _)| path.clone()).collect();
            for path in doomed {
                files.remove(&path);
            }
        };
        for dir in &layer.opaque_dirs {
            if dir.is_empty() {
                files.clear();
            } else {
                remove_under(&mut files, dir);
            }
        }
        for hidden in &layer.whiteouts {
            files.remove(hidden);
            remove_under(&mut files, hidden);
        }
        files.extend(layer.files.iter().map(|(p, f)| (p.clone(), f.clone())));
    }
    let os = OS_RELEASE.iter().find_map(|p| match files.get(*p) {
        Some(FileFacts::Os(os)) => Some(os.clone()),
        _ => None,
    });
    let mut packages: Vec<Package> = files
        .into_values()
        .filter_map(|f| match f {
            FileFacts::Packages(p) => Some(p),
            FileFacts::Os(_) => None,
        })
        .flatten()
        .collect();
    packages.sort();
    packages.dedup();
    Inventory { os, packages }
}

/// `KEY=value` lines, values optionally quoted.
pub fn parse_os_release(text: &str) -> Os {
    let mut os = Os { id: String::new(), version_id: String::new() };
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_string();
        match key.trim() {
            "ID" => os.id = value.to_ascii_lowercase(),
            "VERSION_ID" => os.version_id = value,
            _ => {}
        }
    }
    os
}

/// Blank-line-separated stanzas of `Field: value` lines (continuations start with a space).
fn stanzas(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n").map(|stanza| {
        stanza
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect::<Vec<_>>()
    })
}

fn field<'a>(stanza: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    stanza.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).filter(|v| !v.is_empty())
}

/// dpkg's `status` (or one `status.d` file): installed packages with their source package.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let text = text.replace("\r\n", "\n");
    stanzas(&text)
        .filter_map(|s| {
            let name = field(&s, "Package")?;
            let version = field(&s, "Version")?;
            // `Status: install ok installed`; distroless entries have no Status and are installed
            if let Some(status) = field(&s, "Status") {
                if status.split_whitespace().nth(2) != Some("installed") {
                    return None;
                }
            }
            // `Source: name` or `Source: name (version)` (a binNMU's source version differs)
            let (source, source_version) = match field(&s, "Source") {
                Some(src) => match src.split_once('(') {
                    Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
                    None => (src, version),
                },
                None => (name, version),
            };
            Some(Package {
                ecosystem: Ecosystem::Dpkg,
                name: name.to_string(),
                version: version.to_string(),
                source: source.to_string(),
                source_version: source_version.to_string(),
                module: String::new(),
                distribution_managed: false,
            })
        })
        // one past the limit is enough to refuse the layer
        .take(MAX_LAYER_PACKAGES + 1)
        .collect()
}

/// A Python distribution's core metadata (RFC 822 headers): `Name:` and `Version:`.
pub fn parse_python_metadata(text: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break; // the headers end; the description follows
        }
        match line.split_once(':') {
            Some(("Name", v)) => name = Some(v.trim()),
            Some(("Version", v)) => version = Some(v.trim()),
            _ => {}
        }
    }
    let (name, version) = (name.filter(|n| !n.is_empty())?, version.filter(|v| !v.is_empty())?);
    Some(Package {
        ecosystem: Ecosystem::Pypi,
        name: name.to_string(),
        version: version.to_string(),
        source: name.to_string(),
        source_version: version.to_string(),
        module: String::new(),
        distribution_managed: false,
    })
}

/// apk's `installed`: `P:` name, `V:` version, `o:` origin (the source package).
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|record| {
            let value =
                |key: &str| record.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).filter(|v| !v.is_empty());
            let (name, version) = (value("P:")?, value("V:")?);
            Some(Package {
                ecosystem: Ecosystem::Apk,
                name: name.to_string(),
                version: version.to_string(),
                source: value("o:").unwrap_or(name).to_string(),
                source_version: version.to_string(),
                module: String::new(),
                distribution_managed: false,
            })
        })
        .take(MAX_LAYER_PACKAGES + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    const STATUS: &str = "Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\nSource: openssl\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1+b1\nSource: zlib (1:1.2.13.dfsg-1)\n";

    #[test]
    fn dpkg_status_keeps_installed_packages_with_their_source() {
        let packages = parse_dpkg_status(STATUS);
        assert_eq!(packages.len(), 2);
        assert_eq!((packages[0].name.as_str(), packages[0].source.as_str()), ("libssl3", "openssl"));
        assert_eq!(packages[0].source_version, "3.0.11-1~deb12u2");
        assert_eq!((packages[1].source.as_str(), packages[1].source_version.as_str()), ("zlib", "1:1.2.13.dfsg-1"));
        assert_eq!(packages[1].version, "1:1.2.13.dfsg-1+b1");
    }

    #[test]
    fn apk_installed_names_origins() {
        let packages =
            parse_apk_installed("C:Q1x\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\nP:musl\nV:1.2.4-r2\n");
        assert_eq!(packages.len(), 2);
        assert_eq!((packages[0].source.as_str(), packages[0].version.as_str()), ("openssl", "3.1.4-r5"));
        assert_eq!(packages[1].source, "musl");
    }

    #[test]
    fn layers_merge_bottom_up_with_whiteouts_and_opaque_dirs() {
        let base = read_layer(
            &tar(&[
                ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
                ("var/lib/dpkg/status", STATUS.as_bytes()),
                ("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0+deb12u1\n"),
                ("var/lib/dpkg/status.d/tzdata.md5sums", b"abc  usr/share/zoneinfo\n"),
                ("usr/bin/big", &[0u8; 4096]),
            ])[..],
        )
        .unwrap();
        assert_eq!(base.files.len(), 3);
        let inv = merge([&base]);
        assert_eq!(inv.os, Some(Os { id: "debian".into(), version_id: "12".into() }));
        assert_eq!(inv.packages.len(), 3);

        // a later layer deletes the status.d entry and replaces the whole status file
        let top = read_layer(
            &tar(&[
                ("var/lib/dpkg/status.d/.wh.tzdata", b""),
                ("usr/share/.wh.doc", b""),
                (
                    "var/lib/dpkg/status",
                    b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.13-1~deb12u1\nSource: openssl\n",
                ),
            ])[..],
        )
        .unwrap();
        assert_eq!(
            top.whiteouts,
            vec!["usr/share/doc".to_string(), "var/lib/dpkg/status.d/tzdata".to_string()],
            "whiteouts outside site-packages are kept (any could hide a Python environment), sorted"
        );
        let inv = merge([&base, &top]);
        let names: Vec<_> = inv.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(names, [("libssl3", "3.0.13-1~deb12u1")]);

        // an opaque var/lib hides everything below it from the lower layers, but not its own files
        let opaque = read_layer(
            &tar(&[("var/lib/.wh..wh..opq", b""), ("var/lib/dpkg/status.d/x", b"Package: x\nVersion: 1\n")])[..],
        )
        .unwrap();
        let inv = merge([&base, &opaque]);
        assert_eq!(inv.packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["x"]);
        assert!(inv.os.is_some(), "etc is untouched");
    }

    #[test]
    fn many_database_files_or_packages_in_one_layer_are_refused() {
        let stanzas = "Package: a\nVersion: 1\n\n".repeat(MAX_LAYER_PACKAGES / 2 + 1);
        let files: Vec<(String, Vec<u8>)> =
            (0..2).map(|i| (format!("var/lib/dpkg/status.d/p{i}"), stanzas.clone().into_bytes())).collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        let err = read_layer(&tar(&refs)[..]).unwrap_err();
        assert!(matches!(err, InventoryError::TooMuch { .. }), "{err}");
        assert_eq!(
            parse_dpkg_status(&"Package: a\nVersion: 1\n\n".repeat(MAX_LAYER_PACKAGES + 50)).len(),
            MAX_LAYER_PACKAGES + 1
        );
    }

    #[test]
    fn python_distributions_are_found_anywhere_and_whiteouts_of_them_apply() {
        let metadata = b"Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\nSummary: x\n\nName: not-a-header\n";
        let base = read_layer(
            &tar(&[
                ("usr/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA", metadata),
                ("usr/lib/python3.11/site-packages/requests/__init__.py", b"print()"),
                (
                    "opt/venv/lib/python3.12/site-packages/urllib3-1.26.5.dist-info/METADATA",
                    b"Name: urllib3\nVersion: 1.26.5\n",
                ),
                ("usr/lib/python3/dist-packages/six.egg-info", b"Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n"),
                ("usr/lib/python3/dist-packages/broken-1.0.dist-info/METADATA", b"Name: broken\n"),
            ])[..],
        )
        .unwrap();
        let inv = merge([&base]);
        let found: Vec<_> = inv.packages.iter().map(|p| (p.name.as_str(), p.version.as_str(), p.ecosystem)).collect();
        assert_eq!(
            found,
            [
                ("Requests", "2.31.0", Ecosystem::Pypi),
                ("six", "1.16.0", Ecosystem::Pypi),
                ("urllib3", "1.26.5", Ecosystem::Pypi)
            ]
        );
        assert_eq!(inv.packages[0].advisory_key(), ("requests".to_string(), "2.31.0"));
        // the OS's own Python packages are listed but left to the OS's advisories
        assert!(inv.packages[0].distribution_managed, "usr/lib/python3.11 is the distribution's");
        assert!(!inv.packages[2].distribution_managed, "a venv is pip's");
        assert_eq!(python_name("Foo__Bar.baz"), "foo-bar-baz");
        // pip uninstall deletes the dist-info; removing a whole venv deletes what it held;
        // deleting one module file inside site-packages is not kept at all
        let top = read_layer(
            &tar(&[
                ("usr/lib/python3.11/site-packages/.wh.requests-2.31.0.dist-info", b""),
                ("opt/.wh.venv", b""),
                ("usr/lib/python3/dist-packages/six/.wh.moves.py", b""),
            ])[..],
        )
        .unwrap();
        assert_eq!(top.whiteouts.len(), 2, "{:?}", top.whiteouts);
        let inv = merge([&base, &top]);
        assert_eq!(inv.packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["six"]);
    }

    #[test]
    fn a_layer_of_much_package_text_is_refused_before_it_is_stored() {
        // each file's head is small, but together they are more text than facts may hold
        let name = "n".repeat(60 * 1024);
        let files: Vec<(String, Vec<u8>)> = (0..300)
            .map(|i| (format!("p/x{i}.dist-info/METADATA"), format!("Name: {name}\nVersion: 1\n").into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        let err = read_layer(&tar(&refs)[..]).unwrap_err();
        assert!(err.to_string().contains("package names"), "{err}");
    }

    #[test]
    fn a_sparse_database_entry_is_read() {
        // GNU tar (and the tar crate) store a file with holes as a sparse entry
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        std::fs::write(&path, b"Package: zlib1g\nStatus: install ok installed\nVersion: 1\nSource: zlib\n\n").unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4 * 1024 * 1024).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_path_with_name(&path, "var/lib/dpkg/status").unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let first = archive.entries().unwrap().next().unwrap().unwrap();
        assert!(first.header().entry_type().is_gnu_sparse(), "the fixture is sparse");
        drop(first);
        let inv = merge([&read_layer(&bytes[..]).unwrap()]);
        assert_eq!(inv.packages.iter().map(|p| p.source.as_str()).collect::<Vec<_>>(), ["zlib"]);
        // holes that expand past what a database may hold are refused, not read into memory
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(MAX_DATABASE_FILE + 4096).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_path_with_name(&path, "var/lib/dpkg/status").unwrap();
        let bytes = builder.into_inner().unwrap();
        assert!(bytes.len() < 64 * 1024, "stored sparse");
        let err = read_layer(&bytes[..]).unwrap_err();
        assert!(matches!(err, InventoryError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn gzip_layers_are_read_and_zstd_is_refused_clearly() {
        let plain = tar(&[
            ("lib/apk/db/installed", b"P:busybox\nV:1.36.1-r15\no:busybox\n"),
            ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let facts = read_layer(&gz.finish().unwrap()[..]).unwrap();
        let inv = merge([&facts]);
        assert_eq!(inv.packages[0].ecosystem, Ecosystem::Apk);
        assert_eq!(inv.os.unwrap().version_id, "3.19.1");
        let err = read_layer(&[0x28u8, 0xb5, 0x2f, 0xfd, 0, 0][..]).unwrap_err();
        assert!(matches!(err, InventoryError::Unsupported(_)), "{err}");
    }
}
