//! Manual gates (`/gate/*`) and rollback gates (`/rollback/*`), keyed by canary name and
//! namespace. Unknown gates are closed. With a state file the gates survive a restart: every
//! change rewrites the file atomically (temporary file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Which family of gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    /// `/gate/check`, `/gate/open`, `/gate/close` (Flagger's key `<name>.<namespace>`).
    Gate,
    /// `/rollback/check`, `/rollback/open`, `/rollback/close` (`rollback.<name>.<namespace>`).
    Rollback,
}

/// One gate as listed by `GET /gates` and stored in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub kind: GateKind,
    pub name: String,
    pub namespace: String,
    pub open: bool,
    /// Unix time (seconds) of the last open/close.
    pub updated_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    gates: Vec<Gate>,
}

type Key = (GateKind, String, String);

/// Errors of the gate store.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot read the gate state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the gate state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the gate state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The gate store.
#[derive(Debug)]
pub struct GateStore {
    gates: Mutex<BTreeMap<Key, Gate>>,
    path: Option<PathBuf>,
}

impl GateStore {
    /// A store kept in memory only (Flagger's behaviour).
    pub fn in_memory() -> Self {
        Self {
            gates: Mutex::new(BTreeMap::new()),
            path: None,
        }
    }

    /// A store persisted to `path`, loaded from it when it exists.
    pub async fn persistent(path: PathBuf) -> Result<Self, GateError> {
        let gates = match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let state: StateFile =
                    serde_json::from_slice(&bytes).map_err(|source| GateError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                state
                    .gates
                    .into_iter()
                    .map(|g| ((g.kind, g.name.clone(), g.namespace.clone()), g))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(GateError::Read { path, source }),
        };
        Ok(Self {
            gates: Mutex::new(gates),
            path: Some(path),
        })
    }

    /// Whether the gate is open; unknown gates are closed.
    pub async fn is_open(&self, kind: GateKind, name: &str, namespace: &str) -> bool {
        let gates = self.gates.lock().await;
        gates
            .get(&(kind, name.to_string(), namespace.to_string()))
            .is_some_and(|g| g.open)
    }

    /// Opens or closes a gate, then persists the store when it has a file. The in-memory state
    /// changes even when writing the file fails.
    pub async fn set(
        &self,
        kind: GateKind,
        name: &str,
        namespace: &str,
        open: bool,
    ) -> Result<(), GateError> {
        let mut gates = self.gates.lock().await;
        let gate = Gate {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
            open,
            updated_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        gates.insert((kind, name.to_string(), namespace.to_string()), gate);
        if let Some(path) = &self.path {
            let state = StateFile {
                version: 1,
                gates: gates.values().cloned().collect(),
            };
            // The lock is held while writing so that files are written in the order of changes.
            write_atomically(path, &state)
                .await
                .map_err(|source| GateError::Write {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// All known gates, sorted by kind, name and namespace.
    pub async fn list(&self) -> Vec<Gate> {
        self.gates.lock().await.values().cloned().collect()
    }
}

async fn write_atomically(path: &Path, state: &StateFile) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&bytes).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await?;
        // Make the rename itself durable.
        if let Ok(d) = tokio::fs::File::open(&dir).await {
            let _ = d.sync_all().await;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_gates_are_closed_and_transitions_work() {
        let store = GateStore::in_memory();
        assert!(!store.is_open(GateKind::Gate, "podinfo", "test").await);
        store
            .set(GateKind::Gate, "podinfo", "test", true)
            .await
            .unwrap();
        assert!(store.is_open(GateKind::Gate, "podinfo", "test").await);
        assert!(!store.is_open(GateKind::Rollback, "podinfo", "test").await);
        store
            .set(GateKind::Gate, "podinfo", "test", false)
            .await
            .unwrap();
        assert!(!store.is_open(GateKind::Gate, "podinfo", "test").await);
        assert_eq!(store.list().await.len(), 1);
    }

    #[tokio::test]
    async fn state_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("gates-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gates.json");
        let _ = std::fs::remove_file(&path);
        let store = GateStore::persistent(path.clone()).await.unwrap();
        store.set(GateKind::Rollback, "a", "b", true).await.unwrap();
        store.set(GateKind::Gate, "a", "b", true).await.unwrap();
        store.set(GateKind::Gate, "a", "b", false).await.unwrap();
        drop(store);
        let again = GateStore::persistent(path.clone()).await.unwrap();
        assert!(again.is_open(GateKind::Rollback, "a", "b").await);
        assert!(!again.is_open(GateKind::Gate, "a", "b").await);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            GateStore::persistent(path).await,
            Err(GateError::Parse { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
