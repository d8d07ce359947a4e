//! The canary scenario's checks: per phase the canary share of each cell's tenants against the
//! weight, the proxy's group counters against the clients' counts and the tenants that changed
//! arm at a weight change; over the run the totals each check reads, and the check lines.

use super::admin::{CounterKey, GroupCounters};
use super::load::Tally;
use super::world::World;
use super::{ARMS, CANARY, CELLS, PER_CELL, RELOAD_TIMEOUT, SIGMAS, STABLE, STABLE_TARGETS};
use crate::common::verdict;

/// One measured phase: its weight and each tenant's arm.
pub struct PhaseArms {
    pub weight: u32,
    /// Per tenant: `Some(arm)` when answered by exactly one arm of its own cell.
    pub arm: Vec<Option<usize>>,
}

/// Totals over the run, for the checks.
#[derive(Default)]
pub struct Verdicts {
    pub requests: u64,
    pub errors: u64,
    pub leaks: u64,
    pub wrong_tenant: u64,
    pub sticky: u64,
    pub reverse: u64,
    /// (cell, phase) pairs whose canary share of tenants is outside the tolerance.
    pub share_failures: u64,
    pub shares_checked: u64,
    /// Worst |deviation| / tolerance of a cell's canary share of tenants, and where.
    pub worst_share: (f64, String),
    pub unpredicted: u64,
    pub counter_mismatches: u64,
    pub reloads_missed: u64,
}

impl Verdicts {
    pub fn add(&mut self, t: &Tally) {
        self.requests += t.requests;
        self.errors += t.errors();
        self.leaks += t.leaks;
        self.wrong_tenant += t.wrong_tenant;
    }
}

/// Per cell: the canary share of tenants against the weight (checked: within `SIGMAS`
/// standard deviations of a binomial share, n = the cell's tenants with one arm, p = the
/// weight), and the share of requests (shown: it adds the noise of which tenants the clients
/// happened to pick).
pub fn shares(w: &World, phase: usize, t: &Tally, arms: &PhaseArms, v: &mut Verdicts) {
    let weight = arms.weight;
    let p = f64::from(weight) / 100.0;
    for c in 0..CELLS {
        let all = w.tenants_of_cell(c).count();
        let seen = w.tenants_of_cell(c).filter(|&i| t.arms[i] != 0).count();
        let single = w
            .tenants_of_cell(c)
            .filter(|&i| arms.arm[i].is_some())
            .count();
        let on_canary = w
            .tenants_of_cell(c)
            .filter(|&i| arms.arm[i] == Some(CANARY))
            .count();
        let n = single.max(1) as f64;
        let share = on_canary as f64 / n;
        let dev = (share - p) * 100.0;
        let tol = SIGMAS * (p * (1.0 - p) / n).sqrt() * 100.0;
        // A weight of 0 or 100 has no spread: the share must then be exact.
        let ok = single > 0 && dev.abs() <= tol + 1e-9;
        v.shares_checked += 1;
        v.share_failures += u64::from(!ok);
        let ratio = if tol > 0.0 { dev.abs() / tol } else { 0.0 };
        if ratio >= v.worst_share.0 {
            v.worst_share = (
                ratio,
                format!(
                    "phase {phase} {}: {dev:+.2} pp of ±{tol:.2}",
                    w.cell_names[c]
                ),
            );
        }
        let (stable_req, canary_req) = (t.arm_requests(c, STABLE), t.arm_requests(c, CANARY));
        let req = stable_req + canary_req;
        let req_share = canary_req as f64 / req.max(1) as f64;
        let stable_split: Vec<String> = (0..STABLE_TARGETS)
            .map(|j| t.per_target[c * PER_CELL + j].to_string())
            .collect();
        println!(
            "  {}: tenants seen {seen}/{all}, on canary {on_canary} = {:.2}% (weight {weight}%: \
             {dev:+.2} pp, {SIGMAS:.0} sd = ±{tol:.2} pp) {}; requests {req}, to canary \
             {canary_req} = {:.2}% ({:+.2} pp); stable targets {}",
            w.cell_names[c],
            share * 100.0,
            verdict(ok),
            req_share * 100.0,
            (req_share - p) * 100.0,
            stable_split.join(" / "),
        );
    }
}

/// The proxy's `cellgate_group_requests_total` over the phase against the clients' answers
/// per cell and arm; returns the number of (cell, arm) pairs that differ.
pub fn cross_check(t: &Tally, before: &GroupCounters, after: &GroupCounters) -> u64 {
    let delta = |key: &CounterKey| {
        let b = before.get(key).copied().unwrap_or(0);
        after.get(key).copied().unwrap_or(0).saturating_sub(b)
    };
    let key = |c: usize, arm: usize| -> CounterKey {
        (
            World::cell_name(c),
            ARMS[arm].0.to_owned(),
            ARMS[arm].1.to_owned(),
            "2xx".to_owned(),
        )
    };
    let mut mismatches = 0;
    let mut parts = Vec::new();
    for c in 0..CELLS {
        let mut cell = Vec::new();
        for arm in [STABLE, CANARY] {
            let (proxy_n, client_n) = (delta(&key(c, arm)), t.arm_requests(c, arm));
            mismatches += u64::from(proxy_n != client_n);
            cell.push(format!("{} {proxy_n}/{client_n}", ARMS[arm].0));
        }
        parts.push(format!("{} {}", World::cell_name(c), cell.join(", ")));
    }
    // Any other series that moved: another status class, group or version. The clients'
    // non-200 answers, if any, already fail the error check; these are shown, not compared.
    let expected: Vec<CounterKey> = (0..CELLS)
        .flat_map(|c| [key(c, STABLE), key(c, CANARY)])
        .collect();
    let mut other = 0;
    for k in after.keys().filter(|k| !expected.contains(k)) {
        let d = delta(k);
        if d > 0 {
            other += d;
            println!(
                "    proxy counted {d} on {{cell={}, group={}, version={}, status_class={}}}",
                k.0, k.1, k.2, k.3
            );
        }
    }
    println!(
        "  proxy cellgate_group_requests_total over the phase / client answers (2xx): {}; \
         other series {other} -> {}",
        parts.join("; "),
        if mismatches == 0 {
            "equal"
        } else {
            "DIFFERENT"
        }
    );
    mismatches
}

/// Tenants whose arm changed since the previous phase (over those with one arm in both),
/// against the minimum (the change in the number on the canary) and what the weights
/// predict; returns the moves against the weight change (canary -> stable while the canary
/// grows, the other way while it shrinks, any move when it stays).
pub fn moves(w: &World, phase: usize, prev: &PhaseArms, now: &PhaseArms) -> u64 {
    let mut reverse_total = 0;
    let mut line = Vec::new();
    for c in 0..CELLS {
        let both: Vec<(usize, usize)> = w
            .tenants_of_cell(c)
            .filter_map(|i| Some((prev.arm[i]?, now.arm[i]?)))
            .collect();
        let count = |f: &dyn Fn(&(usize, usize)) -> bool| both.iter().filter(|x| f(x)).count();
        let up = count(&|&(x, y)| (x, y) == (STABLE, CANARY));
        let down = count(&|&(x, y)| (x, y) == (CANARY, STABLE));
        let minimum = count(&|&(_, y)| y == CANARY).abs_diff(count(&|&(x, _)| x == CANARY));
        let by_weight = f64::from(now.weight.abs_diff(prev.weight)) / 100.0 * both.len() as f64;
        let reverse = match now.weight.cmp(&prev.weight) {
            std::cmp::Ordering::Greater => down,
            std::cmp::Ordering::Less => up,
            std::cmp::Ordering::Equal => up + down,
        };
        reverse_total += reverse as u64;
        line.push(format!(
            "{} moved {} of {} (stable->canary {up}, canary->stable {down}; minimum {minimum}, \
             weights predict {by_weight:.1})",
            w.cell_names[c],
            up + down,
            both.len(),
        ));
    }
    println!(
        "  arm changes since phase {} ({} -> {}): {}",
        phase - 1,
        prev.weight,
        now.weight,
        line.join("; ")
    );
    reverse_total
}

/// Prints every check; true when all pass.
pub fn checks(v: &Verdicts) -> bool {
    let mut pass = true;
    let mut check = |what: String, ok: bool| {
        pass &= ok;
        println!("check {what} -> {}", verdict(ok));
    };
    if v.reloads_missed > 0 {
        check(
            format!(
                "every weight change shown by /admin/cells within {} s: {} missed",
                RELOAD_TIMEOUT.as_secs(),
                v.reloads_missed
            ),
            false,
        );
    }
    check(
        format!("no errors: {} of {} requests", v.errors, v.requests),
        v.errors == 0,
    );
    check(format!("no cross-cell leaks: {}", v.leaks), v.leaks == 0);
    check(
        format!(
            "every target got its tenant's x-tenant-id: {} wrong",
            v.wrong_tenant
        ),
        v.wrong_tenant == 0,
    );
    check(
        format!(
            "no stickiness violations (one arm per tenant per phase): {}",
            v.sticky
        ),
        v.sticky == 0,
    );
    check(
        format!(
            "no moves against the weight change (canary->stable while the canary grows): {}",
            v.reverse
        ),
        v.reverse == 0,
    );
    check(
        format!(
            "canary share of each cell's tenants within {SIGMAS:.0} sd of the weight \
             (binomial, n = the cell's tenants): {} of {} outside; worst {:.2} of the tolerance \
             ({})",
            v.share_failures, v.shares_checked, v.worst_share.0, v.worst_share.1
        ),
        v.share_failures == 0,
    );
    check(
        format!(
            "every tenant on the arm routing::canary::arm gives: {} differ",
            v.unpredicted
        ),
        v.unpredicted == 0,
    );
    check(
        format!(
            "cellgate_group_requests_total equals the client's counts: {} differences",
            v.counter_mismatches
        ),
        v.counter_mismatches == 0,
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    pass
}
