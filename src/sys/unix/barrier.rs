//! The process-wide memory barrier (Linux `membarrier`) behind asymmetric fences.

/// Makes every running thread of this process execute a full memory barrier (Linux
/// `membarrier`, private expedited), so that the other side of a store-then-load handshake
/// can do with a compiler fence. The first call registers the process; `false` (every call)
/// where the kernel cannot, and then both sides need real fences.
#[cfg(target_os = "linux")]
pub(crate) fn process_barrier() -> bool {
    use std::sync::OnceLock;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let membarrier =
        |cmd: libc::c_long| unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) == 0 };
    *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
        && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
}

/// No process-wide barrier here: both sides of a handshake use real fences.
#[cfg(not(target_os = "linux"))]
pub(crate) fn process_barrier() -> bool {
    false
}
