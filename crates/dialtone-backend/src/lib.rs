//! The clouds `dialtone server` runs against. Each is built into the server's
//! [`Backend`](dialtone_server::backend::Backend) here, so that the server and the
//! controllers depend on no cloud: [`sim`], the built-in simulated cloud, and [`aws`].

pub mod aws;
pub mod sim;
