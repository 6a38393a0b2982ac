//! Paths into the resource tree: `orgs/acme/folders/eng/projects/web`.

use std::fmt;

use crate::kinds::{KINDS, KindInfo};
use crate::validation::{FieldErrors, validate_name};

/// The location of one object in the tree: a chain of (kind, name) from the org down.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourcePath {
    segments: Vec<(&'static KindInfo, String)>,
}

/// A path that names no place in the tree.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid path `{path}`: {reason}")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ResourcePath {
    /// The path of an org.
    pub fn org(name: impl Into<String>) -> Self {
        ResourcePath {
            segments: vec![(&crate::kinds::ORG, name.into())],
        }
    }

    /// The path of the child `name` of kind `kind` under this node.
    /// Panics if `kind` cannot sit under this node: that is a programming error.
    pub fn child(&self, kind: &'static KindInfo, name: impl Into<String>) -> Self {
        assert!(
            kind.parent.is_some_and(|p| std::ptr::eq(p, self.kind())),
            "{} cannot sit under {}",
            kind.kind,
            self.kind().kind
        );
        let mut segments = self.segments.clone();
        segments.push((kind, name.into()));
        ResourcePath { segments }
    }

    /// Builds a path from a kind and the names of it and its ancestors, top first.
    pub fn from_names(kind: &'static KindInfo, names: &[String]) -> Result<Self, PathError> {
        let mut chain = vec![kind];
        while let Some(parent) = chain.last().and_then(|k| k.parent) {
            chain.push(parent);
        }
        chain.reverse();
        if chain.len() != names.len() {
            return Err(PathError {
                path: names.join("/"),
                reason: format!("a {} path has {} names", kind.singular, chain.len()),
            });
        }
        Ok(ResourcePath {
            segments: chain.into_iter().zip(names.iter().cloned()).collect(),
        })
    }

    /// The node of the access tree named by its names from the org down, as policies name
    /// it: `acme/eng/web/prod-1/payments` is a namespace.
    pub fn tree_node(names: &str) -> Result<Self, PathError> {
        let names: Vec<String> = names
            .trim_matches('/')
            .split('/')
            .map(String::from)
            .collect();
        let kind = crate::kinds::TREE_KINDS
            .get(names.len().wrapping_sub(1))
            .ok_or_else(|| PathError {
                path: names.join("/"),
                reason: "a node is named by org/folder/project/cluster/namespace names, top first"
                    .into(),
            })?;
        Self::from_names(kind, &names)
    }

    /// Parses `orgs/acme/folders/eng`.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let err = |reason: &str| PathError {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if !parts.len().is_multiple_of(2) || parts.is_empty() {
            return Err(err("expected pairs of kind and name"));
        }
        let mut segments: Vec<(&'static KindInfo, String)> = Vec::new();
        for pair in parts.chunks(2) {
            let kind = KINDS
                .iter()
                .copied()
                .find(|k| k.plural == pair[0])
                .ok_or_else(|| err(&format!("unknown kind `{}`", pair[0])))?;
            let expected_parent = segments.last().map(|(k, _)| *k);
            let fits = match (kind.parent, expected_parent) {
                (None, None) => true,
                (Some(p), Some(e)) => std::ptr::eq(p, e),
                _ => false,
            };
            if !fits {
                return Err(err(&format!("{} cannot sit there", pair[0])));
            }
            segments.push((kind, pair[1].to_string()));
        }
        Ok(ResourcePath { segments })
    }

    /// The kind of the object the path ends at.
    pub fn kind(&self) -> &'static KindInfo {
        self.segments.last().expect("a path is never empty").0
    }

    /// The name of the object the path ends at.
    pub fn name(&self) -> &str {
        &self.segments.last().expect("a path is never empty").1
    }

    /// The name of the org the path lies in.
    pub fn org_name(&self) -> &str {
        &self.segments[0].1
    }

    /// The path of the parent node; `None` for an org.
    pub fn parent(&self) -> Option<ResourcePath> {
        (self.segments.len() > 1).then(|| ResourcePath {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
        })
    }

    /// The path down to the first node of `kind` on it (itself, if it is one).
    pub fn up_to(&self, kind: &'static KindInfo) -> Option<ResourcePath> {
        let end = self
            .segments
            .iter()
            .position(|(k, _)| std::ptr::eq(*k, kind))?;
        Some(ResourcePath {
            segments: self.segments[..=end].to_vec(),
        })
    }

    /// Whether the path lies below `ancestor` (and is not `ancestor` itself).
    pub fn is_below(&self, ancestor: &ResourcePath) -> bool {
        self.segments.len() > ancestor.segments.len()
            && self.segments.starts_with(&ancestor.segments)
    }

    /// The names along the path, top first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|(_, n)| n.as_str())
    }

    /// Adds an error for every segment whose name is not a DNS-1123 label.
    pub fn validate(&self, errors: &mut FieldErrors) {
        for (kind, name) in &self.segments {
            validate_name(&format!("path.{}", kind.singular), name, errors);
        }
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (kind, name)) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{}/{}", kind.plural, name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{FOLDER, PROJECT};

    #[test]
    fn parse_and_display_round_trip() {
        let p = ResourcePath::parse("orgs/acme/folders/eng/projects/web").unwrap();
        assert_eq!(p.kind(), &PROJECT);
        assert_eq!(p.name(), "web");
        assert_eq!(p.org_name(), "acme");
        assert_eq!(p.to_string(), "orgs/acme/folders/eng/projects/web");
        assert_eq!(p.parent().unwrap().to_string(), "orgs/acme/folders/eng");
        assert_eq!(
            ResourcePath::org("acme")
                .child(&FOLDER, "eng")
                .child(&PROJECT, "web"),
            p
        );
    }

    #[test]
    fn parse_rejects_misplaced_kinds() {
        assert!(ResourcePath::parse("folders/eng").is_err());
        assert!(ResourcePath::parse("orgs/acme/projects/web").is_err());
        assert!(ResourcePath::parse("orgs/acme/folders").is_err());
        assert!(ResourcePath::parse("orgs/acme/widgets/x").is_err());
    }

    #[test]
    fn tree_nodes_are_named_from_the_org_down() {
        let node = ResourcePath::tree_node("acme/eng/web/prod-1/payments").unwrap();
        assert_eq!(
            node.to_string(),
            "orgs/acme/folders/eng/projects/web/clusters/prod-1/namespaces/payments"
        );
        assert_eq!(
            ResourcePath::tree_node("/acme/").unwrap(),
            ResourcePath::org("acme")
        );
        assert!(ResourcePath::tree_node("a/b/c/d/e/f").is_err());
    }

    #[test]
    fn a_path_knows_its_nodes_of_a_kind_and_what_it_lies_below() {
        let namespace = ResourcePath::tree_node("acme/eng/web/prod-1/payments").unwrap();
        let cluster = ResourcePath::tree_node("acme/eng/web/prod-1").unwrap();
        assert_eq!(
            namespace.up_to(&crate::kinds::CLUSTER),
            Some(cluster.clone())
        );
        assert_eq!(cluster.up_to(&crate::kinds::CLUSTER), Some(cluster.clone()));
        assert_eq!(
            cluster.parent().unwrap().up_to(&crate::kinds::CLUSTER),
            None
        );
        let project = cluster.parent().unwrap();
        assert!(namespace.is_below(&project) && cluster.is_below(&project));
        assert!(!project.is_below(&project), "not below itself");
        assert!(!cluster.is_below(&ResourcePath::tree_node("acme/eng/webs").unwrap()));
        assert!(!project.is_below(&cluster));
    }

    #[test]
    fn from_names_checks_depth() {
        let names = ["acme".to_string(), "eng".to_string()];
        assert_eq!(
            ResourcePath::from_names(&FOLDER, &names)
                .unwrap()
                .to_string(),
            "orgs/acme/folders/eng"
        );
        assert!(ResourcePath::from_names(&PROJECT, &names).is_err());
    }
}
