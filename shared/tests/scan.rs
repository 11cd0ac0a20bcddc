//! Vulnerability scanning in process, on a test clock and on both backends: the scheduled scan
//! (one global setting) fires at its due time, starts a scan of every image artifact (not of
//! their signatures or other referrers), and a scan finds exactly what the data says; schedule
//! input is checked. Trivy's database, written as Go's bbolt writes it, is imported into
//! Berth's snapshot and matched with the vendor's severities, and pushing new data re-matches
//! every stored scan without reading a layer again; a deleted artifact's scan goes with it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use berth::metadata::UnixTime;
use berth::scan::data::OSV_LAYER;
use common::registry::TestRegistry;
use http::{Method, StatusCode};
use serde_json::json;

/// 2027-01-15T00:00:00Z, a Friday
const T0: UnixTime = 1_799_971_200;

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

/// Pushes OSV records as the vulnerability data at `team/vulndb:latest`.
async fn push_data(env: &TestRegistry) {
    let records = json!([{"id": "CVE-2023-45853", "database_specific": {"severity": "CRITICAL"},
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.3.dfsg-1"}]}]}]}]);
    let data = serde_json::to_vec(&records).unwrap();
    let config = env.push_blob("team/vulndb", b"{}").await;
    let layer = env.push_blob("team/vulndb", &data).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": OSV_LAYER, "digest": layer.to_string(), "size": data.len()}],
    }))
    .unwrap();
    let a = env.push_manifest("team/vulndb", "latest", "application/vnd.oci.image.manifest.v1+json", &manifest).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
}

/// Pushes `layers` (media type, bytes) as the artifact `repo:tag`; its digest.
async fn push_artifact(env: &TestRegistry, repo: &str, tag: &str, layers: &[(&str, &[u8])]) -> berth::oci::Digest {
    let config = env.push_blob(repo, b"{}").await;
    let mut descriptors = Vec::new();
    for (media_type, bytes) in layers {
        let digest = env.push_blob(repo, bytes).await;
        descriptors.push(json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()}));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.to_string(), "size": 2},
        "layers": descriptors,
    }))
    .unwrap();
    let a = env.push_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", &manifest).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    berth::oci::Digest::sha256_of(&manifest)
}

/// Trivy's `db.tar.gz` (schema 2): `advisories` are (release, source package, id, advisory),
/// `vulnerabilities` (id, details); written with bbolt-rs in Go bbolt's format.
fn trivy_db(
    advisories: &[(&str, &str, &str, serde_json::Value)],
    vulnerabilities: &[(&str, serde_json::Value)],
) -> Vec<u8> {
    use bbolt_rs::{BucketRwApi, DbRwAPI, TxRwRefApi};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trivy.db");
    {
        let mut db = bbolt_rs::Bolt::open(&path).unwrap();
        db.update(|mut tx| {
            for (release, package, id, advisory) in advisories {
                let mut os = tx.create_bucket_if_not_exists(release)?;
                let mut pkg = os.create_bucket_if_not_exists(package)?;
                pkg.put(id, advisory.to_string())?;
            }
            let mut sources = tx.create_bucket_if_not_exists("data-source")?;
            for (release, ..) in advisories {
                let id = release.split(' ').next().unwrap_or_default().to_lowercase();
                sources.put(release, json!({"ID": id, "Name": format!("{id} security data")}).to_string())?;
            }
            let mut details = tx.create_bucket_if_not_exists("vulnerability")?;
            for (id, vulnerability) in vulnerabilities {
                details.put(id, vulnerability.to_string())?;
            }
            Ok(())
        })
        .unwrap();
    }
    let db = std::fs::read(&path).unwrap();
    let metadata = json!({"Version": 2, "NextUpdate": "2027-01-16T00:00:00Z", "UpdatedAt": "2027-01-15T00:00:00Z"});
    let archive = tar(&[("metadata.json", metadata.to_string().as_bytes()), ("trivy.db", &db)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &archive).unwrap();
    gz.finish().unwrap()
}

async fn settings(env: &TestRegistry, registry: &str, body: serde_json::Value) -> common::registry::Answer {
    env.call_json(Method::PUT, &format!("/api/v1/registries/{registry}/scan-settings"), &body.to_string()).await
}

on_both_backends!(the_scheduled_scan_fires_at_its_time_and_scans_every_image_but_not_referrers);

async fn the_scheduled_scan_fires_at_its_time_and_scans_every_image_but_not_referrers(env: TestRegistry) {
    let env = env.with_clock(T0).with_settings(|s| s.scan_db = "team/vulndb:latest".to_string());
    env.ready().await;
    push_data(&env).await;
    let layer = tar(&[
        ("etc/os-release", b"ID=debian\nVERSION_ID=12\n"),
        (
            "var/lib/dpkg/status",
            b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\n",
        ),
    ]);
    let (_, image) = env.push_image_of("team/app", Some("v1"), b"{}", &[&layer]).await;
    // a signature-like referrer of the image: never scanned by the schedule
    let manifest = env.upload_image("team/app", b"{\"sig\":1}", &[b"signature"], Some(&image)).await;
    let referrer = berth::oci::Digest::sha256_of(&manifest);
    let a = env
        .push_manifest("team/app", &referrer.to_string(), "application/vnd.oci.image.manifest.v1+json", &manifest)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());

    let a = settings(&env, "_all", json!({"schedule": "hourly"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["schedule"], "hourly");
    assert_eq!(a.json()["next_scan_at"], T0 + 3600);
    env.work().await;
    assert_eq!(berth::schedule::fire_due(&env.app).await.unwrap(), 0, "not due yet");
    let scan_uri = format!("/api/v1/images/team/app/artifacts/{image}/scan");
    assert_eq!(env.get_json(&scan_uri).await["status"], "not_scanned");

    env.set_time(T0 + 3600 + 5);
    assert_eq!(berth::schedule::fire_due(&env.app).await.unwrap(), 1);
    env.work().await;
    let scan = env.get_json(&scan_uri).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(scan["requested_by"], "schedule");
    assert_eq!(scan["findings"][0]["id"], "CVE-2023-45853");
    assert_eq!((scan["total"].as_u64(), scan["fixable"].as_u64()), (Some(1), Some(1)));
    let referrer_scan = env.get_json(&format!("/api/v1/images/team/app/artifacts/{referrer}/scan")).await;
    assert_eq!(referrer_scan["status"], "not_scanned", "a referrer is not scanned by the schedule");
    // the schedule moved on to its next due time
    let common = env.get_json("/api/v1/registries/_all/scan-settings").await;
    assert_eq!(common["next_scan_at"], T0 + 2 * 3600);

    // weekly = Saturday 00:00 UTC; none removes it
    let a = settings(&env, "_all", json!({"schedule": "weekly"})).await;
    assert_eq!(a.json()["next_scan_at"], T0 + 24 * 3600, "the Saturday after Friday T0");
    let a = settings(&env, "_all", json!({"schedule": "none"})).await;
    assert_eq!((a.json()["schedule"].clone(), a.json()["next_scan_at"].clone()), (json!(null), json!(null)));
    env.set_time(T0 + 30 * 24 * 3600);
    assert_eq!(berth::schedule::fire_due(&env.app).await.unwrap(), 0);
}

#[tokio::test]
async fn bad_schedules_are_refused_with_reasons() {
    let env = TestRegistry::embedded().with_clock(T0);
    env.ready().await;
    for (registry, body, says) in [
        ("_all", json!({"schedule": "fortnightly"}), "schedule"),
        ("_all", json!({"schedule": "0 0 31 2 *"}), "never"),
        ("_all", json!({"schedule": "* * * *"}), "schedule"),
        ("team", json!({"schedule": "daily"}), "_all"),
    ] {
        let a = settings(&env, registry, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text());
        assert!(a.text().contains(says), "{body}: {}", a.text());
    }
    assert!(berth::schedule::get(env.app.meta.as_ref(), berth::scan::policy::SCHEDULE_ID).await.unwrap().is_none());
}

on_both_backends!(trivy_data_is_imported_once_and_new_data_rematches_stored_scans_without_reading_layers);

async fn trivy_data_is_imported_once_and_new_data_rematches_stored_scans_without_reading_layers(env: TestRegistry) {
    use berth::scan::data::SNAPSHOT_TYPE;
    use berth::scan::trivy::TRIVY_LAYER;
    let env = env.with_clock(T0).with_settings(|s| s.scan_db = "src/trivy-db:2".to_string());
    env.ready().await;
    let advisories = vec![
        ("debian 12", "zlib", "CVE-2023-45853", json!({"FixedVersion": "1:1.3.dfsg-1"})),
        ("debian 12", "openssl", "CVE-2024-0001", json!({"FixedVersion": "3.0.11-1~deb12u2"})),
        ("debian 12", "openssl", "CVE-2024-0002", json!({"FixedVersion": "3.0.11-1~deb12u1"})), // installed: fixed
        ("debian 12", "glibc", "CVE-2024-0003", json!({"Status": 2, "Severity": 1})),           // no fix yet, rated low
        ("debian 12", "glibc", "CVE-2024-0004", json!({"Status": 1})),                          // not affected
        ("alpine 3.19", "busybox", "CVE-2024-0100", json!({"FixedVersion": "1.36.1-r16"})),
        ("Red Hat Enterprise Linux 9", "zlib", "CVE-2023-45853", json!({"FixedVersion": "9"})),
    ];
    let vulnerabilities = vec![
        (
            "CVE-2023-45853",
            json!({"Title": "zlib: integer overflow in MiniZip", "Severity": "CRITICAL",
            "VendorSeverity": {"nvd": 4, "debian": 3}, "References": ["https://security-tracker.debian.org/tracker/CVE-2023-45853"]}),
        ),
        ("CVE-2024-0001", json!({"Description": "openssl: a made-up flaw", "Severity": "MEDIUM"})),
        ("CVE-2024-0003", json!({"Title": "glibc: a made-up flaw", "VendorSeverity": {"debian": 3}})),
    ];
    let first =
        push_artifact(&env, "src/trivy-db", "2", &[(TRIVY_LAYER, &trivy_db(&advisories, &vulnerabilities))]).await;
    env.work().await; // the push queued the import: the snapshot is stored beside the data
    let referrers = env.get_json(&format!("/v2/src/trivy-db/referrers/{first}")).await;
    let snapshots: Vec<_> =
        referrers["manifests"].as_array().unwrap().iter().filter(|m| m["artifactType"] == SNAPSHOT_TYPE).collect();
    assert_eq!(snapshots.len(), 1, "{referrers}");

    let layer = tar(&[
        ("etc/os-release", b"ID=debian\nVERSION_ID=12\n"),
        (
            "var/lib/dpkg/status",
            b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\n\n\
Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\nSource: openssl\n\n\
Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nSource: glibc\n",
        ),
    ]);
    let (_, image) = env.push_image_of("team/app", Some("v1"), b"{}", &[&layer]).await;
    let scan_uri = format!("/api/v1/images/team/app/artifacts/{image}/scan");
    let a = env.call_json(Method::POST, &scan_uri, "").await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    env.work().await;
    let scan = env.get_json(&scan_uri).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(scan["vulndb"], first.to_string());
    let found: Vec<(String, String, String)> = scan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().into(),
                f["package"].as_str().unwrap().into(),
                f["severity"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("CVE-2023-45853", "zlib1g", "High"), // Debian's rating, not NVD's critical
        ("CVE-2024-0001", "libssl3", "Medium"),
        ("CVE-2024-0003", "libc6", "Low"), // the advisory's own rating wins
    ];
    assert_eq!(found, expected.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
    assert_eq!((scan["total"].as_u64(), scan["fixable"].as_u64()), (Some(3), Some(2)));
    assert_eq!(scan["layers_read"], 1);
    let report =
        env.call(Method::GET, &scan_uri, &[("accept", berth::scan::report::REPORT_MEDIA_TYPE)], Vec::new()).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text());
    let report: serde_json::Value = serde_json::from_slice(&report.body).unwrap();
    let zlib = &report["vulnerabilities"][0];
    assert_eq!(zlib["description"], "zlib: integer overflow in MiniZip");
    assert_eq!(zlib["links"][0], "https://security-tracker.debian.org/tracker/CVE-2023-45853");
    assert_eq!(zlib["fix_version"], "1:1.3.dfsg-1");

    // new data: glibc's flaw is fixed now and zlib has a new critical one
    let mut advisories = advisories;
    advisories[3] = ("debian 12", "glibc", "CVE-2024-0003", json!({"FixedVersion": "2.36-9+deb12u1", "Severity": 1}));
    advisories.push(("debian 12", "zlib", "CVE-2024-0005", json!({"FixedVersion": "1:1.3.dfsg-2"})));
    let mut vulnerabilities = vulnerabilities;
    vulnerabilities.push(("CVE-2024-0005", json!({"Title": "zlib: another", "VendorSeverity": {"debian": 4}})));
    let second =
        push_artifact(&env, "src/trivy-db", "2", &[(TRIVY_LAYER, &trivy_db(&advisories, &vulnerabilities))]).await;
    assert_ne!(first, second);
    env.work().await; // import, then a re-match of every stored scan
    let scan = env.get_json(&scan_uri).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(scan["requested_by"], "vulndb-update");
    assert_eq!(scan["vulndb"], second.to_string());
    assert_eq!(scan["layers_read"], 0, "a re-match reads no layer");
    assert_eq!(scan["findings"][0]["id"], "CVE-2024-0005");
    assert_eq!(scan["findings"][0]["severity"], "Critical");
    assert_eq!((scan["total"].as_u64(), scan["fixable"].as_u64()), (Some(4), Some(4)));

    // prevent pull judges the scan's data on the manifest item: with the scan record gone, the
    // GET is still refused (the gate read nothing but the manifest)
    let (_, gated) = env.push_image_of("team/gated", Some("v1"), b"{}", &[&layer]).await;
    let gated_uri = format!("/api/v1/images/team/gated/artifacts/{gated}/scan");
    assert_eq!(env.call_json(Method::POST, &gated_uri, "").await.status, StatusCode::ACCEPTED);
    env.work().await;
    let a = settings(&env, "team", json!({"prevent_pull": "Critical"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let registry = &env;
    let pull = |repo: &'static str| {
        let uri = format!("/v2/{repo}/manifests/v1");
        async move {
            registry
                .call(Method::GET, &uri, &[("accept", "application/vnd.oci.image.manifest.v1+json")], Vec::new())
                .await
        }
    };
    let a = pull("team/gated").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert!(a.text().contains("CVE-2024-0005"), "{}", a.text());
    let gone = env.app.meta.delete_document("scan", &format!("team/gated@{gated}"), berth::metadata::Expect::Any).await;
    assert!(gone.unwrap());
    let a = pull("team/gated").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());

    // a damaged database fails the scan with a reason, and the stored result stays
    let damaged = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let junk = vec![0u8; 8192];
        let archive = tar(&[("metadata.json", br#"{"Version": 2}"#), ("trivy.db", &junk)]);
        std::io::Write::write_all(&mut gz, &archive).unwrap();
        gz.finish().unwrap()
    };
    push_artifact(&env, "src/trivy-db", "2", &[(TRIVY_LAYER, &damaged)]).await;
    env.work().await;
    let a = env.call_json(Method::POST, &scan_uri, "").await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    env.work().await;
    let scan = env.get_json(&scan_uri).await;
    assert_eq!(scan["status"], "failed", "{scan}");
    assert!(scan["error"].as_str().unwrap().contains("BoltDB"), "{scan}");
    assert_eq!(scan["total"], 4, "the last result stays");

    // a deleted artifact's scan goes with it: pushed again, the same digest is not scanned
    let a = env.call(Method::DELETE, &format!("/v2/team/app/manifests/{image}"), &[], Vec::new()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    env.work().await;
    let (_, again) = env.push_image_of("team/app", Some("v1"), b"{}", &[&layer]).await;
    assert_eq!(again, image);
    assert_eq!(env.get_json(&scan_uri).await["status"], "not_scanned");
    env.work().await;
    assert_eq!(env.get_json(&scan_uri).await["status"], "not_scanned");
    assert_eq!(
        pull("team/app").await.status,
        StatusCode::OK,
        "pushed again, the artifact is not judged by the old scan"
    );
}

/// An rpm header blob (`il`, `dl`, index entries, data) of a package built from `source_rpm`.
fn rpm_header(name: &str, epoch: Option<u32>, version: &str, release: &str, source_rpm: &str) -> Vec<u8> {
    const STRING: u32 = 6;
    const INT32: u32 = 4;
    let mut entries = vec![
        (1000, STRING, [name.as_bytes(), &[0]].concat()),
        (1001, STRING, [version.as_bytes(), &[0]].concat()),
        (1002, STRING, [release.as_bytes(), &[0]].concat()),
        (1044, STRING, [source_rpm.as_bytes(), &[0]].concat()),
    ];
    if let Some(e) = epoch {
        entries.insert(3, (1003, INT32, e.to_be_bytes().to_vec()));
    }
    let (mut index, mut store) = (Vec::new(), Vec::new());
    for (tag, kind, data) in &entries {
        while *kind == INT32 && store.len() % 4 != 0 {
            store.push(0);
        }
        for v in [*tag, *kind, store.len() as u32, 1u32] {
            index.extend_from_slice(&v.to_be_bytes());
        }
        store.extend_from_slice(data);
    }
    [(entries.len() as u32).to_be_bytes().as_slice(), &(store.len() as u32).to_be_bytes(), &index, &store].concat()
}

/// An `rpmdb.sqlite` holding `headers`, laid out as rpm 4.16+ makes it.
fn rpmdb_sqlite(headers: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpmdb.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)").unwrap();
    for h in headers {
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [h]).unwrap();
    }
    drop(conn);
    std::fs::read(&path).unwrap()
}

on_both_backends!(trivy_rpm_releases_and_python_match_by_their_own_keys_and_ordering);

/// Trivy keys Rocky, AlmaLinux and Amazon Linux advisories by binary package and release
/// (`rocky 9`, `alma 8`, `amazon linux 2023`); each image's rpm database is matched against its
/// own release only, by rpm's ordering, with the vendor's severity. Python advisories
/// (`pip::…`, version ranges) match `*.dist-info` distributions by PEP 440 on any OS.
async fn trivy_rpm_releases_and_python_match_by_their_own_keys_and_ordering(env: TestRegistry) {
    use berth::scan::trivy::TRIVY_LAYER;
    let env = env.with_clock(T0).with_settings(|s| s.scan_db = "src/trivy-db:2".to_string());
    env.ready().await;
    let advisories = vec![
        ("rocky 9", "openssl-libs", "CVE-2024-1001", json!({"FixedVersion": "1:3.0.7-25.el9_3"})),
        ("rocky 9", "openssl", "CVE-2024-1002", json!({"FixedVersion": "3.0.9-1.el9"})), // epoch 1 is newer
        ("alma 9", "openssl-libs", "CVE-2024-1003", json!({"FixedVersion": "1:3.0.7-26.el9"})), // another distro
        ("amazon linux 2023", "curl", "CVE-2024-1004", json!({"FixedVersion": "8.5.0-1.amzn2023.0.2"})),
        ("amazon linux 2", "curl", "CVE-2024-1005", json!({"FixedVersion": "9.0.0-1.amzn2"})), // another generation
        (
            "pip::GitHub Security Advisory pip",
            "requests",
            "CVE-2024-35195",
            json!({"VulnerableVersions": ["< 2.32.0"], "PatchedVersions": ["2.32.0"], "Severity": 2}),
        ),
        (
            "pip::GitHub Security Advisory pip",
            "urllib3",
            "CVE-2023-43804",
            json!({"VulnerableVersions": [">=2.0.0, <2.0.6", "<1.26.17"], "PatchedVersions": ["1.26.17", "2.0.6"]}),
        ),
    ];
    let vulnerabilities = vec![
        ("CVE-2024-1001", json!({"Title": "openssl: a made-up flaw", "VendorSeverity": {"rocky": 3, "nvd": 4}})),
        ("CVE-2024-1004", json!({"Title": "curl: a made-up flaw", "VendorSeverity": {"amazon": 2}})),
    ];
    push_artifact(&env, "src/trivy-db", "2", &[(TRIVY_LAYER, &trivy_db(&advisories, &vulnerabilities))]).await;
    env.work().await;
    let openssl = |name| rpm_header(name, Some(1), "3.0.7", "24.el9", "openssl-3.0.7-24.el9.src.rpm");
    let images = [
        (
            "team/rocky",
            "ID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
            vec![openssl("openssl"), openssl("openssl-libs")],
            vec![("CVE-2024-1001", "openssl-libs", "1:3.0.7-24.el9", "High")],
        ),
        (
            "team/amazon",
            "ID=\"amzn\"\nVERSION_ID=\"2023\"\n",
            vec![rpm_header("curl", None, "8.3.0", "1.amzn2023.0.1", "curl-8.3.0-1.amzn2023.0.1.src.rpm")],
            vec![("CVE-2024-1004", "curl", "8.3.0-1.amzn2023.0.1", "Medium")],
        ),
    ];
    for (repo, os_release, headers, expected) in images {
        let layer =
            tar(&[("etc/os-release", os_release.as_bytes()), ("var/lib/rpm/rpmdb.sqlite", &rpmdb_sqlite(&headers))]);
        let (_, image) = env.push_image_of(repo, Some("v1"), b"{}", &[&layer]).await;
        let scan_uri = format!("/api/v1/images/{repo}/artifacts/{image}/scan");
        assert_eq!(env.call_json(Method::POST, &scan_uri, "").await.status, StatusCode::ACCEPTED);
        env.work().await;
        let scan = env.get_json(&scan_uri).await;
        assert_eq!((&scan["status"], scan["packages"].as_u64()), (&json!("succeeded"), Some(headers.len() as u64)));
        let found: Vec<_> = scan["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap(),
                    f["package"].as_str().unwrap(),
                    f["version"].as_str().unwrap(),
                    f["severity"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(found, expected, "{repo}: {scan}");
    }

    // Python distributions are matched in the language's own shard, on any OS (here: none)
    let layer = tar(&[
        (
            "usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
            b"Name: Requests\nVersion: 2.31.0\n",
        ),
        (
            "usr/local/lib/python3.11/site-packages/urllib3-1.26.18.dist-info/METADATA",
            b"Name: urllib3\nVersion: 1.26.18\n",
        ),
        // the OS's own python3-requests: its fixes are backported, so PyPI's ranges do not apply
        ("usr/lib/python3/dist-packages/requests-2.28.1.egg-info", b"Name: requests\nVersion: 2.28.1\n"),
    ]);
    let (_, image) = env.push_image_of("team/py", Some("v1"), b"{}", &[&layer]).await;
    let scan_uri = format!("/api/v1/images/team/py/artifacts/{image}/scan");
    assert_eq!(env.call_json(Method::POST, &scan_uri, "").await.status, StatusCode::ACCEPTED);
    env.work().await;
    let scan = env.get_json(&scan_uri).await;
    assert_eq!(scan["packages"], 3, "{scan}");
    assert_eq!(scan["findings"].as_array().map(Vec::len), Some(1), "urllib3 1.26.18 is past both ranges: {scan}");
    let f = &scan["findings"][0];
    assert_eq!(
        (&f["id"], &f["package"], &f["version"], &f["fix_version"], &f["severity"]),
        (&json!("CVE-2024-35195"), &json!("Requests"), &json!("2.31.0"), &json!("2.32.0"), &json!("Medium"))
    );
}

#[tokio::test]
async fn a_referrer_whose_subject_is_gone_by_the_time_it_lands_is_removed() {
    let env = TestRegistry::embedded().with_clock(T0);
    env.ready().await;
    let (_, image) = env.push_image_of("team/app", Some("v1"), b"{}", &[b"layer"]).await;
    let subject =
        env.app.meta.manifest(&berth::oci::RepoName::parse("team/app", None).unwrap(), &image).await.unwrap().unwrap();
    // deleted between the scan's end and its SBOM push
    let a = env.call(Method::DELETE, &format!("/v2/team/app/manifests/{image}"), &[], Vec::new()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let pushed = berth::scan::sbom::attach(&env.app, &subject.repo, &subject, &[]).await;
    assert!(matches!(pushed, Err(berth::scan::ScanError::NotFound(_))), "{pushed:?}");
    let referrers = env.get_json(&format!("/v2/team/app/referrers/{image}")).await;
    assert_eq!(referrers["manifests"], json!([]), "no SBOM outlives its subject");
    env.discard_pending_jobs().await;
}
