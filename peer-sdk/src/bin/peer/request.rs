//! `peer request SERVICE PAYLOAD`: one request, its reply on stdout.

use crate::args::RequestArgs;
use crate::common::{self, EXIT_DEAD_LETTERED};
use crate::json::{self, DeadLetterLine};
use peer_sdk::SendError;
use std::io::Write;
use std::process::ExitCode;

/// Sends the request; prints the reply (exit 0) or the dead letter as JSON on stderr (exit 1).
pub async fn run(args: RequestArgs) -> anyhow::Result<ExitCode> {
    let peer = common::start_peer(common::SENDER_SERVICE, &args.peer, 1).await?;
    let opts = common::send_options(&args.delivery);
    let result = peer
        .request_with(&args.service, args.payload.into_bytes(), opts)
        .await;
    peer.shutdown().await;
    match result {
        Ok(reply) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&reply)?;
            out.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(SendError::DeadLettered(dl)) => {
            eprintln!("{}", json::line(&DeadLetterLine::new(&dl)));
            Ok(ExitCode::from(EXIT_DEAD_LETTERED))
        }
        Err(e @ SendError::NoResponders(_)) => {
            let line = serde_json::json!({
                "destination": args.service,
                "reason": "no_responders",
                "detail": e.to_string(),
            });
            eprintln!("{line}");
            Ok(ExitCode::from(EXIT_DEAD_LETTERED))
        }
        Err(e) => Err(e.into()),
    }
}
