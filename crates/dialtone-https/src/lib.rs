//! How every TLS listener of Dialtone (its API, and its clusters' APIs) treats slow clients:
//! the TLS handshake, the request headers and the request body each have
//! [`SLOW_CLIENT_LIMIT`] to arrive, so that a client that sends slowly, or opens a
//! connection and sends nothing, is cut off instead of holding the connection for ever.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

pub const SLOW_CLIENT_LIMIT: Duration = Duration::from_secs(10);

/// A connection server that closes a connection whose request headers take longer than
/// [`SLOW_CLIENT_LIMIT`].
pub fn http_server() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(SLOW_CLIENT_LIMIT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(SLOW_CLIENT_LIMIT);
    builder
}
