//! Hand-built frames for the decoder's tests: every byte is set here, so a
//! test states exactly what it feeds in.

/// What goes into a test segment.
pub struct TcpSpec {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: usize,
    /// Raw TCP option bytes, padded to a multiple of 4 here.
    pub options: Vec<u8>,
    /// IPv4 option bytes (a multiple of 4).
    pub ip_options: usize,
}

impl Default for TcpSpec {
    fn default() -> Self {
        TcpSpec {
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack: 2000,
            flags: 0x18, // PSH ACK
            window: 512,
            payload: 10,
            options: Vec::new(),
            ip_options: 0,
        }
    }
}

fn tcp_bytes(spec: &TcpSpec) -> Vec<u8> {
    let mut options = spec.options.clone();
    while !options.len().is_multiple_of(4) {
        options.push(0);
    }
    let mut t = Vec::new();
    t.extend_from_slice(&spec.src_port.to_be_bytes());
    t.extend_from_slice(&spec.dst_port.to_be_bytes());
    t.extend_from_slice(&spec.seq.to_be_bytes());
    t.extend_from_slice(&spec.ack.to_be_bytes());
    t.push((((20 + options.len()) / 4) as u8) << 4);
    t.push(spec.flags);
    t.extend_from_slice(&spec.window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(&options);
    t.resize(t.len() + spec.payload, 0xab);
    t
}

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Ethernet / IPv4 10.0.0.1 -> 10.0.0.2 (DF set) / TCP.
pub fn eth_ipv4_tcp(spec: &TcpSpec) -> Vec<u8> {
    let tcp = tcp_bytes(spec);
    let ihl = 20 + spec.ip_options;
    let mut f = ethernet(0x0800);
    f.push(0x40 | (ihl / 4) as u8);
    f.push(0);
    f.extend_from_slice(&((ihl + tcp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.resize(f.len() + spec.ip_options, 1); // NOP options
    f.extend_from_slice(&tcp);
    f
}

/// Ethernet / IPv4 192.168.0.1 -> 192.168.0.2 / UDP to VXLAN's port 4789
/// / VXLAN (VNI 42) / `inner`, an Ethernet frame.
pub fn in_vxlan(inner: &[u8]) -> Vec<u8> {
    let mut f = ethernet(0x0800);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + 8 + 8 + inner.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 2]);
    f.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5]);
    f.extend_from_slice(&((8 + 8 + inner.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 42, 0]);
    f.extend_from_slice(inner);
    f
}

/// Ethernet / IPv6 fd00::1 -> fd00::2 / extension headers / TCP. Each
/// extension is (protocol number, length in bytes).
pub fn eth_ipv6_tcp(spec: &TcpSpec, exts: &[(u8, usize)]) -> Vec<u8> {
    let tcp = tcp_bytes(spec);
    let ext_len: usize = exts.iter().map(|e| e.1).sum();
    let mut f = ethernet(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((ext_len + tcp.len()) as u16).to_be_bytes());
    f.push(exts.first().map_or(6, |e| e.0));
    f.push(64);
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = 1;
    f.extend_from_slice(&a);
    a[15] = 2;
    f.extend_from_slice(&a);
    for (i, &(kind, len)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(6, |e| e.0);
        let len_byte = match kind {
            44 => 0,
            51 => (len / 4 - 2) as u8,
            _ => (len / 8 - 1) as u8,
        };
        f.push(next);
        f.push(len_byte);
        f.resize(f.len() + len - 2, 0);
    }
    f.extend_from_slice(&tcp);
    f
}

/// Inserts VLAN tags (each with the given TPID) after the MAC addresses.
pub fn with_vlan_tags(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for tpid in tpids {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x2a]); // VLAN 42
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// Linux cooked capture v1 around an IP packet.
pub fn sll_v1(ip: &[u8], protocol: u16) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    f.extend_from_slice(&protocol.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// Linux cooked capture v2 around an IP packet.
pub fn sll_v2(ip: &[u8], protocol: u16) -> Vec<u8> {
    let mut f = protocol.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend_from_slice(ip);
    f
}

/// A SYN with MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
pub fn syn_with_options() -> TcpSpec {
    TcpSpec {
        flags: 0x02,
        payload: 0,
        options: vec![
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ],
        ..TcpSpec::default()
    }
}

/// A xorshift64 step: pseudo-random numbers for mutation tests, with no
/// dependency, the same every run.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
