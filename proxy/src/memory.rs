//! How hoist-proxy uses the C allocator (glibc's malloc, linked in statically): at most a few
//! arenas, since every thread that allocates would otherwise get its own 64 MiB arena, and free
//! memory handed back to the system now and then, so a burst of clients (an attack) does not
//! leave the proxy holding its peak for good. Elsewhere (musl, other systems) both are no-ops.

use std::time::Duration;

/// Arenas glibc may create: one per serving thread is what the request path needs; the rest of
/// the threads share.
const MAX_ARENAS: i32 = 4;

/// How often free memory is returned to the system.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Limits the allocator's arenas; call before starting threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Returns free allocator memory to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
