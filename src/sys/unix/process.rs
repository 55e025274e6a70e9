//! Child processes on Unix: spawn, fork, reap, signal, and the sentinel pipe whose end of file
//! tells that a child has exited.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use super::{FdKind, adopt_from_env, pass_to_child, wait_fd};

/// Readiness of a child process's exit: the read end of a pipe whose only write end the child
/// holds. The kernel closes it when the child exits (however it dies), so the read end turns
/// readable (end of file) then; until then nothing is ever written to it.
#[derive(Debug)]
pub(crate) struct Sentinel {
    fd: OwnedFd,
}

impl Sentinel {
    /// Whether the child has exited, waiting until `deadline` (`None`: forever).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        match wait_fd(self.fd.as_raw_fd(), libc::POLLIN, deadline) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The read end, for one `poll(2)` over sentinels and streams together.
impl AsFd for Sentinel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What [`spawn`] needs from [`prepare_child`]: the parent's end of the sentinel.
#[derive(Debug)]
pub(crate) struct Prepared {
    sentinel: Sentinel,
    daemon: bool,
}

/// Makes the child that `cmd` spawns hold the write end of a new sentinel pipe, named in its
/// environment variable `var` (adopted there by [`keep_sentinel`]); with `daemon`, arranges
/// for the child to die with this process. Keeps the parent's read end for [`spawn`].
pub(crate) fn prepare_child(cmd: &mut Command, var: &str, daemon: bool) -> io::Result<Prepared> {
    let (r, w) = std::io::pipe()?;
    pass_to_child(&w.into(), FdKind::PipeWrite, cmd, var)?;
    if daemon {
        die_with_parent(cmd)?;
    }
    Ok(Prepared { sentinel: Sentinel { fd: r.into() }, daemon })
}

/// In a child: adopts the sentinel's write end named in `var` and keeps it open until exit.
/// Missing or foreign values are ignored (the parent then just sees the exit later, by pid).
pub(crate) fn keep_sentinel(var: &str) {
    if let Ok((fd, _)) = adopt_from_env(var) {
        // Never closed: the kernel closes it when this process exits, which is the signal.
        std::mem::forget(fd);
    }
}

/// Linux: `PR_SET_PDEATHSIG` set between fork and exec, then a check that the parent did not
/// die before that (the child would have been adopted by another process and never get the
/// signal). The signal follows the *thread* that forked, so daemons are spawned from a
/// thread that lives as long as the process (see [`spawn`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn die_with_parent(cmd: &mut Command) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    Ok(())
}

/// Elsewhere: a watchdog thread in the child reads a lifeline pipe whose write end only this
/// process holds (for its whole life); end of file there means the parent is gone.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn die_with_parent(cmd: &mut Command) -> io::Result<()> {
    static LIFELINE: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);
    let mut lifeline = LIFELINE.lock().unwrap_or_else(|p| p.into_inner());
    if lifeline.is_none() {
        let (r, w) = std::io::pipe()?;
        *lifeline = Some((r.into(), w.into()));
    }
    match &*lifeline {
        Some((r, _)) => pass_to_child(r, FdKind::PipeRead, cmd, LIFELINE_VAR),
        None => Err(io::ErrorKind::Other.into()),
    }
}

/// The environment variable naming the lifeline of a daemon child (not on Linux).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const LIFELINE_VAR: &str = "PROCWIRE_PROCESS_LIFELINE";

/// In a daemon child (not on Linux): starts the watchdog that ends this process when the
/// parent's lifeline reaches end of file.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn watch_parent() {
    let Ok((fd, _)) = adopt_from_env(LIFELINE_VAR) else { return };
    let _ = std::thread::Builder::new().name("procwire-lifeline".into()).spawn(move || {
        let mut b = [0u8; 1];
        loop {
            // SAFETY: b is writable for its one byte.
            match unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) } {
                0 => break,
                n if n > 0 => {}
                _ => match io::Error::last_os_error().kind() {
                    io::ErrorKind::Interrupted => {}
                    // A descriptor someone made nonblocking: wait for data, then try again.
                    io::ErrorKind::WouldBlock if wait_fd(fd.as_raw_fd(), libc::POLLIN, None).is_ok() => {}
                    _ => break,
                },
            }
        }
        // SAFETY: kill on our own pid has no preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
}

/// On Linux the parent-death signal does the work; nothing to watch.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn watch_parent() {}

/// Spawns `cmd` prepared by [`prepare_child`]; returns the child's pid and sentinel.
pub(crate) fn spawn(cmd: Command, prepared: Prepared) -> io::Result<(u32, Sentinel)> {
    Ok((spawn_pid(cmd, prepared.daemon)?, prepared.sentinel))
}

/// Spawns `cmd` and returns the child's pid. Daemons on Linux are forked from one thread that
/// lives as long as the process, because their parent-death signal fires when the forking
/// thread ends (not the process).
fn spawn_pid(mut cmd: Command, daemon: bool) -> io::Result<u32> {
    if !daemon || !cfg!(any(target_os = "linux", target_os = "android")) {
        return cmd.spawn().map(|c| c.id());
    }
    type Job = (Command, std::sync::mpsc::Sender<io::Result<u32>>);
    static SPAWNER: Mutex<Option<std::sync::mpsc::Sender<Job>>> = Mutex::new(None);
    let tx = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
        match &*spawner {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = std::sync::mpsc::channel::<Job>();
                std::thread::Builder::new().name("procwire-spawner".into()).spawn(move || {
                    for (mut cmd, reply) in rx {
                        let r = cmd.spawn().map(|c| c.id());
                        // Closes the parent's copies of the descriptors passed to the child.
                        drop(cmd);
                        let _ = reply.send(r);
                    }
                })?;
                spawner.insert(tx).clone()
            }
        }
    };
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    tx.send((cmd, reply_tx)).map_err(|_| io::Error::other("the procwire spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("the procwire spawner thread is gone"))?
}

/// The exit code of a wait status: the code of a normal exit, minus the signal number of a
/// death by signal (as CPython's `Process.exitcode`).
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) { -libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) }
}

/// Reaps child `pid` if it has exited (`block`: waiting for it to) and returns its exit code.
pub(crate) fn reap(pid: u32, block: bool) -> io::Result<Option<i32>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            return Ok(Some(exit_code(status)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends SIGKILL (`kill`) or SIGTERM to child `pid`, which the caller has not reaped yet (so
/// the pid cannot have been reused).
pub(crate) fn signal(pid: u32, kill: bool) -> io::Result<()> {
    let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
    // SAFETY: kill has no memory preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The parent's process id.
pub(crate) fn parent_id() -> u32 {
    std::os::unix::process::parent_id()
}

/// fork(2), with a sentinel for the child's exit: in the parent the child's pid and sentinel,
/// in the child `None`.
///
/// # Safety
///
/// As `procwire::process::create`: the calling process must be single-threaded, and the child
/// must end with `std::process::exit` rather than return into the parent's code.
pub(crate) unsafe fn fork() -> io::Result<Option<(u32, Sentinel)>> {
    let (r, w) = std::io::pipe()?;
    // SAFETY: the caller guarantees the process is single-threaded, so the child starts with
    // every lock free and every structure consistent.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(r);
            std::mem::forget(w);
            Ok(None)
        }
        pid => Ok(Some((pid as u32, Sentinel { fd: r.into() }))),
    }
}
