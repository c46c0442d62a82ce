//! The ledger's rules, applied in memory to the accounts a batch touches.
//!
//! [`apply_ops`] takes a [`Book`] (the balances of the locked accounts, the transfers and
//! resolutions already known) and a request's operations, checks each against the rules and
//! updates the book; it records what must be written. It does no I/O, so the rules are tested
//! here without a database, and the store only loads, locks and writes.
//!
//! Rules (after TigerBeetle's): a transfer id is an idempotency key (same id and fields:
//! `exists`, nothing happens again; other fields: `exists_with_different_fields`); member
//! accounts may never go negative: a debit is refused when posted debits + pending debits +
//! amount exceed posted credits; system accounts may; a pending transfer reserves its amount
//! and is resolved exactly once (post, possibly smaller, void, or expire); a linked chain
//! (`linked` on every transfer but the last) succeeds or fails as a whole.

// foldhash instead of SipHash: hashing account keys and transfer ids was a tenth of deciding a
// batch under `shequn bench ledger`; foldhash is seeded per process, which keeps flooding with
// chosen ids impractical.
use foldhash::{HashMap, HashSet};

use super::model::{Address, Asset, NewTransfer, Transfer, TransferResult};

/// An operation on the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Create(NewTransfer),
    /// Post a pending transfer, all of it or a smaller `amount`.
    Post {
        pending_id: String,
        amount: Option<i64>,
    },
    Void {
        pending_id: String,
    },
    /// A void by the scheduler when the timeout passed.
    Expire {
        pending_id: String,
    },
}

impl Op {
    pub fn id(&self) -> &str {
        match self {
            Op::Create(t) => &t.id,
            Op::Post { pending_id, .. } | Op::Void { pending_id } | Op::Expire { pending_id } => {
                pending_id
            }
        }
    }
}

/// The four running totals of an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

impl Totals {
    // Each total moves by checked arithmetic: a change that would take it past `i64::MAX` (or
    // below `i64::MIN`) gives `None`, and the transfer is refused with `overflow` instead of
    // wrapping a balance around.

    pub fn with_debits_posted(mut self, amount: i64) -> Option<Self> {
        self.debits_posted = self.debits_posted.checked_add(amount)?;
        Some(self)
    }

    pub fn with_credits_posted(mut self, amount: i64) -> Option<Self> {
        self.credits_posted = self.credits_posted.checked_add(amount)?;
        Some(self)
    }

    pub fn with_debits_pending(mut self, amount: i64) -> Option<Self> {
        self.debits_pending = self.debits_pending.checked_add(amount)?;
        Some(self)
    }

    pub fn with_credits_pending(mut self, amount: i64) -> Option<Self> {
        self.credits_pending = self.credits_pending.checked_add(amount)?;
        Some(self)
    }
}

pub type AccountKey = (Address, Asset);

/// How a pending transfer was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolutionKind {
    Posted,
    Voided,
    Expired,
}

impl ResolutionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionKind::Posted => "posted",
            ResolutionKind::Voided => "voided",
            ResolutionKind::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "posted" => Some(ResolutionKind::Posted),
            "voided" => Some(ResolutionKind::Voided),
            "expired" => Some(ResolutionKind::Expired),
            _ => None,
        }
    }
}

/// Where a new transfer joins its accounts' histories: the transfer before it on each side.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Links {
    pub debit_prev: Option<String>,
    pub credit_prev: Option<String>,
}

/// What the batch must write.
#[derive(Debug, Default, Clone)]
pub struct Writes {
    pub transfers: Vec<NewTransfer>,
    /// One per transfer, in the same order.
    pub links: Vec<Links>,
    /// (pending id, kind, posted amount)
    pub resolutions: Vec<(String, ResolutionKind, i64)>,
}

/// The in-memory view of a batch.
#[derive(Debug, Default, Clone)]
pub struct Book {
    pub accounts: HashMap<AccountKey, Totals>,
    /// Each account's newest transfer, the head of its history (absent: none yet).
    pub heads: HashMap<AccountKey, String>,
    /// Accounts changed by the batch.
    pub dirty: HashSet<AccountKey>,
    /// Transfers known by id (loaded, or created earlier in this batch).
    pub transfers: HashMap<String, Transfer>,
    /// Member addresses that exist (others get `account_not_found`).
    pub members: HashSet<String>,
    /// The instant stamped on new transfers and resolutions (RFC 3339).
    pub now: String,
    pub writes: Writes,
}

enum Undo {
    Account(AccountKey, Totals),
    Head(AccountKey, Option<String>),
    Transfer(String, Option<Box<Transfer>>),
}

/// What a linked chain restores when one of its transfers fails. A transfer outside a chain
/// changes the book only after all its checks passed, so it keeps no journal (saving the
/// copies of keys and ids that every change would record).
struct Journal(Option<Vec<Undo>>);

impl Journal {
    fn for_chain() -> Self {
        Journal(Some(Vec::new()))
    }

    fn none() -> Self {
        Journal(None)
    }

    fn record(&mut self, undo: impl FnOnce() -> Undo) {
        if let Some(entries) = &mut self.0 {
            entries.push(undo());
        }
    }
}

/// A result without the transfer (errors, and `created`).
fn status_only(id: &str, status: &str, message: Option<String>) -> TransferResult {
    TransferResult {
        id: id.to_owned(),
        status: status.to_owned(),
        message,
        transfer: None,
    }
}

/// The refusal of a change that would take an account's total past what it can hold.
fn overflow(id: &str) -> TransferResult {
    status_only(
        id,
        "overflow",
        Some(format!(
            "this would take an account's total past {}; nothing was changed",
            i64::MAX
        )),
    )
}

fn succeeded(id: &str, status: &str, transfer: Transfer) -> TransferResult {
    TransferResult {
        id: id.to_owned(),
        status: status.to_owned(),
        message: None,
        transfer: Some(transfer),
    }
}

impl Book {
    fn totals(&self, key: &AccountKey) -> Totals {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    // `set` and `push_head` update an entry in place when it exists (in a batch, nearly always:
    // the accounts were read before deciding), so that they copy no key: copying account keys
    // was a fifth of applying a spend under `shequn bench ledger` (callgrind).

    fn set(&mut self, key: AccountKey, totals: Totals, undo: &mut Journal) {
        let old = match self.accounts.get_mut(&key) {
            Some(entry) => std::mem::replace(entry, totals),
            None => {
                self.accounts.insert(key.clone(), totals);
                Totals::default()
            }
        };
        undo.record(|| Undo::Account(key.clone(), old));
        self.dirty.insert(key);
    }

    /// Make `id` the newest transfer of the account; returns the one before it.
    fn push_head(&mut self, key: &AccountKey, id: &str, undo: &mut Journal) -> Option<String> {
        let previous = match self.heads.get_mut(key) {
            Some(head) => Some(std::mem::replace(head, id.to_owned())),
            None => self.heads.insert(key.clone(), id.to_owned()),
        };
        undo.record(|| Undo::Head(key.clone(), previous.clone()));
        previous
    }

    fn rollback(&mut self, undo: Journal, writes_len: (usize, usize)) {
        for entry in undo.0.into_iter().flatten().rev() {
            match entry {
                Undo::Account(key, totals) => {
                    self.accounts.insert(key, totals);
                }
                Undo::Head(key, previous) => match previous {
                    Some(id) => {
                        self.heads.insert(key, id);
                    }
                    None => {
                        self.heads.remove(&key);
                    }
                },
                Undo::Transfer(id, previous) => match previous {
                    Some(t) => {
                        self.transfers.insert(id, *t);
                    }
                    None => {
                        self.transfers.remove(&id);
                    }
                },
            }
        }
        self.writes.transfers.truncate(writes_len.0);
        self.writes.links.truncate(writes_len.0);
        self.writes.resolutions.truncate(writes_len.1);
    }

    fn create(&mut self, t: &NewTransfer, undo: &mut Journal) -> TransferResult {
        if let Some(existing) = self.transfers.get(&t.id) {
            return if existing.same_as(t) {
                succeeded(&t.id, "exists", existing.clone())
            } else {
                status_only(
                    &t.id,
                    "exists_with_different_fields",
                    Some("a transfer with this id exists with other fields".into()),
                )
            };
        }
        if t.from == t.to {
            return status_only(
                &t.id,
                "same_account",
                Some("from and to are the same account".into()),
            );
        }
        for address in [&t.from, &t.to] {
            if address.is_member() && !self.members.contains(address.as_str()) {
                return status_only(
                    &t.id,
                    "account_not_found",
                    Some(format!("no member {}", address.member_id().unwrap_or(""))),
                );
            }
        }
        let debit_key = (t.from.clone(), t.asset);
        let credit_key = (t.to.clone(), t.asset);
        let debit = self.totals(&debit_key);
        let credit = self.totals(&credit_key);
        if t.from.is_member() {
            // In i128: the sum of three i64 totals cannot overflow there.
            let committed = i128::from(debit.debits_posted)
                + i128::from(debit.debits_pending)
                + i128::from(t.amount);
            if committed > i128::from(debit.credits_posted) {
                return status_only(
                    &t.id,
                    "insufficient_funds",
                    Some(format!(
                        "available {} < {}",
                        i128::from(debit.credits_posted)
                            - i128::from(debit.debits_posted)
                            - i128::from(debit.debits_pending),
                        t.amount
                    )),
                );
            }
        }
        let moved = if t.pending {
            debit
                .with_debits_pending(t.amount)
                .zip(credit.with_credits_pending(t.amount))
        } else {
            debit
                .with_debits_posted(t.amount)
                .zip(credit.with_credits_posted(t.amount))
        };
        let Some((debit, credit)) = moved else {
            return overflow(&t.id);
        };
        let links = Links {
            debit_prev: self.push_head(&debit_key, &t.id, undo),
            credit_prev: self.push_head(&credit_key, &t.id, undo),
        };
        self.set(debit_key, debit, undo);
        self.set(credit_key, credit, undo);
        let transfer = Transfer {
            id: t.id.clone(),
            from: t.from.to_string(),
            to: t.to.to_string(),
            asset: t.asset,
            amount: t.amount,
            code: t.code.clone(),
            reference: t.reference.clone(),
            metadata: t.metadata.clone(),
            pending: t.pending,
            linked: t.linked,
            status: if t.pending { "pending" } else { "posted" }.to_owned(),
            posted_amount: (!t.pending).then_some(t.amount),
            timeout_at: None,
            created_at: self.now.clone(),
            resolved_at: None,
        };
        undo.record(|| Undo::Transfer(t.id.clone(), None));
        self.transfers.insert(t.id.clone(), transfer);
        self.writes.transfers.push(t.clone());
        self.writes.links.push(links);
        // The caller knows what it sent; only the status comes back for new transfers.
        status_only(&t.id, "created", None)
    }

    fn resolve(
        &mut self,
        pending_id: &str,
        kind: ResolutionKind,
        amount: Option<i64>,
        undo: &mut Journal,
    ) -> TransferResult {
        let Some(transfer) = self.transfers.get(pending_id).cloned() else {
            return status_only(pending_id, "transfer_not_found", None);
        };
        if !transfer.pending {
            return status_only(
                pending_id,
                "not_pending",
                Some("only pending transfers can be posted or voided".into()),
            );
        }
        if transfer.status != "pending" {
            return TransferResult {
                id: pending_id.to_owned(),
                status: "already_resolved".to_owned(),
                message: Some(format!("this transfer was already {}", transfer.status)),
                transfer: Some(transfer),
            };
        }
        let posted = match kind {
            ResolutionKind::Posted => amount.unwrap_or(transfer.amount),
            _ => 0,
        };
        if posted < 0 || posted > transfer.amount || (kind == ResolutionKind::Posted && posted == 0)
        {
            return status_only(
                pending_id,
                "amount_exceeds_pending",
                Some(format!("post between 1 and {}", transfer.amount)),
            );
        }
        let (Some(from), Some(to)) = (Address::parse(&transfer.from), Address::parse(&transfer.to))
        else {
            return status_only(pending_id, "transfer_not_found", None);
        };
        let debit_key = (from, transfer.asset);
        let credit_key = (to, transfer.asset);
        let debit = self
            .totals(&debit_key)
            .with_debits_pending(-transfer.amount)
            .and_then(|d| d.with_debits_posted(posted));
        let credit = self
            .totals(&credit_key)
            .with_credits_pending(-transfer.amount)
            .and_then(|c| c.with_credits_posted(posted));
        let (Some(debit), Some(credit)) = (debit, credit) else {
            return overflow(pending_id);
        };
        self.set(debit_key, debit, undo);
        self.set(credit_key, credit, undo);
        let mut resolved = transfer.clone();
        resolved.status = kind.as_str().to_owned();
        resolved.posted_amount = Some(posted);
        resolved.resolved_at = Some(self.now.clone());
        undo.record(|| Undo::Transfer(pending_id.to_owned(), Some(Box::new(transfer))));
        self.transfers
            .insert(pending_id.to_owned(), resolved.clone());
        self.writes
            .resolutions
            .push((pending_id.to_owned(), kind, posted));
        succeeded(pending_id, kind.as_str(), resolved)
    }
}

/// Apply one request's operations in order; returns one result per operation.
pub fn apply_ops(book: &mut Book, ops: &[Op]) -> Vec<TransferResult> {
    let mut results = Vec::with_capacity(ops.len());
    let mut i = 0;
    while i < ops.len() {
        // A chain runs from here through the first create that is not linked.
        let mut end = i;
        while let Some(Op::Create(t)) = ops.get(end) {
            if !t.linked {
                break;
            }
            end += 1;
        }
        if end == i {
            results.push(apply_one(book, &ops[i], &mut Journal::none()));
            i += 1;
            continue;
        }
        let chain_closed = matches!(ops.get(end), Some(Op::Create(_)));
        if !chain_closed {
            let last = end.min(ops.len());
            for op in &ops[i..last] {
                results.push(status_only(
                    op.id(),
                    "linked_chain_open",
                    Some("the last transfer of a linked chain must not be linked".into()),
                ));
            }
            i = last;
            continue;
        }
        let writes_len = (book.writes.transfers.len(), book.writes.resolutions.len());
        let mut undo = Journal::for_chain();
        let mut chain_results = Vec::new();
        let mut failure: Option<usize> = None;
        for (k, op) in ops[i..=end].iter().enumerate() {
            let result = apply_one(book, op, &mut undo);
            if !result.is_success() {
                failure = Some(k);
                chain_results.push(result);
                break;
            }
            chain_results.push(result);
        }
        if let Some(failed_at) = failure {
            book.rollback(undo, writes_len);
            for (k, op) in ops[i..=end].iter().enumerate() {
                if k == failed_at {
                    results.push(chain_results[k].clone());
                } else {
                    results.push(status_only(
                        op.id(),
                        "linked_transfer_failed",
                        Some("another transfer of its linked chain failed".into()),
                    ));
                }
            }
        } else {
            results.extend(chain_results);
        }
        i = end + 1;
    }
    results
}

fn apply_one(book: &mut Book, op: &Op, undo: &mut Journal) -> TransferResult {
    match op {
        Op::Create(t) => book.create(t, undo),
        Op::Post { pending_id, amount } => {
            book.resolve(pending_id, ResolutionKind::Posted, *amount, undo)
        }
        Op::Void { pending_id } => book.resolve(pending_id, ResolutionKind::Voided, None, undo),
        Op::Expire { pending_id } => book.resolve(pending_id, ResolutionKind::Expired, None, undo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "member:mem_0123456789abcdef0123456789abcdef";

    fn book() -> Book {
        let mut book = Book::default();
        book.members.insert(M.to_owned());
        book
    }

    fn transfer(id: &str, from: &str, to: &str, amount: i64) -> NewTransfer {
        NewTransfer::internal(
            id,
            Address::parse(from).unwrap(),
            Address::parse(to).unwrap(),
            Asset::Points,
            amount,
            "test",
            None,
        )
    }

    fn balance(book: &Book, address: &str) -> i64 {
        let t = book.totals(&(Address::parse(address).unwrap(), Asset::Points));
        t.credits_posted - t.debits_posted
    }

    #[test]
    fn a_transfer_that_would_wrap_a_total_is_refused_with_overflow_and_changes_nothing() {
        let mut book = book();
        let max = super::super::model::MAX_AMOUNT;
        let grants = i64::MAX / max;
        let ops: Vec<Op> = (0..grants)
            .map(|i| Op::Create(transfer(&format!("g{i}"), "system:issuance", M, max)))
            .collect();
        assert!(apply_ops(&mut book, &ops)
            .iter()
            .all(|r| r.status == "created"));
        let before = balance(&book, M);
        assert_eq!(before, grants * max);
        let writes = book.writes.transfers.len();
        let results = apply_ops(
            &mut book,
            &[Op::Create(transfer("wrap", "system:issuance", M, max))],
        );
        assert_eq!(results[0].status, "overflow");
        assert!(!results[0].is_success());
        assert_eq!(balance(&book, M), before, "nothing wrapped");
        assert_eq!(book.writes.transfers.len(), writes, "nothing to write");
        // A pending transfer that would overflow the pending totals is refused the same way, and
        // a linked chain holding one fails whole.
        let mut first = transfer("c1", M, "system:redemption", 1);
        first.linked = true;
        let mut second = transfer("c2", "system:issuance", M, max);
        second.pending = true;
        book.accounts
            .get_mut(&(Address::parse(M).unwrap(), Asset::Points))
            .unwrap()
            .credits_pending = i64::MAX - 1;
        let results = apply_ops(&mut book, &[Op::Create(first), Op::Create(second)]);
        assert_eq!(results[0].status, "linked_transfer_failed");
        assert_eq!(results[1].status, "overflow");
        assert_eq!(balance(&book, M), before);
    }

    #[test]
    fn new_transfers_link_to_the_previous_transfer_of_each_account() {
        let mut book = book();
        let results = apply_ops(
            &mut book,
            &[
                Op::Create(transfer("a", "system:issuance", M, 10)),
                Op::Create(transfer("b", M, "system:redemption", 3)),
            ],
        );
        assert!(results.iter().all(|r| r.status == "created"));
        let link = |debit: Option<&str>, credit: Option<&str>| Links {
            debit_prev: debit.map(str::to_owned),
            credit_prev: credit.map(str::to_owned),
        };
        assert_eq!(book.writes.links, [link(None, None), link(Some("a"), None)]);
        // A linked chain that fails leaves the heads as they were.
        let mut first = transfer("c1", "system:issuance", M, 5);
        first.linked = true;
        let results = apply_ops(
            &mut book,
            &[
                Op::Create(first),
                Op::Create(transfer("c2", M, "system:redemption", 1_000)),
            ],
        );
        assert_eq!(results[1].status, "insufficient_funds");
        apply_ops(
            &mut book,
            &[Op::Create(transfer("d", M, "system:redemption", 1))],
        );
        assert_eq!(book.writes.transfers.len(), book.writes.links.len());
        assert_eq!(book.writes.links.last(), Some(&link(Some("b"), Some("b"))));
        let member = (Address::parse(M).unwrap(), Asset::Points);
        assert_eq!(book.heads[&member], "d");
    }

    #[test]
    fn member_accounts_never_go_negative() {
        let mut book = book();
        let r = apply_ops(
            &mut book,
            &[
                Op::Create(transfer("grant", "system:issuance", M, 100)),
                Op::Create(transfer("spend1", M, "system:redemption", 60)),
                Op::Create(transfer("spend2", M, "system:redemption", 60)),
            ],
        );
        let statuses: Vec<&str> = r.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(statuses, ["created", "created", "insufficient_funds"]);
        assert_eq!(balance(&book, M), 40);
        assert_eq!(
            balance(&book, "system:issuance"),
            -100,
            "system accounts may go negative"
        );
    }

    #[test]
    fn pending_debits_reserve_and_resolve_once() {
        let mut book = book();
        apply_ops(
            &mut book,
            &[Op::Create(transfer("g", "system:issuance", M, 100))],
        );
        let hold = transfer("hold", M, "system:redemption", 80).pending(None);
        let r = apply_ops(
            &mut book,
            &[
                Op::Create(hold),
                Op::Create(transfer("other", M, "system:redemption", 30)),
                Op::Post {
                    pending_id: "hold".into(),
                    amount: Some(50),
                },
                Op::Void {
                    pending_id: "hold".into(),
                },
            ],
        );
        let statuses: Vec<&str> = r.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(
            statuses,
            [
                "created",
                "insufficient_funds",
                "posted",
                "already_resolved"
            ]
        );
        assert_eq!(balance(&book, M), 50, "only the posted 50 left the account");
        let t = book.totals(&(Address::parse(M).unwrap(), Asset::Points));
        assert_eq!(t.debits_pending, 0);
    }

    #[test]
    fn a_failed_link_undoes_its_whole_chain() {
        let mut book = book();
        let r = apply_ops(
            &mut book,
            &[
                Op::Create(transfer("a", "system:issuance", M, 10).linked()),
                Op::Create(transfer("b", M, "system:redemption", 50)),
                Op::Create(transfer("c", "system:issuance", M, 5)),
            ],
        );
        let statuses: Vec<&str> = r.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(
            statuses,
            ["linked_transfer_failed", "insufficient_funds", "created"]
        );
        assert_eq!(balance(&book, M), 5);
        assert_eq!(book.writes.transfers.len(), 1);
        assert!(!book.transfers.contains_key("a"));
    }

    #[test]
    fn an_open_chain_fails_and_duplicates_exist() {
        let mut book = book();
        let r = apply_ops(
            &mut book,
            &[
                Op::Create(transfer("x", "system:issuance", M, 10)),
                Op::Create(transfer("x", "system:issuance", M, 10)),
                Op::Create(transfer("x", "system:issuance", M, 11)),
                Op::Create(transfer("y", "system:issuance", M, 1).linked()),
            ],
        );
        let statuses: Vec<&str> = r.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(
            statuses,
            [
                "created",
                "exists",
                "exists_with_different_fields",
                "linked_chain_open"
            ]
        );
        assert_eq!(balance(&book, M), 10);
    }

    #[test]
    fn unknown_members_and_same_account_are_refused() {
        let mut book = book();
        let stranger = "member:mem_ffffffffffffffffffffffffffffffff";
        let r = apply_ops(
            &mut book,
            &[
                Op::Create(transfer("a", "system:issuance", stranger, 1)),
                Op::Create(transfer("b", "system:x", "system:x", 1)),
                Op::Post {
                    pending_id: "nope".into(),
                    amount: None,
                },
            ],
        );
        let statuses: Vec<&str> = r.iter().map(|r| r.status.as_str()).collect();
        assert_eq!(
            statuses,
            ["account_not_found", "same_account", "transfer_not_found"]
        );
    }
}
