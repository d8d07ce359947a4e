#![allow(clippy::unwrap_used)]
use std::io;

use aws_sdk_dynamodb::error::ConnectorError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;

use super::*;

type GetItemSdkError = SdkError<GetItemError, HttpResponse>;

fn service(status: u16, code: Option<&str>, message: Option<&str>, body: Option<&str>) -> Facts {
    Facts {
        kind: Kind::Service,
        status: Some(status),
        code: code.map(str::to_owned),
        message: message.map(str::to_owned),
        body: body.map(str::to_owned),
        ..Facts::default()
    }
}

fn line(e: &DynamoError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n') && !s.contains("{ "), "{s}");
    s
}

#[test]
fn an_unreachable_endpoint_names_the_operation_the_table_and_the_endpoint_settings() {
    let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
    let e: GetItemSdkError = SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
    let d = describe("GetItem", "reg", &e);
    assert_eq!(d.cause, Cause::Unreachable);
    assert_eq!(
        line(&d),
        "GetItem on table reg: cannot connect: Connection refused; is the endpoint reachable? \
         (--endpoint-url / AWS_ENDPOINT_URL)"
    );
    let slow: GetItemSdkError = SdkError::timeout_error("operation timeout occurred after 10s");
    let d = describe("Scan", "reg", &slow);
    assert_eq!(d.cause, Cause::TimedOut);
    assert!(line(&d).starts_with("Scan on table reg: timed out: operation timeout"));
}

#[test]
fn missing_credentials_and_region_name_the_settings() {
    let none = CredentialsError::not_loaded("no providers in chain provided credentials");
    let e: GetItemSdkError =
        SdkError::dispatch_failure(ConnectorError::other(Box::new(none), None));
    let d = describe("GetItem", "reg", &e);
    assert_eq!(d.cause, Cause::NoCredentials);
    let s = line(&d);
    assert!(
        s.contains("no providers in chain provided credentials")
            && s.contains("AWS_ACCESS_KEY_ID")
            && s.contains("AWS_PROFILE"),
        "{s}"
    );
    let region: GetItemSdkError = SdkError::dispatch_failure(ConnectorError::other(
        "Invalid Configuration: Missing Region".into(),
        None,
    ));
    let d = describe("GetItem", "reg", &region);
    assert_eq!(d.cause, Cause::NoRegion);
    assert!(line(&d).ends_with("pass --region or set AWS_REGION"));
}

#[test]
fn service_codes_map_to_their_hints() {
    let cases = [
        (
            "ResourceNotFoundException",
            Cause::TableMissing,
            "cellgate registry init --table reg",
        ),
        (
            "AccessDeniedException",
            Cause::AccessDenied,
            "dynamodb:PutItem on table reg",
        ),
        (
            "UnrecognizedClientException",
            Cause::CredentialsRefused,
            "AWS_SECRET_ACCESS_KEY",
        ),
        (
            "UnknownOperationException",
            Cause::Unsupported,
            "does not implement PutItem",
        ),
        ("ThrottlingException", Cause::Throttled, "try again"),
        (
            "ValidationException",
            Cause::Other,
            "ValidationException: it is wrong",
        ),
    ];
    for (code, cause, text) in cases {
        let d = classify(
            "PutItem",
            "reg",
            service(400, Some(code), Some("it is wrong"), None),
        );
        assert_eq!(d.cause, cause, "{code}");
        let s = line(&d);
        assert!(
            s.starts_with(&format!("PutItem on table reg: {code}: it is wrong")),
            "{s}"
        );
        assert!(s.contains(text), "{s}");
    }
    // No hint for the rest: the service's own words say it.
    let d = classify(
        "PutItem",
        "reg",
        service(400, Some("ValidationException"), None, None),
    );
    assert_eq!(line(&d), "PutItem on table reg: ValidationException");
}

#[test]
fn answers_without_a_dynamodb_error_say_so() {
    let unknown = service(400, None, Some("An unknown operation was requested."), None);
    let d = classify("UpdateTimeToLive", "reg", unknown);
    assert_eq!(d.cause, Cause::Unsupported);
    assert!(line(&d).ends_with("the endpoint does not implement UpdateTimeToLive"));
    let d = classify("GetItem", "reg", service(501, None, None, None));
    assert_eq!(d.cause, Cause::Unsupported);
    let html = service(404, None, None, Some("<html>\n  Not Found\n</html>"));
    let d = classify("GetItem", "reg", html);
    assert_eq!(d.cause, Cause::NotDynamo);
    assert_eq!(
        line(&d),
        "GetItem on table reg: HTTP 404 without a DynamoDB error: <html> Not Found </html>; \
         is --endpoint-url a DynamoDB endpoint? (it may not implement GetItem)"
    );
}

#[test]
fn the_tail_keeps_the_specific_causes_and_drops_debug_dumps() {
    let chain = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        tail(&chain(&[
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)"
        ])),
        "tcp connect error: Connection refused (os error 111)"
    );
    assert_eq!(
        tail(&chain(&[
            "failed to apply endpoint `x` to request `Request { body: .. }`",
            "endpoint must contain scheme"
        ])),
        "endpoint must contain scheme"
    );
    assert_eq!(tail(&chain(&["a: b", "b"])), "a: b");
    assert_eq!(tail(&[]), "no detail from the SDK");
    assert_eq!(clip("abcdef", 3), "abc...");
}
