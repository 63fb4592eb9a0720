//! The server's resident memory, held to what the README promises (64 MB under load).

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`, kept across
/// threads and children). mimalloc asks for huge pages on its segments; on a kernel in
/// `madvise` mode each one is then backed by a whole 2 MiB page however little of it is in use.
/// Measured with `ca-bench enroll` (c=64, durable SQLite): peak RSS 88 MB with them, 54–66 MB
/// without, the rate and CPU per certificate unchanged. A kernel that refuses only costs memory.
pub fn no_transparent_huge_pages() {
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(%error, "could not turn transparent huge pages off (PR_SET_THP_DISABLE)");
    }
}
