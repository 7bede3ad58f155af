//! The pods behind veths, by the peer's network namespace: for each veth
//! (or netkit device) of the host whose other end lives in another network
//! namespace, the global addresses of that other end. That is a pod's
//! `eth0` on every veth-based CNI, routed or bridged (Flannel's and the
//! bridge plugin's `veth*`, Cilium's `lxc*`), where host routes
//! (`routes.rs`) find only routed CNIs' pods.
//!
//! Read over rtnetlink, in two steps: a dump of the host's links gives each
//! veth's peer as an interface index in a namespace id (`IFLA_LINK`,
//! `IFLA_LINK_NETNSID`); then one dump of addresses per such namespace,
//! asked from the host's own namespace with `IFA_TARGET_NETNSID` (Linux
//! 4.20). The kernel answers that second question only to a caller with
//! `CAP_NET_ADMIN` over the pod's namespace, both when the socket is opened
//! and when it asks, so the reader opens it and asks with that capability
//! raised (`privileges::with_one_raised`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::netlink::{
    ifinfomsg, push_attribute, Attributes, Netlink, IFADDRMSG, IFINFOMSG, RTM_GETADDR, RTM_GETLINK,
    RTM_NEWADDR, RTM_NEWLINK,
};

const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_TARGET_NETNSID: u16 = 10;
const RT_SCOPE_UNIVERSE: u8 = 0;

/// A host interface whose other end is in another namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The host side's name.
    pub name: String,
    /// The other end's index, in its own namespace.
    pub index: u32,
    /// That namespace's id, as the host's namespace numbers it.
    pub netns: i32,
}

/// What one read found.
#[derive(Debug, Default)]
pub struct Found {
    /// The host's veths whose other end is in another namespace (the link
    /// dump, which needs no capability).
    pub veths: Vec<String>,
    /// `(host side's name, address)`: the global addresses of each one's
    /// other end.
    pub addresses: Vec<(String, IpAddr)>,
    /// The first namespace whose addresses could not be read (no
    /// `CAP_NET_ADMIN`, a kernel before 4.20); the others were read.
    pub error: Option<io::Error>,
}

/// Each veth of the host with the global addresses of its other end. An
/// error before the links are known is the read's.
pub fn read() -> io::Result<Found> {
    let mut socket = Netlink::open()?;
    let mut peers = Vec::new();
    socket.dump(RTM_GETLINK, &ifinfomsg(0), &mut |kind, body| {
        if kind == RTM_NEWLINK {
            peers.extend(parse_link(body));
        }
    })?;
    let mut namespaces: Vec<i32> = peers.iter().map(|p| p.netns).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let mut found = Found {
        veths: peers.iter().map(|p| p.name.clone()).collect(),
        ..Found::default()
    };
    for netns in namespaces {
        // An ifaddrmsg of zeros (every family, every interface), and the
        // namespace.
        let mut request = vec![0u8; IFADDRMSG];
        push_attribute(&mut request, IFA_TARGET_NETNSID, &netns.to_ne_bytes());
        let mut addresses = Vec::new();
        let dumped = socket.dump(RTM_GETADDR, &request, &mut |kind, body| {
            if kind == RTM_NEWADDR {
                addresses.extend(parse_address(body));
            }
        });
        match dumped {
            Ok(()) => {}
            // The namespace went away between the two dumps: its pod has.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
            // This namespace's pods are not found; the others still are.
            Err(e) => {
                found.error.get_or_insert(e);
                continue;
            }
        }
        for p in peers.iter().filter(|p| p.netns == netns) {
            found.addresses.extend(
                addresses
                    .iter()
                    .filter(|(index, _)| *index == p.index)
                    .map(|(_, ip)| (p.name.clone(), *ip)),
            );
        }
    }
    Ok(found)
}

/// A veth or netkit device from an `RTM_NEWLINK` body, if its other end is
/// in another namespace.
fn parse_link(body: &[u8]) -> Option<Peer> {
    let attributes = body.get(IFINFOMSG..)?;
    let (mut name, mut index, mut netns, mut kind) = (None, None, None, None);
    for (t, value) in Attributes(attributes) {
        match t {
            IFLA_IFNAME => name = c_string(value),
            IFLA_LINK => index = u32_of(value),
            IFLA_LINK_NETNSID => netns = u32_of(value).map(|v| v as i32),
            IFLA_LINKINFO => {
                kind = Attributes(value)
                    .find(|(t, _)| *t == IFLA_INFO_KIND)
                    .and_then(|(_, v)| c_string(v))
            }
            _ => {}
        }
    }
    let veth = matches!(kind.as_deref(), Some("veth" | "netkit"));
    match (name, index, netns) {
        (Some(name), Some(index), Some(netns)) if veth && netns >= 0 => {
            Some(Peer { name, index, netns })
        }
        _ => None,
    }
}

/// `(interface index, address)` from an `RTM_NEWADDR` body: global
/// addresses only (not link-local or host-scoped ones).
fn parse_address(body: &[u8]) -> Option<(u32, IpAddr)> {
    let header = body.get(..IFADDRMSG)?;
    let (family, scope) = (header[0], header[3]);
    let index = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    if scope != RT_SCOPE_UNIVERSE {
        return None;
    }
    let (mut address, mut local) = (None, None);
    for (t, value) in Attributes(body.get(IFADDRMSG..)?) {
        let ip = match (family as i32, value.len()) {
            (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?)),
            (libc::AF_INET6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(value).ok()?)),
            _ => continue,
        };
        match t {
            IFA_ADDRESS => address = Some(ip),
            IFA_LOCAL => local = Some(ip),
            _ => {}
        }
    }
    // On a point-to-point IPv4 interface IFA_ADDRESS is the far end's:
    // the interface's own is IFA_LOCAL.
    Some((index, local.or(address)?))
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

fn c_string(value: &[u8]) -> Option<String> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        push_attribute(&mut a, kind, value);
        a
    }

    fn link(name: &str, kind: &str, peer: Option<(u32, i32)>) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG];
        body.extend(attribute(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        body.extend(attribute(
            IFLA_LINKINFO,
            &attribute(IFLA_INFO_KIND, format!("{kind}\0").as_bytes()),
        ));
        if let Some((index, netns)) = peer {
            body.extend(attribute(IFLA_LINK, &index.to_ne_bytes()));
            body.extend(attribute(IFLA_LINK_NETNSID, &netns.to_ne_bytes()));
        }
        body
    }

    #[test]
    fn a_veth_with_its_peer_in_another_namespace_is_a_peer() {
        assert_eq!(
            parse_link(&link("vethab12", "veth", Some((2, 7)))),
            Some(Peer {
                name: "vethab12".into(),
                index: 2,
                netns: 7
            })
        );
        // Both ends in the host's namespace, another kind, a cut body.
        assert_eq!(parse_link(&link("veth0", "veth", None)), None);
        assert_eq!(parse_link(&link("vxlan0", "vxlan", Some((2, 7)))), None);
        assert_eq!(parse_link(&link("veth0", "veth", Some((2, -1)))), None);
        assert_eq!(parse_link(&[0; 8]), None);
    }

    fn address(family: u8, scope: u8, index: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 32, 0, scope];
        body.extend_from_slice(&index.to_ne_bytes());
        for (t, v) in attrs {
            body.extend(attribute(*t, v));
        }
        body
    }

    #[test]
    fn global_addresses_are_read_local_first() {
        let v4 = address(
            libc::AF_INET as u8,
            0,
            2,
            &[(IFA_ADDRESS, &[10, 0, 0, 1]), (IFA_LOCAL, &[10, 0, 0, 2])],
        );
        assert_eq!(parse_address(&v4), Some((2, "10.0.0.2".parse().unwrap())));
        let fd = "fd00::7".parse::<Ipv6Addr>().unwrap().octets();
        let v6 = address(libc::AF_INET6 as u8, 0, 3, &[(IFA_ADDRESS, &fd)]);
        assert_eq!(parse_address(&v6), Some((3, "fd00::7".parse().unwrap())));
        // Link scope (fe80::), an address of the wrong length, a cut header.
        assert_eq!(
            parse_address(&address(
                libc::AF_INET6 as u8,
                253,
                3,
                &[(IFA_ADDRESS, &fd)]
            )),
            None
        );
        assert_eq!(
            parse_address(&address(
                libc::AF_INET as u8,
                0,
                2,
                &[(IFA_ADDRESS, &[1, 2])]
            )),
            None
        );
        assert_eq!(parse_address(&[2, 0, 0]), None);
    }

    /// A namespace with one end of a veth in it, deleted when dropped (and
    /// the veth with it).
    struct Pod(String);

    impl Drop for Pod {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    fn ip(args: &[&str]) {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    }

    #[test]
    fn a_pod_s_addresses_are_found_behind_its_veth() {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 || std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1")
        {
            eprintln!("needs root to make a namespace: skipped");
            return;
        }
        let pid = std::process::id();
        let pod = Pod(format!("tcpx-peers-{pid}"));
        let host_side = format!("tcpxp{pid}");
        ip(&["netns", "add", &pod.0]);
        ip(&[
            "link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns", &pod.0,
        ]);
        ip(&["-n", &pod.0, "addr", "add", "10.79.0.2/32", "dev", "eth0"]);
        ip(&[
            "-n",
            &pod.0,
            "addr",
            "add",
            "fd79::2/128",
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", &pod.0, "link", "set", "eth0", "up"]);
        let read = read().unwrap();
        assert!(read.error.is_none(), "{:?}", read.error);
        assert!(read.veths.contains(&host_side));
        let found: Vec<IpAddr> = read
            .addresses
            .into_iter()
            .filter(|(name, _)| *name == host_side)
            .map(|(_, ip)| ip)
            .collect();
        // Global addresses only: not the link-local one IPv6 adds.
        assert_eq!(
            found,
            [
                "10.79.0.2".parse::<IpAddr>().unwrap(),
                "fd79::2".parse().unwrap()
            ]
        );
    }
}
