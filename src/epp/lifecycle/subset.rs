//! The subset hint: the endpoints a data plane allows for one request
//! (`envoy.lb.subset_hint` / `x-gateway-destination-endpoint-subset`, gie-facts §1.1,
//! §1.6).
//!
//! Entries are `ip` or `ip:port`, given as a list or as one comma-separated string (Envoy's
//! header-to-metadata rules produce flat strings). An entry with a port matches that
//! endpoint exactly; an entry without one matches every port of the address (GIE's
//! newer rule, which data-parallel pods with one port per rank need). Entries that are
//! neither are ignored. A hint that is present but matches nothing leaves no candidate:
//! the request is refused with 503, never routed anywhere else (fail closed).
//!
//! Pure parsing and matching.

use std::net::{IpAddr, SocketAddr};

/// One allowed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allowed {
    Address(IpAddr),
    Endpoint(SocketAddr),
}

/// The endpoints a request may be routed to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubsetHint {
    allowed: Vec<Allowed>,
}

/// At most this many entries are kept: a hint names endpoints of one pool, and a
/// client-sized list must not cost unbounded memory or matching time.
const MAX_ENTRIES: usize = 4096;

impl SubsetHint {
    /// Parses hint values; each may hold several entries separated by commas.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> SubsetHint {
        let allowed = values
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(|entry| {
                let entry = entry.trim();
                if let Ok(addr) = entry.parse::<SocketAddr>() {
                    Some(Allowed::Endpoint(addr))
                } else {
                    // A bare IPv6 address may come bracketed.
                    let bare = entry.trim_start_matches('[').trim_end_matches(']');
                    bare.parse::<IpAddr>().ok().map(Allowed::Address)
                }
            })
            .take(MAX_ENTRIES)
            .collect();
        SubsetHint { allowed }
    }

    /// Whether the endpoint at `addr` is allowed.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.allowed.iter().any(|a| match *a {
            Allowed::Address(ip) => ip == addr.ip(),
            Allowed::Endpoint(ep) => ep == addr,
        })
    }

    /// No entry could be read: nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_with_a_port_match_exactly_and_bare_addresses_match_every_port() {
        let hint = SubsetHint::parse(["10.0.0.1:8000, 10.0.0.2", "[::1]"]);
        assert!(hint.allows(addr("10.0.0.1:8000")));
        assert!(!hint.allows(addr("10.0.0.1:8001")), "port given: exact");
        assert!(hint.allows(addr("10.0.0.2:8000")));
        assert!(hint.allows(addr("10.0.0.2:9999")), "no port: any rank");
        assert!(hint.allows(addr("[::1]:8000")));
        assert!(!hint.allows(addr("10.0.0.3:8000")));
    }

    #[test]
    fn garbage_entries_are_ignored_and_an_empty_hint_allows_nothing() {
        let hint = SubsetHint::parse(["not an address", "", "10.0.0.1:99999"]);
        assert!(hint.is_empty());
        assert!(!hint.allows(addr("10.0.0.1:8000")));
        let hint = SubsetHint::parse(["garbage,10.0.0.5:1"]);
        assert!(hint.allows(addr("10.0.0.5:1")));
    }
}
