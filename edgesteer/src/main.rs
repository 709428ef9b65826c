//! The `edgesteer` binary; everything is in the library (`cli::main`).

/// mimalloc: a proxy allocates and frees many small buffers per request on
/// few threads; glibc malloc spent ~11% of a worker in malloc/free and
/// consolidation in our profiles (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    edgesteer::cli::main()
}
