//! TLS termination with rustls: sessions over wss, certificate reload without dropping them, and a
//! gateway using another (TLS) gateway as its `https` upstream with a custom CA file.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use stream_edge::config::{TlsConfig, UpstreamTarget, DEV_API_KEY};
use tokio_tungstenite::Connector;

use crate::support::*;

pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf for 127.0.0.1/localhost: (cert PEM, key PEM, cert DER).
    pub(crate) fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    pub(crate) fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

pub(crate) fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("se-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The certificate the server presents on a fresh handshake.
async fn presented(addr: std::net::SocketAddr, client: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn wss_sessions_survive_a_certificate_reload() {
    let pki = Pki::new();
    let dir = tmpdir("reload");
    let (cert_a, key_a, der_a) = pki.leaf();
    std::fs::write(dir.join("cert.pem"), &cert_a).unwrap();
    std::fs::write(dir.join("key.pem"), &key_a).unwrap();
    let mut cfg = test_config();
    cfg.tls = Some(TlsConfig {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
        reload_interval: Duration::from_millis(50),
    });
    let gw = TestGateway::start_with(cfg).await;
    let addr = gw.running().addr;
    assert_eq!(presented(addr, pki.client()).await, der_a);

    let url = gw
        .connect_url(
            r#"{"user_id":"tls-u"}"#,
            DEV_API_KEY,
            &gw.token("tls-u", None),
        )
        .replacen("ws://", "wss://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        &url,
        None,
        false,
        Some(Connector::Rustls(pki.client())),
    )
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "health.check");

    // Renewal: new files; new handshakes get the new certificate, the open session stays.
    let (cert_b, key_b, der_b) = pki.leaf();
    std::fs::write(dir.join("key.pem"), &key_b).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert_b).unwrap();
    let client = pki.client();
    eventually("new certificate served", || {
        let client = client.clone();
        let der_b = der_b.clone();
        async move { presented(addr, client).await == der_b }
    })
    .await;
    assert_eq!(
        ping(&mut ws).await["type"],
        "health.check",
        "session survived the reload"
    );
    assert!(
        gw.metric("stream_edge_tls_reloads_total", &[("outcome", "ok")])
            .await
            >= 1.0
    );

    // A plaintext client on the TLS port fails its handshake and is counted; nothing else breaks.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(WAIT, plain.read(&mut buf))
        .await
        .unwrap();
    eventually("bad handshake counted", || async {
        gw.metric(
            "stream_edge_bad_input_total",
            &[("reason", "handshake_failed")],
        )
        .await
            >= 1.0
    })
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn https_upstream_with_custom_ca() {
    let pki = Pki::new();
    let dir = tmpdir("chain");
    let (cert, key, _) = pki.leaf();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), &key).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.ca.pem()).unwrap();
    // Gateway A terminates TLS in front of its embedded upstream: a Stream-compatible https API.
    let mut a = test_config();
    a.tls = Some(TlsConfig {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
        reload_interval: Duration::from_secs(10),
    });
    let gw_a = TestGateway::start_with(a).await;
    // Gateway B uses A as its upstream over https/wss, trusting the custom CA.
    let mut b = test_config();
    b.upstream.target = UpstreamTarget::Url(
        format!("https://127.0.0.1:{}", gw_a.running().addr.port())
            .parse()
            .unwrap(),
    );
    b.upstream.ca_file = Some(dir.join("ca.pem"));
    let gw_b = TestGateway::start_with(b).await;
    let (mut ws, id) = gw_b.connect("chain-u").await;
    assert!(!id.is_empty());
    assert_eq!(ping(&mut ws).await["type"], "health.check");
    let (status, _) = http(
        hyper::Method::GET,
        &format!("{}/users?api_key={DEV_API_KEY}", gw_b.base),
        None,
        &[("authorization", &gw_b.token("chain-u", None))],
    )
    .await;
    assert_eq!(status, 200, "REST over the pooled https client");
    assert_eq!(
        gw_b.metric("stream_edge_upstream_connections_open", &[])
            .await,
        1.0
    );
    assert_eq!(
        gw_a.metric("stream_edge_sessions_open", &[("transport", "ws")])
            .await,
        1.0,
        "B's upstream is a session on A"
    );

    // Without the CA, B cannot verify A: a retryable failure, never a plaintext fallback.
    let mut c = test_config();
    c.upstream.target = UpstreamTarget::Url(
        format!("https://127.0.0.1:{}", gw_a.running().addr.port())
            .parse()
            .unwrap(),
    );
    let gw_c = TestGateway::start_with(c).await;
    let url = gw_c.connect_url(
        r#"{"user_id":"nochain"}"#,
        DEV_API_KEY,
        &gw_c.token("nochain", None),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST
    );
    let _ = std::fs::remove_dir_all(dir);
}
