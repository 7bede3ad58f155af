//! Route netlink (NETLINK_ROUTE) as the capture modules ask it: one
//! socket, a request, and its answer's messages with their attributes.
//! The xdp backend asks which XDP program an interface has (`xdp.rs`);
//! the reporter asks for the veths' other ends and their addresses
//! (`peers.rs`). Every length in an answer is checked against the bytes
//! that came: a message that does not fit is an error, an attribute that
//! does not fit ends the walk.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;
/// Attribute types carry two flag bits above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The netlink message header's length.
pub const HEADER: usize = 16;
/// `struct ifinfomsg`'s, which opens a link message's body.
pub const IFINFOMSG: usize = 16;
/// `struct ifaddrmsg`'s, which opens an address message's body.
pub const IFADDRMSG: usize = 8;

/// An `ifinfomsg` asking for interface `index` (0: every one).
pub fn ifinfomsg(index: u32) -> [u8; IFINFOMSG] {
    let mut m = [0u8; IFINFOMSG];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// Appends an attribute, padded to 4 bytes.
pub fn push_attribute(buffer: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buffer.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(value);
    buffer.resize(align4(buffer.len()), 0);
}

pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes (type without its flags, value) of a netlink message
/// body; stops at the first one whose length does not fit.
pub struct Attributes<'a>(pub &'a [u8]);

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        let len = u16::from_ne_bytes(b.get(..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(b.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        let value = b.get(4..len.max(4))?;
        if len < 4 {
            self.0 = &[];
            return None;
        }
        self.0 = b.get(align4(len)..).unwrap_or(&[]);
        Some((kind, value))
    }
}

/// A NETLINK_ROUTE socket with strict checking (the kernel honours a
/// dump's filters, such as `IFA_TARGET_NETNSID`, only then).
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    /// One datagram of an answer: the kernel sends at most a page's worth
    /// of messages in each, or 32 KiB where pages are larger.
    buffer: Vec<u8>,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the descriptor it
        // returns is owned by the OwnedFd at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor just opened and owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        // SAFETY: setsockopt(2) reads size_of::<c_int>() bytes from &on.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_GET_STRICT_CHK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        // A dump that never ends would hold the routes' thread: a second
        // bounds each read.
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: as above, with a timeval.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink {
            fd,
            seq: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Sends a dump request of `kind` with `payload`, and hands each
    /// message of the answer, (type, body), to `each`.
    pub fn dump(
        &mut self,
        kind: u16,
        payload: &[u8],
        each: &mut dyn FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.send(kind, NLM_F_REQUEST | NLM_F_DUMP, payload)?;
        while !self.receive(each)? {}
        Ok(())
    }

    /// Sends a request of `kind` for one object, and returns the answer's
    /// (type, body).
    #[cfg_attr(not(feature = "xdp"), allow(dead_code))]
    pub fn get(&mut self, kind: u16, payload: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.send(kind, NLM_F_REQUEST, payload)?;
        let mut answer = None;
        while answer.is_none() {
            let done = self.receive(&mut |kind, body| {
                answer.get_or_insert_with(|| (kind, body.to_vec()));
            })?;
            if done && answer.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an empty netlink answer",
                ));
            }
        }
        Ok(answer.expect("set above"))
    }

    fn send(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut request = Vec::with_capacity(HEADER + payload.len());
        request.extend_from_slice(&((HEADER + payload.len()) as u32).to_ne_bytes());
        request.extend_from_slice(&kind.to_ne_bytes());
        request.extend_from_slice(&flags.to_ne_bytes());
        request.extend_from_slice(&self.seq.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(payload);
        // SAFETY: send(2) reads request.len() bytes of request.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one datagram of the answer; true once the answer is done.
    fn receive(&mut self, each: &mut dyn FnMut(u16, &[u8])) -> io::Result<bool> {
        // SAFETY: recv(2) writes at most buffer.len() bytes into it.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buffer.as_mut_ptr().cast(),
                self.buffer.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        messages(&self.buffer[..n as usize], self.seq, each)
    }
}

/// Hands each message of one datagram with sequence number `seq` to
/// `each`; true once the answer is done (a dump's end, an error or an
/// acknowledgement).
fn messages(mut data: &[u8], seq: u32, each: &mut dyn FnMut(u16, &[u8])) -> io::Result<bool> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        let message_seq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
        if len < HEADER || len > data.len() {
            return Err(invalid("a netlink message's length does not fit"));
        }
        let body = &data[HEADER..len];
        data = data.get(align4(len)..).unwrap_or(&[]);
        if message_seq != seq {
            continue;
        }
        match kind {
            // A dump the kernel refused part way (e.g. EACCES for another
            // namespace's addresses) ends with DONE carrying the error.
            NLMSG_DONE => {
                return match body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                {
                    Some(code) if code < 0 => Err(io::Error::from_raw_os_error(-code)),
                    _ => Ok(true),
                }
            }
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .ok_or_else(|| invalid("a netlink error without its code"))?;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            _ => each(kind, body),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_that_do_not_fit_end_the_walk() {
        let mut body = {
            let mut b = Vec::new();
            push_attribute(&mut b, 3, b"a\0");
            b
        };
        body.extend_from_slice(&[200, 0, 3, 0, 1]);
        assert_eq!(Attributes(&body).count(), 1);
        assert_eq!(Attributes(&[2, 0, 3, 0]).count(), 0);
    }

    #[test]
    fn a_message_longer_than_its_datagram_is_an_error() {
        let mut datagram = vec![0u8; HEADER];
        datagram[..4].copy_from_slice(&64u32.to_ne_bytes());
        let err = messages(&datagram, 0, &mut |_, _| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_kernel_s_error_code_is_the_error() {
        let mut datagram = vec![0u8; HEADER + 4];
        datagram[..4].copy_from_slice(&((HEADER + 4) as u32).to_ne_bytes());
        datagram[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        datagram[8..12].copy_from_slice(&5u32.to_ne_bytes());
        datagram[HEADER..].copy_from_slice(&(-libc::EACCES).to_ne_bytes());
        let err = messages(&datagram, 5, &mut |_, _| {}).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn a_dump_that_ends_with_an_error_is_that_error() {
        let mut datagram = vec![0u8; HEADER + 4];
        datagram[..4].copy_from_slice(&((HEADER + 4) as u32).to_ne_bytes());
        datagram[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        datagram[8..12].copy_from_slice(&5u32.to_ne_bytes());
        datagram[HEADER..].copy_from_slice(&(-libc::EACCES).to_ne_bytes());
        let err = messages(&datagram, 5, &mut |_, _| {}).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        datagram[HEADER..].copy_from_slice(&0i32.to_ne_bytes());
        assert!(messages(&datagram, 5, &mut |_, _| {}).unwrap());
    }

    #[test]
    fn one_interface_can_be_asked_for() {
        // Loopback is interface 1 in every namespace.
        let (kind, body) = Netlink::open()
            .unwrap()
            .get(RTM_GETLINK, &ifinfomsg(1))
            .unwrap();
        assert_eq!(kind, RTM_NEWLINK);
        assert_eq!(body[4..8], 1u32.to_ne_bytes());
        let err = Netlink::open()
            .unwrap()
            .get(RTM_GETLINK, &ifinfomsg(u32::MAX >> 1))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    }
}
