//! Failures worded for the person at the terminal: the Azure error code and
//! message as the service sent them, then what to do about it.

use crate::ClientError;

/// The HTTP status of a service answer, when the failure was one.
pub fn status_of(error: &ClientError) -> Option<u16> {
    match error {
        ClientError::Authentication { status, .. } | ClientError::Service { status, .. } => {
            Some(*status)
        }
        _ => None,
    }
}

/// One line saying what failed, then a `hint:` line when there is
/// something to do about it.
pub fn describe(error: &ClientError) -> String {
    let (headline, hint) = match error {
        ClientError::Authentication {
            status,
            error_code,
            message,
        }
        | ClientError::Service {
            status,
            error_code,
            message,
        } => {
            let code = error_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| status.to_string());
            (
                format!("error {code} (HTTP {status}): {message}"),
                hint_for(*status, *error_code),
            )
        }
        ClientError::Network { endpoint, reason } => (
            format!("cannot reach the service at {endpoint}: {reason}"),
            Some(
                "the connection string's HostName names the tenant and need not lead to the \
                 server: pass --endpoint HOST:PORT of the service listener (dps-server prints \
                 it as `service endpoint`), and --ca with the server's CA if it is not publicly \
                 trusted"
                    .to_owned(),
            ),
        ),
        ClientError::Config { reason } => (reason.clone(), None),
        other => (other.to_string(), None),
    };
    match hint {
        Some(hint) => format!("{headline}\nhint: {hint}"),
        None => headline,
    }
}

fn hint_for(status: u16, code: Option<i32>) -> Option<String> {
    Some(match (status, code) {
        (412, _) => "the etag did not match: the record changed since that etag was read \
                     (or does not exist). Run the `show` command again for the current etag \
                     and retry with --etag <that etag>; leave --etag out to let `update` \
                     read the current one itself"
            .to_owned(),
        (401, _) => "the service refused the credentials: check the connection string's \
                     policy name and key, that the policy has the right this command needs \
                     (EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, \
                     RegistrationStatusWrite or ServiceConfig), and that tenant commands \
                     use the operator key"
            .to_owned(),
        (409, _) => "it already exists: use `update` to change it".to_owned(),
        (404, Some(404000)) => {
            "the service does not know this route: is --endpoint the service listener \
             (not the device one)?"
                .to_owned()
        }
        (413, _) => "the request is too large: split it".to_owned(),
        (429 | 503, _) => "the service is busy: retry later".to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_conflict_says_so_and_what_to_do() {
        let error = ClientError::Service {
            status: 412,
            error_code: Some(412001),
            message: "Precondition failed.".to_owned(),
        };
        let text = describe(&error);
        assert!(text.starts_with("error 412001 (HTTP 412): Precondition failed."));
        assert!(text.contains("etag did not match") && text.contains("--etag"));
        assert_eq!(status_of(&error), Some(412));
    }

    #[test]
    fn codes_are_numbers_and_network_errors_point_at_the_endpoint() {
        let missing = ClientError::Service {
            status: 404,
            error_code: Some(404201),
            message: "Enrollment \"x\" not found.".to_owned(),
        };
        assert_eq!(
            describe(&missing),
            "error 404201 (HTTP 404): Enrollment \"x\" not found."
        );
        let network = ClientError::Network {
            endpoint: "t.example:443".to_owned(),
            reason: "dns error".to_owned(),
        };
        let text = describe(&network);
        assert!(text.contains("t.example:443") && text.contains("--endpoint"));
        assert!(!text.contains("Some("));
        assert_eq!(status_of(&network), None);
    }
}
