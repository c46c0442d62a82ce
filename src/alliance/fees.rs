//! Cross-referral fees, inside the payment's and the refund's transactions (the order hooks).
//!
//! When a customer sent by partner A pays for its first order at partner B, B owes A the
//! alliance's referral fee: a `fee` entry debiting B and crediting A, written with the payment
//! and counted in the balances at once. A customer who had paid B before it was sent earns
//! nothing (`existing`). A refund in full within B's return window (its points return window,
//! the one every reward on an order follows) reverses the fee with a `fee_void` entry; after
//! the window the fee is final. Both partners must still be active for a fee to arise.

use jiff::SignedDuration;
use serde_json::json;

use crate::common::db::Tx;
use crate::common::error::ApiResult;
use crate::common::hooks::{OrderPaid, OrderRefunded};
use crate::common::ids::TenantId;
use crate::common::outbox::NewEvent;
use crate::common::time::to_micros;
use crate::membership::program;

use super::model::PartnerStatus;
use super::store::{self, NewEntry, StoredPartner};
use super::{rules, EntryId};

fn tenant(partner: &StoredPartner) -> TenantId {
    TenantId::from_db(partner.tenant_id.clone())
}

/// Emit `kind` to both partners' outboxes.
fn announce(
    tx: &mut Tx,
    kind: &'static str,
    alliance_id: &str,
    parties: [&StoredPartner; 2],
    data: &serde_json::Value,
) {
    for partner in parties {
        tx.emit(NewEvent::new(
            &tenant(partner),
            kind,
            Some(alliance_id),
            data.clone(),
        ));
    }
}

/// A paid order: the fee of each alliance that sent this customer, if this is its first paid
/// order at the issuer.
pub async fn on_order_paid(tx: &mut Tx, order: &OrderPaid<'_>) -> ApiResult<()> {
    let awaiting = store::awaiting_customers(
        tx.conn(),
        order.tenant_id.as_str(),
        order.member_id.as_str(),
    )
    .await?;
    if awaiting.is_empty() {
        return Ok(());
    }
    let now = to_micros(tx.now());
    for customer in awaiting {
        let alliance_id = customer.alliance_id.as_str();
        let earlier = store::other_paid_orders(
            tx.conn(),
            order.tenant_id.as_str(),
            order.member_id.as_str(),
            Some(order.order_id),
        )
        .await?;
        if earlier > 0 {
            store::set_customer_status(
                tx.conn(),
                alliance_id,
                &customer.customer_id,
                "existing",
                None,
                now,
            )
            .await?;
            continue;
        }
        let Some(alliance) = store::alliance(tx.conn(), alliance_id).await? else {
            continue;
        };
        let issuer = store::partner(tx.conn(), alliance_id, &customer.issuer_partner_id).await?;
        let referrer =
            store::partner(tx.conn(), alliance_id, &customer.referred_by_partner_id).await?;
        let (Some(issuer), Some(referrer)) = (issuer, referrer) else {
            continue;
        };
        if issuer.status != PartnerStatus::Active || referrer.status != PartnerStatus::Active {
            // The partnership ended before the customer paid: nothing new is owed.
            store::set_customer_status(
                tx.conn(),
                alliance_id,
                &customer.customer_id,
                "lapsed",
                Some(order.order_id),
                now,
            )
            .await?;
            continue;
        }
        let amount = rules::fee(&alliance.rules.referral_fee, order.total);
        store::set_customer_status(
            tx.conn(),
            alliance_id,
            &customer.customer_id,
            "earned",
            Some(order.order_id),
            now,
        )
        .await?;
        if amount <= 0 {
            continue;
        }
        let entry_id = EntryId::generate().as_str().to_owned();
        let dedupe = format!("fee:{}", order.order_id);
        let written = store::insert_entry(
            tx.conn(),
            alliance_id,
            &NewEntry {
                id: &entry_id,
                kind: "fee",
                debit_partner_id: &issuer.id,
                credit_partner_id: &referrer.id,
                amount,
                customer_id: Some(&customer.customer_id),
                order_id: Some(order.order_id),
                reference: None,
                dedupe: Some(&dedupe),
                recorded_by_partner_id: None,
                created_at: now,
            },
        )
        .await?;
        if !written {
            continue;
        }
        let data = json!({ "alliance_id": alliance_id, "entry_id": entry_id,
                           "from": issuer.id, "to": referrer.id, "amount": amount,
                           "customer_id": customer.customer_id });
        announce(
            tx,
            "alliance.fee_created",
            alliance_id,
            [&issuer, &referrer],
            &data,
        );
    }
    Ok(())
}

/// A refund: a full refund within the issuer's return window reverses the order's fees.
pub async fn on_order_refunded(tx: &mut Tx, refund: &OrderRefunded<'_>) -> ApiResult<()> {
    if !refund.full {
        return Ok(());
    }
    let fees = store::standing_fees_of_order(tx.conn(), refund.tenant_id.as_str(), refund.order_id)
        .await?;
    if fees.is_empty() {
        return Ok(());
    }
    let window_days = program::load_settings(tx.conn(), refund.tenant_id)
        .await?
        .points
        .return_window_days;
    let now = to_micros(tx.now());
    for fee in fees {
        let closes = to_micros(
            crate::common::time::from_micros(fee.created_at)
                + SignedDuration::from_hours(24 * window_days),
        );
        if now > closes {
            continue;
        }
        let entry_id = EntryId::generate().as_str().to_owned();
        let dedupe = format!("void:{}", fee.id);
        let written = store::insert_entry(
            tx.conn(),
            &fee.alliance_id,
            &NewEntry {
                id: &entry_id,
                kind: "fee_void",
                debit_partner_id: &fee.credit_partner_id,
                credit_partner_id: &fee.debit_partner_id,
                amount: fee.amount,
                customer_id: fee.customer_id.as_deref(),
                order_id: Some(refund.order_id),
                reference: Some(&fee.id),
                dedupe: Some(&dedupe),
                recorded_by_partner_id: None,
                created_at: now,
            },
        )
        .await?;
        if !written {
            continue;
        }
        store::mark_voided(tx.conn(), &fee.alliance_id, &fee.id, &entry_id).await?;
        if let Some(customer_id) = fee.customer_id.as_deref() {
            store::set_customer_status(
                tx.conn(),
                &fee.alliance_id,
                customer_id,
                "voided",
                None,
                now,
            )
            .await?;
        }
        let issuer = store::partner(tx.conn(), &fee.alliance_id, &fee.debit_partner_id).await?;
        let referrer = store::partner(tx.conn(), &fee.alliance_id, &fee.credit_partner_id).await?;
        if let (Some(issuer), Some(referrer)) = (issuer, referrer) {
            let data = json!({ "alliance_id": fee.alliance_id, "entry_id": entry_id,
                               "voids": fee.id, "from": issuer.id, "to": referrer.id,
                               "amount": fee.amount, "customer_id": fee.customer_id });
            announce(
                tx,
                "alliance.fee_voided",
                &fee.alliance_id,
                [&issuer, &referrer],
                &data,
            );
        }
    }
    Ok(())
}
