//! The examples, run as shipped (their `run` functions, with smaller workloads).

#[path = "../examples/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;
#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
#[path = "../examples/workers.rs"]
#[allow(dead_code)]
mod workers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_survives_a_killed_stage_without_losing_messages() {
    let report = pipeline::run(pipeline::Options {
        messages: 3_000,
        in_flight: 128,
        kill_at: 0.4,
    })
    .await
    .expect("pipeline runs");
    assert!(report.c_restarted, "C was killed and restarted: {report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.acked, 3_000, "{report:?}");
    assert_eq!(
        report.delivered, 3_000,
        "every message reached D: {report:?}"
    );
    assert_eq!(report.latency.len(), 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_load_and_a_leaving_worker_loses_nothing() {
    let report = workers::run(workers::Options {
        jobs: 3_000,
        workers: 3,
        in_flight: 128,
    })
    .await
    .expect("workers run");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.acked, 3_000, "{report:?}");
    assert_eq!(
        report.doubled, 0,
        "a graceful leave hands nothing twice: {report:?}"
    );
    assert_eq!(report.per_worker.iter().sum::<u64>(), 3_000, "{report:?}");
    assert!(
        report.per_worker.iter().all(|&n| n > 0),
        "every worker got work: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_forms_a_cluster_and_peers_talk_both_ways() {
    let report = quickstart::run(2).await.expect("quickstart runs");
    assert_eq!(report.alive_per_node, vec![3, 3, 3], "{report:?}");
    assert_eq!(report.replies, (2, 2), "{report:?}");
    assert_eq!(
        report.seen_on_node2,
        (1, 1),
        "node 2 got both registrations by gossip: {report:?}"
    );
}
