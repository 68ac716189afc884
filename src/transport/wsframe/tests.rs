use super::*;

/// A masked client frame, as a browser would send it.
fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

fn feed_all(inb: &mut Inbound, data: &[u8]) -> Result<Vec<Msg>, FrameError> {
    let mut out = Vec::new();
    inb.feed(data, &mut out)?;
    Ok(out)
}

#[test]
fn messages_arrive_whole_however_the_bytes_are_split() {
    let big = "x".repeat(70_000);
    let mut bytes = client(0x81, br#"{"type":"health.check"}"#);
    bytes.extend(client(0x89, b"hi"));
    bytes.extend(client(0x01, b"frag"));
    bytes.extend(client(0x8A, b""));
    bytes.extend(client(0x80, b"ment"));
    bytes.extend(client(0x81, big.as_bytes()));
    bytes.extend(client(0x82, b"\x00\x01"));
    bytes.extend(client(0x88, &[0x03, 0xe8, b'o', b'k']));
    let want = vec![
        Msg::Text(r#"{"type":"health.check"}"#.into()),
        Msg::Ping(Bytes::from_static(b"hi")),
        Msg::Pong,
        Msg::Text("fragment".into()),
        Msg::Text(big),
        Msg::Binary,
        Msg::Close(Some(1000)),
    ];
    for chunk in [1, 2, 3, 7, 100, 4096, bytes.len()] {
        let mut inb = Inbound::new(1 << 20, 1 << 20);
        let mut got = Vec::new();
        for part in bytes.chunks(chunk) {
            inb.feed(part, &mut got).expect("valid frames");
        }
        assert_eq!(got, want, "chunk {chunk}");
        assert_eq!(inb.partial.capacity(), 0, "no buffer kept once idle");
        assert!(inb.fragments.is_none());
    }
}

#[test]
fn what_a_server_must_refuse_is_refused() {
    let protocol = |bytes: Vec<u8>| {
        let mut inb = Inbound::new(1024, 2048);
        match feed_all(&mut inb, &bytes) {
            Err(FrameError::Protocol(why)) => why,
            other => panic!("{other:?} for {bytes:?}"),
        }
    };
    // Unmasked.
    protocol(vec![0x81, 0x02, b'h', b'i']);
    // Reserved bits (no extension negotiated).
    protocol(client(0xC1, b"hi"));
    // Unknown opcodes.
    protocol(client(0x83, b"hi"));
    protocol(client(0x8B, b"hi"));
    // Fragmented and long control frames.
    protocol(client(0x09, b"hi"));
    protocol(client(0x89, &[0u8; 126]));
    // A continuation with nothing to continue, a data frame inside a fragmented message.
    protocol(client(0x80, b"hi"));
    let mut two = client(0x01, b"a");
    two.extend(client(0x81, b"b"));
    protocol(two);
    // One-byte close payload, invalid UTF-8 in text and in a close reason.
    protocol(client(0x88, &[0x03]));
    protocol(client(0x81, &[0xff, 0xfe]));
    protocol(client(0x88, &[0x03, 0xe8, 0xff]));
    // A 64-bit length with its top bit set.
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    protocol(huge);
}

#[test]
fn frames_and_messages_over_the_limits_are_too_large() {
    let mut inb = Inbound::new(16, 24);
    assert_eq!(
        feed_all(&mut inb, &client(0x81, &[b'a'; 17])),
        Err(FrameError::TooLarge)
    );
    // The length alone decides: the payload has not arrived.
    let mut inb = Inbound::new(16, 24);
    assert_eq!(
        feed_all(&mut inb, &client(0x81, &[b'a'; 5000])[..4]),
        Err(FrameError::TooLarge)
    );
    let mut inb = Inbound::new(16, 24);
    let mut parts = client(0x01, &[b'a'; 16]);
    parts.extend(client(0x80, &[b'a'; 16]));
    assert_eq!(feed_all(&mut inb, &parts), Err(FrameError::TooLarge));
}

#[test]
fn server_frames_match_tungstenites_encoding() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as TFrame;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    for n in [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
        let payload = vec![b'z'; n];
        let mut want = Vec::new();
        TFrame::message(
            payload.clone(),
            tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
                tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
            ),
            true,
        )
        .format(&mut want)
        .expect("format");
        assert_eq!(text(&payload), want, "text of {n}");
        let mut h = Header::text(n).as_slice().to_vec();
        h.extend_from_slice(&payload);
        assert_eq!(h, want, "header of {n}");
    }
    let mut want = Vec::new();
    TFrame::close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "bye".into(),
    }))
    .format(&mut want)
    .expect("format");
    assert_eq!(close(4000, "bye"), want);
    let long = "é".repeat(100);
    let c = close(1000, &long);
    assert!(c.len() <= 2 + 125 && std::str::from_utf8(&c[4..]).is_ok());
}

#[test]
fn a_close_is_answered_with_a_code_that_may_be_sent() {
    assert_eq!(echo_code(None), 1000);
    for ok in [1000, 1001, 1003, 1008, 1011, 3000, 4000, 4999] {
        assert_eq!(echo_code(Some(ok)), ok);
    }
    for reserved in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
        assert_eq!(echo_code(Some(reserved)), 1002, "{reserved}");
    }
}
