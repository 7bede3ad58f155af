//! The frame nearly every capture is made of, decoded in one pass: Ethernet
//! II with no VLAN tag, IPv4 with a 20-byte header and no fragmentation,
//! TCP with its whole header captured and no options but timestamps
//! (Linux's layout), an IP length that holds both headers. Recognising it
//! takes a few byte compares; anything else (or anything odd) is left to
//! the layered decode, which also reports every error. The segment read
//! here is the one the layered decode reads from the same frame: a test
//! below holds them equal on random frames.

use super::tcp::timestamps_only;
use super::{ip::PROTO_TCP, Addr, Segment, TcpFlags, TcpOptions, Tunnels};

/// Ethernet header, IPv4 header without options, fixed TCP header.
const HEADERS: usize = 14 + 20 + 20;
const IPV4_HEADER: usize = 20;
const ETHERNET_HEADER: usize = 14;
const TCP_AT: usize = ETHERNET_HEADER + IPV4_HEADER;

/// Where the TCP header ends and how long the IP packet is, for a frame
/// of the plain shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plain {
    /// IP total length (both headers and the payload), no more than the
    /// wire carried.
    ip_len: usize,
    /// TCP header with options.
    tcp_header: usize,
    /// (TSval, TSecr), when the options are timestamps.
    timestamps: Option<(u32, u32)>,
}

/// Whether an Ethernet frame has the plain shape. `wire_len` is the
/// frame's length on the wire, at least what was captured.
#[inline(always)]
pub(super) fn ethernet_ipv4_tcp(frame: &[u8], wire_len: usize) -> Option<Plain> {
    let h = frame.first_chunk::<HEADERS>()?;
    // IPv4 ethertype, version 4 with IHL 5, TCP, neither "more
    // fragments" nor a fragment offset ("don't fragment" may be set).
    if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 || h[23] != PROTO_TCP {
        return None;
    }
    if h[20] & 0x3f != 0 || h[21] != 0 {
        return None;
    }
    // The IP length as stated, or as far as the wire carried it when the
    // frame was cut on the way (a stated 0 fails below, as it should: the
    // layers take it).
    let stated = u16::from_be_bytes([h[16], h[17]]) as usize;
    let ip_len = stated.min(wire_len - ETHERNET_HEADER);
    let tcp_header = (h[TCP_AT + 12] >> 4) as usize * 4;
    // The IP length holds both headers; the TCP header was captured whole.
    if tcp_header < 20 || ip_len < IPV4_HEADER + tcp_header || frame.len() < TCP_AT + tcp_header {
        return None;
    }
    let options = &frame[HEADERS..TCP_AT + tcp_header];
    let timestamps = timestamps_only(options);
    if !options.is_empty() && timestamps.is_none() {
        return None;
    }
    Some(Plain {
        ip_len,
        tcp_header,
        timestamps,
    })
}

/// The segment of a frame `ethernet_ipv4_tcp` found plain. Built by value
/// where the caller holds it, with no enum around it to be copied out of.
#[inline(always)]
pub(super) fn segment(frame: &[u8], plain: Plain) -> Segment<'_> {
    let Plain {
        ip_len,
        tcp_header,
        timestamps,
    } = plain;
    let h = &frame[..TCP_AT + tcp_header];
    let t = &h[TCP_AT..];
    let raw_options = &t[20..];
    Segment {
        src: Addr::v4([h[26], h[27], h[28], h[29]]),
        dst: Addr::v4([h[30], h[31], h[32], h[33]]),
        ip_len: ip_len as u32,
        dont_fragment: h[20] & 0x40 != 0,
        src_port: u16::from_be_bytes([t[0], t[1]]),
        dst_port: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags: TcpFlags(t[13]),
        window: u16::from_be_bytes([t[14], t[15]]),
        payload_len: (ip_len - IPV4_HEADER - tcp_header) as u32,
        options: TcpOptions {
            timestamps,
            ..TcpOptions::default()
        },
        raw_options,
        tunnels: Tunnels::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{decode_layered, tunnel, LinkType};
    use super::*;

    #[test]
    fn a_plain_data_segment_takes_the_one_pass_path() {
        let spec = TcpSpec {
            options: vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9],
            ..TcpSpec::default()
        };
        let frame = eth_ipv4_tcp(&spec);
        let plain = ethernet_ipv4_tcp(&frame, frame.len()).expect("plain");
        let seg = segment(&frame, plain);
        assert_eq!(seg.options.timestamps, Some((7, 9)));
        assert_eq!(seg.payload_len, 10);
        assert!(seg.dont_fragment);
        let layered = decode_layered(
            LinkType::Ethernet,
            &frame,
            frame.len(),
            &tunnel::DEFAULT_PORTS,
        );
        assert_eq!(Ok(seg), layered);
    }

    #[test]
    fn a_frame_cut_on_the_wire_is_as_long_as_the_wire_carried_it() {
        let frame = eth_ipv4_tcp(&TcpSpec {
            payload: 1000,
            ..TcpSpec::default()
        });
        let cut = &frame[..96];
        let seg = segment(cut, ethernet_ipv4_tcp(cut, 96).expect("plain"));
        assert_eq!((seg.ip_len, seg.payload_len), (82, 42));
        let layered = decode_layered(LinkType::Ethernet, cut, 96, &tunnel::DEFAULT_PORTS);
        assert_eq!(Ok(seg), layered);
    }

    #[test]
    fn odd_frames_are_left_to_the_layered_decode() {
        let plain = eth_ipv4_tcp(&TcpSpec::default());
        let odd = [
            with_vlan_tags(&plain, &[0x8100]),
            eth_ipv4_tcp(&TcpSpec {
                ip_options: 4,
                ..TcpSpec::default()
            }),
            eth_ipv6_tcp(&TcpSpec::default(), &[]),
            plain[..50].to_vec(),
            eth_ipv4_tcp(&syn_with_options()),
        ];
        for frame in odd {
            assert_eq!(ethernet_ipv4_tcp(&frame, frame.len()), None, "{frame:02x?}");
        }
        // A fragment, and an IP length too short for both headers.
        let mut fragment = plain.clone();
        fragment[20] |= 0x20;
        assert_eq!(ethernet_ipv4_tcp(&fragment, fragment.len()), None);
        let mut short = plain.clone();
        short[16..18].copy_from_slice(&39u16.to_be_bytes());
        assert_eq!(ethernet_ipv4_tcp(&short, short.len()), None);
    }

    /// Whatever the bytes, a frame the one-pass path takes decodes to the
    /// same segment by the layers.
    #[test]
    fn the_one_pass_path_reads_what_the_layers_read_on_any_bytes() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut taken = 0;
        let base = [
            eth_ipv4_tcp(&TcpSpec::default()),
            eth_ipv4_tcp(&TcpSpec {
                options: vec![1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8],
                payload: 100,
                ..TcpSpec::default()
            }),
            eth_ipv4_tcp(&syn_with_options()),
        ];
        for round in 0..300_000 {
            let mut frame = base[round % base.len()].clone();
            // A few random bytes anywhere in the headers, a random cut
            // and a random wire length.
            for _ in 0..(xorshift(&mut state) % 4) {
                let at = (xorshift(&mut state) % 80) as usize % frame.len();
                let r = xorshift(&mut state);
                frame[at] = match r % 4 {
                    0 => r as u8 >> 4,
                    1 => r as u8 | 0x40,
                    _ => (r >> 8) as u8,
                };
            }
            if xorshift(&mut state).is_multiple_of(3) {
                let cut = (xorshift(&mut state) % frame.len() as u64) as usize;
                frame.truncate(cut);
            }
            let wire = frame.len() + (xorshift(&mut state) % 3) as usize * 40;
            let layered = decode_layered(LinkType::Ethernet, &frame, wire, &tunnel::DEFAULT_PORTS);
            if let Some(plain) = ethernet_ipv4_tcp(&frame, wire) {
                taken += 1;
                assert_eq!(
                    Ok(segment(&frame, plain)),
                    layered,
                    "{frame:02x?} wire {wire}"
                );
            }
        }
        assert!(taken > 50_000, "the one-pass path took only {taken}");
    }
}
