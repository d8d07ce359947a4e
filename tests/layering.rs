//! The layering check: imports in `src/` point down the layer table of `docs/architecture.md`.
//!
//! Each file of `src/` belongs to the module its path starts with (`src/placement/cell.rs` →
//! `placement`). The table gives every module a layer; a module may use any module on a lower
//! layer, a peer on its own layer only where the table's last column allows it, and nothing
//! above. A use is any `crate::NAME` path outside comments and strings (grouped `use crate::{..}`
//! items too), and `super::` paths that climb out of the module. Test code (`#[cfg(test)]`
//! items, and the files of `#[cfg(test)] mod x;`) is not read: tests may reach across.
//!
//! A failure names file, line and import. [`EXCEPTIONS`] lists the uses still waiting for a
//! move; an exception that is no longer needed fails too, so the list only shrinks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `(file, imported module)` pairs tolerated for now; each is a move still to make.
const EXCEPTIONS: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One row of the layer table.
#[derive(Debug)]
struct Row {
    layer: usize,
    /// Peers on the same layer this module may use.
    peers: BTreeSet<String>,
}

/// Reads the table under `## Layers` in docs/architecture.md.
fn layer_table() -> BTreeMap<String, Row> {
    let path = root().join("docs/architecture.md");
    parse_table(
        &std::fs::read_to_string(&path).unwrap(),
        &path.display().to_string(),
    )
}

/// The rows of the table under `## Layers`: `| layer | modules | may also use | ... |`.
fn parse_table(text: &str, shown: &str) -> BTreeMap<String, Row> {
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .unwrap_or_else(|| panic!("{shown}: no `## Layers` section"));
    let mut table = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<usize>() else {
            continue; // the header and its rule
        };
        let names = |cell: Option<&&str>| -> Vec<String> {
            cell.map(|c| {
                c.split(',')
                    .filter_map(|n| {
                        let n = n.trim().trim_matches('`');
                        (!n.is_empty() && n != "—").then(|| n.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        let peers: BTreeSet<String> = names(cells.get(2)).into_iter().collect();
        for m in names(cells.get(1)) {
            let row = Row {
                layer,
                peers: peers.clone(),
            };
            assert!(
                table.insert(m.clone(), row).is_none(),
                "{shown}: module `{m}` is listed twice"
            );
        }
    }
    assert!(!table.is_empty(), "{shown}: empty layer table");
    table
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source with comments, string and char literals blanked (lines kept), so only code is read.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = 2 + hashes;
            let end = rest[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| body + p + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' && (rest.get(2) == Some(&b'\'') || (rest.get(1) == Some(&b'\\')))
        {
            // a char literal ('x', '\n', '\''), not a lifetime
            let end = rest[2..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(rest.len(), |p| p + 3);
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Blanks every item under `#[cfg(test)]` (its body up to the matching brace, or up to `;`),
/// and returns the names of `#[cfg(test)] mod name;` files declared here.
fn drop_test_items(code: &mut String) -> Vec<String> {
    let mut test_mods = Vec::new();
    while let Some(at) = code.find("#[cfg(test)]") {
        let b = code.as_bytes();
        let mut j = at;
        let mut depth = 0usize;
        let end = loop {
            match b.get(j) {
                None => break b.len(),
                Some(b'{') => depth += 1,
                Some(b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        break j + 1;
                    }
                }
                Some(b';') if depth == 0 => {
                    let item = &code[at..j];
                    if let Some(name) = item.split_whitespace().skip_while(|w| *w != "mod").nth(1) {
                        test_mods.push(name.to_owned());
                    }
                    break j + 1;
                }
                _ => {}
            }
            j += 1;
        };
        let blanked: String = code[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(at..end, &blanked);
    }
    test_mods
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments named inside a `use crate::{...}` group starting at `s` (after `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expect = true;
    for (k, c) in s.char_indices() {
        match c {
            '{' => {
                depth += 1;
                expect = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect = true,
            c if expect && (c.is_ascii_alphanumeric() || c == '_') => {
                heads.push(ident_at(&s[k..]).to_owned());
                expect = false;
            }
            _ => {}
        }
    }
    heads
}

/// `(line, module)` for every module of the crate this code names from outside `own`.
/// `depth` is how many `super::` it takes to reach the crate root from this file.
fn uses(code: &str, own: &str, depth: usize) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(p) = rest.find("crate::") {
            let before = rest[..p].chars().next_back();
            let after = &rest[p + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // e.g. `$crate::`, `my_crate::`
            }
            let names = if let Some(group) = after.strip_prefix('{') {
                group_heads(group)
            } else {
                vec![ident_at(after).to_owned()]
            };
            found.extend(names.into_iter().map(|m| (n + 1, m)));
        }
        let supers = line.matches("super::").count();
        if depth > 0 && supers >= depth && line.contains(&"super::".repeat(depth)) {
            let after = line.split(&"super::".repeat(depth)).nth(1).unwrap_or("");
            found.push((n + 1, ident_at(after).to_owned()));
        }
    }
    found.retain(|(_, m)| !m.is_empty() && m != own && m != "self");
    found
}

#[test]
fn imports_point_down_the_layer_table() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_path_buf();
            (rel, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let problems = check(&layer_table(), &files, EXCEPTIONS);
    assert!(problems.is_empty(), "layering:\n{problems}");
}

/// Every problem with `files` (paths relative to `src/`, and their text) under `table`, one a
/// line; empty when the imports point down.
fn check(
    table: &BTreeMap<String, Row>,
    files: &[(PathBuf, String)],
    exceptions: &[(&str, &str)],
) -> String {
    // Pass one: every file's code, and which files are test modules.
    let mut test_files = BTreeSet::new();
    let mut read = Vec::new();
    for (rel, text) in files {
        let mut code = code_only(text);
        let dir = rel.parent().unwrap_or_else(|| Path::new(""));
        let stem = rel.file_stem().unwrap().to_string_lossy().into_owned();
        // `mod x;` in a/mod.rs lives at a/x.rs; in a/b.rs at a/b/x.rs.
        let base = if matches!(stem.as_str(), "mod" | "lib" | "main") {
            dir.to_path_buf()
        } else {
            dir.join(&stem)
        };
        for m in drop_test_items(&mut code) {
            test_files.insert(base.join(&m));
        }
        read.push((rel, code));
    }

    let mut problems = String::new();
    let mut used_exceptions = BTreeSet::new();
    let mut seen_modules = BTreeSet::new();
    for (rel, code) in read {
        let is_test = test_files
            .iter()
            .any(|t| rel.with_extension("") == *t || rel.starts_with(t));
        if is_test {
            continue;
        }
        let shown = format!("src/{}", rel.display());
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue; // the crate root only declares the modules
        }
        seen_modules.insert(module.clone());
        let Some(row) = table.get(&module) else {
            let _ = writeln!(
                problems,
                "{shown}: module `{module}` is not in the layer table of docs/architecture.md"
            );
            continue;
        };
        // src/a.rs and src/a/mod.rs are one level down; src/a/b.rs two.
        let depth = rel.components().count() - usize::from(rel.ends_with("mod.rs"));
        for (line, used) in uses(&code, &module, depth) {
            if module == "main" && used == "cellgate" {
                continue;
            }
            let Some(target) = table.get(&used) else {
                let _ = writeln!(
                    problems,
                    "{shown}:{line}: uses `crate::{used}`, which is not in the layer table"
                );
                continue;
            };
            let allowed = target.layer < row.layer
                || (target.layer == row.layer && row.peers.contains(&used));
            if allowed {
                continue;
            }
            if exceptions.contains(&(shown.as_str(), used.as_str())) {
                used_exceptions.insert((shown.clone(), used.clone()));
                continue;
            }
            let how = if target.layer == row.layer {
                "a peer it may not use"
            } else {
                "a higher layer"
            };
            let _ = writeln!(
                problems,
                "{shown}:{line}: `{module}` (layer {}) uses `crate::{used}` (layer {}): {how}",
                row.layer, target.layer
            );
        }
    }
    for m in table.keys() {
        if !seen_modules.contains(m) {
            let _ = writeln!(
                problems,
                "docs/architecture.md: module `{m}` has no file in src/"
            );
        }
    }
    for (file, used) in exceptions {
        if !used_exceptions.contains(&((*file).to_owned(), (*used).to_owned())) {
            let _ = writeln!(
                problems,
                "tests/layering.rs: the exception ({file}, {used}) is no longer needed: remove it"
            );
        }
    }
    problems
}

#[test]
fn the_reader_sees_uses_and_skips_comments_strings_and_tests() {
    let src = "use crate::a::X;\n// crate::b\nlet s = \"crate::c\";\nuse crate::{d::Y, e::{F, G}, self};\n\
               #[cfg(test)]\nmod tests { use crate::h; }\nfn f() { crate::i::j(); super::super::k::l(); }\n";
    let mut code = code_only(src);
    drop_test_items(&mut code);
    let got: Vec<(usize, String)> = uses(&code, "own", 2);
    let want: Vec<(usize, String)> = [(1, "a"), (4, "d"), (4, "e"), (7, "i"), (7, "k")]
        .into_iter()
        .map(|(n, m)| (n, m.to_owned()))
        .collect();
    assert_eq!(got, want);
    let mut decl = code_only("#[cfg(test)]\nmod tests;\nuse crate::z;\n");
    assert_eq!(drop_test_items(&mut decl), vec!["tests".to_owned()]);
    assert_eq!(uses(&decl, "own", 1), vec![(3, "z".to_owned())]);
}

#[test]
fn the_check_names_upward_uses_forbidden_peers_unknown_modules_and_stale_exceptions() {
    let table = parse_table(
        "# x\n\n## Layers\n\n| layer | modules | may also use |\n|---|---|---|\n\
         | 0 | `leaf` | — |\n| 1 | `low`, `side` | `side` |\n| 2 | `top`, `ghost` | — |\n",
        "test table",
    );
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file("lib.rs", "pub mod leaf;\npub mod low;\n"),
        file("leaf.rs", "use crate::low::X;\n"),
        file(
            "low/mod.rs",
            "use crate::leaf::Y;\nuse crate::side::Z;\nmod inner;\n",
        ),
        file("low/inner.rs", "fn f() { super::super::top::g(); }\n"),
        file("side.rs", "use crate::low::A;\n#[cfg(test)]\nmod tests;\n"),
        file("side/tests.rs", "use crate::top::B;\n"),
        file(
            "top.rs",
            "use crate::nowhere::C;\nuse crate::{leaf::D, low::E};\n",
        ),
    ];
    let got = check(&table, &files, &[("src/top.rs", "leaf")]);
    let want = "\
        src/leaf.rs:1: `leaf` (layer 0) uses `crate::low` (layer 1): a higher layer\n\
        src/low/inner.rs:1: `low` (layer 1) uses `crate::top` (layer 2): a higher layer\n\
        src/side.rs:1: `side` (layer 1) uses `crate::low` (layer 1): a peer it may not use\n\
        src/top.rs:1: uses `crate::nowhere`, which is not in the layer table\n\
        docs/architecture.md: module `ghost` has no file in src/\n\
        tests/layering.rs: the exception (src/top.rs, leaf) is no longer needed: remove it\n";
    assert_eq!(got, want);
    // The same tree without its faults passes.
    let clean = [
        file("leaf.rs", ""),
        file("low/mod.rs", "use crate::leaf::Y;\nuse crate::side::Z;\n"),
        file("side.rs", "#[cfg(test)]\nmod tests;\n"),
        file("side/tests.rs", "use crate::top::B;\n"),
        file("top.rs", "use crate::{leaf::D, low::E};\n"),
        file("ghost.rs", ""),
    ];
    assert_eq!(check(&table, &clean, &[]), "");
}
