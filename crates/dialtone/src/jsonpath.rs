//! The part of kubectl's JSONPath templates people use: `{.metadata.name}`,
//! `{.items[*].spec.type}`, `{.items[0]}`, quoted text such as `{"\n"}`, and
//! `{range .items[*]}…{end}`. Several results print space-separated, strings bare and
//! anything else as JSON, as kubectl prints them.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    Every,
}

#[derive(Debug, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// Renders `template` against `value`.
pub fn render(template: &str, value: &Value) -> Result<String, String> {
    let mut rest = template;
    let nodes = parse(&mut rest, false)?;
    let mut out = String::new();
    write(&nodes, value, &mut out);
    Ok(out)
}

fn parse(rest: &mut &str, in_range: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            nodes.push(Node::Text(rest.to_string()));
            *rest = "";
            break;
        };
        if open > 0 {
            nodes.push(Node::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| format!("unclosed `{{` in `{rest}`"))?;
        let expression = rest[open + 1..close].trim().to_string();
        *rest = &rest[close + 1..];
        if expression == "end" {
            if in_range {
                return Ok(nodes);
            }
            return Err("`{end}` without a `{range …}`".into());
        }
        if let Some(path) = expression.strip_prefix("range ") {
            let path = steps(path.trim())?;
            let body = parse(rest, true)?;
            nodes.push(Node::Range(path, body));
        } else if let Some(text) = expression
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
        {
            nodes.push(Node::Text(text.replace("\\n", "\n").replace("\\t", "\t")));
        } else {
            nodes.push(Node::Path(steps(&expression)?));
        }
    }
    if in_range {
        return Err("`{range …}` without an `{end}`".into());
    }
    Ok(nodes)
}

fn steps(expression: &str) -> Result<Vec<Step>, String> {
    let bad = || {
        format!(
            "`{expression}` is not a path this CLI reads; use fields, [n] and [*], like .items[*].metadata.name"
        )
    };
    let mut rest = expression.strip_prefix('$').unwrap_or(expression);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or_else(bad)?;
            let index = &after[..close];
            steps.push(match index {
                "*" => Step::Every,
                n => Step::Index(n.parse().map_err(|_| bad())?),
            });
            rest = &after[close + 1..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(Step::Field(after[..end].to_string()));
            rest = &after[end..];
        } else {
            return Err(bad());
        }
    }
    Ok(steps)
}

fn select<'a>(value: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in steps {
        current = current
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match step {
                    Step::Field(name) => v.get(name).into_iter().collect(),
                    Step::Index(i) => v.get(*i).into_iter().collect(),
                    Step::Every => match v {
                        Value::Array(items) => items.iter().collect(),
                        Value::Object(map) => map.values().collect(),
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
    }
    current
}

fn write(nodes: &[Node], value: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Path(steps) => {
                let printed: Vec<String> = select(value, steps).into_iter().map(text).collect();
                out.push_str(&printed.join(" "));
            }
            Node::Range(steps, body) => {
                for item in select(value, steps) {
                    write(body, item, out);
                }
            }
        }
    }
}

/// A value as kubectl prints it: a string bare, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One path of a custom column, `.spec.type`: every value it selects, comma-separated.
pub fn column(path: &str, value: &Value) -> Result<String, String> {
    let steps = steps(path)?;
    let found: Vec<String> = select(value, &steps).into_iter().map(text).collect();
    Ok(if found.is_empty() {
        "<none>".to_string()
    } else {
        found.join(",")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_as_kubectl_renders_them() {
        let list = json!({"kind": "FolderList", "items": [
            {"metadata": {"name": "eng", "labels": {"tier": "1"}}},
            {"metadata": {"name": "ops"}},
        ]});
        let render = |t: &str| render(t, &list).unwrap();
        assert_eq!(render("{.items[*].metadata.name}"), "eng ops");
        assert_eq!(render("{.items[1].metadata.name}"), "ops");
        assert_eq!(
            render("{.kind}: {.items[0].metadata.labels}"),
            r#"FolderList: {"tier":"1"}"#
        );
        assert_eq!(
            render(r#"{range .items[*]}{.metadata.name}{"\n"}{end}"#),
            "eng\nops\n"
        );
        assert_eq!(render("{.items[5].metadata.name}"), "");
        assert_eq!(
            column(".metadata.labels.tier", &list["items"][1]).unwrap(),
            "<none>"
        );
        for bad in [
            "{.items[x]}",
            "{.items",
            "{range .items[*]}",
            "{end}",
            "{items}",
        ] {
            assert!(super::render(bad, &list).is_err(), "{bad}");
        }
    }
}
