//! The kinds of the resource tree. Each kind has a static [`KindInfo`] (names, place in the
//! tree) and a spec type implementing [`Kind`]; routes, storage keys and the OpenAPI document
//! are all derived from these, so adding a kind means adding it here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::meta::ObjectStatus;
use crate::validation::{FieldErrors, FieldReason, validate_text};

/// Where a kind sits in the tree and what it is called.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KindInfo {
    /// `Project`
    pub kind: &'static str,
    /// `projects`: the path segment of its collection.
    pub plural: &'static str,
    /// `project`: the CLI noun and the route parameter.
    pub singular: &'static str,
    /// The kind of its parent node; `None` for the root of the tree.
    pub parent: Option<&'static KindInfo>,
}

impl KindInfo {
    /// How many kinds sit above this one: 0 for orgs.
    pub fn depth(&self) -> usize {
        self.parent.map_or(0, |p| p.depth() + 1)
    }

    /// The kinds whose parent is this kind.
    pub fn children(&'static self) -> impl Iterator<Item = &'static KindInfo> {
        KINDS
            .iter()
            .copied()
            .filter(move |k| k.parent.is_some_and(|p| std::ptr::eq(p, self)))
    }

    /// The kind whose collection is `plural` (`projects`).
    pub fn by_plural(plural: &str) -> Option<&'static KindInfo> {
        KINDS.iter().copied().find(|k| k.plural == plural)
    }

    /// The kind named `kind` (`Project`).
    pub fn by_kind(kind: &str) -> Option<&'static KindInfo> {
        KINDS.iter().copied().find(|k| k.kind == kind)
    }
}

/// Orgs: tenants, the roots of the tree.
pub static ORG: KindInfo = KindInfo {
    kind: "Org",
    plural: "orgs",
    singular: "org",
    parent: None,
};
/// Folders, under an org.
pub static FOLDER: KindInfo = KindInfo {
    kind: "Folder",
    plural: "folders",
    singular: "folder",
    parent: Some(&ORG),
};
/// Projects, under a folder.
pub static PROJECT: KindInfo = KindInfo {
    kind: "Project",
    plural: "projects",
    singular: "project",
    parent: Some(&FOLDER),
};
/// Smart Clusters, under a project.
pub static CLUSTER: KindInfo = KindInfo {
    kind: "Cluster",
    plural: "clusters",
    singular: "cluster",
    parent: Some(&PROJECT),
};
/// Namespaces, under a cluster.
pub static NAMESPACE: KindInfo = KindInfo {
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    parent: Some(&CLUSTER),
};
/// Identities, under an org.
pub static IDENTITY: KindInfo = KindInfo {
    kind: "Identity",
    plural: "identities",
    singular: "identity",
    parent: Some(&ORG),
};

/// Groups, under an org.
pub static GROUP: KindInfo = KindInfo {
    kind: "Group",
    plural: "groups",
    singular: "group",
    parent: Some(&ORG),
};

/// Every kind, parents before children.
pub static KINDS: &[&KindInfo] = &[
    &ORG,
    &FOLDER,
    &PROJECT,
    &CLUSTER,
    &NAMESPACE,
    &crate::connection::CONNECTION,
    &IDENTITY,
    &GROUP,
];

/// The kinds that are nodes of the access tree, top down: policies are set on them.
pub static TREE_KINDS: &[&KindInfo] = &[&ORG, &FOLDER, &PROJECT, &CLUSTER, &NAMESPACE];

/// The spec type of a kind.
pub trait Kind:
    Serialize + DeserializeOwned + JsonSchema + Clone + Default + PartialEq + Send + Sync + 'static
{
    /// Its names and place in the tree.
    const INFO: &'static KindInfo;

    /// What the server and controllers report about an object of this kind.
    type Status: Serialize
        + DeserializeOwned
        + JsonSchema
        + Clone
        + Default
        + PartialEq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;

    /// Adds an error for every bad field of the spec; field paths start with `spec.`.
    fn validate(&self, errors: &mut FieldErrors);

    /// Whether creating or updating an object with this spec takes installation-wide powers.
    fn requires_platform_admin(&self) -> bool {
        false
    }
}

/// An isolated tenant: nothing crosses org boundaries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "OrgSpec")]
pub struct Org {
    /// A name for people; any text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// What the org is, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The IPv4 range the org's cluster networks are allocated from, as a CIDR of at most
    /// /16 (each production cluster, and each project's shared developer network per
    /// region, takes a /16). Default: `10.0.0.0/8`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address_plan: String,
}

impl Org {
    /// The default address plan of an org that names none.
    pub const DEFAULT_ADDRESS_PLAN: &str = "10.0.0.0/8";

    /// The address plan in effect: the spec's, or the default.
    pub fn address_plan(&self) -> &str {
        if self.address_plan.is_empty() {
            Self::DEFAULT_ADDRESS_PLAN
        } else {
            &self.address_plan
        }
    }
}

/// A logical container under an org, global in scope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "FolderSpec")]
pub struct Folder {
    /// A name for people; any text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// What the folder holds, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A logical container under a folder, global in scope; clusters live in projects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ProjectSpec")]
pub struct Project {
    /// A name for people; any text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// What the project is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Someone (or something) that authenticates with API tokens. Identities belong to an org.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "IdentitySpec")]
pub struct Identity {
    /// The person's or service's name, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// A platform admin operates the whole installation: creates orgs and sees all of them.
    /// Only a platform admin can make another.
    #[serde(default)]
    pub platform_admin: bool,
}

/// A Kubernetes namespace of a cluster, as a node of the tree: creating one creates the
/// namespace in the cluster, and policies bound on it become RoleBindings there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "NamespaceSpec")]
pub struct Namespace {
    /// A name for people; any text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// What the namespace is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A set of identities of the org, named as one subject in access policies. Its members
/// are managed in Dialtone (the group source every installation has).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "GroupSpec")]
pub struct Group {
    /// A name for people; any text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Names of identities of the org.
    #[serde(default)]
    pub members: Vec<String>,
}

/// The most members a group holds.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

fn validate_display(display_name: &str, description: &str, errors: &mut FieldErrors) {
    validate_text("spec.displayName", display_name, 256, errors);
    validate_text("spec.description", description, 4096, errors);
}

impl Kind for Org {
    const INFO: &'static KindInfo = &ORG;
    type Status = ObjectStatus;
    fn validate(&self, errors: &mut FieldErrors) {
        validate_display(&self.display_name, &self.description, errors);
        if !self.address_plan.is_empty()
            && let Err(message) = crate::cluster::parse_address_pool(&self.address_plan)
        {
            errors.push("spec.addressPlan", FieldReason::FieldValueInvalid, message);
        }
    }
}

impl Kind for Folder {
    const INFO: &'static KindInfo = &FOLDER;
    type Status = ObjectStatus;
    fn validate(&self, errors: &mut FieldErrors) {
        validate_display(&self.display_name, &self.description, errors);
    }
}

impl Kind for Project {
    const INFO: &'static KindInfo = &PROJECT;
    type Status = ObjectStatus;
    fn validate(&self, errors: &mut FieldErrors) {
        validate_display(&self.display_name, &self.description, errors);
    }
}

impl Kind for Namespace {
    const INFO: &'static KindInfo = &NAMESPACE;
    type Status = ObjectStatus;
    fn validate(&self, errors: &mut FieldErrors) {
        validate_display(&self.display_name, &self.description, errors);
    }
}

impl Kind for Group {
    const INFO: &'static KindInfo = &GROUP;
    type Status = ObjectStatus;
    fn validate(&self, errors: &mut FieldErrors) {
        validate_text("spec.displayName", &self.display_name, 256, errors);
        if self.members.len() > MAX_GROUP_MEMBERS {
            errors.push(
                "spec.members",
                FieldReason::FieldValueTooLong,
                format!("a group holds at most {MAX_GROUP_MEMBERS} members"),
            );
        }
        for (i, member) in self.members.iter().enumerate() {
            crate::validation::validate_name(&format!("spec.members[{i}]"), member, errors);
        }
    }
}

impl Kind for Identity {
    const INFO: &'static KindInfo = &IDENTITY;
    type Status = ObjectStatus;
    fn validate(&self, errors: &mut FieldErrors) {
        validate_text("spec.displayName", &self.display_name, 256, errors);
    }

    fn requires_platform_admin(&self) -> bool {
        self.platform_admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shape() {
        assert_eq!(PROJECT.depth(), 2);
        let org_children: Vec<_> = ORG.children().map(|k| k.plural).collect();
        assert_eq!(org_children, ["folders", "identities", "groups"]);
        let project_children: Vec<_> = PROJECT.children().map(|k| k.plural).collect();
        assert_eq!(project_children, ["clusters"]);
        assert_eq!(KindInfo::by_plural("folders"), Some(&FOLDER));
    }
}
