//! Printing results: JSON exactly as the server gave it, or text (aligned columns with a header
//! row for lists, `key: value` lines for one object).

use serde_json::Value;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for lists, `key: value` lines for single objects.
    Text,
    /// The server's JSON: an object, or an array of every item of a list.
    Json,
}

/// One column of a text table: its header and how a cell is drawn from an item.
pub struct Column {
    /// the header row's text
    pub header: &'static str,
    /// the cell of one item
    pub cell: fn(&Value) -> String,
}

/// Pretty JSON of `value` (serializing a `Value` cannot fail; `null` stands in if it did).
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string())
}

/// A table: a header row and one row per item, columns padded to their widest cell.
pub fn table(items: &[Value], columns: &[Column]) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(columns.iter().map(|c| c.header.to_string()).collect())
        .chain(items.iter().map(|item| columns.iter().map(|c| one_line((c.cell)(item))).collect()))
        .collect();
    let widths: Vec<usize> =
        (0..columns.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines of an object: the keys in `order` first, then any others alphabetically.
pub fn fields(object: &Value, order: &[&str]) -> String {
    let Some(map) = object.as_object() else { return format!("{}\n", one_line(cell_text("", object))) };
    let mut keys: Vec<&str> = order.iter().copied().filter(|k| map.contains_key(*k)).collect();
    let mut rest: Vec<&str> = map.keys().map(String::as_str).filter(|k| !order.contains(k)).collect();
    rest.sort_unstable();
    keys.extend(rest);
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for key in keys {
        let value = map.get(key).map(|v| cell_text(key, v)).unwrap_or_default();
        let label = format!("{key}:");
        out.push_str(format!("{label:<width$} {}", one_line(value)).trim_end());
        out.push('\n');
    }
    out
}

/// A field of an item as text (see [`cell_text`]).
pub fn field(item: &Value, key: &str) -> String {
    cell_text(key, item.get(key).unwrap_or(&Value::Null))
}

/// A value as text: times (`*_at`, `at`, `last_push`) in UTC, `size` and `*_bytes` in binary units, lists
/// comma-separated, platforms as `os/arch[/variant]`, no `registries` as `(all)`, nothing as `-`.
pub fn cell_text(key: &str, value: &Value) -> String {
    match value {
        Value::Null if key == "registries" => "(all)".to_string(),
        Value::Null => "-".to_string(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        Value::Number(n) if is_time_key(key) => n.as_i64().map(time).unwrap_or_else(|| n.to_string()),
        Value::Number(n) if key == "size" || key.ends_with("_bytes") => {
            n.as_u64().map(size).unwrap_or_else(|| n.to_string())
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(list) if list.is_empty() => "-".to_string(),
        Value::Array(list) => list.iter().map(|v| element_text(key, v)).collect::<Vec<_>>().join(", "),
        Value::Object(_) => value.to_string(),
    }
}

/// One element of a list field as text.
fn element_text(key: &str, value: &Value) -> String {
    match value {
        Value::Object(o) if key == "platforms" => {
            let part = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            let mut text = format!("{}/{}", part("os"), part("architecture"));
            if let Some(variant) = o.get("variant").and_then(Value::as_str) {
                text.push('/');
                text.push_str(variant);
            }
            text
        }
        Value::Object(o) if o.contains_key("digest") => {
            let digest = o.get("digest").and_then(Value::as_str).unwrap_or("?");
            match o.get("artifact_type").and_then(Value::as_str) {
                Some(kind) => format!("{digest} ({kind})"),
                None => digest.to_string(),
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a field holds a Unix time.
fn is_time_key(key: &str) -> bool {
    key == "at" || key == "last_push" || key.ends_with("_at")
}

/// Keeps a cell on one line.
fn one_line(text: String) -> String {
    if text.contains(['\n', '\r', '\t']) {
        text.replace(['\n', '\r', '\t'], " ")
    } else {
        text
    }
}

/// A Unix time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn time(secs: i64) -> String {
    berth::cron::rfc3339(secs)
}

/// A byte count in binary units (`512 B`, `1.5 KiB`, `3.2 GiB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(cell_text("storage_bytes", &json!(1536)), "1.5 KiB");
        assert_eq!(cell_text("image_count", &json!(1536)), "1536");
    }

    #[test]
    fn tables_are_aligned() {
        let cols = [
            Column { header: "NAME", cell: |v| field(v, "name") },
            Column { header: "PUBLIC", cell: |v| field(v, "public_access") },
        ];
        let items = [json!({"name": "e2e", "public_access": true}), json!({"name": "x", "public_access": false})];
        assert_eq!(table(&items, &cols), "NAME  PUBLIC\ne2e   yes\nx     no\n");
    }

    #[test]
    fn objects_are_key_value_lines() {
        let v = json!({"name": "e2e", "b": [], "created_at": 0, "platforms": [{"os": "linux", "architecture": "arm64", "variant": "v8"}]});
        assert_eq!(
            fields(&v, &["name", "created_at"]),
            "name:       e2e\ncreated_at: 1970-01-01T00:00:00Z\nb:          -\nplatforms:  linux/arm64/v8\n"
        );
    }
}
