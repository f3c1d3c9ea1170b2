//! Reading driver options out of the raw network config, with errors that name
//! the field and the value found.

use nearhost_kernel::link::{parse_mac, Mac};
use serde_json::{Map, Value};

use crate::error::{DatapathError, Result};

/// The top-level object of a network config.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub fn new(conf: &'a Value) -> Result<Self> {
        conf.as_object().map(|obj| Fields { obj }).ok_or_else(|| {
            DatapathError::config("(config)", "the network config must be a JSON object")
        })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(DatapathError::config(name, format!("expected a string, got {v}"))),
        }
    }

    /// Refuses `name` when it is set: a field this datapath cannot honour
    /// (`why` says so and what to do instead).
    pub fn refuse(&self, name: &str, why: &str) -> Result<()> {
        match self.get(name) {
            None => Ok(()),
            Some(_) => Err(DatapathError::config(name, why)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(DatapathError::config(name, format!("expected true or false, got {v}"))),
        }
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| {
                DatapathError::config(name, format!("expected a non-negative integer, got {v}"))
            }),
        }
    }

    /// An MTU: 68..=65535 (IPv4's minimum to the largest the kernel takes).
    pub fn mtu(&self, name: &str) -> Result<Option<u32>> {
        match self.u32(name)? {
            Some(m) if !(68..=65535).contains(&m) => {
                Err(DatapathError::config(name, format!("{m} is not a valid MTU (68..65535)")))
            }
            other => Ok(other),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<&'a str>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        DatapathError::config(name, format!("expected a list of strings, got {v}"))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => {
                Err(DatapathError::config(name, format!("expected a list of strings, got {v}")))
            }
        }
    }

    /// One of a fixed set of words; the error lists them.
    pub fn choice<T: Copy>(&self, name: &str, choices: &[(&str, T)]) -> Result<Option<T>> {
        let Some(text) = self.str(name)? else { return Ok(None) };
        choices.iter().find(|(w, _)| *w == text).map(|(_, v)| Some(*v)).ok_or_else(|| {
            let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            DatapathError::config(name, format!("{text:?} is not one of {}", words.join(", ")))
        })
    }

    /// An interface name as the kernel accepts it (1..=15 bytes, no '/', ':' or whitespace).
    pub fn ifname(&self, name: &str) -> Result<Option<&'a str>> {
        let Some(v) = self.str(name)? else { return Ok(None) };
        validate_ifname(v)
            .map_err(|reason| DatapathError::config(name, format!("{v:?} {reason}")))?;
        Ok(Some(v))
    }
}

/// Why `name` is not a valid interface name, if it isn't.
pub fn validate_ifname(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 15 {
        return Err("is longer than 15 bytes (the kernel's IFNAMSIZ limit)");
    }
    if name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err("contains a character the kernel refuses ('/', ':' or white space)");
    }
    Ok(())
}

/// A unicast MAC from config text.
pub fn parse_unicast_mac(field: &str, text: &str) -> Result<Mac> {
    let mac = parse_mac(text).ok_or_else(|| {
        DatapathError::config(field, format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
    })?;
    if mac[0] & 1 == 1 {
        return Err(DatapathError::config(field, format!("{text} is a multicast MAC address")));
    }
    if mac == [0; 6] {
        return Err(DatapathError::config(field, "00:00:00:00:00:00 is not a usable MAC address"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_field_and_value() {
        let conf =
            json!({"mtu": "big", "mode": "fast", "master": "a/b", "isGateway": 1, "mtu2": 9});
        let f = Fields::new(&conf).unwrap();
        let e = f.mtu("mtu").unwrap_err().to_string();
        assert!(e.starts_with("mtu:") && e.contains("\"big\""), "{e}");
        let e = f.choice("mode", &[("bridge", 1), ("vepa", 2)]).unwrap_err().to_string();
        assert!(e.contains("\"fast\"") && e.contains("bridge, vepa"), "{e}");
        assert!(f.ifname("master").unwrap_err().to_string().starts_with("master:"));
        assert!(f.bool("isGateway").unwrap_err().to_string().starts_with("isGateway:"));
        assert!(f.mtu("mtu2").unwrap_err().to_string().contains("not a valid MTU"));
        assert_eq!(f.str("absent").unwrap(), None);
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("abcdefghijklmno").is_ok());
        assert!(validate_ifname("abcdefghijklmnop").is_err());
        assert!(validate_ifname("a b").is_err());
        assert!(validate_ifname("").is_err());
    }
}
