//! Writes a Trivy-shaped vulnerability database (schema 2) for benchmarks: `db.tar.gz` holding
//! `metadata.json` and a `trivy.db` written as Go's bbolt writes it (bbolt-rs with `compat`).
//!
//! cargo run --release -p berth --example trivy_fixture -- OUT.tar.gz [ADVISORIES_PER_RELEASE]
//!
//! Releases: debian 11 and 12, ubuntu 20.04 and 22.04, alpine 3.18 and 3.19, amazon linux 2,
//! rocky 9, and Red Hat's (CPE-keyed, which Berth skips: the reader walks it too); each advisory names a CVE whose
//! details (a title, a description of ~300 bytes, vendor severities, references) are stored once
//! in the `vulnerability` bucket. Source package names `src<N>` match the benchmark's dpkg status.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bbolt_rs::{BucketRwApi, DbRwAPI, TxRwRefApi};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: trivy_fixture OUT.tar.gz [ADVISORIES_PER_RELEASE]");
    let per_release: u32 = args.next().map_or(20_000, |n| n.parse().expect("a number"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trivy.db");
    let releases = [
        ("debian 11", "debian"),
        ("debian 12", "debian"),
        ("ubuntu 20.04", "ubuntu"),
        ("ubuntu 22.04", "ubuntu"),
        ("alpine 3.18", "alpine"),
        ("alpine 3.19", "alpine"),
        ("Red Hat Enterprise Linux 9", "redhat"),
        ("amazon linux 2", "amazon"),
        ("rocky 9", "rocky"),
    ];
    let mut db = bbolt_rs::Bolt::open(&path).unwrap();
    for (r, (release, vendor)) in releases.iter().enumerate() {
        // one transaction per release keeps bbolt-rs's memory in check
        db.update(|mut tx| {
            let mut sources = tx.create_bucket_if_not_exists("data-source")?;
            sources.put(release, json!({"ID": vendor, "Name": vendor, "URL": "https://example.org"}).to_string())?;
            let mut os = tx.create_bucket_if_not_exists(release)?;
            for i in 0..per_release {
                // ~8 advisories per package, as real releases have
                let package = format!("src{}", i / 8);
                let mut pkg = os.create_bucket_if_not_exists(&package)?;
                let id = format!("CVE-20{:02}-{:05}", 10 + r, i);
                let advisory = if i % 5 == 0 {
                    json!({"Status": 2, "Severity": 1})
                } else {
                    json!({"FixedVersion": format!("1.{}-{}", i % 7, i % 3)})
                };
                pkg.put(&id, advisory.to_string())?;
            }
            Ok(())
        })
        .unwrap();
        db.update(|mut tx| {
            let mut details = tx.create_bucket_if_not_exists("vulnerability")?;
            for i in 0..per_release {
                let id = format!("CVE-20{:02}-{:05}", 10 + r, i);
                let description = format!("{id}: a flaw in src{} that lets an attacker do something bad. {}", i / 8, "x".repeat(220));
                details.put(&id, json!({
                    "Title": format!("src{}: a made-up flaw", i / 8), "Description": description, "Severity": "HIGH",
                    "VendorSeverity": {"nvd": 3, *vendor: 1 + i % 3},
                    "References": [format!("https://security-tracker.example/{id}"), format!("https://nvd.example/{id}")],
                }).to_string())?;
            }
            Ok(())
        })
        .unwrap();
    }
    drop(db);
    let metadata = json!({"Version": 2, "NextUpdate": "2027-01-16T00:00:00Z", "UpdatedAt": "2027-01-15T00:00:00Z"});
    let file = std::fs::File::create(&out).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    let meta = metadata.to_string();
    header.set_size(meta.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "metadata.json", meta.as_bytes()).unwrap();
    tar.append_path_with_name(&path, "trivy.db").unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    eprintln!("{out}: trivy.db {} bytes", std::fs::metadata(&path).unwrap().len());
}
