//! Encrypted managers and queues (feature `encrypt`) with real processes: a manager started
//! with `encrypt(true)` used from a child through a dict proxy and one of its queues; an
//! encrypted queue fed by a child producer; plain clients refused at once by encrypting
//! servers, and encrypting clients by plain ones; and (root only) a manager in one network
//! namespace used over encrypted TCP from another, joined by a veth pair.

#![cfg(all(target_os = "linux", feature = "encrypt"))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{InTime, role, say};
use procwire::manager::{DictProxy, Manager, ManagerServer, QueueProxy, Registry, SERVE};
use procwire::process::{Function, Process, use_test_entry};
use procwire::queue::{JoinableQueue, Queue, QueueBuilder};
use procwire::{Address, AuthKey, Error};

const LIMIT: Duration = Duration::from_secs(60);
/// A refusal takes one round trip: far less than this.
const FAST: Duration = Duration::from_secs(5);
const KEY: &[u8] = b"encrypted services test key";

/// The error of a plain client at an encrypting server, or the reverse: refused in the
/// handshake, saying why.
fn assert_mismatch<T: std::fmt::Debug>(r: procwire::Result<T>, started: Instant) {
    match r {
        Err(Error::AuthenticationFailed(m)) => assert!(m.contains("encrypt"), "{m}"),
        other => panic!("expected a refusal for the encryption mismatch, got {other:?}"),
    }
    assert!(started.elapsed() < FAST, "refused only after {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// An encrypted manager used from a child

/// What the child of the manager test gets: a dict and a queue of the manager, and its
/// address and key.
type Shared = (DictProxy<String, u64>, QueueProxy<u64>, String, Vec<u8>);

/// Reads what the parent put, writes back through the proxies it was sent, and tries the
/// manager without encryption.
fn use_encrypted((d, q, address, key): Shared) -> String {
    let seen = d.get(&"parent".to_string()).unwrap().unwrap();
    d.insert(&"child".to_string(), &(seen + 1)).unwrap();
    q.put(&(seen * 10)).unwrap();
    q.close().unwrap();
    // The proxies worked, so they connected encrypted: the manager refuses anything else.
    let encrypted = Manager::connect_encrypted(address.as_str(), key.clone()).unwrap().is_encrypted();
    let plain = Manager::connect(address.as_str(), key);
    format!("encrypted {encrypted}; plain {plain:?}")
}

static USE_ENCRYPTED: Function<Shared, String> = Function::new("use_encrypted", use_encrypted);

#[test]
fn an_encrypted_manager_used_from_a_child_process() {
    use_test_entry("procwire_child");
    let key = AuthKey::random().unwrap();
    let m = Manager::builder()
        .address("tcp:127.0.0.1:0".parse().unwrap())
        .authkey(key.clone())
        .encrypt(true)
        .start()
        .unwrap();
    assert!(m.is_encrypted());
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"parent".to_string(), &41).unwrap();
    let q = m.queue::<u64>().unwrap();

    let mut p = Process::new(
        &USE_ENCRYPTED,
        (d.clone(), q.clone(), m.address().to_string(), key.as_bytes().to_vec()),
    );
    p.start().unwrap();
    let said = p.result_timeout(LIMIT).in_time().unwrap();
    assert!(said.starts_with("encrypted true; plain Err(AuthenticationFailed("), "{said}");
    assert!(said.contains("encrypt"), "{said}");
    assert_eq!(d.get(&"child".to_string()).unwrap(), Some(42));
    assert_eq!(q.get_timeout(LIMIT).unwrap(), Some(410), "the manager's queue, reached encrypted");

    // Here too: a plain client is refused at once, an encrypted one with the key gets in.
    let started = Instant::now();
    assert_mismatch(Manager::connect(m.address(), key.clone()), started);
    let other = Manager::connect_encrypted(m.address(), key).unwrap();
    assert!(other.object_count().unwrap() >= 2);
    m.shutdown().unwrap();
}

#[test]
fn an_encrypting_client_at_a_plain_manager_is_refused() {
    let key = AuthKey::random().unwrap();
    let server = ManagerServer::bind("tcp:127.0.0.1:0", key.clone(), Registry::new()).unwrap();
    let started = Instant::now();
    assert_mismatch(Manager::connect_encrypted(server.address(), key.clone()), started);
    // The server goes on serving plain clients.
    let m = Manager::connect(server.address(), key).unwrap();
    assert!(!m.is_encrypted());
    assert_eq!(m.object_count().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// An encrypted queue with a child producer

fn produce((q, n): (Queue<u64>, u64)) -> bool {
    for i in 0..n {
        q.put(&i).unwrap();
    }
    q.close().unwrap();
    q.is_encrypted()
}

static PRODUCE: Function<(Queue<u64>, u64), bool> = Function::new("produce", produce);

#[test]
fn an_encrypted_queue_with_a_child_producer() {
    use_test_entry("procwire_child");
    let q: Queue<u64> = QueueBuilder::new().authkey(KEY).encrypt(true).maxsize(16).build().unwrap();
    assert!(q.is_encrypted());
    let n = 2_000;
    let mut p = Process::new(&PRODUCE, (q.clone(), n));
    p.start().unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(q.get_timeout(LIMIT).unwrap().expect("an item within the limit"));
    }
    assert!(p.result_timeout(LIMIT).in_time().unwrap(), "the child's handle connected encrypted");
    assert_eq!(got, (0..n).collect::<Vec<_>>());

    let started = Instant::now();
    assert_mismatch(Queue::<u64>::connect(q.address(), KEY), started);
    let there = Queue::<u64>::connect_encrypted(q.address(), KEY).unwrap();
    there.put(&7).unwrap();
    there.close().unwrap();
    assert_eq!(q.get_timeout(LIMIT).unwrap(), Some(7));
}

#[test]
fn an_encrypting_client_at_a_plain_queue_is_refused() {
    let q: JoinableQueue<u64> = QueueBuilder::new().authkey(KEY).build_joinable().unwrap();
    assert!(!q.is_encrypted());
    let started = Instant::now();
    assert_mismatch(JoinableQueue::<u64>::connect_encrypted(q.address(), KEY), started);
    let started = Instant::now();
    let refused = Queue::<u64>::connect_encrypted(q.address(), KEY);
    assert_mismatch(refused, started);
    let plain = JoinableQueue::<u64>::connect(q.address(), KEY).unwrap();
    plain.put(&1).unwrap();
    assert_eq!(q.get_timeout(LIMIT).unwrap(), Some(1));
}

#[test]
#[ignore = "the body of this binary's child processes"]
fn procwire_child() {
    procwire::process::init(&[&SERVE, &USE_ENCRYPTED, &PRODUCE]);
}

// ---------------------------------------------------------------------------------------------
// Two hosts: network namespaces joined by a veth pair

/// The environment variables of the namespace children.
const ADDR: &str = "PROCWIRE_TEST_ADDR";

#[test]
#[ignore = "the body of this binary's namespace children"]
fn child() {
    match role().as_deref() {
        // In the server's namespace: serve an encrypted manager until killed.
        Some("netns-manager") => {
            let listen = std::env::var(ADDR).unwrap();
            let server = ManagerServer::bind_encrypted(listen.as_str(), KEY, Registry::new()).unwrap();
            say(&format!("addr {}", server.address()));
            server.serve_forever();
        }
        // In the client's namespace: use the manager over encrypted TCP, then try it plain.
        Some("netns-client") => {
            let addr = std::env::var(ADDR).unwrap();
            let m = Manager::connect_encrypted(addr.as_str(), KEY).unwrap();
            let d = m.dict::<String, String>().unwrap();
            d.insert(&"across".to_string(), &"hosts".to_string()).unwrap();
            say(&format!("got {}", d.get(&"across".to_string()).unwrap().unwrap_or_default()));
            match Manager::connect(addr.as_str(), KEY) {
                Err(Error::AuthenticationFailed(m)) if m.contains("encrypt") => say("plain refused"),
                other => say(&format!("plain {other:?}")),
            }
        }
        other => panic!("unknown role {other:?}"),
    }
    std::process::exit(0);
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Two network namespaces joined by a veth pair (a /30 of 198.18.0.0/15, the range set aside
/// for network tests), deleted on drop.
struct TwoHosts {
    names: [String; 2],
    ips: [String; 2],
}

impl TwoHosts {
    fn create() -> Result<TwoHosts, String> {
        let pid = std::process::id();
        let subnet = pid % (1 << 15);
        let (hi, lo, base) = (18 + (subnet >> 14), (subnet >> 6) & 0xff, (subnet & 0x3f) * 4);
        let hosts = TwoHosts {
            names: [format!("procwire-enc-a-{pid}"), format!("procwire-enc-b-{pid}")],
            ips: [format!("198.{hi}.{lo}.{}", base + 1), format!("198.{hi}.{lo}.{}", base + 2)],
        };
        let links = [format!("pwea{pid}"), format!("pweb{pid}")];
        for name in &hosts.names {
            run(&["ip", "netns", "add", name])?;
        }
        run(&["ip", "link", "add", &links[0], "type", "veth", "peer", "name", &links[1]])?;
        for ((name, link), ip) in hosts.names.iter().zip(&links).zip(&hosts.ips) {
            run(&["ip", "link", "set", link, "netns", name])?;
            run(&["ip", "-n", name, "addr", "add", &format!("{ip}/30"), "dev", link])?;
            run(&["ip", "-n", name, "link", "set", link, "up"])?;
            run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// This test binary's child in `role`, run inside namespace `i`.
    fn spawn(&self, i: usize, role: &str, addr: &str) -> common::ChildGuard {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names[i]]).arg(std::env::current_exe().unwrap());
        cmd.args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"]);
        cmd.env(common::ROLE, role).env(ADDR, addr);
        common::spawn(&mut cmd)
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for name in &self.names {
            let _ = run(&["ip", "netns", "delete", name]);
        }
    }
}

#[test]
fn a_manager_on_another_host_over_encrypted_tcp() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: creating network namespaces needs root");
        return;
    }
    let hosts = match TwoHosts::create() {
        Ok(h) => h,
        Err(e) => {
            println!("skipped: `ip netns` does not work here ({e})");
            return;
        }
    };
    let mut server = hosts.spawn(0, "netns-manager", &format!("tcp:{}:0", hosts.ips[0]));
    let line = server.line();
    let addr: Address = line.strip_prefix("addr ").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    assert!(matches!(&addr, Address::Tcp { host, .. } if *host == hosts.ips[0]), "{addr}");
    // The client's namespace reaches it only through the veth pair.
    let mut client = hosts.spawn(1, "netns-client", &addr.to_string());
    assert_eq!(client.line(), "got hosts");
    assert_eq!(client.line(), "plain refused");
    let (code, _) = client.finish(LIMIT);
    assert_eq!(code, Some(0));
    println!(
        "a manager in {} served a client in {} over encrypted TCP at {addr}",
        hosts.names[0], hosts.names[1]
    );
}
