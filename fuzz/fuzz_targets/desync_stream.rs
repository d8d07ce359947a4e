//! The desync classifier over arbitrary client bytes (`desync::head::classify`,
//! `desync::tracker::Tracker`), split into reads at arbitrary points: never a panic; the
//! decisions and the bytes passed do not depend on the split; and every head it passes,
//! httparse reads to the same end (a head hyper would refuse never gets through, so hyper never
//! answers one itself). The same properties as `tests/properties/desync.rs`, over any bytes.
#![no_main]

use cellgate::desync::head::{Limits, Scan, classify};
use cellgate::desync::tracker::{Stop, Tracker};
use cellgate::desync::{Decision, Mode};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_head: 8192,
    max_headers: 100,
    max_uri: 8192,
};

/// Feeds `data` in reads of the given sizes as the proxy's guard does.
fn follow(data: &[u8], sizes: &[u8]) -> (Vec<Decision>, usize, Option<Stop>) {
    let mut t = Tracker::new(Mode::Defensive, LIMITS);
    let (mut decisions, mut passed, mut held) = (Vec::new(), 0, Vec::<u8>::new());
    let mut rest = data;
    let mut sizes = sizes.iter().map(|&s| usize::from(s).max(1)).cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        held.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let step = t.feed(&held, &mut |d| decisions.push(d));
        passed += step.pass;
        match step.stop {
            None => held.clear(),
            Some(Stop::Partial) => {
                held.drain(..step.pass);
            }
            Some(s) => return (decisions, passed, Some(s)),
        }
    }
    let stop = (!held.is_empty()).then_some(Stop::Partial);
    (decisions, passed, stop)
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, sizes) = input;
    assert_eq!(follow(&data, &[u8::MAX]), follow(&data, &sizes));
    if let Scan::Complete(h) = classify(&data, &LIMITS) {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        assert_eq!(
            req.parse(&data),
            Ok(httparse::Status::Complete(h.len)),
            "{:?}",
            String::from_utf8_lossy(&data)
        );
    }
});
