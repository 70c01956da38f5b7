//! Broker addresses: `host:port`, with IPv6 literals in brackets (`[::1]:61613`).
//!
//! Guarantees: parsing never panics; [`BrokerAddr`]'s `Display` output parses back to the same
//! value (IPv6 literals are bracketed again).

use std::fmt;
use std::str::FromStr;

/// Where a STOMP broker listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BrokerAddr {
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddr {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> BrokerAddr {
        BrokerAddr {
            host: host.into(),
            port,
        }
    }
}

/// Why a string is not a `host:port` broker address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker address {input:?}: {reason} (expected host:port or [ipv6]:port)")]
pub struct AddrError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for BrokerAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrError {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| err("missing `]`"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| err("missing `:port` after `]`"))?;
            (host, port)
        } else {
            let (host, port) = t.rsplit_once(':').ok_or_else(|| err("missing `:port`"))?;
            if host.contains(':') {
                return Err(err("IPv6 literals must be written in brackets"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(err("host holds a space or `/`"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| err("port is not a number 0-65535"))?;
        if port == 0 {
            return Err(err("port 0"));
        }
        Ok(BrokerAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for (s, host, port) in [
            ("broker.example.org:61613", "broker.example.org", 61613),
            ("127.0.0.1:1", "127.0.0.1", 1),
            ("[::1]:61614", "::1", 61614),
            (" localhost:6163 ", "localhost", 6163),
        ] {
            let a: BrokerAddr = s.parse().unwrap();
            assert_eq!(a, BrokerAddr::new(host, port));
            assert_eq!(a.to_string().parse::<BrokerAddr>().unwrap(), a);
        }
        assert_eq!(BrokerAddr::new("::1", 5).to_string(), "[::1]:5");
    }

    #[test]
    fn rejects_bad_addresses() {
        for s in [
            "",
            "host",
            ":61613",
            "host:",
            "host:x",
            "host:70000",
            "host:0",
            "::1:61613",
            "[::1]61613",
            "[::1",
            "[]:1",
            "a b:1",
        ] {
            assert!(s.parse::<BrokerAddr>().is_err(), "{s:?} parsed");
        }
    }
}
