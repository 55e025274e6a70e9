//! The `tracing` feature: a subscriber sees the listener's events, with the reason a
//! handshake failed.

#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use procwire::{Address, Client, Error, Family, Listener};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event: its level, target and fields as text.
#[derive(Debug, Clone)]
struct Seen {
    level: tracing::Level,
    target: String,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A subscriber that keeps every event.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        let m = event.metadata();
        self.0.lock().unwrap().push(Seen { level: *m.level(), target: m.target().to_string(), fields });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_wrong_key_is_reported_as_a_failed_handshake_with_its_reason() {
    let rec = Recorder::default();
    let listener =
        Listener::builder().authkey("right").bind(Address::fresh(Family::default()).unwrap()).unwrap();
    let addr = listener.address().clone();
    // The global default, set before the first event: a scoped one (`with_default`) set after
    // another thread already hit a call site can leave that site's cached interest at "never".
    tracing::subscriber::set_global_default(rec.clone()).unwrap();
    let client = std::thread::spawn(move || Client::builder().authkey("wrong").connect(&addr));
    let accepted = {
        let r = listener.accept_timeout(Duration::from_secs(10));
        // The honest client after it is accepted and its end seen.
        let addr = listener.address().clone();
        let good = std::thread::spawn(move || Client::builder().authkey("right").connect(&addr));
        let conn = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        drop(good.join().unwrap().unwrap());
        drop(conn);
        r
    };
    assert!(matches!(accepted, Err(Error::AuthenticationFailed(_))), "{accepted:?}");
    assert!(client.join().unwrap().is_err());

    let seen = rec.0.lock().unwrap().clone();
    let messages: Vec<&str> = seen.iter().filter_map(|s| s.field("message")).collect();
    let failed = seen
        .iter()
        .find(|s| s.field("message") == Some("handshake failed"))
        .unwrap_or_else(|| panic!("no failed-handshake event among {messages:?}"));
    assert_eq!(failed.level, tracing::Level::WARN);
    assert_eq!(failed.target, "procwire");
    let error = failed.field("error").unwrap();
    assert!(error.contains("authentication failed"), "{error}");
    assert!(error.contains("(peer "), "the event names the peer: {error}");
    for expected in ["accepted a connection", "handshake succeeded", "connection closed"] {
        assert!(messages.contains(&expected), "no {expected:?} event among {messages:?}");
    }
}
