//! Big scan documents (every finding of an image, every package of a layer) stored as
//! gzip-compressed JSON in base64: a DynamoDB item holds at most 400 KB, and an old image's
//! findings or a full Debian `status` can exceed that as plain JSON (about 10x smaller packed).

use std::io::{Read, Write};

use base64::Engine;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most bytes a packed value may unpack to (a guard against a hostile or damaged document).
pub const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

/// `#[serde(with = "packed")]`: writes `value` as base64 of gzip of its JSON.
pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    let json = serde_json::to_vec(value).map_err(S::Error::custom)?;
    // what could not be read back is not written
    if json.len() as u64 > MAX_UNPACKED {
        return Err(S::Error::custom(format!(
            "{} bytes, more than {MAX_UNPACKED} a packed value may hold",
            json.len()
        )));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).map_err(S::Error::custom)?;
    let bytes = gz.finish().map_err(S::Error::custom)?;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Reads what [`serialize`] wrote.
pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(D::Error::custom)?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).take(MAX_UNPACKED).read_to_end(&mut json).map_err(D::Error::custom)?;
    serde_json::from_slice(&json).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use crate::scan::report::Finding;
    use crate::scan::severity::Severity;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Doc {
        #[serde(with = "super")]
        findings: Vec<Finding>,
    }

    #[test]
    fn five_thousand_findings_fit_well_within_a_dynamodb_item() {
        let findings: Vec<Finding> = (0..5000)
            .map(|i| Finding {
                id: format!("CVE-2030-{i:05}"),
                package: format!("libexample{}", i % 400),
                version: format!("1.{}-1+deb12u1", i % 400),
                fix_version: format!("1.{}-2", i % 400),
                severity: Severity::ALL[i % 6],
            })
            .collect();
        let doc = Doc { findings };
        let json = serde_json::to_vec(&doc).unwrap();
        assert!(json.len() < 150 * 1024, "{} bytes packed", json.len());
        assert_eq!(serde_json::from_slice::<Doc>(&json).unwrap(), doc);
        assert!(serde_json::from_str::<Doc>(r#"{"findings":"not base64!"}"#).is_err());
    }
}
