//! The `tokengate` binary: hands the command line to `tokengate::cli`.
//! Not `#[tokio::main]`: Pingora builds its own runtimes.

// A proxy allocates and frees small buffers on every request; profiling
// showed glibc malloc as the largest user-space cost, mimalloc is far cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tokengate::cli::main()
}
