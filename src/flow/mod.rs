//! Flow tracking: which connection each segment belongs to, who is client
//! and who is server, and what each segment changed in the connection's
//! life. Everything here runs on the capture clock (`Nanos` given by the
//! caller) and never reads the wall clock, so a replayed capture gives the
//! same result every time.
//!
//! This module knows nothing of metrics: the caller attaches a tag of its
//! own to each connection (`FlowTable<T>`, `FlowHooks<T>`) and turns
//! outcomes into counts.

mod analysis;
mod conn;
mod key;
mod rtt;
mod seq;
mod table;

pub use analysis::{steady_layout, Admission, Analyzer, Flags, Mirror, SteadyRun};
pub use conn::{CloseReason, Conn, Generation, Lifecycle, Phase, Step};
pub use key::{FlowKey, Orientation, Side};
pub use rtt::RTT_SLOTS;
pub use seq::SeqNum;
pub use table::{
    FlowHooks, FlowTable, Outcome, Removal, CLOSED_LINGER_NANOS, DEFAULT_IDLE_TIMEOUT_SECS,
    DEFAULT_MAX_FLOWS,
};

/// A segment between 10.0.0.1 (ports from 1024) and 10.0.0.2 (ports below
/// 1024), for other modules' tests.
#[cfg(test)]
pub use conn::tests::seg as test_segment;

/// Client `client`:40000 and server `server`:`port`, for other modules'
/// tests.
#[cfg(test)]
pub fn test_orientation(client: &str, server: &str, port: u16) -> Orientation {
    Orientation {
        client: client.parse().unwrap(),
        client_port: 40000,
        server: server.parse().unwrap(),
        server_port: port,
    }
}

/// Capture time, in nanoseconds since the Unix epoch.
pub type Nanos = u64;

/// A capture time in 32 bits: microseconds, wrapping every 71 minutes. For
/// the start times of RTT samples, which need neither nanoseconds (the
/// smallest histogram bucket is 25 µs) nor a longer span, at 4 bytes each
/// instead of 8 in every flow. The sequence analysis keeps full `Nanos`:
/// its 3 ms and 20 ms boundaries are exact to the nanosecond, as tshark's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShortTime(u32);

impl ShortTime {
    pub fn at(now: Nanos) -> ShortTime {
        ShortTime((now / 1_000) as u32)
    }

    /// Nanoseconds from this time to `now` (whole microseconds); 0 when
    /// `now` is earlier (capture timestamps can run backwards).
    pub fn elapsed(self, now: Nanos) -> Nanos {
        let micros = ShortTime::at(now).0.wrapping_sub(self.0);
        if micros > u32::MAX / 2 {
            0
        } else {
            micros as Nanos * 1_000
        }
    }
}

impl Conn {
    /// Client and server addresses of a connection with this key.
    pub fn orientation(&self, key: &FlowKey) -> Orientation {
        let (client, server) = if self.client_is_lo {
            (key.lo(), key.hi())
        } else {
            (key.hi(), key.lo())
        };
        Orientation {
            client: client.0.ip(),
            client_port: client.1,
            server: server.0.ip(),
            server_port: server.1,
        }
    }
}
