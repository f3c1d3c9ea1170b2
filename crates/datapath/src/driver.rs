//! The datapath trait and the registry of drivers. Adding a datapath means adding
//! a file with a driver and one line in [`DATAPATHS`].

use serde_json::Value;

use crate::container;
use crate::context::{AddRequest, CheckRequest, DelRequest, Namespace, Outcome};
use crate::error::{DatapathError, Result};

pub trait Datapath {
    /// Read-only checks against the host (the parent exists, the MTU fits) made
    /// before any address is reserved or link created.
    fn preflight(&self, host: &mut Namespace) -> Result<()>;

    /// Creates the container interface (and any host side), addresses, routes.
    /// On error, everything it created is gone again. Called after
    /// [`preflight_add`], which has checked the interface names are free.
    fn add(
        &self, host: &mut Namespace, sandbox: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome>;

    /// Removes what ADD made. `sandbox` is `None` when the namespace is gone or
    /// was not given; DEL then cleans up what lives outside it. The usual DEL:
    /// the container interface goes, and with it everything the kernel ties
    /// to it (a veth's host end, its routes and neighbour entries).
    fn del(
        &self, host: &mut Namespace, sandbox: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        let _ = host;
        container::delete_if_present(sandbox, req.ifname)
    }

    /// Verifies the attachment still matches `req.prev`; the error says what differs.
    fn check(
        &self, host: &mut Namespace, sandbox: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()>;

    /// Whether the datapath can take new attachments (CNI STATUS).
    fn status(&self, host: &mut Namespace) -> Result<()> {
        self.preflight(host)
    }

    /// The interface names ADD creates in the container for `ifname` (a bond
    /// adds its members).
    fn sandbox_names(&self, ifname: &str) -> Vec<String> {
        vec![ifname.to_string()]
    }
}

/// What runs before an ADD reserves anything: the driver's host checks, and
/// every name it will create must be free in the container (ADD never takes
/// over an interface the container already has).
pub fn preflight_add(
    driver: &dyn Datapath, host: &mut Namespace, sandbox: &mut Namespace, ifname: &str,
) -> Result<()> {
    driver.preflight(host)?;
    for name in driver.sandbox_names(ifname) {
        container::ensure_ifname_free(sandbox, &name)?;
    }
    Ok(())
}

/// A named driver constructor: validates the config and builds the driver.
pub struct Registration {
    pub name: &'static str,
    pub build: fn(&Value) -> Result<Box<dyn Datapath>>,
}

/// Every datapath nearhost knows, by the name used in `"datapath"`.
pub const DATAPATHS: &[Registration] = &[
    crate::drivers::macvlan::REGISTRATION,
    crate::drivers::ipvlan::REGISTRATION,
    crate::drivers::bridge::REGISTRATION,
    crate::drivers::routed::REGISTRATION,
    crate::drivers::netkit::REGISTRATION,
    crate::drivers::vxlan::REGISTRATION,
    crate::drivers::sriov::REGISTRATION,
    crate::drivers::sriov_bond::REGISTRATION,
    crate::drivers::hostdev::REGISTRATION,
];

/// Builds the driver named by the config's `datapath` field.
pub fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let names = || DATAPATHS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ");
    let name = match conf.get("datapath") {
        None | Some(Value::Null) => {
            return Err(DatapathError::config(
                "datapath",
                format!("is required (one of {})", names()),
            ))
        }
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(DatapathError::config("datapath", format!("expected a string, got {v}")))
        }
    };
    let reg = DATAPATHS.iter().find(|r| r.name == name).ok_or_else(|| {
        DatapathError::config("datapath", format!("unknown datapath {name:?} (known: {})", names()))
    })?;
    let driver = (reg.build)(conf)?;
    match crate::host_reach::HostReach::parse(conf)? {
        None => Ok(driver),
        Some(reach) if crate::host_reach::DIRECT.contains(&name) => {
            Ok(Box::new(crate::host_reach::WithHostReach { inner: driver, reach }))
        }
        Some(_) => Err(DatapathError::config(
            "hostReach",
            format!(
                "is for the datapaths that bypass the host ({}); {name} already reaches the host through its veth",
                crate::host_reach::DIRECT.join(", ")
            ),
        )),
    }
}
