//! The validating JSON scanner the carrier walk runs on: strings (with escapes and UTF-8 checked),
//! numbers, literals, and skipping whole values iteratively with a bit-stack.

use super::types::*;

/// A raw JSON string: the bytes between the quotes, and whether any escape occurs.
#[derive(Clone, Copy)]
pub(super) struct Str {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) escaped: bool,
}

/// One bit per open container of a skipped value (1 = object), so skipping costs depth/8 bytes.
#[derive(Default)]
pub(super) struct BitStack {
    pub(super) words: Vec<u64>,
    pub(super) len: usize,
}

impl BitStack {
    pub(super) fn push(&mut self, obj: bool) {
        let (w, b) = (self.len / 64, self.len % 64);
        if w == self.words.len() {
            self.words.push(0);
        }
        if obj {
            self.words[w] |= 1 << b;
        } else {
            self.words[w] &= !(1 << b);
        }
        self.len += 1;
    }

    /// Whether the innermost open container is an object; `None` when none is open.
    pub(super) fn top(&self) -> Option<bool> {
        let i = self.len.checked_sub(1)?;
        Some(self.words[i / 64] >> (i % 64) & 1 == 1)
    }

    pub(super) fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

/// The end of the run of string bytes from `i` that need no attention (no `"`, `\\` or control
/// character), found eight bytes at a time; it may stop early, never late.
pub(super) fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is below `n` (n <= 128) where this sets its high bit (exact for the first).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(bytes);
        if below(w, 0x20) | below(w ^ (ONES * 0x22), 1) | below(w ^ (ONES * 0x5c), 1) != 0 {
            break;
        }
        i += 8;
    }
    i
}

pub(super) struct Lexer<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    pub(super) bits: BitStack,
}

impl<'a> Lexer<'a> {
    pub(super) fn err(&self, reason: &'static str) -> RewriteError {
        RewriteError {
            offset: self.pos,
            reason,
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    pub(super) fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), RewriteError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    pub(super) fn hex4(&self, at: usize) -> Result<u32, RewriteError> {
        let digits = self.b.get(at..at + 4).ok_or(RewriteError {
            offset: at,
            reason: "truncated \\u escape",
        })?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char).to_digit(16).ok_or(RewriteError {
                offset: at,
                reason: "bad \\u escape",
            })?;
            v = v * 16 + n;
        }
        Ok(v)
    }

    /// Validates the string at `pos` (which must be `"`) and moves past it.
    pub(super) fn string(&mut self) -> Result<Str, RewriteError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = plain_run(self.b, i);
            let Some(&c) = self.b.get(i) else {
                self.pos = i;
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match self.b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let cp = self.hex4(i + 2)?;
                            i += 6;
                            if (0xD800..0xDC00).contains(&cp) {
                                let low = match self.b.get(i..i + 2) {
                                    Some(b"\\u") => self.hex4(i + 2)?,
                                    _ => 0,
                                };
                                if !(0xDC00..0xE000).contains(&low) {
                                    self.pos = i;
                                    return Err(self.err("lone surrogate escape"));
                                }
                                i += 6;
                            } else if (0xDC00..0xE000).contains(&cp) {
                                self.pos = i;
                                return Err(self.err("lone surrogate escape"));
                            }
                        }
                        _ => {
                            self.pos = i;
                            return Err(self.err("bad escape"));
                        }
                    }
                }
                0..=0x1f => {
                    self.pos = i;
                    return Err(self.err("control character in string"));
                }
                _ => i += 1,
            }
        }
        // Escapes are ASCII, so the raw bytes are valid UTF-8 exactly when the text is.
        if let Err(e) = std::str::from_utf8(&self.b[start..i]) {
            self.pos = start + e.valid_up_to();
            return Err(self.err("invalid UTF-8 in string"));
        }
        self.pos = i + 1;
        Ok(Str {
            start,
            end: i,
            escaped,
        })
    }

    pub(super) fn digits(&mut self) -> Result<(), RewriteError> {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        if self.pos == from {
            Err(self.err("bad number"))
        } else {
            Ok(())
        }
    }

    pub(super) fn number(&mut self) -> Result<(), RewriteError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(self.err("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    pub(super) fn literal(&mut self, word: &'static [u8]) -> Result<(), RewriteError> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    /// A string, number or literal at `pos`.
    pub(super) fn scalar(&mut self) -> Result<(), RewriteError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("truncated: expected a value")),
        }
    }

    /// `"key" :` with whitespace around the colon.
    pub(super) fn key(&mut self) -> Result<Str, RewriteError> {
        let s = self.string()?;
        self.ws();
        self.expect(b':', "expected ':'")?;
        self.ws();
        Ok(s)
    }

    /// Validates and moves past one value of any depth, without recursion.
    pub(super) fn skip_value(&mut self) -> Result<(), RewriteError> {
        self.bits.len = 0;
        loop {
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.bits.push(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        self.bits.push(false);
                        continue;
                    }
                }
                _ => self.scalar()?,
            }
            // A value ended: close containers until the next value starts or none is open.
            loop {
                let Some(obj) = self.bits.top() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if obj {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if obj => {
                        self.pos += 1;
                        self.bits.pop();
                    }
                    Some(b']') if !obj => {
                        self.pos += 1;
                        self.bits.pop();
                    }
                    Some(_) => return Err(self.err("expected ',' or a closing bracket")),
                    None => return Err(self.err("truncated")),
                }
            }
        }
    }

    /// Appends the unescaped text of `s` to `buf`; false (and `buf` partial) past `cap` bytes.
    pub(super) fn decode(&self, s: Str, buf: &mut Vec<u8>, cap: usize) -> bool {
        let raw = &self.b[s.start..s.end];
        if !s.escaped {
            if raw.len() > cap {
                return false;
            }
            buf.extend_from_slice(raw);
            return true;
        }
        let mut i = 0;
        while i < raw.len() {
            if buf.len() > cap {
                return false;
            }
            let c = raw[i];
            if c != b'\\' {
                buf.push(c);
                i += 1;
                continue;
            }
            // `string` validated every escape, so the digits and pairs below are well formed.
            let simple = match raw[i + 1] {
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'u' => None,
                other => Some(other),
            };
            if let Some(byte) = simple {
                buf.push(byte);
                i += 2;
                continue;
            }
            let hex = |at: usize| {
                raw[at..at + 4]
                    .iter()
                    .fold(0u32, |v, &d| v * 16 + (d as char).to_digit(16).unwrap_or(0))
            };
            let mut cp = hex(i + 2);
            i += 6;
            if (0xD800..0xDC00).contains(&cp) {
                let low = hex(i + 2);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
            let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
            buf.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        }
        buf.len() <= cap
    }
}
