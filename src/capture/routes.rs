//! Which addresses the kernel routes to which interface: the host routes
//! (a /32 or /128 destination, no gateway) of /proc/net/route and
//! /proc/net/ipv6_route. Routed CNIs (Calico's `cali*`, the AWS VPC CNI's
//! `eni*`, GKE's `gke*`, Azure's `azv*`, any point-to-point veth plugin)
//! give each pod one such route per address, to the host side of its veth:
//! so an interface with host routes leads to the pods whose addresses they
//! are, and a connection seen there has a local pod as its client or its
//! server (the `reporter`).
//!
//! Bridge CNIs and Cilium give no such routes: for their pods the
//! addresses of each veth's other end, read in the pod's namespace
//! (`peers.rs`), join the interface's list, and so do they on routed CNIs.
//!
//! A thread of its own reads both again every second (a pod's route and
//! address are added by its CNI just after its interface appears) and
//! publishes the copy; a connection's start only takes the copy in hand, so
//! a large routing table never stalls a capture thread.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the routes are read again.
const REFRESH: Duration = Duration::from_secs(1);

/// /proc/net/ipv6_route flags: the route is up; the local table's routes
/// to the host's own addresses, anycast ones, and rejecting ones lead to no
/// pod.
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;
const RTF_ANYCAST: u32 = 0x0010_0000;
const RTF_LOCAL: u32 = 0x8000_0000;

/// Host routes, by interface.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routes {
    by_interface: HashMap<Box<str>, Vec<IpAddr>>,
    /// Interfaces known to lead to a pod (a veth whose other end is in
    /// another namespace, or one with host routes), its addresses read or
    /// not.
    pods: std::collections::HashSet<Box<str>>,
}

impl Routes {
    /// From the text of /proc/net/route and /proc/net/ipv6_route; lines
    /// that do not parse are skipped.
    pub fn parse(v4: &str, v6: &str) -> Routes {
        let mut routes = Routes::default();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...: the
        // addresses in hex, in the kernel's (little-endian) byte order.
        for f in v4
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            let [iface, dest, gateway, _, _, _, _, mask, ..] = f[..] else {
                continue;
            };
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            if let (Some(dest), Some(0), Some(u32::MAX)) = (hex(dest), hex(gateway), hex(mask)) {
                // The kernel prints the address's bytes as a number of
                // this machine's byte order.
                let ip = Ipv4Addr::from(dest.to_ne_bytes());
                routes.add(iface, IpAddr::V4(ip));
            }
        }
        // Destination, its prefix length, source, its length, next hop,
        // metric, refcount, use, flags, device: hex, in network order.
        for f in v6.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            let [dest, prefix, _, _, next_hop, _, _, _, flags, iface] = f[..] else {
                continue;
            };
            let hex = |s: &str| u128::from_str_radix(s, 16).ok();
            let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
            let usable = flags & RTF_UP != 0 && flags & (RTF_LOCAL | RTF_ANYCAST | RTF_REJECT) == 0;
            if let (Some(dest), Some(0), "80", true) = (hex(dest), hex(next_hop), prefix, usable) {
                let ip = Ipv6Addr::from(dest);
                // The host's own addresses are local routes on `lo`-like
                // entries; link-local and multicast lead to no pod.
                if !ip.is_multicast() && !ip.is_unicast_link_local() {
                    routes.add(iface, IpAddr::V6(ip));
                }
            }
        }
        routes
    }

    /// The interface of the IPv4 default route (the uplink), from the text
    /// of /proc/net/route; the lowest metric's if there are several.
    pub fn default_interface(v4: &str) -> Option<String> {
        v4.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let [iface, dest, _, _, _, _, metric, mask, ..] = f[..] else {
                    return None;
                };
                let zero = |s: &str| u32::from_str_radix(s, 16) == Ok(0);
                (zero(dest) && zero(mask))
                    .then(|| (metric.parse::<u32>().unwrap_or(u32::MAX), iface))
            })
            .min()
            .map(|(_, iface)| iface.to_string())
    }

    fn add(&mut self, iface: &str, ip: IpAddr) {
        if iface == "lo" {
            return;
        }
        let ips = self.by_interface.entry(iface.into()).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }

    /// The host's routes now (none, if the tables cannot be read).
    pub fn read() -> Routes {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        Routes::parse(&read("/proc/net/route"), &read("/proc/net/ipv6_route"))
    }

    /// The host's routes and the veth peers' addresses now; what could
    /// not be read of the peers' (no `CAP_NET_ADMIN`, a kernel before 4.20)
    /// is returned beside.
    pub fn read_with_peers() -> (Routes, Option<std::io::Error>) {
        let mut routes = Routes::read();
        let admin = crate::privileges::CAP_NET_ADMIN;
        let error = match crate::privileges::with_one_raised(admin, super::peers::read) {
            Ok(found) => {
                routes.pods.extend(found.veths.into_iter().map(Into::into));
                for (iface, ip) in found.addresses {
                    routes.add(&iface, ip);
                }
                found.error
            }
            Err(e) => Some(e),
        };
        (routes, error)
    }

    /// Whether `iface` leads to a pod, whether or not its addresses are
    /// known.
    pub fn is_pod_interface(&self, iface: &str) -> bool {
        self.pods.contains(iface) || self.by_interface.contains_key(iface)
    }

    /// The addresses routed to `iface` alone, or of its veth's other end.
    pub fn behind(&self, iface: &str) -> &[IpAddr] {
        self.by_interface.get(iface).map_or(&[], Vec::as_slice)
    }
}

/// The host's routes, shared by the capture threads: a copy a thread of
/// its own replaces every second.
#[derive(Debug)]
pub struct HostRoutes {
    copy: RwLock<Arc<Routes>>,
}

impl HostRoutes {
    /// Reads the routes, and starts the thread that reads them again for
    /// as long as the exporter runs.
    pub fn new() -> std::io::Result<Arc<HostRoutes>> {
        let mut failing = false;
        let mut read = move || {
            let (routes, peers) = Routes::read_with_peers();
            // Said once when it starts failing, once when it recovers.
            match peers {
                Some(e) if !failing => {
                    failing = true;
                    let denied = matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM));
                    let why = if denied {
                        "; it needs CAP_NET_ADMIN"
                    } else {
                        ""
                    };
                    eprintln!(
                        "tcp-exporter: cannot read the addresses of the pods behind veths \
                         ({e}{why}): `reporter` finds only pods with a host route"
                    );
                }
                None if failing => {
                    failing = false;
                    eprintln!("tcp-exporter: reading the pods' addresses behind veths again");
                }
                _ => {}
            }
            Arc::new(routes)
        };
        let routes = Arc::new(HostRoutes {
            copy: RwLock::new(read()),
        });
        let shared = Arc::clone(&routes);
        std::thread::Builder::new()
            .name("routes".into())
            .spawn(move || loop {
                std::thread::sleep(REFRESH);
                let fresh = read();
                *shared.copy.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            })?;
        Ok(routes)
    }

    /// The routes, at most about a second old.
    pub fn current(&self) -> Arc<Routes> {
        Arc::clone(&self.copy.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As a node with Calico shows them: a default route, the node's
    // subnet, two pods' host routes, a route through a gateway.
    const V4: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
cali1a2b3c4d5e6\t0501F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n\
cali9f8e7d6c5b4\t0901F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n\
eth0\t0A0A0A0A\t010200C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";

    const V6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
fd00000000000000000000000000a105 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001 cali1a2b3c4d5e6\n\
fe800000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001 cali1a2b3c4d5e6\n\
fd000000000000000000000000000009 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0\n\
fd00000000000000000000000000beef 80 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n";

    #[test]
    fn host_routes_without_a_gateway_lead_to_their_interface() {
        let r = Routes::parse(V4, V6);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            r.behind("cali1a2b3c4d5e6"),
            [ip("10.244.1.5"), ip("fd00::a105")]
        );
        assert_eq!(r.behind("cali9f8e7d6c5b4"), [ip("10.244.1.9")]);
        // Prefixes, routes through a gateway, link-local: none.
        assert_eq!(r.behind("eth0"), [] as [IpAddr; 0]);
        assert_eq!(r.behind("nothere"), [] as [IpAddr; 0]);
    }

    #[test]
    fn the_uplink_is_the_default_route_s_interface() {
        assert_eq!(Routes::default_interface(V4).as_deref(), Some("eth0"));
        let two = "h\nbond0\t00000000\t01\t3\t0\t0\t100\t00000000\neth1\t00000000\t01\t3\t0\t0\t50\t00000000\n";
        assert_eq!(Routes::default_interface(two).as_deref(), Some("eth1"));
        assert_eq!(Routes::default_interface("h\n"), None);
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        let r = Routes::parse(
            "header\nshort line\ncali0\tZZ\t0\t0\t0\t0\t0\tFFFFFFFF\n",
            "x 80\n",
        );
        assert_eq!(r, Routes::default());
    }
}
