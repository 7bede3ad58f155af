//! The bounded flow table: every tracked connection, found by its key, kept
//! in order of last activity so that idle ones expire and, when the table is
//! full, the least recently active one makes room.
//!
//! Storage is a slab of slots with two intrusive doubly-linked lists (open
//! connections, and closed ones lingering), each ordered by last activity.
//! Touching a flow moves it to the tail; expiry pops from the head. Both are
//! O(1), so the per-packet cost does not grow with the table. (A run of
//! segments counted elsewhere and applied late walks back from the tail to
//! its place: one step per flow active since it ended.)

use ahash::RandomState;
use hashbrown::HashTable;

use crate::decode::Segment;

use super::analysis::{Mirror, SteadyRun};
use super::conn::{Conn, Generation, Phase, Step};
use super::key::{FlowKey, Side};
use super::Nanos;

/// Default `--max-flows`.
pub const DEFAULT_MAX_FLOWS: usize = 131_072;
/// Default `--flow-idle-timeout`, in seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// How long a closed connection stays, so that segments after the close
/// (the last ACK, a retransmitted FIN or RST) still belong to it. Shorter
/// than Linux's 60 s TIME_WAIT: late segments rarely come seconds later.
pub const CLOSED_LINGER_NANOS: Nanos = 10_000_000_000;

const NIL: u32 = u32::MAX;

/// The two LRU lists. A slot's list is not stored: it is the list of its
/// connection's phase (closed or not) as it was when last linked, which
/// callers know.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum List {
    Open = 0,
    Closed = 1,
}

impl List {
    fn closed_if(closed: bool) -> List {
        if closed {
            List::Closed
        } else {
            List::Open
        }
    }

    fn of(conn: &Conn) -> List {
        List::closed_if(conn.is_closed())
    }
}

struct Slot<T> {
    key: FlowKey,
    conn: Conn,
    tag: T,
    last: Nanos,
    prev: u32,
    next: u32,
}

/// Why a flow left the table (or its slot went to a new connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// No segment for the idle timeout; `step` says how the connection ended.
    Idle,
    /// Closed, and its linger time is over.
    Released,
    /// The table was full and this was the least recently active flow.
    Evicted,
    /// A new connection (a new SYN) took over its addresses and ports.
    Superseded,
}

/// What the owner of a table keeps per connection, and hears when a flow
/// leaves. The table calls `start` once for every new connection and
/// `removed` for every flow that leaves it (or whose slot a new connection
/// takes), with the step its connection took on leaving.
pub trait FlowHooks<T> {
    /// A new connection, first seen at capture time `now`.
    fn start(&mut self, key: &FlowKey, conn: &Conn, now: Nanos) -> T;
    /// A flow left at capture time `now`.
    fn removed(&mut self, tag: T, removal: Removal, step: Step, now: Nanos);
}

/// The result of one segment.
#[derive(Clone, Copy, Debug)]
pub struct Outcome<T> {
    pub tag: T,
    pub sender: Side,
    pub step: Step,
    /// The connection's phase after the segment.
    pub phase: Phase,
    /// The segment changed nothing but its connection's counts and time
    /// last seen: the connection was tracked before it (so its first
    /// segment, which opens its record, was counted already), its phase
    /// is unchanged and its step empty (no step in its life, no flag, no
    /// RTT sample). Its owner may count it later, with others like it
    /// (`Shard::on_steady_run`).
    pub quiet: bool,
}

/// Every tracked connection of one worker, at most `max_flows` of them.
pub struct FlowTable<T> {
    /// Slot numbers, found by the hash of their slot's key: the key is
    /// stored once, in the slot.
    index: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    heads: [u32; 2],
    tails: [u32; 2],
    lens: [usize; 2],
    max_flows: usize,
    idle_timeout: Nanos,
    linger: Nanos,
    /// The latest capture time seen: expiry never runs backwards when
    /// timestamps do.
    clock: Nanos,
    /// The slot of the previous segment (NIL once it is removed): the next
    /// segment is often of the same flow (a sender's burst), and is then
    /// found by comparing its key, without hashing or probing.
    last: u32,
    /// The generation the next new connection gets.
    generation: Generation,
}

impl<T: Copy> FlowTable<T> {
    pub fn new(max_flows: usize, idle_timeout: Nanos) -> Self {
        let max_flows = max_flows.max(1);
        // Reserved, not touched: the memory becomes resident only as flows
        // come, and the slab never moves (no doubling, no copy at peak).
        FlowTable {
            index: HashTable::with_capacity(max_flows),
            hasher: RandomState::new(),
            slots: Vec::with_capacity(max_flows),
            free: Vec::new(),
            heads: [NIL; 2],
            tails: [NIL; 2],
            lens: [0; 2],
            max_flows,
            idle_timeout,
            linger: CLOSED_LINGER_NANOS.min(idle_timeout),
            clock: 0,
            last: NIL,
            generation: Generation(1),
        }
    }

    /// Flows tracked now, open and lingering.
    pub fn len(&self) -> usize {
        self.lens[0] + self.lens[1]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections tracked and not yet closed.
    pub fn open_len(&self) -> usize {
        self.lens[List::Open as usize]
    }

    /// Runs one segment through its connection; flows idle as of `now`
    /// expire first.
    pub fn on_segment(
        &mut self,
        seg: &Segment,
        now: Nanos,
        hooks: &mut impl FlowHooks<T>,
    ) -> Outcome<T> {
        self.expire(now, hooks);
        let (key, sender_is_lo) = FlowKey::of(seg);
        let mut tracked = true;
        let slot = match self.find(&key) {
            Ok(i) => {
                let s = &self.slots[i as usize];
                let side = s.conn.sender(sender_is_lo);
                if s.conn.is_superseded_by(seg, side) {
                    let old = s.conn;
                    let old_list = List::of(&old);
                    let old_tag = s.tag;
                    let step = if old.is_closed() {
                        Step::default()
                    } else {
                        let mut c = old;
                        c.on_idle(now)
                    };
                    hooks.removed(old_tag, Removal::Superseded, step, now);
                    tracked = false;
                    let (conn, tag) = self.open(&key, seg, sender_is_lo, now, hooks);
                    let s = &mut self.slots[i as usize];
                    s.conn = conn;
                    s.tag = tag;
                    self.unlink(i, old_list);
                    self.push_tail(i, List::Open);
                }
                i
            }
            Err(hash) => {
                tracked = false;
                if self.len() >= self.max_flows {
                    self.evict_one(hooks);
                }
                let (conn, tag) = self.open(&key, seg, sender_is_lo, now, hooks);
                let i = self.alloc(key, conn, tag, now);
                let (slots, hasher) = (&self.slots, &self.hasher);
                self.index
                    .insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key));
                i
            }
        };
        self.last = slot;
        let s = &mut self.slots[slot as usize];
        let sender = s.conn.sender(sender_is_lo);
        let was_closed = s.conn.is_closed();
        let phase_before = s.conn.phase;
        let step = s.conn.on_segment(seg, sender, now);
        let (before, list) = (List::closed_if(was_closed), List::of(&s.conn));
        let tag = s.tag;
        let phase = s.conn.phase;
        // A lingering flow is not refreshed: late segments must not keep it.
        if !(before == List::Closed && list == List::Closed) {
            s.last = s.last.max(now);
            // The flow of the previous segment is often this one: it is
            // the tail already.
            if before != list || self.tails[list as usize] != slot {
                self.unlink(slot, before);
                self.push_tail(slot, list);
            }
        }
        Outcome {
            tag,
            sender,
            step,
            phase,
            quiet: tracked && phase == phase_before && step.is_empty(),
        }
    }

    /// The slot of `key`, or the hash a new slot for it is indexed by.
    #[inline(always)]
    fn find(&self, key: &FlowKey) -> Result<u32, u64> {
        let last = self.slots.get(self.last as usize);
        if last.is_some_and(|s| s.key == *key) {
            return Ok(self.last);
        }
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots[i as usize].key == *key)
            .copied()
            .ok_or(hash)
    }

    /// The mirror of the connection on `key` (see `Conn::mirror`), which
    /// side of it the key's `lo` end is, and the connection's generation
    /// (for `on_steady_run`); `None` when the flow is not tracked or its
    /// connection gives no mirror.
    pub fn mirror(&self, key: &FlowKey) -> Option<(Mirror, Side, Generation)> {
        let s = &self.slots[self.find(key).ok()? as usize];
        Some((s.conn.mirror()?, s.conn.sender(true), s.conn.generation))
    }

    /// The key of the flow of the last segment the table took (or whose
    /// run it took), while that flow is tracked.
    #[inline(always)]
    pub fn last_key(&self) -> Option<&FlowKey> {
        self.slots.get(self.last as usize).map(|s| &s.key)
    }

    /// `mirror` for the flow of the last segment the table took (or whose
    /// run it took), with its key.
    pub fn last_mirror(&self) -> Option<(FlowKey, Mirror, Side, Generation)> {
        let s = self.slots.get(self.last as usize)?;
        Some((
            s.key,
            s.conn.mirror()?,
            s.conn.sender(true),
            s.conn.generation,
        ))
    }

    /// Applies `run`, segments from `sender` on the flow `key` that the
    /// mirror of its connection `generation` counted, as `on_segment`
    /// would have applied each: the connection takes the run
    /// (`Conn::on_steady_run`), the flow was last active at the run's last
    /// segment (and takes its place among the flows by that time), then
    /// flows idle as of then expire. Such segments change nothing in the
    /// connection's life, so the outcome's step is empty.
    ///
    /// `None` when the run is empty, or the flow on `key` holds another
    /// connection or one in no phase that gives a mirror (it left the
    /// table, or another connection took its place, since the mirror was
    /// given), with the flow untouched; and when the expiry after the run
    /// removed the run's own flow (capture times went backwards, so the run
    /// ended more than the idle timeout before the latest time seen): the
    /// flow ends as idle and its owner hears of it without the run. Either
    /// way the caller counts those segments as dropped. (The last differs
    /// from segments analysed one by one, which such a flow would have kept,
    /// or, expired first, a new connection would have counted: only with
    /// capture times that go back by more than the idle timeout.)
    pub fn on_steady_run(
        &mut self,
        key: &FlowKey,
        generation: Generation,
        sender: Side,
        run: &SteadyRun,
        hooks: &mut impl FlowHooks<T>,
    ) -> Option<Outcome<T>> {
        if run.segments == 0 {
            return None;
        }
        let slot = self.find(key).ok()?;
        let s = &mut self.slots[slot as usize];
        if s.conn.generation != generation || !s.conn.takes_runs() {
            return None;
        }
        s.conn.on_steady_run(sender, run);
        let (tag, phase) = (s.tag, s.conn.phase);
        if run.last > s.last {
            s.last = run.last;
            self.reposition(slot, List::Open);
        }
        self.last = slot;
        self.expire(run.last, hooks);
        if self.last != slot {
            // Expired: `remove` forgot it as the last flow.
            return None;
        }
        Some(Outcome {
            tag,
            sender,
            step: Step::default(),
            phase,
            quiet: false,
        })
    }

    /// The connection `seg` starts on `key`, with a generation no
    /// connection in the table has (but see `Generation`), and the tag its
    /// owner gives it.
    fn open(
        &mut self,
        key: &FlowKey,
        seg: &Segment,
        sender_is_lo: bool,
        now: Nanos,
        hooks: &mut impl FlowHooks<T>,
    ) -> (Conn, T) {
        let mut conn = Conn::new(seg, sender_is_lo);
        let tag = hooks.start(key, &conn, now);
        conn.generation = self.generation;
        self.generation = Generation(self.generation.0.wrapping_add(1));
        (conn, tag)
    }

    /// Drops flows idle for longer than the timeout, and closed flows whose
    /// linger is over, as of capture time `now`.
    #[inline]
    pub fn expire(&mut self, now: Nanos, hooks: &mut impl FlowHooks<T>) {
        self.clock = self.clock.max(now);
        if self.expiry_due(self.clock) {
            self.expire_due(self.clock, hooks);
        }
    }

    /// Whether a segment taken at capture time `now` would find flows to
    /// expire first, or `now` is before the latest time the table has
    /// seen: either way the table must take it (a run counted past it
    /// would be applied after that expiry, or out of time order).
    #[inline(always)]
    pub fn upkeep_due(&self, now: Nanos) -> bool {
        now < self.clock || self.expiry_due(now)
    }

    /// Whether the least recently active open flow, or the oldest closed
    /// one, is past its timeout at `now`.
    #[inline(always)]
    fn expiry_due(&self, now: Nanos) -> bool {
        let due = |head: u32, timeout: Nanos| {
            head != NIL && now.saturating_sub(self.slots[head as usize].last) > timeout
        };
        due(self.heads[List::Open as usize], self.idle_timeout)
            || due(self.heads[List::Closed as usize], self.linger)
    }

    /// Removes every flow as its timeout would (idle, or linger over),
    /// as of the latest time the table has seen plus that timeout: for a
    /// capture that has ended for good (its interface went away).
    pub fn expire_all(&mut self, hooks: &mut impl FlowHooks<T>) {
        let past = self
            .clock
            .saturating_add(self.idle_timeout.max(self.linger))
            .saturating_add(1);
        self.expire(past, hooks);
    }

    #[cold]
    fn expire_due(&mut self, now: Nanos, hooks: &mut impl FlowHooks<T>) {
        for (list, timeout) in [(List::Open, self.idle_timeout), (List::Closed, self.linger)] {
            loop {
                let head = self.heads[list as usize];
                if head == NIL {
                    break;
                }
                let s = &mut self.slots[head as usize];
                if now.saturating_sub(s.last) <= timeout {
                    break;
                }
                let (reason, step) = match list {
                    List::Open => (Removal::Idle, s.conn.on_idle(now)),
                    List::Closed => (Removal::Released, Step::default()),
                };
                let tag = s.tag;
                self.remove(head, list);
                hooks.removed(tag, reason, step, now);
            }
        }
    }

    fn evict_one(&mut self, hooks: &mut impl FlowHooks<T>) {
        // A closed flow costs least to lose; else the least recently active.
        let (victim, list) = if self.heads[List::Closed as usize] != NIL {
            (self.heads[List::Closed as usize], List::Closed)
        } else {
            (self.heads[List::Open as usize], List::Open)
        };
        if victim == NIL {
            return;
        }
        let s = &mut self.slots[victim as usize];
        let tag = s.tag;
        let last = s.last;
        let step = if s.conn.is_closed() {
            Step::default()
        } else {
            let mut c = s.conn;
            c.on_idle(last)
        };
        self.remove(victim, list);
        hooks.removed(tag, Removal::Evicted, step, self.clock.max(last));
    }

    fn alloc(&mut self, key: FlowKey, conn: Conn, tag: T, now: Nanos) -> u32 {
        let slot = Slot {
            key,
            conn,
            tag,
            last: now,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.push_tail(i, List::Open);
        i
    }

    fn remove(&mut self, i: u32, list: List) {
        self.unlink(i, list);
        let hash = self.hasher.hash_one(self.slots[i as usize].key);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        if self.last == i {
            self.last = NIL;
        }
        self.free.push(i);
    }

    /// Takes slot `i` out of `list`, which must be the list it is in.
    fn unlink(&mut self, i: u32, list: List) {
        let list = list as usize;
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.heads[list] = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tails[list] = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        self.lens[list] -= 1;
    }

    /// Moves slot `i`, whose last time went forward, to its place in
    /// `list` by that time: after every flow active no later, so that the
    /// head is still the least recently active (expiry and eviction take
    /// it). A run applied late lands behind flows active since it ended.
    fn reposition(&mut self, i: u32, list: List) {
        let last = self.slots[i as usize].last;
        let mut after = self.tails[list as usize];
        while after != NIL && (after == i || self.slots[after as usize].last > last) {
            after = self.slots[after as usize].prev;
        }
        if after == self.slots[i as usize].prev {
            return;
        }
        self.unlink(i, list);
        self.insert_after(i, after, list);
    }

    /// Puts slot `i` into `list` after slot `after` (NIL: at the head).
    fn insert_after(&mut self, i: u32, after: u32, list: List) {
        let l = list as usize;
        let next = if after == NIL {
            self.heads[l]
        } else {
            self.slots[after as usize].next
        };
        {
            let s = &mut self.slots[i as usize];
            s.prev = after;
            s.next = next;
        }
        if after == NIL {
            self.heads[l] = i;
        } else {
            self.slots[after as usize].next = i;
        }
        if next == NIL {
            self.tails[l] = i;
        } else {
            self.slots[next as usize].prev = i;
        }
        self.lens[l] += 1;
    }

    fn push_tail(&mut self, i: u32, list: List) {
        self.insert_after(i, self.tails[list as usize], list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use crate::flow::conn::tests::seg;
    use crate::flow::conn::{CloseReason, Lifecycle};

    const SEC: Nanos = 1_000_000_000;

    /// Numbers connections 1, 2, ... and records what leaves.
    #[derive(Default)]
    struct Log {
        next: u32,
        removed: Vec<(u32, Removal, Option<Lifecycle>)>,
    }

    impl FlowHooks<u32> for Log {
        fn start(&mut self, _: &FlowKey, _: &Conn, _: Nanos) -> u32 {
            self.next += 1;
            self.next
        }
        fn removed(&mut self, tag: u32, removal: Removal, step: Step, _: Nanos) {
            self.removed.push((tag, removal, step.lifecycle));
        }
    }

    #[test]
    fn both_directions_share_one_flow() {
        let mut t = FlowTable::new(10, 60 * SEC);
        let mut log = Log::default();
        let a = t.on_segment(&seg(40000, 80, TcpFlags::SYN, 1, 0), 0, &mut log);
        let b = t.on_segment(
            &seg(80, 40000, TcpFlags::SYN | TcpFlags::ACK, 9, 2),
            1,
            &mut log,
        );
        assert_eq!(a.tag, b.tag);
        assert_eq!((a.sender, b.sender), (Side::Client, Side::Server));
        assert_eq!(t.len(), 1);
    }

    /// Quiet (`Outcome::quiet`): a segment of a connection tracked before
    /// it that leaves its phase as it was and takes no step, flag or RTT
    /// sample.
    #[test]
    fn only_a_segment_that_changes_nothing_but_counts_is_quiet() {
        let mut t = FlowTable::new(10, 60 * SEC);
        let mut log = Log::default();
        let data = |seq, ack| Segment {
            payload_len: 100,
            ip_len: 140,
            ..seg(40000, 80, TcpFlags::ACK, seq, ack)
        };
        let (syn, ack, fin) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::FIN);
        let client = |flags, seq, ack| seg(40000, 80, flags, seq, ack);
        let server = |flags, seq, ack| seg(80, 40000, flags, seq, ack);
        let steps = [
            ("SYN", client(syn, 1, 0), false),
            ("SYN/ACK", server(syn | ack, 100, 2), false),
            ("SYN/ACK again", server(syn | ack, 100, 2), false),
            // No RTT sample after two SYN/ACKs: only the phase moves.
            ("the handshake's ACK", client(ack, 2, 101), false),
            ("data", data(2, 101), true),
            (
                "the ACK that ends its RTT sample",
                server(ack, 101, 102),
                false,
            ),
            ("more data", data(102, 101), true),
            // The connection closes at the second FIN.
            ("a FIN", client(fin | ack, 202, 101), true),
            ("the peer's FIN", server(fin | ack, 101, 203), false),
            (
                "a new connection, mid-stream",
                seg(40001, 80, ack, 5, 5),
                false,
            ),
        ];
        for (now, (what, s, quiet)) in steps.into_iter().enumerate() {
            let out = t.on_segment(&s, now as Nanos * 1_000_000, &mut log);
            assert_eq!(out.quiet, quiet, "{what}: {out:?}");
        }
    }

    #[test]
    fn a_run_keeps_its_flow_alive_from_its_last_segment_and_only_its_connection_takes_it() {
        use crate::flow::{Admission, SteadyRun};
        const MS: Nanos = 1_000_000;
        let timeout = Some(Lifecycle::Closed(CloseReason::Timeout));
        // The run's flow is applied before or after a segment of another
        // flow that came after the run ended: either way the flows leave
        // by their own last times.
        for other_at in [7 * SEC + 500 * MS, 8 * SEC + 500 * MS] {
            let mut t = FlowTable::new(10, 10 * SEC);
            let mut log = Log::default();
            // Picked up mid-stream, both ends heard: a mirror.
            let first = seg(40000, 80, TcpFlags::ACK, 1000, 5000);
            let a = t.on_segment(&first, 0, &mut log);
            t.on_segment(&seg(80, 40000, TcpFlags::ACK, 5000, 1000), 1, &mut log);
            let (key, sender_is_lo) = FlowKey::of(&first);
            let (mut m, lo_side, generation) = t.mirror(&key).expect("a mirror");
            let side = if sender_is_lo {
                lo_side
            } else {
                lo_side.peer()
            };
            assert_eq!(side, a.sender);
            // Data: the first two segments are timed (analysed), the
            // third is counted.
            let mut run = SteadyRun::default();
            let mut data = first;
            data.payload_len = 100;
            data.ip_len += 100;
            for (i, now) in [6 * SEC, 7 * SEC, 8 * SEC].into_iter().enumerate() {
                data.seq = 1000 + 100 * i as u32;
                let admitted = m.admit(&data, side, now, &mut run);
                if i < 2 {
                    assert_eq!(admitted, Admission::Followed);
                    t.on_segment(&data, now, &mut log);
                } else {
                    assert_eq!(admitted, Admission::Counted);
                }
            }
            // Another flow, seen before the run is applied.
            let other = seg(40001, 80, TcpFlags::ACK, 1, 1);
            t.on_segment(&other, other_at, &mut log);
            let out = t
                .on_steady_run(&key, generation, side, &run, &mut log)
                .expect("tracked");
            assert_eq!(
                (out.tag, out.sender, out.step),
                (a.tag, side, Step::default())
            );
            let (run_flow, other_flow) = ((1, Removal::Idle, timeout), (2, Removal::Idle, timeout));
            let order = if other_at < 8 * SEC {
                [other_flow, run_flow]
            } else {
                [run_flow, other_flow]
            };
            let due = |flow: &(u32, Removal, Option<Lifecycle>)| {
                if flow.0 == 1 {
                    18 * SEC
                } else {
                    other_at + 10 * SEC
                }
            };
            // Each flow lasts exactly its timeout after its last segment.
            for (n, flow) in order.iter().enumerate() {
                t.expire(due(flow), &mut log);
                assert_eq!(log.removed.len(), n, "{other_at}: {:?}", log.removed);
                t.expire(due(flow) + 1, &mut log);
                assert_eq!(log.removed[n..], [*flow], "{other_at}");
            }
            // A flow not tracked takes no run; another connection on its
            // addresses does not take the old one's; nobody takes an
            // empty one.
            assert!(t
                .on_steady_run(&key, generation, side, &run, &mut log)
                .is_none());
            t.on_segment(&first, 30 * SEC, &mut log);
            t.on_segment(
                &seg(80, 40000, TcpFlags::ACK, 5000, 1000),
                30 * SEC,
                &mut log,
            );
            assert!(t
                .on_steady_run(&key, generation, side, &run, &mut log)
                .is_none());
            let (_, _, now_there) = t.mirror(&key).expect("a mirror");
            let empty = SteadyRun::default();
            assert!(t
                .on_steady_run(&key, now_there, side, &empty, &mut log)
                .is_none());
            assert!(t
                .on_steady_run(&key, now_there, side, &run, &mut log)
                .is_some());
        }
    }

    /// Gives every connection the same tag, as an owner that keeps no
    /// record per connection might.
    struct SameTag(Vec<Removal>);

    impl FlowHooks<()> for SameTag {
        fn start(&mut self, _: &FlowKey, _: &Conn, _: Nanos) {}
        fn removed(&mut self, _: (), removal: Removal, _: Step, _: Nanos) {
            self.0.push(removal);
        }
    }

    #[test]
    fn a_run_goes_only_to_its_connection_whatever_the_owner_s_tags() {
        use crate::flow::SteadyRun;
        let mut t = FlowTable::new(10, 10 * SEC);
        let mut hooks = SameTag(Vec::new());
        let mut run = SteadyRun::default();
        (run.segments, run.last) = (1, 2 * SEC);
        let first = seg(40000, 80, TcpFlags::ACK, 1000, 5000);
        let (key, _) = FlowKey::of(&first);
        let mirrored = |t: &mut FlowTable<()>, at: Nanos, hooks: &mut SameTag| {
            t.on_segment(&first, at, hooks);
            t.on_segment(&seg(80, 40000, TcpFlags::ACK, 5000, 1000), at, hooks);
            t.mirror(&key).expect("a mirror")
        };
        // The first connection expires; a second on the same addresses
        // takes the slot the first one left.
        let (_, side, old) = mirrored(&mut t, SEC, &mut hooks);
        t.expire(12 * SEC, &mut hooks);
        assert_eq!(hooks.0, [Removal::Idle]);
        let (_, _, new) = mirrored(&mut t, 12 * SEC, &mut hooks);
        assert!(t.on_steady_run(&key, old, side, &run, &mut hooks).is_none());
        // New SYNs supersede the second, then the third: each connection
        // is refused the runs of every one before it.
        let handshake = |t: &mut FlowTable<()>, isn: u32, at: Nanos, hooks: &mut SameTag| {
            t.on_segment(&seg(40000, 80, TcpFlags::SYN, isn, 0), at, hooks);
            let synack = seg(80, 40000, TcpFlags::SYN | TcpFlags::ACK, 7000, isn + 1);
            t.on_segment(&synack, at + 1000, hooks);
            // Its handshake RTT measured (not 0): a mirror.
            let ack = seg(40000, 80, TcpFlags::ACK, isn + 1, 7001);
            t.on_segment(&ack, at + 2000, hooks);
            t.mirror(&key).expect("a mirror").2
        };
        let mut earlier = vec![old, new];
        for (n, isn) in [9000, 9500].into_iter().enumerate() {
            let now_there = handshake(&mut t, isn, 13 * SEC + n as Nanos * SEC / 2, &mut hooks);
            assert_eq!(hooks.0.len(), 2 + n, "superseded");
            for &before in &earlier {
                assert_ne!(now_there, before);
                assert!(t
                    .on_steady_run(&key, before, side, &run, &mut hooks)
                    .is_none());
            }
            earlier.push(now_there);
        }
        assert_eq!(hooks.0[1..], [Removal::Superseded; 2]);
        let mut late = run;
        late.last = 14 * SEC;
        let last = *earlier.last().expect("four connections");
        assert!(t
            .on_steady_run(&key, last, side, &late, &mut hooks)
            .is_some());
        // A run that ended more than the idle timeout before the latest
        // time seen (capture times went backwards) expires its own flow:
        // not counted as taken.
        t.on_segment(&seg(40001, 80, TcpFlags::ACK, 1, 1), 30 * SEC, &mut hooks);
        assert_eq!(hooks.0.len(), 4, "the fourth expired on the other flow");
        let (_, _, fifth) = mirrored(&mut t, 15 * SEC, &mut hooks);
        let mut stale = run;
        stale.last = 16 * SEC;
        assert!(t
            .on_steady_run(&key, fifth, side, &stale, &mut hooks)
            .is_none());
        assert_eq!(hooks.0.len(), 5, "the fifth expired on its own run");
        assert!(t.mirror(&key).is_none());
    }

    #[test]
    fn table_never_exceeds_its_bound_and_evicts_least_recent() {
        let mut t = FlowTable::new(3, 60 * SEC);
        let mut log = Log::default();
        for port in 1..=3 {
            t.on_segment(
                &seg(40000 + port, 80, TcpFlags::SYN, 1, 0),
                port as u64,
                &mut log,
            );
        }
        // Refresh the first so the second is the least recently active.
        t.on_segment(&seg(40001, 80, TcpFlags::SYN, 1, 0), 10, &mut log);
        t.on_segment(&seg(40009, 80, TcpFlags::SYN, 1, 0), 11, &mut log);
        assert_eq!(t.len(), 3);
        assert_eq!(
            log.removed,
            vec![(2, Removal::Evicted, Some(Lifecycle::Unanswered))]
        );
    }

    #[test]
    fn the_previous_segment_s_slot_is_found_again_only_while_its_flow_lives() {
        // One slot: each new flow evicts the last and reuses its slot, so
        // a segment of the evicted flow must start a connection again, not
        // find the slot its key was last in.
        let mut t = FlowTable::new(1, 60 * SEC);
        let mut log = Log::default();
        let a = t.on_segment(&seg(40001, 80, TcpFlags::SYN, 1, 0), 1, &mut log);
        let a_again = t.on_segment(&seg(80, 40001, TcpFlags::ACK, 9, 2), 2, &mut log);
        assert_eq!(a.tag, a_again.tag, "the same flow, found by its slot");
        let b = t.on_segment(&seg(40002, 80, TcpFlags::SYN, 1, 0), 3, &mut log);
        let a_back = t.on_segment(&seg(40001, 80, TcpFlags::ACK, 2, 10), 4, &mut log);
        assert_eq!((a.tag, b.tag, a_back.tag), (1, 2, 3));
        assert_eq!(log.removed.len(), 2);
        assert_eq!(t.len(), 1);
        // A flow that expired leaves its slot free with its key still in
        // it: its next segment starts a connection again.
        let late = t.on_segment(&seg(40001, 80, TcpFlags::ACK, 12, 10), 100 * SEC, &mut log);
        assert_eq!(late.tag, 4);
        assert_eq!(log.removed.last().map(|r| r.0), Some(3));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn idle_flows_expire_on_the_capture_clock() {
        let mut t = FlowTable::new(10, 60 * SEC);
        let mut log = Log::default();
        t.on_segment(&seg(40000, 80, TcpFlags::ACK, 1, 1), 0, &mut log);
        t.on_segment(&seg(40001, 80, TcpFlags::ACK, 1, 1), 30 * SEC, &mut log);
        t.expire(60 * SEC, &mut log);
        assert!(log.removed.is_empty(), "nothing idle yet");
        t.expire(61 * SEC, &mut log);
        let timeout = Some(Lifecycle::Closed(CloseReason::Timeout));
        assert_eq!(log.removed, vec![(1, Removal::Idle, timeout)]);
        assert_eq!(t.len(), 1);
        // A clock that runs backwards expires nothing more.
        t.expire(0, &mut log);
        assert_eq!(log.removed.len(), 1);
    }

    #[test]
    fn closed_flow_lingers_for_late_segments_then_goes() {
        let mut t = FlowTable::new(10, 300 * SEC);
        let mut log = Log::default();
        t.on_segment(&seg(40000, 80, TcpFlags::ACK, 1, 1), 0, &mut log);
        let r = t.on_segment(&seg(40000, 80, TcpFlags::RST, 1, 0), SEC, &mut log);
        assert_eq!(r.step.lifecycle, Some(Lifecycle::Closed(CloseReason::Rst)));
        assert_eq!(t.open_len(), 0);
        let late = t.on_segment(&seg(80, 40000, TcpFlags::ACK, 1, 1), 2 * SEC, &mut log);
        assert_eq!(late.tag, r.tag, "the late ACK belongs to the closed flow");
        assert_eq!(t.len(), 1);
        t.expire(12 * SEC, &mut log);
        assert_eq!(log.removed, vec![(1, Removal::Released, None)]);
        assert!(t.is_empty());
    }

    #[test]
    fn new_syn_on_a_closed_flow_starts_a_new_connection() {
        let mut t = FlowTable::new(10, 300 * SEC);
        let mut log = Log::default();
        t.on_segment(&seg(40000, 80, TcpFlags::ACK, 1, 1), 0, &mut log);
        t.on_segment(&seg(40000, 80, TcpFlags::RST, 1, 0), 1, &mut log);
        let again = t.on_segment(&seg(40000, 80, TcpFlags::SYN, 77, 0), 2, &mut log);
        assert_eq!(again.tag, 2);
        assert_eq!(log.removed, vec![(1, Removal::Superseded, None)]);
        assert_eq!(t.open_len(), 1);
        assert_eq!(t.len(), 1);
    }
}
#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::metrics::SeriesIds;

    /// The per-flow memory budget (docs/performance.md): a slot of the slab
    /// (key, connection and analysis state, series ids, LRU links) and an
    /// index entry. A field added to the per-flow state shows here first.
    #[test]
    fn a_flow_slot_stays_within_its_budget() {
        let slot = std::mem::size_of::<Slot<SeriesIds>>();
        assert!(slot <= 256, "a flow slot grew to {slot} bytes");
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
    }
}
