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

pub use analysis::{Analyzer, Flags};
pub use conn::{CloseReason, Conn, Lifecycle, Phase, Step};
pub use key::{FlowKey, Orientation, Side};
pub use rtt::RTT_SLOTS;
pub use seq::SeqNum;
pub use table::{
    FlowHooks, FlowTable, Outcome, Removal, CLOSED_LINGER_NANOS, DEFAULT_IDLE_TIMEOUT_SECS,
    DEFAULT_MAX_FLOWS,
};

/// Capture time, in nanoseconds since the Unix epoch.
pub type Nanos = u64;

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
            server: server.0.ip(),
            server_port: server.1,
        }
    }
}
