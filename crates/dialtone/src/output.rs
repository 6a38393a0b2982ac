//! How the CLI prints: tables for people, JSON or YAML for programs.

use jiff::Timestamp;
use serde_json::Value;

use crate::cli::Output;

/// Prints an object, or a list (`{"kind": "…List", "items": […]}`), in a format for
/// programs; a table format prints JSON, for what has no table.
pub fn print_value(format: Output, value: &Value) -> anyhow::Result<()> {
    let items = || match value["items"].as_array() {
        Some(items) if value["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
            items.iter().collect()
        }
        _ => vec![value],
    };
    match format {
        Output::Json | Output::Table | Output::Wide => {
            println!("{}", serde_json::to_string_pretty(value)?)
        }
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        Output::Name => {
            for item in items() {
                let kind = item["kind"].as_str().unwrap_or("object").to_lowercase();
                println!(
                    "{kind}/{}",
                    item["metadata"]["name"].as_str().unwrap_or_default()
                );
            }
        }
        Output::JsonPath(template) => {
            println!(
                "{}",
                crate::jsonpath::render(template, value).map_err(anyhow::Error::msg)?
            )
        }
        Output::Csv => anyhow::bail!(
            "-o csv is offered by `dialtone usage`; here use json, yaml, jsonpath or custom-columns"
        ),
        Output::CustomColumns(columns) => {
            let columns: Vec<(&str, &str)> = columns
                .split(',')
                .filter_map(|c| c.split_once(':'))
                .collect();
            let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
            let rows = items()
                .into_iter()
                .map(|item| {
                    columns
                        .iter()
                        .map(|(_, path)| crate::jsonpath::column(path, item))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            print_table(&headers, &rows);
        }
    }
    Ok(())
}

/// Prints the items of a list of `kind` as one `{kind}List`, the way kubectl does.
pub fn print_list(format: Output, kind: &str, items: Vec<Value>) -> anyhow::Result<()> {
    print_value(
        format,
        &serde_json::json!({
            "apiVersion": dialtone_types::API_VERSION,
            "kind": format!("{kind}List"),
            "items": items,
        }),
    )
}

/// A column-aligned table.
/// Text from the server made safe for a terminal: control characters (which could move the
/// cursor, retitle the window or hide what follows) are shown escaped, as `\u{1b}`.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// Prints rows under headers, in aligned columns; every cell is made [`printable`].
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| printable(cell).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
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
        line(row);
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

/// With `-o wide`: the object's full path and uid as well.
pub fn wide(
    mut headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    objects: &[Value],
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    headers.extend(["PATH", "UID"]);
    let rows = rows
        .into_iter()
        .zip(objects)
        .map(|(mut row, object)| {
            let meta = &object["metadata"];
            let parent = meta["parent"].as_str().unwrap_or_default();
            let name = meta["name"].as_str().unwrap_or_default();
            let plural = dialtone_types::KindInfo::by_kind(object["kind"].as_str().unwrap_or(""))
                .map_or("objects", |k| k.plural);
            row.push(if parent.is_empty() {
                format!("{plural}/{name}")
            } else {
                format!("{parent}/{plural}/{name}")
            });
            row.push(meta["uid"].as_str().unwrap_or_default().to_string());
            row
        })
        .collect();
    (headers, rows)
}

/// A status's `events` under `Events:`, each with its age, type, reason and message.
pub fn print_events(events: &Value) {
    println!("Events:");
    for e in events.as_array().into_iter().flatten() {
        println!(
            "  {:>5} ago  {:<8} {:<16} {}",
            age(&e["time"]),
            e["type"].as_str().unwrap_or_default(),
            e["reason"].as_str().unwrap_or_default(),
            e["message"].as_str().unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_from_the_server_are_printed_escaped() {
        assert_eq!(super::printable("plain text"), "plain text");
        assert_eq!(
            super::printable("a\u{1b}]0;owned\u{7}b\nc"),
            "a\\u{1b}]0;owned\\u{7}b\\u{a}c"
        );
    }
}
