//! Helpers shared by the integration tests: child processes that are this test binary run
//! again (its `#[ignore]`d `child` test, picked with `--exact`), and the transports to test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use procwire::{Address, Family};

/// The environment variable that names a child's role.
pub const ROLE: &str = "PROCWIRE_TEST_ROLE";

/// A child process that is killed when dropped (a failing test never leaves one behind).
pub struct ChildGuard {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl ChildGuard {
    /// The next line the child wrote with [`say`] (the test harness writes lines of its own);
    /// empty at end of output.
    pub fn line(&mut self) -> String {
        loop {
            let mut s = String::new();
            if self.stdout.read_line(&mut s).expect("read child stdout") == 0 {
                return String::new();
            }
            if let Some(said) = s.strip_prefix(SAY) {
                return said.trim_end().to_string();
            }
        }
    }

    /// Waits for the child with a deadline; returns its exit code and the rest of its stdout.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut rest = String::new();
                let _ = self.stdout.read_to_string(&mut rest);
                return (status.code(), rest);
            }
            assert!(start.elapsed() < limit, "child did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SAY: &str = "@@ ";

/// In a child: writes a line for the parent's [`ChildGuard::line`].
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{SAY}{line}");
    let _ = out.flush();
}

/// Starts this test binary again running only its `child` test, in `role`, with `env`.
pub fn spawn_child(role: &str, env: &[(&str, String)]) -> ChildGuard {
    let mut cmd = child_command(role, env);
    spawn(&mut cmd)
}

/// The command for [`spawn_child`], to add to before spawning.
pub fn child_command(role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"]);
    cmd.env(ROLE, role);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn spawn(cmd: &mut Command) -> ChildGuard {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    ChildGuard { child, stdout }
}

/// Whether this process is a child started by [`spawn_child`], and in which role.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Whether IPv6 loopback works here.
pub fn ipv6_works() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// One fresh address per transport this machine has: unix path, unix abstract (Linux),
/// TCP over IPv4, TCP over IPv6 (where `::1` works).
pub fn transports() -> Vec<Address> {
    let mut v = vec![Address::fresh(Family::Unix).unwrap()];
    if cfg!(target_os = "linux") {
        v.push(Address::fresh(Family::UnixAbstract).unwrap());
    }
    v.push(Address::fresh(Family::Tcp).unwrap());
    if ipv6_works() {
        v.push(Address::fresh(Family::Tcp6).unwrap());
    } else {
        eprintln!("note: ::1 does not work here; IPv6 TCP not tested");
    }
    v
}

/// A recognisable payload of `n` bytes.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 8) as u8)).collect()
}

/// A bounded wait's answer as a result: [`procwire::Error::Timeout`] when the time ran out, so
/// that a test fails with a message rather than hangs.
pub trait InTime<T> {
    /// The value, or a timeout error.
    fn in_time(self) -> procwire::Result<T>;
}

impl<T> InTime<T> for procwire::Result<Option<T>> {
    fn in_time(self) -> procwire::Result<T> {
        self?.ok_or_else(|| procwire::Error::Timeout("the test's time limit".into()))
    }
}

/// Kills process `pid` at once: SIGKILL on Unix, `TerminateProcess` on Windows (with the exit
/// code procwire reports as minus SIGKILL). Whether it was sent.
pub fn kill_pid(pid: u32) -> bool {
    #[cfg(unix)]
    // SAFETY: a plain system call.
    return unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0;
    #[cfg(windows)]
    return win::kill(pid);
}

/// Ends this process at once, as a kill from outside would.
pub fn kill_self() -> ! {
    kill_pid(std::process::id());
    unreachable!("still alive after killing itself")
}

/// Whether process `pid` is gone (on Linux a zombie nobody reaped counts: dead all the same).
pub fn is_dead(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
            return true;
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
    }
    #[cfg(windows)]
    return win::is_dead(pid);
}

/// Whether this test runs under Wine (`ntdll!wine_get_version` exists), for the few things
/// Wine does not do as Windows does.
pub fn under_wine() -> bool {
    #[cfg(windows)]
    return win::under_wine();
    #[cfg(unix)]
    false
}

#[cfg(windows)]
mod win {
    use windows_sys::Win32::Foundation::{CloseHandle, WAIT_OBJECT_0};
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, TerminateProcess, WaitForSingleObject,
    };

    pub fn kill(pid: u32) -> bool {
        // SAFETY: plain calls; the handle is closed before returning.
        unsafe {
            let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
            if h.is_null() {
                return false;
            }
            let ok = TerminateProcess(h, 0x10009) != 0;
            CloseHandle(h);
            ok
        }
    }

    pub fn is_dead(pid: u32) -> bool {
        // SAFETY: plain calls; the handle is closed before returning.
        unsafe {
            let h = OpenProcess(PROCESS_SYNCHRONIZE, 0, pid);
            if h.is_null() {
                return true;
            }
            let dead = WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
            CloseHandle(h);
            dead
        }
    }

    pub fn under_wine() -> bool {
        // SAFETY: ntdll is always loaded; the names are NUL-terminated.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }
}
