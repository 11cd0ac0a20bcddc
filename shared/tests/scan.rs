//! Vulnerability scanning in process, on a test clock and on both backends: the scheduled scan
//! (one global setting) fires at its due time, starts a scan of every image artifact (not of
//! their signatures or other referrers), and a scan finds exactly what the data says; schedule
//! input is checked.
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
