//! The house plan holds (README, "Request path"): no module of the gateway's `src/` imports one
//! that imports it back, directly or through others. Read from the source text: every
//! `crate::…`, `super::…` and child-module path a file names is an arrow to the module file it
//! resolves to. Two things are not arrows: a file's own `#[cfg(test)] mod tests`, and a child
//! naming its own folder's `mod.rs` (the folder's shared vocabulary, as in mini-redis: `auth`'s
//! `Identity` used by `auth::cache`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`a::b`) of every `.rs` file under `src/` (the binary's `main.rs` excluded: it is
/// the top and nothing imports it).
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).expect("under src");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if name == "main" {
                continue;
            }
            out.insert(if name == "lib" { String::new() } else { name }, path);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The longest known module a path (`a::b::Item`) names.
fn resolve(path: &[&str], known: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// Arrows out of module `me`, from its source text.
fn arrows(me: &str, text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let parent: Vec<&str> = me.split("::").filter(|s| !s.is_empty()).collect();
    let mut out = BTreeSet::new();
    // A file's own test module (always last) names `super::*` of the file itself.
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let own_folder = parent[..parent.len().saturating_sub(1)].join("::");
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let tokens = code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
    for token in tokens.filter(|t| t.contains("::")) {
        let segs: Vec<&str> = token.split("::").filter(|s| !s.is_empty()).collect();
        let target = match segs.first() {
            Some(&"crate") => resolve(&segs[1..], known),
            Some(&"super") => {
                let mut base = parent.clone();
                let mut rest = &segs[..];
                while rest.first() == Some(&"super") {
                    base.pop();
                    rest = &rest[1..];
                }
                let full: Vec<&str> = base.iter().copied().chain(rest.iter().copied()).collect();
                resolve(&full, known).or_else(|| Some(base.join("::")))
            }
            Some(first) => {
                // A child module named from its parent (`walk::Engine` in `stream`).
                let child: Vec<&str> = parent.iter().copied().chain([*first]).collect();
                let full: Vec<&str> = parent.iter().copied().chain(segs.iter().copied()).collect();
                known
                    .contains_key(&child.join("::"))
                    .then(|| resolve(&full, known))
                    .flatten()
            }
            None => None,
        };
        if let Some(t) = target.filter(|t| t != me && !t.is_empty() && *t != own_folder) {
            out.insert(t);
        }
    }
    out
}

/// A cycle in the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    known
        .iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, path)| {
            let text = std::fs::read_to_string(path).expect("read module");
            (m.clone(), arrows(m, &text, &known))
        })
        .collect()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(g.len() > 40, "modules found: {}", g.len());
    // The front door sits above the handlers, which sit above the shared state.
    assert!(
        g["front::hyper"].contains("transport::ws"),
        "{:?}",
        g["front::hyper"]
    );
    assert!(g["rest"].contains("state"), "{:?}", g["rest"]);
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut g = graph();
    g.get_mut("state")
        .expect("state")
        .insert("front::hyper".to_string());
    assert!(find_cycle(&g).is_some());
}
