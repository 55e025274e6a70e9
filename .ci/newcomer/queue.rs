//! Two producer and two consumer processes around one queue, as a newcomer writes it from
//! README alone: no list of functions, no sentinels.
use procwire::process::Process;
use procwire::queue::Queue;

#[procwire::function]
fn produce(q: Queue<u64>, from: u64, to: u64) {
    for x in from..to {
        q.put(&x).unwrap();
    }
}

#[procwire::function]
fn consume(q: Queue<u64>) -> (u64, u64) {
    let (mut n, mut sum) = (0, 0);
    for x in &q {
        n += 1;
        sum += x.unwrap();
    }
    (n, sum)
}

#[procwire::main]
fn main() -> procwire::Result<()> {
    let q: Queue<u64> = Queue::with_maxsize(100)?;
    let mut consumers: Vec<_> = (0..2).map(|_| Process::new(&CONSUME, q.clone())).collect();
    let mut producers = vec![
        Process::new(&PRODUCE, (q.clone(), 0, 5_000)),
        Process::new(&PRODUCE, (q.clone(), 5_000, 10_000)),
    ];
    for c in &mut consumers {
        c.start()?;
    }
    for p in &mut producers {
        p.start()?;
    }
    for p in &mut producers {
        p.join()?;
    }
    q.finish()?; // the producers are done: the consumers' loops end after the last item
    let (mut n, mut sum) = (0, 0);
    for c in &mut consumers {
        let (k, s) = c.result()?;
        n += k;
        sum += s;
    }
    assert_eq!((n, sum), (10_000, (0..10_000).sum()));
    println!("queue: ok");
    Ok(())
}
