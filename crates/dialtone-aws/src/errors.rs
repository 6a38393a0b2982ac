//! AWS's error codes as the provider's typed errors. The SDK has already retried what it
//! retries (throttling, 5xx) by the time an error lands here.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use dialtone_cloud::CloudError;

/// What a failed call says, with the id or token it was about for the errors that name one.
pub(crate) fn cloud_error<E, R>(error: SdkError<E, R>, about: &str) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::TimeoutError(_) => CloudError::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => CloudError::Timeout,
        SdkError::DispatchFailure(failure) => CloudError::Unavailable {
            message: match failure.as_connector_error() {
                Some(e) => format!("cannot reach AWS: {e}"),
                None => "cannot reach AWS".into(),
            },
        },
        SdkError::ServiceError(service) => {
            let e = service.err();
            from_code(e.code().unwrap_or(""), e.message().unwrap_or(""), about)
        }
        SdkError::ConstructionFailure(_) => CloudError::Invalid {
            message: format!("cannot build the AWS request: {}", display(&error)),
        },
        _ => CloudError::Unavailable {
            message: display(&error),
        },
    }
}

/// The error and its causes, on one line.
fn display(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An AWS error code (EC2's or Elastic Load Balancing's) as a [`CloudError`].
pub(crate) fn from_code(code: &str, message: &str, about: &str) -> CloudError {
    let described = || format!("{code}: {message}");
    match code {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => CloudError::Throttled,
        // The instance's create fills in which type and zone.
        "InsufficientInstanceCapacity" => CloudError::InsufficientCapacity {
            zone: String::new(),
            instance_type: String::new(),
        },
        "DependencyViolation" | "ResourceInUse" => CloudError::DependencyViolation {
            message: described(),
        },
        "IdempotentParameterMismatch" => CloudError::IdempotentParameterMismatch {
            token: about.to_string(),
        },
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired"
        | "AccessDenied" => CloudError::Invalid {
            message: format!(
                "AWS refused the credentials or their permissions: {}",
                described()
            ),
        },
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            CloudError::Unavailable {
                message: described(),
            }
        }
        code if code.ends_with("NotFound") => CloudError::NotFound {
            id: about.to_string(),
        },
        code if code.ends_with("LimitExceeded") || code.starts_with("TooMany") => {
            CloudError::QuotaExceeded {
                message: described(),
            }
        }
        code if code.starts_with("Invalid")
            || code.starts_with("Missing")
            || code.starts_with("Unsupported")
            || code.starts_with("Validation") =>
        {
            CloudError::Invalid {
                message: described(),
            }
        }
        _ => CloudError::Unavailable {
            message: described(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_codes_become_the_errors_the_controller_retries_or_reports() {
        let cases = [
            ("RequestLimitExceeded", "CloudThrottled"),
            ("InstanceLimitExceeded", "QuotaExceeded"),
            ("VpcLimitExceeded", "QuotaExceeded"),
            ("TooManyLoadBalancers", "QuotaExceeded"),
            ("InsufficientInstanceCapacity", "InsufficientCapacity"),
            ("InvalidVpcID.NotFound", "NotFound"),
            ("InvalidInstanceID.NotFound", "NotFound"),
            ("LoadBalancerNotFound", "NotFound"),
            ("DependencyViolation", "DependencyViolation"),
            ("IdempotentParameterMismatch", "IdempotentParameterMismatch"),
            ("AuthFailure", "InvalidRequest"),
            ("InvalidParameterValue", "InvalidRequest"),
            ("InvalidSubnet.Range", "InvalidRequest"),
            ("Unsupported", "InvalidRequest"),
            ("InternalError", "CloudUnavailable"),
            ("SomethingNew", "CloudUnavailable"),
        ];
        for (code, reason) in cases {
            assert_eq!(from_code(code, "m", "vpc-1").reason(), reason, "{code}");
        }
        assert_eq!(
            from_code("InvalidVpcID.NotFound", "m", "vpc-1"),
            CloudError::NotFound { id: "vpc-1".into() }
        );
    }
}
