//! The layout's rule (DESIGN rule 12): no import cycle between the domain folders of `src/`, and
//! none between the files of `src/common`. Domains meet through `common::hooks` registered by
//! the composition root (`server.rs`, `cli.rs`, `daily.rs`, `lib.rs`, which may import
//! anything and which no domain imports); a new `use crate::…` that closes a cycle fails here, naming it.
//!
//! Inside a domain folder the same holds for its modules where the folder says so
//! ([`assert_no_cycle_inside`]): `src/orders`, whose life cycle (`checkout/`) moves flash sales
//! and group buys through `orders::campaign` hooks that `orders/mod.rs` lists, never by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DOMAINS: &[&str] = &[
    "common",
    "tenants",
    "members",
    "ledger",
    "membership",
    "orders",
    "analytics",
    "community",
    "growth",
    "distribution",
    "neighbourhood",
    "subscriptions",
    "alliance",
    "codes",
    "segments",
    "engagement",
];

/// The modules that wire the domains together; no domain may import them.
const COMPOSITION: &[&str] = &[
    "server", "cli", "daily", "bench", "docs", "ops", "console", "demo",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b` path named in `text` (in `use` lines and in code), outside comments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: Vec<String> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            paths.push(path);
        }
    }
    paths
}

/// `use crate::common::{db, events}` names several modules: read the braces too.
fn common_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::common::") {
            rest = &rest[at + "crate::common::".len()..];
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}').unwrap_or(inner.len());
                for item in inner[..end].split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        found.insert(name.to_owned());
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
        // Inside common, `super::x` names a sibling too.
        let mut rest = code;
        while let Some(at) = rest.find("super::") {
            rest = &rest[at + "super::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

/// A cycle in `graph`, if any, as the nodes along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

/// The module a source file under `src` is (`orders/checkout/pay.rs` is `orders::checkout::pay`,
/// `orders/mod.rs` is `orders`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut path: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The paths of a `use` tree (or of a path in code) starting at `at`: `a::b::{c, d::{e, f}}`
/// gives `a::b::c`, `a::b::d::e` and `a::b::d::f`; `self` in braces names the prefix, `*` the
/// module it globs, `as name` is left out. Returns the paths and where the tree ends.
fn use_tree(text: &[u8], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let is_ident = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let word = |at: usize| -> usize { text[at..].iter().take_while(|c| is_ident(c)).count() };
    let space = |at: usize| -> usize {
        at + text[at..]
            .iter()
            .take_while(|c| c.is_ascii_whitespace())
            .count()
    };
    let mut prefix: Vec<String> = Vec::new();
    loop {
        match text.get(at) {
            Some(b'{') => {
                let mut paths = Vec::new();
                at += 1;
                loop {
                    at = space(at);
                    match text.get(at) {
                        None => return (paths, at),
                        Some(b'}') => return (paths, at + 1),
                        Some(b',') => at += 1,
                        Some(_) => {
                            let (inner, end) = use_tree(text, at);
                            if end == at {
                                at += 1; // not a path
                                continue;
                            }
                            for path in inner {
                                let mut full = prefix.clone();
                                full.extend(path.into_iter().filter(|p| p != "self"));
                                paths.push(full);
                            }
                            at = space(end);
                            if text[at..].starts_with(b"as") && word(at) == 2 {
                                at = space(at + 2);
                                at += word(at);
                            }
                        }
                    }
                }
            }
            Some(b'*') => return (vec![prefix], at + 1),
            _ => {}
        }
        let length = word(at);
        if length == 0 {
            return (
                if prefix.is_empty() {
                    vec![]
                } else {
                    vec![prefix]
                },
                at,
            );
        }
        prefix.push(String::from_utf8_lossy(&text[at..at + length]).into_owned());
        at += length;
        if text[at..].starts_with(b"::") {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// Every module path the code in `text` (comments and unit tests left out) names through
/// `crate::` or `super::`, resolved from the module `own`, `use` braces expanded.
fn named_paths(text: &str, own: &[String]) -> Vec<Vec<String>> {
    // Unit tests may reach anywhere (and their `super::*` is their own module).
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let boundary = at == 0 || {
            let before = bytes[at - 1];
            !(before.is_ascii_alphanumeric() || before == b'_' || before == b':' || before == b'$')
        };
        if boundary && (rest.starts_with(b"crate::") || rest.starts_with(b"super::")) {
            let (found, end) = use_tree(bytes, at);
            for path in found {
                let mut resolved: Vec<String> = own.to_vec();
                let mut segments = path.into_iter().peekable();
                if segments.peek().is_some_and(|s| s == "crate") {
                    segments.next();
                    resolved.clear();
                }
                while segments.peek().is_some_and(|s| s == "super") {
                    segments.next();
                    resolved.pop();
                }
                resolved.extend(segments);
                paths.push(resolved);
            }
            at = end.max(at + 1);
        } else {
            at += 1;
        }
    }
    paths
}

/// Fail on an import cycle between the modules of the folder `src/<folder>`: its files and its
/// subfolders, each subfolder one module. The folder's `mod.rs` is its composition: it may name
/// every module, and no module names anything of it but the modules themselves (an item it
/// defines or re-exports would hide a cycle through it).
fn assert_no_cycle_inside(folder: &str) {
    let dir = src().join(folder);
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let unit_of = |file: &Path| module_of(file.strip_prefix(&dir).unwrap()).first().cloned();
    let units: BTreeSet<String> = files.iter().filter_map(|f| unit_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(unit) = unit_of(file) else {
            continue; // the folder's mod.rs
        };
        let own = module_of(file.strip_prefix(src()).unwrap());
        let text = std::fs::read_to_string(file).unwrap();
        let edges = graph.entry(unit.clone()).or_default();
        for path in named_paths(&text, &own) {
            if path.first().map(String::as_str) != Some(folder) {
                continue;
            }
            match path.get(1) {
                Some(next) if units.contains(next) => {
                    if *next != unit {
                        edges.insert(next.clone());
                    }
                }
                _ => panic!(
                    "src/{folder}/{} names {}: {folder}/mod.rs is the folder's composition; \
                     name the module that defines it instead",
                    file.strip_prefix(&dir).unwrap().display(),
                    path.join("::")
                ),
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between the modules of src/{folder}: {} (a module below must not \
             call up by name: give it a hook that {folder}/mod.rs registers)",
            cycle.join(" -> ")
        );
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycle_between_domain_folders() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in files {
        let rel = file.strip_prefix(src()).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if !DOMAINS.contains(&top.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(top.clone()).or_default();
        for path in crate_paths(&text) {
            // The composition modules sit above every domain (`crate::AppState` is the one
            // thing of theirs a domain names, re-exported at the crate root).
            assert!(
                !path
                    .first()
                    .is_some_and(|p| COMPOSITION.contains(&p.as_str())),
                "{} names crate::{}: a domain must not call up into the composition root",
                rel.display(),
                path.join("::")
            );
            if let Some(first) = path.first() {
                if first != &top && DOMAINS.contains(&first.as_str()) {
                    edges.insert(first.clone());
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between domain folders: {} (a lower domain must not call up: use \
             common::hooks, registered in server.rs)",
            cycle.join(" -> ")
        );
    }
    // The layering holds for the domains the hooks were made for.
    assert!(!graph["members"].contains("growth") && !graph["members"].contains("analytics"));
    assert!(!graph["orders"].contains("growth"));
    // Distribution sits beside growth, above orders and the ledger: nothing below reads it.
    for lower in [
        "members",
        "ledger",
        "membership",
        "orders",
        "growth",
        "community",
    ] {
        assert!(
            !graph[lower].contains("distribution"),
            "{lower} must not import distribution"
        );
    }
    // The alliance sits beside distribution, above members, membership and orders: they reach
    // it only through the order and member hooks.
    for lower in [
        "members",
        "ledger",
        "membership",
        "orders",
        "growth",
        "community",
        "distribution",
    ] {
        assert!(
            !graph[lower].contains("alliance"),
            "{lower} must not import alliance"
        );
    }
}

#[test]
fn no_import_cycle_inside_common() {
    let dir = src().join("common");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&dir)
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    for file in &files {
        let rel = file.strip_prefix(&dir).unwrap();
        let me = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if me == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let edges = graph.entry(me.clone()).or_default();
        for name in common_modules(text) {
            if name != me && names.contains(&name) {
                edges.insert(name);
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle inside src/common: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_import_cycle_inside_orders() {
    assert_no_cycle_inside("orders");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::orders::model::{Order}; // crate::growth"),
        vec![vec!["orders".to_owned(), "model".to_owned()]]
    );
    assert_eq!(
        common_modules("use crate::common::{db::Tx, events};"),
        BTreeSet::from(["db".to_owned(), "events".to_owned()])
    );
}

#[test]
fn the_path_reader_resolves_use_trees_from_the_module() {
    let own: Vec<String> = vec!["orders".into(), "checkout".into(), "pay".into()];
    let names = |text: &str| -> Vec<String> {
        named_paths(text, &own)
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    };
    assert_eq!(
        names("use super::{burn_id, PaymentRequest};"),
        [
            "orders::checkout::burn_id",
            "orders::checkout::PaymentRequest"
        ]
    );
    assert_eq!(
        names("use crate::orders::{flash_sales, group_buys as teams};\nuse super::super::claims;"),
        [
            "orders::flash_sales",
            "orders::group_buys",
            "orders::claims"
        ]
    );
    assert_eq!(
        names("use crate::orders::model::{\n    self, Order,\n    x::{A, B},\n};"),
        [
            "orders::model",
            "orders::model::Order",
            "orders::model::x::A",
            "orders::model::x::B"
        ]
    );
    assert_eq!(
        names(
            "let x = crate::orders::store::fetch(c); // super::gone\n#[cfg(test)]\nuse super::*;"
        ),
        ["orders::store::fetch"]
    );
    assert_eq!(
        module_of(Path::new("orders/checkout/mod.rs")),
        ["orders", "checkout"]
    );
}
