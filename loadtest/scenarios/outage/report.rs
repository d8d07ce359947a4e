//! The outage scenario's report: the answers sorted into the phases before, during and after
//! the outage, the placement gauges at the edges of the outage, how soon the move was followed,
//! and the checks.

use std::time::Duration;

use super::load::{Gauges, Seen};
use super::{AGE_SHARE, Args, FOLLOW_BOUND, MOVED, MOVED_TO, SCRAPE_EVERY, cell_of};
use crate::common::{ms, pct, verdict};
use crate::process::Cpu;

/// What the run saw: every answer, the gauges, and when the registry broke and came back.
pub struct Timeline {
    /// Every answer, sorted by when it was sent.
    pub seen: Vec<Seen>,
    pub gauges: Vec<Gauges>,
    pub broke_at: Duration,
    pub restored_at: Duration,
    pub took: Duration,
    pub cpu: Cpu,
}

/// What a phase saw.
#[derive(Default)]
struct PhaseStats {
    requests: u64,
    errors: u64,
    /// Answers from a cell other than the tenant's (before the move was followed, the old one).
    wrong_cell: u64,
    examples: Vec<String>,
    latency: Vec<Duration>,
}

/// Prints the phases, the gauges and the checks; true when every check passes.
pub fn report(a: &Args, names: &[String], t: Timeline) -> Result<bool, String> {
    let Timeline {
        seen,
        gauges,
        broke_at,
        restored_at,
        took,
        cpu,
    } = t;
    // When the move was first followed: the first answer from the new cell after the restore.
    let followed = seen
        .iter()
        .find(|s| s.tenant == MOVED && s.at >= restored_at && s.cell == Ok(MOVED_TO))
        .map(|s| s.at);
    let mut phases: [PhaseStats; 3] = Default::default();
    let mut stale_after_follow = 0u64;
    for s in &seen {
        let p = if s.at < broke_at {
            0
        } else if s.at < restored_at {
            1
        } else {
            2
        };
        let st = &mut phases[p];
        st.requests += 1;
        st.latency.push(s.latency);
        match &s.cell {
            Err(e) => {
                st.errors += 1;
                if st.examples.len() < 5 {
                    st.examples.push(format!("{}: {e}", names[s.tenant]));
                }
            }
            Ok(c) => {
                let moved = followed.is_some_and(|f| s.at >= f);
                let ok = *c == cell_of(s.tenant, moved)
                    // Between the restore and the first answer from the new cell, either.
                    || (p == 2 && !moved && s.tenant == MOVED && *c == MOVED_TO);
                if !ok {
                    st.wrong_cell += 1;
                    if moved && s.tenant == MOVED {
                        stale_after_follow += 1;
                    }
                    if st.examples.len() < 5 {
                        st.examples.push(format!(
                            "{}: answered by cell-{}",
                            names[s.tenant],
                            c + 1
                        ));
                    }
                }
            }
        }
    }

    let in_phase = |g: &Gauges, from: Duration, to: Duration| g.at >= from && g.at < to;
    let before: Vec<&Gauges> = gauges
        .iter()
        .filter(|g| in_phase(g, Duration::ZERO, broke_at))
        .collect();
    let during: Vec<&Gauges> = gauges
        .iter()
        .filter(|g| in_phase(g, broke_at, restored_at))
        .collect();
    let after: Vec<&Gauges> = gauges.iter().filter(|g| g.at >= restored_at).collect();
    let (Some(last_before), Some(last_during), Some(last_after)) =
        (before.last(), during.last(), after.last())
    else {
        return Err("too few /metrics samples".to_owned());
    };
    let max_age_before = before.iter().map(|g| g.age).fold(0.0, f64::max);
    let max_age_during = during.iter().map(|g| g.age).fold(0.0, f64::max);
    let failures_during = last_during.failures - last_before.failures;
    let generations_during = last_during.generation - last_before.generation;
    // When the age fell back under 1 s after the restore.
    let fresh_again = after.iter().find(|g| g.age < 1.0).map(|g| g.at);

    let names_of = ["before", "outage", "after"];
    let bounds = [
        (Duration::ZERO, broke_at),
        (broke_at, restored_at),
        (restored_at, took),
    ];
    for (k, st) in phases.iter_mut().enumerate() {
        st.latency.sort_unstable();
        let secs = (bounds[k].1 - bounds[k].0).as_secs_f64();
        println!(
            "phase {:<6} ({:>4.1} s .. {:>4.1} s): {} req ({:.0} req/s), errors {}, answers from \
             another cell {}; latency p50 {}, p99 {}, max {}",
            names_of[k],
            bounds[k].0.as_secs_f64(),
            bounds[k].1.as_secs_f64(),
            st.requests,
            st.requests as f64 / secs,
            st.errors,
            st.wrong_cell,
            ms(pct(&st.latency, 0.50)),
            ms(pct(&st.latency, 0.99)),
            ms(st.latency.last().copied().unwrap_or_default()),
        );
        for e in &st.examples {
            println!("    e.g. {e}");
        }
    }
    println!(
        "cpu % of a core over the run: proxy {:.1}, driver+cells {:.1}, other {:.1}",
        cpu.proxy, cpu.driver, cpu.other
    );
    let line: Vec<String> = gauges
        .iter()
        .filter(|g| {
            // One sample per second, enough to see the age climb and fall.
            let ms = g.at.as_millis();
            ms % 1000 < SCRAPE_EVERY.as_millis()
        })
        .map(|g| {
            format!(
                "{:.0}s {:.1}/{:.0}/{:.0}",
                g.at.as_secs_f64(),
                g.age,
                g.failures,
                g.generation
            )
        })
        .collect();
    println!(
        "gauges each second (time: snapshot age s / refresh failures / generation): {}",
        line.join(", ")
    );
    println!(
        "snapshot age: max {max_age_before:.2} s before the outage, max {max_age_during:.2} s \
         during it ({} s), {:.2} s at the end; refresh failures {:.0} -> {:.0} during the outage \
         (+{failures_during:.0}), {:.0} at the end; generation {:.0} -> {:.0} during the outage, \
         {:.0} at the end",
        a.outage.as_secs(),
        last_after.age,
        last_before.failures,
        last_during.failures,
        last_after.failures,
        last_before.generation,
        last_during.generation,
        last_after.generation,
    );
    let follow = followed.map(|f| f - restored_at);
    println!(
        "after the restore: {} first answered by cell-2 after {}; answers from cell-1 after \
         that {stale_after_follow}; snapshot age under 1 s again after {}",
        names[MOVED],
        follow.map_or("never".to_owned(), ms),
        fresh_again.map_or("never".to_owned(), |t| ms(t.saturating_sub(restored_at)))
    );

    let mut pass = true;
    let mut check = |what: String, ok: bool| {
        pass &= ok;
        println!("check {what} -> {}", verdict(ok));
    };
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    let requests: u64 = phases.iter().map(|p| p.requests).sum();
    check(
        format!(
            "no errors (before, during, after the outage): {errors} of {requests} (during: {} of {})",
            phases[1].errors, phases[1].requests
        ),
        errors == 0,
    );
    let wrong: u64 = phases.iter().map(|p| p.wrong_cell).sum();
    check(
        format!(
            "every answer from the tenant's cell in the snapshot then in force (the last good one \
             during the outage): {wrong} from another cell"
        ),
        wrong == 0,
    );
    check(
        format!("no snapshot swapped in during the outage: generation +{generations_during:.0}"),
        generations_during == 0.0,
    );
    let want_age = a.outage.as_secs_f64() * AGE_SHARE;
    check(
        format!(
            "cellgate_placement_snapshot_age_seconds grew during the outage to >= {want_age:.1} s \
             ({:.0}% of it): {max_age_during:.2} s",
            AGE_SHARE * 100.0
        ),
        max_age_during >= want_age,
    );
    check(
        format!(
            "cellgate_placement_refresh_failures_total grew during the outage: +{failures_during:.0}"
        ),
        failures_during >= 1.0,
    );
    check(
        format!(
            "the change was followed within {} s of the restore: {}",
            FOLLOW_BOUND.as_secs(),
            follow.map_or("never".to_owned(), ms)
        ),
        follow.is_some_and(|f| f <= FOLLOW_BOUND) && stale_after_follow == 0,
    );
    check(
        format!(
            "snapshot age under 1 s again after the restore: {:.2} s at the end",
            last_after.age
        ),
        fresh_again.is_some() && last_after.age < 1.0,
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
