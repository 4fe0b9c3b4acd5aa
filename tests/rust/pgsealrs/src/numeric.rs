//! `numeric` in Postgres's binary format. postgres-types 0.2 has no numeric
//! type of its own (only through crates Debian does not package), so this
//! wrapper carries the decimal text and does the base-10000 conversion.

use std::error::Error;
use std::fmt::Write;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const INFINITY: u16 = 0xD000;
const MINUS_INFINITY: u16 = 0xF000;

/// A numeric value as its decimal text ("-12.50", "NaN", "Infinity").
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric(pub String);

impl ToSql for Numeric {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode(&self.0, out)?;
        Ok(IsNull::No)
    }

    accepts!(NUMERIC);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(raw).map(Numeric)
    }

    accepts!(NUMERIC);
}

fn encode(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let special = match text {
        "NaN" => Some(NAN),
        "Infinity" => Some(INFINITY),
        "-Infinity" => Some(MINUS_INFINITY),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_u16(0);
        return Ok(());
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_only = int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    if !digits_only || (int.is_empty() && frac.is_empty()) {
        return Err("not a decimal number".into());
    }
    let int = int.trim_start_matches('0');
    let int_groups = (int.len() + 3) / 4;
    let frac_groups = (frac.len() + 3) / 4;
    let padded = format!(
        "{int:0>iw$}{frac:0<fw$}",
        iw = int_groups * 4,
        fw = frac_groups * 4
    );
    let mut digits: Vec<i16> = padded
        .as_bytes()
        .chunks(4)
        .map(|group| group.iter().fold(0i16, |n, b| n * 10 + i16::from(b - b'0')))
        .collect();
    let mut weight = int_groups as i32 - 1;
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..leading);
    weight -= leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let sign = if negative && !digits.is_empty() {
        NEGATIVE
    } else {
        0
    };
    out.put_i16(digits.len() as i16);
    out.put_i16(weight as i16);
    out.put_u16(sign);
    out.put_u16(frac.len() as u16);
    for digit in digits {
        out.put_i16(digit);
    }
    Ok(())
}

fn decode(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() < 8 {
        return Err("numeric value too short".into());
    }
    let word = |i: usize| i16::from_be_bytes([raw[2 * i], raw[2 * i + 1]]);
    let ndigits = word(0) as usize;
    let weight = i32::from(word(1));
    let sign = word(2) as u16;
    let dscale = word(3) as usize;
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric value of the wrong length".into());
    }
    match sign {
        NAN => return Ok("NaN".into()),
        INFINITY => return Ok("Infinity".into()),
        MINUS_INFINITY => return Ok("-Infinity".into()),
        0 | NEGATIVE => {}
        _ => return Err("numeric value with an unknown sign".into()),
    }
    let digit = |k: i32| match usize::try_from(k) {
        Ok(k) if k < ndigits => word(4 + k),
        _ => 0,
    };
    let mut text = String::new();
    if sign == NEGATIVE {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    }
    for k in 0..=weight {
        if k == 0 {
            write!(text, "{}", digit(k))?;
        } else {
            write!(text, "{:04}", digit(k))?;
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            write!(frac, "{:04}", digit(k))?;
            k += 1;
        }
        frac.truncate(dscale);
        text.push('.');
        text.push_str(&frac);
    }
    Ok(text)
}
