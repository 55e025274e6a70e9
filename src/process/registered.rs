//! Functions registered by `#[procwire::function]`: it submits a [`Registration`] of every
//! function it makes to an `inventory` collection, which gathers them from every crate of the
//! program. Each registration links itself into a list from a static constructor, before
//! `main` (a few instructions: no allocation, no I/O, nothing of std), so a child finds the same
//! functions as its parent, which is the same executable, without a list.
//!
//! Why `inventory` and not `linkme`, whose distributed slices run no code at all: on
//! `x86_64-pc-windows-gnu` the linker's section garbage collection drops linkme's sections and
//! the slice comes out empty (dtolnay/linkme#25); inventory's constructors sit in the
//! sections that each platform's C runtime runs (`.init_array`, `__mod_init_func`,
//! `.CRT$XCU`), which the linkers keep. A linker may still leave out the registration of a
//! function in a library that the program never names; nothing can start such a function
//! either, and the parent and its children, one executable, always agree.

use super::registry::Entry;

/// One function made by `#[procwire::function]`: the entry, and where in the source it was
/// written (`file:line`), for the message about a name registered twice.
#[doc(hidden)]
pub struct Registration {
    pub(crate) entry: &'static dyn Entry,
    pub(crate) location: &'static str,
}

impl Registration {
    /// A registration of `entry`, written at `location`.
    pub const fn new(entry: &'static dyn Entry, location: &'static str) -> Self {
        Registration { entry, location }
    }
}

inventory::collect!(Registration);

/// Every [`Registration`] in the program.
pub(crate) fn registered() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

#[cfg(test)]
mod tests {
    use super::super::registry::{Called, Registry};
    use super::*;
    use crate::Connection;
    use crate::process::Function;

    /// The line of `fn triple`, where its registration says it was written.
    const TRIPLE_LINE: u32 = line!() + 2;
    #[crate::function]
    fn triple(x: u64) -> u64 {
        x * 3
    }

    #[crate::function]
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }

    #[crate::function]
    fn talk(_: Connection, _: u64) {}

    /// Calls `e` on `args` as the pool's worker does, through [`Call`](super::super::Call).
    fn call<A: serde::Serialize, R: serde::de::DeserializeOwned>(e: &dyn Entry, args: A) -> R {
        let mut input = Vec::new();
        ciborium::into_writer(&args, &mut input).unwrap();
        let (mut out, mut scratch) = (Vec::new(), [0; 64]);
        let called = e.as_call().expect("a function").call(&mut &input[..], &mut scratch, &mut out);
        assert!(matches!(called, Called::Returned), "{called:?}");
        ciborium::from_reader(&out[..]).unwrap()
    }

    #[test]
    fn registered_functions_are_found_by_name_without_a_list() {
        assert_eq!(triple(2), 6);
        let r = Registry::new(&[]);
        let e = r.find("procwire::process::registered::tests::triple").unwrap();
        assert!(std::ptr::addr_eq(e, &TRIPLE as &dyn Entry));
        assert!(!e.takes_channel());
        assert_eq!(call::<u64, u64>(e, 7), 21);
        let e = r.find("procwire::process::registered::tests::add").unwrap();
        assert_eq!(call::<(u64, u64), u64>(e, (40, 2)), 42);
        assert!(r.find("procwire::process::registered::tests::talk").unwrap().takes_channel());
        let at = format!("{}:{TRIPLE_LINE}", file!());
        assert!(registered().any(|r| r.location == at));
        assert!(r.duplicates().is_none());
        let e = r.find("nobody").map(|_| ()).unwrap_err();
        assert!(e.contains("\"nobody\" is not registered"), "{e}");
    }

    #[test]
    fn listing_a_registered_function_again_is_no_duplicate_but_another_of_its_name_is() {
        let list: [&dyn Entry; 1] = [&TRIPLE];
        let again = Registry::new(&list);
        assert!(again.duplicates().is_none());
        assert!(again.find(TRIPLE.name()).is_ok());

        static OTHER: Function<u64, u64> =
            Function::new("procwire::process::registered::tests::triple", |x| x);
        let other: [&dyn Entry; 1] = [&OTHER];
        let clash = Registry::new(&other);
        for message in [clash.duplicates().unwrap(), clash.find(TRIPLE.name()).map(|_| ()).unwrap_err()] {
            assert!(message.contains("is registered twice"), "{message}");
            assert!(message.contains("procwire::process::init"), "{message}");
            assert!(message.contains(&format!("{}:{TRIPLE_LINE}", file!())), "{message}");
        }
    }
}
