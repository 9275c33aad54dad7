//! One epoch-published value: what the ring publishes its tables through
//! and the cluster its topologies.
//!
//! This module owns the only unsafe publication code in the crate. A
//! [`Published<T>`] holds an `Arc<T>` that readers load without a lock, a
//! reference count or a retry (wait-free: one atomic load under an epoch
//! pin), and that a writer replaces whole. It is `arc-swap`'s idea built on
//! crossbeam-epoch: readers pay nothing per load, and a reader that wants to
//! keep the value past its pin takes a counted `Arc` of it
//! ([`Published::load_arc`]), which is how the cluster's topology shares the
//! ring's table instead of copying it.
//!
//! # Orderings
//!
//! * [`Published::publish`] swaps the pointer with `Release`; loads use
//!   `Acquire`. The pair makes the value's contents, written before it was
//!   published, visible to every reader that sees the pointer.
//! * The replaced value's strong count (the one the cell held) is released
//!   by a closure deferred to the epoch collector, which runs it only once
//!   every thread pinned at the swap has unpinned (crossbeam-epoch's
//!   reclamation guarantee). Readers still holding the old pointer are such
//!   threads, so the value outlives their guards.
//!
//! # Safety argument
//!
//! The pointer always comes from `Arc::into_raw`, and the cell owns one
//! strong count of it, so it is never null and never dangling while it is
//! published. After a swap the old pointer is unreachable through the cell
//! (the swap returned it to exactly one writer, so it is retired exactly
//! once, whatever the number of concurrent writers), and its count is
//! released only after the grace period above. A load's reference is tied to
//! its guard, so it cannot outlive the pin that keeps the value alive.
//! `Drop` needs `&mut self`, so no load is alive when it releases the last
//! published value.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_epoch::{Atomic, Guard, Shared};

/// An `Arc<T>` published for wait-free, epoch-protected reads (see the
/// module docs).
///
/// Every guard passed in must come from `crossbeam_epoch::pin()` (the
/// default collector, to which retired values go); a guard of another
/// collector would not keep a value alive. Public callers' guards are
/// checked where they enter (`Ring::load`); the crate's own all come from
/// `pin()`, and debug builds assert it here.
pub(crate) struct Published<T: Send + Sync + 'static> {
    /// From `Arc::into_raw`; never null; owns one strong count.
    ptr: Atomic<T>,
}

impl<T: Send + Sync + 'static> Published<T> {
    /// A cell publishing `value`.
    pub(crate) fn new(value: Arc<T>) -> Published<T> {
        Published {
            ptr: Atomic::from(Arc::into_raw(value)),
        }
    }

    /// The published value, valid while `guard` is pinned.
    #[inline]
    pub(crate) fn load<'g>(&'g self, guard: &'g Guard) -> &'g T {
        debug_assert!(guard.collector() == Some(crossbeam_epoch::default_collector()));
        // Acquire pairs with the Release swap in `publish`.
        let shared = self.ptr.load(Ordering::Acquire, guard);
        // SAFETY: see the module docs: non-null, and alive until every
        // guard pinned while it was reachable (this one included) unpins.
        unsafe { shared.deref() }
    }

    /// The published value as a counted `Arc`, to keep past the pin.
    pub(crate) fn load_arc(&self, guard: &Guard) -> Arc<T> {
        let ptr = self.ptr.load(Ordering::Acquire, guard).as_raw();
        // SAFETY: `ptr` came from `Arc::into_raw` and its strong count is at
        // least the cell's own, which is released only after `guard`
        // unpins; taking one more count under the pin and turning it into
        // an `Arc` is what `Arc::increment_strong_count` is for.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    /// The address of the published value, to compare with a held `Arc`
    /// ([`ReadCache`]); never dereferenced through here.
    #[inline]
    fn current_ptr(&self) -> *const T {
        // SAFETY: the unprotected guard only reads the pointer word; the
        // value is not touched, so no pin is needed. Acquire pairs with the
        // Release swap in `publish` (a reader that then trusts a cached
        // `Arc` of this address synchronized with its contents when it took
        // the `Arc`, so this is belt and braces; it is a plain load on
        // x86-64 either way).
        unsafe {
            self.ptr
                .load(Ordering::Acquire, crossbeam_epoch::unprotected())
        }
        .as_raw()
    }

    /// Publishes `value` in place of the current one, which is released
    /// once every reader that may hold it has unpinned.
    pub(crate) fn publish(&self, value: Arc<T>, guard: &Guard) {
        debug_assert!(guard.collector() == Some(crossbeam_epoch::default_collector()));
        let new = Shared::from(Arc::into_raw(value));
        // Release pairs with the Acquire loads.
        let old = self.ptr.swap(new, Ordering::Release, guard).as_raw();
        // SAFETY: `old` is unlinked and was returned by the swap to this
        // writer alone, so its count is released exactly once, after the
        // grace period (module docs). `T: Send + Sync` makes dropping it on
        // the collector's thread sound.
        unsafe {
            let old = old as usize;
            guard.defer_unchecked(move || drop(Arc::from_raw(old as *const T)));
        }
        // Push the retired value to the global queue now rather than when
        // this thread's bag fills: values are large, publications rare.
        guard.flush();
    }
}

impl<T: Send + Sync + 'static> Drop for Published<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no load of this cell is alive, so the cell's
        // count of the current value is released here, once. Values it
        // published before were handed to the collector.
        unsafe {
            let ptr = self
                .ptr
                .load(Ordering::Relaxed, crossbeam_epoch::unprotected())
                .as_raw();
            drop(Arc::from_raw(ptr));
        }
    }
}

/// One thread's counted copy of a [`Published`] value, so that a reader
/// that finds the value unchanged reads it with one atomic load and a
/// compare: no epoch pin, hence no `SeqCst` fence, no read-modify-write and
/// no shared write. This is `arc-swap`'s `Cache` on this crate's cell.
///
/// # Why it is sound
///
/// The cache owns a strong count of the value it holds, so that value's
/// allocation cannot be freed, nor its address reused, while it is cached.
/// If the cell's current pointer equals the held `Arc`'s address, the cell
/// therefore publishes *that* allocation (not a new one at a recycled
/// address: no ABA), and reading it through the held `Arc` is reading the
/// current value. Otherwise the cache pins, takes a counted `Arc` of the
/// current value ([`Published::load_arc`], which synchronizes with the
/// publication) and drops the old one.
///
/// # What it costs
///
/// A cache keeps the last value it saw alive until it next looks or is
/// dropped: a thread that stops reading holds one superseded value. That
/// is the price of not pinning, and why only the single-key hot path uses
/// it. It must not be used where a writer waits for readers to let go of
/// old values (a grace period counted in pins or strong counts): a cached
/// value is let go of only at the cache's next read.
pub(crate) struct ReadCache<T: Send + Sync + 'static> {
    held: Option<Arc<T>>,
}

impl<T: Send + Sync + 'static> ReadCache<T> {
    /// An empty cache; its first read pins.
    pub(crate) const fn new() -> ReadCache<T> {
        ReadCache { held: None }
    }

    /// The current value of `cell`, through the held copy when the cell
    /// still publishes it. When it does not (a new publication, or the
    /// first read), the cache takes the new value and calls `fresh` on it
    /// first: a reader's chance to prepare for it.
    #[inline]
    pub(crate) fn read(&mut self, cell: &Published<T>, fresh: impl FnOnce(&T)) -> &T {
        let current = cell.current_ptr();
        match self.held {
            Some(ref held) if std::ptr::eq(Arc::as_ptr(held), current) => {}
            _ => {
                self.refresh(cell);
                fresh(self.held.as_deref().unwrap_or_else(|| unreachable!()));
            }
        }
        // The match above leaves `held` set.
        self.held.as_deref().unwrap_or_else(|| unreachable!())
    }

    /// Replaces the held copy with the cell's current value.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, cell: &Published<T>) {
        self.held = Some(cell.load_arc(&crossbeam_epoch::pin()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_epoch as epoch;

    #[test]
    fn loads_see_the_latest_and_arcs_outlive_the_cell() {
        let cell = Published::new(Arc::new(String::from("one")));
        let kept = {
            let guard = epoch::pin();
            assert_eq!(cell.load(&guard), "one");
            cell.load_arc(&guard)
        };
        cell.publish(Arc::new(String::from("two")), &epoch::pin());
        assert_eq!(cell.load(&epoch::pin()), "two");
        drop(cell);
        assert_eq!(*kept, "one");
    }

    #[test]
    fn a_cache_follows_every_publication_and_lets_old_values_go() {
        let first = Arc::new(0u64);
        let cell = Published::new(first.clone());
        let mut cache = ReadCache::new();
        let mut fresh = 0;
        assert_eq!(*cache.read(&cell, |_| fresh += 1), 0);
        assert_eq!(
            Arc::strong_count(&first),
            3,
            "ours, the cell's, the cache's"
        );
        for i in 1..100 {
            cell.publish(Arc::new(i), &epoch::pin());
            assert_eq!(*cache.read(&cell, |&v| assert_eq!(v, i)), i);
            assert_eq!(*cache.read(&cell, |_| panic!("not a new value")), i);
        }
        assert_eq!(fresh, 1);
        // The cache let go of `first` when it saw its successor; the cell's
        // count goes with the collector.
        for _ in 0..10_000 {
            if Arc::strong_count(&first) == 1 {
                return;
            }
            epoch::pin().flush();
            std::thread::yield_now();
        }
        panic!("a cached value outlived its successor's first read");
    }

    #[test]
    fn every_published_value_is_released() {
        let first = Arc::new(0u64);
        let cell = Published::new(first.clone());
        for i in 1..100 {
            cell.publish(Arc::new(i), &epoch::pin());
        }
        drop(cell);
        // The cell's count of `first` is released by the collector.
        for _ in 0..10_000 {
            if Arc::strong_count(&first) == 1 {
                return;
            }
            epoch::pin().flush();
            std::thread::yield_now();
        }
        panic!("a retired value was never released");
    }
}
