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
//! ring's table instead of copying it. A thread that reads one cell over
//! and over can skip even the pin: a [`ReadCache`] holds counted copies of
//! the values it read and checks them against the cell's pointer (see
//! there; the ring's single-key lookup uses one).
//!
//! # Orderings
//!
//! * [`Published::publish`] swaps the pointer with `Release`; loads use
//!   `Acquire`. The pair makes the value's contents, written before it was
//!   published, visible to every reader that sees the pointer.
//! * A [`ReadCache`]'s check loads the pointer with `Acquire` too, without
//!   a pin, and never dereferences it: it only compares it with the
//!   addresses of values the cache holds counts of (and so read, with the
//!   pair above, when it took them).
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

use std::cell::UnsafeCell;
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

    /// True if `value` is the value the cell publishes now: a check a
    /// reader makes after using a value it read without a pin (through a
    /// [`ReadCache`]), to learn whether a newer one was published
    /// meanwhile. The load is `Acquire`; a caller that needs its own
    /// earlier loads ordered before it issues an `Acquire` fence first.
    #[inline]
    pub(crate) fn is_current(&self, value: &T) -> bool {
        std::ptr::eq(self.current_ptr(), value)
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

/// How many cells one thread's [`ReadCache`] follows at once.
pub(crate) const CACHED_CELLS: usize = 4;

/// One thread's counted copies of [`Published`] values, so that a reader
/// that finds a value unchanged reads it with one atomic load and a few
/// compares: no epoch pin, hence no `SeqCst` fence, no read-modify-write and
/// no shared write. This is `arc-swap`'s `Cache` on this crate's cell, for
/// up to [`CACHED_CELLS`] cells per thread (a thread that reads two rings
/// in turn does not refresh on every read).
///
/// It lives in a `thread_local!` `UnsafeCell` and is used only through
/// [`ReadCache::read`].
///
/// # Why it is sound
///
/// * **No ABA.** The cache owns a strong count of every value it holds, so
///   none of those allocations can be freed, nor its address reused, while
///   it is cached. If a cell's current pointer equals a held `Arc`'s
///   address, the cell therefore publishes *that* allocation (not a new one
///   at a recycled address), and reading it through the held `Arc` is
///   reading the cell's current value, whichever cell the entry was taken
///   from. Its contents were synchronized when the `Arc` was taken
///   ([`Published::load_arc`], an `Acquire` load under a pin).
/// * **No aliasing.** `read` holds a shared borrow of the cache only while
///   it compares pointers and runs the caller's `f` (which must not read
///   through the same cache, the contract of `read`), and a mutable one
///   only while it swaps `Arc`s in and out of the entries, which runs no
///   foreign code. The pin, the caller's `fresh` and the drop of a
///   replaced value (whose destructor is foreign code) all run with no
///   borrow alive, so a deferred closure run by the pin, or a destructor,
///   may read through the cache again.
///
/// # What it costs
///
/// Each entry keeps the value it holds alive until the entry is refreshed
/// (its cell published anew and this thread read it), reused for another
/// cell, or purged: every refresh drops the entries nobody else holds any
/// more (strong count 1: their cell has moved on or was dropped). So a
/// thread keeps at most [`CACHED_CELLS`] values alive, some superseded,
/// until it next refreshes. That is the price of not pinning, and why
/// only single-key hot paths use it. It must not be used where a writer
/// waits for readers to let go of old values (a grace period counted in
/// pins or strong counts): a cached value is let go of only at a later
/// refresh.
pub(crate) struct ReadCache<T: Send + Sync + 'static> {
    /// `(cell address, value)`, most recently refreshed first; `None`s
    /// last. The address only picks which entry a refresh replaces (a
    /// recycled address of a dropped cell just reuses its entry).
    held: [Option<(usize, Arc<T>)>; CACHED_CELLS],
}

impl<T: Send + Sync + 'static> ReadCache<T> {
    /// An empty cache; its first read of each cell pins.
    pub(crate) const fn new() -> ReadCache<T> {
        ReadCache {
            held: [const { None }; CACHED_CELLS],
        }
    }

    /// Runs `f` on the current value of `cell`, read through `slot`'s held
    /// copy when the cell still publishes it. Otherwise (a new publication,
    /// or the first read of this cell) takes the new value under a pin,
    /// calls `fresh` on it (a reader's chance to prepare for it, and to
    /// say whether the value is worth keeping), stores it if `fresh` said
    /// so (else drops the entry this cell had), and runs `f` on it.
    ///
    /// # Safety
    ///
    /// `f` must not call `read` on the same `slot` (directly or through
    /// anything it calls): it runs under a shared borrow of the cache,
    /// which such a call could invalidate. `fresh` and the destructors of
    /// replaced values may.
    #[inline]
    pub(crate) unsafe fn read<R>(
        slot: &UnsafeCell<ReadCache<T>>,
        cell: &Published<T>,
        fresh: impl FnOnce(&T) -> bool,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let current = cell.current_ptr();
        // SAFETY: a shared borrow, and nothing creates a mutable one while
        // it is in use: the compares run no foreign code, `f` may not read
        // through this slot (the caller's contract), and on a miss the
        // borrow is not used again once `refresh` takes its mutable one.
        let hit = unsafe { &*slot.get() }
            .held
            .iter()
            .flatten()
            .map(|(_, held)| held)
            .find(|held| std::ptr::eq(Arc::as_ptr(held), current));
        let refreshed;
        let value = match hit {
            Some(held) => held,
            None => {
                refreshed = Self::refresh(slot, cell, fresh);
                &refreshed
            }
        };
        // One call site, so that `f` is inlined here.
        f(value)
    }

    /// The miss path of [`ReadCache::read`]: pins, takes the cell's value,
    /// lets `fresh` see it, stores a copy, and drops what it displaced
    /// (and every entry nobody else holds) with no borrow alive.
    #[cold]
    #[inline(never)]
    fn refresh(
        slot: &UnsafeCell<ReadCache<T>>,
        cell: &Published<T>,
        fresh: impl FnOnce(&T) -> bool,
    ) -> Arc<T> {
        // May run deferred closures, which may read through this cache:
        // no borrow is alive.
        let value = cell.load_arc(&crossbeam_epoch::pin());
        let keep = fresh(&value);
        let address = std::ptr::from_ref(cell) as usize;
        let mut displaced: [Option<(usize, Arc<T>)>; CACHED_CELLS + 1] =
            [const { None }; CACHED_CELLS + 1];
        {
            // SAFETY: the only borrow alive (`read` ended its shared one,
            // and `f` has not run); the block below moves and clones
            // `Arc`s only, which runs no foreign code.
            let cache = unsafe { &mut *slot.get() };
            let own = cache
                .held
                .iter()
                .position(|e| matches!(e, Some((a, _)) if *a == address));
            if keep {
                // The entry to replace: this cell's, else an empty one,
                // else the least recently refreshed (the last).
                let at = own
                    .or_else(|| cache.held.iter().position(Option::is_none))
                    .unwrap_or(CACHED_CELLS - 1);
                displaced[CACHED_CELLS] = cache.held[at].take();
                // Most recently refreshed first.
                cache.held[..=at].rotate_right(1);
                cache.held[0] = Some((address, Arc::clone(&value)));
            } else if let Some(at) = own {
                // Not kept: nor is this cell's older value.
                displaced[CACHED_CELLS] = cache.held[at].take();
            }
            // Purge: entries only this cache holds are dead (their cell
            // has published since, or is gone).
            for (entry, out) in cache.held.iter_mut().zip(&mut displaced) {
                if matches!(entry, Some((_, v)) if Arc::strong_count(v) == 1) {
                    *out = entry.take();
                }
            }
            // Keep the `None`s last (a stable sort keeps the order).
            cache.held.sort_by_key(Option::is_none);
        }
        // Destructors (foreign code) run here, with no borrow alive.
        drop(displaced);
        value
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

    /// Whether `value`'s other counts are released (it is the last one),
    /// pushing the collector along for a while.
    fn released_by_collector(value: &Arc<u64>) -> bool {
        for _ in 0..10_000 {
            if Arc::strong_count(value) == 1 {
                return true;
            }
            epoch::pin().flush();
            std::thread::yield_now();
        }
        false
    }

    /// Reads `cell` through `slot`, counting the `fresh` calls.
    fn read_counting(
        slot: &UnsafeCell<ReadCache<u64>>,
        cell: &Published<u64>,
        fresh: &mut u32,
    ) -> u64 {
        // SAFETY: `f` only copies the value.
        unsafe {
            ReadCache::read(
                slot,
                cell,
                |_| {
                    *fresh += 1;
                    true
                },
                |&v| v,
            )
        }
    }

    #[test]
    fn a_value_fresh_declines_is_read_but_not_kept() {
        let cell = Published::new(Arc::new(1u64));
        let slot = UnsafeCell::new(ReadCache::new());
        let mut freshes = 0;
        let mut read = |keep: bool| {
            // SAFETY: `f` only copies the value.
            unsafe {
                ReadCache::read(
                    &slot,
                    &cell,
                    |_| {
                        freshes += 1;
                        keep
                    },
                    |&v| v,
                )
            }
        };
        assert_eq!(read(true), 1);
        assert_eq!(read(true), 1, "kept: no second refresh");
        cell.publish(Arc::new(2), &epoch::pin());
        // Declined: read, not kept, and the cell's older entry goes too.
        assert_eq!(read(false), 2);
        assert_eq!(read(false), 2);
        assert_eq!(freshes, 3, "a declined value is loaded again on each read");
        assert!(unsafe { &*slot.get() }.held.iter().all(Option::is_none));
    }

    #[test]
    fn a_cache_follows_every_publication_and_lets_old_values_go() {
        let first = Arc::new(0u64);
        let cell = Published::new(first.clone());
        let slot = UnsafeCell::new(ReadCache::new());
        let mut fresh = 0;
        assert_eq!(read_counting(&slot, &cell, &mut fresh), 0);
        assert_eq!(
            Arc::strong_count(&first),
            3,
            "ours, the cell's, the cache's"
        );
        for i in 1..100 {
            cell.publish(Arc::new(i), &epoch::pin());
            assert_eq!(read_counting(&slot, &cell, &mut fresh), i);
            assert_eq!(read_counting(&slot, &cell, &mut fresh), i);
            assert_eq!(u64::from(fresh), i + 1, "one fresh value per publication");
        }
        // The cache let go of `first` when it saw its successor; the cell's
        // count goes with the collector.
        assert!(
            released_by_collector(&first),
            "a cached value outlived its successor's first read"
        );
    }

    #[test]
    fn cells_read_in_turn_stay_cached_and_dropped_ones_are_purged() {
        let slot = UnsafeCell::new(ReadCache::new());
        let cells: Vec<Published<u64>> = (0..3).map(|i| Published::new(Arc::new(i))).collect();
        let mut fresh = 0;
        for _ in 0..100 {
            for (i, cell) in cells.iter().enumerate() {
                assert_eq!(read_counting(&slot, cell, &mut fresh), i as u64);
            }
        }
        assert_eq!(fresh, 3, "one refresh per cell, not one per switch");
        // More cells than entries: still right, the oldest entry goes.
        let more: Vec<Published<u64>> = (10..16).map(|i| Published::new(Arc::new(i))).collect();
        for (i, cell) in more.iter().enumerate() {
            assert_eq!(read_counting(&slot, cell, &mut fresh), 10 + i as u64);
        }
        // A dropped cell's value is released at the next refresh.
        let value = Arc::new(99u64);
        let watch = Arc::downgrade(&value);
        let gone = Published::new(value);
        assert_eq!(read_counting(&slot, &gone, &mut fresh), 99);
        drop(gone);
        assert_eq!(watch.strong_count(), 1, "the cache's");
        let other = Published::new(Arc::new(7u64));
        assert_eq!(read_counting(&slot, &other, &mut fresh), 7);
        assert_eq!(watch.strong_count(), 0, "purged at the refresh");
    }

    #[test]
    fn a_deferred_closure_may_read_through_the_cache_during_a_refresh() {
        // crossbeam runs deferred closures on a pinning thread, and a
        // refresh pins: such a closure reading through the same cache must
        // find no borrow alive.
        thread_local! {
            static SLOT: UnsafeCell<ReadCache<u64>> = const { UnsafeCell::new(ReadCache::new()) };
        }
        let cells: Arc<Vec<Published<u64>>> =
            Arc::new((0..8).map(|i| Published::new(Arc::new(i))).collect());
        let inner = Arc::clone(&cells);
        let guard = epoch::pin();
        guard.defer(move || {
            SLOT.with(|slot| {
                let mut fresh = 0;
                for (i, cell) in inner.iter().enumerate() {
                    assert_eq!(read_counting(slot, cell, &mut fresh), i as u64);
                }
            })
        });
        guard.flush();
        drop(guard);
        // Alternate more cells than entries, so every read refreshes (and
        // pins) until the deferred closure has run inside one of them.
        SLOT.with(|slot| {
            let mut fresh = 0;
            for round in 0..2000u64 {
                let i = (round % 8) as usize;
                assert_eq!(read_counting(slot, &cells[i], &mut fresh), i as u64);
            }
        });
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
        assert!(
            released_by_collector(&first),
            "a retired value was never released"
        );
    }
}
