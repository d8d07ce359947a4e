//! Why a request is not compliant: one reason per finding, each with its class, the label it is
//! counted under, the answer's status and error code when it is refused, and whether it is
//! refused in every mode.

use http::StatusCode;

use super::Class;

/// One finding about a request head or chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reason {
    // acceptable
    #[error("a line ends with LF alone")]
    BareLf,
    #[error("a header value holds non-ASCII bytes")]
    NonAsciiValue,
    #[error("the request target holds non-ASCII bytes")]
    NonAsciiTarget,
    #[error("Content-Length: 0 on a method whose body has no meaning")]
    ZeroLengthOnGet,
    // ambiguous
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("Content-Length repeated with the same value")]
    DuplicateLength,
    #[error("a header name that normalises to Content-Length or Transfer-Encoding")]
    FramingLookalike,
    #[error("a body on GET, HEAD, OPTIONS or TRACE")]
    UnexpectedBody,
    // severe, refused unless monitoring
    #[error("Transfer-Encoding other than one final \"chunked\"")]
    TransferEncoding,
    #[error("a malformed chunk size, extension or chunk end")]
    BadChunk,
    // refused in every mode: hyper cannot parse these, or the Host is not one value
    #[error("a malformed method")]
    BadMethod,
    #[error("a request target with bytes no URI may hold")]
    BadTarget,
    #[error("a version other than HTTP/1.0 or HTTP/1.1")]
    BadVersion,
    #[error("a malformed request line")]
    BadRequestLine,
    #[error("a header name with a byte no token may hold")]
    BadHeaderName,
    #[error("whitespace between a header name and its colon")]
    SpaceBeforeColon,
    #[error("a header line without a colon")]
    MissingColon,
    #[error("a header value folded onto the next line (obs-fold)")]
    ObsFold,
    #[error("a CR not followed by LF")]
    BareCr,
    #[error("a header value with NUL or control bytes")]
    BadHeaderValue,
    #[error("a Content-Length that is not one decimal number")]
    BadContentLength,
    #[error("Content-Length repeated with different values")]
    DifferentLengths,
    #[error("Transfer-Encoding whose final coding is not \"chunked\"")]
    NotChunked,
    #[error("Transfer-Encoding on an HTTP/1.0 request")]
    ChunkedHttp10,
    #[error("several Host headers")]
    SeveralHosts,
    #[error("Host disagrees with the request target's authority")]
    HostMismatch,
    #[error("request target longer than server.max_uri_bytes")]
    UriTooLong,
    #[error("request head larger than server.max_header_bytes")]
    HeadTooLarge,
    #[error("more header fields than server.max_headers")]
    TooManyHeaders,
}

impl Reason {
    #[must_use]
    pub const fn class(self) -> Class {
        use Reason as R;
        match self {
            R::BareLf | R::NonAsciiValue | R::NonAsciiTarget | R::ZeroLengthOnGet => {
                Class::Acceptable
            }
            R::LengthAndChunked | R::DuplicateLength | R::FramingLookalike | R::UnexpectedBody => {
                Class::Ambiguous
            }
            _ => Class::Severe,
        }
    }

    /// Refused whatever the mode: hyper cannot parse the head (there is nothing to forward),
    /// or its `Host` is not one value agreeing with the target (the host picks the tenant).
    #[must_use]
    pub const fn always_refused(self) -> bool {
        !matches!(self.class(), Class::Acceptable | Class::Ambiguous)
            && !matches!(self, Self::TransferEncoding | Self::BadChunk)
    }

    /// The `reason` label of `cellgate_desync_total` (and of `cellgate_requests_rejected_total`
    /// when refused).
    #[must_use]
    pub const fn label(self) -> &'static str {
        use Reason as R;
        match self {
            R::BareLf => "bare_lf",
            R::NonAsciiValue => "non_ascii_value",
            R::NonAsciiTarget => "non_ascii_target",
            R::ZeroLengthOnGet => "zero_length_on_get",
            R::LengthAndChunked => "content_length_and_transfer_encoding",
            R::DuplicateLength => "duplicate_content_length",
            R::FramingLookalike => "framing_header_lookalike",
            R::UnexpectedBody => "unexpected_body",
            R::TransferEncoding => "transfer_encoding",
            R::BadChunk => "bad_chunk",
            R::BadMethod => "bad_method",
            R::BadTarget => "bad_target",
            R::BadVersion => "bad_version",
            R::BadRequestLine => "bad_request_line",
            R::BadHeaderName => "bad_header_name",
            R::SpaceBeforeColon => "space_before_colon",
            R::MissingColon => "missing_colon",
            R::ObsFold => "obs_fold",
            R::BareCr => "bare_cr",
            R::BadHeaderValue => "bad_header_value",
            R::BadContentLength => "bad_content_length",
            R::DifferentLengths => "different_content_lengths",
            R::NotChunked => "transfer_encoding_not_chunked",
            R::ChunkedHttp10 => "transfer_encoding_http10",
            R::SeveralHosts => "several_hosts",
            R::HostMismatch => "host_mismatch",
            R::UriTooLong => "uri_too_long",
            R::HeadTooLarge => "header_too_large",
            R::TooManyHeaders => "too_many_headers",
        }
    }

    /// The status of the answer when refused.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error` code of the JSON answer when refused.
    #[must_use]
    pub const fn code(self) -> &'static str {
        use Reason as R;
        match self {
            R::ZeroLengthOnGet
            | R::LengthAndChunked
            | R::DuplicateLength
            | R::UnexpectedBody
            | R::TransferEncoding
            | R::BadChunk
            | R::BadContentLength
            | R::DifferentLengths
            | R::NotChunked
            | R::ChunkedHttp10 => "invalid_framing",
            R::FramingLookalike | R::BadHeaderName | R::SpaceBeforeColon => "invalid_header_name",
            R::BareLf
            | R::NonAsciiValue
            | R::MissingColon
            | R::ObsFold
            | R::BareCr
            | R::BadHeaderValue => "malformed_header",
            R::NonAsciiTarget | R::BadMethod | R::BadTarget | R::BadVersion | R::BadRequestLine => {
                "invalid_request_line"
            }
            R::SeveralHosts | R::HostMismatch => "invalid_host",
            R::UriTooLong => "uri_too_long",
            R::HeadTooLarge => "header_too_large",
            R::TooManyHeaders => "too_many_headers",
        }
    }

    /// Every reason, for documentation checks and tests.
    pub const ALL: [Self; 29] = {
        use Reason as R;
        [
            R::BareLf,
            R::NonAsciiValue,
            R::NonAsciiTarget,
            R::ZeroLengthOnGet,
            R::LengthAndChunked,
            R::DuplicateLength,
            R::FramingLookalike,
            R::UnexpectedBody,
            R::TransferEncoding,
            R::BadChunk,
            R::BadMethod,
            R::BadTarget,
            R::BadVersion,
            R::BadRequestLine,
            R::BadHeaderName,
            R::SpaceBeforeColon,
            R::MissingColon,
            R::ObsFold,
            R::BareCr,
            R::BadHeaderValue,
            R::BadContentLength,
            R::DifferentLengths,
            R::NotChunked,
            R::ChunkedHttp10,
            R::SeveralHosts,
            R::HostMismatch,
            R::UriTooLong,
            R::HeadTooLarge,
            R::TooManyHeaders,
        ]
    };
}
