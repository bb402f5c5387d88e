//! The real client address behind trusted reverse proxies (`PAM_TRUSTED_PROXIES`, protocol.md
//! "Malformed input at the edge"). `X-Forwarded-For` / RFC 7239 `Forwarded` are read only when the
//! TCP peer is inside one of the trusted CIDRs; then the hops are walked from the right and the
//! first one that is not itself a trusted proxy is the client (everything left of it could have
//! been written by the client). `Forwarded` wins over `X-Forwarded-For` when both are present.
//! Used by the WebSocket upgrade for the auth-failure throttle and the connection's logs.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// `PAM_TRUSTED_PROXIES`, parsed: CIDRs (a bare address is a /32 or /128).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `PAM_TRUSTED_PROXIES` entry that is neither a CIDR nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PAM_TRUSTED_PROXIES: {0:?} is not a CIDR (like 10.0.0.0/8) or an IP address")]
pub struct BadCidr(pub String);

impl TrustedProxies {
    /// Parses a comma list; blanks are skipped; `None` or an empty list trusts nobody.
    pub fn parse(list: Option<&str>) -> Result<Self, BadCidr> {
        let entries = list.unwrap_or_default().split(',').map(str::trim).filter(|e| !e.is_empty());
        let nets = entries
            .map(|entry| entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)).map_err(|_| BadCidr(entry.into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(nets.into_iter().map(|net| net.trunc()).collect()))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        // Walking right to left, the nearest address known to be real so far.
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => nearest = *ip,
                Some(ip) => return *ip,
                // "unknown", an obfuscated name or garbage: nothing left of it can be trusted.
                None => return nearest,
            }
        }
        nearest
    }
}

/// The hops of `Forwarded` (`for=` of each element), else of `X-Forwarded-For`, left to right,
/// over every instance of the header; `None` for a hop that is not an IP address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect::<Vec<_>>();
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded.iter().map(|element| for_param(element).and_then(parse_node)).collect();
    }
    values("x-forwarded-for").into_iter().map(parse_node).collect()
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn for_param(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| value.trim())
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.5:40000";

    #[test]
    fn cidrs_and_bare_addresses_parse_and_garbage_names_the_setting() {
        let trusted = TrustedProxies::parse(Some(" 10.0.0.0/8, 192.168.1.7 ,, fd00::/8")).unwrap();
        assert!(trusted.trusts(ip("10.200.0.1")) && trusted.trusts(ip("192.168.1.7")) && trusted.trusts(ip("fd00::1")));
        assert!(!trusted.trusts(ip("192.168.1.8")));
        assert!(trusted.trusts(ip("::ffff:10.1.2.3")), "IPv4-mapped peers match IPv4 CIDRs");
        let error = TrustedProxies::parse(Some("10.0.0.0/8,nope")).unwrap_err().to_string();
        assert!(error.starts_with("PAM_TRUSTED_PROXIES:") && error.contains("nope"), "{error}");
        assert_eq!(TrustedProxies::parse(None).unwrap(), TrustedProxies::default());
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let trusted = TrustedProxies::parse(Some("10.0.0.0/8")).unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(trusted.client_ip("203.0.113.9:5000".parse().unwrap(), &spoofed), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client_ip(PROXY.parse().unwrap(), &spoofed), ip("10.0.0.5"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse(Some("10.0.0.0/8")).unwrap();
        let peer: SocketAddr = PROXY.parse().unwrap();
        // The client prepended a fake hop; the ingress appended the real one; an inner proxy too.
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7"), ("x-forwarded-for", "10.0.0.9")]);
        assert_eq!(trusted.client_ip(peer, &xff), ip("198.51.100.7"));
        let forwarded = headers(&[("forwarded", r#"for=6.6.6.6, for="[2001:db8::7]:4711";proto=https, For=10.1.1.1:80"#)]);
        assert_eq!(trusted.client_ip(peer, &forwarded), ip("2001:db8::7"));
        assert_eq!(trusted.client_ip(peer, &headers(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")])), ip("10.0.0.1"));
        assert_eq!(trusted.client_ip(peer, &HeaderMap::new()), ip("10.0.0.5"));
    }

    #[test]
    fn an_unknown_or_garbled_hop_stops_the_walk_at_the_nearest_known_address() {
        let trusted = TrustedProxies::parse(Some("10.0.0.0/8")).unwrap();
        let peer: SocketAddr = PROXY.parse().unwrap();
        assert_eq!(trusted.client_ip(peer, &headers(&[("forwarded", "for=1.2.3.4, for=unknown, for=10.0.0.7")])), ip("10.0.0.7"));
        assert_eq!(trusted.client_ip(peer, &headers(&[("x-forwarded-for", "1.2.3.4, <script>")])), ip("10.0.0.5"));
    }
}
