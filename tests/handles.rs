//! Passing descriptors and live connections to other processes over Unix-socket connections.

#![cfg(unix)]

use std::io::{Read, Seek, Write};
use std::time::Duration;

use procwire::handles::{recv_connection, recv_fd, send_connection, send_fd};
use procwire::process::{ChannelFunction, start, use_test_entry};
use procwire::{Address, Client, Connection, Error, Family, Listener};

const LIMIT: Duration = Duration::from_secs(30);

/// Receives a file, appends to it, says done.
fn append_to_file(mut ch: Connection, text: String) {
    let mut f = std::fs::File::from(recv_fd(&mut ch).expect("recv_fd"));
    f.seek(std::io::SeekFrom::End(0)).expect("seek");
    f.write_all(text.as_bytes()).expect("write");
    ch.send(&"done").expect("report");
}

/// Receives connections and answers each message on them in upper case, until told to stop.
fn serve_handed_connections(mut ch: Connection, count: u32) {
    for _ in 0..count {
        let mut c = recv_connection(&mut ch).expect("recv_connection");
        let msg = c.recv_bytes().expect("recv");
        c.send_bytes(&msg.to_ascii_uppercase()).expect("send");
    }
    ch.send(&"served").expect("report");
}

static APPEND: ChannelFunction<String> = ChannelFunction::new("append", append_to_file);
static SERVE: ChannelFunction<u32> = ChannelFunction::new("serve", serve_handed_connections);

#[test]
#[ignore = "the entry point of child processes"]
fn procwire_child() {
    procwire::process::init(&[&APPEND, &SERVE]);
}

#[test]
fn a_child_writes_to_a_file_it_was_handed() {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"parent;").unwrap();
    use_test_entry("procwire_child");
    let ch = start(&APPEND, "child".to_string()).unwrap();
    let mut conn = ch.into_connection();
    send_fd(&mut conn, &file).unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "done");
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "parent;child");
}

#[test]
fn accepted_and_paired_connections_work_in_the_child_they_were_handed_to() {
    use_test_entry("procwire_child");
    let child = start(&SERVE, 2).unwrap();
    let mut carrier = child.into_connection();
    carrier.set_read_timeout(Some(LIMIT * 2));

    // A connection a listener accepted: the client talks to the worker without knowing.
    let listener = Listener::builder().authkey("k").bind(Address::fresh(Family::Unix).unwrap()).unwrap();
    let addr = listener.address().clone();
    let client = std::thread::spawn(move || -> procwire::Result<Vec<u8>> {
        let mut c = Client::builder().authkey("k").connect(&addr)?;
        c.send_bytes(b"hello worker")?;
        c.recv_bytes()
    });
    let accepted = listener.accept().unwrap();
    send_connection(&mut carrier, accepted).unwrap();
    assert_eq!(client.join().unwrap().unwrap(), b"HELLO WORKER");

    // One end of a pipe pair.
    let (mut mine, theirs) = procwire::pipe(true).unwrap();
    send_connection(&mut carrier, theirs).unwrap();
    mine.set_read_timeout(Some(LIMIT));
    mine.send_bytes(b"and a pipe").unwrap();
    assert_eq!(mine.recv_bytes().unwrap(), b"AND A PIPE");
    assert_eq!(carrier.recv::<String>().unwrap(), "served");
}

#[test]
fn passing_over_tcp_is_refused_clearly() {
    let listener = Listener::builder().authkey("k").bind(Address::fresh(Family::Tcp).unwrap()).unwrap();
    let addr = listener.address().clone();
    let t = std::thread::spawn(move || Client::builder().authkey("k").connect(&addr));
    let mut server = listener.accept().unwrap();
    let _client = t.join().unwrap().unwrap();
    let file = tempfile::tempfile().unwrap();
    let err = send_fd(&mut server, &file).unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::Unsupported), "{err:?}");
    assert!(err.to_string().contains("Unix domain socket"), "{err}");
    assert!(recv_fd(&mut server).is_err());
}

#[test]
fn a_message_instead_of_a_handle_is_a_protocol_error() {
    let (mut a, mut b) = procwire::pipe(true).unwrap();
    a.send_bytes(b"not a handle").unwrap();
    let err = recv_fd(&mut b).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
}

#[test]
fn messages_received_and_not_read_travel_with_the_connection() {
    let (mut carrier_a, mut carrier_b) = procwire::pipe(true).unwrap();
    let (mut c, mut d) = procwire::pipe(true).unwrap();
    for m in [&b"x"[..], b"y", b"z"] {
        c.send_bytes(m).unwrap();
    }
    // One read takes all three into d's buffer; d hands out the first only.
    assert_eq!(d.recv_bytes().unwrap(), b"x");
    let t = std::thread::spawn(move || send_connection(&mut carrier_a, d));
    let mut got = recv_connection(&mut carrier_b).unwrap();
    t.join().unwrap().unwrap();
    assert_eq!(got.recv_bytes().unwrap(), b"y");
    assert_eq!(got.recv_bytes().unwrap(), b"z");
    c.send_bytes(b"after").unwrap();
    assert_eq!(got.recv_bytes().unwrap(), b"after");
}
