//! The bound on refused unauthenticated requests per client address, so that requests
//! with bad or missing credentials cannot fill the disk with audit records
//! (docs/SECURITY.md, "Refused unauthenticated requests").
//!
//! Each address has a fixed window (`auth.failure_window_seconds`, starting at its first
//! refusal). The first `auth.max_failures_per_address` refusals of a window are recorded
//! one by one as before; the rest are answered 429 `too_many_requests` with `Retry-After`
//! (the end of the window) and only counted, and when the window is over one summary
//! record (`auth.refusals_suppressed`) says how many there were. Credentials that are
//! valid are never refused here: a client behind the same address as a misconfigured one
//! keeps working.
//!
//! Memory is bounded: at most `MAX_ADDRESSES` addresses have a window of their own; while
//! the table is full, refusals from further addresses share one window ("other
//! addresses"), so rows stay bounded even then.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Frontend;

/// Addresses with a window of their own at most (about 100 bytes each).
const MAX_ADDRESSES: usize = 16_384;

/// What to do with one refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Record it as usual.
    Record,
    /// Over the bound: answer 429 and count it; retry in this many seconds.
    Suppress { retry_after: u32 },
}

/// The refusals of one address (or of the shared overflow) in its current window.
struct Window {
    started: Instant,
    /// RFC 3339, for the summary record.
    started_at: String,
    recorded: u32,
    suppressed: u64,
    /// The front-ends of the suppressed requests, in order of first appearance.
    frontends: Vec<Frontend>,
}

impl Window {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            started_at: crate::keys::now_rfc3339(),
            recorded: 0,
            suppressed: 0,
            frontends: Vec::new(),
        }
    }
}

/// The record one window's suppressed refusals leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    /// The address, or `other addresses` for the shared window.
    pub client: String,
    pub since: String,
    pub suppressed: u64,
    pub frontends: Vec<Frontend>,
}

struct Table {
    by_address: HashMap<IpAddr, Window>,
    /// Refusals of addresses that found the table full.
    other: Option<Window>,
    /// Summaries of windows that ended when a new refusal arrived, before the sweep.
    ended: Vec<Summary>,
}

/// The per-address windows.
pub(super) struct Refusals {
    limit: u32,
    window: Duration,
    table: Mutex<Table>,
}

const OTHER: &str = "other addresses";

fn summary(client: String, w: Window) -> Option<Summary> {
    (w.suppressed > 0).then_some(Summary {
        client,
        since: w.started_at,
        suppressed: w.suppressed,
        frontends: w.frontends,
    })
}

impl Refusals {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            table: Mutex::new(Table {
                by_address: HashMap::new(),
                other: None,
                ended: Vec::new(),
            }),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts one refused request from `address` through `frontend`.
    pub fn refused(&self, address: IpAddr, frontend: Frontend) -> Verdict {
        let address = address.to_canonical();
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *guard;
        let (label, slot) =
            if table.by_address.contains_key(&address) || table.by_address.len() < MAX_ADDRESSES {
                let w = table.by_address.entry(address).or_insert_with(Window::new);
                (address.to_string(), w)
            } else {
                (
                    OTHER.to_owned(),
                    table.other.get_or_insert_with(Window::new),
                )
            };
        if slot.started.elapsed() >= self.window {
            let old = std::mem::replace(slot, Window::new());
            table.ended.extend(summary(label, old));
        }
        if slot.recorded < self.limit {
            slot.recorded += 1;
            return Verdict::Record;
        }
        slot.suppressed += 1;
        if !slot.frontends.contains(&frontend) {
            slot.frontends.push(frontend);
        }
        let left = self.window.saturating_sub(slot.started.elapsed());
        Verdict::Suppress {
            retry_after: (left.as_secs_f64().ceil() as u32).max(1),
        }
    }

    /// Takes the windows that are over (every window when `all`, at shutdown) and
    /// returns the summaries of those that suppressed anything.
    pub fn sweep(&self, all: bool) -> Vec<Summary> {
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *guard;
        let window = self.window;
        let over = |w: &Window| all || w.started.elapsed() >= window;
        let mut out = std::mem::take(&mut table.ended);
        let done: Vec<IpAddr> = table
            .by_address
            .iter()
            .filter(|(_, w)| over(w))
            .map(|(a, _)| *a)
            .collect();
        for address in done {
            if let Some(w) = table.by_address.remove(&address) {
                out.extend(summary(address.to_string(), w));
            }
        }
        if table.other.as_ref().is_some_and(over) {
            if let Some(w) = table.other.take() {
                out.extend(summary(OTHER.to_owned(), w));
            }
        }
        out
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_address
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusals_are_recorded_then_counted_until_the_window_ends() {
        let r = Refusals::new(3, Duration::from_millis(300));
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(r.refused(here, Frontend::Native), Verdict::Record);
        }
        for _ in 0..5 {
            assert!(matches!(
                r.refused(here, Frontend::Vault),
                Verdict::Suppress { retry_after: 1 }
            ));
        }
        // Another address has its own window; an IPv4-mapped IPv6 address is the same.
        assert_eq!(r.refused(there, Frontend::Native), Verdict::Record);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(matches!(
            r.refused(mapped, Frontend::Native),
            Verdict::Suppress { .. }
        ));
        assert!(r.sweep(false).is_empty(), "no window is over yet");
        std::thread::sleep(Duration::from_millis(350));
        let summaries = r.sweep(false);
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(summaries[0].client, "192.0.2.1");
        assert_eq!(summaries[0].suppressed, 6);
        assert_eq!(
            summaries[0].frontends,
            vec![Frontend::Vault, Frontend::Native]
        );
        assert_eq!(r.addresses(), 0, "swept windows are dropped");
        // A new window records again.
        assert_eq!(r.refused(here, Frontend::Native), Verdict::Record);
    }

    #[test]
    fn the_table_is_bounded_and_full_tables_share_one_window() {
        let r = Refusals::new(1, Duration::from_secs(60));
        for i in 0..MAX_ADDRESSES as u32 + 10 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.refused(a, Frontend::Native);
        }
        assert_eq!(r.addresses(), MAX_ADDRESSES);
        // The ten addresses past the bound shared one window: one recorded, nine counted.
        let summaries = r.sweep(true);
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(
            (summaries[0].client.as_str(), summaries[0].suppressed),
            (OTHER, 9)
        );
        assert_eq!(r.addresses(), 0);
    }

    #[test]
    fn a_window_that_ended_before_the_sweep_still_leaves_its_summary() {
        let r = Refusals::new(1, Duration::from_millis(100));
        let here: IpAddr = "2001:db8::1".parse().unwrap();
        r.refused(here, Frontend::Aws);
        r.refused(here, Frontend::Aws);
        std::thread::sleep(Duration::from_millis(150));
        // The next refusal starts a new window (recorded) and keeps the old one's count.
        assert_eq!(r.refused(here, Frontend::Aws), Verdict::Record);
        let summaries = r.sweep(false);
        assert_eq!(summaries.len(), 1);
        assert_eq!(
            (summaries[0].client.as_str(), summaries[0].suppressed),
            ("2001:db8::1", 1)
        );
    }
}
