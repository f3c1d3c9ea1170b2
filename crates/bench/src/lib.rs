pub mod error;
pub mod report;
pub(crate) mod hist;
pub(crate) mod schedule;
pub mod proto;
pub(crate) mod http;
pub(crate) mod timeline;
