//! The real dialtone binary (filled in with the server).
pub struct DevServer;
