//! The AWS SDK's shared configuration over the proxy's own TLS stack (rustls with ring, hyper
//! 1), so no service client brings a second HTTP or TLS stack: one loader for the DynamoDB
//! registry and the Kinesis metering sink.
//!
//! It honours the standard AWS environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials
//! chain); `region` and `endpoint_url`, when given (from config), win over it. Retries are the
//! SDK's standard mode, three attempts; every attempt and the whole operation are bounded, so a
//! caller never waits on AWS without a limit.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The SDK config for a client of any AWS service.
pub async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        );
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}
