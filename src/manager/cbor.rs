//! Raw CBOR (RFC 8949) as the manager server keeps it: a request's arguments and the items of
//! its objects stay encoded, each a slice of bytes checked once to be one well-formed item, so
//! what the server holds grows with the bytes that arrived (SPEC.md §10.3, §12.2) instead of
//! a tree of values several times their size.

use std::cmp::Ordering;

/// How deep items may nest: as deep as ciborium decodes (it refuses deeper values anyway).
pub(crate) const MAX_DEPTH: usize = 256;

/// What is wrong with some bytes, in words.
pub(crate) type Malformed = String;

fn short() -> Malformed {
    "the CBOR item is cut short".to_string()
}

/// Reads one head at `*pos`: (major type, additional information, argument). The argument
/// is 0 for an indefinite length or a break (additional information 31).
pub(crate) fn head(b: &[u8], pos: &mut usize) -> Result<(u8, u8, u64), Malformed> {
    let first = *b.get(*pos).ok_or_else(short)?;
    *pos += 1;
    let (major, ai) = (first >> 5, first & 31);
    let n = match ai {
        0..=23 => return Ok((major, ai, u64::from(ai))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 => return Ok((major, ai, 0)),
        _ => return Err(format!("reserved additional information {ai} in a CBOR head")),
    };
    let bytes = b.get(*pos..*pos + n).ok_or_else(short)?;
    *pos += n;
    Ok((major, ai, bytes.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))))
}

/// Checks the one item at `pos` and returns where it ends. Iterative, with at most
/// [`MAX_DEPTH`] levels of containers on its own stack (allocated only for a container): it
/// allocates nothing that the item's declared sizes choose.
pub(crate) fn skip(b: &[u8], mut pos: usize) -> Result<usize, Malformed> {
    // Open containers: items still to come in a definite-length array, map or tag, with kind
    // 0; an indefinite-length array or map (kind 1) or byte or text string (kind 2 or 3,
    // whose chunks must have that major type) until its break.
    let mut stack: Vec<(u64, u8)> = Vec::new();
    let mut started = false;
    loop {
        let chunks_of = match stack.last_mut() {
            None if started => return Ok(pos),
            None => {
                started = true;
                None
            }
            Some((0, 0)) => {
                stack.pop();
                continue;
            }
            Some((n, 0)) => {
                *n -= 1;
                None
            }
            Some((_, k)) => {
                if b.get(pos) == Some(&0xff) {
                    pos += 1;
                    stack.pop();
                    continue;
                }
                (*k >= 2).then_some(*k)
            }
        };
        let (major, ai, arg) = head(b, &mut pos)?;
        if let Some(k) = chunks_of
            && (major != k || ai == 31)
        {
            return Err("an indefinite-length string holds something else than definite chunks".into());
        }
        let open = match (major, ai) {
            (0 | 1 | 6, 31) => return Err(format!("major type {major} cannot have an indefinite length")),
            (0 | 1, _) | (7, 20..=23 | 25..=27) => continue,
            (2 | 3, 31) => (0, major),
            (2 | 3, _) => {
                let end = usize::try_from(arg).ok().and_then(|n| pos.checked_add(n)).ok_or_else(short)?;
                let s = b.get(pos..end).ok_or_else(short)?;
                if major == 3 && std::str::from_utf8(s).is_err() {
                    return Err("a CBOR text string that is not UTF-8".into());
                }
                pos = end;
                continue;
            }
            (4 | 5, 31) => (0, 1),
            (4, _) => (arg, 0),
            (5, _) => (arg.checked_mul(2).ok_or_else(short)?, 0),
            (6, _) => (1, 0),
            (7, 31) => return Err("a CBOR break outside an indefinite-length item".into()),
            _ => return Err(format!("an unsupported CBOR simple value (additional information {ai})")),
        };
        if open == (0, 0) {
            continue;
        }
        if stack.len() >= MAX_DEPTH - 1 {
            return Err(format!("CBOR nested deeper than {MAX_DEPTH} levels"));
        }
        stack.push(open);
    }
}

/// Checks that `b` is exactly one well-formed item.
pub(crate) fn check(b: &[u8]) -> Result<(), Malformed> {
    let end = skip(b, 0)?;
    if end != b.len() {
        return Err(format!("{} bytes left over after the CBOR item", b.len() - end));
    }
    Ok(())
}

/// Appends a head.
pub(crate) fn put_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// The items of an array (one well-formed item, see [`check`]), each a slice of `b`.
pub(crate) struct Items<'a> {
    b: &'a [u8],
    pos: usize,
    /// Items left, `None` for an indefinite-length array.
    left: Option<u64>,
}

impl<'a> Items<'a> {
    /// The items of the array `b`; an error if `b` is not an array.
    pub(crate) fn of(b: &'a [u8]) -> Result<Items<'a>, Malformed> {
        let mut pos = 0;
        let (major, ai, n) = head(b, &mut pos)?;
        if major != 4 {
            return Err("not a CBOR array".into());
        }
        Ok(Items { b, pos, left: (ai != 31).then_some(n) })
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<&'a [u8], Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.left {
            Some(0) => return None,
            Some(n) => *n -= 1,
            None if self.b.get(self.pos) == Some(&0xff) => return None,
            None => {}
        }
        let start = self.pos;
        Some(skip(self.b, start).map(|end| {
            self.pos = end;
            &self.b[start..end]
        }))
    }
}

/// The two items of a 2-item array.
pub(crate) fn pair(b: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let mut it = Items::of(b)?;
    match (it.next(), it.next(), it.next()) {
        (Some(x), Some(y), None) => Ok((x?, y?)),
        _ => Err("not an array of two items".into()),
    }
}

fn f16(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// The rank of an item's kind in the order of `ciborium::Value` (integer, bytes, float, text,
/// bool, null, tag, array, map).
fn rank(major: u8, ai: u8) -> u8 {
    match (major, ai) {
        (0 | 1, _) => 0,
        (2, _) => 1,
        (7, 25..=27) => 2,
        (3, _) => 3,
        (7, 20 | 21) => 4,
        (7, _) => 5,
        (6, _) => 6,
        (4, _) => 7,
        _ => 8,
    }
}

/// The content of a byte or text string whose head was just read (chunks joined).
fn string<'a>(b: &'a [u8], pos: &mut usize, ai: u8, n: u64) -> std::borrow::Cow<'a, [u8]> {
    if ai != 31 {
        let start = *pos;
        *pos += n as usize;
        return std::borrow::Cow::Borrowed(&b[start..*pos]);
    }
    let mut all = Vec::new();
    while b.get(*pos) != Some(&0xff) {
        let Ok((_, _, n)) = head(b, pos) else { break };
        all.extend_from_slice(&b[*pos..*pos + n as usize]);
        *pos += n as usize;
    }
    *pos += 1;
    std::borrow::Cow::Owned(all)
}

/// Whether a container whose head was read has another item at `*pos` (`left` counts down a
/// definite length).
fn more(b: &[u8], pos: &mut usize, left: &mut Option<u64>) -> bool {
    match left {
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
        None if b.get(*pos) == Some(&0xff) => {
            *pos += 1;
            false
        }
        None => true,
    }
}

fn cmp_at(a: &[u8], pa: &mut usize, b: &[u8], pb: &mut usize) -> Option<Ordering> {
    let (ma, aa, na) = head(a, pa).ok()?;
    let (mb, ab, nb) = head(b, pb).ok()?;
    let (ra, rb) = (rank(ma, aa), rank(mb, ab));
    if ra != rb {
        return Some(ra.cmp(&rb));
    }
    let int = |m: u8, n: u64| if m == 0 { i128::from(n) } else { -1 - i128::from(n) };
    let float = |ai: u8, n: u64| match ai {
        25 => f16(n as u16),
        26 => f64::from(f32::from_bits(n as u32)),
        _ => f64::from_bits(n),
    };
    match ra {
        0 => Some(int(ma, na).cmp(&int(mb, nb))),
        1 | 3 => Some(string(a, pa, aa, na).cmp(&string(b, pb, ab, nb))),
        2 => float(aa, na).partial_cmp(&float(ab, nb)),
        4 => Some(aa.cmp(&ab)),
        5 => Some(Ordering::Equal),
        6 => match na.cmp(&nb) {
            Ordering::Equal => cmp_at(a, pa, b, pb),
            o => Some(o),
        },
        _ => {
            // A map compares as the list of its keys and values: as Vec<(Value, Value)>.
            let per = if ra == 8 { 2 } else { 1 };
            let mut la = (aa != 31).then_some(na * per);
            let mut lb = (ab != 31).then_some(nb * per);
            loop {
                match (more(a, pa, &mut la), more(b, pb, &mut lb)) {
                    (false, false) => return Some(Ordering::Equal),
                    (false, true) => return Some(Ordering::Less),
                    (true, false) => return Some(Ordering::Greater),
                    (true, true) => match cmp_at(a, pa, b, pb) {
                        Some(Ordering::Equal) => {}
                        o => return o,
                    },
                }
            }
        }
    }
}

/// Compares two well-formed items as their `ciborium::Value`s compare (numbers by value, text
/// and bytes lexicographically, arrays and maps item by item; kinds in the order of
/// [`rank`]), without decoding them. `None` where a NaN makes them incomparable.
pub(crate) fn compare(a: &[u8], b: &[u8]) -> Option<Ordering> {
    cmp_at(a, &mut 0, b, &mut 0)
}

/// Whether two well-formed items are equal as `ciborium::Value`s.
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use ciborium::Value;

    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(v, &mut b).unwrap();
        b
    }

    #[test]
    fn skip_finds_the_end_and_refuses_malformed_items() {
        let v = Value::Array(vec![
            Value::Null,
            Value::Map(vec![(Value::Text("k".into()), Value::Bytes(vec![1, 2]))]),
            Value::Tag(1, Box::new(Value::Float(1.5))),
            Value::Integer((-300).into()),
        ]);
        let mut b = enc(&v);
        assert_eq!(skip(&b, 0), Ok(b.len()));
        b.push(0);
        assert!(check(&b).is_err(), "a byte left over");
        assert!(check(&[0x9f, 0x01, 0x80, 0xff]).is_ok(), "indefinite array");
        assert!(check(&[0x7f, 0x61, b'a', 0x61, b'b', 0xff]).is_ok(), "indefinite text");
        for bad in [
            &[0x9f, 0x01][..],
            &[0x85, 0x01],
            &[0x62, 0xff, 0xfe],
            &[0xff],
            &[0x1f],
            &[0x7f, 0x41, 0x00, 0xff],
            &[0xf8, 0x20],
            &[0x1c],
            &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(check(bad).is_err(), "{bad:x?} accepted");
        }
        let deep: Vec<u8> = std::iter::repeat_n(0x81, MAX_DEPTH).chain([0xf6]).collect();
        assert!(check(&deep).is_err(), "too deep");
        let ok: Vec<u8> = std::iter::repeat_n(0x81, MAX_DEPTH - 1).chain([0xf6]).collect();
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn compare_agrees_with_value() {
        let vals = [
            Value::Integer(3.into()),
            Value::Integer((-1).into()),
            Value::Integer(u64::MAX.into()),
            Value::Bytes(vec![1]),
            Value::Bytes(vec![]),
            Value::Float(1.5),
            Value::Float(-0.0),
            Value::Float(0.0),
            Value::Float(1e300),
            Value::Text("b".into()),
            Value::Text("ab".into()),
            Value::Bool(true),
            Value::Bool(false),
            Value::Null,
            Value::Tag(5, Box::new(Value::Null)),
            Value::Array(vec![Value::Null, Value::Integer(1.into())]),
            Value::Array(vec![Value::Null]),
            Value::Array(vec![]),
            Value::Map(vec![(Value::Null, Value::Integer(1.into()))]),
            Value::Map(vec![(Value::Null, Value::Integer(0.into()))]),
        ];
        for x in &vals {
            for y in &vals {
                assert_eq!(compare(&enc(x), &enc(y)), x.partial_cmp(y), "{x:?} vs {y:?}");
            }
        }
        assert_eq!(compare(&[0x9f, 0x01, 0xff], &[0x81, 0x01]), Some(Ordering::Equal));
        assert_eq!(compare(&[0xf9, 0x3c, 0x00], &enc(&Value::Float(1.0))), Some(Ordering::Equal));
        assert_eq!(compare(&enc(&Value::Float(f64::NAN)), &enc(&Value::Float(f64::NAN))), None);
    }
}
