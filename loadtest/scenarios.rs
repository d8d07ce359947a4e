//! The scenario table: name, one line on what it measures, what it needs, its entry point.

mod canary;
mod evacuate;
mod fleet;
mod flip;
mod noisy;
mod outage;
mod unknown;

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Whether a local DynamoDB-API server must run (given the scenario's flags).
    pub needs_dynamodb: fn(&[String]) -> bool,
    /// Whether the proxy runs as its own process (so `run.sh` pins it and the driver apart).
    pub proxy_process: bool,
    /// Runs with the flags after the scenario's name; the process exit code.
    pub run: fn(Vec<String>) -> i32,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "evacuate",
        about: "1M tenants in dynamo-lite, 10,000 batched moves in 10 s under traffic: propagation p50/p99, control-plane cpu, old-cell answers",
        needs_dynamodb: |_| false,
        proxy_process: true,
        run: evacuate::run,
    },
    Scenario {
        name: "fleet",
        about: "3 nodes share tenant rates through Redis: accuracy at 5x, Redis killed and restarted, a 4th node, fleet on/off p99 and cpu",
        needs_dynamodb: |_| false,
        proxy_process: true,
        run: fleet::run,
    },
    Scenario {
        name: "flip",
        about: "a tenant flipped between cells through the DynamoDB registry under load: propagation p50/p99, answers from the old cell",
        needs_dynamodb: |_| true,
        proxy_process: false,
        run: flip::run,
    },
    Scenario {
        name: "canary",
        about: "canary weight 5 -> 10 -> 50 under load: shares, stickiness, leaks, moves, group counters",
        needs_dynamodb: |_| false,
        proxy_process: true,
        run: canary::run,
    },
    Scenario {
        name: "noisy",
        about: "one tenant at 10x its rate limit beside ten within theirs: admitted rate, 429s, neighbours' p99",
        needs_dynamodb: |_| false,
        proxy_process: true,
        run: noisy::run,
    },
    Scenario {
        name: "outage",
        about: "the file registry broken for 10 s under load, then restored with a tenant moved: errors, snapshot age, refresh failures, time to follow",
        needs_dynamodb: |_| false,
        proxy_process: true,
        run: outage::run,
    },
    Scenario {
        name: "unknown",
        about: "a flood of random unknown tenants beside ten known ones: 404s, lookup reads against the cap, known p99",
        needs_dynamodb: unknown::needs_dynamodb,
        proxy_process: true,
        run: unknown::run,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
