//! Unit tests of the classifier, the chunked follower and the stream tracker.
