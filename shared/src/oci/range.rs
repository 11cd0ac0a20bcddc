//! Byte ranges: the `Range` header of blob reads and the `Content-Range` of chunked uploads.

/// Why a range header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    /// The header does not parse.
    #[error("range {0:?} is malformed")]
    Malformed(String),
    /// The range lies outside the content.
    #[error("range {0:?} cannot be satisfied for {1} bytes of content")]
    Unsatisfiable(String, u64),
}

/// An inclusive byte range `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// first byte offset
    pub start: u64,
    /// last byte offset, inclusive
    pub end: u64,
}

impl ByteRange {
    /// How many bytes the range covers (saturating: a parsed range never reaches `u64::MAX`).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Never true: a parsed range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses an RFC 9110 `Range: bytes=a-b | a- | -n` (single range) against content of `size` bytes.
    pub fn parse_request(header: &str, size: u64) -> Result<ByteRange, RangeError> {
        let malformed = || RangeError::Malformed(header.chars().take(100).collect());
        let spec = header.trim().strip_prefix("bytes=").ok_or_else(malformed)?;
        if spec.contains(',') {
            return Err(malformed());
        }
        let (a, b) = spec.split_once('-').ok_or_else(malformed)?;
        let unsatisfiable = || RangeError::Unsatisfiable(header.chars().take(100).collect(), size);
        let range = match (a.trim(), b.trim()) {
            ("", "") => return Err(malformed()),
            ("", suffix) => {
                let n: u64 = suffix.parse().map_err(|_| malformed())?;
                if n == 0 || size == 0 {
                    return Err(unsatisfiable());
                }
                ByteRange { start: size.saturating_sub(n), end: size - 1 }
            }
            (start, "") => {
                let start: u64 = start.parse().map_err(|_| malformed())?;
                if start >= size {
                    return Err(unsatisfiable());
                }
                ByteRange { start, end: size - 1 }
            }
            (start, end) => {
                let start: u64 = start.parse().map_err(|_| malformed())?;
                let end: u64 = end.parse().map_err(|_| malformed())?;
                if start > end {
                    return Err(malformed());
                }
                if start >= size {
                    return Err(unsatisfiable());
                }
                ByteRange { start, end: end.min(size - 1) }
            }
        };
        Ok(range)
    }

    /// Parses a chunk's `Content-Range: <start>-<end>` (the OCI form, inclusive; a `bytes ` or
    /// `bytes=` prefix and a `/total` suffix are tolerated).
    pub fn parse_content_range(header: &str) -> Result<ByteRange, RangeError> {
        let malformed = || RangeError::Malformed(header.chars().take(100).collect());
        let s = header.trim();
        let s = s.strip_prefix("bytes=").or_else(|| s.strip_prefix("bytes ")).unwrap_or(s);
        let s = s.split_once('/').map_or(s, |(r, _)| r);
        let (a, b) = s.split_once('-').ok_or_else(malformed)?;
        let start: u64 = a.trim().parse().map_err(|_| malformed())?;
        let end: u64 = b.trim().parse().map_err(|_| malformed())?;
        // `end - start + 1` must be a length: `0-18446744073709551615` would wrap to 0 bytes
        if end < start || end == u64::MAX {
            return Err(malformed());
        }
        Ok(ByteRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_ranges() {
        assert_eq!(ByteRange::parse_request("bytes=10-19", 100), Ok(ByteRange { start: 10, end: 19 }));
        assert_eq!(ByteRange::parse_request("bytes=90-", 100), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(ByteRange::parse_request("bytes=-5", 100), Ok(ByteRange { start: 95, end: 99 }));
        assert_eq!(ByteRange::parse_request("bytes=50-500", 100), Ok(ByteRange { start: 50, end: 99 }));
        assert!(matches!(ByteRange::parse_request("bytes=100-", 100), Err(RangeError::Unsatisfiable(..))));
        assert!(matches!(ByteRange::parse_request("bytes=5-1", 100), Err(RangeError::Malformed(_))));
        assert!(matches!(ByteRange::parse_request("items=1-2", 100), Err(RangeError::Malformed(_))));
        assert!(matches!(ByteRange::parse_request("bytes=1-2,4-5", 100), Err(RangeError::Malformed(_))));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(ByteRange::parse_content_range("0-1023"), Ok(ByteRange { start: 0, end: 1023 }));
        assert_eq!(ByteRange::parse_content_range("bytes 5-9/100"), Ok(ByteRange { start: 5, end: 9 }));
        assert!(ByteRange::parse_content_range("9-5").is_err());
        assert!(ByteRange::parse_content_range("x").is_err());
        assert!(ByteRange::parse_content_range("0-18446744073709551615").is_err());
        assert!(ByteRange::parse_content_range("0-18446744073709551616").is_err());
        let widest = ByteRange::parse_content_range("0-18446744073709551614").unwrap();
        assert_eq!(widest.len(), u64::MAX);
    }
}
