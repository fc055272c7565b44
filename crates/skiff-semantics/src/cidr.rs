//! IPv4 CIDR parsing for the cluster's ranges (service CIDR, cluster and node pod CIDRs), on
//! `ipnet`: a network address (no host bits) with a prefix length the caller bounds.

use std::ops::RangeInclusive;

pub use ipnet::Ipv4Net;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}: expected an IPv4 network like 100.64.0.0/16")]
    Syntax(String),
    #[error("invalid CIDR {0:?}: host bits are set")]
    HostBits(String),
    #[error("invalid CIDR {cidr:?}: the prefix length must be {min} to {max}")]
    PrefixLength { cidr: String, min: u8, max: u8 },
}

/// Parses `a.b.c.d/N` as a network: no host bits, `N` within `prefix`.
pub fn parse_ipv4_network(s: &str, prefix: RangeInclusive<u8>) -> Result<Ipv4Net, CidrError> {
    let net: Ipv4Net = s.parse().map_err(|_| CidrError::Syntax(s.to_string()))?;
    if !prefix.contains(&net.prefix_len()) {
        return Err(CidrError::PrefixLength {
            cidr: s.to_string(),
            min: *prefix.start(),
            max: *prefix.end(),
        });
    }
    if net.addr() != net.network() {
        return Err(CidrError::HostBits(s.to_string()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn parses_networks_within_bounds() {
        let n = parse_ipv4_network("100.64.0.0/16", 8..=24).expect("valid");
        assert_eq!(n.network(), Ipv4Addr::new(100, 64, 0, 0));
        assert_eq!(n.prefix_len(), 16);
        assert!(n.contains(&Ipv4Addr::new(100, 64, 255, 1)));
        assert!(!n.contains(&Ipv4Addr::new(100, 65, 0, 1)));
        assert_eq!(n.to_string(), "100.64.0.0/16");
    }

    #[test]
    fn rejects_syntax_host_bits_and_prefix_out_of_range() {
        for bad in [
            "100.64.0.0",
            "100.64.0.0/",
            "100.64.0.0/x",
            "fd00::/64",
            "1.2.3/8",
            "",
        ] {
            assert!(
                matches!(parse_ipv4_network(bad, 0..=32), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_ipv4_network("100.64.0.1/16", 8..=24),
            Err(CidrError::HostBits(_))
        ));
        assert!(matches!(
            parse_ipv4_network("100.64.0.0/25", 8..=24),
            Err(CidrError::PrefixLength {
                min: 8,
                max: 24,
                ..
            })
        ));
        assert!(matches!(
            parse_ipv4_network("10.0.0.0/7", 8..=24),
            Err(CidrError::PrefixLength { .. })
        ));
        assert!(parse_ipv4_network("100.64.0.0/33", 0..=32).is_err());
    }
}
