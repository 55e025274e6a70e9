/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it (Wine has it from 8.13).
 *
 * Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll, so without this
 * every Rust Windows program exits with status 53 before main under Wine 8.0
 * (rust-lang/rust issue 121337). ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), in chunks that fit its ULONG length. It never fails on real Windows;
 * here it reports FALSE only if RtlGenRandom does.
 *
 * Built by .ci/windows.sh: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll
 * processprng.c -ladvapi32, then copied into the Wine prefix's system32.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
