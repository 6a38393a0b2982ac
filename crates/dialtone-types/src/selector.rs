//! Label selectors in the Kubernetes syntax: `tier=web,env!=dev,team in (a,b),!legacy`.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A conjunction of requirements on labels. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A selector that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid label selector `{selector}`: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LabelSelector {
    /// Parses `tier=web,env!=dev,team in (a,b),!legacy` (also `==`, `notin` and bare keys).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let err = |reason: String| SelectorError {
            selector: selector.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        for term in split_terms(selector).map_err(err)? {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = parse_term(term).map_err(err)?;
            requirements.push(req);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether `labels` meet every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// Whether it has no requirement, and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    terms.push(&s[start..]);
    Ok(terms)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if crate::validation::is_qualified_name(k) {
        Ok(k.to_string())
    } else {
        Err(format!("`{k}` is not a valid label key"))
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if crate::validation::is_label_value(v) {
        Ok(v.to_string())
    } else {
        Err(format!("`{v}` is not a valid label value"))
    }
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(k)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, value(v)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, value(v)?));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = term.split_once(op) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected a parenthesised list after `{}`", op.trim()))?;
            let values = inner
                .split(',')
                .map(value)
                .collect::<Result<BTreeSet<_>, _>>()?;
            let k = key(k)?;
            return Ok(if negated {
                Requirement::NotIn(k, values)
            } else {
                Requirement::In(k, values)
            });
        }
    }
    Ok(Requirement::Exists(key(term)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching() {
        let l = labels(&[("tier", "web"), ("env", "prod")]);
        let yes = [
            "",
            "tier=web",
            "tier==web",
            "env!=dev",
            "tier in (web,api)",
            "env notin (dev)",
            "tier",
            "!legacy",
            "tier=web, env=prod",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "tier=api",
            "env!=prod",
            "tier in (api)",
            "env notin (prod,dev)",
            "legacy",
            "!tier",
            "tier=web,env=dev",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
    }

    #[test]
    fn errors() {
        for s in ["tier in web", "a=(", "bad key=x", "a=-x", "a in (x"] {
            assert!(LabelSelector::parse(s).is_err(), "{s}");
        }
    }
}
