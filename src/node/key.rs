//! [`Key`]: a cache key's bytes, stored inline when short and shared
//! (`Arc<[u8]>`) when not, in two machine words either way.
//!
//! A node's map holds its keys in its buckets. With every key behind a
//! pointer, a lookup's key comparison is one more cache miss after the
//! bucket's, and on a map larger than the caches it is as costly as the
//! probe itself. Keys of up to [`Key::INLINE_MAX`] bytes (15 on a 64-bit
//! target) live in the bucket, so a lookup compares them on the line it
//! already read, and a relocation copies them without touching a shared
//! count. Longer keys are one shared allocation, as before: cloning them
//! is a count increment, never a copy of the bytes.
//!
//! # Representation
//!
//! A union of two words and 16 bytes (`2 * size_of::<usize>()`),
//! little-endian targets only for the inline form:
//!
//! * **shared:** the data pointer of an `Arc<[u8]>` (from `Arc::into_raw`)
//!   and its length. A slice's length is at most `isize::MAX`, so the
//!   length's top bit is 0, and on a little-endian target that bit is the
//!   top bit of the last byte.
//! * **inline:** bytes `0..len` hold the key, the last byte is
//!   `0x80 | len`.
//!
//! So the last byte's top bit tells the forms apart. On a big-endian
//! target every key takes the shared form (the length's top bit is not in
//! the last byte there).
//!
//! # Safety argument
//!
//! A shared `Key` owns one strong count of its `Arc<[u8]>`: made by
//! `Arc::into_raw` in [`Key::from`], released once in `Drop`, taken again
//! with `Arc::increment_strong_count` in `Clone`. Its pointer is stored as
//! a pointer (the union's pointer field), so it keeps its provenance; the
//! byte view of a shared key is only ever read at the last byte, which is
//! the length's. The inline form owns nothing and its bytes are plain
//! data. `Key` is `Send + Sync` because
//! `Arc<[u8]>` is.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::mem::size_of;
use std::ops::Deref;
use std::sync::Arc;

/// Bytes of the representation: two words.
const SIZE: usize = 2 * size_of::<usize>();

/// The tag bit of the last byte: set for an inline key.
const INLINE_TAG: u8 = 0x80;

// The union is exactly two words: `Shared` has no padding, so every byte
// of either form is initialized.
const _: () = assert!(size_of::<Shared>() == SIZE && size_of::<Key>() == SIZE);

/// Whether this target can hold keys inline (see the module docs).
const CAN_INLINE: bool = cfg!(target_endian = "little");

/// A cache key's bytes: inline up to [`Key::INLINE_MAX`] bytes, shared
/// beyond (see the module docs). Derefs to `[u8]`; hashes, compares and
/// borrows as its bytes, so maps keyed by `Key` are searched with `&[u8]`.
///
/// ```
/// use ringcache::node::Key;
/// let short = Key::from(&b"user:42"[..]);
/// let long = Key::from(vec![b'k'; 100]);
/// assert_eq!(&*short, b"user:42");
/// assert_eq!(long.len(), 100);
/// assert_eq!(short.clone(), short);
/// ```
pub struct Key {
    repr: Repr,
}

/// The shared form: an `Arc<[u8]>`'s data pointer and length.
#[repr(C)]
#[derive(Clone, Copy)]
struct Shared {
    ptr: *const u8,
    len: usize,
}

/// The two forms over the same two words (module docs).
#[repr(C)]
#[derive(Clone, Copy)]
union Repr {
    shared: Shared,
    bytes: [u8; SIZE],
}

impl Key {
    /// The longest key stored inline on a little-endian target: 15 bytes on
    /// a 64-bit one, 7 on a 32-bit one. A big-endian target stores no key
    /// inline, not even the empty one.
    pub const INLINE_MAX: usize = SIZE - 1;

    /// Whether a key of `len` bytes takes the inline form.
    #[inline(always)]
    fn fits_inline(len: usize) -> bool {
        CAN_INLINE && len <= Key::INLINE_MAX
    }

    /// The last byte of the representation: the tag and length of an
    /// inline key, the top byte of a shared key's length.
    #[inline(always)]
    fn last_byte(&self) -> u8 {
        // SAFETY: every byte of either form is initialized (`Shared` is two
        // words, no padding), and the last one is an integer's byte in both.
        unsafe { self.repr.bytes[SIZE - 1] }
    }

    /// Whether the key is stored inline.
    #[inline(always)]
    fn is_inline(&self) -> bool {
        CAN_INLINE && self.last_byte() & INLINE_TAG != 0
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        if self.is_inline() {
            let len = usize::from(self.last_byte() & !INLINE_TAG);
            // SAFETY: an inline key was written through `bytes`, all of
            // them initialized; `len <= SIZE - 1`.
            unsafe { &self.repr.bytes[..len] }
        } else {
            // SAFETY: a shared key was written through `shared`: the data
            // pointer and length of an `Arc<[u8]>` this key keeps a count
            // of, so the slice is alive for as long as `self` is.
            unsafe { std::slice::from_raw_parts(self.repr.shared.ptr, self.repr.shared.len) }
        }
    }

    /// Whether this key's bytes are `other`: `**self == *other`, with an
    /// inline key of 4 bytes or more compared as two pairs of overlapping
    /// words instead of through a `memcmp` call. A map probe compares the
    /// probed key with each candidate this way.
    #[inline(always)]
    pub fn is(&self, other: &[u8]) -> bool {
        if !self.is_inline() {
            return self.as_bytes() == other;
        }
        let n = other.len();
        if usize::from(self.last_byte() & !INLINE_TAG) != n {
            return false;
        }
        // SAFETY: an inline key was written through `bytes`, all of them
        // initialized.
        let bytes = unsafe { &self.repr.bytes };
        // Two words cover `n` bytes when `w <= n <= 2w`: the first `w` and
        // the last `w`, overlapping in between.
        fn words<const W: usize>(a: &[u8], b: &[u8], n: usize) -> bool {
            let word = |s: &[u8], at: usize| -> [u8; W] {
                s[at..at + W].try_into().expect("a W-byte range")
            };
            word(a, 0) == word(b, 0) && word(a, n - W) == word(b, n - W)
        }
        match n {
            8.. => words::<8>(bytes, other, n),
            4..8 => words::<4>(bytes, other, n),
            _ => bytes[..n] == *other,
        }
    }

    /// The shared allocation's pointer, as `Arc::into_raw` gave it.
    #[inline]
    fn shared_ptr(&self) -> *const [u8] {
        debug_assert!(!self.is_inline());
        // SAFETY: a shared key was written through `shared`.
        let Shared { ptr, len } = unsafe { self.repr.shared };
        std::ptr::slice_from_raw_parts(ptr, len)
    }

    /// A hint for the CPU to fetch what cloning this key will touch (the
    /// shared allocation's counts); nothing for an inline key.
    #[inline]
    pub(crate) fn prefetch(&self) {
        if !self.is_inline() {
            super::prefetch_arc_counts(self.shared_ptr().cast());
        }
    }

    /// A key that shares `arc`'s bytes (no copy).
    fn shared(arc: Arc<[u8]>) -> Key {
        let len = arc.len();
        let ptr = Arc::into_raw(arc).cast::<u8>();
        Key {
            repr: Repr {
                shared: Shared { ptr, len },
            },
        }
    }

    /// An inline key; `fits_inline(bytes.len())`.
    fn inline(bytes: &[u8]) -> Key {
        debug_assert!(Key::fits_inline(bytes.len()));
        let mut raw = [0u8; SIZE];
        raw[..bytes.len()].copy_from_slice(bytes);
        // At most 15: fits beside the tag.
        raw[SIZE - 1] = INLINE_TAG | bytes.len() as u8;
        Key {
            repr: Repr { bytes: raw },
        }
    }
}

impl From<&[u8]> for Key {
    fn from(bytes: &[u8]) -> Key {
        if Key::fits_inline(bytes.len()) {
            Key::inline(bytes)
        } else {
            Key::shared(Arc::from(bytes))
        }
    }
}

impl From<Vec<u8>> for Key {
    fn from(bytes: Vec<u8>) -> Key {
        if Key::fits_inline(bytes.len()) {
            Key::inline(&bytes)
        } else {
            Key::shared(Arc::from(bytes))
        }
    }
}

impl From<Arc<[u8]>> for Key {
    fn from(bytes: Arc<[u8]>) -> Key {
        if Key::fits_inline(bytes.len()) {
            Key::inline(&bytes)
        } else {
            Key::shared(bytes)
        }
    }
}

impl Clone for Key {
    #[inline]
    fn clone(&self) -> Key {
        if !self.is_inline() {
            // SAFETY: the pointer came from `Arc::into_raw` and this key
            // holds one of its counts, so the allocation is alive; the new
            // key owns the count taken here.
            unsafe { Arc::increment_strong_count(self.shared_ptr()) };
        }
        Key { repr: self.repr }
    }
}

impl Drop for Key {
    #[inline]
    fn drop(&mut self) {
        if !self.is_inline() {
            // SAFETY: this key owns one strong count of the allocation
            // (module docs) and gives it back exactly once, here.
            unsafe { drop(Arc::from_raw(self.shared_ptr())) };
        }
    }
}

// SAFETY: a `Key` is either plain bytes or an owned count of an
// `Arc<[u8]>`, which is `Send + Sync`.
unsafe impl Send for Key {}
// SAFETY: as for `Send`: shared access only reads the bytes.
unsafe impl Sync for Key {}

impl Deref for Key {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Key {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for Key {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    /// Compares the bytes: a key's form follows from its length, so equal
    /// keys always share a form.
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl Hash for Key {
    /// Hashes as `[u8]` does, as `Borrow<[u8]>` requires.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(\"{}\")", self.as_bytes().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_length_round_trips_and_borrows_as_bytes() {
        let mut map: HashMap<Key, usize> = HashMap::new();
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8 | 0x80).collect();
            let key = Key::from(bytes.clone());
            assert_eq!(&*key, &bytes[..]);
            assert_eq!(key.is_inline(), Key::fits_inline(len));
            assert_eq!(Key::from(&bytes[..]), key);
            assert_eq!(Key::from(Arc::<[u8]>::from(&bytes[..])), key);
            let copy = key.clone();
            drop(key);
            assert_eq!(&*copy, &bytes[..]);
            map.insert(copy, len);
        }
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8 | 0x80).collect();
            assert_eq!(map.get(&bytes[..]), Some(&len));
        }
        assert_ne!(Key::from(&b"ab"[..]), Key::from(&b"abc"[..]));
        assert_ne!(Key::from(&b""[..]), Key::from(&b"\0"[..]));
    }

    #[test]
    fn is_equals_byte_equality_at_every_length_and_position() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let key = Key::from(&bytes[..]);
            assert!(key.is(&bytes), "len {len}");
            // One byte changed, at each position: the overlapping words
            // must cover every byte.
            for at in 0..len {
                let mut other = bytes.clone();
                other[at] ^= 0x01;
                assert!(!key.is(&other), "len {len}, byte {at}");
            }
            // A prefix and an extension: lengths differ.
            if len > 0 {
                assert!(!key.is(&bytes[..len - 1]), "len {len}, prefix");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(!key.is(&longer), "len {len}, extended");
        }
    }

    #[test]
    fn a_shared_key_keeps_one_count_per_clone() {
        let arc: Arc<[u8]> = Arc::from(vec![1u8; 40]);
        let key = Key::from(arc.clone());
        assert_eq!(Arc::strong_count(&arc), 2);
        let clones: Vec<Key> = (0..10).map(|_| key.clone()).collect();
        assert_eq!(Arc::strong_count(&arc), 12);
        drop(clones);
        drop(key);
        assert_eq!(Arc::strong_count(&arc), 1);
    }
}
