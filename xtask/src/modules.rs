//! `cargo xtask modules`: the module graph of a crate, read from its
//! sources, and the house rule that no file imports another that imports it
//! back.
//!
//! Contract: [`Graph::read`] walks a crate's `src/` folder, maps every file
//! (and every inline `mod name { ... }`) to its module path, and records
//! which file each file uses: every `use` declaration (braces expanded) and
//! every path written in the code that starts with `crate::`, `super::`,
//! `self::` or the name of a child module, resolved to the deepest module it
//! names. Comments, string and character literals are ignored, and so is
//! test-only code (`#[cfg(test)]` modules, inline or in their own file).
//! [`Graph::two_way`] lists the pairs of files that use each other; the
//! unit test below keeps that list empty for the library and for xtask.
//! It is a reader of the house's own style, not a Rust parser: macros that
//! build paths are not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// A module path: `["xdp", "worker"]` for `crate::xdp::worker`.
type ModPath = Vec<String>;

/// The files of a crate and which of them each one uses.
#[derive(Debug, Default)]
pub struct Graph {
    /// File (relative to `src/`) of every module, inline ones included.
    modules: BTreeMap<ModPath, PathBuf>,
    /// Lines of every file that is not test-only.
    lines: BTreeMap<PathBuf, usize>,
    /// Which files each file uses.
    uses: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

/// An inline `mod name { ... }` of a file: its byte range and path.
#[derive(Debug)]
struct Scope {
    start: usize,
    end: usize,
    path: ModPath,
    test: bool,
}

impl Graph {
    /// Reads every `.rs` file under `src`.
    pub fn read(src: &Path) -> Result<Graph> {
        let mut files = Vec::new();
        collect(src, src, &mut files)?;
        files.sort();
        // Pass 1: modules, test-only files, blanked code and scopes.
        let mut graph = Graph::default();
        let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
        let mut parsed = Vec::new();
        for rel in &files {
            let text = fs::read_to_string(src.join(rel))
                .with_context(|| format!("reading {}", src.join(rel).display()))?;
            let path = file_module(rel);
            let code = blank(&text);
            let scopes = scopes(&code, &path);
            for (name, test) in declared_modules(&code) {
                if test {
                    let mut child = path.clone();
                    child.push(name);
                    test_only.insert(child);
                }
            }
            graph.modules.insert(path.clone(), rel.clone());
            for s in &scopes {
                graph.modules.insert(s.path.clone(), rel.clone());
            }
            parsed.push((rel.clone(), path, code, scopes, text.lines().count()));
        }
        // Pass 2: what each file uses.
        for (rel, path, code, scopes, lines) in parsed {
            if test_only.iter().any(|t| path.starts_with(t)) {
                continue;
            }
            graph.lines.insert(rel.clone(), lines);
            let mut used = BTreeSet::new();
            for (at, p) in paths(&code) {
                let scope = scopes
                    .iter()
                    .filter(|s| s.start <= at && at < s.end)
                    .max_by_key(|s| s.path.len());
                if scope.is_some_and(|s| s.test) {
                    continue;
                }
                let here = scope.map_or(&path, |s| &s.path);
                if let Some(target) = graph.resolve(here, &p)
                    && let Some(file) = graph.modules.get(&target)
                    && *file != rel
                {
                    used.insert(file.clone());
                }
            }
            graph.uses.insert(rel, used);
        }
        Ok(graph)
    }

    /// The deepest module that `path`, written in module `here`, names.
    fn resolve(&self, here: &ModPath, path: &[String]) -> Option<ModPath> {
        let (mut base, rest) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("self") => (here.clone(), &path[1..]),
            Some("super") => {
                let mut base = here.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            Some(first) => {
                let mut child = here.clone();
                child.push(first.to_owned());
                if !self.modules.contains_key(&child) {
                    return None; // another crate, or a type
                }
                (here.clone(), path)
            }
            None => return None,
        };
        for seg in rest {
            base.push(seg.clone());
            if !self.modules.contains_key(&base) {
                base.pop();
                break;
            }
        }
        Some(base)
    }

    /// Pairs of files that use each other, each pair once.
    pub fn two_way(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut pairs = Vec::new();
        for (a, used) in &self.uses {
            for b in used {
                if a < b && self.uses.get(b).is_some_and(|u| u.contains(a)) {
                    pairs.push((a.clone(), b.clone()));
                }
            }
        }
        pairs
    }

    /// The files by folder, with their line counts and a total per folder.
    pub fn tree(&self) -> String {
        let mut out = String::new();
        let mut folders: BTreeMap<PathBuf, Vec<(&PathBuf, usize)>> = BTreeMap::new();
        for (file, &lines) in &self.lines {
            let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            folders.entry(dir).or_default().push((file, lines));
        }
        for (dir, files) in &folders {
            let total: usize = files.iter().map(|(_, n)| n).sum();
            let name = if dir.as_os_str().is_empty() {
                ".".to_owned()
            } else {
                format!("{}/", dir.display())
            };
            let _ = writeln!(out, "{name:<24} {total:>6}");
            for (file, lines) in files {
                let leaf = file
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default();
                let _ = writeln!(out, "  {leaf:<22} {lines:>6}");
            }
        }
        out
    }
}

/// Every `.rs` file under `dir`, relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// The module path of a file: `xdp/worker/mod.rs` is `xdp::worker`, `lib.rs`
/// and `main.rs` the crate root.
fn file_module(rel: &Path) -> ModPath {
    let mut parts: ModPath = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// `text` with comments and the contents of string and character literals
/// replaced by spaces (newlines kept), so that braces and paths in them do
/// not count.
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                wipe(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                wipe(&mut out, i, end);
                i = end;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let body = i + 2 + hashes;
                let end = text[body..]
                    .find(&close)
                    .map_or(b.len(), |n| body + n + close.len());
                wipe(&mut out, body, end.saturating_sub(close.len()));
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                wipe(&mut out, i + 1, j);
                i = j + 1;
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{1f}'), or a lifetime.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    text[i + 2..].find('\'').map(|n| i + 2 + n)
                } else {
                    text[i + 1..]
                        .char_indices()
                        .nth(1)
                        .filter(|(_, c)| *c == '\'')
                        .map(|(n, _)| i + 1 + n)
                };
                match end {
                    Some(end) => {
                        wipe(&mut out, i + 1, end);
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the code just before `at` ends with `#[cfg(test)]` (visibility
/// and other attributes between are allowed).
fn is_test_item(code: &str, at: usize) -> bool {
    let before = code[..at].trim_end();
    let before = before
        .strip_suffix("pub(crate)")
        .or_else(|| before.strip_suffix("pub(super)"))
        .or_else(|| before.strip_suffix("pub"))
        .unwrap_or(before)
        .trim_end();
    before.ends_with("#[cfg(test)]")
}

/// Identifiers starting at every `mod` keyword of `code`, with the byte
/// after the name.
fn mod_keywords(code: &str) -> Vec<(usize, String, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(n) = code[from..].find("mod ") {
        let at = from + n;
        from = at + 4;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let after = at + 4 + (rest.len() - rest.trim_start().len()) + name.len();
        out.push((at, name, after));
    }
    out
}

/// The `mod name;` declarations of a file: names, and whether test-only.
fn declared_modules(code: &str) -> Vec<(String, bool)> {
    mod_keywords(code)
        .into_iter()
        .filter(|(_, _, after)| code[*after..].trim_start().starts_with(';'))
        .map(|(at, name, _)| (name, is_test_item(code, at)))
        .collect()
}

/// The inline modules of a file whose own module path is `file`.
fn scopes(code: &str, file: &ModPath) -> Vec<Scope> {
    let mut found: Vec<(usize, usize, String, bool)> = Vec::new();
    for (at, name, after) in mod_keywords(code) {
        let rest = &code[after..];
        if !rest.trim_start().starts_with('{') {
            continue;
        }
        let open = after + (rest.len() - rest.trim_start().len());
        let mut depth = 0usize;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((at, end, name, is_test_item(code, at)));
    }
    // Nested scopes get the path of every scope around them.
    let mut scopes = Vec::new();
    for (start, end, name, test) in &found {
        let mut outer: Vec<&(usize, usize, String, bool)> = found
            .iter()
            .filter(|(s, e, _, _)| s < start && end <= e)
            .collect();
        outer.sort_by_key(|(s, _, _, _)| *s);
        let mut path = file.clone();
        path.extend(outer.iter().map(|(_, _, n, _)| n.clone()));
        path.push(name.clone());
        scopes.push(Scope {
            start: *start,
            end: *end,
            path,
            test: *test || outer.iter().any(|o| o.3),
        });
    }
    scopes
}

/// Every path in `code` that may name a module: the paths of `use`
/// declarations (braces expanded) and every `a::b` path in the code, with
/// the byte where each was found.
fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let b = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    // `use` declarations.
    let mut from = 0;
    while let Some(n) = code[from..].find("use ") {
        let at = from + n;
        from = at + 4;
        if at > 0 && ident(b[at - 1]) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        for p in expand(&normalize(&code[at + 4..at + end])) {
            out.push((at, p));
        }
    }
    // Paths in the code: identifiers joined by `::`.
    let mut i = 0;
    while i < b.len() {
        if ident(b[i]) && (i == 0 || !(ident(b[i - 1]) || b[i - 1] == b':')) {
            let start = i;
            let mut segs = Vec::new();
            loop {
                let s = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                segs.push(code[s..i].to_owned());
                if code[i..].starts_with("::") && b.get(i + 2).is_some_and(|&c| ident(c)) {
                    i += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 {
                out.push((start, segs));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Whitespace collapsed and dropped around `::`, braces and commas, so that
/// `use a::{ b, c as d };` reads `a::{b,c as d}`.
fn normalize(tree: &str) -> String {
    let one: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(one.len());
    let chars: Vec<char> = one.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let tight = |c: Option<&char>| matches!(c, Some('{' | '}' | ',' | ':'));
        if c == ' ' && (tight(chars.get(i + 1)) || (i > 0 && tight(chars.get(i - 1)))) {
            continue;
        }
        out.push(c);
    }
    out
}

/// A normalized `use` tree (`a::{b,c::{d,e}}`, `x as y`) as paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.strip_prefix("::").unwrap_or(tree);
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let segs: Vec<String> = path
            .split("::")
            .filter(|s| !s.is_empty() && *s != "*")
            .map(str::to_owned)
            .collect();
        return if segs.is_empty() { vec![] } else { vec![segs] };
    };
    let prefix = &tree[..open];
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let mut items = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| expand(&format!("{prefix}{i}")))
        .collect()
}

/// `cargo xtask modules`: prints the library's and xtask's trees and fails
/// when two files use each other.
pub fn run() -> Result<()> {
    let root = crate::cmd::repo_root();
    let mut bad = Vec::new();
    for (name, src) in [("fanout", "userspace/src"), ("xtask", "xtask/src")] {
        let graph = Graph::read(&root.join(src))?;
        println!("{name} ({src}): files and lines");
        print!("{}", graph.tree());
        for (a, b) in graph.two_way() {
            bad.push(format!("{src}: {} <-> {}", a.display(), b.display()));
        }
        println!();
    }
    if !bad.is_empty() {
        bail!("files that import each other:\n  {}", bad.join("\n  "));
    }
    println!("no file imports another that imports it back");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_imports_another_that_imports_it_back() {
        let root = crate::cmd::repo_root();
        for src in ["userspace/src", "xtask/src"] {
            let graph = Graph::read(&root.join(src)).unwrap();
            assert!(graph.lines.len() > 10, "{src}: read {:?}", graph.lines);
            assert_eq!(graph.two_way(), Vec::<(PathBuf, PathBuf)>::new(), "{src}");
        }
    }

    /// The reader itself, on a crate written for it: it sees a two-way
    /// import through `use` and through a path in the code, resolves
    /// `super` in inline modules, and ignores comments, strings and tests.
    #[test]
    fn the_reader_finds_two_way_imports_and_only_those() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("a")).unwrap();
        let write = |p: &str, t: &str| fs::write(dir.join(p), t).unwrap();
        write("lib.rs", "mod a;\nmod b;\nmod c;\n#[cfg(test)]\nmod t;\n");
        write(
            "a/mod.rs",
            "mod x;\nuse crate::b::Thing;\n// crate::c::Nothing\nconst S: &str = \"crate::c::X\";\n",
        );
        write(
            "a/x.rs",
            "mod inner {\n    use super::Here;\n}\npub struct Here;\n",
        );
        write("b.rs", "pub fn f() { crate::a::g(); }\n");
        write(
            "c.rs",
            "use crate::t::T;\n#[cfg(test)]\nmod tests {\n    use crate::a::x;\n}\n",
        );
        write("t.rs", "use crate::c::C;\n");
        let graph = Graph::read(&dir).unwrap();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            graph.two_way(),
            vec![(PathBuf::from("a/mod.rs"), PathBuf::from("b.rs"))]
        );
        let uses = |f: &str| graph.uses[&PathBuf::from(f)].clone();
        assert!(
            uses("a/x.rs").is_empty(),
            "super in an inline module is a/x.rs"
        );
        assert!(
            !uses("a/mod.rs").contains(&PathBuf::from("c.rs")),
            "comments and strings"
        );
        assert!(
            !uses("c.rs").contains(&PathBuf::from("a/x.rs")),
            "test modules"
        );
        assert!(
            !graph.lines.contains_key(&PathBuf::from("t.rs")),
            "test-only files"
        );
    }

    #[test]
    fn use_trees_expand() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            expand(&normalize("super::{ a::{self, B},\n  c::D as E, * }")),
            vec![
                p(&["super", "a", "self"]),
                p(&["super", "a", "B"]),
                p(&["super", "c", "D"]),
                // A glob imports the module itself.
                p(&["super"]),
            ]
        );
        assert_eq!(expand("std::io"), vec![p(&["std", "io"])]);
    }

    #[test]
    fn literals_and_comments_are_blanked() {
        let code = blank("let c = '{'; let s = \"}\"; // }\nlet r = r#\"}\"#; 'a: loop {}");
        assert_eq!(code.matches('{').count(), 1, "{code}");
        assert_eq!(code.matches('}').count(), 1, "{code}");
        assert!(code.contains("'a: loop"), "{code}");
    }
}
