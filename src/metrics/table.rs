//! The live connection table (`GET /connections`): what a request asks for
//! (an order, a bound, filters) and the selection it gets from each
//! worker's connection records (`conns::Conns`).
//!
//! A worker's records are read while its shard is locked, so the selection
//! there is cheap and bounded: records are filtered and scored in one pass,
//! the best `limit` kept in a heap, and only those copied. Workers are
//! merged as they are read: a worker's record is copied only if it beats
//! the `limit`-th best of the workers before, so a request holds at most
//! `2 × limit` rows whatever the flow tables and the interfaces hold.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::flow::{Nanos, Phase};
use crate::identity::Identity;

use super::conns::{ConnRecord, Conns};
use super::labels::{mask, Reporter};

/// Connections returned when the request does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Connections returned at most; a larger `limit` is cut to this.
pub const MAX_LIMIT: usize = 1_000;

/// The order of the table: the worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Retransmitted segments of every kind, both directions.
    Retransmissions,
    /// Those per segment.
    RetransmissionRate,
    /// The larger smoothed data RTT of the two legs; without a data sample,
    /// the larger handshake leg.
    Rtt,
    /// Payload bytes, both directions.
    Bytes,
    /// The oldest first.
    Age,
    /// The most recently active first.
    LastActivity,
}

impl Sort {
    pub const ALL: [Sort; 6] = [
        Sort::Retransmissions,
        Sort::RetransmissionRate,
        Sort::Rtt,
        Sort::Bytes,
        Sort::Age,
        Sort::LastActivity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Retransmissions => "retransmissions",
            Sort::RetransmissionRate => "retransmission_rate",
            Sort::Rtt => "rtt",
            Sort::Bytes => "bytes",
            Sort::Age => "age",
            Sort::LastActivity => "last_activity",
        }
    }

    fn score(self, r: &ConnRecord, clock: Nanos) -> u64 {
        match self {
            Sort::Retransmissions => r.retransmissions(),
            // Parts per billion: whole numbers that order as the ratio does.
            Sort::RetransmissionRate => match r.packets() {
                0 => 0,
                n => (r.retransmissions() as u128 * 1_000_000_000 / n as u128) as u64,
            },
            Sort::Rtt => rtt(r).unwrap_or(0),
            Sort::Bytes => r.payload_bytes(),
            Sort::Age => age(r, clock),
            Sort::LastActivity => r.last,
        }
    }
}

/// The RTT the table sorts by and shows first: the larger smoothed data
/// RTT of the two legs, or without a data sample the larger handshake leg
/// (a leg as in `tcp_rtt_seconds`: from the capture point to one end and
/// back).
pub fn rtt(r: &ConnRecord) -> Option<Nanos> {
    let data = r
        .rtt
        .iter()
        .filter(|s| s.count > 0)
        .map(|s| s.smoothed)
        .max();
    data.or_else(|| r.handshake_rtt.iter().flatten().copied().max())
}

/// From its first segment to its end, or to the worker's capture clock.
pub fn age(r: &ConnRecord, clock: Nanos) -> Nanos {
    let end = r.end.map_or(clock, |(_, at)| at);
    end.saturating_sub(r.start)
}

/// Which connections a `state` filter keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    Closed,
    Phase(Phase),
}

impl State {
    fn keeps(self, r: &ConnRecord) -> bool {
        let open = r.is_open() && r.is_tracked();
        match self {
            State::Open => open,
            State::Closed => !open,
            // A state of the open ones: where a connection is now.
            State::Phase(p) => open && r.phase == p,
        }
    }
}

/// An address, or a network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub net: IpAddr,
    pub prefix: u8,
}

impl Network {
    fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// A request for the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub sort: Sort,
    pub limit: usize,
    /// Either end in this namespace (with `--kubernetes`).
    pub namespace: Option<String>,
    /// Either end of this workload.
    pub workload: Option<String>,
    /// Either end's port.
    pub port: Option<u16>,
    /// Either end's address in this network.
    pub address: Option<Network>,
    pub state: Option<State>,
    pub interface: Option<String>,
    pub reporter: Option<Reporter>,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            sort: Sort::Retransmissions,
            limit: DEFAULT_LIMIT,
            namespace: None,
            workload: None,
            port: None,
            address: None,
            state: None,
            interface: None,
            reporter: None,
        }
    }
}

/// Why a request's query was refused: said to the client as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError(pub String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const PARAMETERS: &str =
    "sort, limit, namespace, workload, port, address, state, interface, reporter";

impl Query {
    /// From a URL's query string (`sort=rtt&port=443`); an empty value is
    /// no filter.
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let bad = |name: &str, value: &str, want: &str| {
            Err(QueryError(format!("{name}={value:?}: {want}")))
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name)?;
            let value = decode(value)?;
            let value = value.trim();
            if value.is_empty() {
                // No value: as if the parameter were not given (a form
                // sends every field).
                let d = Query::default();
                match name.as_str() {
                    "sort" => q.sort = d.sort,
                    "limit" => q.limit = d.limit,
                    "namespace" => q.namespace = None,
                    "workload" => q.workload = None,
                    "port" => q.port = None,
                    "address" => q.address = None,
                    "state" => q.state = None,
                    "interface" => q.interface = None,
                    "reporter" => q.reporter = None,
                    _ => return Err(unknown(&name)),
                }
                continue;
            }
            let text = || Some(value.to_string());
            match name.as_str() {
                "sort" => {
                    q.sort = match Sort::ALL.into_iter().find(|s| s.as_str() == value) {
                        Some(s) => s,
                        None => {
                            let known: Vec<_> = Sort::ALL.iter().map(|s| s.as_str()).collect();
                            return bad(&name, value, &format!("one of {}", known.join(", ")));
                        }
                    }
                }
                "limit" => match value.parse::<usize>() {
                    Ok(n) if n > 0 => q.limit = n.min(MAX_LIMIT),
                    // Too many digits for a number: more than the most.
                    Err(_) if value.bytes().all(|b| b.is_ascii_digit()) => q.limit = MAX_LIMIT,
                    _ => return bad(&name, value, "a number from 1 (at most 1000 are given)"),
                },
                "namespace" => q.namespace = text(),
                "workload" => q.workload = text(),
                "interface" => q.interface = text(),
                "port" => match value.parse::<u16>() {
                    Ok(p) => q.port = Some(p),
                    Err(_) => return bad(&name, value, "a port number"),
                },
                "address" => match network(value) {
                    Some(n) => q.address = Some(n),
                    None => return bad(&name, value, "an address or a network (10.0.0.0/8)"),
                },
                "state" => {
                    q.state = Some(match value {
                        "open" => State::Open,
                        "closed" => State::Closed,
                        other => match Phase::ALL.into_iter().find(|p| p.as_str() == other) {
                            Some(p) => State::Phase(p),
                            None => return bad(
                                &name,
                                value,
                                "open, closed, syn_sent, syn_received, established or midstream",
                            ),
                        },
                    })
                }
                "reporter" => {
                    let all = [Reporter::Client, Reporter::Server, Reporter::Node];
                    match all.into_iter().find(|r| r.as_str() == value) {
                        Some(r) => q.reporter = Some(r),
                        None => return bad(&name, value, "client, server or node"),
                    }
                }
                _ => return Err(unknown(&name)),
            }
        }
        Ok(q)
    }

    /// Whether a record passes every filter.
    fn keeps(&self, r: &ConnRecord, interface: &str) -> bool {
        let names = r.peers.as_deref();
        let either = |f: &dyn Fn(&Identity) -> &str, want: &str| {
            names.is_some_and(|p| f(&p.client) == want || f(&p.server) == want)
        };
        self.interface.as_deref().is_none_or(|i| i == interface)
            && self.reporter.is_none_or(|w| w == r.reporter)
            && self.state.is_none_or(|s| s.keeps(r))
            && self
                .port
                .is_none_or(|p| r.client_port == p || r.server_port == p)
            && self
                .address
                .is_none_or(|n| n.contains(r.client) || n.contains(r.server))
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| either(&|i| &i.namespace, ns))
            && self
                .workload
                .as_deref()
                .is_none_or(|w| either(&|i| &i.workload, w))
    }
}

fn unknown(name: &str) -> QueryError {
    QueryError(format!(
        "unknown parameter {name:?}; the parameters are {PARAMETERS}"
    ))
}

/// `%XX` and `+` decoded; text that is not UTF-8 is refused.
fn decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => out.push(b),
                    None => return Err(QueryError(format!("{text:?}: a bad %-escape"))),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError(format!("{text:?}: not UTF-8")))
}

fn network(text: &str) -> Option<Network> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let net: IpAddr = addr.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max)?,
        None => max,
    };
    Some(Network {
        net: mask(net, prefix),
        prefix,
    })
}

/// The order key of a row: its score, then the most recently active, then
/// the oldest.
type Key = (u64, Nanos, Reverse<Nanos>);

/// One connection in the answer, with what is needed to show it.
#[derive(Clone, Debug)]
pub struct Row {
    pub record: ConnRecord,
    pub interface: Arc<str>,
    /// Its worker's capture clock when it was read.
    pub clock: Nanos,
    key: Key,
}

/// The answer to a query.
#[derive(Debug, Default)]
pub struct Table {
    /// The worst first, at most the query's limit.
    pub rows: Vec<Row>,
    /// Connections that passed the filters, in all.
    pub matched: usize,
    /// Connections held in the table, in all.
    pub held: usize,
    /// The latest capture time of the workers.
    pub clock: Nanos,
}

impl Table {
    /// Adds one worker's selection: its `limit` best (read under its lock).
    pub fn add(&mut self, conns: &Conns, interface: &Arc<str>, clock: Nanos, q: &Query) {
        // The rows so far hold at most `limit`: the last is the one to beat.
        let bar = (self.rows.len() == q.limit)
            .then(|| self.rows.last().map(|r| r.key))
            .flatten();
        let mut best: BinaryHeap<Reverse<(Key, u32)>> = BinaryHeap::with_capacity(q.limit + 1);
        for (id, r) in conns.shown() {
            self.held += 1;
            if !q.keeps(r, interface) {
                continue;
            }
            self.matched += 1;
            let key = (q.sort.score(r, clock), r.last, Reverse(r.start));
            if bar.is_some_and(|bar| key <= bar) {
                continue;
            }
            if best.len() == q.limit {
                match best.peek() {
                    Some(Reverse((least, _))) if key.cmp(least) == Ordering::Greater => {
                        best.pop();
                    }
                    _ => continue,
                }
            }
            best.push(Reverse((key, id)));
        }
        self.clock = self.clock.max(clock);
        for Reverse((key, id)) in best {
            if let Some(r) = conns.record(id) {
                self.rows.push(Row {
                    record: r.clone(),
                    interface: Arc::clone(interface),
                    clock,
                    key,
                });
            }
        }
        self.finish(q);
    }

    /// Puts the rows in order, the worst first, and keeps the query's limit.
    fn finish(&mut self, q: &Query) {
        self.rows.sort_by_key(|r| Reverse(r.key));
        self.rows.truncate(q.limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Orientation, Removal, Side, Step};
    use crate::metrics::conns::{ConnOptions, LongBudget};
    use std::sync::atomic::AtomicU64;

    fn conns() -> Conns {
        let opts = ConnOptions {
            table: Some(Arc::new(AtomicU64::new(0))),
            long_age: None,
            long_budget: Arc::new(LongBudget::new(0)),
            log: None,
            log_interval: 5_000_000_000,
        };
        Conns::new(opts, "eth0".into())
    }

    fn orient(client: &str, port: u16, server: &str) -> Orientation {
        Orientation {
            client: client.parse().unwrap(),
            client_port: port,
            server: server.parse().unwrap(),
            server_port: 443,
        }
    }

    /// A connection with `data` 1000-byte segments from the client, of
    /// which `retransmitted` were retransmissions.
    fn connection(c: &mut Conns, o: Orientation, data: u32, retransmitted: u32, at: Nanos) -> u32 {
        let id = c.start(&o, None, Reporter::Node, at);
        let mut seg =
            crate::flow::test_segment(o.client_port, 443, crate::decode::TcpFlags::ACK, 1, 1);
        seg.payload_len = 1000;
        for i in 0..data {
            let mut step = Step::default();
            if i < retransmitted {
                step.flags = crate::flow::Flags(crate::flow::Flags::RETRANSMISSION);
            }
            c.on_segment(
                id,
                Side::Client,
                &seg,
                1,
                &step,
                Phase::Established,
                at + i as u64,
            );
        }
        id
    }

    fn ports(t: &Table) -> Vec<u16> {
        t.rows.iter().map(|r| r.record.client_port).collect()
    }

    fn select(c: &Conns, query: &str) -> Table {
        let q = Query::parse(query).unwrap();
        let mut t = Table::default();
        t.add(c, &Arc::from("eth0"), 1_000_000, &q);
        t
    }

    #[test]
    fn the_worst_come_first_by_the_order_asked_and_only_limit_of_them() {
        let mut c = conns();
        connection(&mut c, orient("10.0.0.1", 1001, "10.0.0.9"), 10, 1, 0);
        connection(&mut c, orient("10.0.0.2", 1002, "10.0.0.9"), 100, 5, 10);
        connection(&mut c, orient("10.0.0.3", 1003, "10.0.0.9"), 4, 2, 20);
        let t = select(&c, "sort=retransmissions");
        assert_eq!(ports(&t), [1002, 1003, 1001]);
        assert_eq!((t.matched, t.held), (3, 3));
        assert_eq!(
            ports(&select(&c, "sort=retransmission_rate")),
            [1003, 1001, 1002]
        );
        assert_eq!(ports(&select(&c, "sort=bytes&limit=2")), [1002, 1001]);
        assert_eq!(ports(&select(&c, "sort=age&limit=1")), [1001]);
        assert_eq!(ports(&select(&c, "sort=last_activity&limit=1")), [1002]);
        let t = select(&c, "limit=1");
        assert_eq!(
            (ports(&t), t.matched),
            (vec![1002], 3),
            "retransmissions by default"
        );
    }

    #[test]
    fn workers_merge_into_the_best_limit_of_all() {
        let (mut a, mut b) = (conns(), conns());
        connection(&mut a, orient("10.0.0.1", 1001, "10.0.0.9"), 10, 1, 0);
        connection(&mut a, orient("10.0.0.2", 1002, "10.0.0.9"), 10, 5, 0);
        connection(&mut b, orient("10.0.0.3", 1003, "10.0.0.9"), 10, 3, 0);
        connection(&mut b, orient("10.0.0.4", 1004, "10.0.0.9"), 10, 0, 0);
        let q = Query::parse("limit=2").unwrap();
        let mut t = Table::default();
        t.add(&a, &Arc::from("eth0"), 100, &q);
        t.add(&b, &Arc::from("eth1"), 100, &q);
        assert_eq!(ports(&t), [1002, 1003]);
        assert_eq!((t.matched, t.held), (4, 4));
        assert_eq!(&*t.rows[1].interface, "eth1");
    }

    #[test]
    fn filters_keep_what_they_name_on_either_end() {
        let mut c = conns();
        connection(&mut c, orient("10.0.0.1", 1001, "10.0.1.9"), 1, 0, 0);
        let gone = connection(&mut c, orient("10.0.2.2", 1002, "10.0.0.9"), 1, 0, 0);
        connection(&mut c, orient("fd00::3", 1003, "fd00::9"), 1, 0, 0);
        c.on_removed(gone, Removal::Released, &Step::default(), 100);
        assert_eq!(ports(&select(&c, "address=10.0.1.0%2F24")), [1001]);
        assert_eq!(ports(&select(&c, "address=10.0.2.2")), [1002]);
        assert_eq!(ports(&select(&c, "address=fd00::/16")), [1003]);
        assert!(
            ports(&select(&c, "address=0.0.0.0/0")).len() == 2,
            "no IPv6 in an IPv4 network"
        );
        assert_eq!(ports(&select(&c, "port=1003")), [1003]);
        assert_eq!(select(&c, "port=443").rows.len(), 3);
        assert_eq!(ports(&select(&c, "state=closed")), [1002]);
        assert_eq!(select(&c, "state=open").rows.len(), 2);
        assert_eq!(
            select(&c, "state=established").rows.len(),
            2,
            "open ones only"
        );
        assert_eq!(select(&c, "interface=eth1").rows.len(), 0);
        assert_eq!(select(&c, "reporter=node&namespace=").rows.len(), 3);
        assert_eq!(
            select(&c, "namespace=shop").rows.len(),
            0,
            "no identities here"
        );
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let err = |q: &str| Query::parse(q).unwrap_err().0;
        assert!(
            err("sort=size").contains("one of retransmissions"),
            "{}",
            err("sort=size")
        );
        assert!(err("limit=0").contains("a number"));
        assert!(err("port=70000").contains("a port number"));
        assert!(err("address=10.0.0.0/33").contains("a network"));
        assert!(err("state=gone").contains("open, closed"));
        assert!(err("colour=red").contains("unknown parameter \"colour\""));
        assert!(err("namespace=%zz").contains("%-escape"));
        assert_eq!(Query::parse("limit=5000").unwrap().limit, MAX_LIMIT);
        assert_eq!(
            Query::parse("limit=99999999999999999999999").unwrap().limit,
            MAX_LIMIT
        );
        // Empty values are as if not given (a form sends every field).
        assert_eq!(
            Query::parse("sort=&limit=&port=80&port=&namespace=").unwrap(),
            Query::default()
        );
        assert_eq!(Query::parse("").unwrap(), Query::default());
        assert_eq!(
            Query::parse("workload=my+app").unwrap().workload.as_deref(),
            Some("my app")
        );
    }
}
