//! The one error type of this crate and its DPS error codes.

use std::time::Duration;

use dps_model::{AllocationPolicy, ErrorCode};

use crate::egress::EgressRefusal;

/// Why no hub could be chosen. Each variant maps to a 6-digit DPS error code
/// ([`AllocationError::error_code`]) and its `Display` text is the message a
/// device (and an operator reading the registration record) sees, so it names
/// the cause and the offending value. Webhook URLs are never quoted in full:
/// their query string carries the function key; only the host appears. Nor
/// is anything the webhook answered: the URL is the tenant's choice, so the
/// answer may come from a service the tenant must not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocationError {
    /// The tenant has more linked hubs than a [`crate::HubTable`] holds.
    #[error("the tenant links {count} hubs; at most {max} are supported")]
    TooManyLinkedHubs {
        /// How many hubs the tenant links.
        count: usize,
        /// The supported maximum.
        max: usize,
    },
    /// Nothing left to choose from: no linked hub, none of the enrollment's
    /// hubs is linked, or all of them have `applyAllocationPolicy=false`.
    #[error(
        "no hub available for the {} policy: {reason}",
        policy.as_str()
    )]
    NoCandidateHub {
        /// The policy that found nothing.
        policy: AllocationPolicy,
        /// What was considered and why it was left out.
        reason: String,
    },
    /// The static policy needs exactly one hub on the enrollment (`iotHubs`
    /// with one entry, or the legacy `iotHubHostName`).
    #[error(
        "the static allocation policy needs exactly one hub on the enrollment; it names {}",
        describe_names(named)
    )]
    StaticHubCount {
        /// The hub names the enrollment carries.
        named: Vec<String>,
    },
    /// The static policy's hub is not linked to the tenant.
    #[error("the static allocation policy names hub {hub:?}, which is not linked to this provisioning service")]
    StaticHubNotLinked {
        /// The hub named on the enrollment.
        hub: String,
    },
    /// The device must stay on its current hub, but that hub is no longer
    /// linked to the tenant, so nothing can be written there.
    #[error("the device must stay on hub {hub:?} (its reprovision policy keeps the hub), but that hub is no longer linked to this provisioning service")]
    CurrentHubNotLinked {
        /// The hub the device is on.
        hub: String,
    },
    /// The enrollment uses the custom policy without a `customAllocationDefinition`.
    #[error(
        "custom allocation failed: the enrollment has no customAllocationDefinition (webhookUrl)"
    )]
    CustomDefinitionMissing,
    /// The webhook URL cannot be used.
    #[error("custom allocation failed: the webhook URL is invalid: {reason}")]
    WebhookUrlInvalid {
        /// Why (the URL itself is not repeated: it may carry a key).
        reason: String,
    },
    /// The egress policy refused the webhook's address or scheme, before
    /// any byte was sent to it.
    #[error(
        "custom allocation failed: the webhook at {host} is refused by the egress policy: {reason}"
    )]
    WebhookEgressRefused {
        /// Host (and port) of the webhook.
        host: String,
        /// Which rule refused it.
        reason: EgressRefusal,
    },
    /// No answer from the webhook: no connection (refused, unresolvable
    /// name, TLS failure) or no complete answer within the limit. These are
    /// deliberately one failure with one text: telling "connection refused"
    /// from "timed out" would make the webhook a port scanner of whatever
    /// networks the operator allows. The cause is logged at DEBUG.
    #[error("custom allocation failed: could not reach the webhook at {host} (no connection, or no answer within {} ms)", timeout.as_millis())]
    WebhookUnreachable {
        /// Host (and port) of the webhook.
        host: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The webhook answered 401 or 403.
    #[error("custom allocation failed: the webhook at {host} refused the call with status code {status} (check the function key in webhookUrl)")]
    WebhookUnauthorized {
        /// Host (and port) of the webhook.
        host: String,
        /// 401 or 403.
        status: u16,
    },
    /// The webhook answered with a redirect, which is never followed: the
    /// target would escape the egress check.
    #[error("custom allocation failed: the webhook at {host} answered with a redirect (status code {status}), which is not followed")]
    WebhookRedirected {
        /// Host (and port) of the webhook.
        host: String,
        /// The 3xx status.
        status: u16,
    },
    /// The webhook answered another non-2xx status. The text starts like
    /// the cloud's; the body is never part of it (it could be anything the
    /// URL points at), only of a DEBUG log.
    #[error("Custom allocation failed with status code: {status} (webhook at {host})")]
    WebhookStatus {
        /// Host (and port) of the webhook.
        host: String,
        /// The HTTP status.
        status: u16,
    },
    /// The webhook's 2xx answer is not the expected JSON.
    #[error(
        "custom allocation failed: the webhook at {host} returned a malformed response: {cause}"
    )]
    WebhookMalformedResponse {
        /// Host (and port) of the webhook.
        host: String,
        /// What is wrong, in fixed words plus the field path where it
        /// applies; never a value from the body.
        cause: String,
    },
    /// The webhook's answer is larger than the configured limit.
    #[error("custom allocation failed: the webhook at {host} returned more than {limit} bytes")]
    WebhookResponseTooLarge {
        /// Host (and port) of the webhook.
        host: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The webhook's answer has no `iotHubHostName`.
    #[error("custom allocation failed: the webhook at {host} returned no iotHubHostName")]
    WebhookHubMissing {
        /// Host (and port) of the webhook.
        host: String,
    },
    /// The webhook chose a hub that was not among the `linkedHubs` it was sent.
    #[error("custom allocation failed: the webhook at {host} returned iotHubHostName {hub:?}, which is not one of the linked hubs it was offered ({})", linked.join(", "))]
    WebhookHubNotLinked {
        /// Host (and port) of the webhook.
        host: String,
        /// The hub the webhook returned.
        hub: String,
        /// The hubs it was offered.
        linked: Vec<String>,
    },
    /// A CIDR range in the latency configuration cannot be parsed.
    #[error("invalid CIDR range {value:?}: {reason}")]
    InvalidCidr {
        /// The offending text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Building the HTTP client failed (e.g. an unusable extra root CA).
    #[error("cannot build the webhook HTTP client: {cause}")]
    HttpClient {
        /// The underlying error.
        cause: String,
    },
}

impl AllocationError {
    /// The 6-digit DPS error code a failed registration carries.
    ///
    /// Webhook failures use the three custom-allocation codes of the spec
    /// (400207 failed, 400208 no/invalid hub, 400209 unauthorized); the
    /// variant and the message tell egress refusals, unreachable webhooks,
    /// redirects, bad statuses and bad bodies apart. Hubs that are not (or no longer)
    /// linked are 404210 LinkedHubNotFound; an enrollment whose hub settings
    /// cannot work is 400004 ArgumentInvalid.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AllocationError::TooManyLinkedHubs { .. }
            | AllocationError::HttpClient { .. }
            | AllocationError::InvalidCidr { .. } => ErrorCode::INTERNAL,
            AllocationError::NoCandidateHub { .. }
            | AllocationError::StaticHubNotLinked { .. }
            | AllocationError::CurrentHubNotLinked { .. } => ErrorCode::LINKED_HUB_NOT_FOUND,
            AllocationError::StaticHubCount { .. } => ErrorCode::ARGUMENT_INVALID,
            AllocationError::CustomDefinitionMissing
            | AllocationError::WebhookUrlInvalid { .. }
            | AllocationError::WebhookEgressRefused { .. }
            | AllocationError::WebhookUnreachable { .. }
            | AllocationError::WebhookRedirected { .. }
            | AllocationError::WebhookStatus { .. }
            | AllocationError::WebhookMalformedResponse { .. }
            | AllocationError::WebhookResponseTooLarge { .. } => {
                ErrorCode::CUSTOM_ALLOCATION_FAILED
            }
            AllocationError::WebhookHubMissing { .. }
            | AllocationError::WebhookHubNotLinked { .. } => {
                ErrorCode::CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED
            }
            AllocationError::WebhookUnauthorized { .. } => {
                ErrorCode::CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS
            }
        }
    }
}

fn describe_names(named: &[String]) -> String {
    match named {
        [] => "none".to_owned(),
        names => format!("{} ({})", names.len(), names.join(", ")),
    }
}
