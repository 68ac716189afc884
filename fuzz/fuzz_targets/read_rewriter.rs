//! The streaming privacy rewriter (`privacy::stream`): for any input, either an error (and no
//! output) or valid JSON no longer than the input in which no hidden user's state is left in any
//! carrier (checked by the independent `stream::leaks` over a serde_json tree, where serde_json's
//! depth limit allows). Half the runs take the bytes as they are; the other half build a body from
//! them: carriers with user ids (some hidden, some escaped), custom fields named like carriers,
//! deep nesting, random whitespace and key escapes, then maybe truncate or corrupt it.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use stream_edge::privacy::filter::Indicator;
use stream_edge::privacy::stream::{leaks, reference, rewrite, scan_users, Shape};

/// Ids starting with `h` hide everything, `d` delivery, `t` typing; for raw inputs also any id of
/// odd length hides its read receipts.
fn hidden(id: &str, ind: Indicator) -> bool {
    id.starts_with('h')
        || match ind {
            Indicator::Read => id.len() % 2 == 1,
            Indicator::Delivery => id.starts_with('d'),
            Indicator::Typing => id.starts_with('t'),
        }
}

/// `exact`: the body has no duplicated keys, so the rewrite must equal the tree reference.
fn check(body: &[u8], shape: Shape, exact: bool) {
    let parsed_in = serde_json::from_slice::<serde_json::Value>(body);
    let mut out = Vec::new();
    match rewrite(body, shape, &hidden, &mut out) {
        Err(e) => {
            assert!(out.is_empty(), "no partial output");
            assert!(scan_users(body, shape).is_err());
            if parsed_in.is_ok() {
                // Valid JSON is refused only when a carrier has the wrong container kind.
                assert_eq!(e.reason, "carrier has an unexpected shape");
            }
        }
        Ok(removed) => {
            assert!(out.len() <= body.len());
            assert_eq!(out.capacity(), body.len(), "reserved exactly, never grown");
            if removed.total() == 0 {
                assert_eq!(out, body);
            }
            assert!(scan_users(body, shape).is_ok());
            match &parsed_in {
                Ok(_) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&out).expect("output of valid JSON is valid JSON");
                    let left = leaks(&v, shape, &hidden);
                    assert!(left.is_empty(), "hidden state left: {left:?}");
                    if exact {
                        let want = reference(parsed_in.as_ref().expect("parsed"), shape, &hidden);
                        assert_eq!(v, want, "removes exactly the hidden carriers");
                    }
                }
                Err(e) => {
                    // The rewriter accepts exactly RFC 8259 JSON; serde_json also refuses values
                    // nested past its limit and numbers past f64 (`1e999`).
                    let e = e.to_string();
                    assert!(
                        e.contains("recursion limit") || e.contains("number out of range"),
                        "{e}"
                    );
                }
            }
        }
    }
}

const IDS: &[&str] = &[
    "a", "bb", "h1", "d22", "t1", r"\u0068x", r#"a\"q"#, "zz", "dd",
];
const TYPES: &[&str] = &[
    "message.read",
    "message.delivered",
    "typing.start",
    "typing.stop",
    "message.new",
    "thread.updated",
    r"message.r\u0065ad",
    "custom",
];

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    s: String,
    /// A key was duplicated.
    dup: bool,
}

impl Gen<'_, '_> {
    fn ws(&mut self) -> Result<()> {
        let w = *self.u.choose(&["", "", "", " ", "\n  ", "\t"])?;
        self.s.push_str(w);
        Ok(())
    }

    fn key(&mut self, k: &str) -> Result<()> {
        self.ws()?;
        self.s.push('"');
        for c in k.chars() {
            if self.u.ratio(1, 8)? {
                self.s.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                self.s.push(c);
            }
        }
        self.s.push('"');
        self.ws()?;
        self.s.push(':');
        self.ws()
    }

    fn id(&mut self) -> Result<()> {
        let id = *self.u.choose(IDS)?;
        self.s.push('"');
        self.s.push_str(id);
        self.s.push('"');
        Ok(())
    }

    /// An object of `members` (each writes its own value after its key), in random order.
    fn object(&mut self, members: &mut Vec<(&'static str, u8)>, depth: u8) -> Result<()> {
        self.s.push('{');
        let mut first = true;
        while !members.is_empty() {
            let i = self.u.choose_index(members.len())?;
            let (k, what) = members.swap_remove(i);
            if !first {
                self.s.push(',');
            }
            first = false;
            self.key(k)?;
            self.value(what, depth)?;
        }
        self.ws()?;
        self.s.push('}');
        Ok(())
    }

    fn array(&mut self, what: u8, depth: u8) -> Result<()> {
        self.s.push('[');
        let n = self.u.int_in_range(0..=4)?;
        for i in 0..n {
            if i > 0 {
                self.s.push(',');
            }
            self.ws()?;
            self.value(what, depth)?;
        }
        self.ws()?;
        self.s.push(']');
        Ok(())
    }

    fn noise(&mut self, depth: u8) -> Result<()> {
        match self.u.int_in_range(0..=6)? {
            0 => self.s.push_str("null"),
            1 => self.s.push_str(r#""s\"]}\\\u00e9""#),
            2 => self.s.push_str("-1.5e3"),
            3 => {
                let n = self.u.int_in_range(0..=300)?;
                self.s.push_str(&"[".repeat(n));
                self.s.push_str(&"]".repeat(n));
            }
            // Custom data named like carriers: must pass untouched.
            4 if depth > 0 => self.value(R_READS, depth - 1)?,
            5 if depth > 0 => self.value(R_THREAD, depth - 1)?,
            _ => self.s.push_str("{}"),
        }
        Ok(())
    }

    fn user(&mut self) -> Result<()> {
        let mut m = vec![("id", V_ID), ("name", V_NOISE)];
        if self.u.ratio(1, 6)? {
            m.push(("id", V_ID));
            self.dup = true;
        }
        self.object(&mut m, 0)
    }

    fn value(&mut self, what: u8, depth: u8) -> Result<()> {
        let d = depth.saturating_sub(1);
        match what {
            V_ID => self.id()?,
            V_NOISE => self.noise(d)?,
            V_USER => self.user()?,
            V_TYPE => {
                let t = *self.u.choose(TYPES)?;
                self.s.push_str(&format!("\"{t}\""));
            }
            R_READS => self.array(R_READ_ENTRY, d)?,
            R_READ_ENTRY => {
                let mut m = vec![
                    ("last_read", V_NOISE),
                    ("unread_messages", V_NOISE),
                    ("last_delivered_at", V_NOISE),
                    ("last_delivered_message_id", V_NOISE),
                    ("read", V_NOISE),
                ];
                if self.u.ratio(7, 8)? {
                    m.push(("user", V_USER));
                }
                if self.u.ratio(1, 4)? {
                    m.push(("user_id", V_ID));
                }
                self.object(&mut m, d)?;
            }
            R_THREAD => {
                let mut m = vec![
                    ("read", R_READS),
                    ("thread_participants", R_PARTICIPANTS),
                    ("custom", V_NOISE),
                    ("latest_replies", V_NOISE),
                ];
                self.object(&mut m, d)?;
            }
            R_PARTICIPANTS => self.array(R_PARTICIPANT, d)?,
            R_PARTICIPANT => {
                let mut m = vec![("last_read_at", V_NOISE), ("user_id", V_ID)];
                if self.u.ratio(3, 4)? {
                    m.push(("user", V_USER));
                }
                self.object(&mut m, d)?;
            }
            R_CHANNEL => {
                let mut m = vec![
                    ("read", R_READS),
                    ("threads", R_THREADS),
                    ("messages", V_NOISE),
                    ("channel", V_NOISE),
                ];
                self.object(&mut m, d)?;
            }
            R_THREADS => self.array(R_THREAD, d)?,
            R_CHANNELS => self.array(R_CHANNEL, d)?,
            R_EVENT => {
                let mut m = vec![("type", V_TYPE), ("thread", R_THREAD), ("cid", V_NOISE)];
                if self.u.ratio(7, 8)? {
                    m.push(("user", V_USER));
                }
                self.object(&mut m, d)?;
            }
            R_EVENTS => self.array(R_EVENT, d)?,
            R_GROUPS => {
                let mut m = vec![("inbox", R_GROUP), ("other", R_GROUP)];
                self.object(&mut m, d)?;
            }
            R_GROUP => self.object(&mut vec![("channels", R_CHANNELS)], d)?,
            _ => self.s.push_str("null"),
        }
        Ok(())
    }
}

const V_ID: u8 = 0;
const V_NOISE: u8 = 1;
const V_USER: u8 = 2;
const V_TYPE: u8 = 3;
const R_READS: u8 = 10;
const R_READ_ENTRY: u8 = 11;
const R_THREAD: u8 = 12;
const R_PARTICIPANTS: u8 = 13;
const R_PARTICIPANT: u8 = 14;
const R_CHANNEL: u8 = 15;
const R_THREADS: u8 = 16;
const R_CHANNELS: u8 = 17;
const R_EVENT: u8 = 18;
const R_EVENTS: u8 = 19;
const R_GROUPS: u8 = 20;
const R_GROUP: u8 = 21;

/// A body, and whether it is exact (no duplicated key, no damage).
fn generate(data: &[u8], shape: Shape) -> Result<(Vec<u8>, bool)> {
    let mut u = Unstructured::new(data);
    let mut g = Gen {
        u: &mut u,
        s: String::new(),
        dup: false,
    };
    g.ws()?;
    match shape {
        Shape::Event => g.value(R_EVENT, 6)?,
        Shape::Response => {
            let mut m = vec![
                ("read", R_READS),
                ("threads", R_THREADS),
                ("thread", R_THREAD),
                ("channels", R_CHANNELS),
                ("groups", R_GROUPS),
                ("events", R_EVENTS),
                ("event", R_EVENT),
                ("messages", V_NOISE),
                ("duration", V_NOISE),
            ];
            let keep = g.u.int_in_range(1..=m.len())?;
            m.truncate(keep);
            g.object(&mut m, 6)?;
        }
    }
    g.ws()?;
    let mut exact = !g.dup;
    let mut body = g.s.into_bytes();
    // Sometimes damage it: truncate, or overwrite one byte.
    match u.int_in_range(0..=7)? {
        0 => {
            let cut = u.choose_index(body.len().max(1))?;
            body.truncate(cut);
            exact = false;
        }
        1 if !body.is_empty() => {
            let at = u.choose_index(body.len())?;
            body[at] = u.arbitrary()?;
            exact = false;
        }
        _ => {}
    }
    Ok((body, exact))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let shape = if mode & 2 == 0 {
        Shape::Response
    } else {
        Shape::Event
    };
    if mode & 1 == 0 {
        check(rest, shape, false);
    } else if let Ok((body, exact)) = generate(rest, shape) {
        check(&body, shape, exact);
    }
});
