//! A pool map over 1,000 items, as a newcomer writes it from README alone.
use procwire::pool::Pool;

#[procwire::function]
fn score(word: String) -> usize {
    word.chars().filter(|c| "aeiou".contains(*c)).count()
}

#[procwire::main]
fn main() -> procwire::Result<()> {
    let pool = Pool::new(2)?;
    let words: Vec<String> = (0..1_000).map(|i| format!("w{i}aeiou")).collect();
    let scores = pool.map(&SCORE, words)?;
    assert_eq!(scores.len(), 1_000);
    assert!(scores.iter().all(|&s| s == 5));
    println!("pool: ok");
    Ok(())
}
