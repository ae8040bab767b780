//! Whether this process may listen on port 443. The interop tests put each
//! server on `127.0.N.1:443` (and `:8883`) because the official SDKs dial
//! only those ports; as an ordinary user every such test would otherwise fail
//! with a connection error that does not say why. [`require_port_443`] checks
//! once per process and answers every later call from that one check.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::OnceLock;

use anyhow::Result;

/// A loopback address outside the blocks [`crate::server`] hands out
/// (`127.0.10.x`–`127.0.249.x`), so the probe never takes a test's port.
const PROBE: Ipv4Addr = Ipv4Addr::new(127, 0, 254, 254);

/// Fail with how to run the tests when port 443 cannot be bound here.
pub fn require_port_443() -> Result<()> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| verdict(TcpListener::bind(SocketAddr::from((PROBE, 443))).map(drop)))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// What a bind attempt on port 443 means: refused for want of privilege is
/// the failure to explain; "in use" proves the privilege (Linux checks it
/// before the address), so it passes; anything else is reported as is.
fn verdict(bind: io::Result<()>) -> Result<(), String> {
    match bind {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            Err(privileged_port_message(&error))
        }
        Err(error) => Err(format!(
            "cannot listen on {PROBE}:443 to check the interop tests' ports: {error}"
        )),
    }
}

/// The one message the tests fail with when port 443 is refused.
pub fn privileged_port_message(error: &io::Error) -> String {
    format!(
        "the end-to-end tests listen on port 443 of 127.0.N.x (the official SDKs dial only \
         443 and 8883), and this process may not bind ports below 1024 ({error}). Run them \
         as root, or with CAP_NET_BIND_SERVICE, or allow unprivileged low ports on this \
         machine: `sudo sysctl net.ipv4.ip_unprivileged_port_start=443` (see the README)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_for_privilege_fails_and_it_says_how_to_run() {
        assert_eq!(verdict(Ok(())), Ok(()));
        assert_eq!(verdict(Err(io::ErrorKind::AddrInUse.into())), Ok(()));
        let refused = verdict(Err(io::Error::from_raw_os_error(13))).unwrap_err();
        for needle in [
            "port 443",
            "Permission denied",
            "root",
            "CAP_NET_BIND_SERVICE",
            "net.ipv4.ip_unprivileged_port_start=443",
        ] {
            assert!(refused.contains(needle), "{needle}: {refused}");
        }
        let other = verdict(Err(io::ErrorKind::AddrNotAvailable.into())).unwrap_err();
        assert!(other.contains("127.0.254.254:443"), "{other}");
    }

    #[test]
    fn this_machine_runs_the_tests_with_port_443() {
        // The suite runs as root here (.ci/run); were it not, this would
        // fail with the message above instead of ~60 connection errors.
        require_port_443().unwrap();
        require_port_443().unwrap();
    }
}
