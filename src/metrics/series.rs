//! Where series live and how many there may be.
//!
//! `SeriesTable` is one worker's table of series: a series' index never
//! changes while a flow refers to it, so flows hold indices and the
//! per-segment path is array arithmetic. A series that no flow refers to and
//! that has not changed for `--series-ttl` (capture clock) is removed, and
//! its index reused.
//!
//! `SeriesBudget` is the exporter-wide cap (`--max-series`): it counts the
//! distinct label sets every worker holds, and decides, when a worker meets
//! a label set it does not hold yet, whether it gets a series of its own or
//! folds into `other`. It is consulted once per new label set in a worker
//! (and once per folded connection), never per segment.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use ahash::RandomState;

use crate::flow::Nanos;

use super::labels::SeriesKey;

/// Default `--max-series`: label sets (series of tcp_connections_active)
/// across the exporter before new ones fold into `other`. Every label set
/// costs about 41 samples (5.8 KB) in the exposition (docs/performance.md).
pub const DEFAULT_MAX_SERIES: usize = 2_000;
/// Default `--series-ttl`, in seconds.
pub const DEFAULT_SERIES_TTL_SECS: u64 = 300;
/// Beyond the cap, folded series keep their server port as long as there
/// are fewer than this many of them; then the port folds to 0 too, so the
/// total stays bounded by `max_series + OVERFLOW_PORTS` plus one per
/// interface, family and port name.
pub const OVERFLOW_PORTS: usize = 256;

/// One series of a table.
#[derive(Clone, Debug)]
pub struct Entry<V> {
    pub key: SeriesKey,
    pub value: V,
    /// What counts into this series: flows in the flow table (and, for a
    /// histogram series, the counter series that share it).
    refs: u32,
    /// Capture time of the last change.
    pub last: Nanos,
    live: bool,
}

/// One worker's series, found by key once per connection and then by index.
pub struct SeriesTable<V> {
    index: HashMap<SeriesKey, u32, RandomState>,
    entries: Vec<Entry<V>>,
    free: Vec<u32>,
}

impl<V: Default> SeriesTable<V> {
    pub fn new() -> Self {
        SeriesTable {
            index: HashMap::with_hasher(RandomState::new()),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, key: &SeriesKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// A new series for `key`, which the table must not hold.
    pub fn insert(&mut self, key: SeriesKey, now: Nanos) -> u32 {
        let entry = Entry {
            key,
            value: V::default(),
            refs: 0,
            last: now,
            live: true,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        id
    }

    /// The series of `key`, made if needed.
    pub fn get_or_insert(&mut self, key: SeriesKey, now: Nanos) -> u32 {
        match self.get(&key) {
            Some(id) => id,
            None => self.insert(key, now),
        }
    }

    /// Something starts counting into series `id`.
    pub fn hold(&mut self, id: u32) {
        self.entries[id as usize].refs += 1;
    }

    /// Something that counted into series `id` let go of it. That is not
    /// a change: a series whose flows linger after their close expires
    /// `ttl` after its last count, not after the linger.
    pub fn release(&mut self, id: u32) {
        let e = &mut self.entries[id as usize];
        debug_assert!(e.refs > 0, "series {id} released more often than held");
        e.refs = e.refs.saturating_sub(1);
    }

    /// The series at `id`, for counting.
    #[inline]
    pub fn at(&mut self, id: u32) -> &mut Entry<V> {
        &mut self.entries[id as usize]
    }

    /// Removes the series that nothing refers to and that have not changed
    /// for `ttl` as of `now`; `removed` hears each (index, key, its counts
    /// at the end). Returns how many.
    pub fn expire(
        &mut self,
        now: Nanos,
        ttl: Nanos,
        mut removed: impl FnMut(u32, &SeriesKey, V),
    ) -> u64 {
        let mut n = 0;
        for (id, e) in self.entries.iter_mut().enumerate() {
            if e.live && e.refs == 0 && now.saturating_sub(e.last) >= ttl {
                e.live = false;
                let value = std::mem::take(&mut e.value);
                self.index.remove(&e.key);
                self.free.push(id as u32);
                removed(id as u32, &e.key, value);
                n += 1;
            }
        }
        n
    }

    /// Every series held now.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<V>> {
        self.entries.iter().filter(|e| e.live)
    }
}

impl<V: Default> Default for SeriesTable<V> {
    fn default() -> Self {
        SeriesTable::new()
    }
}

/// How many workers hold a label set, and whether it is a folded one.
#[derive(Clone, Copy, Debug)]
struct Holders {
    workers: u32,
    folded: bool,
}

#[derive(Default)]
struct BudgetState {
    holders: HashMap<SeriesKey, Holders, RandomState>,
    own: usize,
    folded: usize,
}

/// The exporter-wide series cap, shared by every worker.
pub struct SeriesBudget {
    max: usize,
    state: Mutex<BudgetState>,
}

impl SeriesBudget {
    pub fn new(max: usize) -> SeriesBudget {
        SeriesBudget {
            max: max.max(1),
            state: Mutex::new(BudgetState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker that does not hold `key` needs a series for it: the key it
    /// is to count under (`key` itself, or the folded key) and whether it
    /// was folded. `held_here` says whether the worker already holds a
    /// candidate folded key (then the budget does not count it again).
    pub fn admit(
        &self,
        key: SeriesKey,
        held_here: impl Fn(&SeriesKey) -> bool,
    ) -> (SeriesKey, bool) {
        let mut s = self.lock();
        if let Some(h) = s.holders.get_mut(&key) {
            h.workers += 1;
            return (key, h.folded);
        }
        if s.own < self.max {
            s.own += 1;
            s.holders.insert(
                key,
                Holders {
                    workers: 1,
                    folded: false,
                },
            );
            return (key, false);
        }
        let folded = key.folded();
        let port_zero = SeriesKey {
            server_port: folded.server_port.map(|_| 0),
            ..folded
        };
        for (i, candidate) in [folded, port_zero].into_iter().enumerate() {
            if held_here(&candidate) {
                return (candidate, true);
            }
            if let Some(h) = s.holders.get_mut(&candidate) {
                h.workers += 1;
                return (candidate, true);
            }
            // The port-zero key is always taken: the keys it can be are
            // few (interfaces x families x port names).
            if i == 1 || s.folded < OVERFLOW_PORTS {
                s.folded += 1;
                s.holders.insert(
                    candidate,
                    Holders {
                        workers: 1,
                        folded: true,
                    },
                );
                return (candidate, true);
            }
        }
        unreachable!("the port-zero key is always admitted")
    }

    /// A worker no longer holds `key` (its series expired).
    pub fn release(&self, key: &SeriesKey) {
        let mut s = self.lock();
        let Some(h) = s.holders.get_mut(key) else {
            return;
        };
        h.workers -= 1;
        if h.workers == 0 {
            let folded = h.folded;
            s.holders.remove(key);
            if folded {
                s.folded -= 1;
            } else {
                s.own -= 1;
            }
        }
    }

    /// Label sets held now: (own, folded).
    pub fn len(&self) -> (usize, usize) {
        let s = self.lock();
        (s.own, s.folded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::labels::{Peer, NO_IDENTITY, NO_INTERFACE};

    fn key(client: u8, port: u16) -> SeriesKey {
        SeriesKey {
            interface: 0,
            client_id: NO_IDENTITY,
            server_id: NO_IDENTITY,
            client: Peer::Ip([10, 0, 0, client].into()),
            server: Peer::Ip([10, 0, 1, 1].into()),
            server_port: Some(port),
            port_name: None,
            family: None,
            reporter: None,
            istio: 0,
        }
    }

    #[test]
    fn the_budget_admits_up_to_its_cap_then_folds_and_counts_each_key_once() {
        let b = SeriesBudget::new(2);
        let none = |_: &SeriesKey| false;
        assert_eq!(b.admit(key(1, 80), none), (key(1, 80), false));
        assert_eq!(
            b.admit(key(1, 80), none),
            (key(1, 80), false),
            "a second worker"
        );
        assert_eq!(b.admit(key(2, 80), none), (key(2, 80), false));
        let (k, folded) = b.admit(key(3, 80), none);
        assert!(folded);
        assert_eq!(
            (k.client, k.server, k.server_port),
            (Peer::Other, Peer::Other, Some(80))
        );
        assert_eq!(b.len(), (2, 1));
        // One worker lets key(2) go: room for a new one.
        b.release(&key(2, 80));
        assert_eq!(b.admit(key(4, 80), none), (key(4, 80), false));
        // key(1) is held by two workers: one release keeps it.
        b.release(&key(1, 80));
        assert_eq!(b.len(), (2, 1));
        b.release(&key(1, 80));
        assert_eq!(b.len(), (1, 1));
    }

    #[test]
    fn folded_keys_keep_their_port_until_there_are_too_many_then_take_port_zero() {
        let b = SeriesBudget::new(1);
        let none = |_: &SeriesKey| false;
        b.admit(key(1, 1), none);
        for port in 1..=(OVERFLOW_PORTS as u16 + 50) {
            b.admit(key(2, port), none);
        }
        let (own, folded) = b.len();
        assert_eq!(own, 1);
        assert_eq!(folded, OVERFLOW_PORTS + 1, "256 ports, then port 0");
        let (k, _) = b.admit(key(3, 60000), none);
        assert_eq!(k.server_port, Some(0));
    }

    #[test]
    fn a_worker_that_holds_the_folded_key_is_not_counted_again() {
        let b = SeriesBudget::new(1);
        b.admit(key(1, 80), |_| false);
        let (k, _) = b.admit(key(2, 80), |_| false);
        let (again, folded) = b.admit(key(3, 80), |c| *c == k);
        assert_eq!((again, folded), (k, true));
        b.release(&k);
        assert_eq!(b.len(), (1, 0), "held once, released once");
    }

    #[test]
    fn unreferenced_series_expire_after_the_ttl_and_their_slots_are_reused() {
        let mut t: SeriesTable<u64> = SeriesTable::new();
        let a = t.insert(key(1, 80), 0);
        let b = t.insert(key(2, 80), 0);
        t.hold(a);
        t.hold(b);
        t.at(b).last = 10;
        t.release(b);
        let mut gone = Vec::new();
        assert_eq!(
            t.expire(69, 60, |_, k, _| gone.push(*k)),
            0,
            "changed at 10"
        );
        assert_eq!(t.expire(70, 60, |_, k, _| gone.push(*k)), 1);
        assert_eq!(gone, vec![key(2, 80)]);
        assert_eq!(t.len(), 1, "a is still referenced");
        assert_eq!(t.get(&key(2, 80)), None);
        let c = t.insert(
            SeriesKey {
                interface: NO_INTERFACE,
                ..key(3, 80)
            },
            71,
        );
        assert_eq!(c, b, "the slot is reused");
        assert_eq!(t.iter().count(), 2);
    }
}
