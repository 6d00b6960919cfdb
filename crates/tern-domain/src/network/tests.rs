//! Scenario tests on a virtual clock (a simulated engine sending 500 msg/s over two
//! carriers) and property tests of the machine and the ranking.

#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------
// A simulated engine
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Accepts submissions, never sends a receipt.
    Silent,
    /// Refuses every submission.
    Refuse,
    /// No bind: the engine skips the carrier without submitting.
    NoBind,
    /// This fraction of messages comes back undelivered.
    Undelivered(f64),
}

/// Undelivered rate of a healthy path (bad numbers and the like).
const BASE_UNDELIVERED: f64 = 0.02;

struct Flight {
    key: PathKey,
    sent_ms: u64,
    deadline_ms: u64,
    /// `None`: the receipt never comes.
    delivered: Option<bool>,
    overdue: bool,
}

struct Route {
    prefix: &'static str,
    per_min: u64,
    candidates: Vec<Candidate>,
}

type FaultFn = Box<dyn Fn(&str, &str, u64) -> Fault>;

struct Sim {
    net: Network,
    now: u64,
    next_id: u64,
    rng: u64,
    routes: Vec<Route>,
    fault: FaultFn,
    receipts: BinaryHeap<Reverse<(u64, u64)>>,
    flights: BTreeMap<u64, Flight>,
    log: Vec<Transition>,
    /// (carrier, prefix, second) → messages submitted.
    sent: BTreeMap<(String, String, u64), u64>,
    /// Messages no carrier accepted.
    lost: u64,
}

fn two_carriers() -> Vec<Candidate> {
    vec![Candidate::new("a", 3_000), Candidate::new("b", 4_000)]
}

impl Sim {
    fn new(routes: Vec<Route>, fault: FaultFn) -> Sim {
        Sim {
            net: Network::default(),
            now: 0,
            next_id: 0,
            rng: 42,
            routes,
            fault,
            receipts: BinaryHeap::new(),
            flights: BTreeMap::new(),
            log: Vec::new(),
            sent: BTreeMap::new(),
            lost: 0,
        }
    }

    fn rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.rand() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn observe(&mut self, key: &PathKey, signal: Signal) {
        let t = self.net.observe(key, signal, self.now);
        self.log.extend(t);
    }

    /// Runs the engine 1 ms at a time: receipts, sends, a tick every 100 ms and the
    /// overdue sweep every 500 ms.
    fn run_until(&mut self, end_ms: u64) {
        while self.now < end_ms {
            let t = self.now;
            while let Some(Reverse((due, id))) = self.receipts.peek().copied() {
                if due > t {
                    break;
                }
                self.receipts.pop();
                if let Some(f) = self.flights.remove(&id)
                    && let Some(delivered) = f.delivered
                {
                    let signal = Signal::Receipt {
                        delivered,
                        latency_ms: t - f.sent_ms,
                        late: f.overdue,
                    };
                    self.observe(&f.key, signal);
                }
            }
            for r in 0..self.routes.len() {
                let per_min = self.routes[r].per_min;
                let n = (t + 1) * per_min / 60_000 - t * per_min / 60_000;
                for _ in 0..n {
                    self.send(r);
                }
            }
            if t.is_multiple_of(100) {
                let tr = self.net.tick(t);
                self.log.extend(tr);
            }
            if t.is_multiple_of(500) {
                self.sweep();
            }
            self.now += 1;
        }
    }

    fn send(&mut self, r: usize) {
        let id = self.next_id;
        self.next_id += 1;
        let prefix = self.routes[r].prefix;
        let order = self
            .net
            .rank(&self.routes[r].candidates, prefix, id, self.now);
        for carrier in order {
            let key = PathKey::new(&carrier, prefix);
            let fault = (self.fault)(&carrier, prefix, self.now);
            match fault {
                Fault::NoBind => continue,
                Fault::Refuse => {
                    self.observe(&key, Signal::SubmitRefused);
                    continue;
                }
                Fault::None | Fault::Silent | Fault::Undelivered(_) => {}
            }
            self.observe(&key, Signal::SubmitOk { latency_ms: 15 });
            *self
                .sent
                .entry((carrier, prefix.to_owned(), self.now / 1000))
                .or_default() += 1;
            let delivered = match fault {
                Fault::Silent => None,
                Fault::Undelivered(p) => Some(self.unit() >= p),
                _ => Some(self.unit() >= BASE_UNDELIVERED),
            };
            if delivered.is_some() {
                let due = self.now + 150 + self.rand() % 100;
                self.receipts.push(Reverse((due, id)));
            }
            let deadline_ms = self.now + self.net.receipt_deadline_ms(&key);
            let flight = Flight {
                key,
                sent_ms: self.now,
                deadline_ms,
                delivered,
                overdue: false,
            };
            self.flights.insert(id, flight);
            return;
        }
        self.lost += 1;
    }

    fn sweep(&mut self) {
        let now = self.now;
        let due: Vec<(u64, PathKey)> = self
            .flights
            .iter()
            .filter(|(_, f)| !f.overdue && f.deadline_ms <= now)
            .map(|(id, f)| (*id, f.key.clone()))
            .collect();
        for (id, key) in due {
            if let Some(f) = self.flights.get_mut(&id) {
                f.overdue = true;
            }
            self.observe(&key, Signal::ReceiptOverdue);
        }
        // A receipt that will never come is forgotten once reported.
        self.flights
            .retain(|_, f| !(f.overdue && f.delivered.is_none()));
    }

    fn path_log(&self, carrier: &str, prefix: &str) -> Vec<&Transition> {
        self.log
            .iter()
            .filter(|t| t.key.carrier == carrier && t.key.prefix == prefix)
            .collect()
    }

    fn first(&self, carrier: &str, prefix: &str, after: u64, to: Health) -> Option<&Transition> {
        self.path_log(carrier, prefix)
            .into_iter()
            .find(|t| t.at_ms >= after && t.to == to)
    }

    /// Fraction of seeds for which `carrier` ranks first on route `r` now.
    fn first_share(&self, r: usize, carrier: &str) -> f64 {
        let route = &self.routes[r];
        let n = (0..2000u64)
            .filter(|s| self.net.rank(&route.candidates, route.prefix, *s, self.now)[0] == carrier)
            .count();
        n as f64 / 2000.0
    }

    fn ranks_last_always(&self, r: usize, carrier: &str) -> bool {
        let route = &self.routes[r];
        (0..2000u64).all(|s| {
            self.net
                .rank(&route.candidates, route.prefix, s, self.now)
                .last()
                .map(String::as_str)
                == Some(carrier)
        })
    }

    /// Messages submitted to `carrier` on `prefix` during seconds `[from, to)`.
    fn sent_in(&self, carrier: &str, prefix: &str, from_s: u64, to_s: u64) -> u64 {
        (from_s..to_s)
            .map(|s| {
                self.sent
                    .get(&(carrier.to_owned(), prefix.to_owned(), s))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }
}

fn one_route(per_min: u64) -> Vec<Route> {
    vec![Route {
        prefix: "+44",
        per_min,
        candidates: two_carriers(),
    }]
}

const FAULT_AT: u64 = 30_000;
const RATE_500: u64 = 30_000; // per minute

fn print_log(sim: &Sim, carrier: &str, prefix: &str) {
    for t in sim.path_log(carrier, prefix) {
        println!(
            "    t={:>7} ms  {:<8} → {:<8} share {:>4.0} %  {}",
            t.at_ms,
            t.from,
            t.to,
            t.share * 100.0,
            t.reason
        );
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

#[test]
fn healthy_traffic_raises_no_alarm_and_goes_to_the_cheapest() {
    let mut sim = Sim::new(one_route(RATE_500), Box::new(|_, _, _| Fault::None));
    sim.run_until(60_000);
    assert!(sim.log.is_empty(), "{:#?}", sim.log);
    assert_eq!(sim.sent_in("b", "+44", 0, 60), 0);
    assert_eq!(sim.sent_in("a", "+44", 0, 60), 30_000);
    let view = &sim.net.snapshot()[0];
    assert_eq!(view.health, Health::Healthy);
    assert!(view.success.mean > 0.95, "{view:?}");
    assert_eq!(view.receipt_deadline_ms, 2_000);
}

#[test]
fn scenario_a_silent_failure_is_moved_off_within_10s() {
    let fault: FaultFn = Box::new(|c, _, t| {
        if c == "a" && t >= FAULT_AT {
            Fault::Silent
        } else {
            Fault::None
        }
    });
    let mut sim = Sim::new(one_route(RATE_500), fault);
    sim.run_until(FAULT_AT);
    assert!(sim.log.is_empty());
    sim.run_until(FAULT_AT + 10_000);
    let left = sim.first("a", "+44", FAULT_AT, Health::Down).unwrap();
    let detect = left.at_ms - FAULT_AT;
    println!("(a) silent failure at 500 msg/s: a/+44 Down after {detect} ms");
    print_log(&sim, "a", "+44");
    assert_eq!(left.from, Health::Healthy);
    assert!(detect <= 10_000, "{detect}");
    assert!(sim.ranks_last_always(0, "a"));
    let last = sim.now / 1000;
    assert_eq!(sim.sent_in("a", "+44", last - 3, last), 0);
    assert_eq!(sim.lost, 0);
}

#[test]
fn scenario_b_submit_refusals_are_moved_off_within_1s() {
    let fault: FaultFn = Box::new(|c, _, t| {
        if c == "a" && t >= FAULT_AT {
            Fault::Refuse
        } else {
            Fault::None
        }
    });
    let mut sim = Sim::new(one_route(RATE_500), fault);
    sim.run_until(FAULT_AT + 1_000);
    let down = sim.first("a", "+44", FAULT_AT, Health::Down).unwrap();
    let detect = down.at_ms - FAULT_AT;
    println!("(b) submit refusals at 500 msg/s: a/+44 Down after {detect} ms");
    print_log(&sim, "a", "+44");
    assert!(detect <= 1_000, "{detect}");
    assert!(sim.ranks_last_always(0, "a"));
    // Every refused message was taken by b: nothing lost.
    assert_eq!(sim.lost, 0);
}

#[test]
fn scenario_b_link_down_is_immediate_and_blocks_probing_until_link_up() {
    let fault: FaultFn = Box::new(|c, _, t| {
        if c == "a" && (FAULT_AT..FAULT_AT + 30_000).contains(&t) {
            Fault::NoBind
        } else {
            Fault::None
        }
    });
    let mut sim = Sim::new(one_route(RATE_500), fault);
    sim.run_until(FAULT_AT);
    sim.observe(&PathKey::new("a", "+44"), Signal::LinkDown);
    sim.run_until(FAULT_AT + 1_000);
    let down = sim.first("a", "+44", FAULT_AT, Health::Down).unwrap();
    let detect = down.at_ms - FAULT_AT;
    println!("(b) link down at 500 msg/s: a/+44 Down after {detect} ms");
    assert_eq!(detect, 0);
    assert!(sim.ranks_last_always(0, "a"));
    // Longer than the dwell, but the link is still down: no probing.
    sim.run_until(FAULT_AT + 30_000);
    assert_eq!(sim.net.health(&PathKey::new("a", "+44")), Health::Down);
    assert!(sim.first("a", "+44", FAULT_AT, Health::Probing).is_none());
    sim.observe(&PathKey::new("a", "+44"), Signal::LinkUp);
    let probing = sim.first("a", "+44", FAULT_AT, Health::Probing).unwrap();
    assert_eq!(probing.at_ms, FAULT_AT + 30_000);
    print_log(&sim, "a", "+44");
    assert_eq!(sim.lost, 0);
}

#[test]
fn scenario_c_partial_failure_on_one_prefix_is_moved_off_within_30s() {
    let fault: FaultFn = Box::new(|c, p, t| {
        if c == "a" && p == "+44" && t >= FAULT_AT {
            Fault::Undelivered(0.6)
        } else {
            Fault::None
        }
    });
    let routes = vec![
        Route {
            prefix: "+44",
            per_min: 24_000,
            candidates: two_carriers(),
        },
        Route {
            prefix: "+33",
            per_min: 6_000,
            candidates: two_carriers(),
        },
    ];
    let mut sim = Sim::new(routes, fault);
    sim.run_until(FAULT_AT + 30_000);
    let left = sim
        .path_log("a", "+44")
        .into_iter()
        .find(|t| t.from == Health::Healthy)
        .cloned()
        .unwrap();
    let detect = left.at_ms - FAULT_AT;
    let down = sim.first("a", "+44", FAULT_AT, Health::Down).cloned();
    println!(
        "(c) 60 % undelivered on a/+44 (400 msg/s): left Healthy ({}) after {detect} ms, Down after {} ms",
        left.to,
        down.as_ref()
            .map_or("—".to_owned(), |d| (d.at_ms - FAULT_AT).to_string())
    );
    print_log(&sim, "a", "+44");
    assert!(detect <= 30_000, "{detect}");
    assert!(down.is_some_and(|d| d.at_ms - FAULT_AT <= 30_000));
    assert!(sim.ranks_last_always(0, "a"));
    // The same carrier's other prefix is untouched and keeps its traffic.
    assert!(sim.path_log("a", "+33").is_empty());
    assert_eq!(sim.net.health(&PathKey::new("a", "+33")), Health::Healthy);
    assert!(sim.first_share(1, "a") > 0.99);
    let end = sim.now / 1000;
    assert_eq!(sim.sent_in("b", "+33", 0, end), 0);
}

#[test]
fn a_short_blip_degrades_and_recovers_without_going_down() {
    const BLIP_END: u64 = FAULT_AT + 400;
    let fault: FaultFn = Box::new(|c, _, t| {
        if c == "a" && (FAULT_AT..BLIP_END).contains(&t) {
            Fault::Undelivered(0.6)
        } else {
            Fault::None
        }
    });
    let mut sim = Sim::new(one_route(RATE_500), fault);
    sim.run_until(FAULT_AT + 60_000);
    println!("(blip) 60 % undelivered on a/+44 for 400 ms:");
    print_log(&sim, "a", "+44");
    let log = sim.path_log("a", "+44");
    let tos: Vec<Health> = log.iter().map(|t| t.to).collect();
    assert_eq!(tos, [Health::Degraded, Health::Healthy]);
    assert!(log[1].at_ms - log[0].at_ms >= 5_000);
    assert_eq!(sim.sent_in("b", "+44", 85, 90), 0);
}

#[test]
fn scenario_d_recovery_probes_and_ramps_without_flapping() {
    const FAULT_END: u64 = FAULT_AT + 20_000;
    let fault: FaultFn = Box::new(|c, _, t| {
        if c == "a" && (FAULT_AT..FAULT_END).contains(&t) {
            Fault::Silent
        } else {
            Fault::None
        }
    });
    let mut sim = Sim::new(one_route(RATE_500), fault);
    sim.run_until(180_000);
    println!("(d) silent failure from 30 s to 50 s, recovery:");
    print_log(&sim, "a", "+44");
    let log: Vec<Transition> = sim.path_log("a", "+44").into_iter().cloned().collect();
    for t in &log {
        assert!(is_allowed(t.from, t.to), "{t:?}");
    }
    for w in log.windows(2) {
        assert_eq!(w[0].to, w[1].from);
    }
    // The last Down → Probing starts a clean ramp that ends Healthy after the fault.
    let start = log
        .iter()
        .rposition(|t| t.from == Health::Down && t.to == Health::Probing)
        .unwrap();
    let ramp: Vec<f64> = log[start..].iter().map(|t| t.share).collect();
    assert_eq!(ramp, vec![0.02, 0.10, 0.50, 1.0]);
    let healthy = log.last().unwrap();
    assert_eq!(healthy.to, Health::Healthy);
    assert!(log[start].at_ms >= FAULT_END);
    // Each stage lasted its minimum at least.
    for w in log[start..].windows(2) {
        assert!(w[1].at_ms - w[0].at_ms >= 5_000);
    }
    // Traffic actually followed the stages.
    for w in log[start..].windows(2) {
        let (from_s, to_s) = (w[0].at_ms / 1000 + 1, w[1].at_ms / 1000);
        let a = sim.sent_in("a", "+44", from_s, to_s) as f64;
        let total = a + sim.sent_in("b", "+44", from_s, to_s) as f64;
        println!(
            "    stage {:>3.0} %: a took {:.1} % of traffic",
            w[0].share * 100.0,
            a / total * 100.0
        );
        assert!((a / total - w[0].share).abs() < 0.05);
    }
    println!(
        "    recovered (Healthy) {} ms after the fault ended",
        healthy.at_ms - FAULT_END
    );
    // No flapping: nothing happened after recovery, and all traffic is back on a.
    assert!(healthy.at_ms < 180_000 - 60_000);
    assert_eq!(sim.sent_in("b", "+44", 175, 180), 0);
    assert_eq!(sim.lost, 0);
}

#[test]
fn scenario_e_low_traffic_with_a_failure_does_not_flip() {
    const MIN: u64 = 60_000;
    let fault: FaultFn = Box::new(|c, _, t| {
        if c != "a" {
            Fault::None
        } else if (30 * MIN..31 * MIN).contains(&t) {
            Fault::Undelivered(1.0)
        } else if (45 * MIN..46 * MIN).contains(&t) || t >= 90 * MIN {
            Fault::Silent
        } else {
            Fault::None
        }
    });
    let mut sim = Sim::new(one_route(1), fault);
    sim.run_until(90 * MIN);
    let a = PathKey::new("a", "+44");
    println!(
        "(e) 1 msg/min, one undelivered and one overdue receipt: {} transitions, a/+44 {}",
        sim.log.len(),
        sim.net.health(&a)
    );
    assert!(sim.log.is_empty(), "{:#?}", sim.log);
    // Nor does it move the traffic: a is still first (it is the cheaper).
    assert!(sim.first_share(0, "a") > 0.99);
    // A lasting silent failure still moves the traffic, once a few receipts in a row are
    // missing: the ranking's success bucket (upper bound) drops before the state machine
    // is confident enough to change state.
    let mut moved = None;
    for m in 90..120 {
        sim.run_until(m * MIN + 30_000);
        if moved.is_none() && sim.first_share(0, "a") < 0.05 {
            moved = Some(m - 90);
        }
    }
    let moved = moved.unwrap();
    println!(
        "    lasting silent failure at 1 msg/min: traffic moved to b within {moved} min; a/+44 {}",
        sim.net.health(&a)
    );
    print_log(&sim, "a", "+44");
    assert!(moved <= 10, "{moved}");
}

// ---------------------------------------------------------------------------------------
// Unit tests of the network
// ---------------------------------------------------------------------------------------

fn key(c: &str) -> PathKey {
    PathKey::new(c, "+44")
}

#[test]
fn with_no_signals_everything_is_healthy_and_ranked_by_cost_then_order() {
    let net = Network::default();
    let cands = vec![
        Candidate::new("x", 5),
        Candidate::new("y", 3),
        Candidate::new("z", 5),
        Candidate::new("w", 3),
    ];
    assert_eq!(net.rank(&cands, "+44", 7, 0), ["y", "w", "x", "z"]);
    assert_eq!(net.health(&key("x")), Health::Healthy);
    assert!(net.snapshot().is_empty());
}

#[test]
fn max_share_caps_how_often_a_carrier_is_first() {
    let net = Network::default();
    let mut cheap = Candidate::new("cheap", 1);
    cheap.max_share = Some(0.3);
    let cands = vec![cheap, Candidate::new("dear", 9)];
    let firsts = (0..10_000u64)
        .filter(|s| net.rank(&cands, "+44", *s, 0)[0] == "cheap")
        .count();
    assert!((2_800..=3_200).contains(&firsts), "{firsts}");
}

#[test]
fn a_probing_path_gets_its_share_and_a_degraded_one_keeps_some() {
    let mut net = Network::default();
    net.observe(&key("a"), Signal::LinkDown, 0);
    net.observe(&key("a"), Signal::LinkUp, 5_000);
    assert_eq!(net.health(&key("a")), Health::Down);
    let t = net.tick(10_000);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].from, t[0].to), (Health::Down, Health::Probing));
    let cands = two_carriers();
    let firsts = (0..10_000u64)
        .filter(|s| net.rank(&cands, "+44", *s, 10_000)[0] == "a")
        .count();
    assert!((150..=250).contains(&firsts), "{firsts}");
    assert!((net.share(&key("a")) - 0.02).abs() < 1e-12);
}

#[test]
fn a_late_receipt_is_corrected_not_double_counted() {
    let mut net = Network::default();
    let k = key("a");
    for i in 0..50 {
        net.observe(&k, Signal::ReceiptOverdue, i);
    }
    let before = net.snapshot()[0].success;
    for i in 0..50 {
        let late = Signal::Receipt {
            delivered: true,
            latency_ms: 2_500,
            late: true,
        };
        net.observe(&k, late, 50 + i);
    }
    let after = net.snapshot()[0].success;
    assert!(before.mean < 0.1, "{before:?}");
    assert!(after.mean > 0.95, "{after:?}");
    assert!(after.censored < 1e-9);
    assert!((after.evidence - 50.0).abs() < 0.1, "{after:?}");
}

#[test]
fn recent_transitions_are_bounded() {
    let cfg = HealthConfig {
        recent_transitions: 3,
        down_dwell_ms: 10,
        down_dwell_max_ms: 10,
        ..HealthConfig::default()
    };
    let mut net = Network::new(cfg);
    let mut total = 0;
    for i in 0..20u64 {
        total += net.observe(&key("a"), Signal::LinkDown, i * 100).len();
        total += net.observe(&key("a"), Signal::LinkUp, i * 100 + 50).len();
    }
    assert_eq!(total, 40);
    let view = &net.snapshot()[0];
    assert_eq!(view.recent_transitions.len(), 3);
    assert_eq!(view.recent_transitions[2].at_ms, 19 * 100 + 50);
}

#[test]
fn the_dwell_backs_off_after_failed_probes() {
    let mut net = Network::default();
    let k = key("a");
    net.observe(&k, Signal::LinkDown, 0);
    net.observe(&k, Signal::LinkUp, 1);
    let mut now = 0;
    let mut dwells = Vec::new();
    for _ in 0..4 {
        // wait for probing, then fail the probe with submit errors
        while net.health(&k) == Health::Down {
            now += 100;
            net.tick(now);
        }
        dwells.push(net.snapshot()[0].recent_transitions.last().unwrap().at_ms);
        for _ in 0..10 {
            now += 50;
            net.observe(&k, Signal::SubmitRefused, now);
        }
        assert_eq!(net.health(&k), Health::Down);
    }
    let gaps: Vec<u64> = dwells.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "{gaps:?}");
}

#[test]
fn views_serialize() {
    let mut net = Network::default();
    net.observe(&key("a"), Signal::SubmitOk { latency_ms: 12 }, 0);
    net.observe(&key("a"), Signal::LinkDown, 1);
    let json = serde_json::to_value(net.snapshot()).unwrap();
    assert_eq!(json[0]["health"], "down");
    assert_eq!(json[0]["key"]["carrier"], "a");
    assert_eq!(json[0]["recent_transitions"][0]["to"], "down");
    let s = serde_json::to_value(Signal::Receipt {
        delivered: true,
        latency_ms: 1,
        late: false,
    })
    .unwrap();
    assert_eq!(s["kind"], "receipt");
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// A twitchy configuration that reaches every state in short random runs.
fn twitchy() -> HealthConfig {
    HealthConfig {
        min_evidence: 5.0,
        submit_min_evidence: 5.0,
        hard_streak: 2,
        hard_min_ms: 0,
        silent_streak: 2,
        silent_min_ms: 100,
        degraded_min_dwell_ms: 200,
        down_dwell_ms: 300,
        down_dwell_max_ms: 2_000,
        probe_stage_min_ms: 100,
        probe_stage_min_outcomes: 2,
        ..HealthConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Signal(usize, Signal),
    Tick,
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        3 => (0u64..500).prop_map(|latency_ms| Signal::SubmitOk { latency_ms }),
        1 => Just(Signal::SubmitRetryable),
        2 => Just(Signal::SubmitRefused),
        6 => (any::<bool>(), 0u64..5_000, prop::bool::weighted(0.1)).prop_map(
            |(delivered, latency_ms, late)| Signal::Receipt { delivered, latency_ms, late }
        ),
        3 => Just(Signal::ReceiptOverdue),
        1 => any::<bool>().prop_map(|confirmed| Signal::Feedback { confirmed }),
        1 => Just(Signal::LinkDown),
        1 => Just(Signal::LinkUp),
    ]
}

fn steps() -> impl Strategy<Value = Vec<(u64, Step)>> {
    prop::collection::vec(
        (
            0u64..400,
            prop_oneof![
                8 => (0usize..3, signal()).prop_map(|(k, s)| Step::Signal(k, s)),
                1 => Just(Step::Tick),
            ],
        ),
        0..400,
    )
}

const CARRIERS: [&str; 3] = ["a", "b", "c"];

fn replay(cfg: HealthConfig, steps: &[(u64, Step)]) -> (Network, Vec<Transition>, u64) {
    let mut net = Network::new(cfg);
    let mut log = Vec::new();
    let mut now = 0;
    for (dt, step) in steps {
        now += dt;
        match step {
            Step::Signal(k, s) => log.extend(net.observe(&key(CARRIERS[*k]), *s, now)),
            Step::Tick => log.extend(net.tick(now)),
        }
    }
    (net, log, now)
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            0usize..3,
            0u64..4,
            0u32..3,
            prop::option::weighted(0.2, 0.0f64..1.0),
        ),
        0..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(c, cost, weight, max_share)| Candidate {
                carrier: CARRIERS[c].to_owned(),
                weight,
                cost_micros: cost,
                max_share,
            })
            .collect()
    })
}

proptest! {
    /// Whatever the signals, the machine moves only along allowed edges (never
    /// Down → Healthy), each move starts where the previous one ended, and the same
    /// signals at the same times give the same transitions.
    #[test]
    fn the_machine_moves_only_along_allowed_edges(steps in steps(), twitchy_cfg in any::<bool>()) {
        let cfg = if twitchy_cfg { twitchy() } else { HealthConfig::default() };
        let (net, log, _) = replay(cfg.clone(), &steps);
        let mut state: BTreeMap<PathKey, Health> = BTreeMap::new();
        for t in &log {
            prop_assert!(is_allowed(t.from, t.to), "{:?}", t);
            prop_assert!(!(t.from == Health::Down && t.to == Health::Healthy));
            let prev = state.get(&t.key).copied().unwrap_or(Health::Healthy);
            prop_assert_eq!(prev, t.from);
            state.insert(t.key.clone(), t.to);
        }
        for v in net.snapshot() {
            prop_assert!(v.recent_transitions.len() <= cfg.recent_transitions);
            if !v.link_up {
                prop_assert_eq!(v.health, Health::Down);
            }
            prop_assert!(v.success.lower <= v.success.mean && v.success.mean <= v.success.upper);
            prop_assert!((0.0..=1.0).contains(&v.share));
        }
        let (_, again, _) = replay(cfg, &steps);
        prop_assert_eq!(log, again);
    }

    /// Ranking is a deterministic permutation of the candidates with Down paths last.
    #[test]
    fn ranking_is_a_deterministic_permutation(
        steps in steps(),
        cands in candidates(),
        seed in any::<u64>(),
    ) {
        let (net, _, now) = replay(twitchy(), &steps);
        let ranked = net.rank(&cands, "+44", seed, now);
        prop_assert_eq!(&ranked, &net.rank(&cands, "+44", seed, now));
        let mut got = ranked.clone();
        got.sort();
        let mut want: Vec<String> = cands.iter().map(|c| c.carrier.clone()).collect();
        want.sort();
        prop_assert_eq!(got, want);
        let down: Vec<bool> = ranked.iter().map(|c| net.health(&key(c)) == Health::Down).collect();
        prop_assert!(down.windows(2).all(|w| !w[0] || w[1]), "{:?} {:?}", ranked, down);
    }

    /// With no signals, candidates rank by cost, then weight, then listed order.
    #[test]
    fn without_signals_ranking_is_cost_weight_order(
        costs in prop::collection::vec((0u64..4, 0u32..3), 0..8),
        seed in any::<u64>(),
    ) {
        let cands: Vec<Candidate> = costs
            .iter()
            .enumerate()
            .map(|(i, (cost, weight))| Candidate {
                carrier: format!("c{i}"),
                weight: *weight,
                cost_micros: *cost,
                max_share: None,
            })
            .collect();
        let net = Network::default();
        let mut want: Vec<(u64, Reverse<u32>, usize)> = costs
            .iter()
            .enumerate()
            .map(|(i, (c, w))| (*c, Reverse(*w), i))
            .collect();
        want.sort();
        let want: Vec<String> = want.into_iter().map(|(_, _, i)| format!("c{i}")).collect();
        prop_assert_eq!(net.rank(&cands, "+44", seed, 0), want);
    }
}
