//! The naive side of `shequn bench flash-sale` (issue 25, item 4): each purchase decided alone
//! in its own transaction, through sqlx ([`Naive::Sqlx`], the batch's own code with a batch of
//! one) or on the direct rusqlite writer of a SQLite file ([`Naive::Direct`]), the fastest
//! driver there, so that the benchmark's ratio is against the best naive algorithm and not
//! against a slow driver.
//!
//! The direct path is the batch's own code on the direct writer ([`super::direct`]) with a
//! group of one and no gate: the same decision and the same rows (the order, its
//! `order.created` event and the sale's `reserved`). Only the benchmark takes it.

use super::{direct, Claim, Naive, PlacedOrder, Purchases};
use crate::common::batcher;
use crate::common::clock::Clock;
use crate::common::db::Db;
use crate::common::error::{ApiError, ApiResult};

/// Decide one purchase alone, in its own transaction.
pub async fn decide(
    naive: Naive,
    db: &Db,
    clock: &dyn Clock,
    claim: Claim,
) -> ApiResult<PlacedOrder> {
    if naive == Naive::Direct && db.has_direct() {
        let now = clock.now();
        let decided = db
            .write_direct(move |tx| {
                direct::decide_group(tx, None, &claim.tenant_id, &claim.sale_id, &[&claim], now)
            })
            .await;
        return match decided {
            Some(Ok(mut outcomes)) => outcomes
                .pop()
                .unwrap_or_else(|| Err(ApiError::internal(anyhow::anyhow!("no outcome")))),
            Some(Err(error)) => Err(ApiError::internal(error)),
            None => Err(ApiError::internal(anyhow::anyhow!(
                "the direct SQLite writer went away"
            ))),
        };
    }
    batcher::decide_batch(&Purchases::naive(), db, clock, &[claim])
        .await
        .pop()
        .unwrap_or_else(|| Err(ApiError::internal(anyhow::anyhow!("no outcome"))))
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::common::clock::SystemClock;
    use crate::common::ids::{FlashSaleId, MemberId, TenantId};
    use crate::common::time::to_micros;

    /// A sale of 3 units, at most 2 per member, on `product`.
    async fn sale(db: &Db, tenant: &TenantId, product: &str) -> FlashSaleId {
        let id = FlashSaleId::generate();
        let now = to_micros(Timestamp::now());
        sqlx::query(
            "INSERT INTO flash_sale (tenant_id, id, product_id, price, stock, reserved, sold, \
             per_member_limit, starts_at, ends_at, payment_timeout_secs, created_at, updated_at) \
             VALUES ($1, $2, $3, 990, 3, 0, 0, 2, $4, $5, 600, $4, $4)",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(product)
        .bind(now - 1_000_000)
        .bind(now + 3_600_000_000)
        .execute(&mut *db.write_conn().await.expect("conn"))
        .await
        .expect("sale");
        id
    }

    /// What a sale's purchases came to: each outcome (201 or the refusal's code), the sale's
    /// reserved units, its orders' units and its `order.created` events.
    async fn outcomes(
        naive: Naive,
        db: &Db,
        tenant: &TenantId,
        sale_id: &FlashSaleId,
        members: &[MemberId],
    ) -> (Vec<String>, i64, i64, i64) {
        let unknown = MemberId::generate();
        let claims = [
            (&members[0], 2),
            (&members[0], 1),
            (&members[1], 2),
            (&unknown, 1),
            (&members[1], 1),
            (&members[2], 1),
        ];
        let mut seen = Vec::new();
        for (member, qty) in claims {
            let claim = Claim {
                tenant_id: tenant.clone(),
                sale_id: sale_id.clone(),
                member_id: member.clone(),
                qty,
            };
            seen.push(match decide(naive, db, &SystemClock, claim).await {
                Ok(placed) => {
                    assert_eq!(placed.order.qty, qty);
                    "201".to_owned()
                }
                Err(refusal) => refusal.code.to_string(),
            });
        }
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(tenant.as_str())
                .bind(sale_id.as_str())
                .fetch_one(db.read())
                .await
                .expect("count")
        };
        let reserved =
            count("SELECT reserved FROM flash_sale WHERE tenant_id = $1 AND id = $2").await;
        let units = count(
            "SELECT COALESCE(SUM(qty), 0) FROM customer_order WHERE tenant_id = $1 AND campaign_id = $2",
        )
        .await;
        let events = count(
            "SELECT COUNT(*) FROM event WHERE tenant_id = $1 AND type = 'order.created' \
             AND data LIKE '%' || $2 || '%'",
        )
        .await;
        (seen, reserved, units, events)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_direct_naive_purchase_decides_and_writes_as_the_batch_of_one_does() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("naive.db").display());
        let db = Db::connect(&url).await.expect("db");
        db.migrate().await.expect("migrate");
        assert!(db.has_direct());
        let tenant = crate::tenants::create(&db, "naive", Timestamp::now())
            .await
            .expect("tenant")
            .tenant_id;
        let members: Vec<MemberId> = (0..3).map(|_| MemberId::generate()).collect();
        let profile = crate::members::model::Profile::default();
        let rows: Vec<_> = members.iter().map(|id| (id.clone(), &profile)).collect();
        let mut tx = db.begin(Timestamp::now()).await.expect("tx");
        let at = to_micros(Timestamp::now());
        crate::members::store::insert_many(tx.conn(), &tenant, &rows, at)
            .await
            .expect("members");
        let product = crate::orders::products::insert_plain(
            tx.conn(),
            &tenant,
            "NAIVE-1",
            "Soy milk",
            1200,
            at,
        )
        .await
        .expect("product")
        .to_string();
        tx.commit().await.expect("commit");
        let through_sqlx = sale(&db, &tenant, &product).await;
        let direct = sale(&db, &tenant, &product).await;
        let sqlx_side = outcomes(Naive::Sqlx, &db, &tenant, &through_sqlx, &members).await;
        let direct_side = outcomes(Naive::Direct, &db, &tenant, &direct, &members).await;
        let expected: Vec<String> = [
            "201",
            "limit_reached",
            "sold_out",
            "not_found",
            "201",
            "sold_out",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(sqlx_side, (expected, 3, 3, 2));
        assert_eq!(direct_side, sqlx_side);
    }
}
