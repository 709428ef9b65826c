//! The `edgesteer` binary; everything is in the library (`cli::main`).

/// mimalloc: a proxy allocates and frees many small buffers per request on
/// few threads; glibc malloc spent ~11% of a worker in malloc/free and
/// consolidation in our profiles (see BENCHMARKS.md).
/// The `system-alloc` feature leaves the system allocator in place, for
/// heap profilers that see only malloc (`benches/allocs.sh`).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(feature = "system-alloc"))]
#[allow(unsafe_code)] // a constructor (edgesteer_proxy::allocator)
#[used]
#[link_section = ".init_array"]
static MIMALLOC_OPTIONS: extern "C" fn() = edgesteer_proxy::allocator::mimalloc_options;

fn main() -> std::process::ExitCode {
    edgesteer::cli::main()
}
