//! `parapet`: the server (`parapet serve`) and the client for operators and auditors.

#![forbid(unsafe_code)]

mod cli;

/// Submit allocates in many small pieces on every core at once; glibc's allocator spends a fifth
/// of the server's time on its arena locks there, and mimalloc's per-thread heaps doubled the
/// resident set (see the README's Performance section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
