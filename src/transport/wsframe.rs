//! RFC 6455 framing for the server side of a client WebSocket, without buffers of its own while
//! the socket is idle.
//!
//! Why not tungstenite here (it still speaks to upstream): its codec keeps a read buffer and a
//! write buffer per socket for the socket's lifetime, about 2 KiB of an idle session's 5.6 KiB
//! (heaptrack, 15,000 idle sessions). Here bytes are read into a per-thread buffer
//! ([`super::wire`]); only a frame that arrived in part is copied into the session's own
//! [`Inbound`] buffer, which is freed once the frame completes. Outgoing frames are a header of
//! at most 4 bytes written before the shared event payload (one `sendmsg`, no copy).
//!
//! What a server must refuse (RFC 6455 5.1–5.5): unmasked frames, reserved bits (no extension is
//! negotiated), unknown opcodes, fragmented or long control frames, a continuation with nothing
//! to continue, a new data frame inside a fragmented message, 64-bit lengths with the top bit
//! set, a one-byte close payload, and text that is not UTF-8. Frames and messages over the
//! configured limits are refused as too large.

use bytes::Bytes;

/// Opcodes (RFC 6455 5.2).
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// A close frame, with its status code when it carried one.
    Close(Option<u16>),
}

/// Why the client's bytes are refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame or message too large")]
    TooLarge,
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// The parsing state of one client socket: bytes of a frame that arrived in part, and a
/// fragmented message being assembled. Both are empty (unallocated) between frames.
#[derive(Debug)]
pub struct Inbound {
    partial: Vec<u8>,
    /// The opcode and payload so far of a fragmented message.
    fragments: Option<(u8, Vec<u8>)>,
    max_frame: usize,
    max_message: usize,
}

impl Inbound {
    pub fn new(max_frame: usize, max_message: usize) -> Self {
        Inbound {
            partial: Vec::new(),
            fragments: None,
            max_frame,
            max_message,
        }
    }

    /// Parses the messages completed by `data` (after any bytes kept from before) into `out`, and
    /// keeps an incomplete frame's bytes for the next call.
    ///
    /// # Errors
    /// [`FrameError`] on the first frame a server must refuse; the socket is then to be closed.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Msg>) -> Result<(), FrameError> {
        if self.partial.is_empty() {
            let used = self.parse(data, out)?;
            self.keep(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.parse(&buf, out)?;
            buf.drain(..used);
            if buf.is_empty() {
                // Freed: an idle socket holds no buffer.
                self.partial = Vec::new();
            } else {
                self.partial = buf;
            }
        }
        Ok(())
    }

    fn keep(&mut self, rest: &[u8]) {
        if !rest.is_empty() {
            self.partial = rest.to_vec();
        }
    }

    /// Parses whole frames from `buf`; returns how many bytes they took.
    fn parse(&mut self, buf: &[u8], out: &mut Vec<Msg>) -> Result<usize, FrameError> {
        let mut at = 0;
        while let Some((frame, len)) = Frame::parse(&buf[at..], self.max_frame)? {
            at += len;
            if let Some(msg) = self.assemble(frame)? {
                out.push(msg);
            }
        }
        Ok(at)
    }

    fn assemble(&mut self, f: Frame) -> Result<Option<Msg>, FrameError> {
        match f.opcode {
            CLOSE => {
                let code = match f.payload.len() {
                    0 => None,
                    1 => return Err(FrameError::Protocol("one-byte close payload")),
                    _ => {
                        if std::str::from_utf8(&f.payload[2..]).is_err() {
                            return Err(FrameError::Protocol("close reason not UTF-8"));
                        }
                        Some(u16::from_be_bytes([f.payload[0], f.payload[1]]))
                    }
                };
                Ok(Some(Msg::Close(code)))
            }
            PING => Ok(Some(Msg::Ping(Bytes::from(f.payload)))),
            PONG => Ok(Some(Msg::Pong)),
            TEXT | BINARY if self.fragments.is_some() => Err(FrameError::Protocol(
                "data frame inside a fragmented message",
            )),
            TEXT | BINARY if f.fin => finish(f.opcode, f.payload).map(Some),
            TEXT | BINARY => {
                self.fragments = Some((f.opcode, f.payload));
                Ok(None)
            }
            _ => {
                // CONTINUATION (the parser lets no other opcode through).
                let Some((opcode, mut so_far)) = self.fragments.take() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                if so_far.len() + f.payload.len() > self.max_message {
                    return Err(FrameError::TooLarge);
                }
                so_far.extend_from_slice(&f.payload);
                if f.fin {
                    finish(opcode, so_far).map(Some)
                } else {
                    self.fragments = Some((opcode, so_far));
                    Ok(None)
                }
            }
        }
    }
}

fn finish(opcode: u8, payload: Vec<u8>) -> Result<Msg, FrameError> {
    if opcode == BINARY {
        return Ok(Msg::Binary);
    }
    String::from_utf8(payload)
        .map(Msg::Text)
        .map_err(|_| FrameError::Protocol("text not UTF-8"))
}

/// One unmasked frame.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// The frame at the start of `buf` and its length in bytes, or `None` when it is incomplete.
    fn parse(buf: &[u8], max_frame: usize) -> Result<Option<(Frame, usize)>, FrameError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let opcode = b0 & 0x0F;
        let control = opcode & 0x8 != 0;
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(FrameError::Protocol("unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("unmasked client frame"));
        }
        let (len, mut at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(b) => (u64::from_be_bytes(b), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if control && (!fin || len > 125) {
            return Err(FrameError::Protocol("fragmented or long control frame"));
        }
        if len >> 63 != 0 {
            return Err(FrameError::Protocol("64-bit length with the top bit set"));
        }
        if len > max_frame as u64 {
            return Err(FrameError::TooLarge);
        }
        let len = len as usize;
        let Some(mask) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        let mask = [mask[0], mask[1], mask[2], mask[3]];
        at += 4;
        let Some(masked) = buf.get(at..at + len) else {
            return Ok(None);
        };
        let payload = masked
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        Ok(Some((
            Frame {
                fin,
                opcode,
                payload,
            },
            at + len,
        )))
    }
}

/// The header of an unmasked, unfragmented server frame: at most 10 bytes, and the length used.
pub struct Header {
    bytes: [u8; 10],
    len: usize,
}

impl Header {
    fn new(opcode: u8, payload: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode;
        let len = if payload < 126 {
            bytes[1] = payload as u8;
            2
        } else if let Ok(short) = u16::try_from(payload) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
            10
        };
        Header { bytes, len }
    }

    /// A text frame's header.
    pub fn text(payload: usize) -> Self {
        Header::new(TEXT, payload)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A whole text frame.
pub fn text(payload: &[u8]) -> Vec<u8> {
    frame(TEXT, payload)
}

/// A whole ping frame with no payload: a liveness probe (RFC 6455 5.5.2: the client's WebSocket
/// stack answers it with a pong by itself).
pub fn ping() -> Vec<u8> {
    frame(PING, &[])
}

/// A whole pong frame answering a ping's payload.
pub fn pong(payload: &[u8]) -> Vec<u8> {
    frame(PONG, payload)
}

/// A whole close frame with a status code and a reason (cut to fit a control frame).
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(CLOSE, &payload)
}

/// The code that answers a client's close: its own when it may be sent (RFC 6455 7.4), 1000 when it
/// gave none, 1002 when it gave one no endpoint may send (1005, 1006, 1015, unassigned ones).
pub fn echo_code(code: Option<u16>) -> u16 {
    match code {
        None => 1000,
        Some(c @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => c,
        Some(_) => 1002,
    }
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let h = Header::new(opcode, payload.len());
    let mut out = Vec::with_capacity(h.len + payload.len());
    out.extend_from_slice(h.as_slice());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests;
