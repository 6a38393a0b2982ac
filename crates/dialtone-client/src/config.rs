//! The CLI configuration: named contexts, like kubeconfig. One file, YAML, private to its
//! owner (it holds tokens): `$DIALTONE_CONFIG`, or `~/.config/dialtone/config.yaml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

/// Replaces `path` with `text`, readable by its owner only: written beside it and renamed
/// over it, so a crash midway leaves the old file whole. For files that hold credentials.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    std::fs::rename(&temp, path)
}

/// One server and how to talk to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub name: String,
    /// `https://host:port`
    pub server: String,
    /// PEM of the CA that signed the server's certificate.
    pub certificate_authority_data: String,
    pub token: String,
    /// Defaults, so that paths can be short.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub folder: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    #[serde(default)]
    pub current_context: String,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

impl CliConfig {
    /// `$DIALTONE_CONFIG`, else `$XDG_CONFIG_HOME/dialtone/config.yaml`, else
    /// `~/.config/dialtone/config.yaml`.
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os("DIALTONE_CONFIG") {
            return PathBuf::from(path);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".config")
            });
        base.join("dialtone").join("config.yaml")
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml_ng::from_str(&text).map_err(|e| {
                ClientError::Config(format!(
                    "{} is not a valid configuration: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
            Err(e) => Err(ClientError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the file, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let text =
            serde_yaml_ng::to_string(self).map_err(|e| ClientError::Config(e.to_string()))?;
        write_private(path, &text)
            .map_err(|e| ClientError::Config(format!("cannot write {}: {e}", path.display())))
    }

    /// The named context, or the current one.
    pub fn context(&self, name: Option<&str>) -> Result<&Context, ClientError> {
        let name = name.unwrap_or(&self.current_context);
        if name.is_empty() {
            return Err(ClientError::Config(
                "no current context: run `dialtone server --dev`, or `dialtone config use-context NAME`".into(),
            ));
        }
        self.contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "no context named `{name}`; see `dialtone config get-contexts`"
                ))
            })
    }

    pub fn context_mut(&mut self, name: &str) -> Option<&mut Context> {
        self.contexts.iter_mut().find(|c| c.name == name)
    }

    /// Adds or replaces a context, keeping its defaults if it existed.
    pub fn upsert(&mut self, mut context: Context) {
        match self.context_mut(&context.name) {
            Some(existing) => {
                if context.org.is_empty() {
                    context.org = existing.org.clone();
                }
                if context.folder.is_empty() {
                    context.folder = existing.folder.clone();
                }
                if context.project.is_empty() {
                    context.project = existing.project.clone();
                }
                *existing = context;
            }
            None => self.contexts.push(context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_upsert() {
        let dir = std::env::temp_dir().join(format!("dialtone-config-{}", std::process::id()));
        let path = dir.join("config.yaml");
        let mut config = CliConfig::default();
        config.upsert(Context {
            name: "dev".into(),
            server: "https://a".into(),
            org: "acme".into(),
            ..Default::default()
        });
        config.upsert(Context {
            name: "dev".into(),
            server: "https://b".into(),
            ..Default::default()
        });
        config.current_context = "dev".into();
        config.save(&path).unwrap();
        let loaded = CliConfig::load(&path).unwrap();
        let dev = loaded.context(None).unwrap();
        assert_eq!(
            (dev.server.as_str(), dev.org.as_str()),
            ("https://b", "acme"),
            "defaults survive a refresh"
        );
        assert!(loaded.context(Some("nope")).is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
