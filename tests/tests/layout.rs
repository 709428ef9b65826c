#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Layout rules for every crate of the workspace (each direct subfolder with
//! a Cargo.toml and a src/, but target/ and fuzz/), checked on the source.
//!
//! `file_imports_are_acyclic`: inside a crate, the files under src/ do not
//! import each other in a cycle. File A imports file B when a path in A that
//! starts with `crate`, `super` or `self` (in a `use`, an expression, a type,
//! a pattern or a macro call's tokens) names B's module or an item in it; the
//! path belongs to its longest prefix that is a file (src/a.rs or
//! src/a/mod.rs is `a`, src/a/b.rs is `a::b`). Not counted: `mod b;`,
//! visibilities (`pub(super)`), paths starting with a child module's name
//! (`use ctx::Ctx;`), test code (under `#[cfg(test)]`, tests.rs, tests/),
//! src/bin/, and edges INTO the crate root: lib.rs/main.rs is a facade that
//! declares modules and re-exports their items, so `crate::Thing` is nearly
//! always another file's item, and counting it would put every file it
//! re-exports from on a cycle. Edges out of the root count.
//!
//! A failure names each cycle as a chain of files, then, for each arrow, the
//! first path that makes it:
//!
//! ```text
//! ratelimit: src/limiter.rs -> src/store.rs -> src/limiter.rs
//!     src/limiter.rs:12 uses crate::store::Store
//!     src/store.rs:40 uses super::limiter::Limit
//! ```
//!
//! Break it: move what both files need down into a file of its own that uses
//! neither (or into the one that does not need the other).
//!
//! `files_are_at_most_max_lines`: no .rs file in a crate's src/, tests/ or
//! benches/ is over `MAX_LINES` lines. The `check_*` tests run the cycle
//! check on small fake crates, to show that it can fail.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream, TokenTree as Tt};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, ImplItem, Item, Meta, Token, UseTree};

/// The most lines a .rs file of a crate may have.
const MAX_LINES: usize = 500;

/// A module path, `a::b` as `["a", "b"]`; the crate root is empty.
type ModPath = Vec<String>;

/// The first path seen for each edge `(from, to)` between files of a crate.
type Edges = BTreeMap<(usize, usize), String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let fail = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}", fail(e)))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{}", fail(e))).path())
        .collect();
    out.sort();
    out
}

/// The crate folders of the workspace at `root`.
fn crates(root: &Path) -> Vec<PathBuf> {
    entries(root)
        .into_iter()
        .filter(|dir| {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !matches!(name, "target" | "fuzz")
                && dir.join("Cargo.toml").is_file()
                && dir.join("src").is_dir()
        })
        .collect()
}

/// Every .rs file under `dir`, sorted (none if `dir` does not exist).
fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    for path in entries(dir) {
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `path` relative to `base`, for messages.
fn rel(path: &Path, base: &Path) -> String {
    format!("{}", path.strip_prefix(base).unwrap_or(path).display())
}

/// The module of a file, from its path under src/; `None` for the files
/// the rule skips (src/bin/, tests.rs, anything in a tests/ folder).
fn module_of(in_src: &Path) -> Option<ModPath> {
    let mut parts: ModPath = in_src
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") || parts.iter().any(|p| p == "tests") {
        return None;
    }
    let last = parts.pop()?;
    let root = parts.is_empty() && (last == "lib" || last == "main");
    if !root && last != "mod" {
        parts.push(last);
    }
    Some(parts)
}

/// Whether `attrs` hold a `#[cfg(test)]` or `#[cfg(all(test, ..))]`.
fn test_only(attrs: &[Attribute]) -> bool {
    fn needs_test(meta: &Meta) -> bool {
        match meta {
            Meta::Path(path) => path.is_ident("test"),
            Meta::List(list) if list.path.is_ident("all") => list
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .is_ok_and(|all| all.iter().any(needs_test)),
            _ => false,
        }
    }
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args::<Meta>().is_ok_and(|m| needs_test(&m))
    })
}

/// The attributes of an item of one of the `kinds` of `enum` (none for others).
macro_rules! attrs {
    ($item:expr, $enum:ident: $($kind:ident)*) => {
        match $item { $($enum::$kind(i) => &i.attrs[..],)* _ => &[] }
    };
}

fn line(span: Span) -> usize {
    span.start().line
}

/// Collects the paths of one file that start with `crate`, `super` or `self`:
/// line, path as written, absolute path. `here` is the module the visitor is
/// in (the file's module, then any inline `mod` it has entered).
struct Refs {
    here: ModPath,
    found: Vec<(usize, String, ModPath)>,
}

impl Refs {
    fn add(&mut self, segments: &[String], line: usize) {
        let mut target = match segments.first().map(String::as_str) {
            Some("crate") => ModPath::new(),
            Some("self" | "super") => self.here.clone(),
            _ => return,
        };
        for segment in segments {
            match segment.as_str() {
                "super" => _ = target.pop(),
                "crate" | "self" | "*" => {}
                _ => target.push(segment.clone()),
            }
        }
        self.found.push((line, segments.join("::"), target));
    }

    /// Paths in the tokens of a macro call, which syn leaves unparsed:
    /// `crate::a::B`, `$crate::a`, `super::b`, `self::c` (at least two segments).
    fn scan(&mut self, tokens: TokenStream) {
        let trees: Vec<Tt> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            if let Tt::Group(group) = &trees[i] {
                self.scan(group.stream());
            }
            let Tt::Ident(start) = &trees[i] else {
                i += 1;
                continue;
            };
            let mut segments = vec![start.to_string()];
            i += 1;
            while let [Tt::Punct(a), Tt::Punct(b), Tt::Ident(next), ..] = &trees[i..] {
                if a.as_char() != ':' || b.as_char() != ':' {
                    break;
                }
                segments.push(next.to_string());
                i += 3;
            }
            if segments.len() > 1 {
                self.add(&segments, line(start.span()));
            }
        }
    }

    /// Adds the paths a `use` tree imports, each at the line of its last segment.
    fn use_tree(&mut self, tree: &UseTree, prefix: &mut Vec<String>) {
        let (name, span) = match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix);
                prefix.pop();
                return;
            }
            UseTree::Group(g) => return g.items.iter().for_each(|t| self.use_tree(t, prefix)),
            UseTree::Name(n) => (n.ident.to_string(), n.ident.span()),
            UseTree::Rename(r) => (r.ident.to_string(), r.ident.span()),
            UseTree::Glob(g) => ("*".to_owned(), g.star_token.spans[0]),
        };
        let mut path = prefix.clone();
        if name != "self" {
            path.push(name); // `crate::a::{self}` is `crate::a`
        }
        self.add(&path, line(span));
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item(&mut self, item: &'ast Item) {
        let attrs = attrs!(item, Item: Const Enum Fn ForeignMod Impl Macro Mod Static
            Struct Trait Type Union Use);
        if !test_only(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast ImplItem) {
        if !test_only(attrs!(item, ImplItem: Const Fn Type Macro)) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        self.here.push(module.ident.to_string());
        visit::visit_item_mod(self, module);
        self.here.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_some() {
            return; // `use ::other_crate::..`
        }
        self.use_tree(&item.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let (None, Some(first)) = (path.leading_colon, path.segments.first()) {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.add(&segments, line(first.ident.span()));
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }

    /// `pub(super)`, `pub(in crate::a)` say who may use an item, not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
}

/// The `crate`/`super`/`self` paths of the file at `path`, module `module`,
/// sorted by line.
fn refs_in(path: &Path, module: &ModPath) -> Vec<(usize, String, ModPath)> {
    let text = read(path);
    let file = syn::parse_file(&text)
        .unwrap_or_else(|e| panic!("{}:{}: cannot parse: {e}", path.display(), line(e.span())));
    let (here, found) = (module.clone(), Vec::new());
    let mut refs = Refs { here, found };
    if !test_only(&file.attrs) {
        refs.visit_file(&file);
    }
    refs.found.sort_by_key(|r| r.0);
    refs.found
}

/// The nodes of each strongly connected component of more than one node.
fn components(nodes: usize, edges: &Edges) -> Vec<Vec<usize>> {
    let mut next = vec![Vec::new(); nodes];
    for &(from, to) in edges.keys() {
        next[from].push(to);
    }
    let reach: Vec<BTreeSet<usize>> = (0..nodes)
        .map(|start| {
            let (mut seen, mut todo) = (BTreeSet::new(), vec![start]);
            while let Some(node) = todo.pop() {
                todo.extend(next[node].iter().filter(|&&n| seen.insert(n)));
            }
            seen
        })
        .collect();
    // A node's component: the nodes it reaches that reach it back; each is
    // listed once, by its smallest node.
    let group = |node: usize| -> Vec<usize> {
        let back = reach[node].iter().filter(|&&n| reach[n].contains(&node));
        back.copied().collect()
    };
    let groups = (0..nodes).map(group).enumerate();
    groups
        .filter(|(node, group)| group.first() == Some(node))
        .map(|(_, group)| group)
        .collect()
}

/// Cycles that together cover every node of `group`: for each node not yet
/// on one, the shortest cycle through it (nodes in order, first not repeated).
fn cycles_in(group: &[usize], edges: &Edges) -> Vec<Vec<usize>> {
    let mut covered = BTreeSet::new();
    let mut out = Vec::new();
    for &start in group {
        if covered.contains(&start) {
            continue;
        }
        let (mut parent, mut todo) = (BTreeMap::new(), VecDeque::from([start]));
        let mut cycle = loop {
            let Some(node) = todo.pop_front() else {
                break vec![start]; // not reached: `group` is strongly connected
            };
            if edges.contains_key(&(node, start)) {
                break vec![node];
            }
            for &to in group.iter().filter(|&&to| edges.contains_key(&(node, to))) {
                if to != start && !parent.contains_key(&to) {
                    parent.insert(to, node);
                    todo.push_back(to);
                }
            }
        };
        while let Some(&up) = parent.get(&cycle[cycle.len() - 1]) {
            cycle.push(up);
        }
        cycle.reverse();
        covered.extend(cycle.iter().copied());
        out.push(cycle);
    }
    out
}

/// The import cycles between the files of each crate of the workspace at
/// `root`, one report per cycle (empty if there is none).
fn cycles(root: &Path) -> Vec<String> {
    let mut reports = Vec::new();
    for dir in crates(root) {
        let src = dir.join("src");
        let mut paths = Vec::new();
        rs_files(&src, &mut paths);
        let files: Vec<(PathBuf, ModPath)> = paths
            .into_iter()
            .filter_map(|path| {
                let module = module_of(path.strip_prefix(&src).ok()?)?;
                Some((path, module))
            })
            .collect();
        // The crate root is left out: edges into it are not counted (see the top).
        let index: BTreeMap<&[String], usize> = files
            .iter()
            .enumerate()
            .filter(|(_, (_, module))| !module.is_empty())
            .map(|(i, (_, module))| (module.as_slice(), i))
            .collect();
        let mut edges = Edges::new();
        for (from, (path, module)) in files.iter().enumerate() {
            for (line, written, target) in refs_in(path, module) {
                let file = (1..=target.len())
                    .rev()
                    .find_map(|n| index.get(&target[..n]));
                if let Some(&to) = file.filter(|&&to| to != from) {
                    let example = format!("{}:{line} uses {written}", rel(path, &dir));
                    edges.entry((from, to)).or_insert(example);
                }
            }
        }
        for group in components(files.len(), &edges) {
            for cycle in cycles_in(&group, &edges) {
                let name = |i: &usize| rel(&files[*i].0, &dir);
                let chain: Vec<String> = cycle.iter().chain(&cycle[..1]).map(name).collect();
                let mut report = format!("{}: {}", rel(&dir, root), chain.join(" -> "));
                for (i, &from) in cycle.iter().enumerate() {
                    let to = cycle[(i + 1) % cycle.len()];
                    report += &format!("\n    {}", edges[&(from, to)]);
                }
                reports.push(report);
            }
        }
    }
    reports
}

/// Each .rs file of a crate's src/, tests/ and benches/ that has more than
/// `MAX_LINES` lines, with its line count.
fn long_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in crates(root) {
        let mut paths = Vec::new();
        for folder in ["src", "tests", "benches"] {
            rs_files(&dir.join(folder), &mut paths);
        }
        for path in paths {
            let lines = read(&path).lines().count();
            if lines > MAX_LINES {
                out.push(format!("{}: {lines} lines", rel(&path, root)));
            }
        }
    }
    out
}

#[test]
fn file_imports_are_acyclic() {
    let found = cycles(&workspace_root());
    assert!(
        found.is_empty(),
        "{} import cycle(s) between the files of a crate. Each is a chain of files \
         that use each other, then for each arrow the first path that makes it:\n\n{}\n\n\
         Break each cycle: move what both files need down into its own file, which \
         uses neither (or into the one that does not need the other), and import it \
         from there, so that imports point one way.",
        found.len(),
        found.join("\n\n"),
    );
}

#[test]
fn files_are_at_most_max_lines() {
    let long = long_files(&workspace_root());
    assert!(
        long.is_empty(),
        "{} file(s) over {MAX_LINES} lines; split each by concern into files of its \
         own (tests in a tests.rs next to it):\n    {}",
        long.len(),
        long.join("\n    "),
    );
}

/// A workspace in a temporary folder with one crate, `demo`, made of `files`.
fn fake_workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("a temporary folder");
    let mut all = vec![("Cargo.toml", "[package]\nname = \"demo\"\n")];
    all.extend_from_slice(files);
    for (path, text) in all {
        let path = root.path().join("demo").join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
        fs::write(&path, text).expect("a written file");
    }
    root
}

#[test]
fn check_finds_and_names_a_cycle() {
    let ws = fake_workspace(&[
        ("src/lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("src/a.rs", "use crate::{b::X, c};\npub struct Y(X);\n"),
        ("src/b.rs", "pub struct X;\n\nfn f(_: super::a::Y) {}\n"),
        // A path in a macro call counts too.
        ("src/c.rs", "fn g() {\n    let _ = vec![$crate::a::Y];\n}\n"),
    ]);
    let found = cycles(ws.path());
    assert_eq!(
        found,
        [
            "demo: src/a.rs -> src/b.rs -> src/a.rs\n    \
             src/a.rs:1 uses crate::b::X\n    src/b.rs:3 uses super::a::Y",
            "demo: src/c.rs -> src/a.rs -> src/c.rs\n    \
             src/c.rs:2 uses crate::a::Y\n    src/a.rs:1 uses crate::c",
        ],
    );
}

#[test]
fn check_passes_without_a_cycle() {
    let long = "//\n".repeat(MAX_LINES + 1);
    let ws = fake_workspace(&[
        ("src/lib.rs", "mod a;\nmod b;\npub use crate::a::Y;\n"),
        ("src/a.rs", "use crate::b::X;\npub struct Y(X);\n"),
        // None of these is an edge b.rs -> a.rs: an item reached through the
        // crate root, a visibility, and test code.
        (
            "src/b.rs",
            "pub struct X;\nfn f(_: crate::Y) {}\npub(in crate::a) fn g() {}\n\
             #[cfg(test)]\nmod t {\n    use crate::a::Y;\n}\n#[cfg(test)]\nmod tests;\n",
        ),
        ("src/b/tests.rs", "use crate::a::Y;\n"),
        ("src/a/long.rs", &long),
    ]);
    assert_eq!(cycles(ws.path()), Vec::<String>::new());
    assert_eq!(
        long_files(ws.path()),
        [format!("demo/src/a/long.rs: {} lines", MAX_LINES + 1)]
    );
}
