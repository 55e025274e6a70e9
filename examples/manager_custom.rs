//! The `processing` seed: `NewManager.register('Foo', Foo, exposed=['bar'])`, then
//! `foo = manager.Foo(); foo.bar()` prints BAR (in the manager's process, which shares this
//! terminal). Calling a method that is not exposed is an error.
//!
//! `cargo run --example manager_custom`

use procwire::Error;
use procwire::manager::{ChildArgs, Manager, Registry, serve_child};
use procwire::process::ChannelFunction;

struct Foo;

impl Foo {
    fn bar(&self) {
        println!("BAR");
    }

    #[allow(dead_code, reason = "exists but is not exposed: calling it remotely is an error")]
    fn baz(&self) {
        println!("BAZ");
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("Foo", |(): ()| Foo).method("bar", |f: &mut Foo, (): ()| f.bar());
    r
}

static NEW_MANAGER: ChannelFunction<ChildArgs> =
    ChannelFunction::new("new_manager", |channel, args| serve_child(channel, args, registry()));

fn main() -> procwire::Result<()> {
    procwire::process::init(&[&NEW_MANAGER]);
    let manager = Manager::builder().start_with(&NEW_MANAGER)?;
    let proxy = manager.create("Foo", &())?;
    proxy.call::<_, ()>("bar", &())?; // => prints 'BAR'
    match proxy.call::<_, ()>("baz", &()) {
        Err(Error::Remote { kind, message }) => println!("baz: {kind}: {message}"),
        other => println!("baz: unexpected {other:?}"),
    }
    manager.shutdown()
}
