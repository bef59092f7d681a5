//! `directory register --keep-alive`: holds an instance's lease with heartbeats until Ctrl-C
//! or SIGTERM, then deregisters it.

use std::time::Duration;

use directory_api::{Client, ErrorCode, InstanceId, Record, Registration, ServiceName};

use super::ClientError;

/// Heartbeats per lease: renewing at a third of the TTL survives two lost heartbeats (or a
/// node failover taking a whole request timeout) before the lease runs out.
pub const RENEWALS_PER_TTL: u32 = 3;

/// What to do after one heartbeat.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// The lease was renewed.
    Renewed,
    /// The lease had already run out (or someone deregistered it): register again.
    Reregister,
    /// No node answered: keep the registration and try again at the next tick.
    Retry,
    /// The directory refused for good (forbidden, invalid...): stop.
    Fail,
}

fn next_step(result: &Result<Record, directory_api::ClientError>) -> Next {
    match result {
        Ok(_) => Next::Renewed,
        Err(e) if e.code() == Some(&ErrorCode::InstanceNotFound) => Next::Reregister,
        Err(e) if e.is_unavailable() => Next::Retry,
        Err(_) => Next::Fail,
    }
}

/// How often to renew a lease of `ttl`, in whole milliseconds (printed to the user).
fn renew_every(ttl: Duration) -> Duration {
    let millis = (ttl / RENEWALS_PER_TTL).as_millis();
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// The registered instance, kept alive by [`hold`].
pub(super) struct Lease<'a> {
    pub client: &'a Client,
    pub service: &'a ServiceName,
    pub instance: &'a InstanceId,
    pub registration: &'a Registration,
}

/// Renews the lease until Ctrl-C or SIGTERM, then deregisters the instance. Transient
/// failures are reported on stderr and retried; a refusal ends the command with its error
/// (the instance then expires on its own).
pub(super) async fn hold(lease: &Lease<'_>) -> Result<(), ClientError> {
    let stop = crate::server::shutdown_signal();
    tokio::pin!(stop);
    let period = renew_every(lease.registration.ttl.duration());
    eprintln!(
        "keeping {}/{} alive (heartbeat every {}); Ctrl-C to deregister and stop",
        lease.service,
        lease.instance,
        humantime::format_duration(period)
    );
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticks.tick() => renew(lease).await?,
        }
    }
    lease
        .client
        .deregister(lease.service, lease.instance)
        .await?;
    Ok(())
}

async fn renew(lease: &Lease<'_>) -> Result<(), ClientError> {
    let result = lease.client.heartbeat(lease.service, lease.instance).await;
    match next_step(&result) {
        Next::Renewed => Ok(()),
        Next::Reregister => {
            eprintln!("the lease had run out; registering again");
            let registration = lease.registration;
            let record = lease
                .client
                .register(lease.service, lease.instance, registration);
            record.await.map(|_| ()).map_err(ClientError::from)
        }
        Next::Retry => {
            if let Err(e) = result {
                eprintln!("heartbeat failed, retrying: {e}");
            }
            Ok(())
        }
        Next::Fail => result.map(|_| ()).map_err(ClientError::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: ErrorCode, status: u16) -> directory_api::ClientError {
        directory_api::ClientError::Api {
            url: String::new(),
            status,
            code,
            message: String::new(),
        }
    }

    #[test]
    fn an_expired_lease_is_registered_again_and_outages_are_retried() {
        let expired = Err(api(ErrorCode::InstanceNotFound, 404));
        assert_eq!(next_step(&expired), Next::Reregister);
        let refused = Err(directory_api::ClientError::Refused { url: String::new() });
        assert_eq!(next_step(&refused), Next::Retry);
        assert_eq!(next_step(&Err(api(ErrorCode::Forbidden, 403))), Next::Fail);
    }

    #[test]
    fn a_lease_is_renewed_three_times_per_ttl() {
        assert_eq!(
            renew_every(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
    }
}
