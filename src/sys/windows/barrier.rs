//! The process-wide memory barrier (`FlushProcessWriteBuffers`) behind asymmetric fences.

/// Makes every running thread of this process execute a full memory barrier
/// (`FlushProcessWriteBuffers`), so that the other side of a store-then-load handshake can do
/// with a compiler fence. Always available.
pub(crate) fn process_barrier() -> bool {
    // SAFETY: no arguments, no memory of ours.
    unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
    true
}
