//! The layout's rule (DESIGN rule 12): no import cycle between the domain folders of `src/`, and
//! none between the files of `src/common`. Domains meet through `common::hooks` registered by
//! the composition root (`server.rs`, `cli.rs`, `daily.rs`, `lib.rs`, which may import
//! anything and which no domain imports); a new `use crate::…` that closes a cycle fails here, naming it.

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
];

/// The modules that wire the domains together; no domain may import them.
const COMPOSITION: &[&str] = &["server", "cli", "daily", "bench", "docs", "ops"];

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
