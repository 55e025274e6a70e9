//! The registry of functions a child can run: [`Entry`] and its two public kinds, [`Function`]
//! and [`ChannelFunction`], looked up by name among those `#[procwire::function]` registered
//! (module `registered`) and those in the list a program gives to [`init`](super::init).
//! An entry runs over the bootstrap connection with the whole registry at hand, so that an
//! entry which runs other entries (the pool's worker, registered by the pool in the crate's
//! built-in table) needs nothing from this layer but [`Registry::find`] and [`Call`].

use std::any::type_name;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::bootstrap::receive_args;
use super::registered::registered;
use super::{EXIT_PANICKED, EXIT_START_FAILED};
use crate::util::panic_message;
use crate::{Connection, Error};

pub(crate) mod sealed {
    use super::{Call, Registry};

    /// The child side of an [`Entry`](super::Entry): reads the arguments, runs, reports.
    /// Sealed to the crate, whose consumers (the pool) add entries of their own.
    pub trait Sealed {
        /// Runs the function over the bootstrap connection; returns the exit code. `registry`
        /// is the program's list, for an entry that runs the others.
        fn run_child(&self, conn: crate::Connection, registry: Registry<'_>) -> i32;

        /// The function with its types erased, for a consumer that calls it on CBOR arguments
        /// many times; `None` for an entry that takes a channel.
        fn as_call(&self) -> Option<&dyn Call> {
            None
        }
    }
}

/// A function a child process can run: a [`Function`] or a [`ChannelFunction`]. Lists of
/// these (`&[&dyn Entry]`) go to [`init`](super::init), for those that `#[procwire::function]`
/// did not register.
pub trait Entry: sealed::Sealed + Sync {
    /// The name the parent asks for.
    fn name(&self) -> &'static str;
    /// Whether the function takes a channel ([`start`](super::start)) rather than returning a
    /// value.
    fn takes_channel(&self) -> bool;
}

/// The functions a program can run in a child: those it listed in [`init`](super::init) and
/// those `#[procwire::function]` registered.
#[derive(Clone, Copy)]
pub struct Registry<'a> {
    listed: &'a [&'a dyn Entry],
}

impl<'a> Registry<'a> {
    pub(crate) fn new(listed: &'a [&'a dyn Entry]) -> Registry<'a> {
        Registry { listed }
    }

    /// Every entry with where it comes from; one listed and also registered appears twice.
    fn all(&self) -> impl Iterator<Item = (&'a dyn Entry, Source)> {
        let listed = self.listed.iter().map(|e| (*e, Source::Listed));
        listed.chain(registered().map(|r| (r.entry, Source::Registered(r.location))))
    }

    /// The entry named `name`, or why there is none, in words for the parent.
    pub(crate) fn find(&self, name: &str) -> std::result::Result<&'a dyn Entry, String> {
        let mut found: Vec<(&'a dyn Entry, Source)> = Vec::new();
        for (e, source) in self.all().filter(|(e, _)| e.name() == name) {
            if !found.iter().any(|(f, _)| same(*f, e)) {
                found.push((e, source));
            }
        }
        match found.as_slice() {
            [(f, _)] => Ok(*f),
            [] => Err(format!(
                "function {name:?} is not registered in {}: no #[procwire::function] made it, and it is not in \
                 the list given to procwire::process::init",
                exe()
            )),
            [(_, a), (_, b), ..] => Err(twice(name, a, b)),
        }
    }

    /// The first name that two different entries carry, in words; `None` if the names are
    /// unique.
    pub(crate) fn duplicates(&self) -> Option<String> {
        let mut seen: std::collections::HashMap<&str, (&dyn Entry, Source)> =
            std::collections::HashMap::new();
        for (e, source) in self.all() {
            match seen.get(e.name()) {
                Some((f, first)) if !same(*f, e) => return Some(twice(e.name(), first, &source)),
                Some(_) => {}
                None => {
                    seen.insert(e.name(), (e, source));
                }
            }
        }
        None
    }
}

/// Where an entry of the [`Registry`] comes from.
#[derive(Clone, Copy)]
enum Source {
    Listed,
    Registered(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Listed => f.write_str("one in the list given to procwire::process::init"),
            Source::Registered(at) => write!(f, "one made by #[procwire::function] at {at}"),
        }
    }
}

/// Whether `a` and `b` are the same entry (the same static), rather than two with one name.
fn same(a: &dyn Entry, b: &dyn Entry) -> bool {
    std::ptr::addr_eq(a as *const dyn Entry, b as *const dyn Entry)
}

fn twice(name: &str, a: &Source, b: &Source) -> String {
    format!("function name {name:?} is registered twice in {}: {a}, and {b}", exe())
}

fn exe() -> String {
    std::env::current_exe().map_or_else(|_| "this program".into(), |p| p.display().to_string())
}

/// A [`Function`] with its types erased: one call on CBOR arguments, for a consumer that runs
/// functions it knows only by name (the pool's worker) and keeps its own wire format.
pub trait Call: Sync {
    /// Takes one argument off the front of `args` (decoding through `scratch`), calls the
    /// function and appends its CBOR result to `out`.
    fn call(&self, args: &mut &[u8], scratch: &mut [u8], out: &mut Vec<u8>) -> Called;
}

/// What [`Call::call`] did.
#[derive(Debug)]
pub enum Called {
    /// The function returned; its result is in `out`.
    Returned,
    /// The function panicked, with this message.
    Panicked(String),
    /// The result does not encode, for this reason; `out` may hold part of it.
    Unsendable(String),
    /// The argument does not decode as the `expected` type; where the next one starts is lost.
    Undecodable {
        /// The function's argument type.
        expected: &'static str,
        /// Why it does not decode.
        error: String,
    },
}

/// The last message of a child running a [`Function`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    Returned(R),
    Panicked(String),
    Unsendable(String),
}

/// A function `fn(A) -> R` that a [`Process`](super::Process) runs in a child; its return
/// value (or its panic message) comes back to the parent.
pub struct Function<A, R> {
    name: &'static str,
    f: fn(A) -> R,
}

impl<A, R> Function<A, R> {
    /// Names `f` for child processes; `name` must be unique in the program, among the functions
    /// given to [`init`](super::init) and those `#[procwire::function]` registered (which makes
    /// these for you).
    pub const fn new(name: &'static str, f: fn(A) -> R) -> Self {
        Function { name, f }
    }

    /// The name and the function, for [`dummy`](crate::dummy), which calls it on a thread.
    pub(crate) fn parts(&self) -> (&'static str, fn(A) -> R) {
        (self.name, self.f)
    }
}

impl<A, R> fmt::Debug for Function<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function").field("name", &self.name).finish()
    }
}

impl<A: DeserializeOwned, R: Serialize> sealed::Sealed for Function<A, R> {
    fn run_child(&self, mut conn: Connection, _: Registry<'_>) -> i32 {
        let Some(args) = receive_args::<A>(&mut conn, self.name) else { return EXIT_START_FAILED };
        let f = self.f;
        let code = match catch_unwind(AssertUnwindSafe(move || f(args))) {
            Ok(r) => match conn.send(&Outcome::Returned(&r)) {
                Ok(()) => 0,
                Err(Error::Encode(e)) => {
                    let _ = conn.send(&Outcome::<()>::Unsendable(e));
                    EXIT_PANICKED
                }
                // The parent is gone: nobody to tell.
                Err(_) => EXIT_PANICKED,
            },
            Err(p) => {
                let _ = conn.send(&Outcome::<()>::Panicked(panic_message(&*p)));
                EXIT_PANICKED
            }
        };
        let _ = conn.close();
        code
    }

    fn as_call(&self) -> Option<&dyn Call> {
        Some(self)
    }
}

impl<A: DeserializeOwned, R: Serialize> Call for Function<A, R> {
    fn call(&self, args: &mut &[u8], scratch: &mut [u8], out: &mut Vec<u8>) -> Called {
        let a: A = match ciborium::de::from_reader_with_buffer(&mut *args, scratch) {
            Ok(a) => a,
            Err(e) => {
                return Called::Undecodable {
                    expected: type_name::<A>(),
                    error: crate::error::describe_decode(&e),
                };
            }
        };
        let f = self.f;
        match catch_unwind(AssertUnwindSafe(|| f(a))) {
            Ok(r) => match ciborium::into_writer(&r, &mut *out) {
                Ok(()) => Called::Returned,
                Err(e) => Called::Unsendable(crate::error::describe_encode(&e)),
            },
            Err(p) => Called::Panicked(panic_message(&*p)),
        }
    }
}

impl<A: DeserializeOwned, R: Serialize> Entry for Function<A, R> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn takes_channel(&self) -> bool {
        false
    }
}

/// A function `fn(Connection, A)` that [`start`](super::start) runs in a child: it gets its
/// end of the channel first, as in pprocess. Its return is the end of the child (exit code 0;
/// 1 after a panic, whose message goes to the child's stderr).
pub struct ChannelFunction<A> {
    name: &'static str,
    f: fn(Connection, A),
}

impl<A> ChannelFunction<A> {
    /// Names `f` for child processes; `name` must be unique in the program, among the functions
    /// given to [`init`](super::init) and those `#[procwire::function]` registered (which makes
    /// these for you).
    pub const fn new(name: &'static str, f: fn(Connection, A)) -> Self {
        ChannelFunction { name, f }
    }

    /// The name and the function, for [`dummy`](crate::dummy), which calls it on a thread.
    pub(crate) fn parts(&self) -> (&'static str, fn(Connection, A)) {
        (self.name, self.f)
    }
}

impl<A> fmt::Debug for ChannelFunction<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelFunction").field("name", &self.name).finish()
    }
}

impl<A: DeserializeOwned> sealed::Sealed for ChannelFunction<A> {
    fn run_child(&self, mut conn: Connection, _: Registry<'_>) -> i32 {
        let Some(args) = receive_args::<A>(&mut conn, self.name) else { return EXIT_START_FAILED };
        let f = self.f;
        match catch_unwind(AssertUnwindSafe(move || f(conn, args))) {
            Ok(()) => 0,
            Err(_) => EXIT_PANICKED,
        }
    }
}

impl<A: DeserializeOwned> Entry for ChannelFunction<A> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn takes_channel(&self) -> bool {
        true
    }
}
