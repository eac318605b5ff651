//! Run with: `cargo test -p example-cluster-in-tests` (the tests are the point),
//! or `cargo run -p example-cluster-in-tests` to watch the same scenario.
//!
//! A real cluster inside one process — three managers in a Raft group, each
//! serving gRPC on a loopback port, and two workers connected over gRPC — from
//! [`archon::testkit::TestCluster`]. The app of `lib.rs` submits orders through a
//! gRPC client, the leading manager is killed, and every order is still charged
//! exactly once.

use archon::testkit::TestCluster;
use example_cluster_in_tests::{Order, charge, receipts, submit_orders};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cluster = TestCluster::builder().managers(3).workers(2).function("charge", charge).start().await?;
    println!("cluster up: managers at {}", cluster.addresses().join(", "));
    let client = cluster.client().await?;
    let orders: Vec<Order> = (1..=20).map(|id| Order { id, cents: u64::from(id) * 100 }).collect();
    let runs = submit_orders(&client, &orders).await?;
    println!("submitted {} orders", runs.len());
    let killed = cluster.kill_leader().await?;
    println!("killed the leader (manager {}); manager {} leads now", killed + 1, cluster.leader().await? + 1);
    let charged = receipts(&client, &runs).await?;
    let total: u64 = charged.iter().map(|r| r.charged).sum();
    println!("charged {} orders, {} cents in all", charged.len(), total);
    cluster.shutdown().await?;
    Ok(())
}
