//! Gossip benchmark on the deterministic simulator (virtual time, so results do not depend
//! on the machine's load): propagation of a registration to all nodes, detection of a
//! crashed node by all, gossip bytes per node per second, false deaths at 10% loss.
//!
//! Run: `cargo bench -p directory --bench gossip_sim` (optionally `-- 10,50` to choose
//! cluster sizes). Each size runs twice: with our defaults and with a memberlist/Serf-like
//! LAN profile (probe 1 s, suspicion 4·log10(N) s, gossip 200 ms) as the same-run baseline.

use std::time::Duration;

use directory::gossip::GossipConfig;
use directory::gossip::proto::sim::{Sim, SimConfig};
use directory::gossip::{GossipEvent, NodeIdentity};
use hdrhistogram::Histogram;

const HOUR: Duration = Duration::from_secs(3600);

fn serf_like(n: usize) -> GossipConfig {
    let mut c = GossipConfig::lan();
    c.probe_period = Duration::from_secs(1);
    c.probe_timeout = Duration::from_millis(500);
    c.suspicion_timeout = Duration::from_secs_f64(4.0 * (n as f64).log10().max(1.0));
    c.gossip_interval = Duration::from_millis(200);
    c
}

struct Report {
    propagation: Histogram<u64>,
    detection: Histogram<u64>,
    bytes_per_node_s: f64,
    false_deaths: usize,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn run(
    n: usize,
    gossip: GossipConfig,
    seed: u64,
    loss: f64,
    writes: usize,
    crashes: usize,
) -> Report {
    let mut cfg = SimConfig::new(n, seed);
    cfg.gossip = gossip;
    cfg.loss = loss;
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(300),
        Duration::from_secs(1),
        Sim::membership_converged,
    );
    assert!(formed, "n={n} seed={seed}: membership did not converge");
    sim.run_for(Duration::from_secs(5));
    let mut propagation = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
    let mut detection = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
    let bytes_before: u64 = sim.bytes_sent().iter().sum();
    let t0 = sim.elapsed();
    for w in 0..writes {
        let node = (w * 13) % n;
        let written_at = sim.elapsed();
        let (key, version) = sim.register(node, "bench", &format!("i-{w}"), HOUR);
        let ok = sim.run_until(Duration::from_secs(30), Duration::from_millis(1), |s| {
            s.everyone_has(&key, version)
        });
        assert!(ok, "n={n}: write {w} did not propagate");
        propagation.record(ms(sim.elapsed() - written_at)).ok();
        sim.run_for(Duration::from_millis(200));
    }
    let window = sim.elapsed() - t0;
    let bytes: u64 = sim.bytes_sent().iter().sum::<u64>() - bytes_before;
    let bytes_per_node_s = bytes as f64 / n as f64 / window.as_secs_f64();
    let mut crashed: Vec<NodeIdentity> = Vec::new();
    for c in 0..crashes {
        let victim = 1 + (c * 7) % (n - 1);
        let Some(old) = sim.identity(victim) else {
            continue;
        };
        crashed.push(old.clone());
        let log_start = sim.log().len();
        sim.crash(victim);
        let crash_at = sim.elapsed();
        let all = |s: &Sim| {
            let seen: std::collections::HashSet<usize> = s.log()[log_start..]
                .iter()
                .filter(|e| e.event == GossipEvent::MemberDown(old.clone()))
                .map(|e| e.node)
                .collect();
            s.running().iter().all(|i| seen.contains(i))
        };
        let ok = sim.run_until(Duration::from_secs(120), Duration::from_millis(10), all);
        assert!(ok, "n={n}: crash of {victim} not detected");
        detection.record(ms(sim.elapsed() - crash_at)).ok();
        sim.restart(victim);
        sim.run_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            Sim::membership_converged,
        );
    }
    let false_deaths = sim
        .log()
        .iter()
        .filter(|e| matches!(&e.event, GossipEvent::MemberDown(id) if !crashed.contains(id)))
        .count();
    Report {
        propagation,
        detection,
        bytes_per_node_s,
        false_deaths,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 50, 200, 1000]);
    println!(
        "| nodes | profile | propagation p50 / p99 (ms) | detection p50 / p99 (ms) | bytes/node/s | false deaths |"
    );
    println!("|---|---|---|---|---|---|");
    for &n in &sizes {
        let (writes, crashes) = if n >= 1000 {
            (20, 5)
        } else if n >= 200 {
            (40, 10)
        } else {
            (100, 30)
        };
        let mut profiles = vec![("ours (defaults)", GossipConfig::lan())];
        // The Serf-like profile does not form a 1,000-node cluster within 300 simulated
        // seconds (1 s probes, 200 ms gossip), so it is the baseline up to 200 nodes.
        if n <= 200 {
            profiles.push(("serf-like", serf_like(n)));
        }
        for (name, gossip) in profiles {
            eprintln!("running {n} nodes, {name}...");
            let r = run(n, gossip, 42, 0.0, writes, crashes);
            println!(
                "| {n} | {name} | {} / {} | {} / {} | {:.0} | {} |",
                r.propagation.value_at_quantile(0.5),
                r.propagation.value_at_quantile(0.99),
                r.detection.value_at_quantile(0.5),
                r.detection.value_at_quantile(0.99),
                r.bytes_per_node_s,
                r.false_deaths,
            );
        }
    }
    eprintln!("running 50 nodes at 10% loss...");
    let lossy = run(50, GossipConfig::lan(), 7, 0.10, 50, 10);
    println!(
        "\n50 nodes, 10% loss, defaults: propagation p50/p99 {} / {} ms, detection p50/p99 {} / {} ms, {:.0} bytes/node/s, false deaths {}",
        lossy.propagation.value_at_quantile(0.5),
        lossy.propagation.value_at_quantile(0.99),
        lossy.detection.value_at_quantile(0.5),
        lossy.detection.value_at_quantile(0.99),
        lossy.bytes_per_node_s,
        lossy.false_deaths,
    );
}
