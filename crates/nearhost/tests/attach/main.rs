//! `nearhost attach` against a real Docker engine (started by each test, with
//! every root in a temporary directory): containers run with `--network none`,
//! attached, reaching each other and the gateway over macvlan and bridge,
//! detached, listed after removal, collected; Docker-specific errors; and the
//! quick-start of docs/attach.md run exactly as written.

use nearhost_testkit as support;

use nearhost_testkit::attach as attach_support;

use nearhost_testkit::images;

mod docker;
mod docker_errors;
mod flows;
mod quick_start;
