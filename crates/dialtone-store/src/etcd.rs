//! The etcd backend: an etcd v3 cluster through the `etcd-client` crate. Revisions, compares,
//! watches and compaction map one to one onto etcd's own.

use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType,
    GetOptions, PutOptions, Txn as EtcdTxn, TxnOp, WatchOptions,
};
use futures::StreamExt;

use crate::{
    Event, EventKind, KeyRange, KeyValue, LeaseId, Op, RangeResult, Result, Revision, Store,
    StoreError, Txn, TxnOutcome, WatchStream,
};

/// The store over an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

/// How many times a request is tried in all before its error is returned.
const ATTEMPTS: usize = 5;

/// What a request does, which decides whether its failure may be retried.
#[derive(Clone, Copy)]
enum Request {
    /// Safe to retry whatever happened.
    Read,
    /// Retried only when it surely reached no member, so that it cannot apply twice.
    Write,
}

/// How long to wait before trying a failed request again, after `attempt` earlier retries;
/// `None` when its error should be returned. Waits grow by 100 ms per retry.
fn retry_wait(request: Request, attempt: usize, e: &etcd_client::Error) -> Option<Duration> {
    let retryable = match request {
        Request::Read => matches!(classify(e), StoreError::Unavailable(_)),
        Request::Write => never_sent(e),
    };
    (retryable && attempt + 1 < ATTEMPTS).then(|| Duration::from_millis(100 * (attempt as u64 + 1)))
}

impl EtcdStore {
    /// Connects to `endpoints` (`host:port`), balancing over them; a member that dies is
    /// routed around.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot reach etcd at {endpoints:?}: {e}"))
            })?;
        Ok(EtcdStore { client })
    }

    /// Parses `etcd://host:port,host:port`.
    pub fn parse_url(url: &str) -> Option<Vec<String>> {
        let hosts = url.strip_prefix("etcd://")?;
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        (!endpoints.is_empty()).then_some(endpoints)
    }
}

fn map_error(e: etcd_client::Error) -> StoreError {
    classify(&e)
}

/// Whether etcd refused a request because its lease has ended.
fn is_lease_gone(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

fn lease_error(lease: LeaseId, e: etcd_client::Error) -> StoreError {
    if is_lease_gone(&e) {
        StoreError::LeaseNotFound(lease)
    } else {
        map_error(e)
    }
}

/// Maps an etcd error onto the store's: revisions out of range, or no member answering.
fn classify(e: &etcd_client::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("required revision has been compacted") {
        // The exact compacted revision is not in the message; callers only need the fact.
        return StoreError::Compacted {
            requested: 0,
            compacted: 0,
        };
    }
    if text.contains("required revision is a future revision") {
        return StoreError::FutureRevision {
            requested: 0,
            current: 0,
        };
    }
    match e {
        etcd_client::Error::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) =>
        {
            StoreError::Unavailable(text)
        }
        // A connection that broke mid-request (a member that died) comes as a status whose
        // code varies (unknown, cancelled) but whose source is the transport's error.
        etcd_client::Error::GRpcStatus(s)
            if std::error::Error::source(s).is_some_and(|e| e.is::<tonic::transport::Error>()) =>
        {
            StoreError::Unavailable(text)
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            StoreError::Unavailable(text)
        }
        _ => StoreError::Internal(text),
    }
}

/// True when the request surely reached no member, so that retrying cannot apply it twice.
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("connection refused")
        || text.contains("tcp connect error")
        || text.contains("connect error")
}

fn convert_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> Result<RangeResult> {
        let mut options = GetOptions::new().with_limit(limit as i64);
        options = match &range.end {
            Some(end) => options.with_range(end.clone()),
            None => options.with_from_key(),
        };
        if let Some(rev) = at.filter(|r| *r > 0) {
            options = options.with_revision(rev);
        }
        let mut attempt = 0;
        loop {
            let mut kv = self.client.kv_client();
            match kv.get(range.start.clone(), Some(options.clone())).await {
                Ok(response) => {
                    let revision = response.header().map_or(0, |h| h.revision());
                    return Ok(RangeResult {
                        kvs: response.kvs().iter().map(convert_kv).collect(),
                        more: response.more(),
                        revision: at.filter(|r| *r > 0).unwrap_or(revision),
                    });
                }
                Err(e) => match retry_wait(Request::Read, attempt, &e) {
                    Some(wait) => {
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(map_error(e)),
                },
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| EtcdCompare::mod_revision(c.key.clone(), CompareOp::Equal, c.mod_revision))
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => TxnOp::put(
                    key.clone(),
                    value.clone(),
                    lease.map(|id| PutOptions::new().with_lease(id)),
                ),
                Op::Delete { key } => TxnOp::delete(key.clone(), None),
            })
            .collect();
        let request = EtcdTxn::new().when(compares).and_then(ops);
        let mut attempt = 0;
        loop {
            let mut kv = self.client.kv_client();
            match kv.txn(request.clone()).await {
                Ok(response) if response.succeeded() => {
                    let revision = response.header().map_or(0, |h| h.revision());
                    return Ok(TxnOutcome::Committed { revision });
                }
                Ok(_) => return Ok(TxnOutcome::Conflict),
                Err(e) if is_lease_gone(&e) => {
                    let lease = txn.ops.iter().find_map(|op| match op {
                        Op::Put { lease, .. } => *lease,
                        Op::Delete { .. } => None,
                    });
                    return Err(StoreError::LeaseNotFound(lease.unwrap_or_default()));
                }
                Err(e) => match retry_wait(Request::Write, attempt, &e) {
                    Some(wait) => {
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(map_error(e)),
                },
            }
        }
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut kv = self.client.kv_client();
        kv.compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let seconds = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let response = self
            .client
            .lease_client()
            .grant(seconds, None)
            .await
            .map_err(map_error)?;
        Ok(response.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let gone = |e| lease_error(lease, e);
        let (mut keeper, mut responses) = self
            .client
            .lease_client()
            .keep_alive(lease)
            .await
            .map_err(gone)?;
        keeper.keep_alive().await.map_err(gone)?;
        match responses.message().await.map_err(gone)? {
            // etcd answers a lease it no longer has with a time to live of zero.
            Some(answer) if answer.ttl() > 0 => Ok(()),
            Some(_) => Err(StoreError::LeaseNotFound(lease)),
            None => Err(StoreError::Unavailable(
                "etcd closed the keep-alive stream".into(),
            )),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) => match lease_error(lease, e) {
                StoreError::LeaseNotFound(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn watch(&self, range: KeyRange, from: Revision) -> Result<WatchStream> {
        let mut options = WatchOptions::new()
            .with_start_revision(from.max(1))
            .with_prev_key();
        options = match &range.end {
            Some(end) => options.with_range(end.clone()),
            None => options.with_from_key(),
        };
        let mut client = self.client.watch_client();
        let stream = client
            .watch(range.start.clone(), Some(options))
            .await
            .map_err(map_error)?;
        Ok(Box::pin(async_stream::stream! {
            let mut stream = stream;
            while let Some(response) = stream.next().await {
                let response = match response {
                    Ok(r) => r,
                    Err(e) => { yield Err(map_error(e)); return; }
                };
                if response.compact_revision() > 0 {
                    yield Err(StoreError::Compacted { requested: from, compacted: response.compact_revision() });
                    return;
                }
                if response.canceled() {
                    yield Err(StoreError::Unavailable(format!("etcd cancelled the watch: {}", response.cancel_reason())));
                    return;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let kind = match event.event_type() {
                        EventType::Put => EventKind::Put,
                        EventType::Delete => EventKind::Delete,
                    };
                    yield Ok(Event { kind, kv: convert_kv(kv), prev: event.prev_kv().map(convert_kv) });
                }
            }
            yield Err(StoreError::Unavailable("the etcd watch stream ended".into()));
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_one_or_more_members() {
        assert_eq!(
            EtcdStore::parse_url("etcd://a:2379,,b:2379"),
            Some(vec!["a:2379".to_string(), "b:2379".to_string()])
        );
        assert_eq!(EtcdStore::parse_url("etcd://"), None);
        assert_eq!(EtcdStore::parse_url("http://a:2379"), None);
    }

    fn io(message: &str) -> etcd_client::Error {
        etcd_client::Error::IoError(std::io::Error::other(message.to_string()))
    }

    #[test]
    fn errors_say_whether_a_member_may_answer_a_retry() {
        let status = |code| etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"));
        for unavailable in [
            status(tonic::Code::Unavailable),
            status(tonic::Code::DeadlineExceeded),
            io("reset"),
        ] {
            assert!(
                matches!(classify(&unavailable), StoreError::Unavailable(_)),
                "{unavailable}"
            );
        }
        for internal in [
            status(tonic::Code::InvalidArgument),
            status(tonic::Code::Unknown),
        ] {
            assert!(
                matches!(classify(&internal), StoreError::Internal(_)),
                "{internal}"
            );
        }
        assert!(matches!(
            classify(&io(
                "etcdserver: mvcc: required revision has been compacted"
            )),
            StoreError::Compacted { .. }
        ));
    }

    #[test]
    fn only_a_refused_connection_is_surely_unsent() {
        for unsent in [
            "Connection refused (os error 111)",
            "tcp connect error",
            "connect error: x",
        ] {
            assert!(never_sent(&io(unsent)), "{unsent}");
        }
        assert!(!never_sent(&io("connection reset by peer")));
    }

    #[test]
    fn reads_retry_while_no_member_answers_and_writes_only_when_surely_unsent() {
        let refused = io("Connection refused (os error 111)");
        let reset = io("connection reset by peer");
        let invalid = etcd_client::Error::GRpcStatus(tonic::Status::invalid_argument("x"));
        let waits = |request, e: &etcd_client::Error| {
            (0..ATTEMPTS + 1)
                .map(|attempt| retry_wait(request, attempt, e).map(|d| d.as_millis()))
                .collect::<Vec<_>>()
        };
        let backing_off = vec![Some(100), Some(200), Some(300), Some(400), None, None];
        assert_eq!(waits(Request::Read, &refused), backing_off);
        assert_eq!(waits(Request::Read, &reset), backing_off);
        assert_eq!(waits(Request::Write, &refused), backing_off);
        let never = vec![None; ATTEMPTS + 1];
        assert_eq!(
            waits(Request::Write, &reset),
            never,
            "a reset write may have applied"
        );
        assert_eq!(waits(Request::Read, &invalid), never);
        assert_eq!(waits(Request::Write, &invalid), never);
    }
}
