//! A read-only BoltDB reader (the file format of Go's `bbolt`, which Trivy's vulnerability
//! database uses). It reads one page at a time with positioned reads, so a database of any size
//! is walked in bounded memory, and it trusts nothing in the file: every page id, offset and
//! length is checked against the file before it is used.
//!
//! Format: pages of the size the meta page names; pages 0 and 1 are meta pages (the valid one
//! with the higher transaction id wins); a bucket is a B+tree of branch and leaf pages, or an
//! "inline" leaf page stored inside its parent's value.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Why a BoltDB file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    /// Reading the file failed.
    #[error("reading the database file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a BoltDB file, or is damaged.
    #[error("not a valid BoltDB file: {0}")]
    Corrupt(String),
}

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
/// Offset of the checksum inside the meta structure (after magic, version, page size, flags,
/// root bucket, freelist, high-water page id and transaction id).
const META_CHECKSUM_AT: usize = 56;
/// The largest page (with its overflow) read into memory: a value bigger than this is refused.
const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;
/// B+trees deeper than this are refused (a loop in a damaged file would be endless otherwise).
const MAX_DEPTH: usize = 64;

fn corrupt(why: impl Into<String>) -> BoltError {
    BoltError::Corrupt(why.into())
}

/// An open database file.
pub struct Bolt {
    file: File,
    len: u64,
    page_size: u64,
    root: Bucket,
    /// pages [`Bolt::for_each`] has walked: each page of a real file belongs to one place in
    /// one tree, so a page reached twice (a loop, or subtrees shared to multiply the work) is
    /// damage, refused instead of walked again
    walked: RefCell<HashSet<u64>>,
}

/// Where a bucket's B+tree starts: a page of the file, or an inline leaf page held in memory.
#[derive(Debug, Clone)]
pub enum Bucket {
    /// a tree rooted at this page id
    Page(u64),
    /// an inline bucket's leaf page bytes
    Inline(Arc<[u8]>),
}

/// One key's content: a value, or a nested bucket.
pub enum Entry<'a> {
    /// a plain value
    Value(&'a [u8]),
    /// a nested bucket
    Bucket(Bucket),
}

/// What [`Bolt::for_each`] calls with each key and its content.
pub type Visit<'f, E> = dyn FnMut(&[u8], Entry<'_>) -> Result<(), E> + 'f;

/// A page read into memory with its parsed header.
struct Page {
    bytes: Arc<[u8]>,
    flags: u16,
    count: usize,
}

impl Page {
    fn parse(bytes: Arc<[u8]>) -> Result<Page, BoltError> {
        if bytes.len() < PAGE_HEADER {
            return Err(corrupt("a page shorter than its header"));
        }
        let flags = u16::from_le_bytes([bytes[8], bytes[9]]);
        let count = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
        if PAGE_HEADER + count * ELEMENT > bytes.len() {
            return Err(corrupt("a page's elements run past its end"));
        }
        Ok(Page { bytes, flags, count })
    }

    fn element(&self, i: usize) -> [u32; 4] {
        let at = PAGE_HEADER + i * ELEMENT;
        let word = |k: usize| u32_at(&self.bytes, at + 4 * k);
        [word(0), word(1), word(2), word(3)]
    }

    /// `len` bytes at `pos` after element `i`'s own position.
    fn slice(&self, i: usize, pos: u32, len: u64) -> Result<&[u8], BoltError> {
        let start = (PAGE_HEADER + i * ELEMENT) as u64 + u64::from(pos);
        let end = start.checked_add(len).filter(|e| *e <= self.bytes.len() as u64);
        match end {
            Some(end) => Ok(&self.bytes[start as usize..end as usize]),
            None => Err(corrupt("an element runs past its page")),
        }
    }

    /// A branch element's key and child page.
    fn branch(&self, i: usize) -> Result<(&[u8], u64), BoltError> {
        let at = PAGE_HEADER + i * ELEMENT;
        let [pos, ksize, _, _] = self.element(i);
        let child = u64_at(&self.bytes, at + 8);
        Ok((self.slice(i, pos, u64::from(ksize))?, child))
    }

    /// A leaf element's flags, key and value.
    fn leaf(&self, i: usize) -> Result<(u32, &[u8], &[u8]), BoltError> {
        let [flags, pos, ksize, vsize] = self.element(i);
        let both = self.slice(i, pos, u64::from(ksize) + u64::from(vsize))?;
        let (key, value) = both.split_at(ksize as usize);
        Ok((flags, key, value))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// FNV-1a, 64 bits: the meta page's checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A meta page's (page size, root page, transaction id), if the bytes at `at` hold a valid one.
fn meta(file: &File, len: u64, at: u64) -> Option<(u64, u64, u64)> {
    let mut buf = [0u8; PAGE_HEADER + 64];
    if at + buf.len() as u64 > len || file.read_exact_at(&mut buf, at).is_err() {
        return None;
    }
    let m = &buf[PAGE_HEADER..];
    let valid = u32_at(m, 0) == MAGIC
        && u32_at(m, 4) == VERSION
        && fnv1a(&m[..META_CHECKSUM_AT]) == u64_at(m, META_CHECKSUM_AT);
    let page_size = u64::from(u32_at(m, 8));
    (valid && (512..=1 << 20).contains(&page_size)).then(|| (page_size, u64_at(m, 16), u64_at(m, 48)))
}

impl Bolt {
    /// Opens a database file, choosing the newest valid meta page.
    pub fn open(path: &Path) -> Result<Bolt, BoltError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let first = meta(&file, len, 0);
        // the second meta page sits one page in; its size is the first's, or a common one
        let sizes = first.map_or(vec![4096, 8192, 16384, 65536, 1024, 2048], |(size, _, _)| vec![size]);
        let second = sizes.into_iter().find_map(|size| meta(&file, len, size).filter(|(s, _, _)| *s == size));
        let (page_size, root, _) = match (first, second) {
            (Some(a), Some(b)) => {
                if b.2 > a.2 {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err(corrupt("no valid meta page (not a BoltDB file, or a newer format)")),
        };
        Ok(Bolt { file, len, page_size, root: Bucket::Page(root), walked: RefCell::default() })
    }

    /// The root bucket, whose keys are the top-level buckets.
    pub fn root(&self) -> Bucket {
        self.root.clone()
    }

    fn page(&self, id: u64) -> Result<Page, BoltError> {
        let at = id
            .checked_mul(self.page_size)
            .filter(|at| at.checked_add(self.page_size).is_some_and(|end| end <= self.len));
        let at = at.ok_or_else(|| corrupt(format!("page {id} lies past the end of the file")))?;
        let mut header = [0u8; PAGE_HEADER];
        self.file.read_exact_at(&mut header, at)?;
        if u64_at(&header, 0) != id {
            return Err(corrupt(format!("page {id} carries another page's id")));
        }
        let overflow = u64::from(u32_at(&header, 12));
        let size = (overflow + 1).saturating_mul(self.page_size);
        if size > MAX_PAGE_BYTES || at.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(corrupt(format!("page {id} is too large or runs past the end of the file")));
        }
        let mut bytes = vec![0u8; size as usize];
        self.file.read_exact_at(&mut bytes, at)?;
        Page::parse(bytes.into())
    }

    fn root_page(&self, bucket: &Bucket) -> Result<Page, BoltError> {
        match bucket {
            Bucket::Page(id) => self.page(*id),
            Bucket::Inline(bytes) => Page::parse(bytes.clone()),
        }
    }

    /// Calls `f` with every key of `bucket` and its content, in key order. Each page of the
    /// file is walked at most once per open database: walking a bucket twice is refused.
    pub fn for_each<E: From<BoltError>>(&self, bucket: &Bucket, f: &mut Visit<'_, E>) -> Result<(), E> {
        if let Bucket::Page(id) = bucket {
            self.mark_walked(*id)?;
        }
        self.walk(self.root_page(bucket)?, 0, f)
    }

    fn mark_walked(&self, id: u64) -> Result<(), BoltError> {
        if self.walked.borrow_mut().insert(id) {
            Ok(())
        } else {
            Err(corrupt(format!("page {id} is reached twice (a loop or a shared subtree)")))
        }
    }

    fn walk<E: From<BoltError>>(&self, page: Page, depth: usize, f: &mut Visit<'_, E>) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Err(corrupt("a bucket's tree is deeper than any real one").into());
        }
        match page.flags {
            BRANCH_PAGE => {
                // the page goes before its children are walked: one page in memory per level
                let children =
                    (0..page.count).map(|i| page.branch(i).map(|(_, c)| c)).collect::<Result<Vec<_>, _>>()?;
                drop(page);
                for child in children {
                    self.mark_walked(child)?;
                    self.walk(self.page(child)?, depth + 1, f)?;
                }
            }
            LEAF_PAGE => {
                for i in 0..page.count {
                    let (flags, key, value) = page.leaf(i)?;
                    f(key, entry(flags, value)?)?;
                }
            }
            other => return Err(corrupt(format!("a bucket page has flags {other:#x}")).into()),
        }
        Ok(())
    }

    /// The content of `key` in `bucket`, found by descending the tree.
    fn find(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<(u32, Vec<u8>)>, BoltError> {
        let mut page = self.root_page(bucket)?;
        for _ in 0..=MAX_DEPTH {
            match page.flags {
                BRANCH_PAGE => {
                    // the last child whose first key is not after `key`
                    let mut child = None;
                    for i in 0..page.count {
                        let (first, id) = page.branch(i)?;
                        if first > key && child.is_some() {
                            break;
                        }
                        child = Some(id);
                    }
                    let Some(id) = child else { return Ok(None) };
                    page = self.page(id)?;
                }
                LEAF_PAGE => {
                    for i in 0..page.count {
                        let (flags, k, v) = page.leaf(i)?;
                        if k == key {
                            return Ok(Some((flags, v.to_vec())));
                        }
                    }
                    return Ok(None);
                }
                other => return Err(corrupt(format!("a bucket page has flags {other:#x}"))),
            }
        }
        Err(corrupt("a bucket's tree is deeper than any real one"))
    }

    /// The nested bucket `name` of `bucket`, if there is one.
    pub fn bucket(&self, bucket: &Bucket, name: &[u8]) -> Result<Option<Bucket>, BoltError> {
        match self.find(bucket, name)? {
            Some((flags, value)) if flags & BUCKET_LEAF != 0 => match entry(flags, &value)? {
                Entry::Bucket(b) => Ok(Some(b)),
                Entry::Value(_) => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// The value of `key` in `bucket` (not a nested bucket).
    pub fn get(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BoltError> {
        Ok(self.find(bucket, key)?.filter(|(flags, _)| flags & BUCKET_LEAF == 0).map(|(_, v)| v))
    }
}

/// A leaf element's content: a nested bucket's header (and inline page), or a value.
fn entry(flags: u32, value: &[u8]) -> Result<Entry<'_>, BoltError> {
    if flags & BUCKET_LEAF == 0 {
        return Ok(Entry::Value(value));
    }
    if value.len() < 16 {
        return Err(corrupt("a bucket header is shorter than 16 bytes"));
    }
    let root = u64_at(value, 0);
    Ok(Entry::Bucket(if root == 0 { Bucket::Inline(value[16..].to_vec().into()) } else { Bucket::Page(root) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbolt_rs::{BucketRwApi, DbRwAPI, TxRwRefApi};

    /// Every key of `bucket` with its value, or `None` for a nested bucket.
    fn all(bolt: &Bolt, bucket: &Bucket) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        bolt.for_each(bucket, &mut |k, e| -> Result<(), BoltError> {
            out.push((
                k.to_vec(),
                match e {
                    Entry::Value(v) => Some(v.to_vec()),
                    Entry::Bucket(_) => None,
                },
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn reads_what_go_compatible_bbolt_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let big = vec![7u8; 20_000]; // overflows its page
        {
            let mut db = bbolt_rs::Bolt::open(&path).unwrap();
            db.update(|mut tx| {
                let mut many = tx.create_bucket("many")?;
                for i in 0..5000u32 {
                    many.put(format!("key-{i:05}"), format!("value-{i}"))?;
                }
                many.put("big", &big)?;
                let mut nested = many.create_bucket("nested")?; // small: stored inline
                nested.put("a", "1")?;
                let mut small = tx.create_bucket("small")?;
                small.put("only", "one")?;
                Ok(())
            })
            .unwrap();
        }
        let bolt = Bolt::open(&path).unwrap();
        let root = bolt.root();
        let top = all(&bolt, &root);
        assert_eq!(
            top.iter().map(|(k, v)| (k.as_slice(), v.is_none())).collect::<Vec<_>>(),
            vec![(&b"many"[..], true), (&b"small"[..], true)]
        );
        let many = bolt.bucket(&root, b"many").unwrap().unwrap();
        assert!(matches!(many, Bucket::Page(_)), "a big bucket has its own pages");
        let entries = all(&bolt, &many);
        assert_eq!(entries.len(), 5002);
        assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        for i in [0u32, 1, 2500, 4999] {
            let key = format!("key-{i:05}");
            assert_eq!(bolt.get(&many, key.as_bytes()).unwrap(), Some(format!("value-{i}").into_bytes()), "{key}");
        }
        assert_eq!(bolt.get(&many, b"key-99999").unwrap(), None);
        assert_eq!(bolt.get(&many, b"a").unwrap(), None, "before the first key");
        assert_eq!(bolt.get(&many, b"big").unwrap(), Some(big));
        let nested = bolt.bucket(&many, b"nested").unwrap().unwrap();
        assert!(matches!(nested, Bucket::Inline(_)));
        assert_eq!(bolt.get(&nested, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(bolt.get(&many, b"nested").unwrap(), None, "a bucket is not a value");
        assert!(bolt.bucket(&many, b"key-00001").unwrap().is_none(), "a value is not a bucket");
        let small = bolt.bucket(&root, b"small").unwrap().unwrap();
        assert_eq!(all(&bolt, &small), vec![(b"only".to_vec(), Some(b"one".to_vec()))]);
        // the magic Go's bbolt writes (the `compat` feature), so the same file is what Trivy ships
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[16..20], &[0xED, 0xDA, 0x0C, 0xED]);
    }

    #[test]
    fn a_page_reached_twice_is_refused_not_walked_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loop.db");
        let page_size = 4096usize;
        let mut file = vec![0u8; page_size * 4];
        // two meta pages naming root page 2
        for (i, txid) in [(0usize, 1u64), (1, 2)] {
            let at = i * page_size;
            file[at..at + 8].copy_from_slice(&(i as u64).to_le_bytes());
            file[at + 8..at + 10].copy_from_slice(&4u16.to_le_bytes());
            let m = at + PAGE_HEADER;
            file[m..m + 4].copy_from_slice(&MAGIC.to_le_bytes());
            file[m + 4..m + 8].copy_from_slice(&VERSION.to_le_bytes());
            file[m + 8..m + 12].copy_from_slice(&(page_size as u32).to_le_bytes());
            file[m + 16..m + 24].copy_from_slice(&2u64.to_le_bytes());
            file[m + 48..m + 56].copy_from_slice(&txid.to_le_bytes());
            let sum = fnv1a(&file[m..m + META_CHECKSUM_AT]);
            file[m + META_CHECKSUM_AT..m + META_CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
        }
        // page 2: a branch whose 100 children are all page 3, a leaf of one key
        let at = 2 * page_size;
        file[at..at + 8].copy_from_slice(&2u64.to_le_bytes());
        file[at + 8..at + 10].copy_from_slice(&BRANCH_PAGE.to_le_bytes());
        file[at + 10..at + 12].copy_from_slice(&100u16.to_le_bytes());
        for i in 0..100 {
            let e = at + PAGE_HEADER + i * ELEMENT;
            file[e + 8..e + 16].copy_from_slice(&3u64.to_le_bytes());
        }
        let at = 3 * page_size;
        file[at..at + 8].copy_from_slice(&3u64.to_le_bytes());
        file[at + 8..at + 10].copy_from_slice(&LEAF_PAGE.to_le_bytes());
        file[at + 10..at + 12].copy_from_slice(&1u16.to_le_bytes());
        let e = at + PAGE_HEADER;
        file[e + 4..e + 8].copy_from_slice(&16u32.to_le_bytes()); // key right after the element
        file[e + 8..e + 12].copy_from_slice(&1u32.to_le_bytes());
        file[e + 32] = b'k';
        std::fs::write(&path, &file).unwrap();
        let bolt = Bolt::open(&path).unwrap();
        let mut seen = 0;
        let walked = bolt.for_each(&bolt.root(), &mut |_, _| -> Result<(), BoltError> {
            seen += 1;
            Ok(())
        });
        assert!(matches!(walked, Err(BoltError::Corrupt(ref why)) if why.contains("twice")), "{:?}", walked.err());
        assert_eq!(seen, 1, "the shared leaf is walked once");
        assert!(
            bolt.for_each(&bolt.root(), &mut |_, _| -> Result<(), BoltError> { Ok(()) }).is_err(),
            "no second walk"
        );
    }

    #[test]
    fn garbage_is_refused_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        assert!(matches!(Bolt::open(&path), Err(BoltError::Corrupt(_))));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(Bolt::open(&path), Err(BoltError::Corrupt(_))));
    }
}
