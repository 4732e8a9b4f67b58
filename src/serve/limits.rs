//! What a server allows one client and all of them together: [`ServeLimits`], its
//! defaults and their reasons, its validation, and the flags that set it
//! ([`ServeLimitOptions`]).
//!
//! Durations on the command line are Go durations (`200ms`, `10s`, `2m`), as the rest
//! of igw's flags. Nothing here binds sockets or spawns tasks.

use std::time::Duration;

use clap::Args;
use tokio::sync::Semaphore;

/// The longest timeout accepted, so `now + timeout` stays far from `Instant` overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The most connections accepted as a limit: far above what one process can hold
/// (each costs a file descriptor and a task), far below the semaphore's maximum.
const MAX_CONNECTIONS: usize = 1 << 24;

/// Limits on what clients may hold of a server: time to send a request, time a
/// kept-alive connection may sit idle, connections open, request bytes buffered.
///
/// Every default is generous for a client on a data-centre network and small enough
/// that a client which stalls, trickles or floods frees what it holds within seconds
/// to a couple of minutes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time to send a request head (request line and headers), measured from the
    /// connection's accept for its first request, and from the first byte of the
    /// next request on a kept-alive connection. Past it the connection is closed
    /// without a response. Default 10 s: a head is a few hundred bytes that arrive in
    /// one packet; ten seconds tolerates a congested client, and a client sending a
    /// header line a second is cut off after ten lines.
    pub header_read_timeout: Duration,
    /// Time to receive a request body, from the end of its head to its last byte:
    /// a body must arrive at an average of at least its size / this. Past it the
    /// body fails with [`BodyError::TimedOut`](super::BodyError::TimedOut) (408 from
    /// the apps) and the connection is closed. Default 60 s: a 16 MiB body (the
    /// simulator's largest) needs ~280 KB/s, which any client in a cluster exceeds by
    /// orders of magnitude, while a body trickled a byte a second holds its
    /// connection a minute at most.
    pub request_body_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request (no byte
    /// received, no response in progress), and time a response write may wait for a
    /// client that does not read it (a token stream that moves is never cut). Past
    /// it the connection is closed. Default 120 s: longer than the idle
    /// timeout of common client pools (hyper-util and reqwest: 90 s; the gateway's
    /// own: 30 s), so clients close idle connections first and never race a server
    /// close when reusing one; short enough that idle clients give their slot back.
    pub idle_timeout: Duration,
    /// Connections open at once. At the limit the server stops accepting, and new
    /// connections wait in the kernel's listen backlog until a connection closes
    /// (the timeouts above bound how long a stalled one holds its slot). Default
    /// 4,096: four times the 1,000 concurrent streams the simulator's benchmark
    /// drives and vLLM's largest default `max_num_seqs` (1,024), and well inside
    /// common file-descriptor limits (20,000 hard here; 1,024 soft on many desktops,
    /// where it should be lowered).
    pub max_connections: usize,
    /// Bytes of request bodies buffered at once across all connections: a body's
    /// `Content-Length` is reserved when its head arrives, a chunked body's bytes as
    /// they arrive, and both are released when the body is dropped and its handler
    /// has answered. A body that does not fit gets 503 (413 if it could never fit)
    /// at once instead of being buffered. Default 128 MiB: eight of the simulator's
    /// largest (16 MiB) bodies, or tens of thousands of ordinary few-KB requests.
    pub max_inflight_body_bytes: usize,
}

/// Defaults as documented on each field of [`ServeLimits`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 128 * 1024 * 1024;

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        }
    }
}

/// A limit out of range; the message names the flag and the accepted range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("--{flag} must be a duration between 1ns and 24h, got {value:?}")]
    Timeout { flag: &'static str, value: Duration },
    #[error("--{flag} must be between 1 and {max}, got {value}")]
    Count {
        flag: &'static str,
        max: usize,
        value: usize,
    },
}

impl ServeLimits {
    /// Checks every limit. Zero is refused rather than read as "no limit": a server
    /// facing clients has no business without one.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (flag, value) in [
            ("header-read-timeout", self.header_read_timeout),
            ("request-body-timeout", self.request_body_timeout),
            ("idle-timeout", self.idle_timeout),
        ] {
            if value.is_zero() || value > MAX_TIMEOUT {
                return Err(LimitsError::Timeout { flag, value });
            }
        }
        for (flag, value, max) in [
            ("max-connections", self.max_connections, MAX_CONNECTIONS),
            (
                "max-inflight-body-bytes",
                self.max_inflight_body_bytes,
                Semaphore::MAX_PERMITS,
            ),
        ] {
            if value == 0 || value > max {
                return Err(LimitsError::Count { flag, max, value });
            }
        }
        Ok(())
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::epp::duration::parse_go_duration(text)
}

/// The flags that set [`ServeLimits`]; flatten them into a command's arguments.
/// [`Default`] is what the command line gives with no flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct ServeLimitOptions {
    /// Longest a client may take to send a request's head (from accept, or from the
    /// first byte of a kept-alive connection's next request); then it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request body after its head; then it gets
    /// 408 and is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub request_body_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request, or a response
    /// for a client that does not read it.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the kernel's listen backlog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Bytes of request bodies buffered at once, all connections together; a body
    /// that does not fit gets 503 at once.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_INFLIGHT_BODY_BYTES)]
    pub max_inflight_body_bytes: usize,
}

impl Default for ServeLimitOptions {
    fn default() -> ServeLimitOptions {
        let l = ServeLimits::default();
        ServeLimitOptions {
            header_read_timeout: l.header_read_timeout,
            request_body_timeout: l.request_body_timeout,
            idle_timeout: l.idle_timeout,
            max_connections: l.max_connections,
            max_inflight_body_bytes: l.max_inflight_body_bytes,
        }
    }
}

impl ServeLimitOptions {
    /// The limits these flags give, validated.
    pub fn limits(&self) -> Result<ServeLimits, LimitsError> {
        let l = ServeLimits {
            header_read_timeout: self.header_read_timeout,
            request_body_timeout: self.request_body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_inflight_body_bytes: self.max_inflight_body_bytes,
        };
        l.validate()?;
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: ServeLimitOptions,
    }

    fn parse(args: &[&str]) -> Result<ServeLimits, String> {
        let cli = Cli::try_parse_from(std::iter::once("igw").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.limits.limits().map_err(|e| e.to_string())
    }

    #[test]
    fn no_flags_give_the_documented_defaults() {
        assert_eq!(parse(&[]), Ok(ServeLimits::default()));
        assert_eq!(
            Cli::try_parse_from(["igw"]).unwrap().limits,
            ServeLimitOptions::default()
        );
        assert_eq!(ServeLimits::default().validate(), Ok(()));
    }

    #[test]
    fn flags_take_go_durations_and_bad_values_name_the_flag() {
        let l = parse(&["--header-read-timeout", "200ms", "--idle-timeout", "1m30s"]).unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_millis(200));
        assert_eq!(l.idle_timeout, Duration::from_secs(90));
        for (args, flag) in [
            (&["--header-read-timeout", "0"][..], "--header-read-timeout"),
            (&["--request-body-timeout", "48h"], "--request-body-timeout"),
            (&["--idle-timeout", "soon"], "--idle-timeout"),
            (&["--max-connections", "0"], "--max-connections"),
            (
                &["--max-inflight-body-bytes", "0"],
                "--max-inflight-body-bytes",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }
}
