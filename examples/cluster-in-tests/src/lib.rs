//! The app under test: it sends each order to be charged as an Archon job (the
//! `charge` function, with retries) through any client of the [`Api`] — in
//! production a gRPC client of the managers, in tests one of
//! [`archon::testkit::TestCluster`] — and collects the receipts.

use std::time::Duration;

use archon::core::api::Api;
use archon::core::model::{RetryPolicy, RunId, RunState};
use serde::{Deserialize, Serialize};

/// An order to charge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Order {
    /// Its number.
    pub id: u32,
    /// How much, in cents.
    pub cents: u64,
}

/// What charging an order gives back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// The order.
    pub order: u32,
    /// What was charged, in cents.
    pub charged: u64,
}

/// The worker side: the function the app's jobs run.
pub async fn charge(order: Order) -> Result<Receipt, String> {
    if order.cents == 0 {
        return Err(format!("order {}: nothing to charge", order.id));
    }
    Ok(Receipt { order: order.id, charged: order.cents })
}

/// Submits one job per order (idempotent per order, retried on failure) and
/// returns their runs.
pub async fn submit_orders(api: &dyn Api, orders: &[Order]) -> anyhow::Result<Vec<RunId>> {
    let mut specs = Vec::new();
    for order in orders {
        let mut spec = archon::function_job("charge", order)?;
        spec.name = format!("charge order {}", order.id);
        spec.idempotency_key = Some(format!("order-{}", order.id));
        spec.retry = RetryPolicy {
            max_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        specs.push(spec);
    }
    let mut runs = Vec::new();
    for submitted in api.submit(specs).await? {
        let submitted = submitted?;
        runs.push(submitted.run.ok_or_else(|| anyhow::anyhow!("{}: a one-off job has a run", submitted.job))?);
    }
    Ok(runs)
}

/// Waits for each run and reads its receipt.
pub async fn receipts(api: &dyn Api, runs: &[RunId]) -> anyhow::Result<Vec<Receipt>> {
    let mut receipts = Vec::new();
    for &run in runs {
        let done = api.wait(run).await?;
        anyhow::ensure!(done.run.state == RunState::Succeeded, "{run} ended {}: {:?}", done.run.state, done.exit());
        receipts.push(serde_json::from_str(&done.stdout())?);
    }
    Ok(receipts)
}
