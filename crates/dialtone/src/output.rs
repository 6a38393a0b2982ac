//! How the CLI prints: tables for people, JSON or YAML for programs.

use jiff::Timestamp;
use serde_json::Value;

use crate::cli::Output;

pub fn print_value(format: Output, value: &Value) -> anyhow::Result<()> {
    match format {
        Output::Json | Output::Table => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
    }
    Ok(())
}

/// A column-aligned table.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", padded.join("   ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `5s`, `3m`, `2h`, `4d`, like kubectl.
pub fn age(timestamp: &Value) -> String {
    let Some(ts) = timestamp.as_str().and_then(|t| t.parse::<Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let seconds = Timestamp::now().duration_since(ts).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn labels(value: &Value) -> String {
    match value.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// The row of an object in a list.
pub fn object_row(object: &Value) -> Vec<String> {
    let meta = &object["metadata"];
    let state = if meta["deletionTimestamp"].is_null() {
        "Active"
    } else {
        "Deleting"
    };
    vec![
        meta["name"].as_str().unwrap_or_default().to_string(),
        object["spec"]["displayName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        state.to_string(),
        meta["homeRegion"].as_str().unwrap_or_default().to_string(),
        age(&meta["creationTimestamp"]),
        labels(&meta["labels"]),
    ]
}

pub const OBJECT_HEADERS: [&str; 6] = ["NAME", "DISPLAY NAME", "STATE", "REGION", "AGE", "LABELS"];
