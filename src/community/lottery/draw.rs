//! The provably fair draw, pure: commitment, the random stream, the draw, instant picks,
//! prize assignment, and verification of a published proof.
//!
//! # Algorithm `shequn-lottery-v1`
//!
//! When a lottery is created, shequn picks a secret 32-byte seed from the operating system's
//! CSPRNG and publishes `commitment = hex(SHA-256(seed))`. The seed is revealed with the
//! result, so anyone can check that the result was fixed by a seed chosen before any entry.
//!
//! **Random stream.** Numbers come from a stream named by a domain: block `c` (c = 0, 1, …)
//! is `SHA-256(seed ‖ domain ‖ u64_be(c))` and yields the unsigned 64-bit big-endian number
//! in its first 8 bytes. A uniform number below `n` is drawn by rejection sampling: take the
//! next number `x`; if `x ≥ 2^64 − (2^64 mod n)` reject it and take the next, otherwise
//! return `x mod n` (no modulo bias).
//!
//! **Draw mode** (domain `"draw"`). Entries are numbered 0..N in the order they were accepted
//! (the proof lists their member ids in that order). A partial Fisher–Yates shuffle runs over
//! `[0, 1, …, N−1]`: for i = 0, 1, …, pick j = i + uniform(N − i), swap positions i and j,
//! and the entry now at position i is drawn. A member wins at most once: a drawn entry whose
//! member already won is passed over. Drawing stops when `winners` distinct members are
//! drawn, so members holding several entries have proportionally better odds but one prize.
//! Prizes go to winners in draw order: the first prize (in the lottery's prize order) to the
//! first `stock` winners, then the next prize, and so on; winners beyond the total stock get
//! no prize. Prize weights are not used in draw mode.
//!
//! **Instant mode** (domain `"entry" ‖ u64_be(index)` for the entry with that index). Each
//! entry picks a prize slot with probability weight / total weight: r = uniform(total), and
//! the slot is the first whose cumulative weight exceeds r. A slot without a reward is "no
//! prize" (谢谢参与). A picked prize whose stock is used up gives no prize (it does not fall
//! through to another prize), so the odds of the others never change as stock runs out.
//! Entries are processed in index order, each taking one unit of its prize's stock; a member
//! may win with several entries.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::common::state::state_enum;

state_enum! {
    /// How a lottery picks its winners.
    pub enum LotteryMode {
        /// Winners are drawn once, after entries close.
        Draw = "draw",
        /// Each entry draws at once.
        Instant = "instant",
    }
}

/// The algorithm's name, as published in proofs.
pub const ALGORITHM: &str = "shequn-lottery-v1";
/// A one-line description for proofs.
pub const ALGORITHM_DESCRIPTION: &str = "shequn-lottery-v1: commitment = hex(SHA-256(seed)); \
    stream block c = SHA-256(seed || domain || u64_be(c)), first 8 bytes big-endian; \
    uniform(n) by rejection of x >= 2^64 - (2^64 mod n); draw: partial Fisher-Yates over entry \
    indexes with domain \"draw\", one win per member, prizes to winners in prize order by stock; \
    instant: entry i picks by weight with domain \"entry\" || u64_be(i), an out-of-stock pick \
    wins nothing";

/// Seed length in bytes.
pub const SEED_BYTES: usize = 32;

/// `hex(SHA-256(seed))`.
pub fn commitment(seed: &[u8]) -> String {
    hex::encode(Sha256::digest(seed))
}

/// The deterministic random stream of a seed and domain.
pub struct Stream<'a> {
    seed: &'a [u8],
    domain: Vec<u8>,
    counter: u64,
}

impl<'a> Stream<'a> {
    pub fn new(seed: &'a [u8], domain: &[u8]) -> Self {
        Self {
            seed,
            domain: domain.to_vec(),
            counter: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(&self.domain);
        hasher.update(self.counter.to_be_bytes());
        self.counter += 1;
        let digest = hasher.finalize();
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(head)
    }

    /// Uniform in `0..bound` (`bound` ≥ 1) by rejection sampling.
    pub fn below(&mut self, bound: u64) -> u64 {
        let bound = bound.max(1);
        // 2^64 mod bound, computed without 128-bit arithmetic.
        let excess = (u64::MAX % bound + 1) % bound;
        loop {
            let x = self.next_u64();
            if excess == 0 || x <= u64::MAX - excess {
                return x % bound;
            }
        }
    }
}

/// Draw mode: the indexes of the winning entries, in draw order (see the module doc).
pub fn draw(seed: &[u8], entries: &[String], winners: usize) -> Vec<usize> {
    let n = entries.len();
    let mut stream = Stream::new(seed, b"draw");
    let mut order: Vec<usize> = (0..n).collect();
    let mut won: HashSet<&str> = HashSet::new();
    let mut chosen = Vec::with_capacity(winners.min(n));
    for i in 0..n {
        if chosen.len() >= winners {
            break;
        }
        let remaining = u64::try_from(n - i).unwrap_or(u64::MAX);
        let j = i + usize::try_from(stream.below(remaining)).unwrap_or(0);
        order.swap(i, j);
        let entry = order[i];
        if won.insert(entries[entry].as_str()) {
            chosen.push(entry);
        }
    }
    chosen
}

/// A prize as the draw sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrizeSlot {
    pub name: String,
    pub weight: u64,
    /// Units available; ignored for slots without a reward.
    pub stock: Option<u64>,
    /// False for a "no prize" slot.
    pub has_reward: bool,
}

/// Draw mode: the prize (position) of each winner, in draw order.
pub fn assign_prizes(prizes: &[PrizeSlot], winners: usize) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(winners);
    for (position, prize) in prizes.iter().enumerate() {
        if !prize.has_reward {
            continue;
        }
        for _ in 0..prize.stock.unwrap_or(0) {
            if out.len() >= winners {
                return out;
            }
            out.push(Some(position));
        }
    }
    out.resize(winners, None);
    out
}

/// Instant mode: the slot an entry picks, before looking at stock.
pub fn instant_pick(seed: &[u8], entry_index: u64, weights: &[u64]) -> Option<usize> {
    let total: u64 = weights.iter().fold(0u64, |a, w| a.saturating_add(*w));
    if total == 0 {
        return None;
    }
    let mut domain = b"entry".to_vec();
    domain.extend_from_slice(&entry_index.to_be_bytes());
    let r = Stream::new(seed, &domain).below(total);
    let mut cumulative = 0u64;
    for (position, weight) in weights.iter().enumerate() {
        cumulative = cumulative.saturating_add(*weight);
        if r < cumulative {
            return Some(position);
        }
    }
    None
}

/// Instant mode: the prize won by each of `entries` entries, processed in order against
/// the stock.
pub fn replay_instant(seed: &[u8], entries: usize, prizes: &[PrizeSlot]) -> Vec<Option<usize>> {
    let weights: Vec<u64> = prizes.iter().map(|p| p.weight).collect();
    let mut remaining: Vec<u64> = prizes.iter().map(|p| p.stock.unwrap_or(0)).collect();
    (0..entries)
        .map(|i| {
            let pick = instant_pick(seed, u64::try_from(i).unwrap_or(u64::MAX), &weights)?;
            if prizes[pick].has_reward && remaining[pick] > 0 {
                remaining[pick] -= 1;
                Some(pick)
            } else {
                None
            }
        })
        .collect()
}

/// What `GET /v1/lotteries/{id}/proof` publishes and `shequn lottery verify` checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Proof {
    pub lottery_id: String,
    /// `draw` or `instant`.
    pub mode: String,
    pub algorithm: String,
    pub commitment: String,
    /// Hex of the 32-byte seed.
    pub seed: String,
    /// Draw mode: how many winners were drawn for.
    pub winners_requested: u64,
    /// Member id of each entry, in entry order.
    pub entries: Vec<String>,
    /// Draw mode: winners in draw order; instant mode: the member of each winning entry, in
    /// entry order.
    pub winners: Vec<String>,
    pub prizes: Vec<PrizeSlot>,
    /// Draw mode: the prize position of each winner; instant mode: of each entry.
    pub outcomes: Vec<Option<usize>>,
}

/// Check a proof: the seed matches the commitment, and the winners and prizes follow from
/// the seed and the entries. The error says what does not match.
pub fn verify(proof: &Proof) -> Result<(), String> {
    if !proof.algorithm.starts_with(ALGORITHM) {
        return Err(format!(
            "unknown algorithm {:?} (expected {ALGORITHM})",
            proof.algorithm
        ));
    }
    let seed = hex::decode(&proof.seed).map_err(|_| "the seed is not hex".to_owned())?;
    if seed.len() != SEED_BYTES {
        return Err(format!("the seed is not {SEED_BYTES} bytes"));
    }
    if commitment(&seed) != proof.commitment.to_ascii_lowercase() {
        return Err("commitment mismatch: SHA-256(seed) is not the published commitment".into());
    }
    // The proof's mode stays text, so that a proof naming another mode is rejected here with
    // its reason rather than refused as unreadable.
    match LotteryMode::parse(&proof.mode) {
        Some(LotteryMode::Draw) => {
            let k = usize::try_from(proof.winners_requested).unwrap_or(usize::MAX);
            let drawn: Vec<String> = draw(&seed, &proof.entries, k)
                .into_iter()
                .map(|i| proof.entries[i].clone())
                .collect();
            if drawn != proof.winners {
                return Err(format!(
                    "winners mismatch: the seed and entries draw {drawn:?}, the proof says {:?}",
                    proof.winners
                ));
            }
            let prizes = assign_prizes(&proof.prizes, drawn.len());
            if prizes != proof.outcomes {
                return Err("prize assignment mismatch".into());
            }
        }
        Some(LotteryMode::Instant) => {
            let outcomes = replay_instant(&seed, proof.entries.len(), &proof.prizes);
            if outcomes != proof.outcomes {
                return Err("outcome mismatch: replaying the entries gives other prizes".into());
            }
            let winners: Vec<String> = outcomes
                .iter()
                .zip(&proof.entries)
                .filter(|(o, _)| o.is_some())
                .map(|(_, m)| m.clone())
                .collect();
            if winners != proof.winners {
                return Err(format!(
                    "winners mismatch: replay gives {winners:?}, the proof says {:?}",
                    proof.winners
                ));
            }
        }
        None => return Err(format!("unknown mode {:?}", proof.mode)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn same_input_gives_the_same_winners() {
        let seed = [7u8; 32];
        let list = entries(50);
        assert_eq!(draw(&seed, &list, 5), draw(&seed, &list, 5));
        assert_eq!(draw(&seed, &list, 5).len(), 5);
    }

    #[test]
    fn another_seed_gives_other_winners() {
        let list = entries(50);
        let a = draw(&[1u8; 32], &list, 5);
        let b = draw(&[2u8; 32], &list, 5);
        assert_ne!(a, b);
    }

    #[test]
    fn a_member_wins_at_most_once() {
        // Ten entries from two members: two winners, both members.
        let list: Vec<String> = (0..10).map(|i| format!("m{}", i % 2)).collect();
        for s in 0..20u8 {
            let won: Vec<&String> = draw(&[s; 32], &list, 5).iter().map(|&i| &list[i]).collect();
            assert_eq!(won.len(), 2);
            assert_ne!(won[0], won[1]);
        }
    }

    #[test]
    fn below_stays_in_range_and_is_roughly_uniform() {
        let mut stream = Stream::new(b"seed", b"test");
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            let x = stream.below(3);
            counts[usize::try_from(x).unwrap()] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        assert_eq!(Stream::new(b"s", b"d").below(1), 0);
    }

    #[test]
    fn every_entry_has_the_same_chance_to_be_drawn_first() {
        // Over 6,000 seeds, each of 6 entries is the single winner about 1,000 times.
        let list = entries(6);
        let mut counts = [0u32; 6];
        for s in 0..6_000u32 {
            let seed = Sha256::digest(s.to_be_bytes());
            counts[draw(&seed, &list, 1)[0]] += 1;
        }
        for count in counts {
            assert!((850..1_150).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn prizes_go_to_winners_in_order_by_stock() {
        let prizes = vec![
            PrizeSlot {
                name: "a".into(),
                weight: 1,
                stock: Some(1),
                has_reward: true,
            },
            PrizeSlot {
                name: "none".into(),
                weight: 1,
                stock: None,
                has_reward: false,
            },
            PrizeSlot {
                name: "b".into(),
                weight: 1,
                stock: Some(2),
                has_reward: true,
            },
        ];
        assert_eq!(
            assign_prizes(&prizes, 5),
            vec![Some(0), Some(2), Some(2), None, None]
        );
        assert_eq!(assign_prizes(&prizes, 1), vec![Some(0)]);
    }

    #[test]
    fn instant_replay_never_exceeds_stock() {
        let prizes = vec![
            PrizeSlot {
                name: "a".into(),
                weight: 3,
                stock: Some(4),
                has_reward: true,
            },
            PrizeSlot {
                name: "none".into(),
                weight: 1,
                stock: None,
                has_reward: false,
            },
        ];
        let outcomes = replay_instant(&[9u8; 32], 100, &prizes);
        assert_eq!(outcomes.iter().filter(|o| o.is_some()).count(), 4);
        assert_eq!(outcomes, replay_instant(&[9u8; 32], 100, &prizes));
    }

    fn proof() -> Proof {
        let seed = [5u8; 32];
        let list = entries(20);
        let prizes = vec![PrizeSlot {
            name: "a".into(),
            weight: 1,
            stock: Some(2),
            has_reward: true,
        }];
        let winners: Vec<String> = draw(&seed, &list, 3)
            .into_iter()
            .map(|i| list[i].clone())
            .collect();
        Proof {
            lottery_id: "lot_x".into(),
            mode: "draw".into(),
            algorithm: ALGORITHM_DESCRIPTION.into(),
            commitment: commitment(&seed),
            seed: hex::encode(seed),
            winners_requested: 3,
            entries: list,
            outcomes: assign_prizes(&prizes, winners.len()),
            winners,
            prizes,
        }
    }

    #[test]
    fn verify_accepts_an_honest_proof_and_rejects_tampering() {
        let honest = proof();
        assert_eq!(verify(&honest), Ok(()));
        let mut other_winner = honest.clone();
        other_winner.winners[0] = "mallory".into();
        assert!(verify(&other_winner)
            .unwrap_err()
            .contains("winners mismatch"));
        let mut other_seed = honest.clone();
        other_seed.seed = hex::encode([6u8; 32]);
        assert!(verify(&other_seed).unwrap_err().contains("commitment"));
        let mut other_entries = honest.clone();
        other_entries.entries.reverse();
        assert!(verify(&other_entries).is_err());
    }
}
