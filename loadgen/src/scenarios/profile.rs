//! The profiling pass: idle and fan-out once more against stream-edge under `perf record`.

use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::peers::{self, Peer};

use super::{fanout, idle};

/// Idle and fan-out once more against stream-edge under `perf record -g`; the top symbols (self
/// time) of each go into the results.
pub(crate) fn profile_pass(ctx: &mut Ctx, out: &std::path::Path) -> Value {
    let mut res = serde_json::Map::new();
    let keep = ctx.sizes.clone();
    // One pass of each, no paired or CPU-per-delivery rounds: a profile needs samples, not
    // repeats (and the suite's 12-minute budget).
    ctx.sizes.repeats = 1;
    ctx.sizes.pairs = 1;
    ctx.sizes.low_pairs = 1;
    ctx.sizes.idle_windows = 1;
    ctx.sizes.cpu_rates.clear();
    for (name, f) in [
        ("idle", idle as fn(&mut Ctx, Peer) -> anyhow::Result<Value>),
        ("fanout", fanout),
    ] {
        let data = out.join(format!("profile-{name}.data"));
        ctx.note(&format!(
            "== profile: {name} / stream-edge under perf record"
        ));
        ctx.perf_out = Some(data.clone());
        let r = f(ctx, Peer::StreamEdge);
        ctx.perf_out = None;
        if let Err(e) = r {
            ctx.note(&format!("profile {name}: {e:#}"));
        }
        match peers::perf_top(&data) {
            Ok(top) => {
                let _ = std::fs::write(out.join(format!("profile-{name}.txt")), &top.1);
                res.insert(name.into(), json!(top.0));
            }
            Err(e) => {
                res.insert(name.into(), json!({"error": format!("{e:#}")}));
            }
        }
    }
    ctx.sizes = keep;
    Value::Object(res)
}
