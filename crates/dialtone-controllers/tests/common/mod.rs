//! What the controllers' integration tests share.

use dialtone_store::registry::Registry;
use dialtone_types::kinds::{FOLDER, PROJECT};
use dialtone_types::{Folder, Object, Org, Project, ResourcePath};

/// Creates the org `acme`, its folder `eng` and the project `web` there; the project's path.
pub async fn acme_project(registry: &Registry) -> ResourcePath {
    let org = ResourcePath::org("acme");
    registry
        .create(None, Object::new("acme", Org::default()))
        .await
        .unwrap();
    registry
        .create(Some(&org), Object::new("eng", Folder::default()))
        .await
        .unwrap();
    let folder = org.child(&FOLDER, "eng");
    registry
        .create(Some(&folder), Object::new("web", Project::default()))
        .await
        .unwrap();
    folder.child(&PROJECT, "web")
}
