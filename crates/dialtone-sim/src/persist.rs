//! Durable sim state: one redb file, written by one thread that commits whatever has queued
//! up in one transaction (group commit), so many concurrent calls share one fsync.

use std::path::Path;
use std::sync::{Arc, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

/// Resources by id, as JSON records.
const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
/// Faults, quotas and the id counter, as JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The Kubernetes objects of the sim's clusters, by `{cluster uid}/…`: read one cluster at
/// a time, when its API comes up, not at open.
const CLUSTER_OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_objects");
/// Instances' lifetimes by id, as JSON: kept after the instances are gone.
const LIFETIMES: TableDefinition<&str, &[u8]> = TableDefinition::new("lifetimes");

pub enum Table {
    Resources,
    Meta,
    ClusterObjects,
    Lifetimes,
}

/// One change to persist; `None` deletes the key.
pub struct Write {
    pub table: Table,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

type Batch = (Vec<Write>, oneshot::Sender<Result<(), String>>);

pub struct Persister {
    db: Arc<Database>,
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<Batch>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Everything the file holds.
pub struct Loaded {
    pub resources: Vec<Vec<u8>>,
    pub meta: Vec<(String, Vec<u8>)>,
    pub lifetimes: Vec<Vec<u8>>,
}

impl Persister {
    pub fn open(path: &Path) -> Result<(Self, Loaded), String> {
        let db = Arc::new(
            Database::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        );
        let wtx = db.begin_write().map_err(|e| e.to_string())?;
        wtx.open_table(RESOURCES).map_err(|e| e.to_string())?;
        wtx.open_table(META).map_err(|e| e.to_string())?;
        wtx.open_table(CLUSTER_OBJECTS).map_err(|e| e.to_string())?;
        wtx.open_table(LIFETIMES).map_err(|e| e.to_string())?;
        wtx.commit().map_err(|e| e.to_string())?;
        let loaded = {
            let rtx = db.begin_read().map_err(|e| e.to_string())?;
            let resources = rtx.open_table(RESOURCES).map_err(|e| e.to_string())?;
            let meta = rtx.open_table(META).map_err(|e| e.to_string())?;
            let lifetimes = rtx.open_table(LIFETIMES).map_err(|e| e.to_string())?;
            let mut loaded = Loaded {
                resources: Vec::new(),
                meta: Vec::new(),
                lifetimes: Vec::new(),
            };
            for entry in lifetimes.iter().map_err(|e| e.to_string())? {
                let (_, value) = entry.map_err(|e| e.to_string())?;
                loaded.lifetimes.push(value.value().to_vec());
            }
            for entry in resources.iter().map_err(|e| e.to_string())? {
                let (_, value) = entry.map_err(|e| e.to_string())?;
                loaded.resources.push(value.value().to_vec());
            }
            for entry in meta.iter().map_err(|e| e.to_string())? {
                let (key, value) = entry.map_err(|e| e.to_string())?;
                loaded
                    .meta
                    .push((key.value().to_string(), value.value().to_vec()));
            }
            loaded
        };
        let (queue, batches) = mpsc::channel::<Batch>();
        let writing = db.clone();
        let writer = std::thread::Builder::new()
            .name("sim-persister".into())
            .spawn(move || {
                let db = writing;
                while let Ok(first) = batches.recv() {
                    let mut group = vec![first];
                    group.extend(batches.try_iter());
                    let result = commit(&db, &group).map_err(|e| e.to_string());
                    for (_, done) in group {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok((
            Persister {
                db,
                queue: Some(queue),
                writer: Some(writer),
            },
            loaded,
        ))
    }

    /// Queues `writes`; the receiver answers once they are durable. Queue in the order the
    /// state changed (under the state's lock) and the file follows the same order.
    pub fn queue(&self, writes: Vec<Write>) -> oneshot::Receiver<Result<(), String>> {
        let (done, receiver) = oneshot::channel();
        let queue = self.queue.as_ref().expect("set until drop");
        if let Err(mpsc::SendError((_, done))) = queue.send((writes, done)) {
            let _ = done.send(Err("the sim's persister stopped".into()));
        }
        receiver
    }
}

impl Persister {
    /// The cluster objects whose keys start with `prefix`, as committed so far.
    pub fn cluster_objects(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        self.scan_cluster_objects(prefix, |key, value| (key.to_string(), value.to_vec()))
    }

    /// Only the keys of those objects: what finding or forgetting a cluster needs.
    pub fn cluster_object_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.scan_cluster_objects(prefix, |key, _| key.to_string())
    }

    fn scan_cluster_objects<T>(
        &self,
        prefix: &str,
        mut take: impl FnMut(&str, &[u8]) -> T,
    ) -> Result<Vec<T>, String> {
        let rtx = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = rtx.open_table(CLUSTER_OBJECTS).map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        for entry in table.range(prefix..).map_err(|e| e.to_string())? {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            if !key.value().starts_with(prefix) {
                break;
            }
            found.push(take(key.value(), value.value()));
        }
        Ok(found)
    }
}

impl Drop for Persister {
    /// Finishes the queued writes and closes the file, so that it can be opened again.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn commit(db: &Database, group: &[Batch]) -> Result<(), redb::Error> {
    let wtx = db.begin_write()?;
    {
        let mut resources = wtx.open_table(RESOURCES)?;
        let mut meta = wtx.open_table(META)?;
        let mut cluster_objects = wtx.open_table(CLUSTER_OBJECTS)?;
        let mut lifetimes = wtx.open_table(LIFETIMES)?;
        for write in group.iter().flat_map(|(writes, _)| writes) {
            let table = match write.table {
                Table::Resources => &mut resources,
                Table::Meta => &mut meta,
                Table::ClusterObjects => &mut cluster_objects,
                Table::Lifetimes => &mut lifetimes,
            };
            match &write.value {
                Some(value) => {
                    table.insert(write.key.as_str(), value.as_slice())?;
                }
                None => {
                    table.remove(write.key.as_str())?;
                }
            }
        }
    }
    wtx.commit()?;
    Ok(())
}
