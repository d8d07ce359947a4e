//! The stream follower: walks an HTTP/1 connection's bytes from the client as they arrive,
//! knowing at each byte whether it is in a head, a body of known length, a chunked body or
//! past the point where the connection changes protocol, so that every head is classified
//! ([`super::head::classify`]) before hyper reads it, and the decision for each (forward,
//! forward and close, refuse) is taken under the mode.
//!
//! It holds no bytes: [`Tracker::feed`] says how many of the given bytes may go on to hyper and
//! why it stopped, and the caller keeps the rest (an incomplete head, bytes sent after an
//! upgrade request before its answer).

use super::chunked::{Chunked, Progress};
use super::head::{Framing, Limits, Scan, classify};
use super::{Action, Decision, Mode, Reason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The start of a request head (empty lines before it are skipped, as parsers do).
    Head,
    /// A body with this many bytes to come.
    Length(u64),
    Chunked(Chunked),
    /// After a request that may switch protocols: nothing passes until its answer is known.
    Upgrade,
    /// After a request whose answer closes the connection: nothing more passes.
    Closing,
    /// No longer HTTP/1 requests (a tunnel, or framing no longer followed in `monitor`).
    Off,
}

/// Where the connection goes once the current body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Head,
    Upgrade,
    Closing,
}

/// Why [`Tracker::feed`] stopped before the end of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An incomplete head starts here: more bytes are needed before it can go on.
    Partial,
    /// The head starting here is refused: answer it, and close.
    Refuse(Reason),
    /// The body is broken here (a bad chunk): the request cannot go on.
    Break(Reason),
    /// An upgrade request's answer decides what these bytes are ([`Tracker::resume`]).
    Hold,
    /// The connection closes after the request before: these bytes are never read.
    Cut,
}

/// How far one call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes from the start that may go on to the parser.
    pub pass: usize,
    pub stop: Option<Stop>,
}

/// One connection's position in its byte stream.
#[derive(Debug, Clone)]
pub struct Tracker {
    mode: Mode,
    limits: Limits,
    at: At,
    then: Then,
    /// Heads passed so far (the next one's `seq`).
    seq: u32,
}

impl Tracker {
    #[must_use]
    pub const fn new(mode: Mode, limits: Limits) -> Self {
        Self {
            mode,
            limits,
            at: At::Head,
            then: Then::Head,
            seq: 0,
        }
    }

    /// Whether the next bytes start a head (so an incomplete one may be pending).
    #[must_use]
    pub fn at_head(&self) -> bool {
        self.at == At::Head
    }

    /// The answer to an upgrade request is known: a tunnel (nothing more to follow), or an
    /// ordinary answer (the next bytes are a head).
    pub fn resume(&mut self, upgraded: bool) {
        if self.at == At::Upgrade {
            self.at = if upgraded { At::Off } else { At::Head };
        }
    }

    /// Follows `data`, reporting each non-compliant request's decision to `decided`.
    pub fn feed(&mut self, data: &[u8], decided: &mut impl FnMut(Decision)) -> Step {
        let mut i = 0;
        while i < data.len() {
            match &mut self.at {
                At::Off => return pass(data.len()),
                At::Upgrade => return stop(i, Stop::Hold),
                At::Closing => return stop(i, Stop::Cut),
                At::Length(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - i);
                    i += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.body_done();
                    }
                }
                At::Chunked(c) => match c.feed(&data[i..]) {
                    Progress::More => return pass(data.len()),
                    Progress::Done(n) => {
                        i += n;
                        self.body_done();
                    }
                    Progress::Bad(n) => {
                        let r = Reason::BadChunk;
                        let action = self.mode.action(r);
                        decided(Decision {
                            reason: r,
                            action,
                            seq: self.seq.wrapping_sub(1),
                        });
                        if action == Action::Refuse {
                            return stop(i + n, Stop::Break(r));
                        }
                        // Monitoring: hyper's decoder decides; the framing is lost to us.
                        self.at = At::Off;
                        return pass(data.len());
                    }
                },
                At::Head => match data[i] {
                    b'\n' => i += 1,
                    b'\r' if i + 1 == data.len() => return stop(i, Stop::Partial),
                    b'\r' if data[i + 1] == b'\n' => i += 2,
                    _ => match self.head(&data[i..], decided) {
                        Ok(len) => i += len,
                        Err(s) => return stop(i, s),
                    },
                },
            }
        }
        pass(data.len())
    }

    /// Classifies the head at the start of `data`; `Ok(len)` when it passes.
    fn head(&mut self, data: &[u8], decided: &mut impl FnMut(Decision)) -> Result<usize, Stop> {
        let head = match classify(data, &self.limits) {
            Scan::Incomplete => return Err(Stop::Partial),
            Scan::Refused(r) => {
                decided(Decision {
                    reason: r,
                    action: Action::Refuse,
                    seq: self.seq,
                });
                return Err(Stop::Refuse(r));
            }
            Scan::Complete(h) => h,
        };
        let action = match head.worst {
            None => Action::Forward,
            Some(r) => {
                let action = self.mode.action(r);
                decided(Decision {
                    reason: r,
                    action,
                    seq: self.seq,
                });
                if action == Action::Refuse {
                    return Err(Stop::Refuse(r));
                }
                action
            }
        };
        self.seq = self.seq.wrapping_add(1);
        self.then = if action == Action::ForwardClose {
            Then::Closing
        } else if head.upgrade {
            Then::Upgrade
        } else {
            Then::Head
        };
        self.at = match head.framing {
            Framing::Length(n) if n > 0 => At::Length(n),
            Framing::Chunked => At::Chunked(Chunked::new(self.limits.max_head)),
            _ => self.after(),
        };
        Ok(head.len)
    }

    fn body_done(&mut self) {
        self.at = self.after();
    }

    const fn after(&self) -> At {
        match self.then {
            Then::Head => At::Head,
            Then::Upgrade => At::Upgrade,
            Then::Closing => At::Closing,
        }
    }
}

const fn pass(n: usize) -> Step {
    Step {
        pass: n,
        stop: None,
    }
}

const fn stop(n: usize, s: Stop) -> Step {
    Step {
        pass: n,
        stop: Some(s),
    }
}

/// What following a stream came to (see [`follow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub decisions: Vec<Decision>,
    /// Bytes let through to the parser.
    pub passed: usize,
    /// Where it stopped (`Partial`: bytes were left over, waiting for more).
    pub stop: Option<Stop>,
    pub at_head: bool,
}

/// Follows a stream arriving as `reads`, buffered as the proxy's guard buffers it (an
/// incomplete head is kept and fed again from its start with the next read), without the I/O:
/// what the tests, the property tests and the fuzz target hold the tracker to.
pub fn follow<'a>(
    mode: Mode,
    limits: Limits,
    reads: impl IntoIterator<Item = &'a [u8]>,
) -> Followed {
    let mut t = Tracker::new(mode, limits);
    let (mut decisions, mut passed, mut held) = (Vec::new(), 0, Vec::<u8>::new());
    for read in reads {
        held.extend_from_slice(read);
        let step = t.feed(&held, &mut |d| decisions.push(d));
        passed += step.pass;
        match step.stop {
            None => held.clear(),
            Some(Stop::Partial) => {
                held.drain(..step.pass);
            }
            stop => {
                return Followed {
                    decisions,
                    passed,
                    stop,
                    at_head: t.at_head(),
                };
            }
        }
    }
    Followed {
        decisions,
        passed,
        stop: (!held.is_empty()).then_some(Stop::Partial),
        at_head: t.at_head(),
    }
}
