//! Managers with real processes: every built-in type used from two processes, Condition,
//! Event and Barrier across four, a custom type, remote access over TCP with a wrong key
//! refused, a client killed while it holds a lock, objects freed when their proxies are gone,
//! and 16 clients at once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::InTime;
use procwire::manager::{
    BarrierProxy, ChildArgs, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, Manager,
    NamespaceProxy, Proxy, QueueProxy, RLockProxy, Registry, SERVE, SemaphoreProxy, ValueProxy, serve_child,
};
use procwire::process::{ChannelFunction, Function, Process, start, use_test_entry};
use procwire::{Address, AuthKey, Connection, Error, RemoteKind};

const LIMIT: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(60);

fn remote_kind<T: std::fmt::Debug>(r: procwire::Result<T>) -> RemoteKind {
    match r {
        Err(Error::Remote { kind, .. }) => kind,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Every built-in type from two processes

type Everything = (
    DictProxy<String, i64>,
    ListProxy<i64>,
    ValueProxy<String>,
    NamespaceProxy,
    QueueProxy<u64>,
    LockProxy,
    RLockProxy,
    SemaphoreProxy,
    SemaphoreProxy,
    ConditionProxy,
    EventProxy,
    BarrierProxy,
);

/// Reads what the parent set, changes everything, and reports what it saw.
fn use_everything(h: Everything) -> Vec<String> {
    let (d, l, v, ns, q, lock, rlock, sem, bsem, cond, ev, bar) = h;
    let mut saw = Vec::new();
    saw.push(format!("dict {:?}", d.items().unwrap()));
    d.insert(&"child".into(), &2).unwrap();
    saw.push(format!("list {:?}", l.to_vec().unwrap()));
    l.push(&99).unwrap();
    saw.push(format!("value {}", v.get().unwrap()));
    v.set(&"from child".to_string()).unwrap();
    saw.push(format!("ns {}", ns.get::<String>("greeting").unwrap()));
    ns.set("answer", &42u32).unwrap();
    saw.push(format!("queue {}", q.get_timeout(LONG).unwrap().unwrap()));
    q.put(&7).unwrap();
    q.close().unwrap();
    // The parent holds the lock: it cannot be taken here until the parent releases it.
    saw.push(format!("lock busy {}", !lock.try_acquire().unwrap()));
    saw.push(format!("rlock busy {}", !rlock.try_acquire().unwrap()));
    saw.push(format!("sem {}", sem.try_acquire().unwrap()));
    saw.push(format!("bsem {}", bsem.try_acquire().unwrap()));
    bsem.release().unwrap();
    cond.acquire().unwrap();
    cond.notify_all().unwrap();
    cond.release().unwrap();
    ev.set().unwrap();
    saw.push(format!("barrier {}", bar.wait_timeout(LONG).is_ok()));
    saw
}

static USE_EVERYTHING: Function<Everything, Vec<String>> = Function::new("use_everything", use_everything);

#[test]
fn every_builtin_type_from_two_processes() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let d = m.dict::<String, i64>().unwrap();
    d.insert(&"parent".into(), &1).unwrap();
    let l = m.list([1i64, 2, 3]).unwrap();
    let v = m.value(&"from parent".to_string()).unwrap();
    let ns = m.namespace().unwrap();
    ns.set("greeting", &"hi").unwrap();
    let q = m.queue_with_maxsize::<u64>(4).unwrap();
    q.put(&5).unwrap();
    let lock = m.lock().unwrap();
    lock.acquire().unwrap();
    let rlock = m.rlock().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    let sem = m.semaphore(1).unwrap();
    let bsem = m.bounded_semaphore(1).unwrap();
    let cond = m.condition().unwrap();
    let ev = m.event().unwrap();
    let bar = m.barrier(2).unwrap();
    let handles = (
        d.clone(),
        l.clone(),
        v.clone(),
        ns.clone(),
        q.clone(),
        lock.clone(),
        rlock.clone(),
        sem.clone(),
        bsem.clone(),
        cond.clone(),
        ev.clone(),
        bar.clone(),
    );
    let mut p = Process::new(&USE_EVERYTHING, handles);
    p.start().unwrap();
    assert!(ev.wait_timeout(LONG).unwrap(), "the child sets the event");
    assert!(bar.wait_timeout(LONG).unwrap() < 2);
    let saw = p.result_timeout(LIMIT).in_time().unwrap();
    assert_eq!(
        saw,
        vec![
            "dict [(\"parent\", 1)]",
            "list [1, 2, 3]",
            "value from parent",
            "ns hi",
            "queue 5",
            "lock busy true",
            "rlock busy true",
            "sem true",
            "bsem true",
            "barrier true",
        ]
    );
    assert_eq!(d.get(&"child".into()).unwrap(), Some(2));
    assert_eq!(d.len().unwrap(), 2);
    assert_eq!(l.to_vec().unwrap(), vec![1, 2, 3, 99]);
    assert_eq!(v.get().unwrap(), "from child");
    assert_eq!(ns.get::<u32>("answer").unwrap(), 42);
    assert_eq!(q.get_timeout(LONG).unwrap(), Some(7));
    // The child took the semaphore's permit and ended without giving it back: returned.
    assert!(sem.acquire_timeout(LONG).unwrap());
    assert_eq!(bsem.value().unwrap(), 1);
    assert_eq!(remote_kind(bsem.release()), RemoteKind::Value, "bounded");
    lock.release().unwrap();
    assert!(lock.try_acquire().unwrap());
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert_eq!(remote_kind(rlock.release()), RemoteKind::Runtime);
    m.shutdown().unwrap();
    assert!(d.len().is_err(), "proxies stop working after shutdown");
}

#[test]
fn builtin_errors_and_edge_cases() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let l = m.list(0..10i64).unwrap();
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>());
    assert_eq!(l.get(-1).unwrap(), 0);
    assert_eq!(remote_kind(l.get(10)), RemoteKind::Index);
    l.sort().unwrap();
    assert_eq!(l.pop().unwrap(), 9);
    assert_eq!(l.pop_at(0).unwrap(), 0);
    l.insert(-100, &-1).unwrap();
    assert_eq!(l.index(&-1).unwrap(), 0);
    assert_eq!(remote_kind(l.remove(&1000)), RemoteKind::Value);
    let empty = m.list(Vec::<i64>::new()).unwrap();
    assert_eq!(remote_kind(empty.pop()), RemoteKind::Index);
    let ns = m.namespace().unwrap();
    assert_eq!(remote_kind(ns.get::<u8>("missing")), RemoteKind::Attribute);
    let d = m.dict::<(u8, String), Option<u8>>().unwrap();
    d.insert(&(1, "a".into()), &None).unwrap();
    assert_eq!(d.get(&(1, "a".into())).unwrap(), Some(None), "a null value is not a missing one");
    assert_eq!(d.get(&(2, "a".into())).unwrap(), None);
    assert_eq!(d.setdefault(&(1, "a".into()), &Some(3)).unwrap(), None);
    let lock = m.lock().unwrap();
    assert_eq!(remote_kind(lock.release()), RemoteKind::Runtime);
    assert_eq!(remote_kind(m.barrier(0)), RemoteKind::Value);
    assert_eq!(remote_kind(m.create("no such type", &())), RemoteKind::Create);
    // Arguments that do not fit the method.
    assert_eq!(remote_kind(l.proxy().call::<_, ()>("set", &"not an index")), RemoteKind::Type);
    assert_eq!(remote_kind(l.proxy().call::<_, ()>("frobnicate", &())), RemoteKind::Attribute);
    let t = Instant::now();
    assert!(!lock.acquire_timeout(Duration::ZERO).unwrap() || lock.release().is_ok());
    let ev = m.event().unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(200)).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
    // A wrongly typed proxy refuses to decode.
    let bytes = {
        let mut b = Vec::new();
        ciborium::into_writer(&lock, &mut b).unwrap();
        b
    };
    assert!(ciborium::from_reader::<EventProxy, _>(&bytes[..]).is_err());
    let same: LockProxy = ciborium::from_reader(&bytes[..]).unwrap();
    assert!(same.try_acquire().unwrap());
    assert!(lock.locked().unwrap());
}

// ---------------------------------------------------------------------------------------------
// Condition, Event and Barrier across four processes

type Sync4 = (u64, ConditionProxy, ValueProxy<u64>, ListProxy<u64>, EventProxy, BarrierProxy);

fn sync_party((me, cond, turn, order, ev, bar): Sync4) -> (u64, bool, u64) {
    // Barrier: all four meet (three children and the parent).
    let index = bar.wait_timeout(LONG).expect("barrier");
    // Event: set by the parent once everyone is waiting.
    let set = ev.wait_timeout(LONG).expect("event");
    // Condition: take turns in the order 1, 2, 3.
    cond.acquire().expect("acquire");
    let ok = cond.wait_for_timeout(|| Ok(turn.get()? == me), LONG).expect("wait_for");
    assert!(ok, "turn {me} never came");
    order.push(&me).expect("push");
    turn.set(&(me + 1)).expect("set");
    cond.notify_all().expect("notify_all");
    cond.release().expect("release");
    (index, set, me)
}

static SYNC_PARTY: Function<Sync4, (u64, bool, u64)> = Function::new("sync_party", sync_party);

#[test]
fn condition_event_barrier_across_four_processes() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let cond = m.condition().unwrap();
    let turn = m.value(&0u64).unwrap();
    let order = m.list(Vec::<u64>::new()).unwrap();
    let ev = m.event().unwrap();
    let bar = m.barrier(4).unwrap();
    // Started in reverse so that the order of turns cannot be the order of starting.
    let mut kids: Vec<_> = (1..=3u64)
        .rev()
        .map(|me| {
            let mut p = Process::new(
                &SYNC_PARTY,
                (me, cond.clone(), turn.clone(), order.clone(), ev.clone(), bar.clone()),
            );
            p.start().unwrap();
            p
        })
        .collect();
    let mut indices = HashSet::new();
    indices.insert(bar.wait_timeout(LONG).unwrap());
    // Everyone passed the barrier; give them time to wait on the event, which nobody set.
    std::thread::sleep(Duration::from_millis(200));
    assert!(order.is_empty().unwrap());
    assert!(!ev.is_set().unwrap());
    ev.set().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(order.is_empty().unwrap(), "nobody's turn yet");
    cond.acquire().unwrap();
    turn.set(&1).unwrap();
    cond.notify_all().unwrap();
    cond.release().unwrap();
    for p in &mut kids {
        let (index, set, _) = p.result_timeout(LIMIT).in_time().unwrap();
        assert!(set);
        indices.insert(index);
    }
    assert_eq!(indices, HashSet::from([0, 1, 2, 3]));
    assert_eq!(order.to_vec().unwrap(), vec![1, 2, 3]);
    assert_eq!(turn.get().unwrap(), 4);
    // A wait that times out breaks the barrier for everyone, as in threading.
    let b2 = m.barrier(2).unwrap();
    assert_eq!(remote_kind(b2.wait_timeout(Duration::from_millis(50))), RemoteKind::BrokenBarrier);
    assert!(b2.broken().unwrap());
    b2.reset().unwrap();
    assert!(!b2.broken().unwrap());
    // A condition wait without the lock, and one that times out.
    assert_eq!(remote_kind(cond.wait_timeout(Duration::ZERO)), RemoteKind::Runtime);
    cond.acquire().unwrap();
    assert!(!cond.wait_timeout(Duration::from_millis(50)).unwrap());
    cond.release().unwrap();
}

// ---------------------------------------------------------------------------------------------
// A custom type

#[derive(Default)]
struct Foo {
    calls: Vec<String>,
}

fn foo_registry() -> Registry {
    let mut r = Registry::new();
    r.register("Foo", |(): ()| Foo::default())
        .method("bar", |obj: &mut Foo, who: String| {
            obj.calls.push(who);
            obj.calls.len() as u64
        })
        .method("calls", |obj: &mut Foo, (): ()| obj.calls.clone())
        .method("boom", |_: &mut Foo, (): ()| -> u8 { panic!("boom inside Foo") })
        .try_method(
            "checked",
            |_: &mut Foo, n: i32| if n < 0 { Err(format!("{n} is negative")) } else { Ok(n * 2) },
        );
    r.register("Counter", |start: u64| start).method("add", |c: &mut u64, n: u64| {
        *c += n;
        *c
    });
    r
}

static FOO_MANAGER: ChannelFunction<ChildArgs> =
    ChannelFunction::new("foo_manager", |ch, args| serve_child(ch, args, foo_registry()));

fn call_foo(obj: Proxy) -> u64 {
    obj.call("bar", &"child").unwrap()
}

static CALL_FOO: Function<Proxy, u64> = Function::new("call_foo", call_foo);

#[test]
fn custom_type() {
    use_test_entry("procwire_child");
    let m = Manager::builder().start_with(&FOO_MANAGER).unwrap();
    let obj = m.create("Foo", &()).unwrap();
    assert_eq!(obj.call::<_, u64>("bar", &"parent").unwrap(), 1);
    let mut p = Process::new(&CALL_FOO, obj.clone());
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 2);
    assert_eq!(obj.call::<_, Vec<String>>("calls", &()).unwrap(), vec!["parent", "child"]);
    match obj.call::<_, ()>("baz", &()) {
        Err(Error::Remote { kind, message }) => {
            assert_eq!(kind, RemoteKind::Attribute);
            assert!(message.contains("'Foo'") && message.contains("'baz'"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match obj.call::<_, u8>("boom", &()) {
        Err(Error::Remote { kind, message }) => {
            assert_eq!((kind, message.as_str()), (RemoteKind::Panic, "boom inside Foo"))
        }
        other => panic!("{other:?}"),
    }
    // Still serving, the object still usable after the panic.
    assert_eq!(obj.call::<_, u64>("bar", &"again").unwrap(), 3);
    assert_eq!(obj.call::<_, i32>("checked", &21).unwrap(), 42);
    match obj.call::<_, i32>("checked", &-1) {
        Err(Error::Remote { kind, message }) => {
            assert_eq!((kind, message.as_str()), (RemoteKind::Error, "-1 is negative"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(remote_kind(obj.call::<_, u64>("bar", &12)), RemoteKind::Type);
    let c = m.create("Counter", &10u64).unwrap();
    assert_eq!(c.call::<_, u64>("add", &5).unwrap(), 15);
    // The built-ins are there too.
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    // The manager built without Foo refuses it.
    let plain = Manager::start().unwrap();
    assert_eq!(remote_kind(plain.create("Foo", &())), RemoteKind::Create);
}

// ---------------------------------------------------------------------------------------------
// Remote access over TCP

fn tcp_client((address, key): (String, Vec<u8>)) -> (u64, String) {
    let m = Manager::connect(&address, key).unwrap();
    let d = m.dict::<String, u64>().unwrap();
    d.insert(&"x".into(), &1).unwrap();
    let wrong = Manager::connect(&address, b"not the key".to_vec());
    (d.len().unwrap() as u64, format!("{:?}", wrong.map(|_| ())))
}

static TCP_CLIENT: Function<(String, Vec<u8>), (u64, String)> = Function::new("tcp_client", tcp_client);

#[test]
fn remote_over_tcp_and_wrong_key() {
    use_test_entry("procwire_child");
    let key = AuthKey::random().unwrap();
    let m =
        Manager::builder().address("tcp:127.0.0.1:0".parse().unwrap()).authkey(key.clone()).start().unwrap();
    let address = m.address().clone();
    assert!(matches!(address, Address::Tcp { port, .. } if port != 0), "{address}");
    match Manager::connect(&address, b"wrong".to_vec()) {
        Err(Error::AuthenticationFailed(_)) => {}
        other => panic!("a wrong key must be refused: {other:?}"),
    }
    let mut p = Process::new(&TCP_CLIENT, (address.to_string(), key.as_bytes().to_vec()));
    p.start().unwrap();
    let (len, wrong) = p.result_timeout(LIMIT).in_time().unwrap();
    assert_eq!(len, 1);
    assert!(wrong.contains("AuthenticationFailed"), "{wrong}");
    // A queue of a TCP manager listens on TCP too, so remote clients can reach it.
    let q = m.queue::<u8>().unwrap();
    assert!(matches!(q.address(), Address::Tcp { .. }), "{}", q.address());
    q.put(&1).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), Some(1));
    // The manager is still there for clients with the right key.
    let other = Manager::connect(&address, key).unwrap();
    // The dict of the client that exited is freed once the manager sees its connections end
    // (asynchronously); the queue stays.
    wait_for_count(&other, 1);
    assert_eq!(
        other.object_count().unwrap(),
        1,
        "the dict of the client that exited was freed; the queue stays"
    );
}

// ---------------------------------------------------------------------------------------------
// A client killed while it holds a lock

fn hold_and_hang(
    mut ch: Connection,
    (lock, rlock, sem, cond): (LockProxy, RLockProxy, SemaphoreProxy, ConditionProxy),
) {
    lock.acquire().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    cond.acquire().unwrap();
    ch.send(&"holding").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

static HOLD_AND_HANG: ChannelFunction<(LockProxy, RLockProxy, SemaphoreProxy, ConditionProxy)> =
    ChannelFunction::new("hold_and_hang", hold_and_hang);

#[test]
fn client_killed_while_holding_a_lock() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let (lock, rlock, sem, cond) =
        (m.lock().unwrap(), m.rlock().unwrap(), m.semaphore(3).unwrap(), m.condition().unwrap());
    let mut ch = start(&HOLD_AND_HANG, (lock.clone(), rlock.clone(), sem.clone(), cond.clone())).unwrap();
    ch.set_read_timeout(Some(LONG));
    assert_eq!(ch.recv::<String>().unwrap(), "holding");
    assert!(!lock.try_acquire().unwrap());
    assert!(!rlock.try_acquire().unwrap());
    assert!(!cond.try_acquire().unwrap());
    assert_eq!(sem.value().unwrap(), 1);
    // A waiter blocked on the lock when the holder dies gets it.
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire_timeout(LONG))
    };
    std::thread::sleep(Duration::from_millis(100));
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    let t = Instant::now();
    assert!(waiter.join().unwrap().unwrap(), "the blocked acquire got the lock");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(rlock.acquire_timeout(LONG).unwrap());
    assert!(cond.acquire_timeout(LONG).unwrap());
    assert_eq!(sem.value().unwrap(), 3, "the dead client's two permits came back");
}

// ---------------------------------------------------------------------------------------------
// Objects are freed when their proxies are gone

fn use_and_drop((d, l): (DictProxy<u8, u8>, ListProxy<u8>)) -> usize {
    d.insert(&1, &1).unwrap();
    l.push(&1).unwrap();
    let n = d.proxy().manager().object_count().unwrap();
    drop((d, l));
    n
}

static USE_AND_DROP: Function<(DictProxy<u8, u8>, ListProxy<u8>), usize> =
    Function::new("use_and_drop", use_and_drop);

fn keep_and_hang(mut ch: Connection, d: DictProxy<u8, u8>) {
    ch.send(&d.len().unwrap()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

static KEEP_AND_HANG: ChannelFunction<DictProxy<u8, u8>> =
    ChannelFunction::new("keep_and_hang", keep_and_hang);

fn wait_for_count(m: &Manager, n: usize) {
    let t = Instant::now();
    while m.object_count().unwrap() != n {
        assert!(t.elapsed() < LONG, "object count stays {} instead of {n}", m.object_count().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn objects_freed_when_proxies_are_gone() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    assert_eq!(m.object_count().unwrap(), 0);
    let d = m.dict::<u8, u8>().unwrap();
    let l = m.list(Vec::<u8>::new()).unwrap();
    let d2 = d.clone();
    assert_eq!(m.object_count().unwrap(), 2);
    drop(d2);
    assert_eq!(m.object_count().unwrap(), 2, "a clone dropped, the proxy remains");
    // Passed to a child that drops them: still alive, the parent holds them.
    let mut p = Process::new(&USE_AND_DROP, (d.clone(), l.clone()));
    p.start().unwrap();
    assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), 2);
    assert_eq!(m.object_count().unwrap(), 2);
    assert_eq!(d.len().unwrap(), 1);
    drop(l);
    assert_eq!(m.object_count().unwrap(), 1);
    // Handed to a child that keeps it; the parent lets go: the child's reference keeps it.
    let mut ch = start(&KEEP_AND_HANG, d.clone()).unwrap();
    ch.set_read_timeout(Some(LONG));
    assert_eq!(ch.recv::<usize>().unwrap(), 1);
    drop(d);
    assert_eq!(m.object_count().unwrap(), 1);
    // The child dies: its references go with it.
    ch.kill().unwrap();
    ch.join_timeout(LIMIT).unwrap();
    wait_for_count(&m, 0);
    // A proxy serialized and taken over in the same process.
    let e = m.event().unwrap();
    let mut bytes = Vec::new();
    ciborium::into_writer(&e, &mut bytes).unwrap();
    drop(e);
    assert_eq!(m.object_count().unwrap(), 1, "the reference in transit keeps it");
    let back: EventProxy = ciborium::from_reader(&bytes[..]).unwrap();
    back.set().unwrap();
    drop(back);
    assert_eq!(m.object_count().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Many clients at once

type Load = (u64, u64, LockProxy, ValueProxy<u64>, DictProxy<String, u64>, ListProxy<u64>);

fn load_client((me, n, lock, counter, d, l): Load) -> u64 {
    let mut done = 0;
    for i in 0..n {
        lock.acquire().expect("acquire");
        let v = counter.get().expect("get");
        counter.set(&(v + 1)).expect("set");
        lock.release().expect("release");
        d.insert(&format!("{me}-{i}"), &i).expect("insert");
        assert_eq!(d.get(&format!("{me}-{i}")).expect("dict get"), Some(i));
        l.push(&me).expect("push");
        done += 1;
    }
    done
}

static LOAD_CLIENT: Function<Load, u64> = Function::new("load_client", load_client);

#[test]
fn sixteen_clients_under_load() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let counter = m.value(&0u64).unwrap();
    let d = m.dict::<String, u64>().unwrap();
    let l = m.list(Vec::<u64>::new()).unwrap();
    let n = 200u64;
    let mut kids: Vec<_> = (0..16u64)
        .map(|me| {
            let mut p =
                Process::new(&LOAD_CLIENT, (me, n, lock.clone(), counter.clone(), d.clone(), l.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &mut kids {
        assert_eq!(p.result_timeout(LIMIT).in_time().unwrap(), n);
    }
    assert_eq!(counter.get().unwrap(), 16 * n, "increments under the lock were not lost");
    assert_eq!(d.len().unwrap() as u64, 16 * n);
    let items = l.to_vec().unwrap();
    assert_eq!(items.len() as u64, 16 * n);
    for me in 0..16 {
        assert_eq!(items.iter().filter(|x| **x == me).count() as u64, n);
    }
    assert!(!lock.locked().unwrap());
}

#[test]
fn threads_of_one_process_do_not_block_each_other() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    let ev = m.event().unwrap();
    let waiter = {
        let ev = ev.clone();
        std::thread::spawn(move || ev.wait_timeout(LONG))
    };
    std::thread::sleep(Duration::from_millis(100));
    // The waiting thread holds one connection; this one gets another.
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(&1, &1).unwrap();
    ev.set().unwrap();
    assert!(waiter.join().unwrap().unwrap());
}

// ---------------------------------------------------------------------------------------------
// A stopped holder of a lock with a lease loses it

fn hold_leased(mut ch: Connection, (leased, rleased, plain): (LockProxy, RLockProxy, LockProxy)) {
    leased.acquire().unwrap();
    rleased.acquire().unwrap();
    plain.acquire().unwrap();
    ch.send(&"holding").unwrap();
    // Stopped here by the parent; once continued, says what its releases got.
    let _: String = ch.recv().unwrap();
    let kinds = [leased.release(), rleased.release()].map(|r| match r {
        Err(Error::Remote { kind, .. }) => kind.to_string(),
        other => format!("{other:?}"),
    });
    ch.send(&kinds).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

static HOLD_LEASED: ChannelFunction<(LockProxy, RLockProxy, LockProxy)> =
    ChannelFunction::new("hold_leased", hold_leased);

/// Kills a child that a failed test would leave stopped or waiting.
#[cfg(unix)]
struct KillOnDrop(Option<libc::pid_t>);

#[cfg(unix)]
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signals our own child, not yet reaped (disarmed before the join).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Unix only: Windows has no SIGSTOP.
#[test]
#[cfg(unix)]
fn a_stopped_holder_loses_a_lock_with_a_lease() {
    use_test_entry("procwire_child");
    let m = Manager::start().unwrap();
    // Long enough that this process's own hold, which has the same lease, outlasts the checks.
    let lease = Duration::from_secs(3);
    let (leased, rleased, plain) =
        (m.lock_with_lease(lease).unwrap(), m.rlock_with_lease(lease).unwrap(), m.lock().unwrap());
    let mut ch = start(&HOLD_LEASED, (leased.clone(), rleased.clone(), plain.clone())).unwrap();
    ch.set_read_timeout(Some(LONG));
    assert_eq!(ch.recv::<String>().unwrap(), "holding");
    let pid = ch.pid() as libc::pid_t;
    let mut guard = KillOnDrop(Some(pid));
    // SAFETY: signals our own child, which is alive (it just answered).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    assert!(!plain.try_acquire().unwrap());
    // A waiter gets the leased locks once the lease has run out...
    let t = Instant::now();
    assert!(leased.acquire_timeout(LONG).unwrap(), "the leased lock came back");
    assert!(rleased.acquire_timeout(LONG).unwrap(), "the leased rlock came back");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // ...while the lock without one stays with the stopped holder.
    assert!(!plain.acquire_timeout(Duration::from_millis(500)).unwrap(), "a lock without a lease blocks");
    ch.send(&"release").unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let kinds: [String; 2] = ch.recv().unwrap();
    use procwire::manager::LEASE_EXPIRED;
    assert_eq!(kinds, [LEASE_EXPIRED, LEASE_EXPIRED], "the late releases are refused");
    assert!(leased.locked().unwrap(), "the late release did not free the new holder's lock");
    assert!(!leased.try_acquire().unwrap());
    leased.release().unwrap();
    rleased.release().unwrap();
    ch.kill().unwrap();
    guard.0 = None;
    ch.join_timeout(LIMIT).unwrap();
    assert!(plain.acquire_timeout(LONG).unwrap(), "given back when the holder died");
    match m.lock_with_lease(Duration::ZERO) {
        Err(Error::Remote { kind, .. }) => assert_eq!(kind, RemoteKind::Value),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory a request costs the server

/// A field of /proc/self/status, in bytes.
fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

fn mem_registry() -> Registry {
    let mut r = Registry::new();
    r.register("Mem", |(): ()| ())
        // Starts a new peak (Linux: writing 5 to clear_refs resets VmHWM to VmRSS).
        .method("reset", |_: &mut (), (): ()| {
            std::fs::write("/proc/self/clear_refs", "5").unwrap();
            status("VmRSS:")
        })
        .method("peak", |_: &mut (), (): ()| status("VmHWM:"));
    r
}

static MEM_MANAGER: ChannelFunction<ChildArgs> =
    ChannelFunction::new("mem_manager", |ch, args| serve_child(ch, args, mem_registry()));

/// `n` items of one shape, encoded as they are produced (the client holds none of them).
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
enum Shape {
    Null,
    EmptyArray,
    EmptyMap,
    TinyInt,
    /// A dict entry: a distinct integer key and a null.
    Entry,
}

#[cfg(target_os = "linux")]
struct Many(usize, Shape);

#[cfg(target_os = "linux")]
impl serde::Serialize for Many {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0))?;
        for i in 0..self.0 {
            match self.1 {
                Shape::Null => seq.serialize_element(&())?,
                Shape::EmptyArray => seq.serialize_element(&[(); 0])?,
                Shape::EmptyMap => seq.serialize_element(&std::collections::BTreeMap::<u8, u8>::new())?,
                Shape::TinyInt => seq.serialize_element(&((i % 24) as u8))?,
                Shape::Entry => seq.serialize_element(&(i as u32, ()))?,
            }
        }
        seq.end()
    }
}

/// Sends one request of about `size` bytes of `shape` to a new manager (`how`: list.extend,
/// list.create, dict.update or value.set); the request's size and the growth of the
/// manager's peak resident memory while it handled it.
#[cfg(target_os = "linux")]
fn request_cost(how: &str, shape: Shape, size: usize) -> (usize, u64) {
    let m = Manager::builder().start_with(&MEM_MANAGER).unwrap();
    let mem = m.create("Mem", &()).unwrap();
    let per = match shape {
        Shape::Entry => 6,
        _ => 1,
    };
    let items = Many(size / per, shape);
    let mut bytes = Vec::new();
    ciborium::into_writer(&items, &mut bytes).unwrap();
    let obj = match how {
        "list.extend" | "list.create" => m.create("list", &Many(0, shape)).unwrap(),
        "dict.update" => m.create("dict", &()).unwrap(),
        _ => m.create("value", &()).unwrap(),
    };
    // The same path once, small, so that what is made once (threads, buffers) is made.
    let _ = obj.call::<_, ()>(if how == "value.set" { "set" } else { "clear" }, &());
    let base: u64 = mem.call("reset", &()).unwrap();
    let _kept = match how {
        "list.extend" => obj.call::<_, ()>("extend", &items).map(|()| None),
        "list.create" => m.create("list", &items).map(Some),
        "dict.update" => obj.call::<_, ()>("update", &items).map(|()| None),
        _ => obj.call::<_, ()>("set", &items).map(|()| None),
    }
    .unwrap();
    let peak: u64 = mem.call("peak", &()).unwrap();
    (bytes.len(), peak.saturating_sub(base))
}

/// Linux only: the peak is read from /proc.
#[test]
#[cfg(target_os = "linux")]
fn a_request_costs_the_manager_a_few_times_its_size() {
    use_test_entry("procwire_child");
    const SIZE: usize = 8 << 20;
    for (how, shape, name) in [
        ("list.extend", Shape::Null, "nulls"),
        ("list.extend", Shape::EmptyArray, "empty arrays"),
        ("list.extend", Shape::EmptyMap, "empty maps"),
        ("list.create", Shape::TinyInt, "tiny ints"),
        ("dict.update", Shape::Entry, "[int, null] entries"),
        ("value.set", Shape::EmptyArray, "empty arrays"),
    ] {
        let (size, growth) = request_cost(how, shape, SIZE);
        let ratio = growth as f64 / size as f64;
        eprintln!("{how} of {name}: {size} B request, peak RSS +{growth} B, {ratio:.2}x");
        // Decoded into value trees, such requests cost the server 40 to 100 times their size.
        assert!(growth <= 8 * size as u64 + (4 << 20), "{how} of {name}: {ratio:.1}x");
    }
}

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[
        &SERVE,
        &FOO_MANAGER,
        &USE_EVERYTHING,
        &SYNC_PARTY,
        &CALL_FOO,
        &TCP_CLIENT,
        &HOLD_AND_HANG,
        &USE_AND_DROP,
        &KEEP_AND_HANG,
        &LOAD_CLIENT,
        &HOLD_LEASED,
        &MEM_MANAGER,
    ]);
}
