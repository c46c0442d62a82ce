//! The codes themselves, pure: the alphabet, generation and the check character.
//!
//! A code is [`PAYLOAD_LEN`] random characters and one check character, [`CODE_LEN`] in all,
//! drawn from [`ALPHABET`]: the digits and capital letters without the look-alikes `0 O 1 I L`,
//! 31 characters. The payload carries 17 × log2(31) ≈ 84.2 bits from the operating system's
//! CSPRNG (`rand::rngs::OsRng` seeding `StdRng`, a ChaCha12 generator), above the 80 bits the
//! issue asks for: a guesser who knows a million codes of a batch still hits one with a chance
//! of about 10⁻¹⁹ per guess.
//!
//! The check character makes the weighted sum of all characters' values, weights 1 to 18,
//! zero modulo 31. As 31 is prime and every weight is below it, changing any one character
//! changes the sum by `weight × difference`, which is never a multiple of 31: every single
//! substitution is caught, and so is every swap of two neighbours (their weights differ by
//! one). That is what lets a scan tell a typo (`mistyped`) from a well-formed code nobody
//! issued (`unknown_code`). Written by hand because it is twenty lines and no crate offers
//! this alphabet with a prime-modulus check.

use rand::{Rng as _, SeedableRng as _};

/// The characters of a code: no `0`, `O`, `1`, `I` or `L`. A prime number of them (31), so
/// that the check character catches every single-character substitution.
pub const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Random characters in a code.
pub const PAYLOAD_LEN: usize = 17;
/// Characters in a code, the check character included.
pub const CODE_LEN: usize = PAYLOAD_LEN + 1;
/// Longest text a scan may send as a code (spaces and hyphens included).
pub const MAX_INPUT_LEN: usize = 64;

const MODULUS: u32 = ALPHABET.len() as u32;

/// Each byte's value in the alphabet (`NONE` for bytes outside it), built at compile time so
/// that reading a million codes costs one lookup per character.
const VALUES: [u8; 256] = {
    let mut table = [NONE; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NONE: u8 = u8::MAX;

/// The value of a character of the alphabet, if it is one.
fn value(c: u8) -> Option<u32> {
    match VALUES[c as usize] {
        NONE => None,
        v => Some(u32::from(v)),
    }
}

/// The weighted sum of `values` (weights 1, 2, 3…) modulo 31.
fn weighted_sum(values: impl Iterator<Item = u32>) -> u32 {
    values
        .zip(1u32..)
        .fold(0, |sum, (v, weight)| (sum + v * weight) % MODULUS)
}

/// The check character of a payload of alphabet characters.
pub fn check_character(payload: &[u8]) -> u8 {
    let sum = weighted_sum(payload.iter().map(|&c| value(c).unwrap_or(0)));
    // The check character's weight is payload.len() + 1; find the value that zeroes the sum.
    let weight = payload.len() as u32 + 1;
    let needed = (MODULUS - sum) % MODULUS;
    // weight is invertible modulo the prime 31 (it is 1..=30).
    let inverse = (1..MODULUS)
        .find(|i| (i * weight) % MODULUS == 1)
        .unwrap_or(1);
    ALPHABET[((needed * inverse) % MODULUS) as usize]
}

/// Does a well-formed code (length and alphabet checked) carry a correct check character?
fn checks(code: &[u8]) -> bool {
    weighted_sum(code.iter().map(|&c| value(c).unwrap_or(u32::MAX))) == 0
}

/// A code generator over a CSPRNG seeded from the operating system.
pub struct Generator {
    rng: rand::rngs::StdRng,
}

impl Default for Generator {
    fn default() -> Self {
        Self::new()
    }
}

impl Generator {
    pub fn new() -> Self {
        Self {
            rng: rand::rngs::StdRng::from_os_rng(),
        }
    }

    /// One new code.
    pub fn code(&mut self) -> String {
        let mut bytes = [0u8; CODE_LEN];
        for byte in bytes.iter_mut().take(PAYLOAD_LEN) {
            *byte = ALPHABET[self.rng.random_range(0..ALPHABET.len())];
        }
        bytes[PAYLOAD_LEN] = check_character(&bytes[..PAYLOAD_LEN]);
        // Every byte is ASCII from the alphabet.
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `count` codes, all different (a repeat, about 10⁻¹³ likely in a million, is drawn again).
    pub fn codes(&mut self, count: usize) -> Vec<String> {
        let mut seen = std::collections::HashSet::with_capacity(count);
        let mut codes = Vec::with_capacity(count);
        while codes.len() < count {
            let code = self.code();
            if seen.insert(code.clone()) {
                codes.push(code);
            }
        }
        codes
    }
}

/// What a scanned text is before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A well-formed code with a correct check character (it may still be unknown).
    Code(String),
    /// Close to a code but wrong: one character off the alphabet, a wrong check character, or
    /// one character too many or too few.
    Mistyped,
    /// Nothing like a code.
    Garbage,
}

/// Read a scanned or typed code: case, spaces and hyphens are ignored (labels may print
/// `ABCD-EFGH-…`).
pub fn parse(input: &str) -> Parsed {
    let cleaned: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'-' | b'\t'))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let length_near = (CODE_LEN - 1..=CODE_LEN + 1).contains(&cleaned.len());
    if !length_near || !cleaned.iter().all(u8::is_ascii_alphanumeric) {
        return Parsed::Garbage;
    }
    if cleaned.len() != CODE_LEN || !cleaned.iter().all(|&c| value(c).is_some()) {
        return Parsed::Mistyped;
    }
    if !checks(&cleaned) {
        return Parsed::Mistyped;
    }
    Parsed::Code(String::from_utf8_lossy(&cleaned).into_owned())
}

/// Is `text` a well-formed code (as stored)?
pub fn is_code(text: &str) -> bool {
    matches!(parse(text), Parsed::Code(c) if c == text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_alphabet_has_no_look_alikes_and_a_prime_size() {
        for look_alike in b"0O1IL" {
            assert!(!ALPHABET.contains(look_alike), "{}", *look_alike as char);
        }
        let n = ALPHABET.len();
        assert!((2..n).all(|d| !n.is_multiple_of(d)), "{n} is prime");
        let mut sorted = ALPHABET.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "no repeated character");
        assert!(ALPHABET
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    }

    #[test]
    fn codes_carry_at_least_80_bits() {
        let bits = PAYLOAD_LEN as f64 * (ALPHABET.len() as f64).log2();
        assert!(bits >= 80.0, "{bits}");
    }

    #[test]
    fn generated_codes_parse_and_are_unique() {
        let mut generator = Generator::new();
        let codes = generator.codes(10_000);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        for code in &codes {
            assert_eq!(code.len(), CODE_LEN);
            assert!(is_code(code), "{code}");
        }
    }

    #[test]
    fn hyphens_spaces_and_case_are_ignored() {
        let code = Generator::new().code();
        let spaced = format!(
            " {}-{} {} ",
            &code[..6].to_lowercase(),
            &code[6..12],
            &code[12..]
        );
        assert_eq!(parse(&spaced), Parsed::Code(code));
    }

    #[test]
    fn near_misses_are_mistyped_and_the_rest_garbage() {
        let code = Generator::new().code();
        assert_eq!(parse(&code[1..]), Parsed::Mistyped, "one character dropped");
        assert_eq!(parse(&format!("{code}2")), Parsed::Mistyped, "one added");
        let mut look_alike = code.clone().into_bytes();
        look_alike[3] = b'O';
        assert_eq!(
            parse(&String::from_utf8(look_alike).unwrap()),
            Parsed::Mistyped
        );
        assert_eq!(parse(""), Parsed::Garbage);
        assert_eq!(parse("hello"), Parsed::Garbage);
        assert_eq!(parse(&"A".repeat(40)), Parsed::Garbage);
        assert_eq!(parse("ABCDEFGHJKMNPQRSTU\u{0}"), Parsed::Garbage);
        assert_eq!(parse("ÄBCDEFGHJKMNPQRSTUV"), Parsed::Garbage);
    }

    proptest! {
        #[test]
        fn any_single_substitution_is_caught(
            seed in any::<[u8; 32]>(),
            position in 0..CODE_LEN,
            replacement in 0..ALPHABET.len(),
        ) {
            let mut generator = Generator { rng: rand::rngs::StdRng::from_seed(seed) };
            let code = generator.code();
            let mut typo = code.clone().into_bytes();
            prop_assume!(typo[position] != ALPHABET[replacement]);
            typo[position] = ALPHABET[replacement];
            let typo = String::from_utf8(typo).unwrap();
            prop_assert_eq!(parse(&typo), Parsed::Mistyped);
        }

        #[test]
        fn any_swap_of_neighbours_is_caught(
            seed in any::<[u8; 32]>(),
            position in 0..CODE_LEN - 1,
        ) {
            let mut generator = Generator { rng: rand::rngs::StdRng::from_seed(seed) };
            let code = generator.code();
            let mut swapped = code.clone().into_bytes();
            prop_assume!(swapped[position] != swapped[position + 1]);
            swapped.swap(position, position + 1);
            prop_assert_eq!(parse(&String::from_utf8(swapped).unwrap()), Parsed::Mistyped);
        }
    }

    #[test]
    fn every_substitution_of_every_position_is_caught_exhaustively() {
        // Beyond the property test: all 18 × 30 substitutions of a few codes.
        let mut generator = Generator::new();
        for _ in 0..20 {
            let code = generator.code().into_bytes();
            for position in 0..CODE_LEN {
                for &c in ALPHABET.iter().filter(|&&c| c != code[position]) {
                    let mut typo = code.clone();
                    typo[position] = c;
                    assert_eq!(parse(std::str::from_utf8(&typo).unwrap()), Parsed::Mistyped);
                }
            }
        }
    }
}
