//! Where the server may send an alert webhook. A webhook URL is chosen by
//! whoever sets a model's serving policy, and deliveries are triggered by
//! whoever can move its canary, so without a rule the server is a
//! request forgery tool: it would post (and retry) to loopback services,
//! the private network, link-local addresses and cloud metadata endpoints.
//!
//! The rule: a destination's host is resolved once, every address it
//! resolves to must be public (or inside a CIDR block the operator
//! allow-listed in `[serving] webhook_allow`), and the delivery connects to
//! the address that was checked (pinned: no second lookup an attacker's
//! DNS could answer differently). Deliveries never follow redirects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// A CIDR block (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (all of its bits).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits_match(a: &[u8], b: &[u8], prefix: u8) -> bool {
            let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
            if a[..whole] != b[..whole] {
                return false;
            }
            rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
        }
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => bits_match(&a.octets(), &b.octets(), self.prefix),
            (IpAddr::V6(a), IpAddr::V6(b)) => bits_match(&a.octets(), &b.octets(), self.prefix),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4 address mapped or translated into IPv6 (`::ffff:a.b.c.d`,
/// `64:ff9b::a.b.c.d`) as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

/// Why an address is not a public destination, or `None` if it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if a == 169 && b == 254 {
        return Some("link-local (cloud metadata services live here)");
    }
    if a == 127 {
        return Some("loopback");
    }
    if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        return Some("private");
    }
    if a == 100 && (64..128).contains(&b) {
        return Some("shared (carrier-grade NAT; some cloud metadata services)");
    }
    if a == 0 || ip.is_broadcast() || a >= 224 {
        return Some("unspecified, multicast or reserved");
    }
    if (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        return Some("special-purpose");
    }
    None
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    // Only global unicast (2000::/3) is public, less the blocks that embed
    // or stand for something else.
    if s[0] & 0xe000 != 0x2000 {
        return Some(match s[0] {
            x if x & 0xfe00 == 0xfc00 => "unique local (private)",
            x if x & 0xffc0 == 0xfe80 => "link-local",
            x if x & 0xff00 == 0xff00 => "multicast",
            _ => "not global unicast",
        });
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || s[0] == 0x2002 || (s[0] == 0x2001 && s[1] == 0) {
        return Some("special-purpose (documentation, 6to4 or Teredo)");
    }
    None
}

/// A destination checked against the rule: where to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// The checked address the delivery connects to.
    pub addr: SocketAddr,
}

/// Resolves `url`'s host once and checks every address it resolves to;
/// returns the first, which the delivery is pinned to. Every refusal names
/// the URL, the address and why.
pub fn check(url: &str, allow: &[Cidr]) -> Result<Destination, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{} is not a URL: {e}", crate::names::show(url)))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => {
            return Err(format!(
                "{} is not an http:// or https:// URL",
                crate::names::show(url)
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{} has no host", crate::names::show(url)))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: cannot resolve {host:?}: {e}", crate::names::show(url)))?
            .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{}: {host:?} resolves to nothing", crate::names::show(url)))?;
    for a in &addrs {
        if let Some(why) = non_public(a.ip())
            && !allow.iter().any(|c| c.contains(a.ip()))
        {
            return Err(format!(
                "{} reaches {} ({why}); webhooks go only to public addresses \
                 unless the operator allow-lists the block in [serving] webhook_allow",
                crate::names::show(url),
                a.ip()
            ));
        }
    }
    Ok(Destination { addr: first })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_refused_unless_allow_listed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "https://localhost/",
        ] {
            let e = check(url, &[]).unwrap_err();
            assert!(e.contains("webhook_allow"), "{url}: {e}");
        }
        let allow = [Cidr::parse("127.0.0.0/8").unwrap()];
        assert_eq!(
            check("http://127.0.0.1:9/x", &allow).unwrap().addr,
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(check("http://[::ffff:127.0.0.1]/", &allow).is_ok());
        assert!(check("http://10.0.0.1/", &allow).is_err());
        assert_eq!(
            check("https://8.8.8.8/", &[]).unwrap().addr,
            "8.8.8.8:443".parse().unwrap()
        );
        assert!(check("http://[2606:4700::1111]/", &[]).is_ok());
        assert!(check("ftp://8.8.8.8/", &[]).is_err());
    }

    #[test]
    fn cidr_blocks_parse_and_match_by_prefix() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let c = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(c.contains("172.31.255.255".parse().unwrap()));
        assert!(!c.contains("172.32.0.0".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }
}
