//! The classic BPF program each af-packet socket runs in the kernel: which
//! frames its ring takes (a user's `-f` filter, compiled by libpcap) and
//! how many bytes of each. A plain TCP segment (over IPv4, or over IPv6
//! with TCP as the first next header, on any link) is kept up to the end
//! of its TCP header and no further: the analysis never reads payload, and
//! every byte of ring costs the kernel a copy and the reader a share of a
//! cache line fetched from the CPU that wrote it (docs/performance.md).
//! Every other frame (tunnels, tags the NIC did not take off, IPv6
//! extension headers) is kept up to the snap length, as libpcap keeps it,
//! for the decoder to open or report. A frame that says it carries TCP but
//! whose headers do not hold together (a fragment, an IP header length
//! under 20, a version other than the link's) is cut where its bytes
//! point, never before its first 20 IP bytes, from which the decoder
//! reports it as it did before.

use super::CaptureError;
use crate::decode::LinkType;

// Classic BPF instructions, made of libc's parts (linux/filter.h).
const fn code(parts: u32) -> u16 {
    parts as u16
}
const LD_W_LEN: u16 = code(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN); // A = the packet's length
const LD_H_ABS: u16 = code(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS); // A = u16 at k
const LD_B_ABS: u16 = code(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS); // A = u8 at k
const LD_B_IND: u16 = code(libc::BPF_LD | libc::BPF_B | libc::BPF_IND); // A = u8 at X + k
const LDX_B_MSH: u16 = code(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH); // X = 4 * (u8 at k & 0xf)
const ALU_ADD_K: u16 = code(libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K);
const ALU_ADD_X: u16 = code(libc::BPF_ALU | libc::BPF_ADD | libc::BPF_X);
const ALU_AND_K: u16 = code(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K);
const ALU_RSH_K: u16 = code(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K);
const MISC_TAX: u16 = code(libc::BPF_MISC | libc::BPF_TAX);
const MISC_TXA: u16 = code(libc::BPF_MISC | libc::BPF_TXA);
const JMP_JA: u16 = code(libc::BPF_JMP | libc::BPF_JA);
const JMP_JEQ_K: u16 = code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K);
const JMP_JGT_K: u16 = code(libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K);
const JMP_JGE_K: u16 = code(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K);
const JMP_JGE_X: u16 = code(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_X);
const RET_K: u16 = code(libc::BPF_RET | libc::BPF_K);
const RET_A: u16 = code(libc::BPF_RET | libc::BPF_A);

/// The most instructions the kernel takes in a socket filter.
const MAX_INSTRUCTIONS: usize = libc::BPF_MAXINSNS as usize;

/// libpcap's link types for the frames an af-packet socket sees, and the
/// bytes before their IP header: Ethernet (and loopback), or frames that
/// start at the network header (`-i any`, and links without an Ethernet
/// header such as tun or WireGuard; libpcap's DLT_RAW on Linux).
pub(super) fn link_of(link: LinkType) -> (i32, u32) {
    const DLT_EN10MB: i32 = 1;
    const DLT_RAW: i32 = 12;
    match link {
        LinkType::Ethernet => (DLT_EN10MB, 14),
        _ => (DLT_RAW, 0),
    }
}

/// Compiles `filter` with libpcap for the socket's `link` (Ethernet, or
/// raw IP) and makes every frame it accepts go through [`header_cut`] (an
/// empty filter accepts every frame).
pub fn compile_filter(
    filter: &str,
    snaplen: u32,
    link: LinkType,
) -> Result<Vec<libc::sock_filter>, CaptureError> {
    let (dlt, link_len) = link_of(link);
    let cut = header_cut(link_len, snaplen);
    if filter.is_empty() {
        return Ok(cut);
    }
    let bad = |message: String| CaptureError::Filter {
        filter: filter.to_string(),
        message,
    };
    let dead = pcap::Capture::dead(pcap::Linktype(dlt)).map_err(|e| bad(e.to_string()))?;
    let program = dead.compile(filter, true).map_err(|e| bad(e.to_string()))?;
    let instructions = program.get_instructions();
    let cut_at = instructions.len() as u32;
    let mut out = instructions
        .iter()
        .enumerate()
        .map(|(i, insn)| {
            // The pcap crate shows an instruction only as "code jt jf k".
            let text = insn.to_string();
            let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
            let mut next = || -> Result<u64, CaptureError> {
                parts
                    .next()
                    .and_then(Result::ok)
                    .ok_or_else(|| bad(format!("unreadable BPF instruction {text:?}")))
            };
            let code = next()? as u16;
            let (jt, jf, k) = (next()? as u8, next()? as u8, next()? as u32);
            if code == RET_K && k != 0 {
                // Accepted: on to the cut, which follows the program.
                return Ok(libc::sock_filter {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: cut_at - (i as u32 + 1),
                });
            }
            Ok(libc::sock_filter { code, jt, jf, k })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.extend(cut);
    if out.len() > MAX_INSTRUCTIONS {
        return Err(bad(format!(
            "{} BPF instructions with the header cut; the kernel takes at most {MAX_INSTRUCTIONS}",
            out.len()
        )));
    }
    Ok(out)
}

/// Where a jump goes: the next instruction, or a label.
#[derive(Clone, Copy)]
enum To {
    Next,
    Label(&'static str),
}

/// A program being written: instructions whose jumps name labels, made
/// into offsets by `finish`.
#[derive(Default)]
struct Asm {
    code: Vec<(u16, To, To, u32)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) -> &mut Self {
        self.code.push((code, To::Next, To::Next, k));
        self
    }

    /// A conditional jump: to `yes` when it holds, else to `no`.
    fn jump(&mut self, code: u16, k: u32, yes: To, no: To) -> &mut Self {
        self.code.push((code, yes, no, k));
        self
    }

    fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.code.len()));
        self
    }

    /// The program, with every jump's offset from the instruction after it.
    /// Panics on a label not defined or behind its jump: a mistake in this
    /// file, caught by its tests, never by input.
    fn finish(&self) -> Vec<libc::sock_filter> {
        let offset = |at: usize, to: To| -> u8 {
            let target = match to {
                To::Next => return 0,
                To::Label(name) => self.labels.iter().find(|l| l.0 == name).expect("a label").1,
            };
            u8::try_from(target - (at + 1)).expect("a forward jump under 256")
        };
        self.code
            .iter()
            .enumerate()
            .map(|(at, &(code, yes, no, k))| libc::sock_filter {
                code,
                jt: offset(at, yes),
                jf: offset(at, no),
                k,
            })
            .collect()
    }
}

/// The program that gives a frame's accept length, with `link_len` bytes
/// before the IP header: for a frame that says it carries TCP, the end of
/// its TCP header (never more than `snaplen`, never less than 20 bytes of
/// IP header), for every other frame `snaplen`. Every load is behind a check of the frame's length: a
/// classic BPF load past the end drops the frame, and a runt must reach
/// the decoder to be counted.
fn header_cut(link_len: u32, snaplen: u32) -> Vec<libc::sock_filter> {
    use To::{Label, Next};
    let keep = Label("keep");
    let mut asm = Asm::default();
    // A minimal IPv4 header, and the first 20 bytes of an IPv6 one.
    asm.op(LD_W_LEN, 0)
        .jump(JMP_JGE_K, link_len + 20, Next, keep);
    if link_len >= 2 {
        asm.op(LD_H_ABS, link_len - 2)
            .jump(JMP_JEQ_K, 0x0800, Label("v4"), Next)
            .jump(JMP_JEQ_K, 0x86dd, Label("v6"), keep);
    } else {
        asm.op(LD_B_ABS, link_len)
            .op(ALU_AND_K, 0xf0)
            .jump(JMP_JEQ_K, 0x40, Label("v4"), Next)
            .jump(JMP_JEQ_K, 0x60, Label("v6"), keep);
    }
    asm.label("v4")
        .op(LD_B_ABS, link_len + 9)
        .jump(JMP_JEQ_K, 6, Next, keep)
        // The TCP header's data offset byte must be in the frame. (A
        // fragment, an IP header length under 20 or a version other than
        // the link's is reported by the decoder from the first 20 bytes,
        // and at least that many are kept.)
        .op(LDX_B_MSH, link_len)
        .op(MISC_TXA, 0)
        .op(ALU_ADD_K, link_len + 13)
        .op(MISC_TAX, 0)
        .op(LD_W_LEN, 0)
        .jump(JMP_JGE_X, 0, Next, keep)
        .op(LDX_B_MSH, link_len)
        .op(LD_B_IND, link_len + 12)
        .op(ALU_AND_K, 0xf0)
        .op(ALU_RSH_K, 2)
        .jump(JMP_JGE_K, 20, Next, keep)
        .op(ALU_ADD_X, 0)
        .op(ALU_ADD_K, link_len)
        .jump(JMP_JGT_K, snaplen, keep, Label("cut"))
        .label("v6")
        .op(LD_W_LEN, 0)
        .jump(JMP_JGE_K, link_len + 53, Next, keep)
        .op(LD_B_ABS, link_len + 6)
        .jump(JMP_JEQ_K, 6, Next, keep)
        .op(LD_B_ABS, link_len + 52)
        .op(ALU_AND_K, 0xf0)
        .op(ALU_RSH_K, 2)
        .jump(JMP_JGE_K, 20, Next, keep)
        .op(ALU_ADD_K, link_len + 40)
        .jump(JMP_JGT_K, snaplen, keep, Label("cut"))
        .label("cut")
        .op(RET_A, 0)
        .label("keep")
        .op(RET_K, snaplen);
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Next, PacketSource, PcapFile};
    use crate::decode::decode;
    use crate::decode::fixtures::{eth_ipv4_tcp, eth_ipv6_tcp, with_vlan_tags, TcpSpec};

    extern "C" {
        /// libpcap's classic BPF interpreter: the accept length `program`
        /// gives a packet of `len` bytes, all of them present (0: refused).
        /// `struct bpf_insn` is laid out as `struct sock_filter`.
        fn bpf_filter(program: *const libc::sock_filter, p: *const u8, wire: u32, len: u32) -> u32;
        /// libpcap's check of a program's shape: 1 when every jump stays
        /// inside it and it ends in a return.
        fn bpf_validate(program: *const libc::sock_filter, len: libc::c_int) -> libc::c_int;
    }

    fn run(program: &[libc::sock_filter], frame: &[u8]) -> u32 {
        // SAFETY: reads the program's instructions, no more.
        let valid = unsafe { bpf_validate(program.as_ptr(), program.len() as libc::c_int) };
        assert_eq!(valid, 1, "a program out of shape: {program:?}");
        let len = frame.len() as u32;
        // SAFETY: the program was just validated, and the interpreter reads
        // at most `len` bytes of `frame`.
        unsafe { bpf_filter(program.as_ptr(), frame.as_ptr(), len, len) }
    }

    /// A frame as a socket would see it: its link type and bytes, and its
    /// length on the wire.
    struct Seen {
        link: LinkType,
        data: Vec<u8>,
        wire_len: u32,
    }

    impl Seen {
        /// An Ethernet frame as a socket sees it on `-i any`: from its
        /// network header on.
        fn as_any_sees_it(&self) -> Seen {
            let cut = 14.min(self.data.len());
            Seen {
                link: LinkType::RawIp,
                data: self.data[cut..].to_vec(),
                wire_len: self.wire_len.saturating_sub(14),
            }
        }
    }

    /// Every frame of the test captures (the malformed ones among them),
    /// and each Ethernet frame again from its network header on, as a
    /// socket on `-i any` sees it.
    fn frames() -> Vec<Seen> {
        let mut paths = Vec::new();
        for dir in ["testdata/pcaps", "testdata/pcaps/malformed"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in std::fs::read_dir(dir).expect("a test capture folder") {
                let path = entry.expect("an entry").path();
                if path
                    .extension()
                    .is_some_and(|x| x == "pcap" || x == "pcapng")
                {
                    paths.push(path);
                }
            }
        }
        paths.sort();
        let mut out = Vec::new();
        for path in paths {
            let Ok(mut file) = PcapFile::open(&path, "") else {
                continue; // a malformed file header: no frames
            };
            let link = file.link_type();
            loop {
                match file.next() {
                    Ok(Next::Frame(f)) => {
                        let (data, wire_len) = (f.data.to_vec(), f.wire_len);
                        let seen = Seen {
                            link,
                            data,
                            wire_len,
                        };
                        if link == LinkType::Ethernet && seen.data.len() > 14 {
                            out.push(seen.as_any_sees_it());
                        }
                        out.push(seen);
                    }
                    Ok(Next::Skipped(_) | Next::Idle(_) | Next::Run(_)) => {}
                    Ok(Next::End) | Err(_) => break,
                }
            }
        }
        out
    }

    /// Ethernet / IPv4 10.0.0.1 -> 10.0.0.2 / `payload` of `protocol`.
    fn outer_ipv4(protocol: u8, payload: &[u8], fragment: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
        f.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1]);
        f.extend_from_slice(&fragment.to_be_bytes());
        f.extend_from_slice(&[64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(payload);
        f
    }

    /// Frames built here, each with every prefix of it: overlays (whose
    /// inner TCP header the cut must keep), tags, extension headers,
    /// fragments, IP options, and runts of each.
    fn built() -> Vec<Seen> {
        let spec = TcpSpec {
            payload: 300,
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ..TcpSpec::default()
        };
        let v4 = eth_ipv4_tcp(&spec);
        let inner_ip = &v4[14..];
        let mut vxlan = vec![0x12, 0x34, 0x12, 0xb5]; // UDP to 4789
        vxlan.extend_from_slice(&(16 + v4.len() as u16).to_be_bytes());
        // VNI 0x5a002a: read as a TCP header, its first byte says 20 bytes.
        vxlan.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0x5a, 0, 0x2a, 0]);
        vxlan.extend_from_slice(&v4);
        let mut short_v6 = eth_ipv6_tcp(&spec, &[]);
        short_v6[14 + 40 + 12] = 0x40; // a TCP header of 16 bytes
        let whole = [
            v4.clone(),
            short_v6,
            eth_ipv4_tcp(&TcpSpec {
                ip_options: 8,
                ..TcpSpec::default()
            }),
            eth_ipv6_tcp(&spec, &[]),
            eth_ipv6_tcp(&spec, &[(0, 8), (60, 16)]),
            with_vlan_tags(&v4, &[0x8100]),
            outer_ipv4(4, inner_ip, 0),
            outer_ipv4(17, &vxlan, 0),
            outer_ipv4(6, &v4[34..], 0x2000), // a first fragment
            outer_ipv4(6, &v4[34..], 0x0010), // a later one
        ];
        let mut out = Vec::new();
        for frame in whole {
            for len in 0..=frame.len() {
                let seen = Seen {
                    link: LinkType::Ethernet,
                    data: frame[..len].to_vec(),
                    wire_len: len as u32,
                };
                out.push(seen.as_any_sees_it());
                out.push(seen);
            }
        }
        out
    }

    fn link_len(link: LinkType) -> Option<u32> {
        matches!(link, LinkType::Ethernet | LinkType::RawIp).then(|| link_of(link).1)
    }

    /// What the decoder makes of `frame`'s first `len` bytes.
    fn decoded(seen: &Seen, len: u32) -> String {
        let len = (len as usize).min(seen.data.len());
        format!("{:?}", decode(seen.link, &seen.data[..len], seen.wire_len))
    }

    /// Cut or not, a frame decodes as it does at the snap length (the same
    /// segment, options and all, or the same error), no frame is refused,
    /// and a cut segment is cut at the shortest length that decodes so:
    /// one byte less and the decoder would see something else. At the snap
    /// lengths people use, and over every test capture.
    #[test]
    fn the_cut_keeps_what_the_decoder_reads_and_nothing_after_it() {
        let mut frames = frames();
        frames.extend(built());
        for snaplen in [54, 64, 96, 192, 262_144] {
            let (mut cut, mut tcp) = (0, 0);
            // Cut frames by link header length and IP version.
            let mut kinds = std::collections::BTreeSet::new();
            for seen in &frames {
                let Some(link_len) = link_len(seen.link) else {
                    continue;
                };
                let program = header_cut(link_len, snaplen);
                let len = run(&program, &seen.data);
                let whole = snaplen.min(seen.data.len() as u32);
                assert!(len > 0, "a frame refused: {:02x?}", seen.data);
                let want = decoded(seen, whole);
                assert_eq!(decoded(seen, len), want, "at {len} bytes of {whole}");
                tcp += usize::from(want.starts_with("Ok"));
                if len >= whole {
                    // Not cut: kept to the snap length, or cut at or past
                    // the frame's end.
                    assert!(len == snaplen || len as usize >= seen.data.len());
                    continue;
                }
                cut += 1;
                kinds.insert((link_len, seen.data[link_len as usize] >> 4));
                if want.starts_with("Ok") {
                    assert_ne!(
                        decoded(seen, len - 1),
                        want,
                        "cut at {len}: one byte less decodes the same"
                    );
                }
            }
            // Most data segments are longer than their headers (at 54
            // bytes, only those without options are cut).
            assert!(
                cut * if snaplen < 96 { 5 } else { 3 } > tcp,
                "at snap length {snaplen}: {cut} of {tcp} segments cut"
            );
            if snaplen >= 96 {
                let every = [(0, 4), (0, 6), (14, 4), (14, 6)];
                assert_eq!(kinds, every.into(), "cut at snap length {snaplen}");
            }
        }
    }

    /// With a user's filter, the frames it refuses are refused and the
    /// ones it takes are cut as with no filter, on Ethernet and on frames
    /// that start at the IP header.
    #[test]
    fn a_user_filter_decides_which_frames_and_the_cut_how_much() {
        let frames = frames();
        let links = [LinkType::Ethernet, LinkType::RawIp];
        for expression in [
            "tcp and greater 200",
            "tcp[tcpflags] & tcp-syn != 0",
            "ip6",
            "not tcp",
        ] {
            for link in links {
                let (dlt, link_len) = link_of(link);
                let program = compile_filter(expression, 192, link).expect("compiles");
                let dead = pcap::Capture::dead(pcap::Linktype(dlt)).expect("a dead capture");
                let libpcap = dead.compile(expression, true).expect("compiles");
                let cut = header_cut(link_len, 192);
                let (mut taken, mut refused) = (0, 0);
                for seen in frames.iter().filter(|s| s.link == link) {
                    let len = run(&program, &seen.data);
                    if libpcap.filter(&seen.data) {
                        taken += 1;
                        assert_eq!(len, run(&cut, &seen.data), "{expression}");
                    } else {
                        refused += 1;
                        assert_eq!(len, 0, "{expression}: a refused frame taken");
                    }
                }
                assert!(
                    taken > 0 && refused > 0,
                    "{expression} on {link:?}: {taken} taken, {refused} refused"
                );
            }
        }
    }

    /// A filter the kernel would take alone but not with the cut after it
    /// is a filter error that says so, not a failed setsockopt.
    #[test]
    fn a_filter_too_long_for_the_kernel_with_the_cut_is_refused_with_its_length() {
        let dead = pcap::Capture::dead(pcap::Linktype(1)).expect("a dead capture");
        let alone = |terms: u32| {
            let long: Vec<String> = (1..=terms).map(|n| format!("ip[2:2] = {n}")).collect();
            let long = long.join(" or ");
            let len = dead
                .compile(&long, true)
                .expect("compiles")
                .get_instructions()
                .len();
            (long, len)
        };
        // About two instructions a term: grow the filter until it and the
        // cut no longer fit together.
        let cut = header_cut(14, 192).len();
        let (mut terms, (mut long, mut len)) = (2000, alone(2000));
        while len + cut <= MAX_INSTRUCTIONS {
            terms += 8;
            (long, len) = alone(terms);
        }
        assert!(len <= MAX_INSTRUCTIONS, "{len} instructions alone");
        match compile_filter(&long, 192, LinkType::Ethernet) {
            Err(CaptureError::Filter { message, .. }) => {
                assert!(message.contains("at most 4096"), "{message}")
            }
            Ok(program) => panic!("{} instructions accepted", program.len()),
            Err(e) => panic!("{e}"),
        }
    }
}
