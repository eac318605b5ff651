#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The app's tests against a real cluster in this process: orders submitted
//! before the leader dies and orders submitted after are all charged, each once.

use std::collections::BTreeSet;

use archon::core::api::{Api, RunQuery};
use archon::core::model::RunState;
use archon::testkit::TestCluster;
use example_cluster_in_tests::{Order, charge, receipts, submit_orders};

fn orders(ids: std::ops::RangeInclusive<u32>) -> Vec<Order> {
    ids.map(|id| Order { id, cents: u64::from(id) * 100 }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_is_charged_once_when_the_leader_dies() {
    let mut cluster = TestCluster::builder().function("charge", charge).start().await.unwrap();
    let client = cluster.client().await.unwrap();
    let before = submit_orders(&client, &orders(1..=30)).await.unwrap();

    let killed = cluster.kill_leader().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    assert_ne!(leader, killed, "another manager leads");

    // The app keeps working through the same client, which finds the new leader.
    let after = submit_orders(&client, &orders(31..=40)).await.unwrap();
    let charged = receipts(&client, &[before, after].concat()).await.unwrap();
    let ids: BTreeSet<u32> = charged.iter().map(|r| r.order).collect();
    assert_eq!(ids, (1..=40).collect(), "every order has its receipt");

    // Each run succeeded with one successful attempt: charged once.
    let runs = client.list_runs(RunQuery { limit: Some(1000), ..RunQuery::default() }).await.unwrap();
    assert_eq!(runs.items.len(), 40, "one run per order (submits are idempotent per order)");
    for run in runs.items {
        let detail = client.get_run(run.id).await.unwrap();
        let successes =
            detail.attempts.iter().filter(|a| a.result.as_ref().is_some_and(|r| r.status.is_success())).count();
        assert_eq!((detail.run.state, successes), (RunState::Succeeded, 1), "{}", run.id);
    }
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_that_cannot_be_charged_fails_with_the_functions_message() {
    let cluster = TestCluster::builder().managers(1).workers(1).function("charge", charge).start().await.unwrap();
    let client = cluster.client().await.unwrap();
    let runs = submit_orders(&client, &[Order { id: 7, cents: 0 }]).await.unwrap();
    let failed = receipts(&client, &runs).await.unwrap_err().to_string();
    assert!(failed.contains("ended failed"), "{failed}");
    let detail = client.get_run(runs[0]).await.unwrap();
    let stderr = detail.attempts.last().unwrap().result.as_ref().unwrap().stderr.text();
    assert_eq!(stderr.trim(), "order 7: nothing to charge");
    assert_eq!(detail.attempts.len(), 4, "retried three times");
    cluster.shutdown().await.unwrap();
}
