//! Checked-in JSON snapshots: a test builds named JSON values, and they must equal the files under
//! `tests/snapshots/<set>/<name>.json`. `BERTH_UPDATE_SNAPSHOTS=1` rewrites the set instead.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// Compares every value of `observed` with its snapshot in set `set`, reporting every difference,
/// missing snapshot and snapshot no value names at once; or, with `BERTH_UPDATE_SNAPSHOTS=1`,
/// replaces the set's files with `observed`.
pub fn assert_snapshots(set: &str, observed: &BTreeMap<String, Value>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(set);
    if std::env::var("BERTH_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in observed {
            let text = serde_json::to_string_pretty(value).unwrap() + "\n";
            std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
        }
        return;
    }
    let mut problems = Vec::new();
    for (name, value) in observed {
        let path = dir.join(format!("{name}.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let expected: Value = serde_json::from_str(&text).unwrap();
                if &expected != value {
                    problems.push(format!("{name}: the snapshot says\n{expected:#}\nbut the answer is\n{value:#}"));
                }
            }
            Err(e) => problems.push(format!("{name}: no snapshot ({}: {e})", path.display())),
        }
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let name = file.strip_suffix(".json").unwrap_or(&file);
        if !observed.contains_key(name) {
            problems.push(format!("{file}: a snapshot no case produces"));
        }
    }
    assert!(problems.is_empty(), "{}\n(BERTH_UPDATE_SNAPSHOTS=1 rewrites tests/snapshots/{set})", problems.join("\n"));
}

/// `text` with every UUID (an upload session id, say) replaced by `<uuid>`.
pub fn without_uuids(text: &str) -> String {
    let bytes = text.as_bytes();
    let is_uuid = |at: usize| {
        bytes.len() >= at + 36
            && bytes[at..at + 36].iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    let mut out = String::new();
    let mut at = 0;
    while at < bytes.len() {
        if is_uuid(at) {
            out.push_str("<uuid>");
            at += 36;
        } else {
            let c = text[at..].chars().next().unwrap();
            out.push(c);
            at += c.len_utf8();
        }
    }
    out
}
