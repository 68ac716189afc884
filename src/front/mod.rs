//! The front door: the accept loop (one task per connection, bounded by a semaphore and a
//! per-address cap), TLS handshakes, and the connection's life on the lean long-poll front
//! ([`lean`]) and in hyper ([`hyper`]), which hand the connection to each other; a TLS connection
//! that chose `h2` in ALPN is served by [`h2`] instead (WebSockets over it in `h2_ws`). Dependencies run
//! one way: `front` → `transport` / `rest` → `state` and below.

pub mod h2;
mod h2_ws;
pub mod head;
pub mod hyper;
pub mod io;
pub mod lean;
pub mod peer;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::state::Shared;
use io::WriteBound;

/// Accepts until shutdown; with `tls`, each connection's handshake runs in its own task, bounded by
/// the header timeout.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let limits = &shared.config.limits;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared
                    .metrics
                    .limit_hit(crate::metrics::Limit::MaxConnections);
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = shared.shutdown.cancelled() => return,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(ok) => ok,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = shared.conns_per_ip.admit(peer.ip()) else {
            shared
                .metrics
                .limit_hit(crate::metrics::Limit::MaxConnectionsPerIp);
            // Plain HTTP gets a 429 in Stream's shape; a TLS client (no handshake yet) is closed.
            // The refusal holds its connection permit until it is done (about a second at most).
            if tls.is_none() {
                shared.tasks.spawn(async move {
                    lean::refuse(
                        stream,
                        http::StatusCode::TOO_MANY_REQUESTS,
                        9,
                        "too many open connections from this address \
                         (limits.max_connections_per_ip)",
                    )
                    .await;
                    drop(permit);
                });
            }
            continue;
        };
        let stream = WriteBound::new(stream, limits.send_timeout, shared.metrics.clone());
        let conn_shared = shared.clone();
        // Two task types, each sized to its own state: one task for both would make every plain
        // connection (a held poll included) as large as a TLS one, whose handshake and stream
        // state are about 10 KiB.
        match &tls {
            None => {
                // A combinator, not an async block: a block that awaits a future it captured
                // stores that future twice in the task (issue 20: memory per held poll).
                use futures_util::FutureExt as _;
                let conn = lean::serve(stream, peer, conn_shared);
                shared.tasks.spawn(conn.map(move |()| drop((slot, permit))))
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                shared.tasks.spawn(async move {
                    if let Some(s) = Box::pin(handshake(acceptor, stream, &conn_shared)).await {
                        if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                            Box::pin(h2::serve(s, peer, conn_shared)).await;
                        } else {
                            lean::serve(s, peer, conn_shared).await;
                        }
                    }
                    drop((slot, permit));
                })
            }
        };
    }
}

/// The TLS handshake, bounded by the header timeout; failures are counted.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: WriteBound<tokio::net::TcpStream>,
    shared: &Shared,
) -> Option<Box<tokio_rustls::server::TlsStream<WriteBound<tokio::net::TcpStream>>>> {
    let budget = shared.config.limits.header_timeout;
    match tokio::time::timeout(budget, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            shared
                .metrics
                .bad_input
                .with_label_values(&["tls", "handshake_failed"])
                .inc();
            tracing::debug!(error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            shared
                .metrics
                .limit_hit(crate::metrics::Limit::TlsHandshakeTimeout);
            None
        }
    }
}
