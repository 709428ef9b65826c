//! The allocator's settings, for every binary that serves (`edgesteer`,
//! the e2e tests' copy of it, the bare pass-through of the benches): each
//! installs mimalloc as its global allocator and runs
//! [`mimalloc_options`] from a constructor, before `main`:
//!
//! ```ignore
//! #[allow(unsafe_code)] // a constructor (edgesteer_proxy::allocator)
//! #[used]
//! #[link_section = ".init_array"]
//! static MIMALLOC_OPTIONS: extern "C" fn() = edgesteer_proxy::allocator::mimalloc_options;
//! ```
//!
//! mimalloc commits each arena (1 GiB reserved at a time) up front on an
//! overcommitting OS such as Linux, and then keeps resident what start-up
//! allocated and freed (compiling the table, the geo and DNS indexes).
//! With arena eager commit off, arena memory is committed as it is used
//! and purged when freed: the idle proxy's RSS drops from about 30 to
//! 18 MB for 2.8% more CPU per request, paired (BENCHMARKS.md, "The memory
//! floor"; `MIMALLOC_ARENA_EAGER_COMMIT=2` in the environment undoes it). An
//! option must be set before mimalloc reserves its first arena, that is
//! before the first allocation: hence the constructor, which runs before
//! Rust's runtime allocates anything. The e2e test `memory_floor` checks
//! the idle proxy's anonymous memory, which this setting decides.

/// `mi_option_arena_eager_commit` in mimalloc's `mi_option_t` (v2 and v3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Sets mimalloc's options; for a constructor (see the module's doc).
/// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment wins (mimalloc reads
/// it itself): `2` gives back mimalloc's default, eager on Linux.
pub extern "C" fn mimalloc_options() {
    // SAFETY: getenv with a NUL-terminated name, before any thread exists
    // (nothing can set the environment concurrently); mi_option_set takes
    // no pointers. Neither allocates.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0)
        }
    }
}
